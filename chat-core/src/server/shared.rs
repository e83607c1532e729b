//! The state every session shares: settings, storage, who is online,
//! rooms, throttles, and which offline messages are being delivered.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use super::config::ServerConfig;
use super::rooms::Rooms;
use super::router::Router;
use super::throttle;
use crate::storage::{Storage, StorageError};

/// State shared by every session.
pub struct Shared {
    /// Settings.
    pub config: ServerConfig,
    /// The database.
    pub storage: Storage,
    /// Online sessions.
    pub router: Router,
    /// Group rooms in memory.
    pub rooms: Rooms,
    /// Sign-in and registration throttles.
    pub throttle: throttle::Throttle,
    next_id: AtomicU64,
    pub(super) connections: Arc<Semaphore>,
    /// Offline messages queued to a session and not yet deleted: each goes
    /// to one session of its account at a time.
    offline_in_flight: Mutex<HashSet<i64>>,
    /// Sessions that can be resumed (XEP-0198), by resumption id.
    pub(crate) resumable: super::sm::Registry,
    /// The message archive's writer (see `archive`), started on first use.
    pub(crate) archive:
        std::sync::OnceLock<tokio::sync::mpsc::Sender<crate::storage::ArchiveWrite>>,
}

impl Shared {
    /// Waits (up to `patience`) until every connection has ended: after
    /// [`Router::close_all`], each session writes its stream error and
    /// closes its stream (TLS: `close_notify`) before the process exits,
    /// so clients read why instead of a cut connection.
    pub async fn drained(&self, patience: std::time::Duration) {
        let all = u32::try_from(self.config.max_connections).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(patience, self.connections.acquire_many(all)).await;
    }

    /// Opens the database and builds the shared state.
    pub fn new(config: ServerConfig) -> Result<Arc<Shared>, StorageError> {
        let storage = Storage::open(&config.data_dir)?;
        Ok(Arc::new(Shared {
            connections: Arc::new(Semaphore::new(config.max_connections)),
            throttle: throttle::Throttle::new(config.registrations_per_hour),
            config,
            storage,
            router: Router::default(),
            resumable: super::sm::Registry::default(),
            rooms: Rooms::default(),
            next_id: AtomicU64::new(1),
            offline_in_flight: Mutex::default(),
            archive: std::sync::OnceLock::new(),
        }))
    }

    /// A fresh session id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes the stored messages (ids) no other session is delivering, and
    /// marks them as being delivered. Called inside the same storage call
    /// that read the ids, and [`Shared::release_offline`] inside the one
    /// that deletes them: storage calls run one at a time, so a message is
    /// never read by one session after another deleted and released it.
    pub(crate) fn claim_offline(&self, ids: Vec<i64>) -> Vec<i64> {
        let mut busy = self
            .offline_in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        ids.into_iter().filter(|id| busy.insert(*id)).collect()
    }

    /// Marks messages as no longer being delivered (deleted, or kept for
    /// the next session).
    pub(crate) fn release_offline(&self, ids: &[i64]) {
        let mut busy = self
            .offline_in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for id in ids {
            busy.remove(id);
        }
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.config.max_connections - self.connections.available_permits()
    }
}
