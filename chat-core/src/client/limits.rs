//! The client's bounds and timeouts, in one place.
//!
//! The server is not trusted to be kind. Every queue and map that peer input
//! can grow is bounded here (each constant says what happens at its bound),
//! so that a hostile or broken server cannot exhaust the client's memory
//! with floods of presence, pings or receipt requests. The other modules of
//! the client read these; nothing here depends on them.

use std::time::Duration;

/// How long to wait for an iq answer before giving up.
pub const IQ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the whole sign-in may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Events waiting for the front end to take them. At the bound, new events
/// are dropped and counted, and the front end gets one
/// [`ClientEvent::EventsDropped`](super::ClientEvent::EventsDropped) saying how many once it has caught up.
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
/// ([`ClientError::Congested`](super::ClientError::Congested)) instead of an ever-growing queue; the load
/// generator waits for room instead ([`RawSender::send_xml`](super::RawSender::send_xml)).
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

/// Most pages one list request follows (XEP-0059), and so at most
/// `MAX_PAGES * rsm::MAX_PAGE_ITEMS` items: a server that pages forever
/// cannot grow the client without bound.
pub const MAX_PAGES: usize = 100;

/// Largest file accepted by default (the client's `--max-file-size`).
pub const DEFAULT_MAX_FILE_SIZE: u64 = 10 * 1024 * 1024;

/// IBB block size we send (XEP-0047 suggests 4096): 4 KiB of data is about
/// 5.5 KiB of base64, well under the server's stanza limit.
pub const IBB_BLOCK_SIZE: usize = 4096;

/// Largest block size we accept from a sender. Bigger blocks would not fit
/// in a stanza once base64-encoded.
pub const MAX_IBB_BLOCK_SIZE: usize = 16 * 1024;

/// Blocks sent before waiting for their acknowledgements: enough to keep
/// the link busy, few enough that a slow receiver slows the sender down.
pub const IBB_WINDOW: usize = 8;

/// How long an offer waits for the receiver to accept or refuse.
pub const OFFER_TIMEOUT: Duration = Duration::from_secs(300);

/// File transfers one client has going at once (offers waiting for an
/// answer, accepted, arriving); more offers are refused, so a peer cannot
/// pile them up.
pub const MAX_PENDING_OFFERS: usize = 16;

/// Blocks of one incoming file waiting to be written. A sender that keeps
/// to the window (as ours does, [`IBB_WINDOW`]) never has more unanswered;
/// one that sends without waiting for acknowledgements has the extra blocks
/// refused, which fails its transfer, instead of queueing them in memory
/// faster than the disk takes them.
pub const MAX_QUEUED_BLOCKS: usize = 4 * IBB_WINDOW;

/// Files at least this big get progress events (every 10%).
pub const PROGRESS_MIN_SIZE: u64 = 256 * 1024;

/// The weakest SASL mechanism a client accepts unless told otherwise
/// (`--sasl`): any SCRAM, never PLAIN. A client that took whatever was
/// offered would send its password to a man in the middle who offers only
/// PLAIN (`downgrade-sasl`).
pub const DEFAULT_MIN_MECHANISM: protocol::sasl::Mechanism = protocol::sasl::Mechanism::ScramSha1;
