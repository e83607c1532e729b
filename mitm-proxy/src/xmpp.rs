//! One direction of a relayed stream, cut into units the proxy can forward
//! (or change) one at a time: a stream header, a top-level element, the
//! closing tag; then raw bytes once the direction has switched to TLS, or
//! once it stopped being XMPP the parser can read.
//!
//! Forwarding whole parsed units, not raw reads, is what lets an attack
//! change a stanza that TCP split across segments: the proxy holds the
//! first half until the element is complete. An element nobody changes is
//! forwarded as the exact bytes that arrived, never re-serialized.

use protocol::parser::{Event, Mode, StreamParser};
use protocol::{Element, Limits, StreamHeader, ns};

/// The largest element the proxy holds while it waits for the end of it.
/// Four times the chat's default stanza limit, so that a server run with a
/// larger `--max-stanza` still relays parsed; anything larger is passed on
/// untouched (see [`Unit::Raw`]) rather than buffered without bound.
pub const MAX_HELD_ELEMENT: usize = 256 * 1024;

/// What one piece of a direction is.
#[derive(Debug, Clone, PartialEq)]
pub enum Unit {
    /// A `<stream:stream>` opening tag (also after a restart).
    Header(StreamHeader),
    /// A complete top-level element: a stanza, or a nonza like `<auth/>`.
    Element(Element),
    /// `</stream:stream>`.
    Close,
    /// Bytes passed on as they are: TLS, or what the parser could not read.
    Raw,
}

/// A unit and the bytes it arrived as.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// What it is.
    pub unit: Unit,
    /// Its exact bytes on the wire.
    pub bytes: Vec<u8>,
}

/// Why a direction stopped being parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawReason {
    /// TLS starts here: after `<starttls/>` from the client, after
    /// `<proceed/>` from the server.
    Tls,
    /// The first bytes were a TLS record: direct TLS, no XMPP in the clear.
    DirectTls,
    /// The parser could not read this (garbage, or a limit); the rest goes
    /// on untouched and the far side decides.
    Unreadable(String),
}

/// One direction of a relayed stream.
pub struct Half {
    parser: StreamParser,
    /// Stream offset where the bytes stopped being parsed, and why.
    raw: Option<(u64, RawReason)>,
    /// Bytes seen in this direction.
    total: u64,
}

impl Default for Half {
    fn default() -> Self {
        Half::new()
    }
}

impl Half {
    /// A direction that has seen nothing yet.
    pub fn new() -> Half {
        let limits = Limits {
            max_stanza_bytes: MAX_HELD_ELEMENT,
            ..Limits::default()
        };
        Half {
            // Lenient: stream restarts (after SASL success) are followed
            // without being told, as the sniffer does.
            parser: StreamParser::with_limits(Mode::Lenient, limits),
            raw: None,
            total: 0,
        }
    }

    /// The stream starts over inside TLS the proxy ends itself: a new
    /// parser, and the byte count goes on (it counts the whole connection).
    pub fn restart(&mut self) {
        let total = self.total;
        *self = Half::new();
        self.total = total;
    }

    /// Where and why this direction stopped being parsed, if it did.
    pub fn raw_since(&self) -> Option<&(u64, RawReason)> {
        self.raw.as_ref()
    }

    /// Bytes seen in this direction.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Passes everything from here on through untouched.
    fn go_raw(&mut self, reason: RawReason) -> Vec<u8> {
        let at = self.parser.offset();
        self.raw = Some((at, reason));
        self.parser.take_unconsumed()
    }

    /// Cuts newly read bytes into units. Whatever is not complete yet is
    /// held for the next read.
    pub fn push(&mut self, data: &[u8]) -> Vec<Piece> {
        self.total += data.len() as u64;
        if self.raw.is_some() {
            return vec![Piece {
                unit: Unit::Raw,
                bytes: data.to_vec(),
            }];
        }
        if self.parser.offset() == 0
            && self.parser.unconsumed().is_empty()
            && data.first() == Some(&0x16)
        {
            // A TLS handshake record (content type 22) as the very first
            // byte: the client speaks direct TLS.
            self.parser.feed(data);
            let rest = self.go_raw(RawReason::DirectTls);
            return vec![Piece {
                unit: Unit::Raw,
                bytes: rest,
            }];
        }
        self.parser.feed(data);
        let mut out = Vec::new();
        loop {
            let before = self.parser.offset();
            match self.parser.next_event() {
                Ok(Some(parsed)) => {
                    // Everything consumed, not just the event's own bytes:
                    // lenient parsing steps over stray text and end tags,
                    // and those bytes must be forwarded too.
                    let len = usize::try_from(self.parser.offset() - before).unwrap_or(usize::MAX);
                    let bytes = self
                        .parser
                        .held_from(before)
                        .map(|h| h[..len.min(h.len())].to_vec())
                        .unwrap_or_default();
                    let unit = match parsed.event {
                        Event::StreamOpen(h) => Unit::Header(h),
                        Event::Element(e) => Unit::Element(e),
                        Event::StreamClose => Unit::Close,
                    };
                    let switches = matches!(&unit, Unit::Element(e) if starts_tls(e));
                    out.push(Piece { unit, bytes });
                    if switches {
                        let rest = self.go_raw(RawReason::Tls);
                        if !rest.is_empty() {
                            out.push(Piece {
                                unit: Unit::Raw,
                                bytes: rest,
                            });
                        }
                        break;
                    }
                }
                Ok(None) => {
                    // Skipped junk with no event after it yet: forward it
                    // now, the next feed would drop it.
                    let skipped = usize::try_from(self.parser.offset() - before).unwrap_or(0);
                    if skipped > 0
                        && let Some(h) = self.parser.held_from(before)
                    {
                        out.push(Piece {
                            unit: Unit::Raw,
                            bytes: h[..skipped.min(h.len())].to_vec(),
                        });
                    }
                    // Whitespace between stanzas is a keepalive (RFC 6120
                    // 4.6.1): passed on at once, not held for the next one.
                    let pending = self.parser.unconsumed();
                    if !pending.is_empty() && pending.iter().all(u8::is_ascii_whitespace) {
                        let ws = self.parser.take_unconsumed();
                        out.push(Piece {
                            unit: Unit::Raw,
                            bytes: ws,
                        });
                    }
                    break;
                }
                Err(e) => {
                    // Everything from the damage on goes through as it is:
                    // the proxy is not the one to judge a peer's XML.
                    let bytes = self
                        .parser
                        .held_from(before)
                        .map(<[u8]>::to_vec)
                        .unwrap_or_default();
                    self.parser.take_unconsumed();
                    self.raw = Some((before, RawReason::Unreadable(e.to_string())));
                    if !bytes.is_empty() {
                        out.push(Piece {
                            unit: Unit::Raw,
                            bytes,
                        });
                    }
                    break;
                }
            }
        }
        out
    }
}

/// Whether this element is the last plaintext before TLS in its direction:
/// the client's `<starttls/>` or the server's `<proceed/>`.
pub fn starts_tls(el: &Element) -> bool {
    el.is("starttls", ns::TLS) || el.is("proceed", ns::TLS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

    fn all_bytes(pieces: &[Piece]) -> Vec<u8> {
        pieces.iter().flat_map(|p| p.bytes.clone()).collect()
    }

    #[test]
    fn units_carry_their_exact_bytes_however_the_input_is_split() {
        let input = format!(
            "{HEADER}<message to='bob@localhost'><body>a &lt; b</body></message> <presence/></stream:stream>"
        );
        for size in [1, 3, 50, input.len()] {
            let mut h = Half::new();
            let mut pieces = Vec::new();
            for chunk in input.as_bytes().chunks(size) {
                pieces.extend(h.push(chunk));
            }
            assert_eq!(all_bytes(&pieces), input.as_bytes(), "chunks of {size}");
            // Whitespace between stanzas may come out on its own (a
            // keepalive), depending on where the reads cut.
            let kinds: Vec<&str> = pieces
                .iter()
                .filter(|p| !(p.unit == Unit::Raw && p.bytes.iter().all(u8::is_ascii_whitespace)))
                .map(|p| match &p.unit {
                    Unit::Header(_) => "header",
                    Unit::Element(e) => e.name.as_str(),
                    Unit::Close => "close",
                    Unit::Raw => "raw",
                })
                .collect();
            assert_eq!(kinds, ["header", "message", "presence", "close"]);
        }
    }

    #[test]
    fn after_starttls_the_rest_is_raw_from_the_exact_byte() {
        let tls = [0x16u8, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5];
        let mut input =
            format!("{HEADER}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").into_bytes();
        let switch_at = input.len() as u64;
        input.extend_from_slice(&tls);
        let mut h = Half::new();
        let pieces = h.push(&input);
        assert_eq!(all_bytes(&pieces), input);
        assert_eq!(pieces.last().map(|p| &p.unit), Some(&Unit::Raw));
        assert_eq!(pieces.last().map(|p| p.bytes.as_slice()), Some(&tls[..]));
        assert_eq!(h.raw_since(), Some(&(switch_at, RawReason::Tls)));
        // Later bytes pass straight through.
        let more = h.push(b"\x17\x03\x03");
        assert_eq!(
            more,
            vec![Piece {
                unit: Unit::Raw,
                bytes: b"\x17\x03\x03".to_vec()
            }]
        );
    }

    #[test]
    fn garbage_and_direct_tls_pass_through_untouched() {
        let mut h = Half::new();
        let input = format!("{HEADER}<message><body>ok</body></message><a b='1' b='2'/>junk<x/>");
        let pieces = h.push(input.as_bytes());
        assert_eq!(all_bytes(&pieces), input.as_bytes());
        assert!(matches!(h.raw_since(), Some((_, RawReason::Unreadable(_)))));

        let mut d = Half::new();
        let hello = [0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01];
        let pieces = d.push(&hello);
        assert_eq!(all_bytes(&pieces), hello);
        assert_eq!(d.raw_since(), Some(&(0, RawReason::DirectTls)));
    }

    #[test]
    fn stray_text_end_tags_and_keepalives_are_passed_on_byte_for_byte() {
        let input = format!("{HEADER}<message/>x</bogus><presence/>");
        for size in [1, 5, input.len()] {
            let mut h = Half::new();
            let mut pieces = Vec::new();
            for chunk in input.as_bytes().chunks(size) {
                pieces.extend(h.push(chunk));
            }
            assert_eq!(all_bytes(&pieces), input.as_bytes(), "chunks of {size}");
        }
        // A lone space between stanzas goes out at once.
        let mut h = Half::new();
        h.push(format!("{HEADER}<presence/>").as_bytes());
        assert_eq!(all_bytes(&h.push(b" ")), b" ");
    }

    #[test]
    fn an_element_over_the_held_limit_is_passed_on_not_buffered() {
        let mut h = Half::new();
        let mut pieces = h.push(HEADER.as_bytes());
        let body = "x".repeat(MAX_HELD_ELEMENT + 10);
        let big = format!("<message><body>{body}</body></message>");
        pieces.extend(h.push(big.as_bytes()));
        assert!(matches!(h.raw_since(), Some((_, RawReason::Unreadable(_)))));
        let mut expected = HEADER.as_bytes().to_vec();
        expected.extend_from_slice(big.as_bytes());
        assert_eq!(all_bytes(&pieces), expected);
    }
}
