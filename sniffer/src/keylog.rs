//! TLS session secrets from an NSS key log (`SSLKEYLOGFILE`), the format
//! every browser, curl, OpenSSL, Python's `ssl`, rustls and Wireshark share:
//! one line per secret, `LABEL CLIENT_RANDOM SECRET`, both in hex.
//!
//! ```text
//! CLIENT_RANDOM <32-byte client random> <48-byte TLS 1.2 master secret>
//! CLIENT_HANDSHAKE_TRAFFIC_SECRET <client random> <TLS 1.3 secret>
//! SERVER_HANDSHAKE_TRAFFIC_SECRET ...
//! CLIENT_TRAFFIC_SECRET_0 ...
//! SERVER_TRAFFIC_SECRET_0 ...
//! ```
//!
//! The client random (sent in clear in every ClientHello) ties a line to a
//! session on the wire. Whoever holds this file reads every session it
//! lists, however strong the cipher: that is why a program writes it only
//! when asked (and why our chat says so when `SSLKEYLOGFILE` is set).
//!
//! A live capture may see a session before its program has written the
//! secrets, so a lookup that misses reads the file again if it has grown.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The secrets of one session, by its client random.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    /// TLS 1.2: the master secret (`CLIENT_RANDOM`).
    pub master: Option<Vec<u8>>,
    /// TLS 1.3: `CLIENT_HANDSHAKE_TRAFFIC_SECRET`.
    pub client_handshake: Option<Vec<u8>>,
    /// TLS 1.3: `SERVER_HANDSHAKE_TRAFFIC_SECRET`.
    pub server_handshake: Option<Vec<u8>>,
    /// TLS 1.3: `CLIENT_TRAFFIC_SECRET_0`.
    pub client_traffic: Option<Vec<u8>>,
    /// TLS 1.3: `SERVER_TRAFFIC_SECRET_0`.
    pub server_traffic: Option<Vec<u8>>,
    /// TLS 1.3: `CLIENT_EARLY_TRAFFIC_SECRET`, for 0-RTT data.
    pub client_early: Option<Vec<u8>>,
}

/// Why a key log cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyLogError {
    /// The file cannot be read.
    #[error("cannot read the key log {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM private key was given where the session secrets were expected.
    #[error(
        "{} is a private key, not a key log: a TLS session with an ECDHE key exchange (every TLS 1.3 session, and every one our chat makes) cannot be decrypted with the server's private key, which only signs the handshake (forward secrecy). Give the session secrets instead: the file SSLKEYLOGFILE names",
        path.display()
    )]
    PrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// `--server-key` was given something else than a PEM private key.
    #[error("{} is not a PEM private key", path.display())]
    NotAKey {
        /// The file.
        path: PathBuf,
    },
    /// Not one line of the file is a key log line.
    #[error(
        "{} holds no key log line (LABEL CLIENT_RANDOM SECRET, in hex, as SSLKEYLOGFILE writes them)",
        path.display()
    )]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// The secrets of a key log, by client random.
#[derive(Debug, Clone, Default)]
pub struct KeyLog {
    sessions: HashMap<[u8; 32], Secrets>,
    /// A live capture's file, to read again as it grows.
    path: Option<PathBuf>,
    /// Its bytes read so far (whole lines).
    read_len: u64,
    /// Lines that were not key log lines.
    pub bad_lines: usize,
    /// Only the server's private key was given: nothing to decrypt with,
    /// each session says why (see [`KeyLog::server_key_only`]).
    pub server_key_only: bool,
    /// The file may still grow (a live capture): a session not in it yet,
    /// or not whole yet, may be later. Read from a finished capture, a miss
    /// is final.
    live: bool,
    /// Bytes of encrypted records held, every connection together, while
    /// they wait for their secrets (see [`KeyLog::MAX_WAITING_BYTES`]).
    pub(crate) waiting_bytes: usize,
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl KeyLog {
    /// Most bytes of encrypted records a live capture holds, every
    /// connection together, while their programs have not written their
    /// secrets yet. Past it, a session that is still waiting counts as
    /// having no key.
    pub const MAX_WAITING_BYTES: usize = 64 << 20;

    /// The key log in `text` (lines that are not key log lines are counted
    /// in [`KeyLog::bad_lines`] and skipped).
    pub fn parse(text: &str) -> KeyLog {
        let mut k = KeyLog::default();
        k.add(text);
        k
    }

    /// Reads the key log at `path`.
    pub fn load(path: &Path) -> Result<KeyLog, KeyLogError> {
        let bytes = std::fs::read(path).map_err(|source| KeyLogError::Read {
            path: path.into(),
            source,
        })?;
        let text = String::from_utf8_lossy(&bytes);
        if text.contains("-----BEGIN") && text.contains("PRIVATE KEY-----") {
            return Err(KeyLogError::PrivateKey { path: path.into() });
        }
        let k = KeyLog::parse(&text);
        if k.sessions.is_empty() && k.bad_lines > 0 {
            return Err(KeyLogError::Empty { path: path.into() });
        }
        Ok(k)
    }

    /// For a live capture: the key log at `path`, which may not exist yet
    /// (the program that writes it starts after the sniffer); it is read
    /// when a session needs it.
    pub fn watch(path: &Path) -> Result<KeyLog, KeyLogError> {
        if path.exists() {
            // The same checks as a finished file (a private key, no key
            // log line at all)...
            KeyLog::load(path)?;
        }
        // ...but only whole lines are read: the last may be half written.
        let mut k = KeyLog {
            path: Some(path.into()),
            live: true,
            ..KeyLog::default()
        };
        k.reload();
        Ok(k)
    }

    /// Whether the file may still grow (see [`KeyLog::watch`]).
    pub fn live(&self) -> bool {
        self.live
    }

    fn add(&mut self, text: &str) {
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_ascii_whitespace();
            let (Some(label), Some(random), Some(secret), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                self.bad_lines += 1;
                continue;
            };
            let (Some(random), Some(secret)) = (unhex(random), unhex(secret)) else {
                self.bad_lines += 1;
                continue;
            };
            let Ok(random) = <[u8; 32]>::try_from(random.as_slice()) else {
                self.bad_lines += 1;
                continue;
            };
            let s = self.sessions.entry(random).or_default();
            let slot = match label {
                "CLIENT_RANDOM" => &mut s.master,
                "CLIENT_HANDSHAKE_TRAFFIC_SECRET" => &mut s.client_handshake,
                "SERVER_HANDSHAKE_TRAFFIC_SECRET" => &mut s.server_handshake,
                "CLIENT_TRAFFIC_SECRET_0" => &mut s.client_traffic,
                "SERVER_TRAFFIC_SECRET_0" => &mut s.server_traffic,
                "CLIENT_EARLY_TRAFFIC_SECRET" => &mut s.client_early,
                // Exporters, ECH: nothing the sniffer needs.
                _ => continue,
            };
            *slot = Some(secret);
        }
    }

    /// No secrets, only the server's private key at `path` (checked to be
    /// one): the lesson of forward secrecy. The key signs the handshake; an
    /// ECDHE session's keys come from ephemeral shares that were never
    /// written down, so each session is reported as not decryptable, with
    /// its key exchange named.
    pub fn server_key_only(path: &Path) -> Result<KeyLog, KeyLogError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyLogError::Read {
            path: path.into(),
            source,
        })?;
        if !(text.contains("-----BEGIN") && text.contains("PRIVATE KEY-----")) {
            return Err(KeyLogError::NotAKey { path: path.into() });
        }
        Ok(KeyLog {
            server_key_only: true,
            ..KeyLog::default()
        })
    }

    /// Sessions known.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// No session known.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The secrets of the session whose ClientHello carried `random`. A
    /// live capture's key log is read again first if it has grown: a
    /// session is seen before its program writes its secrets, and a TLS 1.3
    /// program writes them a few at a time.
    pub fn lookup(&mut self, random: &[u8; 32]) -> Option<&Secrets> {
        if self.live {
            self.reload();
        }
        self.sessions.get(random)
    }

    /// Reads what was appended since last time, whole lines only: a line
    /// being written must not be taken for a (shorter) secret. A later line
    /// for a session replaces the earlier one.
    fn reload(&mut self) {
        use std::io::{Read, Seek, SeekFrom};
        let Some(path) = &self.path else { return };
        // The size first: a capture whose sessions are not in the file asks
        // once per record, and opening an unchanged file each time is waste.
        let len = match std::fs::metadata(path) {
            Ok(m) if m.len() != self.read_len => m.len(),
            _ => return,
        };
        if len < self.read_len {
            // Written again from the start (a new run of the program).
            self.read_len = 0;
        }
        let Ok(mut f) = std::fs::File::open(path) else {
            return;
        };
        let mut tail = Vec::new();
        if f.seek(SeekFrom::Start(self.read_len)).is_err()
            || f.take(len - self.read_len).read_to_end(&mut tail).is_err()
        {
            return;
        }
        let whole = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.read_len += whole as u64;
        self.add(&String::from_utf8_lossy(&tail[..whole]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_by_client_random_and_bad_lines_counted() {
        let r = "01".repeat(32);
        let text = format!(
            "# SSL/TLS secrets log file\nCLIENT_RANDOM {r} {}\nSERVER_TRAFFIC_SECRET_0 {r} AABB\nEXPORTER_SECRET {r} cc\nnot a line\nCLIENT_RANDOM 0102 ff\n",
            "ab".repeat(48)
        );
        let mut k = KeyLog::parse(&text);
        assert_eq!((k.len(), k.bad_lines), (1, 2));
        let s = k.lookup(&[1; 32]).unwrap();
        assert_eq!(s.master.as_deref(), Some(&[0xab; 48][..]));
        assert_eq!(s.server_traffic.as_deref(), Some(&[0xaa, 0xbb][..]));
        assert!(k.lookup(&[2; 32]).is_none());
    }

    #[test]
    fn a_private_key_or_garbage_is_a_clear_error_and_growth_is_read() {
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("server.key");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = KeyLog::load(&key).unwrap_err().to_string();
        assert!(e.contains("is a private key, not a key log"), "{e}");
        let junk = d.path().join("junk");
        std::fs::write(&junk, "hello\nworld\n").unwrap();
        let e = KeyLog::load(&junk).unwrap_err().to_string();
        assert!(e.contains("holds no key log line"), "{e}");
        // A live capture's program writes it later.
        let log = d.path().join("keys.log");
        assert!(
            KeyLog::load(&log).is_err(),
            "read: a missing file is a typo"
        );
        let mut k = KeyLog::watch(&log).unwrap();
        assert!(k.lookup(&[7; 32]).is_none());
        std::fs::write(&log, "").unwrap();
        assert!(k.lookup(&[7; 32]).is_none());
        // Half a line (its secret cut short) is not read until it ends.
        let line = format!("CLIENT_RANDOM {} {}\n", "07".repeat(32), "00".repeat(48));
        std::fs::write(&log, &line[..line.len() - 11]).unwrap();
        assert!(k.lookup(&[7; 32]).is_none());
        std::fs::write(&log, &line).unwrap();
        assert_eq!(
            k.lookup(&[7; 32])
                .and_then(|s| s.master.as_ref())
                .map(Vec::len),
            Some(48)
        );
    }
}
