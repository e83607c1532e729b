//! OMEMO's XML: bundles and device lists (published with PEP), the
//! `<encrypted/>` element of a message, and OMEMO 2's content envelope
//! (XEP-0420, Stanza Content Encryption). Bytes are standard base64.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::keys::Bundle;
use super::session::Encrypted;
use super::{OmemoError, Version};
use crate::Element;

/// The PEP node of a version's device list (its one item is `current`).
pub fn devices_node(v: Version) -> &'static str {
    match v {
        Version::Two => "urn:xmpp:omemo:2:devices",
        Version::Old => "eu.siacs.conversations.axolotl.devicelist",
    }
}

/// The PEP node and item id of a device's bundle: OMEMO 2 keeps every
/// device's bundle in one node (item id = device id); OMEMO 0.3 has a node
/// per device (item `current`).
pub fn bundle_node(v: Version, device: u32) -> (String, String) {
    match v {
        Version::Two => ("urn:xmpp:omemo:2:bundles".into(), device.to_string()),
        Version::Old => (
            format!("eu.siacs.conversations.axolotl.bundles:{device}"),
            "current".into(),
        ),
    }
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn unb64(el: Option<&Element>, what: &'static str) -> Result<Vec<u8>, OmemoError> {
    let text = el
        .map(|e| e.text_content())
        .ok_or(OmemoError::Malformed(what))?;
    // Whitespace inside base64 (line breaks some clients write) is allowed.
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    B64.decode(clean).map_err(|_| OmemoError::Malformed(what))
}

fn id_attr(el: &Element, name: &str, what: &'static str) -> Result<u32, OmemoError> {
    el.get_attr(name)
        .and_then(|s| s.parse().ok())
        .ok_or(OmemoError::Malformed(what))
}

fn key32(v: Version, bytes: &[u8]) -> Result<[u8; 32], OmemoError> {
    v.read_curve_key(bytes)
}

/// A bundle as the version publishes it.
pub fn bundle_element(v: Version, b: &Bundle) -> Element {
    let ns = v.ns();
    match v {
        Version::Two => {
            let mut pks = Element::new("prekeys", ns);
            for (id, pk) in &b.prekeys {
                pks = pks.child(
                    Element::new("pk", ns)
                        .attr("id", id.to_string())
                        .text(b64(pk)),
                );
            }
            Element::new("bundle", ns)
                .child(
                    Element::new("spk", ns)
                        .attr("id", b.spk_id.to_string())
                        .text(b64(&b.spk)),
                )
                .text_child("spks", ns, b64(&b.spks))
                .text_child("ik", ns, b64(&b.ik))
                .child(pks)
        }
        Version::Old => {
            let mut pks = Element::new("prekeys", ns);
            for (id, pk) in &b.prekeys {
                pks = pks.child(
                    Element::new("preKeyPublic", ns)
                        .attr("preKeyId", id.to_string())
                        .text(b64(&v.curve_key(pk))),
                );
            }
            Element::new("bundle", ns)
                .child(
                    Element::new("signedPreKeyPublic", ns)
                        .attr("signedPreKeyId", b.spk_id.to_string())
                        .text(b64(&v.curve_key(&b.spk))),
                )
                .text_child("signedPreKeySignature", ns, b64(&b.old_signature()))
                .text_child("identityKey", ns, b64(&v.curve_key(&b.ik)))
                .child(pks)
        }
    }
}

/// Reads a published bundle (not yet verified: see [`Bundle::verify`]).
pub fn read_bundle(v: Version, el: &Element) -> Result<Bundle, OmemoError> {
    let ns = v.ns();
    if !el.is("bundle", ns) {
        return Err(OmemoError::Malformed("not a bundle"));
    }
    let (spk_name, spk_id_attr, sig_name, ik_name, pk_name, pk_id_attr) = match v {
        Version::Two => ("spk", "id", "spks", "ik", "pk", "id"),
        Version::Old => (
            "signedPreKeyPublic",
            "signedPreKeyId",
            "signedPreKeySignature",
            "identityKey",
            "preKeyPublic",
            "preKeyId",
        ),
    };
    let spk_el = el
        .get_child(spk_name, ns)
        .ok_or(OmemoError::Malformed("a bundle without its signed pre key"))?;
    let sig: [u8; 64] = unb64(el.get_child(sig_name, ns), "the signature")?
        .try_into()
        .map_err(|_| OmemoError::Malformed("a signature that is not 64 bytes"))?;
    let (spks, ik_sign) = match v {
        Version::Two => (sig, 0),
        Version::Old => Bundle::from_old_signature(sig),
    };
    let mut prekeys = Vec::new();
    if let Some(pks) = el.get_child("prekeys", ns) {
        for pk in pks.elements().filter(|e| e.is(pk_name, ns)) {
            prekeys.push((
                id_attr(pk, pk_id_attr, "a pre key's id")?,
                key32(v, &unb64(Some(pk), "a pre key")?)?,
            ));
        }
    }
    Ok(Bundle {
        ik: key32(v, &unb64(el.get_child(ik_name, ns), "the identity key")?)?,
        ik_sign,
        spk_id: id_attr(spk_el, spk_id_attr, "the signed pre key's id")?,
        spk: key32(v, &unb64(Some(spk_el), "the signed pre key")?)?,
        spks,
        prekeys,
    })
}

/// A device list.
pub fn device_list(v: Version, ids: &[u32]) -> Element {
    let root = match v {
        Version::Two => "devices",
        Version::Old => "list",
    };
    ids.iter().fold(Element::new(root, v.ns()), |e, id| {
        e.child(Element::new("device", v.ns()).attr("id", id.to_string()))
    })
}

/// The device ids of a device list (ids that do not parse are left out).
pub fn read_device_list(v: Version, el: &Element) -> Vec<u32> {
    el.elements()
        .filter(|d| d.is("device", v.ns()))
        .filter_map(|d| d.get_attr("id")?.parse().ok())
        .filter(|id| *id > 0)
        .collect()
}

/// One recipient device's key in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFor {
    /// The recipient's bare JID (OMEMO 2 groups keys by JID).
    pub jid: String,
    /// The recipient device.
    pub rid: u32,
    /// What its session encrypted.
    pub key: Encrypted,
}

/// `<encrypted/>`: the sender device, a key per recipient device, and the
/// payload (none for an empty message, which only moves the ratchets).
pub fn encrypted_element(
    v: Version,
    sid: u32,
    keys: &[KeyFor],
    payload: Option<&[u8]>,
    iv: &[u8],
) -> Element {
    let ns = v.ns();
    let key_el = |k: &KeyFor| {
        let flag = match v {
            Version::Two => "kex",
            Version::Old => "prekey",
        };
        Element::new("key", ns)
            .attr("rid", k.rid.to_string())
            .attr_opt(flag, k.key.kex.then_some("true"))
            .text(b64(&k.key.data))
    };
    let mut header = Element::new("header", ns).attr("sid", sid.to_string());
    match v {
        Version::Two => {
            // One group per JID, wherever its keys are in the list.
            let jids: std::collections::BTreeSet<&str> =
                keys.iter().map(|k| k.jid.as_str()).collect();
            for jid in jids {
                let group = keys
                    .iter()
                    .filter(|k| k.jid == jid)
                    .fold(Element::new("keys", ns).attr("jid", jid), |g, k| {
                        g.child(key_el(k))
                    });
                header = header.child(group);
            }
        }
        Version::Old => {
            for k in keys {
                header = header.child(key_el(k));
            }
            header = header.text_child("iv", ns, b64(iv));
        }
    }
    let mut el = Element::new("encrypted", ns).child(header);
    if let Some(p) = payload {
        el = el.text_child("payload", ns, b64(p));
    }
    el
}

/// A received `<encrypted/>`, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The sender device.
    pub sid: u32,
    /// The keys: (recipient JID if given, device, data, key exchange).
    pub keys: Vec<(Option<String>, u32, Vec<u8>, bool)>,
    /// The payload (none: an empty message).
    pub payload: Option<Vec<u8>>,
    /// OMEMO 0.3's IV.
    pub iv: Vec<u8>,
}

impl Received {
    /// The key for device `rid` of `jid`.
    pub fn key_for(&self, jid: &str, rid: u32) -> Option<(&[u8], bool)> {
        self.keys
            .iter()
            .find(|(j, r, _, _)| *r == rid && j.as_deref().is_none_or(|j| j == jid))
            .map(|(_, _, d, k)| (d.as_slice(), *k))
    }
}

/// Reads `<encrypted/>`.
pub fn read_encrypted(v: Version, el: &Element) -> Result<Received, OmemoError> {
    let ns = v.ns();
    if !el.is("encrypted", ns) {
        return Err(OmemoError::Malformed("not an encrypted element"));
    }
    let header = el
        .get_child("header", ns)
        .ok_or(OmemoError::Malformed("no header"))?;
    let sid = id_attr(header, "sid", "the sender device")?;
    let flag = |k: &Element, name| k.get_attr(name).is_some_and(|f| f == "true" || f == "1");
    let mut keys = Vec::new();
    match v {
        Version::Two => {
            for group in header.elements().filter(|e| e.is("keys", ns)) {
                let jid = group.get_attr("jid").map(str::to_string);
                for k in group.elements().filter(|e| e.is("key", ns)) {
                    keys.push((
                        jid.clone(),
                        id_attr(k, "rid", "a key's device")?,
                        unb64(Some(k), "a key")?,
                        flag(k, "kex"),
                    ));
                }
            }
        }
        Version::Old => {
            for k in header.elements().filter(|e| e.is("key", ns)) {
                keys.push((
                    None,
                    id_attr(k, "rid", "a key's device")?,
                    unb64(Some(k), "a key")?,
                    flag(k, "prekey"),
                ));
            }
        }
    }
    let iv = match v {
        Version::Two => Vec::new(),
        Version::Old => unb64(header.get_child("iv", ns), "the IV")?,
    };
    let payload = match el.get_child("payload", ns) {
        Some(p) => Some(unb64(Some(p), "the payload")?),
        None => None,
    };
    Ok(Received {
        sid,
        keys,
        payload,
        iv,
    })
}

/// The namespace of Stanza Content Encryption (XEP-0420).
pub const SCE: &str = "urn:xmpp:sce:1";

/// OMEMO 2's plaintext: an XEP-0420 envelope with the body, who sends it
/// (and, in a room, to whom: XEP-0420 makes `<to/>` a MUST there, so a
/// server cannot replay a room message into another room), when, and
/// random padding (`rpad`, 0 to 200 characters) so that the length of the
/// ciphertext does not give away the length of the message.
pub fn envelope(body: &str, from: &str, to: Option<&str>, stamp: &str) -> String {
    let pad = usize::from(super::kdf::random::<1>()[0]) * 201 / 256;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let rpad: String = super::kdf::random::<200>()[..pad]
        .iter()
        .map(|b| alphabet[usize::from(*b) % alphabet.len()] as char)
        .collect();
    let mut el = Element::new("envelope", SCE)
        .child(
            Element::new("content", SCE).child(Element::new("body", crate::ns::CLIENT).text(body)),
        )
        .text_child("rpad", SCE, rpad)
        .child(Element::new("time", SCE).attr("stamp", stamp))
        .child(Element::new("from", SCE).attr("jid", from));
    if let Some(to) = to {
        el = el.child(Element::new("to", SCE).attr("jid", to));
    }
    el.to_xml()
}

/// What an envelope says, for the caller to check against the stanza
/// around it (the affix elements are what stop a server from replaying
/// the ciphertext elsewhere or later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The message.
    pub body: String,
    /// The sender it names.
    pub from: Option<String>,
    /// The addressee it names (rooms).
    pub to: Option<String>,
    /// When it says it was written.
    pub stamp: Option<String>,
}

/// Reads an envelope.
pub fn read_envelope(xml: &[u8]) -> Result<Envelope, OmemoError> {
    let text = std::str::from_utf8(xml)
        .map_err(|_| OmemoError::Malformed("an envelope that is not UTF-8"))?;
    // Nothing but the envelope: the text must start with it.
    if !text.trim_start().starts_with('<') {
        return Err(OmemoError::Malformed("an envelope that is not XML"));
    }
    let el = crate::parser::parse_element(text)
        .ok_or(OmemoError::Malformed("an envelope that is not XML"))?;
    if !el.is("envelope", SCE) {
        return Err(OmemoError::Malformed("not an envelope"));
    }
    let affix = |name: &str, attr: &str| {
        el.get_child(name, SCE)
            .and_then(|f| f.get_attr(attr))
            .map(str::to_string)
    };
    Ok(Envelope {
        body: el
            .get_child("content", SCE)
            .and_then(|c| c.child_text("body", crate::ns::CLIENT))
            .unwrap_or_default(),
        from: affix("from", "jid"),
        to: affix("to", "jid"),
        stamp: affix("time", "stamp"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_carries_its_affixes_and_escapes_its_body() {
        let xml = envelope(
            "a <b> & c",
            "al@x",
            Some("lab@conference.x"),
            "2026-12-03T12:00:00Z",
        );
        let e = read_envelope(xml.as_bytes()).unwrap();
        assert_eq!(e.body, "a <b> & c");
        assert_eq!(e.from.as_deref(), Some("al@x"));
        assert_eq!(e.to.as_deref(), Some("lab@conference.x"));
        assert_eq!(e.stamp.as_deref(), Some("2026-12-03T12:00:00Z"));
        assert!(read_envelope(b"junk <envelope/>").is_err());
        assert!(read_envelope(&[0xff, 0xfe]).is_err());
        // The padding varies the length.
        let lens: std::collections::BTreeSet<usize> = (0..20)
            .map(|_| envelope("hi", "al@x", None, "t").len())
            .collect();
        assert!(lens.len() > 1);
    }
}
