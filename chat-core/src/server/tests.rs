//! The server's session logic driven in memory: each client is one end of a
//! `tokio::io::duplex` pipe, the server serves the other end through the
//! same code path a TCP connection takes after its transport
//! ([`super::serve_stream`]). No sockets, no binaries, no ports: each test
//! runs in milliseconds (SASL's key derivation aside) and sees exactly the
//! XML the server writes.
//!
//! The end-to-end suite (`tests/`) covers the same behaviour through the
//! real binaries and third-party clients; these tests pin the server's
//! logic where a failure is cheapest to read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use protocol::parser::Event;
use protocol::sasl::{ScramClient, ScramHash, plain_message};
use protocol::{Element, Limits, ns};
use tokio::io::DuplexStream;

use super::{ServerConfig, Shared, serve_stream};
use crate::transport::{BoxStream, Security, ServerTransport, StartTls};
use crate::xmpp_io::{XmppReader, write_str};

/// How long a test waits for one expected stanza before it fails.
const WAIT: Duration = Duration::from_secs(5);

/// A transport with no TCP and no TLS: the stream arrives ready-made.
struct Memory;

impl ServerTransport for Memory {
    async fn accept(
        &self,
        _tcp: tokio::net::TcpStream,
        _peer: SocketAddr,
    ) -> std::io::Result<(BoxStream, Security)> {
        Err(std::io::Error::other(
            "the in-memory transport accepts no TCP",
        ))
    }

    fn starttls(&self) -> StartTls {
        StartTls::Unavailable
    }

    async fn upgrade(&self, _stream: BoxStream) -> std::io::Result<(BoxStream, Security)> {
        Err(std::io::Error::other("the in-memory transport has no TLS"))
    }
}

/// A server with its database in a temporary folder.
struct Server {
    shared: Arc<Shared>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn new() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = ServerConfig::new("localhost", dir.path().to_path_buf());
        Server {
            shared: Shared::new(config).expect("open storage"),
            _dir: dir,
        }
    }

    /// A new client connection, its stream header already exchanged.
    async fn connect(&self) -> Client {
        let (client, server) = tokio::io::duplex(1 << 20);
        let shared = self.shared.clone();
        let peer: SocketAddr = "127.0.0.1:5222".parse().expect("address");
        tokio::spawn(async move {
            serve_stream(shared, &Memory, Box::new(server), Security::Plaintext, peer).await;
        });
        let mut c = Client {
            io: client,
            reader: XmppReader::new(Limits::default()),
        };
        c.open().await;
        c
    }

    /// A signed-in, bound, available client for a new account.
    async fn user(&self, name: &str) -> Client {
        let mut c = self.connect().await;
        c.register(name, "secret").await;
        c.auth_plain(name, "secret").await;
        c.bind(name).await;
        c
    }
}

/// The test's end of the pipe: writes raw XML, reads parsed elements.
struct Client {
    io: DuplexStream,
    reader: XmppReader,
}

impl Client {
    async fn send(&mut self, xml: &str) {
        write_str(&mut self.io, xml).await.expect("write to server");
    }

    async fn event(&mut self) -> Event {
        tokio::time::timeout(WAIT, self.reader.next(&mut self.io))
            .await
            .expect("the server answered in time")
            .expect("a well-formed event")
    }

    /// The next top-level element.
    async fn next(&mut self) -> Element {
        match self.event().await {
            Event::Element(el) => el,
            other => panic!("expected an element, got {other:?}"),
        }
    }

    /// Reads until an element matches, skipping others (presence of
    /// others, pushes this test is not about).
    async fn expect(&mut self, what: &str, f: impl Fn(&Element) -> bool) -> Element {
        let mut seen = Vec::new();
        loop {
            let el = match tokio::time::timeout(WAIT, self.reader.next(&mut self.io)).await {
                Ok(Ok(Event::Element(el))) => el,
                Ok(other) => panic!("waiting for {what}: got {other:?} after {seen:?}"),
                Err(_) => panic!("waiting for {what}: timed out after {seen:?}"),
            };
            if f(&el) {
                return el;
            }
            seen.push(el.to_xml());
        }
    }

    /// Sends a stream header; returns the features that follow.
    async fn open(&mut self) -> Element {
        self.send("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>").await;
        assert!(matches!(self.event().await, Event::StreamOpen(_)));
        let features = self.next().await;
        assert!(features.is("features", ns::STREAM), "{}", features.to_xml());
        features
    }

    async fn register(&mut self, user: &str, password: &str) -> Element {
        self.send(&format!(
            "<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>{user}</username><password>{password}</password></query></iq>"
        ))
        .await;
        self.expect("the registration answer", |e| {
            e.get_attr("id") == Some("reg")
        })
        .await
    }

    /// SASL PLAIN; on success the stream restarts.
    async fn auth_plain(&mut self, user: &str, password: &str) {
        let msg = B64.encode(plain_message(user, password));
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{msg}</auth>"
        ))
        .await;
        let answer = self.next().await;
        assert!(answer.is("success", ns::SASL), "{}", answer.to_xml());
        self.reader.reset();
        let features = self.open().await;
        assert!(
            features.has_child("bind", ns::BIND),
            "{}",
            features.to_xml()
        );
    }

    async fn bind(&mut self, resource: &str) -> String {
        self.send(&format!(
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"
        ))
        .await;
        let answer = self
            .expect("the bind result", |e| e.get_attr("id") == Some("bind"))
            .await;
        answer
            .get_child("bind", ns::BIND)
            .and_then(|b| b.child_text("jid", ns::BIND))
            .expect("a bound JID")
    }

    async fn iq(&mut self, id: &str, xml: &str) -> Element {
        self.send(xml).await;
        self.expect(&format!("the answer to {id}"), |e| {
            e.name == "iq" && e.get_attr("id") == Some(id)
        })
        .await
    }
}

fn error_condition(el: &Element) -> Option<String> {
    el.get_child("error", ns::CLIENT)?
        .elements()
        .find(|c| c.ns == ns::STANZA_ERRORS && c.name != "text")
        .map(|c| c.name.to_string())
}

#[tokio::test]
async fn registration_then_plain_and_scram_sign_in_and_a_wrong_password_fails() {
    let server = Server::new();
    let mut c = server.connect().await;
    let ok = c.register("alice", "secret").await;
    assert_eq!(ok.get_attr("type"), Some("result"), "{}", ok.to_xml());
    // The same name again is a conflict (XEP-0077 3.1).
    let again = c.register("Alice", "other").await;
    assert_eq!(error_condition(&again).as_deref(), Some("conflict"));

    // A wrong password: not-authorized, and the stream stays open for
    // another try.
    let msg = B64.encode(plain_message("alice", "wrong"));
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{msg}</auth>"
    ))
    .await;
    let failure = c.next().await;
    assert!(failure.is("failure", ns::SASL), "{}", failure.to_xml());
    assert!(failure.has_child("not-authorized", ns::SASL));

    // SCRAM-SHA-256 with the server's signature checked by the client:
    // the proof the server holds the credentials, not just a yes.
    let mut scram = ScramClient::new(ScramHash::Sha256, "alice", "secret");
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{}</auth>",
        B64.encode(scram.client_first())
    ))
    .await;
    let challenge = c.next().await;
    assert!(
        challenge.is("challenge", ns::SASL),
        "{}",
        challenge.to_xml()
    );
    let server_first = B64.decode(challenge.text_content()).expect("base64");
    let client_final = scram
        .handle_server_first(&server_first)
        .expect("server-first");
    c.send(&format!(
        "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
        B64.encode(client_final)
    ))
    .await;
    let success = c.next().await;
    assert!(success.is("success", ns::SASL), "{}", success.to_xml());
    let server_final = B64.decode(success.text_content()).expect("base64");
    scram
        .verify_server_final(&server_final)
        .expect("the server's signature verifies");
    c.reader.reset();
    c.open().await;
    assert_eq!(c.bind("laptop").await, "alice@localhost/laptop");
}

#[tokio::test]
async fn a_forged_from_is_replaced_by_the_senders_own_jid() {
    let server = Server::new();
    let mut alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    alice
        .send("<message to='bob@localhost/bob' from='mallory@localhost/x' type='chat'><body>hi</body></message>")
        .await;
    let got = bob.expect("alice's message", |e| e.name == "message").await;
    assert_eq!(got.get_attr("from"), Some("alice@localhost/alice"));
    assert_eq!(got.child_text("body", ns::CLIENT).as_deref(), Some("hi"));
}

#[tokio::test]
async fn a_roster_set_is_pushed_to_the_sessions_that_asked_for_the_roster() {
    let server = Server::new();
    let mut phone = server.user("alice").await;
    let mut laptop = server.connect().await;
    laptop.auth_plain("alice", "secret").await;
    laptop.bind("laptop").await;
    // Only a session that fetched the roster gets pushes (RFC 6121 2.1.6).
    let roster = laptop
        .iq(
            "r1",
            "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>",
        )
        .await;
    assert_eq!(roster.get_attr("type"), Some("result"));
    let set = phone
        .iq(
            "r2",
            "<iq type='set' id='r2'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bob'><group>Friends</group></item></query></iq>",
        )
        .await;
    assert_eq!(set.get_attr("type"), Some("result"), "{}", set.to_xml());
    let push = laptop
        .expect("the roster push", |e| {
            e.name == "iq" && e.get_attr("type") == Some("set")
        })
        .await;
    let item = push
        .get_child("query", ns::ROSTER)
        .and_then(|q| q.get_child("item", ns::ROSTER))
        .expect("a pushed item");
    assert_eq!(item.get_attr("jid"), Some("bob@localhost"));
    assert_eq!(item.get_attr("name"), Some("Bob"));
    assert_eq!(
        item.child_text("group", ns::ROSTER).as_deref(),
        Some("Friends")
    );
}

#[tokio::test]
async fn presence_goes_only_to_approved_contacts_after_the_handshake() {
    let server = Server::new();
    let mut alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let mut eve = server.user("eve").await;
    alice.send("<presence/>").await;
    bob.send("<presence/>").await;
    eve.send("<presence/>").await;
    // Alice asks to see Bob; Bob approves.
    alice
        .send("<presence to='bob@localhost' type='subscribe'/>")
        .await;
    bob.expect("alice's request", |e| {
        e.name == "presence" && e.get_attr("type") == Some("subscribe")
    })
    .await;
    bob.send("<presence to='alice@localhost' type='subscribed'/>")
        .await;
    alice
        .expect("bob's approval", |e| {
            e.name == "presence" && e.get_attr("type") == Some("subscribed")
        })
        .await;
    // Bob's new status reaches Alice, who is approved ...
    bob.send("<presence><status>lunch</status></presence>")
        .await;
    let seen = alice
        .expect("bob's status", |e| {
            e.name == "presence" && e.child_text("status", ns::CLIENT).as_deref() == Some("lunch")
        })
        .await;
    assert_eq!(seen.get_attr("from"), Some("bob@localhost/bob"));
    // ... and never Eve, who is not: after a marker she must see, nothing
    // of Bob's came before it.
    eve.send("<iq type='get' id='mark'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let mut before = Vec::new();
    loop {
        let el = eve.next().await;
        if el.get_attr("id") == Some("mark") {
            break;
        }
        before.push(el);
    }
    assert!(
        !before
            .iter()
            .any(|e| e.get_attr("from").is_some_and(|f| f.starts_with("bob@"))),
        "eve saw bob: {before:?}"
    );
}

#[tokio::test]
async fn a_room_relays_each_message_once_from_the_room_jid() {
    let server = Server::new();
    let mut alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    alice
        .send("<presence to='lab@conference.localhost/Al'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
        .await;
    // The joiner's own presence carries status 110; a new room 201.
    let own = alice
        .expect("alice's own room presence", |e| {
            e.name == "presence" && e.get_attr("from") == Some("lab@conference.localhost/Al")
        })
        .await;
    let codes: Vec<String> = own
        .get_child("x", ns::MUC_USER)
        .map(|x| {
            x.elements()
                .filter_map(|s| s.get_attr("code").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert!(codes.contains(&"110".to_string()), "{codes:?}");
    assert!(codes.contains(&"201".to_string()), "{codes:?}");
    bob.send("<presence to='lab@conference.localhost/Bo'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
        .await;
    alice
        .expect("bob joining", |e| {
            e.name == "presence" && e.get_attr("from") == Some("lab@conference.localhost/Bo")
        })
        .await;
    bob.send(
        "<message to='lab@conference.localhost' type='groupchat'><body>hello room</body></message>",
    )
    .await;
    for who in [&mut alice, &mut bob] {
        let m = who
            .expect("the room message", |e| {
                e.name == "message"
                    && e.child_text("body", ns::CLIENT).as_deref() == Some("hello room")
            })
            .await;
        // The room says who spoke: one occupant cannot speak as another.
        assert_eq!(m.get_attr("from"), Some("lab@conference.localhost/Bo"));
        assert_eq!(m.get_attr("type"), Some("groupchat"));
    }
    // A chat-type message to the bare room is refused, not relayed.
    bob.send("<message to='lab@conference.localhost' type='chat' id='c1'><body>x</body></message>")
        .await;
    let refused = bob
        .expect("the refusal", |e| e.get_attr("id") == Some("c1"))
        .await;
    assert_eq!(refused.get_attr("type"), Some("error"));
}

#[tokio::test]
async fn a_message_to_an_offline_user_is_stored_and_delivered_at_sign_in() {
    let server = Server::new();
    let mut alice = server.user("alice").await;
    let mut bob = server.connect().await;
    bob.register("bob", "secret").await;
    drop(bob);
    alice
        .send("<message to='bob@localhost' type='chat'><body>while you were out</body></message>")
        .await;
    // A ping answered means the message was handled before it.
    alice
        .iq(
            "p",
            "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await;
    let mut bob = server.connect().await;
    bob.auth_plain("bob", "secret").await;
    bob.bind("phone").await;
    bob.send("<presence/>").await;
    let m = bob
        .expect("the stored message", |e| e.name == "message")
        .await;
    assert_eq!(
        m.child_text("body", ns::CLIENT).as_deref(),
        Some("while you were out")
    );
    // Stamped with when it arrived (XEP-0203).
    assert!(m.has_child("delay", ns::DELAY), "{}", m.to_xml());
}

#[tokio::test]
async fn removing_an_account_closes_its_stream_and_frees_the_name() {
    let server = Server::new();
    let mut alice = server.user("alice").await;
    let done = alice
        .iq(
            "rm",
            "<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>",
        )
        .await;
    assert_eq!(done.get_attr("type"), Some("result"));
    assert!(matches!(alice.event().await, Event::StreamClose));
    let mut again = server.connect().await;
    let ok = again.register("alice", "new").await;
    assert_eq!(ok.get_attr("type"), Some("result"), "{}", ok.to_xml());
}

#[tokio::test]
async fn a_non_stanza_ends_the_stream_with_unsupported_stanza_type() {
    let server = Server::new();
    let mut alice = server.user("alice").await;
    alice.send("<blob xmlns='jabber:client'/>").await;
    let err = alice.next().await;
    assert!(err.is("error", ns::STREAM), "{}", err.to_xml());
    assert!(err.has_child("unsupported-stanza-type", ns::STREAM_ERRORS));
    assert!(matches!(alice.event().await, Event::StreamClose));
}
