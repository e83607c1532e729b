//! Harness for end-to-end tests: starts the real binaries on loopback, talks
//! to them over pipes and raw sockets, and on failure prints what it ran and
//! everything that came back.
//!
//! The processes themselves are run by the `harness` crate, shared with
//! `labs`: each in its own process group, killed on drop. [`bin`] builds the
//! binaries on first use (`cargo build --workspace --bins`, once per test
//! process), so a test always runs the code as it is now. Our servers bind
//! port 0 and say which port they got ([`harness::chat`]); only Prosody, which
//! cannot, still gets a port found free beforehand.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod browser;
mod client;
mod common;
mod proxy;
mod raw;
mod relay;
mod server;
mod sniffer;
mod tmux;
mod twin;

pub use browser::*;
pub use client::*;
pub use common::*;
pub use proxy::*;
pub use raw::*;
pub use relay::*;
pub use server::*;
pub use sniffer::*;
pub use tmux::*;
pub use twin::*;
