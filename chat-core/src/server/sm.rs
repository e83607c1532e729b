//! Stream management (XEP-0198): acknowledgements and resumption.
//!
//! Without it, a message the server wrote into a connection that was
//! already dead (a phone that lost its network, a laptop lid closed) is
//! gone: TCP took it, nobody read it, and neither side knows. That is how
//! chats lose messages on unreliable networks, silently.
//!
//! With it, both sides count the stanzas they handled. The server keeps
//! every stanza it sent until the client acknowledges it (`<a h='N'/>`,
//! answering the server's `<r/>`). When the connection drops, the session
//! waits (`--resume-timeout`) instead of ending: a client that signs in
//! again and says `<resume previd='ID' h='N'/>` gets its session back,
//! and every stanza after the N it had is sent again. A session that is
//! never resumed ends as usual, and the messages it was sent but never
//! acknowledged go to offline storage: delivered at the next sign-in, not
//! lost.
//!
//! The resumption id is a secret (16 random bytes), and it only works for
//! the account that enabled it: someone else's id, or a made-up one, gets
//! the same `item-not-found` (a resumed session would receive another
//! user's messages: session hijacking).
//!
//! - [`SmOut`]: what the session's writer sent and the client has not
//!   acknowledged, shared by the session and its writer.
//! - [`Registry`]: the resumable sessions, by id.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use protocol::{Element, ns};
use tokio::io::WriteHalf;
use tokio::sync::mpsc;

use crate::transport::BoxStream;
use crate::xmpp_io::XmppReader;

pub use protocol::sm::REQUEST;
use protocol::sm::{TooHigh, Unacked, is_stanza};

/// The outbound side of stream management for one session.
#[derive(Default)]
pub struct SmOut {
    /// Set once the client enables stream management: before that, the
    /// writer counts and keeps nothing.
    enabled: AtomicBool,
    inner: Mutex<Outgoing>,
    /// A resumed session's new connection, for the writer. A slot and a
    /// wake-up rather than a channel: a channel allocates its first block
    /// up front, kilobytes for every idle session (`bench-idle.sh`).
    next: Mutex<Option<Attach>>,
    moved: tokio::sync::Notify,
    /// Woken by each ack, for a writer waiting at the bound.
    acked: tokio::sync::Notify,
}

impl std::fmt::Debug for SmOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmOut")
            .field("enabled", &self.enabled)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Outgoing {
    /// Resumption allowed: a write error does not end the writer, which
    /// keeps what it is sent for the next connection.
    resumable: bool,
    /// Sent and not acknowledged, and whether an ack request is out (the
    /// protocol crate's, shared with the client).
    unacked: Unacked,
}

impl SmOut {
    fn lock(&self) -> std::sync::MutexGuard<'_, Outgoing> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts counting (`<enable/>`), with resumption or without.
    pub fn enable(&self, resumable: bool) {
        self.lock().resumable = resumable;
        self.enabled.store(true, Ordering::Release);
    }

    /// Whether the client enabled stream management.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Whether the session may be resumed.
    pub fn resumable(&self) -> bool {
        self.enabled() && self.lock().resumable
    }

    /// The writer sends `xml`: a stanza is counted and kept until
    /// acknowledged. `false` beyond [`protocol::sm::MAX_UNACKED`] (or its
    /// bytes): the writer then waits for acks (flow control, as TCP's
    /// window), and cuts off a client that sends none, so it cannot make
    /// the server keep everything it was ever sent.
    pub fn record(&self, xml: &Arc<str>) -> bool {
        if !self.enabled() || !is_stanza(xml) {
            return true;
        }
        let mut o = self.lock();
        o.unacked.push(xml.clone());
        !o.unacked.over_bound()
    }

    /// Whether to ask for an acknowledgement now; `due`: the timer fired.
    pub fn want_ack(&self, due: bool) -> bool {
        self.enabled() && self.lock().unacked.want_ack(due)
    }

    /// Whether stanzas wait for an ack with no request out: the writer
    /// then asks after [`protocol::sm::ACK_AFTER`].
    pub fn waiting(&self) -> bool {
        self.enabled() && self.lock().unacked.waiting()
    }

    /// The client handled `h` stanzas in all: those are forgotten.
    pub fn ack(&self, h: u32) -> Result<usize, TooHigh> {
        let n = self.lock().unacked.ack(h)?;
        self.acked.notify_one();
        Ok(n)
    }

    /// After an `ack` for a resumption: what is left to send again.
    pub fn unacked(&self) -> Vec<Arc<str>> {
        self.lock().unacked.kept()
    }

    /// Everything unacknowledged, taken (the session is ending).
    pub fn take(&self) -> Vec<Arc<str>> {
        self.lock().unacked.take()
    }

    /// A request went out with a resumption's replay.
    pub fn requested(&self) {
        self.lock().unacked.mark_requested();
    }

    /// Whether more is unacknowledged than the bound allows.
    fn over_bound(&self) -> bool {
        self.lock().unacked.over_bound()
    }

    /// Waits until acks bring what is unacknowledged within the bound, or
    /// a resumed connection arrives (its client acknowledges on the new
    /// one); `false` if neither comes within `patience`.
    pub async fn within_bound(&self, patience: std::time::Duration) -> bool {
        let moving = || {
            self.next
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some()
        };
        tokio::time::timeout(patience, async {
            while self.over_bound() && !moving() {
                self.acked.notified().await;
            }
        })
        .await
        .is_ok()
    }

    /// The session moved to a new connection: the writer is told.
    pub fn attach(&self, a: Attach) {
        *self.next.lock().unwrap_or_else(|p| p.into_inner()) = Some(a);
        self.moved.notify_one();
        // A writer waiting at the bound goes on to take it.
        self.acked.notify_one();
    }

    /// Waits for the session to move to a new connection.
    pub async fn moved(&self) -> Option<Attach> {
        self.moved.notified().await;
        self.next.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// A new connection for a resumable session: after SASL, it said
/// `<resume previd='ID' h='N'/>`.
pub struct Resumption {
    /// The new connection, authenticated as the session's account.
    pub stream: BoxStream,
    /// Its parser, with whatever was read after `<resume/>`.
    pub reader: XmppReader,
    /// Stanzas the client handled (its `h`).
    pub h: u32,
    /// Where it comes from.
    pub peer: SocketAddr,
}

/// What the writer is told when a session moves to a new connection.
pub struct Attach {
    /// The new connection's writing half.
    pub wr: WriteHalf<BoxStream>,
    /// Stanzas the client handled.
    pub client_h: u32,
    /// Stanzas the server handled (the `h` of `<resumed/>`).
    pub server_h: u32,
    /// The resumption id.
    pub previd: String,
}

impl Attach {
    /// `<resumed/>`, which starts the new connection's replay.
    pub fn resumed(&self) -> Element {
        Element::new("resumed", ns::SM)
            .attr("h", self.server_h.to_string())
            .attr("previd", self.previd.clone())
    }
}

/// The resumable sessions, by resumption id.
#[derive(Default)]
pub struct Registry {
    map: Mutex<HashMap<String, (String, mpsc::Sender<Resumption>)>>,
}

impl Registry {
    /// Makes `user`'s session resumable: its id and where resumptions
    /// arrive. `None` with no random numbers.
    pub fn register(&self, user: &str) -> Option<(String, mpsc::Receiver<Resumption>)> {
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).ok()?;
        let id = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw);
        let (tx, rx) = mpsc::channel(1);
        self.lock().insert(id.clone(), (user.to_string(), tx));
        Some((id, rx))
    }

    /// The session `id` is over.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Where to send a resumption of `id` by `user`: only the account that
    /// enabled it may resume it; for anyone else it does not exist.
    pub fn claim(&self, id: &str, user: &str) -> Option<mpsc::Sender<Resumption>> {
        self.lock()
            .get(id)
            .filter(|(owner, _)| owner == user)
            .map(|(_, tx)| tx.clone())
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (String, mpsc::Sender<Resumption>)>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `<failed/>` with a stanza error condition as its direct child, as
/// XEP-0198 shows it (clients look there for `item-not-found`), and the
/// reason in words.
pub fn failed(cond: protocol::StanzaErrorCondition, text: &str) -> Element {
    Element::new("failed", ns::SM)
        .child(Element::new(cond.as_str(), ns::STANZA_ERRORS))
        .child(
            Element::new("text", ns::STANZA_ERRORS)
                .attr("xml:lang", "en")
                .text(text),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::sm::MAX_UNACKED;

    fn x(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn nothing_is_kept_before_enabling_and_one_request_is_out_at_a_time() {
        let sm = SmOut::default();
        assert!(sm.record(&x("<message/>")));
        assert!(sm.unacked().is_empty() && !sm.want_ack(true));
        sm.enable(true);
        for m in [
            "<message id='1'/>",
            "<a xmlns='urn:xmpp:sm:3' h='0'/>",
            "<iq id='2'/>",
        ] {
            assert!(sm.record(&x(m)));
        }
        assert_eq!(sm.unacked().len(), 2, "a nonza is not kept");
        assert!(!sm.want_ack(false), "two are not enough to ask at once");
        assert!(sm.waiting());
        assert!(sm.want_ack(true), "the timer says ask");
        assert!(!sm.want_ack(true), "one request at a time");
        assert!(!sm.waiting());
        assert_eq!(sm.ack(1), Ok(1));
        assert!(sm.want_ack(true), "an answer allows the next request");
        assert_eq!(sm.ack(9), Err(TooHigh { h: 9, sent: 2 }));
    }

    #[test]
    fn a_client_that_never_acknowledges_hits_the_bound() {
        let sm = SmOut::default();
        sm.enable(false);
        let ok = (0..=MAX_UNACKED).all(|_| sm.record(&x("<message/>")));
        assert!(!ok);
        assert_eq!(sm.take().len(), MAX_UNACKED + 1);
        assert!(sm.unacked().is_empty());
    }

    #[test]
    fn only_the_owner_can_resume() {
        let r = Registry::default();
        let (id, _rx) = r.register("alice").unwrap();
        assert!(r.claim(&id, "alice").is_some());
        assert!(r.claim(&id, "mallory").is_none(), "another user's id");
        assert!(r.claim("made-up", "alice").is_none(), "a forged id");
        r.remove(&id);
        assert!(r.claim(&id, "alice").is_none());
    }
}
