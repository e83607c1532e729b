//! Files shared through the server (HTTP file upload, XEP-0363): the file
//! goes to the server's upload service, and the recipient gets its URL in
//! a message (the body, and XEP-0066 out-of-band data), which it can
//! download whenever it likes: the recipient may be offline, or a room.
//!
//! Whoever has the URL can download the file, and the server keeps it: it
//! is end-to-end encrypted only if the file itself is (the OMEMO lab).
//! Receiving is guarded as direct transfers are (`files`): nothing is
//! downloaded until accepted, the name is made safe, nothing is
//! overwritten, and a download stops at the size limit.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use protocol::stanza::{IqType, Message, MessageType};
use protocol::{Element, Jid, ns};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::disk::{Outgoing, hex, outgoing};
use super::http;
use super::names::{free_path, part_name, received, safe_file_name, saved};
use super::progress::Progress;
use crate::client::api::{Client, IqSender};
use crate::client::error::ClientError;
use crate::client::event::{ClientEvent, EventSender, FileDone};
use crate::client::limits::MAX_PENDING_OFFERS;
use crate::client::state::{Offer, State, UploadService, Web, lock, muc_domain};
use crate::util::random_id;

/// Service discovery asks at most this many of the server's items whether
/// they are an upload service.
const MAX_ITEMS_ASKED: usize = 20;
/// After this many seconds a download must have averaged at least
/// [`MIN_BYTES_PER_SEC`], or it is stopped.
const SLOW_AFTER_SECS: u64 = 30;
const MIN_BYTES_PER_SEC: u64 = 4 * 1024;

impl Client {
    /// The server's upload service, found by service discovery (XEP-0030)
    /// the first time and remembered: `None` when the server has none.
    pub fn upload_service(
        &self,
    ) -> impl Future<Output = Result<Option<UploadService>, ClientError>> + Send + 'static {
        let known = lock(&self.state).files.upload.clone();
        let iq = self.iq_sender();
        let state = self.state.clone();
        let domain = Jid::parse(self.jid.domain());
        async move {
            if let Some(known) = known {
                return Ok(known);
            }
            let domain = domain.map_err(|source| ClientError::BadJid {
                jid: String::new(),
                source,
            })?;
            let found = discover(&iq, domain).await?;
            lock(&state).files.upload = Some(found.clone());
            Ok(found)
        }
    }

    /// Whether `/sendfile` to `to` goes through the upload service: for a
    /// room we are in (a room has no one to stream a file to), and for a
    /// contact with no resource online (who may pick it up later). An
    /// online contact gets a direct transfer, which the server never
    /// keeps.
    /// A full JID (an occupant of a room too) always gets a direct,
    /// private transfer.
    pub fn shares_by_upload(&self, to: &Jid) -> bool {
        let st = lock(&self.state);
        to.is_bare() && (joined(&st, to) || !st.online.keys().any(|j| j.to_bare() == *to))
    }

    /// Uploads a file to the server's upload service and sends its URL to
    /// `to`: a chat message, or a groupchat message to a room we are in.
    /// `offered_name` replaces the file's own name.
    pub fn share_file(
        &self,
        to: &Jid,
        path: &Path,
        offered_name: Option<&str>,
    ) -> impl Future<Output = Result<FileDone, ClientError>> + Send + 'static {
        let service = self.upload_service();
        let iq = self.iq_sender();
        let events = self.events_tx.upgrade();
        let (web, room) = {
            let st = lock(&self.state);
            (st.files.web.clone(), joined(&st, to))
        };
        // A room we are not in would bounce the message (after the upload).
        let not_joined = !room && to.is_bare() && to.domain() == muc_domain(&self.jid);
        let to = to.clone();
        let path = path.to_path_buf();
        let offered_name = offered_name.map(str::to_string);
        async move {
            if not_joined {
                return Err(ClientError::JoinFirst(to));
            }
            let service = service.await?.ok_or(ClientError::NoUploadService)?;
            let web = web.ok_or(ClientError::NoUploadService)?;
            let Outgoing { name, size, sha } =
                outgoing(&path, offered_name, service.max_size).await?;
            let slot = iq
                .iq(
                    IqType::Get,
                    Some(service.jid.clone()),
                    Element::new("request", ns::HTTP_UPLOAD)
                        .attr("filename", name.as_str())
                        .attr("size", size.to_string())
                        .attr("content-type", "application/octet-stream"),
                    "asking for an upload slot",
                )
                .await?;
            let Slot { put, headers, get } = slot_urls(slot.payload.as_ref()).ok_or_else(|| {
                ClientError::Unexpected("an upload slot without PUT and GET URLs".into())
            })?;
            let scheme = web.0.scheme();
            let put = http::parse_url(&put, scheme)?;
            let get = http::parse_url(&get, scheme)?;
            let sid = format!("u{}", random_id(8));
            let progress = events.map(|ev| (Progress::new(&sid, &name, true, size), ev));
            http::put(web.0.as_ref(), &put, &headers, &path, size, progress).await?;
            iq.send(&share_message(&to, &get.url, room))?;
            Ok(FileDone {
                sid,
                peer: to,
                name,
                path: None,
                size,
                sha256: hex(&sha),
                url: Some(get.url),
            })
        }
    }
}

/// Whether `to` is a room we are in (its bare JID: a full one is an
/// occupant).
fn joined(st: &State, to: &Jid) -> bool {
    to.is_bare() && st.rooms.get(to).is_some_and(|r| r.joined)
}

/// Asks the server's items which one is an upload service.
async fn discover(iq: &IqSender, domain: Jid) -> Result<Option<UploadService>, ClientError> {
    let items = iq
        .iq(
            IqType::Get,
            Some(domain.clone()),
            Element::new("query", ns::DISCO_ITEMS),
            "looking for an upload service",
        )
        .await?;
    let mut candidates: Vec<Jid> = items
        .payload
        .iter()
        .flat_map(|q| q.elements())
        .filter(|i| i.is("item", ns::DISCO_ITEMS))
        .filter_map(|i| Jid::parse(i.get_attr("jid")?).ok())
        .take(MAX_ITEMS_ASKED)
        .collect();
    // Some servers offer it on the domain itself.
    candidates.push(domain);
    for jid in candidates {
        let Ok(info) = iq
            .iq(
                IqType::Get,
                Some(jid.clone()),
                Element::new("query", ns::DISCO_INFO),
                "looking for an upload service",
            )
            .await
        else {
            continue;
        };
        if let Some(service) = info.payload.as_ref().and_then(|q| upload_info(q, &jid)) {
            return Ok(Some(service));
        }
    }
    Ok(None)
}

/// An upload service's disco#info: the feature, and the largest file from
/// its extended information form (XEP-0128).
fn upload_info(query: &Element, jid: &Jid) -> Option<UploadService> {
    let offers = query
        .elements()
        .any(|f| f.is("feature", ns::DISCO_INFO) && f.get_attr("var") == Some(ns::HTTP_UPLOAD));
    if !offers {
        return None;
    }
    let max_size = query
        .elements()
        .filter(|x| x.is("x", ns::DATA_FORMS))
        .filter(|x| {
            x.elements().any(|f| {
                f.get_attr("var") == Some("FORM_TYPE")
                    && f.child_text("value", ns::DATA_FORMS).as_deref() == Some(ns::HTTP_UPLOAD)
            })
        })
        .flat_map(|x| x.elements())
        .find(|f| f.get_attr("var") == Some("max-file-size"))
        .and_then(|f| f.child_text("value", ns::DATA_FORMS))
        .and_then(|v| v.trim().parse().ok());
    Some(UploadService {
        jid: jid.clone(),
        max_size,
    })
}

/// A slot's PUT URL, the headers to send with it, and its GET URL.
struct Slot {
    put: String,
    headers: Vec<(String, String)>,
    get: String,
}

/// The slot in an answer. XEP-0363 allows only `Authorization`, `Cookie`
/// and `Expires` headers, without line breaks (anything else could smuggle
/// a header into the request).
fn slot_urls(slot: Option<&Element>) -> Option<Slot> {
    let slot = slot.filter(|s| s.is("slot", ns::HTTP_UPLOAD))?;
    let put = slot.get_child("put", ns::HTTP_UPLOAD)?;
    let get = slot.get_child("get", ns::HTTP_UPLOAD)?;
    let headers = put
        .elements()
        .filter(|h| h.is("header", ns::HTTP_UPLOAD))
        .filter_map(|h| {
            let name = h.get_attr("name")?;
            let value = h.text_content();
            let allowed = ["Authorization", "Cookie", "Expires"]
                .iter()
                .any(|a| a.eq_ignore_ascii_case(name));
            (allowed && !value.contains(['\r', '\n'])).then(|| (name.to_string(), value))
        })
        .collect();
    Some(Slot {
        put: put.get_attr("url")?.to_string(),
        headers,
        get: get.get_attr("url")?.to_string(),
    })
}

/// The message that shares a file: its URL as the body (what a client
/// without XEP-0066 shows) and as out-of-band data (what tells a client it
/// is a file). Chat messages ask for a receipt, as typed ones do.
fn share_message(to: &Jid, url: &str, room: bool) -> Element {
    let mut m = Message::chat(to.clone(), url);
    m.id = Some(format!("m-{}", random_id(6)));
    if room {
        m.kind = MessageType::Groupchat;
    } else {
        m.payloads.push(Element::new("request", ns::RECEIPTS));
    }
    m.payloads
        .push(Element::new("x", ns::OOB).text_child("url", ns::OOB, url));
    m.to_element()
}

/// The URL of a shared file in a message (XEP-0066), when there is one.
pub(crate) fn shared_url(m: &Message) -> Option<String> {
    m.payloads
        .iter()
        .find(|p| p.is("x", ns::OOB))
        .and_then(|x| x.child_text("url", ns::OOB))
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
}

/// A file shared with us by `from`: offered to the user (`/accept` to
/// download), or downloaded at once with `--accept-files`. Returns whether
/// it was taken as a share (a URL this twin can fetch, room for one more).
pub(crate) fn shared(
    url: &str,
    from: &Jid,
    state: &Arc<Mutex<State>>,
    events: &EventSender,
) -> bool {
    let mut st = lock(state);
    let Some(web) = st.files.web.clone() else {
        return false;
    };
    let Ok(parsed) = http::parse_url(url, web.0.scheme()) else {
        // Not ours to fetch (another scheme): the message shows the URL.
        return false;
    };
    // A short id of our own, easy to type after /accept.
    st.files.shares += 1;
    let sid = format!("f{}", st.files.shares);
    let name = safe_file_name(&parsed.name);
    if st.files.busy() >= MAX_PENDING_OFFERS {
        drop(st);
        events.send(ClientEvent::FileFailed {
            sid,
            name,
            sending: false,
            reason: format!("ignored a file shared by {from}: too many file transfers at once"),
        });
        return true;
    }
    let offer = Offer {
        from: from.clone(),
        iq_id: String::new(),
        sid: sid.clone(),
        name: name.clone(),
        size: 0,
        sha256: None,
        url: Some(parsed.url.clone()),
    };
    events.send(ClientEvent::FileShared {
        from: from.clone(),
        sid,
        name,
        url: parsed.url.clone(),
    });
    // `--accept-files` fetches only from our own server. A URL elsewhere,
    // fetched the moment it arrives, would let anyone who can message us
    // make this client connect wherever they like (a machine on our own
    // network, a server that logs our address): it waits for `/accept`.
    if st.files.policy.auto_accept && is_home(&st.files.home_hosts, parsed.host()) {
        start_download(&mut st, state, offer, events.clone());
    } else {
        st.files.offers.push(offer);
    }
    true
}

/// Whether `host` is our server's: its address, our domain, or a name
/// under our domain (`upload.localhost`).
fn is_home(home: &[String], host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    home.iter().any(|h| {
        *h == host
            || host
                .strip_suffix(h.as_str())
                .is_some_and(|p| p.ends_with('.'))
    })
}

/// Starts downloading an accepted share (its offer has a URL).
pub(super) fn start_download(
    st: &mut State,
    state: &Arc<Mutex<State>>,
    offer: Offer,
    events: EventSender,
) {
    let (Some(web), Some(url)) = (st.files.web.clone(), offer.url.clone()) else {
        return;
    };
    st.files.downloading += 1;
    let downloads = st.files.policy.downloads.clone();
    let max = st.files.policy.max_size;
    // Weak: a download does not keep a signed-out client's state alive.
    let state = Arc::downgrade(state);
    tokio::spawn(async move {
        let outcome = download(&web, &url, &offer, &downloads, max, &events).await;
        if let Some(state) = state.upgrade() {
            lock(&state).files.downloading -= 1;
        }
        events.send(received(&offer, outcome.map_err(|e| e.to_string())));
    });
}

/// Downloads a share into a partial file, then links it under a free,
/// safe name; a failure leaves nothing behind.
async fn download(
    web: &Web,
    url: &str,
    offer: &Offer,
    downloads: &Path,
    max: u64,
    events: &EventSender,
) -> Result<FileDone, ClientError> {
    let url = http::parse_url(url, web.0.scheme())?;
    let (length, mut body) = http::get(web.0.as_ref(), &url, max).await?;
    let disk = |path: &Path, source: std::io::Error| ClientError::Http {
        url: url.url.clone(),
        reason: format!("cannot write {}: {source}", path.display()),
    };
    tokio::fs::create_dir_all(downloads)
        .await
        .map_err(|e| disk(downloads, e))?;
    let part = Part(downloads.join(part_name()));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&part.0)
        .await
        .map_err(|e| disk(&part.0, e))?;
    let mut hash = Sha256::new();
    let mut got = 0u64;
    let mut progress = length.map(|n| Progress::new(&offer.sid, &offer.name, false, n));
    let started = std::time::Instant::now();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ClientError::Http {
            url: url.url.clone(),
            reason: format!("the download broke off after {got} bytes: {e}"),
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        got += data.len() as u64;
        if got > max || length.is_some_and(|n| got > n) {
            return Err(ClientError::Http {
                url: url.url.clone(),
                reason: format!(
                    "more than {} bytes: stopped",
                    length.map_or(max, |n| n.min(max))
                ),
            });
        }
        file.write_all(&data).await.map_err(|e| disk(&part.0, e))?;
        hash.update(&data);
        // A server that trickles a byte now and then (never idle long
        // enough to time out) would hold a transfer slot for ever.
        let secs = started.elapsed().as_secs();
        if secs >= SLOW_AFTER_SECS && got < secs * MIN_BYTES_PER_SEC {
            return Err(ClientError::Http {
                url: url.url.clone(),
                reason: format!(
                    "too slow: {got} bytes in {secs} s (under {} KiB/s): stopped",
                    MIN_BYTES_PER_SEC / 1024
                ),
            });
        }
        if let Some(p) = &mut progress {
            p.update(got, events);
        }
    }
    if let Some(n) = length.filter(|n| *n != got) {
        return Err(ClientError::Http {
            url: url.url.clone(),
            reason: format!("got {got} of the {n} bytes announced"),
        });
    }
    file.flush().await.map_err(|e| disk(&part.0, e))?;
    file.sync_all().await.map_err(|e| disk(&part.0, e))?;
    drop(file);
    // Another download may take the free name first: the link then fails
    // (it never overwrites), and the next free name is tried.
    let mut tries = 0;
    let dest = loop {
        let dest = free_path(downloads, &offer.name).ok_or_else(|| ClientError::Http {
            url: url.url.clone(),
            reason: format!("no free name for {} in {}", offer.name, downloads.display()),
        })?;
        match tokio::fs::hard_link(&part.0, &dest).await {
            Ok(()) => break dest,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 10 => tries += 1,
            Err(e) => return Err(disk(&dest, e)),
        }
    };
    Ok(saved(
        offer,
        dest,
        got,
        hex(&hash.finalize()),
        Some(url.url),
    ))
}

/// A partial download, deleted when dropped (done or not: a finished file
/// is hard-linked under its own name first).
struct Part(PathBuf);

impl Drop for Part {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(var: &str, value: &str) -> Element {
        Element::new("field", ns::DATA_FORMS)
            .attr("var", var)
            .text_child("value", ns::DATA_FORMS, value)
    }

    #[test]
    fn an_upload_service_is_found_with_its_limit() {
        let jid = Jid::parse("upload.localhost").unwrap();
        let info = Element::new("query", ns::DISCO_INFO)
            .child(
                Element::new("identity", ns::DISCO_INFO)
                    .attr("category", "store")
                    .attr("type", "file"),
            )
            .child(Element::new("feature", ns::DISCO_INFO).attr("var", ns::HTTP_UPLOAD))
            .child(
                Element::new("x", ns::DATA_FORMS)
                    .attr("type", "result")
                    .child(field("FORM_TYPE", ns::HTTP_UPLOAD))
                    .child(field("max-file-size", "5242880")),
            );
        assert_eq!(
            upload_info(&info, &jid),
            Some(UploadService {
                jid: jid.clone(),
                max_size: Some(5_242_880)
            })
        );
        let rooms = Element::new("query", ns::DISCO_INFO)
            .child(Element::new("feature", ns::DISCO_INFO).attr("var", ns::MUC));
        assert_eq!(upload_info(&rooms, &jid), None);
    }

    #[test]
    fn slot_headers_are_limited_to_the_three_the_xep_allows() {
        let header = |name: &str, value: &str| {
            Element::new("header", ns::HTTP_UPLOAD)
                .attr("name", name)
                .text(value)
        };
        let slot = Element::new("slot", ns::HTTP_UPLOAD)
            .child(
                Element::new("put", ns::HTTP_UPLOAD)
                    .attr("url", "https://h/p")
                    .child(header("Authorization", "Bearer x"))
                    .child(header("Host", "evil"))
                    .child(header("Cookie", "a=1\r\nX-Evil: 1")),
            )
            .child(Element::new("get", ns::HTTP_UPLOAD).attr("url", "https://h/g"));
        let Slot { put, headers, get } = slot_urls(Some(&slot)).unwrap();
        assert_eq!(put, "https://h/p");
        assert_eq!(get, "https://h/g");
        assert_eq!(
            headers,
            vec![("Authorization".to_string(), "Bearer x".to_string())]
        );
    }

    #[test]
    fn only_our_own_server_s_files_download_by_themselves() {
        let home = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        for h in ["127.0.0.1", "localhost", "upload.localhost", "LOCALHOST"] {
            assert!(is_home(&home, h), "{h}");
        }
        for h in [
            "evil.example",
            "notlocalhost",
            "127.0.0.2",
            "169.254.169.254",
            "localhost.evil",
        ] {
            assert!(!is_home(&home, h), "{h}");
        }
    }

    #[test]
    fn hostile_names_in_a_url_become_one_safe_name() {
        for (url, want) in [
            ("https://h/u/t/..%2F..%2Fetc%2Fpasswd", "passwd"),
            ("https://h/u/t/%2e%2e", "file"),
            ("https://h/u/t/a%00b%1b%5B2J.txt", "ab[2J.txt"),
            ("https://h/u/t/.bashrc", "bashrc"),
            ("https://h/u/t/report%E2%80%AEfdp.exe", "reportfdp.exe"),
        ] {
            let name = http::parse_url(url, "https").unwrap().name;
            assert_eq!(safe_file_name(&name), want, "{url}");
        }
    }

    #[test]
    fn a_share_carries_its_url_twice() {
        let to = Jid::parse("bob@localhost").unwrap();
        let m = share_message(&to, "https://127.0.0.1:1/upload/t/a.txt", false);
        let parsed = Message::from_element(&m).unwrap();
        assert_eq!(
            parsed.body.as_deref(),
            Some("https://127.0.0.1:1/upload/t/a.txt")
        );
        assert_eq!(
            shared_url(&parsed).as_deref(),
            Some("https://127.0.0.1:1/upload/t/a.txt")
        );
        assert!(parsed.requests_receipt());
        let room = Jid::parse("lab@conference.localhost").unwrap();
        let g = Message::from_element(&share_message(&room, "https://h/x", true)).unwrap();
        assert_eq!(g.kind, MessageType::Groupchat);
        assert!(!g.requests_receipt());
    }
}
