//! Group rooms on the client side (XEP-0045 subset): join, leave, speak,
//! list rooms and occupants, and turn the room's stanzas into events.

use std::future::Future;
use std::sync::{Arc, Mutex};

use protocol::service::MAX_ROOM_HISTORY;
use protocol::stanza::{IqType, Message, MessageType, Presence, PresenceType};
use protocol::{Element, Jid, StanzaErrorCondition, ns};
use tokio::sync::oneshot;

use super::api::Client;
use super::error::{ClientError, Lost};
use super::event::{ClientEvent, EventSender};
use super::files::{shared, shared_url};
use super::limits::{IQ_TIMEOUT, kept_text};
pub use super::state::Occupant;
use super::state::{RoomState, State, lock};
use crate::util::random_id;

/// Occupants remembered per room (for `/occupants` and the join event). At
/// the bound, newcomers are still shown but not remembered: a room service
/// that invents occupants without end cannot grow the client without end.
/// Real rooms of this toolkit hold a class, tens of people.
pub const MAX_ROOM_OCCUPANTS: usize = 4096;

pub use super::state::muc_domain;

/// A room JID from what a user typed: a bare name is a room on our server's
/// room service; anything with an `@` is taken as a room JID.
pub fn room_jid(me: &Jid, typed: &str) -> Result<Jid, ClientError> {
    let full = if typed.contains('@') {
        typed.to_string()
    } else {
        format!("{typed}@{}", muc_domain(me))
    };
    Jid::parse(&full)
        .map(|j| j.to_bare())
        .map_err(|source| ClientError::BadRoom {
            room: typed.to_string(),
            source,
        })
}

impl Client {
    /// Joins `room` as `nick`; resolves to whether the room was created by
    /// this join. A new room is configured at once as an instant room
    /// (XEP-0045 10.1.2), as some servers keep new rooms locked until then.
    pub fn join_room(
        &self,
        room: &Jid,
        nick: &str,
    ) -> impl Future<Output = Result<bool, ClientError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let room = room.to_bare();
        let already = lock(&self.state)
            .rooms
            .get(&room)
            .map(|r| (r.nick.clone(), r.joined));
        let target = match already {
            Some((n, true)) if n == nick => Err(ClientError::AlreadyInRoom {
                room: room.clone(),
                nick: n,
            }),
            Some((n, _)) => Err(ClientError::InRoomAs {
                room: room.clone(),
                nick: n,
            }),
            None => room
                .with_resource(nick)
                .map_err(|source| ClientError::BadNickname {
                    nick: nick.to_string(),
                    source,
                }),
        };
        let sent = target.and_then(|to| {
            lock(&self.state).rooms.insert(
                room.clone(),
                RoomState {
                    nick: nick.to_string(),
                    join: Some(tx),
                    ..RoomState::default()
                },
            );
            let p = Presence {
                to: Some(to),
                payloads: vec![
                    Element::new("x", ns::MUC).child(
                        Element::new("history", ns::MUC)
                            .attr("maxstanzas", MAX_ROOM_HISTORY.to_string()),
                    ),
                ],
                ..Presence::new(PresenceType::Available)
            };
            self.send(&p.to_element())
        });
        let configure = {
            let q = Element::new("query", ns::MUC_OWNER)
                .child(Element::new("x", ns::DATA_FORMS).attr("type", "submit"));
            self.iq(
                IqType::Set,
                Some(room.clone()),
                q,
                "configuring the new room",
            )
        };
        async move {
            sent?;
            let created = match tokio::time::timeout(IQ_TIMEOUT, rx).await {
                Ok(Ok(r)) => r?,
                Ok(Err(_)) => return Err(Lost::ClosedWhileWaiting.into()),
                Err(_) => return Err(ClientError::Timeout("joining the room".into())),
            };
            if created {
                configure.await?;
            }
            Ok(created)
        }
    }

    /// Leaves a room (the server confirms with [`ClientEvent::RoomLeft`]).
    pub fn leave_room(&self, room: &Jid) -> Result<(), ClientError> {
        let nick = lock(&self.state)
            .rooms
            .get(room)
            .map(|r| r.nick.clone())
            .ok_or_else(|| ClientError::NotInRoom(room.clone()))?;
        let to = room
            .with_resource(&nick)
            .map_err(|source| ClientError::BadNickname { nick, source })?;
        let p = Presence {
            to: Some(to),
            ..Presence::new(PresenceType::Unavailable)
        };
        self.send(&p.to_element())
    }

    /// Destroys a room we own (XEP-0045 10.9): everyone in it is told, with
    /// the reason, and the room and its history are deleted.
    pub fn destroy_room(
        &self,
        room: &Jid,
        reason: Option<&str>,
    ) -> impl Future<Output = Result<(), ClientError>> + Send + 'static {
        let mut destroy = Element::new("destroy", ns::MUC_OWNER);
        if let Some(r) = reason {
            destroy = destroy.text_child("reason", ns::MUC_OWNER, r);
        }
        let fut = self.iq(
            IqType::Set,
            Some(room.to_bare()),
            Element::new("query", ns::MUC_OWNER).child(destroy),
            "destroying the room",
        );
        async move {
            fut.await?;
            Ok(())
        }
    }

    /// Says something in a room; returns the message id.
    pub fn say(&self, room: &Jid, body: &str) -> Result<String, ClientError> {
        if !lock(&self.state).rooms.get(room).is_some_and(|r| r.joined) {
            return Err(ClientError::JoinFirst(room.clone()));
        }
        let id = format!("g-{}", random_id(6));
        let m = Message {
            from: None,
            to: Some(room.to_bare()),
            id: Some(id.clone()),
            kind: MessageType::Groupchat,
            body: Some(body.to_string()),
            payloads: Vec::new(),
        };
        self.send(&m.to_element())?;
        Ok(id)
    }

    /// Sets a room's subject (everyone in it sees the change).
    pub fn set_subject(&self, room: &Jid, subject: &str) -> Result<(), ClientError> {
        if !lock(&self.state).rooms.get(room).is_some_and(|r| r.joined) {
            return Err(ClientError::JoinFirst(room.clone()));
        }
        let m = Element::new("message", ns::CLIENT)
            .attr("to", room.to_string())
            .attr("type", "groupchat")
            .attr("id", format!("s-{}", random_id(4)))
            .text_child("subject", ns::CLIENT, subject);
        self.send(&m)
    }

    /// The rooms of our server's room service, with their names.
    pub fn list_rooms(
        &self,
    ) -> impl Future<Output = Result<Vec<(Jid, Option<String>)>, ClientError>> + Send + 'static
    {
        let domain = muc_domain(&self.jid);
        let service = Jid::parse(&domain).map_err(|source| ClientError::BadJid {
            jid: domain,
            source,
        });
        let fut = service.map(|s| {
            self.iq_sender().iq_pages(
                IqType::Get,
                Some(s),
                Element::new("query", ns::DISCO_ITEMS),
                "listing rooms",
            )
        });
        async move {
            let (items, _) = fut?.await?;
            Ok(items
                .iter()
                .filter(|i| i.is("item", ns::DISCO_ITEMS))
                .filter_map(|i| {
                    let jid = Jid::parse(i.get_attr("jid")?).ok()?;
                    Some((jid, i.get_attr("name").map(str::to_string)))
                })
                .collect())
        }
    }

    /// The occupants of a room: from what we saw if we are in it, otherwise
    /// by asking the room (nicknames only).
    pub fn occupants(
        &self,
        room: &Jid,
    ) -> impl Future<Output = Result<Vec<Occupant>, ClientError>> + Send + 'static {
        let known: Option<Vec<Occupant>> = lock(&self.state)
            .rooms
            .get(room)
            .filter(|r| r.joined)
            .map(|r| r.occupants.values().cloned().collect());
        let ask = known.is_none().then(|| {
            self.iq(
                IqType::Get,
                Some(room.clone()),
                Element::new("query", ns::DISCO_ITEMS),
                "listing occupants",
            )
        });
        async move {
            if let Some(k) = known {
                return Ok(k);
            }
            let Some(ask) = ask else {
                return Ok(Vec::new());
            };
            let iq = ask.await?;
            Ok(iq
                .payload
                .iter()
                .flat_map(|q| q.elements())
                .filter_map(|i| Jid::parse(i.get_attr("jid")?).ok())
                .filter_map(|j| j.resource().map(str::to_string))
                .map(|nick| Occupant {
                    nick,
                    role: String::new(),
                    affiliation: String::new(),
                    show: None,
                    status: None,
                })
                .collect())
        }
    }

    /// Rooms we are in, with our nickname.
    pub fn joined_rooms(&self) -> Vec<(Jid, String)> {
        lock(&self.state)
            .rooms
            .iter()
            .filter(|(_, r)| r.joined)
            .map(|(j, r)| (j.clone(), r.nick.clone()))
            .collect()
    }
}

/// The `<x xmlns='…muc#user'/>` facts of a room presence.
struct MucUser {
    role: String,
    affiliation: String,
    codes: Vec<u16>,
    /// The room was destroyed, with this reason (XEP-0045 10.9).
    destroyed: Option<String>,
}

fn muc_user(p: &Presence) -> MucUser {
    let x = p.payloads.iter().find(|x| x.is("x", ns::MUC_USER));
    let item = x.and_then(|x| x.get_child("item", ns::MUC_USER));
    MucUser {
        role: item
            .and_then(|i| i.get_attr("role"))
            .unwrap_or("participant")
            .to_string(),
        affiliation: item
            .and_then(|i| i.get_attr("affiliation"))
            .unwrap_or("none")
            .to_string(),
        codes: x
            .map(|x| {
                x.elements()
                    .filter(|s| s.is("status", ns::MUC_USER))
                    .filter_map(|s| s.get_attr("code")?.parse().ok())
                    .collect()
            })
            .unwrap_or_default(),
        destroyed: x
            .and_then(|x| x.get_child("destroy", ns::MUC_USER))
            .map(|d| d.child_text("reason", ns::MUC_USER).unwrap_or_default()),
    }
}

/// Handles a stanza from a room; returns `false` when it is not a room
/// stanza this module handles (private messages, iqs, errors to messages),
/// so the caller treats it as usual.
pub(crate) fn handle_room_stanza(
    el: &Element,
    state: &Arc<Mutex<State>>,
    events: &EventSender,
) -> bool {
    match el.name.as_str() {
        "presence" => {
            if let Ok(p) = Presence::from_element(el) {
                room_presence(el, p, state, events);
            }
            true
        }
        "message" => match Message::from_element(el) {
            Ok(m) if m.kind == MessageType::Groupchat => {
                room_message(m, state, events);
                true
            }
            Ok(_) => false,
            Err(_) => true,
        },
        _ => false,
    }
}

/// A presence from a room we are in (or joining): the answer to our join,
/// a refusal, or an occupant arriving, changing or leaving.
fn room_presence(el: &Element, p: Presence, state: &Mutex<State>, events: &EventSender) {
    let Some(from) = p.from.clone() else { return };
    let room = from.to_bare();
    let mut st = lock(state);
    let Some(r) = st.rooms.get_mut(&room) else {
        return;
    };
    let nick = from.resource().unwrap_or_default().to_string();
    match p.kind {
        PresenceType::Error => {
            let err = el.get_child("error", ns::CLIENT);
            let refused = ClientError::Refused {
                what: format!("joining {room}"),
                condition: err
                    .and_then(StanzaErrorCondition::from_error_element)
                    .map_or("undefined-condition".into(), |c| c.to_string()),
                text: err.and_then(protocol::error::error_text),
            };
            if let Some(tx) = r.join.take() {
                let _ = tx.send(Err(refused));
            }
            if !r.joined {
                st.rooms.remove(&room);
            }
        }
        PresenceType::Available => occupant_available(r, room, nick, &p, events),
        PresenceType::Unavailable => {
            let mu = muc_user(&p);
            if mu.codes.contains(&110) || nick == r.nick {
                st.rooms.remove(&room);
                events.send(ClientEvent::RoomLeft {
                    room,
                    destroyed: mu.destroyed.is_some(),
                    reason: mu.destroyed,
                });
            } else {
                r.occupants.remove(&nick);
                if r.joined {
                    events.send(ClientEvent::RoomPresence {
                        room,
                        nick,
                        joined: false,
                        available: false,
                        show: None,
                        status: p.status,
                    });
                }
            }
        }
        _ => {}
    }
}

/// An occupant is there: remembered (up to [`MAX_ROOM_OCCUPANTS`]); our
/// own presence (status 110) completes the join.
fn occupant_available(
    r: &mut RoomState,
    room: Jid,
    nick: String,
    p: &Presence,
    events: &EventSender,
) {
    let mu = muc_user(p);
    let occupant = Occupant {
        nick: nick.clone(),
        role: kept_text(&mu.role),
        affiliation: kept_text(&mu.affiliation),
        show: p.show,
        status: p.status.as_deref().map(kept_text),
    };
    let is_new = !r.occupants.contains_key(&nick);
    if !is_new || r.occupants.len() < MAX_ROOM_OCCUPANTS {
        r.occupants.insert(nick.clone(), occupant);
    }
    if mu.codes.contains(&110) && !r.joined {
        r.joined = true;
        let created = mu.codes.contains(&201);
        if let Some(tx) = r.join.take() {
            let _ = tx.send(Ok(created));
        }
        events.send(ClientEvent::RoomJoined {
            room,
            nick,
            created,
            occupants: r.occupants.keys().cloned().collect(),
        });
    } else if r.joined {
        // Before our own presence comes the list of who is there already:
        // part of RoomJoined, not news.
        events.send(ClientEvent::RoomPresence {
            room,
            nick,
            joined: is_new,
            available: true,
            show: p.show,
            status: p.status.clone(),
        });
    }
}

/// A groupchat message: the subject (a subject without a body) or what
/// someone said, which may share a file (XEP-0363).
fn room_message(m: Message, state: &Arc<Mutex<State>>, events: &EventSender) {
    let Some(from) = m.from.clone() else { return };
    let room = from.to_bare();
    let nick = from.resource().map(str::to_string);
    let subject = m
        .payloads
        .iter()
        .find(|p| p.is("subject", ns::CLIENT))
        .map(Element::text_content);
    if let (Some(subject), None) = (subject, &m.body) {
        events.send(ClientEvent::RoomSubject {
            room,
            nick,
            subject,
        });
        return;
    }
    if let Some(body) = m.body.clone() {
        let delayed = m.delay_stamp().map(str::to_string);
        // A file shared now by someone else (not our own share coming
        // back, and not history replayed at join: those are old news).
        let share = shared_url(&m).filter(|_| {
            delayed.is_none()
                && lock(state)
                    .rooms
                    .get(&room)
                    .is_none_or(|r| Some(&r.nick) != nick.as_ref())
        });
        events.send(ClientEvent::RoomMessage {
            room,
            nick,
            body,
            id: m.id.clone(),
            delayed,
        });
        if let Some(url) = share {
            shared(&url, &from, state, events);
        }
    }
}
