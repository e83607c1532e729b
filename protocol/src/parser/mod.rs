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
//!
//! # The files, in reading order
//!
//! - `event.rs`: what the parser yields ([`Event`], [`Parsed`]) and how it
//!   treats damage ([`Mode`]).
//! - `error.rs`: why bytes could not be parsed ([`ParseError`],
//!   [`Restricted`]) and the stream error a server answers with.
//! - `simple.rs`: **the simple path**, enough on its own to parse XMPP
//!   correctly: [`StreamParser`] with its resumable byte-by-byte scanner
//!   (limits, stream restarts, lenient resynchronisation, skipping an
//!   oversized element) and the builder that hands one complete element to
//!   quick-xml's reader. Read this first.
//! - `tree.rs`: the steps both builders share: a start tag becomes an
//!   [`Element`] (namespaces, attributes, entities), text and finished
//!   children are attached to the element that is open.
//! - `fast.rs`: **an optimisation**: the whole-stanza fast path (tag to tag
//!   with memchr) and the builder that works from the tags it found. It must
//!   give exactly what the simple path gives; its header names the tests and
//!   fuzz targets that check this.
//! - `skim.rs`: **an optimisation for readers**: [`StreamParser::next_ref`]
//!   lends a usual stanza as a view of its bytes ([`ElementRef`]) instead of
//!   building a tree, and builds the tree for anything unusual. For the
//!   sniffer, which reads a few parts of each stanza and keeps none.
//! - `fixtures.rs` (tests only): the stream the unit tests of both paths use.
//!
//! The dependencies run one way: `simple` → `skim` → `fast` → `tree`, and
//! every file → `event`/`error`.
//!
//! [`Limits`]: crate::limits::Limits
//! [`Element`]: crate::element::Element

mod error;
mod event;
mod fast;
#[cfg(test)]
mod fixtures;
mod simple;
mod skim;
mod tree;

pub use error::{ParseError, Restricted};
pub use event::{Event, Mode, Parsed};
pub use simple::{StreamParser, both_builders};
pub use skim::{Children, ElementRef, EventRef, Skimmed};

/// One element read from a string: a stanza or payload we serialized
/// ourselves and kept (a stored PEP item, a stanza kept for stream
/// management), or a payload carried as text (OMEMO's encrypted envelope).
/// It is read as if inside a client stream, so an element that names no
/// namespace is in `jabber:client`. `None` if it does not parse.
pub fn parse_element(xml: &str) -> Option<crate::Element> {
    let mut p = StreamParser::new(Mode::Lenient);
    p.feed(
        format!(
            "<stream:stream xmlns='{}' xmlns:stream='{}'>",
            crate::ns::CLIENT,
            crate::ns::STREAM
        )
        .as_bytes(),
    );
    p.feed(xml.as_bytes());
    loop {
        match p.next_event() {
            Ok(Some(parsed)) => {
                if let Event::Element(el) = parsed.event {
                    return Some(el);
                }
            }
            _ => return None,
        }
    }
}
