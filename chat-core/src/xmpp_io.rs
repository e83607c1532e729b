//! An XMPP stream over a byte stream: the [`protocol`] parser fed from a
//! socket, and helpers to write elements.

use std::io;

use protocol::parser::{Event, Mode, ParseError, StreamParser};
use protocol::{Element, Limits};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Most bytes read from the socket per call. Bounded, so one read adds at
/// most this much on top of the parser's stanza limit.
pub const READ_CHUNK: usize = 16 * 1024;

/// The read buffer of a quiet connection. The buffer grows (to
/// [`READ_CHUNK`]) while reads fill it, and falls back to this once the
/// connection has been silent for [`QUIET_AFTER`]: a connection waiting
/// for its next stanza holds this much, not 16 KiB, and the parser gives
/// back its own buffers too. Thousands of idle connections are what an
/// attacker multiplies (slowloris), and what a class server has all day.
pub const QUIET_READ: usize = 256;

/// How long a connection is silent before its buffers are given back. Not
/// at once: a busy connection waits between stanzas all the time, and
/// freeing and growing its buffers on every wait cost a tenth of the
/// server's throughput in a burst.
pub const QUIET_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Why reading the next event failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer closed the connection (or it broke) without closing the stream.
    #[error("connection closed by the peer")]
    Eof,
    /// A socket error.
    #[error("connection error: {}", describe_io(.0))]
    Io(#[from] io::Error),
    /// The peer sent XML we cannot accept.
    #[error("{0}")]
    Parse(#[from] ParseError),
}

/// An I/O error in words for the user. A TLS connection cut without its
/// closing alert (the server killed, the network gone) is the common case;
/// rustls's own text for it points at its manual.
pub fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => {
            "the connection was cut (no TLS close_notify: the server was killed, or the network dropped)"
                .to_string()
        }
        io::ErrorKind::ConnectionReset => "the connection was reset".to_string(),
        _ => e.to_string(),
    }
}

/// Reading side: a parser and a read buffer.
pub struct XmppReader {
    parser: StreamParser,
    buf: Vec<u8>,
}

impl XmppReader {
    /// A strict reader with the given limits.
    pub fn new(limits: Limits) -> Self {
        XmppReader {
            parser: StreamParser::with_limits(Mode::Strict, limits),
            buf: vec![0u8; QUIET_READ],
        }
    }

    /// Reads until the next complete event.
    pub async fn next<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        rd: &mut R,
    ) -> Result<Event, ReadError> {
        loop {
            if let Some(p) = self.parser.next_event()? {
                return Ok(p.event);
            }
            // A read that waits is dropped (nothing was read) after
            // QUIET_AFTER, and the wait goes on with the least memory.
            let n = match tokio::time::timeout(QUIET_AFTER, rd.read(&mut self.buf)).await {
                Ok(read) => read?,
                Err(_) => {
                    self.parser.release_idle();
                    if self.buf.len() > QUIET_READ {
                        self.buf = vec![0u8; QUIET_READ];
                    }
                    rd.read(&mut self.buf).await?
                }
            };
            if n == 0 {
                return Err(ReadError::Eof);
            }
            self.parser.feed(&self.buf[..n]);
            if n == self.buf.len() && self.buf.len() < READ_CHUNK {
                // A full read: more is coming; read more at a time.
                self.buf = vec![0u8; (self.buf.len() * 4).min(READ_CHUNK)];
            }
        }
    }

    /// The next event, which must be a top-level element.
    pub async fn next_element<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        rd: &mut R,
    ) -> Result<Option<Element>, ReadError> {
        match self.next(rd).await? {
            Event::Element(e) => Ok(Some(e)),
            Event::StreamClose => Ok(None),
            Event::StreamOpen(_) => Err(ReadError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                "unexpected stream restart",
            ))),
        }
    }

    /// Skips a top-level element over the stanza limit instead of failing:
    /// [`XmppReader::next`] then returns that [`ParseError::TooLarge`] once
    /// and goes on with the next element (see
    /// [`StreamParser::skip_oversized`]). For the client only: a server
    /// keeps the default and closes the stream with `policy-violation`.
    pub fn skip_oversized(&mut self) {
        self.parser.skip_oversized(true);
    }

    /// Whether reading can go on after an error [`XmppReader::next`]
    /// returned: true only for a skipped oversized element.
    pub fn can_go_on(&self) -> bool {
        !self.parser.has_failed()
    }

    /// Starts a new stream after a restart (keeps buffered bytes).
    pub fn reset(&mut self) {
        self.parser.reset();
    }

    /// Drops whatever was read but not parsed and starts a new stream. Used
    /// after `<proceed/>`: anything the peer sent before the TLS handshake
    /// is unauthenticated plaintext that must not be treated as coming from
    /// inside TLS (the STARTTLS command-injection attack, CVE-2011-0411).
    /// Returns how many bytes were dropped.
    pub fn reset_discarding(&mut self) -> usize {
        let dropped = self.parser.take_unconsumed().len();
        self.parser.reset();
        dropped
    }
}

/// Writes an element and flushes.
pub async fn write_element<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    el: &Element,
) -> io::Result<()> {
    write_str(w, &el.to_xml()).await
}

/// Writes raw XML text and flushes.
pub async fn write_str<W: AsyncWrite + Unpin + ?Sized>(w: &mut W, s: &str) -> io::Result<()> {
    w.write_all(s.as_bytes()).await?;
    w.flush().await
}
