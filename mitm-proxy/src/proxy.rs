//! The listener: loopback only, one task per client connection, every event
//! printed as it happens, and a summary of the verdicts at the end.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use protocol::display::terminal_safe;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::attack::Attack;
use crate::conn;
use crate::intercept::Forger;
pub use crate::shared::{Reporter, Shared, VerdictRow};
use rustls::KeyLog;

/// Connections relayed at once. Each holds two sockets; beyond the bound a
/// new client waits in the kernel's accept queue instead of exhausting the
/// proxy's file descriptors.
pub const MAX_CONNECTIONS: usize = 4096;

/// How long open connections get at Ctrl-C to give their verdicts: a set-up
/// under way (10 s at most) and a replay (10 s) fit in it.
pub const FINISH_LIMIT: std::time::Duration = std::time::Duration::from_secs(25);

/// Why the proxy would not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// An address off loopback: this is an attack tool for one's own
    /// machine.
    #[error(
        "{what} {addr} is not on loopback: mitm-proxy only listens and connects on 127.0.0.0/8 or ::1"
    )]
    NotLoopback {
        /// `--listen` or `--upstream`.
        what: &'static str,
        /// The address given.
        addr: SocketAddr,
    },
    /// The listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// How the proxy runs.
#[derive(Clone)]
pub struct Config {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// The real server.
    pub upstream: SocketAddr,
    /// The attacks to apply (relay is always on: every connection is read).
    pub attacks: BTreeSet<Attack>,
    /// Print JSON lines instead of text.
    pub json: bool,
    /// `corrupt-tls`: the application-data record (from the client,
    /// counting from 1) that gets one bit flipped.
    pub corrupt_record: u64,
    /// `intercept-tls`: where its certificates come from.
    pub forger: Option<Arc<Forger>>,
    /// Where both legs' TLS secrets are written, if anywhere.
    pub keylog: Option<Arc<dyn KeyLog>>,
    /// No line per stanza or stream header (see [`Shared::quiet`]).
    pub quiet: bool,
    /// `--write`: where both legs are recorded.
    pub write: Option<std::path::PathBuf>,
    /// `tamper`: what to change.
    pub rules: crate::rules::Rules,
    /// `downgrade-sasl`: the mechanisms left in the offer.
    pub offer: Vec<String>,
}

/// Checks an address is on loopback.
pub fn loopback_only(what: &'static str, addr: SocketAddr) -> Result<(), ProxyError> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(ProxyError::NotLoopback { what, addr })
    }
}

/// Binds the listener (port 0 lets the kernel choose) and checks both
/// addresses.
pub async fn bind(config: &Config) -> Result<TcpListener, ProxyError> {
    loopback_only("--listen", config.listen)?;
    loopback_only("--upstream", config.upstream)?;
    TcpListener::bind(config.listen)
        .await
        .map_err(|source| ProxyError::Bind {
            addr: config.listen,
            source,
        })
}

/// Relays connections from `listener` until `shutdown` completes, then
/// returns every verdict and the number of events not shown.
pub async fn run(
    config: Config,
    listener: TcpListener,
    pcap: Option<crate::pcap::Recorder>,
    shutdown: impl std::future::Future<Output = ()>,
) -> (Vec<VerdictRow>, u64) {
    let (report, printer) = Reporter::start(config.json);
    let mut attacks = config.attacks.clone();
    attacks.insert(Attack::Relay);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let shared = Arc::new(Shared {
        upstream: config.upstream,
        attacks,
        corrupt_record: config.corrupt_record,
        forger: config.forger.clone(),
        keylog: config.keylog.clone(),
        quiet: config.quiet,
        rules: config.rules.clone(),
        omemo: config
            .attacks
            .contains(&Attack::InjectOmemoDevice)
            .then(|| Arc::new(crate::omemo::Attacker::new())),
        offer: config.offer.clone(),
        pcap,
        report,
        verdicts: Mutex::new(Vec::new()),
        stop,
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut next = 0u64;
    tokio::pin!(shutdown);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        // Waiting for a free slot must not keep Ctrl-C waiting too.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => {
                    // Out of descriptors and the like: wait, do not spin.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        next += 1;
        let shared = shared.clone();
        tasks.spawn(async move {
            conn::handle(next, tcp, peer, shared).await;
            drop(permit);
        });
        // Reap finished connections so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    // Connections still open at Ctrl-C stop relaying and give their
    // verdicts (a replay under way gets its time); any still busy after
    // that are cut.
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(FINISH_LIMIT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.shutdown().await;
    let dropped = shared.report.close();
    let _ = tokio::task::spawn_blocking(move || printer.join()).await;
    let verdicts = shared
        .verdicts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    (verdicts, dropped)
}

/// The end-of-run summary: one row per connection and attack.
pub fn summary_table(verdicts: &[VerdictRow]) -> Table {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    table.set_content_arrangement(ContentArrangement::Dynamic);
    if table.width().is_none() {
        table.set_width(110);
    }
    table.set_header(vec!["conn", "attack", "outcome"]);
    for v in verdicts {
        table.add_row(vec![
            format!("#{}", v.conn),
            v.attack.to_string(),
            terminal_safe(&v.outcome).into_owned(),
        ]);
    }
    table
}
