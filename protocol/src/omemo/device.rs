//! This device's own keys as a whole: its id, identity, signed pre key
//! and the pool of one-time pre keys, which it publishes as its bundle.
//! Each pre key is used once: a key exchange that used one removes it, and
//! the pool is topped up again (the bundle then changes, and is published
//! again). Serializable, for the client to keep (it is secret: a file
//! only its user can read).

use serde::{Deserialize, Serialize};

use super::Version;
use super::keys::{Bundle, IdentityKey, PreKey};
use super::session::random_device_id;

/// How many one-time pre keys the bundle offers (the reference's number).
pub const PRE_KEYS: usize = 100;

/// A stored X25519 key.
#[derive(Clone, Serialize, Deserialize)]
struct Stored {
    id: u32,
    secret: [u8; 32],
}

impl Stored {
    fn key(&self) -> PreKey {
        PreKey::from_secret(self.id, self.secret)
    }

    fn new(id: u32) -> Stored {
        Stored {
            id,
            secret: PreKey::generate(id).secret(),
        }
    }
}

/// This device's keys.
#[derive(Clone, Serialize, Deserialize)]
pub struct Device {
    /// The device id (1 to 2³¹ − 2).
    pub id: u32,
    seed: [u8; 32],
    spk: Stored,
    /// The signed pre key before the last rotation, still accepted for a
    /// while: a peer may have fetched the old bundle.
    #[serde(default)]
    previous: Option<Stored>,
    prekeys: Vec<Stored>,
    /// The next pre key id: ids are never used twice.
    next: u32,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a secret.
        f.debug_struct("Device")
            .field("id", &self.id)
            .field("identity", &self.identity())
            .field("prekeys", &self.prekeys.len())
            .finish()
    }
}

impl Device {
    /// A new device with a random id, identity and keys.
    pub fn generate() -> Device {
        Device::generate_avoiding(&[])
    }

    /// A new device whose id is none of `taken` (the ids already in the
    /// account's device list).
    pub fn generate_avoiding(taken: &[u32]) -> Device {
        let mut id = random_device_id();
        while taken.contains(&id) {
            id = random_device_id();
        }
        let mut d = Device {
            id,
            seed: IdentityKey::generate().seed(),
            spk: Stored::new(1),
            previous: None,
            prekeys: Vec::new(),
            next: 1,
        };
        d.refill();
        d
    }

    /// A device with the given id and identity (its seed); its pre keys
    /// are random. For a lab whose answers are a device's id and
    /// fingerprint, derived from the student's secrets: never for a real
    /// device, whose identity must be random.
    pub fn from_seed(id: u32, seed: [u8; 32]) -> Device {
        let mut d = Device {
            id: id.max(1),
            seed,
            spk: Stored::new(1),
            previous: None,
            prekeys: Vec::new(),
            next: 1,
        };
        d.refill();
        d
    }

    /// The identity key.
    pub fn identity(&self) -> IdentityKey {
        IdentityKey::from_seed(self.seed)
    }

    /// The bundle to publish for version `v`.
    pub fn bundle(&self, v: Version) -> Bundle {
        let pks: Vec<PreKey> = self.prekeys.iter().map(Stored::key).collect();
        Bundle::new(v, &self.identity(), &self.spk.key(), &pks)
    }

    /// The signed pre key of id `id`: the current one, or the one before
    /// the last rotation.
    pub fn signed_pre_key(&self, id: u32) -> Option<PreKey> {
        std::iter::once(&self.spk)
            .chain(self.previous.as_ref())
            .find(|k| k.id == id)
            .map(Stored::key)
    }

    /// A new signed pre key (the reference rotates weekly): a secret
    /// stolen later opens no session started before the rotation after
    /// next. The previous one is still accepted until the next rotation.
    pub fn rotate(&mut self) {
        let next = Stored::new(self.spk.id.wrapping_add(1).max(1));
        self.previous = Some(std::mem::replace(&mut self.spk, next));
    }

    /// The pre key `id`, if it is still in the pool.
    pub fn pre_key(&self, id: u32) -> Option<PreKey> {
        self.prekeys.iter().find(|k| k.id == id).map(Stored::key)
    }

    /// Removes pre key `id` once a key exchange used it (a replayed key
    /// exchange then finds no key), and tops the pool up. Returns whether
    /// the bundle changed.
    pub fn used(&mut self, id: u32) -> bool {
        let before = self.prekeys.len();
        self.prekeys.retain(|k| k.id != id);
        let removed = self.prekeys.len() != before;
        self.refill() || removed
    }

    /// Tops the pool up to [`PRE_KEYS`] with keys of new ids; whether it
    /// added any.
    pub fn refill(&mut self) -> bool {
        let mut added = false;
        while self.prekeys.len() < PRE_KEYS {
            self.prekeys.push(Stored::new(self.next));
            self.next += 1;
            added = true;
        }
        added
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_used_pre_key_is_gone_and_replaced_by_a_new_id() {
        let mut d = Device::generate_avoiding(&[5]);
        assert_ne!(d.id, 5);
        let b = d.bundle(Version::Two);
        assert_eq!(b.prekeys.len(), PRE_KEYS);
        b.verify(Version::Two).unwrap();
        d.bundle(Version::Old).verify(Version::Old).unwrap();
        let first = b.prekeys[0].0;
        assert!(d.pre_key(first).is_some());
        assert!(d.used(first));
        assert!(d.pre_key(first).is_none(), "used once");
        let after = d.bundle(Version::Two);
        assert_eq!(after.prekeys.len(), PRE_KEYS);
        assert!(after.prekeys.iter().all(|(id, _)| *id != first));
        assert!(
            after
                .prekeys
                .iter()
                .any(|(id, _)| *id == PRE_KEYS as u32 + 1)
        );
        // Stored and read back, the same keys.
        let again: Device = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(again.bundle(Version::Two), after);
        assert!(again.signed_pre_key(1).is_some() && again.signed_pre_key(2).is_none());
    }

    #[test]
    fn a_rotated_signed_pre_key_is_still_accepted_once() {
        let mut d = Device::generate();
        d.rotate();
        let b = d.bundle(Version::Old);
        assert_eq!(b.spk_id, 2);
        b.verify(Version::Old).unwrap();
        assert!(d.signed_pre_key(1).is_some() && d.signed_pre_key(2).is_some());
        d.rotate();
        assert!(d.signed_pre_key(1).is_none(), "two rotations ago");
        assert!(d.signed_pre_key(2).is_some() && d.signed_pre_key(3).is_some());
    }
}
