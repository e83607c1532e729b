//! X3DH, the key agreement that starts a session: four Diffie-Hellman
//! exchanges between the identity keys, the recipient's signed pre key and
//! one-time pre key, and the sender's ephemeral key. Both identities are
//! in it, so only the two devices can compute the secret; the signed pre
//! key is checked first, which stops a man in the middle who replaced the
//! bundle's keys with his own.

use x25519_dalek::StaticSecret;

use super::kdf::{hkdf, random};
use super::keys::{Bundle, IdentityKey, PreKey, curve_of_ed, dh};
use super::{OmemoError, Version};

/// What a key agreement gives both sides.
#[derive(Clone, PartialEq, Eq)]
pub struct Agreement {
    /// The shared secret: the ratchet's first root key.
    pub sk: [u8; 32],
    /// The associated data every message of the session authenticates:
    /// the initiator's identity key, then the responder's.
    pub ad: Vec<u8>,
}

impl std::fmt::Debug for Agreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the shared secret: it is the session's first root key.
        f.debug_struct("Agreement")
            .field("ad", &self.ad.len())
            .finish()
    }
}

/// What the initiator sends along so that the responder can agree too.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyExchange {
    /// The responder's one-time pre key used.
    pub pk_id: u32,
    /// The responder's signed pre key used.
    pub spk_id: u32,
    /// The initiator's identity key as the version writes it.
    pub ik: [u8; 32],
    /// The initiator's ephemeral public key.
    pub ek: [u8; 32],
}

/// The Curve25519 form of an identity key as `v` writes it.
fn curve(v: Version, ik: &[u8; 32]) -> Result<[u8; 32], OmemoError> {
    match v {
        Version::Two => curve_of_ed(ik),
        Version::Old => Ok(*ik),
    }
}

/// An identity key as it goes into the associated data.
fn ad_key(v: Version, ik: &[u8; 32]) -> Vec<u8> {
    v.curve_key(ik)
}

/// SK = HKDF(0³², 0xFF³² ‖ DH1 ‖ DH2 ‖ DH3 ‖ DH4, info), 32 bytes.
fn derive(v: Version, dhs: [[u8; 32]; 4]) -> [u8; 32] {
    let mut ikm = vec![0xff; 32];
    for d in dhs {
        ikm.extend_from_slice(&d);
    }
    let mut sk = [0u8; 32];
    hkdf(&[0u8; 32], &ikm, v.x3dh_info(), &mut sk);
    sk
}

/// The initiator's side: checks the bundle, picks one of its pre keys at
/// random, and agrees with a fresh ephemeral key.
pub fn initiate(
    v: Version,
    own: &IdentityKey,
    bundle: &Bundle,
) -> Result<(Agreement, KeyExchange), OmemoError> {
    let n = bundle.prekeys.len();
    if n == 0 {
        return Err(OmemoError::NoPreKey);
    }
    let pick = usize::from(u16::from_le_bytes(random())) % n;
    initiate_with(v, own, bundle, random(), pick)
}

/// [`initiate`] with the ephemeral secret and the pre key given (tests).
pub fn initiate_with(
    v: Version,
    own: &IdentityKey,
    bundle: &Bundle,
    ek_secret: [u8; 32],
    pick: usize,
) -> Result<(Agreement, KeyExchange), OmemoError> {
    bundle.verify(v)?;
    let &(pk_id, pk) = bundle.prekeys.get(pick).ok_or(OmemoError::NoPreKey)?;
    let ek = StaticSecret::from(ek_secret);
    let their_ik = curve(v, &bundle.ik)?;
    let dhs = [
        dh(&own.x25519(), &bundle.spk)?,
        dh(&ek, &their_ik)?,
        dh(&ek, &bundle.spk)?,
        dh(&ek, &pk)?,
    ];
    let own_ik = own.public(v);
    let mut ad = ad_key(v, &own_ik);
    ad.extend(ad_key(v, &bundle.ik));
    Ok((
        Agreement {
            sk: derive(v, dhs),
            ad,
        },
        KeyExchange {
            pk_id,
            spk_id: bundle.spk_id,
            ik: own_ik,
            ek: x25519_dalek::PublicKey::from(&ek).to_bytes(),
        },
    ))
}

/// The responder's side, with the keys the exchange named.
pub fn respond(
    v: Version,
    own: &IdentityKey,
    spk: &PreKey,
    pk: &PreKey,
    kex: &KeyExchange,
) -> Result<Agreement, OmemoError> {
    let their_ik = curve(v, &kex.ik)?;
    let dhs = [
        dh(&spk.x25519(), &their_ik)?,
        dh(&own.x25519(), &kex.ek)?,
        dh(&spk.x25519(), &kex.ek)?,
        dh(&pk.x25519(), &kex.ek)?,
    ];
    let mut ad = ad_key(v, &kex.ik);
    ad.extend(ad_key(v, &own.public(v)));
    Ok(Agreement {
        sk: derive(v, dhs),
        ad,
    })
}
