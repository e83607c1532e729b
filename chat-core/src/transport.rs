//! The seam between the chat and its transport.
//!
//! Everything in `chat-core` runs over a [`BoxStream`]: any byte stream. The
//! twin binaries differ only in the transport they plug in here. `chat-plain`
//! plugs in bare TCP, which cannot upgrade, so its server never offers
//! `<starttls/>`. `chat-tls` plugs in rustls, whose `upgrade` runs the TLS
//! handshake in the middle of the session (STARTTLS) and whose `accept` or
//! `connect` can start with TLS right away (direct TLS).

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use protocol::sasl::ChannelBinding;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Any bidirectional byte stream the chat can run over.
pub trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncStream for T {}

/// A boxed byte stream: plain TCP, or TLS over TCP.
pub type BoxStream = Box<dyn AsyncStream>;

/// Whether a stream is encrypted, and what SASL can bind to if it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Security {
    /// Plain TCP: anyone on the path reads and changes it.
    #[default]
    Plaintext,
    /// TLS, with this end's value of each channel-binding type the channel
    /// supports (SCRAM-*-PLUS binds the sign-in to them, which defeats a
    /// relay that ends the TLS itself).
    Tls(Vec<ChannelBinding>),
}

impl Security {
    /// Whether the stream is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Security::Tls(_))
    }

    /// This end's channel values (none on plain TCP).
    pub fn bindings(&self) -> &[ChannelBinding] {
        match self {
            Security::Plaintext => &[],
            Security::Tls(b) => b,
        }
    }
}

/// Whether a server offers STARTTLS, and whether it insists on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTls {
    /// The transport cannot encrypt (the plaintext twin): never offered.
    Unavailable,
    /// Offered; clients may go on without it.
    Optional,
    /// Offered and mandatory: no authentication before TLS.
    Required,
}

/// What the server needs from its transport.
pub trait ServerTransport: Send + Sync + 'static {
    /// Turns an accepted TCP connection into the session's first stream
    /// (direct TLS performs its handshake here). Also says whether that
    /// stream is already encrypted.
    fn accept(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> impl Future<Output = io::Result<(BoxStream, Security)>> + Send;

    /// The STARTTLS policy for streams that start unencrypted.
    fn starttls(&self) -> StartTls;

    /// Runs the TLS handshake over `stream` after `<proceed/>`.
    fn upgrade(
        &self,
        stream: BoxStream,
    ) -> impl Future<Output = io::Result<(BoxStream, Security)>> + Send;
}

/// Why a client transport could not give the chat a stream.
///
/// The client tells its user different things for each: a refused TCP
/// connection means the server is not running; a failed TLS handshake means
/// the server is not who it claims to be (or speaks no TLS), which is the
/// lesson of the interception labs and must never read as "try again".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The TCP connection could not be made (refused, unreachable, timed
    /// out) or broke.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The TLS handshake failed: a certificate that does not verify, a
    /// wrong name or pin, no common protocol version, or a peer that does
    /// not speak TLS.
    #[error("{reason}")]
    Tls {
        /// The server name the handshake checked.
        domain: String,
        /// What went wrong, in words for the user (which check failed and
        /// what to do about it).
        reason: String,
    },
    /// The server name cannot be put in a TLS handshake (SNI) at all.
    #[error("'{domain}': {reason}")]
    BadServerName {
        /// The name.
        domain: String,
        /// Why it is not a valid DNS name.
        reason: String,
    },
    /// This transport cannot encrypt (the plaintext twin).
    #[error("the plaintext twin cannot start TLS")]
    CannotEncrypt,
}

/// What the client needs from its transport.
pub trait ClientTransport: Send + Sync + 'static {
    /// Connects to the server; direct TLS performs its handshake here. Also
    /// says whether the stream is already encrypted.
    fn connect(
        &self,
        addr: &str,
        domain: &str,
    ) -> impl Future<Output = Result<(BoxStream, Security), TransportError>> + Send;

    /// Whether the client insists on STARTTLS, tries it, or cannot do it.
    fn starttls(&self) -> StartTls;

    /// Runs the TLS handshake after `<proceed/>`, checking the server is
    /// `domain`.
    fn upgrade(
        &self,
        stream: BoxStream,
        domain: &str,
    ) -> impl Future<Output = Result<(BoxStream, Security), TransportError>> + Send;
}

/// Connects a TCP socket with a bounded wait and a clear error.
pub async fn tcp_connect(addr: &str) -> io::Result<TcpStream> {
    let tcp = tokio::time::timeout(std::time::Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {addr} timed out"),
            )
        })??;
    // Chat stanzas are small and latency matters more than packet count.
    tcp.set_nodelay(true)?;
    Ok(tcp)
}
