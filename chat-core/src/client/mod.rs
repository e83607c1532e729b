//! The chat client: a library API used by the CLI, the labs, the tests and
//! the load generator.
//!
//! - [`connect`] negotiates a stream (STARTTLS when the transport can,
//!   in-band registration, SASL, resource binding) and returns a [`Client`].
//! - [`Client`] sends stanzas and iq requests; a reader task turns incoming
//!   stanzas into [`ClientEvent`]s and answers what a client must answer on
//!   its own (pings, receipt requests, roster pushes, unknown iqs).
//! - [`cli`] is the interactive and scripted line client.
//!
//! The server is not trusted to be kind. Every queue and map that peer input
//! can grow is bounded (see the `MAX_*` constants below and the choice each
//! makes at its bound), so that a hostile or broken server cannot exhaust the
//! client's memory with floods of presence, pings or receipt requests, and an
//! oversized stanza is skipped with one error instead of ending the session.

pub mod cli;
pub mod directory;
pub mod files;
pub mod rooms;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use protocol::parser::Event;
use protocol::sasl::{self, Mechanism, ScramClient};
use protocol::stanza::{Iq, IqType, Message, MessageType, Presence, PresenceType, Show};
use protocol::{
    Element, Jid, Limits, StanzaErrorCondition, StreamErrorCondition, StreamHeader, ns, stream,
};
use tokio::io::{AsyncWriteExt, BufWriter, ReadHalf, WriteHalf};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::transport::{BoxStream, ClientTransport, StartTls};
use crate::util::random_id;
use crate::xmpp_io::{ReadError, XmppReader, write_element, write_str};

/// How long to wait for an iq answer before giving up.
pub const IQ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the whole sign-in may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Events waiting for the front end to take them. At the bound, new events
/// are dropped and counted, and the front end gets one
/// [`ClientEvent::EventsDropped`] saying how many once it has caught up.
/// Without a bound, a server flooding presence while the user's terminal is
/// paused (or a script stops reading our stdout) grew the client to 1.25 GB.
/// 4096 is far more than any burst a person reads, and the reader never
/// waits on the front end, so pings and iq answers keep flowing. Dropping,
/// not waiting, is the choice: a stuck front end must not stop the
/// connection.
pub const MAX_QUEUED_EVENTS: usize = 4096;

/// Bytes of peer text (bodies, statuses, names) the waiting events may hold
/// together; beyond it events are dropped as at [`MAX_QUEUED_EVENTS`]. A
/// stanza can carry up to 64 KiB, so the count alone would allow 256 MiB.
pub const MAX_QUEUED_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// Stanzas waiting to be written to the server. A user who sends more than
/// this while the server is not reading gets an error
/// ([`ClientError::Congested`]) instead of an ever-growing queue; the load
/// generator waits for room instead ([`RawSender::send_xml`]).
pub const MAX_QUEUED_STANZAS: usize = 1024;

/// Queued stanzas above which the client stops answering on its own
/// (pongs, receipts, roster push results, error replies, file transfer
/// acknowledgements): those answers are dropped while the queue is this
/// full. Pings or receipt requests sent to a client whose server never
/// reads grew its reply queue to 701 MB; now the answers stop at this many,
/// and the rest of the queue stays free for what the user sends.
pub const MAX_QUEUED_AUTO_REPLIES: usize = MAX_QUEUED_STANZAS / 2;

/// How long a write to the server may make no progress before the client
/// gives up on the connection. A server that takes nothing we send for this
/// long is dead or hostile (it can make us queue forever otherwise); ours
/// pauses a reader for at most 10 s (its `STALL_TIMEOUT`), so 20 s never
/// cuts off a server that is merely busy.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Contacts' online resources remembered (for `/who` and for sending files
/// to a bare JID). At the bound, the resource that has been online longest
/// without news is forgotten. A flood of presence from distinct JIDs grew
/// this map without end; real rosters have hundreds of resources.
pub const MAX_ONLINE_RESOURCES: usize = 4096;

/// Roster items kept from roster pushes. At the bound, pushes of new items
/// are still shown but not kept: the roster is the server's record, so the
/// client does not invent an order to forget in; `/roster` fetches it whole
/// (one stanza, so bounded by the stanza limit).
pub const MAX_ROSTER_ITEMS: usize = 4096;

/// Subscription requests remembered (to approve them on `/add`). At the
/// bound the oldest request is forgotten; the request itself was shown.
pub const MAX_PENDING_REQUESTS: usize = 1024;

/// Longest status or display name the client keeps in its maps, in bytes
/// (events carry the whole text). Without it, each of the thousands of
/// remembered entries could hold a 64 KiB status.
pub const MAX_KEPT_TEXT_BYTES: usize = 1024;

/// `s` cut at [`MAX_KEPT_TEXT_BYTES`] (on a character boundary).
pub(crate) fn kept_text(s: &str) -> String {
    let mut end = s.len().min(MAX_KEPT_TEXT_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Why connecting or a request failed. Each variant says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TCP (or TLS) connection could not be made.
    #[error("cannot connect to {addr}: {source} (is the server running?)")]
    Connect {
        /// Address tried.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The connection broke.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The server closed the stream with an error.
    #[error("the server closed the stream: {condition}{}", text.as_ref().map(|t| format!(" ({t})")).unwrap_or_default())]
    StreamError {
        /// The condition, or `undefined-condition` when unknown.
        condition: String,
        /// The server's explanation.
        text: Option<String>,
    },
    /// The server sent XML we could not parse.
    #[error("the server sent invalid XML: {0}")]
    BadXml(#[from] protocol::ParseError),
    /// Wrong password or unknown user (SASL `not-authorized`).
    #[error("sign-in refused: wrong user name or password")]
    NotAuthorized,
    /// SASL failed for another reason.
    #[error("sign-in failed: {0}")]
    SaslFailure(String),
    /// The server could not prove it knows our SCRAM keys (not the real
    /// server), or sent a bad SCRAM message.
    #[error("sign-in failed: {0}")]
    Scram(#[from] sasl::SaslError),
    /// None of the server's mechanisms is one we accept.
    #[error("the server offers no SASL mechanism we accept (offered: {0})")]
    NoMechanism(String),
    /// Registration refused because the name is taken.
    #[error("registration refused: the user name '{0}' is taken")]
    UsernameTaken(String),
    /// A request was answered with an error.
    #[error("{what} failed: {condition}{}", text.as_ref().map(|t| format!(" ({t})")).unwrap_or_default())]
    Refused {
        /// What was asked.
        what: String,
        /// The stanza error condition.
        condition: String,
        /// The server's explanation.
        text: Option<String>,
    },
    /// No answer in time.
    #[error("{0}: no answer from the server in time")]
    Timeout(String),
    /// The server did not offer STARTTLS and the client requires it: the
    /// defence against STARTTLS stripping.
    #[error(
        "the server did not offer STARTTLS, and this client requires TLS (possible STARTTLS stripping attack)"
    )]
    NoStartTls,
    /// The TLS handshake failed.
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// The server insists on STARTTLS and this client has no TLS.
    #[error("the server requires STARTTLS, and this client cannot encrypt (use chat-tls)")]
    TlsRequired,
    /// The server broke the protocol.
    #[error("protocol error: the server sent {0}")]
    Unexpected(String),
    /// The request cannot be made as asked (not in that room, bad nickname,
    /// unreadable file...); nothing was sent.
    #[error("{0}")]
    Invalid(String),
    /// The queue to the server is full: the server is not reading what we
    /// send. Nothing was sent.
    #[error(
        "not sent: {MAX_QUEUED_STANZAS} stanzas are already waiting because the server is not reading; try again later"
    )]
    Congested,
    /// Longer than the stanza limit the server announced (XEP-0478):
    /// sending it would only get us disconnected. Nothing was sent.
    #[error("not sent: {size} bytes, over the server's {limit}-byte stanza limit")]
    TooLarge {
        /// The stanza's size.
        size: usize,
        /// The server's limit.
        limit: usize,
    },
}

impl From<ReadError> for ClientError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Eof => {
                ClientError::ConnectionLost("the server closed the connection".into())
            }
            ReadError::Io(e) => ClientError::ConnectionLost(e.to_string()),
            ReadError::Parse(p) => ClientError::BadXml(p),
        }
    }
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        ClientError::ConnectionLost(e.to_string())
    }
}

/// What to connect to and how.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `host:port` of the server.
    pub server: String,
    /// The account (a resource in it is requested at bind).
    pub jid: Jid,
    /// The password.
    pub password: String,
    /// Register the account first (XEP-0077).
    pub register: bool,
    /// Use SASL PLAIN even when SCRAM is offered (lab 1 sniffs it).
    pub force_plain: bool,
    /// Which files to accept and where they go.
    pub files: files::FilePolicy,
    /// How many events may wait for the front end before new ones are
    /// dropped: [`MAX_QUEUED_EVENTS`] for people; the load generator, which
    /// must count every message and reads as fast as it can, asks for more
    /// (see [`EventLimits`]).
    pub events: EventLimits,
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

/// A roster item as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterItem {
    /// The contact.
    pub jid: Jid,
    /// Display name.
    pub name: Option<String>,
    /// none, to, from or both.
    pub subscription: String,
    /// We asked to subscribe and wait.
    pub ask: bool,
}

impl RosterItem {
    fn from_element(item: &Element) -> Option<RosterItem> {
        Some(RosterItem {
            jid: Jid::parse(item.get_attr("jid")?).ok()?,
            name: item.get_attr("name").map(str::to_string),
            subscription: item.get_attr("subscription").unwrap_or("none").to_string(),
            ask: item.get_attr("ask") == Some("subscribe"),
        })
    }
}

/// Something that happened, for the user to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A message with a body.
    Message {
        /// Sender.
        from: Jid,
        /// Text.
        body: String,
        /// Message id.
        id: Option<String>,
        /// chat, normal, headline...
        kind: MessageType,
        /// When it was sent, if it was stored offline (XEP-0203).
        delayed: Option<String>,
    },
    /// A delivery receipt (XEP-0184).
    Receipt {
        /// Who received it.
        from: Jid,
        /// The id of our message.
        id: String,
    },
    /// A contact's availability changed.
    Presence {
        /// The contact's full JID.
        from: Jid,
        /// Online or not.
        available: bool,
        /// away, dnd, xa, chat.
        show: Option<Show>,
        /// Status message.
        status: Option<String>,
    },
    /// Someone asks to see our presence.
    SubscriptionRequest {
        /// Who asks.
        from: Jid,
        /// We had already added them, so the client approved at once.
        auto_approved: bool,
    },
    /// A subscription answer or cancellation.
    Subscription {
        /// From whom.
        from: Jid,
        /// subscribed, unsubscribe or unsubscribed.
        kind: PresenceType,
    },
    /// The server changed our roster.
    RosterPush(RosterItem),
    /// A roster item was removed.
    RosterRemoved(Jid),
    /// A message came back with an error.
    MessageError {
        /// The address it was sent to.
        from: Option<Jid>,
        /// Our message id.
        id: Option<String>,
        /// The condition.
        condition: String,
        /// The server's text.
        text: Option<String>,
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
        from: Jid,
        /// The stream id, for `/accept SID` and `/reject SID`.
        sid: String,
        /// The file name (made safe).
        name: String,
        /// Announced size.
        size: u64,
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
    FileReceived(files::FileDone),
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
        room: Jid,
        /// Their nickname.
        nick: String,
        /// They just arrived.
        joined: bool,
        /// Still there.
        available: bool,
        /// away, dnd, xa, chat.
        show: Option<Show>,
        /// Status message.
        status: Option<String>,
    },
    /// A message to a room (live, or history with a delay stamp).
    RoomMessage {
        /// The room.
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
        room: Jid,
        /// Who set it.
        nick: Option<String>,
        /// The subject, empty when none.
        subject: String,
    },
    /// We left a room (or were removed from it).
    RoomLeft {
        /// The room.
        room: Jid,
        /// Set when the owner destroyed the room: the reason they gave
        /// (XEP-0045 10.9), possibly empty.
        destroyed: Option<String>,
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
            ClientEvent::FileOffer { .. } => "file-offer",
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
            ClientEvent::FileOffer { from, .. } => Some(from),
            ClientEvent::FileReceived(d) => Some(&d.peer),
            ClientEvent::Announcement { .. }
            | ClientEvent::FileProgress { .. }
            | ClientEvent::FileFailed { .. }
            | ClientEvent::StanzaTooLarge { .. }
            | ClientEvent::EventsDropped { .. }
            | ClientEvent::Disconnected { .. } => None,
        }
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
            ClientEvent::FileProgress { sid, name, .. } => sid.len() + name.len(),
            ClientEvent::FileReceived(d) => d.sid.len() + d.name.len() + d.sha256.len(),
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
            ClientEvent::Disconnected { reason } => o(reason),
            ClientEvent::SubscriptionRequest { .. }
            | ClientEvent::Subscription { .. }
            | ClientEvent::RosterRemoved(_)
            | ClientEvent::RoomLeft { .. }
            | ClientEvent::StanzaTooLarge { .. }
            | ClientEvent::EventsDropped { .. } => 0,
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

    fn downgrade(&self) -> WeakEventSender {
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
    pub(crate) fn upgrade(&self) -> Option<EventSender> {
        Some(EventSender {
            tx: self.tx.upgrade()?,
            meter: self.meter.clone(),
            max_bytes: self.max_bytes,
        })
    }
}

/// The bounded event queue: a sender for the reader, a receiver for the
/// front end.
fn event_queue(limits: EventLimits) -> (EventSender, mpsc::Receiver<ClientEvent>, Arc<EventMeter>) {
    let (tx, rx) = mpsc::channel(limits.count.max(1));
    let meter = Arc::new(EventMeter::default());
    (
        EventSender {
            tx,
            meter: meter.clone(),
            max_bytes: limits.bytes,
        },
        rx,
        meter,
    )
}

/// Queues an answer the client sends on its own (a pong, a receipt, an
/// acknowledgement), unless [`MAX_QUEUED_AUTO_REPLIES`] stanzas already
/// wait: then the answer is dropped. Returns whether it was queued.
pub(crate) fn auto_reply(out: &mpsc::Sender<String>, xml: String) -> bool {
    let queued = out.max_capacity() - out.capacity();
    if queued >= MAX_QUEUED_AUTO_REPLIES {
        return false;
    }
    out.try_send(xml).is_ok()
}

/// Contacts' online resources, forgetting the one longest without news at
/// [`MAX_ONLINE_RESOURCES`].
#[derive(Debug, Default)]
struct Online {
    /// Full JID → (when last heard of, show, status).
    by_jid: HashMap<Jid, (u64, Option<Show>, Option<String>)>,
    /// When last heard of → full JID: the oldest first.
    by_age: BTreeMap<u64, Jid>,
    clock: u64,
}

impl Online {
    fn insert(&mut self, jid: Jid, show: Option<Show>, status: Option<&str>) {
        self.clock += 1;
        let status = status.map(kept_text);
        if let Some((old, _, _)) = self.by_jid.insert(jid.clone(), (self.clock, show, status)) {
            self.by_age.remove(&old);
        }
        self.by_age.insert(self.clock, jid);
        while self.by_jid.len() > MAX_ONLINE_RESOURCES {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            self.by_jid.remove(&oldest);
        }
    }

    fn remove(&mut self, jid: &Jid) {
        if let Some((at, _, _)) = self.by_jid.remove(jid) {
            self.by_age.remove(&at);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_jid.len()
    }

    fn keys(&self) -> impl Iterator<Item = &Jid> {
        self.by_jid.keys()
    }

    fn iter(&self) -> impl Iterator<Item = (&Jid, Option<Show>, Option<&String>)> {
        self.by_jid
            .iter()
            .map(|(j, (_, show, status))| (j, *show, status.as_ref()))
    }
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Element>>>>;

/// What the reader task learns that the API needs.
#[derive(Debug, Default)]
struct State {
    roster: HashMap<Jid, RosterItem>,
    /// Available resources of contacts, with show and status.
    online: Online,
    /// Subscription requests not yet answered.
    requests: Vec<Jid>,
    /// The condition of the stream error that ended the connection.
    stream_error: Option<String>,
    /// Rooms joined or being joined, by room JID.
    rooms: HashMap<Jid, rooms::RoomState>,
    /// File offers and transfers in progress.
    files: files::Files,
}

/// A signed-in client.
pub struct Client {
    jid: Jid,
    mechanism: Mechanism,
    secure: bool,
    /// The server's stanza limit: nothing larger is sent.
    max_stanza: usize,
    out: mpsc::Sender<String>,
    pending: Pending,
    state: Arc<Mutex<State>>,
    events: mpsc::Receiver<ClientEvent>,
    /// What the event queue holds and dropped.
    meter: Arc<EventMeter>,
    /// For events that API calls produce (file progress); weak, so the
    /// event stream still ends when the reader does.
    events_tx: WeakEventSender,
    writer: tokio::task::JoinHandle<()>,
    closed: Option<oneshot::Receiver<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The result of stream negotiation.
struct Negotiated {
    stream: BoxStream,
    reader: XmppReader,
    jid: Jid,
    mechanism: Mechanism,
    secure: bool,
    /// The largest stanza the server accepts (see [`server_limit`]).
    max_stanza: usize,
}

/// The stanza limit a server announces in its features (XEP-0478), or our
/// own parser's limit when it announces none (RFC 6120 13.12 asks servers
/// for at least 10,000 bytes; ours and most accept 64 KiB or more). A
/// client that knows the limit refuses an oversized stanza itself, with a
/// clear error, instead of being disconnected for it by the server.
fn server_limit(features: &Element) -> usize {
    features
        .get_child("limits", ns::STREAM_LIMITS)
        .and_then(|l| l.child_text("max-bytes", ns::STREAM_LIMITS))
        .and_then(|m| m.trim().parse::<usize>().ok())
        .filter(|m| *m >= 1024)
        .unwrap_or(protocol::limits::MAX_STANZA_BYTES)
}

/// Connects, optionally registers, signs in and binds a resource.
pub async fn connect<T: ClientTransport>(
    transport: &T,
    opts: &ConnectOptions,
) -> Result<Client, ClientError> {
    let n = tokio::time::timeout(CONNECT_TIMEOUT, negotiate(transport, opts))
        .await
        .map_err(|_| ClientError::Timeout("signing in".into()))??;
    let client = Client::start(n, opts.events);
    client.set_file_policy(opts.files.clone());
    Ok(client)
}

async fn read_features(
    stream: &mut BoxStream,
    reader: &mut XmppReader,
) -> Result<Element, ClientError> {
    match reader.next(stream).await? {
        Event::StreamOpen(_) => {}
        other => {
            return Err(ClientError::Unexpected(format!(
                "{other:?} instead of a stream header"
            )));
        }
    }
    let el = next_element(stream, reader).await?;
    if !el.is("features", ns::STREAM) {
        return Err(ClientError::Unexpected(format!(
            "<{}> instead of stream features",
            el.name
        )));
    }
    Ok(el)
}

/// The next element; a stream error becomes [`ClientError::StreamError`].
async fn next_element(
    stream: &mut BoxStream,
    reader: &mut XmppReader,
) -> Result<Element, ClientError> {
    match reader.next_element(stream).await? {
        Some(el) if el.is("error", ns::STREAM) => {
            let (cond, text) = StreamErrorCondition::from_error_element(&el);
            Err(ClientError::StreamError {
                condition: cond.map_or("undefined-condition".into(), |c| c.to_string()),
                text,
            })
        }
        Some(el) => Ok(el),
        None => Err(ClientError::ConnectionLost(
            "the server closed the stream".into(),
        )),
    }
}

async fn negotiate<T: ClientTransport>(
    transport: &T,
    opts: &ConnectOptions,
) -> Result<Negotiated, ClientError> {
    let domain = opts.jid.domain().to_string();
    let (mut stream, mut secure) =
        transport
            .connect(&opts.server, &domain)
            .await
            .map_err(|source| {
                // The transport marks TLS handshake failures as InvalidData.
                if source.kind() == std::io::ErrorKind::InvalidData {
                    ClientError::Tls(source.to_string())
                } else {
                    ClientError::Connect {
                        addr: opts.server.clone(),
                        source,
                    }
                }
            })?;
    let mut reader = XmppReader::new(Limits::default());
    let mut registered = !opts.register;
    let mut mechanism = None;
    let username = opts.jid.local().unwrap_or_default().to_string();
    loop {
        write_str(&mut stream, &StreamHeader::client_to(&domain).to_xml()).await?;
        let features = read_features(&mut stream, &mut reader).await?;
        if !secure {
            let offered = features.has_child("starttls", ns::TLS);
            match (transport.starttls(), offered) {
                (StartTls::Required | StartTls::Optional, true) => {
                    write_element(&mut stream, &Element::new("starttls", ns::TLS)).await?;
                    let answer = next_element(&mut stream, &mut reader).await?;
                    if !answer.is("proceed", ns::TLS) {
                        return Err(ClientError::Tls("the server refused STARTTLS".into()));
                    }
                    // Whatever arrived after <proceed/> was not protected by
                    // TLS: drop it (STARTTLS command injection, CVE-2011-0411).
                    reader.reset_discarding();
                    let plain = std::mem::replace(&mut stream, Box::new(tokio::io::duplex(1).0));
                    stream = transport
                        .upgrade(plain, &domain)
                        .await
                        .map_err(|e| ClientError::Tls(e.to_string()))?;
                    secure = true;
                    continue;
                }
                (StartTls::Required, false) => return Err(ClientError::NoStartTls),
                (StartTls::Unavailable, true)
                    if features
                        .get_child("starttls", ns::TLS)
                        .is_some_and(|t| t.has_child("required", ns::TLS)) =>
                {
                    return Err(ClientError::TlsRequired);
                }
                _ => {}
            }
        }
        if mechanism.is_none() {
            if !registered {
                register(&mut stream, &mut reader, &username, &opts.password).await?;
                registered = true;
            }
            let offered: Vec<String> = features
                .get_child("mechanisms", ns::SASL)
                .map(|m| m.elements().map(Element::text_content).collect())
                .unwrap_or_default();
            let mech = choose_mechanism(&offered, opts.force_plain)
                .ok_or_else(|| ClientError::NoMechanism(offered.join(", ")))?;
            authenticate(&mut stream, &mut reader, mech, &username, &opts.password).await?;
            mechanism = Some(mech);
            reader.reset();
            continue;
        }
        if !features.has_child("bind", ns::BIND) {
            return Err(ClientError::Unexpected(
                "stream features without <bind/>".into(),
            ));
        }
        let jid = bind(&mut stream, &mut reader, opts.jid.resource()).await?;
        let max_stanza = server_limit(&features);
        let session = features.get_child("session", ns::SESSION);
        if session.is_some_and(|s| !s.has_child("optional", ns::SESSION)) {
            let iq = Iq::request(
                IqType::Set,
                random_id(4),
                None,
                Element::new("session", ns::SESSION),
            );
            write_element(&mut stream, &iq.to_element()).await?;
            let _ = next_element(&mut stream, &mut reader).await?;
        }
        return Ok(Negotiated {
            stream,
            reader,
            jid,
            mechanism: mechanism.unwrap_or(Mechanism::Plain),
            secure,
            max_stanza,
        });
    }
}

fn choose_mechanism(offered: &[String], force_plain: bool) -> Option<Mechanism> {
    if force_plain {
        return offered
            .iter()
            .any(|m| m == "PLAIN")
            .then_some(Mechanism::Plain);
    }
    Mechanism::ALL
        .into_iter()
        .find(|m| offered.iter().any(|o| o == m.name()))
}

async fn register(
    stream: &mut BoxStream,
    reader: &mut XmppReader,
    username: &str,
    password: &str,
) -> Result<(), ClientError> {
    let q = Element::new("query", ns::REGISTER)
        .text_child("username", ns::REGISTER, username)
        .text_child("password", ns::REGISTER, password);
    let iq = Iq::request(IqType::Set, format!("reg-{}", random_id(4)), None, q);
    write_element(stream, &iq.to_element()).await?;
    let answer = Iq::from_element(&next_element(stream, reader).await?)
        .map_err(|e| ClientError::Unexpected(e.to_string()))?;
    match answer.kind {
        IqType::Result => Ok(()),
        _ => match answer.error_condition() {
            Some(StanzaErrorCondition::Conflict) => {
                Err(ClientError::UsernameTaken(username.to_string()))
            }
            c => Err(ClientError::Refused {
                what: "registration".into(),
                condition: c.map_or("undefined-condition".into(), |c| c.to_string()),
                text: answer.error.as_ref().and_then(protocol::error::error_text),
            }),
        },
    }
}

async fn authenticate(
    stream: &mut BoxStream,
    reader: &mut XmppReader,
    mech: Mechanism,
    username: &str,
    password: &str,
) -> Result<(), ClientError> {
    let auth = |payload: &[u8]| {
        Element::new("auth", ns::SASL)
            .attr("mechanism", mech.name())
            .text(B64.encode(payload))
    };
    let mut scram = mech
        .scram_hash()
        .map(|h| ScramClient::new(h, username, password));
    let initial = match &scram {
        // Deliberately weak when the stream is not encrypted: PLAIN puts the
        // password on the wire in base64, which anyone can decode.
        None => sasl::plain_message(username, password),
        Some(s) => s.client_first().into_bytes(),
    };
    write_element(stream, &auth(&initial)).await?;
    loop {
        let el = next_element(stream, reader).await?;
        let data = B64.decode(el.text_content().trim()).unwrap_or_default();
        if el.is("challenge", ns::SASL) {
            let Some(s) = scram.as_mut() else {
                return Err(ClientError::Unexpected("a challenge for PLAIN".into()));
            };
            let reply = s.handle_server_first(&data)?;
            let resp = Element::new("response", ns::SASL).text(B64.encode(reply));
            write_element(stream, &resp).await?;
        } else if el.is("success", ns::SASL) {
            if let Some(s) = scram.as_mut() {
                // Mutual authentication: the server proves it knows our keys.
                s.verify_server_final(&data)?;
            }
            return Ok(());
        } else if el.is("failure", ns::SASL) {
            let cond = el
                .elements()
                .find(|c| c.name != "text")
                .map(|c| c.name.clone())
                .unwrap_or_default();
            if cond == "not-authorized" {
                return Err(ClientError::NotAuthorized);
            }
            let text = el.child_text("text", ns::SASL).unwrap_or_default();
            return Err(ClientError::SaslFailure(
                format!("{cond} {text}").trim().to_string(),
            ));
        } else {
            return Err(ClientError::Unexpected(format!(
                "<{}> during SASL",
                el.name
            )));
        }
    }
}

async fn bind(
    stream: &mut BoxStream,
    reader: &mut XmppReader,
    resource: Option<&str>,
) -> Result<Jid, ClientError> {
    let mut b = Element::new("bind", ns::BIND);
    if let Some(r) = resource {
        b = b.text_child("resource", ns::BIND, r);
    }
    let iq = Iq::request(IqType::Set, format!("bind-{}", random_id(4)), None, b);
    write_element(stream, &iq.to_element()).await?;
    let el = next_element(stream, reader).await?;
    el.get_child("bind", ns::BIND)
        .and_then(|b| b.child_text("jid", ns::BIND))
        .and_then(|j| Jid::parse(&j).ok())
        .ok_or_else(|| ClientError::Unexpected("a bind answer without a JID".into()))
}

/// Sends serialized stanzas on a client's connection from any task (the
/// load generator's senders); cheap to clone.
#[derive(Clone)]
pub struct RawSender(mpsc::Sender<String>);

impl RawSender {
    /// Queues one serialized stanza, waiting while the queue to the server
    /// is full (a load generator measures the server, so it waits for it).
    pub async fn send_xml(&self, xml: String) -> Result<(), ClientError> {
        self.0
            .send(xml)
            .await
            .map_err(|_| ClientError::ConnectionLost("the connection is closed".into()))
    }
}

/// Queues a stanza the user asked for: [`ClientError::Congested`] when the
/// queue is full.
fn queue(out: &mpsc::Sender<String>, xml: String, limit: usize) -> Result<(), ClientError> {
    if xml.len() > limit {
        return Err(ClientError::TooLarge {
            size: xml.len(),
            limit,
        });
    }
    out.try_send(xml).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => ClientError::Congested,
        mpsc::error::TrySendError::Closed(_) => {
            ClientError::ConnectionLost("the connection is closed".into())
        }
    })
}

/// Sends iq requests and matches their answers; cheap to clone.
#[derive(Clone)]
pub(crate) struct IqSender {
    out: mpsc::Sender<String>,
    pending: Pending,
    max_stanza: usize,
}

/// Most pages one list request follows (XEP-0059), and so at most
/// `MAX_PAGES * rsm::MAX_PAGE_ITEMS` items: a server that pages forever
/// cannot grow the client without bound.
pub const MAX_PAGES: usize = 100;

impl IqSender {
    /// Gets a whole list a page at a time (Result Set Management,
    /// XEP-0059): `query` is asked for again with `<after/>` the last key
    /// of each page, until a page comes back empty, without a `<last/>`, or
    /// the count the server gave is reached. Returns the items (every child
    /// of the answers' queries but `<set/>`) and the count, if given. A
    /// server without paging answers once, with everything.
    pub(crate) fn iq_pages(
        &self,
        kind: IqType,
        to: Option<Jid>,
        query: Element,
        what: &str,
    ) -> impl Future<Output = Result<(Vec<Element>, Option<usize>), ClientError>> + Send + 'static + use<>
    {
        let this = self.clone();
        let what = what.to_string();
        async move {
            let mut items = Vec::new();
            let mut count = None;
            let mut after: Option<String> = None;
            for _ in 0..MAX_PAGES {
                let mut q = query.clone();
                if let Some(a) = &after {
                    q = q.child(
                        Element::new("set", ns::RSM)
                            .text_child("max", ns::RSM, protocol::rsm::MAX_PAGE_ITEMS.to_string())
                            .text_child("after", ns::RSM, a.clone()),
                    );
                }
                let iq = this.iq(kind, to.clone(), q, &what).await?;
                let Some(page) = iq.payload else { break };
                let (last, total) = protocol::rsm::parse_reply(&page);
                count = total.or(count);
                let before = items.len();
                items.extend(page.elements().filter(|e| !e.is("set", ns::RSM)).cloned());
                let done = items.len() == before
                    || last.is_none()
                    || last == after
                    || count.is_some_and(|c| items.len() >= c);
                if done {
                    break;
                }
                after = last;
            }
            Ok((items, count))
        }
    }

    /// See [`Client::iq`].
    pub(crate) fn iq(
        &self,
        kind: IqType,
        to: Option<Jid>,
        payload: Element,
        what: &str,
    ) -> impl Future<Output = Result<Iq, ClientError>> + Send + 'static + use<> {
        self.iq_timeout(kind, to, payload, what, IQ_TIMEOUT)
    }

    /// [`IqSender::iq`] with its own time limit.
    pub(crate) fn iq_timeout(
        &self,
        kind: IqType,
        to: Option<Jid>,
        payload: Element,
        what: &str,
        limit: Duration,
    ) -> impl Future<Output = Result<Iq, ClientError>> + Send + 'static + use<> {
        let id = format!("{}-{}", payload.name, random_id(4));
        let iq = Iq::request(kind, id.clone(), to, payload);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id.clone(), tx);
        let sent = queue(&self.out, iq.to_element().to_xml(), self.max_stanza);
        let pending = self.pending.clone();
        let what = what.to_string();
        async move {
            sent?;
            let answer = tokio::time::timeout(limit, rx).await;
            lock(&pending).remove(&id);
            let el = match answer {
                Ok(Ok(el)) => el,
                Ok(Err(_)) => {
                    return Err(ClientError::ConnectionLost("the connection closed".into()));
                }
                Err(_) => return Err(ClientError::Timeout(what)),
            };
            let iq = Iq::from_element(&el).map_err(|e| ClientError::Unexpected(e.to_string()))?;
            if iq.kind == IqType::Error {
                return Err(ClientError::Refused {
                    what,
                    condition: iq
                        .error_condition()
                        .map_or("undefined-condition".into(), |c| c.to_string()),
                    text: iq.error.as_ref().and_then(protocol::error::error_text),
                });
            }
            Ok(iq)
        }
    }
}

impl Client {
    fn start(n: Negotiated, events: EventLimits) -> Client {
        let (rd, wr) = tokio::io::split(n.stream);
        let (out_tx, out_rx) = mpsc::channel(MAX_QUEUED_STANZAS);
        let (ev_tx, ev_rx, meter) = event_queue(events);
        let (closed_tx, closed_rx) = oneshot::channel();
        let pending: Pending = Arc::default();
        let state: Arc<Mutex<State>> = Arc::default();
        let stalled = Arc::new(Notify::new());
        let writer = tokio::spawn(client_writer(wr, out_rx, stalled.clone()));
        let events_tx = ev_tx.downgrade();
        let mut reader = n.reader;
        // Signed in: from now on one oversized stanza is skipped, not fatal.
        reader.skip_oversized();
        tokio::spawn(client_reader(
            rd,
            reader,
            n.jid.clone(),
            Outputs {
                out: out_tx.clone(),
                events: ev_tx,
                stalled,
            },
            pending.clone(),
            state.clone(),
            closed_tx,
        ));
        Client {
            jid: n.jid,
            mechanism: n.mechanism,
            secure: n.secure,
            max_stanza: n.max_stanza,
            out: out_tx,
            pending,
            state,
            events: ev_rx,
            meter,
            events_tx,
            writer,
            closed: Some(closed_rx),
        }
    }

    /// The bound full JID.
    pub fn jid(&self) -> &Jid {
        &self.jid
    }

    /// The SASL mechanism used to sign in.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Whether the stream is encrypted.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// Sends a stanza.
    pub fn send(&self, el: &Element) -> Result<(), ClientError> {
        queue(&self.out, el.to_xml(), self.max_stanza)
    }

    /// Sends an iq request and waits for its answer. An error answer becomes
    /// [`ClientError::Refused`] naming `what`.
    pub fn iq(
        &self,
        kind: IqType,
        to: Option<Jid>,
        payload: Element,
        what: &str,
    ) -> impl Future<Output = Result<Iq, ClientError>> + Send + 'static {
        self.iq_sender().iq(kind, to, payload, what)
    }

    /// A handle that sends stanzas from another task.
    pub fn raw_sender(&self) -> RawSender {
        RawSender(self.out.clone())
    }

    /// A handle that sends iq requests from inside a spawned future, after
    /// the `&self` borrow has ended.
    pub(crate) fn iq_sender(&self) -> IqSender {
        IqSender {
            out: self.out.clone(),
            pending: self.pending.clone(),
            max_stanza: self.max_stanza,
        }
    }

    /// Sends a chat message asking for a delivery receipt; returns its id.
    pub fn send_message(&self, to: &Jid, body: &str) -> Result<String, ClientError> {
        let id = format!("m-{}", random_id(6));
        let mut m = Message::chat(to.clone(), body);
        m.id = Some(id.clone());
        m.payloads.push(Element::new("request", ns::RECEIPTS));
        self.send(&m.to_element())?;
        Ok(id)
    }

    /// Sets our presence (available, with optional show and status).
    pub fn set_presence(
        &self,
        show: Option<Show>,
        status: Option<&str>,
    ) -> Result<(), ClientError> {
        let mut p = Presence::new(PresenceType::Available);
        p.show = show;
        p.status = status.map(str::to_string);
        self.send(&p.to_element())
    }

    fn send_subscription(&self, to: &Jid, kind: PresenceType) -> Result<(), ClientError> {
        let mut p = Presence::new(kind);
        p.to = Some(to.to_bare());
        self.send(&p.to_element())
    }

    /// Fetches the roster.
    pub fn roster(
        &self,
    ) -> impl Future<Output = Result<Vec<RosterItem>, ClientError>> + Send + 'static {
        let fut = self.iq(
            IqType::Get,
            None,
            Element::new("query", ns::ROSTER),
            "roster request",
        );
        let state = self.state.clone();
        async move {
            let iq = fut.await?;
            let items: Vec<RosterItem> = iq
                .payload
                .iter()
                .flat_map(|q| q.elements())
                .filter_map(RosterItem::from_element)
                .collect();
            let mut st = lock(&state);
            st.roster = items.iter().map(|i| (i.jid.clone(), i.clone())).collect();
            Ok(items)
        }
    }

    /// Adds a contact: roster item, subscription request, and approval of
    /// their request if they already asked (so two users who add each other
    /// end up with a mutual subscription).
    pub fn add_contact(
        &self,
        jid: &Jid,
    ) -> impl Future<Output = Result<(), ClientError>> + Send + 'static {
        let bare = jid.to_bare();
        let item = Element::new("item", ns::ROSTER).attr("jid", bare.to_string());
        let fut = self.iq(
            IqType::Set,
            None,
            Element::new("query", ns::ROSTER).child(item),
            "adding a contact",
        );
        let sub = self.send_subscription(&bare, PresenceType::Subscribe);
        let asked = {
            let mut st = lock(&self.state);
            let asked = st.requests.contains(&bare);
            st.requests.retain(|r| r != &bare);
            st.roster.entry(bare.clone()).or_insert(RosterItem {
                jid: bare.clone(),
                name: None,
                subscription: "none".into(),
                ask: true,
            });
            asked
        };
        let approve = if asked {
            self.send_subscription(&bare, PresenceType::Subscribed)
        } else {
            Ok(())
        };
        async move {
            sub?;
            approve?;
            fut.await.map(|_| ())
        }
    }

    /// Removes a contact (and both subscriptions).
    pub fn remove_contact(
        &self,
        jid: &Jid,
    ) -> impl Future<Output = Result<(), ClientError>> + Send + 'static {
        let item = Element::new("item", ns::ROSTER)
            .attr("jid", jid.to_bare().to_string())
            .attr("subscription", "remove");
        lock(&self.state).roster.remove(&jid.to_bare());
        let fut = self.iq(
            IqType::Set,
            None,
            Element::new("query", ns::ROSTER).child(item),
            "removing a contact",
        );
        async move { fut.await.map(|_| ()) }
    }

    /// Deletes the account on the server (XEP-0077 remove).
    pub fn unregister(&self) -> impl Future<Output = Result<(), ClientError>> + Send + 'static {
        let q = Element::new("query", ns::REGISTER).child(Element::new("remove", ns::REGISTER));
        let fut = self.iq(IqType::Set, None, q, "deleting the account");
        let state = self.state.clone();
        async move {
            match fut.await {
                Ok(_) => Ok(()),
                // XEP-0077 §3.2 lets the server answer a removal by closing
                // the stream with not-authorized (Prosody does) instead of,
                // or before, the iq result.
                Err(ClientError::ConnectionLost(_))
                    if lock(&state).stream_error.as_deref() == Some("not-authorized") =>
                {
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
    }

    /// Contacts' resources currently online, with show and status.
    pub fn online_contacts(&self) -> Vec<(Jid, Option<Show>, Option<String>)> {
        let st = lock(&self.state);
        let mut v: Vec<_> = st
            .online
            .iter()
            .map(|(j, s, t)| (j.clone(), s, t.cloned()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The next event; `None` once the connection is gone and every event
    /// was taken.
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        // Drops are reported once the front end has caught up with what was
        // queued before them: one event for a whole burst.
        let ev = match self.events.try_recv() {
            Ok(ev) => Some(ev),
            Err(_) => {
                let count = self.meter.dropped.swap(0, Ordering::Relaxed);
                if count > 0 {
                    return Some(ClientEvent::EventsDropped { count });
                }
                self.events.recv().await
            }
        };
        if let Some(ev) = &ev {
            self.meter
                .bytes
                .fetch_sub(ev.text_bytes(), Ordering::Relaxed);
        }
        ev
    }

    /// Sends unavailable presence and closes our side of the stream. Events
    /// keep arriving until the server closes its side
    /// ([`ClientEvent::Disconnected`]).
    pub fn start_close(&self) {
        let _ = self.send(&Presence::new(PresenceType::Unavailable).to_element());
        let _ = self.out.try_send(stream::CLOSE.to_string());
    }

    /// Signs out: unavailable presence, close the stream, and wait (bounded)
    /// for the server to close its side, which means it has handled every
    /// stanza we sent.
    pub async fn close(mut self) {
        self.start_close();
        if let Some(closed) = self.closed.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), closed).await;
        }
        drop(self.out);
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.writer).await;
    }
}

/// Writes queued stanzas. A write that makes no progress for
/// [`WRITE_STALL_TIMEOUT`] wakes `stalled`: the reader then ends the
/// connection with an error saying the server does not read.
async fn client_writer(
    wr: WriteHalf<BoxStream>,
    mut rx: mpsc::Receiver<String>,
    stalled: Arc<Notify>,
) {
    let mut w = BufWriter::new(wr);
    while let Some(xml) = rx.recv().await {
        match tokio::time::timeout(WRITE_STALL_TIMEOUT, w.write_all(xml.as_bytes())).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                stalled.notify_one();
                return;
            }
        }
        if xml == stream::CLOSE {
            // Nothing may follow the end of the stream (RFC 6120 4.4): an
            // automatic answer (a receipt, a pong) queued after it is
            // dropped, not sent into a closed stream.
            break;
        }
        if rx.is_empty() {
            match tokio::time::timeout(WRITE_STALL_TIMEOUT, w.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    stalled.notify_one();
                    return;
                }
            }
        }
    }
    let _ = w.flush().await;
    let _ = w.shutdown().await;
}

/// Where the reader sends what it produces.
struct Outputs {
    /// Stanzas to the server.
    out: mpsc::Sender<String>,
    /// Events to the front end.
    events: EventSender,
    /// Woken by the writer when the server stopped reading.
    stalled: Arc<Notify>,
}

async fn client_reader(
    mut rd: ReadHalf<BoxStream>,
    mut reader: XmppReader,
    me: Jid,
    outputs: Outputs,
    pending: Pending,
    state: Arc<Mutex<State>>,
    closed: oneshot::Sender<()>,
) {
    let Outputs {
        out,
        events,
        stalled,
    } = outputs;
    let reason = loop {
        let next = tokio::select! {
            next = reader.next(&mut rd) => next,
            _ = stalled.notified() => break Some(format!(
                "the server has not read anything we sent for {} seconds; disconnected",
                WRITE_STALL_TIMEOUT.as_secs()
            )),
        };
        let el = match next {
            Ok(Event::Element(el)) => el,
            Ok(Event::StreamClose) => break None,
            Ok(Event::StreamOpen(_)) => break Some("the server restarted the stream".to_string()),
            Err(ReadError::Eof) => break Some("the server closed the connection".to_string()),
            Err(ReadError::Parse(protocol::ParseError::TooLarge { limit }))
                if reader.can_go_on() =>
            {
                // A hostile or broken server cannot end our session with one
                // huge stanza: it was skipped, unread, and we go on.
                events.send(ClientEvent::StanzaTooLarge { limit });
                continue;
            }
            Err(e) => break Some(e.to_string()),
        };
        if el.is("error", ns::STREAM) {
            let (cond, text) = StreamErrorCondition::from_error_element(&el);
            let c = cond.map_or("undefined-condition".to_string(), |c| c.to_string());
            // Recorded before the pending requests fail (below), so they can
            // look at it.
            lock(&state).stream_error = Some(c.clone());
            break Some(match text {
                Some(t) => format!("stream error {c}: {t}"),
                None => format!("stream error {c}"),
            });
        }
        handle_incoming(&el, &me, &out, &events, &pending, &state);
    };
    lock(&pending).clear();
    // Pending joins fail with the connection.
    lock(&state).rooms.clear();
    let _ = closed.send(());
    // The last event is never dropped: it waits for room (the front end
    // takes events until this one).
    let size = reason.as_ref().map_or(0, String::len);
    events.meter.bytes.fetch_add(size, Ordering::Relaxed);
    if events
        .tx
        .send(ClientEvent::Disconnected { reason })
        .await
        .is_err()
    {
        events.meter.bytes.fetch_sub(size, Ordering::Relaxed);
    }
}

fn handle_incoming(
    el: &Element,
    me: &Jid,
    out: &mpsc::Sender<String>,
    events: &EventSender,
    pending: &Pending,
    state: &Arc<Mutex<State>>,
) {
    let emit = |e| events.send(e);
    let from_room = el
        .get_attr("from")
        .and_then(|f| Jid::parse(f).ok())
        .is_some_and(|f| f.domain() == rooms::muc_domain(me) && f.local().is_some());
    if from_room && rooms::handle_room_stanza(el, state, events) {
        return;
    }
    match el.name.as_str() {
        "iq" => {
            let Ok(iq) = Iq::from_element(el) else {
                return;
            };
            if matches!(iq.kind, IqType::Result | IqType::Error) {
                if let Some(tx) = lock(pending).remove(&iq.id) {
                    let _ = tx.send(el.clone());
                }
                return;
            }
            if files::handle_file_iq(&iq, state, out, events) {
                return;
            }
            // Only our server may push roster changes (RFC 6121 2.1.6):
            // otherwise anyone could rewrite our contact list.
            let from_server = iq.from.as_ref().is_none_or(|f| {
                f == &me.to_bare() || f.domain() == me.domain() && f.local().is_none()
            });
            let payload = iq
                .payload
                .clone()
                .unwrap_or_else(|| Element::new("none", ""));
            let reply = if iq.kind == IqType::Set && payload.is("query", ns::ROSTER) && from_server
            {
                for item in payload.elements().filter(|i| i.is("item", ns::ROSTER)) {
                    let Some(ri) = RosterItem::from_element(item) else {
                        continue;
                    };
                    let mut st = lock(state);
                    if ri.subscription == "remove" {
                        st.roster.remove(&ri.jid);
                        emit(ClientEvent::RosterRemoved(ri.jid));
                    } else {
                        if st.roster.len() < MAX_ROSTER_ITEMS || st.roster.contains_key(&ri.jid) {
                            let kept = RosterItem {
                                name: ri.name.as_deref().map(kept_text),
                                subscription: kept_text(&ri.subscription),
                                ..ri.clone()
                            };
                            st.roster.insert(ri.jid.clone(), kept);
                        }
                        emit(ClientEvent::RosterPush(ri));
                    }
                }
                iq.result(None)
            } else if iq.kind == IqType::Get && payload.is("ping", ns::PING) {
                iq.result(None)
            } else {
                iq.error_reply(StanzaErrorCondition::ServiceUnavailable, None)
            };
            let mut r = reply;
            r.from = None;
            // The error reply need not echo the request (RFC 6120 8.3.1
            // allows leaving it out): a peer cannot make each answer as big
            // as its request.
            r.payload = None;
            auto_reply(out, r.to_element().to_xml());
        }
        "message" => {
            let Ok(m) = Message::from_element(el) else {
                return;
            };
            let from = m.from.clone().unwrap_or_else(|| me.to_bare());
            if m.kind == MessageType::Error {
                let err = el.get_child("error", ns::CLIENT);
                emit(ClientEvent::MessageError {
                    from: m.from.clone(),
                    id: m.id.clone(),
                    condition: err
                        .and_then(StanzaErrorCondition::from_error_element)
                        .map_or("undefined-condition".into(), |c| c.to_string()),
                    text: err.and_then(protocol::error::error_text),
                });
                return;
            }
            if let Some(id) = m.receipt_for() {
                emit(ClientEvent::Receipt {
                    from,
                    id: id.to_string(),
                });
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
                auto_reply(out, ack.to_xml());
            }
            if from.local().is_none() && from.domain() == me.domain() {
                // From the server itself: an announcement to everyone.
                if let Some(body) = m.body.clone() {
                    let subject = m
                        .payloads
                        .iter()
                        .find(|p| p.is("subject", ns::CLIENT))
                        .map(Element::text_content);
                    emit(ClientEvent::Announcement { subject, body });
                }
                return;
            }
            if let Some(body) = m.body.clone() {
                let delayed = m.delay_stamp().map(str::to_string);
                emit(ClientEvent::Message {
                    from,
                    body,
                    id: m.id.clone(),
                    kind: m.kind,
                    delayed,
                });
            }
        }
        "presence" => {
            let Ok(p) = Presence::from_element(el) else {
                return;
            };
            let Some(from) = p.from.clone() else { return };
            match p.kind {
                PresenceType::Available | PresenceType::Unavailable => {
                    let available = p.kind == PresenceType::Available;
                    if from == *me {
                        return;
                    }
                    let mut st = lock(state);
                    if available {
                        st.online.insert(from.clone(), p.show, p.status.as_deref());
                    } else {
                        st.online.remove(&from);
                    }
                    emit(ClientEvent::Presence {
                        from,
                        available,
                        show: p.show,
                        status: p.status,
                    });
                }
                PresenceType::Subscribe => {
                    let bare = from.to_bare();
                    let mut st = lock(state);
                    // We asked them already: approving is what the user meant.
                    let auto = st.roster.contains_key(&bare);
                    if auto {
                        let ok = Presence {
                            to: Some(bare.clone()),
                            ..Presence::new(PresenceType::Subscribed)
                        };
                        auto_reply(out, ok.to_element().to_xml());
                    } else if !st.requests.contains(&bare) {
                        if st.requests.len() >= MAX_PENDING_REQUESTS {
                            st.requests.remove(0);
                        }
                        st.requests.push(bare.clone());
                    }
                    emit(ClientEvent::SubscriptionRequest {
                        from: bare,
                        auto_approved: auto,
                    });
                }
                PresenceType::Subscribed
                | PresenceType::Unsubscribe
                | PresenceType::Unsubscribed => {
                    emit(ClientEvent::Subscription { from, kind: p.kind });
                }
                _ => {}
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, DuplexStream};

    const HEADER: &str =
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

    /// A signed-in client on one end of an in-memory pipe of `room` bytes;
    /// the test plays the server on the other end.
    async fn client_on_pipe(room: usize) -> (Client, DuplexStream) {
        let (client_side, mut server) = tokio::io::duplex(room);
        let mut stream: BoxStream = Box::new(client_side);
        server.write_all(HEADER.as_bytes()).await.unwrap();
        let mut reader = XmppReader::new(Limits::default());
        assert!(matches!(
            reader.next(&mut stream).await,
            Ok(Event::StreamOpen(_))
        ));
        let c = Client::start(
            Negotiated {
                stream,
                reader,
                jid: Jid::parse("alice@localhost/r").unwrap(),
                mechanism: Mechanism::Plain,
                secure: false,
                max_stanza: protocol::limits::MAX_STANZA_BYTES,
            },
            EventLimits::default(),
        );
        (c, server)
    }

    #[tokio::test]
    async fn nothing_over_the_servers_announced_limit_is_sent() {
        let (c, _server) = client_on_pipe(1 << 20).await;
        let bob = Jid::parse("bob@localhost").unwrap();
        let err = c.send_message(&bob, &"x".repeat(70_000)).unwrap_err();
        assert!(
            matches!(err, ClientError::TooLarge { limit: 65_536, .. }),
            "{err}"
        );
        assert!(c.send_message(&bob, "short").is_ok());
        let features = Element::new("features", ns::STREAM).child(
            Element::new("limits", ns::STREAM_LIMITS).text_child(
                "max-bytes",
                ns::STREAM_LIMITS,
                "262144",
            ),
        );
        assert_eq!(server_limit(&features), 262_144);
        let none = Element::new("features", ns::STREAM);
        assert_eq!(server_limit(&none), protocol::limits::MAX_STANZA_BYTES);
    }

    #[tokio::test]
    async fn pings_to_a_client_whose_server_never_reads_queue_a_bounded_number_of_pongs() {
        let (c, mut server) = client_on_pipe(1024).await;
        for i in 0..5000 {
            let ping = format!("<iq type='get' id='p{i}'><ping xmlns='urn:xmpp:ping'/></iq>");
            server.write_all(ping.as_bytes()).await.unwrap();
        }
        // Let the reader take them all.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let queued = c.out.max_capacity() - c.out.capacity();
        assert!(queued <= MAX_QUEUED_AUTO_REPLIES, "{queued} pongs queued");
        // The user can still send: the rest of the queue is theirs.
        c.send_message(&Jid::parse("bob@localhost").unwrap(), "hi")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_never_reads_is_left_with_a_clear_error() {
        let (mut c, mut server) = client_on_pipe(256).await;
        let body = "x".repeat(1000);
        for _ in 0..100 {
            let _ = c.send_message(&Jid::parse("bob@localhost").unwrap(), &body);
        }
        let ev = tokio::time::timeout(WRITE_STALL_TIMEOUT * 2, async {
            loop {
                match c.next_event().await {
                    Some(ClientEvent::Disconnected { reason }) => break reason,
                    Some(_) => {}
                    None => break None,
                }
            }
        })
        .await
        .expect("disconnected in time");
        let reason = ev.expect("a reason");
        assert!(reason.contains("not read"), "{reason}");
        let mut sink = Vec::new();
        let _ = server.read_to_end(&mut sink).await;
    }

    #[test]
    fn event_queue_drops_and_counts_at_its_bound() {
        let (tx, mut rx, meter) = event_queue(EventLimits::default());
        for i in 0..MAX_QUEUED_EVENTS + 10 {
            tx.send(ClientEvent::Receipt {
                from: Jid::parse("bob@localhost").unwrap(),
                id: i.to_string(),
            });
        }
        assert_eq!(meter.dropped.load(Ordering::Relaxed), 10);
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, MAX_QUEUED_EVENTS);
        // A few huge events hit the byte bound long before the count.
        let (tx, _rx, meter) = event_queue(EventLimits::default());
        for _ in 0..200 {
            tx.send(ClientEvent::Announcement {
                subject: None,
                body: "x".repeat(64 * 1024),
            });
        }
        assert!(meter.bytes.load(Ordering::Relaxed) <= MAX_QUEUED_EVENT_BYTES);
        assert!(meter.dropped.load(Ordering::Relaxed) >= 200 - 128);
    }

    #[test]
    fn online_resources_forget_the_oldest_at_the_bound() {
        let mut o = Online::default();
        let jid = |i: usize| Jid::parse(&format!("u{i}@localhost/r")).unwrap();
        for i in 0..MAX_ONLINE_RESOURCES + 5 {
            o.insert(jid(i), None, Some(&"s".repeat(5000)));
        }
        assert_eq!(o.len(), MAX_ONLINE_RESOURCES);
        assert!(!o.keys().any(|j| *j == jid(0) || *j == jid(4)));
        assert!(o.keys().any(|j| *j == jid(5)));
        assert!(
            o.iter()
                .all(|(_, _, s)| s.is_some_and(|s| s.len() == MAX_KEPT_TEXT_BYTES))
        );
        // News about an old entry makes it young again.
        o.insert(jid(5), None, None);
        o.insert(jid(999_999), None, None);
        assert!(o.keys().any(|j| *j == jid(5)));
        o.remove(&jid(5));
        assert_eq!(o.len(), MAX_ONLINE_RESOURCES - 1);
    }
}
