//! The one place that sends each stanza to the module that owns it.
//!
//! [`stanza`] stamps the sender, parses the addressee, then routes:
//! - anything to `conference.<domain>` goes to [`super::rooms`];
//! - a `<message/>` goes to [`super::message`] (or [`super::directory`]
//!   for an announcement);
//! - a `<presence/>` goes to [`super::presence`], or to
//!   [`super::roster::subscription`] for the four subscription types;
//! - an `<iq/>` is routed by its addressee and payload: to the server
//!   ([`super::service`], [`super::directory`], [`super::account`]), to the
//!   user's own account ([`super::roster`], [`super::directory`],
//!   [`super::account`]), to another account (answered on its behalf), or
//!   relayed to another user's resource (file transfers ride this path).

use std::sync::Arc;

use protocol::service::ONLINE_NODE;
use protocol::stanza::{Iq, IqType, MessageType, Presence, PresenceType};
use protocol::{Element, Jid, StanzaErrorCondition, StreamErrorCondition, ns};

use super::context::{Close, Failure, Handled, Session};
use super::outbound::Delivery;
use super::roster::subscription;
use super::{account, archive, directory, message, pep, presence, rooms, roster, service, upload};
use crate::storage;

/// Which of the three stanzas an element is (RFC 6120 8).
#[derive(Clone, Copy)]
enum Kind {
    Message,
    Presence,
    Iq,
}

/// Routes one stanza from this session to the module that owns it.
pub(crate) async fn stanza(s: &mut Session, mut el: Element) -> Handled {
    let kind = match (el.ns == ns::CLIENT, el.name.as_str()) {
        (true, "message") => Kind::Message,
        (true, "presence") => Kind::Presence,
        (true, "iq") => Kind::Iq,
        _ => {
            return Err(Failure::Close(Close::Error(
                StreamErrorCondition::UnsupportedStanzaType,
                format!("<{}> is not a stanza", el.name),
            )));
        }
    };
    // Stamp the sender with the authenticated JID, whatever the client
    // wrote: this is what stops one user from forging messages "from"
    // another (spoofing).
    el.set_attr("from", s.jid.to_string());
    let to = match el.get_attr("to").map(Jid::parse) {
        None => None,
        Some(Ok(j)) => Some(j),
        Some(Err(e)) => {
            s.bounce(&el, StanzaErrorCondition::JidMalformed, &e.to_string());
            return Ok(());
        }
    };
    if let Some(t) = &to {
        el.set_attr("to", t.to_string());
        if t.domain() == s.muc_domain() {
            return rooms::handle(s, el, t.clone()).await;
        }
    }
    match kind {
        Kind::Message => message(s, el, to).await,
        Kind::Presence => presence(s, el, to).await,
        Kind::Iq => iq(s, el, to).await,
    }
}

/// A message: to a user, or an announcement to everyone online.
async fn message(s: &mut Session, mut el: Element, to: Option<Jid>) -> Handled {
    // No `to`: a message to the sender's own account (RFC 6121 8.5.3).
    let to = match to {
        Some(t) => t,
        None => {
            el.set_attr("to", s.bare.to_string());
            s.bare.clone()
        }
    };
    if directory::is_announce(&to, s.domain()) {
        directory::announce(s, &el);
        return Ok(());
    }
    let kind = MessageType::of(&el);
    message::handle(s, el, to, kind).await
}

/// A presence: the four subscription types change rosters; the rest is
/// availability, broadcast or directed.
async fn presence(s: &mut Session, el: Element, to: Option<Jid>) -> Handled {
    let p = match Presence::from_element(&el) {
        Ok(p) => p,
        Err(e) => {
            s.bounce(&el, e.condition(), &e.to_string());
            return Ok(());
        }
    };
    match (p.kind, to) {
        (
            PresenceType::Subscribe
            | PresenceType::Subscribed
            | PresenceType::Unsubscribe
            | PresenceType::Unsubscribed,
            Some(to),
        ) => subscription::change(s, p.kind, to.to_bare(), &el).await,
        (_, to) => presence::handle(s, p, el, to).await,
    }
}

/// An iq, routed by its addressee: the user's own account, the server,
/// another account, or another user's resource.
async fn iq(s: &mut Session, el: Element, to: Option<Jid>) -> Handled {
    let iq = match Iq::from_element(&el) {
        Ok(iq) => iq,
        Err(e) => {
            s.bounce(&el, e.condition(), &e.to_string());
            return Ok(());
        }
    };
    let request = matches!(iq.kind, IqType::Get | IqType::Set);
    let Some(to) = to else {
        return account_iq(s, &iq).await;
    };
    if to.local().is_none()
        && (s.shared.config.upload.as_ref()).is_some_and(|u| to.domain() == u.domain)
    {
        return upload::iq(s, &iq).await;
    }
    if to.domain() != s.domain() {
        if request {
            s.iq_error(
                &iq,
                StanzaErrorCondition::RemoteServerNotFound,
                "this server does not federate",
            );
        }
        return Ok(());
    }
    let Some(user) = to.local() else {
        if to.resource().is_none() {
            server_iq(s, &iq).await?;
        } else if request {
            s.iq_error(
                &iq,
                StanzaErrorCondition::ServiceUnavailable,
                "no such service",
            );
        }
        return Ok(());
    };
    if to.is_bare() {
        if to == s.bare {
            return account_iq(s, &iq).await;
        }
        if request {
            other_account_iq(s, &iq, user.to_string()).await?;
        }
        return Ok(());
    }
    let res = to.resource().unwrap_or_default();
    let xml: Arc<str> = Arc::from(el.to_xml());
    if s.shared.router.send_to_resource(user, res, &xml) != Delivery::Queued && request {
        s.iq_error(
            &iq,
            StanzaErrorCondition::ServiceUnavailable,
            "that resource is not online",
        );
    }
    Ok(())
}

/// `Some(true)` for XEP-0280's `<enable/>`, `Some(false)` for `<disable/>`.
fn carbons_request(iq: &Iq) -> Option<bool> {
    if iq.kind != IqType::Set {
        return None;
    }
    if payload_is(iq, "enable", ns::CARBONS) {
        Some(true)
    } else if payload_is(iq, "disable", ns::CARBONS) {
        Some(false)
    } else {
        None
    }
}

/// Turns this session's carbons on or off.
fn set_carbons(s: &Session, iq: &Iq, on: bool) {
    s.shared.router.set_carbons(&s.user, s.handle.id, on);
    s.iq_result(iq, None);
}

fn payload_is(iq: &Iq, name: &str, namespace: &str) -> bool {
    iq.payload.as_ref().is_some_and(|p| p.is(name, namespace))
}

/// An iq to the server itself.
async fn server_iq(s: &mut Session, iq: &Iq) -> Handled {
    if pep::capabilities_answer(s, iq).await? {
        return Ok(());
    }
    let get = iq.kind == IqType::Get;
    let set = iq.kind == IqType::Set;
    if get && payload_is(iq, "query", ns::DISCO_INFO) {
        s.iq_result(iq, Some(service::server_info()));
    } else if get
        && payload_is(iq, "query", ns::DISCO_ITEMS)
        && iq.payload.as_ref().and_then(|p| p.get_attr("node")) == Some(ONLINE_NODE)
    {
        directory::online_items(s, iq);
    } else if payload_is(iq, "query", ns::SEARCH) {
        return directory::search(s, iq).await;
    } else if get && payload_is(iq, "query", ns::DISCO_ITEMS) {
        s.iq_result(
            iq,
            Some(service::server_items(
                s.muc_domain(),
                s.shared.config.upload.as_ref().map(|u| u.domain.as_str()),
            )),
        );
    } else if get && payload_is(iq, "ping", ns::PING) {
        s.iq_result(iq, None);
    } else if get && payload_is(iq, "query", ns::VERSION) {
        s.iq_result(iq, Some(service::version()));
    } else if set && payload_is(iq, "session", ns::SESSION) {
        s.iq_result(iq, None);
    } else if let Some(on) = carbons_request(iq) {
        set_carbons(s, iq, on);
    } else if payload_is(iq, "query", ns::REGISTER) {
        return account::register_iq(s, iq).await;
    } else if matches!(iq.kind, IqType::Get | IqType::Set) {
        s.iq_error(
            iq,
            StanzaErrorCondition::ServiceUnavailable,
            "not supported",
        );
    }
    Ok(())
}

/// An iq with no `to`, or to the user's own bare JID: the server answers
/// on behalf of the account.
async fn account_iq(s: &mut Session, iq: &Iq) -> Handled {
    let get = iq.kind == IqType::Get;
    if pep::is_pubsub(iq) {
        return pep::iq(s, iq, s.user.clone()).await;
    }
    if payload_is(iq, "query", ns::MAM) {
        return archive::query(s, iq).await;
    }
    if payload_is(iq, "query", ns::ROSTER) {
        return roster::iq(s, iq).await;
    }
    if payload_is(iq, "query", ns::REGISTER) {
        return account::register_iq(s, iq).await;
    }
    if payload_is(iq, "vCard", ns::VCARD) {
        return match iq.kind {
            IqType::Get => directory::vcard_get(s, iq, s.user.clone()).await,
            IqType::Set => directory::vcard_set(s, iq).await,
            _ => Ok(()),
        };
    }
    if get && payload_is(iq, "query", ns::DISCO_INFO) {
        s.iq_result(
            iq,
            Some(service::account_info(s.shared.config.archive_days > 0)),
        );
        return Ok(());
    }
    if let Some(on) = carbons_request(iq) {
        set_carbons(s, iq, on);
        return Ok(());
    }
    if get && payload_is(iq, "query", ns::DISCO_ITEMS) {
        s.iq_result(iq, Some(Element::new("query", ns::DISCO_ITEMS)));
        return Ok(());
    }
    if payload_is(iq, "ping", ns::PING) || payload_is(iq, "session", ns::SESSION) {
        s.iq_result(iq, None);
        return Ok(());
    }
    if iq.to.is_none() && !matches!(iq.kind, IqType::Get | IqType::Set) {
        // A client's answer to a roster push: nothing to do.
        return Ok(());
    }
    if matches!(iq.kind, IqType::Get | IqType::Set) {
        s.iq_error(
            iq,
            StanzaErrorCondition::ServiceUnavailable,
            "not supported",
        );
    }
    Ok(())
}

/// An iq to another user's bare JID, answered by the server on that
/// account's behalf (RFC 6121 8.5.2.1.3 and XEP-0030 for accounts).
async fn other_account_iq(s: &mut Session, iq: &Iq, user: String) -> Handled {
    let u = user.clone();
    let exists =
        s.shared.router.is_online(&user) || s.db(move |c| storage::account_exists(c, &u)).await?;
    if !exists {
        s.iq_error(iq, StanzaErrorCondition::ServiceUnavailable, "no such user");
    } else if pep::is_pubsub(iq) {
        return pep::iq(s, iq, user).await;
    } else if iq.kind == IqType::Get && payload_is(iq, "query", ns::DISCO_INFO) {
        s.iq_result(
            iq,
            Some(service::account_info(s.shared.config.archive_days > 0)),
        );
    } else if iq.kind == IqType::Get && payload_is(iq, "vCard", ns::VCARD) {
        // Anyone's public profile, answered by the server for them.
        return directory::vcard_get(s, iq, user).await;
    } else {
        s.iq_error(
            iq,
            StanzaErrorCondition::ServiceUnavailable,
            "not supported",
        );
    }
    Ok(())
}
