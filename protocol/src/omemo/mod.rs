//! OMEMO (XEP-0384): end-to-end encryption between devices, so that the
//! server (and anyone who reads its database, its archive, or a TLS relay
//! it trusts) carries messages it cannot read. Sans-IO, like the rest of
//! this crate: keys, key agreement, the ratchet and the wire formats; the
//! client keeps the state and moves the stanzas.
//!
//! Two versions are spoken, sharing everything they share:
//! - [`Version::Two`], `urn:xmpp:omemo:2`, the current one;
//! - [`Version::Old`], `eu.siacs.conversations.axolotl` (OMEMO 0.3, the
//!   Signal protocol's formats), which deployed clients still speak
//!   (Conversations, Dino, profanity).
//!
//! The pieces, lowest first:
//! - [`keys`]: the device's identity key (an Ed25519 seed; the same key
//!   does X25519 for key agreement), its signed pre key and one-time pre
//!   keys, and the bundle others read to reach it;
//! - `kdf`: HKDF and HMAC as OMEMO uses them;
//! - [`wire`]: the protobuf messages of both versions;
//! - [`x3dh`]: the key agreement that starts a session (X3DH), which
//!   authenticates both identity keys: a man in the middle without one of
//!   the private keys cannot complete it;
//! - [`ratchet`]: the Double Ratchet, which gives every message its own
//!   key (forward secrecy: a key stolen today opens no older message) and
//!   heals after a compromise once both sides send again;
//! - [`payload`]: the message itself, encrypted once under a fresh key; the
//!   ratchet of each recipient device carries that key;
//! - [`session`]: one session with one device: starting it from a bundle,
//!   accepting one started by a peer, and the key exchange sent until the
//!   peer answers;
//! - [`message`]: opening a received `<encrypted/>` as one device.
//!
//! Every constant and byte layout follows what python-omemo (the reference
//! implementation behind slixmpp-omemo) does; the test vectors in
//! `tests/data/omemo-vectors.json` were produced by running it, and the
//! interoperability tests exchange messages with it.
//!
//! The primitives are RustCrypto's and dalek's (X25519, Ed25519, AES-CBC,
//! AES-GCM, HMAC-SHA-256, HKDF); only the protocol logic is written here.

pub mod device;
mod kdf;
pub mod keys;
pub mod message;
pub mod payload;
pub mod ratchet;
pub mod session;
pub mod wire;
pub mod x3dh;
pub mod xml;

/// Which OMEMO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Version {
    /// `urn:xmpp:omemo:2`.
    Two,
    /// `eu.siacs.conversations.axolotl` (OMEMO 0.3).
    Old,
}

impl Version {
    /// Both, newest first.
    pub const ALL: [Version; 2] = [Version::Two, Version::Old];

    /// The XML namespace.
    pub fn ns(self) -> &'static str {
        match self {
            Version::Two => "urn:xmpp:omemo:2",
            Version::Old => "eu.siacs.conversations.axolotl",
        }
    }

    /// The version of a namespace.
    pub fn from_ns(ns: &str) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.ns() == ns)
    }

    /// HKDF info of the key agreement.
    fn x3dh_info(self) -> &'static [u8] {
        match self {
            Version::Two => b"OMEMO X3DH",
            Version::Old => b"WhisperText",
        }
    }

    /// HKDF info of the root chain.
    fn root_info(self) -> &'static [u8] {
        match self {
            Version::Two => b"OMEMO Root Chain",
            Version::Old => b"WhisperRatchet",
        }
    }

    /// HKDF info turning a message key into cipher and MAC keys.
    fn message_info(self) -> &'static [u8] {
        match self {
            Version::Two => b"OMEMO Message Key Material",
            Version::Old => b"WhisperMessageKeys",
        }
    }

    /// A Curve25519 public key as this version writes it: as is, or with
    /// the Signal protocol's type byte 0x05 in front.
    pub fn curve_key(self, key: &[u8; 32]) -> Vec<u8> {
        match self {
            Version::Two => key.to_vec(),
            Version::Old => {
                let mut out = Vec::with_capacity(33);
                out.push(KEY_TYPE);
                out.extend_from_slice(key);
                out
            }
        }
    }

    /// The other direction of [`Version::curve_key`].
    pub fn read_curve_key(self, bytes: &[u8]) -> Result<[u8; 32], OmemoError> {
        let raw = match (self, bytes.split_first()) {
            (Version::Two, _) => bytes,
            (Version::Old, Some((&KEY_TYPE, rest))) => rest,
            (Version::Old, _) => {
                return Err(OmemoError::Malformed("a key without its 0x05 type byte"));
            }
        };
        raw.try_into()
            .map_err(|_| OmemoError::Malformed("a key that is not 32 bytes"))
    }
}

/// The Signal protocol's type byte of a Curve25519 public key (OMEMO 0.3).
pub const KEY_TYPE: u8 = 0x05;

/// The version byte of OMEMO 0.3's messages: protocol version 3, 3.
pub const OLD_MESSAGE_VERSION: u8 = 0x33;

/// Why an OMEMO operation failed. Each is one line for the user; none is
/// a panic, whatever a peer sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OmemoError {
    /// Bytes that do not parse as what they claim to be.
    #[error("malformed OMEMO data: {0}")]
    Malformed(&'static str),
    /// A public key that is not a valid point, or a key agreement with a
    /// key of small order (its result would be all zeros).
    #[error("an invalid public key ({0})")]
    BadKey(&'static str),
    /// The signed pre key's signature does not verify with the identity
    /// key: the bundle was forged or damaged on the way.
    #[error("the bundle's signed pre key is not signed by its identity key")]
    BadSignature,
    /// A bundle without one-time pre keys (the reference requires one).
    #[error("the bundle has no pre keys")]
    NoPreKey,
    /// A key exchange naming a pre key this device does not have (any
    /// more: each is used once).
    #[error("the key exchange uses pre key {0}, which this device does not have")]
    UnknownPreKey(u32),
    /// A key exchange naming a signed pre key this device does not have.
    #[error("the key exchange uses signed pre key {0}, which this device does not have")]
    UnknownSignedPreKey(u32),
    /// The message's authentication tag is wrong: changed on the way, or
    /// not for this session.
    #[error("the message failed authentication (changed on the way, or not for this session)")]
    Mac,
    /// A message already decrypted (its key is used up): a replay.
    #[error("a message already received (a replay?)")]
    Duplicate,
    /// A message further ahead than the ratchet will skip to.
    #[error("a message more than {0} messages ahead: refused")]
    TooFarAhead(u32),
    /// Decryption failed after authentication (bad padding).
    #[error("the message does not decrypt")]
    Decrypt,
}
