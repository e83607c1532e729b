//! Group rooms: a subset of Multi-User Chat (XEP-0045) on
//! `conference.<domain>`.
//!
//! - Joining `room@conference.<domain>/nick` creates the room the first time
//!   (an instant room; the creator becomes its owner). The joiner gets every
//!   occupant's presence, then its own (status 110), the last
//!   [`MAX_ROOM_HISTORY`] messages with delay stamps, then the subject.
//! - A groupchat message goes to every occupant exactly once, from
//!   `room@conference.<domain>/nick`: the room, not the client, says who
//!   spoke, so one occupant cannot speak as another.
//! - Rooms are semi-anonymous: occupants see nicknames, never real JIDs.
//! - Rooms, subjects and history are in SQLite and survive restarts;
//!   occupants are sessions and do not. Only rooms with occupants are in
//!   memory.
//! - Limits: [`MAX_ROOMS`] on the server and [`MAX_ROOMS_PER_USER`] per
//!   owner; owners destroy rooms (XEP-0045 10.9). What a room keeps and
//!   replays (history, subject, presence) must fit the stanza limit for any
//!   joiner, or it is refused when sent.
//!
//! Everything sent to occupants is plaintext on the wire in `chat-plain`:
//! a sniffer on the path reads every room's conversation.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use protocol::service::MAX_ROOM_HISTORY;
use protocol::stanza::{Presence, PresenceType};
use protocol::{Element, Jid, StanzaErrorCondition, ns};

use super::session::{End, Session};
use crate::storage::{self, CreatedRoom, HistoryRow};
use crate::util::{unix_now, xmpp_datetime};

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
fn clip(s: &str, max: usize) -> String {
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
struct Occupant {
    nick: String,
    /// The occupant's full JID, to deliver to; never shown to others.
    jid: Jid,
    owner: bool,
    /// Their last presence in the room (show, status).
    show: Option<protocol::stanza::Show>,
    status: Option<String>,
}

impl Occupant {
    fn affiliation(&self) -> &'static str {
        if self.owner { "owner" } else { "none" }
    }
    fn role(&self) -> &'static str {
        if self.owner {
            "moderator"
        } else {
            "participant"
        }
    }
}

/// A room loaded in memory.
#[derive(Debug)]
struct Room {
    /// The room's bare JID.
    jid: Jid,
    owner: String,
    subject: Option<(String, String)>,
    history: VecDeque<HistoryRow>,
    occupants: Vec<Occupant>,
}

impl Room {
    fn occupant(&self, nick: &str) -> Option<&Occupant> {
        self.occupants.iter().find(|o| o.nick == nick)
    }
    fn occupant_by_jid(&self, jid: &Jid) -> Option<&Occupant> {
        self.occupants.iter().find(|o| &o.jid == jid)
    }
    fn nick_jid(&self, nick: &str) -> Jid {
        self.jid
            .with_resource(nick)
            .unwrap_or_else(|_| self.jid.clone())
    }

    /// The occupant's presence as the room sends it to `to`.
    fn presence_of(&self, o: &Occupant, to: &Jid, kind: PresenceType, codes: &[u16]) -> Element {
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

    fn history_message(&self, h: &HistoryRow, to: &Jid) -> Element {
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

    fn subject_message(&self, to: &Jid) -> Element {
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
    rooms: Mutex<HashMap<String, Room>>,
}

impl Rooms {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Room>> {
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
type Outbox = Vec<(Jid, Element)>;

impl Session {
    /// The MUC service's domain.
    pub(super) fn muc_domain(&self) -> &str {
        &self.shared.config.muc_domain
    }

    async fn deliver(&self, out: Outbox) {
        // All occupants at once: one who stopped reading costs the sender
        // one STALL_TIMEOUT at most, not one per stuck occupant in turn.
        let items: Vec<(&str, &str, Arc<str>)> = out
            .iter()
            .filter_map(|(to, el)| Some((to.local()?, to.resource()?, Arc::from(el.to_xml()))))
            .collect();
        self.shared.router.send_to_resources_wait(&items).await;
    }

    /// A stanza addressed to the MUC service or one of its rooms.
    pub(super) async fn muc(&mut self, el: Element, to: Jid) -> Result<(), End> {
        let Some(room) = to.local().map(str::to_string) else {
            return self.muc_service(el).await;
        };
        match el.name.as_str() {
            "presence" => self.muc_presence(el, room, to).await,
            "message" => self.muc_message(el, room, to).await,
            _ => self.muc_room_iq(el, room, to).await,
        }
    }

    /// Unloads `room` if nobody is in it (a failed join, a disco query):
    /// only rooms with occupants stay in memory.
    fn unload_if_empty(&self, room: &str) {
        let mut rooms = self.shared.rooms.lock();
        if rooms.get(room).is_some_and(|r| r.occupants.is_empty()) {
            rooms.remove(room);
        }
    }

    /// Whether `el`, addressed to this session, would still fit the stanza
    /// limit addressed to the longest JID there can be: the size check for
    /// what a room keeps and replays to joiners nobody knows yet (history,
    /// subject, occupants' presence). `Err(size)` with that worst size.
    fn fits_any_joiner(&self, el: &Element) -> Result<(), usize> {
        let mine = protocol::element::escape(&self.jid.to_string()).len();
        let worst = el.to_xml().len().saturating_sub(mine) + protocol::jid::MAX_ESCAPED_JID_BYTES;
        if worst > self.max_stanza() {
            Err(worst)
        } else {
            Ok(())
        }
    }

    /// Makes sure `room` is loaded, from the database or, when `create`,
    /// by creating it. Returns whether it was created; `Err(text)` says why
    /// it could not be.
    async fn load_room(&self, room: &str, create: bool) -> Result<Result<bool, &'static str>, End> {
        if self.shared.rooms.lock().contains_key(room) {
            return Ok(Ok(false));
        }
        let name = room.to_string();
        let mut row = self
            .db(move |c| storage::load_room(c, &name, MAX_ROOM_HISTORY))
            .await?;
        let mut created = false;
        if row.is_none() {
            if !create {
                return Ok(Err("no such room"));
            }
            let (name, owner) = (room.to_string(), self.bare.to_string());
            match self
                .db(move |c| storage::create_room(c, &name, &owner, MAX_ROOMS, MAX_ROOMS_PER_USER))
                .await?
            {
                CreatedRoom::Created | CreatedRoom::Exists => {}
                CreatedRoom::ServerFull => return Ok(Err("no more rooms can be created")),
                CreatedRoom::OwnerFull => {
                    return Ok(Err(
                        "you own as many rooms as one user may: destroy one first",
                    ));
                }
            }
            let name = room.to_string();
            row = self
                .db(move |c| storage::load_room(c, &name, MAX_ROOM_HISTORY))
                .await?;
            created = row
                .as_ref()
                .is_some_and(|r| r.owner == self.bare.to_string());
        }
        let Some(row) = row else {
            return Ok(Err("no such room"));
        };
        let Ok(jid) = Jid::parse(&format!("{room}@{}", self.muc_domain())) else {
            return Ok(Err("not a valid room name"));
        };
        let mut rooms = self.shared.rooms.lock();
        // Another session may have loaded it meanwhile: keep theirs.
        if rooms.contains_key(room) {
            return Ok(Ok(false));
        }
        rooms.insert(
            room.to_string(),
            Room {
                jid,
                owner: row.owner,
                subject: row.subject,
                history: row.history.into(),
                occupants: Vec::new(),
            },
        );
        tracing::debug!(room, created, "room loaded");
        Ok(Ok(created))
    }

    async fn muc_presence(&mut self, el: Element, room: String, to: Jid) -> Result<(), End> {
        let Ok(mut p) = Presence::from_element(&el) else {
            return Ok(());
        };
        // Bounded: every joiner gets every occupant's presence at once.
        p.status = p.status.map(|s| clip(&s, MAX_ROOM_STATUS_BYTES));
        match p.kind {
            PresenceType::Available => {}
            PresenceType::Unavailable => {
                self.leave_room(&room).await;
                return Ok(());
            }
            // Subscriptions to rooms, probes and errors: nothing to do.
            _ => return Ok(()),
        }
        let Some(nick) = to.resource().map(str::to_string) else {
            self.bounce(
                &el,
                StanzaErrorCondition::JidMalformed,
                "join with room@service/nickname",
            );
            return Ok(());
        };
        let created = match self.load_room(&room, true).await? {
            Ok(created) => created,
            Err(why) => {
                self.bounce(&el, StanzaErrorCondition::ResourceConstraint, why);
                return Ok(());
            }
        };
        let mut out: Outbox = Vec::new();
        let mut refused: Option<(StanzaErrorCondition, String)> = None;
        {
            let mut rooms = self.shared.rooms.lock();
            let Some(r) = rooms.get_mut(&room) else {
                return Ok(());
            };
            // Everyone who joins later gets this presence: it must fit
            // whoever they are, or every later join would be refused it.
            let probe = Occupant {
                nick: nick.clone(),
                jid: self.jid.clone(),
                owner: false,
                show: p.show,
                status: p.status.clone(),
            };
            if let Err(size) = self.fits_any_joiner(&r.presence_of(
                &probe,
                &self.jid,
                PresenceType::Available,
                &[110, 201],
            )) {
                refused = Some((
                    StanzaErrorCondition::PolicyViolation,
                    format!(
                        "not accepted: this presence would be {size} bytes for some occupants, over the {}-byte stanza limit",
                        self.max_stanza()
                    ),
                ));
            }
            if refused.is_some() {
                // Bounced below, once the lock is released.
            } else if let Some(me) = r.occupant_by_jid(&self.jid) {
                if me.nick != nick {
                    refused = Some((
                        StanzaErrorCondition::NotAcceptable,
                        "nickname changes are not supported: leave and join again".into(),
                    ));
                } else if let Some(i) = r.occupants.iter().position(|o| o.jid == self.jid) {
                    // A presence update from an occupant: show and status.
                    r.occupants[i].show = p.show;
                    r.occupants[i].status = p.status.clone();
                    let me = r.occupants[i].clone();
                    for o in &r.occupants {
                        let codes: &[u16] = if o.jid == self.jid { &[110] } else { &[] };
                        out.push((
                            o.jid.clone(),
                            r.presence_of(&me, &o.jid, PresenceType::Available, codes),
                        ));
                    }
                }
            } else if r.occupant(&nick).is_some() {
                // Nicknames are unique in a room: otherwise one person could
                // take another's name and speak as them (impersonation).
                refused = Some((
                    StanzaErrorCondition::Conflict,
                    "that nickname is in use in this room".into(),
                ));
            } else if r.occupants.len() >= MAX_OCCUPANTS {
                refused = Some((
                    StanzaErrorCondition::ServiceUnavailable,
                    "the room is full".into(),
                ));
            } else {
                let me = Occupant {
                    nick,
                    jid: self.jid.clone(),
                    owner: r.owner == self.bare.to_string(),
                    show: p.show,
                    status: p.status.clone(),
                };
                // 1. Everyone already there, to the newcomer.
                for o in &r.occupants {
                    out.push((
                        self.jid.clone(),
                        r.presence_of(o, &self.jid, PresenceType::Available, &[]),
                    ));
                }
                // 2. The newcomer, to everyone else.
                for o in &r.occupants {
                    out.push((
                        o.jid.clone(),
                        r.presence_of(&me, &o.jid, PresenceType::Available, &[]),
                    ));
                }
                // 3. Self-presence: 110 "this is you", 201 "new room".
                let codes: &[u16] = if created { &[110, 201] } else { &[110] };
                out.push((
                    self.jid.clone(),
                    r.presence_of(&me, &self.jid, PresenceType::Available, codes),
                ));
                // 4. Recent history, then 5. the subject.
                for h in &r.history {
                    out.push((self.jid.clone(), r.history_message(h, &self.jid)));
                }
                out.push((self.jid.clone(), r.subject_message(&self.jid)));
                r.occupants.push(me);
            }
        }
        if let Some((cond, text)) = refused {
            self.bounce(&el, cond, &text);
            self.unload_if_empty(&room);
            return Ok(());
        }
        self.deliver(out).await;
        Ok(())
    }

    /// Removes this session from one room, telling everyone.
    pub(super) async fn leave_room(&self, room: &str) {
        let mut out: Outbox = Vec::new();
        {
            let mut rooms = self.shared.rooms.lock();
            let Some(r) = rooms.get_mut(room) else { return };
            let Some(i) = r.occupants.iter().position(|o| o.jid == self.jid) else {
                return;
            };
            let me = r.occupants.remove(i);
            out.push((
                self.jid.clone(),
                r.presence_of(&me, &self.jid, PresenceType::Unavailable, &[110]),
            ));
            for o in &r.occupants {
                out.push((
                    o.jid.clone(),
                    r.presence_of(&me, &o.jid, PresenceType::Unavailable, &[]),
                ));
            }
            if r.occupants.is_empty() {
                // Everything an empty room holds is in the database; kept in
                // memory, 10,000 empty rooms and their history were 12 GB.
                rooms.remove(room);
            }
        }
        self.deliver(out).await;
    }

    /// Leaves every room this session is in (it signed out or went
    /// unavailable).
    pub(super) async fn leave_all_rooms(&self) {
        let joined: Vec<String> = self
            .shared
            .rooms
            .lock()
            .iter()
            .filter(|(_, r)| r.occupant_by_jid(&self.jid).is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for room in joined {
            self.leave_room(&room).await;
        }
    }

    async fn muc_message(&mut self, el: Element, room: String, to: Jid) -> Result<(), End> {
        let kind = el.get_attr("type").unwrap_or("normal").to_string();
        if kind == "error" {
            return Ok(());
        }
        let body = el.child_text("body", ns::CLIENT);
        let subject = el.child_text("subject", ns::CLIENT);
        let id = el.get_attr("id").map(str::to_string);
        let mut out: Outbox = Vec::new();
        let mut store: Option<HistoryRow> = None;
        let mut new_subject: Option<(String, String)> = None;
        {
            let rooms = self.shared.rooms.lock();
            let Some(r) = rooms.get(&room) else {
                drop(rooms);
                self.bounce(&el, StanzaErrorCondition::ItemNotFound, "no such room");
                return Ok(());
            };
            // Only occupants speak: otherwise anyone could post into a room
            // without being seen in it.
            let Some(me) = r.occupant_by_jid(&self.jid).cloned() else {
                drop(rooms);
                self.bounce(
                    &el,
                    StanzaErrorCondition::NotAcceptable,
                    "join the room before sending to it",
                );
                return Ok(());
            };
            let from = r.nick_jid(&me.nick).to_string();
            if let Some(nick) = to.resource() {
                // A private message to one occupant, through the room.
                let Some(target) = r.occupant(nick) else {
                    drop(rooms);
                    self.bounce(&el, StanzaErrorCondition::ItemNotFound, "no such occupant");
                    return Ok(());
                };
                let mut m = el.clone();
                m.set_attr("from", from);
                m.set_attr("to", target.jid.to_string());
                m.children
                    .push(protocol::Node::Element(Element::new("x", ns::MUC_USER)));
                let size = m.to_xml().len();
                if size > self.max_stanza() {
                    drop(rooms);
                    self.bounce_too_large(&el, size);
                    return Ok(());
                }
                out.push((target.jid.clone(), m));
            } else if kind != "groupchat" {
                drop(rooms);
                self.bounce(
                    &el,
                    StanzaErrorCondition::BadRequest,
                    "messages to a room must be of type groupchat",
                );
                return Ok(());
            } else if body.is_none() && subject.is_none() {
                // Chat states and the like: nothing to keep, nothing to relay.
                return Ok(());
            } else {
                // Sized before anyone gets it: the copies differ only in
                // `to`, and the room replays it (with a delay stamp) to
                // joiners nobody knows yet. One too large for some of them
                // would disconnect each, at every join (measured before:
                // a 66 KB history entry locked everyone out of the room).
                let mut mine = el.clone();
                mine.set_attr("from", from.clone());
                mine.set_attr("to", self.jid.to_string());
                let mut fits = self.fits_any_joiner(&mine);
                if fits.is_ok()
                    && let Some(text) = &subject
                {
                    // As joiners will get it: with the room's own id.
                    let replay = Element::new("message", ns::CLIENT)
                        .attr("from", from.clone())
                        .attr("to", self.jid.to_string())
                        .attr("type", "groupchat")
                        .attr("id", "subject-00000000")
                        .text_child("subject", ns::CLIENT, text.clone());
                    fits = self.fits_any_joiner(&replay);
                }
                if fits.is_ok()
                    && let Some(b) = &body
                {
                    let row = HistoryRow {
                        nick: me.nick.clone(),
                        body: b.clone(),
                        id: id.clone(),
                        stamp: unix_now(),
                    };
                    fits = self.fits_any_joiner(&r.history_message(&row, &self.jid));
                }
                if let Err(size) = fits {
                    drop(rooms);
                    self.bounce_too_large(&el, size);
                    return Ok(());
                }
                // Exactly one copy per occupant, the sender included (that
                // echo is how a client knows the room accepted it).
                for o in &r.occupants {
                    let mut m = el.clone();
                    m.set_attr("from", from.clone());
                    m.set_attr("to", o.jid.to_string());
                    out.push((o.jid.clone(), m));
                }
                if let Some(s) = &subject {
                    new_subject = Some((me.nick.clone(), s.clone()));
                }
                if let Some(b) = &body {
                    store = Some(HistoryRow {
                        nick: me.nick.clone(),
                        body: b.clone(),
                        id: id.clone(),
                        stamp: unix_now(),
                    });
                }
            }
        }
        // Stored before it is relayed: a message everyone saw is never
        // missing from the history after a crash.
        if let Some(row) = store.clone() {
            let name = room.clone();
            self.db(move |c| storage::add_room_history(c, &name, &row, MAX_ROOM_HISTORY))
                .await?;
        }
        if let Some((nick, text)) = new_subject.clone() {
            let name = room.clone();
            self.db(move |c| storage::set_room_subject(c, &name, &nick, &text))
                .await?;
        }
        {
            let mut rooms = self.shared.rooms.lock();
            if let Some(r) = rooms.get_mut(&room) {
                if let Some(row) = store {
                    r.history.push_back(row);
                    while r.history.len() > MAX_ROOM_HISTORY {
                        r.history.pop_front();
                    }
                }
                if new_subject.is_some() {
                    r.subject = new_subject;
                }
            }
        }
        self.deliver(out).await;
        Ok(())
    }

    async fn muc_room_iq(&mut self, el: Element, room: String, to: Jid) -> Result<(), End> {
        let Ok(iq) = protocol::stanza::Iq::from_element(&el) else {
            return Ok(());
        };
        if !matches!(
            iq.kind,
            protocol::stanza::IqType::Get | protocol::stanza::IqType::Set
        ) {
            return Ok(());
        }
        let get = iq.kind == protocol::stanza::IqType::Get;
        let payload = |name: &str, ns: &str| iq.payload.as_ref().is_some_and(|p| p.is(name, ns));
        if let Err(why) = self.load_room(&room, false).await? {
            self.iq_error(&iq, StanzaErrorCondition::ItemNotFound, why);
            return Ok(());
        }
        let destroy = iq
            .payload
            .as_ref()
            .filter(|p| !get && p.is("query", ns::MUC_OWNER))
            .and_then(|p| p.get_child("destroy", ns::MUC_OWNER))
            .cloned();
        if let Some(destroy) = destroy {
            let done = self.destroy_room(&iq, &room, destroy).await;
            // Refused or failed, a room loaded just for this leaves again:
            // otherwise anyone could load all 10,000 rooms with their
            // history by asking to destroy each.
            self.unload_if_empty(&room);
            return done;
        }
        let reply = {
            let rooms = self.shared.rooms.lock();
            let Some(r) = rooms.get(&room) else {
                return Ok(());
            };
            if to.resource().is_some() {
                iq.error_reply(
                    StanzaErrorCondition::FeatureNotImplemented,
                    Some("iqs to occupants are not relayed"),
                )
            } else if get && payload("query", ns::DISCO_INFO) {
                let mut q = Element::new("query", ns::DISCO_INFO).child(
                    Element::new("identity", ns::DISCO_INFO)
                        .attr("category", "conference")
                        .attr("type", "text")
                        .attr("name", room.clone()),
                );
                for f in [
                    ns::MUC,
                    "muc_persistent",
                    "muc_open",
                    "muc_public",
                    "muc_semianonymous",
                    "muc_unmoderated",
                    "muc_unsecured",
                ] {
                    q = q.child(Element::new("feature", ns::DISCO_INFO).attr("var", f));
                }
                iq.result(Some(q))
            } else if get && payload("query", ns::DISCO_ITEMS) {
                // The occupants, by room nickname only.
                let mut q = Element::new("query", ns::DISCO_ITEMS);
                for o in &r.occupants {
                    q = q.child(
                        Element::new("item", ns::DISCO_ITEMS)
                            .attr("jid", r.nick_jid(&o.nick).to_string()),
                    );
                }
                iq.result(Some(q))
            } else if payload("query", ns::MUC_OWNER) {
                // Room configuration is the owner's alone.
                if r.owner != self.bare.to_string() {
                    iq.error_reply(
                        StanzaErrorCondition::Forbidden,
                        Some("only the room's owner configures it"),
                    )
                } else if get {
                    let form = Element::new("x", ns::DATA_FORMS)
                        .attr("type", "form")
                        .text_child("title", ns::DATA_FORMS, format!("Configuration of {room}"))
                        .child(
                            Element::new("field", ns::DATA_FORMS)
                                .attr("var", "FORM_TYPE")
                                .attr("type", "hidden")
                                .text_child(
                                    "value",
                                    ns::DATA_FORMS,
                                    "http://jabber.org/protocol/muc#roomconfig",
                                ),
                        );
                    iq.result(Some(Element::new("query", ns::MUC_OWNER).child(form)))
                } else {
                    // An instant room: the empty submit (or a cancel) keeps
                    // the defaults, which are the only settings there are.
                    iq.result(None)
                }
            } else {
                iq.error_reply(
                    StanzaErrorCondition::ServiceUnavailable,
                    Some("not supported"),
                )
            }
        };
        self.to_self_el(&reply.to_element());
        self.unload_if_empty(&room);
        Ok(())
    }

    /// The owner destroys a room (XEP-0045 10.9): everyone in it is told,
    /// with the owner's reason, and the room and its history are deleted.
    async fn destroy_room(
        &mut self,
        iq: &protocol::stanza::Iq,
        room: &str,
        destroy: Element,
    ) -> Result<(), End> {
        let owner = self
            .shared
            .rooms
            .lock()
            .get(room)
            .map(|r| r.owner == self.bare.to_string());
        if owner != Some(true) {
            self.iq_error(
                iq,
                StanzaErrorCondition::Forbidden,
                "only the room's owner destroys it",
            );
            return Ok(());
        }
        let name = room.to_string();
        self.db(move |c| storage::delete_room(c, &name)).await?;
        let mut out: Outbox = Vec::new();
        if let Some(r) = self.shared.rooms.lock().remove(room) {
            // The destroy element as the owner sent it, in the user
            // namespace: an alternate venue (`jid`) and a reason.
            let mut notice = Element::new("destroy", ns::MUC_USER)
                .attr_opt("jid", destroy.get_attr("jid").map(str::to_string));
            if let Some(reason) = destroy.child_text("reason", ns::MUC_OWNER) {
                // Clipped, so the notice always fits: a reason near the
                // stanza limit would make every copy too large to send,
                // and nobody would learn the room had gone.
                notice = notice.text_child("reason", ns::MUC_USER, clip(&reason, MAX_REASON_BYTES));
            }
            for o in &r.occupants {
                let mut p = r.presence_of(o, &o.jid, PresenceType::Unavailable, &[]);
                if let Some(x) = p.get_child_mut("x", ns::MUC_USER) {
                    if let Some(item) = x.get_child_mut("item", ns::MUC_USER) {
                        item.set_attr("affiliation", "none");
                    }
                    x.children.push(protocol::Node::Element(notice.clone()));
                }
                out.push((o.jid.clone(), p));
            }
        }
        tracing::info!(room, by = %self.jid, "room destroyed");
        self.iq_result(iq, None);
        self.deliver(out).await;
        Ok(())
    }

    /// An iq to `conference.<domain>` itself: discovery of the service and
    /// its rooms.
    async fn muc_service(&mut self, el: Element) -> Result<(), End> {
        if el.name != "iq" {
            if el.name == "message" {
                self.bounce(&el, StanzaErrorCondition::ServiceUnavailable, "not a room");
            }
            return Ok(());
        }
        let Ok(iq) = protocol::stanza::Iq::from_element(&el) else {
            return Ok(());
        };
        let get = iq.kind == protocol::stanza::IqType::Get;
        let payload = |name: &str, ns: &str| iq.payload.as_ref().is_some_and(|p| p.is(name, ns));
        let reply = if get && payload("query", ns::DISCO_INFO) {
            let q = Element::new("query", ns::DISCO_INFO)
                .child(
                    Element::new("identity", ns::DISCO_INFO)
                        .attr("category", "conference")
                        .attr("type", "text")
                        .attr("name", "Chat rooms"),
                )
                .child(Element::new("feature", ns::DISCO_INFO).attr("var", ns::MUC))
                .child(Element::new("feature", ns::DISCO_INFO).attr("var", ns::DISCO_INFO))
                .child(Element::new("feature", ns::DISCO_INFO).attr("var", ns::DISCO_ITEMS));
            iq.result(Some(q))
        } else if get && payload("query", ns::DISCO_ITEMS) {
            // A page at a time (XEP-0059): 40 rooms with 1,000-character
            // names made one answer too large for any client to read.
            let names = self.db(|c| storage::room_names(c)).await?;
            let occupancy = self.shared.rooms.occupancy();
            let count = names.len();
            let after = iq
                .payload
                .as_ref()
                .and_then(|q| protocol::rsm::Request::from_query(q).after);
            let start = after.map_or(0, |a| names.partition_point(|n| n.as_str() <= a.as_str()));
            let items = names
                .into_iter()
                .skip(start)
                .map(|n| {
                    let people = occupancy.get(&n).copied().unwrap_or(0);
                    let item = Element::new("item", ns::DISCO_ITEMS)
                        .attr("jid", format!("{n}@{}", self.muc_domain()))
                        .attr("name", format!("{n} ({people})"));
                    (n, item)
                })
                .collect();
            self.send_page(
                &iq,
                Element::new("query", ns::DISCO_ITEMS),
                items,
                count,
                Some(start),
            );
            return Ok(());
        } else if matches!(
            iq.kind,
            protocol::stanza::IqType::Get | protocol::stanza::IqType::Set
        ) {
            iq.error_reply(
                StanzaErrorCondition::ServiceUnavailable,
                Some("not supported"),
            )
        } else {
            return Ok(());
        };
        self.to_self_el(&reply.to_element());
        Ok(())
    }
}
