//! The four subscription stanzas (RFC 6121 3): `subscribe`, `subscribed`,
//! `unsubscribe`, `unsubscribed`, each applied to both users' rosters in one
//! transaction.
//!
//! Presence is private by default: a user's availability and status go only
//! to contacts the user approved (`subscription` from or both). That approval
//! step is what stops a stranger from tracking when someone is online.

use protocol::stanza::PresenceType;
use protocol::{Element, Jid, StanzaErrorCondition};

use super::items::{MAX_ROSTER_ITEMS, push_row, roster_fits};
use crate::server::context::{Handled, Session};
use crate::server::presence::presence_xml;
use crate::storage::{self, RosterRow};

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

/// The four subscription stanzas (RFC 6121 3).
pub(crate) async fn change(
    s: &mut Session,
    kind: PresenceType,
    contact: Jid,
    el: &Element,
) -> Handled {
    let Some(cuser) = s.local_user(&contact).map(str::to_string) else {
        s.bounce(
            el,
            StanzaErrorCondition::RemoteServerNotFound,
            "this server does not federate",
        );
        return Ok(());
    };
    let me = s.user.clone();
    let me_bare = s.bare.to_string();
    let contact_s = contact.to_string();
    let max_stanza = s.max_stanza();
    let change = s
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
        s.bounce(
            el,
            StanzaErrorCondition::ResourceConstraint,
            &format!("your roster is full ({MAX_ROSTER_ITEMS} contacts): remove someone first"),
        );
        return Ok(());
    }
    let cuser = contact.local().unwrap_or_default().to_string();
    if let Some(m) = &change.mine {
        push_row(s, m);
    }
    if let Some(t) = &change.theirs
        && change.notify
    {
        push_row(s, t);
    }
    let me_bare = s.bare.to_string();
    let contact_s = contact.to_string();
    let router = &s.shared.router;
    if change.notify {
        let stanza = presence_xml(&me_bare, Some(&contact_s), kind);
        router.send_to_available(&cuser, &stanza, None, None);
    }
    if change.auto_approved {
        s.to_self(presence_xml(
            &contact_s,
            Some(&me_bare),
            PresenceType::Subscribed,
        ));
    }
    if kind == PresenceType::Subscribed && change.notify {
        // The contact may now see us: send our current presence, and
        // the latest of what we published (PEP).
        for online in router.available(&s.user) {
            if let Some(p) = online.presence {
                router.send_to_available(&cuser, &p, None, None);
            }
        }
        crate::server::pep::send_latest(s, &s.user, &cuser).await?;
    }
    if kind == PresenceType::Subscribe && change.auto_approved {
        for online in router.available(&cuser) {
            if let Some(p) = online.presence {
                s.to_self(p);
            }
        }
        crate::server::pep::send_latest(s, &cuser, &s.user).await?;
    }
    if kind == PresenceType::Unsubscribe && change.notify {
        // We no longer see them: show them as gone.
        for online in router.available(&cuser) {
            let full = format!("{contact_s}/{}", online.resource);
            let gone = presence_xml(&full, None, PresenceType::Unavailable);
            router.send_to_available(&s.user, &gone, None, None);
        }
    }
    if kind == PresenceType::Unsubscribed && change.notify {
        // They no longer see us: show us as gone to them.
        for online in router.available(&s.user) {
            let full = format!("{me_bare}/{}", online.resource);
            let gone = presence_xml(&full, None, PresenceType::Unavailable);
            router.send_to_available(&cuser, &gone, None, None);
        }
    }
    Ok(())
}
