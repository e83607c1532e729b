//! PEP (XEP-0163): each account's personal pubsub nodes and their items,
//! bounded per account (nodes), per node (items) and per item (bytes), so
//! that no user can fill the server's disk.

use rusqlite::{Connection, OptionalExtension, params};

/// Most nodes one account may have.
pub const MAX_PEP_NODES: i64 = 100;
/// Most items a node keeps (`pubsub#max_items` = `max`).
pub const MAX_PEP_ITEMS: i64 = 256;
/// Largest item payload, in bytes of XML.
pub const MAX_PEP_ITEM_BYTES: usize = 32 * 1024;

/// Who may read a node's items (XEP-0060 access models this server
/// keeps): `open` (anyone) or `presence` (contacts subscribed to the
/// owner's presence; the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PepAccess {
    /// Anyone.
    Open,
    /// The owner's presence subscribers.
    Presence,
}

impl PepAccess {
    /// Its name in a data form.
    pub fn name(self) -> &'static str {
        match self {
            PepAccess::Open => "open",
            PepAccess::Presence => "presence",
        }
    }

    /// The model a data form names, if this server keeps it.
    pub fn parse(s: &str) -> Option<PepAccess> {
        match s {
            "open" => Some(PepAccess::Open),
            "presence" => Some(PepAccess::Presence),
            _ => None,
        }
    }
}

/// A node's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PepConfig {
    /// Who may read.
    pub access: PepAccess,
    /// How many items it keeps.
    pub max_items: i64,
}

/// The options a `publish-options` form or a configuration form gives:
/// only the fields it names. A publish's preconditions are checked field
/// by field against the node (XEP-0060 7.1.5): a field the form leaves
/// out is no precondition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PepOptions {
    /// `pubsub#access_model`, if given.
    pub access: Option<PepAccess>,
    /// `pubsub#max_items`, if given.
    pub max_items: Option<i64>,
}

impl PepOptions {
    /// `base` with the fields given here.
    pub fn over(self, base: PepConfig) -> PepConfig {
        PepConfig {
            access: self.access.unwrap_or(base.access),
            max_items: self.max_items.unwrap_or(base.max_items),
        }
    }

    /// The first field given here that `node` does not match, with the
    /// node's value.
    pub fn mismatch(&self, node: &PepConfig) -> Option<String> {
        if let Some(a) = self.access
            && a != node.access
        {
            return Some(format!(
                "access_model (the node's is {})",
                node.access.name()
            ));
        }
        if let Some(m) = self.max_items
            && m != node.max_items
        {
            return Some(format!("max_items (the node's is {})", node.max_items));
        }
        None
    }
}

impl Default for PepConfig {
    /// XEP-0163's defaults: presence subscribers read the one latest item.
    fn default() -> Self {
        PepConfig {
            access: PepAccess::Presence,
            max_items: 1,
        }
    }
}

/// What a publish did.
#[derive(Debug, PartialEq, Eq)]
pub enum Published {
    /// Stored (the node created first if it was new).
    Stored,
    /// The node exists with another configuration than the publish
    /// options required (XEP-0060 7.1.5: `precondition-not-met`); the
    /// field that differs.
    PreconditionNotMet(String),
    /// The account has [`MAX_PEP_NODES`] nodes already.
    TooManyNodes,
}

/// A node's configuration, if it exists.
pub fn pep_config(c: &Connection, owner: &str, node: &str) -> rusqlite::Result<Option<PepConfig>> {
    c.query_row(
        "SELECT access, max_items FROM pep_nodes WHERE owner=?1 AND node=?2",
        params![owner, node],
        |r| {
            let access: String = r.get(0)?;
            Ok(PepConfig {
                access: PepAccess::parse(&access).unwrap_or(PepAccess::Presence),
                max_items: r.get(1)?,
            })
        },
    )
    .optional()
}

/// Publishes item `id` to `owner`'s `node`, creating the node (with
/// `options`, or the defaults) if it is new; the oldest items beyond the
/// node's `max_items` go.
pub fn pep_publish(
    c: &mut Connection,
    owner: &str,
    node: &str,
    options: Option<PepOptions>,
    id: &str,
    payload: &str,
) -> rusqlite::Result<Published> {
    let tx = c.transaction()?;
    let config = match pep_config(&tx, owner, node)? {
        Some(existing) => {
            if let Some(field) = options.and_then(|o| o.mismatch(&existing)) {
                return Ok(Published::PreconditionNotMet(field));
            }
            existing
        }
        None => {
            let nodes: i64 = tx.query_row(
                "SELECT COUNT(*) FROM pep_nodes WHERE owner=?1",
                params![owner],
                |r| r.get(0),
            )?;
            if nodes >= MAX_PEP_NODES {
                return Ok(Published::TooManyNodes);
            }
            let config = options.unwrap_or_default().over(PepConfig::default());
            tx.execute(
                "INSERT INTO pep_nodes (owner, node, access, max_items) VALUES (?1, ?2, ?3, ?4)",
                params![owner, node, config.access.name(), config.max_items],
            )?;
            config
        }
    };
    let seq: i64 = tx.query_row(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM pep_items WHERE owner=?1 AND node=?2",
        params![owner, node],
        |r| r.get(0),
    )?;
    tx.execute(
        "INSERT INTO pep_items (owner, node, id, payload, seq) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(owner, node, id) DO UPDATE SET payload=?4, seq=?5",
        params![owner, node, id, payload, seq],
    )?;
    tx.execute(
        "DELETE FROM pep_items WHERE owner=?1 AND node=?2 AND seq <=
             (SELECT seq FROM pep_items WHERE owner=?1 AND node=?2 ORDER BY seq DESC LIMIT 1 OFFSET ?3)",
        params![owner, node, config.max_items],
    )?;
    tx.commit()?;
    Ok(Published::Stored)
}

/// The latest item of each of `owner`'s nodes: `(node, id, payload XML)`.
pub fn pep_owner_latest(
    c: &Connection,
    owner: &str,
) -> rusqlite::Result<Vec<(String, String, String)>> {
    let mut st = c.prepare_cached(
        "SELECT i.node, i.id, i.payload FROM pep_items i
         WHERE i.owner = ?1
           AND i.seq = (SELECT MAX(seq) FROM pep_items WHERE owner = i.owner AND node = i.node)",
    )?;
    st.query_map(params![owner], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect()
}

/// A node's items, `(id, payload XML)`, oldest first.
pub type PepItems = Vec<(String, String)>;

/// A node's items, oldest first (the last `max` of them), with its
/// configuration; `None` when there is no such node.
pub fn pep_items(
    c: &Connection,
    owner: &str,
    node: &str,
    max: Option<i64>,
) -> rusqlite::Result<Option<(PepConfig, PepItems)>> {
    let Some(config) = pep_config(c, owner, node)? else {
        return Ok(None);
    };
    let mut st = c.prepare_cached(
        "SELECT id, payload FROM (SELECT id, payload, seq FROM pep_items
             WHERE owner=?1 AND node=?2 ORDER BY seq DESC LIMIT ?3) ORDER BY seq",
    )?;
    let items = st
        .query_map(params![owner, node, max.unwrap_or(MAX_PEP_ITEMS)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some((config, items)))
}

/// The latest item of `node` of every owner that has one, with the
/// node's access model: `(owner, access, id, payload)`.
pub fn pep_latest(
    c: &Connection,
    node: &str,
) -> rusqlite::Result<Vec<(String, PepAccess, String, String)>> {
    let mut st = c.prepare_cached(
        "SELECT i.owner, n.access, i.id, i.payload FROM pep_items i
         JOIN pep_nodes n ON n.owner = i.owner AND n.node = i.node
         WHERE i.node = ?1
           AND i.seq = (SELECT MAX(seq) FROM pep_items WHERE owner = i.owner AND node = i.node)",
    )?;
    st.query_map(params![node], |r| {
        let access: String = r.get(1)?;
        Ok((
            r.get(0)?,
            PepAccess::parse(&access).unwrap_or(PepAccess::Presence),
            r.get(2)?,
            r.get(3)?,
        ))
    })?
    .collect()
}

/// Removes an item; whether it was there.
pub fn pep_retract(c: &Connection, owner: &str, node: &str, id: &str) -> rusqlite::Result<bool> {
    Ok(c.execute(
        "DELETE FROM pep_items WHERE owner=?1 AND node=?2 AND id=?3",
        params![owner, node, id],
    )? > 0)
}

/// Changes a node's configuration (dropping items beyond a smaller
/// `max_items`); whether the node exists.
pub fn pep_configure(
    c: &Connection,
    owner: &str,
    node: &str,
    config: PepConfig,
) -> rusqlite::Result<bool> {
    let n = c.execute(
        "UPDATE pep_nodes SET access=?3, max_items=?4 WHERE owner=?1 AND node=?2",
        params![owner, node, config.access.name(), config.max_items],
    )?;
    if n > 0 {
        c.execute(
            "DELETE FROM pep_items WHERE owner=?1 AND node=?2 AND seq <=
                 (SELECT seq FROM pep_items WHERE owner=?1 AND node=?2 ORDER BY seq DESC LIMIT 1 OFFSET ?3)",
            params![owner, node, config.max_items],
        )?;
    }
    Ok(n > 0)
}

/// Deletes a node and its items; whether it existed.
pub fn pep_delete_node(c: &mut Connection, owner: &str, node: &str) -> rusqlite::Result<bool> {
    let tx = c.transaction()?;
    tx.execute(
        "DELETE FROM pep_items WHERE owner=?1 AND node=?2",
        params![owner, node],
    )?;
    let n = tx.execute(
        "DELETE FROM pep_nodes WHERE owner=?1 AND node=?2",
        params![owner, node],
    )?;
    tx.commit()?;
    Ok(n > 0)
}
