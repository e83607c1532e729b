//! Sans-IO subset of XMPP (RFC 6120, RFC 6121), shared by every tool in the kit.
//!
//! This crate never touches a socket: it turns bytes into events and values into
//! bytes, so that the chat server and client (bytes from a socket), the sniffer
//! (bytes reassembled from a capture) and the proxy (bytes from two sockets) all
//! parse XMPP the same way.
//!
//! Modules:
//! - [`limits`]: every bound the parser enforces, each with the reason for it.
//! - [`parser`]: the incremental stream parser (stream open, top-level elements,
//!   stream close, with the exact byte count each consumed), strict or lenient.
//! - [`element`]: the small element tree and its escaping serializer.
//! - [`stream`]: the stream header and the opening and closing tags.
//! - [`jid`]: Jabber IDs (RFC 7622 rules that matter: lengths, forbidden
//!   characters, case folding).
//! - [`stanza`]: typed views of `<message/>`, `<presence/>` and `<iq/>`.
//! - [`error`]: stream and stanza error conditions (RFC 6120 4.9.3, 8.3.3).
//! - [`rsm`]: Result Set Management (XEP-0059), paging through long lists.
//! - [`sasl`]: SASL PLAIN and SCRAM-SHA-1/SHA-256, client and server sides.
//! - [`ns`]: namespace constants.
//! - [`service`]: the node, resource and history length this chat's
//!   client and server agree on.
//! - [`datetime`]: XMPP date-times (XEP-0082).
//! - [`display`]: peer-supplied text made safe to print on a terminal.
#![forbid(unsafe_code)]

pub mod datetime;
pub mod display;
pub mod element;
pub mod error;
pub mod jid;
pub mod limits;
pub mod ns;
pub mod omemo;
pub mod parser;
pub mod rsm;
pub mod sasl;
pub mod service;
pub mod sm;
pub mod stanza;
pub mod stream;

pub use element::{CompactString, Element, Node};
pub use error::{ErrorType, StanzaErrorCondition, StreamErrorCondition};
pub use jid::{Jid, JidError};
pub use limits::Limits;
pub use parser::{Event, Mode, ParseError, StreamParser};
pub use stream::StreamHeader;
