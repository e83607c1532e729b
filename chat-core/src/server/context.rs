//! The session context: one bound session's state, and the ways a handler
//! answers through it.
//!
//! Every stanza handler in the server takes a [`Session`] and returns
//! [`Handled`]. The handlers never write to the socket: they queue XML on
//! the session's own outbound queue ([`Session::to_self`] and the reply
//! helpers built on it) or hand it to the [`Router`] for other sessions.
//! A handler that cannot go on says why with a [`Failure`].

use std::sync::Arc;

use protocol::stanza::{Iq, error_reply};
use protocol::{Element, Jid, StanzaErrorCondition, StreamErrorCondition, ns, rsm};

use super::outbound::{Delivery, OutboundTx};
use super::router::{Router, SessionHandle};
use super::shared::Shared;
use crate::util::random_id;

/// How a session's stream ends.
#[derive(Debug)]
pub(crate) enum Close {
    /// With the closing tag alone: the client closed its stream first, or
    /// the session has nothing left to be (its account was removed).
    Clean,
    /// With this stream error first (RFC 6120 4.9).
    Error(StreamErrorCondition, String),
}

/// Why a handler stopped before it finished a stanza.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A storage call failed (a full disk, say). It costs this stanza, not
    /// the session: the sender hears it was not kept and can try again.
    Storage,
    /// The session must end.
    Close(Close),
}

/// What every stanza handler returns.
pub(crate) type Handled = Result<(), Failure>;

/// A bound session's state: who it is, and where its answers go. Every
/// handler module (messages, presence, roster, rooms, directory, account)
/// receives it from [`super::dispatch`].
pub(crate) struct Session {
    /// State every session shares: settings, storage, router, rooms.
    pub(super) shared: Arc<Shared>,
    /// The account's user name.
    pub(super) user: String,
    /// The bound full JID.
    pub(super) jid: Jid,
    /// The account's bare JID.
    pub(super) bare: Jid,
    /// This session's id and kill switch in the router.
    pub(super) handle: SessionHandle,
    /// The session's own outbound queue, read by its writer task.
    pub(super) tx: OutboundTx,
    /// Offline messages queued to this session, deleted from storage once
    /// it ends cleanly (see [`super::session::run`]).
    pub(super) offline_delivered: Vec<i64>,
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
            Delivery::Overflow => Router::overflowed(&self.tx, &self.handle.kill),
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

    /// A storage call. A failure never pretends the write happened: it
    /// becomes [`Failure::Storage`], which costs the stanza being handled
    /// (its sender gets `resource-constraint`), not the session.
    pub(super) async fn db<T, F>(&self, f: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.shared.storage.run(f).await.map_err(|e| {
            tracing::error!("{e}");
            Failure::Storage
        })
    }

    /// The MUC service's domain.
    pub(super) fn muc_domain(&self) -> &str {
        &self.shared.config.muc_domain
    }

    /// Answers `iq` with one page of a list: `items` are the candidates
    /// after the requester's `<after/>` key, in key order; `count` is the
    /// whole list's length and `index` the position of the first candidate
    /// in it, when known. The page ends at the requested size or where the
    /// next item would push the answer past the stanza limit, and its
    /// `<set/>` says where it ended, so the requester asks for the next.
    pub(super) fn send_page(
        &self,
        iq: &Iq,
        query: Element,
        items: Vec<(String, Element)>,
        count: usize,
        index: Option<usize>,
    ) {
        let request = iq
            .payload
            .as_ref()
            .map(rsm::Request::from_query)
            .unwrap_or_default();
        // What the answer costs without its items: the envelope and the
        // largest `<set/>` this page could carry.
        let longest_key = items
            .iter()
            .take(request.max)
            .map(|(k, _)| protocol::element::escape(k).len())
            .max()
            .unwrap_or(0);
        let envelope = iq
            .result(Some(query.clone().child(rsm::reply_set(
                Some(("", usize::MAX)),
                Some(""),
                count,
            ))))
            .to_element()
            .to_xml()
            .len()
            + 2 * longest_key;
        let mut size = envelope;
        let mut page = query.clone();
        let mut first: Option<String> = None;
        let mut last: Option<String> = None;
        for (key, item) in items.into_iter().take(request.max) {
            let len = item.to_xml_in(&query.ns).len();
            if size + len > self.max_stanza() {
                break;
            }
            size += len;
            first.get_or_insert_with(|| key.clone());
            last = Some(key);
            page = page.child(item);
        }
        let first = first.as_deref().map(|k| (k, index.unwrap_or(0)));
        let mut set = rsm::reply_set(first, last.as_deref(), count);
        if index.is_none()
            && let Some(f) = set.get_child_mut("first", ns::RSM)
        {
            f.remove_attr("index");
        }
        self.iq_result(iq, Some(page.child(set)));
    }
}

/// A fresh id for server-generated stanzas (roster pushes).
pub(super) fn push_id() -> String {
    format!("push-{}", random_id(6))
}
