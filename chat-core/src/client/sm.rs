//! Stream management on the client (XEP-0198): the counts both tasks
//! share, and the way back into a session after a dropped connection.
//!
//! The reader counts what it handles and answers the server's `<r/>`; the
//! writer keeps what it sends until the server acknowledges it. When the
//! connection drops without a closing tag, the reader connects again as
//! the client first did, signs in, and says `<resume/>` with its count:
//! the server sends again whatever this client had not handled, and the
//! writer sends again whatever the server had not. Nothing is lost, and
//! the user is told how much came back.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::sm::Unacked;
use tokio::io::WriteHalf;

use super::error::ClientError;
use crate::transport::BoxStream;
use crate::xmpp_io::XmppReader;

/// How long the client keeps trying to resume when the server names no
/// limit (`max`).
pub const DEFAULT_RESUME_WINDOW: Duration = Duration::from_secs(60);
/// Waits between attempts to connect again: quick at first (a blip),
/// then backing off.
pub const RETRY_WAITS: [Duration; 6] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(15),
];

/// What the reader and the writer share once stream management is on.
#[derive(Debug, Default)]
pub(crate) struct Sm {
    inner: Mutex<Counts>,
    /// Our closing tag went out: the connection ending now is the end of
    /// the session, not a drop to recover from.
    closing: std::sync::atomic::AtomicBool,
    /// Wakes a reader waiting to reconnect when the user signs out.
    closed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Counts {
    /// Stanzas handled from the server.
    handled: u32,
    /// Stanzas sent and not acknowledged, and whether an ack request is
    /// out (the protocol crate's, shared with the server).
    out: Unacked,
    /// The warning about forgetting was given.
    forgetting: bool,
}

impl Sm {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// We are signing out.
    pub(crate) fn close(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::Release);
        self.closed.notify_one();
    }

    /// Waits for the user to sign out.
    pub(crate) async fn signed_out(&self) {
        if !self.closing() {
            self.closed.notified().await;
        }
    }

    /// Whether we are signing out.
    pub(crate) fn closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::Acquire)
    }

    /// One more stanza handled from the server.
    pub(crate) fn handled_one(&self) {
        let mut c = self.lock();
        c.handled = c.handled.wrapping_add(1);
    }

    /// Stanzas handled from the server so far (our `h`).
    pub(crate) fn handled(&self) -> u32 {
        self.lock().handled
    }

    /// The writer sent a stanza: kept until acknowledged. A server that
    /// acknowledges nothing would make the client keep everything it ever
    /// sent: beyond the bound the oldest is forgotten (and would not go
    /// again after a drop).
    pub(crate) fn sent(&self, xml: &str) {
        let mut c = self.lock();
        c.out.push(Arc::from(xml));
        if c.out.over_bound() {
            c.out.forget_oldest();
            if !std::mem::replace(&mut c.forgetting, true) {
                tracing::warn!(
                    "the server acknowledges nothing: the oldest of what we send is no longer kept for a resumption"
                );
            }
        }
    }

    /// Whether to ask for an acknowledgement now; `due`: the timer fired.
    pub(crate) fn want_ack(&self, due: bool) -> bool {
        self.lock().out.want_ack(due)
    }

    /// Whether stanzas wait for an ack with no request out.
    pub(crate) fn waiting(&self) -> bool {
        self.lock().out.waiting()
    }

    /// The server handled `h` of ours in all. A count beyond what we sent
    /// changes nothing (everything stays kept: a duplicate, not a loss).
    pub(crate) fn acked(&self, h: u32) {
        if let Err(e) = self.lock().out.ack(h) {
            tracing::warn!(
                h = e.h,
                sent = e.sent,
                "the server acknowledged more than we sent"
            );
        }
    }

    /// What to send again on a resumed stream.
    pub(crate) fn kept(&self) -> Vec<Arc<str>> {
        self.lock().out.kept()
    }
}

/// A resumed session's new connection: the stream, its parser, and the
/// count of our stanzas the server had handled.
pub(crate) struct Reconnected {
    pub(crate) stream: BoxStream,
    pub(crate) reader: XmppReader,
    pub(crate) server_h: u32,
}

/// Connects again and resumes session `previd` having handled `h`.
pub(crate) type Reconnect = Arc<
    dyn Fn(String, u32) -> Pin<Box<dyn Future<Output = Result<Reconnected, ClientError>> + Send>>
        + Send
        + Sync,
>;

/// A resumable session: its id, how long the server keeps it, and how to
/// get back to it.
#[derive(Clone)]
pub(crate) struct Resumer {
    pub(crate) id: String,
    pub(crate) window: Duration,
    pub(crate) reconnect: Reconnect,
}

/// The writer moves to a resumed connection, sending `replay` first.
pub(crate) struct Attach {
    pub(crate) wr: WriteHalf<BoxStream>,
    pub(crate) replay: Vec<Arc<str>>,
}
