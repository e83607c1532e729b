//! Server settings and their defaults.

use std::path::PathBuf;
use std::time::Duration;

use protocol::Limits;

use super::throttle;

/// How long a connection may take to authenticate and bind before it is
/// closed. Idle unauthenticated connections are the cheapest way to exhaust a
/// server's sockets (slowloris); a deadline frees them.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a signed-in client may stay silent before the server pings it
/// (XEP-0199). A client whose network vanished without a FIN (a laptop
/// closed, a cable pulled, a NAT entry expired) leaves a socket that looks
/// open forever: without this its contacts would see it online, and
/// messages to it would go into a dead socket instead of offline storage.
pub const DEFAULT_PING_AFTER: Duration = Duration::from_secs(60);

/// How long a pinged client has to send anything (its answer, or any
/// stanza) before the server closes it with `connection-timeout`. A silent
/// peer is gone within [`DEFAULT_PING_AFTER`] plus this: 90 s.
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(30);

/// Most simultaneous connections. Each costs a socket and a few tens of KiB;
/// the bound keeps a connection flood from exhausting file descriptors and
/// memory. Beyond it, new connections get a `resource-constraint` error.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The kernel send buffer of each client connection, in bytes (Linux
/// doubles the figure for its bookkeeping). 256 KiB keeps a loopback or LAN
/// connection at full speed and caps what a client that never reads can
/// pin in the kernel, on top of the server's own queue
/// ([`super::outbound::OUTBOUND_QUEUE_BYTES`]).
pub const KERNEL_SEND_BUFFER: usize = 256 * 1024;

/// Failed authentication attempts allowed on one connection before it is
/// closed, to slow down online password guessing.
pub const MAX_AUTH_ATTEMPTS: u32 = 3;

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
    /// See [`DEFAULT_PING_AFTER`].
    pub ping_after: Duration,
    /// See [`DEFAULT_PING_TIMEOUT`].
    pub ping_timeout: Duration,
    /// Whether in-band registration (XEP-0077) is open.
    pub registration: bool,
    /// Registrations per source address per hour (0: unlimited); see
    /// [`throttle`].
    pub registrations_per_hour: u32,
    /// Bare JIDs allowed to send announcements to everyone online.
    pub admins: Vec<protocol::Jid>,
    /// PBKDF2 iterations of the SCRAM credentials of new passwords
    /// (accounts keep the count they were made with).
    pub scram_iterations: u32,
    /// Days one-to-one messages are kept in each user's archive (XEP-0313);
    /// 0, the default, keeps none.
    pub archive_days: u32,
    /// HTTP file upload (XEP-0363), when the server has its HTTP listener.
    pub upload: Option<UploadConfig>,
    /// How long a session whose connection dropped waits to be resumed
    /// (XEP-0198); zero: no resumption.
    pub resume_timeout: Duration,
}

/// See [`ServerConfig::resume_timeout`]: Prosody's default is 600 s; five
/// minutes covers a train tunnel or a lid closed between lectures.
pub const DEFAULT_RESUME_TIMEOUT: Duration = Duration::from_secs(300);

/// Largest file taken by default (`--upload-max-size`).
pub const DEFAULT_UPLOAD_MAX_SIZE: u64 = 10 << 20;
/// Bytes each user may keep by default (`--upload-quota`).
pub const DEFAULT_UPLOAD_QUOTA: u64 = 100 << 20;
/// How long a slot waits for its file by default (`--upload-expiry`).
pub const UPLOAD_SLOT_EXPIRY: Duration = Duration::from_secs(300);

/// The upload service's settings.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// Its address, `upload.<domain>`.
    pub domain: String,
    /// Where its HTTP listener is, `http://127.0.0.1:PORT` (or `https`).
    pub base_url: String,
    /// Largest file, in bytes.
    pub max_size: u64,
    /// Bytes each user may keep (files and open slots).
    pub quota: u64,
    /// How long a slot waits for its file.
    pub expiry: Duration,
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
            ping_after: DEFAULT_PING_AFTER,
            ping_timeout: DEFAULT_PING_TIMEOUT,
            registration: true,
            registrations_per_hour: throttle::DEFAULT_REGISTRATIONS_PER_HOUR,
            admins: Vec::new(),
            scram_iterations: protocol::sasl::DEFAULT_ITERATIONS,
            archive_days: 0,
            upload: None,
            resume_timeout: DEFAULT_RESUME_TIMEOUT,
        }
    }
}
