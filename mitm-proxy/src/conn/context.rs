//! One connection's context: its number, what every connection shares,
//! and what its pumps have seen so far.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::attack::Attack;
use crate::event::Event;
use crate::pcap::Legs;
use crate::shared::Shared;
use crate::verdict::Facts;

/// Bytes read at a time from either side.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

/// Any byte stream the proxy relays: TCP, or TLS on either leg.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One connection's context for its set-up and pumps.
pub(crate) struct Conn {
    pub(crate) id: u64,
    pub(crate) shared: Arc<Shared>,
    pub(crate) facts: Arc<Mutex<Facts>>,
    /// `--write`: this connection's two legs in the capture.
    pub(crate) legs: Option<Mutex<Legs>>,
}

impl Conn {
    /// Records bytes in the capture, if one is written: what `arrived` at
    /// the proxy travelling `dir`, or what it sent on.
    pub(crate) fn record(&self, dir: crate::event::Dir, arrived: bool, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let (Some(legs), Some(rec)) = (&self.legs, &self.shared.pcap) {
            let mut legs = legs.lock().unwrap_or_else(|p| p.into_inner());
            if arrived {
                legs.arrived(rec, dir, bytes);
            } else {
                legs.sent(rec, dir, bytes);
            }
        }
    }

    pub(crate) fn facts(&self) -> MutexGuard<'_, Facts> {
        self.facts.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn report_attack(&self, attack: Attack, did: String) {
        self.shared.report.emit(Event::Attack {
            conn: self.id,
            attack,
            did,
        });
    }
}
