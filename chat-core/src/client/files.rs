//! File transfer, client to client: Stream Initiation (XEP-0095) with the
//! file-transfer profile (XEP-0096) offers the file and negotiates In-Band
//! Bytestreams (XEP-0047), which carry it base64-encoded in `<iq/>` stanzas
//! through the server.
//!
//! Receiving is where the danger is, so the receiver:
//! - saves only under its downloads folder, with the offered name reduced to
//!   one safe file name (a name like `../../etc/passwd` would otherwise write
//!   outside it: path traversal);
//! - never builds a path from the sender's stream id (`sid`): the partial
//!   file is named by a local counter, so a sid like `../../x` cannot steer
//!   it anywhere (path traversal again, through another field);
//! - never overwrites a file (`name (1)`, `name (2)`, ...);
//! - refuses files over its size limit before any byte arrives, and stops a
//!   sender that sends more than it announced (disk filling);
//! - checks the size and the SHA-256 the sender announced (XEP-0300) before
//!   the file appears under its final name.
//!
//! In `chat-plain`, every block crosses the network readable: the sniffer
//! reassembles whole files from the base64.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use protocol::stanza::{Iq, IqType};
use protocol::{Element, Jid, StanzaErrorCondition, ns};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::api::{Client, IqSender};
use super::error::ClientError;
pub use super::event::FileDone;
use super::event::{ClientEvent, EventSender};
pub use super::limits::DEFAULT_MAX_FILE_SIZE;
use super::outbound::auto_reply;
pub use super::state::FilePolicy;
use super::state::{Ibb, Offer, State, lock};
use crate::util::random_id;

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

/// Reduces an offered file name to one safe name inside the downloads
/// folder: the last path component only (no `..`, no `/`, no `\`), no
/// control characters and no bidi controls or line separators (which make
/// `txt.exe` read as `exe.txt`: see [`protocol::display`]), no leading dots
/// (no hidden files, and never the name of a partial file, which starts with
/// a dot), at most 200 bytes.
pub fn safe_file_name(offered: &str) -> String {
    let last = offered
        .rsplit(['/', '\\'])
        .find(|p| !p.trim().is_empty() && *p != "." && *p != "..")
        .unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|&c| !protocol::display::is_unsafe_char(c))
        .collect::<String>()
        .trim()
        .trim_start_matches('.')
        .to_string();
    let mut end = cleaned.len().min(200);
    while !cleaned.is_char_boundary(end) {
        end -= 1;
    }
    let name = cleaned[..end].trim().to_string();
    if name.is_empty() {
        "file".to_string()
    } else {
        name
    }
}

/// The name of a new partial file: a dot (so that no safe file name, which
/// never starts with one, can be the same), this process and a counter.
/// Nothing the sender chose is in it: its `sid` once was, and `../../x`
/// then put the partial file outside the downloads folder.
fn part_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        ".incoming-{}-{}.part",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The first `name`, `name (1)`, `name (2)`... that does not exist in `dir`.
fn free_path(dir: &Path, name: &str) -> Option<PathBuf> {
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s.to_string(), format!(".{e}")),
        _ => (name.to_string(), String::new()),
    };
    (0..1000)
        .map(|i| {
            if i == 0 {
                dir.join(name)
            } else {
                dir.join(format!("{stem} ({i}){ext}"))
            }
        })
        .find(|p| !p.exists())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 and size of a file, read in chunks.
async fn hash_file(path: &Path) -> std::io::Result<(Vec<u8>, u64)> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).await?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((h.finalize().to_vec(), n))
}

/// Progress events at every 10% of a large file.
struct Progress {
    sid: String,
    name: String,
    sending: bool,
    total: u64,
    next_tenth: u64,
}

impl Progress {
    fn new(sid: &str, name: &str, sending: bool, total: u64) -> Self {
        Progress {
            sid: sid.to_string(),
            name: name.to_string(),
            sending,
            total,
            next_tenth: 1,
        }
    }
    fn update(&mut self, done: u64, events: &EventSender) {
        if self.total < PROGRESS_MIN_SIZE {
            return;
        }
        while self.next_tenth < 10 && done * 10 >= self.total * self.next_tenth {
            self.next_tenth += 1;
            events.send(ClientEvent::FileProgress {
                sid: self.sid.clone(),
                name: self.name.clone(),
                sending: self.sending,
                bytes: done,
                total: self.total,
            });
        }
    }
}

impl Client {
    /// Sets what this client accepts and where files go.
    pub fn set_file_policy(&self, policy: FilePolicy) {
        lock(&self.state).files.policy = policy;
    }

    /// Offers a file to `to` and, once accepted, sends it over IBB. A bare
    /// JID goes to one of the contact's online resources. `offered_name`
    /// replaces the file's own name in the offer: the labs use it to show
    /// what a hostile name (`../../etc/x`) does to a careless receiver.
    pub fn send_file(
        &self,
        to: &Jid,
        path: &Path,
        offered_name: Option<&str>,
    ) -> impl Future<Output = Result<FileDone, ClientError>> + Send + 'static {
        let offered_name = offered_name.map(str::to_string);
        let target = if to.is_bare() {
            let st = lock(&self.state);
            let mut online: Vec<&Jid> = st.online.keys().filter(|j| j.to_bare() == *to).collect();
            online.sort();
            online
                .first()
                .map(|j| (*j).clone())
                .ok_or_else(|| ClientError::NotOnline(to.clone()))
        } else {
            Ok(to.clone())
        };
        let iq = self.iq_sender();
        // Held only while sending, so it never keeps the event stream open.
        let events = self.events_tx.upgrade();
        let path = path.to_path_buf();
        async move {
            let to = target?;
            let cant = |source: std::io::Error| ClientError::ReadFile {
                path: path.clone(),
                source,
            };
            let meta = tokio::fs::metadata(&path).await.map_err(cant)?;
            if !meta.is_file() {
                return Err(ClientError::NotAFile(path));
            }
            let (sha, size) = hash_file(&path).await.map_err(cant)?;
            let name = offered_name.unwrap_or_else(|| {
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "file".into())
            });
            let sid = format!("s{}", random_id(8));
            // The receiver may take a while to decide: a longer wait than
            // other requests get.
            let answer = iq
                .iq_timeout(
                    IqType::Set,
                    Some(to.clone()),
                    offer_element(&sid, &name, size, &sha),
                    "offering the file",
                    OFFER_TIMEOUT,
                )
                .await?;
            if !accepts_ibb(&answer) {
                return Err(ClientError::Unexpected(
                    "an acceptance without In-Band Bytestreams".into(),
                ));
            }
            let open = Element::new("open", ns::IBB)
                .attr("sid", sid.clone())
                .attr("block-size", IBB_BLOCK_SIZE.to_string())
                .attr("stanza", "iq");
            iq.iq(
                IqType::Set,
                Some(to.clone()),
                open,
                "opening the bytestream",
            )
            .await?;
            let file = tokio::fs::File::open(&path).await.map_err(cant)?;
            let progress = events.map(|ev| (Progress::new(&sid, &name, true, size), ev));
            let sent = send_blocks(&iq, &to, &sid, file, progress)
                .await
                .map_err(|e| e.or_read_error(&path))?;
            let close = Element::new("close", ns::IBB).attr("sid", sid.clone());
            iq.iq(
                IqType::Set,
                Some(to.clone()),
                close,
                "finishing the transfer",
            )
            .await?;
            Ok(FileDone {
                sid,
                peer: to,
                name,
                path: None,
                size: sent,
                sha256: hex(&sha),
            })
        }
    }

    /// Accepts a pending offer (the latest when `sid` is `None`).
    pub fn accept_file(&self, sid: Option<&str>) -> Result<String, ClientError> {
        let mut st = lock(&self.state);
        let offer = take_offer(&mut st, sid)?;
        let reply = accept_reply(&offer);
        let name = offer.name.clone();
        st.files
            .accepted
            .insert((offer.from.clone(), offer.sid.clone()), offer);
        drop(st);
        self.send(&reply)?;
        Ok(name)
    }

    /// Refuses a pending offer (the latest when `sid` is `None`).
    pub fn reject_file(&self, sid: Option<&str>) -> Result<String, ClientError> {
        let offer = take_offer(&mut lock(&self.state), sid)?;
        self.send(&refusal(
            &offer.from,
            &offer.iq_id,
            StanzaErrorCondition::Forbidden,
            "the user declined the file",
        ))?;
        Ok(offer.name)
    }
}

/// The file-transfer offer (XEP-0096): name, size and SHA-256, and In-Band
/// Bytestreams as the one stream method.
fn offer_element(sid: &str, name: &str, size: u64, sha: &[u8]) -> Element {
    let method = Element::new("field", ns::DATA_FORMS)
        .attr("var", "stream-method")
        .attr("type", "list-single")
        .child(Element::new("option", ns::DATA_FORMS).text_child("value", ns::DATA_FORMS, ns::IBB));
    Element::new("si", ns::SI)
        .attr("id", sid)
        .attr("profile", ns::SI_FILE)
        .attr("mime-type", "application/octet-stream")
        .child(
            Element::new("file", ns::SI_FILE)
                .attr("name", name)
                .attr("size", size.to_string())
                .child(
                    Element::new("hash", ns::HASHES)
                        .attr("algo", "sha-256")
                        .text(B64.encode(sha)),
                ),
        )
        .child(
            Element::new("feature", ns::FEATURE_NEG).child(
                Element::new("x", ns::DATA_FORMS)
                    .attr("type", "form")
                    .child(method),
            ),
        )
}

/// Whether the receiver's acceptance chose In-Band Bytestreams.
fn accepts_ibb(answer: &Iq) -> bool {
    let method = answer
        .payload
        .as_ref()
        .and_then(|si| si.get_child("feature", ns::FEATURE_NEG))
        .and_then(|f| f.get_child("x", ns::DATA_FORMS))
        .and_then(|x| x.get_child("field", ns::DATA_FORMS))
        .and_then(|f| f.child_text("value", ns::DATA_FORMS));
    method.as_deref() == Some(ns::IBB)
}

/// Why sending the blocks stopped: the file could not be read, or the
/// receiver (or the connection) failed a block.
enum SendError {
    Read(std::io::Error),
    Client(ClientError),
}

impl SendError {
    fn or_read_error(self, path: &Path) -> ClientError {
        match self {
            SendError::Read(source) => ClientError::ReadFile {
                path: path.to_path_buf(),
                source,
            },
            SendError::Client(e) => e,
        }
    }
}

impl From<ClientError> for SendError {
    fn from(e: ClientError) -> Self {
        SendError::Client(e)
    }
}

/// Sends the file in IBB blocks, at most [`IBB_WINDOW`] unacknowledged;
/// returns the bytes sent.
async fn send_blocks(
    iq: &IqSender,
    to: &Jid,
    sid: &str,
    mut file: tokio::fs::File,
    mut progress: Option<(Progress, EventSender)>,
) -> Result<u64, SendError> {
    let mut buf = vec![0u8; IBB_BLOCK_SIZE];
    let mut seq: u16 = 0;
    let mut sent = 0u64;
    let mut in_flight = std::collections::VecDeque::new();
    loop {
        let k = read_full(&mut file, &mut buf)
            .await
            .map_err(SendError::Read)?;
        if k == 0 {
            break;
        }
        let data = Element::new("data", ns::IBB)
            .attr("sid", sid)
            .attr("seq", seq.to_string())
            .text(B64.encode(&buf[..k]));
        in_flight.push_back(iq.iq(IqType::Set, Some(to.clone()), data, "sending a block"));
        seq = seq.wrapping_add(1);
        sent += k as u64;
        if in_flight.len() >= IBB_WINDOW
            && let Some(f) = in_flight.pop_front()
        {
            f.await?;
        }
        if let Some((p, events)) = &mut progress {
            p.update(sent, events);
        }
    }
    for f in in_flight {
        f.await?;
    }
    Ok(sent)
}

/// Reads until `buf` is full or the file ends.
async fn read_full(f: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = f.read(&mut buf[n..]).await?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

fn take_offer(st: &mut State, sid: Option<&str>) -> Result<Offer, ClientError> {
    let offers = &mut st.files.offers;
    let i = match sid {
        Some(s) => offers.iter().position(|o| o.sid == s),
        None => offers.len().checked_sub(1),
    };
    i.map(|i| offers.remove(i)).ok_or(ClientError::NoSuchOffer)
}

fn accept_reply(offer: &Offer) -> Element {
    Element::new("iq", ns::CLIENT)
        .attr("type", "result")
        .attr("to", offer.from.to_string())
        .attr("id", offer.iq_id.clone())
        .child(
            Element::new("si", ns::SI).child(
                Element::new("feature", ns::FEATURE_NEG).child(
                    Element::new("x", ns::DATA_FORMS)
                        .attr("type", "submit")
                        .child(
                            Element::new("field", ns::DATA_FORMS)
                                .attr("var", "stream-method")
                                .text_child("value", ns::DATA_FORMS, ns::IBB),
                        ),
                ),
            ),
        )
}

fn refusal(to: &Jid, id: &str, cond: StanzaErrorCondition, text: &str) -> Element {
    Element::new("iq", ns::CLIENT)
        .attr("type", "error")
        .attr("to", to.to_string())
        .attr("id", id)
        .child(cond.to_element(Some(text)))
}

fn result_to(iq: &Iq) -> String {
    let mut r = iq.result(None);
    r.from = None;
    r.to_element().to_xml()
}

/// Handles an incoming SI or IBB request; `false` when `iq` is neither.
pub(crate) fn handle_file_iq(
    iq: &Iq,
    state: &Mutex<State>,
    out: &mpsc::Sender<String>,
    events: &EventSender,
) -> bool {
    let (Some(payload), Some(from)) = (iq.payload.as_ref(), iq.from.clone()) else {
        return false;
    };
    if iq.kind != IqType::Set {
        return false;
    }
    let request = Request {
        iq,
        from,
        state,
        out,
        events,
    };
    if payload.is("si", ns::SI) {
        request.offer(payload);
    } else if payload.is("open", ns::IBB) {
        request.open(payload);
    } else if payload.is("data", ns::IBB) || payload.is("close", ns::IBB) {
        request.block(payload);
    } else {
        return false;
    }
    true
}

/// One incoming SI or IBB request, with what answering it needs.
struct Request<'a> {
    iq: &'a Iq,
    from: Jid,
    state: &'a Mutex<State>,
    out: &'a mpsc::Sender<String>,
    events: &'a EventSender,
}

impl Request<'_> {
    /// Answers with an error.
    fn refuse(&self, cond: StanzaErrorCondition, text: &str) {
        auto_reply(
            self.out,
            refusal(&self.from, &self.iq.id, cond, text).to_xml(),
        );
    }

    /// A file offer (XEP-0096): refused at once when we cannot take it,
    /// otherwise shown, and accepted at once with `--accept-files`.
    fn offer(&self, si: &Element) {
        let Some(file) = si.get_child("file", ns::SI_FILE) else {
            self.refuse(
                StanzaErrorCondition::BadRequest,
                "only the file-transfer profile is supported",
            );
            return;
        };
        let sid = si.get_attr("id").unwrap_or_default().to_string();
        let name = safe_file_name(file.get_attr("name").unwrap_or(""));
        let size: Option<u64> = file.get_attr("size").and_then(|s| s.parse().ok());
        let sha256 = file
            .elements()
            .find(|h| h.is("hash", ns::HASHES) && h.get_attr("algo") == Some("sha-256"))
            .and_then(|h| B64.decode(h.text_content().trim()).ok());
        let mut st = lock(self.state);
        let policy = st.files.policy.clone();
        let (size, reason) = match (size, offer_refusal(si, &sid, size, &st)) {
            (Some(size), None) => (size, None),
            (_, reason) => (0, reason),
        };
        if let Some((cond, text)) = reason {
            drop(st);
            self.refuse(cond, &text);
            self.events.send(ClientEvent::FileFailed {
                sid,
                name,
                sending: false,
                reason: format!("refused an offer from {}: {text}", self.from),
            });
            return;
        }
        let offer = Offer {
            from: self.from.clone(),
            iq_id: self.iq.id.clone(),
            sid: sid.clone(),
            name: name.clone(),
            size,
            sha256,
        };
        self.events.send(ClientEvent::FileOffer {
            from: self.from.clone(),
            sid: sid.clone(),
            name,
            size,
        });
        if policy.auto_accept {
            auto_reply(self.out, accept_reply(&offer).to_xml());
            st.files.accepted.insert((self.from.clone(), sid), offer);
        } else {
            st.files.offers.push(offer);
        }
    }

    /// The sender opens the bytestream of an offer we accepted: a task
    /// starts writing the file.
    fn open(&self, open: &Element) {
        let sid = open.get_attr("sid").unwrap_or_default().to_string();
        let block: usize = open
            .get_attr("block-size")
            .and_then(|b| b.parse().ok())
            .unwrap_or(0);
        let mut st = lock(self.state);
        let Some(offer) = st.files.accepted.remove(&(self.from.clone(), sid.clone())) else {
            drop(st);
            // Only streams we accepted: anything else is someone pushing
            // bytes at us uninvited.
            self.refuse(
                StanzaErrorCondition::NotAcceptable,
                "no accepted offer with that sid",
            );
            return;
        };
        if open.get_attr("stanza").is_some_and(|s| s != "iq") {
            drop(st);
            self.refuse(
                StanzaErrorCondition::FeatureNotImplemented,
                "only stanza='iq' is supported",
            );
            return;
        }
        if block == 0 || block > MAX_IBB_BLOCK_SIZE {
            drop(st);
            self.refuse(
                StanzaErrorCondition::ResourceConstraint,
                "block size too large",
            );
            return;
        }
        let (tx, rx) = mpsc::channel(MAX_QUEUED_BLOCKS);
        st.files.receiving.insert((self.from.clone(), sid), tx);
        let downloads = st.files.policy.downloads.clone();
        drop(st);
        auto_reply(self.out, result_to(self.iq));
        tokio::spawn(receive(
            offer,
            downloads,
            rx,
            self.out.clone(),
            self.events.clone(),
        ));
    }

    /// A block of an open bytestream, or its end: handed to the task
    /// writing the file.
    fn block(&self, payload: &Element) {
        let sid = payload.get_attr("sid").unwrap_or_default().to_string();
        let key = (self.from.clone(), sid);
        let mut st = lock(self.state);
        let Some(tx) = st.files.receiving.get(&key).cloned() else {
            drop(st);
            self.refuse(StanzaErrorCondition::ItemNotFound, "no such bytestream");
            return;
        };
        let iq = self.iq.clone();
        let msg = if payload.name == "close" {
            st.files.receiving.remove(&key);
            Ibb::Close { iq }
        } else {
            let seq = payload.get_attr("seq").and_then(|s| s.parse().ok());
            let bytes = B64.decode(payload.text_content().trim()).ok();
            let (Some(seq), Some(bytes)) = (seq, bytes) else {
                drop(st);
                self.refuse(StanzaErrorCondition::BadRequest, "bad seq or base64");
                return;
            };
            Ibb::Data { seq, bytes, iq }
        };
        drop(st);
        match tx.try_send(msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.refuse(
                StanzaErrorCondition::ResourceConstraint,
                "too many blocks sent without waiting for their acknowledgements",
            ),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // The transfer already failed: free its slot.
                lock(self.state).files.receiving.remove(&key);
                self.refuse(
                    StanzaErrorCondition::ItemNotFound,
                    "the transfer was abandoned",
                );
            }
        }
    }
}

/// Why an offer is refused before the user sees it, if it is.
fn offer_refusal(
    si: &Element,
    sid: &str,
    size: Option<u64>,
    st: &State,
) -> Option<(StanzaErrorCondition, String)> {
    let offers_ibb = si
        .get_child("feature", ns::FEATURE_NEG)
        .and_then(|f| f.get_child("x", ns::DATA_FORMS))
        .and_then(|x| x.get_child("field", ns::DATA_FORMS))
        .is_some_and(|f| {
            f.elements()
                .filter(|o| o.is("option", ns::DATA_FORMS))
                .any(|o| o.child_text("value", ns::DATA_FORMS).as_deref() == Some(ns::IBB))
        });
    let max = st.files.policy.max_size;
    let busy = st.files.offers.len() + st.files.accepted.len() + st.files.receiving.len();
    if !offers_ibb {
        Some((
            StanzaErrorCondition::BadRequest,
            "no stream method we support (we take In-Band Bytestreams)".to_string(),
        ))
    } else if sid.is_empty() || size.is_none() {
        Some((
            StanzaErrorCondition::BadRequest,
            "an offer needs an id and a size".to_string(),
        ))
    } else if size.unwrap_or(0) > max {
        Some((
            StanzaErrorCondition::NotAcceptable,
            format!("the file is larger than the {max} bytes this client accepts"),
        ))
    } else if busy >= MAX_PENDING_OFFERS {
        // Waiting, accepted and arriving files together: with
        // --accept-files, a peer could otherwise start transfers without
        // end and fill the disk one maximum-size file at a time.
        Some((
            StanzaErrorCondition::ResourceConstraint,
            "too many file transfers at once".to_string(),
        ))
    } else {
        None
    }
}

/// Why an incoming file was not saved. The user reads the message (in
/// [`ClientEvent::FileFailed`]); the sender gets [`ReceiveError::refusal`].
#[derive(Debug, thiserror::Error)]
enum ReceiveError {
    /// The downloads folder or the partial file cannot be made.
    #[error("cannot create {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The bytestream ended without a close.
    #[error("the sender went away before finishing")]
    SenderGone,
    /// A block was lost or replayed.
    #[error("block {got} arrived when {due} was due")]
    OutOfOrder { got: u16, due: u16 },
    /// More bytes than the offer said: the disk-filling defence.
    #[error("the sender sent more than the {announced} bytes it announced")]
    TooMuch { announced: u64 },
    /// The partial file cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Fewer bytes than the offer said.
    #[error("got {got} bytes, the offer said {announced}")]
    SizeMismatch { got: u64, announced: u64 },
    /// The bytes are not the ones the offer's hash names.
    #[error("the SHA-256 does not match the offer: the file was changed on the way")]
    HashMismatch,
    /// Every `name (N)` up to the limit exists.
    #[error("no free name for {name} in {}", dir.display())]
    NoFreeName { name: String, dir: PathBuf },
    /// The checked file cannot be linked to its name.
    #[error("cannot save {}: {source}", path.display())]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ReceiveError {
    /// The error the sender's block or close gets.
    fn refusal(&self) -> (StanzaErrorCondition, &'static str) {
        use StanzaErrorCondition as C;
        match self {
            ReceiveError::OutOfOrder { .. } => (C::UnexpectedRequest, "out-of-order block"),
            ReceiveError::TooMuch { .. } => (C::NotAcceptable, "more data than announced"),
            ReceiveError::SizeMismatch { .. } => (C::NotAcceptable, "size mismatch"),
            ReceiveError::HashMismatch => (C::NotAcceptable, "SHA-256 mismatch"),
            ReceiveError::NoFreeName { .. } => (C::ResourceConstraint, "no free file name"),
            ReceiveError::Save { .. } => (C::ResourceConstraint, "cannot save the file"),
            // (Create and SenderGone come with no request to answer.)
            ReceiveError::Create { .. } | ReceiveError::SenderGone | ReceiveError::Write { .. } => {
                (C::ResourceConstraint, "cannot write the file")
            }
        }
    }
}

/// Writes one incoming file: a `.part` file first, checked, then linked to
/// its final name (a hard link fails rather than overwrite).
async fn receive(
    offer: Offer,
    downloads: PathBuf,
    mut rx: mpsc::Receiver<Ibb>,
    out: mpsc::Sender<String>,
    events: EventSender,
) {
    let outcome = match PartFile::create(&downloads, &offer).await {
        Err(e) => Err(e),
        Ok(mut part) => {
            let outcome = loop {
                let Some(msg) = rx.recv().await else {
                    break Err(ReceiveError::SenderGone);
                };
                let (iq, step) = match msg {
                    Ibb::Data { seq, bytes, iq } => {
                        (iq, part.write(seq, &bytes).await.map(|_| None))
                    }
                    Ibb::Close { iq } => (iq, part.save(&downloads, &offer).await.map(Some)),
                };
                let answer = match &step {
                    Ok(_) => result_to(&iq),
                    Err(e) => {
                        let (cond, text) = e.refusal();
                        refusal(&offer.from, &iq.id, cond, text).to_xml()
                    }
                };
                auto_reply(&out, answer);
                match step {
                    Ok(None) => part.progress.update(part.got, &events),
                    Ok(Some(done)) => break Ok(done),
                    Err(e) => break Err(e),
                }
            };
            part.remove().await;
            outcome
        }
    };
    events.send(match outcome {
        Ok(done) => ClientEvent::FileReceived(done),
        Err(e) => ClientEvent::FileFailed {
            sid: offer.sid.clone(),
            name: offer.name.clone(),
            sending: false,
            reason: e.to_string(),
        },
    });
}

/// An incoming file while it arrives: written under a local name, hashed
/// as it goes.
struct PartFile {
    path: PathBuf,
    file: tokio::fs::File,
    hash: Sha256,
    /// Bytes so far.
    got: u64,
    /// The announced size.
    size: u64,
    expect_seq: u16,
    progress: Progress,
}

impl PartFile {
    /// Makes the downloads folder and a new partial file in it.
    async fn create(downloads: &Path, offer: &Offer) -> Result<PartFile, ReceiveError> {
        tokio::fs::create_dir_all(downloads)
            .await
            .map_err(|source| ReceiveError::Create {
                path: downloads.to_path_buf(),
                source,
            })?;
        let path = downloads.join(part_name());
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|source| ReceiveError::Create {
                path: path.clone(),
                source,
            })?;
        Ok(PartFile {
            path,
            file,
            hash: Sha256::new(),
            got: 0,
            size: offer.size,
            expect_seq: 0,
            progress: Progress::new(&offer.sid, &offer.name, false, offer.size),
        })
    }

    /// Writes the next block, if it is the next one and within the size.
    async fn write(&mut self, seq: u16, bytes: &[u8]) -> Result<(), ReceiveError> {
        if seq != self.expect_seq {
            return Err(ReceiveError::OutOfOrder {
                got: seq,
                due: self.expect_seq,
            });
        }
        self.got += bytes.len() as u64;
        if self.got > self.size {
            return Err(ReceiveError::TooMuch {
                announced: self.size,
            });
        }
        self.file
            .write_all(bytes)
            .await
            .map_err(|source| ReceiveError::Write {
                path: self.path.clone(),
                source,
            })?;
        self.hash.update(bytes);
        self.expect_seq = self.expect_seq.wrapping_add(1);
        Ok(())
    }

    /// Checks size and hash, then links the file to a free name.
    async fn save(&mut self, downloads: &Path, offer: &Offer) -> Result<FileDone, ReceiveError> {
        let flushed = self.file.flush().await.and(self.file.sync_all().await);
        flushed.map_err(|source| ReceiveError::Write {
            path: self.path.clone(),
            source,
        })?;
        let digest = self.hash.clone().finalize().to_vec();
        if self.got != self.size {
            return Err(ReceiveError::SizeMismatch {
                got: self.got,
                announced: self.size,
            });
        }
        if offer.sha256.as_ref().is_some_and(|h| *h != digest) {
            return Err(ReceiveError::HashMismatch);
        }
        let dest = free_path(downloads, &offer.name).ok_or_else(|| ReceiveError::NoFreeName {
            name: offer.name.clone(),
            dir: downloads.to_path_buf(),
        })?;
        tokio::fs::hard_link(&self.path, &dest)
            .await
            .map_err(|source| ReceiveError::Save {
                path: dest.clone(),
                source,
            })?;
        Ok(FileDone {
            sid: offer.sid.clone(),
            peer: offer.from.clone(),
            name: dest
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: Some(dest),
            size: self.got,
            sha256: hex(&digest),
        })
    }

    /// Deletes the partial file (saved files are linked under their name).
    async fn remove(self) {
        drop(self.file);
        let _ = tokio::fs::remove_file(&self.path).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_names_cannot_leave_the_downloads_folder() {
        assert_eq!(safe_file_name("../../etc/x"), "x");
        assert_eq!(safe_file_name("..\\..\\windows\\system.ini"), "system.ini");
        assert_eq!(safe_file_name("/etc/passwd"), "passwd");
        assert_eq!(safe_file_name("notes/"), "notes");
        assert_eq!(safe_file_name(".."), "file");
        assert_eq!(safe_file_name(".bashrc"), "bashrc");
        assert_eq!(safe_file_name("a\u{0}b\nc.txt"), "abc.txt");
        // Bidi overrides and line separators go too: `\u{202e}txt.exe`
        // would read as `exe.txt`.
        assert_eq!(safe_file_name("\u{202e}txt.exe"), "txt.exe");
        assert_eq!(safe_file_name("a\u{2028}b\u{9b}"), "ab");
        assert_eq!(safe_file_name("..."), "file");
        assert_eq!(safe_file_name(""), "file");
        let long = "é".repeat(300);
        let s = safe_file_name(&long);
        assert!(s.len() <= 200 && s.chars().all(|c| c == 'é'));
    }

    #[test]
    fn partial_files_are_named_locally_and_never_clash_with_a_saved_name() {
        let a = part_name();
        let b = part_name();
        assert_ne!(a, b);
        for p in [&a, &b] {
            assert!(p.starts_with('.') && p.ends_with(".part"), "{p}");
            assert!(!p.contains(['/', '\\']), "{p}");
            assert_ne!(safe_file_name(p), *p);
        }
    }

    #[test]
    fn free_path_never_reuses_a_name() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            free_path(d.path(), "x.txt").unwrap(),
            d.path().join("x.txt")
        );
        std::fs::write(d.path().join("x.txt"), "a").unwrap();
        assert_eq!(
            free_path(d.path(), "x.txt").unwrap(),
            d.path().join("x (1).txt")
        );
        std::fs::write(d.path().join("x (1).txt"), "a").unwrap();
        assert_eq!(
            free_path(d.path(), "x.txt").unwrap(),
            d.path().join("x (2).txt")
        );
        assert_eq!(
            free_path(d.path(), "noext").unwrap(),
            d.path().join("noext")
        );
    }
}
