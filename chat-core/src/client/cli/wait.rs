//! `/wait TYPE [JID] [SECONDS]`, for scripts: waits for an event, or finds
//! it among the events that arrived since the last wait (the backlog), so a
//! script never misses an event that came before it asked.

use std::collections::VecDeque;

use protocol::Jid;

use crate::client::event::ClientEvent;

/// Events kept for `/wait` to match later (only their type and sender, not
/// their text). At the bound the oldest is forgotten. A JID is at most about
/// 3 KiB, so this is at most about 12 MiB even when a hostile server sends
/// the longest JIDs it can; it used to hold 10,000 whole events, bodies
/// included, up to 640 MiB.
const BACKLOG: usize = 4096;

/// A pending `/wait`.
pub(super) struct Wait {
    /// The event type.
    pub(super) kind: String,
    /// From whom (a bare JID matches any of its resources).
    pub(super) from: Option<Jid>,
    /// When it fails.
    pub(super) deadline: tokio::time::Instant,
}

impl Wait {
    /// Whether `ev` is what this waits for.
    pub(super) fn matches(&self, ev: &ClientEvent) -> bool {
        matches_kind(ev.kind(), ev.from(), &self.kind, &self.from)
    }
}

/// Events seen and not waited for yet: type and sender.
#[derive(Default)]
pub(super) struct Backlog(VecDeque<(&'static str, Option<Jid>)>);

impl Backlog {
    /// Remembers `ev`, forgetting the oldest at [`BACKLOG`].
    pub(super) fn push(&mut self, ev: &ClientEvent) {
        if self.0.len() >= BACKLOG {
            self.0.pop_front();
        }
        self.0.push_back((ev.kind(), ev.from().cloned()));
    }

    /// Takes the oldest event of type `kind` from `from`; whether there was
    /// one.
    pub(super) fn take(&mut self, kind: &str, from: &Option<Jid>) -> bool {
        match self
            .0
            .iter()
            .position(|(k, f)| matches_kind(k, f.as_ref(), kind, from))
        {
            Some(pos) => {
                self.0.remove(pos);
                true
            }
            None => false,
        }
    }
}

/// Whether an event of type `ev_kind` from `ev_from` is what a `/wait` for
/// `kind` from `from` waits for.
fn matches_kind(ev_kind: &str, ev_from: Option<&Jid>, kind: &str, from: &Option<Jid>) -> bool {
    if ev_kind != kind {
        return false;
    }
    match (from, ev_from) {
        (None, _) => true,
        (Some(want), Some(got)) => {
            if want.is_bare() {
                got.to_bare() == *want
            } else {
                got == want
            }
        }
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(ev: &ClientEvent, kind: &str, from: &Option<Jid>) -> bool {
        matches_kind(ev.kind(), ev.from(), kind, from)
    }

    #[test]
    fn wait_matches_bare_and_full_jids() {
        let ev = ClientEvent::Receipt {
            from: Jid::parse("bob@localhost/phone").unwrap(),
            id: "1".into(),
        };
        assert!(matches(&ev, "receipt", &None));
        assert!(matches(
            &ev,
            "receipt",
            &Some(Jid::parse("bob@localhost").unwrap())
        ));
        assert!(matches(
            &ev,
            "receipt",
            &Some(Jid::parse("bob@localhost/phone").unwrap())
        ));
        assert!(!matches(
            &ev,
            "receipt",
            &Some(Jid::parse("bob@localhost/pc").unwrap())
        ));
        assert!(!matches(&ev, "message", &None));
    }

    #[test]
    fn the_backlog_gives_each_event_to_one_wait() {
        let mut b = Backlog::default();
        let ev = ClientEvent::Receipt {
            from: Jid::parse("bob@localhost/phone").unwrap(),
            id: "1".into(),
        };
        b.push(&ev);
        let bob = Some(Jid::parse("bob@localhost").unwrap());
        assert!(!b.take("message", &bob));
        assert!(b.take("receipt", &bob));
        assert!(!b.take("receipt", &bob));
    }
}
