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
use super::sm::{Attach, Sm};
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

/// Drains the queue onto the socket, flushing when the queue is empty (so
/// bursts go out together). A server that reads nothing for
/// [`WRITE_STALL_TIMEOUT`] wakes `stalled` and ends the writer.
///
/// With stream management (`sm`), each stanza written is kept until the
/// server acknowledges it, an ack request follows what is written, and an
/// ack of what we handled goes just before our closing tag. If the
/// connection fails, the writer does not end: it keeps what is queued
/// meanwhile, and `attach` brings the resumed connection, where what the
/// server never acknowledged goes first.
pub(crate) async fn writer(
    wr: WriteHalf<BoxStream>,
    mut rx: mpsc::Receiver<String>,
    stalled: Arc<Notify>,
    pad: usize,
    sm: Option<Arc<Sm>>,
    mut attach: mpsc::UnboundedReceiver<Attach>,
) {
    let mut w = Some(BufWriter::new(wr));
    let mut attaching = true;
    // Armed while our stanzas wait for an ack and none was asked for.
    let mut ack_timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        let xml = tokio::select! {
            biased;
            next = attach.recv(), if attaching => {
                match next {
                    Some(a) => w = resumed(a, sm.as_deref()).await,
                    None => attaching = false,
                }
                continue;
            }
            () = crate::util::armed(&mut ack_timer) => {
                ack_timer = None;
                if let Some(sm) = &sm
                    && sm.want_ack(true)
                {
                    let request = padded(protocol::sm::REQUEST.to_string(), pad);
                    if write_or_detach(&mut w, &request, &stalled).await
                        && let Some(out) = &mut w
                    {
                        let _ = tokio::time::timeout(WRITE_STALL_TIMEOUT, out.flush()).await;
                    }
                }
                continue;
            }
            xml = rx.recv() => match xml {
                Some(x) => x,
                None => break,
            },
        };
        let xml = padded(xml, pad);
        let closing = xml == stream::CLOSE;
        if let Some(sm) = &sm {
            if closing {
                sm.close();
                // Everything handled, said before leaving: the server then
                // keeps nothing of ours for a next sign-in.
                let ack = padded(protocol::sm::ack(sm.handled()), pad);
                write_or_detach(&mut w, &ack, &stalled).await;
            } else if protocol::sm::is_stanza(&xml) {
                sm.sent(&xml);
            }
        }
        // Without stream management a failed write ends the writer. With
        // it, the writer goes on detached: what comes now is kept (above)
        // for the resumed connection, or lost with the session if none.
        if w.is_some() && !write_or_detach(&mut w, &xml, &stalled).await && sm.is_none() {
            return;
        }
        if closing {
            // Nothing may follow the end of the stream (RFC 6120 4.4): an
            // automatic answer (a receipt, a pong) queued after it is
            // dropped, not sent into a closed stream.
            break;
        }
        if rx.is_empty() {
            if let Some(sm) = &sm
                && sm.want_ack(false)
            {
                // Padded like everything else (`--pad`): an unpadded
                // request would stand out in the record sizes.
                let request = padded(protocol::sm::REQUEST.to_string(), pad);
                write_or_detach(&mut w, &request, &stalled).await;
            }
            if let Some(out) = &mut w {
                match tokio::time::timeout(WRITE_STALL_TIMEOUT, out.flush()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => {
                        if sm.is_none() {
                            return;
                        }
                        w = None;
                    }
                    Err(_) => {
                        stalled.notify_one();
                        return;
                    }
                }
            }
            if ack_timer.is_none() && sm.as_ref().is_some_and(|sm| sm.waiting()) {
                ack_timer = Some(Box::pin(tokio::time::sleep(protocol::sm::ACK_AFTER)));
            }
        }
    }
    if let Some(mut out) = w {
        let _ = out.flush().await;
        let _ = out.shutdown().await;
    }
}

/// Writes `xml`; on failure the writer has no connection any more
/// (`false`). A server that reads nothing for [`WRITE_STALL_TIMEOUT`] is
/// reported through `stalled`.
async fn write_or_detach(
    w: &mut Option<BufWriter<WriteHalf<BoxStream>>>,
    xml: &str,
    stalled: &Notify,
) -> bool {
    let Some(out) = w else { return false };
    match tokio::time::timeout(WRITE_STALL_TIMEOUT, out.write_all(xml.as_bytes())).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => {
            *w = None;
            false
        }
        Err(_) => {
            stalled.notify_one();
            *w = None;
            false
        }
    }
}

/// The resumed connection: what the server never acknowledged goes first.
async fn resumed(a: Attach, sm: Option<&Sm>) -> Option<BufWriter<WriteHalf<BoxStream>>> {
    let mut out = BufWriter::new(a.wr);
    let mut ok = true;
    for x in &a.replay {
        ok = ok && out.write_all(x.as_bytes()).await.is_ok();
    }
    if ok && !a.replay.is_empty() && sm.is_some_and(|sm| sm.want_ack(true)) {
        ok = out
            .write_all(protocol::sm::REQUEST.as_bytes())
            .await
            .is_ok();
    }
    (ok && out.flush().await.is_ok()).then_some(out)
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
