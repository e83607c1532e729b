//! HKDF-SHA-256 and HMAC-SHA-256 as OMEMO uses them, and randomness.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// HKDF-SHA-256 of `ikm` with `salt` and `info`, filling `out`.
pub(super) fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) {
    // Lengths are ours (at most 80 bytes, far below HKDF's 8160).
    let _ = Hkdf::<Sha256>::new(Some(salt), ikm).expand(info, out);
}

/// HMAC-SHA-256 of the concatenated `parts` under `key`.
pub(super) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Three keys from one: HKDF with a zero salt to 80 bytes, split as a
/// 32-byte cipher key, a 32-byte MAC key and a 16-byte IV (message keys
/// in the ratchet, and OMEMO 2's payload key).
pub(super) fn split80(ikm: &[u8], info: &[u8]) -> ([u8; 32], [u8; 32], [u8; 16]) {
    let mut out = [0u8; 80];
    hkdf(&[0u8; 32], ikm, info, &mut out);
    let mut enc = [0u8; 32];
    let mut auth = [0u8; 32];
    let mut iv = [0u8; 16];
    enc.copy_from_slice(&out[..32]);
    auth.copy_from_slice(&out[32..64]);
    iv.copy_from_slice(&out[64..]);
    (enc, auth, iv)
}

/// `N` bytes from the operating system's random source.
pub(super) use crate::sasl::random_bytes as random;

/// AES-256-CBC with PKCS#7 padding.
pub(super) fn cbc_encrypt(key: &[u8; 32], iv: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
    use aes::cipher::{BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};
    cbc::Encryptor::<aes::Aes256>::new(key.into(), iv.into()).encrypt_padded_vec::<Pkcs7>(plaintext)
}

/// The other direction of [`cbc_encrypt`]; `None` on bad padding.
pub(super) fn cbc_decrypt(key: &[u8; 32], iv: &[u8; 16], ciphertext: &[u8]) -> Option<Vec<u8>> {
    use aes::cipher::{BlockModeDecrypt, KeyIvInit, block_padding::Pkcs7};
    cbc::Decryptor::<aes::Aes256>::new(key.into(), iv.into())
        .decrypt_padded_vec::<Pkcs7>(ciphertext)
        .ok()
}

/// Whether two MACs are equal, in constant time (an early exit would tell
/// an attacker how many leading bytes of a forged tag were right).
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
