//! Sending a file: the offer (XEP-0096), then the bytes over In-Band
//! Bytestreams (XEP-0047), a window of blocks at a time.

use std::future::Future;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use protocol::stanza::{Iq, IqType};
use protocol::{Element, Jid, ns};

use super::disk::{Outgoing, hex, outgoing, read_full};
use super::progress::Progress;
use crate::client::api::{Client, IqSender};
use crate::client::error::ClientError;
use crate::client::event::{EventSender, FileDone};
use crate::client::limits::{IBB_BLOCK_SIZE, IBB_WINDOW, OFFER_TIMEOUT};
use crate::client::state::lock;
use crate::util::random_id;

impl Client {
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
            let Outgoing { name, size, sha } = outgoing(&path, offered_name, None).await?;
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
                .await
                .map_err(|e| match e {
                    ClientError::Timeout(_) => ClientError::OfferUnanswered {
                        peer: to.clone(),
                        waited: OFFER_TIMEOUT,
                    },
                    e => e,
                })?;
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
            let file =
                tokio::fs::File::open(&path)
                    .await
                    .map_err(|source| ClientError::ReadFile {
                        path: path.clone(),
                        source,
                    })?;
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
                url: None,
            })
        }
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
