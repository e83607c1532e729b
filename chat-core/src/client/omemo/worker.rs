//! The task that does the client's OMEMO over XMPP, one job after the
//! other (so that messages keep their order and the store has one writer):
//! - at sign-in, publish this device in the account's device lists and
//!   its bundle (both versions), readable by anyone (`open`: someone not
//!   in our roster must be able to write to us end to end);
//! - keep the device lists PEP notifications bring (ours too: a list that
//!   lost this device gets it back, as the XEP asks);
//! - send a message: fetch the contact's device lists and the bundles of
//!   devices without a session, then encrypt to every trusted one;
//! - open a message, answer a key exchange (and the heartbeat) with an
//!   empty message, publish the bundle again after a pre key was used,
//!   and start a new session when a peer writes on one this device lost.
//!
//! Each failure is one line for the user (an event); none ends the
//! connection or the task.

use std::sync::{Arc, Mutex};

use protocol::omemo::Version;
use protocol::omemo::xml;
use protocol::stanza::IqType;
use protocol::{Element, Jid, ns};
use tokio::sync::mpsc;

pub(crate) use super::jobs::{Arrived, Job};

use super::engine::{E2eError, Engine};
use crate::client::api::{IqSender, plain_chat};
use crate::client::error::ClientError;
use crate::client::event::{ClientEvent, E2e, WeakEventSender};
use crate::client::state::lock;
use crate::util::random_id;
use protocol::omemo::OmemoError;

/// The fallback body of an encrypted message, for clients without OMEMO
/// (the XEP's wording, which clients and sniffers recognise).
pub const FALLBACK_BODY: &str = "I sent you an OMEMO encrypted message but your client doesn't seem to support that. Find more information on https://conversations.im/omemo";

/// How often a session with one device may be started again after
/// messages on it fail: repairs cost the peer a pre key each.
const REPAIR_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// The worker's handles.
pub(crate) struct Worker {
    /// When each device's session was last repaired.
    pub(crate) repaired:
        std::sync::Mutex<std::collections::HashMap<(Jid, u32, Version), std::time::Instant>>,
    pub(crate) engine: Arc<Mutex<Engine>>,
    pub(crate) iq: IqSender,
    pub(crate) events: WeakEventSender,
    /// Our full JID.
    pub(crate) me: Jid,
}

impl Worker {
    fn event(&self, ev: ClientEvent) {
        if let Some(tx) = self.events.upgrade() {
            tx.send(ev);
        }
    }

    fn warn(&self, jid: Option<Jid>, text: String) {
        self.event(ClientEvent::E2eWarning { jid, text });
    }

    /// Runs the jobs until every sender is gone.
    pub(crate) async fn run(self, mut jobs: mpsc::Receiver<Job>) {
        self.publish_all().await;
        while let Some(job) = jobs.recv().await {
            match job {
                Job::Send { to, id, body } => {
                    if let Err(e) = self.send(&to, &id, &body).await {
                        self.event(ClientEvent::NotSent {
                            to,
                            id,
                            reason: e.to_string(),
                        });
                    }
                }
                Job::Incoming(a) => {
                    let ack = a.id.clone().filter(|_| a.receipt);
                    let from = a.from.clone();
                    if self.incoming(a).await
                        && let Some(id) = ack
                    {
                        // XEP-0184, to the sending resource, once read.
                        let r = Element::new("message", ns::CLIENT)
                            .attr("to", from.to_string())
                            .attr("id", format!("r-{}", random_id(4)))
                            .child(Element::new("received", ns::RECEIPTS).attr("id", id));
                        let _ = self.iq.send(&r);
                    }
                }
                Job::DeviceList { from, v, ids } => self.device_list(&from, v, ids).await,
                Job::Learn { jid, done } => {
                    self.learn(&jid).await;
                    let _ = done.send(());
                }
                Job::Close => {
                    // The stream ends: nothing after it may be sent.
                    self.iq.close_stream();
                    break;
                }
            }
        }
    }

    /// Publishes this device (list and bundle) in both versions.
    async fn publish_all(&self) {
        for v in Version::ALL {
            if let Err(e) = self.publish(v).await {
                self.warn(
                    None,
                    format!(
                        "could not publish this device's OMEMO keys ({}): {e}",
                        v.ns()
                    ),
                );
            }
        }
    }

    /// Publishes this device in the device list of `v` (fetched first: the
    /// account's other devices stay) and its bundle.
    async fn publish(&self, v: Version) -> Result<(), ClientError> {
        let me = self.me.to_bare();
        let own = lock(&self.engine).device_id();
        let mut ids = self.fetch_list(&me, v).await?.unwrap_or_default();
        lock(&self.engine).note_list(&me, v, ids.clone());
        if !ids.contains(&own) {
            ids.push(own);
            self.publish_list(v, &ids).await?;
        }
        self.publish_bundle(v).await
    }

    async fn publish_list(&self, v: Version, ids: &[u32]) -> Result<(), ClientError> {
        let item = xml::device_list(v, ids);
        self.iq_publish(xml::devices_node(v), "current", item, None)
            .await?;
        lock(&self.engine).note_list(&self.me, v, ids.to_vec());
        Ok(())
    }

    async fn publish_bundle(&self, v: Version) -> Result<(), ClientError> {
        let (bundle, own) = {
            let e = lock(&self.engine);
            (e.bundle(v), e.device_id())
        };
        let (node, item) = xml::bundle_node(v, own);
        // OMEMO 2 keeps every device's bundle in one node: as many items
        // as there are devices.
        let max = matches!(v, Version::Two).then_some("max");
        self.iq_publish(&node, &item, bundle, max).await
    }

    /// A PEP publish with publish-options: readable by anyone (`open`).
    fn iq_publish(
        &self,
        node: &str,
        item: &str,
        payload: Element,
        max_items: Option<&str>,
    ) -> impl Future<Output = Result<(), ClientError>> + use<> {
        let field = |var: &str, value: &str| {
            Element::new("field", ns::DATA_FORMS)
                .attr("var", var)
                .text_child("value", ns::DATA_FORMS, value)
        };
        let mut form = Element::new("x", ns::DATA_FORMS)
            .attr("type", "submit")
            .child(
                field(
                    "FORM_TYPE",
                    "http://jabber.org/protocol/pubsub#publish-options",
                )
                .attr("type", "hidden"),
            )
            .child(field("pubsub#access_model", "open"));
        if let Some(m) = max_items {
            form = form.child(field("pubsub#max_items", m));
        }
        let pubsub = Element::new("pubsub", ns::PUBSUB)
            .child(
                Element::new("publish", ns::PUBSUB)
                    .attr("node", node)
                    .child(
                        Element::new("item", ns::PUBSUB)
                            .attr("id", item)
                            .child(payload),
                    ),
            )
            .child(Element::new("publish-options", ns::PUBSUB).child(form));
        let fut = self
            .iq
            .iq(IqType::Set, None, pubsub, &format!("publishing {node}"));
        async move { fut.await.map(|_| ()) }
    }

    /// The first item of `node` of `jid` (item `item` if given); `None`
    /// when the node or item does not exist.
    async fn fetch_item(
        &self,
        jid: &Jid,
        node: &str,
        item: Option<&str>,
    ) -> Result<Option<Element>, ClientError> {
        let mut items = Element::new("items", ns::PUBSUB).attr("node", node);
        items = match item {
            Some(id) => items.child(Element::new("item", ns::PUBSUB).attr("id", id)),
            None => items.attr("max_items", "1"),
        };
        let q = Element::new("pubsub", ns::PUBSUB).child(items);
        match self
            .iq
            .iq(
                IqType::Get,
                Some(jid.to_bare()),
                q,
                &format!("fetching {node}"),
            )
            .await
        {
            Ok(iq) => Ok(iq
                .payload
                .as_ref()
                .and_then(|p| p.get_child("items", ns::PUBSUB))
                .and_then(|i| i.elements().find(|e| e.is("item", ns::PUBSUB)))
                .and_then(|i| i.elements().next())
                .cloned()),
            Err(ClientError::Refused { condition, .. }) if condition == "item-not-found" => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn fetch_list(&self, jid: &Jid, v: Version) -> Result<Option<Vec<u32>>, ClientError> {
        Ok(self
            .fetch_item(jid, xml::devices_node(v), None)
            .await?
            .map(|el| xml::read_device_list(v, &el)))
    }

    /// A device list from a PEP notification.
    async fn device_list(&self, from: &Jid, v: Version, ids: Vec<u32>) {
        let own = {
            let mut e = lock(&self.engine);
            e.note_list(from, v, ids.clone());
            e.device_id()
        };
        // Our own list without this device (another client of ours
        // replaced it, or it was reset): put it back, or nobody encrypts
        // to us any more.
        if from.to_bare() == self.me.to_bare() && !ids.contains(&own) {
            let mut ids = ids;
            ids.push(own);
            if let Err(e) = self.publish_list(v, &ids).await {
                self.warn(
                    None,
                    format!("could not put this device back in the OMEMO device list: {e}"),
                );
            }
        }
    }

    /// Fetches the device lists of `jid` (both versions) and starts
    /// sessions with the devices that have none: their keys become known.
    async fn learn(&self, jid: &Jid) {
        let bare = jid.to_bare();
        for v in Version::ALL {
            match self.fetch_list(&bare, v).await {
                Ok(Some(ids)) => lock(&self.engine).note_list(&bare, v, ids),
                Ok(None) => {}
                Err(e) => self.warn(
                    Some(bare.clone()),
                    format!("cannot fetch {bare}'s OMEMO devices: {e}"),
                ),
            }
        }
        let version = lock(&self.engine).version_for(&bare);
        if let Some(v) = version {
            self.sessions(&bare, v).await;
        }
    }

    /// Encrypts and sends one message.
    async fn send(&self, to: &Jid, id: &str, body: &str) -> Result<(), ClientError> {
        let bare = to.to_bare();
        // Fetch the lists the first time (PEP notifications keep them up
        // to date after that, for contacts; a stranger's is fetched each
        // time it is unknown).
        let (known, require) = {
            let e = lock(&self.engine);
            (e.version_for(&bare).is_some(), e.require)
        };
        if !known {
            for v in Version::ALL {
                match self.fetch_list(&bare, v).await {
                    Ok(Some(ids)) => lock(&self.engine).note_list(&bare, v, ids),
                    Ok(None) => {}
                    // Their server may have no PEP (a gateway, a bot): for
                    // `on` that is a contact without OMEMO; `require` stops.
                    Err(e) if require => return Err(e),
                    Err(_) => {}
                }
            }
        }
        let (version, knows) = {
            let e = lock(&self.engine);
            (e.version_for(&bare), e.knows(&bare))
        };
        let Some(v) = version else {
            if knows {
                // Their keys are known, their list is empty: hiding the
                // devices is how a man in the middle would force the
                // clear. Not sent; `/e2e off` does it on purpose.
                return Err(E2eError::ListEmptied(bare).into());
            }
            if require {
                return Err(E2eError::NoDevice(bare).into());
            }
            // `--e2e on` (not `require`): a contact without OMEMO still
            // gets the message, in the clear, and the user is told.
            self.warn(
                Some(bare.clone()),
                format!("{bare} has no OMEMO device: message {id} was sent NOT end-to-end encrypted (the server can read it)"),
            );
            return self.iq.send(&plain_chat(to, id, body));
        };
        self.sessions(&bare, v).await;
        let encrypted = lock(&self.engine).encrypt(&bare, v, body)?;
        self.iq.send(&chat(to, id, v, encrypted, true))
    }

    /// Starts sessions with the devices of `jid` (and our own) that have
    /// none; a device whose bundle cannot be had is said and left out.
    async fn sessions(&self, jid: &Jid, v: Version) {
        let missing = lock(&self.engine).without_session(jid, v);
        for (owner, device) in missing {
            let (node, item) = xml::bundle_node(v, device);
            let got = match self.fetch_item(&owner, &node, Some(&item)).await {
                Ok(Some(b)) => lock(&self.engine)
                    .start(&owner, device, v, &b)
                    .map_err(ClientError::from),
                Ok(None) => Err(ClientError::from(E2eError::NoBundle {
                    jid: owner.clone(),
                    device,
                })),
                Err(e) => Err(e),
            };
            match got {
                Ok(Some(w)) => self.warn(Some(owner), w),
                Ok(None) => {}
                Err(e) => self.warn(
                    Some(owner.clone()),
                    format!("cannot reach {owner}'s OMEMO device {device}: {e}"),
                ),
            }
        }
    }

    /// Opens an incoming message; whether it could be read.
    async fn incoming(&self, a: Arrived) -> bool {
        let Arrived {
            from,
            id,
            kind,
            delayed,
            v,
            encrypted,
            carbon,
            ..
        } = a;
        let opened = lock(&self.engine).decrypt(&from, v, &encrypted);
        let o = match opened {
            Ok(o) => o,
            Err(E2eError::NoSession { from: peer, device }) => {
                // The peer's session is one we lost (a restored backup, a
                // deleted store): start a new one, announced by an empty
                // key exchange, as the XEP asks.
                self.warn(
                    Some(peer.clone()),
                    format!("{} (device {device}) wrote on a session this device lost: could not read it; starting a new session", peer),
                );
                if self.may_repair(&peer, device, v) {
                    self.repair(&peer, device, v).await;
                }
                return false;
            }
            Err(
                e @ E2eError::Protocol {
                    error: OmemoError::Mac,
                    ..
                },
            ) => {
                // A session both sides started at once, or one that went
                // wrong: a message that fails authentication on it. A new
                // session repairs it, at most once in a while per device
                // (anyone can send a message that fails).
                self.warn(
                    Some(from.to_bare()),
                    format!("could not read an OMEMO message: {e}"),
                );
                if let E2eError::Protocol {
                    from: peer, device, ..
                } = e
                    && self.may_repair(&peer, device, v)
                {
                    self.repair(&peer, device, v).await;
                }
                return false;
            }
            Err(e) => {
                self.warn(
                    Some(from.to_bare()),
                    format!("could not read an OMEMO message: {e}"),
                );
                return false;
            }
        };
        if let Some(w) = o.warning {
            self.warn(Some(from.to_bare()), w);
        }
        if o.republish
            && let Err(e) = self.publish_bundle(v).await
        {
            self.warn(
                None,
                format!("could not publish the new OMEMO pre keys: {e}"),
            );
        }
        if o.answer {
            self.answer(&from, o.device, v);
        }
        if let (Some(body), Some((sent, peer))) = (&o.body, carbon) {
            // A copy of a message our other device sent or received.
            self.event(ClientEvent::Carbon {
                sent,
                peer,
                body: body.clone(),
                id,
            });
            return true;
        }
        if let Some(body) = o.body {
            self.event(ClientEvent::Message {
                from,
                body,
                id,
                kind,
                delayed,
                e2e: Some(E2e {
                    version: v,
                    device: o.device,
                    trust: o.trust,
                }),
            });
        }
        true
    }

    /// An empty message to one device.
    fn answer(&self, to: &Jid, device: u32, v: Version) {
        let el = lock(&self.engine).empty(to, device, v);
        match el {
            Ok(Some(el)) => {
                let id = format!("e-{}", random_id(4));
                let _ = self.iq.send(&chat(to, &id, v, el, false));
            }
            // Not trusted, or no session: nothing to answer on.
            Ok(None) => {}
            Err(e) => self.warn(
                Some(to.to_bare()),
                format!("could not answer an OMEMO key exchange: {e}"),
            ),
        }
    }

    /// Whether a session with `device` of `jid` may be repaired now: once
    /// per [`REPAIR_EVERY`] per device, the map bounded.
    fn may_repair(&self, jid: &Jid, device: u32, v: Version) -> bool {
        let mut last = lock(&self.repaired);
        let now = std::time::Instant::now();
        let key = (jid.to_bare(), device, v);
        if last
            .get(&key)
            .is_some_and(|t| now.duration_since(*t) < REPAIR_EVERY)
        {
            return false;
        }
        if last.len() >= super::engine::MAX_OMEMO_PEERS {
            last.retain(|_, t| now.duration_since(*t) < REPAIR_EVERY);
            if last.len() >= super::engine::MAX_OMEMO_PEERS {
                return false;
            }
        }
        last.insert(key, now);
        true
    }

    /// Starts a new session with a device whose session this one lost.
    async fn repair(&self, jid: &Jid, device: u32, v: Version) {
        let _ = lock(&self.engine).drop_session(jid, device, v);
        let known = lock(&self.engine).list(jid, v).is_some();
        if !known && let Ok(Some(ids)) = self.fetch_list(jid, v).await {
            lock(&self.engine).note_list(jid, v, ids);
        }
        self.sessions(jid, v).await;
        self.answer(jid, device, v);
    }
}

/// A chat message carrying `<encrypted/>`: a fallback body for clients
/// without OMEMO, the encryption named (XEP-0380), a hint that it is worth
/// keeping offline (XEP-0334), and a receipt request for a real message.
fn chat(to: &Jid, id: &str, v: Version, encrypted: Element, real: bool) -> Element {
    let mut m = Element::new("message", ns::CLIENT)
        .attr("to", to.to_string())
        .attr("type", "chat")
        .attr("id", id)
        .child(encrypted)
        .child(Element::new("encryption", ns::EME).attr("namespace", v.ns()))
        .child(Element::new("store", ns::HINTS));
    if real {
        m = m
            .text_child("body", ns::CLIENT, FALLBACK_BODY)
            .child(Element::new("request", ns::RECEIPTS));
    }
    m
}
