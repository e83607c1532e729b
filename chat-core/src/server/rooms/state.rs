//! Rooms and occupants in memory, and the limits a room keeps.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use protocol::stanza::{Presence, PresenceType};
use protocol::{Element, Jid, ns};

use crate::storage::HistoryRow;
use crate::util::xmpp_datetime;

/// Occupants in one room. Each message costs one write per occupant, so the
/// cap bounds the work one sender can cause with one stanza.
pub const MAX_OCCUPANTS: usize = 1000;

/// Rooms on the server. Rooms persist, so without a cap anyone could fill
/// the database by joining rooms with fresh names.
pub const MAX_ROOMS: usize = 10_000;

/// Longest reason for destroying a room that occupants are shown, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;

/// Longest status an occupant's room presence carries, in bytes. Every
/// joiner receives every occupant's presence at once: with 1,000 occupants
/// and statuses near the stanza limit, one join would build 64 MB.
pub const MAX_ROOM_STATUS_BYTES: usize = 1024;

/// `s` cut to at most `max` bytes, on a character boundary.
pub(super) fn clip(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Rooms one user may own (create). Without it one user created 9,905
/// rooms in 14 s, reached [`MAX_ROOMS`], and nobody else could create one.
/// Owners destroy rooms they no longer need (XEP-0045 10.9) to make room.
pub const MAX_ROOMS_PER_USER: usize = 20;

/// One person in a room.
#[derive(Debug, Clone)]
pub(super) struct Occupant {
    pub(super) nick: String,
    /// The occupant's full JID, to deliver to; never shown to others.
    pub(super) jid: Jid,
    pub(super) owner: bool,
    /// Their last presence in the room (show, status).
    pub(super) show: Option<protocol::stanza::Show>,
    pub(super) status: Option<String>,
}

impl Occupant {
    pub(super) fn affiliation(&self) -> &'static str {
        if self.owner { "owner" } else { "none" }
    }
    pub(super) fn role(&self) -> &'static str {
        if self.owner {
            "moderator"
        } else {
            "participant"
        }
    }
}

/// A room loaded in memory.
#[derive(Debug)]
pub(super) struct Room {
    /// The room's bare JID.
    pub(super) jid: Jid,
    pub(super) owner: String,
    pub(super) subject: Option<(String, String)>,
    pub(super) history: VecDeque<HistoryRow>,
    pub(super) occupants: Vec<Occupant>,
}

impl Room {
    pub(super) fn occupant(&self, nick: &str) -> Option<&Occupant> {
        self.occupants.iter().find(|o| o.nick == nick)
    }
    pub(super) fn occupant_by_jid(&self, jid: &Jid) -> Option<&Occupant> {
        self.occupants.iter().find(|o| &o.jid == jid)
    }
    pub(super) fn nick_jid(&self, nick: &str) -> Jid {
        self.jid
            .with_resource(nick)
            .unwrap_or_else(|_| self.jid.clone())
    }

    /// The occupant's presence as the room sends it to `to`.
    pub(super) fn presence_of(
        &self,
        o: &Occupant,
        to: &Jid,
        kind: PresenceType,
        codes: &[u16],
    ) -> Element {
        let mut x = Element::new("x", ns::MUC_USER).child(
            Element::new("item", ns::MUC_USER)
                .attr("affiliation", o.affiliation())
                .attr(
                    "role",
                    if kind == PresenceType::Unavailable {
                        "none"
                    } else {
                        o.role()
                    },
                ),
        );
        for c in codes {
            x = x.child(Element::new("status", ns::MUC_USER).attr("code", c.to_string()));
        }
        let p = Presence {
            from: Some(self.nick_jid(&o.nick)),
            to: Some(to.clone()),
            show: o.show,
            status: o.status.clone(),
            payloads: vec![x],
            ..Presence::new(kind)
        };
        p.to_element()
    }

    pub(super) fn history_message(&self, h: &HistoryRow, to: &Jid) -> Element {
        Element::new("message", ns::CLIENT)
            .attr("from", self.nick_jid(&h.nick).to_string())
            .attr("to", to.to_string())
            .attr("type", "groupchat")
            .attr_opt("id", h.id.clone())
            .text_child("body", ns::CLIENT, h.body.clone())
            .child(
                Element::new("delay", ns::DELAY)
                    .attr("from", self.jid.to_string())
                    .attr("stamp", xmpp_datetime(h.stamp)),
            )
    }

    pub(super) fn subject_message(&self, to: &Jid) -> Element {
        let (from, text) = match &self.subject {
            Some((nick, text)) if !nick.is_empty() => (self.nick_jid(nick), text.clone()),
            Some((_, text)) => (self.jid.clone(), text.clone()),
            None => (self.jid.clone(), String::new()),
        };
        Element::new("message", ns::CLIENT)
            .attr("from", from.to_string())
            .attr("to", to.to_string())
            .attr("type", "groupchat")
            .attr("id", format!("subject-{}", crate::util::random_id(4)))
            .text_child("subject", ns::CLIENT, text)
    }
}

/// The rooms loaded in memory: those with occupants. A room that empties is
/// unloaded; its next join loads it from the database again.
#[derive(Debug, Default)]
pub struct Rooms {
    pub(super) rooms: Mutex<HashMap<String, Room>>,
}

impl Rooms {
    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<String, Room>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Occupant count of each loaded room.
    pub fn occupancy(&self) -> HashMap<String, usize> {
        self.lock()
            .iter()
            .map(|(k, r)| (k.clone(), r.occupants.len()))
            .collect()
    }
}

/// What to send after changing the rooms under the lock: (recipient's full
/// JID, stanza) pairs, delivered once the lock is released.
pub(super) type Outbox = Vec<(Jid, Element)>;
