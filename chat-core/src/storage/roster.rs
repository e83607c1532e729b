//! Rosters: one row per (owner, contact) with the subscription state of
//! RFC 6121 (both directions, a pending request each way) and the
//! contact's name and groups.

use rusqlite::{Connection, OptionalExtension, params};

/// Subscription state of a roster item (RFC 6121 2.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    /// Neither sees the other's presence.
    None,
    /// The owner sees the contact's presence.
    To,
    /// The contact sees the owner's presence.
    From,
    /// Both see each other's presence.
    Both,
}

impl Subscription {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }

    fn parse(s: &str) -> Subscription {
        match s {
            "to" => Subscription::To,
            "from" => Subscription::From,
            "both" => Subscription::Both,
            _ => Subscription::None,
        }
    }

    /// True when the owner receives the contact's presence.
    pub fn has_to(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }

    /// True when the contact receives the owner's presence.
    pub fn has_from(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }

    /// This state with the "to" half set or cleared.
    pub fn with_to(self, on: bool) -> Subscription {
        Subscription::from_halves(on, self.has_from())
    }

    /// This state with the "from" half set or cleared.
    pub fn with_from(self, on: bool) -> Subscription {
        Subscription::from_halves(self.has_to(), on)
    }

    fn from_halves(to: bool, from: bool) -> Subscription {
        match (to, from) {
            (true, true) => Subscription::Both,
            (true, false) => Subscription::To,
            (false, true) => Subscription::From,
            (false, false) => Subscription::None,
        }
    }
}

/// One row of someone's roster: what `owner` knows about `contact`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterRow {
    /// User name of the roster's owner.
    pub owner: String,
    /// Bare JID of the contact.
    pub contact: String,
    /// Display name the owner gave the contact.
    pub name: Option<String>,
    /// Roster groups.
    pub groups: Vec<String>,
    /// Subscription state.
    pub subscription: Subscription,
    /// The owner asked to subscribe and waits for an answer.
    pub ask: bool,
    /// The contact asked to subscribe to the owner and waits for an answer.
    pub pending_in: bool,
    /// The item is in the owner's visible roster (a pending inbound request
    /// alone does not put it there).
    pub in_roster: bool,
}

impl RosterRow {
    /// An empty row.
    pub fn new(owner: &str, contact: &str) -> Self {
        RosterRow {
            owner: owner.to_string(),
            contact: contact.to_string(),
            name: None,
            groups: Vec::new(),
            subscription: Subscription::None,
            ask: false,
            pending_in: false,
            in_roster: false,
        }
    }
}

fn row_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<RosterRow> {
    let groups: String = r.get(3)?;
    let sub: String = r.get(4)?;
    Ok(RosterRow {
        owner: r.get(0)?,
        contact: r.get(1)?,
        name: r.get(2)?,
        groups: groups
            .split('\n')
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect(),
        subscription: Subscription::parse(&sub),
        ask: r.get(5)?,
        pending_in: r.get(6)?,
        in_roster: r.get(7)?,
    })
}

const ROW_COLUMNS: &str = "owner, contact, name, groups, subscription, ask, pending_in, in_roster";

/// The roster row `owner` keeps about `contact`, if any.
pub fn roster_row(
    c: &Connection,
    owner: &str,
    contact: &str,
) -> rusqlite::Result<Option<RosterRow>> {
    c.query_row(
        &format!("SELECT {ROW_COLUMNS} FROM roster WHERE owner=?1 AND contact=?2"),
        params![owner, contact],
        row_from,
    )
    .optional()
}

/// Every row of `owner`'s roster (visible or not).
pub fn roster_rows(c: &Connection, owner: &str) -> rusqlite::Result<Vec<RosterRow>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM roster WHERE owner=?1 ORDER BY contact"
    ))?;
    st.query_map(params![owner], row_from)?.collect()
}

/// Inserts or replaces a row; a row with nothing left in it is deleted.
pub fn put_roster_row(c: &Connection, row: &RosterRow) -> rusqlite::Result<()> {
    if !row.in_roster && !row.pending_in && row.subscription == Subscription::None && !row.ask {
        c.execute(
            "DELETE FROM roster WHERE owner=?1 AND contact=?2",
            params![row.owner, row.contact],
        )?;
        return Ok(());
    }
    c.execute(
        &format!(
            "INSERT OR REPLACE INTO roster ({ROW_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ),
        params![
            row.owner,
            row.contact,
            row.name,
            row.groups.join("\n"),
            row.subscription.as_str(),
            row.ask,
            row.pending_in,
            row.in_roster
        ],
    )?;
    Ok(())
}
