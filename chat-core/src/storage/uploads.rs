//! HTTP file upload (XEP-0363): the slots handed out and the files they
//! hold. The bytes are files in the data folder, named by the slot's token;
//! this table says whose they are, what they are called and how big, so
//! that each user's quota holds across restarts.

use rusqlite::{Connection, OptionalExtension, params};

/// One slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The unguessable part of its URLs.
    pub token: String,
    /// The bare JID that asked for it.
    pub owner: String,
    /// The file name, made safe.
    pub name: String,
    /// The size announced, which the upload must match.
    pub size: u64,
    /// The content type announced.
    pub content_type: String,
    /// When it was handed out, seconds since the epoch.
    pub created: i64,
    /// Whether the file was uploaded whole.
    pub done: bool,
}

/// What each file costs against the quota at least: a disk block, so that
/// a million one-byte files are not nearly free.
pub const UPLOAD_MIN_CHARGE: u64 = 4096;

/// `done` in the table: open, being uploaded, or holding its file.
const OPEN: i64 = 0;
const DONE: i64 = 1;
const UPLOADING: i64 = 2;

/// Why a slot was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotRefused {
    /// The owner's files and open slots already use this many bytes.
    Quota(u64),
}

/// Hands out a slot unless it would take its owner over `quota` bytes
/// (files uploaded and slots still open both count). Slots not used by
/// `expired_before` are dropped first; their tokens are returned so the
/// caller can delete what they left.
pub fn upload_slot(
    c: &mut Connection,
    slot: &Upload,
    quota: u64,
    expired_before: i64,
) -> rusqlite::Result<(Result<(), SlotRefused>, Vec<String>)> {
    let tx = c.transaction()?;
    let expired = expire(&tx, expired_before)?;
    let used: i64 = tx.query_row(
        "SELECT COALESCE(SUM(MAX(size, ?2)), 0) FROM uploads WHERE owner = ?1",
        params![slot.owner, UPLOAD_MIN_CHARGE as i64],
        |r| r.get(0),
    )?;
    let used = used.max(0) as u64;
    if used.saturating_add(slot.size.max(UPLOAD_MIN_CHARGE)) > quota {
        tx.commit()?;
        return Ok((Err(SlotRefused::Quota(used)), expired));
    }
    tx.execute(
        "INSERT INTO uploads (token, owner, name, size, content_type, created, done)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
        params![
            slot.token,
            slot.owner,
            slot.name,
            slot.size as i64,
            slot.content_type,
            slot.created
        ],
    )?;
    tx.commit()?;
    Ok((Ok(()), expired))
}

/// Drops the slots handed out before `before` and never used, and those
/// whose upload stalled an hour past that (a server killed mid-upload);
/// their tokens.
pub fn upload_expire(c: &mut Connection, before: i64) -> rusqlite::Result<Vec<String>> {
    let tx = c.transaction()?;
    let gone = expire(&tx, before)?;
    tx.commit()?;
    Ok(gone)
}

fn expire(c: &Connection, before: i64) -> rusqlite::Result<Vec<String>> {
    let mut st =
        c.prepare("DELETE FROM uploads WHERE done = 0 AND created < ?1 RETURNING token")?;
    let rows = st.query_map(params![before], |r| r.get(0))?;
    rows.collect()
}

/// The slot of `token`.
pub fn upload_get(c: &Connection, token: &str) -> rusqlite::Result<Option<Upload>> {
    c.query_row(
        "SELECT token, owner, name, size, content_type, created, done FROM uploads WHERE token = ?1",
        params![token],
        |r| {
            Ok(Upload {
                token: r.get(0)?,
                owner: r.get(1)?,
                name: r.get(2)?,
                size: r.get::<_, i64>(3)?.max(0) as u64,
                content_type: r.get(4)?,
                created: r.get(5)?,
                done: r.get::<_, i64>(6)? == DONE,
            })
        },
    )
    .optional()
}

/// Claims an open slot for one upload: false when it is being uploaded
/// to, already filled, or gone. Two PUTs racing on one slot: one wins.
pub fn upload_claim(c: &Connection, token: &str) -> rusqlite::Result<bool> {
    Ok(c.execute(
        "UPDATE uploads SET done = ?2 WHERE token = ?1 AND done = ?3",
        params![token, UPLOADING, OPEN],
    )? == 1)
}

/// Opens a claimed slot again (its upload failed: the client may retry).
pub fn upload_release(c: &Connection, token: &str) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE uploads SET done = ?2 WHERE token = ?1 AND done = ?3",
        params![token, OPEN, UPLOADING],
    )?;
    Ok(())
}

/// Marks a claimed slot's file as uploaded; false when the slot is gone.
pub fn upload_done(c: &Connection, token: &str) -> rusqlite::Result<bool> {
    Ok(c.execute(
        "UPDATE uploads SET done = ?2 WHERE token = ?1 AND done = ?3",
        params![token, DONE, UPLOADING],
    )? == 1)
}
