//! Each session's outbound queue, and the writer task that drains it into
//! the socket.
//!
//! The queue is bounded in bytes, not in stanzas: a count bound lets 4,096
//! stanzas of 64 KiB pin 256 MiB for one client that stops reading
//! (measured: four such clients grew the server to 970 MB). A message sender
//! facing a full queue waits up to [`STALL_TIMEOUT`] (TCP's own
//! backpressure, carried through the server); presence and the session's
//! own answers never wait, and have a reserve of their own. A recipient
//! whose writer then has made no progress for that long has stopped
//! reading, and is cut off with a `policy-violation` stream error.
//!
//! The queue is also where the server keeps its promise about size: no
//! stanza longer than the stanza limit it enforces on clients ever enters a
//! queue. Re-serialisation can grow a stanza (a `>` in a body becomes
//! `&gt;`, the server stamps a 3 KB `from`), and a stanza the recipient's
//! parser must reject would disconnect the recipient: any user could cut off
//! any other with one message. The caller gets [`Delivery::TooLarge`] and
//! bounces the stanza to its sender instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use protocol::{Limits, StreamErrorCondition, stream};
use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::sm::{self, Attach, SmOut};
use crate::transport::BoxStream;

/// How long a sender waits for room in a recipient's full queue before the
/// recipient counts as stuck and is disconnected. A burst (a fast sender, a
/// busy room) only slows its sender down, which is TCP's own backpressure
/// carried through the server; a client that stops reading is still cut off.
pub const STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Bytes queued for one session before it counts as full. 512 KiB holds
/// thousands of chat messages (a burst, a room's fan-out, the whole offline
/// store at sign-in drains through it with the writer) and eight stanzas of
/// the default maximum size; a client that never reads pins at most this
/// much, plus its kernel socket buffer, until it is cut off. A server raised
/// to a larger `--max-stanza` gets room for two of those instead (see
/// [`queue_budget`]). Production servers bound the same thing (ejabberd's
/// `max_fsm_queue`, Prosody's `max_send_buffer_size`).
pub const OUTBOUND_QUEUE_BYTES: usize = 512 * 1024;

/// What one queued stanza costs beyond its text: the queue slot, the
/// `Arc` header and the allocator's rounding. Charged so that a flood of tiny
/// stanzas is bounded as surely as a few big ones.
pub const QUEUED_STANZA_OVERHEAD: usize = 64;

/// Bytes of each queue kept for what the server sends without waiting:
/// presence, roster pushes, the session's own answers. Messages wait for
/// room and never take from it, so a queue kept full by a flood of messages
/// (a hostile sender simply waits) still has room for a pong; otherwise
/// one `<presence/>` sent at the right moment could get a reading client
/// cut off as "not reading".
pub const CONTROL_RESERVE_BYTES: usize = 128 * 1024;

/// The byte budget of one session's queue for these limits: at least
/// [`OUTBOUND_QUEUE_BYTES`], and always room for two stanzas of the largest
/// size the server allows.
pub fn queue_budget(limits: &Limits) -> usize {
    OUTBOUND_QUEUE_BYTES.max(2 * (limits.max_stanza_bytes + QUEUED_STANZA_OVERHEAD))
}

/// What a session's writer task is asked to do.
#[derive(Debug)]
pub enum Outbound {
    /// Write this serialized XML. The permit is its share of the queue's
    /// byte budget, given back when the writer drops it after writing.
    Xml(Arc<str>, OwnedSemaphorePermit),
    /// Send a stream error (if any), close the stream, end the connection.
    Close(Option<StreamErrorCondition>, Option<String>),
}

/// The sending half of a session's outbound queue (see the module docs).
#[derive(Debug, Clone)]
pub struct OutboundTx {
    tx: mpsc::UnboundedSender<Outbound>,
    budget: Arc<Semaphore>,
    /// See [`CONTROL_RESERVE_BYTES`].
    reserve: Arc<Semaphore>,
    max_stanza: usize,
    discard: Arc<AtomicBool>,
    /// When the writer last finished writing something (see [`now_ms`]).
    progress: Arc<AtomicU64>,
    /// The session was found stalled and is being cut off (said once).
    cut: Arc<AtomicBool>,
}

/// The receiving half, owned by the session's writer task.
#[derive(Debug)]
pub struct OutboundRx {
    rx: mpsc::UnboundedReceiver<Outbound>,
    discard: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
}

/// Milliseconds on a monotonic clock (tokio's, so paused-clock tests see
/// it move), for the writers' progress stamps.
fn now_ms() -> u64 {
    static START: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(tokio::time::Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A new outbound queue for a session, bounded for these limits.
pub fn outbound_queue(limits: &Limits) -> (OutboundTx, OutboundRx) {
    queue(
        limits.max_stanza_bytes,
        queue_budget(limits),
        CONTROL_RESERVE_BYTES.max(limits.max_stanza_bytes + QUEUED_STANZA_OVERHEAD),
    )
}

pub(super) fn queue(max_stanza: usize, budget: usize, reserve: usize) -> (OutboundTx, OutboundRx) {
    // The budget is channel-wide, in bytes; the channel itself needs no
    // bound of its own because every stanza in it holds part of the budget.
    let (tx, rx) = mpsc::unbounded_channel();
    let discard = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(now_ms()));
    (
        OutboundTx {
            tx,
            budget: Arc::new(Semaphore::new(budget)),
            reserve: Arc::new(Semaphore::new(reserve)),
            max_stanza,
            discard: discard.clone(),
            progress: progress.clone(),
            cut: Arc::new(AtomicBool::new(false)),
        },
        OutboundRx {
            rx,
            discard,
            progress,
        },
    )
}

impl OutboundTx {
    /// The budget `xml` takes, or why it can never be queued.
    fn cost(&self, xml: &str) -> Result<u32, Delivery> {
        if xml.len() > self.max_stanza {
            return Err(Delivery::TooLarge);
        }
        u32::try_from(xml.len() + QUEUED_STANZA_OVERHEAD).map_err(|_| Delivery::TooLarge)
    }

    fn enqueue(&self, xml: Arc<str>, permit: OwnedSemaphorePermit) -> Delivery {
        match self.tx.send(Outbound::Xml(xml, permit)) {
            Ok(()) => Delivery::Queued,
            Err(_) => Delivery::Offline,
        }
    }

    /// Queues `xml` if there is room now, in the shared budget or else in
    /// the reserve. `Overflow` means both are full; what to do about that
    /// is the caller's choice (see [`OutboundTx::stalled`]).
    pub fn try_send(&self, xml: Arc<str>) -> Delivery {
        if self.tx.is_closed() {
            return Delivery::Offline;
        }
        let cost = match self.cost(&xml) {
            Ok(c) => c,
            Err(d) => return d,
        };
        let permit = self
            .budget
            .clone()
            .try_acquire_many_owned(cost)
            .or_else(|_| self.reserve.clone().try_acquire_many_owned(cost));
        match permit {
            Ok(permit) => self.enqueue(xml, permit),
            Err(_) => Delivery::Overflow,
        }
    }

    /// Queues `xml` if the shared budget has room now, never taking from
    /// the reserve: the first try of a sender that will wait for room.
    pub(super) fn try_send_budget(&self, xml: Arc<str>) -> Delivery {
        if self.tx.is_closed() {
            return Delivery::Offline;
        }
        let cost = match self.cost(&xml) {
            Ok(c) => c,
            Err(d) => return d,
        };
        match self.budget.clone().try_acquire_many_owned(cost) {
            Ok(permit) => self.enqueue(xml, permit),
            Err(_) => Delivery::Overflow,
        }
    }

    /// Identifies the queue (its sessions' handles share it).
    pub(super) fn id(&self) -> usize {
        Arc::as_ptr(&self.budget) as usize
    }

    /// Marks the session as being cut off; true the first time only, so
    /// that the many stanzas that find its queue full say it once.
    pub fn cut_off_once(&self) -> bool {
        !self.cut.swap(true, Ordering::Relaxed)
    }

    /// Whether the writer has written nothing for [`STALL_TIMEOUT`] while
    /// there was something to write: the client has stopped reading. A full
    /// queue alone does not say so (a flood can keep a reader's queue full),
    /// and only a stalled client is cut off.
    pub fn stalled(&self) -> bool {
        let quiet = now_ms().saturating_sub(self.progress.load(Ordering::Relaxed));
        quiet >= u64::try_from(STALL_TIMEOUT.as_millis()).unwrap_or(u64::MAX)
    }

    /// Queues `xml`, waiting until `deadline` for room. `Overflow` when the
    /// deadline passed first.
    pub async fn send_until(&self, xml: Arc<str>, deadline: tokio::time::Instant) -> Delivery {
        if self.tx.is_closed() {
            return Delivery::Offline;
        }
        let cost = match self.cost(&xml) {
            Ok(c) => c,
            Err(d) => return d,
        };
        let acquire = self.budget.clone().acquire_many_owned(cost);
        let closed = self.tx.closed();
        tokio::select! {
            got = tokio::time::timeout_at(deadline, acquire) => match got {
                Ok(Ok(permit)) => self.enqueue(xml, permit),
                Ok(Err(_)) => Delivery::Offline,
                Err(_) => Delivery::Overflow,
            },
            // The session ended while we waited: nobody will read it.
            () = closed => Delivery::Offline,
        }
    }

    /// Asks the writer to send a stream error (if any) and close. This never
    /// waits and never fails for lack of room. With `discard`, stanzas still
    /// queued are dropped so the error goes out next: a client cut off for
    /// not reading must not be made to read 512 KiB first to learn why. A
    /// clean close (`discard` false) writes everything queued first.
    pub fn close(&self, cond: Option<StreamErrorCondition>, text: Option<String>, discard: bool) {
        if discard {
            self.discard.store(true, Ordering::Relaxed);
        }
        let _ = self.tx.send(Outbound::Close(cond, text));
    }
}

impl OutboundRx {
    /// The next thing to write; stanzas are skipped once the session is
    /// being cut off (see [`OutboundTx::close`]).
    pub async fn recv(&mut self) -> Option<Outbound> {
        loop {
            let item = self.rx.recv().await?;
            if matches!(item, Outbound::Xml(..)) && self.discard.load(Ordering::Relaxed) {
                continue;
            }
            return Some(item);
        }
    }

    /// The writer finished writing an item: the client is reading.
    pub fn wrote(&self) {
        self.progress.store(now_ms(), Ordering::Relaxed);
    }

    /// The next item if one is already queued (tests look without waiting).
    #[cfg(test)]
    pub(super) fn try_recv(&mut self) -> Option<Outbound> {
        self.rx.try_recv().ok()
    }

    /// Whether nothing is waiting (the writer flushes then).
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

/// What happened to a stanza handed to the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for the session.
    Queued,
    /// No such session online.
    Offline,
    /// The session's queue was full; the session is being disconnected.
    Overflow,
    /// Longer than the stanza limit once serialized: never sent to anyone,
    /// to be bounced to its sender.
    TooLarge,
}

/// Most bytes gathered from the queue into one write.
const WRITE_BATCH: usize = 16 * 1024;

/// Writes queued XML to the socket: whatever is queued goes out in one
/// write (up to [`WRITE_BATCH`]), so bursts go out in few packets and a
/// single stanza goes out at once. The batch buffer exists only while
/// there is something to write: an idle session holds none (thousands of
/// idle connections are what a slowloris attacker multiplies). Returns
/// whether everything queued, and the closing tag, reached the socket.
///
/// With stream management (XEP-0198, [`SmOut`]) every stanza written is
/// also kept until the client acknowledges it, and an ack request follows
/// what is written. If the session is resumable, a failed write does not
/// end the writer: it goes on taking what is queued (all kept) until
/// `attach` brings the next connection, which gets `<resumed/>` and
/// everything unacknowledged first.
pub(super) async fn writer_task(
    wr: WriteHalf<BoxStream>,
    mut rx: OutboundRx,
    sm: Arc<SmOut>,
) -> bool {
    let mut wr = Some(wr);
    let mut batch: Vec<u8> = Vec::new();
    // Armed while stanzas wait for an ack and none was asked for; boxed
    // and only then, so an idle writer carries no timer.
    let mut ack_timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        let item = tokio::select! {
            biased;
            next = sm.moved() => {
                if let Some(a) = next {
                    batch.clear();
                    // Boxed: rare, and no idle writer should carry it.
                    wr = Box::pin(resume(wr.take(), a, &sm)).await;
                }
                continue;
            }
            () = crate::util::armed(&mut ack_timer) => {
                ack_timer = None;
                if sm.want_ack(true) && !write_or_keep(&mut wr, sm::REQUEST.as_bytes(), &sm).await {
                    return false;
                }
                continue;
            }
            item = rx.recv() => item,
        };
        let Some(item) = item else { break };
        match item {
            Outbound::Xml(xml, _permit) => {
                let within = sm.record(&xml);
                if within && batch.is_empty() && rx.is_empty() && !sm.enabled() {
                    // Alone in the queue: written as it is, no copy.
                    if !write_out(wr.as_mut(), xml.as_bytes()).await {
                        return false;
                    }
                    rx.wrote();
                    continue;
                }
                // The permit goes back to the queue's budget once the
                // bytes are in the batch, on their way to the socket.
                batch.extend_from_slice(xml.as_bytes());
                if !within {
                    // At the bound of what is kept unacknowledged: what is
                    // gathered goes out with a request, then the writer
                    // waits for acks (and the queue behind it fills, which
                    // slows the senders: flow control). A client that
                    // never acknowledges is cut off.
                    if sm.want_ack(true) {
                        batch.extend_from_slice(sm::REQUEST.as_bytes());
                    }
                    if !write_or_keep(&mut wr, &batch, &sm).await {
                        return false;
                    }
                    rx.wrote();
                    batch.clear();
                    if !sm.within_bound(STALL_TIMEOUT).await {
                        tracing::info!("closing a session: stanzas never acknowledged");
                        let bye = StreamErrorCondition::PolicyViolation
                            .to_element(Some("stanzas sent and never acknowledged"))
                            .to_xml()
                            .into_bytes();
                        finish(wr.as_mut(), bye).await;
                        return false;
                    }
                    rx.wrote();
                    continue;
                }
            }
            Outbound::Close(cond, text) => {
                if let Some(c) = cond {
                    batch.extend_from_slice(c.to_element(text.as_deref()).to_xml().as_bytes());
                }
                return finish(wr.as_mut(), batch).await;
            }
        }
        let idle = rx.is_empty();
        if idle || batch.len() >= WRITE_BATCH {
            if idle && sm.want_ack(false) {
                batch.extend_from_slice(sm::REQUEST.as_bytes());
            }
            if !write_or_keep(&mut wr, &batch, &sm).await {
                return false;
            }
            rx.wrote();
            if idle {
                batch = Vec::new();
                if ack_timer.is_none() && sm.waiting() {
                    ack_timer = Some(Box::pin(tokio::time::sleep(protocol::sm::ACK_AFTER)));
                }
            } else {
                batch.clear();
            }
        }
    }
    finish(wr.as_mut(), batch).await
}

/// Writes what is gathered. When that fails and the session can be
/// resumed, the writer goes on without a connection: the connection is
/// gone, the session is not, and what comes is kept for the client's next
/// connection. Otherwise the writer must end (`false`).
async fn write_or_keep(wr: &mut Option<WriteHalf<BoxStream>>, bytes: &[u8], sm: &SmOut) -> bool {
    if wr.is_some() && !write_out(wr.as_mut(), bytes).await {
        if !sm.resumable() {
            return false;
        }
        *wr = None;
    }
    true
}

/// Writes and flushes; `false` on failure (or with no connection).
async fn write_out(wr: Option<&mut WriteHalf<BoxStream>>, bytes: &[u8]) -> bool {
    match wr {
        Some(wr) => wr.write_all(bytes).await.is_ok() && wr.flush().await.is_ok(),
        None => false,
    }
}

/// Moves the writer to a resumed session's new connection: the old one (if
/// it is still open) is told it lost its session, the new one gets
/// `<resumed/>` and every stanza the client did not acknowledge. `None`
/// if the new connection failed too (the writer keeps waiting).
async fn resume(
    old: Option<WriteHalf<BoxStream>>,
    a: Attach,
    sm: &SmOut,
) -> Option<WriteHalf<BoxStream>> {
    if let Some(mut old) = old {
        let bye = format!(
            "{}{}",
            StreamErrorCondition::Conflict
                .to_element(Some("this session was resumed on another connection"))
                .to_xml(),
            stream::CLOSE
        );
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
            let _ = old.write_all(bye.as_bytes()).await;
            let _ = old.shutdown().await;
        })
        .await;
    }
    if let Err(e) = sm.ack(a.client_h) {
        // Nothing is dropped for a count that cannot be right: the client
        // gets everything again (a duplicate, not a loss).
        tracing::warn!(
            h = e.h,
            sent = e.sent,
            "a resumption acknowledged more than was sent"
        );
    }
    let replay = sm.unacked();
    let mut out = a.resumed().to_xml().into_bytes();
    for x in &replay {
        out.extend_from_slice(x.as_bytes());
    }
    if !replay.is_empty() {
        out.extend_from_slice(sm::REQUEST.as_bytes());
        sm.requested();
    }
    tracing::info!(resent = replay.len(), "session resumed");
    let mut wr = a.wr;
    write_out(Some(&mut wr), &out).await.then_some(wr)
}

/// Writes what is left and the closing tag, flushes and shuts the socket's
/// sending side.
async fn finish(wr: Option<&mut WriteHalf<BoxStream>>, mut rest: Vec<u8>) -> bool {
    let Some(wr) = wr else { return false };
    rest.extend_from_slice(stream::CLOSE.as_bytes());
    let ok = wr.write_all(&rest).await.is_ok() && wr.flush().await.is_ok();
    let _ = wr.shutdown().await;
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xml(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    /// A queue with room for exactly one of the small stanzas below, and
    /// no reserve.
    fn one_stanza_queue() -> (OutboundTx, OutboundRx) {
        queue(1024, 16 + QUEUED_STANZA_OVERHEAD, 0)
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_and_refuses_oversized_stanzas() {
        let limits = Limits {
            max_stanza_bytes: 1000,
            ..Limits::default()
        };
        let (tx, mut rx) = outbound_queue(&limits);
        let big: Arc<str> = Arc::from("x".repeat(1000));
        let over: Arc<str> = Arc::from("x".repeat(1001));
        assert_eq!(tx.try_send(over), Delivery::TooLarge);
        // The budget fills by bytes: OUTBOUND_QUEUE_BYTES of 1000-byte
        // stanzas, not a fixed count of them, then the reserve.
        let each = 1000 + QUEUED_STANZA_OVERHEAD;
        let fit = OUTBOUND_QUEUE_BYTES / each + CONTROL_RESERVE_BYTES / each;
        for _ in 0..fit {
            assert_eq!(tx.try_send(big.clone()), Delivery::Queued);
        }
        assert_eq!(tx.try_send(big.clone()), Delivery::Overflow);
        // Writing one gives its bytes back.
        drop(rx.rx.try_recv().unwrap());
        assert_eq!(tx.try_send(big), Delivery::Queued);
    }

    #[tokio::test]
    async fn a_client_cut_off_gets_its_stream_error_before_the_backlog() {
        let (tx, mut rx) = one_stanza_queue();
        assert_eq!(tx.try_send(xml("<a/>")), Delivery::Queued);
        tx.close(Some(StreamErrorCondition::PolicyViolation), None, true);
        assert!(matches!(
            rx.recv().await,
            Some(Outbound::Close(
                Some(StreamErrorCondition::PolicyViolation),
                _
            ))
        ));
    }
}
