//! Accounts: SCRAM credentials (never the password), creation, password
//! changes and removal with everything the account owned.

use protocol::sasl::{ScramCredentials, ScramHash};
use rusqlite::{Connection, OptionalExtension, params};

/// Stored credentials of one account, for both SCRAM hashes.
#[derive(Debug, Clone)]
pub struct AccountCredentials {
    /// SCRAM-SHA-1 credentials.
    pub sha1: ScramCredentials,
    /// SCRAM-SHA-256 credentials.
    pub sha256: ScramCredentials,
}

impl AccountCredentials {
    /// Derives both sets from a password with `iterations` of PBKDF2 (slow
    /// on purpose: each guess of an offline dictionary attack on a stolen
    /// database, or on a captured SCRAM exchange, costs as much).
    pub fn from_password(password: &str, iterations: u32) -> Self {
        AccountCredentials {
            sha1: ScramCredentials::new_random(ScramHash::Sha1, password, iterations),
            sha256: ScramCredentials::new_random(ScramHash::Sha256, password, iterations),
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

/// What removing an account leaves to do.
#[derive(Debug, Default)]
pub struct Removed {
    /// Users who had it in their roster (they see it go).
    pub owners: Vec<String>,
    /// Tokens of its uploaded files, to delete from disk.
    pub uploads: Vec<String>,
}

/// Deletes an account, its roster and its offline messages, and removes it
/// from every other roster. Returns the owners whose rosters lost the item.
pub fn delete_account(
    c: &mut Connection,
    username: &str,
    bare_jid: &str,
) -> rusqlite::Result<Removed> {
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
    tx.execute("DELETE FROM pep_items WHERE owner=?1", params![username])?;
    tx.execute("DELETE FROM archive WHERE owner=?1", params![username])?;
    tx.execute("DELETE FROM pep_nodes WHERE owner=?1", params![username])?;
    tx.execute("DELETE FROM profiles WHERE username=?1", params![username])?;
    // The account's rooms go with it: whoever registers the name next must
    // not inherit the right to configure or destroy them.
    tx.execute(
        "DELETE FROM room_history WHERE room IN (SELECT name FROM rooms WHERE owner=?1)",
        params![bare_jid],
    )?;
    tx.execute("DELETE FROM rooms WHERE owner=?1", params![bare_jid])?;
    // Its uploaded files too (the caller deletes them from disk): a file
    // shared by a removed account is not left behind, readable by whoever
    // kept its URL.
    let uploads = {
        let mut st = tx.prepare("DELETE FROM uploads WHERE owner=?1 RETURNING token")?;
        st.query_map(params![bare_jid], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?
    };
    tx.execute("DELETE FROM accounts WHERE username=?1", params![username])?;
    tx.commit()?;
    Ok(Removed { owners, uploads })
}
