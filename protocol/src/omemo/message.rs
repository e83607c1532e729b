//! Opening a received `<encrypted/>` as one device: find its key, run the
//! key exchange or the session it names, decrypt the payload, check the
//! envelope. Pure: the caller looks sessions up, and keeps what comes
//! back (the session, the pre key to use up) only once it all checked
//! out, so that a forged or replayed key exchange burns nothing.
//!
//! The client (chat-core) opens what is sent to it; the proxy's
//! `inject-omemo-device` opens what a fooled client encrypted to the
//! attacker's device, with the same code.

use super::device::Device;
use super::keys::curve_of_ed;
use super::session::Session;
use super::{OmemoError, Version, payload, xml};
use crate::Element;

/// Why a message could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// It carries no key for this device.
    #[error("device {device} sent a message not encrypted for this device")]
    NotForUs {
        /// The sending device.
        device: u32,
    },
    /// A message on a session this device does not have.
    #[error("device {device} wrote on a session this device does not have")]
    NoSession {
        /// The sending device.
        device: u32,
    },
    /// The OMEMO 2 envelope names another sender than the stanza's.
    #[error("the encrypted content says it is from {named}")]
    WrongSender {
        /// Who the envelope names.
        named: String,
    },
    /// The protocol refused it.
    #[error("device {device}: {error}")]
    Omemo {
        /// The sending device (0: unknown yet).
        device: u32,
        /// What went wrong.
        error: OmemoError,
    },
}

/// An opened message, for the caller to keep.
#[derive(Debug)]
pub struct Opened {
    /// The sending device.
    pub device: u32,
    /// The text; `None` for an empty message.
    pub body: Option<String>,
    /// The session after this message (new from a key exchange, or moved
    /// on): to be stored.
    pub session: Session,
    /// Whether the message carried a key exchange.
    pub kex: bool,
    /// A new session from a key exchange: the pre key it used (to be used
    /// up) and the sender's identity key in Curve25519 form (to be seen by
    /// the trust store).
    pub new_session: Option<(u32, [u8; 32])>,
}

/// Opens `el`, an `<encrypted/>` of version `v`, as `device` of `me`
/// (bare JID), sent by `from` (bare JID). `session` looks up the stored
/// session with a sending device.
pub fn open(
    v: Version,
    device: &Device,
    me: &str,
    from: &str,
    el: &Element,
    session: &mut dyn FnMut(u32) -> Option<Session>,
) -> Result<Opened, OpenError> {
    let r = xml::read_encrypted(v, el).map_err(|error| OpenError::Omemo { device: 0, error })?;
    let sid = r.sid;
    let err = |error| OpenError::Omemo { device: sid, error };
    let (data, kex) = r
        .key_for(me, device.id)
        .ok_or(OpenError::NotForUs { device: sid })?;
    let mut new_session = None;
    let (session, material) = if kex {
        let (k, inner) = Session::read_key_exchange(v, data).map_err(err)?;
        match session(sid) {
            // The same key exchange again (the peer sends it until it is
            // answered): the session it built.
            Some(mut s) if s.built_by() == Some(&k) => {
                let m = s.decrypt(&inner).map_err(err)?;
                (s, m)
            }
            _ => {
                let spk = device
                    .signed_pre_key(k.spk_id)
                    .ok_or(err(OmemoError::UnknownSignedPreKey(k.spk_id)))?;
                let pk = device
                    .pre_key(k.pk_id)
                    .ok_or(err(OmemoError::UnknownPreKey(k.pk_id)))?;
                let (s, m) =
                    Session::respond(v, &device.identity(), &spk, &pk, &k, &inner).map_err(err)?;
                let curve = match v {
                    Version::Two => curve_of_ed(&k.ik).map_err(err)?,
                    Version::Old => k.ik,
                };
                new_session = Some((k.pk_id, curve));
                (s, m)
            }
        }
    } else {
        let mut s = session(sid).ok_or(OpenError::NoSession { device: sid })?;
        let m = s.decrypt(data).map_err(err)?;
        (s, m)
    };
    let body = match &r.payload {
        None => None,
        Some(ct) => Some(match v {
            Version::Two => {
                let env = payload::open_two(&material, ct).map_err(err)?;
                let e = xml::read_envelope(&env).map_err(err)?;
                // The envelope's sender is inside the encryption; the
                // stanza's is the server's word: they must agree.
                if let Some(named) = e.from.as_deref()
                    && crate::Jid::parse(named)
                        .map(|j| j.to_bare().to_string())
                        .ok()
                        != Some(from.to_string())
                {
                    return Err(OpenError::WrongSender {
                        named: named.to_string(),
                    });
                }
                e.body
            }
            Version::Old => {
                let plain = payload::open_old(&material, &r.iv, ct).map_err(err)?;
                String::from_utf8(plain)
                    .map_err(|_| err(OmemoError::Malformed("a message that is not UTF-8")))?
            }
        }),
    };
    Ok(Opened {
        device: sid,
        body,
        session,
        kex,
        new_session,
    })
}
