//! End-to-end tests through the real binaries, one test binary for the whole
//! suite. Each module is one area; every test starts its own server with its
//! own data folder, on loopback ports the server picks and reports (see
//! `tests/src/lib.rs` and the `harness` crate).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod bad_input;
mod bench;
mod chat;
mod directory;
mod files;
mod hardening;
mod hostile_server;
mod interop;
mod labs;
mod leak_check;
mod mitm;
mod omemo;
mod pipes;
mod rooms;
mod sniffer;
mod stream_management;
mod tls;
mod tui;
