//! Presence and rosters (RFC 6121): broadcast to subscribers, probes at sign
//! in, the four-step subscription handshake, and roster get, set and push.
//!
//! Presence is private by default: a user's availability and status go only
//! to contacts the user approved (`subscription` from or both). That approval
//! step is what stops a stranger from tracking when someone is online.

use std::sync::Arc;

use protocol::stanza::{Presence, PresenceType};
use protocol::{Element, Jid, StanzaErrorCondition, ns};

use super::session::{End, Session, push_id};
use crate::storage::{self, RosterRow};

/// Most groups on one roster item.
const MAX_GROUPS: usize = 32;

/// Most contacts in one roster. People have hundreds, not thousands; before
/// this limit one account added 100,000 items in 94 s, and its 5 MB roster
/// then disconnected its own client at every sign-in. The roster is also
/// kept small enough in bytes to be sent in one stanza (RFC 6121 has no
/// paging for it): see [`roster_fits`].
pub const MAX_ROSTER_ITEMS: usize = 500;

/// Whether a roster of these rows can still be sent: at most
/// [`MAX_ROSTER_ITEMS`] contacts, and the roster result, addressed to the
/// longest JID there is, within the stanza limit.
fn roster_fits(rows: &[RosterRow], max_stanza: usize) -> bool {
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
fn roster_item(row: &RosterRow) -> Element {
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

fn presence_xml(from: &str, to: Option<&str>, kind: PresenceType) -> Arc<str> {
    let mut p = Presence::new(kind).to_element().attr("from", from);
    if let Some(t) = to {
        p = p.attr("to", t);
    }
    Arc::from(p.to_xml())
}

/// The outcome of a subscription change, computed in one transaction.
struct Change {
    mine: Option<RosterRow>,
    theirs: Option<RosterRow>,
    /// Deliver the presence stanza to the contact.
    notify: bool,
    /// The contact had already approved: tell the user at once.
    auto_approved: bool,
    /// Refused: the user's roster has no room for the contact.
    full: bool,
}

impl Session {
    /// Sends a roster push of one item to each interested session of `owner`.
    pub(super) fn push_roster_item(&self, owner: &str, item: Element) {
        let domain = self.domain().to_string();
        let query = Element::new("query", ns::ROSTER).child(item);
        let xml: Arc<str> = Arc::from(
            Element::new("iq", ns::CLIENT)
                .attr("type", "set")
                .attr("id", push_id())
                .attr("to", format!("{owner}@{domain}"))
                .child(query)
                .to_xml(),
        );
        self.shared.router.send_to_sessions(owner, &xml, true, None);
    }

    /// Roster push removing `contact` from `owner`'s roster.
    pub(super) fn push_roster_removal(&self, owner: &str, contact: &str) {
        let item = Element::new("item", ns::ROSTER)
            .attr("jid", contact)
            .attr("subscription", "remove");
        self.push_roster_item(owner, item);
    }

    fn push_row(&self, row: &RosterRow) {
        if row.in_roster {
            self.push_roster_item(&row.owner, roster_item(row));
        }
    }

    pub(super) async fn presence(&mut self, el: Element, to: Option<Jid>) -> Result<(), End> {
        let p = match Presence::from_element(&el) {
            Ok(p) => p,
            Err(e) => {
                self.bounce(&el, e.condition(), &e.to_string());
                return Ok(());
            }
        };
        match (p.kind, to) {
            (PresenceType::Available | PresenceType::Unavailable, None) => {
                self.broadcast(p, el).await
            }
            (PresenceType::Probe, _) => Ok(()),
            (
                PresenceType::Subscribe
                | PresenceType::Subscribed
                | PresenceType::Unsubscribe
                | PresenceType::Unsubscribed,
                Some(to),
            ) => self.subscription(p.kind, to.to_bare(), &el).await,
            (_, Some(to)) => {
                self.directed(&el, &to);
                Ok(())
            }
            (_, None) => {
                self.bounce(
                    &el,
                    StanzaErrorCondition::BadRequest,
                    "this presence needs a 'to'",
                );
                Ok(())
            }
        }
    }

    /// Directed presence: straight to the addressee.
    fn directed(&self, el: &Element, to: &Jid) {
        let Some(user) = self.local_user(to) else {
            return;
        };
        let xml: Arc<str> = Arc::from(el.to_xml());
        match to.resource() {
            Some(r) => {
                self.shared.router.send_to_resource(user, r, &xml);
            }
            None => {
                self.shared.router.send_to_available(user, &xml, None, None);
            }
        }
    }

    /// The user names of contacts that may see this user's presence.
    async fn presence_subscribers(&self) -> Result<Vec<RosterRow>, End> {
        let user = self.user.clone();
        self.db(move |c| storage::roster_rows(c, &user)).await
    }

    fn contact_user<'r>(&self, row: &'r RosterRow) -> Option<&'r str> {
        let (local, domain) = row.contact.split_once('@')?;
        (domain == self.domain()).then_some(local)
    }

    /// Broadcast presence (RFC 6121 4.2, 4.4, 4.5).
    async fn broadcast(&mut self, p: Presence, mut el: Element) -> Result<(), End> {
        el.remove_attr("to");
        let available = p.kind == PresenceType::Available;
        if !available {
            // Going unavailable takes the user out of every room too
            // (XEP-0045 7.14: the server acts for the client here).
            self.leave_all_rooms().await;
        }
        let xml: Arc<str> = Arc::from(el.to_xml());
        let initial = self.shared.router.set_presence(
            &self.user,
            self.handle.id,
            available,
            p.priority,
            Some(xml.clone()),
        );
        let rows = self.presence_subscribers().await?;
        self.fan_out(&rows, &xml);
        if !available {
            // Unavailable does not go back to its sender through the router
            // (it is no longer available), so echo it.
            self.to_self(xml);
            return Ok(());
        }
        if initial {
            // Probes: the current presence of everyone the user follows.
            for row in rows.iter().filter(|r| r.subscription.has_to()) {
                if let Some(u) = self.contact_user(row) {
                    for online in self.shared.router.available(u) {
                        if let Some(pres) = online.presence {
                            self.to_self(pres);
                        }
                    }
                }
            }
            // Subscription requests that arrived while the user was away.
            for row in rows.iter().filter(|r| r.pending_in) {
                self.to_self(presence_xml(&row.contact, None, PresenceType::Subscribe));
            }
            self.deliver_offline().await?;
        }
        Ok(())
    }

    /// Unavailable presence on disconnect, to everyone who saw us available.
    pub(super) async fn broadcast_unavailable(&self) {
        let xml = presence_xml(&self.jid.to_string(), None, PresenceType::Unavailable);
        let rows = self.presence_subscribers().await.unwrap_or_default();
        self.fan_out(&rows, &xml);
    }

    /// Sends a broadcast presence to every contact allowed to see it
    /// (subscription from or both) and to the user's own available
    /// resources, this one included (RFC 6121 4.2.2).
    fn fan_out(&self, rows: &[RosterRow], xml: &Arc<str>) {
        for row in rows.iter().filter(|r| r.subscription.has_from()) {
            if let Some(u) = self.contact_user(row) {
                self.shared.router.send_to_available(u, xml, None, None);
            }
        }
        self.shared
            .router
            .send_to_available(&self.user, xml, None, None);
    }

    /// The four subscription stanzas (RFC 6121 3).
    async fn subscription(
        &mut self,
        kind: PresenceType,
        contact: Jid,
        el: &Element,
    ) -> Result<(), End> {
        let Some(cuser) = self.local_user(&contact).map(str::to_string) else {
            self.bounce(
                el,
                StanzaErrorCondition::RemoteServerNotFound,
                "this server does not federate",
            );
            return Ok(());
        };
        let me = self.user.clone();
        let me_bare = self.bare.to_string();
        let contact_s = contact.to_string();
        let max_stanza = self.max_stanza();
        let change = self
            .db(move |c| {
                let tx = c.transaction()?;
                let exists = storage::account_exists(&tx, &cuser)?;
                let mut mine = storage::roster_row(&tx, &me, &contact_s)?
                    .unwrap_or_else(|| RosterRow::new(&me, &contact_s));
                let mut theirs = if exists {
                    Some(
                        storage::roster_row(&tx, &cuser, &me_bare)?
                            .unwrap_or_else(|| RosterRow::new(&cuser, &me_bare)),
                    )
                } else {
                    None
                };
                let mut ch = Change {
                    mine: None,
                    theirs: None,
                    notify: false,
                    auto_approved: false,
                    full: false,
                };
                let was_in_roster = mine.in_roster;
                match kind {
                    PresenceType::Subscribe => {
                        if !mine.subscription.has_to() {
                            mine.ask = true;
                            mine.in_roster = true;
                            if let Some(t) = theirs.as_mut() {
                                if t.subscription.has_from() {
                                    mine.ask = false;
                                    mine.subscription = mine.subscription.with_to(true);
                                    ch.auto_approved = true;
                                } else {
                                    t.pending_in = true;
                                    ch.notify = true;
                                }
                            }
                        }
                    }
                    PresenceType::Subscribed => {
                        // Only an answer to a pending request changes state.
                        if mine.pending_in && !mine.subscription.has_from() {
                            mine.pending_in = false;
                            mine.in_roster = true;
                            mine.subscription = mine.subscription.with_from(true);
                            if let Some(t) = theirs.as_mut()
                                && t.ask
                            {
                                t.ask = false;
                                t.subscription = t.subscription.with_to(true);
                                ch.notify = true;
                            }
                        }
                    }
                    PresenceType::Unsubscribe => {
                        mine.ask = false;
                        mine.subscription = mine.subscription.with_to(false);
                        if let Some(t) = theirs.as_mut() {
                            t.pending_in = false;
                            t.subscription = t.subscription.with_from(false);
                            ch.notify = true;
                        }
                    }
                    _ => {
                        mine.pending_in = false;
                        mine.subscription = mine.subscription.with_from(false);
                        if let Some(t) = theirs.as_mut() {
                            t.ask = false;
                            t.subscription = t.subscription.with_to(false);
                            ch.notify = true;
                        }
                    }
                }
                if mine.in_roster && !was_in_roster {
                    let mut all = storage::roster_rows(&tx, &me)?;
                    all.push(mine.clone());
                    if !roster_fits(&all, max_stanza) {
                        ch.full = true;
                        return Ok(ch);
                    }
                }
                storage::put_roster_row(&tx, &mine)?;
                if let Some(t) = &theirs {
                    storage::put_roster_row(&tx, t)?;
                }
                tx.commit()?;
                ch.mine = Some(mine);
                ch.theirs = theirs;
                Ok(ch)
            })
            .await?;
        if change.full {
            self.bounce(
                el,
                StanzaErrorCondition::ResourceConstraint,
                &format!("your roster is full ({MAX_ROSTER_ITEMS} contacts): remove someone first"),
            );
            return Ok(());
        }
        let cuser = contact.local().unwrap_or_default().to_string();
        if let Some(m) = &change.mine {
            self.push_row(m);
        }
        if let Some(t) = &change.theirs
            && change.notify
        {
            self.push_row(t);
        }
        let me_bare = self.bare.to_string();
        let contact_s = contact.to_string();
        let router = &self.shared.router;
        if change.notify {
            let stanza = presence_xml(&me_bare, Some(&contact_s), kind);
            router.send_to_available(&cuser, &stanza, None, None);
        }
        if change.auto_approved {
            self.to_self(presence_xml(
                &contact_s,
                Some(&me_bare),
                PresenceType::Subscribed,
            ));
        }
        if kind == PresenceType::Subscribed && change.notify {
            // The contact may now see us: send our current presence.
            for online in router.available(&self.user) {
                if let Some(p) = online.presence {
                    router.send_to_available(&cuser, &p, None, None);
                }
            }
        }
        if kind == PresenceType::Subscribe && change.auto_approved {
            for online in router.available(&cuser) {
                if let Some(p) = online.presence {
                    self.to_self(p);
                }
            }
        }
        if kind == PresenceType::Unsubscribe && change.notify {
            // We no longer see them: show them as gone.
            for online in router.available(&cuser) {
                let full = format!("{contact_s}/{}", online.resource);
                let gone = presence_xml(&full, None, PresenceType::Unavailable);
                router.send_to_available(&self.user, &gone, None, None);
            }
        }
        if kind == PresenceType::Unsubscribed && change.notify {
            // They no longer see us: show us as gone to them.
            for online in router.available(&self.user) {
                let full = format!("{me_bare}/{}", online.resource);
                let gone = presence_xml(&full, None, PresenceType::Unavailable);
                router.send_to_available(&cuser, &gone, None, None);
            }
        }
        Ok(())
    }

    /// Roster get and set (RFC 6121 2.2 to 2.5).
    pub(super) async fn roster_iq(&mut self, iq: &protocol::stanza::Iq) -> Result<(), End> {
        use protocol::stanza::IqType;
        let user = self.user.clone();
        match iq.kind {
            IqType::Get => {
                let rows = self.db(move |c| storage::roster_rows(c, &user)).await?;
                let mut q = Element::new("query", ns::ROSTER);
                for row in rows.iter().filter(|r| r.in_roster) {
                    q = q.child(roster_item(row));
                }
                self.shared
                    .router
                    .set_interested(&self.user, self.handle.id);
                self.to_self_el(&iq.result(Some(q)).to_element());
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
                    self.to_self_el(
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
                    self.to_self_el(
                        &iq.error_reply(StanzaErrorCondition::JidMalformed, Some("invalid jid"))
                            .to_element(),
                    );
                    return Ok(());
                };
                if item.get_attr("subscription") == Some("remove") {
                    return self.roster_remove(iq, contact).await;
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
                let max_stanza = self.max_stanza();
                let row = self
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
                    self.iq_error(
                        iq,
                        StanzaErrorCondition::ResourceConstraint,
                        &format!(
                            "your roster is full ({MAX_ROSTER_ITEMS} contacts, or one stanza's worth): remove someone first"
                        ),
                    );
                    return Ok(());
                };
                self.push_row(&row);
                self.to_self_el(&iq.result(None).to_element());
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Removing an item also cancels both subscriptions (RFC 6121 2.5.2).
    async fn roster_remove(&mut self, iq: &protocol::stanza::Iq, contact: Jid) -> Result<(), End> {
        let user = self.user.clone();
        let contact_s = contact.to_string();
        let row = self
            .db(move |c| storage::roster_row(c, &user, &contact_s))
            .await?;
        let Some(row) = row.filter(|r| r.in_roster || r.pending_in) else {
            self.to_self_el(
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
            self.subscription(PresenceType::Unsubscribe, contact.clone(), &dummy)
                .await?;
        }
        if row.subscription.has_from() || row.pending_in {
            self.subscription(PresenceType::Unsubscribed, contact.clone(), &dummy)
                .await?;
        }
        let user = self.user.clone();
        let contact_s = contact.to_string();
        self.db(move |c| {
            let mut row = RosterRow::new(&user, &contact_s);
            row.in_roster = false;
            storage::put_roster_row(c, &row)
        })
        .await?;
        self.push_roster_removal(&self.user, &contact.to_string());
        self.to_self_el(&iq.result(None).to_element());
        Ok(())
    }
}
