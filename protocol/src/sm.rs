//! Stream management (XEP-0198), the counting both ends do, without I/O.
//!
//! Each end counts the stanzas it handled (`h`, modulo 2^32) and keeps the
//! stanzas it sent until the other end says it handled them (`<a h='N'/>`,
//! usually asked for with `<r/>`). When a connection drops, what is still
//! kept is what may never have arrived: it is sent again on the resumed
//! stream (or, on a server, stored for later). The server and the client
//! of this toolkit share this one implementation.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::{Element, ns};

/// An ack request.
pub const REQUEST: &str = "<r xmlns='urn:xmpp:sm:3'/>";

/// Ask for an ack once this many stanzas wait for one...
pub const ACK_EVERY: usize = 8;
/// ...or once the first of them has waited this long. An ack request
/// after every stanza would double the packets of a busy session (measured:
/// `scripts/bench-sm.sh`); an ack that waits only costs memory (bounded)
/// and, after a drop, a few stanzas sent again.
pub const ACK_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// Stanzas kept unacknowledged, at most (and [`MAX_UNACKED_BYTES`]): a peer
/// that never acknowledges cannot make the other end keep everything it
/// ever sent. What happens at the bound is each end's call (the server
/// waits for acks, then cuts the client off; the client forgets the
/// oldest).
pub const MAX_UNACKED: usize = 1000;
/// ... and at most these bytes of them.
pub const MAX_UNACKED_BYTES: usize = 2 << 20;

/// An ack: we handled `h` stanzas in all.
pub fn ack(h: u32) -> String {
    format!("<a xmlns='urn:xmpp:sm:3' h='{h}'/>")
}

/// Whether serialized XML is a stanza (counted) rather than a nonza (`<r/>`,
/// `<a/>`, a stream error, the closing tag), by its first bytes.
pub fn is_stanza(xml: &str) -> bool {
    xml.starts_with("<message") || xml.starts_with("<presence") || xml.starts_with("<iq")
}

/// Whether an element is one of the three stanza kinds.
pub fn is_stanza_element(el: &Element) -> bool {
    el.ns == ns::CLIENT && matches!(el.name.as_str(), "message" | "presence" | "iq")
}

/// The `h` of an `<a/>`, `<resume/>` or `<resumed/>`.
pub fn h_of(el: &Element) -> Option<u32> {
    el.get_attr("h")?.trim().parse().ok()
}

/// The other end said it handled more than it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooHigh {
    /// What it said.
    pub h: u32,
    /// What it was sent.
    pub sent: u32,
}

/// Stanzas sent and not yet acknowledged, oldest first, and whether an
/// ack request is out.
#[derive(Debug, Default)]
pub struct Unacked {
    /// Stanzas sent since stream management was enabled (wrapping).
    sent: u32,
    queue: VecDeque<Arc<str>>,
    bytes: usize,
    /// An `<r/>` is out and unanswered.
    requested: bool,
}

impl Unacked {
    /// A stanza was sent: it is kept until acknowledged.
    pub fn push(&mut self, xml: Arc<str>) {
        self.sent = self.sent.wrapping_add(1);
        self.bytes += xml.len();
        self.queue.push_back(xml);
    }

    /// The other end handled `h` stanzas in all: those are forgotten, and
    /// the next request may go out. Returns how many were. A count behind
    /// what is already forgotten (an old ack, or stanzas dropped at the
    /// bound) forgets nothing more.
    pub fn ack(&mut self, h: u32) -> Result<usize, TooHigh> {
        self.requested = false;
        let acked_before = self.sent.wrapping_sub(self.queue.len() as u32);
        // Distances modulo 2^32, as `h` wraps: negative means behind.
        let ahead = h.wrapping_sub(acked_before) as i32;
        if ahead < 0 {
            return Ok(0);
        }
        let n = ahead as usize;
        if n > self.queue.len() {
            return Err(TooHigh { h, sent: self.sent });
        }
        let freed: usize = self.queue.drain(..n).map(|x| x.len()).sum();
        self.bytes -= freed;
        Ok(n)
    }

    /// Whether to ask for an ack now, and if so notes the request: stanzas
    /// wait, none is asked for yet, and there are [`ACK_EVERY`] of them or
    /// the timer ([`ACK_AFTER`]) is `due`.
    pub fn want_ack(&mut self, due: bool) -> bool {
        let len = self.queue.len();
        if self.requested || len == 0 || !(due || len >= ACK_EVERY) {
            return false;
        }
        self.requested = true;
        true
    }

    /// Whether stanzas wait for an ack and none is asked for (the timer
    /// should run).
    pub fn waiting(&self) -> bool {
        !self.requested && !self.queue.is_empty()
    }

    /// A request went out (with a resumption's replay).
    pub fn mark_requested(&mut self) {
        self.requested = true;
    }

    /// Whether more is kept than [`MAX_UNACKED`] or [`MAX_UNACKED_BYTES`].
    pub fn over_bound(&self) -> bool {
        self.queue.len() > MAX_UNACKED || self.bytes > MAX_UNACKED_BYTES
    }

    /// Forgets the oldest kept stanza (at the bound, on an end that
    /// chooses to drop rather than wait). It no longer goes again on a
    /// resumed stream.
    pub fn forget_oldest(&mut self) {
        if let Some(x) = self.queue.pop_front() {
            self.bytes -= x.len();
        }
    }

    /// How many are kept.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Their bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Copies of what is kept, to send again on a resumed stream.
    pub fn kept(&self) -> Vec<Arc<str>> {
        self.queue.iter().cloned().collect()
    }

    /// Everything kept, taken (the session is over).
    pub fn take(&mut self) -> Vec<Arc<str>> {
        self.bytes = 0;
        self.queue.drain(..).collect()
    }

    /// Stanzas sent in all (for a test that needs to wrap the count).
    #[doc(hidden)]
    pub fn set_sent(&mut self, sent: u32) {
        self.sent = sent;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn kept_until_acknowledged_counting_mod_2_32() {
        let mut u = Unacked::default();
        for m in ["<message id='1'/>", "<iq id='2'/>", "<presence/>"] {
            assert!(is_stanza(m));
            u.push(x(m));
        }
        assert!(!is_stanza(REQUEST) && !is_stanza(&ack(3)));
        assert_eq!(u.ack(1), Ok(1));
        assert_eq!(&*u.kept()[0], "<iq id='2'/>");
        assert_eq!(u.ack(1), Ok(0), "an old ack again changes nothing");
        assert_eq!(u.ack(5), Err(TooHigh { h: 5, sent: 3 }));
        assert_eq!(u.ack(3), Ok(2));
        assert!(u.is_empty() && u.bytes() == 0);
        // h wraps at 2^32 (XEP-0198 section 4).
        u.set_sent(u32::MAX);
        u.push(x("<message id='w'/>"));
        assert_eq!(u.ack(0), Ok(1));
    }

    #[test]
    fn requests_wait_for_a_batch_or_the_timer_and_go_one_at_a_time() {
        let mut u = Unacked::default();
        assert!(!u.want_ack(true) && !u.waiting(), "nothing to ask about");
        u.push(x("<message/>"));
        assert!(
            !u.want_ack(false) && u.waiting(),
            "one stanza waits for the timer"
        );
        assert!(u.want_ack(true));
        assert!(!u.want_ack(true) && !u.waiting(), "one request at a time");
        assert_eq!(u.ack(1), Ok(1));
        for _ in 0..ACK_EVERY {
            u.push(x("<message/>"));
        }
        assert!(u.want_ack(false), "a batch asks at once");
    }

    #[test]
    fn forgotten_stanzas_are_not_counted_again_by_a_late_ack() {
        let mut u = Unacked::default();
        for _ in 0..=MAX_UNACKED {
            u.push(x("<message/>"));
        }
        assert!(u.over_bound());
        u.forget_oldest();
        assert!(!u.over_bound());
        // The peer acknowledges none, then the first (already forgotten).
        assert_eq!(u.ack(0), Ok(0));
        assert_eq!(u.ack(1), Ok(0));
        assert_eq!(u.ack(2), Ok(1));
        assert_eq!(u.len(), MAX_UNACKED - 1);
    }
}
