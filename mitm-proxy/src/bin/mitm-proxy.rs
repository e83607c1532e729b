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
use std::path::PathBuf;
use std::sync::Arc;

use mitm_proxy::attack::Attack;
use mitm_proxy::intercept::{self, Forger, KeyLogFile};
use mitm_proxy::proxy::{self, Config};
use protocol::outln;

/// mimalloc, as in the sniffer: each stanza relayed builds a small element
/// tree both ways, and the C library's allocator was a fifth of the proxy's
/// time under load (`perf record` during `scripts/bench-proxy.sh`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// No line per stanza or stream header: connections, attacks,
    /// captures and verdicts only (under load).
    #[arg(long)]
    quiet: bool,
    /// With `--attack corrupt-tls`: which TLS application-data record from
    /// the client gets one bit flipped (counting from 1).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    corrupt_record: u64,
    /// With `--attack intercept-tls`: mint certificates with the CA in DIR
    /// (`ca.pem`, `ca.key`; make one with `mitm-proxy ca`). Without it, or
    /// `--cert`, certificates are self-signed.
    #[arg(long, value_name = "DIR", conflicts_with = "cert")]
    ca_dir: Option<PathBuf>,
    /// With `--attack intercept-tls`: show this certificate (PEM chain) ...
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// ... with this private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// With `--attack downgrade-sasl`: the mechanisms left in the offer the
    /// client sees (comma-separated). `PLAIN` (the default) goes for the
    /// password; `SCRAM-SHA-256,SCRAM-SHA-1` removes only the -PLUS ones
    /// (and the channel-binding types), so the client cannot bind its
    /// sign-in to its TLS; `SCRAM-SHA-1` forces the weakest hash; an entry
    /// like `tls-server-end-point` keeps only that channel-binding type.
    #[arg(
        long,
        value_name = "MECHS",
        value_delimiter = ',',
        default_value = "PLAIN"
    )]
    offer: Vec<String>,
    /// With `--attack tamper`: the rules of what to change (see the
    /// README: `WHERE NAME [ATTR=VALUE]... [body~REGEX] => ACTION`).
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// Write both legs of every connection to FILE (pcap, made-up TCP/IP
    /// headers; plaintext where the proxy ends TLS), for `sniffer read`
    /// and Wireshark.
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// Append both legs' TLS secrets to FILE (NSS key log format, for
    /// Wireshark). Whoever reads it can decrypt the traffic.
    #[arg(long, value_name = "FILE")]
    keylog: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Every attack: what it does, what it succeeds against, what defeats it.
    Attacks {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Makes the attacker's own CA for `intercept-tls --ca-dir`: `ca.pem`
    /// and `ca.key` (mode 0600).
    Ca {
        /// The folder to write them to.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Replace an existing CA.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Attacks { json }) => {
            list_attacks(json);
            ExitCode::SUCCESS
        }
        Some(Command::Ca { out, force }) => match intercept::write_ca(&out, force) {
            Ok(paths) => {
                for p in paths {
                    outln!("wrote {}", p.display());
                }
                outln!(
                    "a client trusts this CA only if told to (chat-tls client --ca {}): the mistake intercept-tls exploits",
                    out.join("ca.pem").display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mitm-proxy: {e}");
                ExitCode::from(EXIT_ERROR)
            }
        },
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
    let attacks: BTreeSet<Attack> = cli.attacks.iter().copied().collect();
    let intercept = attacks.contains(&Attack::InterceptTls);
    if intercept
        && let Some(other) = [
            Attack::StripStarttls,
            Attack::CorruptTls,
            Attack::InjectStarttls,
        ]
        .into_iter()
        .find(|a| attacks.contains(a))
    {
        anyhow::bail!(
            "intercept-tls and {other} do not go together: intercept-tls ends TLS itself"
        );
    }
    let rules = match (&cli.rules, attacks.contains(&Attack::Tamper)) {
        (Some(path), true) => mitm_proxy::rules::Rules::load(path)?,
        (None, true) => anyhow::bail!("--attack tamper needs --rules FILE"),
        (Some(_), false) => anyhow::bail!("--rules is for --attack tamper"),
        (None, false) => mitm_proxy::rules::Rules::default(),
    };
    if !intercept && (cli.ca_dir.is_some() || cli.cert.is_some()) {
        anyhow::bail!("--ca-dir and --cert are for --attack intercept-tls");
    }
    let forger = if intercept {
        let f = match (&cli.ca_dir, &cli.cert, &cli.key) {
            (Some(dir), _, _) => Forger::from_ca_dir(dir)?,
            (None, Some(cert), Some(key)) => Forger::given(cert, key)?,
            _ => Forger::self_signed(),
        };
        Some(Arc::new(f))
    } else {
        None
    };
    let keylog = match &cli.keylog {
        Some(path) => {
            eprintln!(
                "mitm-proxy: writing TLS secrets to {} (whoever reads it can decrypt the traffic)",
                path.display()
            );
            Some(Arc::new(KeyLogFile::open(path)?) as Arc<dyn rustls::KeyLog>)
        }
        None => None,
    };
    let config = Config {
        listen: cli.listen,
        upstream,
        attacks,
        json: cli.json,
        corrupt_record: cli.corrupt_record,
        forger,
        keylog,
        quiet: cli.quiet,
        write: cli.write.clone(),
        rules,
        offer: cli
            .offer
            .iter()
            .map(|m| m.trim().to_ascii_uppercase())
            .collect(),
    };
    let pcap = match &config.write {
        Some(path) => {
            let r = mitm_proxy::pcap::Recorder::create(path)?;
            eprintln!("mitm-proxy: writing both legs to {}", r.path().display());
            Some(r)
        }
        None => None,
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
        let (verdicts, dropped) = proxy::run(config, listener, pcap, shutdown_signal()).await;
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
