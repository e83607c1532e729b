//! A device's keys, and the bundle it publishes so that others can start a
//! session with it while it is offline.
//!
//! The identity key is an Ed25519 key (a 32-byte seed). OMEMO 2 publishes
//! it as is; OMEMO 0.3 publishes its Curve25519 (Montgomery) form. For key
//! agreement the same secret scalar does X25519, as the reference does.
//! The signed pre key proves, by the identity key's signature, that the
//! bundle is the device's own: a man in the middle who swaps in his own
//! pre keys cannot sign them.

use curve25519_dalek::montgomery::MontgomeryPoint;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use x25519_dalek::{PublicKey, StaticSecret};

use super::kdf::random;
use super::{OmemoError, Version};

/// A device's long-term identity.
#[derive(Clone)]
pub struct IdentityKey {
    key: SigningKey,
}

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        write!(f, "IdentityKey({})", hex(&self.ed25519()))
    }
}

impl IdentityKey {
    /// A new random identity.
    pub fn generate() -> IdentityKey {
        IdentityKey::from_seed(random())
    }

    /// The identity of a stored seed.
    pub fn from_seed(seed: [u8; 32]) -> IdentityKey {
        IdentityKey {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The seed, for storage.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The Ed25519 public key (OMEMO 2's `ik`).
    pub fn ed25519(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The Curve25519 public key (OMEMO 0.3's `identityKey`, without its
    /// type byte).
    pub fn curve25519(&self) -> [u8; 32] {
        self.key.verifying_key().to_montgomery().to_bytes()
    }

    /// This identity's fingerprint (see [`fingerprint`]).
    pub fn fingerprint(&self) -> String {
        fingerprint(&hex(&self.curve25519()))
    }

    /// The public key as `v` publishes it.
    pub fn public(&self, v: Version) -> [u8; 32] {
        match v {
            Version::Two => self.ed25519(),
            Version::Old => self.curve25519(),
        }
    }

    /// The X25519 secret: the Ed25519 secret scalar (X25519 clamps it the
    /// same way).
    pub(super) fn x25519(&self) -> StaticSecret {
        StaticSecret::from(self.key.to_scalar_bytes())
    }

    /// An Ed25519 signature.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// An X25519 key pair with an id (a signed pre key or a one-time pre key).
#[derive(Clone)]
pub struct PreKey {
    /// Its id in the bundle.
    pub id: u32,
    secret: [u8; 32],
}

impl std::fmt::Debug for PreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PreKey({}, {})", self.id, hex(&self.public()))
    }
}

impl PreKey {
    /// A new random key with `id`.
    pub fn generate(id: u32) -> PreKey {
        PreKey::from_secret(id, random())
    }

    /// A stored key.
    pub fn from_secret(id: u32, secret: [u8; 32]) -> PreKey {
        PreKey { id, secret }
    }

    /// The secret, for storage.
    pub fn secret(&self) -> [u8; 32] {
        self.secret
    }

    /// The public key.
    pub fn public(&self) -> [u8; 32] {
        PublicKey::from(&StaticSecret::from(self.secret)).to_bytes()
    }

    pub(super) fn x25519(&self) -> StaticSecret {
        StaticSecret::from(self.secret)
    }
}

/// A device's published keys: what another device needs to start a
/// session with it without it being online.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The identity key as the version publishes it (Ed25519 for OMEMO 2,
    /// Curve25519 for OMEMO 0.3).
    pub ik: [u8; 32],
    /// OMEMO 0.3: the sign bit of the identity key's Ed25519 form, which
    /// its Curve25519 form does not carry (0 or 1).
    pub ik_sign: u8,
    /// The signed pre key and its id.
    pub spk_id: u32,
    /// Its public key.
    pub spk: [u8; 32],
    /// The identity key's signature over it (sign bit not stuffed in).
    pub spks: [u8; 64],
    /// One-time pre keys: (id, public key).
    pub prekeys: Vec<(u32, [u8; 32])>,
}

impl Bundle {
    /// The bundle of `identity` with its signed pre key and pre keys, for
    /// version `v`.
    pub fn new(v: Version, identity: &IdentityKey, spk: &PreKey, prekeys: &[PreKey]) -> Bundle {
        let spk_pub = spk.public();
        Bundle {
            ik: identity.public(v),
            ik_sign: identity.ed25519()[31] >> 7,
            spk_id: spk.id,
            spk: spk_pub,
            spks: identity.sign(&v.curve_key(&spk_pub)),
            prekeys: prekeys.iter().map(|p| (p.id, p.public())).collect(),
        }
    }

    /// The identity key in Ed25519 form (what signs).
    pub fn ik_ed25519(&self, v: Version) -> Result<[u8; 32], OmemoError> {
        match v {
            Version::Two => Ok(self.ik),
            Version::Old => ed_of_curve(&self.ik, self.ik_sign),
        }
    }

    /// Checks the signed pre key's signature: the defence against a
    /// bundle whose pre keys were swapped on the way.
    pub fn verify(&self, v: Version) -> Result<(), OmemoError> {
        let ed = self.ik_ed25519(v)?;
        let key = VerifyingKey::from_bytes(&ed).map_err(|_| OmemoError::BadKey("identity key"))?;
        key.verify(&v.curve_key(&self.spk), &Signature::from_bytes(&self.spks))
            .map_err(|_| OmemoError::BadSignature)
    }

    /// OMEMO 0.3's signature field: the identity key's sign bit in the top
    /// bit of the last byte (libsignal's convention; XEdDSA signatures
    /// leave that bit free).
    pub fn old_signature(&self) -> [u8; 64] {
        let mut s = self.spks;
        s[63] |= self.ik_sign << 7;
        s
    }

    /// Reads OMEMO 0.3's signature field: the signature, and the sign bit.
    pub fn from_old_signature(stuffed: [u8; 64]) -> ([u8; 64], u8) {
        let mut s = stuffed;
        let sign = s[63] >> 7;
        s[63] &= 0x7f;
        (s, sign)
    }
}

/// The Curve25519 form of an Ed25519 public key (for key agreement).
pub fn curve_of_ed(ed: &[u8; 32]) -> Result<[u8; 32], OmemoError> {
    VerifyingKey::from_bytes(ed)
        .map(|k| k.to_montgomery().to_bytes())
        .map_err(|_| OmemoError::BadKey("not an Ed25519 point"))
}

/// The Ed25519 form of a Curve25519 public key, with the given sign bit.
pub fn ed_of_curve(curve: &[u8; 32], sign: u8) -> Result<[u8; 32], OmemoError> {
    MontgomeryPoint(*curve)
        .to_edwards(sign & 1)
        .map(|p| p.compress().to_bytes())
        .ok_or(OmemoError::BadKey("not a Curve25519 point"))
}

/// X25519 with a check that the peer's key is not of small order (which
/// would make the result all zeros, the same for everyone).
pub(super) fn dh(secret: &StaticSecret, their: &[u8; 32]) -> Result<[u8; 32], OmemoError> {
    let shared = secret.diffie_hellman(&PublicKey::from(*their));
    if !shared.was_contributory() {
        return Err(OmemoError::BadKey("a key of small order"));
    }
    Ok(shared.to_bytes())
}

/// A fingerprint as people compare it: the key in lower-case hex (the
/// Curve25519 form, as every client shows it), in groups of eight.
pub fn fingerprint(key_hex: &str) -> String {
    key_hex
        .as_bytes()
        .chunks(8)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Lower-case hex, for fingerprints and debugging.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
