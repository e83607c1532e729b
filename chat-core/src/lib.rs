//! The chat service and client, written once and run over any byte stream.
//!
//! `chat-plain` and `chat-tls` are thin binaries around this crate: they
//! differ only in the [`transport`] they plug in.
//!
//! Modules:
//! - [`server`]: the XMPP server (negotiation, routing, presence, rosters,
//!   offline storage, registration).
//! - [`client`]: the client library and the interactive / scripted CLI.
//! - [`storage`]: SQLite persistence (accounts as SCRAM credentials, rosters,
//!   offline messages).
//! - [`transport`]: the trait a binary implements to supply TCP or TLS.
//! - [`xmpp_io`]: the protocol parser fed from an async socket.
//! - [`cli`]: command-line arguments and entry points shared by the twins.
//! - [`exit`]: the exit codes every command uses.
//! - [`bench`]: the load generator behind `bench`.
//! - [`util`]: ids and timestamps.
#![forbid(unsafe_code)]

pub mod bench;
pub mod cli;
pub mod client;
pub mod exit;
pub mod server;
pub mod storage;
pub mod transport;
pub mod util;
pub mod xmpp_io;
