//! Raw sockets: hostile bytes, and a hand-driven XMPP client that can be
//! the broken peer a real client never is.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::*;

/// A raw TCP connection for sending hostile bytes.
pub struct Raw {
    pub stream: TcpStream,
}

/// A client stream header for `domain`.
pub fn header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    )
}

impl Raw {
    pub fn connect(server: &Server) -> Raw {
        let stream = TcpStream::connect(server.addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Raw { stream }
    }

    /// Writes bytes; a reset by the server part-way is not an error here.
    pub fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Whether the server has closed (or reset) the connection, without
    /// waiting: whatever the server sent is read and dropped first, so a
    /// stream header or features waiting in the buffer cannot hide an end
    /// of stream behind them.
    pub fn is_closed(&mut self) -> bool {
        self.stream.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4096];
        let closed = loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break true,
            }
        };
        self.stream.set_nonblocking(false).unwrap();
        closed
    }

    /// Reads until the server closes the connection (or `WAIT` passes).
    pub fn read_to_close(&mut self) -> String {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        let t0 = Instant::now();
        while t0.elapsed() < WAIT {
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(_) => break,
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    }
}

/// A hand-driven XMPP client over a raw socket (plaintext twin): signs in
/// with PLAIN, binds, and then sends and reads exactly what a test says, so
/// a test can be the hostile or broken peer a real client never is (one
/// that never reads, floods, or guesses passwords).
pub struct XmppRaw {
    pub stream: TcpStream,
    parser: protocol::StreamParser,
    /// The bound full JID, once bound.
    pub jid: String,
    /// The stream features the server sent last.
    pub features: Option<protocol::Element>,
}

/// What a raw read returned.
#[derive(Debug)]
pub enum RawEvent {
    /// A top-level element.
    Element(protocol::Element),
    /// The server closed the stream or the connection.
    Closed,
    /// Nothing within the wait.
    Timeout,
}

impl XmppRaw {
    /// Connects from the default source address.
    pub fn connect(server: &Server) -> XmppRaw {
        Self::connect_from(server, None)
    }

    /// Connects from a chosen loopback source address (`127.0.0.2`).
    pub fn connect_from(server: &Server, source: Option<std::net::IpAddr>) -> XmppRaw {
        assert_eq!(server.twin, Twin::Plain, "XmppRaw speaks plaintext only");
        let stream = match source {
            None => TcpStream::connect(server.addr).unwrap(),
            Some(ip) => {
                let s = socket2::Socket::new(
                    socket2::Domain::IPV4,
                    socket2::Type::STREAM,
                    Some(socket2::Protocol::TCP),
                )
                .unwrap();
                s.bind(&SocketAddr::new(ip, 0).into()).unwrap();
                s.connect(&server.addr.into()).unwrap();
                s.into()
            }
        };
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut raw = XmppRaw {
            stream,
            parser: protocol::StreamParser::new(protocol::Mode::Strict),
            jid: String::new(),
            features: None,
        };
        raw.open();
        raw
    }

    /// Sends a stream header and reads the server's header and features.
    fn open(&mut self) {
        self.parser.reset();
        self.send(&header("localhost"));
        loop {
            match self.next_event(WAIT) {
                Some(protocol::Event::StreamOpen(_)) => {}
                Some(protocol::Event::Element(e)) if e.name == "features" => {
                    self.features = Some(e);
                    return;
                }
                other => panic!("expected stream features, got {other:?}"),
            }
        }
    }

    /// Registers an account (XEP-0077) on a fresh connection; returns the
    /// server's answer (`result` or `error`).
    pub fn register(server: &Server, user: &str, password: &str) -> protocol::Element {
        let mut raw = Self::connect(server);
        raw.send(&format!(
            "<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>{user}</username><password>{password}</password></query></iq>"
        ));
        let answer = raw.expect("registration answer", |e| e.name == "iq");
        raw.send("</stream:stream>");
        answer
    }

    /// Tries SASL PLAIN; returns the `<success/>` or `<failure/>`, or
    /// `None` when the server closed the connection instead.
    pub fn auth_plain(&mut self, user: &str, password: &str) -> Option<protocol::Element> {
        use base64::Engine;
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        ));
        match self.read(WAIT) {
            RawEvent::Element(e) => Some(e),
            _ => None,
        }
    }

    /// Signs in (SASL PLAIN and the stream restart), without binding.
    pub fn login_unbound(server: &Server, user: &str, password: &str) -> XmppRaw {
        Self::login_unbound_from(server, None, user, password)
    }

    /// [`XmppRaw::login_unbound`] from a chosen source address.
    pub fn login_unbound_from(
        server: &Server,
        source: Option<std::net::IpAddr>,
        user: &str,
        password: &str,
    ) -> XmppRaw {
        let mut raw = Self::connect_from(server, source);
        let answer = raw.auth_plain(user, password);
        assert!(
            answer.as_ref().is_some_and(|e| e.name == "success"),
            "sign-in failed: {answer:?}"
        );
        raw.open();
        raw
    }

    /// Signs in and binds `resource`; panics with the answer on failure.
    pub fn login(server: &Server, user: &str, password: &str, resource: &str) -> XmppRaw {
        let mut raw = Self::login_unbound(server, user, password);
        let bound = raw.bind(resource);
        assert_eq!(
            bound.get_attr("type"),
            Some("result"),
            "bind failed: {}",
            bound.to_xml()
        );
        raw
    }

    /// Sends a bind request; returns the answer (and keeps the JID on
    /// success).
    pub fn bind(&mut self, resource: &str) -> protocol::Element {
        self.send(&format!(
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"
        ));
        let answer = self.expect("bind answer", |e| e.get_attr("id") == Some("bind"));
        if let Some(jid) = answer
            .elements()
            .next()
            .and_then(|b| b.child_text("jid", protocol::ns::BIND))
        {
            self.jid = jid;
        }
        answer
    }

    /// Joins (or creates) `room` on `conference.localhost` as `nick` and
    /// reads up to the subject message, which ends a join (XEP-0045 7.2).
    pub fn join_room(&mut self, room: &str, nick: &str) {
        self.send(&format!(
            "<presence to='{room}@conference.localhost/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        ));
        self.expect("the subject that ends the join", |e| {
            e.name == "message" && e.to_xml().contains("<subject")
        });
    }

    /// Writes text; a reset by the server part-way is not an error here.
    pub fn send(&mut self, xml: &str) {
        let _ = self.stream.write_all(xml.as_bytes());
    }

    fn next_event(&mut self, wait: Duration) -> Option<protocol::Event> {
        let t0 = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.parser.next_event() {
                Ok(Some(p)) => return Some(p.event),
                Ok(None) => {}
                Err(e) => panic!("the server sent malformed XML: {e}"),
            }
            let left = wait.checked_sub(t0.elapsed())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.parser.feed(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    /// The next top-level element, within `wait`.
    pub fn read(&mut self, wait: Duration) -> RawEvent {
        let t0 = Instant::now();
        loop {
            let left = wait.saturating_sub(t0.elapsed());
            match self.next_event(left) {
                Some(protocol::Event::Element(e)) => return RawEvent::Element(e),
                Some(protocol::Event::StreamClose) => return RawEvent::Closed,
                Some(protocol::Event::StreamOpen(_)) => {}
                None if t0.elapsed() >= wait => return RawEvent::Timeout,
                None => return RawEvent::Closed,
            }
        }
    }

    /// Reads until an element matches; panics with what came instead.
    pub fn expect(
        &mut self,
        what: &str,
        pred: impl Fn(&protocol::Element) -> bool,
    ) -> protocol::Element {
        let mut seen = Vec::new();
        let t0 = Instant::now();
        while t0.elapsed() < WAIT {
            match self.read(WAIT.saturating_sub(t0.elapsed())) {
                RawEvent::Element(e) if pred(&e) => return e,
                RawEvent::Element(e) => seen.push(e.to_xml()),
                other => {
                    seen.push(format!("{other:?}"));
                    break;
                }
            }
        }
        panic!("expected {what}; got:\n{}", seen.join("\n"));
    }

    /// Everything until the server closes the stream: the elements, in
    /// order (a stream error is an element named `error`).
    pub fn read_to_close(&mut self) -> Vec<protocol::Element> {
        let mut out = Vec::new();
        let t0 = Instant::now();
        while t0.elapsed() < WAIT {
            match self.read(WAIT.saturating_sub(t0.elapsed())) {
                RawEvent::Element(e) => out.push(e),
                _ => break,
            }
        }
        out
    }
}
