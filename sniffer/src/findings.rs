//! What the sniffer learned, one [`Finding`] at a time, and how each is
//! shown: one line of text for the projector, one JSON object for scripts.
//!
//! Nearly every string in a finding was written by someone on the network
//! (bodies, statuses, JIDs, roster names, file names, SNI, error texts), so
//! the text form escapes the whole line with [`protocol::display`]: a peer
//! cannot clear the projector's screen, write its clipboard (OSC 52), retitle
//! its window, flip text with a bidi override, or forge a finding line with a
//! newline. The JSON form keeps every string exact; JSON escapes controls.

use protocol::display::Safe;
use serde_json::{Value, json};

use crate::reassembly::{ConnId, Dir};

/// What a finding is about, for the summary's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// Passwords and what stands in for them.
    Credentials,
    /// Message bodies.
    Messages,
    /// Rosters, subscriptions, bound JIDs.
    Contacts,
    /// Availability and status messages.
    Presence,
    /// File contents.
    Files,
    /// Who talks to whom, when, how much: what even TLS shows.
    Metadata,
}

impl Category {
    /// Every category, in the summary's order.
    pub const ALL: [Category; 6] = [
        Category::Credentials,
        Category::Messages,
        Category::Contacts,
        Category::Presence,
        Category::Files,
        Category::Metadata,
    ];

    /// Its position in [`Category::ALL`] (and in per-category counters).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Category::Credentials => "credentials",
            Category::Messages => "messages",
            Category::Contacts => "contacts",
            Category::Presence => "presence",
            Category::Files => "files",
            Category::Metadata => "metadata",
        }
    }
}

/// One thing recovered from the traffic.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Finding {
    /// A TCP connection began.
    Connection {
        /// Client address.
        client: String,
        /// Server address.
        server: String,
        /// Already open when the capture started.
        mid_stream: bool,
    },
    /// What a connection was recognised as, by its content.
    Protocol {
        /// Direction classified.
        dir: Dir,
        /// `xmpp`, `tls` or `unknown`.
        protocol: &'static str,
    },
    /// An XMPP stream header.
    Stream {
        /// Direction.
        dir: Dir,
        /// The domain asked for (`to`).
        to: Option<String>,
        /// The `from` claimed.
        from: Option<String>,
    },
    /// A server's stream features.
    Features {
        /// STARTTLS offered.
        starttls: bool,
        /// STARTTLS marked required.
        starttls_required: bool,
        /// SASL mechanisms offered.
        mechanisms: Vec<String>,
        /// In-band registration offered.
        registration: bool,
    },
    /// A password, or what can be used to attack one.
    Credential {
        /// `sasl-plain`, `register`, `password-change` or `scram`.
        kind: &'static str,
        /// The user name.
        user: String,
        /// The password itself, when it crossed the wire.
        password: Option<String>,
        /// SCRAM: mechanism, salt, iterations, proofs.
        detail: Option<String>,
        /// What it means.
        note: &'static str,
    },
    /// A JID bound to a session.
    BoundJid {
        /// The full JID.
        jid: String,
    },
    /// An item of someone's contact list.
    Contact {
        /// The contact.
        jid: String,
        /// Its subscription state.
        subscription: Option<String>,
        /// The name given to it.
        name: Option<String>,
    },
    /// A subscription request or answer.
    Subscription {
        /// Sender.
        from: Option<String>,
        /// Addressee.
        to: Option<String>,
        /// subscribe, subscribed, unsubscribe, unsubscribed.
        kind: String,
    },
    /// Availability and status.
    Presence {
        /// Sender.
        from: Option<String>,
        /// Addressee (none: a broadcast).
        to: Option<String>,
        /// available or unavailable.
        available: bool,
        /// away, dnd, xa, chat.
        show: Option<String>,
        /// Status text.
        status: Option<String>,
    },
    /// A message with a body.
    Message {
        /// Sender.
        from: Option<String>,
        /// Addressee.
        to: Option<String>,
        /// chat, groupchat, normal, headline.
        kind: String,
        /// The text.
        body: String,
        /// When it was first sent, if it carries a delay stamp (offline
        /// delivery, room history); otherwise the capture time tells.
        stamp: Option<String>,
    },
    /// A file offered or carried in-band.
    File {
        /// The stream id.
        sid: String,
        /// Offered name.
        name: String,
        /// Bytes recovered.
        size: u64,
        /// Offered size.
        offered_size: Option<u64>,
        /// SHA-256 of what was recovered, hex.
        sha256: String,
        /// The SHA-256 the sender offered (XEP-0300), hex.
        offered_sha256: Option<String>,
        /// Whether `sha256` is the offered one (`None`: none offered).
        sha256_matches: Option<bool>,
        /// Where it was exported.
        path: Option<String>,
        /// All offered bytes arrived, every block in order.
        complete: bool,
        /// Blocks that never arrived before later ones.
        missing_blocks: u64,
        /// Blocks that arrived more than once (the first copy is kept).
        duplicate_blocks: u64,
        /// Blocks that arrived early and were put back in `seq` order.
        reordered_blocks: u64,
    },
    /// The connection switched to TLS after `<proceed/>`.
    TlsSwitch {
        /// Stream offset of the first TLS byte, client to server.
        to_server_offset: u64,
        /// Stream offset of the first TLS byte, server to client.
        to_client_offset: u64,
    },
    /// A TLS ClientHello.
    ClientHello {
        /// Server name indication: which server, in clear.
        sni: Option<String>,
        /// ALPN protocols.
        alpn: Vec<String>,
        /// Versions offered.
        versions: Vec<String>,
        /// Cipher suites offered.
        ciphers: Vec<String>,
        /// Key-share groups.
        groups: Vec<String>,
    },
    /// A TLS ServerHello.
    ServerHello {
        /// Version chosen.
        version: String,
        /// Cipher suite chosen.
        cipher: String,
    },
    /// A TLS alert.
    Alert {
        /// Direction.
        dir: Dir,
        /// Readable, or encrypted (only its size shows).
        text: String,
    },
    /// Encrypted traffic: records and bytes each way, and when.
    TlsTraffic {
        /// Records client to server.
        records_to_server: u64,
        /// Bytes client to server.
        bytes_to_server: u64,
        /// Records server to client.
        records_to_client: u64,
        /// Bytes server to client.
        bytes_to_client: u64,
        /// Record sizes in order, both directions (+ to server, - to client),
        /// the first ones only.
        sizes: Vec<i64>,
        /// Seconds from the first to the last record.
        duration: f64,
    },
    /// Bytes that were never captured.
    Gap {
        /// Direction.
        dir: Dir,
        /// Where.
        offset: u64,
        /// How many.
        len: u64,
    },
    /// Bytes that did not parse.
    Malformed {
        /// Direction.
        dir: Dir,
        /// What was wrong.
        what: String,
    },
    /// A stream error.
    StreamError {
        /// Direction.
        dir: Dir,
        /// The condition.
        condition: String,
    },
}

impl Finding {
    /// The summary column it counts in, if any.
    pub fn category(&self) -> Option<Category> {
        Some(match self {
            Finding::Credential { .. } => Category::Credentials,
            Finding::Message { .. } => Category::Messages,
            Finding::Contact { .. } | Finding::Subscription { .. } | Finding::BoundJid { .. } => {
                Category::Contacts
            }
            Finding::Presence { .. } => Category::Presence,
            Finding::File { .. } => Category::Files,
            Finding::Stream { .. }
            | Finding::Features { .. }
            | Finding::ClientHello { .. }
            | Finding::ServerHello { .. }
            | Finding::TlsSwitch { .. }
            | Finding::TlsTraffic { .. } => Category::Metadata,
            _ => return None,
        })
    }

    /// The JSON `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Finding::Connection { .. } => "connection",
            Finding::Protocol { .. } => "protocol",
            Finding::Stream { .. } => "stream",
            Finding::Features { .. } => "features",
            Finding::Credential { .. } => "credential",
            Finding::BoundJid { .. } => "bound-jid",
            Finding::Contact { .. } => "contact",
            Finding::Subscription { .. } => "subscription",
            Finding::Presence { .. } => "presence",
            Finding::Message { .. } => "message",
            Finding::File { .. } => "file",
            Finding::TlsSwitch { .. } => "tls-switch",
            Finding::ClientHello { .. } => "client-hello",
            Finding::ServerHello { .. } => "server-hello",
            Finding::Alert { .. } => "alert",
            Finding::TlsTraffic { .. } => "tls-traffic",
            Finding::Gap { .. } => "gap",
            Finding::Malformed { .. } => "malformed",
            Finding::StreamError { .. } => "stream-error",
        }
    }
}

fn arrow(dir: Dir) -> &'static str {
    match dir {
        Dir::ToServer => "C->S",
        Dir::ToClient => "S->C",
    }
}

fn dir_name(dir: Dir) -> &'static str {
    match dir {
        Dir::ToServer => "to-server",
        Dir::ToClient => "to-client",
    }
}

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("?")
}

/// When a message was sent: its delay stamp, else the capture time.
fn when(stamp: &Option<String>, ts: f64) -> String {
    stamp
        .clone()
        .unwrap_or_else(|| protocol::datetime::xmpp_datetime(ts as i64))
}

/// A finding of connection `conn` captured at `ts`, as one line of text,
/// safe to print on a terminal.
pub fn text(conn: ConnId, ts: f64, f: &Finding) -> String {
    let body = match f {
        Finding::Connection {
            client,
            server,
            mid_stream,
        } => format!(
            "connection {client} -> {server}{}",
            if *mid_stream {
                " (already open when the capture started)"
            } else {
                ""
            }
        ),
        Finding::Protocol { dir, protocol } => format!("{} speaks {protocol}", arrow(*dir)),
        Finding::Stream { dir, to, from } => {
            format!("{} stream to={} from={}", arrow(*dir), opt(to), opt(from))
        }
        Finding::Features {
            starttls,
            starttls_required,
            mechanisms,
            registration,
        } => format!(
            "features: STARTTLS {}; SASL {}; registration {}",
            match (starttls, starttls_required) {
                (true, true) => "offered and required",
                (true, false) => "offered (optional: can be stripped)",
                _ => "NOT offered",
            },
            if mechanisms.is_empty() {
                "none yet".to_string()
            } else {
                mechanisms.join(" ")
            },
            if *registration { "open" } else { "closed" }
        ),
        Finding::Credential {
            kind,
            user,
            password,
            detail,
            note,
        } => format!(
            "CREDENTIAL {kind} user={user}{}{} ({note})",
            password
                .as_ref()
                .map(|p| format!(" password={p}"))
                .unwrap_or_default(),
            detail.as_ref().map(|d| format!(" {d}")).unwrap_or_default()
        ),
        Finding::BoundJid { jid } => format!("bound JID {jid}"),
        Finding::Contact {
            jid,
            subscription,
            name,
        } => format!(
            "contact {jid} subscription={}{}",
            opt(subscription),
            name.as_ref()
                .map(|n| format!(" name={n}"))
                .unwrap_or_default()
        ),
        Finding::Subscription { from, to, kind } => {
            format!("subscription {kind} {} -> {}", opt(from), opt(to))
        }
        Finding::Presence {
            from,
            to,
            available,
            show,
            status,
        } => format!(
            "presence {} {}{}{}{}",
            opt(from),
            if *available {
                "available"
            } else {
                "unavailable"
            },
            show.as_ref().map(|s| format!(" [{s}]")).unwrap_or_default(),
            status
                .as_ref()
                .map(|s| format!(": {s}"))
                .unwrap_or_default(),
            to.as_ref()
                .map(|t| format!(" (to {t})"))
                .unwrap_or_default()
        ),
        Finding::Message {
            from,
            to,
            kind,
            body,
            stamp,
        } => format!(
            "MESSAGE {kind} {} -> {} at {}: {body}",
            opt(from),
            opt(to),
            when(stamp, ts)
        ),
        Finding::File {
            name,
            size,
            sha256,
            offered_sha256,
            sha256_matches,
            path,
            complete,
            missing_blocks,
            duplicate_blocks,
            reordered_blocks,
            ..
        } => {
            let mut notes = Vec::new();
            match (sha256_matches, offered_sha256) {
                (Some(true), _) => notes.push("matches the offered hash".to_string()),
                (Some(false), Some(o)) => notes.push(format!("MISMATCH: offered sha256 {o}")),
                _ => {}
            }
            if !complete {
                notes.push("incomplete".into());
            }
            for (n, what) in [
                (missing_blocks, "missing"),
                (duplicate_blocks, "duplicate, ignored"),
                (reordered_blocks, "out of order, put back in order"),
            ] {
                if *n > 0 {
                    let s = if *n == 1 { "" } else { "s" };
                    notes.push(format!("{n} block{s} {what}"));
                }
            }
            format!(
                "FILE {name} {size} bytes sha256 {sha256}{}{}",
                if notes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", notes.join("; "))
                },
                path.as_ref()
                    .map(|p| format!(" exported to {p}"))
                    .unwrap_or_default()
            )
        }
        Finding::TlsSwitch {
            to_server_offset,
            to_client_offset,
        } => format!(
            "switches to TLS after <proceed/>: client->server at byte {to_server_offset}, server->client at byte {to_client_offset}"
        ),
        Finding::ClientHello {
            sni,
            alpn,
            versions,
            ciphers,
            groups,
        } => format!(
            "TLS ClientHello SNI={} ALPN=[{}] versions=[{}] {} cipher suites, key shares [{}]",
            opt(sni),
            alpn.join(","),
            versions.join(","),
            ciphers.len(),
            groups.join(",")
        ),
        Finding::ServerHello { version, cipher } => {
            format!("TLS ServerHello {version} {cipher}")
        }
        Finding::Alert { dir, text } => format!("{} TLS alert {text}", arrow(*dir)),
        Finding::TlsTraffic {
            records_to_server,
            bytes_to_server,
            records_to_client,
            bytes_to_client,
            duration,
            ..
        } => format!(
            "TLS application data: {records_to_server} records / {bytes_to_server} bytes to the server, {records_to_client} / {bytes_to_client} to the client, over {duration:.3} s; no plaintext recovered"
        ),
        Finding::Gap { dir, offset, len } => {
            format!(
                "{} {len} bytes missing at byte {offset} (not captured)",
                arrow(*dir)
            )
        }
        Finding::Malformed { dir, what } => format!("{} malformed: {what}", arrow(*dir)),
        Finding::StreamError { dir, condition } => {
            format!("{} stream error {condition}", arrow(*dir))
        }
    };
    // Escaped once, here, for every field at once: the fixed words hold no
    // control character or backslash, so only peer text changes, and a
    // field added later cannot be forgotten. Stops terminal injection (escape
    // sequences, OSC 52, bidi overrides) and forged lines (embedded newlines).
    format!("#{conn} {}", Safe(&body))
}

/// A finding of connection `conn`, as one JSON object with a `type`.
pub fn json(conn: ConnId, ts: f64, f: &Finding) -> Value {
    let mut v = match f {
        Finding::Connection {
            client,
            server,
            mid_stream,
        } => json!({"client": client, "server": server, "mid_stream": mid_stream}),
        Finding::Protocol { dir, protocol } => {
            json!({"dir": dir_name(*dir), "protocol": protocol})
        }
        Finding::Stream { dir, to, from } => {
            json!({"dir": dir_name(*dir), "to": to, "from": from})
        }
        Finding::Features {
            starttls,
            starttls_required,
            mechanisms,
            registration,
        } => json!({"starttls": starttls, "starttls_required": starttls_required,
                    "mechanisms": mechanisms, "registration": registration}),
        Finding::Credential {
            kind,
            user,
            password,
            detail,
            note,
        } => {
            json!({"kind": kind, "user": user, "password": password, "detail": detail, "note": note})
        }
        Finding::BoundJid { jid } => json!({ "jid": jid }),
        Finding::Contact {
            jid,
            subscription,
            name,
        } => json!({"jid": jid, "subscription": subscription, "name": name}),
        Finding::Subscription { from, to, kind } => {
            json!({"from": from, "to": to, "kind": kind})
        }
        Finding::Presence {
            from,
            to,
            available,
            show,
            status,
        } => {
            json!({"from": from, "to": to, "available": available, "show": show, "status": status})
        }
        Finding::Message {
            from,
            to,
            kind,
            body,
            stamp,
        } => json!({"from": from, "to": to, "kind": kind, "body": body, "time": when(stamp, ts)}),
        Finding::File {
            sid,
            name,
            size,
            offered_size,
            sha256,
            offered_sha256,
            sha256_matches,
            path,
            complete,
            missing_blocks,
            duplicate_blocks,
            reordered_blocks,
        } => json!({"sid": sid, "name": name, "size": size, "offered_size": offered_size,
                    "sha256": sha256, "offered_sha256": offered_sha256,
                    "sha256_matches": sha256_matches, "path": path, "complete": complete,
                    "missing_blocks": missing_blocks, "duplicate_blocks": duplicate_blocks,
                    "reordered_blocks": reordered_blocks}),
        Finding::TlsSwitch {
            to_server_offset,
            to_client_offset,
        } => json!({"to_server_offset": to_server_offset, "to_client_offset": to_client_offset}),
        Finding::ClientHello {
            sni,
            alpn,
            versions,
            ciphers,
            groups,
        } => {
            json!({"sni": sni, "alpn": alpn, "versions": versions, "ciphers": ciphers, "groups": groups})
        }
        Finding::ServerHello { version, cipher } => {
            json!({"version": version, "cipher": cipher})
        }
        Finding::Alert { dir, text } => json!({"dir": dir_name(*dir), "alert": text}),
        Finding::TlsTraffic {
            records_to_server,
            bytes_to_server,
            records_to_client,
            bytes_to_client,
            sizes,
            duration,
        } => json!({"records_to_server": records_to_server, "bytes_to_server": bytes_to_server,
                    "records_to_client": records_to_client, "bytes_to_client": bytes_to_client,
                    "sizes": sizes, "duration": duration, "plaintext_recovered": false}),
        Finding::Gap { dir, offset, len } => {
            json!({"dir": dir_name(*dir), "offset": offset, "len": len})
        }
        Finding::Malformed { dir, what } => json!({"dir": dir_name(*dir), "what": what}),
        Finding::StreamError { dir, condition } => {
            json!({"dir": dir_name(*dir), "condition": condition})
        }
    };
    if let Value::Object(m) = &mut v {
        m.insert("type".into(), json!(f.kind()));
        m.insert("conn".into(), json!(conn));
        m.insert("ts".into(), json!(ts));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::display::is_unsafe_char;

    /// Clear screen, OSC 52 clipboard write, window title, BEL, backspace,
    /// a C1 CSI, a bidi override, and a forged finding line.
    const EVIL: &str = "\x1b[2J\x1b]52;c;cGF5\x07\x1b]0;pwned\x07\x08\u{9b}\u{202e}txt.exe\r\n#0 CREDENTIAL sasl-plain user=admin password=forged";

    fn every_string_finding() -> Vec<Finding> {
        let e = || EVIL.to_string();
        let o = || Some(EVIL.to_string());
        vec![
            Finding::Stream {
                dir: Dir::ToServer,
                to: o(),
                from: o(),
            },
            Finding::Features {
                starttls: false,
                starttls_required: false,
                mechanisms: vec![e()],
                registration: false,
            },
            Finding::Credential {
                kind: "sasl-plain",
                user: e(),
                password: o(),
                detail: o(),
                note: "n",
            },
            Finding::BoundJid { jid: e() },
            Finding::Contact {
                jid: e(),
                subscription: o(),
                name: o(),
            },
            Finding::Subscription {
                from: o(),
                to: o(),
                kind: e(),
            },
            Finding::Presence {
                from: o(),
                to: o(),
                available: true,
                show: o(),
                status: o(),
            },
            Finding::Message {
                from: o(),
                to: o(),
                kind: e(),
                body: e(),
                stamp: o(),
            },
            Finding::File {
                sid: e(),
                name: e(),
                size: 1,
                offered_size: None,
                sha256: e(),
                offered_sha256: o(),
                sha256_matches: Some(false),
                path: o(),
                complete: true,
                missing_blocks: 0,
                duplicate_blocks: 0,
                reordered_blocks: 0,
            },
            Finding::ClientHello {
                sni: o(),
                alpn: vec![e()],
                versions: vec![e()],
                ciphers: vec![e()],
                groups: vec![e()],
            },
            Finding::ServerHello {
                version: e(),
                cipher: e(),
            },
            Finding::Alert {
                dir: Dir::ToClient,
                text: e(),
            },
            Finding::Malformed {
                dir: Dir::ToClient,
                what: e(),
            },
            Finding::StreamError {
                dir: Dir::ToClient,
                condition: e(),
            },
        ]
    }

    #[test]
    fn text_lines_escape_every_peer_string() {
        for f in every_string_finding() {
            let line = text(7, 0.0, &f);
            assert!(
                !line.chars().any(is_unsafe_char),
                "{} printed a control character: {line:?}",
                f.kind()
            );
            assert!(line.starts_with("#7 "), "{line:?}");
            // The forged line stays inside this one, visibly escaped.
            if line.contains("CREDENTIAL sasl-plain user=admin") {
                assert!(line.contains("\\r\\n#0 CREDENTIAL"), "{line:?}");
            }
        }
        let m = text(
            0,
            0.0,
            &Finding::Message {
                from: None,
                to: None,
                kind: "chat".into(),
                body: "a\x1b[2Jb".into(),
                stamp: Some("s".into()),
            },
        );
        assert_eq!(m, "#0 MESSAGE chat ? -> ? at s: a\\u{1b}[2Jb");
    }

    #[test]
    fn json_keeps_peer_strings_exact() {
        for f in every_string_finding() {
            let v = json(1, 0.0, &f);
            let back: Value = serde_json::from_str(&v.to_string()).unwrap();
            assert_eq!(back, v);
            assert!(v.to_string().contains("\\u001b[2J"), "{v}");
        }
        let v = json(
            1,
            0.0,
            &Finding::Message {
                from: None,
                to: None,
                kind: "chat".into(),
                body: EVIL.into(),
                stamp: None,
            },
        );
        assert_eq!(v["body"], EVIL);
    }
}
