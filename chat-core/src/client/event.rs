//! What happened, for the user to see: [`ClientEvent`] and the data it
//! carries, and the bounded queue that takes events from the reader task to
//! the front end.
//!
//! Events derive `serde::Serialize`: the line client's `--json` output is
//! this serialization, word for word (the end-to-end tests and the labs parse
//! it), and its text output is the `Display` of the same value
//! (`client::cli::format`), so the two cannot drift apart. Each event is a
//! JSON object whose `type` field is [`ClientEvent::kind`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use protocol::stanza::{MessageType, PresenceType, Show};
use protocol::{Element, Jid};
use serde::Serialize;
use tokio::sync::mpsc;

use super::limits::{MAX_QUEUED_EVENT_BYTES, MAX_QUEUED_EVENTS};

/// A roster item as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RosterItem {
    /// The contact.
    #[serde(serialize_with = "wire::jid")]
    pub jid: Jid,
    /// Display name.
    pub name: Option<String>,
    /// none, to, from or both.
    pub subscription: String,
    /// We asked to subscribe and wait.
    pub ask: bool,
}

impl RosterItem {
    /// The item of a roster `<item/>`, if it names a valid JID.
    pub(super) fn from_element(item: &Element) -> Option<RosterItem> {
        Some(RosterItem {
            jid: Jid::parse(item.get_attr("jid")?).ok()?,
            name: item.get_attr("name").map(str::to_string),
            subscription: item.get_attr("subscription").unwrap_or("none").to_string(),
            ask: item.get_attr("ask") == Some("subscribe"),
        })
    }
}

/// A sent or received file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDone {
    /// The stream id.
    pub sid: String,
    /// The other side.
    #[serde(rename = "from", serialize_with = "wire::jid")]
    pub peer: Jid,
    /// The file name (as saved, for a received file).
    pub name: String,
    /// Where it was saved (received files).
    #[serde(serialize_with = "wire::path")]
    pub path: Option<PathBuf>,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// The URL, for a file shared through the server's upload service.
    pub url: Option<String>,
}

/// How a message was encrypted end to end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct E2e {
    /// Which OMEMO.
    #[serde(serialize_with = "wire::omemo")]
    pub version: protocol::omemo::Version,
    /// The sender's device.
    pub device: u32,
    /// How that device is trusted.
    pub trust: super::omemo::store::Trust,
}

/// Something that happened, for the user to see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ClientEvent {
    /// A message with a body.
    Message {
        /// Sender.
        #[serde(serialize_with = "wire::jid")]
        from: Jid,
        /// Text.
        body: String,
        /// Message id.
        id: Option<String>,
        /// chat, normal, headline...
        #[serde(rename = "message_type", serialize_with = "wire::message_type")]
        kind: MessageType,
        /// When it was sent, if it was stored offline (XEP-0203).
        delayed: Option<String>,
        /// How it was encrypted end to end (OMEMO), if it was.
        #[serde(skip_serializing_if = "Option::is_none")]
        e2e: Option<E2e>,
    },
    /// A delivery receipt (XEP-0184).
    Receipt {
        /// Who received it.
        #[serde(serialize_with = "wire::jid")]
        from: Jid,
        /// The id of our message.
        id: String,
    },
    /// A contact's availability changed.
    Presence {
        /// The contact's full JID.
        #[serde(serialize_with = "wire::jid")]
        from: Jid,
        /// Online or not.
        available: bool,
        /// away, dnd, xa, chat.
        #[serde(serialize_with = "wire::show")]
        show: Option<Show>,
        /// Status message.
        status: Option<String>,
    },
    /// Someone asks to see our presence.
    #[serde(rename = "subscribe")]
    SubscriptionRequest {
        /// Who asks.
        #[serde(serialize_with = "wire::jid")]
        from: Jid,
        /// We had already added them, so the client approved at once.
        auto_approved: bool,
    },
    /// A subscription answer or cancellation.
    Subscription {
        /// From whom.
        #[serde(serialize_with = "wire::jid")]
        from: Jid,
        /// subscribed, unsubscribe or unsubscribed.
        #[serde(rename = "subscription", serialize_with = "wire::presence_type")]
        kind: PresenceType,
    },
    /// The server changed our roster.
    #[serde(rename = "roster")]
    RosterPush(RosterItem),
    /// A roster item was removed (in JSON, a roster item whose
    /// subscription is `remove`, as on the wire).
    #[serde(rename = "roster")]
    RosterRemoved(#[serde(serialize_with = "wire::removed_item")] Jid),
    /// A message came back with an error.
    MessageError {
        /// The address it was sent to.
        #[serde(rename = "to", serialize_with = "wire::opt_jid")]
        from: Option<Jid>,
        /// Our message id.
        id: Option<String>,
        /// The condition.
        condition: String,
        /// The server's text.
        text: Option<String>,
    },
    /// A contact's nickname, published over PEP (XEP-0172).
    Nick {
        /// Whose.
        #[serde(serialize_with = "wire::jid")]
        from: Jid,
        /// The nickname.
        nick: String,
    },
    /// A message from the account's archive (XEP-0313), for `/history`.
    Archived {
        /// Its sender.
        #[serde(serialize_with = "wire::opt_jid")]
        from: Option<Jid>,
        /// Its recipient.
        #[serde(serialize_with = "wire::opt_jid")]
        to: Option<Jid>,
        /// Text.
        body: String,
        /// When the server kept it (XEP-0082).
        stamp: Option<String>,
    },
    /// A copy of a message another session of this account sent or
    /// received (XEP-0280 message carbons).
    Carbon {
        /// `true`: sent from the other session; `false`: received by it.
        sent: bool,
        /// The other party: recipient of a sent one, sender of a received one.
        #[serde(serialize_with = "wire::jid")]
        peer: Jid,
        /// Text.
        body: String,
        /// Its id.
        id: Option<String>,
    },
    /// A contact's chat state (XEP-0085): typing, paused...
    ChatState {
        /// Who.
        #[serde(serialize_with = "wire::jid")]
        from: Jid,
        /// What they are doing.
        state: ChatState,
    },
    /// A message from the server to everyone online.
    Announcement {
        /// Who sent it, as the server says ("Announcement from admin@...").
        subject: Option<String>,
        /// Text.
        body: String,
    },
    /// Someone offers us a file.
    FileOffer {
        /// Who.
        #[serde(serialize_with = "wire::jid")]
        from: Jid,
        /// The stream id, for `/accept SID` and `/reject SID`.
        sid: String,
        /// The file name (made safe).
        name: String,
        /// Announced size.
        size: u64,
    },
    /// A file shared with us through the server's upload service
    /// (XEP-0363): its URL came in a message. `/accept SID` downloads it.
    FileShared {
        /// Who shared it.
        #[serde(serialize_with = "wire::jid")]
        from: Jid,
        /// Our id for it, for `/accept SID` and `/reject SID`.
        sid: String,
        /// The file name the URL gives (made safe).
        name: String,
        /// The URL.
        url: String,
    },
    /// A large file is on its way (every 10%).
    FileProgress {
        /// The stream id.
        sid: String,
        /// The file name.
        name: String,
        /// We are the sender.
        sending: bool,
        /// Bytes so far.
        bytes: u64,
        /// All bytes.
        total: u64,
    },
    /// A file arrived whole, size and SHA-256 checked.
    FileReceived(FileDone),
    /// A transfer failed or an offer was refused.
    FileFailed {
        /// The stream id.
        sid: String,
        /// The file name.
        name: String,
        /// We were the sender.
        sending: bool,
        /// Why.
        reason: String,
    },
    /// We are in a room now.
    RoomJoined {
        /// The room.
        #[serde(serialize_with = "wire::jid")]
        room: Jid,
        /// Our nickname.
        nick: String,
        /// The join created the room (we own it).
        created: bool,
        /// Everyone there, us included.
        occupants: Vec<String>,
    },
    /// Someone joined, left, or changed status in a room we are in.
    RoomPresence {
        /// The room.
        #[serde(serialize_with = "wire::jid")]
        room: Jid,
        /// Their nickname.
        nick: String,
        /// They just arrived.
        joined: bool,
        /// Still there.
        available: bool,
        /// away, dnd, xa, chat.
        #[serde(serialize_with = "wire::show")]
        show: Option<Show>,
        /// Status message.
        status: Option<String>,
    },
    /// A message to a room (live, or history with a delay stamp).
    RoomMessage {
        /// The room.
        #[serde(serialize_with = "wire::jid")]
        room: Jid,
        /// Who said it; `None` for the room itself.
        nick: Option<String>,
        /// Text.
        body: String,
        /// Message id.
        id: Option<String>,
        /// When it was said, for history replayed at join (XEP-0203).
        delayed: Option<String>,
    },
    /// A room's subject (sent at join and when it changes).
    RoomSubject {
        /// The room.
        #[serde(serialize_with = "wire::jid")]
        room: Jid,
        /// Who set it.
        nick: Option<String>,
        /// The subject, empty when none.
        subject: String,
    },
    /// We left a room (or were removed from it).
    RoomLeft {
        /// The room.
        #[serde(serialize_with = "wire::jid")]
        room: Jid,
        /// The owner destroyed the room (XEP-0045 10.9).
        destroyed: bool,
        /// The reason the owner gave when destroying it, possibly empty;
        /// `None` when the room was not destroyed.
        reason: Option<String>,
    },
    /// The server sent a stanza larger than the client's limit; it was
    /// skipped and the connection goes on.
    StanzaTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// Events were dropped because the front end did not take them fast
    /// enough (see [`MAX_QUEUED_EVENTS`]).
    EventsDropped {
        /// How many since the last such event.
        count: u64,
    },
    /// The connection dropped; the client is connecting again to resume
    /// its session (XEP-0198).
    Reconnecting {
        /// What happened to the connection.
        reason: String,
    },
    /// The session was resumed on a new connection: nothing was lost.
    Resumed {
        /// Messages the server sent again (they had not arrived).
        redelivered: usize,
        /// Stanzas of ours sent again (the server had not had them).
        resent: usize,
    },
    /// Something about end-to-end encryption to say loudly: a new or
    /// changed key, a message that could not be read.
    E2eWarning {
        /// The contact it is about (none: our own device).
        #[serde(serialize_with = "wire::opt_jid")]
        jid: Option<Jid>,
        /// What happened, for the user.
        text: String,
    },
    /// A message the client accepted could not be sent end to end (no
    /// trusted device, the contact's keys unreachable): nothing went out.
    NotSent {
        /// The addressee.
        #[serde(serialize_with = "wire::jid")]
        to: Jid,
        /// The id the message had been given.
        id: String,
        /// Why.
        reason: String,
    },
    /// The connection ended.
    Disconnected {
        /// Why, if it was not a normal close.
        reason: Option<String>,
    },
}

impl ClientEvent {
    /// A short name for the event kind (the `type` field in JSON output).
    pub fn kind(&self) -> &'static str {
        match self {
            ClientEvent::Message { .. } => "message",
            ClientEvent::Receipt { .. } => "receipt",
            ClientEvent::Presence { .. } => "presence",
            ClientEvent::SubscriptionRequest { .. } => "subscribe",
            ClientEvent::Subscription { .. } => "subscription",
            ClientEvent::RosterPush(_) => "roster",
            ClientEvent::RosterRemoved(_) => "roster",
            ClientEvent::MessageError { .. } => "message-error",
            ClientEvent::Announcement { .. } => "announcement",
            ClientEvent::ChatState { .. } => "chat-state",
            ClientEvent::Carbon { .. } => "carbon",
            ClientEvent::Archived { .. } => "archived",
            ClientEvent::Nick { .. } => "nick",
            ClientEvent::FileOffer { .. } => "file-offer",
            ClientEvent::FileShared { .. } => "file-shared",
            ClientEvent::FileProgress { .. } => "file-progress",
            ClientEvent::FileReceived(_) => "file-received",
            ClientEvent::FileFailed { .. } => "file-failed",
            ClientEvent::RoomJoined { .. } => "room-joined",
            ClientEvent::RoomPresence { .. } => "room-presence",
            ClientEvent::RoomMessage { .. } => "room-message",
            ClientEvent::RoomSubject { .. } => "room-subject",
            ClientEvent::RoomLeft { .. } => "room-left",
            ClientEvent::StanzaTooLarge { .. } => "stanza-too-large",
            ClientEvent::EventsDropped { .. } => "events-dropped",
            ClientEvent::Reconnecting { .. } => "reconnecting",
            ClientEvent::Resumed { .. } => "resumed",
            ClientEvent::E2eWarning { .. } => "e2e-warning",
            ClientEvent::NotSent { .. } => "not-sent",
            ClientEvent::Disconnected { .. } => "disconnected",
        }
    }

    /// The JID the event is about, if any.
    pub fn from(&self) -> Option<&Jid> {
        match self {
            ClientEvent::Message { from, .. }
            | ClientEvent::Receipt { from, .. }
            | ClientEvent::Presence { from, .. }
            | ClientEvent::SubscriptionRequest { from, .. }
            | ClientEvent::Subscription { from, .. } => Some(from),
            ClientEvent::RosterPush(i) => Some(&i.jid),
            ClientEvent::RosterRemoved(j) => Some(j),
            ClientEvent::MessageError { from, .. } => from.as_ref(),
            ClientEvent::RoomJoined { room, .. }
            | ClientEvent::RoomPresence { room, .. }
            | ClientEvent::RoomMessage { room, .. }
            | ClientEvent::RoomSubject { room, .. }
            | ClientEvent::RoomLeft { room, .. } => Some(room),
            ClientEvent::FileOffer { from, .. }
            | ClientEvent::FileShared { from, .. }
            | ClientEvent::ChatState { from, .. } => Some(from),
            ClientEvent::Carbon { peer, .. } => Some(peer),
            ClientEvent::Archived { from, .. } => from.as_ref(),
            ClientEvent::Nick { from, .. } => Some(from),
            ClientEvent::FileReceived(d) => Some(&d.peer),
            ClientEvent::E2eWarning { jid, .. } => jid.as_ref(),
            ClientEvent::NotSent { to, .. } => Some(to),
            ClientEvent::Announcement { .. }
            | ClientEvent::FileProgress { .. }
            | ClientEvent::FileFailed { .. }
            | ClientEvent::StanzaTooLarge { .. }
            | ClientEvent::EventsDropped { .. }
            | ClientEvent::Reconnecting { .. }
            | ClientEvent::Resumed { .. }
            | ClientEvent::Disconnected { .. } => None,
        }
    }

    /// Whether the event reports a failure of something the user did (a
    /// message bounced, a file did not arrive, a stanza was skipped): a
    /// script's exit code says so.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            ClientEvent::MessageError { .. }
                | ClientEvent::NotSent { .. }
                | ClientEvent::FileFailed { .. }
                | ClientEvent::StanzaTooLarge { .. }
        )
    }

    /// Roughly the bytes of peer text the event holds, for
    /// [`MAX_QUEUED_EVENT_BYTES`].
    fn text_bytes(&self) -> usize {
        fn o(s: &Option<String>) -> usize {
            s.as_ref().map_or(0, String::len)
        }
        let jid = self.from().map_or(0, |j| j.to_string().len());
        jid + match self {
            ClientEvent::Message {
                body, id, delayed, ..
            } => body.len() + o(id) + o(delayed),
            ClientEvent::Receipt { id, .. } => id.len(),
            ClientEvent::ChatState { .. } => 0,
            ClientEvent::Carbon { body, id, .. } => body.len() + o(id),
            ClientEvent::Archived { body, stamp, .. } => body.len() + o(stamp),
            ClientEvent::Nick { nick, .. } => nick.len(),
            ClientEvent::Presence { status, .. } => o(status),
            ClientEvent::RosterPush(i) => o(&i.name) + i.subscription.len(),
            ClientEvent::MessageError {
                id,
                condition,
                text,
                ..
            } => o(id) + condition.len() + o(text),
            ClientEvent::Announcement { subject, body } => o(subject) + body.len(),
            ClientEvent::FileOffer { sid, name, .. } => sid.len() + name.len(),
            ClientEvent::FileShared { sid, name, url, .. } => sid.len() + name.len() + url.len(),
            ClientEvent::FileProgress { sid, name, .. } => sid.len() + name.len(),
            ClientEvent::FileReceived(d) => d.sid.len() + d.name.len() + d.sha256.len() + o(&d.url),
            ClientEvent::FileFailed {
                sid, name, reason, ..
            } => sid.len() + name.len() + reason.len(),
            ClientEvent::RoomJoined {
                nick, occupants, ..
            } => nick.len() + occupants.iter().map(String::len).sum::<usize>(),
            ClientEvent::RoomPresence { nick, status, .. } => nick.len() + o(status),
            ClientEvent::RoomMessage {
                nick,
                body,
                id,
                delayed,
                ..
            } => o(nick) + body.len() + o(id) + o(delayed),
            ClientEvent::RoomSubject { nick, subject, .. } => o(nick) + subject.len(),
            ClientEvent::RoomLeft { reason, .. } => o(reason),
            ClientEvent::Disconnected { reason } => o(reason),
            ClientEvent::E2eWarning { text, .. } => text.len(),
            ClientEvent::NotSent { id, reason, .. } => id.len() + reason.len(),
            ClientEvent::Reconnecting { reason } => reason.len(),
            ClientEvent::Resumed { .. }
            | ClientEvent::SubscriptionRequest { .. }
            | ClientEvent::Subscription { .. }
            | ClientEvent::RosterRemoved(_)
            | ClientEvent::StanzaTooLarge { .. }
            | ClientEvent::EventsDropped { .. } => 0,
        }
    }
}

/// How protocol values appear in JSON: JIDs as strings, enumerations as
/// their XMPP names. (`protocol` stays free of serde; these say how the
/// client shows its values.)
pub(crate) mod wire {
    use std::path::PathBuf;

    use protocol::Jid;
    use protocol::stanza::{MessageType, PresenceType, Show};
    use serde::Serializer;
    use serde::ser::SerializeStruct;

    /// A JID as its string form.
    pub(crate) fn jid<S: Serializer>(j: &Jid, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(j)
    }

    /// An optional JID as its string form or `null`.
    pub(crate) fn omemo<S: Serializer>(
        v: &protocol::omemo::Version,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.ns())
    }

    pub(crate) fn opt_jid<S: Serializer>(j: &Option<Jid>, s: S) -> Result<S::Ok, S::Error> {
        match j {
            Some(j) => s.collect_str(j),
            None => s.serialize_none(),
        }
    }

    /// `away`, `dnd`, `xa`, `chat` or `null`.
    pub(crate) fn show<S: Serializer>(v: &Option<Show>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(v.as_str()),
            None => s.serialize_none(),
        }
    }

    /// `chat`, `normal`, `groupchat`...
    pub(crate) fn message_type<S: Serializer>(v: &MessageType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }

    /// `subscribed`, `unsubscribe`...
    pub(crate) fn presence_type<S: Serializer>(v: &PresenceType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }

    /// A path as the user reads it (lossy for names that are not UTF-8).
    pub(crate) fn path<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.collect_str(&p.display()),
            None => s.serialize_none(),
        }
    }

    /// A removed roster item: its JID and the subscription `remove`.
    pub(crate) fn removed_item<S: Serializer>(j: &Jid, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("RosterItem", 2)?;
        st.serialize_field("jid", &j.to_string())?;
        st.serialize_field("subscription", "remove")?;
        st.end()
    }
}

/// Bounds of the queue of events waiting for the front end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLimits {
    /// Events.
    pub count: usize,
    /// Bytes of peer text in them.
    pub bytes: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        EventLimits {
            count: MAX_QUEUED_EVENTS,
            bytes: MAX_QUEUED_EVENT_BYTES,
        }
    }
}

/// What the event queue holds and what it dropped, shared by its senders and
/// its receiver.
#[derive(Debug, Default)]
struct EventMeter {
    bytes: AtomicUsize,
    dropped: AtomicU64,
}

/// The sending side of the bounded event queue (see [`MAX_QUEUED_EVENTS`]):
/// never waits, drops and counts at the bound.
#[derive(Debug, Clone)]
pub(crate) struct EventSender {
    tx: mpsc::Sender<ClientEvent>,
    meter: Arc<EventMeter>,
    max_bytes: usize,
}

impl EventSender {
    /// Queues `ev`, or drops and counts it when the queue is full.
    pub(crate) fn send(&self, ev: ClientEvent) {
        let size = ev.text_bytes();
        let held = self.meter.bytes.fetch_add(size, Ordering::Relaxed);
        if held + size > self.max_bytes {
            self.meter.bytes.fetch_sub(size, Ordering::Relaxed);
            self.meter.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Err(e) = self.tx.try_send(ev) {
            self.meter.bytes.fetch_sub(size, Ordering::Relaxed);
            if matches!(e, mpsc::error::TrySendError::Full(_)) {
                self.meter.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Queues the last event of the connection. It is never dropped: it
    /// waits for room (the front end takes events until this one).
    pub(crate) async fn send_last(self, ev: ClientEvent) {
        let size = ev.text_bytes();
        self.meter.bytes.fetch_add(size, Ordering::Relaxed);
        if self.tx.send(ev).await.is_err() {
            self.meter.bytes.fetch_sub(size, Ordering::Relaxed);
        }
    }

    /// A sender that does not keep the event stream open.
    pub(crate) fn downgrade(&self) -> WeakEventSender {
        WeakEventSender {
            tx: self.tx.downgrade(),
            meter: self.meter.clone(),
            max_bytes: self.max_bytes,
        }
    }
}

/// An [`EventSender`] that does not keep the event stream open.
#[derive(Debug, Clone)]
pub(crate) struct WeakEventSender {
    tx: mpsc::WeakSender<ClientEvent>,
    meter: Arc<EventMeter>,
    max_bytes: usize,
}

impl WeakEventSender {
    /// The sender, while the event stream is open.
    pub(crate) fn upgrade(&self) -> Option<EventSender> {
        Some(EventSender {
            tx: self.tx.upgrade()?,
            meter: self.meter.clone(),
            max_bytes: self.max_bytes,
        })
    }
}

/// The front end's side of the bounded event queue.
#[derive(Debug)]
pub(crate) struct EventReceiver {
    rx: mpsc::Receiver<ClientEvent>,
    meter: Arc<EventMeter>,
}

impl EventReceiver {
    /// The next event; `None` once every sender is gone and every event was
    /// taken.
    pub(crate) async fn recv(&mut self) -> Option<ClientEvent> {
        // Drops are reported once the front end has caught up with what was
        // queued before them: one event for a whole burst.
        let ev = match self.rx.try_recv() {
            Ok(ev) => Some(ev),
            Err(_) => {
                let count = self.meter.dropped.swap(0, Ordering::Relaxed);
                if count > 0 {
                    return Some(ClientEvent::EventsDropped { count });
                }
                self.rx.recv().await
            }
        };
        if let Some(ev) = &ev {
            self.meter
                .bytes
                .fetch_sub(ev.text_bytes(), Ordering::Relaxed);
        }
        ev
    }
}

/// The bounded event queue: a sender for the reader, a receiver for the
/// front end.
pub(crate) fn event_queue(limits: EventLimits) -> (EventSender, EventReceiver) {
    let (tx, rx) = mpsc::channel(limits.count.max(1));
    let meter = Arc::new(EventMeter::default());
    (
        EventSender {
            tx,
            meter: meter.clone(),
            max_bytes: limits.bytes,
        },
        EventReceiver { rx, meter },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_queue_drops_and_counts_at_its_bound() {
        let (tx, mut rx) = event_queue(EventLimits::default());
        for i in 0..MAX_QUEUED_EVENTS + 10 {
            tx.send(ClientEvent::Receipt {
                from: Jid::parse("bob@localhost").unwrap(),
                id: i.to_string(),
            });
        }
        assert_eq!(tx.meter.dropped.load(Ordering::Relaxed), 10);
        let mut n = 0;
        while rx.rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, MAX_QUEUED_EVENTS);
        // A few huge events hit the byte bound long before the count.
        let (tx, _rx) = event_queue(EventLimits::default());
        for _ in 0..200 {
            tx.send(ClientEvent::Announcement {
                subject: None,
                body: "x".repeat(64 * 1024),
            });
        }
        assert!(tx.meter.bytes.load(Ordering::Relaxed) <= MAX_QUEUED_EVENT_BYTES);
        assert!(tx.meter.dropped.load(Ordering::Relaxed) >= 200 - 128);
    }

    #[tokio::test]
    async fn drops_are_reported_once_the_front_end_caught_up() {
        let limits = EventLimits {
            count: 2,
            bytes: MAX_QUEUED_EVENT_BYTES,
        };
        let (tx, mut rx) = event_queue(limits);
        for _ in 0..5 {
            tx.send(ClientEvent::StanzaTooLarge { limit: 1 });
        }
        assert_eq!(rx.recv().await.map(|e| e.kind()), Some("stanza-too-large"));
        assert_eq!(rx.recv().await.map(|e| e.kind()), Some("stanza-too-large"));
        assert_eq!(
            rx.recv().await,
            Some(ClientEvent::EventsDropped { count: 3 })
        );
    }

    /// One event of every kind, for the JSON checks.
    fn every_event() -> Vec<ClientEvent> {
        let bob = Jid::parse("bob@localhost/phone").unwrap();
        let room = Jid::parse("lobby@conference.localhost").unwrap();
        vec![
            ClientEvent::Message {
                from: bob.clone(),
                body: "hi".into(),
                id: Some("m1".into()),
                kind: MessageType::Chat,
                delayed: None,
                e2e: None,
            },
            ClientEvent::Receipt {
                from: bob.clone(),
                id: "m1".into(),
            },
            ClientEvent::Presence {
                from: bob.clone(),
                available: true,
                show: Some(Show::Away),
                status: None,
            },
            ClientEvent::SubscriptionRequest {
                from: bob.to_bare(),
                auto_approved: false,
            },
            ClientEvent::Subscription {
                from: bob.to_bare(),
                kind: PresenceType::Subscribed,
            },
            ClientEvent::RosterPush(RosterItem {
                jid: bob.to_bare(),
                name: None,
                subscription: "both".into(),
                ask: false,
            }),
            ClientEvent::RosterRemoved(bob.to_bare()),
            ClientEvent::MessageError {
                from: None,
                id: None,
                condition: "forbidden".into(),
                text: None,
            },
            ClientEvent::Announcement {
                subject: None,
                body: "b".into(),
            },
            ClientEvent::FileOffer {
                from: bob.clone(),
                sid: "s".into(),
                name: "n".into(),
                size: 1,
            },
            ClientEvent::FileShared {
                from: bob.clone(),
                sid: "f".into(),
                name: "n".into(),
                url: "https://h/n".into(),
            },
            ClientEvent::FileProgress {
                sid: "s".into(),
                name: "n".into(),
                sending: true,
                bytes: 1,
                total: 2,
            },
            ClientEvent::FileReceived(FileDone {
                sid: "s".into(),
                peer: bob.clone(),
                name: "n".into(),
                path: Some(PathBuf::from("downloads/n")),
                size: 1,
                sha256: "00".into(),
                url: None,
            }),
            ClientEvent::FileFailed {
                sid: "s".into(),
                name: "n".into(),
                sending: false,
                reason: "r".into(),
            },
            ClientEvent::RoomJoined {
                room: room.clone(),
                nick: "bob".into(),
                created: true,
                occupants: vec!["bob".into()],
            },
            ClientEvent::RoomPresence {
                room: room.clone(),
                nick: "al".into(),
                joined: true,
                available: true,
                show: None,
                status: None,
            },
            ClientEvent::RoomMessage {
                room: room.clone(),
                nick: None,
                body: "b".into(),
                id: None,
                delayed: Some("2020-01-01T00:00:00Z".into()),
            },
            ClientEvent::RoomSubject {
                room: room.clone(),
                nick: None,
                subject: "s".into(),
            },
            ClientEvent::RoomLeft {
                room,
                destroyed: true,
                reason: Some(String::new()),
            },
            ClientEvent::StanzaTooLarge { limit: 65_536 },
            ClientEvent::EventsDropped { count: 3 },
            ClientEvent::Disconnected { reason: None },
        ]
    }

    #[test]
    fn the_json_type_is_the_kind_and_jids_are_strings() {
        for ev in every_event() {
            let v = serde_json::to_value(&ev).unwrap();
            assert_eq!(v["type"], ev.kind(), "{v}");
            if let Some(from) = ev.from() {
                let shown = ["from", "jid", "room"]
                    .iter()
                    .find_map(|k| v[*k].as_str().map(str::to_string));
                assert_eq!(shown, Some(from.to_string()), "{v}");
            }
        }
    }

    #[test]
    fn json_fields_keep_their_wire_names() {
        let all = every_event();
        let v = |i: usize| serde_json::to_value(&all[i]).unwrap();
        assert_eq!(v(0)["message_type"], "chat");
        assert!(v(0)["delayed"].is_null());
        assert_eq!(v(2)["show"], "away");
        assert_eq!(v(4)["subscription"], "subscribed");
        assert_eq!(
            v(6),
            serde_json::json!({"type": "roster", "jid": "bob@localhost", "subscription": "remove"})
        );
        assert!(v(7)["to"].is_null() && v(7).get("from").is_none());
        assert_eq!(v(10)["url"], "https://h/n");
        assert_eq!(v(12)["from"], "bob@localhost/phone");
        assert_eq!(v(12)["path"], "downloads/n");
        assert!(v(12)["url"].is_null());
        assert_eq!(v(18)["destroyed"], true);
        assert_eq!(v(18)["reason"], "");
    }
}

/// A chat state (XEP-0085 section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatState {
    /// In the conversation.
    Active,
    /// Typing.
    Composing,
    /// Stopped typing.
    Paused,
    /// Not paying attention.
    Inactive,
    /// Left the conversation.
    Gone,
}

impl ChatState {
    /// Every state.
    pub const ALL: [ChatState; 5] = [
        ChatState::Active,
        ChatState::Composing,
        ChatState::Paused,
        ChatState::Inactive,
        ChatState::Gone,
    ];

    /// Its element name.
    pub fn name(self) -> &'static str {
        match self {
            ChatState::Active => "active",
            ChatState::Composing => "composing",
            ChatState::Paused => "paused",
            ChatState::Inactive => "inactive",
            ChatState::Gone => "gone",
        }
    }

    /// The state an element names, if it is one.
    pub fn from_element(el: &protocol::Element) -> Option<ChatState> {
        if el.ns != protocol::ns::CHATSTATES {
            return None;
        }
        ChatState::ALL.into_iter().find(|s| s.name() == el.name)
    }
}
