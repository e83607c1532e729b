//! The signed-in [`Client`]: what a front end calls to send stanzas and iq
//! requests, manage contacts and presence, take events, and sign out.
//!
//! The feature APIs are further `impl Client` blocks, one file each:
//! `rooms`, `files`, `directory`. A `Client` is built by `connect`, which
//! starts the reader and writer tasks it talks to through queues.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::sasl::Mechanism;
use protocol::stanza::{Iq, IqType, Message, Presence, PresenceType, Show};
use protocol::{Element, Jid, ns, stream};
use tokio::sync::{mpsc, oneshot};

use super::error::{ClientError, Lost};
use super::event::{ChatState, ClientEvent, EventReceiver, RosterItem, WeakEventSender};
use super::limits::{IQ_TIMEOUT, MAX_PAGES};
use super::omemo::jobs::Job;
use super::outbound::queue;
use super::state::{Pending, State, lock};
use crate::util::random_id;

/// A signed-in client.
pub struct Client {
    pub(super) jid: Jid,
    pub(super) link: super::state::Link,
    /// Bytes dropped at the STARTTLS switch (see [`Client::discarded_at_switch`]).
    pub(super) discarded_at_switch: usize,
    /// The server's stanza limit: nothing larger is sent.
    pub(super) max_stanza: usize,
    pub(super) out: mpsc::Sender<String>,
    pub(super) pending: Pending,
    pub(super) state: Arc<Mutex<State>>,
    pub(super) events: EventReceiver,
    /// For events that API calls produce (file progress); weak, so the
    /// event stream still ends when the reader does.
    pub(super) events_tx: WeakEventSender,
    pub(super) writer: tokio::task::JoinHandle<()>,
    pub(super) closed: Option<oneshot::Receiver<()>>,
    /// Stream management's record of what the server has not acknowledged.
    pub(super) sm: Option<Arc<super::sm::Sm>>,
    /// End-to-end encryption (OMEMO), when on.
    pub(super) e2e: Option<E2eHandle>,
}

/// The client's end of its OMEMO worker.
pub(crate) struct E2eHandle {
    pub(crate) engine: Arc<Mutex<super::omemo::engine::Engine>>,
    pub(crate) jobs: mpsc::Sender<Job>,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

/// A chat message asking for a delivery receipt, in the clear.
pub(crate) fn plain_chat(to: &Jid, id: &str, body: &str) -> Element {
    let mut m = Message::chat(to.clone(), body);
    m.id = Some(id.to_string());
    m.payloads.push(Element::new("request", ns::RECEIPTS));
    // XEP-0085: a client that sends chat states marks its messages
    // `active` (the user is in the conversation).
    m.payloads.push(Element::new("active", ns::CHATSTATES));
    m.to_element()
}

/// Sends serialized stanzas on a client's connection from any task (the
/// load generator's senders); cheap to clone.
#[derive(Clone)]
pub struct RawSender(pub(super) mpsc::Sender<String>);

impl RawSender {
    /// Queues one serialized stanza, waiting while the queue to the server
    /// is full (a load generator measures the server, so it waits for it).
    pub async fn send_xml(&self, xml: String) -> Result<(), ClientError> {
        self.0
            .send(xml)
            .await
            .map_err(|_| Lost::AlreadyClosed.into())
    }
}

/// Sends iq requests and matches their answers; cheap to clone.
#[derive(Clone)]
pub(crate) struct IqSender {
    out: mpsc::Sender<String>,
    pending: Pending,
    max_stanza: usize,
}

impl IqSender {
    pub(crate) fn new(out: mpsc::Sender<String>, pending: Pending, max_stanza: usize) -> IqSender {
        IqSender {
            out,
            pending,
            max_stanza,
        }
    }

    /// Gets a whole list a page at a time (Result Set Management,
    /// XEP-0059): `query` is asked for again with `<after/>` the last key
    /// of each page, until a page comes back empty, without a `<last/>`, or
    /// the count the server gave is reached. Returns the items (every child
    /// of the answers' queries but `<set/>`) and the count, if given. A
    /// server without paging answers once, with everything.
    pub(crate) fn iq_pages(
        &self,
        kind: IqType,
        to: Option<Jid>,
        query: Element,
        what: &str,
    ) -> impl Future<Output = Result<(Vec<Element>, Option<usize>), ClientError>> + Send + 'static + use<>
    {
        let this = self.clone();
        let what = what.to_string();
        async move {
            let mut items = Vec::new();
            let mut count = None;
            let mut after: Option<String> = None;
            for _ in 0..MAX_PAGES {
                let mut q = query.clone();
                if let Some(a) = &after {
                    q = q.child(
                        Element::new("set", ns::RSM)
                            .text_child("max", ns::RSM, protocol::rsm::MAX_PAGE_ITEMS.to_string())
                            .text_child("after", ns::RSM, a.clone()),
                    );
                }
                let iq = this.iq(kind, to.clone(), q, &what).await?;
                let Some(page) = iq.payload else { break };
                let (last, total) = protocol::rsm::parse_reply(&page);
                count = total.or(count);
                let before = items.len();
                items.extend(page.elements().filter(|e| !e.is("set", ns::RSM)).cloned());
                let done = items.len() == before
                    || last.is_none()
                    || last == after
                    || count.is_some_and(|c| items.len() >= c);
                if done {
                    break;
                }
                after = last;
            }
            Ok((items, count))
        }
    }

    /// Unavailable presence, then the end of our stream.
    pub(crate) fn close_stream(&self) {
        let _ = self.send(&Presence::new(PresenceType::Unavailable).to_element());
        let _ = self.out.try_send(stream::CLOSE.to_string());
    }

    /// Sends a stanza (not a request: nothing is waited for).
    pub(crate) fn send(&self, el: &Element) -> Result<(), ClientError> {
        queue(&self.out, el.to_xml(), self.max_stanza)
    }

    /// See [`Client::iq`].
    pub(crate) fn iq(
        &self,
        kind: IqType,
        to: Option<Jid>,
        payload: Element,
        what: &str,
    ) -> impl Future<Output = Result<Iq, ClientError>> + Send + 'static + use<> {
        self.iq_timeout(kind, to, payload, what, IQ_TIMEOUT)
    }

    /// [`IqSender::iq`] with its own time limit.
    pub(crate) fn iq_timeout(
        &self,
        kind: IqType,
        to: Option<Jid>,
        payload: Element,
        what: &str,
        limit: Duration,
    ) -> impl Future<Output = Result<Iq, ClientError>> + Send + 'static + use<> {
        let id = format!("{}-{}", payload.name, random_id(4));
        let iq = Iq::request(kind, id.clone(), to, payload);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id.clone(), tx);
        let sent = queue(&self.out, iq.to_element().to_xml(), self.max_stanza);
        let pending = self.pending.clone();
        let what = what.to_string();
        async move {
            sent?;
            let answer = tokio::time::timeout(limit, rx).await;
            lock(&pending).remove(&id);
            let el = match answer {
                Ok(Ok(el)) => el,
                Ok(Err(_)) => {
                    return Err(Lost::ClosedWhileWaiting.into());
                }
                Err(_) => return Err(ClientError::Timeout(what)),
            };
            let iq = Iq::from_element(&el).map_err(|e| ClientError::Unexpected(e.to_string()))?;
            if iq.kind == IqType::Error {
                return Err(ClientError::Refused {
                    what,
                    condition: iq
                        .error_condition()
                        .map_or("undefined-condition".into(), |c| c.to_string()),
                    text: iq.error.as_ref().and_then(protocol::error::error_text),
                });
            }
            Ok(iq)
        }
    }
}

impl Client {
    /// The bound full JID.
    pub fn jid(&self) -> &Jid {
        &self.jid
    }

    /// The SASL mechanism used to sign in.
    pub fn mechanism(&self) -> Mechanism {
        self.link.mechanism
    }

    /// Whether the stream is encrypted.
    pub fn is_secure(&self) -> bool {
        self.link.tls.is_some()
    }

    /// The messages with a body that the server never acknowledged
    /// (stream management), oldest first: after the session ended without
    /// being resumed, what a front end must send again on a new session
    /// (or say was not sent), since nobody else will. Empty without stream
    /// management, which cannot tell.
    pub fn unacknowledged_messages(&self) -> Vec<Element> {
        let Some(sm) = &self.sm else {
            return Vec::new();
        };
        sm.kept()
            .iter()
            .filter(|xml| xml.starts_with("<message"))
            // Our own serialized stanzas, read back.
            .filter_map(|xml| protocol::parser::parse_element(xml))
            .filter(|el| el.get_child("body", ns::CLIENT).is_some())
            .collect()
    }

    /// What protects the link to the server, as it was signed in (a
    /// resumed session goes on with the same transport and settings).
    pub fn link(&self) -> &super::state::Link {
        &self.link
    }

    /// How many bytes arrived after the server's `<proceed/>` and before
    /// TLS, and were dropped unread: anything there was not protected by
    /// TLS, so an honest server sends nothing (STARTTLS response injection
    /// puts a forged stanza there).
    pub fn discarded_at_switch(&self) -> usize {
        self.discarded_at_switch
    }

    /// Sends a stanza.
    pub fn send(&self, el: &Element) -> Result<(), ClientError> {
        queue(&self.out, el.to_xml(), self.max_stanza)
    }

    /// Sends an iq request and waits for its answer. An error answer becomes
    /// [`ClientError::Refused`] naming `what`.
    pub fn iq(
        &self,
        kind: IqType,
        to: Option<Jid>,
        payload: Element,
        what: &str,
    ) -> impl Future<Output = Result<Iq, ClientError>> + Send + 'static {
        self.iq_sender().iq(kind, to, payload, what)
    }

    /// A handle that sends stanzas from another task.
    pub fn raw_sender(&self) -> RawSender {
        RawSender(self.out.clone())
    }

    /// A handle that sends iq requests from inside a spawned future, after
    /// the `&self` borrow has ended.
    pub(crate) fn iq_sender(&self) -> IqSender {
        IqSender {
            out: self.out.clone(),
            pending: self.pending.clone(),
            max_stanza: self.max_stanza,
        }
    }

    /// Sends a chat message asking for a delivery receipt; returns its id.
    ///
    /// When the conversation is end to end (OMEMO), the message goes to
    /// the worker, which encrypts it (fetching the contact's keys first if
    /// needed) and sends it; if that fails, a [`ClientEvent::NotSent`]
    /// with this id says why, and nothing was sent.
    pub fn send_message(&self, to: &Jid, body: &str) -> Result<String, ClientError> {
        let id = format!("m-{}", random_id(6));
        if let Some(e2e) = self.e2e.as_ref().filter(|_| self.e2e_for(to)) {
            e2e.jobs
                .try_send(Job::Send {
                    to: to.clone(),
                    id: id.clone(),
                    body: body.to_string(),
                })
                .map_err(|_| ClientError::E2eBusy)?;
            return Ok(id);
        }
        self.send(&plain_chat(to, &id, body))?;
        Ok(id)
    }

    /// Asks the server's archive (XEP-0313) for the last `max` messages
    /// with `with`, or of room `with` when it is a room we are in (the
    /// room's own archive); they arrive as [`ClientEvent::Archived`] events
    /// before this completes. Returns whether that was all there is.
    pub fn history(
        &self,
        with: &Jid,
        max: usize,
    ) -> impl Future<Output = Result<bool, ClientError>> + Send + 'static {
        let room = with.is_bare() && lock(&self.state).rooms.get(with).is_some_and(|r| r.joined);
        let mut form = Element::new("x", ns::DATA_FORMS)
            .attr("type", "submit")
            .child(
                Element::new("field", ns::DATA_FORMS)
                    .attr("var", "FORM_TYPE")
                    .attr("type", "hidden")
                    .child(Element::new("value", ns::DATA_FORMS).text(ns::MAM)),
            );
        if !room {
            form = form.child(
                Element::new("field", ns::DATA_FORMS)
                    .attr("var", "with")
                    .child(Element::new("value", ns::DATA_FORMS).text(with.to_bare().to_string())),
            );
        }
        let query = Element::new("query", ns::MAM)
            .attr("queryid", format!("h-{}", random_id(4)))
            .child(form)
            .child(
                // The last page: the `max` most recent.
                Element::new("set", ns::RSM)
                    .child(Element::new("max", ns::RSM).text(max.to_string()))
                    .child(Element::new("before", ns::RSM)),
            );
        let archive = room.then(|| with.clone());
        let fut = self.iq(IqType::Set, archive, query, "message archive");
        async move {
            let iq = fut.await?;
            Ok(iq.payload.as_ref().and_then(|f| f.get_attr("complete")) == Some("true"))
        }
    }

    /// Asks the server for message carbons (XEP-0280): copies of what this
    /// account's other sessions send and receive, so a conversation looks
    /// the same on every device.
    pub fn enable_carbons(&self) -> impl Future<Output = Result<(), ClientError>> + Send + 'static {
        let fut = self.iq(
            IqType::Set,
            None,
            Element::new("enable", ns::CARBONS),
            "message carbons",
        );
        async move { fut.await.map(|_| ()) }
    }

    /// Tells `to` we are typing (`composing`) or stopped (`paused`), or
    /// another chat state of XEP-0085: a message without a body, which the
    /// server should not keep for later (`no-store`). Under TLS its size
    /// and time still show: lab 10 reads them.
    pub fn send_chat_state(&self, to: &Jid, state: ChatState) -> Result<(), ClientError> {
        let el = Element::new("message", ns::CLIENT)
            .attr("type", "chat")
            .attr("to", to.to_string())
            .child(Element::new(state.name(), ns::CHATSTATES))
            .child(Element::new("no-store", ns::HINTS));
        self.send(&el)
    }

    /// Sets our presence (available, with optional show and status).
    pub fn set_presence(
        &self,
        show: Option<Show>,
        status: Option<&str>,
    ) -> Result<(), ClientError> {
        let mut p = Presence::new(PresenceType::Available);
        p.show = show;
        p.status = status.map(str::to_string);
        // What this client can do (XEP-0115), so that the server sends it
        // the PEP notifications it wants (contacts' nicknames).
        let mut el = p.to_element();
        el.children
            .push(protocol::Node::Element(super::caps::element()));
        self.send(&el)
    }

    /// Publishes our nickname (XEP-0172) over PEP: contacts whose clients
    /// want it are sent it, now and when they sign in.
    pub fn set_nick(
        &self,
        nick: &str,
    ) -> impl Future<Output = Result<(), ClientError>> + Send + 'static {
        let publish = Element::new("pubsub", ns::PUBSUB).child(
            Element::new("publish", ns::PUBSUB)
                .attr("node", super::caps::NICK)
                .child(
                    Element::new("item", ns::PUBSUB)
                        .attr("id", "current")
                        .child(Element::new("nick", super::caps::NICK).text(nick)),
                ),
        );
        let fut = self.iq(IqType::Set, None, publish, "publishing the nickname");
        async move { fut.await.map(|_| ()) }
    }

    fn send_subscription(&self, to: &Jid, kind: PresenceType) -> Result<(), ClientError> {
        let mut p = Presence::new(kind);
        p.to = Some(to.to_bare());
        self.send(&p.to_element())
    }

    /// Fetches the roster.
    pub fn roster(
        &self,
    ) -> impl Future<Output = Result<Vec<RosterItem>, ClientError>> + Send + 'static {
        let fut = self.iq(
            IqType::Get,
            None,
            Element::new("query", ns::ROSTER),
            "roster request",
        );
        let state = self.state.clone();
        async move {
            let iq = fut.await?;
            let items: Vec<RosterItem> = iq
                .payload
                .iter()
                .flat_map(|q| q.elements())
                .filter_map(RosterItem::from_element)
                .collect();
            let mut st = lock(&state);
            st.roster = items.iter().map(|i| (i.jid.clone(), i.clone())).collect();
            Ok(items)
        }
    }

    /// Adds a contact: roster item, subscription request, and approval of
    /// their request if they already asked (so two users who add each other
    /// end up with a mutual subscription).
    pub fn add_contact(
        &self,
        jid: &Jid,
    ) -> impl Future<Output = Result<(), ClientError>> + Send + 'static {
        let bare = jid.to_bare();
        let item = Element::new("item", ns::ROSTER).attr("jid", bare.to_string());
        let fut = self.iq(
            IqType::Set,
            None,
            Element::new("query", ns::ROSTER).child(item),
            "adding a contact",
        );
        let sub = self.send_subscription(&bare, PresenceType::Subscribe);
        let asked = {
            let mut st = lock(&self.state);
            let asked = st.requests.contains(&bare);
            st.requests.retain(|r| r != &bare);
            st.roster.entry(bare.clone()).or_insert(RosterItem {
                jid: bare.clone(),
                name: None,
                subscription: "none".into(),
                ask: true,
            });
            asked
        };
        let approve = if asked {
            self.send_subscription(&bare, PresenceType::Subscribed)
        } else {
            Ok(())
        };
        async move {
            sub?;
            approve?;
            fut.await.map(|_| ())
        }
    }

    /// Removes a contact (and both subscriptions).
    pub fn remove_contact(
        &self,
        jid: &Jid,
    ) -> impl Future<Output = Result<(), ClientError>> + Send + 'static {
        let item = Element::new("item", ns::ROSTER)
            .attr("jid", jid.to_bare().to_string())
            .attr("subscription", "remove");
        lock(&self.state).roster.remove(&jid.to_bare());
        let fut = self.iq(
            IqType::Set,
            None,
            Element::new("query", ns::ROSTER).child(item),
            "removing a contact",
        );
        async move { fut.await.map(|_| ()) }
    }

    /// Deletes the account on the server (XEP-0077 remove).
    pub fn unregister(&self) -> impl Future<Output = Result<(), ClientError>> + Send + 'static {
        let q = Element::new("query", ns::REGISTER).child(Element::new("remove", ns::REGISTER));
        let fut = self.iq(IqType::Set, None, q, "deleting the account");
        let state = self.state.clone();
        async move {
            match fut.await {
                Ok(_) => Ok(()),
                // XEP-0077 §3.2 lets the server answer a removal by closing
                // the stream with not-authorized (Prosody does) instead of,
                // or before, the iq result.
                Err(ClientError::ConnectionLost(_))
                    if lock(&state).stream_error.as_deref() == Some("not-authorized") =>
                {
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
    }

    /// Contacts' resources currently online, with show and status.
    pub fn online_contacts(&self) -> Vec<(Jid, Option<Show>, Option<String>)> {
        let st = lock(&self.state);
        let mut v: Vec<_> = st
            .online
            .iter()
            .map(|(j, s, t)| (j.clone(), s, t.cloned()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The next event; `None` once the connection is gone and every event
    /// was taken.
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    /// Sends unavailable presence and closes our side of the stream. Events
    /// keep arriving until the server closes its side
    /// ([`ClientEvent::Disconnected`]).
    ///
    /// With end-to-end encryption on, the close waits its turn behind the
    /// messages the OMEMO worker is still encrypting: they go out first.
    pub fn start_close(&self) {
        if let Some(e2e) = &self.e2e
            && e2e.jobs.try_send(Job::Close).is_ok()
        {
            return;
        }
        self.iq_sender().close_stream();
    }

    /// Signs out: unavailable presence, close the stream, and wait (bounded)
    /// for the server to close its side, which means it has handled every
    /// stanza we sent.
    pub async fn close(mut self) {
        self.start_close();
        if let Some(closed) = self.closed.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), closed).await;
        }
        if let Some(e2e) = self.e2e.take() {
            drop(e2e.jobs);
            e2e.task.abort();
        }
        drop(self.out);
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.writer).await;
    }
}
