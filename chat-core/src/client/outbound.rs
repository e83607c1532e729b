//! The way out to the server: the bounded queue of serialized stanzas and
//! the writer task that drains it onto the socket.
//!
//! Three kinds of writers share the queue: the user's requests
//! ([`queue`]: an error when it is full), the answers the client gives on
//! its own ([`auto_reply`]: dropped beyond half the queue), and the load
//! generator ([`RawSender`](super::RawSender): waits for room).

use std::sync::Arc;

use protocol::stream;
use tokio::io::{AsyncWriteExt, BufWriter, WriteHalf};
use tokio::sync::{Notify, mpsc};

use super::error::{ClientError, Lost};
use super::limits::{MAX_QUEUED_AUTO_REPLIES, WRITE_STALL_TIMEOUT};
use crate::transport::BoxStream;

/// Queues a stanza the user asked for: [`ClientError::Congested`] when the
/// queue is full.
pub(crate) fn queue(
    out: &mpsc::Sender<String>,
    xml: String,
    limit: usize,
) -> Result<(), ClientError> {
    if xml.len() > limit {
        return Err(ClientError::TooLarge {
            size: xml.len(),
            limit,
        });
    }
    out.try_send(xml).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => ClientError::Congested,
        mpsc::error::TrySendError::Closed(_) => Lost::AlreadyClosed.into(),
    })
}

/// Queues an answer the client sends on its own (a pong, a receipt, an
/// acknowledgement), unless [`MAX_QUEUED_AUTO_REPLIES`] stanzas already
/// wait: then the answer is dropped. Returns whether it was queued.
pub(crate) fn auto_reply(out: &mpsc::Sender<String>, xml: String) -> bool {
    let queued = out.max_capacity() - out.capacity();
    if queued >= MAX_QUEUED_AUTO_REPLIES {
        return false;
    }
    out.try_send(xml).is_ok()
}

/// `xml` followed by spaces up to a multiple of `pad` bytes (unchanged when
/// `pad` is 0 or it is the end of the stream). White space between stanzas
/// is legal XMPP (RFC 6120 11.7: it is how keepalives are sent), so the
/// peer ignores it; under TLS the record then shows the padded size, not
/// the stanza's: a defence against traffic analysis by size. Times stay
/// visible, and so does a stanza longer than the others by more than
/// `pad`.
pub(crate) fn padded(mut xml: String, pad: usize) -> String {
    if pad > 1 && xml != stream::CLOSE {
        let over = xml.len() % pad;
        if over != 0 {
            xml.extend(std::iter::repeat_n(' ', pad - over));
        }
    }
    xml
}

/// Writes queued stanzas, each [`padded`] to a multiple of `pad` bytes. A
/// write that makes no progress for [`WRITE_STALL_TIMEOUT`] wakes
/// `stalled`: the reader then ends the connection with an error saying the
/// server does not read.
pub(crate) async fn writer(
    wr: WriteHalf<BoxStream>,
    mut rx: mpsc::Receiver<String>,
    stalled: Arc<Notify>,
    pad: usize,
) {
    let mut w = BufWriter::new(wr);
    while let Some(xml) = rx.recv().await {
        let xml = padded(xml, pad);
        match tokio::time::timeout(WRITE_STALL_TIMEOUT, w.write_all(xml.as_bytes())).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                stalled.notify_one();
                return;
            }
        }
        if xml == stream::CLOSE {
            // Nothing may follow the end of the stream (RFC 6120 4.4): an
            // automatic answer (a receipt, a pong) queued after it is
            // dropped, not sent into a closed stream.
            break;
        }
        if rx.is_empty() {
            match tokio::time::timeout(WRITE_STALL_TIMEOUT, w.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    stalled.notify_one();
                    return;
                }
            }
        }
    }
    let _ = w.flush().await;
    let _ = w.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_rounds_up_with_white_space_and_leaves_the_close_alone() {
        let m = "<message to='b@x'><body>hi</body></message>".to_string();
        let p = padded(m.clone(), 256);
        assert_eq!(p.len(), 256);
        assert!(p.starts_with(&m) && p[m.len()..].bytes().all(|b| b == b' '));
        // A stanza already a multiple, or longer than one unit.
        assert_eq!(padded("x".repeat(512), 256).len(), 512);
        assert_eq!(padded("x".repeat(300), 256).len(), 512);
        // Off, and the end of the stream (nothing may follow it).
        assert_eq!(padded(m.clone(), 0), m);
        assert_eq!(padded(stream::CLOSE.to_string(), 256), stream::CLOSE);
        // What the peer's parser makes of it: the same stanza, nothing more.
        let mut parser = protocol::parser::StreamParser::new(protocol::parser::Mode::Lenient);
        parser.feed(
            b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
        );
        parser.feed(p.as_bytes());
        parser.feed(p.as_bytes());
        let mut stanzas = 0;
        while let Ok(Some(e)) = parser.next_event() {
            if matches!(e.event, protocol::parser::Event::Element(_)) {
                stanzas += 1;
            }
        }
        assert_eq!(stanzas, 2);
    }
}
