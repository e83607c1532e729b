//! `sniffer`: what an attacker on the wire sees of the twin chat.
//!
//! ```text
//! sniffer live --interface lo                 # events as they happen; Ctrl-C: summary
//! sniffer read capture.pcap                   # the same from a file
//! sniffer follow capture.pcap --stream 0      # one connection's bytes
//! sniffer guard --needle s3cret -- CMD ARGS   # CI: fail if a secret crosses the wire readable
//! ```
//!
//! Exit codes: 0 done (guard: nothing found), 1 guard found a needle, 2 could
//! not run (bad file, no permission to capture, bad flags).
//!
//! The binary is thin: `cli.rs` holds the flags, `commands.rs` runs each
//! subcommand on the `sniffer` library, and `output.rs` owns stdout.
#![forbid(unsafe_code)]

mod cli;
mod commands;
mod output;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: every stanza builds a small element tree, and the C library's
/// allocator was a fifth of the time reading a capture.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = commands::run(cli.command);
    output::flush_out();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("sniffer: {e:#}");
            ExitCode::from(2)
        }
    }
}
