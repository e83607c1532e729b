//! The client's OMEMO state machine, without I/O to the server: which
//! devices each contact has, which of them are trusted, the sessions with
//! them, and turning a message into an `<encrypted/>` element and back.
//! The worker (`worker`) moves the stanzas and fetches what this asks for
//! (device lists, bundles); the store keeps everything between runs.
//!
//! What decides who can read a message is here:
//! - a message is encrypted only to devices that are trusted (blind trust
//!   before verification, or verified), never to an untrusted one: a
//!   device slipped into a contact's list by a man in the middle (the
//!   proxy's `inject-omemo-device`) gets a key only while nobody verified
//!   the contact;
//! - a new device, and a key that changed, are said loudly;
//! - the sender an OMEMO 2 envelope names must be the stanza's sender: a
//!   server that replays someone's ciphertext under another name is
//!   caught.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use protocol::omemo::device::Device;
use protocol::omemo::keys::{Bundle, curve_of_ed};
use protocol::omemo::message::{self, OpenError};
use protocol::omemo::session::Session;
use protocol::omemo::xml::{self, KeyFor};
use protocol::omemo::{OmemoError, Version, payload};
use protocol::{Element, Jid};

use super::store::{Keyring, Seen, Store, Trust, fingerprint};

/// How many contacts' device lists are remembered: a list arrives from
/// anyone who writes to us, so the map must not grow without end.
pub const MAX_OMEMO_PEERS: usize = 1000;

/// How many devices of one account are used: more is a flood (or an
/// attack making every message as large as the server accepts).
pub const MAX_DEVICES_PER_ACCOUNT: usize = 64;

/// After this many messages received on a chain without answering, an
/// empty message goes back (the XEP's heartbeat, as the reference does):
/// the sender's ratchet then moves on, and a key stolen later opens fewer
/// messages.
pub const HEARTBEAT_AFTER: u32 = 53;

/// Why a message was not encrypted or decrypted.
#[derive(Debug, thiserror::Error)]
pub enum E2eError {
    /// The contact has no OMEMO device at all.
    #[error("{0} has no OMEMO device (their client does not do end-to-end encryption)")]
    NoDevice(Jid),
    /// The contact has devices, none of them trusted.
    #[error(
        "none of {0}'s OMEMO devices is trusted: compare fingerprints (/fingerprints {0}) and /verify one"
    )]
    NoTrustedDevice(Jid),
    /// Trusted devices, but no session with any (their bundles could not
    /// be fetched).
    #[error(
        "no session could be started with any of {0}'s OMEMO devices (their keys could not be fetched)"
    )]
    Unreachable(Jid),
    /// A device in the list whose bundle is not published.
    #[error("{jid}'s OMEMO device {device} has no published bundle")]
    NoBundle {
        /// The owner.
        jid: Jid,
        /// The device.
        device: u32,
    },
    /// A message not encrypted for this device.
    #[error("{from} (device {device}) sent a message not encrypted for this device")]
    NotForUs {
        /// The sender.
        from: Jid,
        /// Its device.
        device: u32,
    },
    /// A message on a session this device does not have.
    #[error(
        "{from} (device {device}) wrote on a session this device does not have; a new one is being started"
    )]
    NoSession {
        /// The sender.
        from: Jid,
        /// Its device.
        device: u32,
    },
    /// The envelope names someone else than the stanza's sender.
    #[error("a message from {from} whose encrypted content says it is from {named}: refused")]
    WrongSender {
        /// The stanza's sender.
        from: Jid,
        /// Who the envelope names.
        named: String,
    },
    /// The protocol refused it.
    #[error("{from} (device {device}): {error}")]
    Protocol {
        /// The sender or recipient.
        from: Jid,
        /// Its device.
        device: u32,
        /// What went wrong.
        error: OmemoError,
    },
    /// A device presented another key than the one known for it: refused
    /// (a man in the middle or the server imitating the device).
    #[error(
        "WARNING: {from}'s OMEMO device {device} presented a DIFFERENT KEY ({now}) than the one known ({was}): refused. Someone may be imitating that device; if {from} reinstalled it, ask them to remove the old device"
    )]
    KeyChanged {
        /// The contact.
        from: Jid,
        /// The device.
        device: u32,
        /// The key known (fingerprint).
        was: String,
        /// The key presented (fingerprint).
        now: String,
    },
    /// More devices than are kept for one contact.
    #[error("{from} has more OMEMO devices than this client keeps ({device} refused)")]
    TooManyDevices {
        /// The contact.
        from: Jid,
        /// The device refused.
        device: u32,
    },
    /// The contact's device list came back empty although their keys are
    /// known: a man in the middle (or the server) may be hiding their
    /// devices to make the message go in the clear.
    #[error(
        "{0}'s OMEMO device list is empty now, though this client knows their keys: not sent in the clear (someone may be hiding their devices; /e2e off {0} sends in the clear on purpose)"
    )]
    ListEmptied(Jid),
    /// The store could not be read or written.
    #[error("the OMEMO store: {0}")]
    Store(#[from] io::Error),
}

/// A decrypted message.
#[derive(Debug)]
pub struct Opened {
    /// The text; `None` for an empty message (it only moves the ratchet).
    pub body: Option<String>,
    /// The sender's device.
    pub device: u32,
    /// How that device is trusted.
    pub trust: Trust,
    /// A warning to say loudly (a new device, a changed key).
    pub warning: Option<String>,
    /// This device's bundle changed (a pre key was used): publish it.
    pub republish: bool,
    /// Answer with an empty message (after a key exchange, or the
    /// heartbeat).
    pub answer: bool,
}

/// How the conversation with a contact stands end to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E2eState {
    /// Messages to them are encrypted.
    pub on: bool,
    /// `--e2e require`.
    pub require: bool,
    /// Their devices known.
    pub devices: usize,
    /// Of which verified.
    pub verified: usize,
    /// Of which not trusted.
    pub untrusted: usize,
}

impl std::fmt::Display for E2eState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (n, v, u) = (self.devices, self.verified, self.untrusted);
        match (self.on, n, v) {
            (false, _, _) => write!(f, "e2e off"),
            (true, 0, _) if self.require => write!(f, "e2e required, no device known yet"),
            (true, 0, _) => write!(f, "e2e on, no device known yet"),
            (true, n, 0) => write!(f, "e2e on (OMEMO), {n} device(s), none verified"),
            (true, n, v) if u > 0 => {
                write!(
                    f,
                    "e2e on (OMEMO), {n} device(s), {v} verified, {u} UNTRUSTED"
                )
            }
            (true, n, v) => write!(f, "e2e on (OMEMO), {n} device(s), {v} verified"),
        }
    }
}

/// The client's OMEMO state.
pub struct Engine {
    store: Store,
    device: Device,
    keyring: Keyring,
    /// Our bare JID.
    me: Jid,
    /// Device lists as last seen: (bare JID, version) → ids.
    lists: HashMap<(Jid, Version), Vec<u32>>,
    /// Conversations switched on or off by hand (`/e2e`); the rest follow
    /// the client's default.
    switched: HashMap<Jid, bool>,
    /// The default: encrypt when the contact has a device.
    pub default_on: bool,
    /// Refuse to send without a trusted device.
    pub require: bool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("device", &self.device.id)
            .finish()
    }
}

impl Engine {
    /// The engine of account `me`, its state in `dir` (made the first
    /// time: a new device, whose id is none of `taken`).
    pub fn open(dir: &Path, me: &Jid) -> io::Result<Engine> {
        let store = Store::open(dir)?;
        let device = match store.device()? {
            Some(d) => d,
            None => {
                let d = Device::generate();
                store.save_device(&d)?;
                d
            }
        };
        let keyring = store.keyring()?;
        Ok(Engine {
            store,
            device,
            keyring,
            me: me.to_bare(),
            lists: HashMap::new(),
            switched: HashMap::new(),
            default_on: true,
            require: false,
        })
    }

    /// This device's id.
    pub fn device_id(&self) -> u32 {
        self.device.id
    }

    /// This device's fingerprint (Curve25519 form, grouped hex).
    pub fn own_fingerprint(&self) -> String {
        self.device.identity().fingerprint()
    }

    /// This device's bundle for version `v`.
    pub fn bundle(&self, v: Version) -> Element {
        xml::bundle_element(v, &self.device.bundle(v))
    }

    /// Whether messages to `jid` are encrypted.
    pub fn enabled_for(&self, jid: &Jid) -> bool {
        self.switched
            .get(&jid.to_bare())
            .copied()
            .unwrap_or(self.default_on || self.require)
    }

    /// `/e2e on|off JID`.
    pub fn switch(&mut self, jid: &Jid, on: bool) {
        if self.switched.len() < MAX_OMEMO_PEERS || self.switched.contains_key(&jid.to_bare()) {
            self.switched.insert(jid.to_bare(), on);
        }
    }

    /// Records a device list (from a PEP notification or a fetch).
    pub fn note_list(&mut self, jid: &Jid, v: Version, mut ids: Vec<u32>) {
        ids.sort_unstable();
        ids.dedup();
        ids.truncate(MAX_DEVICES_PER_ACCOUNT);
        let key = (jid.to_bare(), v);
        if self.lists.len() >= MAX_OMEMO_PEERS && !self.lists.contains_key(&key) {
            // Forget someone else's list rather than grow: it is fetched
            // again when needed.
            if let Some(k) = self.lists.keys().find(|k| k.0 != self.me).cloned() {
                self.lists.remove(&k);
            }
        }
        self.lists.insert(key, ids);
    }

    /// The device list of `jid` in `v`, if seen.
    pub fn list(&self, jid: &Jid, v: Version) -> Option<&[u32]> {
        self.lists.get(&(jid.to_bare(), v)).map(Vec::as_slice)
    }

    /// The version to write to `jid` in: OMEMO 2 when they have an OMEMO 2
    /// device, else 0.3 when they have one of those; `None` when neither
    /// list was seen with a device.
    pub fn version_for(&self, jid: &Jid) -> Option<Version> {
        Version::ALL
            .into_iter()
            .find(|v| self.list(jid, *v).is_some_and(|l| !l.is_empty()))
    }

    /// The devices of `jid` (and our own others) in `v` with no session
    /// yet: their bundles must be fetched first.
    pub fn without_session(&self, jid: &Jid, v: Version) -> Vec<(Jid, u32)> {
        self.recipients(jid, v)
            .into_iter()
            .filter(|(j, d)| !self.store.has_session(j, *d, v))
            .collect()
    }

    /// The devices a message to `jid` goes to: theirs, and our own other
    /// devices (so that they can read what we sent).
    fn recipients(&self, jid: &Jid, v: Version) -> Vec<(Jid, u32)> {
        let theirs = self.list(jid, v).unwrap_or_default().iter();
        let ours = self.list(&self.me, v).unwrap_or_default().iter();
        let mut out: Vec<(Jid, u32)> = theirs
            .map(|d| (jid.to_bare(), *d))
            .chain(ours.map(|d| (self.me.clone(), *d)))
            // Never this device itself (also when `jid` is our own).
            .filter(|(j, d)| !(*j == self.me && *d == self.device.id))
            .collect();
        out.sort_unstable_by_key(|(j, d)| (j.to_string(), *d));
        out.dedup();
        out
    }

    /// Starts a session with device `device` of `jid` from its bundle
    /// (the `<item/>`'s payload). Returns a warning to say, if any.
    pub fn start(
        &mut self,
        jid: &Jid,
        device: u32,
        v: Version,
        bundle: &Element,
    ) -> Result<Option<String>, E2eError> {
        let err = |error| E2eError::Protocol {
            from: jid.to_bare(),
            device,
            error,
        };
        let b: Bundle = xml::read_bundle(v, bundle).map_err(err)?;
        // Signature first: a bundle whose pre keys were swapped by a man
        // in the middle fails here.
        b.verify(v).map_err(err)?;
        let curve = match v {
            Version::Two => curve_of_ed(&b.ik).map_err(err)?,
            Version::Old => b.ik,
        };
        // A bundle with another key than the one known for the device
        // starts nothing (the known session and key stay).
        self.admissible(jid, device, &curve)?;
        let warning = self.see(jid, device, &curve)?;
        let session = Session::initiate(v, &self.device.identity(), &b).map_err(err)?;
        self.store.save_session(jid, device, &session)?;
        Ok(warning)
    }

    /// Whether `curve` may be seen as device `device` of `jid`: refused
    /// when another key is known for it, or the contact has too many.
    fn admissible(&self, jid: &Jid, device: u32, curve: &[u8; 32]) -> Result<(), E2eError> {
        match self.keyring.judge(jid, device, curve) {
            Seen::Changed { was } => Err(E2eError::KeyChanged {
                from: jid.to_bare(),
                device,
                was: fingerprint(&was),
                now: fingerprint(&protocol::omemo::keys::hex(curve)),
            }),
            Seen::TooMany => Err(E2eError::TooManyDevices {
                from: jid.to_bare(),
                device,
            }),
            _ => Ok(()),
        }
    }

    /// Records the key seen for a device; the warning to say, if any.
    fn see(
        &mut self,
        jid: &Jid,
        device: u32,
        curve: &[u8; 32],
    ) -> Result<Option<String>, E2eError> {
        let seen = self.keyring.see(jid, device, curve);
        let changed = matches!(seen, Seen::New(_));
        let fp = fingerprint(&protocol::omemo::keys::hex(curve));
        let bare = jid.to_bare();
        let warning = match seen {
            Seen::Same(_) => None,
            Seen::New(Trust::Blind) if bare == self.me => Some(format!(
                "a new OMEMO device of your own account: {device}, fingerprint {fp}"
            )),
            Seen::New(Trust::Blind) => Some(format!(
                "NEW OMEMO DEVICE of {bare}: device {device}, fingerprint {fp}; trusted blindly until you verify it (/fingerprints {bare})"
            )),
            Seen::New(_) => Some(format!(
                "WARNING: {bare} has a NEW OMEMO DEVICE {device} (fingerprint {fp}) and you verified another: NOT trusted, nothing is encrypted to it. If {bare} did not add a device, someone is trying to read your messages. Compare the fingerprint with {bare} in person, then /verify {bare} FINGERPRINT"
            )),
            Seen::Changed { was } => Some(format!(
                "WARNING: {bare}'s OMEMO device {device} presented a DIFFERENT KEY ({fp}, known: {}): refused",
                fingerprint(&was)
            )),
            Seen::TooMany => Some(format!(
                "{bare} has more OMEMO devices than this client keeps: device {device} ignored"
            )),
        };
        if changed {
            self.store.save_keyring(&self.keyring)?;
        }
        Ok(warning)
    }

    /// Encrypts `body` to `jid` (and our other devices) in `v`: the
    /// `<encrypted/>` element. At least one of the contact's devices must
    /// be trusted and have a session.
    pub fn encrypt(&mut self, jid: &Jid, v: Version, body: &str) -> Result<Element, E2eError> {
        let bare = jid.to_bare();
        if self.list(jid, v).is_none_or(<[u32]>::is_empty) {
            return Err(E2eError::NoDevice(bare));
        }
        let sealed = match v {
            Version::Two => {
                let stamp = protocol::datetime::xmpp_datetime(crate::util::unix_now());
                let env = xml::envelope(body, &self.me.to_string(), None, &stamp);
                payload::seal_two(env.as_bytes())
            }
            Version::Old => payload::seal_old(body.as_bytes()),
        };
        let keys = self.keys_for(&self.recipients(jid, v), v, &sealed.key_material)?;
        if !keys.iter().any(|k| k.jid == bare.to_string()) {
            let trusted = self.list(jid, v).unwrap_or_default().iter().any(|d| {
                matches!(
                    self.keyring.trust(&bare, *d),
                    Some(Trust::Blind | Trust::Verified)
                )
            });
            return Err(if trusted {
                E2eError::Unreachable(bare)
            } else {
                E2eError::NoTrustedDevice(bare)
            });
        }
        Ok(xml::encrypted_element(
            v,
            self.device.id,
            &keys,
            Some(&sealed.ciphertext),
            &sealed.iv,
        ))
    }

    /// An empty message to one device: it answers a key exchange, and
    /// moves the peer's ratchet on (the heartbeat). OMEMO 0.3 needs a
    /// random key and IV even here: the reference reads them.
    /// `None` when the device is not trusted or has no session (nothing
    /// to answer on).
    pub fn empty(
        &mut self,
        jid: &Jid,
        device: u32,
        v: Version,
    ) -> Result<Option<Element>, E2eError> {
        let sealed = match v {
            Version::Two => payload::seal_two(b""),
            Version::Old => payload::seal_old(b""),
        };
        let keys = self.keys_for(&[(jid.to_bare(), device)], v, &sealed.key_material)?;
        if keys.is_empty() {
            return Ok(None);
        }
        Ok(Some(xml::encrypted_element(
            v,
            self.device.id,
            &keys,
            None,
            &sealed.iv,
        )))
    }

    /// The key material encrypted on each trusted device's session (each
    /// session saved: the ratchet moved).
    fn keys_for(
        &mut self,
        to: &[(Jid, u32)],
        v: Version,
        material: &[u8],
    ) -> Result<Vec<KeyFor>, E2eError> {
        let mut keys = Vec::new();
        for (jid, device) in to {
            // Never to an untrusted device: that is the whole defence
            // against a device injected into a verified contact's list.
            if !matches!(
                self.keyring.trust(jid, *device),
                Some(Trust::Blind | Trust::Verified)
            ) {
                continue;
            }
            let Some(mut s) = self.store.session(jid, *device, v)? else {
                continue;
            };
            let key = s.encrypt(material).map_err(|error| E2eError::Protocol {
                from: jid.clone(),
                device: *device,
                error,
            })?;
            self.store.save_session(jid, *device, &s)?;
            keys.push(KeyFor {
                jid: jid.to_string(),
                rid: *device,
                key,
            });
        }
        Ok(keys)
    }

    /// Decrypts an `<encrypted/>` of version `v` from `from`.
    pub fn decrypt(&mut self, from: &Jid, v: Version, el: &Element) -> Result<Opened, E2eError> {
        let bare = from.to_bare();
        // Looking a session up can fail on disk: kept aside, said after.
        let mut lookup_error = None;
        let store = &self.store;
        let opened = message::open(
            v,
            &self.device,
            &self.me.to_string(),
            &bare.to_string(),
            el,
            &mut |sid| {
                store.session(&bare, sid, v).unwrap_or_else(|e| {
                    lookup_error = Some(e);
                    None
                })
            },
        );
        if let Some(e) = lookup_error {
            return Err(E2eError::Store(e));
        }
        let o = opened.map_err(|e| match e {
            OpenError::NotForUs { device } => E2eError::NotForUs {
                from: bare.clone(),
                device,
            },
            OpenError::NoSession { device } => E2eError::NoSession {
                from: bare.clone(),
                device,
            },
            OpenError::WrongSender { named } => E2eError::WrongSender {
                from: bare.clone(),
                named,
            },
            OpenError::Omemo { device, error } => E2eError::Protocol {
                from: bare.clone(),
                device,
                error,
            },
        })?;
        // It checked out: keep the session, use the pre key up (a replayed
        // key exchange then finds none), and see the sender's key.
        let (mut republish, mut warning) = (false, None);
        if let Some((pk_id, curve)) = o.new_session {
            // A key exchange with another key than the one known for the
            // device replaces nothing: not the good session, not the key.
            self.admissible(&bare, o.device, &curve)?;
            republish = self.device.used(pk_id);
            self.store.save_device(&self.device)?;
            warning = self.see(&bare, o.device, &curve)?;
        }
        self.store.save_session(&bare, o.device, &o.session)?;
        Ok(Opened {
            body: o.body,
            device: o.device,
            trust: self
                .keyring
                .trust(&bare, o.device)
                .unwrap_or(Trust::Untrusted),
            warning,
            republish,
            // Once per chain at the heartbeat's count, not on every message
            // after it (the peer may send several before ours arrives).
            answer: o.kex || o.session.received_in_chain() == HEARTBEAT_AFTER,
        })
    }

    /// Forgets the session with a device (it is broken: a new one starts).
    pub fn drop_session(&mut self, jid: &Jid, device: u32, v: Version) -> io::Result<()> {
        self.store.drop_session(jid, device, v)
    }

    /// The devices of `jid` with their fingerprints and trust, for
    /// `/fingerprints`.
    pub fn devices(&self, jid: &Jid) -> Vec<(u32, String, Trust)> {
        self.keyring
            .devices(jid)
            .into_iter()
            .map(|(id, k)| (id, fingerprint(&k.ik), k.trust))
            .collect()
    }

    /// Whether any key of `jid` is known (an emptied device list is then
    /// suspect, not a reason to send in the clear).
    pub fn knows(&self, jid: &Jid) -> bool {
        !self.keyring.devices(jid).is_empty()
    }

    /// `/verify JID FINGERPRINT`: the device verified, if one matched,
    /// and the contact's devices no longer trusted blindly.
    pub fn verify(&mut self, jid: &Jid, fp: &str) -> io::Result<Option<(u32, Vec<u32>)>> {
        let id = self.keyring.verify(jid, fp);
        if id.is_some() {
            self.store.save_keyring(&self.keyring)?;
        }
        Ok(id)
    }

    /// What the conversation with `jid` looks like end to end, in a few
    /// words (the TUI's status bar, `/e2e`).
    pub fn state(&self, jid: &Jid) -> E2eState {
        let devices = self.keyring.devices(jid);
        let count = |t: Trust| devices.iter().filter(|(_, k)| k.trust == t).count();
        E2eState {
            on: self.enabled_for(jid),
            require: self.require,
            devices: devices.len(),
            verified: count(Trust::Verified),
            untrusted: count(Trust::Untrusted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    fn engine(dir: &tempfile::TempDir, who: &str) -> Engine {
        Engine::open(&dir.path().join(who), &jid(who)).unwrap()
    }

    /// `from` learns `to`'s device (its list and bundle) as the worker
    /// would from the server.
    fn learn(from: &mut Engine, to: &Engine, v: Version) -> Option<String> {
        from.note_list(&to.me, v, vec![to.device_id()]);
        let (owner, device) = from.without_session(&to.me, v).pop().unwrap();
        from.start(&owner, device, v, &to.bundle(v)).unwrap()
    }

    #[test]
    fn messages_go_both_ways_and_a_replay_is_refused() {
        for v in Version::ALL {
            let dir = tempfile::tempdir().unwrap();
            let (mut al, mut bob) = (engine(&dir, "al@x"), engine(&dir, "bob@x"));
            let warning = learn(&mut al, &bob, v).unwrap();
            assert!(warning.contains("NEW OMEMO DEVICE of bob@x"), "{warning}");
            let first = al.encrypt(&bob.me.clone(), v, "hello <bob> & co").unwrap();
            let o = bob.decrypt(&jid("al@x/phone"), v, &first).unwrap();
            assert_eq!(o.body.as_deref(), Some("hello <bob> & co"));
            assert!(
                o.answer && o.republish,
                "a key exchange is answered and its pre key replaced"
            );
            assert_eq!(o.trust, Trust::Blind);
            // The same key exchange again: a replay, refused (the message
            // key is used up).
            assert!(bob.decrypt(&jid("al@x/phone"), v, &first).is_err());
            let empty = bob
                .empty(&al.me.clone(), al.device_id(), v)
                .unwrap()
                .unwrap();
            let o = al.decrypt(&jid("bob@x/pc"), v, &empty).unwrap();
            assert_eq!(o.body, None);
            let back = bob.encrypt(&al.me.clone(), v, "hi al").unwrap_err();
            // Bob has not learnt al's list yet: no device to write to.
            assert!(matches!(back, E2eError::NoDevice(_)), "{back}");
            bob.note_list(&al.me.clone(), v, vec![al.device_id()]);
            let back = bob.encrypt(&al.me.clone(), v, "hi al").unwrap();
            let o = al.decrypt(&jid("bob@x/pc"), v, &back).unwrap();
            assert_eq!(o.body.as_deref(), Some("hi al"));
            assert!(!o.answer);
        }
    }

    #[test]
    fn an_injected_device_gets_nothing_once_the_contact_is_verified() {
        let v = Version::Two;
        let dir = tempfile::tempdir().unwrap();
        let (mut al, bob, mallory) = (
            engine(&dir, "al@x"),
            engine(&dir, "bob@x"),
            engine(&dir, "bob-fake@x"),
        );
        learn(&mut al, &bob, v);
        let fp = al.devices(&bob.me)[0].1.clone();
        assert_eq!(
            al.verify(&bob.me, &fp).unwrap(),
            Some((bob.device_id(), vec![]))
        );
        // The man in the middle adds his device to bob's list and bundle.
        al.note_list(&bob.me, v, vec![bob.device_id(), mallory.device_id()]);
        let (_, id) = al.without_session(&bob.me, v).pop().unwrap();
        assert_eq!(id, mallory.device_id());
        let w = al
            .start(&bob.me, id, v, &mallory.bundle(v))
            .unwrap()
            .unwrap();
        assert!(w.contains("NOT trusted"), "{w}");
        let el = al.encrypt(&bob.me, v, "for bob only").unwrap();
        let r = xml::read_encrypted(v, &el).unwrap();
        let rids: Vec<u32> = r.keys.iter().map(|k| k.1).collect();
        assert_eq!(rids, [bob.device_id()], "nothing for the injected device");
        assert!(
            al.state(&bob.me).to_string().contains("1 UNTRUSTED"),
            "{}",
            al.state(&bob.me)
        );
        // Blind trust (nobody verified) is what the attack needs.
        let dir2 = tempfile::tempdir().unwrap();
        let mut carol = engine(&dir2, "carol@x");
        learn(&mut carol, &bob, v);
        carol.note_list(&bob.me, v, vec![bob.device_id(), mallory.device_id()]);
        carol
            .start(&bob.me, mallory.device_id(), v, &mallory.bundle(v))
            .unwrap();
        let el = carol.encrypt(&bob.me, v, "readable by mallory").unwrap();
        assert_eq!(xml::read_encrypted(v, &el).unwrap().keys.len(), 2);
    }

    /// Someone imitating bob's device (its id, another key) with a key
    /// exchange: refused, and neither bob's session nor his known key is
    /// replaced, so the real bob's messages still open.
    #[test]
    fn a_known_device_with_another_key_is_refused_and_replaces_nothing() {
        let v = Version::Two;
        let dir = tempfile::tempdir().unwrap();
        let (mut al, mut bob) = (engine(&dir, "al@x"), engine(&dir, "bob@x"));
        learn(&mut bob, &al, v);
        let first = bob.encrypt(&al.me.clone(), v, "hi").unwrap();
        al.decrypt(&jid("bob@x/b"), v, &first).unwrap();
        // The impostor: bob's device id, its own identity.
        let fake = dir.path().join("fake");
        Store::open(&fake)
            .unwrap()
            .save_device(&Device::from_seed(bob.device_id(), [9; 32]))
            .unwrap();
        let mut imp = Engine::open(&fake, &jid("bob@x")).unwrap();
        learn(&mut imp, &al, v);
        let forged = imp.encrypt(&al.me.clone(), v, "send the key").unwrap();
        let e = al.decrypt(&jid("bob@x/evil"), v, &forged).unwrap_err();
        assert!(matches!(e, E2eError::KeyChanged { .. }), "{e}");
        assert_eq!(al.devices(&bob.me).len(), 1);
        let next = bob.encrypt(&al.me.clone(), v, "still me").unwrap();
        let o = al.decrypt(&jid("bob@x/b"), v, &next).unwrap();
        assert_eq!(o.body.as_deref(), Some("still me"));
    }

    #[test]
    fn a_message_not_for_us_or_from_someone_else_is_refused() {
        let v = Version::Two;
        let dir = tempfile::tempdir().unwrap();
        let (mut al, mut bob, mut eve) = (
            engine(&dir, "al@x"),
            engine(&dir, "bob@x"),
            engine(&dir, "eve@x"),
        );
        learn(&mut al, &bob, v);
        let el = al.encrypt(&bob.me, v, "x").unwrap();
        let e = eve.decrypt(&jid("al@x/a"), v, &el).unwrap_err();
        assert!(matches!(e, E2eError::NotForUs { .. }), "{e}");
        // A server replaying al's ciphertext as if eve sent it: the
        // envelope inside names al.
        let e = bob.decrypt(&jid("eve@x/a"), v, &el).unwrap_err();
        assert!(
            matches!(e, E2eError::WrongSender { .. } | E2eError::Protocol { .. }),
            "{e}"
        );
        // The forgery used nothing up: al's real message still opens
        // (with the pre key it names), on disk too.
        let mut bob_again = Engine::open(&dir.path().join("bob@x"), &jid("bob@x")).unwrap();
        let o = bob_again.decrypt(&jid("al@x/a"), v, &el).unwrap();
        assert_eq!(o.body.as_deref(), Some("x"));
        // Once al's session is confirmed (bob answered), a message on it
        // that bob's device lost is NoSession: the worker starts a new one.
        let answer = bob_again.empty(&al.me, al.device_id(), v).unwrap().unwrap();
        al.decrypt(&jid("bob@x/b"), v, &answer).unwrap();
        let plain = al.encrypt(&bob.me, v, "z").unwrap();
        bob_again.drop_session(&al.me, al.device_id(), v).unwrap();
        let e = bob_again.decrypt(&jid("al@x/a"), v, &plain).unwrap_err();
        assert!(matches!(e, E2eError::NoSession { .. }), "{e}");
    }
}
