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
    Incoming {
        from: Jid,
        id: Option<String>,
        kind: MessageType,
        delayed: Option<String>,
        v: Version,
        encrypted: Element,
        /// The sender asked for a delivery receipt (XEP-0184).
        receipt: bool,
    },
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
