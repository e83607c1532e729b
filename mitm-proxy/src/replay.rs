//! `replay`: a SASL exchange the proxy watched succeed, played again on a
//! connection of the proxy's own.
//!
//! SASL PLAIN replays: the same bytes prove the same thing every time, so
//! whoever recorded them signs in as the user without ever learning the
//! password. SCRAM does not: the server's nonce is new on every connection,
//! and the client's proof recorded for the old one fails (RFC 5802 9). The
//! server refuses it, which is the defence.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use protocol::{Element, ns};
use rustls::KeyLog;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tls;
use crate::xmpp::{Half, Unit};

/// How long the whole replay may take.
pub const REPLAY_LIMIT: Duration = Duration::from_secs(10);

/// What the server made of a replayed exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    /// `<success/>`: signed in as the user. What the proxy then read as
    /// that user, to show what the sign-in is worth: the contacts in its
    /// roster, or why it could not.
    Accepted(Result<Vec<String>, String>),
    /// `<failure/>`, with its condition.
    Refused(String),
}

/// What the replayed sign-in let the proxy read, in words.
pub fn what_it_read(roster: &Result<Vec<String>, String>) -> String {
    match roster {
        Ok(r) if r.is_empty() => "read the user's roster: it is empty".into(),
        Ok(r) => format!("read the user's roster: {}", r.join(", ")),
        Err(e) => format!("could not read the user's roster: {e}"),
    }
}

/// Any byte stream to the server.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Plays `exchange` (the client's `<auth/>` and `<response/>` elements, as
/// sent) to the server at `upstream` for `domain`, taking STARTTLS if the
/// server offers it.
pub async fn replay(
    upstream: SocketAddr,
    domain: &str,
    keylog: Option<Arc<dyn KeyLog>>,
    exchange: &[String],
) -> std::io::Result<Replayed> {
    tokio::time::timeout(REPLAY_LIMIT, run(upstream, domain, keylog, exchange))
        .await
        .map_err(|_| std::io::Error::other("the server did not answer in time"))?
}

async fn run(
    upstream: SocketAddr,
    domain: &str,
    keylog: Option<Arc<dyn KeyLog>>,
    exchange: &[String],
) -> std::io::Result<Replayed> {
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0'>",
        protocol::element::escape(domain)
    );
    let mut tcp = TcpStream::connect(upstream).await?;
    let mut reader = Reader::default();
    tcp.write_all(header.as_bytes()).await?;
    let features = reader.next(&mut tcp).await?;
    let mut stream: Box<dyn Stream> = if features.has_child("starttls", ns::TLS) {
        tcp.write_all(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await?;
        let answer = reader.next(&mut tcp).await?;
        if !answer.is("proceed", ns::TLS) {
            return Err(std::io::Error::other("the server refused STARTTLS"));
        }
        let mut tls = tls::connect(tcp, domain, keylog).await?;
        reader.restart();
        tls.write_all(header.as_bytes()).await?;
        reader.next(&mut tls).await?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let mut steps = exchange.iter();
    let Some(first) = steps.next() else {
        return Err(std::io::Error::other("nothing to replay"));
    };
    stream.write_all(first.as_bytes()).await?;
    loop {
        let answer = reader.next(&mut stream).await?;
        if answer.is("success", ns::SASL) {
            reader.restart();
            let roster = read_roster(&mut stream, &mut reader, &header).await;
            let _ = stream.write_all(protocol::stream::CLOSE.as_bytes()).await;
            return Ok(Replayed::Accepted(roster.map_err(|e| e.to_string())));
        }
        if answer.is("failure", ns::SASL) {
            let condition = answer
                .elements()
                .find(|c| c.name != "text")
                .map(|c| c.name.to_string())
                .unwrap_or_else(|| "failure".into());
            return Ok(Replayed::Refused(condition));
        }
        match steps.next() {
            // A challenge: answer with what the client answered then.
            Some(next) if answer.is("challenge", ns::SASL) => {
                stream.write_all(next.as_bytes()).await?;
            }
            _ => {
                return Err(std::io::Error::other(format!(
                    "unexpected <{}> from the server",
                    answer.name
                )));
            }
        }
    }
}

/// Signed in on `stream` (SASL done): opens the new stream, binds a
/// resource and asks for the roster, as any client does first. Returns the
/// contacts' addresses.
async fn read_roster(
    stream: &mut Box<dyn Stream>,
    reader: &mut Reader,
    header: &str,
) -> std::io::Result<Vec<String>> {
    stream.write_all(header.as_bytes()).await?;
    reader.next(stream).await?;
    stream
        .write_all(
            b"<iq type='set' id='replay-bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
        )
        .await?;
    let bound = reader.next(stream).await?;
    if bound.get_attr("type") != Some("result") {
        return Err(std::io::Error::other(
            "the server refused to bind a resource",
        ));
    }
    stream
        .write_all(b"<iq type='get' id='replay-roster'><query xmlns='jabber:iq:roster'/></iq>")
        .await?;
    // Skip anything else the server sends first (it sends nothing before
    // presence, but a server may).
    loop {
        let el = reader.next(stream).await?;
        if el.get_attr("id") != Some("replay-roster") {
            continue;
        }
        let query = el
            .get_child("query", ns::ROSTER)
            .ok_or_else(|| std::io::Error::other("the server refused the roster"))?;
        return Ok(query
            .elements()
            .filter_map(|i| i.get_attr("jid").map(str::to_string))
            .collect());
    }
}

/// The server's side of the stream, cut into units; what one read brought
/// beyond the element asked for waits for the next call.
#[derive(Default)]
struct Reader {
    half: Half,
    pending: std::collections::VecDeque<Unit>,
}

impl Reader {
    /// A new stream (after the TLS switch).
    fn restart(&mut self) {
        *self = Reader::default();
    }

    /// The next top-level element (stream headers skipped).
    async fn next<S: AsyncRead + Unpin + ?Sized>(&mut self, s: &mut S) -> std::io::Result<Element> {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            while let Some(u) = self.pending.pop_front() {
                if let Unit::Element(e) = u {
                    return Ok(e);
                }
            }
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ));
            }
            self.pending
                .extend(self.half.push(&buf[..n]).into_iter().map(|p| p.unit));
        }
    }
}
