//! Stream negotiation (RFC 6120 4 to 7), from the first byte to a bound
//! resource: stream header, STARTTLS, SASL, in-band registration (XEP-0077)
//! and resource binding. The whole phase runs under the authentication
//! deadline.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use protocol::parser::Event;
use protocol::sasl::{self, Mechanism, SaslError, ScramServer};
use protocol::stanza::{Iq, IqType};
use protocol::{
    Element, Jid, StanzaErrorCondition, StreamErrorCondition, StreamHeader, ns, stream,
};
use tokio::io::AsyncWriteExt;

use super::account::{self, NewPasswordError, PASSWORD_RULE, normalize_user};
use super::config::MAX_AUTH_ATTEMPTS;
use super::directory;
use super::outbound::{self, OutboundRx, OutboundTx};
use super::router::{BindError, MAX_SESSIONS_PER_ACCOUNT, SessionHandle};
use super::shared::Shared;
use crate::storage::{self, AccountCredentials};
use crate::transport::{BoxStream, ServerTransport, StartTls};
use crate::util::random_id;
use crate::xmpp_io::{ReadError, XmppReader, write_element, write_str};

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

/// Why negotiation ended without a bound session.
enum Unbound {
    /// The peer closed the stream or the connection.
    Closed,
    /// Send this stream error and close.
    Error(StreamErrorCondition, String),
}

impl From<ReadError> for Unbound {
    fn from(e: ReadError) -> Unbound {
        match e {
            ReadError::Eof | ReadError::Io(_) => Unbound::Closed,
            ReadError::Parse(p) => Unbound::Error(p.condition(), p.to_string()),
        }
    }
}

impl From<std::io::Error> for Unbound {
    fn from(_: std::io::Error) -> Unbound {
        Unbound::Closed
    }
}

struct Neg<'a, T> {
    shared: &'a Arc<Shared>,
    transport: &'a T,
    stream: BoxStream,
    reader: XmppReader,
    secure: bool,
    peer: SocketAddr,
    header_sent: bool,
    user: Option<String>,
    /// The account the current SASL attempt names, for the throttle.
    attempted: Option<String>,
    auth_failures: u32,
    bound: Option<(Jid, SessionHandle, OutboundTx, OutboundRx)>,
}

/// Negotiates a stream; `None` when the connection ended before binding.
pub async fn negotiate<T: ServerTransport>(
    shared: &Arc<Shared>,
    transport: &T,
    stream: BoxStream,
    secure: bool,
    peer: SocketAddr,
) -> Option<Bound> {
    let mut n = Neg {
        shared,
        transport,
        stream,
        reader: XmppReader::new(shared.config.limits),
        secure,
        peer,
        header_sent: false,
        user: None,
        attempted: None,
        auth_failures: 0,
        bound: None,
    };
    let outcome = tokio::time::timeout(shared.config.auth_timeout, n.run()).await;
    let end = match outcome {
        Ok(Ok(())) => {
            let (jid, handle, tx, rx) = n.bound.take()?;
            return Some(Bound {
                stream: n.stream,
                reader: n.reader,
                user: n.user.unwrap_or_default(),
                jid,
                handle,
                tx,
                rx,
            });
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

fn server_header(domain: &str, to: Option<String>) -> String {
    StreamHeader {
        from: Some(domain.to_string()),
        to,
        id: Some(random_id(8)),
        version: Some("1.0".into()),
        lang: Some("en".into()),
        default_ns: ns::CLIENT.into(),
    }
    .to_xml()
}

impl<T: ServerTransport> Neg<'_, T> {
    fn domain(&self) -> &str {
        &self.shared.config.domain
    }

    async fn send_error(&mut self, cond: StreamErrorCondition, text: &str) {
        // RFC 6120 4.9.1.2: even an error before the header needs a header.
        if !self.header_sent {
            let h = server_header(&self.shared.config.domain, None);
            let _ = write_str(&mut self.stream, &h).await;
        }
        let xml = format!("{}{}", cond.to_element(Some(text)).to_xml(), stream::CLOSE);
        let _ = write_str(&mut self.stream, &xml).await;
    }

    async fn send(&mut self, el: &Element) -> Result<(), Unbound> {
        write_element(&mut self.stream, el).await?;
        Ok(())
    }

    async fn read_element(&mut self) -> Result<Element, Unbound> {
        match self.reader.next_element(&mut self.stream).await? {
            Some(e) => Ok(e),
            None => Err(Unbound::Closed),
        }
    }

    fn starttls_required_now(&self) -> bool {
        !self.secure && self.transport.starttls() == StartTls::Required
    }

    async fn run(&mut self) -> Result<(), Unbound> {
        loop {
            let header = match self.reader.next(&mut self.stream).await? {
                Event::StreamOpen(h) => h,
                _ => {
                    return Err(Unbound::Error(
                        StreamErrorCondition::NotWellFormed,
                        "expected a stream header".into(),
                    ));
                }
            };
            let reply = server_header(self.domain(), None);
            write_str(&mut self.stream, &reply).await?;
            self.header_sent = true;
            if header.default_ns != ns::CLIENT {
                return Err(Unbound::Error(
                    StreamErrorCondition::InvalidNamespace,
                    "this server only accepts client streams (jabber:client)".into(),
                ));
            }
            let to = header.to.as_deref().map(str::to_lowercase);
            if to.as_deref() != Some(self.domain()) {
                return Err(Unbound::Error(
                    StreamErrorCondition::HostUnknown,
                    format!(
                        "this server hosts '{}', not '{}'",
                        self.domain(),
                        header.to.as_deref().unwrap_or("")
                    ),
                ));
            }
            let features = self.features();
            self.send(&features).await?;
            if self.stream_loop().await? {
                return Ok(());
            }
        }
    }

    fn features(&self) -> Element {
        // The limit the server enforces, announced (XEP-0478) so a client
        // can refuse to send what would cost it its connection. It is also
        // the limit the server keeps for what it sends (see router).
        let limits = Element::new("limits", ns::STREAM_LIMITS).text_child(
            "max-bytes",
            ns::STREAM_LIMITS,
            self.shared.config.limits.max_stanza_bytes.to_string(),
        );
        let mut f = Element::new("features", ns::STREAM).child(limits);
        let starttls = self.transport.starttls();
        if !self.secure && starttls != StartTls::Unavailable {
            let mut tls = Element::new("starttls", ns::TLS);
            if starttls == StartTls::Required {
                tls = tls.child(Element::new("required", ns::TLS));
            }
            f = f.child(tls);
        }
        if self.user.is_none() {
            if self.starttls_required_now() {
                // Nothing but STARTTLS until the stream is encrypted: no
                // mechanisms, so no client can be talked into sending a
                // password in the clear.
                return f;
            }
            // On the plaintext twin this offers PLAIN over an unencrypted
            // stream: deliberately weak, it is what lab 1 sniffs. A real
            // server never offers PLAIN without TLS.
            let mut mechs = Element::new("mechanisms", ns::SASL);
            for m in Mechanism::ALL {
                mechs = mechs.text_child("mechanism", ns::SASL, m.name());
            }
            f = f.child(mechs);
            if self.shared.config.registration {
                f = f.child(Element::new("register", ns::REGISTER_FEATURE));
            }
        } else {
            f = f.child(Element::new("bind", ns::BIND)).child(
                Element::new("session", ns::SESSION).child(Element::new("optional", ns::SESSION)),
            );
        }
        f
    }

    /// Handles elements until a restart (`Ok(false)`) or a bound resource
    /// (`Ok(true)`).
    async fn stream_loop(&mut self) -> Result<bool, Unbound> {
        loop {
            let el = self.read_element().await?;
            if el.is("starttls", ns::TLS) {
                self.starttls().await?;
                return Ok(false);
            }
            if el.is("auth", ns::SASL) {
                if self.user.is_some() {
                    // RFC 6120 6.4.1: no second authentication on a stream.
                    return Err(Unbound::Error(
                        StreamErrorCondition::PolicyViolation,
                        "already authenticated".into(),
                    ));
                }
                if self.sasl(el).await? {
                    self.reader.reset();
                    return Ok(false);
                }
                continue;
            }
            if el.is("iq", ns::CLIENT) {
                if self.pre_bind_iq(el).await? {
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

    async fn starttls(&mut self) -> Result<(), Unbound> {
        if self.secure || self.transport.starttls() == StartTls::Unavailable {
            let failure = Element::new("failure", ns::TLS);
            self.send(&failure).await?;
            return Err(Unbound::Closed);
        }
        self.send(&Element::new("proceed", ns::TLS)).await?;
        let dropped = self.reader.reset_discarding();
        if dropped > 0 {
            tracing::warn!(peer = %self.peer, dropped, "discarded plaintext sent after <starttls/> (command injection attempt)");
        }
        let plain = std::mem::replace(&mut self.stream, Box::new(tokio::io::duplex(1).0));
        match self.transport.upgrade(plain).await {
            Ok(tls) => {
                self.stream = tls;
                self.secure = true;
                self.header_sent = false;
                Ok(())
            }
            Err(e) => {
                tracing::info!(peer = %self.peer, "TLS handshake failed: {e}");
                Err(Unbound::Closed)
            }
        }
    }

    async fn sasl_failure(&mut self, condition: &str, text: &str) -> Result<bool, Unbound> {
        let el = Element::new("failure", ns::SASL)
            .child(Element::new(condition, ns::SASL))
            .child(
                Element::new("text", ns::SASL)
                    .attr("xml:lang", "en")
                    .text(text),
            );
        self.send(&el).await?;
        Ok(false)
    }

    /// Runs one SASL exchange. `Ok(true)` on success.
    async fn sasl(&mut self, auth: Element) -> Result<bool, Unbound> {
        // Online password guessing: an address that keeps failing waits
        // its turn, however many connections it opens (see throttle).
        match self.shared.throttle.attempt_wait(self.peer.ip()) {
            Some(wait) if !wait.is_zero() => {
                tracing::debug!(peer = %self.peer, ?wait, "sign-in attempt throttled");
                tokio::time::sleep(wait).await;
            }
            Some(_) => {}
            None => {
                tracing::info!(peer = %self.peer, "sign-in refused: too many failures from this address");
                return self
                    .sasl_failure(
                        "temporary-auth-failure",
                        "too many failed sign-ins from your address: try again in a minute",
                    )
                    .await;
            }
        }
        self.attempted = None;
        if self.starttls_required_now() {
            return self
                .sasl_failure("encryption-required", "use STARTTLS first")
                .await;
        }
        let Some(mech) = auth.get_attr("mechanism").and_then(Mechanism::parse) else {
            return self
                .sasl_failure("invalid-mechanism", "unsupported mechanism")
                .await;
        };
        let Some(initial) = decode_sasl(&auth.text_content()) else {
            return self
                .sasl_failure("incorrect-encoding", "invalid base64")
                .await;
        };
        let result = match mech.scram_hash() {
            None => self.sasl_plain(&initial).await?,
            Some(hash) => self.sasl_scram(hash, initial).await?,
        };
        match result {
            Ok(user) => {
                if mech == Mechanism::Plain {
                    // SCRAM sent its own <success/> carrying the server proof.
                    self.send(&Element::new("success", ns::SASL)).await?;
                }
                tracing::info!(peer = %self.peer, user, mechanism = mech.name(), "authenticated");
                self.shared.throttle.succeeded(&user);
                self.user = Some(user);
                Ok(true)
            }
            Err(SaslError::Malformed { what }) => {
                self.sasl_failure("malformed-request", what).await
            }
            Err(e) => {
                self.auth_failures += 1;
                self.shared
                    .throttle
                    .failed(self.peer.ip(), self.attempted.as_deref());
                tracing::info!(peer = %self.peer, mechanism = mech.name(), "authentication failed: {e}");
                self.sasl_failure("not-authorized", &e.to_string()).await?;
                if self.auth_failures >= MAX_AUTH_ATTEMPTS {
                    return Err(Unbound::Error(
                        StreamErrorCondition::PolicyViolation,
                        "too many failed authentication attempts".into(),
                    ));
                }
                Ok(false)
            }
        }
    }

    /// Takes the shared state rather than `&self`: a `&Neg` held across an
    /// await would require the stream to be `Sync`.
    async fn credentials(
        shared: &Shared,
        username: &str,
    ) -> Result<Option<AccountCredentials>, Unbound> {
        let user = username.to_string();
        shared
            .storage
            .run(move |c| storage::credentials(c, &user))
            .await
            .map_err(|e| {
                tracing::error!("{e}");
                Unbound::Error(
                    StreamErrorCondition::InternalServerError,
                    "storage failure".into(),
                )
            })
    }

    async fn sasl_plain(&mut self, initial: &[u8]) -> Result<Result<String, SaslError>, Unbound> {
        let creds = match sasl::parse_plain(initial) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let Some(user) = normalize_user(&creds.username, self.domain()) else {
            return Ok(Err(SaslError::NotAuthorized));
        };
        self.attempted = Some(user.clone());
        // An account under attack answers every attempt slowly (throttle).
        tokio::time::sleep(self.shared.throttle.account_wait(&user)).await;
        if !creds.authzid.is_empty() && creds.authzid != format!("{user}@{}", self.domain()) {
            return Ok(Err(SaslError::NotAuthorized));
        }
        let stored = Self::credentials(self.shared, &user).await?;
        let password = creds.password;
        // PBKDF2 is slow on purpose: keep it off the async threads.
        let ok = tokio::task::spawn_blocking(move || {
            stored.is_some_and(|s| s.sha256.verify_password(sasl::ScramHash::Sha256, &password))
        })
        .await
        .unwrap_or(false);
        Ok(if ok {
            Ok(user)
        } else {
            Err(SaslError::NotAuthorized)
        })
    }

    async fn sasl_scram(
        &mut self,
        hash: sasl::ScramHash,
        mut initial: Vec<u8>,
    ) -> Result<Result<String, SaslError>, Unbound> {
        if initial.is_empty() {
            // No initial response: ask for it with an empty challenge.
            self.send(&Element::new("challenge", ns::SASL)).await?;
            match self.sasl_response().await? {
                Some(r) => initial = r,
                None => {
                    return Ok(Err(SaslError::Malformed {
                        what: "bad response",
                    }));
                }
            }
        }
        let mut server = ScramServer::new(hash, self.shared.storage.server_secret());
        let username = match server.handle_client_first(&initial) {
            Ok(u) => u,
            Err(e) => return Ok(Err(e)),
        };
        let user = normalize_user(&username, self.domain());
        self.attempted.clone_from(&user);
        if let Some(u) = &user {
            server.set_decoy_name(u);
            tokio::time::sleep(self.shared.throttle.account_wait(u)).await;
        }
        let stored = match &user {
            Some(u) => Self::credentials(self.shared, u).await?,
            None => None,
        };
        let first = match server.server_first(stored.map(|s| s.for_hash(hash).clone())) {
            Ok(f) => f,
            Err(e) => return Ok(Err(e)),
        };
        let challenge = Element::new("challenge", ns::SASL).text(B64.encode(first));
        self.send(&challenge).await?;
        let Some(response) = self.sasl_response().await? else {
            return Ok(Err(SaslError::Malformed {
                what: "bad response",
            }));
        };
        match server.handle_client_final(&response) {
            Ok((server_final, _)) => {
                let success = Element::new("success", ns::SASL).text(B64.encode(server_final));
                self.send(&success).await?;
                Ok(user.ok_or(SaslError::NotAuthorized))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    /// Reads a `<response/>`; `None` for a malformed one. An `<abort/>` ends
    /// the exchange with `aborted`.
    async fn sasl_response(&mut self) -> Result<Option<Vec<u8>>, Unbound> {
        let el = self.read_element().await?;
        if el.is("abort", ns::SASL) {
            self.sasl_failure("aborted", "aborted by the client")
                .await?;
            return Ok(None);
        }
        if !el.is("response", ns::SASL) {
            return Err(Unbound::Error(
                StreamErrorCondition::NotAuthorized,
                "expected a SASL response".into(),
            ));
        }
        Ok(decode_sasl(&el.text_content()))
    }

    async fn reply(&mut self, iq: &Iq, payload: Option<Element>) -> Result<(), Unbound> {
        let mut r = iq.result(payload);
        r.from = None;
        self.send(&r.to_element()).await
    }

    async fn reply_error(
        &mut self,
        iq: &Iq,
        cond: StanzaErrorCondition,
        text: &str,
    ) -> Result<(), Unbound> {
        let mut r = iq.error_reply(cond, Some(text));
        r.from = None;
        self.send(&r.to_element()).await
    }

    /// Handles an iq before binding. `Ok(true)` once a resource is bound.
    async fn pre_bind_iq(&mut self, el: Element) -> Result<bool, Unbound> {
        let iq = match Iq::from_element(&el) {
            Ok(iq) => iq,
            Err(e) => {
                if let Some(err) =
                    protocol::stanza::error_reply(&el, e.condition(), Some(&e.to_string()))
                {
                    self.send(&err).await?;
                }
                return Ok(false);
            }
        };
        let payload_is = |name: &str, ns: &str| iq.payload.as_ref().is_some_and(|p| p.is(name, ns));
        if self.user.is_none() {
            if payload_is("query", ns::REGISTER) {
                self.register(&iq).await?;
            } else if matches!(iq.kind, IqType::Get | IqType::Set) {
                self.reply_error(
                    &iq,
                    StanzaErrorCondition::NotAuthorized,
                    "authenticate first",
                )
                .await?;
            }
            return Ok(false);
        }
        if iq.kind == IqType::Set && payload_is("bind", ns::BIND) {
            return self.bind(&iq).await;
        }
        if payload_is("session", ns::SESSION) {
            self.reply(&iq, None).await?;
            return Ok(false);
        }
        if matches!(iq.kind, IqType::Get | IqType::Set) {
            self.reply_error(
                &iq,
                StanzaErrorCondition::NotAllowed,
                "bind a resource first",
            )
            .await?;
        }
        Ok(false)
    }

    async fn bind(&mut self, iq: &Iq) -> Result<bool, Unbound> {
        let user = self.user.clone().unwrap_or_default();
        let wanted = iq
            .payload
            .as_ref()
            .and_then(|p| p.child_text("resource", ns::BIND))
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| random_id(6));
        let bare = match Jid::bare_from_parts(&user, self.domain()) {
            Ok(j) => j,
            Err(_) => {
                return Err(Unbound::Error(
                    StreamErrorCondition::InternalServerError,
                    "bad account name".into(),
                ));
            }
        };
        if bare.with_resource(&wanted).is_err() {
            self.reply_error(iq, StanzaErrorCondition::BadRequest, "invalid resource")
                .await?;
            return Ok(false);
        }
        let (tx, rx) = outbound::outbound_queue(&self.shared.config.limits);
        let id = self.shared.next_id();
        let (resource, handle) = match self.shared.router.bind(&user, wanted, id, tx.clone()) {
            Ok(bound) => bound,
            Err(BindError::TooManySessions) => {
                // RFC 6120 7.6.2.1: the account has reached its limit.
                tracing::info!(peer = %self.peer, user, "bind refused: {MAX_SESSIONS_PER_ACCOUNT} sessions already");
                self.reply_error(
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
                self.shared.router.unbind(&user, id);
                return Err(Unbound::Error(
                    StreamErrorCondition::InternalServerError,
                    "bad resource".into(),
                ));
            }
        };
        self.bound = Some((jid.clone(), handle, tx, rx));
        let payload = Element::new("bind", ns::BIND).text_child("jid", ns::BIND, jid.to_string());
        self.reply(iq, Some(payload)).await?;
        tracing::info!(peer = %self.peer, jid = %jid, secure = self.secure, "session bound");
        Ok(true)
    }

    /// In-band registration before authentication (XEP-0077 3.1).
    async fn register(&mut self, iq: &Iq) -> Result<(), Unbound> {
        if !self.shared.config.registration {
            return self
                .reply_error(
                    iq,
                    StanzaErrorCondition::NotAllowed,
                    "registration is closed on this server",
                )
                .await;
        }
        if self.starttls_required_now() {
            return self
                .reply_error(
                    iq,
                    StanzaErrorCondition::NotAuthorized,
                    "use STARTTLS first",
                )
                .await;
        }
        if iq.kind == IqType::Set && !self.shared.throttle.may_register(self.peer.ip()) {
            // Mass registration (690 accounts a second before this limit).
            tracing::warn!(peer = %self.peer, "registration refused: too many from this address");
            return self
                .reply_error(
                    iq,
                    StanzaErrorCondition::ResourceConstraint,
                    "too many registrations from your address: try again later",
                )
                .await;
        }
        let query = iq
            .payload
            .clone()
            .unwrap_or_else(|| Element::new("query", ns::REGISTER));
        match iq.kind {
            IqType::Get => {
                let form = Element::new("query", ns::REGISTER)
                    .text_child(
                        "instructions",
                        ns::REGISTER,
                        "Choose a user name and password to register with this server.",
                    )
                    .child(Element::new("username", ns::REGISTER))
                    .child(Element::new("password", ns::REGISTER))
                    .child(Element::new("name", ns::REGISTER))
                    .child(Element::new("email", ns::REGISTER));
                self.reply(iq, Some(form)).await
            }
            IqType::Set => {
                if query.has_child("remove", ns::REGISTER) {
                    return self
                        .reply_error(
                            iq,
                            StanzaErrorCondition::NotAuthorized,
                            "sign in to remove an account",
                        )
                        .await;
                }
                let username = query
                    .child_text("username", ns::REGISTER)
                    .unwrap_or_default();
                let password = query
                    .child_text("password", ns::REGISTER)
                    .unwrap_or_default();
                let Some(user) = normalize_user(username.trim(), self.domain()) else {
                    return self
                        .reply_error(iq, StanzaErrorCondition::NotAcceptable, "invalid user name")
                        .await;
                };
                let creds = match account::new_credentials(password).await {
                    Ok(c) => c,
                    Err(NewPasswordError::Unacceptable) => {
                        return self
                            .reply_error(iq, StanzaErrorCondition::NotAcceptable, PASSWORD_RULE)
                            .await;
                    }
                    Err(NewPasswordError::HashingFailed) => {
                        return Err(Unbound::Error(
                            StreamErrorCondition::InternalServerError,
                            "hashing failed".into(),
                        ));
                    }
                };
                let u = user.clone();
                let profile = directory::registration_profile(&query);
                let created = self
                    .shared
                    .storage
                    .run(move |c| {
                        let tx = c.transaction()?;
                        let created = storage::create_account(&tx, &u, &creds)?;
                        if created {
                            storage::set_profile(&tx, &u, &profile)?;
                        }
                        tx.commit()?;
                        Ok(created)
                    })
                    .await;
                match created {
                    Ok(true) => {
                        tracing::info!(peer = %self.peer, user, "account registered");
                        self.reply(iq, None).await
                    }
                    Ok(false) => {
                        self.reply_error(
                            iq,
                            StanzaErrorCondition::Conflict,
                            "that user name is taken",
                        )
                        .await
                    }
                    Err(e) => {
                        tracing::error!("{e}");
                        self.reply_error(
                            iq,
                            StanzaErrorCondition::InternalServerError,
                            "storage failure",
                        )
                        .await
                    }
                }
            }
            _ => Ok(()),
        }
    }
}

/// Decodes SASL payload text: `=` is an empty message (RFC 6120 6.4.2).
fn decode_sasl(text: &str) -> Option<Vec<u8>> {
    let t = text.trim();
    if t.is_empty() || t == "=" {
        return Some(Vec::new());
    }
    B64.decode(t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_folded_and_cannot_smuggle_jid_parts() {
        assert_eq!(
            normalize_user("Alice", "localhost").as_deref(),
            Some("alice")
        );
        for bad in ["", "alice/x", "alice@evil", "a b", "a:b"] {
            assert_eq!(normalize_user(bad, "localhost"), None, "{bad:?}");
        }
    }

    #[test]
    fn sasl_payload_decoding() {
        assert_eq!(decode_sasl("="), Some(vec![]));
        assert_eq!(decode_sasl(""), Some(vec![]));
        assert_eq!(decode_sasl("AGFsaWNlAHB3"), Some(b"\0alice\0pw".to_vec()));
        assert_eq!(decode_sasl("!!"), None);
    }
}
