//! One of the twin binaries, `chat-plain` or `chat-tls`. This file is the
//! same in both: the command line, the server and the client all live in
//! `chat-core`. What differs is `transport.rs` alone, which is the lesson:
//! `diff -r chat-plain/src chat-tls/src` shows everything TLS changes.
//!
//! ```text
//! chat-plain server --listen 127.0.0.1:5222 --domain localhost --data ./chat-data
//! CHAT_PASSWORD=secret chat-plain client --jid alice@localhost --register
//! ```
#![forbid(unsafe_code)]

mod transport;

fn main() -> std::process::ExitCode {
    chat_core::cli::twin_main::<transport::Transport>(env!("CARGO_PKG_NAME"))
}
