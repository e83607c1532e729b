//! `mitm-proxy`: the attacker in the path between an XMPP client and its
//! server, on loopback.
//!
//! ```text
//! mitm-proxy --listen 127.0.0.1:5999 --upstream 127.0.0.1:5222 --attack strip-starttls
//! mitm-proxy attacks
//! ```

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use mitm_proxy::attack::Attack;
use mitm_proxy::proxy::{self, Config};
use protocol::outln;

/// Exit code: usage or runtime error (the workspace convention).
const EXIT_ERROR: u8 = 2;

/// The active attacker: relays XMPP between a client and a server on
/// loopback, reads both directions, and applies the attacks you name. At
/// the end of each connection it says what it obtained, or that the client
/// refused. Ctrl-C prints a summary.
#[derive(Parser)]
#[command(
    name = "mitm-proxy",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Where clients connect (loopback only; port 0: the kernel picks one).
    #[arg(long, default_value = "127.0.0.1:5999")]
    listen: SocketAddr,
    /// The real server (loopback only).
    #[arg(long, required = true)]
    upstream: Option<SocketAddr>,
    /// An attack to apply; repeat for several (`mitm-proxy attacks` lists
    /// them). Without one, the proxy only reads (relay).
    #[arg(long = "attack", value_enum)]
    attacks: Vec<Attack>,
    /// JSON lines instead of text.
    #[arg(long)]
    json: bool,
    /// With `--attack corrupt-tls`: which TLS application-data record from
    /// the client gets one bit flipped (counting from 1).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    corrupt_record: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Every attack: what it does, what it succeeds against, what defeats it.
    Attacks {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Attacks { json }) => {
            list_attacks(json);
            ExitCode::SUCCESS
        }
        None => match run(cli) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mitm-proxy: {e:#}");
                ExitCode::from(EXIT_ERROR)
            }
        },
    }
}

fn list_attacks(json: bool) {
    if json {
        for a in Attack::ALL {
            outln!("{}", serde_json::to_string(&a.info()).unwrap_or_default());
        }
        return;
    }
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    // Wrapped to the terminal, or to a readable width in a pipe.
    table.set_content_arrangement(ContentArrangement::Dynamic);
    if table.width().is_none() {
        table.set_width(110);
    }
    table.set_header(vec![
        "attack",
        "what it does",
        "succeeds against",
        "defeated by",
    ]);
    for a in Attack::ALL {
        let i = a.info();
        table.add_row(vec![i.name, i.does, i.succeeds_against, i.defeated_by]);
    }
    outln!("{table}");
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let Some(upstream) = cli.upstream else {
        anyhow::bail!("--upstream ADDR is required");
    };
    let config = Config {
        listen: cli.listen,
        upstream,
        attacks: cli.attacks.iter().copied().collect::<BTreeSet<_>>(),
        json: cli.json,
        corrupt_record: cli.corrupt_record,
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = proxy::bind(&config).await?;
        let addr = listener.local_addr()?;
        let names: Vec<&str> = config.attacks.iter().map(|a| a.name()).collect();
        // On stderr, so it never mixes with the events on stdout; scripts
        // and tests wait for this line (port 0 is resolved in it).
        eprintln!(
            "mitm-proxy: ready listen={addr} upstream={upstream} attacks={}",
            if names.is_empty() {
                "relay".to_string()
            } else {
                names.join(",")
            }
        );
        let json = config.json;
        let (verdicts, dropped) = proxy::run(config, listener, shutdown_signal()).await;
        if dropped > 0 {
            eprintln!(
                "mitm-proxy: {dropped} events were not shown: the output did not keep up (the traffic was relayed)"
            );
        }
        if json {
            for row in &verdicts {
                let line = Summary {
                    kind: "summary",
                    row,
                };
                outln!("{}", serde_json::to_string(&line)?);
            }
        } else if !verdicts.is_empty() {
            outln!("{}", proxy::summary_table(&verdicts));
        }
        anyhow::Ok(())
    })
}

/// One summary row as a JSON line.
#[derive(serde::Serialize)]
struct Summary<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    row: &'a mitm_proxy::proxy::VerdictRow,
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
