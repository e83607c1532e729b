//! What the proxy reports: one event per line, as text for people or as a
//! JSON object (`--json`) for scripts, both from the same value.
//!
//! Everything a peer sent is made safe for a terminal before it is shown
//! as text (`protocol::display`): the proxy prints what an attacker
//! controls.

use std::fmt;

use protocol::display::terminal_safe;
use protocol::{Element, ns};
use serde::Serialize;

use crate::attack::Attack;

/// Which way bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dir {
    /// From the client, through the proxy, to the server.
    ClientToServer,
    /// From the server, through the proxy, to the client.
    ServerToClient,
}

impl fmt::Display for Dir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dir::ClientToServer => "c->s",
            Dir::ServerToClient => "s->c",
        })
    }
}

/// One thing that happened.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Event {
    /// A client connected and the proxy reached the server.
    Connection {
        /// The connection's number in this run.
        conn: u64,
        /// The client's address.
        client: String,
        /// The server's address.
        upstream: String,
    },
    /// The server could not be reached; the client was closed.
    UpstreamDown {
        /// The connection's number.
        conn: u64,
        /// The server's address.
        upstream: String,
        /// Why.
        error: String,
    },
    /// A stream header.
    Stream {
        /// The connection's number.
        conn: u64,
        /// Which way.
        dir: Dir,
        /// Its `to` (the domain the client asks for).
        to: Option<String>,
        /// Its `from`.
        from: Option<String>,
    },
    /// A stanza or nonza, summarised: name, addressing, and its text.
    Stanza {
        /// The connection's number.
        conn: u64,
        /// Which way.
        dir: Dir,
        /// The summary.
        stanza: String,
    },
    /// From this byte on, this direction is TLS (or not XMPP at all).
    Opaque {
        /// The connection's number.
        conn: u64,
        /// Which way.
        dir: Dir,
        /// The byte offset in this direction.
        at_byte: u64,
        /// Why: `tls`, `direct-tls` or what the parser could not read.
        reason: String,
    },
    /// What an attack did to the traffic.
    Attack {
        /// The connection's number.
        conn: u64,
        /// The attack.
        attack: Attack,
        /// What it did.
        did: String,
    },
    /// A secret read off the wire.
    Captured {
        /// The connection's number.
        conn: u64,
        /// What it is (`password`).
        what: String,
        /// Whose.
        user: String,
        /// The secret itself: on the wire for anyone in the path.
        secret: String,
        /// Where it was found (`SASL PLAIN`, `registration`).
        source: String,
    },
    /// The connection ended.
    Closed {
        /// The connection's number.
        conn: u64,
        /// Bytes from the client.
        bytes_up: u64,
        /// Bytes from the server.
        bytes_down: u64,
    },
    /// What an attack obtained on this connection, or that it failed.
    Verdict {
        /// The connection's number.
        conn: u64,
        /// The attack.
        attack: Attack,
        /// One line: what happened.
        outcome: String,
        /// Whether the client (or TLS) defeated it.
        defeated: bool,
    },
    /// Events not shown because the output could not keep up.
    Dropped {
        /// How many.
        events: u64,
    },
}

impl Event {
    /// The connection an event belongs to, if any.
    pub fn conn(&self) -> Option<u64> {
        match self {
            Event::Connection { conn, .. }
            | Event::UpstreamDown { conn, .. }
            | Event::Stream { conn, .. }
            | Event::Stanza { conn, .. }
            | Event::Opaque { conn, .. }
            | Event::Attack { conn, .. }
            | Event::Captured { conn, .. }
            | Event::Closed { conn, .. }
            | Event::Verdict { conn, .. } => Some(*conn),
            Event::Dropped { .. } => None,
        }
    }

    /// The JSON line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let safe = |s: &str| terminal_safe(s).into_owned();
        match self {
            Event::Connection {
                conn,
                client,
                upstream,
            } => write!(f, "#{conn} connection from {client}, relayed to {upstream}"),
            Event::UpstreamDown {
                conn,
                upstream,
                error,
            } => write!(f, "#{conn} cannot reach the server {upstream}: {error}"),
            Event::Stream {
                conn,
                dir,
                to,
                from,
            } => write!(
                f,
                "#{conn} {dir} stream header to={} from={}",
                safe(to.as_deref().unwrap_or("-")),
                safe(from.as_deref().unwrap_or("-"))
            ),
            Event::Stanza { conn, dir, stanza } => write!(f, "#{conn} {dir} {}", safe(stanza)),
            Event::Opaque {
                conn,
                dir,
                at_byte,
                reason,
            } => write!(
                f,
                "#{conn} {dir} from byte {at_byte}: {} (passed on, unread)",
                safe(reason)
            ),
            // What an attack did names what the peer sent (a server name
            // from a ClientHello, an error): escaped like the rest.
            Event::Attack { conn, attack, did } => write!(f, "#{conn} {attack}: {}", safe(did)),
            Event::Captured {
                conn,
                what,
                user,
                secret,
                source,
            } => write!(
                f,
                "#{conn} CAPTURED {what} of {}: {} ({source})",
                safe(user),
                safe(secret)
            ),
            Event::Closed {
                conn,
                bytes_up,
                bytes_down,
            } => write!(
                f,
                "#{conn} closed ({bytes_up} bytes from the client, {bytes_down} from the server)"
            ),
            Event::Verdict {
                conn,
                attack,
                outcome,
                ..
            } => write!(f, "#{conn} verdict {attack}: {}", safe(outcome)),
            Event::Dropped { events } => write!(
                f,
                "{events} events not shown: the output did not keep up (the traffic was relayed)"
            ),
        }
    }
}

/// Longest summary of one stanza, in characters.
const SUMMARY_CHARS: usize = 240;

/// A one-line summary of an element: its name, the attributes that say
/// who and what, its first child, and its body or other text.
pub fn summarize(el: &Element) -> String {
    let mut s = format!("<{}", el.name);
    for a in ["type", "to", "from", "mechanism", "id"] {
        if let Some(v) = el.get_attr(a) {
            s.push_str(&format!(" {a}='{v}'"));
        }
    }
    s.push('>');
    if let Some(body) = el.child_text("body", ns::CLIENT) {
        s.push_str(&format!(" body: {body}"));
    } else if el.is("features", ns::STREAM) {
        // What the server offers is what the attacks change: every child,
        // and the mechanisms by name.
        let offers: Vec<String> = el
            .elements()
            .map(|c| {
                if c.is("mechanisms", ns::SASL) {
                    let names: Vec<String> = c.elements().map(Element::text_content).collect();
                    format!("mechanisms: {}", names.join(" "))
                } else if c.has_child("required", &c.ns) {
                    format!("{} (required)", c.name)
                } else {
                    c.name.to_string()
                }
            })
            .collect();
        s.push_str(&format!(" {}", offers.join(", ")));
    } else if let Some(child) = el.elements().next() {
        s.push_str(&format!(" <{}", child.name));
        let inner: Vec<String> = child
            .elements()
            .take(4)
            .map(|c| c.name.to_string())
            .collect();
        if !inner.is_empty() {
            s.push_str(&format!(": {}", inner.join(", ")));
        }
        s.push('>');
    } else {
        let text = el.text_content();
        if !text.trim().is_empty() {
            s.push_str(&format!(" {}", text.trim()));
        }
    }
    if s.chars().count() > SUMMARY_CHARS {
        s = s.chars().take(SUMMARY_CHARS).collect::<String>() + "...";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_come_from_the_same_event() {
        let ev = Event::Captured {
            conn: 3,
            what: "password".into(),
            user: "alice".into(),
            secret: "s3cret\u{1b}[2J".into(),
            source: "SASL PLAIN".into(),
        };
        let text = ev.to_string();
        assert!(
            text.starts_with("#3 CAPTURED password of alice: s3cret"),
            "{text}"
        );
        // A peer's escape sequence never reaches the terminal raw.
        assert!(!text.contains('\u{1b}'), "{text:?}");
        let v: serde_json::Value = serde_json::from_str(&ev.to_json()).unwrap();
        assert_eq!(v["type"], "captured");
        assert_eq!(v["secret"], "s3cret\u{1b}[2J", "JSON keeps the exact bytes");
        assert_eq!(v["conn"], 3);
        let verdict = Event::Verdict {
            conn: 1,
            attack: Attack::StripStarttls,
            outcome: "client refused".into(),
            defeated: true,
        };
        assert_eq!(
            verdict.to_string(),
            "#1 verdict strip-starttls: client refused"
        );
        let v: serde_json::Value = serde_json::from_str(&verdict.to_json()).unwrap();
        assert_eq!(v["attack"], "strip-starttls");
        assert_eq!(v["defeated"], true);
    }

    #[test]
    fn summaries_name_the_stanza_its_addressing_and_its_text() {
        let m = Element::new("message", ns::CLIENT)
            .attr("to", "bob@localhost")
            .attr("type", "chat")
            .text_child("body", ns::CLIENT, "hi bob");
        assert_eq!(
            summarize(&m),
            "<message type='chat' to='bob@localhost'> body: hi bob"
        );
        let auth = Element::new("auth", ns::SASL)
            .attr("mechanism", "PLAIN")
            .text("AGFsaWNlAHB3");
        assert_eq!(summarize(&auth), "<auth mechanism='PLAIN'> AGFsaWNlAHB3");
        let long =
            Element::new("message", ns::CLIENT).text_child("body", ns::CLIENT, "x".repeat(1000));
        assert!(summarize(&long).chars().count() <= SUMMARY_CHARS + 3);
        let features = Element::new("features", ns::STREAM)
            .child(Element::new("starttls", ns::TLS).child(Element::new("required", ns::TLS)))
            .child(
                Element::new("mechanisms", ns::SASL)
                    .text_child("mechanism", ns::SASL, "SCRAM-SHA-256")
                    .text_child("mechanism", ns::SASL, "PLAIN"),
            );
        assert_eq!(
            summarize(&features),
            "<features> starttls (required), mechanisms: SCRAM-SHA-256 PLAIN"
        );
    }
}
