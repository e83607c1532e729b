//! Durable state in one SQLite file: accounts, profiles, rosters, offline
//! messages, rooms and their recent history.
//!
//! - WAL mode with `synchronous=FULL`: a write the server has acknowledged
//!   (a registration, a stored offline message) is on disk before the
//!   acknowledgement leaves, so it survives `kill -9` and a power cut.
//! - Accounts hold SCRAM credentials only (salt, iterations, StoredKey,
//!   ServerKey for SHA-1 and SHA-256), never the password: a stolen database
//!   does not hand out passwords, only material for a slow dictionary attack.
//! - Every statement takes parameters; no SQL is ever built from peer input
//!   (SQL injection).
//!
//! rusqlite is synchronous, so async callers go through [`Storage::run`],
//! which runs the closure on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use protocol::sasl::{ScramCredentials, ScramHash};
use rusqlite::{Connection, OptionalExtension, params};

/// Most offline messages kept for one account. Beyond it, senders get an
/// error: otherwise anyone could fill the server's disk by messaging an
/// account that never signs in.
pub const MAX_OFFLINE_PER_USER: i64 = 1000;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The data folder could not be created.
    #[error("cannot create the data folder {path}: {source}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// SQLite failed (locked file, disk full, corrupt database...).
    #[error("database error in {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The blocking task running the query panicked or was cancelled.
    #[error("database task failed: {0}")]
    Task(String),
}

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

/// The database handle, cheap to clone.
#[derive(Clone)]
pub struct Storage {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    secret: [u8; 32],
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    username TEXT PRIMARY KEY,
    salt1 BLOB NOT NULL, iter1 INTEGER NOT NULL, stored1 BLOB NOT NULL, server1 BLOB NOT NULL,
    salt256 BLOB NOT NULL, iter256 INTEGER NOT NULL, stored256 BLOB NOT NULL, server256 BLOB NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS roster (
    owner TEXT NOT NULL,
    contact TEXT NOT NULL,
    name TEXT,
    groups TEXT NOT NULL DEFAULT '',
    subscription TEXT NOT NULL DEFAULT 'none',
    ask INTEGER NOT NULL DEFAULT 0,
    pending_in INTEGER NOT NULL DEFAULT 0,
    in_roster INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (owner, contact)
);
CREATE INDEX IF NOT EXISTS roster_by_contact ON roster(contact);
CREATE TABLE IF NOT EXISTS offline (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    stanza TEXT NOT NULL,
    stamp INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS offline_by_owner ON offline(owner, id);
CREATE TABLE IF NOT EXISTS profiles (
    username TEXT PRIMARY KEY,
    name TEXT,
    email TEXT
);
CREATE TABLE IF NOT EXISTS rooms (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    subject TEXT,
    subject_by TEXT,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS room_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room TEXT NOT NULL,
    nick TEXT NOT NULL,
    body TEXT NOT NULL,
    msg_id TEXT,
    stamp INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS room_history_by_room ON room_history(room, id);
CREATE INDEX IF NOT EXISTS rooms_by_owner ON rooms(owner);
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
";

impl Storage {
    /// Opens (creating if needed) `chat.db` in `dir`.
    pub fn open(dir: &Path) -> Result<Storage, StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("chat.db");
        let err = |source| StorageError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        let secret = server_secret(&conn).map_err(err)?;
        Ok(Storage {
            conn: Arc::new(Mutex::new(conn)),
            path,
            secret,
        })
    }

    /// The server's own secret: 32 random bytes made when the database was,
    /// kept with the accounts (it keys the decoy SCRAM salts of unknown
    /// users, which must stay the same across restarts as real ones do).
    pub fn server_secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection on the blocking thread pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock poisons it; the connection
            // itself is still consistent (SQLite rolled back), so go on.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard).map_err(|source| StorageError::Sqlite { path, source })
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()))?
    }
}

/// Loads the server secret, making it on first use.
fn server_secret(c: &Connection) -> rusqlite::Result<[u8; 32]> {
    let mut fresh = [0u8; 32];
    getrandom::fill(&mut fresh)
        .unwrap_or_else(|e| panic!("the OS random number generator failed: {e}"));
    // INSERT OR IGNORE: a second server on the same folder keeps the first's.
    c.execute(
        "INSERT OR IGNORE INTO secrets (name, value) VALUES ('server', ?1)",
        params![fresh.to_vec()],
    )?;
    let stored: Vec<u8> =
        c.query_row("SELECT value FROM secrets WHERE name='server'", [], |r| {
            r.get(0)
        })?;
    Ok(stored.try_into().unwrap_or(fresh))
}

/// Stored credentials of one account, for both SCRAM hashes.
#[derive(Debug, Clone)]
pub struct AccountCredentials {
    /// SCRAM-SHA-1 credentials.
    pub sha1: ScramCredentials,
    /// SCRAM-SHA-256 credentials.
    pub sha256: ScramCredentials,
}

impl AccountCredentials {
    /// Derives both sets from a password (slow on purpose: PBKDF2).
    pub fn from_password(password: &str) -> Self {
        AccountCredentials {
            sha1: ScramCredentials::new_random(ScramHash::Sha1, password),
            sha256: ScramCredentials::new_random(ScramHash::Sha256, password),
        }
    }

    /// The set for one hash.
    pub fn for_hash(&self, hash: ScramHash) -> &ScramCredentials {
        match hash {
            ScramHash::Sha1 => &self.sha1,
            ScramHash::Sha256 => &self.sha256,
        }
    }
}

/// Runs `sql` with the user name as ?1 and both credential sets as ?2 to ?9
/// (SHA-1 salt, iterations, StoredKey, ServerKey, then the same for SHA-256).
fn write_credentials(
    c: &Connection,
    sql: &str,
    username: &str,
    creds: &AccountCredentials,
) -> rusqlite::Result<bool> {
    let (a, b) = (&creds.sha1, &creds.sha256);
    let n = c.execute(
        sql,
        params![
            username,
            a.salt,
            a.iterations,
            a.stored_key,
            a.server_key,
            b.salt,
            b.iterations,
            b.stored_key,
            b.server_key
        ],
    )?;
    Ok(n == 1)
}

/// Creates an account; `Ok(false)` when the name is taken.
pub fn create_account(
    c: &Connection,
    username: &str,
    creds: &AccountCredentials,
) -> rusqlite::Result<bool> {
    write_credentials(
        c,
        "INSERT OR IGNORE INTO accounts
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, CAST(strftime('%s', 'now') AS INTEGER))",
        username,
        creds,
    )
}

/// Replaces an account's credentials (password change).
pub fn set_credentials(
    c: &Connection,
    username: &str,
    creds: &AccountCredentials,
) -> rusqlite::Result<bool> {
    write_credentials(
        c,
        "UPDATE accounts SET salt1=?2, iter1=?3, stored1=?4, server1=?5,
                salt256=?6, iter256=?7, stored256=?8, server256=?9 WHERE username=?1",
        username,
        creds,
    )
}

/// The stored credentials of an account.
pub fn credentials(c: &Connection, username: &str) -> rusqlite::Result<Option<AccountCredentials>> {
    c.query_row(
        "SELECT salt1, iter1, stored1, server1, salt256, iter256, stored256, server256
         FROM accounts WHERE username=?1",
        params![username],
        |r| {
            Ok(AccountCredentials {
                sha1: ScramCredentials {
                    salt: r.get(0)?,
                    iterations: r.get(1)?,
                    stored_key: r.get(2)?,
                    server_key: r.get(3)?,
                },
                sha256: ScramCredentials {
                    salt: r.get(4)?,
                    iterations: r.get(5)?,
                    stored_key: r.get(6)?,
                    server_key: r.get(7)?,
                },
            })
        },
    )
    .optional()
}

/// True when the account exists.
pub fn account_exists(c: &Connection, username: &str) -> rusqlite::Result<bool> {
    c.query_row(
        "SELECT 1 FROM accounts WHERE username=?1",
        params![username],
        |_| Ok(()),
    )
    .optional()
    .map(|o| o.is_some())
}

/// Deletes an account, its roster and its offline messages, and removes it
/// from every other roster. Returns the owners whose rosters lost the item.
pub fn delete_account(
    c: &mut Connection,
    username: &str,
    bare_jid: &str,
) -> rusqlite::Result<Vec<String>> {
    let tx = c.transaction()?;
    let owners = {
        let mut st = tx.prepare("SELECT owner FROM roster WHERE contact=?1 AND in_roster=1")?;
        st.query_map(params![bare_jid], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?
    };
    tx.execute(
        "DELETE FROM roster WHERE owner=?1 OR contact=?2",
        params![username, bare_jid],
    )?;
    tx.execute("DELETE FROM offline WHERE owner=?1", params![username])?;
    tx.execute("DELETE FROM profiles WHERE username=?1", params![username])?;
    // The account's rooms go with it: whoever registers the name next must
    // not inherit the right to configure or destroy them.
    tx.execute(
        "DELETE FROM room_history WHERE room IN (SELECT name FROM rooms WHERE owner=?1)",
        params![bare_jid],
    )?;
    tx.execute("DELETE FROM rooms WHERE owner=?1", params![bare_jid])?;
    tx.execute("DELETE FROM accounts WHERE username=?1", params![username])?;
    tx.commit()?;
    Ok(owners)
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

/// A user's public profile: display name and email, from the vCard
/// (XEP-0054) or registration fields. Both are visible to every user of the
/// directory, and in plaintext to anyone on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// Display name.
    pub name: Option<String>,
    /// Email address.
    pub email: Option<String>,
}

/// Sets the fields of a profile that are `Some` (an empty string clears one).
pub fn set_profile(c: &Connection, username: &str, p: &Profile) -> rusqlite::Result<()> {
    let clean = |v: &Option<String>| v.as_ref().map(|s| s.trim().to_string());
    c.execute(
        "INSERT INTO profiles (username, name, email) VALUES (?1, NULLIF(?2, ''), NULLIF(?3, ''))
         ON CONFLICT(username) DO UPDATE SET
           name = CASE WHEN ?2 IS NULL THEN name ELSE NULLIF(?2, '') END,
           email = CASE WHEN ?3 IS NULL THEN email ELSE NULLIF(?3, '') END",
        params![username, clean(&p.name), clean(&p.email)],
    )?;
    Ok(())
}

/// The profile of an account (empty when none was set).
pub fn profile(c: &Connection, username: &str) -> rusqlite::Result<Profile> {
    Ok(c.query_row(
        "SELECT name, email FROM profiles WHERE username=?1",
        params![username],
        |r| {
            Ok(Profile {
                name: r.get(0)?,
                email: r.get(1)?,
            })
        },
    )
    .optional()?
    .unwrap_or_default())
}

/// What a directory search matches; `None` fields match everything.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// Substring of the user name or the display name.
    pub user: Option<String>,
    /// Substring of the display name.
    pub name: Option<String>,
    /// Substring of the email address.
    pub email: Option<String>,
}

/// Accounts matching `q` (case-insensitive substrings), by user name, at
/// most `limit` of those after the user name `after`; and how many matched
/// in all.
pub fn search_users(
    c: &Connection,
    q: &SearchQuery,
    after: Option<&str>,
    limit: usize,
) -> rusqlite::Result<(Vec<(String, Profile)>, usize)> {
    // LIKE patterns are built from user input, so the wildcards in it are
    // escaped: a search for "%" finds a literal percent sign, not everyone.
    let pattern = |v: &Option<String>| {
        v.as_ref().map(|s| {
            let esc = s
                .trim()
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{esc}%")
        })
    };
    let filter = "FROM accounts a LEFT JOIN profiles p ON p.username = a.username
        WHERE (?1 IS NULL OR lower(a.username) LIKE ?1 ESCAPE '\\' OR lower(p.name) LIKE ?1 ESCAPE '\\')
          AND (?2 IS NULL OR lower(p.name) LIKE ?2 ESCAPE '\\')
          AND (?3 IS NULL OR lower(p.email) LIKE ?3 ESCAPE '\\')";
    let args = params![pattern(&q.user), pattern(&q.name), pattern(&q.email)];
    let total: i64 = c.query_row(&format!("SELECT COUNT(*) {filter}"), args, |r| r.get(0))?;
    let mut st = c.prepare_cached(&format!(
        "SELECT a.username, p.name, p.email {filter} AND (?4 IS NULL OR a.username > ?4)
         ORDER BY a.username LIMIT {limit}"
    ))?;
    let rows = st
        .query_map(
            params![pattern(&q.user), pattern(&q.name), pattern(&q.email), after],
            |r| {
                Ok((
                    r.get(0)?,
                    Profile {
                        name: r.get(1)?,
                        email: r.get(2)?,
                    },
                ))
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((rows, usize::try_from(total).unwrap_or(0)))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        drop(s);
        let c = Connection::open(dir.path().join("chat.db")).unwrap();
        (dir, c)
    }

    #[test]
    fn accounts_store_no_password() {
        let (dir, c) = db();
        let creds = AccountCredentials::from_password("hunter2-unique-canary");
        assert!(create_account(&c, "alice", &creds).unwrap());
        assert!(!create_account(&c, "alice", &creds).unwrap(), "taken name");
        let got = credentials(&c, "alice").unwrap().unwrap();
        assert!(
            got.sha256
                .verify_password(ScramHash::Sha256, "hunter2-unique-canary")
        );
        assert!(
            got.sha1
                .verify_password(ScramHash::Sha1, "hunter2-unique-canary")
        );
        drop(c);
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(
                !bytes.windows(21).any(|w| w == b"hunter2-unique-canary"),
                "password found in the data folder"
            );
        }
    }

    #[test]
    fn roster_rows_round_trip_and_empty_rows_vanish() {
        let (_d, c) = db();
        let mut r = RosterRow::new("alice", "bob@localhost");
        r.name = Some("Bob".into());
        r.groups = vec!["Friends".into(), "Work".into()];
        r.subscription = Subscription::To;
        r.in_roster = true;
        put_roster_row(&c, &r).unwrap();
        assert_eq!(
            roster_row(&c, "alice", "bob@localhost").unwrap(),
            Some(r.clone())
        );
        let empty = RosterRow::new("alice", "bob@localhost");
        put_roster_row(&c, &empty).unwrap();
        assert_eq!(roster_row(&c, "alice", "bob@localhost").unwrap(), None);
    }

    #[test]
    fn offline_store_is_bounded_and_ordered() {
        let (_d, mut c) = db();
        for i in 0..MAX_OFFLINE_PER_USER {
            assert!(store_offline(&c, "bob", &format!("<m{i}/>")).unwrap());
        }
        assert!(!store_offline(&c, "bob", "<over/>").unwrap());
        let ids = offline_ids(&c, "bob").unwrap();
        assert_eq!(ids.len() as i64, MAX_OFFLINE_PER_USER);
        let first = offline_stanzas(&c, &ids[..2]).unwrap();
        assert_eq!(first[0].1, "<m0/>");
        assert_eq!(first[1].1, "<m1/>");
        delete_offline(&mut c, &ids).unwrap();
        assert!(offline_ids(&c, "bob").unwrap().is_empty());
    }

    #[test]
    fn deleting_an_account_removes_it_everywhere() {
        let (_d, mut c) = db();
        let creds = AccountCredentials::from_password("pw");
        create_account(&c, "alice", &creds).unwrap();
        let mut in_bob = RosterRow::new("bob", "alice@localhost");
        in_bob.in_roster = true;
        put_roster_row(&c, &in_bob).unwrap();
        let mut own = RosterRow::new("alice", "bob@localhost");
        own.in_roster = true;
        put_roster_row(&c, &own).unwrap();
        store_offline(&c, "alice", "<x/>").unwrap();
        create_room(&c, "hers", "alice@localhost", 10, 10).unwrap();
        create_room(&c, "his", "bob@localhost", 10, 10).unwrap();
        let owners = delete_account(&mut c, "alice", "alice@localhost").unwrap();
        assert_eq!(room_names(&c).unwrap(), ["his"], "her rooms go with her");
        assert_eq!(owners, ["bob"]);
        assert!(!account_exists(&c, "alice").unwrap());
        assert!(roster_rows(&c, "bob").unwrap().is_empty());
        assert!(roster_rows(&c, "alice").unwrap().is_empty());
        assert!(offline_ids(&c, "alice").unwrap().is_empty());
    }

    #[test]
    fn subscription_halves() {
        assert_eq!(Subscription::None.with_to(true), Subscription::To);
        assert_eq!(Subscription::To.with_from(true), Subscription::Both);
        assert_eq!(Subscription::Both.with_to(false), Subscription::From);
        assert!(Subscription::Both.has_from() && Subscription::Both.has_to());
    }

    #[test]
    fn search_matches_user_name_display_name_and_email_without_wildcards() {
        let (_d, c) = db();
        let creds = AccountCredentials::from_password("pw");
        for u in ["alice", "bob", "carol"] {
            create_account(&c, u, &creds).unwrap();
        }
        set_profile(
            &c,
            "bob",
            &Profile {
                name: Some("Robert Tables".into()),
                email: Some("bob@example.org".into()),
            },
        )
        .unwrap();
        let find = |q: SearchQuery| {
            search_users(&c, &q, None, 10)
                .unwrap()
                .0
                .into_iter()
                .map(|(u, _)| u)
                .collect::<Vec<_>>()
        };
        assert_eq!(find(SearchQuery::default()), ["alice", "bob", "carol"]);
        let by = |user: Option<&str>, email: Option<&str>| SearchQuery {
            user: user.map(Into::into),
            name: None,
            email: email.map(Into::into),
        };
        assert_eq!(find(by(Some("ROBERT"), None)), ["bob"]);
        assert_eq!(find(by(Some("car"), None)), ["carol"]);
        assert_eq!(find(by(None, Some("example.org"))), ["bob"]);
        assert!(find(by(Some("%"), None)).is_empty(), "% is literal");
        let (rows, total) = search_users(&c, &SearchQuery::default(), None, 2).unwrap();
        assert_eq!((rows.len(), total), (2, 3));
        // The next page starts after the last user name of this one.
        let (rows, total) = search_users(&c, &SearchQuery::default(), Some(&rows[1].0), 2).unwrap();
        assert_eq!((rows.len(), total), (1, 3));
        assert_eq!(rows[0].0, "carol");
        // A partial update keeps the other field; "" clears.
        set_profile(
            &c,
            "bob",
            &Profile {
                name: Some(String::new()),
                email: None,
            },
        )
        .unwrap();
        assert_eq!(
            profile(&c, "bob").unwrap(),
            Profile {
                name: None,
                email: Some("bob@example.org".into())
            }
        );
    }

    #[test]
    fn the_server_secret_is_made_once_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let first = *Storage::open(d.path()).unwrap().server_secret();
        let again = *Storage::open(d.path()).unwrap().server_secret();
        assert_eq!(first, again, "kept across restarts");
        let e = tempfile::tempdir().unwrap();
        assert_ne!(first, *Storage::open(e.path()).unwrap().server_secret());
    }

    #[test]
    fn rooms_keep_only_recent_history() {
        let (_d, mut c) = db();
        assert_eq!(
            create_room(&c, "lab", "alice@localhost", 10, 2).unwrap(),
            CreatedRoom::Created
        );
        for i in 0..30 {
            let row = HistoryRow {
                nick: "alice".into(),
                body: format!("m{i}"),
                id: None,
                stamp: i,
            };
            add_room_history(&mut c, "lab", &row, 20).unwrap();
        }
        set_room_subject(&c, "lab", "alice", "Week 3").unwrap();
        let room = load_room(&c, "lab", 20).unwrap().unwrap();
        assert_eq!(room.history.len(), 20);
        assert_eq!(room.history[0].body, "m10");
        assert_eq!(room.history[19].body, "m29");
        assert_eq!(room.subject, Some(("alice".into(), "Week 3".into())));
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM room_history", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 20, "older rows are deleted, not just hidden");
        assert_eq!(
            create_room(&c, "other", "bob@localhost", 1, 2).unwrap(),
            CreatedRoom::ServerFull
        );
        assert_eq!(
            create_room(&c, "lab", "bob@localhost", 1, 2).unwrap(),
            CreatedRoom::Exists
        );
        assert_eq!(room_names(&c).unwrap(), ["lab"]);
        // One owner's cap leaves room for others.
        assert_eq!(
            create_room(&c, "lab2", "alice@localhost", 10, 2).unwrap(),
            CreatedRoom::Created
        );
        assert_eq!(
            create_room(&c, "lab3", "alice@localhost", 10, 2).unwrap(),
            CreatedRoom::OwnerFull
        );
        assert_eq!(
            create_room(&c, "lab3", "bob@localhost", 10, 2).unwrap(),
            CreatedRoom::Created
        );
        // Destroyed: gone with its history, and a late message does not
        // bring any back.
        delete_room(&mut c, "lab").unwrap();
        add_room_history(
            &mut c,
            "lab",
            &HistoryRow {
                nick: "alice".into(),
                body: "late".into(),
                id: None,
                stamp: 99,
            },
            20,
        )
        .unwrap();
        assert_eq!(load_room(&c, "lab", 20).unwrap(), None);
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM room_history", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }
}
