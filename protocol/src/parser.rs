//! Incremental XMPP stream parser: bytes in, stream events out.
//!
//! Feed it byte chunks of any size with [`StreamParser::feed`] (one byte at a
//! time works as well as a megabyte at once), then call
//! [`StreamParser::next_event`] until it returns `Ok(None)` ("need more bytes").
//! Each [`Parsed`] event says how many input bytes it consumed, so a caller
//! knows the exact offset where `<proceed/>` ends and TLS begins
//! ([`StreamParser::take_unconsumed`] hands back what follows).
//!
//! Decoding is two-phase, as in mini-redis: a resumable byte scanner finds the
//! end of the next top-level element while enforcing the [`Limits`] and the
//! RFC 6120 restrictions (no DTD, no comments, no processing instructions);
//! only a complete element is then parsed by quick-xml into an [`Element`].
//! The scanner rejects an oversized element while it grows, so a peer can never
//! make us buffer more than the stanza limit plus one read.
//!
//! Most stanzas arrive whole in one read. For them the scanner takes a fast
//! path that jumps from tag to tag with memchr and records where each tag is;
//! the tree is then built from those tags, with quick-xml parsing each start
//! tag and resolving entities. Anything unusual takes the byte-by-byte path and
//! quick-xml's own reader. Unit tests and two fuzz targets check that the two
//! routes give the same events: a server or sniffer must never see different
//! stanzas depending on how TCP cut the bytes.
//!
//! [`Mode::Lenient`] is for the sniffer: it accepts a capture that starts in
//! the middle of a stream, reports damage as an error, and resynchronises on
//! the next top-level element instead of giving up.
//!
//! [`StreamParser::skip_oversized`] is an opt-in for a client: a top-level
//! element over the stanza limit is reported once ([`ParseError::TooLarge`])
//! and then skipped to its end, byte by byte and without buffering it, so the
//! stream goes on with the next element. A server keeps the default (the
//! error is final, and it closes the stream with `policy-violation`); a
//! client cannot make its server behave, so it survives one bad stanza.

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event as XmlEvent};

use crate::element::{CompactString, Element, Node};
use crate::error::StreamErrorCondition;
use crate::limits::Limits;
use crate::ns;
use crate::stream::StreamHeader;

/// How the parser treats damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The first error is final, as RFC 6120 requires of a server or client.
    Strict,
    /// Report each error, then skip to the next top-level element. Elements
    /// seen before any stream header are accepted (capture started mid-stream).
    Lenient,
}

/// What the parser found in the byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A `<stream:stream ...>` opening tag (also after a restart).
    StreamOpen(StreamHeader),
    /// A complete top-level element: a stanza or a nonza such as `<auth/>`.
    Element(Element),
    /// The `</stream:stream>` closing tag.
    StreamClose,
}

/// An event and the number of input bytes it consumed (including any
/// whitespace before it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The event.
    pub event: Event,
    /// Input bytes consumed by this event.
    pub bytes: usize,
}

/// Markup that RFC 6120 11.1 forbids in an XMPP stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restricted {
    /// `<!DOCTYPE ...>` or another declaration: the door to entity expansion
    /// ("billion laughs") and external entity (XXE) attacks.
    Dtd,
    /// `<!-- ... -->`.
    Comment,
    /// `<?target ...?>` other than the XML declaration.
    ProcessingInstruction,
}

/// Why the byte stream could not be parsed. Offsets count bytes from the start
/// of the stream (across restarts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Bytes that are not UTF-8 (RFC 6120 11.6 requires UTF-8).
    #[error("invalid UTF-8 in the element starting at byte {offset}")]
    InvalidUtf8 {
        /// Where the element holding the bad bytes starts.
        offset: u64,
    },
    /// A control character that XML 1.0 does not allow at all.
    #[error("illegal character 0x{byte:02x} at byte {offset}")]
    IllegalChar {
        /// Where.
        offset: u64,
        /// The byte.
        byte: u8,
    },
    /// A DTD, comment or processing instruction.
    #[error("{kind:?} at byte {offset} is not allowed in XMPP (RFC 6120 11.1)")]
    Restricted {
        /// Where.
        offset: u64,
        /// What was found.
        kind: Restricted,
    },
    /// A top-level element grew beyond the stanza limit.
    #[error("element larger than the {limit}-byte limit")]
    TooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// Elements nested deeper than allowed.
    #[error("elements nested deeper than {limit}")]
    TooDeep {
        /// The limit in force.
        limit: usize,
    },
    /// An element with too many attributes.
    #[error("element with more than {limit} attributes")]
    TooManyAttributes {
        /// The limit in force.
        limit: usize,
    },
    /// An element or attribute name longer than allowed.
    #[error("name longer than {limit} bytes")]
    NameTooLong {
        /// The limit in force.
        limit: usize,
    },
    /// The stream does not start with `<stream:stream>` in the streams namespace.
    #[error("expected a <stream:stream> header, found <{found}> in namespace '{ns}'")]
    BadStreamHeader {
        /// Qualified name found.
        found: String,
        /// Its namespace.
        ns: String,
    },
    /// Non-whitespace text between top-level elements.
    #[error("text outside any element at byte {offset}")]
    TextAtStreamLevel {
        /// Where.
        offset: u64,
    },
    /// A prefix that no `xmlns:` declaration binds.
    #[error("undeclared namespace prefix '{prefix}'")]
    UnboundPrefix {
        /// The prefix.
        prefix: String,
    },
    /// An entity other than the five predefined ones and character references.
    #[error("undefined entity '&{name};'")]
    UndefinedEntity {
        /// The entity name.
        name: String,
    },
    /// Markup the scanner cannot make sense of.
    #[error("malformed XML at byte {offset}: {what}")]
    Syntax {
        /// Where.
        offset: u64,
        /// What was wrong.
        what: &'static str,
    },
    /// quick-xml rejected the element (mismatched tags, bad attributes, ...).
    #[error("malformed XML in the element starting at byte {offset}: {message}")]
    Xml {
        /// Where the element starts.
        offset: u64,
        /// quick-xml's description.
        message: String,
    },
}

impl ParseError {
    /// The stream error a server sends for this failure (RFC 6120 4.9.3).
    pub fn condition(&self) -> StreamErrorCondition {
        match self {
            ParseError::Restricted { .. } => StreamErrorCondition::RestrictedXml,
            ParseError::TooLarge { .. }
            | ParseError::TooDeep { .. }
            | ParseError::TooManyAttributes { .. }
            | ParseError::NameTooLong { .. } => StreamErrorCondition::PolicyViolation,
            ParseError::BadStreamHeader { .. } | ParseError::UnboundPrefix { .. } => {
                StreamErrorCondition::InvalidNamespace
            }
            _ => StreamErrorCondition::NotWellFormed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the stream header: XML declaration and whitespace allowed.
    Prolog,
    /// Inside the stream: top-level elements.
    Stream,
    /// After `</stream:stream>`.
    Closed,
}

/// Lexical state of the resumable scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Character data (or whitespace between top-level elements).
    Text,
    /// Just after `<`.
    Lt,
    /// Inside a start tag. `quote` is the open quote byte or 0; `slash` says
    /// the last significant byte was `/`; `name` counts name bytes while the
    /// name is still being read.
    Open {
        quote: u8,
        slash: bool,
        name: usize,
        in_name: bool,
        attrs: usize,
    },
    /// Inside an end tag.
    Close,
    /// Just after `<!`.
    Bang,
    /// Matching `[CDATA[` after `<!`; `matched` bytes of it seen so far.
    CDataOpen { matched: u8 },
    /// Inside a CDATA section; `brackets` counts `]` seen just before.
    CData { brackets: u8 },
    /// Inside `<? ... ?>`; `q` says the last byte was `?`.
    Pi { q: bool },
}

/// A table of the bytes that end a fast-path run: those given, and every
/// control byte XML forbids (so the byte path reports it with its offset).
const fn stop_table(bytes: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        if b != 0x09 && b != 0x0a && b != 0x0d {
            t[b] = true;
        }
        b += 1;
    }
    let mut i = 0;
    while i < bytes.len() {
        t[bytes[i] as usize] = true;
        i += 1;
    }
    t
}

/// Character data inside an element.
static STOP_TEXT: [bool; 256] = stop_table(b"<");
/// A value in double quotes.
static STOP_DQUOTE: [bool; 256] = stop_table(b"\"<");
/// A value in single quotes.
static STOP_SQUOTE: [bool; 256] = stop_table(b"'<");
/// A start tag after its name.
static STOP_TAG: [bool; 256] = stop_table(b"\"'=></");
/// An end tag.
static STOP_CLOSE: [bool; 256] = stop_table(b"><");
/// The name of a start tag: white space, `/` and `>` end it, and the bytes
/// that would be errors or state changes in it go through the byte path.
static STOP_NAME: [bool; 256] = stop_table(b" \t\r\n/>\"'=<");

/// What the scanner found when it stopped.
enum Found {
    /// The end (exclusive index into `buf`) of the stream header.
    Header(usize),
    /// The end of a complete top-level element.
    Element(usize),
    /// The end of `</stream:stream>`.
    Close(usize),
}

/// The incremental stream parser. See the module documentation.
#[derive(Debug)]
pub struct StreamParser {
    mode: Mode,
    limits: Limits,
    buf: Vec<u8>,
    /// First unconsumed byte in `buf`.
    start: usize,
    /// Next byte to scan.
    pos: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    phase: Phase,
    lex: Lex,
    /// Element depth within the current top-level element.
    depth: usize,
    /// Where the current top-level markup (`<`) began, if any.
    elem_start: Option<usize>,
    /// Namespace bindings declared on the stream header: (prefix, uri), with
    /// "" for the default namespace.
    scope: Vec<(CompactString, CompactString)>,
    /// Qualified name of the stream element, for matching its end tag.
    stream_qname: String,
    /// In strict mode, the error that ended parsing.
    failed: Option<ParseError>,
    /// The open elements while one stanza is built, kept between stanzas so
    /// that building one does not allocate the stack again.
    open: Vec<OpenElement>,
    /// The tags of the element being completed, found by [`whole_element`]
    /// (kept between stanzas for the same reason).
    tags: Vec<Tag>,
    /// The element `tags` describes: its start and end in `buf`.
    tagged: Option<(usize, usize)>,
    /// Whether an over-limit element is skipped instead of ending the parse.
    skip_oversized: bool,
    /// Inside an over-limit element being skipped: its bytes are scanned
    /// (to find where it ends) and dropped, never kept.
    skipping: bool,
}

impl StreamParser {
    /// A parser with the default [`Limits`].
    pub fn new(mode: Mode) -> Self {
        Self::with_limits(mode, Limits::default())
    }

    /// A parser with the given limits.
    pub fn with_limits(mode: Mode, limits: Limits) -> Self {
        StreamParser {
            mode,
            limits,
            buf: Vec::new(),
            start: 0,
            pos: 0,
            base: 0,
            phase: Phase::Prolog,
            lex: Lex::Text,
            depth: 0,
            elem_start: None,
            scope: default_scope(),
            stream_qname: "stream:stream".into(),
            failed: None,
            open: Vec::new(),
            tags: Vec::new(),
            tagged: None,
            skip_oversized: false,
            skipping: false,
        }
    }

    /// With `on`, a top-level element larger than the stanza limit is not
    /// final: [`StreamParser::next_event`] returns [`ParseError::TooLarge`]
    /// once, then skips the rest of that element without buffering it and
    /// goes on with the next one. Every other error stays final in
    /// [`Mode::Strict`]. Off by default: a server closes the stream instead.
    pub fn skip_oversized(&mut self, on: bool) {
        self.skip_oversized = on;
    }

    /// True once a strict parser met an error it cannot go on after.
    pub fn has_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Appends bytes read from the peer.
    pub fn feed(&mut self, bytes: &[u8]) {
        // Drop consumed bytes first, so the buffer holds at most one
        // (bounded) element in progress plus the new chunk.
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.base += self.start as u64;
            self.pos -= self.start;
            if let Some(s) = self.elem_start.as_mut() {
                *s -= self.start;
            }
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Stream offset just after the last consumed event.
    pub fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    /// Bytes fed but not yet consumed by an event.
    pub fn unconsumed(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Removes and returns the bytes fed but not consumed: after `<proceed/>`
    /// these are the first bytes of the TLS handshake.
    pub fn take_unconsumed(&mut self) -> Vec<u8> {
        let rest = self.buf.split_off(self.start);
        self.base += self.buf.len() as u64;
        self.buf.clear();
        self.start = 0;
        self.pos = 0;
        self.elem_start = None;
        self.lex = Lex::Text;
        self.depth = 0;
        self.skipping = false;
        rest
    }

    /// Starts a new stream (after STARTTLS or SASL success), keeping any
    /// unconsumed bytes: they belong to the new stream.
    pub fn reset(&mut self) {
        self.phase = Phase::Prolog;
        self.lex = Lex::Text;
        self.depth = 0;
        self.pos = self.start;
        self.elem_start = None;
        self.scope = default_scope();
        self.stream_qname = "stream:stream".into();
        self.failed = None;
        self.skipping = false;
    }

    /// True once `</stream:stream>` was seen.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The next event, `Ok(None)` when more bytes are needed. In strict mode
    /// an error is final: every later call returns it again.
    pub fn next_event(&mut self) -> Result<Option<Parsed>, ParseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            let found = match self.scan() {
                Ok(Some(f)) => f,
                Ok(None) => {
                    if self.skipping {
                        // Nothing of a skipped element is kept: the next
                        // `feed` drops what was scanned.
                        self.start = self.pos;
                    }
                    return Ok(None);
                }
                Err(e @ ParseError::TooLarge { .. })
                    if self.skip_oversized && self.phase == Phase::Stream =>
                {
                    // Go on scanning from where the limit was reached, with
                    // no element start: no limit applies and nothing is kept.
                    self.skipping = true;
                    self.elem_start = None;
                    self.tagged = None;
                    self.start = self.pos;
                    return Err(e);
                }
                Err(e) => return self.fail(e),
            };
            if self.skipping
                && let Found::Element(end) = found
            {
                // The end of the skipped element: back to normal.
                self.skipping = false;
                self.start = end;
                self.elem_start = None;
                continue;
            }
            match self.complete(found) {
                Ok(Some(p)) => return Ok(Some(p)),
                Ok(None) => continue,
                Err(e) => return self.fail(e),
            }
        }
    }

    fn fail(&mut self, e: ParseError) -> Result<Option<Parsed>, ParseError> {
        match self.mode {
            Mode::Strict => {
                self.failed = Some(e.clone());
            }
            Mode::Lenient => self.resync(),
        }
        Err(e)
    }

    /// Lenient recovery: drop the damaged markup and look for the next `<`.
    fn resync(&mut self) {
        let from = self.elem_start.map_or(self.pos, |s| s + 1).max(self.start);
        let skip_to = self.buf[from..]
            .iter()
            .position(|&b| b == b'<')
            .map_or(self.buf.len(), |i| from + i);
        // Rescanning bytes the scanner already saw is fine (its state is
        // reset), and starting past `elem_start` guarantees progress.
        self.start = skip_to;
        self.pos = skip_to;
        self.elem_start = None;
        self.lex = Lex::Text;
        self.depth = 0;
        if self.phase == Phase::Prolog {
            self.phase = Phase::Stream;
        }
    }

    fn at(&self, i: usize) -> u64 {
        self.base + i as u64
    }

    /// Runs the scanner from `pos` until something completes or input ends.
    fn scan(&mut self) -> Result<Option<Found>, ParseError> {
        let limits = self.limits;
        while self.pos < self.buf.len() {
            // Fastest path: a whole stanza is already in the buffer (the
            // usual case for a server reading a socket and for a sniffer
            // reading a capture). `whole_element` skips it in a few memchr
            // jumps, and says `None` for anything the byte path must judge.
            if self.lex == Lex::Text
                && self.depth == 0
                && self.phase == Phase::Stream
                && self.buf[self.pos] == b'<'
                && let Some(end) = whole_element(&self.buf, self.pos, &limits, &mut self.tags)
            {
                self.tagged = Some((self.pos, end));
                self.elem_start = Some(self.pos);
                self.pos = end;
                return Ok(Some(Found::Element(end)));
            }
            // Fast path: character data inside an element, and quoted
            // attribute values, are runs of bytes that change nothing until
            // a `<` (or the closing quote) or a forbidden control byte. Skip
            // the run in one tight loop instead of stepping the state
            // machine byte by byte; the byte that stops it goes through the
            // normal path, so errors and offsets are the same.
            // Between attributes and in end tags, only a few bytes matter.
            let stops: Option<&[bool; 256]> = match self.lex {
                Lex::Text if self.depth > 0 => Some(&STOP_TEXT),
                Lex::Open { quote: b'"', .. } => Some(&STOP_DQUOTE),
                Lex::Open { quote: b'\'', .. } => Some(&STOP_SQUOTE),
                Lex::Open {
                    quote: 0,
                    in_name: false,
                    ..
                } => Some(&STOP_TAG),
                Lex::Open {
                    quote: 0,
                    in_name: true,
                    ..
                } => Some(&STOP_NAME),
                Lex::Close => Some(&STOP_CLOSE),
                _ => None,
            };
            if let Some(stops) = stops {
                let rest = &self.buf[self.pos..];
                let run = rest
                    .iter()
                    .position(|&b| stops[usize::from(b)])
                    .unwrap_or(rest.len());
                if run > 0
                    && let Lex::Open {
                        quote: 0,
                        slash,
                        name,
                        in_name,
                        ..
                    } = &mut self.lex
                {
                    // As the byte path does: a skipped byte is not `/`, and
                    // each byte skipped inside the name counts towards it.
                    *slash = false;
                    if *in_name {
                        *name += run;
                        if *name > limits.max_name_bytes {
                            return Err(ParseError::NameTooLong {
                                limit: limits.max_name_bytes,
                            });
                        }
                    }
                }
                self.pos += run;
                if let Some(s) = self.elem_start {
                    // The stanza limit, as the byte-by-byte path checks it:
                    // an error once a byte at or past the limit is seen.
                    let last_seen = self.pos.min(self.buf.len());
                    if last_seen > s && last_seen - s > limits.max_stanza_bytes {
                        return Err(ParseError::TooLarge {
                            limit: limits.max_stanza_bytes,
                        });
                    }
                }
                if self.pos >= self.buf.len() {
                    break;
                }
            }
            let i = self.pos;
            let b = self.buf[i];
            self.pos += 1;
            if b < 0x20 && b != b'\t' && b != b'\n' && b != b'\r' {
                return Err(ParseError::IllegalChar {
                    offset: self.at(i),
                    byte: b,
                });
            }
            if let Some(s) = self.elem_start
                && i - s >= limits.max_stanza_bytes
            {
                // Not looked at yet: a parser that skips the element goes
                // on from this byte.
                self.pos = i;
                return Err(ParseError::TooLarge {
                    limit: limits.max_stanza_bytes,
                });
            }
            match self.lex {
                Lex::Text => {
                    if b == b'<' {
                        if self.depth == 0 {
                            self.elem_start = Some(i);
                        }
                        self.lex = Lex::Lt;
                    } else if self.depth == 0 && !b.is_ascii_whitespace() {
                        if self.mode == Mode::Lenient {
                            // Garbage between elements: skip it. No element
                            // is in progress at depth 0 in text.
                            self.start = self.pos;
                            self.elem_start = None;
                            continue;
                        }
                        return Err(ParseError::TextAtStreamLevel { offset: self.at(i) });
                    }
                }
                Lex::Lt => match b {
                    b'/' => self.lex = Lex::Close,
                    b'?' => self.lex = Lex::Pi { q: false },
                    b'!' => self.lex = Lex::Bang,
                    b if is_name_start(b) => {
                        self.lex = Lex::Open {
                            quote: 0,
                            slash: false,
                            name: 1,
                            in_name: true,
                            attrs: 0,
                        }
                    }
                    _ => {
                        return Err(ParseError::Syntax {
                            offset: self.at(i),
                            what: "'<' not followed by a name",
                        });
                    }
                },
                Lex::Open {
                    quote,
                    slash,
                    name,
                    in_name,
                    attrs,
                } => {
                    if quote != 0 {
                        if b == quote {
                            self.lex = Lex::Open {
                                quote: 0,
                                slash: false,
                                name,
                                in_name,
                                attrs,
                            };
                        } else if b == b'<' {
                            return Err(ParseError::Syntax {
                                offset: self.at(i),
                                what: "'<' inside an attribute value",
                            });
                        }
                        continue;
                    }
                    let in_name = in_name && !(b.is_ascii_whitespace() || b == b'/' || b == b'>');
                    let name = if in_name { name + 1 } else { name };
                    if name > limits.max_name_bytes {
                        return Err(ParseError::NameTooLong {
                            limit: limits.max_name_bytes,
                        });
                    }
                    match b {
                        b'"' | b'\'' => {
                            self.lex = Lex::Open {
                                quote: b,
                                slash: false,
                                name,
                                in_name,
                                attrs,
                            }
                        }
                        b'=' => {
                            if attrs + 1 > limits.max_attributes {
                                return Err(ParseError::TooManyAttributes {
                                    limit: limits.max_attributes,
                                });
                            }
                            self.lex = Lex::Open {
                                quote: 0,
                                slash: false,
                                name,
                                in_name,
                                attrs: attrs + 1,
                            }
                        }
                        b'>' => {
                            self.lex = Lex::Text;
                            if let Some(found) = self.start_tag_done(slash)? {
                                return Ok(Some(found));
                            }
                        }
                        b'<' => {
                            return Err(ParseError::Syntax {
                                offset: self.at(i),
                                what: "'<' inside a tag",
                            });
                        }
                        _ => {
                            self.lex = Lex::Open {
                                quote: 0,
                                slash: b == b'/',
                                name,
                                in_name,
                                attrs,
                            }
                        }
                    }
                }
                Lex::Close => {
                    if b == b'>' {
                        self.lex = Lex::Text;
                        if self.depth == 0 {
                            // An end tag with no open element: the stream's own.
                            if self.phase == Phase::Stream {
                                return Ok(Some(Found::Close(self.pos)));
                            }
                            return Err(ParseError::Syntax {
                                offset: self.at(i),
                                what: "end tag before the stream header",
                            });
                        }
                        self.depth -= 1;
                        if self.depth == 0 {
                            return Ok(Some(Found::Element(self.pos)));
                        }
                    } else if b == b'<' {
                        return Err(ParseError::Syntax {
                            offset: self.at(i),
                            what: "'<' inside an end tag",
                        });
                    }
                }
                Lex::Bang => {
                    if b == b'[' && self.depth > 0 {
                        self.lex = Lex::CDataOpen { matched: 1 };
                    } else {
                        let kind = if b == b'-' {
                            Restricted::Comment
                        } else {
                            Restricted::Dtd
                        };
                        return Err(ParseError::Restricted {
                            offset: self.at(i - 2),
                            kind,
                        });
                    }
                }
                Lex::CDataOpen { matched } => {
                    const CDATA: &[u8] = b"[CDATA[";
                    if b != CDATA[matched as usize] {
                        return Err(ParseError::Syntax {
                            offset: self.at(i),
                            what: "malformed CDATA section",
                        });
                    }
                    self.lex = if matched as usize + 1 == CDATA.len() {
                        Lex::CData { brackets: 0 }
                    } else {
                        Lex::CDataOpen {
                            matched: matched + 1,
                        }
                    };
                }
                Lex::CData { brackets } => {
                    self.lex = match b {
                        b']' => Lex::CData {
                            brackets: (brackets + 1).min(2),
                        },
                        b'>' if brackets == 2 => Lex::Text,
                        _ => Lex::CData { brackets: 0 },
                    };
                }
                Lex::Pi { q } => {
                    // Only the XML declaration, and only before the stream
                    // header, may appear; judge it once it is complete.
                    // A lenient parser also skips the declaration of a
                    // restarted stream it did not see coming.
                    let decl_allowed = self.phase == Phase::Prolog
                        || (self.mode == Mode::Lenient && self.depth == 0);
                    if !decl_allowed {
                        return Err(ParseError::Restricted {
                            offset: self.at(i - 2),
                            kind: Restricted::ProcessingInstruction,
                        });
                    }
                    if b == b'<' {
                        // No XML declaration contains '<'; do not let an
                        // unterminated one swallow the stanzas after it.
                        return Err(ParseError::Syntax {
                            offset: self.at(i),
                            what: "'<' inside a processing instruction",
                        });
                    }
                    if q && b == b'>' {
                        self.lex = Lex::Text;
                        let s = self.elem_start.unwrap_or(self.start);
                        let body = &self.buf[s..self.pos];
                        let is_decl = body.len() >= 7
                            && &body[..5] == b"<?xml"
                            && (body[5].is_ascii_whitespace() || body[5] == b'?');
                        if !is_decl {
                            return Err(ParseError::Restricted {
                                offset: self.at(s),
                                kind: Restricted::ProcessingInstruction,
                            });
                        }
                        // The declaration is consumed with the header.
                        self.elem_start = None;
                    } else {
                        self.lex = Lex::Pi { q: b == b'?' };
                    }
                }
            }
        }
        Ok(None)
    }

    /// A start tag just ended at `pos`.
    fn start_tag_done(&mut self, self_closing: bool) -> Result<Option<Found>, ParseError> {
        match self.phase {
            Phase::Prolog => {
                let s = self.elem_start.unwrap_or(self.start);
                if self.mode == Mode::Lenient && !self.looks_like_stream_header(s) {
                    // A capture that starts mid-stream: assume a client stream.
                    self.phase = Phase::Stream;
                    return self.element_tag_done(self_closing);
                }
                Ok(Some(Found::Header(self.pos)))
            }
            Phase::Stream => {
                if self.depth == 0 && !self_closing && self.mode == Mode::Lenient {
                    let s = self.elem_start.unwrap_or(self.start);
                    if self.looks_like_stream_header(s) {
                        // A stream restart the sniffer did not see coming.
                        return Ok(Some(Found::Header(self.pos)));
                    }
                }
                self.element_tag_done(self_closing)
            }
            Phase::Closed => Ok(None),
        }
    }

    fn element_tag_done(&mut self, self_closing: bool) -> Result<Option<Found>, ParseError> {
        if self_closing {
            if self.depth == 0 {
                return Ok(Some(Found::Element(self.pos)));
            }
            return Ok(None);
        }
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(ParseError::TooDeep {
                limit: self.limits.max_depth,
            });
        }
        Ok(None)
    }

    fn looks_like_stream_header(&self, s: usize) -> bool {
        let tag = &self.buf[s..self.pos];
        let name_end = tag[1..]
            .iter()
            .position(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/')
            .map_or(tag.len(), |i| i + 1);
        let name = &tag[1..name_end];
        name == b"stream" || name.ends_with(b":stream")
    }

    /// Turns a completed piece of markup into an event.
    fn complete(&mut self, found: Found) -> Result<Option<Parsed>, ParseError> {
        let (end, event) = match found {
            Found::Header(end) => {
                let s = self.elem_start.unwrap_or(self.start);
                let header = self.parse_header(s, end)?;
                self.phase = Phase::Stream;
                (end, Some(Event::StreamOpen(header)))
            }
            Found::Element(end) => {
                let s = self.elem_start.unwrap_or(self.start);
                let offset = self.at(s);
                let text = std::str::from_utf8(&self.buf[s..end])
                    .map_err(|_| ParseError::InvalidUtf8 { offset })?;
                // The tags are known when the fast path found the element;
                // an element that arrived in pieces is looked at once more,
                // whole. Anything `whole_element` leaves to the byte path
                // (CDATA, for one) is built by quick-xml's own reader.
                let tagged = self.tagged.take() == Some((s, end))
                    || whole_element(&self.buf[..end], s, &self.limits, &mut self.tags)
                        == Some(end);
                let el = if tagged {
                    build_tagged(text, s, &self.tags, &self.scope, offset, &mut self.open)
                } else {
                    build_element(text, &self.scope, offset, &mut self.open)
                };
                // One stanza of thousands of tiny tags must not leave every
                // connection holding a tag list several times the stanza
                // limit for the rest of its life; a usual stanza has a few.
                if self.tags.capacity() > RETAINED_TAGS {
                    self.tags = Vec::new();
                }
                let el = el?;
                (end, Some(Event::Element(el)))
            }
            Found::Close(end) => {
                let s = self.elem_start.unwrap_or(self.start);
                let tag = &self.buf[s..end];
                let name = tag[2..tag.len() - 1].trim_ascii();
                if name != self.stream_qname.as_bytes() {
                    if self.mode == Mode::Lenient {
                        // A stray end tag from a damaged element: skip it.
                        self.start = end;
                        self.elem_start = None;
                        return Ok(None);
                    }
                    return Err(ParseError::Syntax {
                        offset: self.at(s),
                        what: "end tag does not match any open element",
                    });
                }
                self.phase = Phase::Closed;
                (end, Some(Event::StreamClose))
            }
        };
        let bytes = end - self.start;
        self.start = end;
        self.elem_start = None;
        Ok(event.map(|event| Parsed { event, bytes }))
    }

    fn parse_header(&mut self, s: usize, end: usize) -> Result<StreamHeader, ParseError> {
        let offset = self.at(s);
        let text = std::str::from_utf8(&self.buf[s..end])
            .map_err(|_| ParseError::InvalidUtf8 { offset })?;
        let tag = text.trim_start_matches(['<']).trim_end_matches(['>', '/']);
        let start = BytesStart::from_content(tag, name_len(tag));
        let qname = start.name().as_ref().to_string();
        let mut header = StreamHeader::default();
        let mut scope = vec![("xml".into(), ns::interned(ns::XML))];
        let mut attrs = Vec::new();
        for a in checked_attributes(&start) {
            let a = a.map_err(|e| xml_error(offset, e))?;
            let key = a.key.as_ref().to_string();
            let value = attr_value(&a, offset)?;
            if key == "xmlns" {
                scope.push((CompactString::default(), ns::interned(&value)));
            } else if let Some(p) = key.strip_prefix("xmlns:") {
                scope.push((p.into(), ns::interned(&value)));
            } else {
                attrs.push((key, value));
            }
        }
        if has_duplicate(attrs.iter().map(|(k, _)| k.as_str()))
            || has_duplicate(scope[1..].iter().map(|(p, _)| p.as_str()))
        {
            return Err(ParseError::Syntax {
                offset,
                what: "an attribute is repeated",
            });
        }
        let (prefix, local) = split_qname(&qname);
        let el_ns = lookup(&scope, prefix.unwrap_or("")).map_or("", |u| u.as_str());
        if local != "stream" || el_ns != ns::STREAM {
            return Err(ParseError::BadStreamHeader {
                found: qname,
                ns: el_ns.to_string(),
            });
        }
        for (k, v) in attrs {
            match k.as_str() {
                "to" => header.to = Some(v.into()),
                "from" => header.from = Some(v.into()),
                "id" => header.id = Some(v.into()),
                "version" => header.version = Some(v.into()),
                "xml:lang" => header.lang = Some(v.into()),
                _ => {}
            }
        }
        header.default_ns = lookup(&scope, "")
            .map_or(ns::CLIENT, |u| u.as_str())
            .to_string();
        if lookup(&scope, "").is_none() {
            scope.push((CompactString::default(), ns::interned(ns::CLIENT)));
        }
        self.scope = scope;
        self.stream_qname = qname;
        Ok(header)
    }
}

/// The end of the top-level element whose `<` is at `buf[s]`, if the byte
/// path of [`StreamParser::scan`] would find exactly that element there with
/// no error; `None` in every other case, including "not complete yet", and
/// the byte path then takes over from `s` as if this had never run.
///
/// Being conservative is what keeps the two paths equal: anything unusual
/// (`<!`, `<?`, a quote or `=` in a name, `<` in a tag, a stream restart, a
/// forbidden control byte, a limit reached) is left to the byte path, which
/// reports it with its exact offset. The unit tests and the `stream_parser`
/// fuzz target check that both paths give the same events: a stanza split
/// across two reads takes the byte path, a whole one this path.
fn whole_element(buf: &[u8], s: usize, limits: &Limits, tags: &mut Vec<Tag>) -> Option<usize> {
    tags.clear();
    // The byte path fails once a byte at `s + max_stanza_bytes` or later is
    // part of the element: look no further than that.
    let b = &buf[..buf.len().min(s.saturating_add(limits.max_stanza_bytes))];
    let mut i = s;
    let mut depth = 0usize;
    let end = loop {
        // Here b[i] == b'<'.
        match *b.get(i + 1)? {
            b'/' => {
                if depth == 0 {
                    return None;
                }
                let gt = i + 2 + memchr::memchr2(b'>', b'<', &b[i + 2..])?;
                if b[gt] != b'>' {
                    return None;
                }
                depth -= 1;
                tags.push(Tag {
                    at: i,
                    end: gt + 1,
                    kind: TagKind::End,
                });
                i = gt + 1;
                if depth == 0 {
                    break i;
                }
            }
            c if is_name_start(c) => {
                let name_start = i + 1;
                let mut j = name_start + 1;
                while !STOP_NAME[usize::from(*b.get(j)?)] {
                    j += 1;
                }
                let name = &b[name_start..j];
                if name.len() > limits.max_name_bytes
                    || !matches!(b[j], b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>')
                    || (depth == 0 && (name == b"stream" || name.ends_with(b":stream")))
                {
                    return None;
                }
                // The rest of the start tag: attributes, in quotes.
                let mut attrs = 0usize;
                let mut slash = false;
                loop {
                    let c = *b.get(j)?;
                    if slash && c != b'>' {
                        // `/` belongs only just before `>`; quick-xml's
                        // reader and ours would read `<a/ >` differently.
                        return None;
                    }
                    match c {
                        b'>' => break,
                        b'"' | b'\'' => {
                            let close = j + 1 + memchr::memchr2(c, b'<', &b[j + 1..])?;
                            if b[close] != c {
                                return None;
                            }
                            j = close;
                            slash = false;
                        }
                        b'=' => {
                            attrs += 1;
                            if attrs > limits.max_attributes {
                                return None;
                            }
                            slash = false;
                        }
                        b'<' => return None,
                        _ => slash = c == b'/',
                    }
                    j += 1;
                }
                tags.push(Tag {
                    at: i,
                    end: j + 1,
                    kind: if slash {
                        TagKind::Empty
                    } else {
                        TagKind::Start
                    },
                });
                i = j + 1;
                if slash {
                    if depth == 0 {
                        break i;
                    }
                } else {
                    depth += 1;
                    if depth > limits.max_depth {
                        return None;
                    }
                }
            }
            _ => return None,
        }
        // Character data up to the next tag.
        i += memchr::memchr(b'<', &b[i..])?;
    };
    // The jumps above did not look at every byte; this pass does, for the
    // control bytes XML forbids (written without early exit per chunk so
    // the compiler can vectorise it).
    let forbidden = b[s..end].chunks(64).any(|chunk| {
        chunk.iter().fold(false, |acc, &c| {
            acc | ((c < 0x20) & (c != b'\t') & (c != b'\n') & (c != b'\r'))
        })
    });
    (!forbidden).then_some(end)
}

/// Both element builders on one complete stanza, in a `jabber:client`
/// stream: `None` when [`whole_element`] leaves the stanza to quick-xml's
/// reader alone. For the `element_builders` fuzz target; not an API.
#[doc(hidden)]
pub fn both_builders(
    stanza: &[u8],
) -> Option<(Result<Element, ParseError>, Result<Element, ParseError>)> {
    let limits = Limits::default();
    let mut tags = Vec::new();
    if stanza.first() != Some(&b'<')
        || whole_element(stanza, 0, &limits, &mut tags) != Some(stanza.len())
    {
        return None;
    }
    let text = std::str::from_utf8(stanza).ok()?;
    let scope = default_scope();
    let mut open = Vec::new();
    Some((
        build_tagged(text, 0, &tags, &scope, 0, &mut open),
        build_element(text, &scope, 0, &mut open),
    ))
}

fn default_scope() -> Vec<(CompactString, CompactString)> {
    vec![
        ("xml".into(), ns::interned(ns::XML)),
        ("stream".into(), ns::interned(ns::STREAM)),
        (CompactString::default(), ns::interned(ns::CLIENT)),
    ]
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':' || b >= 0x80
}

fn name_len(tag: &str) -> usize {
    tag.find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
        .unwrap_or(tag.len())
}

fn split_qname(q: &str) -> (Option<&str>, &str) {
    // A plain byte search: names are a few bytes long, too short for the
    // general substring search `split_once` sets up.
    match q.bytes().position(|b| b == b':') {
        Some(i) => (Some(&q[..i]), &q[i + 1..]),
        None => (None, q),
    }
}

fn lookup<'a>(
    scope: &'a [(CompactString, CompactString)],
    prefix: &str,
) -> Option<&'a CompactString> {
    scope
        .iter()
        .rev()
        .find(|(p, _)| p == prefix)
        .map(|(_, u)| u)
}

/// Namespace bindings while building one element: the stream's (borrowed,
/// not copied for every stanza) under those the element itself declares.
struct Scope<'a> {
    stream: &'a [(CompactString, CompactString)],
    local: Vec<(CompactString, CompactString)>,
}

impl Scope<'_> {
    fn lookup(&self, prefix: &str) -> Option<&CompactString> {
        lookup(&self.local, prefix).or_else(|| lookup(self.stream, prefix))
    }
}

fn xml_error(offset: u64, e: impl std::fmt::Display) -> ParseError {
    ParseError::Xml {
        offset,
        message: e.to_string(),
    }
}

/// Builds one element from its complete, UTF-8 checked markup. `scope` holds
/// the bindings declared on the stream header.
fn build_element(
    text: &str,
    stream_scope: &[(CompactString, CompactString)],
    offset: u64,
    stack: &mut Vec<OpenElement>,
) -> Result<Element, ParseError> {
    // Left over from a stanza that failed half-way.
    stack.clear();
    let mut reader = quick_xml::Reader::from_str(text);
    let cfg = reader.config_mut();
    cfg.check_end_names = true;
    cfg.expand_empty_elements = false;
    cfg.trim_text(false);
    let mut scope = Scope {
        stream: stream_scope,
        local: Vec::new(),
    };
    // Per open element (`stack`): the element and the scope length before it.
    loop {
        let ev = reader.read_event().map_err(|e| xml_error(offset, e))?;
        match ev {
            XmlEvent::Start(start) => {
                let mark = scope.local.len();
                let el = open_element(&start, &mut scope, offset)?;
                stack.push(OpenElement {
                    el,
                    mark,
                    qname: 0..0,
                });
            }
            XmlEvent::Empty(start) => {
                let mark = scope.local.len();
                let el = open_element(&start, &mut scope, offset)?;
                scope.local.truncate(mark);
                if let Some(root) = attach(stack, el) {
                    return Ok(root);
                }
            }
            XmlEvent::End(_) => {
                let Some(OpenElement { el, mark, .. }) = stack.pop() else {
                    return Err(ParseError::Syntax {
                        offset,
                        what: "unexpected end tag",
                    });
                };
                scope.local.truncate(mark);
                if let Some(root) = attach(stack, el) {
                    return Ok(root);
                }
            }
            XmlEvent::Text(t) => push_text(stack, &t.xml10_content()),
            XmlEvent::CData(c) => push_text(stack, &c.xml10_content()),
            XmlEvent::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(|e| xml_error(offset, e))? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.xml10_content();
                        match quick_xml::escape::resolve_predefined_entity(&name) {
                            Some(s) => s.to_string(),
                            None => {
                                return Err(ParseError::UndefinedEntity {
                                    name: name.into_owned(),
                                });
                            }
                        }
                    }
                };
                push_text(stack, &resolved);
            }
            XmlEvent::Comment(_) => {
                return Err(ParseError::Restricted {
                    offset,
                    kind: Restricted::Comment,
                });
            }
            XmlEvent::PI(_) | XmlEvent::Decl(_) => {
                return Err(ParseError::Restricted {
                    offset,
                    kind: Restricted::ProcessingInstruction,
                });
            }
            XmlEvent::DocType(_) => {
                return Err(ParseError::Restricted {
                    offset,
                    kind: Restricted::Dtd,
                });
            }
            XmlEvent::Eof => {
                return Err(ParseError::Syntax {
                    offset,
                    what: "element ended early",
                });
            }
        }
    }
}

fn push_text(stack: &mut [OpenElement], text: &str) {
    // Text outside the root cannot occur: the scanner cut the element exactly.
    if let Some(open) = stack.last_mut() {
        let el = &mut open.el;
        if let Some(Node::Text(prev)) = el.children.last_mut() {
            prev.push_str(text);
        } else if !text.is_empty() {
            el.children.push(Node::Text(text.to_string()));
        }
    }
}

/// Adds a finished element to the one open around it; returns it when it is
/// the stanza itself (nothing open around it), which ends the build.
fn attach(stack: &mut [OpenElement], el: Element) -> Option<Element> {
    match stack.last_mut() {
        Some(parent) => {
            parent.el.children.push(Node::Element(el));
            None
        }
        None => Some(el),
    }
}

/// An element being built: the element, the length of the namespace scope
/// before its own declarations, and where its qualified name is in the
/// stanza's text (to match its end tag against).
#[derive(Debug)]
struct OpenElement {
    el: Element,
    mark: usize,
    qname: std::ops::Range<usize>,
}

/// How many tags' room a parser keeps between stanzas.
const RETAINED_TAGS: usize = 256;

/// A tag [`whole_element`] found: `buf[at..end]` runs from `<` to `>`.
#[derive(Debug, Clone, Copy)]
struct Tag {
    at: usize,
    end: usize,
    kind: TagKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TagKind {
    Start,
    Empty,
    End,
}

/// Builds one element from its text and the tags [`whole_element`] found in
/// it (`base` is where the text starts in the buffer those tags index).
///
/// This is [`build_element`] without quick-xml's reader, whose work of
/// finding the tags `whole_element` has already done: quick-xml still reads
/// each start tag's name and attributes, and resolves entities in text. A
/// unit test and the `stream_parser` fuzz target check that both builders
/// give the same element, or both an error, for the same stanza.
fn build_tagged(
    text: &str,
    base: usize,
    tags: &[Tag],
    stream_scope: &[(CompactString, CompactString)],
    offset: u64,
    stack: &mut Vec<OpenElement>,
) -> Result<Element, ParseError> {
    stack.clear();
    let mut scope = Scope {
        stream: stream_scope,
        local: Vec::new(),
    };
    let mut prev = 0;
    for t in tags {
        let (at, end) = (t.at - base, t.end - base);
        if at > prev {
            // Character data: line ends normalised, then entities resolved.
            let raw = quick_xml::events::BytesText::from_escaped(&text[prev..at]);
            let content = raw.xml10_content();
            let resolved = quick_xml::escape::unescape(&content).map_err(|e| match e {
                quick_xml::escape::EscapeError::UnrecognizedEntity(_, name) => {
                    ParseError::UndefinedEntity { name }
                }
                e => xml_error(offset, e),
            })?;
            push_text(stack, &resolved);
        }
        prev = end;
        match t.kind {
            TagKind::Start | TagKind::Empty => {
                let inner_end = if t.kind == TagKind::Empty {
                    end - 2
                } else {
                    end - 1
                };
                let inner = &text[at + 1..inner_end];
                let name_end = at + 1 + name_len(inner);
                let start = BytesStart::from_content(inner, name_end - at - 1);
                let mark = scope.local.len();
                let el = open_element(&start, &mut scope, offset)?;
                if t.kind == TagKind::Empty {
                    scope.local.truncate(mark);
                    if let Some(root) = attach(stack, el) {
                        return Ok(root);
                    }
                } else {
                    stack.push(OpenElement {
                        el,
                        mark,
                        qname: at + 1..name_end,
                    });
                }
            }
            TagKind::End => {
                let Some(OpenElement { el, mark, qname }) = stack.pop() else {
                    return Err(ParseError::Syntax {
                        offset,
                        what: "unexpected end tag",
                    });
                };
                // As quick-xml's reader: white space may follow the name.
                let name = text[at + 2..end - 1].trim_end_matches([' ', '\t', '\r', '\n']);
                if name != &text[qname] {
                    return Err(ParseError::Syntax {
                        offset,
                        what: "end tag does not match its start tag",
                    });
                }
                scope.local.truncate(mark);
                if let Some(root) = attach(stack, el) {
                    return Ok(root);
                }
            }
        }
    }
    Err(ParseError::Syntax {
        offset,
        what: "element ended early",
    })
}

fn open_element(
    start: &BytesStart<'_>,
    scope: &mut Scope<'_>,
    offset: u64,
) -> Result<Element, ParseError> {
    let mark = scope.local.len();
    let mut attrs: Vec<(CompactString, CompactString)> = Vec::new();
    for a in checked_attributes(start) {
        let a = a.map_err(|e| xml_error(offset, e))?;
        let key = a.key.as_ref();
        let value = attr_value(&a, offset)?;
        if key == "xmlns" {
            scope
                .local
                .push((CompactString::default(), ns::interned(&value)));
        } else if let Some(p) = key.strip_prefix("xmlns:") {
            scope.local.push((p.into(), ns::interned(&value)));
        } else {
            attrs.push((key.into(), value));
        }
    }
    // Namespace declarations and plain attributes were split above, so a
    // repeated name can only repeat within one of the two lists.
    if has_duplicate(attrs.iter().map(|(k, _)| k.as_str()))
        || has_duplicate(scope.local[mark..].iter().map(|(p, _)| p.as_str()))
    {
        return Err(ParseError::Syntax {
            offset,
            what: "an attribute is repeated",
        });
    }
    let qname = start.name();
    let (prefix, local) = split_qname(qname.as_ref());
    let ns = match scope.lookup(prefix.unwrap_or("")) {
        Some(u) => u.clone(),
        None => {
            return Err(ParseError::UnboundPrefix {
                prefix: prefix.unwrap_or("").to_string(),
            });
        }
    };
    for (k, _) in &attrs {
        if let (Some(p), _) = split_qname(k)
            && scope.lookup(p).is_none()
        {
            return Err(ParseError::UnboundPrefix {
                prefix: p.to_string(),
            });
        }
    }
    Ok(Element {
        name: local.into(),
        ns,
        attrs,
        children: Vec::new(),
    })
}

/// The attributes of a start tag, without quick-xml's own duplicate check:
/// that check keeps a list of positions per tag, and [`has_duplicate`] over
/// the handful of names a stanza carries does the same without allocating.
/// (Repeated attributes are still refused: see the callers.)
fn checked_attributes<'a>(
    start: &'a BytesStart<'_>,
) -> quick_xml::events::attributes::Attributes<'a> {
    let mut attrs = start.attributes();
    attrs.with_checks(false);
    attrs
}

/// True when a name occurs twice. Quadratic, but bounded by
/// [`Limits::max_attributes`], which the scanner enforced before we got here.
fn has_duplicate<'a>(names: impl Iterator<Item = &'a str> + Clone) -> bool {
    names
        .clone()
        .enumerate()
        .any(|(i, a)| names.clone().skip(i + 1).any(|b| a == b))
}

/// An attribute's value with entities resolved and white space normalised
/// (XML 1.0 section 3.3.3). Most values (JIDs, ids, types) contain neither
/// `&` nor a tab or line break, and are then taken as they are.
fn attr_value(
    a: &quick_xml::events::attributes::Attribute<'_>,
    offset: u64,
) -> Result<CompactString, ParseError> {
    if !a
        .value
        .bytes()
        .any(|b| matches!(b, b'&' | b'\t' | b'\n' | b'\r'))
    {
        return Ok(CompactString::new(&a.value));
    }
    a.normalized_value(XmlVersion::Implicit1_0)
        .map(CompactString::from)
        .map_err(|e| xml_error(offset, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

    fn all(p: &mut StreamParser) -> Result<Vec<Parsed>, ParseError> {
        let mut out = Vec::new();
        while let Some(ev) = p.next_event()? {
            out.push(ev);
        }
        Ok(out)
    }

    fn parse_whole(input: &[u8]) -> Result<Vec<Parsed>, ParseError> {
        let mut p = StreamParser::new(Mode::Strict);
        p.feed(input);
        all(&mut p)
    }

    /// A session with every construct the parser must handle: declaration,
    /// header, whitespace keepalive, nested namespaces, prefixes, entities,
    /// character references, CDATA, non-ASCII text, self-closing elements and
    /// the stream close.
    fn fixture() -> String {
        format!(
            "{HEADER}\n  <message to='bob@localhost' type='chat' id='m&amp;1'>\
             <body>caf\u{e9} &lt;3 &#x263A; &#65;<![CDATA[<raw> & ]]]]></body>\
             <request xmlns='urn:xmpp:receipts'/></message> \
             <iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>\
             <x:foo xmlns:x='urn:test'><x:bar a='1'/><plain/></x:foo>\
             <stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>\
             <presence from=\"a@b/c\" xml:lang='en'\t\n><status a='x>y'>1 > 0</status ></presence>\
             <r xmlns='urn:xmpp:sm:3' />\
             <a:b xmlns:a='urn:a' c = \"/\"><a:c/><d xmlns='urn:d'><e/></d></a:b>\
             </stream:stream>"
        )
    }

    #[test]
    fn parses_a_whole_stream() {
        let evs = parse_whole(fixture().as_bytes()).expect("parses");
        assert_eq!(evs.len(), 9);
        let Event::StreamOpen(h) = &evs[0].event else {
            panic!("expected header, got {:?}", evs[0])
        };
        assert_eq!(h.to.as_deref(), Some("localhost"));
        assert_eq!(h.default_ns, ns::CLIENT);
        let Event::Element(m) = &evs[1].event else {
            panic!("expected element")
        };
        assert!(m.is("message", ns::CLIENT));
        assert_eq!(m.get_attr("id"), Some("m&1"));
        assert_eq!(
            m.child_text("body", ns::CLIENT).as_deref(),
            Some("caf\u{e9} <3 \u{263A} A<raw> & ]]")
        );
        assert!(m.has_child("request", ns::RECEIPTS));
        let Event::Element(foo) = &evs[3].event else {
            panic!()
        };
        assert!(foo.is("foo", "urn:test"));
        assert!(foo.has_child("bar", "urn:test"));
        // Unprefixed children of a prefixed element keep the default namespace.
        assert!(foo.has_child("plain", ns::CLIENT));
        let Event::Element(f) = &evs[4].event else {
            panic!()
        };
        assert!(f.is("features", ns::STREAM));
        assert!(f.has_child("starttls", ns::TLS));
        let Event::Element(p) = &evs[5].event else {
            panic!()
        };
        assert_eq!(p.get_attr("from"), Some("a@b/c"));
        assert_eq!(p.child_text("status", ns::CLIENT).as_deref(), Some("1 > 0"));
        let Event::Element(r) = &evs[6].event else {
            panic!()
        };
        assert!(r.is("r", "urn:xmpp:sm:3"));
        let Event::Element(ab) = &evs[7].event else {
            panic!()
        };
        assert_eq!(ab.get_attr("c"), Some("/"));
        assert!(
            ab.get_child("d", "urn:d")
                .is_some_and(|d| d.has_child("e", "urn:d"))
        );
        assert_eq!(evs[8].event, Event::StreamClose);
        let total: usize = evs.iter().map(|e| e.bytes).sum();
        assert_eq!(total, fixture().len());
    }

    #[test]
    fn split_at_every_offset_parses_the_same_as_whole() {
        let input = fixture();
        let whole = parse_whole(input.as_bytes()).expect("parses");
        for cut in 0..=input.len() {
            let mut p = StreamParser::new(Mode::Strict);
            p.feed(&input.as_bytes()[..cut]);
            let mut got = all(&mut p).expect("first half");
            p.feed(&input.as_bytes()[cut..]);
            got.extend(all(&mut p).expect("second half"));
            assert_eq!(got, whole, "split at byte {cut}");
        }
    }

    /// Every event and error, feeding `input` whole or one byte at a time.
    fn both_ways(
        input: &[u8],
        make: impl Fn() -> StreamParser,
    ) -> [Vec<Result<Parsed, ParseError>>; 2] {
        let drain = |p: &mut StreamParser, out: &mut Vec<_>| {
            for _ in 0..1000 {
                match p.next_event() {
                    Ok(None) => return,
                    Ok(Some(ev)) => out.push(Ok(ev)),
                    Err(e) => {
                        out.push(Err(e));
                        if p.failed.is_some() {
                            return;
                        }
                    }
                }
            }
        };
        let mut whole = make();
        let mut a = Vec::new();
        whole.feed(input);
        drain(&mut whole, &mut a);
        let mut bytes = make();
        let mut b = Vec::new();
        for byte in input {
            if bytes.failed.is_some() {
                break;
            }
            bytes.feed(std::slice::from_ref(byte));
            drain(&mut bytes, &mut b);
        }
        [a, b]
    }

    #[test]
    fn whole_stanza_fast_path_agrees_with_the_byte_path_on_errors() {
        // A whole stanza in the buffer takes `whole_element`; fed one byte
        // at a time it takes the byte path. Both must give the same events
        // and the same errors at the same offsets.
        let small = Limits {
            max_stanza_bytes: 200,
            max_depth: 3,
            max_attributes: 4,
            max_name_bytes: 16,
        };
        for bad in [
            "<message>\u{1}</message>",
            "<message a='\u{8}'/>",
            "<message a='<'/>",
            "<message <a/>",
            "<message><body>x</message></body>",
            "<message a='1' a='2'/>",
            "<mess\"age/>",
            "<message><!-- c --></message>",
            "<message><?pi?></message>",
            "<message><!DOCTYPE x></message>",
            "< message/>",
            "<m a='1' b='2' c='3' d='4' e='5'/>",
            "<toolongnamexyzabc/>",
            "<a><b><c><d></d></c></b></a>",
            &format!("<m>{}</m>", "0123456789".repeat(20)),
            "<m a='1'/>trailing<m/>",
            "</m>",
            // Not errors in strict mode, but unusual: the byte path's.
            "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><m/>",
            "<m a='1'/>\n \t<n\tb\n=\r\"2\"/>",
        ] {
            for mode in [Mode::Strict, Mode::Lenient] {
                let input = format!("{HEADER}{bad}<ok/>");
                let [a, b] = both_ways(input.as_bytes(), || StreamParser::with_limits(mode, small));
                assert_eq!(a, b, "{mode:?} {bad}");
                if mode == Mode::Strict && !bad.starts_with("<stream") && !bad.contains('\t') {
                    assert!(a.iter().any(Result::is_err), "{bad}: {a:?}");
                }
            }
        }
        // And on good input, in lenient mode too.
        let [a, b] = both_ways(fixture().as_bytes(), || StreamParser::new(Mode::Lenient));
        assert_eq!(a, b);
    }

    #[test]
    fn both_element_builders_agree() {
        // `build_tagged` (tags from `whole_element`) against `build_element`
        // (quick-xml's reader): the same element, or an error from both.
        let cases = [
            "<message to='a@b' type=\"chat\"><body>hi &amp; &lt;bye&gt; &#x263A;&#65;</body></message>",
            "<m>line\r\nnext\rlast &#13;</m>",
            "<a:x xmlns:a='urn:a'><a:y/><z/></a:x>",
            "<a:x xmlns:a='urn:u' xmlns:b='urn:u'></b:x>",
            "<a></a >",
            "<a></ a>",
            "<a><b></a></b>",
            "<m>&nbsp;</m>",
            "<m>&#0;</m>",
            "<m>&#xD800;</m>",
            "<m>&amp</m>",
            "<m>& x</m>",
            "<a b>",
            "<a b/>",
            "<a b='1'c='2'/>",
            "<a b='1' b='2'/>",
            "<a p:b='1'/>",
            "<p:a/>",
            "<a:/>",
            "<:a/>",
            "<m>]]> and > </m>",
            "<a x=\"&lt;&apos;\" y='\t\n'/>",
            "<a x='&bogus;'/>",
            "<m xml:lang='fr'>caf\u{e9} \u{1F600}</m>",
            "<a xmlns='urn:d'><b xmlns=''/></a>",
            "<a><b/>text<c>more</c>tail</a>",
            "<a\n\tx\r='1'\n></a\n>",
            "<a =''/>",
            "<a x=''/>",
            "<a x='1'></a>",
            "<a><a><a></a></a></a>",
        ];
        let mut compared = 0;
        for case in cases {
            let Some((tagged, reader)) = both_builders(case.as_bytes()) else {
                continue;
            };
            compared += 1;
            match (&tagged, &reader) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{case}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{case}: tagged {tagged:?}, reader {reader:?}"),
            }
        }
        assert!(
            compared >= 25,
            "only {compared} cases reached both builders"
        );
    }

    #[test]
    fn a_stanza_of_many_tags_does_not_leave_its_tag_list_behind() {
        let mut p = StreamParser::new(Mode::Strict);
        let many = format!("{HEADER}<m>{}</m><m/>", "<a/>".repeat(4000));
        p.feed(many.as_bytes());
        let evs = all(&mut p).expect("parses");
        assert_eq!(evs.len(), 3);
        assert!(p.tags.capacity() <= RETAINED_TAGS, "{}", p.tags.capacity());
    }

    #[test]
    fn one_byte_at_a_time_parses_the_same_as_whole() {
        let input = fixture();
        let whole = parse_whole(input.as_bytes()).expect("parses");
        let mut p = StreamParser::new(Mode::Strict);
        let mut got = Vec::new();
        for b in input.as_bytes() {
            p.feed(std::slice::from_ref(b));
            got.extend(all(&mut p).expect("parses"));
        }
        assert_eq!(got, whole);
    }

    #[test]
    fn proceed_offset_is_exact_and_rest_is_handed_back() {
        let tls = [0x16u8, 0x03, 0x01, 0x00, 0x05, b'<', 0xff];
        let mut input =
            format!("{HEADER}<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").into_bytes();
        let xml_len = input.len();
        input.extend_from_slice(&tls);
        let mut p = StreamParser::new(Mode::Strict);
        p.feed(&input);
        let h = p.next_event().expect("ok").expect("header");
        let proceed = p.next_event().expect("ok").expect("proceed");
        let Event::Element(e) = &proceed.event else {
            panic!()
        };
        assert!(e.is("proceed", ns::TLS));
        assert_eq!(h.bytes + proceed.bytes, xml_len);
        assert_eq!(p.offset(), xml_len as u64);
        assert_eq!(p.take_unconsumed(), tls);
    }

    #[test]
    fn restart_after_sasl_keeps_buffered_bytes() {
        let mut p = StreamParser::new(Mode::Strict);
        p.feed(
            format!("{HEADER}<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>{HEADER}")
                .as_bytes(),
        );
        assert!(matches!(
            p.next_event().unwrap().unwrap().event,
            Event::StreamOpen(_)
        ));
        assert!(matches!(
            p.next_event().unwrap().unwrap().event,
            Event::Element(_)
        ));
        p.reset();
        assert!(matches!(
            p.next_event().unwrap().unwrap().event,
            Event::StreamOpen(_)
        ));
    }

    fn first_error(input: &[u8]) -> ParseError {
        match parse_whole(input) {
            Err(e) => e,
            Ok(evs) => panic!("expected an error, got {evs:?}"),
        }
    }

    #[test]
    fn rejects_restricted_xml() {
        for (bad, kind) in [
            ("<!DOCTYPE x [<!ENTITY a 'b'>]>", Restricted::Dtd),
            ("<!-- hi -->", Restricted::Comment),
            ("<?php echo 1 ?>", Restricted::ProcessingInstruction),
        ] {
            let e = first_error(format!("{HEADER}{bad}").as_bytes());
            assert_eq!(
                e,
                ParseError::Restricted {
                    offset: HEADER.len() as u64,
                    kind
                },
                "{bad}"
            );
            assert_eq!(e.condition(), StreamErrorCondition::RestrictedXml);
            // Also before the header, and inside a stanza.
            let e = first_error(format!("{bad}{HEADER}").as_bytes());
            assert_eq!(e.condition(), StreamErrorCondition::RestrictedXml, "{bad}");
            let e = first_error(format!("{HEADER}<message>{bad}</message>").as_bytes());
            assert_eq!(e.condition(), StreamErrorCondition::RestrictedXml, "{bad}");
        }
    }

    #[test]
    fn rejects_undefined_entities() {
        let e = first_error(format!("{HEADER}<message><body>&xxe;</body></message>").as_bytes());
        assert_eq!(e, ParseError::UndefinedEntity { name: "xxe".into() });
        assert_eq!(e.condition(), StreamErrorCondition::NotWellFormed);
    }

    #[test]
    fn rejects_malformed_xml() {
        for bad in [
            "<message><body>x</message></body>",
            "<message a='1' a='2'/>",
            "<message><body a='1' b='2' a='3'>x</body></message>",
            "<message xmlns:p='a' xmlns:p='b'/>",
            "<message xmlns='jabber:client' xmlns='jabber:client'/>",
            "<message a=1/>",
            "<message><</message>",
            "hello",
            "<x:y/>",
            "<message>\u{1}</message>",
        ] {
            let e = first_error(format!("{HEADER}{bad}").as_bytes());
            assert!(
                matches!(
                    e.condition(),
                    StreamErrorCondition::NotWellFormed | StreamErrorCondition::InvalidNamespace
                ),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn rejects_invalid_utf8() {
        let mut input = format!("{HEADER}<message><body>").into_bytes();
        input.extend_from_slice(&[0xc3, 0x28, 0xff]);
        input.extend_from_slice(b"</body></message>");
        let e = first_error(&input);
        assert_eq!(
            e,
            ParseError::InvalidUtf8 {
                offset: HEADER.len() as u64
            }
        );
    }

    #[test]
    fn rejects_a_bad_stream_header() {
        let e = first_error(b"<stream:stream xmlns:stream='urn:wrong'>");
        assert_eq!(e.condition(), StreamErrorCondition::InvalidNamespace);
        let e = first_error(b"<html>");
        assert!(matches!(e, ParseError::BadStreamHeader { .. }));
        for repeated in [
            "<stream:stream to='a' to='b' xmlns:stream='http://etherx.jabber.org/streams'>",
            "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns:stream='x'>",
        ] {
            let e = first_error(repeated.as_bytes());
            assert_eq!(
                e.condition(),
                StreamErrorCondition::NotWellFormed,
                "{repeated}"
            );
        }
    }

    #[test]
    fn oversized_stanza_is_rejected_before_it_is_buffered() {
        let limits = Limits {
            max_stanza_bytes: 1024,
            ..Limits::default()
        };
        let mut p = StreamParser::with_limits(Mode::Strict, limits);
        p.feed(HEADER.as_bytes());
        assert!(p.next_event().unwrap().is_some());
        p.feed(b"<message><body>");
        let chunk = vec![b'a'; 512];
        let mut err = None;
        for _ in 0..8 {
            p.feed(&chunk);
            if let Err(e) = p.next_event() {
                err = Some(e);
                break;
            }
        }
        let e = err.expect("an oversized stanza must fail");
        assert_eq!(e, ParseError::TooLarge { limit: 1024 });
        assert_eq!(e.condition(), StreamErrorCondition::PolicyViolation);
        // Strict: the error is final.
        assert_eq!(p.next_event(), Err(e));
    }

    /// Every result `p` gives until it needs more bytes, errors included
    /// (a skipping parser goes on after one).
    fn results(p: &mut StreamParser) -> Vec<Result<Parsed, ParseError>> {
        let mut out = Vec::new();
        loop {
            match p.next_event() {
                Ok(None) => return out,
                r => {
                    let failed = r.is_err() && p.has_failed();
                    out.push(r.map(|o| o.expect("some")));
                    if failed {
                        return out;
                    }
                }
            }
        }
    }

    fn skipping_parser() -> StreamParser {
        let mut p = StreamParser::with_limits(
            Mode::Strict,
            Limits {
                max_stanza_bytes: 1024,
                ..Limits::default()
            },
        );
        p.skip_oversized(true);
        p
    }

    /// Over-limit elements of every shape: a long body, markup inside that
    /// looks like an end (quoted `>`, CDATA holding `</message>`), and one
    /// whose start tag alone is over the limit.
    fn oversized_fixture() -> String {
        let body = "&quot;".repeat(400);
        let attr = "v".repeat(1500);
        format!(
            "{HEADER}<message id='1'><body>small</body></message>\
             <message id='2' x='a>b'><body>{body}</body><x><![CDATA[</message><y>]]></x></message>\
             <presence id='3'/>\
             <iq id='4' a='{attr}' b='>'/>\
             <message id='5'><body>after</body></message>"
        )
    }

    #[test]
    fn a_skipping_parser_reports_an_oversized_element_once_and_goes_on() {
        let input = oversized_fixture();
        let mut p = skipping_parser();
        p.feed(input.as_bytes());
        let got = results(&mut p);
        let summary: Vec<String> = got
            .iter()
            .map(|r| match r {
                Ok(Parsed {
                    event: Event::Element(e),
                    ..
                }) => e.get_attr("id").unwrap_or("?").to_string(),
                Ok(Parsed {
                    event: Event::StreamOpen(_),
                    ..
                }) => "open".into(),
                Ok(other) => format!("{other:?}"),
                Err(e) => format!("{e}"),
            })
            .collect();
        let too_large = "element larger than the 1024-byte limit".to_string();
        assert_eq!(
            summary,
            ["open", "1", &too_large, "3", &too_large, "5"],
            "{got:?}"
        );
        assert!(!p.has_failed());
        // The byte counts still add up to the offset: nothing is counted
        // twice and the skipped bytes are simply not part of any event.
        let counted: usize = got.iter().flatten().map(|p| p.bytes).sum();
        assert!(counted < input.len());
        assert_eq!(p.offset(), input.len() as u64);
    }

    #[test]
    fn skipping_gives_the_same_results_however_the_bytes_are_cut() {
        let input = oversized_fixture();
        let mut whole = skipping_parser();
        whole.feed(input.as_bytes());
        let want = results(&mut whole);
        for chunk in [1, 2, 7, 64, 1000, 1025] {
            let mut p = skipping_parser();
            let mut got = Vec::new();
            for c in input.as_bytes().chunks(chunk) {
                p.feed(c);
                got.extend(results(&mut p));
            }
            assert_eq!(got, want, "chunks of {chunk}");
        }
    }

    #[test]
    fn skipping_does_not_buffer_the_skipped_bytes() {
        let mut p = skipping_parser();
        p.feed(HEADER.as_bytes());
        assert!(p.next_event().unwrap().is_some());
        p.feed(b"<message><body>");
        let chunk = vec![b'a'; 4096];
        let mut errors = 0;
        for _ in 0..256 {
            // 1 MiB in all, far over the 1 KiB limit.
            p.feed(&chunk);
            errors += results(&mut p).iter().filter(|r| r.is_err()).count();
            assert!(
                p.buf.len() <= 1024 + chunk.len(),
                "{} bytes kept",
                p.buf.len()
            );
        }
        assert_eq!(errors, 1);
        p.feed(b"</body></message><presence/>");
        let r = results(&mut p);
        assert!(
            matches!(&r[..], [Ok(Parsed { event: Event::Element(e), .. })] if e.name == "presence"),
            "{r:?}"
        );
    }

    #[test]
    fn skipping_is_opt_in_and_only_for_size() {
        // The default stays final, as a server needs.
        let mut p = StreamParser::with_limits(
            Mode::Strict,
            Limits {
                max_stanza_bytes: 1024,
                ..Limits::default()
            },
        );
        p.feed(oversized_fixture().as_bytes());
        let r = results(&mut p);
        assert!(matches!(r.last(), Some(Err(ParseError::TooLarge { .. }))));
        assert!(p.has_failed());
        // A skipping parser still stops at anything else.
        let mut p = skipping_parser();
        p.feed(format!("{HEADER}<message><body>&xxe;</body></message><presence/>").as_bytes());
        let r = results(&mut p);
        assert!(
            matches!(r.last(), Some(Err(ParseError::UndefinedEntity { .. }))),
            "{r:?}"
        );
        assert!(p.has_failed());
    }

    #[test]
    fn enforces_depth_attribute_and_name_limits() {
        let deep = format!("{HEADER}{}", "<a>".repeat(40));
        assert_eq!(
            first_error(deep.as_bytes()),
            ParseError::TooDeep { limit: 32 }
        );
        let attrs: String = (0..65).map(|i| format!(" a{i}='x'")).collect();
        let many = format!("{HEADER}<message{attrs}/>");
        assert_eq!(
            first_error(many.as_bytes()),
            ParseError::TooManyAttributes { limit: 64 }
        );
        let long = format!("{HEADER}<{}/>", "n".repeat(300));
        assert_eq!(
            first_error(long.as_bytes()),
            ParseError::NameTooLong { limit: 256 }
        );
    }

    #[test]
    fn whitespace_keepalives_are_fine() {
        let mut p = StreamParser::new(Mode::Strict);
        p.feed(HEADER.as_bytes());
        assert!(p.next_event().unwrap().is_some());
        p.feed(b" \n \r\n\t ");
        assert_eq!(p.next_event(), Ok(None));
        p.feed(b"<presence/>");
        let ev = p.next_event().unwrap().unwrap();
        assert_eq!(ev.bytes, 7 + 11);
    }

    #[test]
    fn lenient_mode_resynchronises_after_damage() {
        let mut p = StreamParser::new(Mode::Lenient);
        // Starts mid-stream (no header), then garbage, then a damaged element.
        p.feed(b"ge><message to='a@b'><body>one</body></message>\x01junk<message><body>&bad;</body></message><presence/>");
        let mut events = Vec::new();
        let mut errors = 0;
        loop {
            match p.next_event() {
                Ok(Some(ev)) => events.push(ev.event),
                Ok(None) => break,
                Err(_) => errors += 1,
            }
        }
        assert!(errors >= 2, "damage is reported ({errors} errors)");
        let names: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                Event::Element(el) => Some(el.name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["message", "presence"]);
    }

    #[test]
    fn lenient_mode_sees_stream_restarts() {
        let mut p = StreamParser::new(Mode::Lenient);
        p.feed(
            format!("{HEADER}<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>{HEADER}<iq/>")
                .as_bytes(),
        );
        let kinds: Vec<_> = std::iter::from_fn(|| p.next_event().ok().flatten())
            .map(|e| matches!(e.event, Event::StreamOpen(_)))
            .collect();
        assert_eq!(kinds, [true, false, true, false]);
    }

    #[test]
    fn lenient_mode_recovers_from_every_kind_of_broken_markup() {
        // A cheap deterministic sweep; the fuzz target goes much further.
        let seeds: [&[u8]; 6] = [b"<", b"</", b"<!", b"<![CDATA[", b"<?", b"<a b='"];
        for s in seeds {
            for tail in [&b">"[..], b"\xff", b"<", b"'/>", b"]]>"] {
                let mut p = StreamParser::new(Mode::Lenient);
                p.feed(HEADER.as_bytes());
                p.feed(s);
                p.feed(tail);
                p.feed(b"<presence/>");
                let mut seen_presence = false;
                for _ in 0..20 {
                    match p.next_event() {
                        Ok(Some(Parsed {
                            event: Event::Element(e),
                            ..
                        })) if e.name == "presence" => {
                            seen_presence = true;
                            break;
                        }
                        Ok(None) => break,
                        _ => {}
                    }
                }
                assert!(
                    seen_presence,
                    "no recovery after {:?}",
                    String::from_utf8_lossy(&[s, tail].concat())
                );
            }
        }
    }

    /// Found by `cargo fuzz run stream_parser`: lenient garbage skipping left
    /// a stale element start behind, and the next `feed` underflowed.
    #[test]
    fn fuzz_regression_stale_element_start() {
        let hex = "e3e3000a75003e0a3cff3b3e3c2f73747265616d3a73747265616d3e3c7e6f0000c1c4d0f5600a0a0a0a0a0ac13e3c00003c3a093c3a2f3eda263ecc21bc0aecf5f5f5f5f50a01762762762762763cff3b3e3c2f73747265616d3a73747265616d3e3c91ffff3e3b2f0aa10a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a083c4c4c4c3a73743e3c00003c3a093c3a2f3eda263e7265616d09090909093e3cb37cb3";
        let data: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let (&split, bytes) = data.split_first().unwrap();
        let cut = split as usize % (bytes.len() + 1);
        for mode in [Mode::Strict, Mode::Lenient] {
            let mut p = StreamParser::new(mode);
            p.feed(&bytes[..cut]);
            for _ in 0..1000 {
                if let Ok(None) = p.next_event() {
                    break;
                }
            }
            p.feed(&bytes[cut..]);
            let mut errors = 0;
            for _ in 0..1000 {
                match p.next_event() {
                    Ok(None) => break,
                    Err(_) => errors += 1,
                    Ok(Some(_)) => {}
                }
            }
            assert!(errors > 0, "{mode:?}: this input is damaged");
        }
    }
}
#[cfg(test)]
mod fastpath_tests {
    use super::*;

    /// The fast paths skip bytes in bulk; these are the places where a
    /// skipped byte still matters (a `/` that is or is not the end of a
    /// self-closing tag, a `>` inside a quoted value).
    #[test]
    fn skipped_bytes_keep_their_meaning() {
        let hdr =
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
        for (input, names) in [
            ("<a x='v'/><b/>", vec!["a", "b"]),
            ("<a x=\"/\" y='/>'><c/></a><d/>", vec!["a", "d"]),
            ("<a  x = 'y' ><c>text / more</c></a>", vec!["a"]),
            ("<a x='1'\t/><b></b >", vec!["a", "b"]),
        ] {
            let mut p = StreamParser::new(Mode::Strict);
            p.feed(hdr.as_bytes());
            p.feed(input.as_bytes());
            assert!(matches!(
                p.next_event().unwrap().unwrap().event,
                Event::StreamOpen(_)
            ));
            for want in names {
                match p.next_event() {
                    Ok(Some(Parsed {
                        event: Event::Element(el),
                        ..
                    })) => assert_eq!(el.name, want, "{input}"),
                    other => panic!("{input}: {other:?}"),
                }
            }
            assert_eq!(p.next_event(), Ok(None), "{input}");
        }
    }
}
