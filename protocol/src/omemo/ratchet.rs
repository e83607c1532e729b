//! The Double Ratchet: each message under its own key. A symmetric chain
//! gives the next key from the last (a stolen key opens no earlier
//! message: forward secrecy), and a Diffie-Hellman step each time the
//! conversation turns mixes fresh randomness into the root (a stolen
//! state stops opening messages once both sides have sent again).
//!
//! Messages may arrive out of order: keys of skipped messages are kept, at
//! most [`MAX_SKIP`], so a peer cannot make this side compute or store
//! without bound. Nothing changes until a message authenticates: a forged
//! or replayed one leaves the state as it was.

use std::collections::VecDeque;

use prost::Message;
use x25519_dalek::{PublicKey, StaticSecret};

use super::kdf::{cbc_decrypt, cbc_encrypt, hkdf, hmac, random, same, split80};
use super::keys::dh;
use super::wire::{
    OLD_MAC_LEN, OldMessage, TWO_MAC_LEN, TwoAuthenticated, TwoMessage, decode, split_old,
};
use super::x3dh::Agreement;
use super::{OLD_MESSAGE_VERSION, OmemoError, Version};

/// Message keys kept for messages not yet received, and the furthest a
/// message may be ahead of the last one (the reference's limit).
pub const MAX_SKIP: u32 = 1000;

/// A sending or receiving chain.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Chain {
    key: [u8; 32],
    /// The number of the next message.
    n: u32,
}

/// The key of a message not received yet.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Skipped {
    dh: [u8; 32],
    n: u32,
    key: [u8; 32],
}

/// One side of a session's ratchet. It serializes (the client keeps it
/// between runs, in a file only its user can read: it holds keys).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Ratchet {
    v: Version,
    /// The initiator's identity key, then the responder's.
    ad: Vec<u8>,
    initiator: bool,
    root: [u8; 32],
    /// Our current ratchet secret.
    own: [u8; 32],
    /// The peer's current ratchet public key.
    their: Option<[u8; 32]>,
    send: Option<Chain>,
    /// The length of our previous sending chain.
    prev: u32,
    recv: Option<Chain>,
    skipped: VecDeque<Skipped>,
}

impl std::fmt::Debug for Ratchet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a key.
        f.debug_struct("Ratchet")
            .field("v", &self.v)
            .field("initiator", &self.initiator)
            .field("sent", &self.send.as_ref().map(|c| c.n))
            .field("received", &self.recv.as_ref().map(|c| c.n))
            .field("skipped", &self.skipped.len())
            .finish()
    }
}

/// KDF_RK: a new root key and a chain key from the root and a DH output.
fn kdf_rk(v: Version, root: &[u8; 32], dh_out: &[u8; 32]) -> ([u8; 32], [u8; 32]) {
    let mut out = [0u8; 64];
    hkdf(root, dh_out, v.root_info(), &mut out);
    let (mut r, mut c) = ([0u8; 32], [0u8; 32]);
    r.copy_from_slice(&out[..32]);
    c.copy_from_slice(&out[32..]);
    (r, c)
}

/// KDF_CK: the next chain key (HMAC with 0x02) and this message's key
/// (HMAC with 0x01).
fn kdf_ck(ck: &[u8; 32]) -> ([u8; 32], [u8; 32]) {
    (hmac(ck, &[&[0x02]]), hmac(ck, &[&[0x01]]))
}

fn public(secret: &[u8; 32]) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(*secret)).to_bytes()
}

impl Ratchet {
    /// The initiator's ratchet: its first sending chain comes from a fresh
    /// ratchet key and the responder's signed pre key.
    pub fn initiator(
        v: Version,
        a: &Agreement,
        their_spk: &[u8; 32],
    ) -> Result<Ratchet, OmemoError> {
        Ratchet::initiator_with(v, a, their_spk, random())
    }

    /// [`Ratchet::initiator`] with the ratchet secret given (tests).
    pub fn initiator_with(
        v: Version,
        a: &Agreement,
        their_spk: &[u8; 32],
        own: [u8; 32],
    ) -> Result<Ratchet, OmemoError> {
        let (root, ck) = kdf_rk(v, &a.sk, &dh(&StaticSecret::from(own), their_spk)?);
        Ok(Ratchet {
            v,
            ad: a.ad.clone(),
            initiator: true,
            root,
            own,
            their: Some(*their_spk),
            send: Some(Chain { key: ck, n: 0 }),
            prev: 0,
            recv: None,
            skipped: VecDeque::new(),
        })
    }

    /// The responder's ratchet: its signed pre key is its first ratchet
    /// key; the first message received steps the ratchet.
    pub fn responder(v: Version, a: &Agreement, spk_secret: [u8; 32]) -> Ratchet {
        Ratchet {
            v,
            ad: a.ad.clone(),
            initiator: false,
            root: a.sk,
            own: spk_secret,
            their: None,
            send: None,
            prev: 0,
            recv: None,
            skipped: VecDeque::new(),
        }
    }

    /// The associated data of a message, as the version orders it: OMEMO 2
    /// always initiator first; OMEMO 0.3 sender first.
    fn ad_for(&self, sending: bool) -> Vec<u8> {
        let half = self.ad.len() / 2;
        let sender_is_initiator = sending == self.initiator;
        if self.v == Version::Two || sender_is_initiator {
            self.ad.clone()
        } else {
            let mut swapped = self.ad[half..].to_vec();
            swapped.extend_from_slice(&self.ad[..half]);
            swapped
        }
    }

    /// Encrypts `plaintext` (key material) as the next message: the bytes
    /// to send (OMEMO 2's authenticated message, or OMEMO 0.3's
    /// `0x33 ‖ message ‖ mac`).
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, OmemoError> {
        let chain = self.send.as_mut().ok_or(OmemoError::Malformed(
            "no sending chain before the first message arrived",
        ))?;
        let (next, mk) = kdf_ck(&chain.key);
        let n = chain.n;
        chain.key = next;
        chain.n = n
            .checked_add(1)
            .ok_or(OmemoError::Malformed("a sending chain at its end"))?;
        let (enc, auth, iv) = split80(&mk, self.v.message_info());
        let ciphertext = Some(cbc_encrypt(&enc, &iv, plaintext));
        let own = public(&self.own);
        Ok(match self.v {
            Version::Two => {
                let message = TwoMessage {
                    n,
                    pn: self.prev,
                    dh_pub: own.to_vec(),
                    ciphertext,
                }
                .encode_to_vec();
                let mac = hmac(&auth, &[&self.ad, &message])[..TWO_MAC_LEN].to_vec();
                TwoAuthenticated { mac, message }.encode_to_vec()
            }
            Version::Old => {
                let message = OldMessage {
                    dh_pub: self.v.curve_key(&own),
                    n,
                    pn: self.prev,
                    ciphertext,
                }
                .encode_to_vec();
                let mac = hmac(
                    &auth,
                    &[&self.ad_for(true), &[OLD_MESSAGE_VERSION], &message],
                );
                let mut out = vec![OLD_MESSAGE_VERSION];
                out.extend_from_slice(&message);
                out.extend_from_slice(&mac[..OLD_MAC_LEN]);
                out
            }
        })
    }

    /// Decrypts a message from the peer. The state changes only if it
    /// authenticates.
    pub fn decrypt(&mut self, bytes: &[u8]) -> Result<Vec<u8>, OmemoError> {
        // The MAC covers the message bytes exactly as they came.
        let (message, mac, dh_pub, n, pn, ciphertext) = match self.v {
            Version::Two => {
                let a: TwoAuthenticated = decode(bytes, "an authenticated message")?;
                let m: TwoMessage = decode(&a.message, "a ratchet message")?;
                let dh = self.v.read_curve_key(&m.dh_pub)?;
                (a.message, a.mac, dh, m.n, m.pn, m.ciphertext)
            }
            Version::Old => {
                let (message, mac) = split_old(bytes)?;
                let m: OldMessage = decode(message, "a ratchet message")?;
                let dh = self.v.read_curve_key(&m.dh_pub)?;
                (message.to_vec(), mac.to_vec(), dh, m.n, m.pn, m.ciphertext)
            }
        };
        let mut next = self.clone();
        let mk = next.message_key(&dh_pub, n, pn)?;
        let (enc, auth, iv) = split80(&mk, self.v.message_info());
        let expected = match self.v {
            Version::Two => hmac(&auth, &[&next.ad, &message])[..TWO_MAC_LEN].to_vec(),
            Version::Old => hmac(
                &auth,
                &[&next.ad_for(false), &[OLD_MESSAGE_VERSION], &message],
            )[..OLD_MAC_LEN]
                .to_vec(),
        };
        if !same(&expected, &mac) {
            return Err(OmemoError::Mac);
        }
        let plaintext = cbc_decrypt(&enc, &iv, ciphertext.as_deref().unwrap_or_default())
            .ok_or(OmemoError::Decrypt)?;
        *self = next;
        Ok(plaintext)
    }

    /// The key of message `n` in the chain of the peer's ratchet key `dh`,
    /// stepping the ratchet when the peer has a new one.
    fn message_key(&mut self, dh_pub: &[u8; 32], n: u32, pn: u32) -> Result<[u8; 32], OmemoError> {
        if let Some(i) = self
            .skipped
            .iter()
            .position(|s| s.dh == *dh_pub && s.n == n)
            && let Some(s) = self.skipped.remove(i)
        {
            return Ok(s.key);
        }
        if self.their != Some(*dh_pub) || self.recv.is_none() {
            // The rest of the old receiving chain, as skipped keys (beyond
            // the limit they are not computed, as in the reference).
            if let Some(recv) = &self.recv
                && pn.saturating_sub(recv.n) <= MAX_SKIP
            {
                self.skip_to(pn);
            }
            self.prev = self.send.as_ref().map_or(0, |c| c.n);
            self.their = Some(*dh_pub);
            let (root, rck) = kdf_rk(
                self.v,
                &self.root,
                &dh(&StaticSecret::from(self.own), dh_pub)?,
            );
            self.recv = Some(Chain { key: rck, n: 0 });
            self.own = random();
            let (root, sck) = kdf_rk(self.v, &root, &dh(&StaticSecret::from(self.own), dh_pub)?);
            self.root = root;
            self.send = Some(Chain { key: sck, n: 0 });
        }
        let received = self.recv.as_ref().map_or(0, |c| c.n);
        if n < received {
            return Err(OmemoError::Duplicate);
        }
        if n - received > MAX_SKIP {
            return Err(OmemoError::TooFarAhead(MAX_SKIP));
        }
        self.skip_to(n);
        let chain = self
            .recv
            .as_mut()
            .ok_or(OmemoError::Malformed("no receiving chain"))?;
        let (next, mk) = kdf_ck(&chain.key);
        chain.key = next;
        // A peer that numbered its messages up to the counter's end gets
        // an error, not a wrap-around (which would undo duplicate checks).
        chain.n = chain
            .n
            .checked_add(1)
            .ok_or(OmemoError::Malformed("a receiving chain at its end"))?;
        Ok(mk)
    }

    /// Keeps the keys of the receiving chain's messages before `n`.
    fn skip_to(&mut self, n: u32) {
        let Some(their) = self.their else { return };
        let Some(chain) = self.recv.as_mut() else {
            return;
        };
        while chain.n < n {
            let (next, mk) = kdf_ck(&chain.key);
            self.skipped.push_back(Skipped {
                dh: their,
                n: chain.n,
                key: mk,
            });
            if self.skipped.len() > MAX_SKIP as usize {
                self.skipped.pop_front();
            }
            chain.key = next;
            chain.n += 1;
        }
    }

    /// How many messages of the current receiving chain have arrived (the
    /// reference answers with an empty message past 53, so that a peer
    /// who only receives still moves the ratchet).
    pub fn received_in_chain(&self) -> u32 {
        self.recv.as_ref().map_or(0, |c| c.n)
    }
}
