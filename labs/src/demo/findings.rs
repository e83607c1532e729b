//! The sniffer's JSON lines sorted, one at a time, into what an attacker
//! learned about each twin, by category. The live view shows each finding
//! as it comes; the final table, `--json` and `--html` read the same
//! [`Findings`] at the end, so the three cannot disagree.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::chat::Twin;

/// What the sniffer found about one twin: category → findings, in the
/// order they were found, each once.
#[derive(Debug, Default)]
pub(super) struct Side {
    pub(super) categories: BTreeMap<&'static str, Vec<String>>,
}

/// One new finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Found {
    pub(super) twin: Twin,
    pub(super) category: &'static str,
    pub(super) text: String,
}

/// The sorting, with what it learned about each connection so far.
pub(super) struct Findings {
    /// Server port → twin.
    ports: HashMap<u16, Twin>,
    conn_twin: HashMap<u64, Twin>,
    /// A client's own stanzas carry no `from`; its bound JID says who it is.
    bound: HashMap<u64, String>,
    first_ts: Option<f64>,
    pub(super) sides: HashMap<Twin, Side>,
}

impl Findings {
    pub(super) fn new(ports: HashMap<u16, Twin>) -> Findings {
        let mut sides = HashMap::new();
        sides.insert(Twin::Plain, Side::default());
        sides.insert(Twin::Tls, Side::default());
        Findings {
            ports,
            conn_twin: HashMap::new(),
            bound: HashMap::new(),
            first_ts: None,
            sides,
        }
    }

    /// Takes one line of `sniffer --json`; returns what it revealed that
    /// was not known yet (the same stanza is seen going in and coming out:
    /// it counts once).
    pub(super) fn add(&mut self, line: &str) -> Vec<Found> {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return Vec::new();
        };
        let conn = v["conn"].as_u64().unwrap_or(u64::MAX);
        if v["type"] == "connection" {
            let port = v["server"]
                .as_str()
                .and_then(|s| s.rsplit(':').next())
                .and_then(|p| p.parse::<u16>().ok());
            if let Some(t) = port.and_then(|p| self.ports.get(&p)) {
                self.conn_twin.insert(conn, *t);
            }
        }
        let Some(twin) = self.conn_twin.get(&conn).copied() else {
            return Vec::new();
        };
        if v["type"] == "bound-jid" {
            let jid = v["jid"].as_str().unwrap_or("?");
            self.bound
                .insert(conn, jid.split('/').next().unwrap_or(jid).to_string());
        }
        let me = self.bound.get(&conn).cloned().unwrap_or_else(|| "?".into());
        let ts = v["ts"].as_f64().unwrap_or(0.0);
        let t0 = *self.first_ts.get_or_insert(ts);
        let mut found = Vec::new();
        for (category, text) in categorize(&v, twin, &me, ts - t0) {
            let list = self
                .sides
                .entry(twin)
                .or_default()
                .categories
                .entry(category)
                .or_default();
            if !list.contains(&text) {
                list.push(text.clone());
                found.push(Found {
                    twin,
                    category,
                    text,
                });
            }
        }
        found
    }
}

/// What one sniffer line says, by category (a plaintext message also
/// gives away its size).
fn categorize(v: &Value, twin: Twin, me: &str, since_start: f64) -> Vec<(&'static str, String)> {
    let s = |k: &str| v[k].as_str().unwrap_or("?").to_string();
    // An address, without the resource; a missing `from` is the client.
    let who = |k: &str| match v[k].as_str() {
        Some(x) => x.split('/').next().unwrap_or(x).to_string(),
        None => me.to_string(),
    };
    let one = |cat: &'static str, text: String| vec![(cat, text)];
    match v["type"].as_str().unwrap_or("") {
        "credential" => one(
            "credentials",
            match v["password"].as_str() {
                Some(p) => format!("{}: password {p} ({})", s("user"), s("kind")),
                None => format!("{}: {} {}", s("user"), s("kind"), s("detail")),
            },
        ),
        "message" => {
            let mut out = vec![(
                "messages",
                format!("{} -> {}: {}", who("from"), who("to"), s("body")),
            )];
            // Plaintext sizes: every message's length is right there.
            if twin == Twin::Plain {
                out.push(("sizes", format!("{} bytes: {}", s("body").len(), s("body"))));
            }
            out
        }
        // End to end (OMEMO): the text is not on the wire; who, which
        // devices and the size are.
        "encrypted-message" => {
            let bytes = v["payload_bytes"].as_u64().unwrap_or(0);
            let what = if bytes == 0 {
                "an empty message (it only moves the keys on)".to_string()
            } else {
                format!("text hidden, {bytes} bytes of ciphertext")
            };
            vec![
                (
                    "end-to-end messages",
                    format!(
                        "{} -> {}: {what} ({}, device {} to {})",
                        who("from"),
                        who("to"),
                        s("scheme"),
                        v["sender_device"],
                        v["devices"]
                            .as_array()
                            .map(|d| d
                                .iter()
                                .map(|x| x.to_string())
                                .collect::<Vec<_>>()
                                .join(", "))
                            .unwrap_or_default()
                    ),
                ),
                ("sizes", format!("{bytes} bytes of ciphertext (end-to-end)")),
            ]
        }
        "contact" => one(
            "contacts",
            match v["subscription"].as_str() {
                Some(sub) => format!("{} (subscription {sub})", s("jid")),
                None => format!("{} (added to a roster)", s("jid")),
            },
        ),
        "subscription" => one(
            "contacts",
            format!("{} {} -> {}", s("kind"), who("from"), who("to")),
        ),
        "presence" if !v["status"].is_null() => {
            one("presence", format!("{}: {}", who("from"), s("status")))
        }
        "file" => one(
            "file",
            format!(
                "{} {} bytes sha256 {}",
                s("name"),
                v["size"],
                &s("sha256")[..16.min(s("sha256").len())]
            ),
        ),
        "stream" if !v["to"].is_null() => one("server name", format!("stream to {}", s("to"))),
        "client-hello" => one("server name", format!("SNI {}", s("sni"))),
        "connection" => one(
            "who talks to whom, when",
            format!(
                "{} -> {} at +{since_start:.3} s",
                v["client"].as_str().unwrap_or("?"),
                v["server"].as_str().unwrap_or("?"),
            ),
        ),
        "tls-traffic" => one(
            "sizes",
            format!(
                "{} records / {} bytes up, {} / {} down; first sizes {}",
                v["records_to_server"],
                v["bytes_to_server"],
                v["records_to_client"],
                v["bytes_to_client"],
                v["sizes"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .take(6)
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join(" "))
                    .unwrap_or_default()
            ),
        ),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_are_sorted_by_twin_and_counted_once() {
        let mut f = Findings::new([(5222, Twin::Plain), (5322, Twin::Tls)].into());
        let conn = |n: u64, port: u16| {
            format!(
                r#"{{"type":"connection","conn":{n},"client":"127.0.0.1:40000","server":"127.0.0.1:{port}","ts":1.0}}"#
            )
        };
        assert_eq!(f.add(&conn(1, 5222)).len(), 1);
        f.add(&conn(2, 5322));
        f.add(r#"{"type":"bound-jid","conn":1,"jid":"alice@localhost/x"}"#);
        let msg = r#"{"type":"message","conn":1,"to":"bob@localhost","body":"hi","ts":2.0}"#;
        let found = f.add(msg);
        assert_eq!(
            found,
            [
                Found {
                    twin: Twin::Plain,
                    category: "messages",
                    text: "alice@localhost -> bob@localhost: hi".into()
                },
                Found {
                    twin: Twin::Plain,
                    category: "sizes",
                    text: "2 bytes: hi".into()
                }
            ]
        );
        // The same stanza again (seen coming out of the server): nothing new.
        assert!(f.add(msg).is_empty());
        // Traffic of a connection to neither server, and junk, count for nothing.
        assert!(
            f.add(r#"{"type":"message","conn":9,"body":"x"}"#)
                .is_empty()
        );
        assert!(f.add("not json").is_empty());
        let hello = r#"{"type":"client-hello","conn":2,"sni":"localhost","ts":3.0}"#;
        assert_eq!(f.add(hello)[0].twin, Twin::Tls);
        assert_eq!(
            f.sides[&Twin::Tls].categories["server name"],
            ["SNI localhost"]
        );
    }
}
