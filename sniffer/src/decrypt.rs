//! Opening TLS records with a session's secrets, as Wireshark does with a
//! key log: the attacker who holds `SSLKEYLOGFILE` (or a memory dump of
//! either end) reads everything, however strong the cipher.
//!
//! Every primitive is ring's, the workspace's one crypto provider (the same
//! code our chat negotiates with): AES-GCM, ChaCha20-Poly1305, HKDF and
//! HMAC. What this module adds is only TLS's use of them, each step named
//! after its RFC section:
//!
//! - TLS 1.3 (RFC 8446): a traffic secret gives the record key and IV with
//!   HKDF-Expand-Label (7.3); each record's nonce is the IV XOR its sequence
//!   number (5.3); the additional data is the record header (5.2); the real
//!   content type is the last non-zero byte of the plaintext (5.4). A
//!   KeyUpdate derives the next secret with the label "traffic upd" (7.2).
//! - TLS 1.2 (RFC 5246 6.3, 5288, 7905): the master secret and both hello
//!   randoms give a key block with the PRF; AES-GCM takes a 4-byte salt from
//!   it and an 8-byte explicit nonce from each record, ChaCha20-Poly1305 the
//!   TLS 1.3 style of nonce; the additional data is the sequence number,
//!   type, version and plaintext length.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::{hkdf, hmac};

/// The record cipher of a suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    /// AES-128 in GCM.
    Aes128Gcm,
    /// AES-256 in GCM.
    Aes256Gcm,
    /// ChaCha20 with Poly1305.
    ChaCha20Poly1305,
}

impl Cipher {
    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Cipher::Aes128Gcm => &aead::AES_128_GCM,
            Cipher::Aes256Gcm => &aead::AES_256_GCM,
            Cipher::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }

    fn key_len(self) -> usize {
        self.algorithm().key_len()
    }
}

/// The hash of a suite (its HKDF or PRF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
}

impl Hash {
    fn hkdf(self) -> hkdf::Algorithm {
        match self {
            Hash::Sha256 => hkdf::HKDF_SHA256,
            Hash::Sha384 => hkdf::HKDF_SHA384,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Hash::Sha256 => hmac::HMAC_SHA256,
            Hash::Sha384 => hmac::HMAC_SHA384,
        }
    }

    fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
        }
    }
}

/// What a cipher suite means for its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suite {
    /// The record cipher.
    pub cipher: Cipher,
    /// The hash of its key schedule.
    pub hash: Hash,
    /// A TLS 1.3 suite (else TLS 1.2).
    pub tls13: bool,
}

/// The suite with this IANA number, if the sniffer decrypts it: every AEAD
/// suite of TLS 1.3, and the TLS 1.2 AES-GCM and ChaCha20-Poly1305 ones
/// (whatever their key exchange: the key log holds the master secret).
pub fn suite(id: u16) -> Option<Suite> {
    use Cipher::*;
    use Hash::*;
    let (cipher, hash, tls13) = match id {
        0x1301 => (Aes128Gcm, Sha256, true),
        0x1302 => (Aes256Gcm, Sha384, true),
        0x1303 => (ChaCha20Poly1305, Sha256, true),
        // (EC)DHE and RSA key exchanges, RSA and ECDSA signatures.
        0xc02b | 0xc02f | 0x009c | 0x009e => (Aes128Gcm, Sha256, false),
        0xc02c | 0xc030 | 0x009d | 0x009f => (Aes256Gcm, Sha384, false),
        0xcca8..=0xccaa => (ChaCha20Poly1305, Sha256, false),
        _ => return None,
    };
    Some(Suite {
        cipher,
        hash,
        tls13,
    })
}

/// An output length for ring's HKDF.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label(secret, label, "", len) (RFC 8446 7.1): the
/// `HkdfLabel` structure is the info, its label prefixed with "tls13 ".
fn expand_label(hash: Hash, secret: &[u8], label: &[u8], len: usize) -> Vec<u8> {
    let prk = hkdf::Prk::new_less_safe(hash.hkdf(), secret);
    let length = (len as u16).to_be_bytes();
    let label_len = [(6 + label.len()) as u8];
    let info: [&[u8]; 5] = [&length, &label_len, b"tls13 ", label, &[0]];
    let mut out = vec![0u8; len];
    // Only fails for an output longer than 255 hashes; ours are 12 to 48.
    if let Ok(okm) = prk.expand(&info, Len(len)) {
        let _ = okm.fill(&mut out);
    }
    out
}

/// The TLS 1.2 PRF (RFC 5246 5): P_hash(secret, label + seed), HMAC chained
/// on its own output, as many blocks as `out` needs.
fn prf(hash: Hash, secret: &[u8], label: &[u8], seed: &[u8], out: &mut [u8]) {
    let key = hmac::Key::new(hash.hmac(), secret);
    let mut label_seed = label.to_vec();
    label_seed.extend_from_slice(seed);
    let mut a = hmac::sign(&key, &label_seed);
    let mut filled = 0;
    while filled < out.len() {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(a.as_ref());
        ctx.update(&label_seed);
        let block = ctx.sign();
        let n = block.as_ref().len().min(out.len() - filled);
        out[filled..filled + n].copy_from_slice(&block.as_ref()[..n]);
        filled += n;
        a = hmac::sign(&key, a.as_ref());
    }
}

/// Why a record did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// The tag does not match: the wrong key, or a record changed on the way.
    BadTag,
    /// Too short to hold a tag (and a TLS 1.2 explicit nonce).
    TooShort,
    /// Decrypted, but all padding: no content type (RFC 8446 5.4).
    NoContentType,
}

/// One direction's record protection: key, IV and sequence number.
pub struct RecordKeys {
    key: LessSafeKey,
    iv: [u8; 12],
    seq: u64,
    suite: Suite,
    /// TLS 1.3: the traffic secret, for the next KeyUpdate.
    secret: Vec<u8>,
}

impl std::fmt::Debug for RecordKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a key.
        f.debug_struct("RecordKeys")
            .field("suite", &self.suite)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

fn aead_key(cipher: Cipher, key: &[u8]) -> Option<LessSafeKey> {
    UnboundKey::new(cipher.algorithm(), key)
        .ok()
        .map(LessSafeKey::new)
}

impl RecordKeys {
    /// TLS 1.3: the keys of a traffic secret (RFC 8446 7.3); `None` if the
    /// secret is not as long as the suite's hash (a line for another suite).
    pub fn tls13(suite: Suite, secret: &[u8]) -> Option<RecordKeys> {
        if secret.len() != suite.hash.len() {
            return None;
        }
        let key = expand_label(suite.hash, secret, b"key", suite.cipher.key_len());
        let iv = expand_label(suite.hash, secret, b"iv", 12);
        Some(RecordKeys {
            key: aead_key(suite.cipher, &key)?,
            iv: iv.try_into().ok()?,
            seq: 0,
            suite,
            secret: secret.to_vec(),
        })
    }

    /// TLS 1.2: the client's and the server's keys, from the master secret
    /// and the two hello randoms (RFC 5246 6.3: the key block, without MAC
    /// keys, which AEAD suites do not have).
    pub fn tls12(
        suite: Suite,
        master: &[u8],
        client_random: &[u8; 32],
        server_random: &[u8; 32],
    ) -> Option<(RecordKeys, RecordKeys)> {
        if master.len() != 48 {
            return None;
        }
        let key_len = suite.cipher.key_len();
        // GCM: a 4-byte salt (RFC 5288 3); ChaCha20: a 12-byte IV (RFC 7905 2).
        let iv_len = if suite.cipher == Cipher::ChaCha20Poly1305 {
            12
        } else {
            4
        };
        let mut block = vec![0u8; 2 * key_len + 2 * iv_len];
        let mut seed = server_random.to_vec();
        seed.extend_from_slice(client_random);
        prf(suite.hash, master, b"key expansion", &seed, &mut block);
        let (client_key, rest) = block.split_at(key_len);
        let (server_key, rest) = rest.split_at(key_len);
        let (client_iv, server_iv) = rest.split_at(iv_len);
        let keys = |key: &[u8], iv: &[u8]| {
            let mut full = [0u8; 12];
            full[..iv.len()].copy_from_slice(iv);
            Some(RecordKeys {
                key: aead_key(suite.cipher, key)?,
                iv: full,
                seq: 0,
                suite,
                secret: Vec::new(),
            })
        };
        Some((keys(client_key, client_iv)?, keys(server_key, server_iv)?))
    }

    /// TLS 1.3 KeyUpdate (RFC 8446 7.2): the next traffic secret and its
    /// keys; the sequence number starts again at 0.
    pub fn update(&mut self) {
        let next = expand_label(
            self.suite.hash,
            &self.secret,
            b"traffic upd",
            self.suite.hash.len(),
        );
        if let Some(k) = RecordKeys::tls13(self.suite, &next) {
            *self = k;
        }
    }

    /// Records opened (or tried) with these keys.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The per-record nonce: the IV XOR the sequence number, right-aligned.
    fn xor_nonce(&self, seq: u64) -> [u8; 12] {
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
            *b ^= s;
        }
        n
    }

    /// Tries the next record: on success as [`RecordKeys::open`], but a tag
    /// that does not match moves nothing on (for 0-RTT data, which may or
    /// may not be what comes next).
    pub fn try_open(&mut self, header: &[u8; 5], body: &[u8]) -> Result<(u8, Vec<u8>), OpenError> {
        let seq = self.seq;
        let r = self.open(header, body);
        if r.is_err() {
            self.seq = seq;
        }
        r
    }

    /// Opens the next record of this direction: its 5-byte header as on the
    /// wire and its body. Returns the content type and the plaintext. The
    /// sequence number moves on either way, so one damaged record does not
    /// make the ones after it fail too.
    pub fn open(&mut self, header: &[u8; 5], body: &[u8]) -> Result<(u8, Vec<u8>), OpenError> {
        let seq = self.seq;
        self.seq += 1;
        let tag = self.suite.cipher.algorithm().tag_len();
        if self.suite.tls13 {
            if body.len() < tag {
                return Err(OpenError::TooShort);
            }
            let nonce = Nonce::assume_unique_for_key(self.xor_nonce(seq));
            let mut buf = body.to_vec();
            let plain = self
                .key
                .open_in_place(nonce, Aad::from(header), &mut buf)
                .map_err(|_| OpenError::BadTag)?;
            // TLSInnerPlaintext: content, the real type, zero padding.
            let end = plain
                .iter()
                .rposition(|&b| b != 0)
                .ok_or(OpenError::NoContentType)?;
            let kind = plain[end];
            return Ok((kind, plain[..end].to_vec()));
        }
        let explicit = if self.suite.cipher == Cipher::ChaCha20Poly1305 {
            0
        } else {
            8
        };
        if body.len() < explicit + tag {
            return Err(OpenError::TooShort);
        }
        let nonce = if explicit == 0 {
            self.xor_nonce(seq)
        } else {
            let mut n = self.iv;
            n[4..].copy_from_slice(&body[..8]);
            n
        };
        let plain_len = (body.len() - explicit - tag) as u16;
        let mut aad = [0u8; 13];
        aad[..8].copy_from_slice(&seq.to_be_bytes());
        aad[8..11].copy_from_slice(&header[..3]);
        aad[11..].copy_from_slice(&plain_len.to_be_bytes());
        let mut buf = body[explicit..].to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| OpenError::BadTag)?;
        Ok((header[0], plain.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 8448 3 (a simple 1-RTT handshake): the server's handshake
    /// traffic secret gives the key and IV the RFC lists.
    #[test]
    fn rfc8448_server_handshake_keys() {
        let suite = suite(0x1301).unwrap();
        let secret = unhex(
            "b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38",
        );
        assert_eq!(
            expand_label(suite.hash, &secret, b"key", 16),
            unhex("3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc")
        );
        assert_eq!(
            expand_label(suite.hash, &secret, b"iv", 12),
            unhex("5d 31 3e b2 67 12 76 ee 13 00 0b 30")
        );
    }

    /// RFC 5246's PRF, checked against a published test vector (the
    /// TLS 1.2 PRF with SHA-256, from the IETF TLS list's vectors).
    #[test]
    fn tls12_prf_sha256_vector() {
        let secret = unhex("9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35");
        let seed = unhex("a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c");
        let mut out = [0u8; 32];
        prf(Hash::Sha256, &secret, b"test label", &seed, &mut out);
        assert_eq!(
            out.to_vec(),
            unhex(
                "e3 f2 29 ba 72 7b e1 7b 8d 12 26 20 55 7c d4 53 c2 aa b2 1d 07 c3 d4 95 32 9b 52 d4 e6 1e db 5a"
            )
        );
    }

    #[test]
    fn unknown_suites_and_wrong_lengths_are_refused() {
        assert!(suite(0x002f).is_none(), "CBC is not decrypted");
        let s = suite(0x1302).unwrap();
        assert!(RecordKeys::tls13(s, &[0; 32]).is_none(), "SHA-384 needs 48");
        let s12 = suite(0xc02f).unwrap();
        assert!(RecordKeys::tls12(s12, &[0; 47], &[0; 32], &[0; 32]).is_none());
    }
}
