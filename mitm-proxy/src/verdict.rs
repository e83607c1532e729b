//! What each attack obtained on a connection, from what its pumps saw.

use crate::attack::Attack;

/// What the pumps saw, for the verdict.
#[derive(Debug, Default)]
pub struct Facts {
    /// The server offered STARTTLS (in features the proxy saw).
    pub starttls_offered: bool,
    /// The proxy removed it from what the client saw.
    pub starttls_stripped: bool,
    /// `downgrade-sasl` cut the offer down: what the client was left
    /// (mechanisms and binding types, all among `--offer`).
    pub downgraded_to: Option<Vec<String>>,
    /// The client sent `<starttls/>`.
    pub client_starttls: bool,
    /// Where the client-to-server direction became TLS.
    pub tls_at: Option<u64>,
    /// The client spoke TLS from its first byte.
    pub direct_tls: bool,
    /// The mechanism the client authenticated with, in the clear.
    pub mechanism: Option<String>,
    /// A password read off the wire: (user, where).
    pub password: Option<(String, String)>,
    /// Stanzas read in the clear, each way.
    pub stanzas: u64,
    /// TLS application-data records seen: (from the client, from the server).
    pub records: (u64, u64),
    /// `corrupt-tls` flipped its bit; the server's record count then.
    pub flipped: Option<u64>,
    /// `intercept-tls`: the client accepted the forged certificate.
    pub intercepted: bool,
    /// `intercept-tls`: the client refused it, and why.
    pub cert_refused: Option<String>,
    /// The domain the client's stream header asked for.
    pub domain: Option<String>,
    /// `inject-starttls` slipped a stanza in: (toward the server, toward
    /// the client).
    pub injected: (bool, bool),
    /// The client's SASL elements (`<auth/>`, `<response/>`) as sent, for
    /// `replay`; the server's `<success/>` followed them.
    pub sasl: Vec<String>,
    /// The server accepted the exchange in `sasl`.
    pub sasl_success: bool,
    /// The server refused a SASL exchange: its `<text/>`.
    pub sasl_failure: Option<String>,
    /// `replay`: what the server made of the exchange played again, or
    /// why it could not be played.
    pub replayed: Option<Result<crate::replay::Replayed, String>>,
    /// `tamper`: what the rules changed, one line each (the first few).
    pub tampered: Vec<String>,
    /// `tamper`: how many changes in all.
    pub tamper_count: usize,
    /// `tamper`: how long the next write waits (a `delay` rule).
    pub delay: Option<std::time::Duration>,
    /// The client's bare JID, from its resource binding.
    pub jid: Option<String>,
    /// `inject-omemo-device`: bundle requests for the attacker's device,
    /// by iq id: (version, the contact it was asked of).
    pub omemo_pending: std::collections::HashMap<String, (protocol::omemo::Version, String)>,
    /// `inject-omemo-device`: device lists changed.
    pub omemo_injected: u64,
    /// `inject-omemo-device`: bundles served.
    pub omemo_served: u64,
    /// `inject-omemo-device`: what the attacker read (the first few).
    pub omemo_read: Vec<String>,
    /// `inject-omemo-device`: how many messages it read in all.
    pub omemo_read_count: u64,
    /// `inject-omemo-device`: encrypted messages with no key for the
    /// attacker (it was not trusted).
    pub omemo_refused: u64,
    /// `tamper`: files being swapped, by stream id, with the offset reached.
    pub swaps: std::collections::HashMap<String, (std::sync::Arc<crate::rules::Swap>, usize)>,
}

/// What an attack obtained, in one line, and whether it was defeated.
pub fn verdict(attack: Attack, f: &Facts, corrupt_record: u64) -> (String, bool) {
    let password = f
        .password
        .as_ref()
        .map(|(user, source)| format!("password of {user} captured ({source})"));
    match attack {
        Attack::Relay => {
            if f.direct_tls {
                (
                    "direct TLS from the first byte: only sizes and timing readable".into(),
                    true,
                )
            } else if let Some(p) = password {
                (
                    format!("read {} in the clear; {p}", stanzas(f.stanzas)),
                    false,
                )
            } else if let Some(at) = f.tls_at {
                (
                    format!(
                        "TLS from byte {at}: {} read before it, nothing after",
                        stanzas(f.stanzas)
                    ),
                    true,
                )
            } else {
                (format!("read {} in the clear", stanzas(f.stanzas)), false)
            }
        }
        Attack::StripStarttls => {
            if f.direct_tls {
                (
                    "nothing to strip: the client used direct TLS: attack defeated".into(),
                    true,
                )
            } else if !f.starttls_offered {
                (
                    "nothing to strip: the server offered no STARTTLS".into(),
                    false,
                )
            } else if let Some(p) = password {
                (format!("client went on in plaintext; {p}"), false)
            } else if let Some(m) = &f.mechanism {
                (
                    format!(
                        "client went on in plaintext; its {m} exchange captured (no password in it)"
                    ),
                    false,
                )
            } else {
                (
                    "client refused (no STARTTLS offered): attack defeated".into(),
                    true,
                )
            }
        }
        Attack::CorruptTls => corrupt_verdict(f, corrupt_record),
        Attack::InjectStarttls => inject_verdict(f),
        Attack::Replay => replay_verdict(f),
        Attack::InjectOmemoDevice => omemo_verdict(f),
        Attack::Tamper => {
            if let Some(first) = f.tampered.first() {
                let more = match f.tamper_count {
                    0 | 1 => String::new(),
                    n => format!(" (and {} more changes)", n - 1),
                };
                (format!("{first}{more}"), false)
            } else if f.tls_at.is_some() || f.direct_tls {
                (
                    "no rule could apply: the stream was inside TLS: attack defeated".into(),
                    true,
                )
            } else {
                ("no rule matched".into(), false)
            }
        }
        Attack::InterceptTls => {
            if let Some(why) = &f.cert_refused {
                (
                    format!("client refused the forged certificate ({why}): attack defeated"),
                    true,
                )
            } else if f.intercepted
                && let Some(defence) = binding_defence(f)
            {
                (
                    format!(
                        "client accepted the forged certificate, but {defence}: attack defeated"
                    ),
                    true,
                )
            } else if f.intercepted
                && password.is_none()
                && f.mechanism.is_some()
                && !f.sasl_success
            {
                (
                    format!(
                        "client accepted the forged certificate, but stopped its own sign-in ({}): read {}, no password: attack defeated",
                        f.mechanism.as_deref().unwrap_or("SASL"),
                        stanzas(f.stanzas)
                    ),
                    true,
                )
            } else if f.intercepted {
                match password {
                    Some(p) => (
                        format!("client accepted the forged certificate; {p}"),
                        false,
                    ),
                    None => (
                        format!(
                            "client accepted the forged certificate; read {} inside its TLS",
                            stanzas(f.stanzas)
                        ),
                        false,
                    ),
                }
            } else {
                (
                    "the client never started TLS: nothing to intercept".into(),
                    false,
                )
            }
        }
        Attack::DowngradeSasl => {
            if f.downgraded_to.is_none() {
                if f.direct_tls || f.tls_at.is_some() {
                    (
                        "nothing to downgrade: authentication ran inside TLS: attack defeated"
                            .into(),
                        true,
                    )
                } else {
                    (
                        "nothing to downgrade: no choice of mechanisms was seen".into(),
                        false,
                    )
                }
            } else if f.mechanism.as_deref() == Some("PLAIN") {
                let what = match &f.password {
                    Some((user, source)) if source == "SASL PLAIN" => {
                        format!("password of {user} captured (SASL PLAIN)")
                    }
                    _ => "its password went out in PLAIN".into(),
                };
                (format!("client accepted PLAIN; {what}"), false)
            } else if let Some(defence) = binding_defence(f) {
                (format!("{defence}: attack defeated"), true)
            } else if let Some(m) = &f.mechanism {
                let kept = f.downgraded_to.as_ref().is_some_and(|k| k.contains(m));
                if f.sasl_success && kept {
                    (
                        format!(
                            "client signed in with {m}, the downgraded offer, and did not notice"
                        ),
                        false,
                    )
                } else if f.sasl_success {
                    (format!("client used {m} anyway: attack defeated"), true)
                } else {
                    (
                        format!(
                            "client started {m} but stopped (the server's signed offer, XEP-0474, did not match what it saw): attack defeated"
                        ),
                        true,
                    )
                }
            } else {
                let kept = f
                    .downgraded_to
                    .as_ref()
                    .map(|k| k.join(", "))
                    .unwrap_or_else(|| "PLAIN".into());
                (
                    format!("client refused the downgraded offer ({kept}): attack defeated"),
                    true,
                )
            }
        }
    }
}

/// `inject-omemo-device`: what the injected device got.
fn omemo_verdict(f: &Facts) -> (String, bool) {
    if let Some(first) = f.omemo_read.first() {
        let more = match f.omemo_read_count {
            0 | 1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        (
            format!("the client trusted the injected device: read {first}{more}"),
            false,
        )
    } else if f.omemo_read_count > 0 {
        (
            format!(
                "the client trusted the injected device: it opened {} empty message(s) (no text yet)",
                f.omemo_read_count
            ),
            false,
        )
    } else if f.omemo_refused > 0 {
        (
            format!(
                "the client sent {} end-to-end message(s) with no key for the injected device (not trusted: the contact was verified): attack defeated",
                f.omemo_refused
            ),
            true,
        )
    } else if f.omemo_injected > 0 {
        (
            format!(
                "injected the device into {} device list(s), served its bundle {} time(s); no end-to-end message followed",
                f.omemo_injected, f.omemo_served
            ),
            false,
        )
    } else if f.tls_at.is_some() || f.direct_tls {
        (
            "nothing to inject: the stream was inside TLS: attack defeated".into(),
            true,
        )
    } else {
        ("no OMEMO device list went past".into(), false)
    }
}

/// The channel-binding defence that stopped a sign-in, in words, if one
/// did: the server named it in its SASL `<failure/>` (RFC 5802's names).
fn binding_defence(f: &Facts) -> Option<String> {
    let text = f.sasl_failure.as_deref()?;
    let mech = f.mechanism.as_deref().unwrap_or("SCRAM");
    if text.starts_with("channel-bindings-dont-match") {
        Some(format!(
            "its sign-in ({mech}) was bound to its own TLS channel, and the server refused the relayed proof (channel binding)"
        ))
    } else if text.starts_with("server-does-support-channel-binding") {
        Some(format!(
            "the client said it saw no -PLUS ({mech} with `y`), and the server, which offers it, refused: the removal was noticed"
        ))
    } else {
        None
    }
}

/// `corrupt-tls`' outcome: a flipped record must end the connection.
fn corrupt_verdict(f: &Facts, target: u64) -> (String, bool) {
    match f.flipped {
        Some(server_records_then) => {
            // After a bad record the server sends at most its alert.
            let after = f.records.1.saturating_sub(server_records_then);
            if after <= 1 {
                (
                    format!(
                        "flipped one bit of record #{target} from the client: the connection \
                         ended there (the server's AEAD check failed): TLS detected the change"
                    ),
                    true,
                )
            } else {
                (
                    format!(
                        "flipped one bit of record #{target}, and {after} records still came \
                         from the server: the change went unnoticed"
                    ),
                    false,
                )
            }
        }
        None if f.records.0 == 0 => ("no TLS to corrupt: the stream was plaintext".into(), false),
        None => (
            format!(
                "the connection ended after {} records from the client, before record #{target}",
                f.records.0
            ),
            false,
        ),
    }
}

/// `inject-starttls`' outcome. The injected stanzas cannot be seen once
/// TLS runs; what the proxy sees is whether the TLS session went on as
/// normal (both sides dropped what came before TLS) or died. The side
/// that dropped it says so itself (the server logs "discarded plaintext
/// sent after <starttls/>"), and a side that acted on it would show the
/// injected body to the user.
fn inject_verdict(f: &Facts) -> (String, bool) {
    let (up, down) = f.injected;
    if !up && !down {
        return (
            "nothing injected: the stream never switched to TLS".into(),
            false,
        );
    }
    let which = match (up, down) {
        (true, true) => "after <starttls/> and after <proceed/>",
        (true, false) => "after <starttls/>",
        _ => "after <proceed/>",
    };
    // Past the handshake, each side has sent application data. That is all
    // the proxy can see: a side that keeps the injected bytes completes TLS
    // just the same and acts on them inside it, so only that side can say
    // (our server logs "discarded plaintext sent after <starttls/>").
    if f.records.0 >= 2 && f.records.1 >= 2 {
        (
            format!(
                "injected {which}; the TLS session went on ({} records from the client, {} from \
                 the server): whether a side acted on the injected stanza shows only at that side",
                f.records.0, f.records.1
            ),
            false,
        )
    } else {
        (
            format!(
                "injected {which}; the connection ended {} records into TLS: one side choked on it",
                f.records.0.max(f.records.1)
            ),
            false,
        )
    }
}

/// `replay`'s outcome.
fn replay_verdict(f: &Facts) -> (String, bool) {
    use crate::replay::Replayed;
    let mech = f.mechanism.as_deref().unwrap_or("SASL");
    match &f.replayed {
        None if f.tls_at.is_some() || f.direct_tls => (
            "nothing to replay: authentication ran inside TLS: attack defeated".into(),
            true,
        ),
        None => (
            "nothing to replay: no successful sign-in was seen".into(),
            false,
        ),
        Some(Ok(Replayed::Accepted(roster))) => (
            format!(
                "replayed the {mech} exchange on a new connection: the server accepted it \
                 (signed in without knowing the password); {}",
                crate::replay::what_it_read(roster)
            ),
            false,
        ),
        Some(Ok(Replayed::Refused(why))) => (
            format!(
                "replayed the {mech} exchange on a new connection: the server refused it ({why}): \
                 attack defeated"
            ),
            true,
        ),
        Some(Err(e)) => (format!("could not replay: {e}"), false),
    }
}

/// "1 stanza", "18 stanzas".
fn stanzas(n: u64) -> String {
    if n == 1 {
        "1 stanza".into()
    } else {
        format!("{n} stanzas")
    }
}
