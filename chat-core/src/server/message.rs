//! One-to-one messages (RFC 6121 5): routing to a full or bare JID, and
//! offline storage (XEP-0160) with delivery at the next available presence.
//!
//! A message to a resource that is online goes straight to its queue; to a
//! bare JID it goes to the account's available resources of non-negative
//! priority; with none online, a `chat` or `normal` message is stored.

use std::sync::Arc;

use protocol::stanza::MessageType;
use protocol::{Element, Jid, StanzaErrorCondition, ns};

use super::context::{Handled, Session};
use super::outbound::Delivery;
use super::router::{Router, STALL_TIMEOUT};
use crate::storage;
use crate::util::{unix_now, xmpp_datetime};

/// Offline messages read from storage at a time at sign-in: up to 1,000
/// of 64 KB are stored per account, and all at once would be 64 MB.
const OFFLINE_BATCH: usize = 32;

/// A message to a user of this server (or, bounced, of another).
pub(crate) async fn handle(
    s: &mut Session,
    mut el: Element,
    to: Jid,
    kind: MessageType,
) -> Handled {
    if to.domain() != s.domain() {
        s.bounce(
            &el,
            StanzaErrorCondition::RemoteServerNotFound,
            "this server does not federate",
        );
        return Ok(());
    }
    let Some(user) = to.local().map(str::to_string) else {
        s.bounce(
            &el,
            StanzaErrorCondition::ServiceUnavailable,
            "the server does not take messages",
        );
        return Ok(());
    };
    // Only this server says what its archive ids are (XEP-0359).
    super::archive::strip_forged_ids(&mut el, s.domain());
    let archived = (kind == MessageType::Chat || kind == MessageType::Normal)
        && super::archive::on(&s.shared)
        && el.has_child("body", ns::CLIENT);
    let archive_id = archived.then(|| s.shared.storage.next_archive_id());
    if let Some(id) = archive_id {
        // Delivered with the id it has in the recipient's archive.
        el.children
            .push(protocol::Node::Element(super::archive::stanza_id(
                id,
                &format!("{user}@{}", s.domain()),
            )));
    }
    let xml: Arc<str> = Arc::from(el.to_xml());
    if xml.len() > s.max_stanza() {
        // Measured as it will be delivered: the client's bytes were
        // within the limit, but the server stamped a `from` and
        // re-escaped the text (an 11 KB body of `>` is 44 KB of `&gt;`).
        s.bounce_too_large(&el, xml.len());
        return Ok(());
    }
    if let Some(id) = archive_id {
        super::archive::keep(s, &el, &user, id).await;
    }
    let router = &s.shared.router;
    let carbons = carbon_eligible(&el, kind);
    if carbons {
        // The sender's other sessions see what it sent (XEP-0280 "sent").
        router.send_carbons(&s.user, &[s.jid.resource().unwrap_or_default()], |res| {
            carbon("sent", &el, &s.bare, res)
        });
    }
    if let Some(res) = to.resource()
        && router.send_to_resource_wait(&user, res, &xml).await == Delivery::Queued
    {
        if carbons {
            // The recipient's other sessions see what it received. A
            // message to the bare JID reaches every available session of
            // non-negative priority already, so it needs no copy.
            let bare = to.to_bare();
            router.send_carbons(&user, &[res], |r| carbon("received", &el, &bare, r));
        }
        return Ok(());
    }
    // To a bare JID, or to a resource that has gone (RFC 6121 8.5.3.2.1).
    match kind {
        MessageType::Groupchat => {
            s.bounce(&el, StanzaErrorCondition::ServiceUnavailable, "not a room");
        }
        MessageType::Error | MessageType::Headline => {
            router.send_to_available(&user, &xml, Some(0), None);
        }
        _ => {
            let got = router.send_to_available_wait(&user, &xml, Some(0)).await;
            // Nothing to read later in a message without a body (a chat
            // state, a receipt) or one marked `no-store` (XEP-0334): kept,
            // it would replay "is typing" hours later (XEP-0160 section 3).
            let keep = el.has_child("body", ns::CLIENT) && !el.has_child("no-store", ns::HINTS);
            if !got.contains(&Delivery::Queued) && keep {
                store_offline(s, el, user).await?;
            }
        }
    }
    Ok(())
}

/// Whether a message is copied to its sender's and recipient's other
/// sessions (XEP-0280 section 6): a `chat` message, unless it asks not to
/// be (`<private/>`, `<no-copy/>`) or is a carbon itself.
fn carbon_eligible(el: &Element, kind: MessageType) -> bool {
    kind == MessageType::Chat
        && !el.has_child("private", ns::CARBONS)
        && !el.has_child("no-copy", ns::HINTS)
        && !el.has_child("sent", ns::CARBONS)
        && !el.has_child("received", ns::CARBONS)
}

/// A carbon copy of `el` for `resource` of `bare`: `sent` (the account
/// sent it from another session) or `received`. Its `from` is the
/// account's own bare JID: the only sender a client may believe a carbon
/// from (a carbon from anyone else is a forgery, CVE-2017-5589).
fn carbon(dir: &str, el: &Element, bare: &Jid, resource: &str) -> Arc<str> {
    Arc::from(
        Element::new("message", ns::CLIENT)
            .attr("from", bare.to_string())
            .attr("to", format!("{bare}/{resource}"))
            .attr("type", "chat")
            .child(
                Element::new(dir, ns::CARBONS)
                    .child(Element::new("forwarded", ns::FORWARD).child(el.clone())),
            )
            .to_xml(),
    )
}

/// Offline storage (XEP-0160): stamped with the time it arrived
/// (XEP-0203) and delivered at the recipient's next available presence.
async fn store_offline(s: &Session, mut el: Element, user: String) -> Handled {
    let u = user.clone();
    if !s.db(move |c| storage::account_exists(c, &u)).await? {
        s.bounce(
            &el,
            StanzaErrorCondition::ServiceUnavailable,
            "no such user",
        );
        return Ok(());
    }
    el.children.push(protocol::Node::Element(
        Element::new("delay", ns::DELAY)
            .attr("from", s.domain())
            .attr("stamp", xmpp_datetime(unix_now())),
    ));
    let xml = el.to_xml();
    if xml.len() > s.max_stanza() {
        // Stored, it would be a poison message: undeliverable at every
        // sign-in. Refuse it now, while the sender can hear why.
        s.bounce_too_large(&el, xml.len());
        return Ok(());
    }
    let owner = user.clone();
    let stored = s
        .db(move |c| storage::store_offline(c, &owner, &xml))
        .await?;
    if !stored {
        s.bounce(
            &el,
            StanzaErrorCondition::ResourceConstraint,
            "the recipient's offline storage is full",
        );
    } else {
        // The recipient may have become available between the check that
        // sent this to storage and the write: its sign-in delivery may
        // have read the store already. Wake its sessions to read again,
        // or the message would wait for its next sign-in.
        s.shared.router.offline_released(&user);
    }
    Ok(())
}

/// Delivers stored messages at initial presence. They stay stored
/// until this session ends cleanly (see [`super::session::run`]): a message queued is
/// not a message read, and a client that drops halfway through a
/// thousand messages must get the rest next time (measured before: 983
/// of 1,000 lost). Stream management acks (XEP-0198) would let the
/// server delete each one as soon as the client confirms it.
pub(crate) async fn deliver_offline(s: &mut Session) -> Handled {
    let user = s.user.clone();
    let shared = s.shared.clone();
    // Ids only, claimed in the same storage call: another session of
    // the account may be delivering some right now, and each goes to one
    // session at a time. A session that goes unavailable and available
    // again finds its own claimed and reads no stanza twice (reading a
    // thousand 64 KB messages at every presence would stall the one
    // database connection for everyone).
    let ids = s
        .db(move |c| Ok(shared.claim_offline(storage::offline_ids(c, &user)?)))
        .await?;
    let mut unsendable = Vec::new();
    let mut left: &[i64] = &ids;
    'batches: while !left.is_empty() {
        let (batch, rest) = left.split_at(left.len().min(OFFLINE_BATCH));
        left = rest;
        let wanted = batch.to_vec();
        let msgs = match s.db(move |c| storage::offline_stanzas(c, &wanted)).await {
            Ok(m) => m,
            Err(end) => {
                // Not delivered: free for the next session.
                let from = ids.len() - left.len() - batch.len();
                s.shared.release_offline(&ids[from..]);
                return Err(end);
            }
        };
        for (id, xml) in msgs {
            let deadline = tokio::time::Instant::now() + STALL_TIMEOUT;
            match s.tx.send_until(Arc::from(xml), deadline).await {
                Delivery::Queued => s.offline_delivered.push(id),
                // Stored before the stanza limit was lowered: it can
                // never be delivered, and must not hold back the rest.
                Delivery::TooLarge => {
                    tracing::warn!(jid = %s.jid, id, "dropped a stored message longer than the stanza limit");
                    unsendable.push(id);
                }
                Delivery::Offline | Delivery::Overflow => {
                    // The client stopped reading or left: the rest stays
                    // stored for its next session.
                    let pos = ids.iter().position(|x| *x == id).unwrap_or(0);
                    s.shared.release_offline(&ids[pos..]);
                    Router::overflowed(&s.tx, &s.handle.kill);
                    break 'batches;
                }
            }
        }
    }
    if !unsendable.is_empty() {
        let shared = s.shared.clone();
        s.db(move |c| {
            storage::delete_offline(c, &unsendable)?;
            shared.release_offline(&unsendable);
            Ok(())
        })
        .await?;
    }
    Ok(())
}
