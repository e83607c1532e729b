//! Why a byte stream could not be parsed: one [`ParseError`] variant per
//! failure, each with its offset or the limit in force, and the RFC 6120
//! stream error a server answers it with.

use crate::error::StreamErrorCondition;

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
