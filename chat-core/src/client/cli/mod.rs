//! The line client: interactive on a terminal, scripted otherwise.
//!
//! Commands come one per line from stdin and run one after the other (each
//! waits for the server's answer to the one before); events print one per
//! line as they happen (`--json`: one JSON object per line, with a `type`
//! field). When stdin ends, the client waits for its outstanding requests,
//! signs out, and exits 0, or 1 if any command failed. Connection failures
//! exit 2.
//!
//! - `command`: an input line as a typed `Command` (parsing only).
//! - `commands`: running each command: one small function per command.
//! - `format`: the output; each line is one value, printed as text or as
//!   JSON, so the two cannot differ (peer text is made terminal-safe).
//! - `wait`: `/wait` and the backlog of events it matches.
//! - `session`: sign-in, the command loop, sign-out.
//! - [`tui`]: the terminal UI, for people at a terminal: the same
//!   commands and output lines, in windows, with a security status bar.

mod command;
mod commands;
mod format;
mod session;
pub mod tui;
mod wait;

pub use session::{Outcome, run};
