//! What the reader task learns and the API reads: the client's shared
//! [`State`] (roster, contacts online, subscription requests, rooms, file
//! transfers), and the map of iq requests waiting for their answers.
//!
//! Both sides hold it behind one mutex, locked briefly and never across an
//! `.await`. The feature modules (`rooms`, `files`) keep their part here, so
//! that the state sits below everything that uses it: the reader and the API
//! both depend on this module, and it depends on neither.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use protocol::stanza::{Iq, Show};
use protocol::{Element, Jid};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::error::ClientError;
use super::event::{RosterItem, wire};
use super::limits::{DEFAULT_MAX_FILE_SIZE, MAX_ONLINE_RESOURCES, kept_text};
use crate::transport::TlsInfo;
use protocol::sasl::{ChannelBindingType, Mechanism};

/// Locks `m`, going on after a panic elsewhere: the maps stay usable, and a
/// client that stopped on a poisoned lock would lose the connection.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Iq requests waiting for their answers: id → where the answer goes.
pub(crate) type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Element>>>>;

/// What the reader task learns that the API needs.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Our contacts, as the server last told us.
    pub(crate) roster: HashMap<Jid, RosterItem>,
    /// Available resources of contacts, with show and status.
    pub(crate) online: Online,
    /// Subscription requests not yet answered.
    pub(crate) requests: Vec<Jid>,
    /// The condition of the stream error that ended the connection.
    pub(crate) stream_error: Option<String>,
    /// Rooms joined or being joined, by room JID.
    pub(crate) rooms: HashMap<Jid, RoomState>,
    /// File offers and transfers in progress.
    pub(crate) files: Files,
}

/// Contacts' online resources, forgetting the one longest without news at
/// [`MAX_ONLINE_RESOURCES`].
#[derive(Debug, Default)]
pub(crate) struct Online {
    /// Full JID → (when last heard of, show, status).
    by_jid: HashMap<Jid, (u64, Option<Show>, Option<String>)>,
    /// When last heard of → full JID: the oldest first.
    by_age: BTreeMap<u64, Jid>,
    clock: u64,
}

impl Online {
    /// Records `jid` as online (the youngest entry now).
    pub(crate) fn insert(&mut self, jid: Jid, show: Option<Show>, status: Option<&str>) {
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

    /// Forgets `jid` (it went offline).
    pub(crate) fn remove(&mut self, jid: &Jid) {
        if let Some((at, _, _)) = self.by_jid.remove(jid) {
            self.by_age.remove(&at);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_jid.len()
    }

    /// The full JIDs online.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &Jid> {
        self.by_jid.keys()
    }

    /// The full JIDs online, with show and status.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Jid, Option<Show>, Option<&String>)> {
        self.by_jid
            .iter()
            .map(|(j, (_, show, status))| (j, *show, status.as_ref()))
    }
}

/// One occupant of a room as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Occupant {
    /// Room nickname.
    pub nick: String,
    /// moderator, participant, visitor.
    pub role: String,
    /// owner, admin, member, none.
    pub affiliation: String,
    /// away, dnd, xa, chat.
    #[serde(serialize_with = "wire::show")]
    pub show: Option<Show>,
    /// Status message.
    pub status: Option<String>,
}

/// A room we joined or are joining (see `rooms`).
#[derive(Debug, Default)]
pub(crate) struct RoomState {
    /// Our nickname there.
    pub(crate) nick: String,
    /// The room has confirmed our presence (status 110).
    pub(crate) joined: bool,
    /// Who is there, by nickname.
    pub(crate) occupants: BTreeMap<String, Occupant>,
    /// Completes the pending `join_room` with "created?" or the refusal.
    pub(crate) join: Option<oneshot::Sender<Result<bool, ClientError>>>,
}

/// What the receiving side of file transfers allows.
#[derive(Debug, Clone)]
pub struct FilePolicy {
    /// Where received files go.
    pub downloads: PathBuf,
    /// Largest file accepted.
    pub max_size: u64,
    /// Accept every offer without asking (for scripts).
    pub auto_accept: bool,
}

impl Default for FilePolicy {
    fn default() -> Self {
        FilePolicy {
            downloads: PathBuf::from("downloads"),
            max_size: DEFAULT_MAX_FILE_SIZE,
            auto_accept: false,
        }
    }
}

/// A file offered to us, waiting for `/accept` or `/reject` (see `files`).
#[derive(Debug, Clone)]
pub(crate) struct Offer {
    /// Who offers it.
    pub(crate) from: Jid,
    /// The id of the offer's iq, which our answer carries.
    pub(crate) iq_id: String,
    /// The stream id.
    pub(crate) sid: String,
    /// The file name, made safe.
    pub(crate) name: String,
    /// Announced size.
    pub(crate) size: u64,
    /// SHA-256 the sender announced, raw bytes.
    pub(crate) sha256: Option<Vec<u8>>,
    /// A file shared by URL (HTTP file upload, XEP-0363): accepting it
    /// downloads it, and `sid` and `iq_id` are ours, not the sender's.
    pub(crate) url: Option<String>,
}

/// An incoming In-Band Bytestreams message for a receive task.
pub(crate) enum Ibb {
    /// One block of the file.
    Data {
        /// Its sequence number.
        seq: u16,
        /// The bytes, decoded.
        bytes: Vec<u8>,
        /// The request, to acknowledge or refuse.
        iq: Iq,
    },
    /// The sender is done.
    Close {
        /// The request, to acknowledge or refuse.
        iq: Iq,
    },
}

impl std::fmt::Debug for Ibb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ibb::Data { seq, bytes, .. } => write!(f, "Data({seq}, {} bytes)", bytes.len()),
            Ibb::Close { .. } => write!(f, "Close"),
        }
    }
}

/// The receiving side's file transfers.
#[derive(Debug, Default)]
pub(crate) struct Files {
    /// What we accept and where files go.
    pub(crate) policy: FilePolicy,
    /// Offers waiting for the user.
    pub(crate) offers: Vec<Offer>,
    /// Accepted, waiting for the IBB open: (from, sid) → offer.
    pub(crate) accepted: HashMap<(Jid, String), Offer>,
    /// Receiving: (from, sid) → the task writing the file.
    pub(crate) receiving: HashMap<(Jid, String), mpsc::Sender<Ibb>>,
    /// Downloads of shared files under way (counted against
    /// [`MAX_PENDING_OFFERS`](super::limits::MAX_PENDING_OFFERS)).
    pub(crate) downloading: usize,
    /// Files shared with us so far (their ids: `f1`, `f2`...).
    pub(crate) shares: u64,
    /// How shared files' URLs are reached (the sign-in's transport).
    pub(crate) web: Option<Web>,
    /// Hosts of our own server (its address, our domain): only files on
    /// them download without `/accept`, even with `--accept-files`.
    pub(crate) home_hosts: Vec<String>,
    /// The server's upload service, once looked for: `Some(None)` when it
    /// has none.
    pub(crate) upload: Option<Option<UploadService>>,
}

impl Files {
    /// Transfers waiting or under way, each direction and kind: at most
    /// [`MAX_PENDING_OFFERS`](super::limits::MAX_PENDING_OFFERS), so a
    /// flood of offers cannot pile up memory, tasks or open files.
    pub(crate) fn busy(&self) -> usize {
        self.offers.len() + self.accepted.len() + self.receiving.len() + self.downloading
    }
}

/// The transport's connector for shared files' URLs.
#[derive(Clone)]
pub(crate) struct Web(pub(crate) std::sync::Arc<dyn crate::transport::WebConnector>);

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Web({})", self.0.scheme())
    }
}

/// An upload service (XEP-0363) and the largest file it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadService {
    /// Its address, e.g. `upload.localhost`.
    pub jid: Jid,
    /// The largest file, when it says (`max-file-size`).
    pub max_size: Option<u64>,
}

/// What protects the link to the server, as negotiated: what the user is
/// shown (the TUI's status bar), so that what is protected, and how, is
/// where the student looks.
#[derive(Debug, Clone)]
pub struct Link {
    /// What TLS negotiated; `None` on a plaintext stream (anyone on the
    /// path reads and changes it).
    pub tls: Option<TlsInfo>,
    /// TLS from the first byte (XEP-0368) rather than STARTTLS: nothing
    /// for a man in the middle to strip.
    pub direct: bool,
    /// The SASL mechanism.
    pub mechanism: Mechanism,
    /// The channel-binding type the sign-in was bound to (-PLUS), which
    /// defeats a relay that ends the TLS itself.
    pub binding: Option<ChannelBindingType>,
}

/// The group-room service of our server: `conference.<domain>`.
pub fn muc_domain(me: &Jid) -> String {
    format!("conference.{}", me.domain())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::limits::MAX_KEPT_TEXT_BYTES;

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
