//! Accounts after sign-in (XEP-0077): the registration form, password
//! changes and account removal; and the password rules registration before
//! sign-in shares (see [`super::negotiate`]).

use protocol::stanza::{Iq, IqType, PresenceType};
use protocol::{Element, Jid, StanzaErrorCondition, StreamErrorCondition, ns};

use super::context::{Close, Failure, Handled, Session};
use super::presence::presence_xml;
use super::roster;
use crate::storage;

/// Longest password accepted at registration, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a new password (registration, password change) was not stored.
pub(crate) enum NewPasswordError {
    /// Empty or longer than [`MAX_PASSWORD_BYTES`].
    Unacceptable,
    /// The hashing task failed.
    HashingFailed,
}

/// Checks a new password and derives its SCRAM credentials on the blocking
/// pool (PBKDF2 is slow on purpose and must not stall the async threads).
pub(crate) async fn new_credentials(
    password: String,
    iterations: u32,
) -> Result<crate::storage::AccountCredentials, NewPasswordError> {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return Err(NewPasswordError::Unacceptable);
    }
    tokio::task::spawn_blocking(move || {
        crate::storage::AccountCredentials::from_password(&password, iterations)
    })
    .await
    .map_err(|_| NewPasswordError::HashingFailed)
}

/// The text for [`NewPasswordError::Unacceptable`].
pub(crate) const PASSWORD_RULE: &str = "the password must be 1 to 1024 bytes";

/// The normalised localpart for a user name, or `None` if it cannot be one.
///
/// The raw name is checked for `@` and `/` first: otherwise `alice/x` would
/// parse as the JID `alice@domain` plus a resource, and a login for one name
/// would authenticate as another.
pub fn normalize_user(username: &str, domain: &str) -> Option<String> {
    if username.is_empty() || username.contains(['@', '/']) {
        return None;
    }
    Jid::bare_from_parts(username, domain)
        .ok()
        .and_then(|j| j.local().map(str::to_string))
}

/// XEP-0077 after authentication: show registration, change the
/// password, or remove the account.
pub(crate) async fn register_iq(s: &mut Session, iq: &Iq) -> Handled {
    let q = iq
        .payload
        .clone()
        .unwrap_or_else(|| Element::new("query", ns::REGISTER));
    match iq.kind {
        IqType::Get => {
            let form = Element::new("query", ns::REGISTER)
                .child(Element::new("registered", ns::REGISTER))
                .text_child("username", ns::REGISTER, s.user.clone());
            s.iq_result(iq, Some(form));
            Ok(())
        }
        IqType::Set if q.has_child("remove", ns::REGISTER) => remove(s, iq).await,
        IqType::Set => {
            let username = q.child_text("username", ns::REGISTER).unwrap_or_default();
            let password = q.child_text("password", ns::REGISTER).unwrap_or_default();
            if username.to_lowercase() != s.user {
                s.iq_error(
                    iq,
                    StanzaErrorCondition::NotAuthorized,
                    "you can only change your own password",
                );
                return Ok(());
            }
            let creds = match new_credentials(password, s.shared.config.scram_iterations).await {
                Ok(c) => c,
                Err(NewPasswordError::Unacceptable) => {
                    s.iq_error(iq, StanzaErrorCondition::NotAcceptable, PASSWORD_RULE);
                    return Ok(());
                }
                Err(NewPasswordError::HashingFailed) => {
                    return Err(Failure::Close(Close::Error(
                        StreamErrorCondition::InternalServerError,
                        "hashing failed".into(),
                    )));
                }
            };
            let user = s.user.clone();
            s.db(move |c| storage::set_credentials(c, &user, &creds))
                .await?;
            tracing::info!(jid = %s.jid, "password changed");
            s.iq_result(iq, None);
            Ok(())
        }
        _ => Ok(()),
    }
}

async fn remove(s: &mut Session, iq: &Iq) -> Handled {
    let user = s.user.clone();
    let bare = s.bare.to_string();
    let removed = s
        .db(move |c| storage::delete_account(c, &user, &bare))
        .await?;
    super::upload::remove_files(&s.shared.config.data_dir, &removed.uploads);
    let owners = removed.owners;
    tracing::info!(jid = %s.jid, "account removed");
    s.iq_result(iq, None);
    // Everyone who had us in their roster sees us go.
    let unavailable = presence_xml(&s.jid.to_string(), None, PresenceType::Unavailable);
    for owner in owners {
        roster::push_removal(s, &owner, &s.bare.to_string());
        s.shared
            .router
            .send_to_available(&owner, &unavailable, None, None);
    }
    s.shared.router.close_sessions(
        &s.user,
        s.handle.id,
        StreamErrorCondition::NotAuthorized,
        "account removed",
    );
    // The session itself has nothing left to be: close the stream.
    Err(Failure::Close(Close::Clean))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_folded_and_cannot_smuggle_jid_parts() {
        assert_eq!(
            normalize_user("Alice", "localhost").as_deref(),
            Some("alice")
        );
        for bad in ["", "alice/x", "alice@evil", "a b", "a:b"] {
            assert_eq!(normalize_user(bad, "localhost"), None, "{bad:?}");
        }
    }
}
