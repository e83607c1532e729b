//! What every connection shares: the server's address, the attacks and
//! their settings, the printer of events, and the verdicts for the summary.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use protocol::outln;
use rustls::KeyLog;
use serde::Serialize;

use crate::attack::Attack;
use crate::event::Event;
use crate::intercept::Forger;

/// Events waiting to be printed. The pumps never wait for the terminal:
/// beyond this many, events are counted and dropped (the traffic is still
/// relayed), so a slow or paused terminal cannot stall the connections.
pub const EVENT_QUEUE: usize = 65_536;

/// Prints events from every connection, in order, on its own thread.
pub struct Reporter {
    tx: Mutex<Option<SyncSender<Event>>>,
    dropped: AtomicU64,
}

impl Reporter {
    /// A reporter and the thread that prints.
    pub fn start(json: bool) -> (Reporter, std::thread::JoinHandle<()>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(EVENT_QUEUE);
        let printer = std::thread::spawn(move || print_events(rx, json));
        (
            Reporter {
                tx: Mutex::new(Some(tx)),
                dropped: AtomicU64::new(0),
            },
            printer,
        )
    }

    /// Queues an event for printing; never waits.
    pub fn emit(&self, ev: Event) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = tx.as_ref()
            && let Err(TrySendError::Full(_)) = tx.try_send(ev)
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Stops accepting events; the printer finishes what is queued.
    pub fn close(&self) -> u64 {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.dropped.load(Ordering::Relaxed)
    }
}

fn print_events(rx: Receiver<Event>, json: bool) {
    for ev in rx {
        if json {
            outln!("{}", ev.to_json());
        } else {
            outln!("{ev}");
        }
    }
}

/// Verdicts the end-of-run summary keeps (every one is also printed as it
/// happens).
pub const MAX_SUMMARY_ROWS: usize = 10_000;

/// One verdict, kept for the summary.
#[derive(Debug, Clone, Serialize)]
pub struct VerdictRow {
    /// The connection.
    pub conn: u64,
    /// The attack.
    pub attack: Attack,
    /// What happened.
    pub outcome: String,
    /// Whether it was defeated.
    pub defeated: bool,
}

/// What every connection shares.
pub struct Shared {
    /// The real server.
    pub upstream: SocketAddr,
    /// The attacks applied.
    pub attacks: BTreeSet<Attack>,
    /// `corrupt-tls`: the client's record that gets a bit flipped.
    pub corrupt_record: u64,
    /// `intercept-tls`: where its certificates come from.
    pub forger: Option<Arc<Forger>>,
    /// Where both legs' TLS secrets are written, if anywhere.
    pub keylog: Option<Arc<dyn KeyLog>>,
    /// `tamper`: the rules of `--rules FILE`.
    pub rules: crate::rules::Rules,
    /// `inject-omemo-device`: the attacker's OMEMO device.
    pub omemo: Option<Arc<crate::omemo::Attacker>>,
    /// `downgrade-sasl`: the mechanisms left in the offer the client sees.
    pub offer: Vec<String>,
    /// `--write`: the capture of both legs.
    pub pcap: Option<crate::pcap::Recorder>,
    /// Report connections, attacks, captures and verdicts only: no line
    /// per stanza (for load, where printing every stanza would be the
    /// bottleneck).
    pub quiet: bool,
    /// Where events go.
    pub report: Reporter,
    pub(crate) verdicts: Mutex<Vec<VerdictRow>>,
    /// Turns true at Ctrl-C: every connection stops relaying and gives
    /// its verdict on what it saw.
    pub stop: tokio::sync::watch::Receiver<bool>,
}

impl Shared {
    /// Keeps a connection's verdict for the summary (the first
    /// [`MAX_SUMMARY_ROWS`]; a load run does not grow the summary forever).
    pub fn record_verdict(&self, conn: u64, attack: Attack, outcome: &str, defeated: bool) {
        let mut rows = self.verdicts.lock().unwrap_or_else(|p| p.into_inner());
        if rows.len() >= MAX_SUMMARY_ROWS {
            return;
        }
        rows.push(VerdictRow {
            conn,
            attack,
            outcome: outcome.to_string(),
            defeated,
        });
    }
}
