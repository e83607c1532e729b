//! The chat server: accepts connections, negotiates streams, routes stanzas.
//!
//! - [`mod@self`]: configuration, shared state and the accept loop.
//! - [`negotiate`]: stream negotiation up to resource binding (STARTTLS hook,
//!   SASL, in-band registration).
//! - [`session`]: a bound session: message routing, iq handling, offline
//!   delivery.
//! - [`presence`]: presence broadcast, probes, subscriptions and roster
//!   management (RFC 6121).
//! - [`directory`]: profiles, user search, who is online, announcements.
//! - [`muc`]: group rooms on `conference.<domain>` (XEP-0045 subset).
//! - [`router`]: who is online and the per-session outbound queues.
//! - [`throttle`]: slowing down password guessing and mass registration.

pub mod directory;
pub mod muc;
pub mod negotiate;
pub mod presence;
pub mod router;
pub mod session;
pub mod throttle;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::{Limits, StreamErrorCondition};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::storage::{Storage, StorageError};
use crate::transport::ServerTransport;
use router::Router;

/// How long a connection may take to authenticate and bind before it is
/// closed. Idle unauthenticated connections are the cheapest way to exhaust a
/// server's sockets (slowloris); a deadline frees them.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(30);

/// Most simultaneous connections. Each costs a socket and a few tens of KiB;
/// the bound keeps a connection flood from exhausting file descriptors and
/// memory. Beyond it, new connections get a `resource-constraint` error.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The kernel send buffer of each client connection, in bytes (Linux
/// doubles the figure for its bookkeeping). 256 KiB keeps a loopback or LAN
/// connection at full speed and caps what a client that never reads can
/// pin in the kernel, on top of the server's own queue
/// ([`router::OUTBOUND_QUEUE_BYTES`]).
pub const KERNEL_SEND_BUFFER: usize = 256 * 1024;

/// Failed authentication attempts allowed on one connection before it is
/// closed, to slow down online password guessing.
pub const MAX_AUTH_ATTEMPTS: u32 = 3;

/// Longest password accepted at registration, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a new password (registration, password change) was not stored.
pub(crate) enum NewPasswordError {
    /// Empty or longer than [`MAX_PASSWORD_BYTES`].
    Unacceptable,
    /// The hashing task failed.
    HashingFailed,
}

/// Checks a new password and derives its SCRAM credentials on the blocking
/// pool (PBKDF2 is slow on purpose and must not stall the async threads).
pub(crate) async fn new_credentials(
    password: String,
) -> Result<crate::storage::AccountCredentials, NewPasswordError> {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return Err(NewPasswordError::Unacceptable);
    }
    tokio::task::spawn_blocking(move || {
        crate::storage::AccountCredentials::from_password(&password)
    })
    .await
    .map_err(|_| NewPasswordError::HashingFailed)
}

/// The text for [`NewPasswordError::Unacceptable`].
pub(crate) const PASSWORD_RULE: &str = "the password must be 1 to 1024 bytes";

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The domain this server hosts (`localhost`).
    pub domain: String,
    /// The group-room service, `conference.<domain>`.
    pub muc_domain: String,
    /// Folder holding the database.
    pub data_dir: PathBuf,
    /// Parser limits (the stanza size is configurable).
    pub limits: Limits,
    /// See [`DEFAULT_AUTH_TIMEOUT`].
    pub auth_timeout: Duration,
    /// See [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// Whether in-band registration (XEP-0077) is open.
    pub registration: bool,
    /// Registrations per source address per hour (0: unlimited); see
    /// [`throttle`].
    pub registrations_per_hour: u32,
    /// Bare JIDs allowed to send announcements to everyone online.
    pub admins: Vec<protocol::Jid>,
}

impl ServerConfig {
    /// Defaults for a domain and data folder.
    pub fn new(domain: &str, data_dir: PathBuf) -> Self {
        ServerConfig {
            domain: domain.to_lowercase(),
            muc_domain: format!("conference.{}", domain.to_lowercase()),
            data_dir,
            limits: Limits::default(),
            auth_timeout: DEFAULT_AUTH_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            registration: true,
            registrations_per_hour: throttle::DEFAULT_REGISTRATIONS_PER_HOUR,
            admins: Vec::new(),
        }
    }
}

/// State shared by every session.
pub struct Shared {
    /// Settings.
    pub config: ServerConfig,
    /// The database.
    pub storage: Storage,
    /// Online sessions.
    pub router: Router,
    /// Group rooms in memory.
    pub rooms: muc::Rooms,
    /// Sign-in and registration throttles.
    pub throttle: throttle::Throttle,
    next_id: AtomicU64,
    connections: Arc<Semaphore>,
    /// Offline messages queued to a session and not yet deleted: each goes
    /// to one session of its account at a time.
    offline_in_flight: Mutex<HashSet<i64>>,
}

impl Shared {
    /// Opens the database and builds the shared state.
    pub fn new(config: ServerConfig) -> Result<Arc<Shared>, StorageError> {
        let storage = Storage::open(&config.data_dir)?;
        Ok(Arc::new(Shared {
            connections: Arc::new(Semaphore::new(config.max_connections)),
            throttle: throttle::Throttle::new(config.registrations_per_hour),
            config,
            storage,
            router: Router::default(),
            rooms: muc::Rooms::default(),
            next_id: AtomicU64::new(1),
            offline_in_flight: Mutex::default(),
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

/// Accepts connections on `listener` until `shutdown` completes, serving each
/// through `transport`. Several listeners (STARTTLS and direct TLS ports) can
/// share one [`Shared`].
pub async fn serve<T: ServerTransport>(
    shared: Arc<Shared>,
    listener: TcpListener,
    transport: Arc<T>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        // The kernel's send buffer is the queue after ours: left to grow,
        // a client that stops reading pins up to 4 MB of kernel memory
        // (50 in a room: 184 MB). A fixed size bounds it.
        let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(KERNEL_SEND_BUFFER);
        let permit = shared.connections.clone().try_acquire_owned();
        let shared = shared.clone();
        let transport = transport.clone();
        tokio::spawn(async move {
            let Ok(_permit) = permit else {
                tracing::warn!(%peer, "connection refused: {} connections open", shared.config.max_connections);
                negotiate::refuse(
                    tcp,
                    &shared.config.domain,
                    StreamErrorCondition::ResourceConstraint,
                )
                .await;
                return;
            };
            handle_connection(shared, transport, tcp, peer).await;
        });
    }
    shared
        .router
        .close_all(StreamErrorCondition::SystemShutdown);
}

async fn handle_connection<T: ServerTransport>(
    shared: Arc<Shared>,
    transport: Arc<T>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    tracing::debug!(%peer, "connection opened");
    let deadline = shared.config.auth_timeout;
    let accepted = tokio::time::timeout(deadline, transport.accept(tcp, peer)).await;
    let (stream, secure) = match accepted {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::info!(%peer, "connection setup failed: {e}");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "connection setup timed out");
            return;
        }
    };
    let negotiated = negotiate::negotiate(&shared, transport.as_ref(), stream, secure, peer).await;
    if let Some(bound) = negotiated {
        session::run(shared, bound, peer).await;
    }
    tracing::debug!(%peer, "connection closed");
}
