//! Roster items as stanzas, the size rule a roster keeps, and roster
//! pushes (RFC 6121 2.1.6) to the sessions that asked for the roster.

use std::sync::Arc;

use protocol::{Element, ns};

use crate::server::context::{Session, push_id};
use crate::storage::RosterRow;

/// Most groups on one roster item.
pub(super) const MAX_GROUPS: usize = 32;

/// Most contacts in one roster. People have hundreds, not thousands; before
/// this limit one account added 100,000 items in 94 s, and its 5 MB roster
/// then disconnected its own client at every sign-in. The roster is also
/// kept small enough in bytes to be sent in one stanza (RFC 6121 has no
/// paging for it): see [`roster_fits`].
pub const MAX_ROSTER_ITEMS: usize = 500;

/// Whether a roster of these rows can still be sent: at most
/// [`MAX_ROSTER_ITEMS`] contacts, and the roster result, addressed to the
/// longest JID there is, within the stanza limit.
pub(super) fn roster_fits(rows: &[RosterRow], max_stanza: usize) -> bool {
    let items: Vec<&RosterRow> = rows.iter().filter(|r| r.in_roster).collect();
    if items.len() > MAX_ROSTER_ITEMS {
        return false;
    }
    let bytes: usize = items
        .iter()
        .map(|r| roster_item(r).to_xml_in(ns::ROSTER).len())
        .sum();
    // The iq around it: type, an id, the `to` and the query element.
    let envelope = 256 + protocol::jid::MAX_ESCAPED_JID_BYTES;
    bytes + envelope <= max_stanza
}

/// Builds the `<item/>` of a roster row.
pub(super) fn roster_item(row: &RosterRow) -> Element {
    let mut item = Element::new("item", ns::ROSTER)
        .attr("jid", row.contact.clone())
        .attr("subscription", row.subscription.as_str());
    if let Some(n) = &row.name {
        item = item.attr("name", n.clone());
    }
    if row.ask {
        item = item.attr("ask", "subscribe");
    }
    for g in &row.groups {
        item = item.text_child("group", ns::ROSTER, g.clone());
    }
    item
}

/// Sends a roster push of one item to each interested session of `owner`.
pub(crate) fn push_item(s: &Session, owner: &str, item: Element) {
    let domain = s.domain().to_string();
    let query = Element::new("query", ns::ROSTER).child(item);
    let xml: Arc<str> = Arc::from(
        Element::new("iq", ns::CLIENT)
            .attr("type", "set")
            .attr("id", push_id())
            .attr("to", format!("{owner}@{domain}"))
            .child(query)
            .to_xml(),
    );
    s.shared.router.send_to_sessions(owner, &xml, true, None);
}

/// Roster push removing `contact` from `owner`'s roster.
pub(crate) fn push_removal(s: &Session, owner: &str, contact: &str) {
    let item = Element::new("item", ns::ROSTER)
        .attr("jid", contact)
        .attr("subscription", "remove");
    push_item(s, owner, item);
}

pub(crate) fn push_row(s: &Session, row: &RosterRow) {
    if row.in_roster {
        push_item(s, &row.owner, roster_item(row));
    }
}
