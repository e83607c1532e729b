//! The simple path: [`StreamParser`], its resumable byte-by-byte scanner, and
//! the builder that hands one complete element to quick-xml's reader.
//!
//! The scanner ([`StreamParser::scan`]) is a state machine over single bytes
//! ([`Lex`]): it finds where the next top-level element ends, and enforces
//! every [`Limits`] bound and the RFC 6120 restrictions while the element
//! grows, so nothing over the limit is ever buffered. Only a complete element
//! is then built ([`build_element`]). This path alone parses XMPP correctly;
//! `fast.rs` only makes the usual case (a whole stanza in one read) cheaper,
//! and `scan` and `complete` below are where it is tried first.

use quick_xml::events::{BytesStart, Event as XmlEvent};

use super::error::{ParseError, Restricted};
use super::event::{Event, Mode, Parsed};
use super::fast::{
    STOP_CLOSE, STOP_DQUOTE, STOP_NAME, STOP_SQUOTE, STOP_TAG, STOP_TEXT, Tag, build_tagged,
    whole_element,
};
use super::skim::{self, ElementRef, EventRef, SkimTag, Skimmed};
use super::tree::{
    OpenElement, Scope, attach, attr_value, checked_attributes, has_duplicate, is_name_start,
    lookup, name_len, open_element, push_text, split_qname, xml_error,
};
use crate::element::{CompactString, Element};
use crate::limits::Limits;
use crate::ns;
use crate::stream::StreamHeader;

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
    /// The tags of the stanza [`next_ref`](Self::next_ref) last handed out
    /// as a view (see `skim.rs`).
    skim_tags: Vec<SkimTag>,
    /// Whether that stanza has entities to resolve.
    skim_entities: bool,
    /// The element last built as a tree: moved out by `next_event`, lent
    /// by `next_ref`.
    built: Element,
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
            skim_tags: Vec::new(),
            skim_entities: false,
            built: Element::default(),
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

    /// The bytes fed from stream offset `from` on, as far as they are still
    /// held (until the next [`feed`](Self::feed)), or `None` if they were
    /// dropped. Taken at [`offset`](Self::offset) before an event, the bytes
    /// up to `offset()` after it are all that the event consumed: its own
    /// bytes, and in lenient mode any stray text or end tag stepped over
    /// before it (which [`Parsed::bytes`] does not count). A proxy forwards
    /// those unchanged, and after an error everything from the damage on
    /// (lenient recovery has moved past it by then).
    pub fn held_from(&self, from: u64) -> Option<&[u8]> {
        let i = usize::try_from(from.checked_sub(self.base)?).ok()?;
        self.buf.get(i..)
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

    /// Gives back the memory kept between stanzas (the input buffer, the
    /// build stacks) when nothing is held: for a connection that has gone
    /// quiet. Every idle connection costs what it keeps, and an attacker
    /// can open many (slowloris); a busy one keeps its buffers.
    pub fn release_idle(&mut self) {
        if self.start < self.buf.len() || self.tagged.is_some() {
            return;
        }
        self.base += self.buf.len() as u64;
        self.buf = Vec::new();
        self.start = 0;
        self.pos = 0;
        self.elem_start = None;
        self.open = Vec::new();
        self.tags = Vec::new();
        self.skim_tags = Vec::new();
        self.built = Element::default();
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

    /// True once `</stream:stream>` was seen (strict mode; a lenient parser
    /// reads on after a close, see [`Mode::Lenient`]).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The next event, `Ok(None)` when more bytes are needed. In strict mode
    /// an error is final: every later call returns it again.
    pub fn next_event(&mut self) -> Result<Option<Parsed>, ParseError> {
        loop {
            let Some(found) = self.next_found()? else {
                return Ok(None);
            };
            match self.complete(found) {
                Ok(Some(p)) => return Ok(Some(p)),
                Ok(None) => continue,
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    /// As [`next_event`](Self::next_event), with the same events, errors
    /// and recovery, but an element is lent instead of given: for a reader
    /// that looks at a few parts of each stanza and keeps none (the
    /// sniffer). A usual stanza is then not built as a tree at all: see
    /// [`ElementRef`].
    pub fn next_ref(&mut self) -> Result<Option<EventRef<'_>>, ParseError> {
        let (s, end, skimmed) = loop {
            let Some(found) = self.next_found()? else {
                return Ok(None);
            };
            let Found::Element(end) = found else {
                match self.complete(found) {
                    Ok(Some(p)) => {
                        return Ok(Some(match p.event {
                            Event::StreamOpen(h) => EventRef::StreamOpen(h),
                            Event::StreamClose => EventRef::StreamClose,
                            Event::Element(el) => {
                                self.built = el;
                                EventRef::Element(ElementRef::Tree(&self.built))
                            }
                        }));
                    }
                    Ok(None) => continue,
                    Err(e) => return Err(self.fail(e)),
                }
            };
            let s = self.elem_start.unwrap_or(self.start);
            match self.read_element(s, end, true) {
                Ok(skimmed) => break (s, end, skimmed),
                Err(e) => return Err(self.fail(e)),
            }
        };
        self.start = end;
        self.elem_start = None;
        if !skimmed {
            return Ok(Some(EventRef::Element(ElementRef::Tree(&self.built))));
        }
        // Checked by `read_element` already; a borrow cannot be kept
        // across the loop, so the text is taken again.
        let text = std::str::from_utf8(&self.buf[s..end]).map_err(|_| ParseError::InvalidUtf8 {
            offset: self.base + s as u64,
        })?;
        let stream_ns = lookup(&self.scope, "").map_or(ns::CLIENT, |u| u.as_str());
        Ok(Some(EventRef::Element(ElementRef::Skim(Skimmed::root(
            text,
            &self.skim_tags,
            stream_ns,
            self.skim_entities,
        )))))
    }

    /// The next piece of markup the scanner completes, with an oversized
    /// element skipped when asked and errors recorded as `fail` does.
    fn next_found(&mut self) -> Result<Option<Found>, ParseError> {
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
                Err(e) => return Err(self.fail(e)),
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
            return Ok(Some(found));
        }
    }

    /// Records an error: final in strict mode, stepped over in lenient.
    fn fail(&mut self, e: ParseError) -> ParseError {
        match self.mode {
            Mode::Strict => {
                self.failed = Some(e.clone());
            }
            Mode::Lenient => self.resync(),
        }
        e
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
                self.read_element(s, end, false)?;
                (end, Some(Event::Element(std::mem::take(&mut self.built))))
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
                // Lenient (a sniffer, a proxy): whatever follows the close
                // still crossed the wire and is read, as a new stream or
                // as more of this one. An attacker sees those bytes too.
                self.phase = match self.mode {
                    Mode::Strict => Phase::Closed,
                    Mode::Lenient => Phase::Prolog,
                };
                (end, Some(Event::StreamClose))
            }
        };
        let bytes = end - self.start;
        self.start = end;
        self.elem_start = None;
        Ok(event.map(|event| Parsed { event, bytes }))
    }

    /// Reads the complete element at `buf[s..end]`: with `skim`, and when
    /// the stanza is usual, as a view whose tags go to `skim_tags` (true);
    /// otherwise built as a tree, into `built` (false).
    fn read_element(&mut self, s: usize, end: usize, skim: bool) -> Result<bool, ParseError> {
        let offset = self.at(s);
        let text = std::str::from_utf8(&self.buf[s..end])
            .map_err(|_| ParseError::InvalidUtf8 { offset })?;
        // The tags are known when the fast path found the element; an
        // element that arrived in pieces is looked at once more, whole.
        // Anything `whole_element` leaves to the byte path (CDATA, for one)
        // is built by quick-xml's own reader.
        let tagged = self.tagged.take() == Some((s, end))
            || whole_element(&self.buf[..end], s, &self.limits, &mut self.tags) == Some(end);
        if skim && self.skim_tags.capacity() > RETAINED_TAGS {
            self.skim_tags = Vec::new();
        }
        let skimmed = skim
            && tagged
            && skim::skim(text, &self.tags, s, &mut self.skim_tags)
                .map(|entities| self.skim_entities = entities)
                .is_some();
        let built = (!skimmed).then(|| {
            if tagged {
                build_tagged(text, s, &self.tags, &self.scope, offset, &mut self.open)
            } else {
                build_element(text, &self.scope, offset, &mut self.open)
            }
        });
        // One stanza of thousands of tiny tags must not leave every
        // connection holding a tag list several times the stanza limit for
        // the rest of its life; a usual stanza has a few.
        if self.tags.capacity() > RETAINED_TAGS {
            self.tags = Vec::new();
        }
        if let Some(el) = built {
            self.built = el?;
        }
        Ok(skimmed)
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

/// Builds one element from its complete, UTF-8 checked markup. `scope` holds
/// the bindings declared on the stream header.
pub(super) fn build_element(
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

/// How many tags' room a parser keeps between stanzas.
const RETAINED_TAGS: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_bytes_of_each_event_are_exactly_its_input() {
        let input = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='x'> <message to='a@x'><body>hi &amp; bye</body></message>\n<presence/></stream:stream>";
        for chunk in [1, 7, input.len()] {
            let mut p = StreamParser::new(Mode::Lenient);
            let mut again = Vec::new();
            for piece in input.as_bytes().chunks(chunk) {
                p.feed(piece);
                loop {
                    let before = p.offset();
                    match p.next_event() {
                        Ok(Some(parsed)) => {
                            let held = p.held_from(before).expect("still held");
                            again.extend_from_slice(&held[..parsed.bytes]);
                        }
                        Ok(None) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            assert_eq!(
                String::from_utf8(again).unwrap(),
                input,
                "chunks of {chunk}"
            );
        }
        // After lenient recovery the damaged bytes are still held.
        let mut p = StreamParser::new(Mode::Lenient);
        p.feed(b"<message><body>ok</body></message><a b='1' b='2'/><presence/>");
        let before = p.offset();
        assert!(matches!(p.next_event(), Ok(Some(_))));
        let before_bad = p.offset();
        assert!(before_bad > before);
        assert!(p.next_event().is_err());
        assert!(p.held_from(before_bad).unwrap().starts_with(b"<a b="));
    }
    use crate::error::StreamErrorCondition;
    use crate::parser::fixtures::{HEADER, all, fixture, parse_whole};

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
