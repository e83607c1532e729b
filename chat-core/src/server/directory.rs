//! The user directory and announcements:
//! - profiles (display name, email) by vCard (XEP-0054) or registration
//!   fields (XEP-0077);
//! - listing and searching users with Jabber Search (XEP-0055) on the
//!   server's domain;
//! - who is online, as `disco#items` on the node `online users` (the node
//!   name ejabberd uses);
//! - announcements to everyone online, sent to `<domain>/announce/online`
//!   by an admin (`--admin`).
//!
//! A directory is an information leak by design: it tells anyone with an
//! account who else has one, their names and emails, and who is online now.
//! In `chat-plain` it also tells everyone on the wire.

use std::sync::Arc;

use protocol::service::{ANNOUNCE_RESOURCE, ONLINE_NODE};
use protocol::stanza::Iq;
use protocol::{Element, Jid, StanzaErrorCondition, ns, rsm};

use super::context::{Handled, Session};
use crate::storage::{self, Profile, SearchQuery};

/// Most users one page of search results lists (XEP-0059 pages through
/// the rest). Pages are also cut to fit the stanza limit: 60 users with
/// 1,000-character names made a reply that disconnected the asker.
pub const MAX_SEARCH_RESULTS: usize = rsm::MAX_PAGE_ITEMS;

/// Longest display name or email stored, in bytes.
pub const MAX_PROFILE_FIELD: usize = 256;

/// A profile field as stored: trimmed, cut to [`MAX_PROFILE_FIELD`] bytes.
fn clip(v: &str) -> String {
    let v = v.trim();
    let mut end = v.len().min(MAX_PROFILE_FIELD);
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    v[..end].to_string()
}

/// The profile fields of a registration form (`<name/>`, `<email/>`);
/// `None` for an absent field, which leaves it as it was.
pub(crate) fn registration_profile(query: &Element) -> Profile {
    let field = |n: &str| query.child_text(n, ns::REGISTER).map(|v| clip(&v));
    Profile {
        name: field("name"),
        email: field("email"),
    }
}

/// A profile as a vCard.
fn vcard(p: &Profile) -> Element {
    let mut v = Element::new("vCard", ns::VCARD);
    if let Some(n) = &p.name {
        v = v.text_child("FN", ns::VCARD, n.clone());
    }
    if let Some(e) = &p.email {
        v = v.child(
            Element::new("EMAIL", ns::VCARD)
                .child(Element::new("INTERNET", ns::VCARD))
                .text_child("USERID", ns::VCARD, e.clone()),
        );
    }
    v
}

/// vCard get for `user` (ourselves or anyone registered here).
pub(crate) async fn vcard_get(s: &Session, iq: &Iq, user: String) -> Handled {
    let p = s.db(move |c| storage::profile(c, &user)).await?;
    s.to_self_el(&iq.result(Some(vcard(&p))).to_element());
    Ok(())
}

/// vCard set of our own profile: only FN and EMAIL/USERID are kept.
pub(crate) async fn vcard_set(s: &Session, iq: &Iq) -> Handled {
    let Some(v) = iq.payload.as_ref() else {
        return Ok(());
    };
    // A vCard set replaces the whole vCard: a missing field clears it.
    let p = Profile {
        name: Some(clip(&v.child_text("FN", ns::VCARD).unwrap_or_default())),
        email: Some(clip(
            &v.get_child("EMAIL", ns::VCARD)
                .and_then(|e| e.child_text("USERID", ns::VCARD))
                .unwrap_or_default(),
        )),
    };
    let user = s.user.clone();
    s.db(move |c| storage::set_profile(c, &user, &p)).await?;
    s.to_self_el(&iq.result(None).to_element());
    Ok(())
}

/// Jabber Search on the domain: the form, or the results.
pub(crate) async fn search(s: &Session, iq: &Iq) -> Handled {
    let reply = match iq.kind {
        protocol::stanza::IqType::Get => iq.result(Some(
            Element::new("query", ns::SEARCH)
                .text_child(
                    "instructions",
                    ns::SEARCH,
                    "Fill in any field; an empty search lists every user. nick matches the user name or the display name.",
                )
                .child(Element::new("first", ns::SEARCH))
                .child(Element::new("nick", ns::SEARCH))
                .child(Element::new("email", ns::SEARCH)),
        )),
        protocol::stanza::IqType::Set => {
            let q = iq.payload.clone().unwrap_or_else(|| Element::new("query", ns::SEARCH));
            let text = |n: &str| q.child_text(n, ns::SEARCH).filter(|s| !s.trim().is_empty());
            let query = SearchQuery {
                user: text("nick"),
                name: text("first").or_else(|| text("last")),
                email: text("email"),
            };
            let after = rsm::Request::from_query(&q).after;
            let (rows, total) = s
                .db(move |c| {
                    storage::search_users(c, &query, after.as_deref(), MAX_SEARCH_RESULTS)
                })
                .await?;
            let mut items = Vec::with_capacity(rows.len());
            for (user, p) in rows {
                let mut item = Element::new("item", ns::SEARCH)
                    .attr("jid", format!("{user}@{}", s.domain()))
                    .text_child("nick", ns::SEARCH, user.clone());
                if let Some(n) = p.name {
                    item = item.text_child("first", ns::SEARCH, n);
                }
                if let Some(e) = p.email {
                    item = item.text_child("email", ns::SEARCH, e);
                }
                items.push((user, item));
            }
            s.send_page(iq, Element::new("query", ns::SEARCH), items, total, None);
            return Ok(());
        }
        _ => return Ok(()),
    };
    s.to_self_el(&reply.to_element());
    Ok(())
}

/// `disco#items` on the node `online users`: bare JIDs of users with an
/// available resource, a page at a time (XEP-0059).
pub(crate) fn online_items(s: &Session, iq: &Iq) {
    let mut users = s.shared.router.online_users();
    users.sort();
    let count = users.len();
    let after = iq
        .payload
        .as_ref()
        .and_then(|q| rsm::Request::from_query(q).after);
    let start = after.map_or(0, |a| users.partition_point(|u| u.as_str() <= a.as_str()));
    let items = users
        .into_iter()
        .skip(start)
        .map(|u| {
            let item =
                Element::new("item", ns::DISCO_ITEMS).attr("jid", format!("{u}@{}", s.domain()));
            (u, item)
        })
        .collect();
    let q = Element::new("query", ns::DISCO_ITEMS).attr("node", ONLINE_NODE);
    s.send_page(iq, q, items, count, Some(start));
}

/// A message to `<domain>/announce/online`: from an admin, it goes to
/// every available resource of every user; from anyone else it is
/// refused, or every user could be spammed at once.
pub(crate) fn announce(s: &Session, el: &Element) {
    let admin = s.shared.config.admins.contains(&s.bare);
    if !admin {
        tracing::warn!(jid = %s.jid, "announcement refused: not an admin");
        s.bounce(
            el,
            StanzaErrorCondition::Forbidden,
            "only the server's admins may announce",
        );
        return;
    }
    let Some(body) = el.child_text("body", ns::CLIENT) else {
        s.bounce(
            el,
            StanzaErrorCondition::BadRequest,
            "an announcement needs a body",
        );
        return;
    };
    let users = s.shared.router.online_users();
    tracing::info!(jid = %s.jid, users = users.len(), "announcement sent");
    for u in users {
        // From the server itself, so clients show it as the server's
        // word; the admin is named in the text.
        let m = Element::new("message", ns::CLIENT)
            .attr("from", s.domain())
            .attr("to", format!("{u}@{}", s.domain()))
            .attr("type", "headline")
            .attr("id", format!("ann-{}", crate::util::random_id(4)))
            .text_child(
                "subject",
                ns::CLIENT,
                format!("Announcement from {}", s.bare),
            )
            .text_child("body", ns::CLIENT, body.clone());
        let xml: Arc<str> = Arc::from(m.to_xml());
        s.shared.router.send_to_available(&u, &xml, None, None);
    }
}

/// True when `to` addresses the announcement service of `domain`.
pub(crate) fn is_announce(to: &Jid, domain: &str) -> bool {
    to.local().is_none() && to.domain() == domain && to.resource() == Some(ANNOUNCE_RESOURCE)
}
