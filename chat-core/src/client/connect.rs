//! Signing in: [`connect`] opens the stream and negotiates it (STARTTLS when
//! the transport can, in-band registration, SASL, resource binding), then
//! starts the reader and writer tasks and hands back a [`Client`].
//!
//! Until the client is signed in, one task reads and writes the stream in
//! turn (each step waits for the server's answer); afterwards the stream is
//! split between the two tasks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use protocol::parser::Event;
use protocol::sasl::{self, ChannelBindingType, Gs2, Mechanism, SaslError, ScramClient};
use protocol::stanza::{Iq, IqType};
use protocol::{
    Element, Jid, Limits, StanzaErrorCondition, StreamErrorCondition, StreamHeader, ns,
};
use tokio::sync::{Notify, mpsc, oneshot};

use super::api::{Client, E2eHandle, IqSender};
use super::error::{ClientError, Lost};
use super::event::{EventLimits, event_queue};
use super::limits::{CONNECT_TIMEOUT, MAX_QUEUED_STANZAS};
use super::omemo::E2eMode;
use super::omemo::engine::{E2eError, Engine as OmemoEngine};
use super::omemo::jobs::MAX_QUEUED_JOBS;
use super::omemo::worker::Worker;
use super::outbound;
use super::reader::{self, Reader};
use super::sm::{DEFAULT_RESUME_WINDOW, Reconnect, Reconnected, Resumer, Sm};
use super::state::{FilePolicy, Link, Pending, State, Web, lock};
use crate::transport::{BoxStream, ClientTransport, Security, StartTls, TransportError};
use crate::util::random_id;
use crate::xmpp_io::{XmppReader, write_element, write_str};

/// What to connect to and how.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `host:port` of the server.
    pub server: String,
    /// The account (a resource in it is requested at bind).
    pub jid: Jid,
    /// The password.
    pub password: String,
    /// Register the account first (XEP-0077).
    pub register: bool,
    /// Use SASL PLAIN even when SCRAM is offered (lab 1 sniffs it).
    pub force_plain: bool,
    /// The weakest mechanism accepted when PLAIN is not forced: a server
    /// (or a man in the middle, `downgrade-sasl`) offering only weaker ones
    /// is refused. SCRAM-SHA-1 by default.
    pub min_mechanism: Mechanism,
    /// Bind the sign-in to the TLS channel when the server offers -PLUS
    /// (the default). Off, a relay with a certificate the client accepts
    /// can pass the sign-in on: deliberately weak, for intercept-tls.
    pub channel_binding: bool,
    /// Which files to accept and where they go.
    pub files: FilePolicy,
    /// How many events may wait for the front end before new ones are
    /// dropped: [`MAX_QUEUED_EVENTS`](super::limits::MAX_QUEUED_EVENTS) for people; the load generator, which
    /// must count every message and reads as fast as it can, asks for more
    /// (see [`EventLimits`]).
    pub events: EventLimits,
    /// Pad every stanza after sign-in to a multiple of this many bytes
    /// with white space (0: none): see [`outbound::padded`].
    pub pad: usize,
    /// Use stream management (XEP-0198) when the server offers it: acks,
    /// and resuming the session after a dropped connection.
    pub stream_management: bool,
    /// End-to-end encryption (OMEMO), and where its keys are kept; `None`:
    /// off.
    pub e2e: Option<super::omemo::E2eOptions>,
}

/// The result of stream negotiation.
pub(super) struct Negotiated {
    stream: BoxStream,
    reader: XmppReader,
    jid: Jid,
    link: Link,
    /// Bytes that came after `<proceed/>`, before TLS, and were dropped.
    discarded_at_switch: usize,
    /// The largest stanza the server accepts (see [`server_limit`]).
    max_stanza: usize,
    /// Stream management as the server enabled it: the resumption id and
    /// how long the server keeps the session (`None` without resumption).
    sm: Option<Option<(String, Duration)>>,
    /// A resumption: the count of our stanzas the server had handled.
    resumed: Option<u32>,
}

/// What a negotiation ends with: a new session, or an old one resumed.
#[derive(Clone, Copy)]
enum Goal<'a> {
    Bind,
    /// `<resume previd h/>` instead of binding.
    Resume {
        previd: &'a str,
        h: u32,
    },
}

/// The stanza limit a server announces in its features (XEP-0478), or our
/// own parser's limit when it announces none (RFC 6120 13.12 asks servers
/// for at least 10,000 bytes; ours and most accept 64 KiB or more). A
/// client that knows the limit refuses an oversized stanza itself, with a
/// clear error, instead of being disconnected for it by the server.
fn server_limit(features: &Element) -> usize {
    features
        .get_child("limits", ns::STREAM_LIMITS)
        .and_then(|l| l.child_text("max-bytes", ns::STREAM_LIMITS))
        .and_then(|m| m.trim().parse::<usize>().ok())
        .filter(|m| *m >= 1024)
        .unwrap_or(protocol::limits::MAX_STANZA_BYTES)
}

/// Connects, optionally registers, signs in and binds a resource.
pub async fn connect<T: ClientTransport>(
    transport: &T,
    opts: &ConnectOptions,
) -> Result<Client, ClientError> {
    let n = tokio::time::timeout(CONNECT_TIMEOUT, negotiate(transport, opts, Goal::Bind))
        .await
        .map_err(|_| ClientError::Timeout("signing in".into()))??;
    let resumer = match &n.sm {
        Some(Some((id, window))) => {
            // Connecting again is what the client first did: the same
            // transport (its TLS trust, pin, --insecure) and account.
            let (t, mut o) = (transport.clone(), opts.clone());
            // The account exists now: signing in again must not register.
            o.register = false;
            let reconnect: Reconnect = Arc::new(move |previd: String, h: u32| {
                let (t, o) = (t.clone(), o.clone());
                Box::pin(async move {
                    let goal = Goal::Resume { previd: &previd, h };
                    let n = tokio::time::timeout(CONNECT_TIMEOUT, negotiate(&t, &o, goal))
                        .await
                        .map_err(|_| ClientError::Timeout("resuming".into()))??;
                    Ok(Reconnected {
                        server_h: n.resumed.unwrap_or(0),
                        stream: n.stream,
                        reader: n.reader,
                    })
                })
            });
            Some(Resumer {
                id: id.clone(),
                window: *window,
                reconnect,
            })
        }
        _ => None,
    };
    let engine = match &opts.e2e {
        Some(e) if e.mode != E2eMode::Off => {
            let mut engine = OmemoEngine::open(&e.dir, &n.jid).map_err(E2eError::Store)?;
            engine.require = e.mode == E2eMode::Require;
            Some(engine)
        }
        _ => None,
    };
    let client = start(n, opts.events, opts.pad, resumer, engine);
    client.set_file_policy(opts.files.clone());
    {
        let mut st = lock(&client.state);
        st.files.web = Some(Web(transport.web()));
        let host = opts
            .server
            .rsplit_once(':')
            .map_or(opts.server.as_str(), |(h, _)| h);
        st.files.home_hosts = vec![
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase(),
            opts.jid.domain().to_ascii_lowercase(),
        ];
    }
    Ok(client)
}

async fn read_features(
    stream: &mut BoxStream,
    reader: &mut XmppReader,
) -> Result<Element, ClientError> {
    let first = reader.next(stream).await.map_err(|e| match e {
        // A TLS record (an alert, 0x15, or a handshake, 0x16) where the
        // stream header should be: we spoke XMPP to a port that expects
        // TLS first.
        crate::xmpp_io::ReadError::Parse(protocol::ParseError::IllegalChar {
            offset: 0,
            byte: 0x15 | 0x16,
        }) => ClientError::TlsPort,
        e => e.into(),
    })?;
    match first {
        Event::StreamOpen(_) => {}
        other => {
            return Err(ClientError::Unexpected(format!(
                "{other:?} instead of a stream header"
            )));
        }
    }
    let el = next_element(stream, reader).await?;
    if !el.is("features", ns::STREAM) {
        return Err(ClientError::Unexpected(format!(
            "<{}> instead of stream features",
            el.name
        )));
    }
    Ok(el)
}

/// The next element; a stream error becomes [`ClientError::StreamError`].
async fn next_element(
    stream: &mut BoxStream,
    reader: &mut XmppReader,
) -> Result<Element, ClientError> {
    match reader.next_element(stream).await? {
        Some(el) if el.is("error", ns::STREAM) => {
            let (cond, text) = StreamErrorCondition::from_error_element(&el);
            Err(ClientError::StreamError {
                condition: cond.map_or("undefined-condition".into(), |c| c.to_string()),
                text,
            })
        }
        Some(el) => Ok(el),
        None => Err(Lost::ServerClosedStream.into()),
    }
}

/// Signs in on a connected transport: repeats stream header and features
/// until bound (each of STARTTLS, SASL and a stream restart begins a new
/// round), registering first when asked.
async fn negotiate<T: ClientTransport>(
    transport: &T,
    opts: &ConnectOptions,
    goal: Goal<'_>,
) -> Result<Negotiated, ClientError> {
    let domain = opts.jid.domain().to_string();
    let (mut stream, mut security) =
        transport
            .connect(&opts.server, &domain)
            .await
            .map_err(|e| match e {
                TransportError::Io(source) => ClientError::Connect {
                    addr: opts.server.clone(),
                    source,
                },
                tls => ClientError::Tls(tls),
            })?;
    let mut reader = XmppReader::new(Limits::default());
    let mut registered = !opts.register;
    let direct = security.is_tls();
    let mut mechanism = None;
    let mut binding = None;
    let username = opts.jid.local().unwrap_or_default().to_string();
    let mut discarded_at_switch = 0;
    loop {
        write_str(&mut stream, &StreamHeader::client_to(&domain).to_xml()).await?;
        let features = read_features(&mut stream, &mut reader).await?;
        if !security.is_tls() {
            let upgraded = starttls(
                transport,
                &domain,
                &features,
                stream,
                &mut reader,
                &mut discarded_at_switch,
            )
            .await?;
            stream = upgraded.0;
            if let Some(tls) = upgraded.1 {
                security = tls;
                continue;
            }
        }
        if mechanism.is_none() {
            if !registered {
                register(&mut stream, &mut reader, &username, &opts.password).await?;
                registered = true;
            }
            let plan = sasl_plan(&features, &security, opts)?;
            let mech = plan.mechanism;
            if let Gs2::Bound(b) = &plan.gs2 {
                binding = Some(b.kind);
            }
            authenticate(&mut stream, &mut reader, plan, &username, &opts.password).await?;
            mechanism = Some(mech);
            reader.reset();
            continue;
        }
        let max_stanza = server_limit(&features);
        let link = Link {
            tls: security.tls().cloned(),
            direct,
            mechanism: mechanism.unwrap_or(Mechanism::Plain),
            binding,
        };
        if let Goal::Resume { previd, h } = goal {
            let server_h = resume(&mut stream, &mut reader, previd, h).await?;
            return Ok(Negotiated {
                stream,
                reader,
                jid: opts.jid.clone(),
                link,
                discarded_at_switch,
                max_stanza,
                sm: None,
                resumed: Some(server_h),
            });
        }
        if !features.has_child("bind", ns::BIND) {
            return Err(ClientError::Unexpected(
                "stream features without <bind/>".into(),
            ));
        }
        let jid = bind(&mut stream, &mut reader, opts.jid.resource()).await?;
        let session = features.get_child("session", ns::SESSION);
        if session.is_some_and(|s| !s.has_child("optional", ns::SESSION)) {
            let iq = Iq::request(
                IqType::Set,
                random_id(4),
                None,
                Element::new("session", ns::SESSION),
            );
            write_element(&mut stream, &iq.to_element()).await?;
            let _ = next_element(&mut stream, &mut reader).await?;
        }
        let sm = if opts.stream_management && features.has_child("sm", ns::SM) {
            enable_sm(&mut stream, &mut reader).await?
        } else {
            None
        };
        return Ok(Negotiated {
            stream,
            reader,
            jid,
            link,
            discarded_at_switch,
            max_stanza,
            sm,
            resumed: None,
        });
    }
}

/// Turns stream management on (XEP-0198), asking for resumption: `None`
/// when the server refuses, `Some(None)` when it allows no resumption.
async fn enable_sm(
    stream: &mut BoxStream,
    reader: &mut XmppReader,
) -> Result<Option<Option<(String, Duration)>>, ClientError> {
    write_element(
        stream,
        &Element::new("enable", ns::SM).attr("resume", "true"),
    )
    .await?;
    let el = next_element(stream, reader).await?;
    if !el.is("enabled", ns::SM) {
        // `<failed/>`: the session goes on without it.
        return Ok(None);
    }
    let resumable = matches!(el.get_attr("resume"), Some("true" | "1"));
    let window = el
        .get_attr("max")
        .and_then(|m| m.parse::<u64>().ok())
        .map_or(DEFAULT_RESUME_WINDOW, Duration::from_secs);
    Ok(Some(
        el.get_attr("id")
            .filter(|_| resumable)
            .map(|id| (id.to_string(), window)),
    ))
}

/// `<resume/>` after signing in again: the server's count of our stanzas,
/// or why the session could not be resumed.
async fn resume(
    stream: &mut BoxStream,
    reader: &mut XmppReader,
    previd: &str,
    h: u32,
) -> Result<u32, ClientError> {
    write_element(
        stream,
        &Element::new("resume", ns::SM)
            .attr("previd", previd)
            .attr("h", h.to_string()),
    )
    .await?;
    let el = next_element(stream, reader).await?;
    match (el.is("resumed", ns::SM), protocol::sm::h_of(&el)) {
        (true, Some(h)) => Ok(h),
        _ => {
            // The condition is a direct child (XEP-0198); some servers
            // wrap it in an <error/> as in a stanza error.
            let holder = el.get_child("error", ns::CLIENT).unwrap_or(&el);
            let condition = holder
                .elements()
                .find(|c| c.ns == ns::STANZA_ERRORS && c.name != "text")
                .map_or_else(|| el.name.to_string(), |c| c.name.to_string());
            let text = holder
                .child_text("text", ns::STANZA_ERRORS)
                .filter(|t| !t.is_empty());
            Err(ClientError::Refused {
                what: "resuming the session".into(),
                text: text.or_else(|| {
                    (condition == "item-not-found").then(|| {
                        "the server no longer has it (it restarted, or the session expired)".into()
                    })
                }),
                condition,
            })
        }
    }
}

/// The STARTTLS step on an unencrypted stream: upgrades when both sides
/// can, refuses to go on when the policy or the server insists on TLS.
/// Returns the stream and, if it is encrypted now, its channel (a new round
/// of negotiation begins); `discarded` counts the bytes dropped at the
/// switch.
async fn starttls<T: ClientTransport>(
    transport: &T,
    domain: &str,
    features: &Element,
    mut stream: BoxStream,
    reader: &mut XmppReader,
    discarded: &mut usize,
) -> Result<(BoxStream, Option<Security>), ClientError> {
    let offered = features.has_child("starttls", ns::TLS);
    match (transport.starttls(), offered) {
        (StartTls::Required | StartTls::Optional, true) => {
            write_element(&mut stream, &Element::new("starttls", ns::TLS)).await?;
            let answer = next_element(&mut stream, reader).await?;
            if !answer.is("proceed", ns::TLS) {
                return Err(ClientError::StartTlsRefused);
            }
            // Whatever arrived after <proceed/> was not protected by TLS:
            // drop it (STARTTLS response injection, the client side of
            // CVE-2011-0411), and count it so the user is told.
            *discarded += reader.reset_discarding();
            let (tls, security) = transport
                .upgrade(stream, domain)
                .await
                .map_err(ClientError::Tls)?;
            Ok((tls, Some(security)))
        }
        (StartTls::Required, false) => Err(ClientError::NoStartTls),
        (StartTls::Unavailable, true)
            if features
                .get_child("starttls", ns::TLS)
                .is_some_and(|t| t.has_child("required", ns::TLS)) =>
        {
            Err(ClientError::TlsRequired)
        }
        _ => Ok((stream, None)),
    }
}

/// How the client signs in: the mechanism, what its GS2 header says about
/// channel binding, and the offer it saw (which the server's XEP-0474 hash
/// must match).
struct SaslPlan {
    mechanism: Mechanism,
    gs2: Gs2,
    offer: Vec<u8>,
}

/// Chooses the strongest mechanism offered that this client can use, and
/// refuses one weaker than the policy allows.
///
/// Over TLS the client binds to its channel (-PLUS) whenever the server
/// offers -PLUS with a binding type both support (XEP-0440). Over TLS
/// without -PLUS on offer it says so (`y`): a server that does offer it
/// then knows someone removed it on the way.
fn sasl_plan(
    features: &Element,
    security: &Security,
    opts: &ConnectOptions,
) -> Result<SaslPlan, ClientError> {
    let offered: Vec<String> = features
        .get_child("mechanisms", ns::SASL)
        .map(|m| {
            m.elements()
                .map(|e| e.text_content().trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    let announced: Option<Vec<String>> = features
        .get_child("sasl-channel-binding", ns::SASL_CB)
        .map(|cb| {
            cb.elements()
                .filter(|e| e.is("channel-binding", ns::SASL_CB))
                .filter_map(|e| e.get_attr("type").map(str::to_string))
                .collect()
        });
    // Our channel value of the first type (in our preference) the server
    // announced. Without XEP-0440 the types are unknown: no -PLUS.
    let ours = if opts.channel_binding {
        security.bindings()
    } else {
        &[]
    };
    let binding = ChannelBindingType::ALL.into_iter().find_map(|t| {
        let announced = announced.as_ref()?;
        announced
            .iter()
            .any(|a| a == t.name())
            .then(|| ours.iter().find(|b| b.kind == t).cloned())
            .flatten()
    });
    let is_offered = |m: Mechanism| offered.iter().any(|o| o == m.name());
    let mechanism = if opts.force_plain {
        // Deliberately weak: the password itself goes on the wire.
        is_offered(Mechanism::Plain).then_some(Mechanism::Plain)
    } else {
        Mechanism::ALL
            .into_iter()
            .find(|m| is_offered(*m) && (!m.is_plus() || binding.is_some()))
    }
    .ok_or_else(|| ClientError::NoMechanism {
        offered: offered.clone(),
    })?;
    if !opts.force_plain && mechanism < opts.min_mechanism {
        // What downgrade-sasl counts on: a client that takes whatever is
        // offered. Refused, with the reason.
        return Err(ClientError::WeakMechanism {
            best: mechanism.name().to_string(),
            minimum: opts.min_mechanism.name().to_string(),
            offered,
        });
    }
    let gs2 = match binding {
        Some(b) if mechanism.is_plus() => Gs2::Bound(b),
        // No channel here: nothing to bind to.
        _ if ours.is_empty() => Gs2::No,
        // -PLUS on offer, but with no type we share (or none announced):
        // XEP-0474 says `n`, and its hash shows whether the list was cut.
        _ if offered.iter().any(|o| o.ends_with("-PLUS")) => Gs2::No,
        // TLS, and no -PLUS offered: say we would have bound.
        _ => Gs2::NotOffered,
    };
    let names: Vec<&str> = offered.iter().map(String::as_str).collect();
    let types: Option<Vec<&str>> = announced
        .as_ref()
        .map(|a| a.iter().map(String::as_str).collect());
    Ok(SaslPlan {
        mechanism,
        gs2,
        offer: sasl::downgrade_input(&names, types.as_deref()),
    })
}

async fn register(
    stream: &mut BoxStream,
    reader: &mut XmppReader,
    username: &str,
    password: &str,
) -> Result<(), ClientError> {
    let q = Element::new("query", ns::REGISTER)
        .text_child("username", ns::REGISTER, username)
        .text_child("password", ns::REGISTER, password);
    let iq = Iq::request(IqType::Set, format!("reg-{}", random_id(4)), None, q);
    write_element(stream, &iq.to_element()).await?;
    let answer = Iq::from_element(&next_element(stream, reader).await?)
        .map_err(|e| ClientError::Unexpected(e.to_string()))?;
    match answer.kind {
        IqType::Result => Ok(()),
        _ => match answer.error_condition() {
            Some(StanzaErrorCondition::Conflict) => {
                Err(ClientError::UsernameTaken(username.to_string()))
            }
            c => Err(ClientError::Refused {
                what: "registration".into(),
                condition: c.map_or("undefined-condition".into(), |c| c.to_string()),
                text: answer.error.as_ref().and_then(protocol::error::error_text),
            }),
        },
    }
}

async fn authenticate(
    stream: &mut BoxStream,
    reader: &mut XmppReader,
    plan: SaslPlan,
    username: &str,
    password: &str,
) -> Result<(), ClientError> {
    let mech = plan.mechanism;
    let auth = |payload: &[u8]| {
        Element::new("auth", ns::SASL)
            .attr("mechanism", mech.name())
            .text(B64.encode(payload))
    };
    let mut scram = mech.scram_hash().map(|h| {
        ScramClient::new(h, username, password)
            .channel(plan.gs2.clone())
            .expect_offer(&plan.offer)
    });
    let initial = match &scram {
        // Deliberately weak when the stream is not encrypted: PLAIN puts the
        // password on the wire in base64, which anyone can decode.
        None => sasl::plain_message(username, password),
        Some(s) => s.client_first().into_bytes(),
    };
    write_element(stream, &auth(&initial)).await?;
    loop {
        let el = next_element(stream, reader).await?;
        let data = B64.decode(el.text_content().trim()).unwrap_or_default();
        if el.is("challenge", ns::SASL) {
            let Some(s) = scram.as_mut() else {
                return Err(ClientError::Unexpected("a challenge for PLAIN".into()));
            };
            let reply = s.handle_server_first(&data)?;
            let resp = Element::new("response", ns::SASL).text(B64.encode(reply));
            write_element(stream, &resp).await?;
        } else if el.is("success", ns::SASL) {
            if let Some(s) = scram.as_mut() {
                // Mutual authentication: the server proves it knows our keys.
                s.verify_server_final(&data)?;
            }
            return Ok(());
        } else if el.is("failure", ns::SASL) {
            let cond = el
                .elements()
                .find(|c| c.name != "text")
                .map(|c| c.name.clone())
                .unwrap_or_default();
            let text = el.child_text("text", ns::SASL).unwrap_or_default();
            // A defence that fired on the server's side, named first in
            // the text (RFC 5802's server-error-value): say which.
            if let Some(e) = text
                .split(':')
                .next()
                .and_then(|v| SaslError::from_server_error_value(v.trim()))
            {
                return Err(ClientError::Scram(e));
            }
            if cond == "not-authorized" {
                return Err(ClientError::NotAuthorized);
            }
            return Err(ClientError::SaslFailure {
                condition: cond.to_string(),
                text,
            });
        } else {
            return Err(ClientError::Unexpected(format!(
                "<{}> during SASL",
                el.name
            )));
        }
    }
}

async fn bind(
    stream: &mut BoxStream,
    reader: &mut XmppReader,
    resource: Option<&str>,
) -> Result<Jid, ClientError> {
    let mut b = Element::new("bind", ns::BIND);
    if let Some(r) = resource {
        b = b.text_child("resource", ns::BIND, r);
    }
    let iq = Iq::request(IqType::Set, format!("bind-{}", random_id(4)), None, b);
    write_element(stream, &iq.to_element()).await?;
    let el = next_element(stream, reader).await?;
    el.get_child("bind", ns::BIND)
        .and_then(|b| b.child_text("jid", ns::BIND))
        .and_then(|j| Jid::parse(&j).ok())
        .ok_or_else(|| ClientError::Unexpected("a bind answer without a JID".into()))
}

/// Starts the signed-in client: splits the stream between the reader and
/// writer tasks and connects them to the API by queues.
pub(super) fn start(
    n: Negotiated,
    events: EventLimits,
    pad: usize,
    resumer: Option<Resumer>,
    engine: Option<OmemoEngine>,
) -> Client {
    let sm = n.sm.as_ref().map(|_| Arc::new(Sm::default()));
    let (attach_tx, attach_rx) = mpsc::unbounded_channel();
    let (rd, wr) = tokio::io::split(n.stream);
    let (out_tx, out_rx) = mpsc::channel(MAX_QUEUED_STANZAS);
    let (ev_tx, ev_rx) = event_queue(events);
    let (closed_tx, closed_rx) = oneshot::channel();
    let pending: Pending = Arc::default();
    let state: Arc<Mutex<State>> = Arc::default();
    let stalled = Arc::new(Notify::new());
    let writer = tokio::spawn(outbound::writer(
        wr,
        out_rx,
        stalled.clone(),
        pad,
        sm.clone(),
        attach_rx,
    ));
    let events_tx = ev_tx.downgrade();
    let mut xml = n.reader;
    // Signed in: from now on one oversized stanza is skipped, not fatal.
    xml.skip_oversized();
    // End to end: the worker that does OMEMO, fed by the reader (what
    // arrives) and the API (what is sent).
    let e2e = engine.map(|engine| {
        let engine = Arc::new(Mutex::new(engine));
        let (jobs, rx) = mpsc::channel(MAX_QUEUED_JOBS);
        let w = Worker {
            repaired: Default::default(),
            engine: engine.clone(),
            iq: IqSender::new(out_tx.clone(), pending.clone(), n.max_stanza),
            events: ev_tx.downgrade(),
            me: n.jid.clone(),
        };
        let task = tokio::spawn(w.run(rx));
        E2eHandle { engine, jobs, task }
    });
    let r = Reader {
        e2e: e2e.as_ref().map(|e| e.jobs.clone()),
        me: n.jid.clone(),
        out: out_tx.clone(),
        events: ev_tx,
        stalled,
        pending: pending.clone(),
        state: state.clone(),
        sm: sm.clone(),
        resumer,
        attach: attach_tx,
    };
    tokio::spawn(reader::run(rd, xml, r, closed_tx));
    Client {
        jid: n.jid,
        link: n.link,
        discarded_at_switch: n.discarded_at_switch,
        max_stanza: n.max_stanza,
        out: out_tx,
        pending,
        state,
        events: ev_rx,
        events_tx,
        writer,
        closed: Some(closed_rx),
        sm,
        e2e,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use protocol::Jid;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;
    use crate::client::event::ClientEvent;
    use crate::client::limits::{MAX_QUEUED_AUTO_REPLIES, WRITE_STALL_TIMEOUT};

    const HEADER: &str =
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

    /// A signed-in client on one end of an in-memory pipe of `room` bytes;
    /// the test plays the server on the other end.
    async fn client_on_pipe(room: usize) -> (Client, DuplexStream) {
        let (client_side, mut server) = tokio::io::duplex(room);
        let mut stream: BoxStream = Box::new(client_side);
        server.write_all(HEADER.as_bytes()).await.unwrap();
        let mut reader = XmppReader::new(Limits::default());
        assert!(matches!(
            reader.next(&mut stream).await,
            Ok(Event::StreamOpen(_))
        ));
        let c = start(
            Negotiated {
                stream,
                reader,
                jid: Jid::parse("alice@localhost/r").unwrap(),
                link: Link {
                    tls: None,
                    direct: false,
                    mechanism: Mechanism::Plain,
                    binding: None,
                },
                discarded_at_switch: 0,
                max_stanza: protocol::limits::MAX_STANZA_BYTES,
                sm: None,
                resumed: None,
            },
            EventLimits::default(),
            0,
            None,
            None,
        );
        (c, server)
    }

    #[tokio::test]
    async fn nothing_over_the_servers_announced_limit_is_sent() {
        let (c, _server) = client_on_pipe(1 << 20).await;
        let bob = Jid::parse("bob@localhost").unwrap();
        let err = c.send_message(&bob, &"x".repeat(70_000)).unwrap_err();
        assert!(
            matches!(err, ClientError::TooLarge { limit: 65_536, .. }),
            "{err}"
        );
        assert!(c.send_message(&bob, "short").is_ok());
        let features = Element::new("features", ns::STREAM).child(
            Element::new("limits", ns::STREAM_LIMITS).text_child(
                "max-bytes",
                ns::STREAM_LIMITS,
                "262144",
            ),
        );
        assert_eq!(server_limit(&features), 262_144);
        let none = Element::new("features", ns::STREAM);
        assert_eq!(server_limit(&none), protocol::limits::MAX_STANZA_BYTES);
    }

    #[tokio::test]
    async fn pings_to_a_client_whose_server_never_reads_queue_a_bounded_number_of_pongs() {
        let (c, mut server) = client_on_pipe(1024).await;
        for i in 0..5000 {
            let ping = format!("<iq type='get' id='p{i}'><ping xmlns='urn:xmpp:ping'/></iq>");
            server.write_all(ping.as_bytes()).await.unwrap();
        }
        // Let the reader take them all.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let queued = c.out.max_capacity() - c.out.capacity();
        assert!(queued <= MAX_QUEUED_AUTO_REPLIES, "{queued} pongs queued");
        // The user can still send: the rest of the queue is theirs.
        c.send_message(&Jid::parse("bob@localhost").unwrap(), "hi")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_never_reads_is_left_with_a_clear_error() {
        let (mut c, mut server) = client_on_pipe(256).await;
        let body = "x".repeat(1000);
        for _ in 0..100 {
            let _ = c.send_message(&Jid::parse("bob@localhost").unwrap(), &body);
        }
        let ev = tokio::time::timeout(WRITE_STALL_TIMEOUT * 2, async {
            loop {
                match c.next_event().await {
                    Some(ClientEvent::Disconnected { reason }) => break reason,
                    Some(_) => {}
                    None => break None,
                }
            }
        })
        .await
        .expect("disconnected in time");
        let reason = ev.expect("a reason");
        assert!(reason.contains("not read"), "{reason}");
        let mut sink = Vec::new();
        let _ = server.read_to_end(&mut sink).await;
    }
}
