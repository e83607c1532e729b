//! Bounds on what a peer may make us buffer or build.
//!
//! Every limit here defends against one attack: a peer that sends an endless
//! stanza, an endlessly nested one, or a million attributes, in order to exhaust
//! the memory or CPU of a server that serves everyone else too. Exceeding any of
//! them is a `policy-violation` stream error, never unbounded growth.

/// Largest top-level element (stanza or nonza), in bytes, including its markup.
///
/// 64 KiB is far above any chat message and far below what would hurt a server
/// with thousands of connections. Without it, a peer that never closes a tag
/// makes the server buffer forever. Production servers use similar figures
/// (Prosody's default is 256 KiB, ejabberd's 64 KiB for clients) and make it
/// configurable, as the chat server's `--max-stanza` flag does.
pub const MAX_STANZA_BYTES: usize = 64 * 1024;

/// Deepest element nesting inside one stanza.
///
/// Real stanzas nest fewer than 10 levels (a data form in a query in an iq).
/// The bound stops a "billion open tags" stanza from growing the element stack
/// and from driving recursive code (serialisation, search) into a stack
/// overflow.
pub const MAX_DEPTH: usize = 32;

/// Most attributes on one element.
///
/// Stanzas carry a handful. The bound stops quadratic duplicate-attribute checks
/// and per-attribute allocations from being used as a CPU and memory attack.
pub const MAX_ATTRIBUTES: usize = 64;

/// Longest element or attribute name, in bytes.
///
/// Names in XMPP are short (`message`, `xml:lang`). A huge name is an attack or
/// garbage, never a real protocol element.
pub const MAX_NAME_BYTES: usize = 256;

/// The limits one parser enforces. [`Limits::default`] uses the constants above;
/// a server may lower or raise the stanza size from its command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// See [`MAX_STANZA_BYTES`].
    pub max_stanza_bytes: usize,
    /// See [`MAX_DEPTH`].
    pub max_depth: usize,
    /// See [`MAX_ATTRIBUTES`].
    pub max_attributes: usize,
    /// See [`MAX_NAME_BYTES`].
    pub max_name_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_bytes: MAX_STANZA_BYTES,
            max_depth: MAX_DEPTH,
            max_attributes: MAX_ATTRIBUTES,
            max_name_bytes: MAX_NAME_BYTES,
        }
    }
}
