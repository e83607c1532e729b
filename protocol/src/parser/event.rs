//! What the stream parser yields: stream events with the bytes each
//! consumed, and the [`Mode`] that says how it treats damage.

use crate::element::Element;
use crate::stream::StreamHeader;

/// How the parser treats damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The first error is final, as RFC 6120 requires of a server or client.
    Strict,
    /// Report each error, then skip to the next top-level element. Elements
    /// seen before any stream header are accepted (capture started mid-stream),
    /// and so is whatever follows the stream's close: for a sniffer or a
    /// proxy, every byte that crossed the wire is read.
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
