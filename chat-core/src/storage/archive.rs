//! The message archive (XEP-0313): each user's one-to-one messages, kept
//! for the configured days and bounded per user, read back a page at a
//! time (XEP-0059).

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

/// Most messages one user's archive keeps: the oldest go first.
pub const MAX_ARCHIVE_PER_USER: i64 = 10_000;

/// One archived message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    /// Its id in its owner's archive.
    pub id: i64,
    /// When it passed the server (Unix seconds).
    pub stamp: i64,
    /// The message as it was delivered.
    pub stanza: String,
}

/// A message to keep in `owner`'s archive (a user name, or a room's bare
/// JID), with `peer` (a bare JID, or in a room the speaker's room JID).
#[derive(Debug, Clone)]
pub struct ToArchive {
    /// Its id ([`Storage::next_archive_id`](super::Storage::next_archive_id)):
    /// the stanza-id its recipient saw.
    pub id: i64,
    /// Whose archive.
    pub owner: String,
    /// The other party's bare JID.
    pub peer: String,
    /// When (Unix seconds).
    pub stamp: i64,
    /// The message.
    pub stanza: String,
}

/// Stores a batch in one transaction, then trims the owners it touched to
/// [`MAX_ARCHIVE_PER_USER`] and everyone to `days` of age.
pub fn archive_batch(c: &mut Connection, batch: &[ToArchive], days: u32) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO archive (id, owner, peer, stamp, stanza) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for m in batch {
            insert.execute(params![m.id, m.owner, m.peer, m.stamp, m.stanza])?;
        }
        let mut owners: Vec<&str> = batch.iter().map(|m| m.owner.as_str()).collect();
        owners.sort_unstable();
        owners.dedup();
        let mut trim = tx.prepare_cached(
            "DELETE FROM archive WHERE owner=?1 AND id <=
                 (SELECT id FROM archive WHERE owner=?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        )?;
        for o in owners {
            trim.execute(params![o, MAX_ARCHIVE_PER_USER])?;
        }
    }
    let oldest = crate::util::unix_now() - i64::from(days) * 86_400;
    tx.execute("DELETE FROM archive WHERE stamp < ?1", params![oldest])?;
    tx.commit()
}

/// What a query asks for.
#[derive(Debug, Clone, Default)]
pub struct ArchiveQuery {
    /// Only with this bare JID.
    pub with: Option<String>,
    /// From this time on (Unix seconds).
    pub start: Option<i64>,
    /// Up to this time.
    pub end: Option<i64>,
    /// Only ids after this one (the next page).
    pub after: Option<i64>,
    /// Only ids before this one; `Some(None)`: the last page.
    pub before: Option<Option<i64>>,
    /// A page's size.
    pub max: i64,
}

/// A page of `owner`'s archive, oldest first, and whether it reaches the
/// end of what matches (`complete`).
pub fn archive_page(
    c: &Connection,
    owner: &str,
    q: &ArchiveQuery,
) -> rusqlite::Result<(Vec<Archived>, bool)> {
    let backwards = q.before.is_some();
    let sql = format!(
        "SELECT id, stamp, stanza FROM archive WHERE owner=?1
           AND (?2 IS NULL OR peer=?2) AND (?3 IS NULL OR stamp>=?3) AND (?4 IS NULL OR stamp<=?4)
           AND (?5 IS NULL OR id>?5) AND (?6 IS NULL OR id<?6)
         ORDER BY id {} LIMIT ?7",
        if backwards { "DESC" } else { "ASC" }
    );
    let before = q.before.flatten();
    let mut st = c.prepare_cached(&sql)?;
    let mut rows: Vec<Archived> = st
        .query_map(
            params![owner, q.with, q.start, q.end, q.after, before, q.max + 1],
            |r| {
                Ok(Archived {
                    id: r.get(0)?,
                    stamp: r.get(1)?,
                    stanza: r.get(2)?,
                })
            },
        )?
        .collect::<rusqlite::Result<_>>()?;
    let complete = rows.len() as i64 <= q.max;
    rows.truncate(q.max as usize);
    if backwards {
        rows.reverse();
    }
    Ok((rows, complete))
}

/// What the archive writer is sent.
pub enum ArchiveWrite {
    /// A message to keep.
    Keep(ToArchive),
    /// Answer once everything sent before is written.
    Flush(oneshot::Sender<()>),
}
