//! The process harness: how `labs`, the end-to-end tests (and the coming
//! `mitm-proxy` tests) run the toolkit's programs. Written once, so that a
//! fix to how a process is started, watched or stopped reaches every user.
//!
//! - [`bins`]: where a binary is. Beside the running program (the `labs`
//!   runner, installed with its siblings), or freshly built by cargo for a
//!   test process, so that a test can never run a stale build.
//! - [`process`]: [`Proc`], one child process in its own process group: its
//!   stdout line by line (and a transcript for failure messages), its stderr
//!   kept, bounded waits, and the whole group killed when the handle drops.
//! - [`chat`]: the twins' servers: the readiness line a server prints once
//!   its listeners are bound (ports chosen by the kernel, so nothing races
//!   for a port), and the lab certificates.
//! - [`signals`]: Ctrl-C and SIGTERM become a flag that every wait checks,
//!   so that the cleanup code (the drops above) runs.
//! - [`Error`] (`error.rs`): every way the above fails, each carrying what
//!   a person needs to understand it (the program, its stderr, the limit).
#![cfg(unix)]

pub mod bins;

pub mod chat;
mod error;
pub mod process;
pub mod signals;

pub use chat::Ports;
pub use error::Error;
pub use process::{Input, Proc};
