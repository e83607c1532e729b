//! In-band registration before sign-in (XEP-0077 3.1): the form, and
//! creating an account with its profile in one transaction. Throttled per
//! address: without a limit one address registered 690 accounts a second.

use protocol::stanza::{Iq, IqType};
use protocol::{Element, StanzaErrorCondition, StreamErrorCondition, ns};

use super::conn::{Conn, Unbound};
use crate::server::account::{self, NewPasswordError, PASSWORD_RULE, normalize_user};
use crate::server::directory;
use crate::storage;
use crate::transport::ServerTransport;

/// In-band registration before authentication (XEP-0077 3.1).
pub(super) async fn register<T: ServerTransport>(
    c: &mut Conn<'_, T>,
    iq: &Iq,
) -> Result<(), Unbound> {
    if !c.shared.config.registration {
        return c
            .reply_error(
                iq,
                StanzaErrorCondition::NotAllowed,
                "registration is closed on this server",
            )
            .await;
    }
    if c.starttls_required_now() {
        return c
            .reply_error(
                iq,
                StanzaErrorCondition::NotAuthorized,
                "use STARTTLS first",
            )
            .await;
    }
    if iq.kind == IqType::Set && !c.shared.throttle.may_register(c.peer.ip()) {
        // Mass registration (690 accounts a second before this limit).
        tracing::warn!(peer = %c.peer, "registration refused: too many from this address");
        return c
            .reply_error(
                iq,
                StanzaErrorCondition::ResourceConstraint,
                "too many registrations from your address: try again later",
            )
            .await;
    }
    let query = iq
        .payload
        .clone()
        .unwrap_or_else(|| Element::new("query", ns::REGISTER));
    match iq.kind {
        IqType::Get => {
            let form = Element::new("query", ns::REGISTER)
                .text_child(
                    "instructions",
                    ns::REGISTER,
                    "Choose a user name and password to register with this server.",
                )
                .child(Element::new("username", ns::REGISTER))
                .child(Element::new("password", ns::REGISTER))
                .child(Element::new("name", ns::REGISTER))
                .child(Element::new("email", ns::REGISTER));
            c.reply(iq, Some(form)).await
        }
        IqType::Set => {
            if query.has_child("remove", ns::REGISTER) {
                return c
                    .reply_error(
                        iq,
                        StanzaErrorCondition::NotAuthorized,
                        "sign in to remove an account",
                    )
                    .await;
            }
            let username = query
                .child_text("username", ns::REGISTER)
                .unwrap_or_default();
            let password = query
                .child_text("password", ns::REGISTER)
                .unwrap_or_default();
            let Some(user) = normalize_user(username.trim(), c.domain()) else {
                return c
                    .reply_error(iq, StanzaErrorCondition::NotAcceptable, "invalid user name")
                    .await;
            };
            let creds =
                match account::new_credentials(password, c.shared.config.scram_iterations).await {
                    Ok(c) => c,
                    Err(NewPasswordError::Unacceptable) => {
                        return c
                            .reply_error(iq, StanzaErrorCondition::NotAcceptable, PASSWORD_RULE)
                            .await;
                    }
                    Err(NewPasswordError::HashingFailed) => {
                        return Err(Unbound::Error(
                            StreamErrorCondition::InternalServerError,
                            "hashing failed".into(),
                        ));
                    }
                };
            let u = user.clone();
            let profile = directory::registration_profile(&query);
            let created = c
                .shared
                .storage
                .run(move |c| {
                    let tx = c.transaction()?;
                    let created = storage::create_account(&tx, &u, &creds)?;
                    if created {
                        storage::set_profile(&tx, &u, &profile)?;
                    }
                    tx.commit()?;
                    Ok(created)
                })
                .await;
            match created {
                Ok(true) => {
                    tracing::info!(peer = %c.peer, user, "account registered");
                    c.reply(iq, None).await
                }
                Ok(false) => {
                    c.reply_error(
                        iq,
                        StanzaErrorCondition::Conflict,
                        "that user name is taken",
                    )
                    .await
                }
                Err(e) => {
                    tracing::error!("{e}");
                    c.reply_error(
                        iq,
                        StanzaErrorCondition::InternalServerError,
                        "storage failure",
                    )
                    .await
                }
            }
        }
        _ => Ok(()),
    }
}
