//! HTTP file upload (XEP-0363), the XMPP half: the service
//! `upload.<domain>` hands a signed-in user a slot, a pair of URLs on the
//! server's own HTTP listener (see [`super::http`]): one to PUT the file
//! to, one to GET it from. The file then goes to whoever gets the GET URL,
//! online or not, and the chat carries only the URL.
//!
//! What the twins teach here: on `chat-plain` the listener speaks plain
//! HTTP, so the file crosses the wire readable (the sniffer rebuilds it);
//! on `chat-tls` it is HTTPS with the chat's own certificate. Either way
//! the server keeps the file and can read it: only end-to-end encryption
//! hides it from the server.
//!
//! Bounds, so that no user can fill the disk: a largest file, a quota per
//! user counting files and open slots, and slots that expire when unused.

use std::path::{Path, PathBuf};

use protocol::stanza::{Iq, IqType};
use protocol::{Element, StanzaErrorCondition, ns};

use super::config::UploadConfig;
use super::context::{Handled, Session};
use crate::storage::{SlotRefused, Upload, upload_slot};
use crate::util::unix_now;

/// Where the file of `token` is kept under the data folder.
pub(crate) fn file_path(data_dir: &Path, token: &str) -> PathBuf {
    data_dir.join("uploads").join(token)
}

/// A content type as announced, if it is one (`type/subtype`, printable,
/// short): it is sent back as a header, so nothing that could split one.
fn content_type(t: Option<&str>) -> String {
    match t {
        Some(t)
            if t.len() <= 100
                && t.contains('/')
                && t.bytes().all(|b| b.is_ascii_graphic() || b == b' ') =>
        {
            t.to_string()
        }
        _ => "application/octet-stream".into(),
    }
}

/// The service's `disco#info`: what it is, and the largest file it takes
/// (a data form, as XEP-0363 section 3 says, so clients can refuse early).
fn info(up: &UploadConfig) -> Element {
    let form = Element::new("x", ns::DATA_FORMS)
        .attr("type", "result")
        .child(
            Element::new("field", ns::DATA_FORMS)
                .attr("var", "FORM_TYPE")
                .attr("type", "hidden")
                .text_child("value", ns::DATA_FORMS, ns::HTTP_UPLOAD),
        )
        .child(
            Element::new("field", ns::DATA_FORMS)
                .attr("var", "max-file-size")
                .text_child("value", ns::DATA_FORMS, up.max_size.to_string()),
        );
    Element::new("query", ns::DISCO_INFO)
        .child(
            Element::new("identity", ns::DISCO_INFO)
                .attr("category", "store")
                .attr("type", "file")
                .attr("name", "HTTP file upload"),
        )
        .child(Element::new("feature", ns::DISCO_INFO).attr("var", ns::DISCO_INFO))
        .child(Element::new("feature", ns::DISCO_INFO).attr("var", ns::HTTP_UPLOAD))
        .child(form)
}

/// An iq to `upload.<domain>` (which exists: the server has an upload
/// listener).
pub(crate) async fn iq(s: &mut Session, iq: &Iq) -> Handled {
    let shared = s.shared.clone();
    let Some(up) = shared.config.upload.as_ref() else {
        return Ok(());
    };
    let payload = iq.payload.as_ref();
    match (iq.kind, payload) {
        (IqType::Get, Some(p)) if p.is("query", ns::DISCO_INFO) => s.iq_result(iq, Some(info(up))),
        (IqType::Get, Some(p)) if p.is("query", ns::DISCO_ITEMS) => {
            s.iq_result(iq, Some(Element::new("query", ns::DISCO_ITEMS)))
        }
        (IqType::Get, Some(p)) if p.is("request", ns::HTTP_UPLOAD) => {
            return slot(s, iq, p, up).await;
        }
        (IqType::Get | IqType::Set, _) => s.iq_error(
            iq,
            StanzaErrorCondition::FeatureNotImplemented,
            "the upload service answers disco#info and slot requests",
        ),
        _ => {}
    }
    Ok(())
}

/// A slot request (XEP-0363 section 4).
async fn slot(s: &mut Session, iq: &Iq, req: &Element, up: &UploadConfig) -> Handled {
    let size = req.get_attr("size").and_then(|v| v.parse::<u64>().ok());
    let (Some(name), Some(size)) = (req.get_attr("filename"), size) else {
        s.iq_error(
            iq,
            StanzaErrorCondition::BadRequest,
            "a slot request needs a filename and a size in bytes",
        );
        return Ok(());
    };
    if size == 0 {
        s.iq_error(iq, StanzaErrorCondition::BadRequest, "the file is empty");
        return Ok(());
    }
    if size > up.max_size {
        // The error says how large a file may be, so a client can tell
        // its user (section 4.1).
        let mut reply = iq.error_reply(
            StanzaErrorCondition::NotAcceptable,
            Some(&format!(
                "the file is {size} bytes; this server takes files up to {} bytes",
                up.max_size
            )),
        );
        reply.error = reply.error.map(|e| {
            e.child(Element::new("file-too-large", ns::HTTP_UPLOAD).text_child(
                "max-file-size",
                ns::HTTP_UPLOAD,
                up.max_size.to_string(),
            ))
        });
        s.to_self_el(&reply.to_element());
        return Ok(());
    }
    // 32 random bytes: the GET URL is the only key to the file, so it must
    // not be guessable (an attacker who could list or guess tokens would
    // read every file shared on the server).
    let mut raw = [0u8; 32];
    if getrandom::fill(&mut raw).is_err() {
        s.iq_error(
            iq,
            StanzaErrorCondition::InternalServerError,
            "no random numbers to make a slot with",
        );
        return Ok(());
    }
    let token = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw);
    let slot = Upload {
        token: token.clone(),
        owner: s.bare.to_string(),
        name: protocol::display::ascii_file_name(name),
        size,
        content_type: content_type(req.get_attr("content-type")),
        created: unix_now(),
        done: false,
    };
    let url = format!("{}/upload/{}/{}", up.base_url, slot.token, slot.name);
    let quota = up.quota;
    let before = unix_now() - up.expiry.as_secs() as i64;
    let (outcome, expired) = s.db(move |c| upload_slot(c, &slot, quota, before)).await?;
    remove_files(&s.shared.config.data_dir, &expired);
    match outcome {
        Ok(()) => {
            let answer = Element::new("slot", ns::HTTP_UPLOAD)
                .child(Element::new("put", ns::HTTP_UPLOAD).attr("url", url.as_str()))
                .child(Element::new("get", ns::HTTP_UPLOAD).attr("url", url.as_str()));
            s.iq_result(iq, Some(answer));
        }
        Err(SlotRefused::Quota(used)) => s.iq_error(
            iq,
            StanzaErrorCondition::ResourceConstraint,
            &format!(
                "upload quota reached: {used} of {} bytes used, and this file is {size}",
                up.quota
            ),
        ),
    }
    Ok(())
}

/// Deletes what the slots of `tokens` left on disk (a partial upload).
pub(crate) fn remove_files(data_dir: &Path, tokens: &[String]) {
    for t in tokens {
        let path = file_path(data_dir, t);
        for p in [path.with_extension("part"), path] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("upload: cannot delete {}: {e}", p.display()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_paths_and_types_cannot_split_headers() {
        use protocol::display::ascii_file_name;
        assert_eq!(ascii_file_name("../../etc/passwd"), "passwd");
        assert_eq!(ascii_file_name("..\\..\\boot.ini"), "boot.ini");
        assert_eq!(ascii_file_name("a b;c<script>.png"), "a_b_c_script_.png");
        assert_eq!(ascii_file_name(".."), "file");
        assert_eq!(ascii_file_name("ünï.txt"), "_n_.txt");
        assert_eq!(content_type(Some("image/png")), "image/png");
        assert_eq!(
            content_type(Some("text/html\r\nX: y")),
            "application/octet-stream"
        );
        assert_eq!(content_type(None), "application/octet-stream");
    }
}
