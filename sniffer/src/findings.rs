//! What the sniffer learned, one [`Finding`] at a time, and how each is
//! shown: one line of text for the projector, one JSON object for scripts.
//!
//! Both come from one value, a [`Record`] (a finding with its connection and
//! capture time): its `Display` is the text line and its derived `Serialize`
//! the JSON object (printed by [`crate::jsonl`]), so the two cannot drift
//! apart, and a field added to a finding reaches the JSON without being
//! copied into it by hand.
//!
//! Nearly every string in a finding was written by someone on the network
//! (bodies, statuses, JIDs, roster names, file names, SNI, error texts), so
//! the text form escapes the whole line with [`protocol::display`]: a peer
//! cannot clear the projector's screen, write its clipboard (OSC 52), retitle
//! its window, flip text with a bidi override, or forge a finding line with a
//! newline. The JSON form keeps every string exact; JSON escapes controls.

use std::fmt;

use protocol::display::Safe;
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

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
    /// Messages encrypted end to end (OMEMO): their text is hidden even on
    /// the plaintext twin and from the server; who, when, which devices
    /// and how long stay visible.
    EndToEnd,
}

/// How many categories there are (the length of per-category counters).
pub const CATEGORIES: usize = Category::ALL.len();

impl Category {
    /// Every category, in the summary's order.
    pub const ALL: [Category; 7] = [
        Category::Credentials,
        Category::Messages,
        Category::Contacts,
        Category::Presence,
        Category::Files,
        Category::EndToEnd,
        Category::Metadata,
    ];

    /// Its position in [`Category::ALL`] (and in per-category counters).
    pub fn index(self) -> usize {
        Category::ALL
            .iter()
            .position(|c| *c == self)
            .unwrap_or_default()
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
            Category::EndToEnd => "end-to-end",
        }
    }
}

/// Serializes per-category counters (in [`Category::ALL`] order) as one key
/// per category, `{"credentials": 2, "messages": 5, ...}`. With
/// `#[serde(flatten)]` the keys join the object around them, as the summary
/// and totals lines have them.
pub fn by_category<S: Serializer>(
    counts: &[u64; crate::findings::CATEGORIES],
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(counts.len()))?;
    for c in Category::ALL {
        m.serialize_entry(c.name(), &counts[c.index()])?;
    }
    m.end()
}

/// One thing recovered from the traffic.
///
/// As JSON, a finding is an object whose `type` is [`Finding::kind`] and
/// whose other keys are the variant's fields (a direction is `to-server` or
/// `to-client`); [`Record`] adds the connection and the time.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
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
    /// A UDP flow began: datagrams between two addresses (the first
    /// sender is called the client). Their payload is not dissected, but
    /// the leak check searches it.
    UdpFlow {
        /// The first sender.
        client: String,
        /// The other address.
        server: String,
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
        /// delivery, room history); otherwise the capture time tells. Shown
        /// as the record's `time`, which needs the capture time.
        #[serde(skip)]
        stamp: Option<String>,
    },
    /// A message encrypted end to end (OMEMO, XEP-0384): its text is
    /// not on the wire, only who sent it to whom, from which device to
    /// which devices, whether it starts a session, and its size.
    EncryptedMessage {
        /// Sender.
        from: Option<String>,
        /// Addressee.
        to: Option<String>,
        /// `OMEMO 2` or `OMEMO 0.3`.
        scheme: &'static str,
        /// The sending device.
        sender_device: Option<u32>,
        /// The devices it is encrypted to.
        devices: Vec<u32>,
        /// Whether it carries a key exchange (starts a session).
        key_exchange: bool,
        /// Bytes of ciphertext (0: an empty message, which only moves the
        /// ratchet).
        payload_bytes: usize,
        /// As for [`Finding::Message`].
        #[serde(skip)]
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
        #[serde(rename = "alert")]
        text: String,
    },
    /// Encrypted traffic: records and bytes each way, and when. Its JSON
    /// also says `"plaintext_recovered"` (whether a key log opened any
    /// record), for scripts that check.
    #[serde(serialize_with = "tls_traffic")]
    TlsTraffic {
        /// Records client to server.
        records_to_server: u64,
        /// Bytes client to server.
        bytes_to_server: u64,
        /// Records server to client.
        records_to_client: u64,
        /// Bytes server to client.
        bytes_to_client: u64,
        /// Record sizes in order, both directions: positive to the server,
        /// negative to the client (the sign is the direction); the first
        /// ones only.
        sizes: Vec<i64>,
        /// When each of those records was captured, in seconds after the
        /// first one (one entry per size, microsecond precision).
        times: Vec<f64>,
        /// Seconds from the first to the last record.
        duration: f64,
        /// Records opened with the key log (handshake and alerts too).
        decrypted: u64,
        /// Records a key log was given for but that could not be opened.
        undecrypted: u64,
    },
    /// The key log holds this session's secrets: its records are opened
    /// and read like plaintext from here.
    TlsKeys {
        /// TLS 1.2 or 1.3.
        version: String,
        /// The cipher suite.
        cipher: String,
    },
    /// A TLS record a key log was given for could not be opened (reported
    /// once per direction; the traffic line counts them all).
    Undecrypted {
        /// Direction.
        dir: Dir,
        /// Which record of that direction, counted from 1.
        record: u64,
        /// Why: no key for the session, the wrong key, a bad tag...
        reason: String,
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
            Finding::EncryptedMessage { .. } => Category::EndToEnd,
            Finding::Contact { .. } | Finding::Subscription { .. } | Finding::BoundJid { .. } => {
                Category::Contacts
            }
            Finding::Presence { .. } => Category::Presence,
            Finding::File { .. } => Category::Files,
            Finding::Stream { .. }
            | Finding::UdpFlow { .. }
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
            Finding::UdpFlow { .. } => "udp-flow",
            Finding::Protocol { .. } => "protocol",
            Finding::Stream { .. } => "stream",
            Finding::Features { .. } => "features",
            Finding::Credential { .. } => "credential",
            Finding::BoundJid { .. } => "bound-jid",
            Finding::Contact { .. } => "contact",
            Finding::Subscription { .. } => "subscription",
            Finding::Presence { .. } => "presence",
            Finding::Message { .. } => "message",
            Finding::EncryptedMessage { .. } => "encrypted-message",
            Finding::File { .. } => "file",
            Finding::TlsSwitch { .. } => "tls-switch",
            Finding::ClientHello { .. } => "client-hello",
            Finding::ServerHello { .. } => "server-hello",
            Finding::Alert { .. } => "alert",
            Finding::TlsTraffic { .. } => "tls-traffic",
            Finding::TlsKeys { .. } => "tls-keys",
            Finding::Undecrypted { .. } => "undecrypted",
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

/// [`Finding::TlsTraffic`] as JSON: its fields, and the statement the
/// text line ends with, whether plaintext was recovered (a derive cannot add
/// a key that is not a field). The `type` key is added around it.
// serde's `serialize_with` on a struct variant passes every field.
#[allow(clippy::too_many_arguments)]
fn tls_traffic<S: Serializer>(
    records_to_server: &u64,
    bytes_to_server: &u64,
    records_to_client: &u64,
    bytes_to_client: &u64,
    sizes: &[i64],
    times: &[f64],
    duration: &f64,
    decrypted: &u64,
    undecrypted: &u64,
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut st = s.serialize_struct("TlsTraffic", 10)?;
    st.serialize_field("records_to_server", records_to_server)?;
    st.serialize_field("bytes_to_server", bytes_to_server)?;
    st.serialize_field("records_to_client", records_to_client)?;
    st.serialize_field("bytes_to_client", bytes_to_client)?;
    st.serialize_field("sizes", sizes)?;
    st.serialize_field("times", times)?;
    st.serialize_field("duration", duration)?;
    st.serialize_field("decrypted", decrypted)?;
    st.serialize_field("undecrypted", undecrypted)?;
    st.serialize_field("plaintext_recovered", &(*decrypted > 0))?;
    st.end()
}

/// A value the stanza or handshake did not carry, in words: a client's
/// own stanzas carry no `from` (the server knows who sent them), and a
/// student reading `?` took it for damage.
fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("(not stated)")
}

/// When a message was sent: its delay stamp, else the capture time.
fn when(stamp: &Option<String>, ts: f64) -> String {
    stamp
        .clone()
        .unwrap_or_else(|| protocol::datetime::xmpp_datetime(ts as i64))
}

/// One finding as the sniffer shows it: the connection it was seen on, the
/// capture time, and the finding. Its `Display` is the text line for the
/// projector, its `Serialize` the JSON object for scripts (`type`, `conn`,
/// `ts`, the finding's fields, and `time` for a message): two views of this
/// one value.
#[derive(Debug, Clone, Serialize)]
pub struct Record<'a> {
    conn: ConnId,
    ts: f64,
    #[serde(flatten)]
    finding: &'a Finding,
    /// A message's time: its delay stamp, else the capture time. Computed
    /// once here, since both views show it and it needs `ts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
}

impl<'a> Record<'a> {
    /// `finding`, seen on connection `conn` at capture time `ts` (seconds
    /// since the Unix epoch).
    pub fn new(conn: ConnId, ts: f64, finding: &'a Finding) -> Self {
        let time = match finding {
            Finding::Message { stamp, .. } | Finding::EncryptedMessage { stamp, .. } => {
                Some(when(stamp, ts))
            }
            _ => None,
        };
        Record {
            conn,
            ts,
            finding,
            time,
        }
    }
}

/// The text line, safe to print on a terminal: `#CONN what was found`.
impl fmt::Display for Record<'_> {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = match self.finding {
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
            Finding::UdpFlow { client, server } => {
                format!("UDP datagrams {client} -> {server} (payload not dissected)")
            }
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
                ..
            } => format!(
                "MESSAGE {kind} {} -> {} at {}: {body}",
                opt(from),
                opt(to),
                self.time.as_deref().unwrap_or_default()
            ),
            Finding::EncryptedMessage {
                from,
                to,
                scheme,
                sender_device,
                devices,
                key_exchange,
                payload_bytes,
                ..
            } => format!(
                "E2E MESSAGE {} -> {} at {}: text hidden (end-to-end, {scheme}); visible: device {} to device(s) {}, {payload_bytes} bytes of ciphertext{}",
                opt(from),
                opt(to),
                self.time.as_deref().unwrap_or_default(),
                sender_device.map_or("?".to_string(), |d| d.to_string()),
                devices
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                if *key_exchange {
                    ", starts a session"
                } else {
                    ""
                }
            ),
            Finding::File {
                sid,
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
                // Over HTTP the request line is the URL, whose token is the
                // only key to an uploaded file: whoever reads it can fetch
                // the file again, later, from anywhere that reaches the server.
                if let Some(line) = sid.strip_prefix("http ") {
                    notes.push(format!("HTTP {line}: that URL fetches it again"));
                }
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
                decrypted,
                undecrypted,
                ..
            } => format!(
                "TLS application data: {records_to_server} records / {bytes_to_server} bytes to the server, {records_to_client} / {bytes_to_client} to the client, over {duration:.3} s; {}",
                match (decrypted, undecrypted) {
                    (0, 0) => "no plaintext recovered".to_string(),
                    (d, 0) => format!("{d} records DECRYPTED with the key log"),
                    (0, u) => format!("{u} records NOT decrypted"),
                    (d, u) => format!("{d} records DECRYPTED with the key log, {u} NOT"),
                }
            ),
            Finding::TlsKeys { version, cipher } => format!(
                "TLS session secrets found in the key log ({version} {cipher}): DECRYPTING, what follows was read inside TLS"
            ),
            Finding::Undecrypted {
                dir,
                record,
                reason,
            } => format!(
                "{} TLS record {record} NOT decrypted: {reason}",
                arrow(*dir)
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
        // field added later cannot be forgotten. Stops terminal injection
        // (escape sequences, OSC 52, bidi overrides) and forged lines
        // (embedded newlines).
        write!(out, "#{} {}", self.conn, Safe(&body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::display::is_unsafe_char;
    use serde_json::Value;

    fn text(conn: ConnId, ts: f64, f: &Finding) -> String {
        Record::new(conn, ts, f).to_string()
    }

    fn json(conn: ConnId, ts: f64, f: &Finding) -> Value {
        let line = crate::jsonl::line(&Record::new(conn, ts, f));
        serde_json::from_str(&line).unwrap()
    }

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
        assert_eq!(
            m,
            "#0 MESSAGE chat (not stated) -> (not stated) at s: a\\u{1b}[2Jb"
        );
    }

    #[test]
    fn json_keeps_peer_strings_exact() {
        for f in every_string_finding() {
            let line = crate::jsonl::line(&Record::new(1, 0.0, &f));
            let v = json(1, 0.0, &f);
            let back: Value = serde_json::from_str(&v.to_string()).unwrap();
            assert_eq!(back, v);
            assert!(line.contains("\\u001b[2J"), "{line}");
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

    /// One finding of every kind, with peer strings that need escaping.
    fn one_of_each() -> Vec<Finding> {
        let s = |x: &str| x.to_string();
        vec![
            Finding::Connection {
                client: s("127.0.0.1:40000"),
                server: s("127.0.0.1:5222"),
                mid_stream: true,
            },
            Finding::Protocol {
                dir: Dir::ToServer,
                protocol: "xmpp",
            },
            Finding::Stream {
                dir: Dir::ToClient,
                to: None,
                from: Some(s("localhost")),
            },
            Finding::Features {
                starttls: true,
                starttls_required: false,
                mechanisms: vec![s("PLAIN"), s("SCRAM-SHA-1")],
                registration: true,
            },
            Finding::Credential {
                kind: "scram",
                user: s("alice"),
                password: None,
                detail: Some(s("SCRAM-SHA-1 salt=x i=4096")),
                note: "offline attack",
            },
            Finding::BoundJid { jid: s("a@b/c") },
            Finding::Contact {
                jid: s("bob@b"),
                subscription: Some(s("both")),
                name: None,
            },
            Finding::Subscription {
                from: Some(s("a@b")),
                to: None,
                kind: s("subscribe"),
            },
            Finding::Presence {
                from: None,
                to: Some(s("x@y")),
                available: false,
                show: Some(s("away")),
                status: None,
            },
            Finding::Message {
                from: Some(s("a@b")),
                to: Some(s("c@d")),
                kind: s("chat"),
                body: s("hi \"there\"\n\u{1b}"),
                stamp: None,
            },
            Finding::Message {
                from: None,
                to: None,
                kind: s("groupchat"),
                body: s("old"),
                stamp: Some(s("2020-01-01T00:00:00Z")),
            },
            Finding::File {
                sid: s("s1"),
                name: s("f.txt"),
                size: 10,
                offered_size: Some(12),
                sha256: s("ab"),
                offered_sha256: None,
                sha256_matches: None,
                path: Some(s("/tmp/x")),
                complete: false,
                missing_blocks: 1,
                duplicate_blocks: 2,
                reordered_blocks: 3,
            },
            Finding::TlsSwitch {
                to_server_offset: 100,
                to_client_offset: 200,
            },
            Finding::ClientHello {
                sni: Some(s("localhost")),
                alpn: vec![s("xmpp-client")],
                versions: vec![s("TLS1.3")],
                ciphers: vec![s("A"), s("B")],
                groups: vec![],
            },
            Finding::ServerHello {
                version: s("TLS1.3"),
                cipher: s("TLS_AES_128_GCM_SHA256"),
            },
            Finding::Alert {
                dir: Dir::ToClient,
                text: s("encrypted (2 bytes)"),
            },
            Finding::TlsTraffic {
                records_to_server: 1,
                bytes_to_server: 2,
                records_to_client: 3,
                bytes_to_client: 4,
                sizes: vec![5, -6],
                times: vec![0.0, 1.5],
                duration: 1.5,
                decrypted: 0,
                undecrypted: 0,
            },
            Finding::Gap {
                dir: Dir::ToServer,
                offset: 7,
                len: 8,
            },
            Finding::Malformed {
                dir: Dir::ToClient,
                what: s("bad"),
            },
            Finding::StreamError {
                dir: Dir::ToServer,
                condition: s("host-unknown"),
            },
            Finding::TlsKeys {
                version: s("TLS 1.3"),
                cipher: s("TLS_CHACHA20_POLY1305_SHA256"),
            },
            Finding::Undecrypted {
                dir: Dir::ToClient,
                record: 3,
                reason: s("bad tag"),
            },
            Finding::TlsTraffic {
                records_to_server: 1,
                bytes_to_server: 2,
                records_to_client: 3,
                bytes_to_client: 4,
                sizes: vec![5, -6],
                times: vec![0.0, 1.5],
                duration: 1.5,
                decrypted: 9,
                undecrypted: 1,
            },
            Finding::UdpFlow {
                client: s("127.0.0.1:5000"),
                server: s("127.0.0.1:6000"),
            },
        ]
    }

    /// The exact lines scripts, labs and tests read: the JSON keys, their
    /// order (sorted) and values, and the text, for every kind of finding.
    /// Taken from the hand-built `json!` objects these types replaced.
    #[test]
    fn every_finding_prints_the_lines_it_always_printed() {
        let want_json = [
            r#"{"client":"127.0.0.1:40000","conn":0,"mid_stream":true,"server":"127.0.0.1:5222","ts":1700000000.25,"type":"connection"}"#,
            r#"{"conn":1,"dir":"to-server","protocol":"xmpp","ts":1700000000.25,"type":"protocol"}"#,
            r#"{"conn":2,"dir":"to-client","from":"localhost","to":null,"ts":1700000000.25,"type":"stream"}"#,
            r#"{"conn":3,"mechanisms":["PLAIN","SCRAM-SHA-1"],"registration":true,"starttls":true,"starttls_required":false,"ts":1700000000.25,"type":"features"}"#,
            r#"{"conn":4,"detail":"SCRAM-SHA-1 salt=x i=4096","kind":"scram","note":"offline attack","password":null,"ts":1700000000.25,"type":"credential","user":"alice"}"#,
            r#"{"conn":5,"jid":"a@b/c","ts":1700000000.25,"type":"bound-jid"}"#,
            r#"{"conn":6,"jid":"bob@b","name":null,"subscription":"both","ts":1700000000.25,"type":"contact"}"#,
            r#"{"conn":7,"from":"a@b","kind":"subscribe","to":null,"ts":1700000000.25,"type":"subscription"}"#,
            r#"{"available":false,"conn":8,"from":null,"show":"away","status":null,"to":"x@y","ts":1700000000.25,"type":"presence"}"#,
            r#"{"body":"hi \"there\"\n\u001b","conn":9,"from":"a@b","kind":"chat","time":"2023-11-14T22:13:20Z","to":"c@d","ts":1700000000.25,"type":"message"}"#,
            r#"{"body":"old","conn":10,"from":null,"kind":"groupchat","time":"2020-01-01T00:00:00Z","to":null,"ts":1700000000.25,"type":"message"}"#,
            r#"{"complete":false,"conn":11,"duplicate_blocks":2,"missing_blocks":1,"name":"f.txt","offered_sha256":null,"offered_size":12,"path":"/tmp/x","reordered_blocks":3,"sha256":"ab","sha256_matches":null,"sid":"s1","size":10,"ts":1700000000.25,"type":"file"}"#,
            r#"{"conn":12,"to_client_offset":200,"to_server_offset":100,"ts":1700000000.25,"type":"tls-switch"}"#,
            r#"{"alpn":["xmpp-client"],"ciphers":["A","B"],"conn":13,"groups":[],"sni":"localhost","ts":1700000000.25,"type":"client-hello","versions":["TLS1.3"]}"#,
            r#"{"cipher":"TLS_AES_128_GCM_SHA256","conn":14,"ts":1700000000.25,"type":"server-hello","version":"TLS1.3"}"#,
            r#"{"alert":"encrypted (2 bytes)","conn":15,"dir":"to-client","ts":1700000000.25,"type":"alert"}"#,
            r#"{"bytes_to_client":4,"bytes_to_server":2,"conn":16,"decrypted":0,"duration":1.5,"plaintext_recovered":false,"records_to_client":3,"records_to_server":1,"sizes":[5,-6],"times":[0.0,1.5],"ts":1700000000.25,"type":"tls-traffic","undecrypted":0}"#,
            r#"{"conn":17,"dir":"to-server","len":8,"offset":7,"ts":1700000000.25,"type":"gap"}"#,
            r#"{"conn":18,"dir":"to-client","ts":1700000000.25,"type":"malformed","what":"bad"}"#,
            r#"{"condition":"host-unknown","conn":19,"dir":"to-server","ts":1700000000.25,"type":"stream-error"}"#,
            r#"{"cipher":"TLS_CHACHA20_POLY1305_SHA256","conn":20,"ts":1700000000.25,"type":"tls-keys","version":"TLS 1.3"}"#,
            r#"{"conn":21,"dir":"to-client","reason":"bad tag","record":3,"ts":1700000000.25,"type":"undecrypted"}"#,
            r#"{"bytes_to_client":4,"bytes_to_server":2,"conn":22,"decrypted":9,"duration":1.5,"plaintext_recovered":true,"records_to_client":3,"records_to_server":1,"sizes":[5,-6],"times":[0.0,1.5],"ts":1700000000.25,"type":"tls-traffic","undecrypted":1}"#,
            r#"{"client":"127.0.0.1:5000","conn":23,"server":"127.0.0.1:6000","ts":1700000000.25,"type":"udp-flow"}"#,
        ];
        let want_text = [
            r#"#0 connection 127.0.0.1:40000 -> 127.0.0.1:5222 (already open when the capture started)"#,
            r#"#1 C->S speaks xmpp"#,
            r#"#2 S->C stream to=(not stated) from=localhost"#,
            r#"#3 features: STARTTLS offered (optional: can be stripped); SASL PLAIN SCRAM-SHA-1; registration open"#,
            r#"#4 CREDENTIAL scram user=alice SCRAM-SHA-1 salt=x i=4096 (offline attack)"#,
            r#"#5 bound JID a@b/c"#,
            r#"#6 contact bob@b subscription=both"#,
            r#"#7 subscription subscribe a@b -> (not stated)"#,
            r#"#8 presence (not stated) unavailable [away] (to x@y)"#,
            r#"#9 MESSAGE chat a@b -> c@d at 2023-11-14T22:13:20Z: hi "there"\n\u{1b}"#,
            r#"#10 MESSAGE groupchat (not stated) -> (not stated) at 2020-01-01T00:00:00Z: old"#,
            r#"#11 FILE f.txt 10 bytes sha256 ab (incomplete; 1 block missing; 2 blocks duplicate, ignored; 3 blocks out of order, put back in order) exported to /tmp/x"#,
            r#"#12 switches to TLS after <proceed/>: client->server at byte 100, server->client at byte 200"#,
            r#"#13 TLS ClientHello SNI=localhost ALPN=[xmpp-client] versions=[TLS1.3] 2 cipher suites, key shares []"#,
            r#"#14 TLS ServerHello TLS1.3 TLS_AES_128_GCM_SHA256"#,
            r#"#15 S->C TLS alert encrypted (2 bytes)"#,
            r#"#16 TLS application data: 1 records / 2 bytes to the server, 3 / 4 to the client, over 1.500 s; no plaintext recovered"#,
            r#"#17 C->S 8 bytes missing at byte 7 (not captured)"#,
            r#"#18 S->C malformed: bad"#,
            r#"#19 C->S stream error host-unknown"#,
            r#"#20 TLS session secrets found in the key log (TLS 1.3 TLS_CHACHA20_POLY1305_SHA256): DECRYPTING, what follows was read inside TLS"#,
            r#"#21 S->C TLS record 3 NOT decrypted: bad tag"#,
            r#"#22 TLS application data: 1 records / 2 bytes to the server, 3 / 4 to the client, over 1.500 s; 9 records DECRYPTED with the key log, 1 NOT"#,
            r#"#23 UDP datagrams 127.0.0.1:5000 -> 127.0.0.1:6000 (payload not dissected)"#,
        ];
        let all = one_of_each();
        assert_eq!(all.len(), want_json.len());
        for (i, f) in all.iter().enumerate() {
            let r = Record::new(i as ConnId, 1700000000.25, f);
            assert_eq!(crate::jsonl::line(&r), want_json[i], "{}", f.kind());
            assert_eq!(r.to_string(), want_text[i], "{}", f.kind());
            // `kind()` names the JSON `type`: the two cannot disagree.
            assert_eq!(json(0, 0.0, f)["type"], f.kind());
        }
    }
}
