//! Stream management (XEP-0198) on our server, spoken by hand: a session
//! whose connection drops is resumed and gets again everything it had not
//! acknowledged; one never resumed leaves its messages in offline storage;
//! a made-up or someone else's resumption id resumes nothing. And our
//! client through a network that drops: it resumes by itself, and says
//! what came back.

use std::time::Duration;

use protocol::Element;
use tests::{Client, RawEvent, Relay, Server, Twin, XmppRaw};

const SM: &str = "urn:xmpp:sm:3";

fn chat(to: &str, id: &str, body: &str) -> String {
    format!("<message to='{to}' id='{id}' type='chat'><body>{body}</body></message>")
}

fn body(e: &Element) -> Option<String> {
    (e.name == "message")
        .then(|| e.child_text("body", protocol::ns::CLIENT))
        .flatten()
}

/// alice signed in on resource `phone`, available, with stream management
/// and resumption on: her connection and the resumption id.
fn alice_with_sm(server: &Server) -> (XmppRaw, String) {
    let mut alice = XmppRaw::login(server, "alice", "pw-a", "phone");
    let features = alice.features.clone().unwrap();
    assert!(
        features.get_child("sm", SM).is_some(),
        "stream management is offered after sign-in: {}",
        features.to_xml()
    );
    alice.send(&format!("<enable xmlns='{SM}' resume='true'/>"));
    let enabled = alice.expect("enabled", |e| e.name == "enabled");
    assert_eq!(
        enabled.get_attr("resume"),
        Some("true"),
        "{}",
        enabled.to_xml()
    );
    let id = enabled.get_attr("id").unwrap().to_string();
    assert!(id.len() >= 20, "an unguessable id: {id}");
    alice.send("<presence/>");
    (alice, id)
}

#[test]
fn a_dropped_session_is_resumed_and_nothing_it_was_sent_is_lost() {
    let server = Server::start(Twin::Plain, &[]);
    for (u, p) in [("alice", "pw-a"), ("bob", "pw-b")] {
        let r = XmppRaw::register(&server, u, p);
        assert_eq!(r.get_attr("type"), Some("result"));
    }
    let (mut alice, id) = alice_with_sm(&server);
    let mut bob = XmppRaw::login(&server, "bob", "pw-b", "desk");

    // alice gets the first message; the server asks her to acknowledge
    // what it sends (once: it waits for an answer before asking again).
    bob.send(&chat("alice@localhost/phone", "m1", "one"));
    // She counts the stanzas she handles (her own presence comes back to
    // her first), as XEP-0198's `h`.
    // The server asks for an ack once stanzas have waited half a second.
    let mut asked = false;
    let mut got_m1 = false;
    let mut handled = 0;
    while !(asked && got_m1) {
        match alice.read(Duration::from_secs(10)) {
            RawEvent::Element(e) if e.is("r", SM) => asked = true,
            RawEvent::Element(e) => {
                if ["message", "presence", "iq"].contains(&e.name.as_str()) {
                    handled += 1;
                }
                got_m1 |= body(&e).as_deref() == Some("one");
            }
            other => panic!("{other:?} before m1 and an ack request"),
        }
    }
    alice.send(&format!("<r xmlns='{SM}'/>"));
    let a = alice.expect("the server's count", |e| e.is("a", SM));
    assert_eq!(a.get_attr("h"), Some("1"), "her presence: {}", a.to_xml());

    // Her network goes: no closing tag, the socket just vanishes. What bob
    // sends now is written into a dead connection.
    alice.stream.shutdown(std::net::Shutdown::Both).unwrap();
    drop(alice);
    std::thread::sleep(Duration::from_millis(300));
    bob.send(&chat("alice@localhost/phone", "m2", "two"));
    bob.send(&chat("alice@localhost/phone", "m3", "three"));
    // bob hears no error: the session is still there, waiting.
    assert!(matches!(
        bob.read(Duration::from_millis(500)),
        RawEvent::Timeout
    ));

    // Someone else's id, and a made-up one: nothing to resume.
    let mut mallory = XmppRaw::login_unbound(&server, "bob", "pw-b");
    mallory.send(&format!("<resume xmlns='{SM}' previd='{id}' h='0'/>"));
    let failed = mallory.expect("failed", |e| e.is("failed", SM));
    assert!(
        failed.to_xml().contains("item-not-found"),
        "{}",
        failed.to_xml()
    );
    let mut forged = XmppRaw::login_unbound(&server, "alice", "pw-a");
    forged.send(&format!(
        "<resume xmlns='{SM}' previd='AAAAAAAAAAAAAAAAAAAAAA' h='0'/>"
    ));
    let failed = forged.expect("failed", |e| e.is("failed", SM));
    assert!(
        failed.to_xml().contains("item-not-found"),
        "{}",
        failed.to_xml()
    );
    // A failed resumption leaves the stream usable: bind as usual.
    let bound = forged.bind("laptop");
    assert_eq!(bound.get_attr("type"), Some("result"), "{}", bound.to_xml());

    // alice comes back, with the count of what she handled.
    let mut back = XmppRaw::login_unbound(&server, "alice", "pw-a");
    back.send(&format!(
        "<resume xmlns='{SM}' previd='{id}' h='{handled}'/>"
    ));
    let resumed = back.expect("resumed", |e| e.name == "resumed");
    assert!(resumed.is("resumed", SM), "{}", resumed.to_xml());
    assert_eq!(resumed.get_attr("previd"), Some(id.as_str()));
    assert_eq!(resumed.get_attr("h"), Some("1"), "{}", resumed.to_xml());
    // m2 and m3 again, in order; m1, acknowledged, not again.
    let mut got = Vec::new();
    while got.len() < 2 {
        match back.read(Duration::from_secs(10)) {
            RawEvent::Element(e) => got.extend(body(&e)),
            other => panic!("{other:?} after {got:?}"),
        }
    }
    assert_eq!(got, ["two", "three"]);
    // The session goes on: same resource, and new messages arrive.
    bob.send(&chat("alice@localhost/phone", "m4", "four"));
    back.expect("m4", |e| body(e).as_deref() == Some("four"));
    back.send(&format!("<a xmlns='{SM}' h='{}'/>", handled + 3));
    back.send(&chat("bob@localhost/desk", "r1", "got them all"));
    let reply = bob.expect("alice's reply", |e| body(e).is_some());
    assert_eq!(reply.get_attr("from"), Some("alice@localhost/phone"));
    // Acknowledged everything: a clean sign-out leaves nothing stored.
    back.send("</stream:stream>");
    back.read_to_close();
    let mut later = XmppRaw::login(&server, "alice", "pw-a", "phone");
    later.send("<presence/>");
    assert!(
        !matches!(later.read(Duration::from_millis(800)), RawEvent::Element(ref e) if body(e).is_some()),
        "nothing replayed from offline storage"
    );
}

#[test]
fn a_session_never_resumed_leaves_its_unacknowledged_messages_for_the_next_sign_in() {
    let server = Server::start(Twin::Plain, &["--resume-timeout", "1"]);
    for (u, p) in [("alice", "pw-a"), ("bob", "pw-b")] {
        XmppRaw::register(&server, u, p);
    }
    let (alice, _id) = alice_with_sm(&server);
    let mut bob = XmppRaw::login(&server, "bob", "pw-b", "desk");
    std::thread::sleep(Duration::from_millis(200));
    alice.stream.shutdown(std::net::Shutdown::Both).unwrap();
    drop(alice);
    std::thread::sleep(Duration::from_millis(200));
    bob.send(&chat("alice@localhost/phone", "m1", "kept for later"));
    // The session waits one second, then ends: alice goes offline.
    bob.send("<presence/>");
    std::thread::sleep(Duration::from_millis(2500));
    let mut alice = XmppRaw::login(&server, "alice", "pw-a", "laptop");
    alice.send("<presence/>");
    let m = alice.expect("the stored message", |e| body(e).is_some());
    assert_eq!(body(&m).as_deref(), Some("kept for later"));
    assert!(
        m.to_xml().contains("urn:xmpp:delay"),
        "stamped when stored: {}",
        m.to_xml()
    );
}

#[test]
fn a_client_that_acknowledges_too_much_is_closed_and_one_without_sm_gets_failed() {
    let server = Server::start(Twin::Plain, &[]);
    XmppRaw::register(&server, "alice", "pw-a");
    let mut alice = XmppRaw::login(&server, "alice", "pw-a", "phone");
    // Asking for acks before enabling: refused, the session goes on.
    alice.send(&format!("<r xmlns='{SM}'/>"));
    let failed = alice.expect("failed", |e| e.is("failed", SM));
    assert!(
        failed.to_xml().contains("unexpected-request"),
        "{}",
        failed.to_xml()
    );
    alice.send(&format!("<enable xmlns='{SM}'/>"));
    let enabled = alice.expect("enabled", |e| e.name == "enabled");
    assert_eq!(
        enabled.get_attr("id"),
        None,
        "no resumption asked, none given"
    );
    alice.send(&format!("<a xmlns='{SM}' h='7'/>"));
    let rest = alice.read_to_close();
    let err = rest
        .iter()
        .find(|e| e.name == "error")
        .expect("a stream error");
    assert!(
        err.to_xml().contains("handled-count-too-high"),
        "{}",
        err.to_xml()
    );
}

/// Our client on a network that drops for two seconds: it says so, comes
/// back by itself, and shows the three messages sent to it meanwhile
/// ("resumed; 3 messages redelivered"); what it sent during the outage
/// reaches its contact too.
fn our_client_resumes_after_the_network_drops(twin: Twin) {
    resumes_after_the_network_drops(&Server::start(twin, &[]));
}

/// The same against any server (Prosody's mod_smacks too).
pub fn resumes_after_the_network_drops(server: &Server) {
    let upstream = match server.twin {
        Twin::DirectTls => server.direct.unwrap(),
        _ => server.addr,
    };
    let relay = Relay::start(upstream);
    let mut bob = Client::start(server, "roy@localhost", "pw-roy", &["--register"]);
    bob.expect("connected", |v| v["type"] == "connected");
    let mut alice = Client::start_via(
        server,
        relay.addr,
        "rita@localhost",
        "pw-rita",
        &["--register"],
    );
    alice.expect("connected", |v| v["type"] == "connected");
    alice.befriend(&mut bob);

    relay.cut(Duration::from_secs(2));
    let lost = alice.expect("reconnecting", |v| v["type"] == "reconnecting");
    assert!(lost["reason"].as_str().is_some(), "{lost}");
    // Into the outage: bob's messages wait in alice's session on the
    // server; alice's own waits in her client.
    for n in ["one", "two", "three"] {
        bob.send(&format!("/msg rita@localhost {n}"));
    }
    alice.send("/msg roy@localhost written during the outage");
    // The messages come back first, then the client says what happened.
    let mut bodies = Vec::new();
    let back = loop {
        let v = alice.expect("resumed", |v| {
            ["resumed", "disconnected", "message"].contains(&v["type"].as_str().unwrap_or(""))
        });
        if v["type"] == "message" {
            bodies.push(v["body"].as_str().unwrap().to_string());
        } else {
            break v;
        }
    };
    assert_eq!(back["type"], "resumed", "{back}\n{}", server.log());
    assert_eq!(back["redelivered"], 3, "{back}");
    // At least her message; more if some of hers were in flight when the
    // network went (the server's count says which it never got).
    assert!(back["resent"].as_u64().unwrap() >= 1, "{back}");
    assert_eq!(bodies, ["one", "two", "three"], "each once, in order");
    bob.expect_event("message", "body", "written during the outage");
    // Still the same session: bob never saw alice go offline.
    alice.send("/msg roy@localhost still here");
    bob.expect_event("message", "body", "still here");
    let (code, t) = alice.finish();
    assert_eq!(code, 0, "{t}");
    let (code, t) = bob.finish();
    assert_eq!(code, 0, "{t}");
    // Until alice signed out at the end, bob never saw her session go
    // offline (Prosody answers the subscription's probe for her bare JID
    // with an unavailable presence: that is not her session).
    let before_the_end = &t[..t.find("still here").unwrap()];
    assert!(
        !before_the_end
            .lines()
            .any(|l| l.contains(r#""available":false"#) && l.contains("rita@localhost/")),
        "roy saw rita's session go offline: {t}"
    );
}

tests::twin_tests!(our_client_resumes_after_the_network_drops);

/// Signing out while the client waits for the network to come back ends
/// it at once, cleanly (exit 0), not after the resumption window.
#[test]
fn signing_out_while_reconnecting_ends_at_once() {
    let server = Server::start(Twin::Plain, &[]);
    let relay = Relay::start(server.addr);
    let mut alice = Client::start_via(
        &server,
        relay.addr,
        "alice@localhost",
        "pw-a",
        &["--register"],
    );
    alice.expect("connected", |v| v["type"] == "connected");
    // Signed in and settled (its first requests answered).
    alice.send("/roster");
    alice.expect("roster", |v| v["type"] == "ok" && v["command"] == "/roster");
    relay.cut(Duration::from_secs(60));
    alice.expect("reconnecting", |v| v["type"] == "reconnecting");
    let t0 = std::time::Instant::now();
    let (code, t) = alice.finish();
    assert_eq!(code, 0, "{t}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

/// A client that enables stream management and never acknowledges is sent
/// at most 1,000 stanzas it has not acknowledged; then the server waits
/// for acks (its queue fills, the sender slows), and cuts it off when none
/// come. It cannot make the server keep everything it was ever sent.
#[test]
fn a_client_that_never_acknowledges_is_cut_off_at_the_bound() {
    let server = Server::start(Twin::Plain, &[]);
    for (u, p) in [("alice", "pw-a"), ("bob", "pw-b")] {
        XmppRaw::register(&server, u, p);
    }
    let mut alice = XmppRaw::login(&server, "alice", "pw-a", "phone");
    alice.send(&format!("<enable xmlns='{SM}'/>"));
    alice.expect("enabled", |e| e.name == "enabled");
    let mut bob = XmppRaw::login(&server, "bob", "pw-b", "desk");
    let flood: String = (0..1100)
        .map(|i| chat("alice@localhost/phone", &format!("f{i}"), "x"))
        .collect();
    bob.send(&flood);
    let mut messages = 0;
    let t0 = std::time::Instant::now();
    let end = loop {
        match alice.read(Duration::from_secs(20)) {
            RawEvent::Element(e) if e.name == "message" => messages += 1,
            RawEvent::Element(e) if e.name == "error" => break e,
            RawEvent::Element(_) => {}
            other => panic!("{other:?} after {messages} messages"),
        }
    };
    assert!(
        end.to_xml().contains("never acknowledged"),
        "{}",
        end.to_xml()
    );
    assert!((1000..1100).contains(&messages), "{messages}");
    assert!(
        t0.elapsed() >= Duration::from_secs(9),
        "it waited for acks first"
    );
}
