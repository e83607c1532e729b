//! One connection's context: its number, what every connection shares,
//! and what its pumps have seen so far.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::attack::Attack;
use crate::event::Event;
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
}

impl Conn {
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
