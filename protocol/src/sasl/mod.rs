//! SASL mechanisms: PLAIN (RFC 4616) and SCRAM-SHA-1 / SCRAM-SHA-256
//! (RFC 5802, RFC 7677), client and server sides, sans-IO.
//!
//! What each one shows on the wire is the point of lab 1:
//! - PLAIN sends `\0user\0password` in base64. Base64 is an encoding, not
//!   encryption: anyone who sees the bytes has the password.
//! - SCRAM never sends the password. The server stores only a salted, iterated
//!   hash (so a stolen database does not give passwords away directly), and
//!   both sides prove knowledge of it. A sniffer still sees the salt, the
//!   iteration count, both nonces and the proof: enough for an offline
//!   dictionary attack on a weak password. TLS hides those too.
//!
//! - SCRAM-*-PLUS binds the proof to the TLS channel ([`binding`]): a man
//!   in the middle who ends the client's TLS himself, even with a
//!   certificate the client trusts, cannot relay the sign-in.
//! - The server signs the list it offered (XEP-0474, the `h` attribute), so
//!   a client notices when someone removed a mechanism or a binding type on
//!   the way (a downgrade), before it proves anything.
//!
//! The files: `mod.rs` has the mechanisms, PLAIN and SCRAM; `binding.rs`
//! the channel-binding types, the GS2 header and the list XEP-0474 hashes.

mod binding;

pub use binding::{
    ChannelBinding, ChannelBindingType, EXPORTER_LABEL, EXPORTER_LENGTH, Gs2, downgrade_input,
};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Iterations a server uses when it stores a new password. RFC 7677 asks for
/// at least 4096; production servers use more and raise it over time, since
/// each doubling doubles an offline attacker's work.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// The fewest iterations a client accepts. A man in the middle can rewrite the
/// unauthenticated server-first message to a count of 1 and collect a proof
/// that is cheap to brute-force: refusing low counts defeats that downgrade.
pub const MIN_ITERATIONS: u32 = 4096;

/// The most iterations a client accepts, so a hostile server cannot make the
/// client burn minutes of CPU with `i=2147483647`.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// Length of the random nonces we generate, in bytes before base64.
const NONCE_BYTES: usize = 18;

/// Salt length for new credentials.
const SALT_BYTES: usize = 16;

/// Longest SASL message we accept from a peer. Real ones are under 300 bytes.
pub const MAX_SASL_MESSAGE: usize = 4096;

/// The mechanisms this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    /// RFC 4616: the password itself, base64-encoded.
    Plain,
    /// RFC 5802 with SHA-1.
    ScramSha1,
    /// RFC 7677 with SHA-256.
    ScramSha256,
    /// RFC 5802 with SHA-1, bound to the TLS channel.
    ScramSha1Plus,
    /// RFC 7677 with SHA-256, bound to the TLS channel.
    ScramSha256Plus,
}

impl Mechanism {
    /// Every mechanism, strongest first: the order a client prefers them in.
    pub const ALL: [Mechanism; 5] = [
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ];

    /// The IANA mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
        }
    }

    /// Whether it binds to the TLS channel (a `-PLUS` mechanism).
    pub fn is_plus(self) -> bool {
        matches!(self, Mechanism::ScramSha1Plus | Mechanism::ScramSha256Plus)
    }

    /// Parses an IANA mechanism name.
    pub fn parse(s: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == s)
    }

    /// The hash of a SCRAM mechanism; `None` for PLAIN.
    pub fn scram_hash(self) -> Option<ScramHash> {
        match self {
            Mechanism::Plain => None,
            Mechanism::ScramSha1 | Mechanism::ScramSha1Plus => Some(ScramHash::Sha1),
            Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => Some(ScramHash::Sha256),
        }
    }
}

/// The hash function under a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramHash {
    /// SHA-1 (SCRAM-SHA-1).
    Sha1,
    /// SHA-256 (SCRAM-SHA-256).
    Sha256,
}

impl ScramHash {
    fn h(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length, so new_from_slice cannot fail.
        match self {
            ScramHash::Sha1 => {
                let mut m = <Hmac<Sha1> as KeyInit>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            ScramHash::Sha256 => {
                let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    /// `Hi()` of RFC 5802: PBKDF2 with this hash.
    fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => {
                let mut out = vec![0u8; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out);
                out
            }
            ScramHash::Sha256 => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
        }
    }
}

/// Why a SASL exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaslError {
    /// The peer's message does not follow the mechanism's grammar.
    #[error("malformed SASL message: {what}")]
    Malformed {
        /// What was wrong.
        what: &'static str,
    },
    /// Wrong user name or password (the two are not told apart, on purpose:
    /// telling them apart would let an attacker enumerate accounts).
    #[error("wrong user name or password")]
    NotAuthorized,
    /// The client asked for a channel-binding type the server does not
    /// offer on this connection (RFC 5802 `unsupported-channel-binding-type`).
    // Debug-quoted: the name is the client's, and it reaches the server's
    // log and the failure text; control characters come out escaped.
    #[error("channel binding type {0:?} is not offered here")]
    UnsupportedChannelBindingType(String),
    /// The client's channel value is not the server's: the two ends are on
    /// different TLS channels, so someone in between ended the client's TLS
    /// and relays it (RFC 5802 `channel-bindings-dont-match`).
    #[error("channel binding failed: someone is relaying this TLS connection")]
    ChannelBindingsDontMatch,
    /// The client said it saw no channel binding offered (`y`), but this
    /// server offers it: someone removed it from the features on the way
    /// (RFC 5802 `server-does-support-channel-binding`).
    #[error(
        "the client saw no channel binding offered, but this server offers it: someone removed it on the way (a downgrade)"
    )]
    ServerSupportsChannelBinding,
    /// The server signed a different offer than the client saw (XEP-0474):
    /// someone removed mechanisms or binding types from the features.
    #[error(
        "the server's offer was changed on the way (mechanisms or channel-binding types removed): someone is downgrading this sign-in"
    )]
    Downgrade,
    /// The server's nonce does not extend the client's: a replay or a bug.
    #[error("the server nonce does not start with the client nonce")]
    NonceMismatch,
    /// The server offered an iteration count outside the accepted range.
    #[error("the server asked for {0} iterations (accepted: {MIN_ITERATIONS} to {MAX_ITERATIONS})")]
    BadIterationCount(u32),
    /// The server's final signature is wrong: it does not know the password's
    /// keys, so it is not the server we registered with (or an impostor).
    #[error("the server's signature is wrong: it is not the real server")]
    BadServerSignature,
    /// The server sent `e=...` in its final message.
    #[error("the server refused: {0}")]
    ServerError(String),
    /// The exchange was driven out of order.
    #[error("SASL step called out of order")]
    OutOfOrder,
}

impl SaslError {
    /// The RFC 5802 `server-error-value` for a failure a server reports to
    /// the client by name (our server puts it first in the `<failure/>`
    /// text), so the client can tell the user what happened.
    pub fn server_error_value(&self) -> Option<&'static str> {
        match self {
            SaslError::ChannelBindingsDontMatch => Some("channel-bindings-dont-match"),
            SaslError::ServerSupportsChannelBinding => Some("server-does-support-channel-binding"),
            SaslError::UnsupportedChannelBindingType(_) => Some("unsupported-channel-binding-type"),
            _ => None,
        }
    }

    /// The failure a server named with [`SaslError::server_error_value`].
    pub fn from_server_error_value(value: &str) -> Option<SaslError> {
        match value {
            "channel-bindings-dont-match" => Some(SaslError::ChannelBindingsDontMatch),
            "server-does-support-channel-binding" => Some(SaslError::ServerSupportsChannelBinding),
            "unsupported-channel-binding-type" => {
                Some(SaslError::UnsupportedChannelBindingType(String::new()))
            }
            _ => None,
        }
    }
}

/// Decoded SASL PLAIN credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// Identity to act as; usually empty.
    pub authzid: String,
    /// User name.
    pub username: String,
    /// The password, in the clear.
    pub password: String,
}

/// The PLAIN initial response `authzid \0 username \0 password` (before base64).
pub fn plain_message(username: &str, password: &str) -> Vec<u8> {
    format!("\0{username}\0{password}").into_bytes()
}

/// Parses a PLAIN initial response (after base64 decoding).
pub fn parse_plain(msg: &[u8]) -> Result<PlainCredentials, SaslError> {
    let text = std::str::from_utf8(msg).map_err(|_| SaslError::Malformed { what: "not UTF-8" })?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(username), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed {
            what: "PLAIN needs exactly three NUL-separated fields",
        });
    };
    if username.is_empty() || password.is_empty() {
        return Err(SaslError::Malformed {
            what: "empty user name or password",
        });
    }
    Ok(PlainCredentials {
        authzid: authzid.into(),
        username: username.into(),
        password: password.into(),
    })
}

/// What a server stores for one account and one SCRAM hash: never the
/// password, only values derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    /// Random salt.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// `H(ClientKey)`: verifies the client's proof.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`: signs the server's answer.
    pub server_key: Vec<u8>,
}

impl ScramCredentials {
    /// Derives credentials from a password with the given salt.
    pub fn derive(hash: ScramHash, password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = hash.hi(password.as_bytes(), salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        ScramCredentials {
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.h(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
        }
    }

    /// Derives credentials with a fresh random salt and `iterations`.
    pub fn new_random(hash: ScramHash, password: &str, iterations: u32) -> Self {
        Self::derive(hash, password, &random_bytes::<SALT_BYTES>(), iterations)
    }

    /// True when `password` matches (used for PLAIN against stored SCRAM
    /// credentials). Constant-time comparison, so timing does not reveal how
    /// many bytes of a guess were right.
    pub fn verify_password(&self, hash: ScramHash, password: &str) -> bool {
        let other = Self::derive(hash, password, &self.salt, self.iterations);
        other.stored_key.ct_eq(&self.stored_key).into()
    }
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The OS random source failing is not recoverable; refusing to go on is
    // safer than using a predictable nonce.
    getrandom::fill(&mut b)
        .unwrap_or_else(|e| panic!("the OS random number generator failed: {e}"));
    b
}

fn random_nonce() -> String {
    B64.encode(random_bytes::<NONCE_BYTES>())
}

/// Escapes a user name for SCRAM (`=` → `=3D`, `,` → `=2C`).
fn saslname_encode(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

fn saslname_decode(s: &str) -> Result<String, SaslError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3);
        match esc {
            Some("=3D") => out.push('='),
            Some("=2C") => out.push(','),
            _ => {
                return Err(SaslError::Malformed {
                    what: "bad escape in user name",
                });
            }
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits `a=1,b=2` into (key, value) pairs.
fn attributes(msg: &str) -> Result<Vec<(char, &str)>, SaslError> {
    msg.split(',')
        .map(|part| {
            let mut cs = part.chars();
            match (cs.next(), cs.next()) {
                (Some(k), Some('=')) if k.is_ascii_alphabetic() => Ok((k, &part[2..])),
                _ => Err(SaslError::Malformed {
                    what: "expected key=value",
                }),
            }
        })
        .collect()
}

fn get<'a>(attrs: &[(char, &'a str)], key: char) -> Option<&'a str> {
    attrs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

fn utf8(msg: &[u8]) -> Result<&str, SaslError> {
    if msg.len() > MAX_SASL_MESSAGE {
        return Err(SaslError::Malformed {
            what: "message too long",
        });
    }
    std::str::from_utf8(msg).map_err(|_| SaslError::Malformed { what: "not UTF-8" })
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

#[derive(Debug)]
enum ClientState {
    Initial,
    SentFinal { server_signature: Vec<u8> },
    Done,
}

/// The client side of SCRAM.
#[derive(Debug)]
pub struct ScramClient {
    hash: ScramHash,
    password: String,
    client_first_bare: String,
    nonce: String,
    state: ClientState,
    gs2: Gs2,
    /// The XEP-0474 hash of the offer this client saw, if it checks one.
    offer_hash: Option<String>,
}

impl ScramClient {
    /// Starts an exchange with a fresh random nonce.
    pub fn new(hash: ScramHash, username: &str, password: &str) -> Self {
        Self::with_nonce(hash, username, password, &random_nonce())
    }

    /// Starts an exchange with a given nonce (for the RFC test vectors; never
    /// use a fixed nonce for real, it enables replay).
    pub fn with_nonce(hash: ScramHash, username: &str, password: &str, nonce: &str) -> Self {
        ScramClient {
            hash,
            password: password.to_string(),
            client_first_bare: format!("n={},r={nonce}", saslname_encode(username)),
            nonce: nonce.to_string(),
            state: ClientState::Initial,
            gs2: Gs2::No,
            offer_hash: None,
        }
    }

    /// Says what this client does about channel binding (the GS2 header):
    /// [`Gs2::Bound`] for a -PLUS mechanism, [`Gs2::NotOffered`] over TLS
    /// when the server offered no -PLUS, [`Gs2::No`] (the default) without
    /// TLS.
    pub fn channel(mut self, gs2: Gs2) -> Self {
        self.gs2 = gs2;
        self
    }

    /// Checks the server's XEP-0474 hash against the offer this client saw
    /// ([`downgrade_input`] of the features' mechanisms and binding types).
    /// A server that sends no hash is not checked.
    pub fn expect_offer(mut self, input: &[u8]) -> Self {
        self.offer_hash = Some(B64.encode(self.hash.h(input)));
        self
    }

    /// The client-first message (the SASL initial response).
    pub fn client_first(&self) -> String {
        format!("{}{}", self.gs2.header(), self.client_first_bare)
    }

    /// Takes the server-first message; returns the client-final message.
    pub fn handle_server_first(&mut self, msg: &[u8]) -> Result<String, SaslError> {
        if !matches!(self.state, ClientState::Initial) {
            return Err(SaslError::OutOfOrder);
        }
        let server_first = utf8(msg)?;
        let attrs = attributes(server_first)?;
        let nonce = get(&attrs, 'r').ok_or(SaslError::Malformed { what: "no nonce" })?;
        let salt = get(&attrs, 's').ok_or(SaslError::Malformed { what: "no salt" })?;
        let iter = get(&attrs, 'i').ok_or(SaslError::Malformed {
            what: "no iteration count",
        })?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(SaslError::NonceMismatch);
        }
        let salt = B64
            .decode(salt)
            .map_err(|_| SaslError::Malformed { what: "bad salt" })?;
        let iterations: u32 = iter.parse().map_err(|_| SaslError::Malformed {
            what: "bad iteration count",
        })?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(SaslError::BadIterationCount(iterations));
        }
        // XEP-0474: the server's hash of what it offered against ours of
        // what we saw. Checked before the proof is computed and sent.
        if let (Some(ours), Some(theirs)) = (&self.offer_hash, get(&attrs, 'h'))
            && !bool::from(ours.as_bytes().ct_eq(theirs.as_bytes()))
        {
            return Err(SaslError::Downgrade);
        }
        let h = self.hash;
        let salted = h.hi(self.password.as_bytes(), &salt, iterations);
        let client_key = h.hmac(&salted, b"Client Key");
        let stored_key = h.h(&client_key);
        // The channel value goes into the signed message: a relay that
        // changes it breaks the proof, one that leaves it fails the
        // server's comparison with its own channel.
        let without_proof = format!("c={},r={nonce}", B64.encode(self.gs2.cbind_input()));
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = h.hmac(&stored_key, auth_message.as_bytes());
        let proof = xor(&client_key, &client_signature);
        let server_key = h.hmac(&salted, b"Server Key");
        self.state = ClientState::SentFinal {
            server_signature: h.hmac(&server_key, auth_message.as_bytes()),
        };
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks the server-final message: the server proves it holds our keys
    /// (mutual authentication, which PLAIN cannot give).
    pub fn verify_server_final(&mut self, msg: &[u8]) -> Result<(), SaslError> {
        let ClientState::SentFinal { server_signature } = &self.state else {
            return Err(SaslError::OutOfOrder);
        };
        let attrs = attributes(utf8(msg)?)?;
        if let Some(e) = get(&attrs, 'e') {
            return Err(SaslError::ServerError(e.to_string()));
        }
        let v = get(&attrs, 'v').ok_or(SaslError::Malformed {
            what: "no server signature",
        })?;
        let v = B64.decode(v).map_err(|_| SaslError::Malformed {
            what: "bad signature",
        })?;
        if !bool::from(v.ct_eq(server_signature)) {
            return Err(SaslError::BadServerSignature);
        }
        self.state = ClientState::Done;
        Ok(())
    }
}

#[derive(Debug)]
enum ServerState {
    Initial,
    GotClientFirst {
        username: String,
        client_first_bare: String,
        client_nonce: String,
        cbind: Vec<u8>,
    },
    SentFirst {
        username: String,
        auth_prefix: String,
        nonce: String,
        creds: ScramCredentials,
        known_user: bool,
        cbind: Vec<u8>,
    },
    Done,
}

/// The server side of SCRAM.
///
/// Drive it as: [`ScramServer::handle_client_first`] (returns the user name),
/// look up that user's credentials, [`ScramServer::server_first`], then
/// [`ScramServer::handle_client_final`].
#[derive(Debug)]
pub struct ScramServer {
    hash: ScramHash,
    state: ServerState,
    decoy_key: Vec<u8>,
    decoy_name: Option<String>,
    /// The mechanism is a -PLUS one.
    plus: bool,
    /// This end's value of each binding type on offer (none without TLS).
    bindings: Vec<ChannelBinding>,
    /// The XEP-0474 input of what this server offered, if it signs it.
    offer: Option<Vec<u8>>,
}

impl ScramServer {
    /// A new exchange for the given hash. `decoy_key` is a secret the
    /// server keeps for as long as its accounts (see
    /// [`ScramServer::server_first`]): the decoy salts of unknown users are
    /// keyed with it.
    pub fn new(hash: ScramHash, decoy_key: &[u8]) -> Self {
        ScramServer {
            hash,
            state: ServerState::Initial,
            decoy_key: decoy_key.to_vec(),
            decoy_name: None,
            plus: false,
            bindings: Vec::new(),
            offer: None,
        }
    }

    /// The channel: whether the mechanism is a -PLUS one, and this end's
    /// value of each binding type the server offers on this connection
    /// (empty without TLS). A server with bindings refuses a client that
    /// says it saw none offered (`y`): someone removed them on the way.
    pub fn channel(mut self, plus: bool, bindings: Vec<ChannelBinding>) -> Self {
        self.plus = plus;
        self.bindings = bindings;
        self
    }

    /// Signs the offer (XEP-0474): `input` is [`downgrade_input`] of the
    /// mechanisms and binding types this stream's features announced; its
    /// hash goes in the server-first message as `h`.
    pub fn sign_offer(mut self, input: Vec<u8>) -> Self {
        self.offer = Some(input);
        self
    }

    /// The account name the server looked up, after its own normalisation
    /// (case folding). The decoy salt of an unknown user must be derived
    /// from it, not from the name as sent: otherwise `ALICE` and `alice`
    /// get the same salt for a real account and different ones for a made
    /// up one, and the difference gives the account away.
    pub fn set_decoy_name(&mut self, name: &str) {
        self.decoy_name = Some(name.to_string());
    }

    /// Takes the client-first message; returns the user name to look up.
    pub fn handle_client_first(&mut self, msg: &[u8]) -> Result<String, SaslError> {
        if !matches!(self.state, ServerState::Initial) {
            return Err(SaslError::OutOfOrder);
        }
        let text = utf8(msg)?;
        // gs2-header: cbind flag, optional authzid, then the bare message.
        let (flag, rest) = text.split_once(',').ok_or(SaslError::Malformed {
            what: "no GS2 header",
        })?;
        let (_authzid, bare) = rest.split_once(',').ok_or(SaslError::Malformed {
            what: "no GS2 header",
        })?;
        // What the client-final `c=` must carry: this exact GS2 header,
        // then this end's channel value when the client binds.
        let mut cbind = text.as_bytes()[..text.len() - bare.len()].to_vec();
        match flag {
            "n" | "y" if self.plus => {
                return Err(SaslError::Malformed {
                    what: "a -PLUS mechanism without channel binding",
                });
            }
            "n" => {}
            // RFC 5802 6: the client would have bound, but saw nothing
            // offered; this server offers it, so the offer was removed.
            "y" if !self.bindings.is_empty() => {
                return Err(SaslError::ServerSupportsChannelBinding);
            }
            "y" => {}
            f if f.starts_with("p=") => {
                if !self.plus {
                    return Err(SaslError::Malformed {
                        what: "channel binding without a -PLUS mechanism",
                    });
                }
                let name = &f[2..];
                let ours = ChannelBindingType::parse(name)
                    .and_then(|t| self.bindings.iter().find(|b| b.kind == t))
                    .ok_or_else(|| SaslError::UnsupportedChannelBindingType(name.to_string()))?;
                cbind.extend_from_slice(&ours.data);
            }
            _ => {
                return Err(SaslError::Malformed {
                    what: "bad channel binding flag",
                });
            }
        }
        let attrs = attributes(bare)?;
        if get(&attrs, 'm').is_some() {
            return Err(SaslError::Malformed {
                what: "mandatory extension not supported",
            });
        }
        let username = saslname_decode(get(&attrs, 'n').ok_or(SaslError::Malformed {
            what: "no user name",
        })?)?;
        let client_nonce = get(&attrs, 'r').ok_or(SaslError::Malformed { what: "no nonce" })?;
        if username.is_empty() || client_nonce.is_empty() {
            return Err(SaslError::Malformed {
                what: "empty user name or nonce",
            });
        }
        self.state = ServerState::GotClientFirst {
            username: username.clone(),
            client_first_bare: bare.to_string(),
            client_nonce: client_nonce.to_string(),
            cbind,
        };
        Ok(username)
    }

    /// The server-first message. `creds` is `None` for an unknown user: we
    /// then answer with made-up credentials and fail only at the end, so the
    /// exchange does not reveal which accounts exist (user enumeration).
    pub fn server_first(&mut self, creds: Option<ScramCredentials>) -> Result<String, SaslError> {
        self.server_first_with_nonce(creds, &random_nonce())
    }

    /// [`ScramServer::server_first`] with a given server nonce (test vectors).
    pub fn server_first_with_nonce(
        &mut self,
        creds: Option<ScramCredentials>,
        server_nonce: &str,
    ) -> Result<String, SaslError> {
        let ServerState::GotClientFirst {
            username,
            client_first_bare,
            client_nonce,
            cbind,
        } = std::mem::replace(&mut self.state, ServerState::Done)
        else {
            return Err(SaslError::OutOfOrder);
        };
        let known_user = creds.is_some();
        let creds = creds.unwrap_or_else(|| {
            // The decoy salt stays the same across attempts (and restarts),
            // as a real account's would, and nobody without the server's
            // key can compute it. An unkeyed hash of the user name was
            // computable by anyone: an attacker compared the salt it got
            // with SHA-256("unknown:" + name) and knew the account did not
            // exist (account probing).
            let salt = self.hash.hmac(
                &self.decoy_key,
                format!(
                    "scram-decoy-salt:{:?}:{}",
                    self.hash,
                    self.decoy_name.as_deref().unwrap_or(&username)
                )
                .as_bytes(),
            );
            ScramCredentials {
                salt: salt[..SALT_BYTES].to_vec(),
                iterations: DEFAULT_ITERATIONS,
                stored_key: random_bytes::<32>().to_vec(),
                server_key: random_bytes::<32>().to_vec(),
            }
        });
        let nonce = format!("{client_nonce}{server_nonce}");
        let mut server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&creds.salt),
            creds.iterations
        );
        if let Some(offer) = &self.offer {
            // Part of the signed AuthMessage: a relay that rewrites it to
            // match a changed offer breaks the client's proof.
            server_first.push_str(",h=");
            server_first.push_str(&B64.encode(self.hash.h(offer)));
        }
        self.state = ServerState::SentFirst {
            username,
            auth_prefix: format!("{client_first_bare},{server_first}"),
            nonce,
            creds,
            known_user,
            cbind,
        };
        Ok(server_first)
    }

    /// Takes the client-final message. On success returns the server-final
    /// message and the authenticated user name.
    pub fn handle_client_final(&mut self, msg: &[u8]) -> Result<(String, String), SaslError> {
        let ServerState::SentFirst {
            username,
            auth_prefix,
            nonce,
            creds,
            known_user,
            cbind,
        } = std::mem::replace(&mut self.state, ServerState::Done)
        else {
            return Err(SaslError::OutOfOrder);
        };
        let text = utf8(msg)?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(SaslError::Malformed { what: "no proof" })?;
        let attrs = attributes(without_proof)?;
        // The client's GS2 header and channel value against ours: through
        // a relay that ended the client's TLS, the values differ.
        let theirs = get(&attrs, 'c').and_then(|c| B64.decode(c).ok());
        if !theirs.is_some_and(|t| bool::from(t.ct_eq(&cbind))) {
            return Err(SaslError::ChannelBindingsDontMatch);
        }
        if get(&attrs, 'r') != Some(nonce.as_str()) {
            return Err(SaslError::NonceMismatch);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| SaslError::Malformed { what: "bad proof" })?;
        let h = self.hash;
        let auth_message = format!("{auth_prefix},{without_proof}");
        let client_signature = h.hmac(&creds.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(SaslError::NotAuthorized);
        }
        let client_key = xor(&proof, &client_signature);
        let ok: bool = h.h(&client_key).ct_eq(&creds.stored_key).into();
        if !ok || !known_user {
            return Err(SaslError::NotAuthorized);
        }
        let server_signature = h.hmac(&creds.server_key, auth_message.as_bytes());
        Ok((format!("v={}", B64.encode(server_signature)), username))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_DECOY_KEY: &[u8] = b"a server's secret, for tests only";

    /// RFC 5802 section 5.
    #[test]
    fn rfc5802_scram_sha1_vector() {
        let mut c = ScramClient::with_nonce(
            ScramHash::Sha1,
            "user",
            "pencil",
            "fyko+d2lbbFgONRv9qkxdawL",
        );
        assert_eq!(c.client_first(), "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        let server_first = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
        let client_final = c.handle_server_first(server_first.as_bytes()).unwrap();
        assert_eq!(
            client_final,
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        c.verify_server_final(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")
            .unwrap();

        // The server side produces the same messages from stored credentials.
        let salt = B64.decode("QSXCR+Q6sek8bf92").unwrap();
        let creds = ScramCredentials::derive(ScramHash::Sha1, "pencil", &salt, 4096);
        let mut s = ScramServer::new(ScramHash::Sha1, TEST_DECOY_KEY);
        assert_eq!(
            s.handle_client_first(c.client_first().as_bytes()).unwrap(),
            "user"
        );
        let sf = s
            .server_first_with_nonce(Some(creds), "3rfcNHYJY1ZVvWVs7j")
            .unwrap();
        assert_eq!(sf, server_first);
        let (server_final, user) = s.handle_client_final(client_final.as_bytes()).unwrap();
        assert_eq!(server_final, "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
        assert_eq!(user, "user");
    }

    /// RFC 7677 section 3.
    #[test]
    fn rfc7677_scram_sha256_vector() {
        let mut c =
            ScramClient::with_nonce(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(c.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let client_final = c.handle_server_first(server_first.as_bytes()).unwrap();
        assert_eq!(
            client_final,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        c.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();

        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let creds = ScramCredentials::derive(ScramHash::Sha256, "pencil", &salt, 4096);
        let mut s = ScramServer::new(ScramHash::Sha256, TEST_DECOY_KEY);
        s.handle_client_first(c.client_first().as_bytes()).unwrap();
        let sf = s
            .server_first_with_nonce(Some(creds), "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
            .unwrap();
        assert_eq!(sf, server_first);
        let (server_final, _) = s.handle_client_final(client_final.as_bytes()).unwrap();
        assert_eq!(
            server_final,
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    fn exchange(hash: ScramHash, stored: Option<&str>, tried: &str) -> Result<(), SaslError> {
        let mut c = ScramClient::new(hash, "alice", tried);
        let mut s = ScramServer::new(hash, TEST_DECOY_KEY);
        s.handle_client_first(c.client_first().as_bytes())?;
        let creds = stored.map(|p| ScramCredentials::new_random(hash, p, DEFAULT_ITERATIONS));
        let sf = s.server_first(creds)?;
        let cf = c.handle_server_first(sf.as_bytes())?;
        let (fin, _) = s.handle_client_final(cf.as_bytes())?;
        c.verify_server_final(fin.as_bytes())
    }

    fn decoy_salt(key: &[u8], user: &str) -> String {
        let mut c = ScramClient::new(ScramHash::Sha256, user, "x");
        let mut s = ScramServer::new(ScramHash::Sha256, key);
        s.handle_client_first(c.client_first().as_bytes()).unwrap();
        let sf = s.server_first(None).unwrap();
        let _ = c.handle_server_first(sf.as_bytes());
        sf.split(',')
            .find_map(|f| f.strip_prefix("s="))
            .unwrap()
            .to_string()
    }

    #[test]
    fn an_unknown_users_salt_is_stable_and_keyed() {
        // Stable, like a real account's, so repeated probes learn nothing.
        assert_eq!(decoy_salt(b"k1", "ghost"), decoy_salt(b"k1", "ghost"));
        // Not computable without the key (before: SHA-256 of the name).
        assert_ne!(decoy_salt(b"k1", "ghost"), decoy_salt(b"k2", "ghost"));
        let unkeyed = B64.encode(&ScramHash::Sha256.h(b"unknown:ghost")[..SALT_BYTES]);
        assert_ne!(decoy_salt(b"k1", "ghost"), unkeyed);
        assert_ne!(decoy_salt(b"k1", "ghost"), decoy_salt(b"k1", "ghost2"));
    }

    #[test]
    fn wrong_password_and_unknown_user_fail_alike() {
        for hash in [ScramHash::Sha1, ScramHash::Sha256] {
            assert_eq!(exchange(hash, Some("s3cret"), "s3cret"), Ok(()));
            assert_eq!(
                exchange(hash, Some("s3cret"), "guess"),
                Err(SaslError::NotAuthorized)
            );
            assert_eq!(
                exchange(hash, None, "s3cret"),
                Err(SaslError::NotAuthorized)
            );
        }
    }

    #[test]
    fn client_detects_an_impostor_server() {
        let mut c = ScramClient::new(ScramHash::Sha256, "alice", "pw");
        let nonce = c.client_first().split("r=").nth(1).unwrap().to_string();
        let sf = format!("r={nonce}x,s=c2FsdA==,i=4096");
        c.handle_server_first(sf.as_bytes()).unwrap();
        assert_eq!(
            c.verify_server_final(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Err(SaslError::BadServerSignature)
        );
    }

    #[test]
    fn client_refuses_iteration_downgrade_and_foreign_nonce() {
        let mut c = ScramClient::with_nonce(ScramHash::Sha1, "u", "p", "abc");
        assert_eq!(
            c.handle_server_first(b"r=abcdef,s=c2FsdA==,i=1"),
            Err(SaslError::BadIterationCount(1))
        );
        let mut c = ScramClient::with_nonce(ScramHash::Sha1, "u", "p", "abc");
        assert_eq!(
            c.handle_server_first(b"r=xyz,s=c2FsdA==,i=4096"),
            Err(SaslError::NonceMismatch)
        );
    }

    #[test]
    fn server_rejects_malformed_and_channel_binding() {
        for bad in [
            &b""[..],
            b"n",
            b"x,,n=u,r=a",
            b"n,,r=a",
            b"n,,n=u",
            b"n,,n=a=5,r=x",
            b"\xff",
        ] {
            let mut s = ScramServer::new(ScramHash::Sha1, TEST_DECOY_KEY);
            assert!(
                matches!(s.handle_client_first(bad), Err(SaslError::Malformed { .. })),
                "{bad:?}"
            );
        }
        let mut s = ScramServer::new(ScramHash::Sha1, TEST_DECOY_KEY).channel(true, Vec::new());
        assert_eq!(
            s.handle_client_first(b"p=tls-unique,,n=u,r=a"),
            Err(SaslError::UnsupportedChannelBindingType(
                "tls-unique".into()
            ))
        );
    }

    /// XEP-0474's full example (SCRAM-SHA-1-PLUS, tls-exporter, the `h`
    /// attribute, and an extension attribute `x` in the client-final): our
    /// server gives the same server-first and accepts the same proof.
    #[test]
    fn xep0474_example_vector() {
        let exporter = |data: &[u8]| ChannelBinding {
            kind: ChannelBindingType::TlsExporter,
            data: data.to_vec(),
        };
        let offer = downgrade_input(
            &["SCRAM-SHA-1", "SCRAM-SHA-1-PLUS"],
            Some(&["tls-server-end-point", "tls-exporter"]),
        );
        let server = || {
            ScramServer::new(ScramHash::Sha1, TEST_DECOY_KEY)
                .channel(true, vec![exporter(b"THIS IS FAKE CB DATA")])
                .sign_offer(offer.clone())
        };
        let creds = ScramCredentials::derive(
            ScramHash::Sha1,
            "pencil",
            &B64.decode("QSXCR+Q6sek8bf92").unwrap(),
            4096,
        );
        let client_first = "p=tls-exporter,,n=user,r=12C4CD5C-E38E-4A98-8F6D-15C38F51CCC6";
        let server_first = "r=12C4CD5C-E38E-4A98-8F6D-15C38F51CCC6a09117a6-ac50-4f2f-93f1-93799c2bddf6,s=QSXCR+Q6sek8bf92,i=4096,h=G6k/rBLDqgOhRRaCuuatSDFkJ08=";
        let client_final = "c=cD10bHMtZXhwb3J0ZXIsLFRISVMgSVMgRkFLRSBDQiBEQVRB,r=12C4CD5C-E38E-4A98-8F6D-15C38F51CCC6a09117a6-ac50-4f2f-93f1-93799c2bddf6,x=19C6532F-1CF4-4A27-A18D-DC9CEA41BBB3,p=M/SIDjT+dfcxUh89jZEypRvFxB4=";
        let mut s = server();
        assert_eq!(
            s.handle_client_first(client_first.as_bytes()).unwrap(),
            "user"
        );
        let sf = s
            .server_first_with_nonce(Some(creds.clone()), "a09117a6-ac50-4f2f-93f1-93799c2bddf6")
            .unwrap();
        assert_eq!(sf, server_first);
        let (fin, _) = s.handle_client_final(client_final.as_bytes()).unwrap();
        assert_eq!(fin, "v=MQrMPvv7yv4x4Cq4W4Ih25EqS2c=");

        // The same proof on another channel (a relay's): refused.
        let mut s = ScramServer::new(ScramHash::Sha1, TEST_DECOY_KEY)
            .channel(true, vec![exporter(b"THE RELAY'S OTHER CHANNEL")])
            .sign_offer(offer.clone());
        s.handle_client_first(client_first.as_bytes()).unwrap();
        s.server_first_with_nonce(Some(creds), "a09117a6-ac50-4f2f-93f1-93799c2bddf6")
            .unwrap();
        assert_eq!(
            s.handle_client_final(client_final.as_bytes()),
            Err(SaslError::ChannelBindingsDontMatch)
        );

        // Our client, bound to the same data, sends the same c= value, and
        // checks the h= against the offer it saw.
        let mut c = ScramClient::with_nonce(
            ScramHash::Sha1,
            "user",
            "pencil",
            "12C4CD5C-E38E-4A98-8F6D-15C38F51CCC6",
        )
        .channel(Gs2::Bound(exporter(b"THIS IS FAKE CB DATA")))
        .expect_offer(&offer);
        assert_eq!(c.client_first(), client_first);
        let cf = c.handle_server_first(server_first.as_bytes()).unwrap();
        assert!(
            cf.starts_with("c=cD10bHMtZXhwb3J0ZXIsLFRISVMgSVMgRkFLRSBDQiBEQVRB,r="),
            "{cf}"
        );
    }

    /// Client and server through a relay: each end has its own channel.
    fn bound_exchange(
        client: Gs2,
        server_plus: bool,
        server: Vec<ChannelBinding>,
    ) -> Result<(), SaslError> {
        let hash = ScramHash::Sha256;
        let mut c = ScramClient::new(hash, "alice", "pw").channel(client);
        let mut s = ScramServer::new(hash, TEST_DECOY_KEY).channel(server_plus, server);
        s.handle_client_first(c.client_first().as_bytes())?;
        let sf = s.server_first(Some(ScramCredentials::new_random(
            hash,
            "pw",
            DEFAULT_ITERATIONS,
        )))?;
        let cf = c.handle_server_first(sf.as_bytes())?;
        let (fin, _) = s.handle_client_final(cf.as_bytes())?;
        c.verify_server_final(fin.as_bytes())
    }

    #[test]
    fn channel_binding_passes_on_one_channel_and_fails_through_a_relay() {
        let value = |kind, data: &[u8]| ChannelBinding {
            kind,
            data: data.to_vec(),
        };
        let both = |x: &[u8], e: &[u8]| {
            vec![
                value(ChannelBindingType::TlsExporter, x),
                value(ChannelBindingType::TlsServerEndPoint, e),
            ]
        };
        for kind in ChannelBindingType::ALL {
            let client = |d: &[u8]| Gs2::Bound(value(kind, d));
            // One channel: both ends see the same values.
            assert_eq!(
                bound_exchange(client(b"same"), true, both(b"same", b"same")),
                Ok(())
            );
            // Two channels (a relay): the client's value is not the server's.
            assert_eq!(
                bound_exchange(
                    client(b"client side"),
                    true,
                    both(b"server side", b"server side")
                ),
                Err(SaslError::ChannelBindingsDontMatch)
            );
        }
        // A type the server does not offer here.
        assert_eq!(
            bound_exchange(
                Gs2::Bound(value(ChannelBindingType::TlsExporter, b"x")),
                true,
                vec![value(ChannelBindingType::TlsServerEndPoint, b"x")]
            ),
            Err(SaslError::UnsupportedChannelBindingType(
                "tls-exporter".into()
            ))
        );
        // `y` (the client saw no -PLUS) to a server that offers binding:
        // someone removed it; to one without TLS: fine.
        assert_eq!(
            bound_exchange(Gs2::NotOffered, false, both(b"a", b"b")),
            Err(SaslError::ServerSupportsChannelBinding)
        );
        assert_eq!(bound_exchange(Gs2::NotOffered, false, Vec::new()), Ok(()));
        // A -PLUS mechanism needs `p=`.
        assert!(matches!(
            bound_exchange(Gs2::No, true, both(b"a", b"b")),
            Err(SaslError::Malformed { .. })
        ));
    }

    #[test]
    fn a_client_stops_when_the_signed_offer_is_not_what_it_saw() {
        let hash = ScramHash::Sha256;
        let real = downgrade_input(
            &["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"],
            Some(&["tls-exporter"]),
        );
        // The relay removed -PLUS from the features the client saw.
        let seen = downgrade_input(&["SCRAM-SHA-256"], Some(&["tls-exporter"]));
        let mut c = ScramClient::new(hash, "alice", "pw").expect_offer(&seen);
        let mut s = ScramServer::new(hash, TEST_DECOY_KEY).sign_offer(real.clone());
        s.handle_client_first(c.client_first().as_bytes()).unwrap();
        let sf = s
            .server_first(Some(ScramCredentials::new_random(
                hash,
                "pw",
                DEFAULT_ITERATIONS,
            )))
            .unwrap();
        assert_eq!(
            c.handle_server_first(sf.as_bytes()),
            Err(SaslError::Downgrade)
        );
        // The offer unchanged: the exchange goes through.
        let mut c = ScramClient::new(hash, "alice", "pw").expect_offer(&real);
        let mut s = ScramServer::new(hash, TEST_DECOY_KEY).sign_offer(real);
        s.handle_client_first(c.client_first().as_bytes()).unwrap();
        let sf = s
            .server_first(Some(ScramCredentials::new_random(
                hash,
                "pw",
                DEFAULT_ITERATIONS,
            )))
            .unwrap();
        let cf = c.handle_server_first(sf.as_bytes()).unwrap();
        let (fin, _) = s.handle_client_final(cf.as_bytes()).unwrap();
        c.verify_server_final(fin.as_bytes()).unwrap();
    }

    #[test]
    fn user_names_with_comma_and_equals_are_escaped() {
        let c = ScramClient::with_nonce(ScramHash::Sha1, "a,b=c", "p", "n1");
        assert_eq!(c.client_first(), "n,,n=a=2Cb=3Dc,r=n1");
        let mut s = ScramServer::new(ScramHash::Sha1, TEST_DECOY_KEY);
        assert_eq!(
            s.handle_client_first(c.client_first().as_bytes()).unwrap(),
            "a,b=c"
        );
    }

    #[test]
    fn plain_round_trip_and_errors() {
        let msg = plain_message("alice", "pa ss");
        assert_eq!(msg, b"\0alice\0pa ss");
        let c = parse_plain(&msg).unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "pa ss")
        );
        assert!(parse_plain(b"alice\0pw").is_err());
        assert!(parse_plain(b"\0\0pw").is_err());
        assert!(parse_plain(b"\0a\0b\0c").is_err());
    }

    #[test]
    fn stored_credentials_verify_plain_passwords() {
        let creds =
            ScramCredentials::new_random(ScramHash::Sha256, "correct horse", DEFAULT_ITERATIONS);
        assert!(creds.verify_password(ScramHash::Sha256, "correct horse"));
        assert!(!creds.verify_password(ScramHash::Sha256, "correct horsE"));
    }

    #[test]
    fn mechanism_names() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::parse(m.name()), Some(m));
        }
        assert_eq!(Mechanism::parse("DIGEST-MD5"), None);
    }
}
