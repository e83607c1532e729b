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
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

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
    /// TLS: what was negotiated, and this end's value of each
    /// channel-binding type the channel supports (SCRAM-*-PLUS binds the
    /// sign-in to them, which defeats a relay that ends the TLS itself).
    Tls(TlsInfo),
}

/// What a TLS channel negotiated, as a user is shown it (the TUI's status
/// bar): what protects the link, and how far to trust it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// This end's channel-binding values.
    pub bindings: Vec<ChannelBinding>,
    /// `TLS 1.3` or `TLS 1.2`.
    pub version: String,
    /// The cipher suite's IANA name (`TLS_AES_256_GCM_SHA384`).
    pub suite: String,
    /// How the client checked who the server is (`None` on the server,
    /// which asks clients for no certificate).
    pub trust: Option<Trust>,
}

/// How a client checked the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// The chain leads to a CA given with `--ca`, and names the domain.
    Ca,
    /// The chain leads to one of this system's trusted roots.
    SystemRoots,
    /// As [`Trust::Ca`] or [`Trust::SystemRoots`], and the key is the
    /// pinned one (which also defeats a CA that issued a false certificate).
    Pinned,
    /// Not checked at all (`--insecure`): deliberately weak, anyone in the
    /// middle can pose as the server.
    Insecure,
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
            Security::Tls(t) => &t.bindings,
        }
    }

    /// What TLS negotiated, if the stream is TLS.
    pub fn tls(&self) -> Option<&TlsInfo> {
        match self {
            Security::Plaintext => None,
            Security::Tls(t) => Some(t),
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

/// What the client needs from its transport. Cloned by a client that
/// resumes its session after a dropped connection (XEP-0198): it connects
/// again exactly as it first did.
pub trait ClientTransport: Clone + Send + Sync + 'static {
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

    /// What opens connections to shared files' URLs (HTTP file upload,
    /// XEP-0363), kept by the signed-in client.
    fn web(&self) -> Arc<dyn WebConnector>;
}

/// A future a [`WebConnector`] returns (boxed: the client keeps the
/// connector as a trait object, not generic over its transport).
pub type WebFuture<'a> =
    Pin<Box<dyn Future<Output = Result<BoxStream, TransportError>> + Send + 'a>>;

/// Opens the connections that carry shared files (XEP-0363 PUT and GET),
/// with the same transport as the chat: plain TCP in the plaintext twin,
/// TLS in the TLS twin, checked with the chat's own trust (its CA, its pin,
/// or `--insecure`). So a file is exactly as exposed as the chat is.
pub trait WebConnector: Send + Sync + 'static {
    /// The one URL scheme this twin uses: `http` or `https`. The TLS twin
    /// refuses `http` URLs (the file would cross the wire readable by
    /// anyone on the path, whatever the chat does); the plaintext twin
    /// cannot do `https`.
    fn scheme(&self) -> &'static str;

    /// Connects to `addr` (`host:port`); TLS checks the certificate is for
    /// `host` (a DNS name or an IP address).
    fn open<'a>(&'a self, addr: &'a str, host: &'a str) -> WebFuture<'a>;
}

/// A stream that fails with `TimedOut` once no byte has moved either way
/// for a while. A peer that stalls (a slow-loris client sending a request
/// a byte a minute, a server that stops reading an upload) then cannot
/// hold a connection, or the task waiting on it, for ever.
pub struct IdleStream {
    io: BoxStream,
    after: Duration,
    idle: Pin<Box<tokio::time::Sleep>>,
    /// Kept as long as the stream (a connection-count permit).
    _hold: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl IdleStream {
    /// `io`, failed after `after` without progress.
    pub fn new(io: BoxStream, after: Duration) -> Self {
        IdleStream {
            io,
            after,
            idle: Box::pin(tokio::time::sleep(after)),
            _hold: None,
        }
    }

    /// Keeps `value` until the stream is dropped.
    pub fn holding(mut self, value: impl std::any::Any + Send + Sync) -> Self {
        self._hold = Some(Box::new(value));
        self
    }

    /// Progress was made: the idle clock starts again.
    fn moved(&mut self) {
        let at = tokio::time::Instant::now() + self.after;
        self.idle.as_mut().reset(at);
    }

    /// Nothing moved: has the idle time run out?
    fn idle_out<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.idle.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("nothing moved for {} s", self.after.as_secs()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for IdleStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Pending => self.idle_out(cx),
            done => {
                self.moved();
                done
            }
        }
    }
}

impl AsyncWrite for IdleStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Pending => self.idle_out(cx),
            done => {
                self.moved();
                done
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
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
