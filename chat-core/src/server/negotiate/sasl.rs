//! SASL (RFC 6120 6): PLAIN and SCRAM-SHA-1/SHA-256 over the negotiating
//! stream, with the sign-in throttle in front of every attempt.
//!
//! PLAIN sends the password itself: on the plaintext twin anyone on the
//! wire reads it (lab 1). SCRAM never sends it, and its final message
//! proves the server holds the credentials too.
//!
//! Over TLS the server also offers SCRAM-*-PLUS with the binding types of
//! its channel (XEP-0440), and signs what it offered in every SCRAM
//! exchange (XEP-0474). Both beat a man in the middle the client trusts by
//! mistake: he cannot relay a bound proof (his TLS to us is not the
//! client's), and he cannot remove -PLUS or a mechanism from the offer
//! without the client noticing.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use protocol::sasl::{self, ChannelBindingType, Mechanism, SaslError, ScramServer};
use protocol::{Element, StreamErrorCondition, ns};

use super::conn::{Conn, Unbound};
use crate::server::account::normalize_user;
use crate::server::config::MAX_AUTH_ATTEMPTS;
use crate::server::shared::Shared;
use crate::storage::{self, AccountCredentials};
use crate::transport::ServerTransport;

/// What this stream offers: the mechanisms, and the channel-binding types
/// when it is TLS (`None` on plain TCP, where there is no channel to bind
/// to, and nothing -PLUS is offered).
pub(super) fn offer<T: ServerTransport>(
    c: &Conn<'_, T>,
) -> (Vec<Mechanism>, Option<Vec<ChannelBindingType>>) {
    let types: Vec<ChannelBindingType> = c.security.bindings().iter().map(|b| b.kind).collect();
    let mechanisms = Mechanism::ALL
        .into_iter()
        .filter(|m| !m.is_plus() || !types.is_empty())
        .collect();
    (mechanisms, (!types.is_empty()).then_some(types))
}

/// The XEP-0474 input of this stream's offer.
fn offer_input<T: ServerTransport>(c: &Conn<'_, T>) -> Vec<u8> {
    let (mechanisms, types) = offer(c);
    let names: Vec<&str> = mechanisms.iter().map(|m| m.name()).collect();
    let types: Option<Vec<&str>> = types.map(|t| t.iter().map(|t| t.name()).collect());
    sasl::downgrade_input(&names, types.as_deref())
}

/// Runs one SASL exchange. `Ok(true)` on success.
pub(super) async fn authenticate<T: ServerTransport>(
    c: &mut Conn<'_, T>,
    auth: Element,
) -> Result<bool, Unbound> {
    // Online password guessing: an address that keeps failing waits
    // its turn, however many connections it opens (see throttle).
    match c.shared.throttle.attempt_wait(c.peer.ip()) {
        Some(wait) if !wait.is_zero() => {
            tracing::debug!(peer = %c.peer, ?wait, "sign-in attempt throttled");
            tokio::time::sleep(wait).await;
        }
        Some(_) => {}
        None => {
            tracing::info!(peer = %c.peer, "sign-in refused: too many failures from this address");
            return failure(
                c,
                "temporary-auth-failure",
                "too many failed sign-ins from your address: try again in a minute",
            )
            .await;
        }
    }
    c.attempted = None;
    if c.starttls_required_now() {
        return failure(c, "encryption-required", "use STARTTLS first").await;
    }
    let Some(mech) = auth
        .get_attr("mechanism")
        .and_then(Mechanism::parse)
        .filter(|m| offer(c).0.contains(m))
    else {
        return failure(c, "invalid-mechanism", "unsupported mechanism").await;
    };
    let Some(initial) = decode_sasl(&auth.text_content()) else {
        return failure(c, "incorrect-encoding", "invalid base64").await;
    };
    let result = match mech.scram_hash() {
        None => plain(c, &initial).await?,
        Some(hash) => scram(c, mech, hash, initial).await?,
    };
    match result {
        Ok(user) => {
            if mech == Mechanism::Plain {
                // SCRAM sent its own <success/> carrying the server proof.
                c.send(&Element::new("success", ns::SASL)).await?;
            }
            tracing::info!(peer = %c.peer, user, mechanism = mech.name(), "authenticated");
            c.shared.throttle.succeeded(&user);
            c.user = Some(user);
            Ok(true)
        }
        Err(SaslError::Malformed { what }) => failure(c, "malformed-request", what).await,
        Err(e) => {
            c.auth_failures += 1;
            c.shared
                .throttle
                .failed(c.peer.ip(), c.attempted.as_deref());
            match &e {
                SaslError::ChannelBindingsDontMatch => tracing::warn!(
                    peer = %c.peer, mechanism = mech.name(),
                    "sign-in refused: the client's TLS channel is not ours (its channel binding does not match this server's end): someone in the middle ends the client's TLS and relays it"
                ),
                SaslError::ServerSupportsChannelBinding => tracing::warn!(
                    peer = %c.peer, mechanism = mech.name(),
                    "sign-in refused: the client saw no SCRAM-*-PLUS, which this server offers: someone removed it from the features on the way (a downgrade)"
                ),
                _ => {
                    tracing::info!(peer = %c.peer, mechanism = mech.name(), "authentication failed: {e}")
                }
            }
            // RFC 5802's name for the failure first, so the client can tell
            // its user which defence fired.
            let text = match e.server_error_value() {
                Some(value) => format!("{value}: {e}"),
                None => e.to_string(),
            };
            failure(c, "not-authorized", &text).await?;
            if c.auth_failures >= MAX_AUTH_ATTEMPTS {
                return Err(Unbound::Error(
                    StreamErrorCondition::PolicyViolation,
                    "too many failed authentication attempts".into(),
                ));
            }
            Ok(false)
        }
    }
}

async fn failure<T: ServerTransport>(
    c: &mut Conn<'_, T>,
    condition: &str,
    text: &str,
) -> Result<bool, Unbound> {
    let el = Element::new("failure", ns::SASL)
        .child(Element::new(condition, ns::SASL))
        .child(
            Element::new("text", ns::SASL)
                .attr("xml:lang", "en")
                .text(text),
        );
    c.send(&el).await?;
    Ok(false)
}

/// Takes the shared state rather than `&self`: a `&Neg` held across an
/// await would require the stream to be `Sync`.
async fn credentials(
    shared: &Shared,
    username: &str,
) -> Result<Option<AccountCredentials>, Unbound> {
    let user = username.to_string();
    shared
        .storage
        .run(move |c| storage::credentials(c, &user))
        .await
        .map_err(|e| {
            tracing::error!("{e}");
            Unbound::Error(
                StreamErrorCondition::InternalServerError,
                "storage failure".into(),
            )
        })
}

async fn plain<T: ServerTransport>(
    c: &mut Conn<'_, T>,
    initial: &[u8],
) -> Result<Result<String, SaslError>, Unbound> {
    let creds = match sasl::parse_plain(initial) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    let Some(user) = normalize_user(&creds.username, c.domain()) else {
        return Ok(Err(SaslError::NotAuthorized));
    };
    c.attempted = Some(user.clone());
    // An account under attack answers every attempt slowly (throttle).
    tokio::time::sleep(c.shared.throttle.account_wait(&user)).await;
    if !creds.authzid.is_empty() && creds.authzid != format!("{user}@{}", c.domain()) {
        return Ok(Err(SaslError::NotAuthorized));
    }
    let stored = credentials(c.shared, &user).await?;
    let password = creds.password;
    // PBKDF2 is slow on purpose: keep it off the async threads.
    let ok = tokio::task::spawn_blocking(move || {
        stored.is_some_and(|s| s.sha256.verify_password(sasl::ScramHash::Sha256, &password))
    })
    .await
    .unwrap_or(false);
    Ok(if ok {
        Ok(user)
    } else {
        Err(SaslError::NotAuthorized)
    })
}

async fn scram<T: ServerTransport>(
    c: &mut Conn<'_, T>,
    mech: Mechanism,
    hash: sasl::ScramHash,
    mut initial: Vec<u8>,
) -> Result<Result<String, SaslError>, Unbound> {
    if initial.is_empty() {
        // No initial response: ask for it with an empty challenge.
        c.send(&Element::new("challenge", ns::SASL)).await?;
        match response(c).await? {
            Some(r) => initial = r,
            None => {
                return Ok(Err(SaslError::Malformed {
                    what: "bad response",
                }));
            }
        }
    }
    let mut server = ScramServer::new(hash, c.shared.storage.server_secret())
        .channel(mech.is_plus(), c.security.bindings().to_vec())
        .sign_offer(offer_input(c));
    let username = match server.handle_client_first(&initial) {
        Ok(u) => u,
        Err(e) => return Ok(Err(e)),
    };
    let user = normalize_user(&username, c.domain());
    c.attempted.clone_from(&user);
    if let Some(u) = &user {
        server.set_decoy_name(u);
        tokio::time::sleep(c.shared.throttle.account_wait(u)).await;
    }
    let stored = match &user {
        Some(u) => credentials(c.shared, u).await?,
        None => None,
    };
    let first = match server.server_first(stored.map(|s| s.for_hash(hash).clone())) {
        Ok(f) => f,
        Err(e) => return Ok(Err(e)),
    };
    let challenge = Element::new("challenge", ns::SASL).text(B64.encode(first));
    c.send(&challenge).await?;
    let Some(response) = response(c).await? else {
        return Ok(Err(SaslError::Malformed {
            what: "bad response",
        }));
    };
    match server.handle_client_final(&response) {
        Ok((server_final, _)) => {
            let success = Element::new("success", ns::SASL).text(B64.encode(server_final));
            c.send(&success).await?;
            Ok(user.ok_or(SaslError::NotAuthorized))
        }
        Err(e) => Ok(Err(e)),
    }
}

/// Reads a `<response/>`; `None` for a malformed one. An `<abort/>` ends
/// the exchange with `aborted`.
async fn response<T: ServerTransport>(c: &mut Conn<'_, T>) -> Result<Option<Vec<u8>>, Unbound> {
    let el = c.read_element().await?;
    if el.is("abort", ns::SASL) {
        failure(c, "aborted", "aborted by the client").await?;
        return Ok(None);
    }
    if !el.is("response", ns::SASL) {
        return Err(Unbound::Error(
            StreamErrorCondition::NotAuthorized,
            "expected a SASL response".into(),
        ));
    }
    Ok(decode_sasl(&el.text_content()))
}

/// Decodes SASL payload text: `=` is an empty message (RFC 6120 6.4.2).
fn decode_sasl(text: &str) -> Option<Vec<u8>> {
    let t = text.trim();
    if t.is_empty() || t == "=" {
        return Some(Vec::new());
    }
    B64.decode(t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_payload_decoding() {
        assert_eq!(decode_sasl("="), Some(vec![]));
        assert_eq!(decode_sasl(""), Some(vec![]));
        assert_eq!(decode_sasl("AGFsaWNlAHB3"), Some(b"\0alice\0pw".to_vec()));
        assert_eq!(decode_sasl("!!"), None);
    }
}
