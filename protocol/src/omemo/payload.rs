//! The message itself, encrypted once under a fresh key; that key (with
//! its authentication tag) is the key material each recipient device's
//! ratchet carries.
//!
//! - OMEMO 2: a 32-byte key, HKDF to a cipher key, a MAC key and an IV;
//!   AES-256-CBC, and HMAC-SHA-256 of the ciphertext truncated to 16 bytes.
//!   Key material: key ‖ tag (48 bytes). The plaintext is an XEP-0420
//!   envelope.
//! - OMEMO 0.3: a 16-byte key and a 12-byte IV, AES-128-GCM; the 16-byte
//!   tag goes with the key (32 bytes of key material), not with the
//!   payload; the IV goes in the header.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce, Tag};

use super::OmemoError;
use super::kdf::{cbc_decrypt, cbc_encrypt, hmac, random, same, split80};

/// HKDF info of OMEMO 2's payload key.
const TWO_INFO: &[u8] = b"OMEMO Payload";

/// An encrypted payload and what each recipient device must get.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The ciphertext (`<payload/>`).
    pub ciphertext: Vec<u8>,
    /// The key material the ratchets carry.
    pub key_material: Vec<u8>,
    /// OMEMO 0.3's IV (`<iv/>`); empty for OMEMO 2.
    pub iv: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material: it opens the payload.
        f.debug_struct("Sealed")
            .field("ciphertext", &self.ciphertext.len())
            .field("iv", &self.iv.len())
            .finish()
    }
}

/// OMEMO 2: encrypts `plaintext` under a fresh key.
pub fn seal_two(plaintext: &[u8]) -> Sealed {
    seal_two_with(random(), plaintext)
}

/// [`seal_two`] with the key given (tests).
pub fn seal_two_with(key: [u8; 32], plaintext: &[u8]) -> Sealed {
    let (enc, auth, iv) = split80(&key, TWO_INFO);
    let ciphertext = cbc_encrypt(&enc, &iv, plaintext);
    let tag = hmac(&auth, &[&ciphertext]);
    let mut key_material = key.to_vec();
    key_material.extend_from_slice(&tag[..16]);
    Sealed {
        ciphertext,
        key_material,
        iv: Vec::new(),
    }
}

/// OMEMO 2: decrypts a payload with the key material a ratchet gave.
pub fn open_two(key_material: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, OmemoError> {
    if key_material.len() != 48 {
        return Err(OmemoError::Malformed("key material that is not 48 bytes"));
    }
    let (key, tag) = key_material.split_at(32);
    let (enc, auth, iv) = split80(key, TWO_INFO);
    if !same(&hmac(&auth, &[ciphertext])[..16], tag) {
        return Err(OmemoError::Mac);
    }
    cbc_decrypt(&enc, &iv, ciphertext).ok_or(OmemoError::Decrypt)
}

/// OMEMO 0.3: encrypts `plaintext` under a fresh key and IV.
pub fn seal_old(plaintext: &[u8]) -> Sealed {
    seal_old_with(random(), random(), plaintext)
}

/// [`seal_old`] with the key and IV given (tests).
pub fn seal_old_with(key: [u8; 16], iv: [u8; 12], plaintext: &[u8]) -> Sealed {
    let cipher = Aes128Gcm::new(&key.into());
    let mut buf = plaintext.to_vec();
    let tag = cipher
        .encrypt_inout_detached(&Nonce::from(iv), b"", buf.as_mut_slice().into())
        .unwrap_or_else(|_| unreachable!("AES-GCM takes messages up to 64 GiB"));
    let mut key_material = key.to_vec();
    key_material.extend_from_slice(&tag);
    Sealed {
        ciphertext: buf,
        key_material,
        iv: iv.to_vec(),
    }
}

/// OMEMO 0.3: decrypts a payload. The IV may be 12 bytes (what clients
/// send now) or 16 (older ones).
pub fn open_old(key_material: &[u8], iv: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, OmemoError> {
    if key_material.len() != 32 {
        return Err(OmemoError::Malformed("key material that is not 32 bytes"));
    }
    let (key, tag) = key_material.split_at(16);
    let key: [u8; 16] = key.try_into().map_err(|_| OmemoError::Malformed("key"))?;
    let tag: [u8; 16] = tag.try_into().map_err(|_| OmemoError::Malformed("tag"))?;
    let mut buf = ciphertext.to_vec();
    match iv.len() {
        12 => {
            let iv: [u8; 12] = iv.try_into().map_err(|_| OmemoError::Malformed("iv"))?;
            Aes128Gcm::new(&key.into())
                .decrypt_inout_detached(
                    &Nonce::from(iv),
                    b"",
                    buf.as_mut_slice().into(),
                    &Tag::from(tag),
                )
                .map_err(|_| OmemoError::Mac)?;
        }
        16 => {
            use aes_gcm::AesGcm;
            use aes_gcm::aead::consts::U16;
            let iv: [u8; 16] = iv.try_into().map_err(|_| OmemoError::Malformed("iv"))?;
            AesGcm::<aes_gcm::aes::Aes128, U16>::new(&key.into())
                .decrypt_inout_detached(&iv.into(), b"", buf.as_mut_slice().into(), &Tag::from(tag))
                .map_err(|_| OmemoError::Mac)?;
        }
        _ => {
            return Err(OmemoError::Malformed(
                "an IV that is neither 12 nor 16 bytes",
            ));
        }
    }
    Ok(buf)
}
