//! The reader task: reads stanzas from the server and turns each into
//! events, answers and state.
//!
//! [`run`] reads until the stream ends; [`dispatch`] sends each stanza to
//! its owner: stanzas from a room to `rooms`, file-transfer iqs to `files`,
//! and the rest (iq answers and requests, messages, presence) to the
//! handlers below. The reader answers what a client must answer on its own
//! (pings, receipt requests, roster pushes, unknown iqs) and never waits on
//! the front end: events go into a queue that drops at its bound.

use std::sync::{Arc, Mutex};

use protocol::omemo::Version;
use protocol::parser::Event;
use protocol::stanza::{Iq, IqType, Message, MessageType, Presence, PresenceType};
use protocol::{Element, Jid, StanzaErrorCondition, StreamErrorCondition, ns};
use tokio::io::ReadHalf;
use tokio::sync::{Notify, mpsc, oneshot};

use super::error::{ClientError, Lost};
use super::event::{ChatState, ClientEvent, EventSender, RosterItem};
use super::files::{handle_file_iq, shared, shared_url};
use super::limits::{MAX_PENDING_REQUESTS, MAX_ROSTER_ITEMS, WRITE_STALL_TIMEOUT, kept_text};
use super::omemo::jobs::{Arrived, Job};
use super::outbound::auto_reply;
use super::rooms::{handle_room_stanza, muc_domain};
use super::sm::{Attach, RETRY_WAITS, Resumer, Sm};
use super::state::{Pending, State, lock};
use crate::transport::BoxStream;
use crate::util::random_id;
use crate::xmpp_io::{ReadError, XmppReader};

/// What the reader works with: who we are, where its output goes, and the
/// state it shares with the API.
pub(crate) struct Reader {
    /// The OMEMO worker's queue, when end-to-end encryption is on.
    pub(crate) e2e: Option<mpsc::Sender<Job>>,
    /// Our full JID.
    pub(crate) me: Jid,
    /// Stanzas to the server (answers the client gives on its own).
    pub(crate) out: mpsc::Sender<String>,
    /// Events to the front end.
    pub(crate) events: EventSender,
    /// Woken by the writer when the server stopped reading.
    pub(crate) stalled: Arc<Notify>,
    /// Iq requests waiting for their answers.
    pub(crate) pending: Pending,
    /// What the API reads.
    pub(crate) state: Arc<Mutex<State>>,
    /// Stream management's counts, once it is on (XEP-0198).
    pub(crate) sm: Option<Arc<Sm>>,
    /// How to get back into the session after a dropped connection.
    pub(crate) resumer: Option<Resumer>,
    /// Tells the writer about the resumed connection.
    pub(crate) attach: mpsc::UnboundedSender<Attach>,
}

/// Reads until the stream ends, then fails what waits on the connection,
/// signals `closed` and sends the last event, [`ClientEvent::Disconnected`].
/// A resumable session (XEP-0198) whose connection drops is resumed on a
/// new one first, as often as the server allows.
pub(crate) async fn run(
    mut rd: ReadHalf<BoxStream>,
    mut xml: XmppReader,
    r: Reader,
    closed: oneshot::Sender<()>,
) {
    // After a resumption: message stanzas that came back, counted until
    // the server's first ack request (it follows its replay) or a moment.
    let mut comeback: Option<Comeback> = None;
    let reason = loop {
        let next = tokio::select! {
            next = xml.next(&mut rd) => next,
            _ = r.stalled.notified() => break Some(format!(
                "the server has not read anything we sent for {} seconds; disconnected",
                WRITE_STALL_TIMEOUT.as_secs()
            )),
            _ = until(comeback.as_ref().map(|c| c.until)) => {
                if let Some(c) = comeback.take() {
                    c.report(&r.events);
                }
                continue;
            }
        };
        let el = match next {
            Ok(Event::Element(el)) => el,
            Ok(Event::StreamClose) => break None,
            Ok(Event::StreamOpen(_)) => break Some("the server restarted the stream".to_string()),
            Err(e @ (ReadError::Eof | ReadError::Io(_))) => {
                let why = match e {
                    ReadError::Eof => "the server closed the connection".to_string(),
                    other => other.to_string(),
                };
                let Some(resumer) = &r.resumer else {
                    break Some(why);
                };
                if r.sm.as_ref().is_some_and(|sm| sm.closing()) {
                    // We were signing out: some servers close the
                    // connection without their closing tag.
                    break None;
                }
                match comeback_after(&r, resumer, &why).await {
                    Ok((new_rd, new_xml, c)) => {
                        rd = new_rd;
                        xml = new_xml;
                        comeback = Some(c);
                        continue;
                    }
                    Err(_) if r.sm.as_ref().is_some_and(|sm| sm.closing()) => break None,
                    Err(e) => break Some(format!("{why}; the session could not be resumed: {e}")),
                }
            }
            Err(ReadError::Parse(protocol::ParseError::TooLarge { limit })) if xml.can_go_on() => {
                // A hostile or broken server cannot end our session with one
                // huge stanza: it was skipped, unread, and we go on.
                r.events.send(ClientEvent::StanzaTooLarge { limit });
                continue;
            }
            Err(e) => break Some(e.to_string()),
        };
        if el.is("error", ns::STREAM) {
            let (cond, text) = StreamErrorCondition::from_error_element(&el);
            let c = cond.map_or("undefined-condition".to_string(), |c| c.to_string());
            // Recorded before the pending requests fail (below), so they can
            // look at it.
            lock(&r.state).stream_error = Some(c.clone());
            if c == "system-shutdown" && text.is_none() {
                break Some(
                    "the server is shutting down (stream error system-shutdown)".to_string(),
                );
            }
            break Some(match text {
                Some(t) => format!("stream error {c}: {t}"),
                None => format!("stream error {c}"),
            });
        }
        if let Some(sm) = &r.sm {
            if el.ns == ns::SM {
                match el.name.as_str() {
                    "r" => {
                        auto_reply(&r.out, protocol::sm::ack(sm.handled()));
                        if let Some(c) = comeback.take() {
                            c.report(&r.events);
                        }
                    }
                    "a" => {
                        if let Some(h) = protocol::sm::h_of(&el) {
                            sm.acked(h);
                        }
                    }
                    _ => {}
                }
                continue;
            }
            if protocol::sm::is_stanza_element(&el) {
                sm.handled_one();
                if let Some(c) = &mut comeback
                    && el.name == "message"
                    && el.has_child("body", ns::CLIENT)
                {
                    c.redelivered += 1;
                }
            }
        }
        dispatch(&el, &r);
    };
    lock(&r.pending).clear();
    // Pending joins fail with the connection.
    lock(&r.state).rooms.clear();
    let _ = closed.send(());
    r.events
        .send_last(ClientEvent::Disconnected { reason })
        .await;
}

/// Counting what a resumed session got back.
struct Comeback {
    redelivered: usize,
    resent: usize,
    until: tokio::time::Instant,
}

impl Comeback {
    fn report(self, events: &EventSender) {
        events.send(ClientEvent::Resumed {
            redelivered: self.redelivered,
            resent: self.resent,
        });
    }
}

/// Sleeps until `at`, or for ever.
async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The connection dropped: connects again and resumes the session, trying
/// for as long as the server keeps it. The writer moves to the new
/// connection and sends again what the server never acknowledged.
async fn comeback_after(
    r: &Reader,
    resumer: &Resumer,
    why: &str,
) -> Result<(ReadHalf<BoxStream>, XmppReader, Comeback), ClientError> {
    let sm = r
        .sm
        .as_ref()
        .ok_or_else(|| ClientError::Unexpected("a resumption without stream management".into()))?;
    r.events.send(ClientEvent::Reconnecting {
        reason: why.to_string(),
    });
    let deadline = tokio::time::Instant::now() + resumer.window;
    let mut attempt = 0;
    let n = loop {
        // Quick at first, then backing off (the last wait repeats).
        let wait = RETRY_WAITS[attempt.min(RETRY_WAITS.len() - 1)];
        attempt += 1;
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            // The user signed out meanwhile: nothing to come back to.
            () = sm.signed_out() => return Err(Lost::AlreadyClosed.into()),
        }
        match (resumer.reconnect)(resumer.id.clone(), sm.handled()).await {
            Ok(n) => break n,
            // Only a network that is not back yet is worth waiting for.
            // The server saying no (the session expired, a wrong password
            // now, a certificate that does not verify) would say no again.
            Err(e) if !e.is_network_trouble() => return Err(e),
            Err(e) if tokio::time::Instant::now() + wait >= deadline => return Err(e),
            Err(e) => tracing::info!("resuming failed, trying again: {e}"),
        }
    };
    sm.acked(n.server_h);
    let (rd, wr) = tokio::io::split(n.stream);
    let xml = n.reader;
    let replay = sm.kept();
    let resent = replay.len();
    let _ = r.attach.send(Attach { wr, replay });
    Ok((
        rd,
        xml,
        Comeback {
            redelivered: 0,
            resent,
            until: tokio::time::Instant::now() + std::time::Duration::from_secs(2),
        },
    ))
}

/// Sends one stanza to the module that owns it.
pub(crate) fn dispatch(el: &Element, r: &Reader) {
    let from_room = el
        .get_attr("from")
        .and_then(|f| Jid::parse(f).ok())
        .is_some_and(|f| f.domain() == muc_domain(&r.me) && f.local().is_some());
    if from_room && handle_room_stanza(el, &r.state, &r.events) {
        return;
    }
    match el.name.as_str() {
        "iq" => {
            if let Ok(iq) = Iq::from_element(el) {
                handle_iq(el, iq, r);
            }
        }
        "message" => {
            if let Ok(m) = Message::from_element(el) {
                handle_message(el, m, r);
            }
        }
        "presence" => {
            if let Ok(p) = Presence::from_element(el) {
                handle_presence(p, r);
            }
        }
        _ => {}
    }
}

/// An answer goes to the request waiting for it; a request is answered:
/// roster pushes and pings with a result, anything else with
/// `service-unavailable` (RFC 6120 8.4).
fn handle_iq(el: &Element, iq: Iq, r: &Reader) {
    if matches!(iq.kind, IqType::Result | IqType::Error) {
        if let Some(tx) = lock(&r.pending).remove(&iq.id) {
            let _ = tx.send(el.clone());
        }
        return;
    }
    if handle_file_iq(&iq, &r.state, &r.out, &r.events) {
        return;
    }
    // Only our server may push roster changes (RFC 6121 2.1.6):
    // otherwise anyone could rewrite our contact list.
    let me = &r.me;
    let from_server = iq
        .from
        .as_ref()
        .is_none_or(|f| f == &me.to_bare() || f.domain() == me.domain() && f.local().is_none());
    let payload = iq.payload.as_ref();
    let mut reply = match payload {
        Some(q) if iq.kind == IqType::Set && q.is("query", ns::ROSTER) && from_server => {
            roster_push(q, r);
            iq.result(None)
        }
        Some(p) if iq.kind == IqType::Get && p.is("ping", ns::PING) => iq.result(None),
        // What we can do (XEP-0030), asked about the capabilities our
        // presence announced (XEP-0115).
        Some(p) if iq.kind == IqType::Get && p.is("query", ns::DISCO_INFO) => {
            let mut reply = iq.result(Some(super::caps::info(p.get_attr("node"))));
            reply.from = None;
            auto_reply(&r.out, reply.to_element().to_xml());
            return;
        }
        _ => iq.error_reply(StanzaErrorCondition::ServiceUnavailable, None),
    };
    reply.from = None;
    // The error reply need not echo the request (RFC 6120 8.3.1 allows
    // leaving it out): a peer cannot make each answer as big as its request.
    reply.payload = None;
    auto_reply(&r.out, reply.to_element().to_xml());
}

/// Applies a roster push to the state (bounded at [`MAX_ROSTER_ITEMS`]) and
/// shows each item.
fn roster_push(query: &Element, r: &Reader) {
    for item in query.elements().filter(|i| i.is("item", ns::ROSTER)) {
        let Some(ri) = RosterItem::from_element(item) else {
            continue;
        };
        let mut st = lock(&r.state);
        if ri.subscription == "remove" {
            st.roster.remove(&ri.jid);
            r.events.send(ClientEvent::RosterRemoved(ri.jid));
        } else {
            if st.roster.len() < MAX_ROSTER_ITEMS || st.roster.contains_key(&ri.jid) {
                let kept = RosterItem {
                    name: ri.name.as_deref().map(kept_text),
                    subscription: kept_text(&ri.subscription),
                    ..ri.clone()
                };
                st.roster.insert(ri.jid.clone(), kept);
            }
            r.events.send(ClientEvent::RosterPush(ri));
        }
    }
}

/// A bounced message, a receipt, an announcement from the server, or a
/// message from a contact (acknowledged when it asks for a receipt).
fn handle_message(el: &Element, m: Message, r: &Reader) {
    let me = &r.me;
    let from = m.from.clone().unwrap_or_else(|| me.to_bare());
    if m.kind == MessageType::Error {
        let err = el.get_child("error", ns::CLIENT);
        r.events.send(ClientEvent::MessageError {
            from: m.from.clone(),
            id: m.id.clone(),
            condition: err
                .and_then(StanzaErrorCondition::from_error_element)
                .map_or("undefined-condition".into(), |c| c.to_string()),
            text: err.and_then(protocol::error::error_text),
        });
        return;
    }
    if let Some(event) = m.payloads.iter().find(|p| p.is("event", ns::PUBSUB_EVENT)) {
        // A PEP notification comes from the owner's bare JID, which only
        // the owner's server can send (it stamps the full JID on what a
        // client sends): a full JID here is someone imitating one.
        if !from.is_bare() {
            return;
        }
        if let Some(jobs) = &r.e2e
            && let Some((v, ids)) = omemo_device_list(event)
        {
            let _ = jobs.try_send(Job::DeviceList { from, v, ids });
            return;
        }
        let nick = event
            .get_child("items", ns::PUBSUB_EVENT)
            .filter(|i| i.get_attr("node") == Some(super::caps::NICK))
            .and_then(|i| i.elements().last())
            .and_then(|item| item.child_text("nick", super::caps::NICK));
        if let Some(nick) = nick {
            r.events.send(ClientEvent::Nick { from, nick });
        }
        return;
    }
    if let Some(result) = m.payloads.iter().find(|p| p.is("result", ns::MAM)) {
        // Believed only from our own account, as carbons are, or from a
        // room we are in (its archive): anyone can send a message that
        // looks like an archive result.
        let our_room = lock(&r.state)
            .rooms
            .get(&from)
            .is_some_and(|room| room.joined);
        if from != me.to_bare() && !our_room {
            tracing::warn!(%from, "ignored a forged archive result");
            return;
        }
        let forwarded = result.get_child("forwarded", ns::FORWARD);
        let stamp = forwarded
            .and_then(|f| f.get_child("delay", ns::DELAY))
            .and_then(|d| d.get_attr("stamp"))
            .map(str::to_string);
        if let Some(copy) = forwarded
            .and_then(|f| f.get_child("message", ns::CLIENT))
            .and_then(|c| Message::from_element(c).ok())
            && let Some(body) = copy.body
        {
            r.events.send(ClientEvent::Archived {
                from: copy.from,
                to: copy.to,
                body,
                stamp,
            });
        }
        return;
    }
    if let Some((sent, copy)) = carbon_in(&m) {
        // Believed only from our own account: anyone can wrap a forged
        // message in <forwarded/> and send it (CVE-2017-5589, carbon
        // spoofing in several clients). The server stamps `from` on what
        // a session sends, so a carbon from our bare JID came from it.
        if from != me.to_bare() {
            tracing::warn!(%from, "ignored a forged carbon: carbons come only from our own account");
            return;
        }
        if let Ok(copy) = Message::from_element(copy) {
            let peer = if sent {
                copy.to.clone()
            } else {
                copy.from.clone()
            };
            // End to end: this device has a key in it too (a sender
            // encrypts to all of the recipient's devices and to its own).
            if let (Some(jobs), Some(peer), Some(sender)) = (&r.e2e, &peer, &copy.from)
                && let Some((v, encrypted)) = omemo_payload(&copy)
            {
                let job = Job::Incoming(Arrived {
                    from: sender.clone(),
                    id: copy.id.clone(),
                    kind: copy.kind,
                    delayed: None,
                    v,
                    encrypted: encrypted.clone(),
                    receipt: false,
                    carbon: Some((sent, peer.clone())),
                });
                if jobs.try_send(job).is_err() {
                    r.events.send(ClientEvent::E2eWarning {
                        jid: Some(peer.clone()),
                        text: "a copy of an OMEMO message was not read: too many are waiting"
                            .into(),
                    });
                }
                return;
            }
            if let (Some(peer), Some(body)) = (peer, copy.body) {
                r.events.send(ClientEvent::Carbon {
                    sent,
                    peer,
                    body,
                    id: copy.id,
                });
            }
        }
        return;
    }
    if let Some(id) = m.receipt_for() {
        r.events.send(ClientEvent::Receipt {
            from,
            id: id.to_string(),
        });
        return;
    }
    // End to end (OMEMO): the worker opens it. Without OMEMO on, its
    // fallback body is shown (it says what it is).
    if let Some(jobs) = &r.e2e
        && let Some((v, encrypted)) = omemo_payload(&m)
    {
        let job = Job::Incoming(Arrived {
            from: from.clone(),
            id: m.id.clone(),
            kind: m.kind,
            delayed: m.delay_stamp().map(str::to_string),
            v,
            encrypted: encrypted.clone(),
            // Acknowledged once it is read, not before: a receipt for a
            // message this device could not open would say it arrived.
            receipt: m.requests_receipt(),
            carbon: None,
        });
        if jobs.try_send(job).is_err() {
            r.events.send(ClientEvent::E2eWarning {
                jid: Some(from),
                text: "an OMEMO message was not read: too many are waiting".into(),
            });
        }
        return;
    }
    if m.requests_receipt()
        && let Some(id) = &m.id
    {
        // XEP-0184: acknowledge to the sending resource.
        let ack = Element::new("message", ns::CLIENT)
            .attr("to", from.to_string())
            .attr("id", format!("r-{}", random_id(4)))
            .child(Element::new("received", ns::RECEIPTS).attr("id", id.clone()));
        auto_reply(&r.out, ack.to_xml());
    }
    if from.local().is_none() && from.domain() == me.domain() {
        // From the server itself: an announcement to everyone.
        if let Some(body) = m.body.clone() {
            let subject = m
                .payloads
                .iter()
                .find(|p| p.is("subject", ns::CLIENT))
                .map(Element::text_content);
            r.events.send(ClientEvent::Announcement { subject, body });
        }
        return;
    }
    if m.body.is_none()
        && let Some(state) = m.payloads.iter().find_map(ChatState::from_element)
    {
        // A standalone chat state (XEP-0085): typing, paused...
        r.events.send(ClientEvent::ChatState { from, state });
        return;
    }
    // A file shared through the server (XEP-0363): offered for download.
    // The usual body is the URL itself, which is then not shown twice.
    if let Some(url) = shared_url(&m)
        && shared(&url, &from, &r.state, &r.events)
        && m.body.as_deref().is_none_or(|b| b.trim() == url)
    {
        return;
    }
    if let Some(body) = m.body.clone() {
        let delayed = m.delay_stamp().map(str::to_string);
        r.events.send(ClientEvent::Message {
            from,
            body,
            id: m.id.clone(),
            kind: m.kind,
            delayed,
            e2e: None,
        });
    }
}

/// A message's OMEMO `<encrypted/>` (either version), if it has one.
fn omemo_payload(m: &Message) -> Option<(Version, &Element)> {
    m.payloads
        .iter()
        .find_map(|p| Some((Version::from_ns(&p.ns)?, p)).filter(|_| p.name == "encrypted"))
}

/// The OMEMO device list a PEP notification carries, if it does.
fn omemo_device_list(event: &Element) -> Option<(Version, Vec<u32>)> {
    let items = event.get_child("items", ns::PUBSUB_EVENT)?;
    let node = items.get_attr("node")?;
    let v = Version::ALL
        .into_iter()
        .find(|v| protocol::omemo::xml::devices_node(*v) == node)?;
    let list = items
        .elements()
        .filter(|i| i.is("item", ns::PUBSUB_EVENT))
        .last()?
        .elements()
        .next()?;
    Some((v, protocol::omemo::xml::read_device_list(v, list)))
}

/// The message a carbon (XEP-0280) carries, and whether it was sent (or
/// received) by the other session.
fn carbon_in(m: &Message) -> Option<(bool, &Element)> {
    m.payloads.iter().find_map(|p| {
        let sent = if p.is("sent", ns::CARBONS) {
            true
        } else if p.is("received", ns::CARBONS) {
            false
        } else {
            return None;
        };
        let copy = p
            .get_child("forwarded", ns::FORWARD)?
            .get_child("message", ns::CLIENT)?;
        Some((sent, copy))
    })
}

/// A contact's availability, or a subscription request or answer.
fn handle_presence(p: Presence, r: &Reader) {
    let Some(from) = p.from.clone() else { return };
    match p.kind {
        PresenceType::Available | PresenceType::Unavailable => {
            let available = p.kind == PresenceType::Available;
            if from == r.me {
                return;
            }
            let mut st = lock(&r.state);
            if available {
                st.online.insert(from.clone(), p.show, p.status.as_deref());
            } else {
                st.online.remove(&from);
            }
            r.events.send(ClientEvent::Presence {
                from,
                available,
                show: p.show,
                status: p.status,
            });
        }
        PresenceType::Subscribe => {
            let bare = from.to_bare();
            let mut st = lock(&r.state);
            // We asked them already: approving is what the user meant.
            let auto = st.roster.contains_key(&bare);
            if auto {
                let ok = Presence {
                    to: Some(bare.clone()),
                    ..Presence::new(PresenceType::Subscribed)
                };
                auto_reply(&r.out, ok.to_element().to_xml());
            } else if !st.requests.contains(&bare) {
                if st.requests.len() >= MAX_PENDING_REQUESTS {
                    st.requests.remove(0);
                }
                st.requests.push(bare.clone());
            }
            r.events.send(ClientEvent::SubscriptionRequest {
                from: bare,
                auto_approved: auto,
            });
        }
        PresenceType::Subscribed | PresenceType::Unsubscribe | PresenceType::Unsubscribed => {
            r.events
                .send(ClientEvent::Subscription { from, kind: p.kind });
        }
        _ => {}
    }
}
