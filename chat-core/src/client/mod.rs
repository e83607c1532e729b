//! The chat client: a library API used by the CLI, the labs, the tests and
//! the load generator.
//!
//! [`connect`] signs in and returns a [`Client`]; from then on a reader task
//! turns incoming stanzas into [`ClientEvent`]s and a writer task drains
//! the queue of outgoing stanzas. The modules, lowest first (each uses only
//! those above it, so there are no cycles):
//!
//! - [`limits`]: every bound and timeout, and what happens at each. The
//!   server is not trusted to be kind: every queue and map that peer input
//!   can grow is bounded, and an oversized stanza is skipped with one error
//!   instead of ending the session.
//! - [`error`]: [`ClientError`], one variant per failure.
//! - [`event`]: [`ClientEvent`] and the data it carries (serializable: the
//!   line client's `--json` output), and the bounded event queue.
//! - `state`: what the reader learns and the API reads (roster, contacts
//!   online, rooms, file transfers).
//! - `outbound`: the queue of stanzas to the server and the writer task.
//! - `api`: the [`Client`] itself: send, iq requests, contacts, presence,
//!   events, sign-out.
//! - [`rooms`], [`files`], [`directory`]: the feature APIs (more
//!   `impl Client`) and the handlers of their incoming stanzas.
//! - `sm`: stream management (XEP-0198): the counts the reader and writer
//!   share, and how a dropped session is resumed.
//! - `reader`: the reader task, which dispatches each stanza to its owner.
//! - `connect`: stream negotiation (STARTTLS, registration, SASL, binding),
//!   then starting the reader and writer.
//! - [`cli`]: the interactive and scripted line client, a front end on all
//!   of the above.
//!
//! A stanza from the server goes: socket → `reader::run` →
//! `reader::dispatch` → `rooms` / `files` / the iq, message and presence
//! handlers in `reader` → `state` and the event queue → the front end's
//! [`Client::next_event`].

mod api;
mod caps;
pub mod cli;
mod connect;
pub mod directory;
pub mod error;
pub mod event;
pub mod files;
pub mod limits;
pub mod omemo;
mod outbound;
mod reader;
pub mod rooms;
mod sm;
mod state;

pub use api::{Client, RawSender};
pub use connect::{ConnectOptions, connect};
pub use error::{ClientError, Lost};
pub use event::{ChatState, ClientEvent, EventLimits, RosterItem};
pub use limits::*;
pub use state::Link;
