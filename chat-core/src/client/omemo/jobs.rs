//! The OMEMO worker's queue: what the reader (what arrives) and the API
//! (what is sent, `/fingerprints`) ask of it. Below both, so that neither
//! depends on the worker itself.

use protocol::omemo::Version;
use protocol::stanza::MessageType;
use protocol::{Element, Jid};
use tokio::sync::oneshot;

/// How many jobs may wait: beyond, a message is refused at once (the user
/// sees it) and an incoming one is reported unread.
pub(crate) const MAX_QUEUED_JOBS: usize = 256;

/// What the worker is asked to do.
#[derive(Debug)]
pub(crate) enum Job {
    /// Encrypt and send a chat message (its id already given to the user).
    Send { to: Jid, id: String, body: String },
    /// A message with `<encrypted/>` arrived.
    Incoming(Arrived),
    /// A device list arrived by PEP notification.
    DeviceList {
        from: Jid,
        v: Version,
        ids: Vec<u32>,
    },
    /// Fetch the device lists of `jid` and start sessions with its devices
    /// (their keys then show in `/fingerprints`); answered when done.
    Learn { jid: Jid, done: oneshot::Sender<()> },
    /// Sign out once every job before it is done: the messages still
    /// being encrypted go out before the stream ends.
    Close,
}

/// A message with `<encrypted/>`, as the reader hands it over.
#[derive(Debug)]
pub(crate) struct Arrived {
    /// Its sender (full JID).
    pub(crate) from: Jid,
    pub(crate) id: Option<String>,
    pub(crate) kind: MessageType,
    /// Its delay stamp (offline delivery).
    pub(crate) delayed: Option<String>,
    pub(crate) v: Version,
    pub(crate) encrypted: Element,
    /// The sender asked for a delivery receipt (XEP-0184).
    pub(crate) receipt: bool,
    /// A carbon copy (XEP-0280): whether our other device sent it, and
    /// the contact it was to or from.
    pub(crate) carbon: Option<(bool, Jid)>,
}
