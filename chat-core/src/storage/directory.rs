//! Profiles (display name, email) and user search.

use rusqlite::{Connection, OptionalExtension, params};

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
