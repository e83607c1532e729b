//! The leak check: search every reassembled byte, both directions of every
//! connection, for secrets that must never cross the wire readable.
//!
//! A needle is searched as is, in hex (both cases), and in base64 at each of
//! the three alignments it can take inside a longer base64 text (a password
//! inside SASL PLAIN is base64-encoded together with the bytes before it, so
//! encoding the needle alone would miss it). Base64 is an encoding, not a
//! protection: the guard treats it as plaintext, as an attacker would.
//!
//! Search is streaming: each direction keeps only the last few bytes of the
//! previous chunk, so memory stays bounded whatever the capture's size.
//!
//! The verdict is a [`NoLeak`] or one [`Leak`] per needle found: each a text
//! line or a JSON object from the same value, and neither shows the secret.

use std::collections::HashMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Serialize, Serializer};

use crate::analyze::Layer;
use crate::reassembly::{ConnId, Dir};

/// Bytes of context shown on each side of a hit.
const CONTEXT: usize = 24;

/// One form of a needle to look for.
#[derive(Debug, Clone)]
struct Form {
    needle: usize,
    how: &'static str,
    bytes: Vec<u8>,
}

/// The base64 text that always appears when `needle` sits at byte
/// position `shift` (mod 3) of a base64-encoded message: the characters
/// that depend on the needle's bytes alone.
fn base64_core(needle: &[u8], shift: usize) -> Option<Vec<u8>> {
    let mut padded = vec![0u8; shift];
    padded.extend_from_slice(needle);
    let enc = B64.encode(&padded);
    let enc = enc.trim_end_matches('=');
    // Characters touched by the filler bytes in front are unreliable; so is
    // the last one when the needle ends mid-group.
    let lead = match shift {
        0 => 0,
        1 => 2,
        _ => 3,
    };
    let end = (shift + needle.len()) * 4 / 3;
    let end = end.min(enc.len());
    (end > lead + 3).then(|| enc.as_bytes()[lead..end].to_vec())
}

/// A hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Which needle (index into the list given).
    pub needle: usize,
    /// Found as: `plain`, `base64`, `hex`.
    pub how: &'static str,
    /// The connection.
    pub conn: ConnId,
    /// The direction.
    pub dir: Dir,
    /// On the wire, or inside TLS (opened with a key log).
    pub layer: Layer,
    /// Stream offset of the first byte of the match (in the decrypted
    /// bytes, for a hit inside TLS).
    pub offset: u64,
    /// A little text around it, made printable.
    pub context: String,
}

/// The guard's verdict when no needle was found: one line of text, or one
/// `guard` JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename = "guard")]
pub struct NoLeak {
    /// Always false: this verdict is the one for "nothing found" (each
    /// needle found is a [`Leak`] instead). Scripts read it.
    found: bool,
    /// Connections checked.
    pub connections: u64,
    /// Bytes checked.
    pub bytes: u64,
}

impl NoLeak {
    /// Nothing found in `connections` connections carrying `bytes` bytes.
    pub fn new(connections: u64, bytes: u64) -> Self {
        NoLeak {
            found: false,
            connections,
            bytes,
        }
    }
}

impl fmt::Display for NoLeak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no needle found in {} connection{}, {} bytes",
            self.connections,
            if self.connections == 1 { "" } else { "s" },
            self.bytes
        )
    }
}

/// One needle found, as the guard reports it: one `LEAK:` line of text, or
/// one `leak` JSON object. The needle is a secret, so neither says what it
/// is: the text names it by number, length and first two characters, the
/// JSON by number only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename = "leak")]
pub struct Leak<'a> {
    /// Which needle, counted from 1 as the user gave them.
    pub needle: usize,
    /// Found as: `plain`, `base64`, `hex`.
    pub how: &'static str,
    /// The connection.
    pub conn: ConnId,
    /// Its `client -> server` addresses, if known.
    pub endpoints: String,
    /// The direction, in words (`client to server`).
    #[serde(serialize_with = "dir_words")]
    pub dir: Dir,
    /// Found inside TLS, in what a key log opened (absent: on the wire).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub decrypted: bool,
    /// Stream offset of the first byte of the match.
    pub offset: u64,
    /// A little text around it, made printable.
    pub context: &'a str,
    /// How the text line names the needle.
    #[serde(skip)]
    label: String,
}

impl<'a> Leak<'a> {
    /// The report of `hit`, whose needle is `needle` (the secret itself,
    /// used only for its length and first two characters), found on the
    /// connection between `endpoints`.
    pub fn new(hit: &'a Hit, needle: &str, endpoints: String) -> Self {
        let shown: String = needle.chars().take(2).collect();
        Leak {
            needle: hit.needle + 1,
            how: hit.how,
            conn: hit.conn,
            endpoints,
            dir: hit.dir,
            decrypted: hit.layer == Layer::Decrypted,
            offset: hit.offset,
            context: &hit.context,
            label: format!(
                "needle #{} ({} chars, starts '{shown}')",
                hit.needle + 1,
                needle.chars().count()
            ),
        }
    }
}

/// A direction in the words of a leak report.
fn words(dir: Dir) -> &'static str {
    match dir {
        Dir::ToServer => "client to server",
        Dir::ToClient => "server to client",
    }
}

fn dir_words<S: Serializer>(dir: &Dir, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(words(*dir))
}

impl fmt::Display for Leak<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LEAK: {} found as {} in connection #{} ({}), {}{}, at byte {}: ...{}...",
            self.label,
            self.how,
            self.conn,
            self.endpoints,
            words(self.dir),
            if self.decrypted {
                ", inside TLS (opened with the key log)"
            } else {
                ""
            },
            self.offset,
            self.context
        )
    }
}

/// The needle searcher.
#[derive(Debug)]
pub struct Guard {
    forms: Vec<Form>,
    longest: usize,
    /// Per direction: the tail of what came before, and its stream offset.
    tails: HashMap<(ConnId, Dir, Layer), (Vec<u8>, u64)>,
    /// Hits so far (one per needle, form, connection and direction).
    pub hits: Vec<Hit>,
    /// Bytes searched.
    pub bytes: u64,
}

/// The context around a hit, as printable ASCII: it is peer bytes, and it
/// goes to a terminal or a CI log, where an escape sequence or a newline in
/// it would rewrite the screen or forge a log line (terminal injection).
fn printable(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                '.'
            }
        })
        .collect()
}

impl Guard {
    /// A guard for these needles (empty ones are ignored).
    pub fn new(needles: &[String]) -> Self {
        let mut forms = Vec::new();
        for (i, n) in needles.iter().enumerate() {
            let b = n.as_bytes();
            if b.is_empty() {
                continue;
            }
            forms.push(Form {
                needle: i,
                how: "plain",
                bytes: b.to_vec(),
            });
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            forms.push(Form {
                needle: i,
                how: "hex",
                bytes: hex.clone().into_bytes(),
            });
            forms.push(Form {
                needle: i,
                how: "hex",
                bytes: hex.to_uppercase().into_bytes(),
            });
            for shift in 0..3 {
                if let Some(core) = base64_core(b, shift) {
                    forms.push(Form {
                        needle: i,
                        how: "base64",
                        bytes: core,
                    });
                }
            }
        }
        let longest = forms.iter().map(|f| f.bytes.len()).max().unwrap_or(1);
        Guard {
            forms,
            longest,
            tails: HashMap::new(),
            hits: Vec::new(),
            bytes: 0,
        }
    }

    /// Forgets what is kept of a connection that is over (the tail of each
    /// direction and layer): memory stays bounded by the connections open,
    /// not by every one a capture ever had.
    pub fn forget(&mut self, conn: ConnId) {
        for dir in [Dir::ToServer, Dir::ToClient] {
            for layer in [Layer::Wire, Layer::Decrypted] {
                self.tails.remove(&(conn, dir, layer));
            }
        }
    }

    /// Searches the next bytes of one direction of one layer (`offset` is
    /// where they start in that layer's stream).
    pub fn feed(&mut self, conn: ConnId, dir: Dir, layer: Layer, offset: u64, data: &[u8]) {
        self.bytes += data.len() as u64;
        let (tail, tail_at) = self
            .tails
            .remove(&(conn, dir, layer))
            .unwrap_or((Vec::new(), offset));
        // Join the tail only when it is contiguous (a gap breaks matches).
        let (mut hay, base) = if tail_at + tail.len() as u64 == offset {
            (tail, tail_at)
        } else {
            (Vec::new(), offset)
        };
        let old = hay.len();
        hay.extend_from_slice(data);
        for f in &self.forms {
            let n = f.bytes.len();
            if hay.len() < n {
                continue;
            }
            for start in 0..=hay.len() - n {
                // Only matches that end in the new bytes: the rest were
                // found last time.
                if start + n <= old {
                    continue;
                }
                if hay[start..start + n] == f.bytes[..] {
                    let dup = self.hits.iter().any(|h| {
                        h.needle == f.needle
                            && h.how == f.how
                            && h.conn == conn
                            && h.dir == dir
                            && h.layer == layer
                    });
                    if !dup {
                        // The context shows where, never what: the match
                        // itself is masked, so the CI log does not become
                        // the leak.
                        let lo = start.saturating_sub(CONTEXT);
                        let hi = (start + n + CONTEXT).min(hay.len());
                        let context = format!(
                            "{}[needle #{}]{}",
                            printable(&hay[lo..start]),
                            f.needle + 1,
                            printable(&hay[start + n..hi])
                        );
                        self.hits.push(Hit {
                            needle: f.needle,
                            how: f.how,
                            conn,
                            dir,
                            layer,
                            offset: base + start as u64,
                            context,
                        });
                    }
                    break;
                }
            }
        }
        // Enough for the longest form to straddle chunks, and for context.
        let keep = self.longest.saturating_sub(1).max(CONTEXT).min(hay.len());
        let cut = hay.len() - keep;
        self.tails
            .insert((conn, dir, layer), (hay[cut..].to_vec(), base + cut as u64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(needle: &str, stream: &[u8], chunk: usize) -> Vec<&'static str> {
        let mut g = Guard::new(&[needle.to_string()]);
        let mut off = 0u64;
        for c in stream.chunks(chunk.max(1)) {
            g.feed(0, Dir::ToServer, Layer::Wire, off, c);
            off += c.len() as u64;
        }
        let mut v: Vec<&'static str> = g.hits.iter().map(|h| h.how).collect();
        v.sort();
        v
    }

    #[test]
    fn a_needle_is_found_plain_in_hex_and_in_base64_at_every_alignment() {
        let secret = "hunter2-secret";
        for prefix in ["", "a", "ab", "abc", "\0alice\0"] {
            let msg = format!("{prefix}{secret}tail");
            let b64 = B64.encode(msg.as_bytes());
            let stream = format!("<auth mechanism='PLAIN'>{b64}</auth>");
            for chunk in [1, 3, 7, 1000] {
                assert_eq!(
                    find(secret, stream.as_bytes(), chunk),
                    ["base64"],
                    "prefix {prefix:?} chunk {chunk}"
                );
            }
        }
        assert_eq!(
            find(secret, format!("<b>{secret}</b>").as_bytes(), 5),
            ["plain"]
        );
        let hex: String = secret.bytes().map(|b| format!("{b:02X}")).collect();
        assert_eq!(find(secret, hex.as_bytes(), 2), ["hex"]);
        assert!(find(secret, b"nothing to see here, hunter2-secre!", 4).is_empty());
    }

    #[test]
    fn hits_report_offset_and_context_and_gaps_break_matches() {
        let mut g = Guard::new(&["pw".into(), "other".into()]);
        g.feed(3, Dir::ToClient, Layer::Wire, 0, b"xxxx<password>p");
        g.feed(3, Dir::ToClient, Layer::Wire, 15, b"w</password>");
        assert_eq!(g.hits.len(), 1);
        assert_eq!(
            (g.hits[0].needle, g.hits[0].offset, g.hits[0].conn),
            (0, 14, 3)
        );
        assert_eq!(g.hits[0].context, "xxxx<password>[needle #1]</password>");
        // "ot" then a 10-byte hole then "her": not a match.
        g.feed(4, Dir::ToServer, Layer::Wire, 0, b"ot");
        g.feed(4, Dir::ToServer, Layer::Wire, 12, b"her");
        assert_eq!(g.hits.len(), 1);
        assert_eq!(g.bytes, 32);
        // What a connection kept goes with it.
        g.forget(4);
        g.forget(3);
        assert!(g.tails.is_empty());
    }

    /// The guard's lines as scripts and CI read them, exactly as the
    /// hand-built objects and format strings these types replaced printed.
    #[test]
    fn verdict_lines_keep_their_shape() {
        let none = NoLeak::new(92, 692319);
        assert_eq!(
            crate::jsonl::line(&none),
            r#"{"bytes":692319,"connections":92,"found":false,"type":"guard"}"#
        );
        assert_eq!(
            none.to_string(),
            "no needle found in 92 connections, 692319 bytes"
        );
        let hit = Hit {
            needle: 0,
            how: "base64",
            conn: 4,
            dir: Dir::ToClient,
            layer: Layer::Wire,
            offset: 373,
            context: "x[needle #1]y".into(),
        };
        let leak = Leak::new(&hit, "alice", "127.0.0.1:1 -> 127.0.0.1:2".into());
        assert_eq!(
            crate::jsonl::line(&leak),
            r#"{"conn":4,"context":"x[needle #1]y","dir":"server to client","endpoints":"127.0.0.1:1 -> 127.0.0.1:2","how":"base64","needle":1,"offset":373,"type":"leak"}"#
        );
        assert_eq!(
            leak.to_string(),
            "LEAK: needle #1 (5 chars, starts 'al') found as base64 in connection #4 (127.0.0.1:1 -> 127.0.0.1:2), server to client, at byte 373: ...x[needle #1]y..."
        );
        // The secret itself is in neither.
        assert!(
            !crate::jsonl::line(&leak).contains("alice") && !leak.to_string().contains("alice")
        );
    }
}
