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

use super::api::Client;
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
            let offer = Element::new("si", ns::SI)
                .attr("id", sid.clone())
                .attr("profile", ns::SI_FILE)
                .attr("mime-type", "application/octet-stream")
                .child(
                    Element::new("file", ns::SI_FILE)
                        .attr("name", name.clone())
                        .attr("size", size.to_string())
                        .child(
                            Element::new("hash", ns::HASHES)
                                .attr("algo", "sha-256")
                                .text(B64.encode(&sha)),
                        ),
                )
                .child(
                    Element::new("feature", ns::FEATURE_NEG).child(
                        Element::new("x", ns::DATA_FORMS)
                            .attr("type", "form")
                            .child(
                                Element::new("field", ns::DATA_FORMS)
                                    .attr("var", "stream-method")
                                    .attr("type", "list-single")
                                    .child(Element::new("option", ns::DATA_FORMS).text_child(
                                        "value",
                                        ns::DATA_FORMS,
                                        ns::IBB,
                                    )),
                            ),
                    ),
                );
            // The receiver may take a while to decide: a longer wait than
            // other requests get.
            let answer = iq
                .iq_timeout(
                    IqType::Set,
                    Some(to.clone()),
                    offer,
                    "offering the file",
                    OFFER_TIMEOUT,
                )
                .await?;
            let method = answer
                .payload
                .as_ref()
                .and_then(|si| si.get_child("feature", ns::FEATURE_NEG))
                .and_then(|f| f.get_child("x", ns::DATA_FORMS))
                .and_then(|x| x.get_child("field", ns::DATA_FORMS))
                .and_then(|f| f.child_text("value", ns::DATA_FORMS));
            if method.as_deref() != Some(ns::IBB) {
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
            let mut file = tokio::fs::File::open(&path).await.map_err(cant)?;
            let mut buf = vec![0u8; IBB_BLOCK_SIZE];
            let mut seq: u16 = 0;
            let mut sent = 0u64;
            let mut in_flight = std::collections::VecDeque::new();
            let mut progress = Progress::new(&sid, &name, true, size);
            loop {
                let k = read_full(&mut file, &mut buf).await.map_err(cant)?;
                if k == 0 {
                    break;
                }
                let data = Element::new("data", ns::IBB)
                    .attr("sid", sid.clone())
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
                if let Some(ev) = &events {
                    progress.update(sent, ev);
                }
            }
            for f in in_flight {
                f.await?;
            }
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
    let Some(payload) = iq.payload.as_ref() else {
        return false;
    };
    let Some(from) = iq.from.clone() else {
        return false;
    };
    let send = |xml: String| {
        auto_reply(out, xml);
    };
    let refuse = |cond, text: &str| send(refusal(&from, &iq.id, cond, text).to_xml());
    if iq.kind != IqType::Set {
        return false;
    }
    if payload.is("si", ns::SI) {
        let Some(file) = payload.get_child("file", ns::SI_FILE) else {
            refuse(
                StanzaErrorCondition::BadRequest,
                "only the file-transfer profile is supported",
            );
            return true;
        };
        let offers_ibb = payload
            .get_child("feature", ns::FEATURE_NEG)
            .and_then(|f| f.get_child("x", ns::DATA_FORMS))
            .and_then(|x| x.get_child("field", ns::DATA_FORMS))
            .is_some_and(|f| {
                f.elements()
                    .filter(|o| o.is("option", ns::DATA_FORMS))
                    .any(|o| o.child_text("value", ns::DATA_FORMS).as_deref() == Some(ns::IBB))
            });
        let sid = payload.get_attr("id").unwrap_or_default().to_string();
        let name = safe_file_name(file.get_attr("name").unwrap_or(""));
        let size: Option<u64> = file.get_attr("size").and_then(|s| s.parse().ok());
        let sha256 = file
            .elements()
            .find(|h| h.is("hash", ns::HASHES) && h.get_attr("algo") == Some("sha-256"))
            .and_then(|h| B64.decode(h.text_content().trim()).ok());
        let mut st = lock(state);
        let policy = st.files.policy.clone();
        let reason = if !offers_ibb {
            Some((
                StanzaErrorCondition::BadRequest,
                "no stream method we support (we take In-Band Bytestreams)".to_string(),
            ))
        } else if sid.is_empty() || size.is_none() {
            Some((
                StanzaErrorCondition::BadRequest,
                "an offer needs an id and a size".to_string(),
            ))
        } else if size.unwrap_or(0) > policy.max_size {
            Some((
                StanzaErrorCondition::NotAcceptable,
                format!(
                    "the file is larger than the {} bytes this client accepts",
                    policy.max_size
                ),
            ))
        } else if st.files.offers.len() + st.files.accepted.len() + st.files.receiving.len()
            >= MAX_PENDING_OFFERS
        {
            // Waiting, accepted and arriving files together: with
            // --accept-files, a peer could otherwise start transfers without
            // end and fill the disk one maximum-size file at a time.
            Some((
                StanzaErrorCondition::ResourceConstraint,
                "too many file transfers at once".to_string(),
            ))
        } else {
            None
        };
        if let Some((cond, text)) = reason {
            drop(st);
            refuse(cond, &text);
            events.send(ClientEvent::FileFailed {
                sid,
                name,
                sending: false,
                reason: format!("refused an offer from {from}: {text}"),
            });
            return true;
        }
        let offer = Offer {
            from: from.clone(),
            iq_id: iq.id.clone(),
            sid: sid.clone(),
            name: name.clone(),
            size: size.unwrap_or(0),
            sha256,
        };
        events.send(ClientEvent::FileOffer {
            from: from.clone(),
            sid: sid.clone(),
            name,
            size: offer.size,
        });
        if policy.auto_accept {
            send(accept_reply(&offer).to_xml());
            st.files.accepted.insert((from, sid), offer);
        } else {
            st.files.offers.push(offer);
        }
        return true;
    }
    if payload.is("open", ns::IBB) {
        let sid = payload.get_attr("sid").unwrap_or_default().to_string();
        let block: usize = payload
            .get_attr("block-size")
            .and_then(|b| b.parse().ok())
            .unwrap_or(0);
        let mut st = lock(state);
        let Some(offer) = st.files.accepted.remove(&(from.clone(), sid.clone())) else {
            drop(st);
            // Only streams we accepted: anything else is someone pushing
            // bytes at us uninvited.
            refuse(
                StanzaErrorCondition::NotAcceptable,
                "no accepted offer with that sid",
            );
            return true;
        };
        if payload.get_attr("stanza").is_some_and(|s| s != "iq") {
            drop(st);
            refuse(
                StanzaErrorCondition::FeatureNotImplemented,
                "only stanza='iq' is supported",
            );
            return true;
        }
        if block == 0 || block > MAX_IBB_BLOCK_SIZE {
            drop(st);
            refuse(
                StanzaErrorCondition::ResourceConstraint,
                "block size too large",
            );
            return true;
        }
        let (tx, rx) = mpsc::channel(MAX_QUEUED_BLOCKS);
        st.files.receiving.insert((from.clone(), sid.clone()), tx);
        let downloads = st.files.policy.downloads.clone();
        drop(st);
        send(result_to(iq));
        tokio::spawn(receive(offer, downloads, rx, out.clone(), events.clone()));
        return true;
    }
    if payload.is("data", ns::IBB) || payload.is("close", ns::IBB) {
        let sid = payload.get_attr("sid").unwrap_or_default().to_string();
        let key = (from.clone(), sid);
        let mut st = lock(state);
        let Some(tx) = st.files.receiving.get(&key).cloned() else {
            drop(st);
            refuse(StanzaErrorCondition::ItemNotFound, "no such bytestream");
            return true;
        };
        let msg = if payload.name == "close" {
            st.files.receiving.remove(&key);
            Ibb::Close { iq: iq.clone() }
        } else {
            let seq = payload.get_attr("seq").and_then(|s| s.parse().ok());
            let bytes = B64.decode(payload.text_content().trim()).ok();
            match (seq, bytes) {
                (Some(seq), Some(bytes)) => Ibb::Data {
                    seq,
                    bytes,
                    iq: iq.clone(),
                },
                _ => {
                    drop(st);
                    refuse(StanzaErrorCondition::BadRequest, "bad seq or base64");
                    return true;
                }
            }
        };
        drop(st);
        match tx.try_send(msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => refuse(
                StanzaErrorCondition::ResourceConstraint,
                "too many blocks sent without waiting for their acknowledgements",
            ),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // The transfer already failed: free its slot.
                lock(state).files.receiving.remove(&key);
                refuse(
                    StanzaErrorCondition::ItemNotFound,
                    "the transfer was abandoned",
                );
            }
        }
        return true;
    }
    false
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
    let fail = |reason: String| {
        events.send(ClientEvent::FileFailed {
            sid: offer.sid.clone(),
            name: offer.name.clone(),
            sending: false,
            reason,
        });
    };
    let refuse = |iq: &Iq, cond: StanzaErrorCondition, text: &str| {
        auto_reply(&out, refusal(&offer.from, &iq.id, cond, text).to_xml());
    };
    if let Err(e) = tokio::fs::create_dir_all(&downloads).await {
        fail(format!("cannot create {}: {e}", downloads.display()));
        return;
    }
    let part = downloads.join(part_name());
    let mut file = match tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&part)
        .await
    {
        Ok(f) => f,
        Err(e) => {
            fail(format!("cannot create {}: {e}", part.display()));
            return;
        }
    };
    let mut hash = Sha256::new();
    let mut got = 0u64;
    let mut expect_seq: u16 = 0;
    let mut progress = Progress::new(&offer.sid, &offer.name, false, offer.size);
    let outcome: Result<FileDone, String> = loop {
        let Some(msg) = rx.recv().await else {
            break Err("the sender went away before finishing".into());
        };
        match msg {
            Ibb::Data { seq, bytes, iq } => {
                if seq != expect_seq {
                    refuse(
                        &iq,
                        StanzaErrorCondition::UnexpectedRequest,
                        "out-of-order block",
                    );
                    break Err(format!("block {seq} arrived when {expect_seq} was due"));
                }
                got += bytes.len() as u64;
                if got > offer.size {
                    refuse(
                        &iq,
                        StanzaErrorCondition::NotAcceptable,
                        "more data than announced",
                    );
                    break Err(format!(
                        "the sender sent more than the {} bytes it announced",
                        offer.size
                    ));
                }
                if let Err(e) = file.write_all(&bytes).await {
                    refuse(
                        &iq,
                        StanzaErrorCondition::ResourceConstraint,
                        "cannot write the file",
                    );
                    break Err(format!("cannot write {}: {e}", part.display()));
                }
                hash.update(&bytes);
                expect_seq = expect_seq.wrapping_add(1);
                auto_reply(&out, result_to(&iq));
                progress.update(got, &events);
            }
            Ibb::Close { iq } => {
                if let Err(e) = file.flush().await.and(file.sync_all().await) {
                    refuse(
                        &iq,
                        StanzaErrorCondition::ResourceConstraint,
                        "cannot write the file",
                    );
                    break Err(format!("cannot write {}: {e}", part.display()));
                }
                let digest = hash.finalize().to_vec();
                if got != offer.size {
                    refuse(&iq, StanzaErrorCondition::NotAcceptable, "size mismatch");
                    break Err(format!("got {got} bytes, the offer said {}", offer.size));
                }
                if offer.sha256.as_ref().is_some_and(|h| *h != digest) {
                    refuse(&iq, StanzaErrorCondition::NotAcceptable, "SHA-256 mismatch");
                    break Err(
                        "the SHA-256 does not match the offer: the file was changed on the way"
                            .into(),
                    );
                }
                let Some(dest) = free_path(&downloads, &offer.name) else {
                    refuse(
                        &iq,
                        StanzaErrorCondition::ResourceConstraint,
                        "no free file name",
                    );
                    break Err(format!(
                        "no free name for {} in {}",
                        offer.name,
                        downloads.display()
                    ));
                };
                if let Err(e) = tokio::fs::hard_link(&part, &dest).await {
                    refuse(
                        &iq,
                        StanzaErrorCondition::ResourceConstraint,
                        "cannot save the file",
                    );
                    break Err(format!("cannot save {}: {e}", dest.display()));
                }
                auto_reply(&out, result_to(&iq));
                break Ok(FileDone {
                    sid: offer.sid.clone(),
                    peer: offer.from.clone(),
                    name: dest
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    path: Some(dest),
                    size: got,
                    sha256: hex(&digest),
                });
            }
        }
    };
    drop(file);
    let _ = tokio::fs::remove_file(&part).await;
    match outcome {
        Ok(done) => events.send(ClientEvent::FileReceived(done)),
        Err(reason) => fail(reason),
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
