//! PEP, the Personal Eventing Protocol (XEP-0163, a profile of XEP-0060
//! pubsub): every account is a pubsub service at its own bare JID. A user
//! publishes items (an avatar, a device list, a key bundle) to nodes;
//! contacts read them, and the ones whose clients said they want a node
//! (`NODE+notify` in their entity capabilities, XEP-0115) are sent each
//! new item.
//!
//! Items persist in SQLite, bounded per account, node and item (see
//! `storage::pep`). Access models kept: `presence` (the default: the
//! owner's presence subscribers) and `open` (anyone, which OMEMO's device
//! lists and bundles ask for).

use std::sync::Arc;

use protocol::stanza::{Iq, IqType};
use protocol::{Element, Node, StanzaErrorCondition, ns};

use super::context::{Handled, Session};
use crate::storage::{
    self, MAX_PEP_ITEM_BYTES, MAX_PEP_ITEMS, PepAccess, PepConfig, PepOptions, Published,
};
use crate::util::random_id;

/// Most nodes one session's capabilities may ask notifications for.
pub(crate) const MAX_NOTIFY_NODES: usize = 64;

/// The longest node name kept.
const MAX_NODE_NAME: usize = 256;

/// The pubsub payload of an iq (`<pubsub/>` or `<pubsub xmlns='#owner'/>`),
/// if it is one.
pub(crate) fn is_pubsub(iq: &Iq) -> bool {
    iq.payload
        .as_ref()
        .is_some_and(|p| p.is("pubsub", ns::PUBSUB) || p.is("pubsub", ns::PUBSUB_OWNER))
}

/// A pubsub request to `owner`'s PEP service (the session's own account,
/// or another's when `owner` is not the session's user).
pub(crate) async fn iq(s: &mut Session, iq: &Iq, owner: String) -> Handled {
    let Some(pubsub) = iq.payload.as_ref() else {
        return Ok(());
    };
    let mine = owner == s.user;
    let first = pubsub.elements().next();
    let node = first
        .and_then(|e| e.get_attr("node"))
        .map(str::to_string)
        .unwrap_or_default();
    if node.is_empty() || node.len() > MAX_NODE_NAME {
        s.iq_error(
            iq,
            StanzaErrorCondition::BadRequest,
            "a node name (up to 256 bytes) is needed",
        );
        return Ok(());
    }
    let what = first.map(|e| e.name.to_string()).unwrap_or_default();
    match (pubsub.ns.as_str(), iq.kind, what.as_str()) {
        (ns::PUBSUB, IqType::Set, "publish") if mine => publish(s, iq, pubsub, node).await,
        (ns::PUBSUB, IqType::Set, "retract") if mine => retract(s, iq, pubsub, node).await,
        (ns::PUBSUB, IqType::Get, "items") => items(s, iq, owner, node).await,
        (ns::PUBSUB_OWNER, IqType::Set, "delete") if mine => {
            let (u, n) = (s.user.clone(), node.clone());
            if s.db(move |c| storage::pep_delete_node(c, &u, &n)).await? {
                s.iq_result(iq, None);
                // XEP-0060 8.4.2: whoever was told of its items is told
                // it is gone.
                let event = Element::new("delete", ns::PUBSUB_EVENT).attr("node", node.clone());
                return notify(s, &node, event).await;
            } else {
                s.iq_error(iq, StanzaErrorCondition::ItemNotFound, "no such node");
            }
            Ok(())
        }
        (ns::PUBSUB_OWNER, IqType::Get, "configure") if mine => {
            let (u, n) = (s.user.clone(), node.clone());
            match s.db(move |c| storage::pep_config(c, &u, &n)).await? {
                Some(config) => s.iq_result(
                    iq,
                    Some(
                        Element::new("pubsub", ns::PUBSUB_OWNER).child(
                            Element::new("configure", ns::PUBSUB_OWNER)
                                .attr("node", node)
                                .child(config_form("form", config)),
                        ),
                    ),
                ),
                None => s.iq_error(iq, StanzaErrorCondition::ItemNotFound, "no such node"),
            }
            Ok(())
        }
        (ns::PUBSUB_OWNER, IqType::Set, "configure") if mine => {
            let form = first.and_then(|c| c.get_child("x", ns::DATA_FORMS));
            let (u, n) = (s.user.clone(), node.clone());
            let current = s.db(move |c| storage::pep_config(c, &u, &n)).await?;
            let Some(current) = current else {
                s.iq_error(iq, StanzaErrorCondition::ItemNotFound, "no such node");
                return Ok(());
            };
            let config = match form.map(read_options) {
                Some(Ok(o)) => o.over(current),
                Some(Err(why)) => {
                    s.iq_error(iq, StanzaErrorCondition::NotAcceptable, &why);
                    return Ok(());
                }
                None => current,
            };
            let (u, n) = (s.user.clone(), node.clone());
            s.db(move |c| storage::pep_configure(c, &u, &n, config))
                .await?;
            s.iq_result(iq, None);
            Ok(())
        }
        (ns::PUBSUB, IqType::Set, "subscribe") => {
            // Notifications follow presence subscriptions and the
            // client's capabilities (XEP-0163), not explicit pubsub
            // subscriptions: said as XEP-0060 6.1.3.10 says it.
            let mut reply = iq.error_reply(
                StanzaErrorCondition::FeatureNotImplemented,
                Some("notifications follow presence subscriptions and +notify (XEP-0163)"),
            );
            if let Some(e) = reply.error.as_mut() {
                e.children.push(Node::Element(
                    Element::new("unsupported", ns::PUBSUB_ERRORS).attr("feature", "subscribe"),
                ));
            }
            s.to_self_el(&reply.to_element());
            Ok(())
        }
        _ if !mine && iq.kind == IqType::Set => {
            s.iq_error(
                iq,
                StanzaErrorCondition::Forbidden,
                "only the owner changes a PEP node",
            );
            Ok(())
        }
        _ => {
            s.iq_error(
                iq,
                StanzaErrorCondition::FeatureNotImplemented,
                "this PEP service publishes, retracts, lists items, configures and deletes nodes",
            );
            Ok(())
        }
    }
}

/// The node options a data form asks for (`publish-options` or a node
/// configuration): only the fields it names.
fn read_options(form: &Element) -> Result<PepOptions, String> {
    let mut options = PepOptions::default();
    for field in form.elements().filter(|f| f.name == "field") {
        let var = field.get_attr("var").unwrap_or_default();
        let value = field
            .child_text("value", ns::DATA_FORMS)
            .unwrap_or_default();
        match var {
            "pubsub#access_model" => {
                options.access = Some(PepAccess::parse(value.trim()).ok_or_else(|| {
                    format!("access model '{value}' is not kept here: open or presence")
                })?);
            }
            "pubsub#max_items" => {
                options.max_items = Some(if value.trim() == "max" {
                    MAX_PEP_ITEMS
                } else {
                    value
                        .trim()
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (1..=MAX_PEP_ITEMS).contains(n))
                        .ok_or_else(|| {
                            format!("max_items '{value}' must be 1 to {MAX_PEP_ITEMS}, or max")
                        })?
                });
            }
            // Kept whatever they say: items persist, and notifications
            // carry the payload.
            _ => {}
        }
    }
    Ok(options)
}

/// A node's configuration as a data form (`form` or `result`).
fn config_form(kind: &str, c: PepConfig) -> Element {
    let field = |var: &str, value: String| {
        Element::new("field", ns::DATA_FORMS)
            .attr("var", var)
            .child(Element::new("value", ns::DATA_FORMS).text(value))
    };
    Element::new("x", ns::DATA_FORMS)
        .attr("type", kind)
        .child(
            Element::new("field", ns::DATA_FORMS)
                .attr("var", "FORM_TYPE")
                .attr("type", "hidden")
                .child(Element::new("value", ns::DATA_FORMS).text(ns::PUBSUB_NODE_CONFIG)),
        )
        .child(field("pubsub#access_model", c.access.name().into()))
        .child(field("pubsub#max_items", c.max_items.to_string()))
}

/// `<publish node><item id>payload</item></publish>`, with optional
/// `<publish-options/>`.
async fn publish(s: &mut Session, iq: &Iq, pubsub: &Element, node: String) -> Handled {
    let publish = pubsub.get_child("publish", ns::PUBSUB);
    let item = publish.and_then(|p| p.get_child("item", ns::PUBSUB));
    let Some(payload) = item.and_then(|i| i.elements().next()) else {
        s.iq_error(
            iq,
            StanzaErrorCondition::BadRequest,
            "a publish needs one <item/> with a payload",
        );
        return Ok(());
    };
    let xml = payload.to_xml();
    if xml.len() > MAX_PEP_ITEM_BYTES {
        s.iq_error(
            iq,
            StanzaErrorCondition::NotAcceptable,
            &format!("an item holds at most {MAX_PEP_ITEM_BYTES} bytes"),
        );
        return Ok(());
    }
    let id = item
        .and_then(|i| i.get_attr("id"))
        .filter(|i| !i.is_empty() && i.len() <= MAX_NODE_NAME)
        .map(str::to_string)
        .unwrap_or_else(|| random_id(8));
    let options = match pubsub
        .get_child("publish-options", ns::PUBSUB)
        .and_then(|o| o.get_child("x", ns::DATA_FORMS))
        .map(read_options)
        .transpose()
    {
        Ok(o) => o,
        Err(why) => {
            s.iq_error(iq, StanzaErrorCondition::NotAcceptable, &why);
            return Ok(());
        }
    };
    let (u, n, i, x) = (s.user.clone(), node.clone(), id.clone(), xml.clone());
    let done = s
        .db(move |c| storage::pep_publish(c, &u, &n, options, &i, &x))
        .await?;
    match done {
        Published::Stored => {}
        Published::PreconditionNotMet(field) => {
            // XEP-0060 7.1.5: <conflict/> with pubsub's own condition.
            let why =
                format!("the node exists with another {field}: configure it, or publish without");
            let mut reply = iq.error_reply(StanzaErrorCondition::Conflict, Some(&why));
            if let Some(e) = reply.error.as_mut() {
                e.children.push(Node::Element(Element::new(
                    "precondition-not-met",
                    ns::PUBSUB_ERRORS,
                )));
            }
            s.to_self_el(&reply.to_element());
            return Ok(());
        }
        Published::TooManyNodes => {
            s.iq_error(
                iq,
                StanzaErrorCondition::ResourceConstraint,
                &format!("an account keeps at most {} nodes", storage::MAX_PEP_NODES),
            );
            return Ok(());
        }
    }
    s.iq_result(
        iq,
        Some(
            Element::new("pubsub", ns::PUBSUB).child(
                Element::new("publish", ns::PUBSUB)
                    .attr("node", node.clone())
                    .child(Element::new("item", ns::PUBSUB).attr("id", id.clone())),
            ),
        ),
    );
    let event = Element::new("items", ns::PUBSUB_EVENT)
        .attr("node", node.clone())
        .child(
            Element::new("item", ns::PUBSUB_EVENT)
                .attr("id", id)
                .child(payload.clone()),
        );
    notify(s, &node, event).await
}

/// `<retract node notify><item id/></retract>`.
async fn retract(s: &mut Session, iq: &Iq, pubsub: &Element, node: String) -> Handled {
    let asked = pubsub
        .get_child("retract", ns::PUBSUB)
        .and_then(|r| r.get_attr("notify"))
        .is_some_and(|n| n == "true" || n == "1");
    let Some(id) = pubsub
        .get_child("retract", ns::PUBSUB)
        .and_then(|r| r.get_child("item", ns::PUBSUB))
        .and_then(|i| i.get_attr("id"))
        .map(str::to_string)
    else {
        s.iq_error(
            iq,
            StanzaErrorCondition::BadRequest,
            "which item? <item id=.../>",
        );
        return Ok(());
    };
    let (u, n, i) = (s.user.clone(), node.clone(), id.clone());
    if !s.db(move |c| storage::pep_retract(c, &u, &n, &i)).await? {
        s.iq_error(iq, StanzaErrorCondition::ItemNotFound, "no such item");
        return Ok(());
    }
    s.iq_result(iq, None);
    if !asked {
        // XEP-0060 7.2.2.1: notified when the publisher asks.
        return Ok(());
    }
    let event = Element::new("items", ns::PUBSUB_EVENT)
        .attr("node", node.clone())
        .child(Element::new("retract", ns::PUBSUB_EVENT).attr("id", id));
    notify(s, &node, event).await
}

/// `<items node [max_items]/>`: the node's items, for its owner and for
/// whoever its access model admits.
async fn items(s: &mut Session, iq: &Iq, owner: String, node: String) -> Handled {
    let request = iq
        .payload
        .as_ref()
        .and_then(|p| p.get_child("items", ns::PUBSUB));
    // Items asked for by id (XEP-0060 6.5.8): just those (OMEMO 2 fetches
    // one device's bundle from a node holding every device's).
    let ids: Vec<String> = request
        .iter()
        .flat_map(|r| r.elements())
        .filter(|e| e.is("item", ns::PUBSUB))
        .filter_map(|e| e.get_attr("id").map(str::to_string))
        .collect();
    let max = request
        .and_then(|i| i.get_attr("max_items"))
        .and_then(|m| m.parse::<i64>().ok())
        .map(|m| m.clamp(1, MAX_PEP_ITEMS))
        .filter(|_| ids.is_empty());
    let requester = s.bare.to_string();
    let me = s.user.clone();
    let (o, n) = (owner.clone(), node.clone());
    let found = s
        .db(move |c| {
            let Some((config, items)) = storage::pep_items(c, &o, &n, max)? else {
                return Ok(None);
            };
            // `presence`: the owner's roster says the requester sees the
            // owner's presence.
            let allowed = o == me
                || config.access == PepAccess::Open
                || storage::roster_row(c, &o, &requester)?
                    .is_some_and(|r| r.subscription.has_from());
            Ok(Some((allowed, items)))
        })
        .await?;
    let Some((allowed, stored)) = found else {
        s.iq_error(iq, StanzaErrorCondition::ItemNotFound, "no such node");
        return Ok(());
    };
    if !allowed {
        s.iq_error(
            iq,
            StanzaErrorCondition::Forbidden,
            "only the owner's presence subscribers read this node (access model presence)",
        );
        return Ok(());
    }
    let mut list = Element::new("items", ns::PUBSUB).attr("node", node);
    for (id, xml) in stored
        .into_iter()
        .filter(|(id, _)| ids.is_empty() || ids.contains(id))
    {
        let mut item = Element::new("item", ns::PUBSUB).attr("id", id);
        if let Some(payload) = protocol::parser::parse_element(&xml) {
            item = item.child(payload);
        }
        list = list.child(item);
    }
    s.iq_result(iq, Some(Element::new("pubsub", ns::PUBSUB).child(list)));
    Ok(())
}

/// Sends `event` (an `<items/>` of pubsub#event) about the owner's `node`
/// to every interested session: the owner's own, and those of the
/// contacts subscribed to the owner's presence.
async fn notify(s: &mut Session, node: &str, event: Element) -> Handled {
    let user = s.user.clone();
    let rows = s.db(move |c| storage::roster_rows(c, &user)).await?;
    let mut users = vec![s.user.clone()];
    users.extend(
        rows.iter()
            .filter(|r| r.subscription.has_from())
            .filter_map(|r| {
                let (local, domain) = r.contact.split_once('@')?;
                (domain == s.domain()).then(|| local.to_string())
            }),
    );
    let from = s.bare.to_string();
    for u in users {
        let domain = s.domain().to_string();
        s.shared.router.send_to_interested(&u, node, |resource| {
            Arc::from(event_message(&from, &format!("{u}@{domain}/{resource}"), &event).to_xml())
        });
    }
    Ok(())
}

/// A notification: `event` (`<items/>` or `<delete/>` of pubsub#event)
/// from `from`'s PEP service to `to`.
fn event_message(from: &str, to: &str, event: &Element) -> Element {
    Element::new("message", ns::CLIENT)
        .attr("from", from)
        .attr("to", to)
        .attr("type", "headline")
        .attr("id", random_id(6))
        .child(Element::new("event", ns::PUBSUB_EVENT).child(event.clone()))
}

/// An `<items/>` event with one stored item.
fn item_event(node: &str, id: &str, payload: &str) -> Element {
    let mut item = Element::new("item", ns::PUBSUB_EVENT).attr("id", id);
    if let Some(p) = protocol::parser::parse_element(payload) {
        item = item.child(p);
    }
    Element::new("items", ns::PUBSUB_EVENT)
        .attr("node", node)
        .child(item)
}

/// `reader` may now read `owner`'s nodes (a presence subscription was
/// just approved): its sessions are sent the latest item of each node
/// they want (`+notify`), as a session is when it signs in (XEP-0163
/// 4.3.3: "the last published item to all new subscribers"). Two people
/// who just added each other thus learn each other's OMEMO devices.
pub(crate) async fn send_latest(s: &Session, owner: &str, reader: &str) -> Handled {
    let o = owner.to_string();
    let latest = s.db(move |c| storage::pep_owner_latest(c, &o)).await?;
    let domain = s.domain().to_string();
    let from = format!("{owner}@{domain}");
    for (node, id, payload) in latest {
        let event = item_event(&node, &id, &payload);
        s.shared
            .router
            .send_to_interested(reader, &node, |resource| {
                Arc::from(
                    event_message(&from, &format!("{reader}@{domain}/{resource}"), &event).to_xml(),
                )
            });
    }
    Ok(())
}

/// Asks a session what its client can do (XEP-0115: the `<c/>` of its
/// presence names a capabilities node), to learn which PEP nodes it wants
/// notifications for. Each session is asked for itself: a capabilities
/// hash shared by sessions could be claimed by a lying client and poison
/// what others get.
pub(crate) fn ask_capabilities(s: &Session, presence: &Element) {
    let Some(c) = presence.get_child("c", ns::CAPS) else {
        return;
    };
    let (Some(node), Some(ver)) = (c.get_attr("node"), c.get_attr("ver")) else {
        return;
    };
    // A hash is 28 base64 characters (SHA-1) or 44 (SHA-256): anything
    // much longer is not one, and is not kept per session.
    if ver.len() > 128 || node.len() > MAX_NODE_NAME {
        return;
    }
    let id = format!("caps-{}", random_id(6));
    if !s.shared.router.caps_asked(&s.user, s.handle.id, ver, &id) {
        return;
    }
    let query = Element::new("iq", ns::CLIENT)
        .attr("type", "get")
        .attr("from", s.domain())
        .attr("to", s.jid.to_string())
        .attr("id", id)
        .child(Element::new("query", ns::DISCO_INFO).attr("node", format!("{node}#{ver}")));
    s.to_self_el(&query);
}

/// The answer to [`ask_capabilities`]: the `NODE+notify` features become
/// the session's notification interests, and the session is sent the
/// latest item of each such node it may read (XEP-0163 section 6.2: a
/// client that signs in learns its contacts' current state). `false` when
/// the iq was not such an answer.
pub(crate) async fn capabilities_answer(
    s: &Session,
    iq: &Iq,
) -> Result<bool, super::context::Failure> {
    if iq.kind != IqType::Result || !iq.id.starts_with("caps-") {
        return Ok(false);
    }
    let nodes: Vec<String> = iq
        .payload
        .iter()
        .flat_map(|q| q.elements())
        .filter(|f| f.name == "feature")
        .filter_map(|f| {
            f.get_attr("var")?
                .strip_suffix("+notify")
                .map(str::to_string)
        })
        .filter(|n| n.len() <= MAX_NODE_NAME)
        .take(MAX_NOTIFY_NODES)
        .collect();
    if !s
        .shared
        .router
        .caps_answered(&s.user, s.handle.id, &iq.id, nodes.clone())
    {
        return Ok(true);
    }
    let user = s.user.clone();
    let domain = s.domain().to_string();
    let latest = s
        .db(move |c| {
            // Whose nodes this session may read: its own account's, and
            // those of the contacts it is subscribed to.
            let mut readable: Vec<String> = storage::roster_rows(c, &user)?
                .into_iter()
                .filter(|r| r.subscription.has_to())
                .filter_map(|r| {
                    let (local, d) = r.contact.split_once('@')?;
                    (d == domain).then(|| local.to_string())
                })
                .collect();
            readable.push(user.clone());
            let mut out = Vec::new();
            for node in nodes {
                for (owner, _, id, payload) in storage::pep_latest(c, &node)? {
                    if readable.contains(&owner) {
                        out.push((owner, node.clone(), id, payload));
                    }
                }
            }
            Ok(out)
        })
        .await?;
    for (owner, node, id, payload) in latest {
        let from = format!("{owner}@{}", s.domain());
        let event = item_event(&node, &id, &payload);
        s.to_self_el(&event_message(&from, &s.jid.to_string(), &event));
    }
    Ok(true)
}
