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
//!
//! - [`mod@self`]: the connection, the schema, errors, the server secret.
//! - [`accounts`]: credentials, creation, password change, removal.
//! - [`roster`]: roster rows and subscription states.
//! - [`offline`]: offline messages.
//! - [`directory`]: profiles and user search.
//! - [`rooms`]: rooms, subjects and history.

mod accounts;
mod archive;
mod directory;
mod offline;
mod pep;
mod rooms;
mod roster;
mod uploads;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, params};

pub use accounts::*;
pub use archive::*;
pub use directory::*;
pub use offline::*;
pub use pep::*;
pub use rooms::*;
pub use roster::*;
pub use uploads::*;

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

/// The database handle, cheap to clone.
#[derive(Clone)]
pub struct Storage {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    secret: [u8; 32],
    /// The last message archive id handed out: ids are given when a
    /// message passes (its stanza-id, XEP-0359), before the batch writer
    /// stores it.
    archive_ids: Arc<std::sync::atomic::AtomicI64>,
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
CREATE TABLE IF NOT EXISTS pep_nodes (
    owner TEXT NOT NULL,
    node TEXT NOT NULL,
    access TEXT NOT NULL,
    max_items INTEGER NOT NULL,
    PRIMARY KEY (owner, node)
);
CREATE TABLE IF NOT EXISTS pep_items (
    owner TEXT NOT NULL,
    node TEXT NOT NULL,
    id TEXT NOT NULL,
    payload TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (owner, node, id)
);
CREATE TABLE IF NOT EXISTS archive (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    peer TEXT NOT NULL,
    stamp INTEGER NOT NULL,
    stanza TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS archive_by_owner ON archive(owner, id);
CREATE INDEX IF NOT EXISTS archive_by_peer ON archive(owner, peer, id);
CREATE TABLE IF NOT EXISTS uploads (
    token TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    created INTEGER NOT NULL,
    done INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_by_owner ON uploads(owner);
CREATE INDEX IF NOT EXISTS uploads_by_state ON uploads(done, created);
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
        // Never an id used before, even one deleted since (AUTOINCREMENT's
        // own counter remembers those).
        let last_id: i64 = conn
            .query_row(
                "SELECT MAX(COALESCE((SELECT MAX(id) FROM archive), 0),
                            COALESCE((SELECT seq FROM sqlite_sequence WHERE name='archive'), 0))",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        Ok(Storage {
            conn: Arc::new(Mutex::new(conn)),
            path,
            secret,
            archive_ids: Arc::new(std::sync::atomic::AtomicI64::new(last_id)),
        })
    }

    /// The server's own secret: 32 random bytes made when the database was,
    /// kept with the accounts (it keys the decoy SCRAM salts of unknown
    /// users, which must stay the same across restarts as real ones do).
    pub fn server_secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// A new message archive id, never handed out before.
    pub fn next_archive_id(&self) -> i64 {
        self.archive_ids
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts the task that writes the message archive a batch at a time
    /// (a transaction per batch, not per message: the message path pays a
    /// queue, not a disk sync), keeping `days` of it. Must run inside a
    /// runtime.
    pub fn spawn_archive_writer(&self, days: u32) -> tokio::sync::mpsc::Sender<ArchiveWrite> {
        /// Messages waiting for the writer: beyond, senders wait.
        const QUEUE: usize = 4096;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<ArchiveWrite>(QUEUE);
        let storage = self.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = Vec::new();
                let mut flushes = Vec::new();
                // What else is already queued goes in the same transaction.
                let mut next = Some(first);
                while let Some(m) = next {
                    match m {
                        ArchiveWrite::Keep(a) => batch.push(a),
                        ArchiveWrite::Flush(done) => flushes.push(done),
                    }
                    next = if batch.len() < 512 {
                        rx.try_recv().ok()
                    } else {
                        None
                    };
                }
                if !batch.is_empty()
                    && let Err(e) = storage.run(move |c| archive_batch(c, &batch, days)).await
                {
                    tracing::error!("archive: {e}");
                }
                for f in flushes {
                    let _ = f.send(());
                }
            }
        });
        tx
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

#[cfg(test)]
mod tests {
    use protocol::sasl::ScramHash;

    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        drop(s);
        let c = Connection::open(dir.path().join("chat.db")).unwrap();
        (dir, c)
    }

    #[test]
    fn the_archive_pages_forwards_and_back_and_keeps_its_bound() {
        let (_dir, mut c) = db();
        let now = crate::util::unix_now();
        let batch: Vec<ToArchive> = (0..5)
            .map(|i| ToArchive {
                id: 100 + i,
                owner: "ada".into(),
                peer: if i % 2 == 0 { "bob@x" } else { "eve@x" }.into(),
                stamp: now,
                stanza: format!("<m{i}/>"),
            })
            .collect();
        archive_batch(&mut c, &batch, 30).unwrap();
        let page = |c: &Connection, q: ArchiveQuery| {
            let (rows, complete) = archive_page(c, "ada", &q).unwrap();
            (
                rows.into_iter().map(|r| r.stanza).collect::<Vec<_>>(),
                complete,
            )
        };
        // The last two with bob, oldest first; more are there.
        let last = ArchiveQuery {
            with: Some("bob@x".into()),
            before: Some(None),
            max: 2,
            ..Default::default()
        };
        assert_eq!(
            page(&c, last),
            (vec!["<m2/>".into(), "<m4/>".into()], false)
        );
        // Forwards from the start, in pages of two.
        let (first, complete) = archive_page(
            &c,
            "ada",
            &ArchiveQuery {
                max: 2,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(!complete);
        let after = first.last().unwrap().id;
        let rest = ArchiveQuery {
            after: Some(after),
            max: 10,
            ..Default::default()
        };
        assert_eq!(page(&c, rest).0, ["<m2/>", "<m3/>", "<m4/>"]);
        // Another user's archive is not ada's; old messages age out.
        assert!(
            archive_page(
                &c,
                "bob",
                &ArchiveQuery {
                    max: 10,
                    ..Default::default()
                }
            )
            .unwrap()
            .0
            .is_empty()
        );
        let old = vec![ToArchive {
            id: 99,
            owner: "ada".into(),
            peer: "bob@x".into(),
            stamp: now - 40 * 86_400,
            stanza: "<old/>".into(),
        }];
        archive_batch(&mut c, &old, 30).unwrap();
        let all = ArchiveQuery {
            max: 100,
            ..Default::default()
        };
        assert!(!page(&c, all).0.contains(&"<old/>".to_string()));
    }

    #[test]
    fn archive_ids_go_on_from_the_highest_ever_used_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let a = s.next_archive_id();
        assert!(s.next_archive_id() > a);
        let mut c = Connection::open(dir.path().join("chat.db")).unwrap();
        let keep = |id| ToArchive {
            id,
            owner: "ada".into(),
            peer: "bob@x".into(),
            stamp: crate::util::unix_now(),
            stanza: "<m/>".into(),
        };
        archive_batch(&mut c, &[keep(500)], 30).unwrap();
        c.execute("DELETE FROM archive", []).unwrap();
        drop((s, c));
        // Deleted, 500 is still never handed out again.
        let s = Storage::open(dir.path()).unwrap();
        assert_eq!(s.next_archive_id(), 501);
    }

    #[test]
    fn pep_nodes_keep_their_bounds_and_options() {
        let (_dir, mut c) = db();
        let open = PepConfig {
            access: PepAccess::Open,
            max_items: 2,
        };
        let open_opts = PepOptions {
            access: Some(PepAccess::Open),
            max_items: Some(2),
        };
        for i in 0..3 {
            let id = format!("i{i}");
            let p = pep_publish(&mut c, "ada", "urn:x", Some(open_opts), &id, "<x/>").unwrap();
            assert_eq!(p, Published::Stored);
        }
        // Two kept, the newest; republishing an id moves it to the end.
        let (config, items) = pep_items(&c, "ada", "urn:x", None).unwrap().unwrap();
        assert_eq!(config, open);
        let ids: Vec<&str> = items.iter().map(|(i, _)| i.as_str()).collect();
        assert_eq!(ids, ["i1", "i2"]);
        pep_publish(&mut c, "ada", "urn:x", None, "i1", "<y/>").unwrap();
        let (_, items) = pep_items(&c, "ada", "urn:x", Some(1)).unwrap().unwrap();
        assert_eq!(items, [("i1".to_string(), "<y/>".to_string())]);
        // Options that differ from the node's: refused, nothing changed;
        // a field left out is no precondition (XEP-0060 7.1.5).
        let presence = PepOptions {
            access: Some(PepAccess::Presence),
            max_items: None,
        };
        assert!(matches!(
            pep_publish(&mut c, "ada", "urn:x", Some(presence), "i9", "<z/>").unwrap(),
            Published::PreconditionNotMet(f) if f.starts_with("access_model")
        ));
        let only_open = PepOptions {
            access: Some(PepAccess::Open),
            max_items: None,
        };
        assert_eq!(
            pep_publish(&mut c, "ada", "urn:x", Some(only_open), "i1", "<y/>").unwrap(),
            Published::Stored
        );
        assert!(pep_retract(&c, "ada", "urn:x", "i2").unwrap());
        assert!(!pep_retract(&c, "ada", "urn:x", "i2").unwrap());
        assert!(pep_items(&c, "ada", "urn:none", None).unwrap().is_none());
        // The node bound.
        for n in 1..MAX_PEP_NODES {
            let node = format!("urn:n{n}");
            assert_eq!(
                pep_publish(&mut c, "ada", &node, None, "a", "<x/>").unwrap(),
                Published::Stored
            );
        }
        assert_eq!(
            pep_publish(&mut c, "ada", "urn:one-too-many", None, "a", "<x/>").unwrap(),
            Published::TooManyNodes
        );
        // Another account is not bound by ada's nodes.
        assert_eq!(
            pep_publish(&mut c, "bob", "urn:x", None, "a", "<x/>").unwrap(),
            Published::Stored
        );
        assert!(pep_delete_node(&mut c, "ada", "urn:x").unwrap());
        assert!(pep_items(&c, "ada", "urn:x", None).unwrap().is_none());
    }

    #[test]
    fn accounts_store_no_password() {
        let (dir, c) = db();
        let creds = AccountCredentials::from_password(
            "hunter2-unique-canary",
            protocol::sasl::DEFAULT_ITERATIONS,
        );
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
        let creds = AccountCredentials::from_password("pw", protocol::sasl::DEFAULT_ITERATIONS);
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
        let slot = |token: &str, owner: &str| Upload {
            token: token.into(),
            owner: owner.into(),
            name: "f".into(),
            size: 10,
            content_type: "text/plain".into(),
            created: 100,
            done: false,
        };
        for (t, o) in [("hers", "alice@localhost"), ("his", "bob@localhost")] {
            let (ok, _) = upload_slot(&mut c, &slot(t, o), 3 * UPLOAD_MIN_CHARGE, 0).unwrap();
            assert_eq!(ok, Ok(()));
        }
        // A 10-byte file costs a block: three fit the quota, not four.
        for t in ["b2", "b3", "b4"] {
            let (ok, _) =
                upload_slot(&mut c, &slot(t, "bob@localhost"), 3 * UPLOAD_MIN_CHARGE, 0).unwrap();
            assert_eq!(ok.is_ok(), t != "b4", "{t}");
        }
        // One upload at a time per slot: claimed once, open again after a
        // failure, done only when claimed.
        assert!(upload_claim(&c, "his").unwrap());
        assert!(!upload_claim(&c, "his").unwrap(), "a second PUT loses");
        upload_release(&c, "his").unwrap();
        assert!(!upload_done(&c, "his").unwrap(), "not claimed");
        assert!(upload_claim(&c, "his").unwrap());
        assert!(upload_done(&c, "his").unwrap());
        assert!(upload_get(&c, "his").unwrap().unwrap().done);
        let removed = delete_account(&mut c, "alice", "alice@localhost").unwrap();
        let owners = removed.owners;
        assert_eq!(removed.uploads, ["hers"], "her files go with her");
        assert!(upload_get(&c, "his").unwrap().is_some());
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
        let creds = AccountCredentials::from_password("pw", protocol::sasl::DEFAULT_ITERATIONS);
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
