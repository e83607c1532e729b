//! Presence and rosters (RFC 6121): broadcast to subscribers, probes at sign
//! in, the four-step subscription handshake, and roster get, set and push.
//!
//! Presence is private by default: a user's availability and status go only
//! to contacts the user approved (`subscription` from or both). That approval
//! step is what stops a stranger from tracking when someone is online.

//!
//! Subscriptions (who may see whom) are in [`super::roster::subscription`];
//! this module sends presence to whoever they allow.

use std::sync::Arc;

use protocol::stanza::{Presence, PresenceType};
use protocol::{Element, Jid, StanzaErrorCondition};

use super::context::{Failure, Handled, Session};
use super::{message, rooms};
use crate::storage::{self, RosterRow};

pub(crate) fn presence_xml(from: &str, to: Option<&str>, kind: PresenceType) -> Arc<str> {
    let mut p = Presence::new(kind).to_element().attr("from", from);
    if let Some(t) = to {
        p = p.attr("to", t);
    }
    Arc::from(p.to_xml())
}

/// A presence that is not a subscription: broadcast availability when it
/// has no `to`, directed presence when it has one.
pub(crate) async fn handle(s: &mut Session, p: Presence, el: Element, to: Option<Jid>) -> Handled {
    match (p.kind, to) {
        (PresenceType::Available | PresenceType::Unavailable, None) => broadcast(s, p, el).await,
        // Probes are the server's to send (RFC 6121 4.3): a client's is
        // ignored.
        (PresenceType::Probe, _) => Ok(()),
        (_, Some(to)) => {
            directed(s, &el, &to);
            Ok(())
        }
        (_, None) => {
            s.bounce(
                &el,
                StanzaErrorCondition::BadRequest,
                "this presence needs a 'to'",
            );
            Ok(())
        }
    }
}

/// Directed presence: straight to the addressee.
fn directed(s: &Session, el: &Element, to: &Jid) {
    let Some(user) = s.local_user(to) else {
        return;
    };
    let xml: Arc<str> = Arc::from(el.to_xml());
    match to.resource() {
        Some(r) => {
            s.shared.router.send_to_resource(user, r, &xml);
        }
        None => {
            s.shared.router.send_to_available(user, &xml, None, None);
        }
    }
}

/// The user names of contacts that may see this user's presence.
async fn subscribers(s: &Session) -> Result<Vec<RosterRow>, Failure> {
    let user = s.user.clone();
    s.db(move |c| storage::roster_rows(c, &user)).await
}

fn contact_user<'r>(s: &Session, row: &'r RosterRow) -> Option<&'r str> {
    let (local, domain) = row.contact.split_once('@')?;
    (domain == s.domain()).then_some(local)
}

/// Broadcast presence (RFC 6121 4.2, 4.4, 4.5).
async fn broadcast(s: &mut Session, p: Presence, mut el: Element) -> Handled {
    el.remove_attr("to");
    // What the client can do, for PEP notifications (XEP-0163 via
    // XEP-0115).
    super::pep::ask_capabilities(s, &el);
    let available = p.kind == PresenceType::Available;
    if !available {
        // Going unavailable takes the user out of every room too
        // (XEP-0045 7.14: the server acts for the client here).
        rooms::leave_all(s).await;
    }
    let xml: Arc<str> = Arc::from(el.to_xml());
    let initial = s.shared.router.set_presence(
        &s.user,
        s.handle.id,
        available,
        p.priority,
        Some(xml.clone()),
    );
    let rows = subscribers(s).await?;
    fan_out(s, &rows, &xml);
    if !available {
        // Unavailable does not go back to its sender through the router
        // (it is no longer available), so echo it.
        s.to_self(xml);
        return Ok(());
    }
    if initial {
        // Probes: the current presence of everyone the user follows.
        for row in rows.iter().filter(|r| r.subscription.has_to()) {
            if let Some(u) = contact_user(s, row) {
                for online in s.shared.router.available(u) {
                    if let Some(pres) = online.presence {
                        s.to_self(pres);
                    }
                }
            }
        }
        // Subscription requests that arrived while the user was away.
        for row in rows.iter().filter(|r| r.pending_in) {
            s.to_self(presence_xml(&row.contact, None, PresenceType::Subscribe));
        }
        message::deliver_offline(s).await?;
    }
    Ok(())
}

/// Unavailable presence on disconnect, to everyone who saw us available.
pub(crate) async fn broadcast_unavailable(s: &Session) {
    let xml = presence_xml(&s.jid.to_string(), None, PresenceType::Unavailable);
    let rows = subscribers(s).await.unwrap_or_default();
    fan_out(s, &rows, &xml);
}

/// Sends a broadcast presence to every contact allowed to see it
/// (subscription from or both) and to the user's own available
/// resources, this one included (RFC 6121 4.2.2).
fn fan_out(s: &Session, rows: &[RosterRow], xml: &Arc<str>) {
    for row in rows.iter().filter(|r| r.subscription.has_from()) {
        if let Some(u) = contact_user(s, row) {
            s.shared.router.send_to_available(u, xml, None, None);
        }
    }
    s.shared.router.send_to_available(&s.user, xml, None, None);
}
