//! `chat-plain`: the chat server and client over plain TCP.
//!
//! This is the deliberately insecure twin of `chat-tls`: every byte,
//! passwords included, crosses the network readable by anyone who can see
//! it. Compare this file with `chat-tls/src/main.rs`: only the transport
//! differs.
//!
//! ```text
//! chat-plain server --listen 127.0.0.1:5222 --domain localhost --data ./chat-data
//! CHAT_PASSWORD=secret chat-plain client --jid alice@localhost --register
//! ```
#![forbid(unsafe_code)]

mod transport;

use std::process::ExitCode;

use chat_core::cli::{ClientArgs, ServerArgs, init_tracing, run_client, run_main, run_server};
use clap::{Parser, Subcommand};

/// The chat over plain TCP (no encryption at all: for the labs).
#[derive(Parser)]
#[command(name = "chat-plain", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the chat server.
    Server(ServerArgs),
    /// Run the chat client (interactive, or scripted from stdin).
    Client(ClientArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => {
            init_tracing(args.verbose);
            run_main("chat-plain", args.verbose, || async move {
                run_server("chat-plain", &args, transport::Plain, "plaintext: no TLS").await
            })
        }
        Command::Client(args) => {
            if args.verbose {
                init_tracing(true);
            }
            run_main("chat-plain", args.verbose, || async move {
                run_client("chat-plain", &args, transport::Plain).await
            })
        }
    }
}
