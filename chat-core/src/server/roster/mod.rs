//! The roster (RFC 6121 2): get, set and remove, and the items and
//! subscriptions it holds.
//!
//! - [`items`]: roster items as stanzas, the size rule, roster pushes.
//! - [`subscription`]: the subscription handshake.

pub(crate) mod items;
pub(crate) mod subscription;

use protocol::stanza::PresenceType;
use protocol::{Element, Jid, StanzaErrorCondition, ns};

use super::context::{Handled, Session};
use crate::storage::{self, RosterRow};
use items::{MAX_GROUPS, MAX_ROSTER_ITEMS, roster_fits, roster_item};
pub(crate) use items::{push_removal, push_row};

/// Roster get and set (RFC 6121 2.2 to 2.5).
pub(crate) async fn iq(s: &mut Session, iq: &protocol::stanza::Iq) -> Handled {
    use protocol::stanza::IqType;
    let user = s.user.clone();
    match iq.kind {
        IqType::Get => {
            let rows = s.db(move |c| storage::roster_rows(c, &user)).await?;
            let mut q = Element::new("query", ns::ROSTER);
            for row in rows.iter().filter(|r| r.in_roster) {
                q = q.child(roster_item(row));
            }
            s.shared.router.set_interested(&s.user, s.handle.id);
            s.to_self_el(&iq.result(Some(q)).to_element());
            Ok(())
        }
        IqType::Set => {
            let query = iq
                .payload
                .clone()
                .unwrap_or_else(|| Element::new("query", ns::ROSTER));
            let items: Vec<&Element> = query
                .elements()
                .filter(|e| e.is("item", ns::ROSTER))
                .collect();
            let [item] = items.as_slice() else {
                s.to_self_el(
                    &iq.error_reply(StanzaErrorCondition::BadRequest, Some("exactly one item"))
                        .to_element(),
                );
                return Ok(());
            };
            let Some(contact) = item
                .get_attr("jid")
                .and_then(|j| Jid::parse(j).ok())
                .map(|j| j.to_bare())
            else {
                s.to_self_el(
                    &iq.error_reply(StanzaErrorCondition::JidMalformed, Some("invalid jid"))
                        .to_element(),
                );
                return Ok(());
            };
            if item.get_attr("subscription") == Some("remove") {
                return remove(s, iq, contact).await;
            }
            let name = item.get_attr("name").map(str::to_string);
            let groups: Vec<String> = item
                .elements()
                .filter(|g| g.is("group", ns::ROSTER))
                .map(Element::text_content)
                .filter(|g| !g.is_empty() && !g.contains('\n'))
                .take(MAX_GROUPS)
                .collect();
            let contact_s = contact.to_string();
            let max_stanza = s.max_stanza();
            let row = s
                .db(move |c| {
                    let mut row = storage::roster_row(c, &user, &contact_s)?
                        .unwrap_or_else(|| RosterRow::new(&user, &contact_s));
                    row.name = name;
                    row.groups = groups;
                    row.in_roster = true;
                    let mut all = storage::roster_rows(c, &user)?;
                    all.retain(|r| r.contact != row.contact);
                    all.push(row.clone());
                    if !roster_fits(&all, max_stanza) {
                        return Ok(None);
                    }
                    storage::put_roster_row(c, &row)?;
                    Ok(Some(row))
                })
                .await?;
            let Some(row) = row else {
                s.iq_error(
                    iq,
                    StanzaErrorCondition::ResourceConstraint,
                    &format!(
                        "your roster is full ({MAX_ROSTER_ITEMS} contacts, or one stanza's worth): remove someone first"
                    ),
                );
                return Ok(());
            };
            push_row(s, &row);
            s.to_self_el(&iq.result(None).to_element());
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Removing an item also cancels both subscriptions (RFC 6121 2.5.2).
async fn remove(s: &mut Session, iq: &protocol::stanza::Iq, contact: Jid) -> Handled {
    let user = s.user.clone();
    let contact_s = contact.to_string();
    let row = s
        .db(move |c| storage::roster_row(c, &user, &contact_s))
        .await?;
    let Some(row) = row.filter(|r| r.in_roster || r.pending_in) else {
        s.to_self_el(
            &iq.error_reply(
                StanzaErrorCondition::ItemNotFound,
                Some("not in your roster"),
            )
            .to_element(),
        );
        return Ok(());
    };
    let dummy = Element::new("presence", ns::CLIENT);
    if row.subscription.has_to() || row.ask {
        subscription::change(s, PresenceType::Unsubscribe, contact.clone(), &dummy).await?;
    }
    if row.subscription.has_from() || row.pending_in {
        subscription::change(s, PresenceType::Unsubscribed, contact.clone(), &dummy).await?;
    }
    let user = s.user.clone();
    let contact_s = contact.to_string();
    s.db(move |c| {
        let mut row = RosterRow::new(&user, &contact_s);
        row.in_roster = false;
        storage::put_roster_row(c, &row)
    })
    .await?;
    push_removal(s, &s.user, &contact.to_string());
    s.to_self_el(&iq.result(None).to_element());
    Ok(())
}
