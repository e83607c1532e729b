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

/// Writes queued stanzas. A write that makes no progress for
/// [`WRITE_STALL_TIMEOUT`] wakes `stalled`: the reader then ends the
/// connection with an error saying the server does not read.
pub(crate) async fn writer(
    wr: WriteHalf<BoxStream>,
    mut rx: mpsc::Receiver<String>,
    stalled: Arc<Notify>,
) {
    let mut w = BufWriter::new(wr);
    while let Some(xml) = rx.recv().await {
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
