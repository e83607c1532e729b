//! Where the client keeps its OMEMO state between runs, in its data
//! folder: this device's keys, a session per peer device and version, and
//! what it knows of each peer device's identity key (the trusted
//! contacts' keys).
//!
//! Every file holds secrets or trust decisions, so each is readable by the
//! user alone (mode 0600, the folder 0700), and each is written whole to a
//! temporary file that then replaces the old one: a client killed in the
//! middle of a write (kill -9, a full disk) leaves the old file, never
//! half of a new one.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use protocol::Jid;
use protocol::omemo::Version;
use protocol::omemo::device::Device;
use protocol::omemo::session::Session;
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// How far a peer device's identity key is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trust {
    /// Trusted without being checked (blind trust before verification, as
    /// Conversations does): the contact has no verified device yet.
    Blind,
    /// Its fingerprint was compared out of band (`/verify`).
    Verified,
    /// Not trusted: a new device of a contact who has a verified one, or a
    /// key that changed. Nothing is encrypted to it until it is verified.
    Untrusted,
}

/// What is known of one peer device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Known {
    /// Its identity key in Curve25519 form (hex), as first seen: the form
    /// both versions carry (OMEMO 0.3 has no other) and the one every
    /// client shows as the fingerprint people compare (Conversations,
    /// Dino, Gajim, the reference).
    pub ik: String,
    /// How far it is trusted.
    pub trust: Trust,
}

/// What a newly seen identity key means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Known, same key.
    Same(Trust),
    /// A device not seen before, trusted as said.
    New(Trust),
    /// A known device with a different key: someone else's key (a man in
    /// the middle, the server), or the device reinstalled under the same
    /// id. Refused: the known key is kept, and nothing is started or
    /// stored with the new one; said loudly.
    Changed {
        /// The key known (and kept).
        was: String,
    },
    /// A new device beyond what is kept per contact or in all
    /// ([`MAX_DEVICES_PER_CONTACT`], [`MAX_CONTACTS`]): untrusted, not kept.
    TooMany,
}

/// How many devices of one contact the keyring keeps: more is a flood
/// (any peer can claim new device ids, one key exchange each).
pub const MAX_DEVICES_PER_CONTACT: usize = 64;

/// How many contacts the keyring keeps keys of.
pub const MAX_CONTACTS: usize = 2000;

/// The trusted contacts' keys: bare JID → device id → what is known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keyring {
    peers: BTreeMap<String, BTreeMap<u32, Known>>,
    /// Contacts the user has verified a device of, ever: from then on no
    /// new device of theirs is trusted blindly. Kept apart from each
    /// device's trust, so that nothing a peer sends (a changed key, an
    /// emptied list) can bring blind trust back.
    #[serde(default)]
    verified: std::collections::BTreeSet<String>,
}

impl Keyring {
    /// Records device `device` of `jid` showing identity key `ik`, in
    /// Curve25519 form (`keys::curve_of_ed` of an OMEMO 2 key).
    pub fn see(&mut self, jid: &Jid, device: u32, ik: &[u8; 32]) -> Seen {
        let seen = self.judge(jid, device, ik);
        if let Seen::New(trust) = seen {
            let ik = protocol::omemo::keys::hex(ik);
            self.peers
                .entry(jid.to_bare().to_string())
                .or_default()
                .insert(device, Known { ik, trust });
        }
        seen
    }

    /// What seeing device `device` of `jid` with key `ik` would mean,
    /// recording nothing (to refuse a key before anything is kept).
    pub fn judge(&self, jid: &Jid, device: u32, ik: &[u8; 32]) -> Seen {
        let ik = protocol::omemo::keys::hex(ik);
        let bare = jid.to_bare().to_string();
        let Some(devices) = self.peers.get(&bare) else {
            if self.peers.len() >= MAX_CONTACTS {
                return Seen::TooMany;
            }
            return Seen::New(self.blind_or_not(&bare));
        };
        match devices.get(&device) {
            Some(k) if k.ik == ik => Seen::Same(k.trust),
            Some(k) => Seen::Changed { was: k.ik.clone() },
            None if devices.len() >= MAX_DEVICES_PER_CONTACT => Seen::TooMany,
            None => Seen::New(self.blind_or_not(&bare)),
        }
    }

    /// A new device's trust: blind until the contact was ever verified;
    /// after that a new device must be verified too (a device slipped into
    /// the list by a man in the middle gets nothing).
    fn blind_or_not(&self, bare: &str) -> Trust {
        if self.verified.contains(bare) {
            Trust::Untrusted
        } else {
            Trust::Blind
        }
    }

    /// Marks the device of `jid` whose key has fingerprint `fingerprint`
    /// (hex, spaces and case ignored) verified; its id, or `None` if no
    /// device of `jid` has that key. The contact's other devices that were
    /// trusted blindly are not any more: blind trust was the stopgap until
    /// verification, and a device slipped in before it (the proxy's
    /// `inject-omemo-device`) must not keep it.
    pub fn verify(&mut self, jid: &Jid, fingerprint: &str) -> Option<(u32, Vec<u32>)> {
        let want: String = fingerprint
            .chars()
            .filter(|c| !c.is_whitespace() && *c != ':')
            .collect::<String>()
            .to_ascii_lowercase();
        let bare = jid.to_bare().to_string();
        let devices = self.peers.get_mut(&bare)?;
        let id = *devices.iter().find(|(_, k)| k.ik == want)?.0;
        self.verified.insert(bare);
        let mut demoted = Vec::new();
        for (other, k) in devices.iter_mut() {
            if *other == id {
                k.trust = Trust::Verified;
            } else if k.trust == Trust::Blind {
                k.trust = Trust::Untrusted;
                demoted.push(*other);
            }
        }
        Some((id, demoted))
    }

    /// The devices of `jid` and what is known of each.
    pub fn devices(&self, jid: &Jid) -> Vec<(u32, Known)> {
        self.peers
            .get(&jid.to_bare().to_string())
            .map(|d| d.iter().map(|(id, k)| (*id, k.clone())).collect())
            .unwrap_or_default()
    }

    /// How device `device` of `jid` is trusted, if known.
    pub fn trust(&self, jid: &Jid, device: u32) -> Option<Trust> {
        self.peers
            .get(&jid.to_bare().to_string())?
            .get(&device)
            .map(|k| k.trust)
    }
}

pub use protocol::omemo::keys::fingerprint;

/// The OMEMO folder of one account.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store in `dir` (created, readable by the user alone).
    pub fn open(dir: &Path) -> io::Result<Store> {
        std::fs::create_dir_all(dir.join("sessions"))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    fn read<T: for<'de> Deserialize<'de>>(&self, path: &Path) -> io::Result<Option<T>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is damaged: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write<T: Serialize>(&self, path: &Path, value: &T) -> io::Result<()> {
        let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
        write_private(path, &bytes)
    }

    /// This device's keys, if made before.
    pub fn device(&self) -> io::Result<Option<Device>> {
        self.read(&self.dir.join("device.json"))
    }

    /// Keeps this device's keys.
    pub fn save_device(&self, d: &Device) -> io::Result<()> {
        self.write(&self.dir.join("device.json"), d)
    }

    fn session_path(&self, jid: &Jid, device: u32, v: Version) -> PathBuf {
        let version = match v {
            Version::Two => "2",
            Version::Old => "0.3",
        };
        // A JID may hold characters a file name should not, and may be
        // longer than a file name may be: its SHA-256.
        let name =
            protocol::omemo::keys::hex(&sha2::Sha256::digest(jid.to_bare().to_string().as_bytes()));
        self.dir
            .join("sessions")
            .join(format!("{name}-{device}-{version}.json"))
    }

    /// The session with device `device` of `jid` in version `v`.
    pub fn session(&self, jid: &Jid, device: u32, v: Version) -> io::Result<Option<Session>> {
        self.read(&self.session_path(jid, device, v))
    }

    /// Whether a session with device `device` of `jid` in `v` is kept
    /// (without reading it).
    pub fn has_session(&self, jid: &Jid, device: u32, v: Version) -> bool {
        self.session_path(jid, device, v).exists()
    }

    /// Keeps a session (after every message: the ratchet moved).
    pub fn save_session(&self, jid: &Jid, device: u32, s: &Session) -> io::Result<()> {
        self.write(&self.session_path(jid, device, s.version()), s)
    }

    /// Forgets a session (broken: a new one is started).
    pub fn drop_session(&self, jid: &Jid, device: u32, v: Version) -> io::Result<()> {
        match std::fs::remove_file(self.session_path(jid, device, v)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The trusted contacts' keys.
    pub fn keyring(&self) -> io::Result<Keyring> {
        Ok(self.read(&self.dir.join("trust.json"))?.unwrap_or_default())
    }

    /// Keeps the keyring.
    pub fn save_keyring(&self, k: &Keyring) -> io::Result<()> {
        self.write(&self.dir.join("trust.json"), k)
    }
}

/// Writes `bytes` to `path` readable by the user alone, replacing it only
/// once the new content is whole on disk, and the replacement itself is
/// (a session rolled back by a lost rename would reuse a message key).
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    // A temporary name of its own: two writers never share one.
    let suffix: [u8; 6] = {
        let mut b = [0u8; 6];
        getrandom::fill(&mut b).map_err(|e| io::Error::other(e.to_string()))?;
        b
    };
    let tmp = path.with_extension(format!(
        "{}.{}.tmp",
        std::process::id(),
        protocol::omemo::keys::hex(&suffix)
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename is on disk once the folder is.
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    #[test]
    fn blind_trust_until_a_device_is_verified_then_new_devices_wait() {
        let mut k = Keyring::default();
        let bob = jid("bob@localhost/phone");
        assert_eq!(k.see(&bob, 1, &[1; 32]), Seen::New(Trust::Blind));
        assert_eq!(k.see(&bob, 1, &[1; 32]), Seen::Same(Trust::Blind));
        let fp = fingerprint(&protocol::omemo::keys::hex(&[1; 32]));
        assert_eq!(k.see(&bob, 5, &[5; 32]), Seen::New(Trust::Blind));
        // Verifying device 1 ends the blind trust in device 5.
        assert_eq!(k.verify(&bob, &fp.to_uppercase()), Some((1, vec![5])));
        assert_eq!(k.trust(&bob, 5), Some(Trust::Untrusted));
        assert_eq!(k.verify(&bob, "00"), None);
        // A device that appears now is not trusted (the attack an injected
        // device list makes).
        assert_eq!(k.see(&bob, 2, &[2; 32]), Seen::New(Trust::Untrusted));
        // A key that changes under a known id is refused and said; the
        // verified key stays.
        assert!(matches!(k.see(&bob, 1, &[3; 32]), Seen::Changed { .. }));
        assert_eq!(k.trust(&bob, 1), Some(Trust::Verified));
        // Once verified, always: even with no verified device left (the
        // user's own doing, or a store edited), new devices wait.
        k.peers.get_mut("bob@localhost").unwrap().clear();
        assert_eq!(k.see(&bob, 9, &[9; 32]), Seen::New(Trust::Untrusted));
        // A flood of device ids is not kept.
        for d in 100..200 {
            k.see(&bob, d, &[7; 32]);
        }
        assert_eq!(k.see(&bob, 500, &[5; 32]), Seen::TooMany);
    }

    #[test]
    fn files_are_private_and_survive_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("omemo")).unwrap();
        assert!(store.device().unwrap().is_none());
        let d = Device::generate();
        store.save_device(&d).unwrap();
        let again = store.device().unwrap().unwrap();
        assert_eq!(again.bundle(Version::Two), d.bundle(Version::Two));
        let mode = std::fs::metadata(dir.path().join("omemo/device.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(dir.path().join("omemo"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dmode & 0o777, 0o700);
        // A JID longer than a file name may be still gets its session kept.
        let long = jid(&format!("{}@localhost", "a".repeat(300)));
        let bob = Device::generate();
        let alice = Device::generate();
        let mut s = protocol::omemo::session::Session::initiate(
            Version::Two,
            &alice.identity(),
            &bob.bundle(Version::Two),
        )
        .unwrap();
        s.encrypt(b"x").unwrap();
        store.save_session(&long, 7, &s).unwrap();
        assert!(store.session(&long, 7, Version::Two).unwrap().is_some());
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path().join("omemo"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty());
        // A damaged file is an error that names it, not a panic.
        std::fs::write(dir.path().join("omemo/trust.json"), b"{not json").unwrap();
        let e = store.keyring().unwrap_err();
        assert!(e.to_string().contains("trust.json is damaged"), "{e}");
    }
}
