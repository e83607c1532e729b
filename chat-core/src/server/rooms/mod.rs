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
//!
//! - [`mod@self`]: the room handlers (join, leave, speak, configure,
//!   destroy, list).
//! - [`state`]: rooms and occupants in memory, and the room limits.

pub(crate) mod state;

use std::sync::Arc;

use protocol::service::MAX_ROOM_HISTORY;
use protocol::stanza::{MessageType, Presence, PresenceType};
use protocol::{Element, Jid, StanzaErrorCondition, ns};

use super::archive;
use super::context::{Failure, Handled, Session};
use crate::storage::{self, CreatedRoom, HistoryRow};
use crate::util::unix_now;
pub use state::{
    MAX_OCCUPANTS, MAX_REASON_BYTES, MAX_ROOM_STATUS_BYTES, MAX_ROOMS, MAX_ROOMS_PER_USER, Rooms,
};
use state::{Occupant, Outbox, Room, clip};

async fn deliver(s: &Session, out: Outbox) {
    // All occupants at once: one who stopped reading costs the sender
    // one STALL_TIMEOUT at most, not one per stuck occupant in turn.
    let items: Vec<(&str, &str, Arc<str>)> = out
        .iter()
        .filter_map(|(to, el)| Some((to.local()?, to.resource()?, Arc::from(el.to_xml()))))
        .collect();
    s.shared.router.send_to_resources_wait(&items).await;
}

/// A stanza addressed to the MUC service or one of its rooms.
pub(crate) async fn handle(s: &mut Session, el: Element, to: Jid) -> Handled {
    let Some(room) = to.local().map(str::to_string) else {
        return service_iq(s, el).await;
    };
    match el.name.as_str() {
        "presence" => presence(s, el, room, to).await,
        "message" => message(s, el, room, to).await,
        _ => room_iq(s, el, room, to).await,
    }
}

/// Unloads `room` if nobody is in it (a failed join, a disco query):
/// only rooms with occupants stay in memory.
fn unload_if_empty(s: &Session, room: &str) {
    let mut rooms = s.shared.rooms.lock();
    if rooms.get(room).is_some_and(|r| r.occupants.is_empty()) {
        rooms.remove(room);
    }
}

/// Whether `el`, addressed to this session, would still fit the stanza
/// limit addressed to the longest JID there can be: the size check for
/// what a room keeps and replays to joiners nobody knows yet (history,
/// subject, occupants' presence). `Err(size)` with that worst size.
fn fits_any_joiner(s: &Session, el: &Element) -> Result<(), usize> {
    let mine = protocol::element::escape(&s.jid.to_string()).len();
    let worst = el.to_xml().len().saturating_sub(mine) + protocol::jid::MAX_ESCAPED_JID_BYTES;
    if worst > s.max_stanza() {
        Err(worst)
    } else {
        Ok(())
    }
}

/// Makes sure `room` is loaded, from the database or, when `create`,
/// by creating it. Returns whether it was created; `Err(text)` says why
/// it could not be.
async fn load_room(
    s: &Session,
    room: &str,
    create: bool,
) -> Result<Result<bool, &'static str>, Failure> {
    if s.shared.rooms.lock().contains_key(room) {
        return Ok(Ok(false));
    }
    let name = room.to_string();
    let mut row = s
        .db(move |c| storage::load_room(c, &name, MAX_ROOM_HISTORY))
        .await?;
    let mut created = false;
    if row.is_none() {
        if !create {
            return Ok(Err("no such room"));
        }
        let (name, owner) = (room.to_string(), s.bare.to_string());
        match s
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
        row = s
            .db(move |c| storage::load_room(c, &name, MAX_ROOM_HISTORY))
            .await?;
        created = row.as_ref().is_some_and(|r| r.owner == s.bare.to_string());
    }
    let Some(row) = row else {
        return Ok(Err("no such room"));
    };
    let Ok(jid) = Jid::parse(&format!("{room}@{}", s.muc_domain())) else {
        return Ok(Err("not a valid room name"));
    };
    let mut rooms = s.shared.rooms.lock();
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

async fn presence(s: &mut Session, el: Element, room: String, to: Jid) -> Handled {
    let Ok(mut p) = Presence::from_element(&el) else {
        return Ok(());
    };
    // Bounded: every joiner gets every occupant's presence at once.
    p.status = p.status.map(|s| clip(&s, MAX_ROOM_STATUS_BYTES));
    match p.kind {
        PresenceType::Available => {}
        PresenceType::Unavailable => {
            leave(s, &room).await;
            return Ok(());
        }
        // Subscriptions to rooms, probes and errors: nothing to do.
        _ => return Ok(()),
    }
    let Some(nick) = to.resource().map(str::to_string) else {
        s.bounce(
            &el,
            StanzaErrorCondition::JidMalformed,
            "join with room@service/nickname",
        );
        return Ok(());
    };
    let created = match load_room(s, &room, true).await? {
        Ok(created) => created,
        Err(why) => {
            s.bounce(&el, StanzaErrorCondition::ResourceConstraint, why);
            return Ok(());
        }
    };
    let mut out: Outbox = Vec::new();
    let mut refused: Option<(StanzaErrorCondition, String)> = None;
    {
        let mut rooms = s.shared.rooms.lock();
        let Some(r) = rooms.get_mut(&room) else {
            return Ok(());
        };
        // Everyone who joins later gets this presence: it must fit
        // whoever they are, or every later join would be refused it.
        let probe = Occupant {
            nick: nick.clone(),
            jid: s.jid.clone(),
            owner: false,
            show: p.show,
            status: p.status.clone(),
        };
        if let Err(size) = fits_any_joiner(
            s,
            &r.presence_of(&probe, &s.jid, PresenceType::Available, &[110, 201]),
        ) {
            refused = Some((
                StanzaErrorCondition::PolicyViolation,
                format!(
                    "not accepted: this presence would be {size} bytes for some occupants, over the {}-byte stanza limit",
                    s.max_stanza()
                ),
            ));
        }
        if refused.is_some() {
            // Bounced below, once the lock is released.
        } else if let Some(me) = r.occupant_by_jid(&s.jid) {
            if me.nick != nick {
                refused = Some((
                    StanzaErrorCondition::NotAcceptable,
                    "nickname changes are not supported: leave and join again".into(),
                ));
            } else if let Some(i) = r.occupants.iter().position(|o| o.jid == s.jid) {
                // A presence update from an occupant: show and status.
                r.occupants[i].show = p.show;
                r.occupants[i].status = p.status.clone();
                let me = r.occupants[i].clone();
                for o in &r.occupants {
                    let codes: &[u16] = if o.jid == s.jid { &[110] } else { &[] };
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
                jid: s.jid.clone(),
                owner: r.owner == s.bare.to_string(),
                show: p.show,
                status: p.status.clone(),
            };
            // 1. Everyone already there, to the newcomer.
            for o in &r.occupants {
                out.push((
                    s.jid.clone(),
                    r.presence_of(o, &s.jid, PresenceType::Available, &[]),
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
                s.jid.clone(),
                r.presence_of(&me, &s.jid, PresenceType::Available, codes),
            ));
            // 4. Recent history, then 5. the subject.
            for h in &r.history {
                out.push((s.jid.clone(), r.history_message(h, &s.jid)));
            }
            out.push((s.jid.clone(), r.subject_message(&s.jid)));
            r.occupants.push(me);
        }
    }
    if let Some((cond, text)) = refused {
        s.bounce(&el, cond, &text);
        unload_if_empty(s, &room);
        return Ok(());
    }
    deliver(s, out).await;
    Ok(())
}

/// Removes this session from one room, telling everyone.
async fn leave(s: &Session, room: &str) {
    let mut out: Outbox = Vec::new();
    {
        let mut rooms = s.shared.rooms.lock();
        let Some(r) = rooms.get_mut(room) else { return };
        let Some(i) = r.occupants.iter().position(|o| o.jid == s.jid) else {
            return;
        };
        let me = r.occupants.remove(i);
        out.push((
            s.jid.clone(),
            r.presence_of(&me, &s.jid, PresenceType::Unavailable, &[110]),
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
    deliver(s, out).await;
}

/// Leaves every room this session is in (it signed out or went
/// unavailable).
pub(crate) async fn leave_all(s: &Session) {
    let joined: Vec<String> = s
        .shared
        .rooms
        .lock()
        .iter()
        .filter(|(_, r)| r.occupant_by_jid(&s.jid).is_some())
        .map(|(k, _)| k.clone())
        .collect();
    for room in joined {
        leave(s, &room).await;
    }
}

async fn message(s: &mut Session, mut el: Element, room: String, to: Jid) -> Handled {
    let kind = MessageType::of(&el);
    // Only the room stamps its archive ids (XEP-0359).
    archive::strip_forged_ids(&mut el, s.domain());
    if kind == MessageType::Error {
        return Ok(());
    }
    let body = el.child_text("body", ns::CLIENT);
    let subject = el.child_text("subject", ns::CLIENT);
    let id = el.get_attr("id").map(str::to_string);
    let mut out: Outbox = Vec::new();
    let mut store: Option<HistoryRow> = None;
    // The room's archive: the id, the speaker's room JID, the message.
    let mut to_archive: Option<(i64, String, Element)> = None;
    let mut new_subject: Option<(String, String)> = None;
    {
        let rooms = s.shared.rooms.lock();
        let Some(r) = rooms.get(&room) else {
            drop(rooms);
            s.bounce(&el, StanzaErrorCondition::ItemNotFound, "no such room");
            return Ok(());
        };
        // Only occupants speak: otherwise anyone could post into a room
        // without being seen in it.
        let Some(me) = r.occupant_by_jid(&s.jid).cloned() else {
            drop(rooms);
            s.bounce(
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
                s.bounce(&el, StanzaErrorCondition::ItemNotFound, "no such occupant");
                return Ok(());
            };
            let mut m = el.clone();
            m.set_attr("from", from);
            m.set_attr("to", target.jid.to_string());
            m.children
                .push(protocol::Node::Element(Element::new("x", ns::MUC_USER)));
            let size = m.to_xml().len();
            if size > s.max_stanza() {
                drop(rooms);
                s.bounce_too_large(&el, size);
                return Ok(());
            }
            out.push((target.jid.clone(), m));
        } else if kind != MessageType::Groupchat {
            drop(rooms);
            s.bounce(
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
            mine.set_attr("to", s.jid.to_string());
            let mut fits = fits_any_joiner(s, &mine);
            if fits.is_ok()
                && let Some(text) = &subject
            {
                // As joiners will get it: with the room's own id.
                let replay = Element::new("message", ns::CLIENT)
                    .attr("from", from.clone())
                    .attr("to", s.jid.to_string())
                    .attr("type", "groupchat")
                    .attr("id", "subject-00000000")
                    .text_child("subject", ns::CLIENT, text.clone());
                fits = fits_any_joiner(s, &replay);
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
                fits = fits_any_joiner(s, &r.history_message(&row, &s.jid));
            }
            if let Err(size) = fits {
                drop(rooms);
                s.bounce_too_large(&el, size);
                return Ok(());
            }
            let mut el = el.clone();
            if body.is_some() && archive::on(&s.shared) {
                // Every copy carries the id it has in the room's archive.
                let id = s.shared.storage.next_archive_id();
                el.children.push(protocol::Node::Element(archive::stanza_id(
                    id,
                    &to.to_bare().to_string(),
                )));
                let mut kept = el.clone();
                kept.set_attr("from", from.clone());
                to_archive = Some((id, from.clone(), kept));
            }
            // Exactly one copy per occupant, the sender included (that
            // echo is how a client knows the room accepted it).
            for o in &r.occupants {
                let mut m = el.clone();
                m.set_attr("from", from.clone());
                m.set_attr("to", o.jid.to_string());
                out.push((o.jid.clone(), m));
            }
            if let Some(text) = &subject {
                new_subject = Some((me.nick.clone(), text.clone()));
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
        s.db(move |c| storage::add_room_history(c, &name, &row, MAX_ROOM_HISTORY))
            .await?;
    }
    if let Some((id, speaker, kept)) = &to_archive {
        archive::keep_in_room(&s.shared, &to.to_bare().to_string(), speaker, kept, *id).await;
    }
    if let Some((nick, text)) = new_subject.clone() {
        let name = room.clone();
        s.db(move |c| storage::set_room_subject(c, &name, &nick, &text))
            .await?;
    }
    {
        let mut rooms = s.shared.rooms.lock();
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
    deliver(s, out).await;
    Ok(())
}

async fn room_iq(s: &mut Session, el: Element, room: String, to: Jid) -> Handled {
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
    if let Err(why) = load_room(s, &room, false).await? {
        s.iq_error(&iq, StanzaErrorCondition::ItemNotFound, why);
        return Ok(());
    }
    if payload("query", ns::MAM) {
        // The room's archive, for those in the room (as its history is):
        // anyone else would read a conversation they are not part of.
        let inside = s
            .shared
            .rooms
            .lock()
            .get(&room)
            .is_some_and(|r| r.occupant_by_jid(&s.jid).is_some());
        let done = if inside {
            archive::query_room(s, &iq, &to.to_bare().to_string()).await
        } else {
            s.iq_error(
                &iq,
                StanzaErrorCondition::Forbidden,
                "join the room to read its archive",
            );
            Ok(())
        };
        unload_if_empty(s, &room);
        return done;
    }
    let destroy_request = iq
        .payload
        .as_ref()
        .filter(|p| !get && p.is("query", ns::MUC_OWNER))
        .and_then(|p| p.get_child("destroy", ns::MUC_OWNER))
        .cloned();
    if let Some(request) = destroy_request {
        let done = destroy(s, &iq, &room, request).await;
        // Refused or failed, a room loaded just for this leaves again:
        // otherwise anyone could load all 10,000 rooms with their
        // history by asking to destroy each.
        unload_if_empty(s, &room);
        return done;
    }
    let reply = {
        let rooms = s.shared.rooms.lock();
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
            if archive::on(&s.shared) {
                for f in [ns::MAM, ns::SID] {
                    q = q.child(Element::new("feature", ns::DISCO_INFO).attr("var", f));
                }
            }
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
            if r.owner != s.bare.to_string() {
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
    s.to_self_el(&reply.to_element());
    unload_if_empty(s, &room);
    Ok(())
}

/// The owner destroys a room (XEP-0045 10.9): everyone in it is told,
/// with the owner's reason, and the room and its history are deleted.
async fn destroy(
    s: &mut Session,
    iq: &protocol::stanza::Iq,
    room: &str,
    destroy: Element,
) -> Handled {
    let owner = s
        .shared
        .rooms
        .lock()
        .get(room)
        .map(|r| r.owner == s.bare.to_string());
    if owner != Some(true) {
        s.iq_error(
            iq,
            StanzaErrorCondition::Forbidden,
            "only the room's owner destroys it",
        );
        return Ok(());
    }
    let name = room.to_string();
    s.db(move |c| storage::delete_room(c, &name)).await?;
    let mut out: Outbox = Vec::new();
    if let Some(r) = s.shared.rooms.lock().remove(room) {
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
    tracing::info!(room, by = %s.jid, "room destroyed");
    s.iq_result(iq, None);
    deliver(s, out).await;
    Ok(())
}

/// An iq to `conference.<domain>` itself: discovery of the service and
/// its rooms.
async fn service_iq(s: &mut Session, el: Element) -> Handled {
    if el.name != "iq" {
        if el.name == "message" {
            s.bounce(&el, StanzaErrorCondition::ServiceUnavailable, "not a room");
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
        let names = s.db(|c| storage::room_names(c)).await?;
        let occupancy = s.shared.rooms.occupancy();
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
                    .attr("jid", format!("{n}@{}", s.muc_domain()))
                    .attr("name", format!("{n} ({people})"));
                (n, item)
            })
            .collect();
        s.send_page(
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
    s.to_self_el(&reply.to_element());
    Ok(())
}
