//! A bound session: reads stanzas, stamps them, routes them, answers iqs.
//!
//! Two tasks per connection: this reader, which owns all session logic, and a
//! writer fed by the session's bounded queue, which batches writes and
//! flushes when the queue runs dry.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use protocol::parser::Event;
use protocol::stanza::{Iq, IqType, error_reply};
use protocol::{Element, Jid, StanzaErrorCondition, StreamErrorCondition, ns, stream};
use tokio::io::{AsyncWriteExt, BufWriter, WriteHalf};

use super::Shared;
use super::negotiate::Bound;
use super::router::{Delivery, Outbound, OutboundRx, OutboundTx, SessionHandle};
use crate::storage;
use crate::transport::BoxStream;
use crate::util::{random_id, unix_now, xmpp_datetime};
use crate::xmpp_io::ReadError;

/// Why a session ends: a stream error to send, or a plain close.
pub(super) type End = Option<(StreamErrorCondition, String)>;

/// The text of the [`End`] a failed storage call returns; the session
/// turns it into a stanza error for the stanza being handled.
const STORAGE_FAILURE: &str = "storage failure";

/// Offline messages read from storage at a time at sign-in: up to 1,000
/// of 64 KB are stored per account, and all at once would be 64 MB.
const OFFLINE_BATCH: usize = 32;

/// What an error reply to a stanza needs, kept while the stanza is handled
/// in case storage fails: its name, id, type and `to`. Short strings stay
/// inline (no allocation), so keeping it for every stanza costs next to
/// nothing; the reply itself is only built on failure.
struct Origin {
    name: protocol::CompactString,
    id: Option<protocol::CompactString>,
    kind: Option<protocol::CompactString>,
    to: Option<protocol::CompactString>,
}

impl Origin {
    fn of(el: &Element) -> Origin {
        let attr = |n: &str| el.get_attr(n).map(protocol::CompactString::from);
        Origin {
            name: el.name.clone(),
            id: attr("id"),
            kind: attr("type"),
            to: attr("to"),
        }
    }

    /// The stanza, without its content, as `from` sent it.
    fn element(&self, from: &Jid) -> Element {
        Element::new(self.name.as_str(), ns::CLIENT)
            .attr("from", from.to_string())
            .attr_opt("to", self.to.as_deref())
            .attr_opt("id", self.id.as_deref())
            .attr_opt("type", self.kind.as_deref())
    }
}

/// Server software name reported by XEP-0092. The OS is deliberately not
/// reported: version and OS details help an attacker pick an exploit.
const SOFTWARE_NAME: &str = "chat-core";

/// A bound session's state, shared by the handlers in this module and in
/// [`super::presence`].
pub(super) struct Session {
    pub(super) shared: Arc<Shared>,
    /// The account's user name.
    pub(super) user: String,
    /// The bound full JID.
    pub(super) jid: Jid,
    /// The account's bare JID.
    pub(super) bare: Jid,
    pub(super) handle: SessionHandle,
    tx: OutboundTx,
    /// Offline messages queued to this session, deleted from storage once
    /// it ends cleanly.
    offline_delivered: Vec<i64>,
}

/// Runs a bound session until it ends.
pub async fn run(shared: Arc<Shared>, bound: Bound, peer: SocketAddr) {
    let Bound {
        stream,
        mut reader,
        user,
        jid,
        handle,
        tx,
        rx,
        secure: _,
    } = bound;
    let (mut rd, wr) = tokio::io::split(stream);
    let mut writer = tokio::spawn(writer_task(wr, rx));
    let mut s = Session {
        bare: jid.to_bare(),
        shared: shared.clone(),
        user,
        jid,
        handle: handle.clone(),
        tx: tx.clone(),
        offline_delivered: Vec::new(),
    };
    // Whether the client closed its stream itself (RFC 6120 4.4): a client
    // that does so has read everything sent before our closing tag.
    let mut clean_close = false;
    let mut cut_off = false;
    let end: End = loop {
        tokio::select! {
            ev = reader.next(&mut rd) => match ev {
                Ok(Event::Element(el)) => {
                    // What an error reply needs, kept in case storage fails.
                    let origin = Origin::of(&el);
                    match s.handle(el).await {
                        Ok(()) => {}
                        Err(Some((_, text))) if text == STORAGE_FAILURE => {
                            // A full disk (or any database failure) costs
                            // this stanza, not the session: the sender
                            // hears it was not kept and can try again.
                            s.bounce(
                                &origin.element(&s.jid),
                                StanzaErrorCondition::ResourceConstraint,
                                "the server could not store this: try again later",
                            );
                        }
                        Err(end) => break end,
                    }
                }
                Ok(Event::StreamClose) => {
                    clean_close = true;
                    break None;
                }
                Ok(Event::StreamOpen(_)) => {
                    break Some((StreamErrorCondition::NotWellFormed, "unexpected stream header".into()))
                }
                Err(ReadError::Parse(p)) => {
                    tracing::info!(%peer, jid = %s.jid, "stream error: {p}");
                    break Some((p.condition(), p.to_string()));
                }
                Err(_) => break None,
            },
            _ = handle.kill.notified() => {
                cut_off = true;
                break Some((StreamErrorCondition::PolicyViolation, "too much data waiting: the client does not read".into()))
            }
        }
    };
    s.leave_all_rooms().await;
    if shared.router.unbind(&s.user, s.handle.id) {
        s.broadcast_unavailable().await;
    }
    // Ask the writer to finish; give a stuck socket a bounded time. A
    // client cut off for not reading gets its stream error before the
    // backlog (which is dropped), so a slow reader still learns why.
    let (cond, text) = end.unzip();
    tx.close(cond, text, cut_off);
    drop(tx);
    let delivered = std::mem::take(&mut s.offline_delivered);
    drop(s);
    let written = match tokio::time::timeout(Duration::from_secs(5), &mut writer).await {
        Ok(Ok(all_written)) => all_written,
        _ => {
            writer.abort();
            false
        }
    };
    if !delivered.is_empty() {
        let ids = delivered.clone();
        let delete = clean_close && written;
        let sh = shared.clone();
        // Deleted and released in one storage call (see claim_offline).
        let done = shared
            .storage
            .run(move |c| {
                let deleted = if delete {
                    storage::delete_offline(c, &ids)
                } else {
                    Ok(())
                };
                sh.release_offline(&ids);
                deleted
            })
            .await;
        if let Err(e) = done {
            // Kept, so delivered again next time: a duplicate, not a loss.
            tracing::error!("{e}");
            shared.release_offline(&delivered);
        } else if !delete {
            tracing::info!(%peer, kept = delivered.len(), "session ended uncleanly: its offline messages stay stored");
        }
    }
    tracing::info!(%peer, "session ended");
}

/// Writes queued XML to the socket, flushing whenever the queue is empty so
/// bursts go out in few packets and single stanzas go out at once. Returns
/// whether everything queued, and the closing tag, reached the socket.
async fn writer_task(wr: WriteHalf<BoxStream>, mut rx: OutboundRx) -> bool {
    let mut w = BufWriter::with_capacity(16 * 1024, wr);
    while let Some(item) = rx.recv().await {
        match item {
            // The permit goes back to the queue's budget once the bytes
            // are in the socket's buffer.
            Outbound::Xml(xml, _permit) => {
                if w.write_all(xml.as_bytes()).await.is_err() {
                    return false;
                }
                rx.wrote();
            }
            Outbound::Close(cond, text) => {
                if let Some(c) = cond {
                    let _ = w
                        .write_all(c.to_element(text.as_deref()).to_xml().as_bytes())
                        .await;
                }
                return finish(&mut w).await;
            }
        }
        if rx.is_empty() && w.flush().await.is_err() {
            return false;
        }
    }
    finish(&mut w).await
}

/// Writes the closing tag, flushes and shuts the socket's sending side.
async fn finish(w: &mut BufWriter<WriteHalf<BoxStream>>) -> bool {
    let ok = w.write_all(stream::CLOSE.as_bytes()).await.is_ok() && w.flush().await.is_ok();
    let _ = w.shutdown().await;
    ok
}

impl Session {
    pub(super) fn domain(&self) -> &str {
        &self.shared.config.domain
    }

    /// Queues XML for this session itself. A client whose own answers do
    /// not fit in its queue is not reading: it is cut off.
    pub(super) fn to_self(&self, xml: Arc<str>) -> Delivery {
        let d = self.tx.try_send(xml);
        match d {
            Delivery::Overflow => super::router::Router::overflowed(&self.tx, &self.handle.kill),
            Delivery::TooLarge => {
                tracing::error!(jid = %self.jid, "not sent: an answer longer than the stanza limit")
            }
            _ => {}
        }
        d
    }

    pub(super) fn to_self_el(&self, el: &Element) -> Delivery {
        self.to_self(Arc::from(el.to_xml()))
    }

    /// The stanza limit: the largest stanza the server accepts, and so the
    /// largest it ever sends (a client must be able to read what it gets).
    pub(super) fn max_stanza(&self) -> usize {
        self.shared.config.limits.max_stanza_bytes
    }

    /// Answers a stanza with an error (never an error with an error). The
    /// reply echoes the stanza (RFC 6120 8.3.1), unless that would make the
    /// error itself too large to send: then it carries only the error.
    pub(super) fn bounce(&self, el: &Element, cond: StanzaErrorCondition, text: &str) {
        if let Some(mut e) = error_reply(el, cond, Some(text)) {
            let mut xml = e.to_xml();
            if xml.len() > self.max_stanza() {
                e.children
                    .retain(|n| matches!(n, protocol::Node::Element(c) if c.name == "error"));
                xml = e.to_xml();
            }
            self.to_self(Arc::from(xml));
        }
    }

    /// Bounces a stanza that would be longer than the stanza limit once
    /// delivered. The sender hears why; the recipient, whose parser would
    /// have to drop the connection over it, never sees it.
    pub(super) fn bounce_too_large(&self, el: &Element, size: usize) {
        self.bounce(
            el,
            StanzaErrorCondition::PolicyViolation,
            &format!(
                "not delivered: {size} bytes as delivered, over the {}-byte stanza limit",
                self.max_stanza()
            ),
        );
    }

    /// Sends an iq result, or a `resource-constraint` error if the result
    /// would be too large to send.
    pub(super) fn iq_result(&self, iq: &Iq, payload: Option<Element>) {
        if self.to_self_el(&iq.result(payload).to_element()) == Delivery::TooLarge {
            self.iq_error(
                iq,
                StanzaErrorCondition::ResourceConstraint,
                "the answer is larger than the stanza limit",
            );
        }
    }

    pub(super) fn iq_error(&self, iq: &Iq, cond: StanzaErrorCondition, text: &str) {
        let mut reply = iq.error_reply(cond, Some(text));
        // An error need not echo a payload that would not fit.
        if reply.to_element().to_xml().len() > self.max_stanza() {
            reply.payload = None;
        }
        self.to_self_el(&reply.to_element());
    }

    /// The user name of a JID served here, or `None` for another domain or
    /// the domain itself.
    pub(super) fn local_user<'j>(&self, jid: &'j Jid) -> Option<&'j str> {
        if jid.domain() == self.domain() {
            jid.local()
        } else {
            None
        }
    }

    /// A storage call; a failure ends the session with an internal error
    /// rather than pretending the write happened.
    pub(super) async fn db<T, F>(&self, f: F) -> Result<T, End>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.shared.storage.run(f).await.map_err(|e| {
            tracing::error!("{e}");
            Some((
                StreamErrorCondition::InternalServerError,
                STORAGE_FAILURE.to_string(),
            ))
        })
    }

    async fn handle(&mut self, mut el: Element) -> Result<(), End> {
        if el.ns != ns::CLIENT || !matches!(el.name.as_str(), "message" | "presence" | "iq") {
            return Err(Some((
                StreamErrorCondition::UnsupportedStanzaType,
                format!("<{}> is not a stanza", el.name),
            )));
        }
        // Stamp the sender with the authenticated JID, whatever the client
        // wrote: this is what stops one user from forging messages "from"
        // another (spoofing).
        el.set_attr("from", self.jid.to_string());
        let to = match el.get_attr("to").map(Jid::parse) {
            None => None,
            Some(Ok(j)) => Some(j),
            Some(Err(e)) => {
                self.bounce(&el, StanzaErrorCondition::JidMalformed, &e.to_string());
                return Ok(());
            }
        };
        if let Some(t) = &to {
            el.set_attr("to", t.to_string());
            if t.domain() == self.muc_domain() {
                return self.muc(el, t.clone()).await;
            }
        }
        match el.name.as_str() {
            "message" => self.message(el, to).await,
            "presence" => self.presence(el, to).await,
            _ => self.iq(el, to).await,
        }
    }

    async fn message(&mut self, mut el: Element, to: Option<Jid>) -> Result<(), End> {
        let to = match to {
            Some(t) => t,
            None => {
                el.set_attr("to", self.bare.to_string());
                self.bare.clone()
            }
        };
        let kind = el.get_attr("type").unwrap_or("normal").to_string();
        if super::directory::is_announce(&to, self.domain()) {
            self.announce(&el);
            return Ok(());
        }
        if to.domain() != self.domain() {
            self.bounce(
                &el,
                StanzaErrorCondition::RemoteServerNotFound,
                "this server does not federate",
            );
            return Ok(());
        }
        let Some(user) = to.local().map(str::to_string) else {
            self.bounce(
                &el,
                StanzaErrorCondition::ServiceUnavailable,
                "the server does not take messages",
            );
            return Ok(());
        };
        let xml: Arc<str> = Arc::from(el.to_xml());
        if xml.len() > self.max_stanza() {
            // Measured as it will be delivered: the client's bytes were
            // within the limit, but the server stamped a `from` and
            // re-escaped the text (an 11 KB body of `>` is 44 KB of `&gt;`).
            self.bounce_too_large(&el, xml.len());
            return Ok(());
        }
        let router = &self.shared.router;
        if let Some(res) = to.resource()
            && router.send_to_resource_wait(&user, res, &xml).await == Delivery::Queued
        {
            return Ok(());
        }
        // To a bare JID, or to a resource that has gone (RFC 6121 8.5.3.2.1).
        match kind.as_str() {
            "groupchat" => {
                self.bounce(&el, StanzaErrorCondition::ServiceUnavailable, "not a room");
            }
            "error" | "headline" => {
                router.send_to_available(&user, &xml, Some(0), None);
            }
            _ => {
                let got = router.send_to_available_wait(&user, &xml, Some(0)).await;
                if !got.contains(&Delivery::Queued) {
                    self.store_offline(el, user).await?;
                }
            }
        }
        Ok(())
    }

    /// Offline storage (XEP-0160): stamped with the time it arrived
    /// (XEP-0203) and delivered at the recipient's next available presence.
    async fn store_offline(&self, mut el: Element, user: String) -> Result<(), End> {
        let u = user.clone();
        if !self.db(move |c| storage::account_exists(c, &u)).await? {
            self.bounce(
                &el,
                StanzaErrorCondition::ServiceUnavailable,
                "no such user",
            );
            return Ok(());
        }
        el.children.push(protocol::Node::Element(
            Element::new("delay", ns::DELAY)
                .attr("from", self.domain())
                .attr("stamp", xmpp_datetime(unix_now())),
        ));
        let xml = el.to_xml();
        if xml.len() > self.max_stanza() {
            // Stored, it would be a poison message: undeliverable at every
            // sign-in. Refuse it now, while the sender can hear why.
            self.bounce_too_large(&el, xml.len());
            return Ok(());
        }
        let stored = self
            .db(move |c| storage::store_offline(c, &user, &xml))
            .await?;
        if !stored {
            self.bounce(
                &el,
                StanzaErrorCondition::ResourceConstraint,
                "the recipient's offline storage is full",
            );
        }
        Ok(())
    }

    /// Delivers stored messages at initial presence. They stay stored
    /// until this session ends cleanly (see [`run`]): a message queued is
    /// not a message read, and a client that drops halfway through a
    /// thousand messages must get the rest next time (measured before: 983
    /// of 1,000 lost). Stream management acks (XEP-0198) would let the
    /// server delete each one as soon as the client confirms it.
    pub(super) async fn deliver_offline(&mut self) -> Result<(), End> {
        let user = self.user.clone();
        let shared = self.shared.clone();
        // Ids only, claimed in the same storage call: another session of
        // the account may be delivering some right now, and each goes to one
        // session at a time. A session that goes unavailable and available
        // again finds its own claimed and reads no stanza twice (reading a
        // thousand 64 KB messages at every presence would stall the one
        // database connection for everyone).
        let ids = self
            .db(move |c| Ok(shared.claim_offline(storage::offline_ids(c, &user)?)))
            .await?;
        let mut unsendable = Vec::new();
        let mut left: &[i64] = &ids;
        'batches: while !left.is_empty() {
            let (batch, rest) = left.split_at(left.len().min(OFFLINE_BATCH));
            left = rest;
            let wanted = batch.to_vec();
            let msgs = match self.db(move |c| storage::offline_stanzas(c, &wanted)).await {
                Ok(m) => m,
                Err(end) => {
                    // Not delivered: free for the next session.
                    let from = ids.len() - left.len() - batch.len();
                    self.shared.release_offline(&ids[from..]);
                    return Err(end);
                }
            };
            for (id, xml) in msgs {
                let deadline = tokio::time::Instant::now() + super::router::STALL_TIMEOUT;
                match self.tx.send_until(Arc::from(xml), deadline).await {
                    Delivery::Queued => self.offline_delivered.push(id),
                    // Stored before the stanza limit was lowered: it can
                    // never be delivered, and must not hold back the rest.
                    Delivery::TooLarge => {
                        tracing::warn!(jid = %self.jid, id, "dropped a stored message longer than the stanza limit");
                        unsendable.push(id);
                    }
                    Delivery::Offline | Delivery::Overflow => {
                        // The client stopped reading or left: the rest stays
                        // stored for its next session.
                        let pos = ids.iter().position(|x| *x == id).unwrap_or(0);
                        self.shared.release_offline(&ids[pos..]);
                        super::router::Router::overflowed(&self.tx, &self.handle.kill);
                        break 'batches;
                    }
                }
            }
        }
        if !unsendable.is_empty() {
            let shared = self.shared.clone();
            self.db(move |c| {
                storage::delete_offline(c, &unsendable)?;
                shared.release_offline(&unsendable);
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    async fn iq(&mut self, el: Element, to: Option<Jid>) -> Result<(), End> {
        let iq = match Iq::from_element(&el) {
            Ok(iq) => iq,
            Err(e) => {
                self.bounce(&el, e.condition(), &e.to_string());
                return Ok(());
            }
        };
        let request = matches!(iq.kind, IqType::Get | IqType::Set);
        let Some(to) = to else {
            return self.account_iq(&iq).await;
        };
        if to.domain() != self.domain() {
            if request {
                self.iq_error(
                    &iq,
                    StanzaErrorCondition::RemoteServerNotFound,
                    "this server does not federate",
                );
            }
            return Ok(());
        }
        let Some(user) = to.local() else {
            if to.resource().is_none() {
                self.server_iq(&iq).await?;
            } else if request {
                self.iq_error(
                    &iq,
                    StanzaErrorCondition::ServiceUnavailable,
                    "no such service",
                );
            }
            return Ok(());
        };
        if to.is_bare() {
            if to == self.bare {
                return self.account_iq(&iq).await;
            }
            if request {
                self.other_account_iq(&iq, user.to_string()).await?;
            }
            return Ok(());
        }
        let res = to.resource().unwrap_or_default();
        let xml: Arc<str> = Arc::from(el.to_xml());
        if self.shared.router.send_to_resource(user, res, &xml) != Delivery::Queued && request {
            self.iq_error(
                &iq,
                StanzaErrorCondition::ServiceUnavailable,
                "that resource is not online",
            );
        }
        Ok(())
    }

    fn payload_is(iq: &Iq, name: &str, namespace: &str) -> bool {
        iq.payload.as_ref().is_some_and(|p| p.is(name, namespace))
    }

    /// An iq to the server itself.
    async fn server_iq(&mut self, iq: &Iq) -> Result<(), End> {
        let get = iq.kind == IqType::Get;
        let set = iq.kind == IqType::Set;
        if get && Self::payload_is(iq, "query", ns::DISCO_INFO) {
            let mut q = Element::new("query", ns::DISCO_INFO).child(
                Element::new("identity", ns::DISCO_INFO)
                    .attr("category", "server")
                    .attr("type", "im")
                    .attr("name", SOFTWARE_NAME),
            );
            for f in [
                ns::DISCO_INFO,
                ns::DISCO_ITEMS,
                ns::PING,
                ns::VERSION,
                ns::REGISTER,
                ns::ROSTER,
                ns::SEARCH,
                ns::VCARD,
                "msgoffline",
            ] {
                q = q.child(Element::new("feature", ns::DISCO_INFO).attr("var", f));
            }
            self.iq_result(iq, Some(q));
        } else if get
            && Self::payload_is(iq, "query", ns::DISCO_ITEMS)
            && iq.payload.as_ref().and_then(|p| p.get_attr("node"))
                == Some(protocol::service::ONLINE_NODE)
        {
            self.online_items(iq);
        } else if Self::payload_is(iq, "query", ns::SEARCH) {
            return self.search_iq(iq).await;
        } else if get && Self::payload_is(iq, "query", ns::DISCO_ITEMS) {
            let items = Element::new("query", ns::DISCO_ITEMS).child(
                Element::new("item", ns::DISCO_ITEMS)
                    .attr("jid", self.muc_domain())
                    .attr("name", "Chat rooms"),
            );
            self.iq_result(iq, Some(items));
        } else if get && Self::payload_is(iq, "ping", ns::PING) {
            self.iq_result(iq, None);
        } else if get && Self::payload_is(iq, "query", ns::VERSION) {
            let q = Element::new("query", ns::VERSION)
                .text_child("name", ns::VERSION, SOFTWARE_NAME)
                .text_child("version", ns::VERSION, env!("CARGO_PKG_VERSION"));
            self.iq_result(iq, Some(q));
        } else if set && Self::payload_is(iq, "session", ns::SESSION) {
            self.iq_result(iq, None);
        } else if Self::payload_is(iq, "query", ns::REGISTER) {
            return self.register_iq(iq).await;
        } else if matches!(iq.kind, IqType::Get | IqType::Set) {
            self.iq_error(
                iq,
                StanzaErrorCondition::ServiceUnavailable,
                "not supported",
            );
        }
        Ok(())
    }

    /// An iq with no `to`, or to the user's own bare JID: the server answers
    /// on behalf of the account.
    async fn account_iq(&mut self, iq: &Iq) -> Result<(), End> {
        let get = iq.kind == IqType::Get;
        if Self::payload_is(iq, "query", ns::ROSTER) {
            return self.roster_iq(iq).await;
        }
        if Self::payload_is(iq, "query", ns::REGISTER) {
            return self.register_iq(iq).await;
        }
        if Self::payload_is(iq, "vCard", ns::VCARD) {
            return match iq.kind {
                IqType::Get => self.vcard_get(iq, self.user.clone()).await,
                IqType::Set => self.vcard_set(iq).await,
                _ => Ok(()),
            };
        }
        if get && Self::payload_is(iq, "query", ns::DISCO_INFO) {
            self.iq_result(iq, Some(account_disco()));
            return Ok(());
        }
        if get && Self::payload_is(iq, "query", ns::DISCO_ITEMS) {
            self.iq_result(iq, Some(Element::new("query", ns::DISCO_ITEMS)));
            return Ok(());
        }
        if Self::payload_is(iq, "ping", ns::PING) || Self::payload_is(iq, "session", ns::SESSION) {
            self.iq_result(iq, None);
            return Ok(());
        }
        if iq.to.is_none() && !matches!(iq.kind, IqType::Get | IqType::Set) {
            // A client's answer to a roster push: nothing to do.
            return Ok(());
        }
        if matches!(iq.kind, IqType::Get | IqType::Set) {
            self.iq_error(
                iq,
                StanzaErrorCondition::ServiceUnavailable,
                "not supported",
            );
        }
        Ok(())
    }

    /// An iq to another user's bare JID, answered by the server on that
    /// account's behalf (RFC 6121 8.5.2.1.3 and XEP-0030 for accounts).
    async fn other_account_iq(&mut self, iq: &Iq, user: String) -> Result<(), End> {
        let u = user.clone();
        let exists = self.shared.router.is_online(&user)
            || self.db(move |c| storage::account_exists(c, &u)).await?;
        if !exists {
            self.iq_error(iq, StanzaErrorCondition::ServiceUnavailable, "no such user");
        } else if iq.kind == IqType::Get && Self::payload_is(iq, "query", ns::DISCO_INFO) {
            self.iq_result(iq, Some(account_disco()));
        } else if iq.kind == IqType::Get && Self::payload_is(iq, "vCard", ns::VCARD) {
            // Anyone's public profile, answered by the server for them.
            return self.vcard_get(iq, user).await;
        } else {
            self.iq_error(
                iq,
                StanzaErrorCondition::ServiceUnavailable,
                "not supported",
            );
        }
        Ok(())
    }

    /// XEP-0077 after authentication: show registration, change the
    /// password, or remove the account.
    async fn register_iq(&mut self, iq: &Iq) -> Result<(), End> {
        let q = iq
            .payload
            .clone()
            .unwrap_or_else(|| Element::new("query", ns::REGISTER));
        match iq.kind {
            IqType::Get => {
                let form = Element::new("query", ns::REGISTER)
                    .child(Element::new("registered", ns::REGISTER))
                    .text_child("username", ns::REGISTER, self.user.clone());
                self.iq_result(iq, Some(form));
                Ok(())
            }
            IqType::Set if q.has_child("remove", ns::REGISTER) => self.remove_account(iq).await,
            IqType::Set => {
                let username = q.child_text("username", ns::REGISTER).unwrap_or_default();
                let password = q.child_text("password", ns::REGISTER).unwrap_or_default();
                if username.to_lowercase() != self.user {
                    self.iq_error(
                        iq,
                        StanzaErrorCondition::NotAuthorized,
                        "you can only change your own password",
                    );
                    return Ok(());
                }
                let creds = match super::new_credentials(password).await {
                    Ok(c) => c,
                    Err(super::NewPasswordError::Unacceptable) => {
                        self.iq_error(
                            iq,
                            StanzaErrorCondition::NotAcceptable,
                            super::PASSWORD_RULE,
                        );
                        return Ok(());
                    }
                    Err(super::NewPasswordError::HashingFailed) => {
                        return Err(Some((
                            StreamErrorCondition::InternalServerError,
                            "hashing failed".into(),
                        )));
                    }
                };
                let user = self.user.clone();
                self.db(move |c| storage::set_credentials(c, &user, &creds))
                    .await?;
                tracing::info!(jid = %self.jid, "password changed");
                self.iq_result(iq, None);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn remove_account(&mut self, iq: &Iq) -> Result<(), End> {
        let user = self.user.clone();
        let bare = self.bare.to_string();
        let owners = self
            .db(move |c| storage::delete_account(c, &user, &bare))
            .await?;
        tracing::info!(jid = %self.jid, "account removed");
        self.iq_result(iq, None);
        // Everyone who had us in their roster sees us go.
        let unavailable: Arc<str> = Arc::from(
            Element::new("presence", ns::CLIENT)
                .attr("from", self.jid.to_string())
                .attr("type", "unavailable")
                .to_xml(),
        );
        for owner in owners {
            self.push_roster_removal(&owner, &self.bare.to_string());
            self.shared
                .router
                .send_to_available(&owner, &unavailable, None, None);
        }
        self.shared.router.close_sessions(
            &self.user,
            self.handle.id,
            StreamErrorCondition::NotAuthorized,
            "account removed",
        );
        // The session itself has nothing left to be: close the stream.
        Err(None)
    }
}

fn account_disco() -> Element {
    Element::new("query", ns::DISCO_INFO).child(
        Element::new("identity", ns::DISCO_INFO)
            .attr("category", "account")
            .attr("type", "registered"),
    )
}

/// A fresh id for server-generated stanzas (roster pushes).
pub(super) fn push_id() -> String {
    format!("push-{}", random_id(6))
}
