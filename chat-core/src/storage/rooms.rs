//! Rooms: owner, subject and recent history, bounded per owner and in
//! total.

use rusqlite::{Connection, OptionalExtension, params};

/// A room as stored: its owner, subject and recent history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRow {
    /// The bare JID of the user who created it.
    pub owner: String,
    /// The subject and the nickname that set it.
    pub subject: Option<(String, String)>,
    /// The most recent messages, oldest first.
    pub history: Vec<HistoryRow>,
}

/// One message of a room's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// The sender's nickname.
    pub nick: String,
    /// The text.
    pub body: String,
    /// The sender's message id.
    pub id: Option<String>,
    /// When the room received it (unix seconds).
    pub stamp: i64,
}

/// Loads a room with its last `history` messages.
pub fn load_room(c: &Connection, name: &str, history: usize) -> rusqlite::Result<Option<RoomRow>> {
    let Some((owner, subject, subject_by)) = c
        .query_row(
            "SELECT owner, subject, subject_by FROM rooms WHERE name=?1",
            params![name],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            },
        )
        .optional()?
    else {
        return Ok(None);
    };
    let mut st = c.prepare_cached(
        "SELECT nick, body, msg_id, stamp FROM room_history WHERE room=?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let mut rows = st
        .query_map(params![name, history as i64], |r| {
            Ok(HistoryRow {
                nick: r.get(0)?,
                body: r.get(1)?,
                id: r.get(2)?,
                stamp: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.reverse();
    Ok(Some(RoomRow {
        owner,
        subject: subject.map(|s| (subject_by.unwrap_or_default(), s)),
        history: rows,
    }))
}

/// What [`create_room`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreatedRoom {
    /// A new room, owned by the caller.
    Created,
    /// The room existed already (someone else made it meanwhile).
    Exists,
    /// The server holds its maximum of rooms.
    ServerFull,
    /// The caller owns its maximum of rooms.
    OwnerFull,
}

/// Creates a room unless `max` rooms exist already or `owner` owns
/// `max_per_owner` of them.
pub fn create_room(
    c: &Connection,
    name: &str,
    owner: &str,
    max: usize,
    max_per_owner: usize,
) -> rusqlite::Result<CreatedRoom> {
    let exists: bool = c
        .query_row("SELECT 1 FROM rooms WHERE name=?1", params![name], |_| {
            Ok(())
        })
        .optional()?
        .is_some();
    if exists {
        return Ok(CreatedRoom::Exists);
    }
    let count: i64 = c.query_row("SELECT COUNT(*) FROM rooms", [], |r| r.get(0))?;
    if count >= max as i64 {
        return Ok(CreatedRoom::ServerFull);
    }
    let owned: i64 = c.query_row(
        "SELECT COUNT(*) FROM rooms WHERE owner=?1",
        params![owner],
        |r| r.get(0),
    )?;
    if owned >= max_per_owner as i64 {
        return Ok(CreatedRoom::OwnerFull);
    }
    c.execute(
        "INSERT OR IGNORE INTO rooms (name, owner, created) VALUES (?1, ?2, ?3)",
        params![name, owner, crate::util::unix_now()],
    )?;
    Ok(CreatedRoom::Created)
}

/// Deletes a room and its history (the owner destroyed it).
pub fn delete_room(c: &mut Connection, name: &str) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    tx.execute("DELETE FROM room_history WHERE room=?1", params![name])?;
    tx.execute("DELETE FROM rooms WHERE name=?1", params![name])?;
    tx.commit()
}

/// Names of every room, sorted.
pub fn room_names(c: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut st = c.prepare_cached("SELECT name FROM rooms ORDER BY name")?;
    st.query_map([], |r| r.get(0))?.collect()
}

/// Sets a room's subject.
pub fn set_room_subject(
    c: &Connection,
    room: &str,
    nick: &str,
    subject: &str,
) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE rooms SET subject=?2, subject_by=?3 WHERE name=?1",
        params![room, subject, nick],
    )?;
    Ok(())
}

/// Appends a message to a room's history and forgets all but the last
/// `keep`, so a busy room does not grow the database without bound.
pub fn add_room_history(
    c: &mut Connection,
    room: &str,
    row: &HistoryRow,
    keep: usize,
) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    tx.execute(
        // Only into a room that still exists: a message racing the room's
        // destruction must not leave history for a future room of that name.
        "INSERT INTO room_history (room, nick, body, msg_id, stamp)
         SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM rooms WHERE name=?1)",
        params![room, row.nick, row.body, row.id, row.stamp],
    )?;
    tx.execute(
        "DELETE FROM room_history WHERE room=?1 AND id <= (
            SELECT id FROM room_history WHERE room=?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        params![room, keep as i64],
    )?;
    tx.commit()
}
