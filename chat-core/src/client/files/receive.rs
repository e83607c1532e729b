//! Receiving a file: offers to us (refused at once when we cannot take
//! them), `/accept` and `/reject`, the bytestream's blocks handed to a task,
//! and that task, which writes a partial file, checks it, and saves it
//! under a safe, free name (see the defences in `files`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use protocol::stanza::{Iq, IqType};
use protocol::{Element, Jid, StanzaErrorCondition, ns};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::disk::hex;
use super::names::{free_path, part_name, received, safe_file_name, saved};
use super::progress::Progress;
use super::share::start_download;
use crate::client::api::Client;
use crate::client::error::{ClientError, Lost};
use crate::client::event::{ClientEvent, EventSender, FileDone};
use crate::client::limits::{MAX_IBB_BLOCK_SIZE, MAX_PENDING_OFFERS, MAX_QUEUED_BLOCKS};
use crate::client::outbound::auto_reply;
use crate::client::state::{FilePolicy, Ibb, Offer, State, lock};

impl Client {
    /// Sets what this client accepts and where files go.
    pub fn set_file_policy(&self, policy: FilePolicy) {
        lock(&self.state).files.policy = policy;
    }

    /// Accepts a pending offer (the latest when `sid` is `None`): a
    /// direct transfer starts, or a shared file downloads.
    pub fn accept_file(&self, sid: Option<&str>) -> Result<String, ClientError> {
        let events = self.events_tx.upgrade();
        let mut st = lock(&self.state);
        let offer = take_offer(&mut st, sid)?;
        if offer.url.is_some() {
            let name = offer.name.clone();
            let Some(events) = events else {
                st.files.offers.push(offer);
                return Err(Lost::AlreadyClosed.into());
            };
            start_download(&mut st, &self.state, offer, events);
            return Ok(name);
        }
        let reply = accept_reply(&offer);
        let name = offer.name.clone();
        st.files
            .accepted
            .insert((offer.from.clone(), offer.sid.clone()), offer);
        drop(st);
        self.send(&reply)?;
        Ok(name)
    }

    /// Refuses a pending offer (the latest when `sid` is `None`). A shared
    /// file is just forgotten: its sender is not told.
    pub fn reject_file(&self, sid: Option<&str>) -> Result<String, ClientError> {
        let offer = take_offer(&mut lock(&self.state), sid)?;
        if offer.url.is_some() {
            return Ok(offer.name);
        }
        self.send(&refusal(
            &offer.from,
            &offer.iq_id,
            StanzaErrorCondition::Forbidden,
            "the user declined the file",
        ))?;
        Ok(offer.name)
    }
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
            url: None,
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
    let busy = st.files.busy();
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
    events.send(received(&offer, outcome.map_err(|e| e.to_string())));
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
        Ok(saved(offer, dest, self.got, hex(&digest), None))
    }

    /// Deletes the partial file (saved files are linked under their name).
    async fn remove(self) {
        drop(self.file);
        let _ = tokio::fs::remove_file(&self.path).await;
    }
}
