//! Stream negotiation (RFC 6120 4 to 7), from the first byte to a bound
//! resource: stream header, STARTTLS, SASL, in-band registration (XEP-0077)
//! and resource binding. The whole phase runs under the authentication
//! deadline.
//!
//! - [`mod@self`]: the negotiation loop, stream features, STARTTLS and
//!   resource binding.
//! - [`conn`]: the connection under negotiation and how steps answer on it.
//! - [`sasl`]: SASL authentication, PLAIN and SCRAM.
//! - [`register`]: registration before sign-in.

mod conn;
mod register;
mod sasl;

use std::net::SocketAddr;
use std::sync::Arc;

use protocol::parser::Event;
use protocol::stanza::{Iq, IqType};
use protocol::{Element, Jid, StanzaErrorCondition, StreamErrorCondition, ns, stream};
use tokio::io::AsyncWriteExt;

use super::outbound::{self, OutboundRx, OutboundTx};
use super::router::{BindError, MAX_SESSIONS_PER_ACCOUNT, SessionHandle};
use super::shared::Shared;
use super::sm::{self, Resumption};
use crate::transport::{BoxStream, Security, ServerTransport, StartTls};
use crate::util::random_id;
use crate::xmpp_io::{XmppReader, write_str};
use conn::{Conn, Unbound, server_header};

/// What negotiation ended with.
pub enum Negotiated {
    /// A new session, bound.
    Bound(Box<Bound>),
    /// A session resumed (XEP-0198): this connection, for the session
    /// that waits for it.
    Resume(tokio::sync::mpsc::Sender<Resumption>, Box<Resumption>),
}

/// A session that finished negotiation.
pub struct Bound {
    /// The (possibly upgraded) stream.
    pub stream: BoxStream,
    /// The parser, with any bytes already read.
    pub reader: XmppReader,
    /// The account's user name.
    pub user: String,
    /// The bound full JID.
    pub jid: Jid,
    /// Lets the router end this session.
    pub handle: SessionHandle,
    /// The session's outbound queue.
    pub tx: OutboundTx,
    /// Its receiving end, for the writer task.
    pub rx: OutboundRx,
}

/// Negotiates a stream; `None` when the connection ended before binding
/// or resuming.
pub async fn negotiate<T: ServerTransport>(
    shared: &Arc<Shared>,
    transport: &T,
    stream: BoxStream,
    security: Security,
    peer: SocketAddr,
) -> Option<Negotiated> {
    let mut n = Conn {
        shared,
        transport,
        stream,
        reader: XmppReader::new(shared.config.limits),
        security,
        peer,
        header_sent: false,
        user: None,
        attempted: None,
        auth_failures: 0,
        bound: None,
        resume: None,
    };
    let outcome = tokio::time::timeout(shared.config.auth_timeout, run(&mut n)).await;
    let end = match outcome {
        Ok(Ok(())) => {
            if let Some((session, h)) = n.resume.take() {
                let r = Resumption {
                    stream: n.stream,
                    reader: n.reader,
                    h,
                    peer: n.peer,
                };
                return Some(Negotiated::Resume(session, Box::new(r)));
            }
            let (jid, handle, tx, rx) = n.bound.take()?;
            return Some(Negotiated::Bound(Box::new(Bound {
                stream: n.stream,
                reader: n.reader,
                user: n.user.unwrap_or_default(),
                jid,
                handle,
                tx,
                rx,
            })));
        }
        Ok(Err(end)) => end,
        Err(_) => Unbound::Error(
            StreamErrorCondition::ConnectionTimeout,
            format!(
                "not authenticated within {} seconds",
                shared.config.auth_timeout.as_secs()
            ),
        ),
    };
    match end {
        Unbound::Closed => {
            let _ = write_str(&mut n.stream, stream::CLOSE).await;
        }
        Unbound::Error(cond, text) => {
            tracing::info!(peer = %n.peer, "stream error {cond}: {text}");
            n.send_error(cond, &text).await;
        }
        Unbound::Failed(e) => {
            tracing::info!(peer = %n.peer, "connection failed: {e}");
        }
    }
    // The bound session (if any) was never handed over: release it.
    if let (Some(user), Some((_, handle, _, _))) = (&n.user, n.bound.take()) {
        shared.router.unbind(user, handle.id);
    }
    let _ = n.stream.shutdown().await;
    None
}

/// Answers a connection we will not serve with a stream error.
pub async fn refuse(mut tcp: tokio::net::TcpStream, domain: &str, cond: StreamErrorCondition) {
    let header = server_header(domain, None);
    let text = format!(
        "{}{}{}",
        header,
        cond.to_element(Some("the server is full, try again later"))
            .to_xml(),
        stream::CLOSE
    );
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        write_str(&mut tcp, &text),
    )
    .await;
    let _ = tcp.shutdown().await;
}

async fn run<T: ServerTransport>(c: &mut Conn<'_, T>) -> Result<(), Unbound> {
    loop {
        let header = match c.reader.next(&mut c.stream).await? {
            Event::StreamOpen(h) => h,
            _ => {
                return Err(Unbound::Error(
                    StreamErrorCondition::NotWellFormed,
                    "expected a stream header".into(),
                ));
            }
        };
        let reply = server_header(c.domain(), None);
        write_str(&mut c.stream, &reply).await?;
        c.header_sent = true;
        if header.default_ns != ns::CLIENT {
            return Err(Unbound::Error(
                StreamErrorCondition::InvalidNamespace,
                "this server only accepts client streams (jabber:client)".into(),
            ));
        }
        let to = header.to.as_deref().map(str::to_lowercase);
        if to.as_deref() != Some(c.domain()) {
            return Err(Unbound::Error(
                StreamErrorCondition::HostUnknown,
                format!(
                    "this server hosts '{}', not '{}'",
                    c.domain(),
                    header.to.as_deref().unwrap_or("")
                ),
            ));
        }
        let features = features(c);
        c.send(&features).await?;
        if stream_loop(c).await? {
            return Ok(());
        }
    }
}

fn features<T: ServerTransport>(c: &Conn<'_, T>) -> Element {
    // The limit the server enforces, announced (XEP-0478) so a client
    // can refuse to send what would cost it its connection. It is also
    // the limit the server keeps for what it sends (see router).
    let limits = Element::new("limits", ns::STREAM_LIMITS).text_child(
        "max-bytes",
        ns::STREAM_LIMITS,
        c.shared.config.limits.max_stanza_bytes.to_string(),
    );
    let mut f = Element::new("features", ns::STREAM).child(limits);
    let starttls = c.transport.starttls();
    if !c.security.is_tls() && starttls != StartTls::Unavailable {
        let mut tls = Element::new("starttls", ns::TLS);
        if starttls == StartTls::Required {
            tls = tls.child(Element::new("required", ns::TLS));
        }
        f = f.child(tls);
    }
    if c.user.is_none() {
        if c.starttls_required_now() {
            // Nothing but STARTTLS until the stream is encrypted: no
            // mechanisms, so no client can be talked into sending a
            // password in the clear.
            return f;
        }
        // On the plaintext twin this offers PLAIN over an unencrypted
        // stream: deliberately weak, it is what lab 1 sniffs. A real
        // server never offers PLAIN without TLS.
        let (mechanisms, binding_types) = sasl::offer(c);
        let mut mechs = Element::new("mechanisms", ns::SASL);
        for m in mechanisms {
            mechs = mechs.text_child("mechanism", ns::SASL, m.name());
        }
        f = f.child(mechs);
        if let Some(types) = binding_types {
            // XEP-0440: which channels a -PLUS mechanism can bind to here.
            let mut cb = Element::new("sasl-channel-binding", ns::SASL_CB);
            for t in types {
                cb = cb.child(Element::new("channel-binding", ns::SASL_CB).attr("type", t.name()));
            }
            f = f.child(cb);
        }
        if c.shared.config.registration {
            f = f.child(Element::new("register", ns::REGISTER_FEATURE));
        }
    } else {
        f = f
            .child(Element::new("bind", ns::BIND))
            .child(
                Element::new("session", ns::SESSION).child(Element::new("optional", ns::SESSION)),
            )
            // Stream management (XEP-0198): enabled after binding, or a
            // dropped session resumed instead of binding.
            .child(Element::new("sm", ns::SM));
    }
    f
}

/// Handles elements until a restart (`Ok(false)`) or a bound resource
/// (`Ok(true)`).
async fn stream_loop<T: ServerTransport>(c: &mut Conn<'_, T>) -> Result<bool, Unbound> {
    loop {
        let el = c.read_element().await?;
        if el.is("starttls", ns::TLS) {
            starttls(c).await?;
            return Ok(false);
        }
        if el.is("auth", ns::SASL) {
            if c.user.is_some() {
                // RFC 6120 6.4.1: no second authentication on a stream.
                return Err(Unbound::Error(
                    StreamErrorCondition::PolicyViolation,
                    "already authenticated".into(),
                ));
            }
            if sasl::authenticate(c, el).await? {
                c.reader.reset();
                return Ok(false);
            }
            continue;
        }
        if el.is("iq", ns::CLIENT) {
            if pre_bind_iq(c, el).await? {
                return Ok(true);
            }
            continue;
        }
        if el.is("resume", ns::SM) && c.user.is_some() {
            if resume(c, &el).await? {
                return Ok(true);
            }
            continue;
        }
        return Err(Unbound::Error(
            StreamErrorCondition::NotAuthorized,
            format!(
                "<{}> is not allowed before authentication and binding",
                el.name
            ),
        ));
    }
}

async fn starttls<T: ServerTransport>(c: &mut Conn<'_, T>) -> Result<(), Unbound> {
    if c.security.is_tls() || c.transport.starttls() == StartTls::Unavailable {
        let failure = Element::new("failure", ns::TLS);
        c.send(&failure).await?;
        return Err(Unbound::Closed);
    }
    c.send(&Element::new("proceed", ns::TLS)).await?;
    let dropped = c.reader.reset_discarding();
    if dropped > 0 {
        tracing::warn!(peer = %c.peer, dropped, "discarded plaintext sent after <starttls/> (command injection attempt)");
    }
    let plain = std::mem::replace(&mut c.stream, Box::new(tokio::io::duplex(1).0));
    match c.transport.upgrade(plain).await {
        Ok((tls, security)) => {
            c.stream = tls;
            c.security = security;
            c.header_sent = false;
            Ok(())
        }
        Err(e) => {
            tracing::info!(peer = %c.peer, "TLS handshake failed: {e}");
            Err(Unbound::Closed)
        }
    }
}

/// Handles an iq before binding. `Ok(true)` once a resource is bound.
async fn pre_bind_iq<T: ServerTransport>(
    c: &mut Conn<'_, T>,
    el: Element,
) -> Result<bool, Unbound> {
    let iq = match Iq::from_element(&el) {
        Ok(iq) => iq,
        Err(e) => {
            if let Some(err) =
                protocol::stanza::error_reply(&el, e.condition(), Some(&e.to_string()))
            {
                c.send(&err).await?;
            }
            return Ok(false);
        }
    };
    let payload_is = |name: &str, ns: &str| iq.payload.as_ref().is_some_and(|p| p.is(name, ns));
    if c.user.is_none() {
        if payload_is("query", ns::REGISTER) {
            register::register(c, &iq).await?;
        } else if matches!(iq.kind, IqType::Get | IqType::Set) {
            c.reply_error(
                &iq,
                StanzaErrorCondition::NotAuthorized,
                "authenticate first",
            )
            .await?;
        }
        return Ok(false);
    }
    if iq.kind == IqType::Set && payload_is("bind", ns::BIND) {
        return bind(c, &iq).await;
    }
    if payload_is("session", ns::SESSION) {
        c.reply(&iq, None).await?;
        return Ok(false);
    }
    if matches!(iq.kind, IqType::Get | IqType::Set) {
        c.reply_error(
            &iq,
            StanzaErrorCondition::NotAllowed,
            "bind a resource first",
        )
        .await?;
    }
    Ok(false)
}

/// `<resume previd='ID' h='N'/>` after authentication (XEP-0198 section
/// 5): `Ok(true)` when a session of this account waits under that id. A
/// made-up id and another account's id get the same `item-not-found`, so
/// the answer says nothing about anyone else's sessions.
async fn resume<T: ServerTransport>(c: &mut Conn<'_, T>, el: &Element) -> Result<bool, Unbound> {
    let user = c.user.clone().unwrap_or_default();
    let h = protocol::sm::h_of(el);
    let session = el
        .get_attr("previd")
        .and_then(|id| c.shared.resumable.claim(id, &user));
    match (session, h) {
        (Some(session), Some(h)) => {
            c.resume = Some((session, h));
            tracing::info!(peer = %c.peer, user, "resuming a session");
            Ok(true)
        }
        (_, None) => {
            c.send(&sm::failed(
                StanzaErrorCondition::BadRequest,
                "a resumption needs the count of stanzas handled (h)",
            ))
            .await?;
            Ok(false)
        }
        (None, _) => {
            tracing::info!(peer = %c.peer, user, "refused a resumption: no such session of this account");
            c.send(&sm::failed(
                StanzaErrorCondition::ItemNotFound,
                "no session to resume under that id: bind a new one",
            ))
            .await?;
            Ok(false)
        }
    }
}

async fn bind<T: ServerTransport>(c: &mut Conn<'_, T>, iq: &Iq) -> Result<bool, Unbound> {
    let user = c.user.clone().unwrap_or_default();
    let wanted = iq
        .payload
        .as_ref()
        .and_then(|p| p.child_text("resource", ns::BIND))
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| random_id(6));
    let bare = match Jid::bare_from_parts(&user, c.domain()) {
        Ok(j) => j,
        Err(_) => {
            return Err(Unbound::Error(
                StreamErrorCondition::InternalServerError,
                "bad account name".into(),
            ));
        }
    };
    if bare.with_resource(&wanted).is_err() {
        c.reply_error(iq, StanzaErrorCondition::BadRequest, "invalid resource")
            .await?;
        return Ok(false);
    }
    let (tx, rx) = outbound::outbound_queue(&c.shared.config.limits);
    let id = c.shared.next_id();
    let (resource, handle) = match c.shared.router.bind(&user, wanted, id, tx.clone()) {
        Ok(bound) => bound,
        Err(BindError::TooManySessions) => {
            // RFC 6120 7.6.2.1: the account has reached its limit.
            tracing::info!(peer = %c.peer, user, "bind refused: {MAX_SESSIONS_PER_ACCOUNT} sessions already");
            c.reply_error(
                iq,
                StanzaErrorCondition::ResourceConstraint,
                &format!(
                    "this account already has {MAX_SESSIONS_PER_ACCOUNT} sessions: sign out of one first"
                ),
            )
            .await?;
            return Ok(false);
        }
    };
    let jid = match bare.with_resource(&resource) {
        Ok(j) => j,
        Err(_) => {
            c.shared.router.unbind(&user, id);
            return Err(Unbound::Error(
                StreamErrorCondition::InternalServerError,
                "bad resource".into(),
            ));
        }
    };
    c.bound = Some((jid.clone(), handle, tx, rx));
    let payload = Element::new("bind", ns::BIND).text_child("jid", ns::BIND, jid.to_string());
    c.reply(iq, Some(payload)).await?;
    tracing::info!(peer = %c.peer, jid = %jid, secure = c.security.is_tls(), "session bound");
    Ok(true)
}
