//! The message archive (XEP-0313 MAM, paged with XEP-0059), when the
//! server is started with `--archive-days N`: each one-to-one message with
//! a body is kept in the sender's and the recipient's archives, and a
//! user's clients page through their own archive. Each room keeps its own
//! archive too, which its occupants page through.
//!
//! A message is delivered with its archive id as a stanza-id (XEP-0359),
//! so a client that reads the archive later knows which messages it has
//! already: the id in the archive and on the message are the same. Only
//! the server may say what its archive ids are: a `<stanza-id/>` a client
//! sends claiming to be by our server is removed (a forged one would make
//! other clients skip a real message as a duplicate).
//!
//! The archive is every conversation, stored in clear on the server:
//! whoever runs the server (or steals its disk) reads it. That is what
//! end-to-end encryption is for.
//!
//! Writes are batched by one task (a transaction per batch, not per
//! message), so archiving costs the message path a channel send, not a
//! disk sync; a query first waits for what is queued to be written.

use std::sync::Arc;
use std::time::Duration;

use protocol::stanza::{Iq, IqType};
use protocol::{Element, StanzaErrorCondition, ns};
use tokio::sync::{mpsc, oneshot};

use super::context::{Handled, Session};
use super::outbound::Delivery;
use super::router::{Router, STALL_TIMEOUT};
use super::shared::Shared;
use crate::storage::{self, ArchiveQuery, ArchiveWrite as ToWriter, ToArchive};
use crate::util::{unix_now, xmpp_datetime};

/// The most a page holds (XEP-0059 `<max/>`), and the page without one.
const MAX_PAGE: i64 = 100;
const DEFAULT_PAGE: i64 = 50;

/// The writer task's queue, started on first use (inside the runtime).
fn writer(shared: &Arc<Shared>) -> &mpsc::Sender<ToWriter> {
    shared.archive.get_or_init(|| {
        shared
            .storage
            .spawn_archive_writer(shared.config.archive_days)
    })
}

/// Whether messages are archived at all.
pub(crate) fn on(shared: &Shared) -> bool {
    shared.config.archive_days > 0
}

/// `<stanza-id/>` (XEP-0359): `id` in the archive of `by`.
pub(crate) fn stanza_id(id: i64, by: &str) -> Element {
    Element::new("stanza-id", ns::SID)
        .attr("id", id.to_string())
        .attr("by", by)
}

/// Removes every `<stanza-id/>` that claims to be by this server (by an
/// account or a room on it): only the server stamps those.
pub(crate) fn strip_forged_ids(el: &mut Element, domain: &str) {
    el.children.retain(|n| match n {
        protocol::Node::Element(c) if c.is("stanza-id", ns::SID) => {
            let by = c.get_attr("by").unwrap_or("");
            let host = by
                .rsplit('@')
                .next()
                .unwrap_or("")
                .split('/')
                .next()
                .unwrap_or("");
            !(host.eq_ignore_ascii_case(domain)
                || host.to_ascii_lowercase().ends_with(&format!(".{domain}")))
        }
        _ => true,
    });
}

/// Keeps a delivered message in the sender's and the recipient's archives
/// (a message to oneself, once); `id` is the recipient's copy's, the
/// stanza-id it was delivered with.
pub(crate) async fn keep(s: &Session, el: &Element, recipient: &str, id: i64) {
    if !on(&s.shared) || !el.has_child("body", ns::CLIENT) {
        return;
    }
    // With its namespace spelled out: it is replayed inside <forwarded/>,
    // where jabber:client is not the default.
    let stanza = el.to_xml_in("");
    let stamp = unix_now();
    let domain = s.domain();
    let mut copies = vec![ToArchive {
        id: if recipient == s.user {
            id
        } else {
            s.shared.storage.next_archive_id()
        },
        owner: s.user.clone(),
        peer: format!("{recipient}@{domain}"),
        stamp,
        stanza: stanza.clone(),
    }];
    if recipient != s.user {
        copies.push(ToArchive {
            id,
            owner: recipient.to_string(),
            peer: s.bare.to_string(),
            stamp,
            stanza,
        });
    }
    let tx = writer(&s.shared);
    for c in copies {
        // Waits when the writer is behind: a slow disk slows senders
        // down rather than losing what they said.
        let _ = tx.send(ToWriter::Keep(c)).await;
    }
}

/// Keeps a room's message in the room's archive under `id` (the
/// stanza-id its occupants got). `speaker` is the occupant's room JID.
pub(crate) async fn keep_in_room(
    shared: &Arc<Shared>,
    room: &str,
    speaker: &str,
    el: &Element,
    id: i64,
) {
    if !on(shared) {
        return;
    }
    let mut copy = el.clone();
    copy.attrs.retain(|(k, _)| k != "to");
    let _ = writer(shared)
        .send(ToWriter::Keep(ToArchive {
            id,
            owner: room.to_string(),
            peer: speaker.to_string(),
            stamp: unix_now(),
            stanza: copy.to_xml_in(""),
        }))
        .await;
}

/// Waits until every message queued so far is written.
async fn flush(shared: &Arc<Shared>) {
    let (done, wait) = oneshot::channel();
    if writer(shared).send(ToWriter::Flush(done)).await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(10), wait).await;
    }
}

/// A form field's value.
fn field(form: Option<&Element>, var: &str) -> Option<String> {
    form?
        .elements()
        .find(|f| f.name == "field" && f.get_attr("var") == Some(var))?
        .child_text("value", ns::DATA_FORMS)
}

/// `<query xmlns='urn:xmpp:mam:2'>` to the user's own archive: the page's
/// messages, each wrapped in `<result><forwarded/></result>`, then
/// `<fin/>` with the page's bounds.
pub(crate) async fn query(s: &mut Session, iq: &Iq) -> Handled {
    let owner = s.user.clone();
    let from = s.bare.to_string();
    query_archive(s, iq, owner, from, false).await
}

/// The same for a room's archive (the caller checked the asker is in the
/// room): `with` is an occupant's room JID, kept whole.
pub(crate) async fn query_room(s: &mut Session, iq: &Iq, room: &str) -> Handled {
    query_archive(s, iq, room.to_string(), room.to_string(), true).await
}

/// A query to archive `owner`, whose results come from `from`.
async fn query_archive(
    s: &mut Session,
    iq: &Iq,
    owner: String,
    from: String,
    room: bool,
) -> Handled {
    let Some(q) = iq.payload.as_ref() else {
        return Ok(());
    };
    if iq.kind != IqType::Set {
        s.iq_error(
            iq,
            StanzaErrorCondition::FeatureNotImplemented,
            "no query form here: send the query (type set) with its filters",
        );
        return Ok(());
    }
    if s.shared.config.archive_days == 0 {
        s.iq_error(
            iq,
            StanzaErrorCondition::ServiceUnavailable,
            "this server keeps no archive (start it with --archive-days)",
        );
        return Ok(());
    }
    let form = q.get_child("x", ns::DATA_FORMS);
    let time = |var: &str| -> Result<Option<i64>, String> {
        field(form, var)
            .map(|v| {
                crate::util::parse_xmpp_datetime(v.trim())
                    .ok_or_else(|| format!("{var} '{v}' is not an XMPP date-time"))
            })
            .transpose()
    };
    let rsm = q.get_child("set", ns::RSM);
    let id = |name: &str| -> Result<Option<Option<i64>>, String> {
        let Some(e) = rsm.and_then(|r| r.get_child(name, ns::RSM)) else {
            return Ok(None);
        };
        let t = e.text_content();
        if t.trim().is_empty() {
            return Ok(Some(None));
        }
        t.trim()
            .parse()
            .map(|v| Some(Some(v)))
            .map_err(|_| format!("<{name}>{t}</{name}> is not an id of this archive"))
    };
    let parsed = (|| -> Result<ArchiveQuery, String> {
        Ok(ArchiveQuery {
            with: field(form, "with").map(|w| {
                if room {
                    w.trim().to_string()
                } else {
                    w.split('/').next().unwrap_or("").to_lowercase()
                }
            }),
            start: time("start")?,
            end: time("end")?,
            after: id("after")?.flatten(),
            before: id("before")?,
            max: rsm
                .and_then(|r| r.child_text("max", ns::RSM))
                .and_then(|m| m.trim().parse::<i64>().ok())
                .map_or(DEFAULT_PAGE, |m| m.clamp(1, MAX_PAGE)),
        })
    })();
    let aq = match parsed {
        Ok(q) => q,
        Err(why) => {
            s.iq_error(iq, StanzaErrorCondition::BadRequest, &why);
            return Ok(());
        }
    };
    flush(&s.shared).await;
    let (page, complete) = s.db(move |c| storage::archive_page(c, &owner, &aq)).await?;
    let queryid = q.get_attr("queryid").map(str::to_string);
    for m in &page {
        let mut result = Element::new("result", ns::MAM).attr("id", m.id.to_string());
        if let Some(qid) = &queryid {
            result = result.attr("queryid", qid.clone());
        }
        // The stored message goes in as XML: it is our own serialisation.
        let xml = format!(
            "<message xmlns='jabber:client' from='{bare}' to='{jid}'>{result_open}<forwarded xmlns='{fwd}'><delay xmlns='{delay}' stamp='{stamp}'/>{stanza}</forwarded></result></message>",
            bare = protocol::element::escape(&from),
            jid = protocol::element::escape(&s.jid.to_string()),
            result_open = result.to_xml().trim_end_matches("/>").to_string() + ">",
            fwd = ns::FORWARD,
            delay = ns::DELAY,
            stamp = xmpp_datetime(m.stamp),
            stanza = m.stanza,
        );
        // A page can be 100 stanzas near the size limit, more than a
        // session's queue holds: wait for the client to read, as offline
        // delivery does, rather than cut it off for asking.
        let deadline = tokio::time::Instant::now() + STALL_TIMEOUT;
        match s.tx.send_until(Arc::from(xml), deadline).await {
            Delivery::Queued => {}
            // Kept near the limit, wrapped it is over: skipped, not fatal.
            Delivery::TooLarge => {
                tracing::warn!(jid = %s.jid, id = m.id, "an archived message is too large to send wrapped");
            }
            Delivery::Offline | Delivery::Overflow => {
                Router::overflowed(&s.tx, &s.handle.kill);
                return Ok(());
            }
        }
    }
    let mut set = Element::new("set", ns::RSM);
    if let (Some(first), Some(last)) = (page.first(), page.last()) {
        set = set
            .child(Element::new("first", ns::RSM).text(first.id.to_string()))
            .child(Element::new("last", ns::RSM).text(last.id.to_string()));
    }
    let fin = Element::new("fin", ns::MAM)
        .attr("complete", if complete { "true" } else { "false" })
        .child(set);
    s.iq_result(iq, Some(fin));
    Ok(())
}
