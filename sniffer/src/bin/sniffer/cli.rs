//! The command line: [`Cli`] and its subcommands, parsed by clap. Nothing
//! here runs anything; `commands.rs` does.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use sniffer::keylog::KeyLog;
use sniffer::reassembly::{ConnId, Limits};
use sniffer::report::Printer;

/// What an attacker on the wire can read of XMPP, with and without TLS.
#[derive(Parser)]
#[command(name = "sniffer", version, about)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The options every subcommand takes.
#[derive(Args, Clone)]
pub(crate) struct Common {
    /// Print JSON lines instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Only the summary, not each finding.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    /// Under each TLS connection's traffic line, every encrypted record:
    /// direction, size in bytes and time after the first (what a
    /// traffic-analysis attacker works from; JSON always has them as
    /// `sizes`, positive to the server, and `times`).
    #[arg(long, global = true)]
    pub(crate) records: bool,
    /// Draw the summary table as wide as its content instead of wrapping
    /// it to 100 columns.
    #[arg(long, global = true)]
    pub(crate) wide: bool,
    /// Decrypt TLS with the session secrets in this NSS key log (the file
    /// SSLKEYLOGFILE names; any program's): what is inside is read like
    /// plaintext. A live capture reads the file again as it grows.
    #[arg(long, value_name = "FILE", global = true)]
    pub(crate) keylog: Option<PathBuf>,
    /// The server's private key (PEM), to show what it can and cannot
    /// open: an ECDHE session (every TLS 1.3 one) it cannot, whatever the
    /// attacker does (forward secrecy).
    #[arg(long, value_name = "FILE", global = true, conflicts_with = "keylog")]
    pub(crate) server_key: Option<PathBuf>,
    /// Write files recovered from In-Band Bytestreams to this folder.
    #[arg(long, value_name = "DIR", global = true)]
    pub(crate) export: Option<PathBuf>,
    /// Out-of-order bytes held per connection direction before a hole is
    /// given up on.
    #[arg(long, default_value_t = sniffer::reassembly::DEFAULT_MAX_BUFFER, global = true)]
    pub(crate) max_flow_buffer: usize,
    /// Connections tracked at once (the least recently active is dropped).
    #[arg(long, default_value_t = sniffer::reassembly::DEFAULT_MAX_FLOWS, global = true)]
    pub(crate) max_flows: usize,
}

impl Common {
    /// The reassembly limits the flags set.
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_buffer: self.max_flow_buffer,
            max_flows: self.max_flows.max(1),
        }
    }
    /// The key log to decrypt with, if one was given (or the server's key,
    /// which opens nothing, to say so per session).
    /// `live`: the key log may not exist yet.
    pub(crate) fn keylog(&self, live: bool) -> anyhow::Result<Option<KeyLog>> {
        if let Some(path) = &self.server_key {
            return Ok(Some(KeyLog::server_key_only(path)?));
        }
        let Some(path) = &self.keylog else {
            return Ok(None);
        };
        Ok(Some(if live {
            KeyLog::watch(path)?
        } else {
            KeyLog::load(path)?
        }))
    }
    /// How findings are printed.
    pub(crate) fn printer(&self) -> Printer {
        Printer {
            json: self.json,
            quiet: self.quiet,
            records: self.records,
        }
    }
}

/// The subcommands.
#[derive(Subcommand)]
pub(crate) enum Command {
    /// Capture live and show each finding as it happens; Ctrl-C for the summary.
    Live {
        /// Interface to capture on.
        #[arg(long, default_value = "lo")]
        interface: String,
        /// BPF filter (as tcpdump takes it).
        #[arg(long)]
        filter: Option<String>,
        /// Also save the capture to this pcap file.
        #[arg(long, value_name = "FILE")]
        write: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Read pcap or pcapng files: the same findings and summary as live.
    Read {
        /// Capture files, read in order as one capture.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// BPF filter.
        #[arg(long)]
        filter: Option<String>,
        /// Threads that read connections (the output is the same with
        /// any number); 0, the default, is one per core, up to 8.
        #[arg(long, default_value_t = 0, value_name = "N")]
        threads: usize,
        #[command(flatten)]
        common: Common,
    },
    /// One self-contained HTML page to hand out: the verdict table, each
    /// connection's findings, a plot of TLS record sizes and times;
    /// passwords masked.
    Report {
        /// Capture files, read in order as one capture.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where to write the page.
        #[arg(long, value_name = "FILE")]
        html: PathBuf,
        /// Show passwords in full (the page is made to be handed out, so
        /// they are masked unless asked for).
        #[arg(long)]
        show_secrets: bool,
        /// BPF filter.
        #[arg(long)]
        filter: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Print the reassembled bytes of one TCP connection, both directions:
    /// as text, each line marked `>` (to the server) or `<` (to the client),
    /// with control characters escaped.
    Follow {
        /// Capture file.
        file: PathBuf,
        /// The connection's number (as the other commands print it, #N).
        #[arg(long)]
        stream: ConnId,
        /// Hex dump.
        #[arg(long, conflicts_with = "raw")]
        hex: bool,
        /// The raw bytes, as they came, unescaped: for a file or a pipe, not
        /// a terminal (the peer's escape sequences reach it as they are).
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Fail (exit 1) if any needle crosses the wire readable while COMMAND runs.
    Guard {
        /// Interface to capture on.
        #[arg(long, default_value = "lo")]
        interface: String,
        /// A secret that must not appear (repeatable).
        #[arg(long)]
        needle: Vec<String>,
        /// A file of secrets, one per line.
        #[arg(long, value_name = "FILE")]
        needle_file: Option<PathBuf>,
        /// Check this capture instead of running a command.
        #[arg(long, value_name = "FILE", conflicts_with = "command")]
        pcap: Option<PathBuf>,
        /// Also save the capture.
        #[arg(long, value_name = "FILE")]
        write: Option<PathBuf>,
        /// The command to run under capture.
        #[arg(last = true)]
        command: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
}
