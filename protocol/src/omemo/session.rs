//! One session with one device. The initiator starts it from the device's
//! bundle and sends the key exchange with every message until the peer
//! answers (any message decrypted on the session confirms it); the
//! responder builds its side from the key exchange and the pre keys it
//! names.

use prost::Message;

use super::kdf::random;
use super::keys::{Bundle, IdentityKey, PreKey};
use super::ratchet::Ratchet;
use super::wire::{OldKeyExchange, TwoAuthenticated, TwoKeyExchange, decode};
use super::x3dh::{self, KeyExchange};
use super::{OLD_MESSAGE_VERSION, OmemoError, Version};

/// A session with one device. It serializes, for the client to keep
/// between runs (it holds keys: a file only its user can read).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Session {
    v: Version,
    ratchet: Ratchet,
    /// The initiator's key exchange, sent until the peer answers.
    pending: Option<KeyExchange>,
    /// The responder's: the key exchange that built it (the same one
    /// arriving again goes to this session, not a new one).
    built_by: Option<KeyExchange>,
}

/// A message for one device: the bytes of `<key/>`, and whether it is a
/// key exchange (`kex='true'`, or `prekey='true'` in OMEMO 0.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    /// The bytes.
    pub data: Vec<u8>,
    /// A key exchange.
    pub kex: bool,
}

impl Session {
    /// Starts a session with the device of `bundle`.
    pub fn initiate(v: Version, own: &IdentityKey, bundle: &Bundle) -> Result<Session, OmemoError> {
        let (a, kex) = x3dh::initiate(v, own, bundle)?;
        Ok(Session {
            v,
            ratchet: Ratchet::initiator(v, &a, &bundle.spk)?,
            pending: Some(kex),
            built_by: None,
        })
    }

    /// [`Session::initiate`] with every random choice given (tests).
    pub fn initiate_with(
        v: Version,
        own: &IdentityKey,
        bundle: &Bundle,
        ek: [u8; 32],
        pick: usize,
        ratchet: [u8; 32],
    ) -> Result<Session, OmemoError> {
        let (a, kex) = x3dh::initiate_with(v, own, bundle, ek, pick)?;
        Ok(Session {
            v,
            ratchet: Ratchet::initiator_with(v, &a, &bundle.spk, ratchet)?,
            pending: Some(kex),
            built_by: None,
        })
    }

    /// The version.
    pub fn version(&self) -> Version {
        self.v
    }

    /// Whether the peer has answered (no key exchange goes with our
    /// messages any more).
    pub fn confirmed(&self) -> bool {
        self.pending.is_none()
    }

    /// The key exchange that built this (responder's) session.
    pub fn built_by(&self) -> Option<&KeyExchange> {
        self.built_by.as_ref()
    }

    /// How many messages of the peer's current chain arrived.
    pub fn received_in_chain(&self) -> u32 {
        self.ratchet.received_in_chain()
    }

    /// Encrypts key material for this device.
    pub fn encrypt(&mut self, key_material: &[u8]) -> Result<Encrypted, OmemoError> {
        let inner = self.ratchet.encrypt(key_material)?;
        let Some(kex) = &self.pending else {
            return Ok(Encrypted {
                data: inner,
                kex: false,
            });
        };
        let data = match self.v {
            Version::Two => TwoKeyExchange {
                pk_id: kex.pk_id,
                spk_id: kex.spk_id,
                ik: kex.ik.to_vec(),
                ek: kex.ek.to_vec(),
                message: decode::<TwoAuthenticated>(&inner, "our own message")?,
            }
            .encode_to_vec(),
            Version::Old => {
                let mut out = vec![OLD_MESSAGE_VERSION];
                out.extend(
                    OldKeyExchange {
                        pk_id: kex.pk_id,
                        ek: self.v.curve_key(&kex.ek),
                        ik: self.v.curve_key(&kex.ik),
                        message: inner,
                        registration_id: None,
                        spk_id: kex.spk_id,
                    }
                    .encode_to_vec(),
                );
                out
            }
        };
        Ok(Encrypted { data, kex: true })
    }

    /// Reads a key exchange: what it names, and the message inside.
    pub fn read_key_exchange(
        v: Version,
        data: &[u8],
    ) -> Result<(KeyExchange, Vec<u8>), OmemoError> {
        // The same four fields in both versions; only the container and
        // the inner message's form differ.
        let (pk_id, spk_id, ik, ek, message) = match v {
            Version::Two => {
                let k: TwoKeyExchange = decode(data, "a key exchange")?;
                (k.pk_id, k.spk_id, k.ik, k.ek, k.message.encode_to_vec())
            }
            Version::Old => {
                let Some((&OLD_MESSAGE_VERSION, body)) = data.split_first() else {
                    return Err(OmemoError::Malformed(
                        "a key exchange of an unknown version",
                    ));
                };
                let k: OldKeyExchange = decode(body, "a key exchange")?;
                (k.pk_id, k.spk_id, k.ik, k.ek, k.message)
            }
        };
        Ok((
            KeyExchange {
                pk_id,
                spk_id,
                ik: v.read_curve_key(&ik)?,
                ek: v.read_curve_key(&ek)?,
            },
            message,
        ))
    }

    /// The responder's session from a key exchange, with the signed pre key
    /// and pre key it named; returns it and the first message's key
    /// material. (The caller then deletes that pre key: each is used once.)
    pub fn respond(
        v: Version,
        own: &IdentityKey,
        spk: &PreKey,
        pk: &PreKey,
        kex: &KeyExchange,
        message: &[u8],
    ) -> Result<(Session, Vec<u8>), OmemoError> {
        if spk.id != kex.spk_id {
            return Err(OmemoError::UnknownSignedPreKey(kex.spk_id));
        }
        if pk.id != kex.pk_id {
            return Err(OmemoError::UnknownPreKey(kex.pk_id));
        }
        let a = x3dh::respond(v, own, spk, pk, kex)?;
        let mut session = Session {
            v,
            ratchet: Ratchet::responder(v, &a, spk.secret()),
            pending: None,
            built_by: Some(kex.clone()),
        };
        let material = session.ratchet.decrypt(message)?;
        Ok((session, material))
    }

    /// Decrypts a message on this session. The first one that decrypts
    /// confirms an initiator's session.
    pub fn decrypt(&mut self, data: &[u8]) -> Result<Vec<u8>, OmemoError> {
        let material = self.ratchet.decrypt(data)?;
        self.pending = None;
        Ok(material)
    }
}

/// A random device id, 1 to 2³¹ − 2 as the reference picks them.
pub fn random_device_id() -> u32 {
    1 + u32::from_le_bytes(random()) % 0x7fff_fffe
}
