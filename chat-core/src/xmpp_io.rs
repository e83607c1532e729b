//! An XMPP stream over a byte stream: the [`protocol`] parser fed from a
//! socket, and helpers to write elements.

use std::io;

use protocol::parser::{Event, Mode, ParseError, StreamParser};
use protocol::{Element, Limits};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes read from the socket per call. Bounded, so one read adds at most
/// this much on top of the parser's stanza limit.
pub const READ_CHUNK: usize = 16 * 1024;

/// Why reading the next event failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer closed the connection (or it broke) without closing the stream.
    #[error("connection closed by the peer")]
    Eof,
    /// A socket error.
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    /// The peer sent XML we cannot accept.
    #[error("{0}")]
    Parse(#[from] ParseError),
}

/// Reading side: a parser and a read buffer.
pub struct XmppReader {
    parser: StreamParser,
    buf: Box<[u8]>,
}

impl XmppReader {
    /// A strict reader with the given limits.
    pub fn new(limits: Limits) -> Self {
        XmppReader {
            parser: StreamParser::with_limits(Mode::Strict, limits),
            buf: vec![0u8; READ_CHUNK].into_boxed_slice(),
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
            let n = rd.read(&mut self.buf).await?;
            if n == 0 {
                return Err(ReadError::Eof);
            }
            self.parser.feed(&self.buf[..n]);
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
