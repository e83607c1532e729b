//! Every way running a program can fail, each carrying what a person
//! needs to understand it.

use std::path::PathBuf;
use std::process::ExitStatus;

/// What can go wrong while running a program.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The program could not be started at all.
    #[error("cannot start {name}")]
    Spawn {
        /// What it is, for messages.
        name: String,
        /// Why the operating system refused.
        #[source]
        source: std::io::Error,
    },
    /// Nothing came on stdout within the limit.
    #[error("{name} gave no answer within {secs} s")]
    NoAnswer {
        /// What it is.
        name: String,
        /// The limit, in seconds.
        secs: u64,
    },
    /// Its stdout ended before the line that was waited for.
    #[error("{name} ended before '{text}': {stderr}")]
    EndedBefore {
        /// What it is.
        name: String,
        /// The text waited for.
        text: String,
        /// Its stderr, trimmed.
        stderr: String,
    },
    /// The line that says it is ready never came on stderr.
    #[error("{name} did not start: {stderr}")]
    NotStarted {
        /// What it is.
        name: String,
        /// Its stderr, trimmed.
        stderr: String,
    },
    /// A server's readiness line did not carry the addresses it should.
    #[error("{name} printed a readiness line without its addresses: {line}")]
    BadReadiness {
        /// What it is.
        name: String,
        /// The line.
        line: String,
    },
    /// It exited with a failure.
    #[error("{name} failed ({status}): {stderr}; last output: {tail}")]
    Failed {
        /// What it is.
        name: String,
        /// How it ended.
        status: ExitStatus,
        /// Its stderr, trimmed.
        stderr: String,
        /// Its last stdout lines that mention an error, joined with ` | `.
        tail: String,
    },
    /// It was still running at the limit.
    #[error("{name} did not finish within {secs} s")]
    Unfinished {
        /// What it is.
        name: String,
        /// The limit, in seconds.
        secs: u64,
    },
    /// A signal could not be delivered to it.
    #[error("cannot stop {name}")]
    Signal {
        /// What it is.
        name: String,
        /// The error from `kill(2)`.
        #[source]
        source: nix::Error,
    },
    /// Waiting for it failed (an operating-system error).
    #[error("cannot wait for {name}")]
    Wait {
        /// What it is.
        name: String,
        /// The error from `waitpid(2)`.
        #[source]
        source: std::io::Error,
    },
    /// The running program's own path is unknown, so its siblings are too.
    #[error("cannot find this program's folder")]
    NoExe(#[source] std::io::Error),
    /// A sibling binary is not there.
    #[error("{} is missing: build the toolkit first (cargo build --workspace --bins)", .0.display())]
    Missing(PathBuf),
    /// `cargo build` for a test process failed; its output follows.
    #[error("`{command}` failed:\n{output}")]
    Build {
        /// The command line.
        command: String,
        /// What cargo printed.
        output: String,
    },
    /// `chat-tls certs` failed.
    #[error("chat-tls certs failed: {0}")]
    Certs(String),
    /// Ctrl-C or SIGTERM arrived (see [`signals`]); every process started
    /// through this crate is stopped as its handle drops.
    #[error("interrupted")]
    Interrupted,
}
