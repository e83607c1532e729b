//! Offline messages (XEP-0160): stored stanzas, bounded per account, read
//! by id and deleted once delivered.

use rusqlite::{Connection, OptionalExtension, params};

/// Most offline messages kept for one account. Beyond it, senders get an
/// error: otherwise anyone could fill the server's disk by messaging an
/// account that never signs in.
pub const MAX_OFFLINE_PER_USER: i64 = 1000;

/// Stores a message for later delivery. `Ok(false)` when the account's
/// offline store is full.
pub fn store_offline(c: &Connection, owner: &str, stanza: &str) -> rusqlite::Result<bool> {
    let count: i64 = c.query_row(
        "SELECT COUNT(*) FROM offline WHERE owner=?1",
        params![owner],
        |r| r.get(0),
    )?;
    if count >= MAX_OFFLINE_PER_USER {
        return Ok(false);
    }
    c.execute(
        "INSERT INTO offline (owner, stanza, stamp) VALUES (?1, ?2, ?3)",
        params![owner, stanza, crate::util::unix_now()],
    )?;
    Ok(true)
}

/// The ids of an account's offline messages, oldest first (cheap: no
/// stanza text is read).
pub fn offline_ids(c: &Connection, owner: &str) -> rusqlite::Result<Vec<i64>> {
    let mut st = c.prepare_cached("SELECT id FROM offline WHERE owner=?1 ORDER BY id")?;
    st.query_map(params![owner], |r| r.get(0))?.collect()
}

/// The stanzas of some offline messages, by id, in id order.
pub fn offline_stanzas(c: &Connection, ids: &[i64]) -> rusqlite::Result<Vec<(i64, String)>> {
    let mut st = c.prepare_cached("SELECT id, stanza FROM offline WHERE id=?1")?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(row) = st
            .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
        {
            out.push(row);
        }
    }
    Ok(out)
}

/// Deletes delivered offline messages.
pub fn delete_offline(c: &mut Connection, ids: &[i64]) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    {
        let mut st = tx.prepare_cached("DELETE FROM offline WHERE id=?1")?;
        for id in ids {
            st.execute(params![id])?;
        }
    }
    tx.commit()
}
