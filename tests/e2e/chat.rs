//! The chat features a user sees, driven through the twins' clients over
//! plaintext, STARTTLS and direct TLS (`twin_tests!`).

use tests::{Client, Server, Twin, presence_from, run_client};

fn connected(c: &mut Client) {
    c.expect("connected", |v| v["type"] == "connected");
}

fn two_clients_register_subscribe_chat_get_offline_delivery_and_remove_accounts(twin: Twin) {
    two_users_chat(&Server::start(twin, &[]));
}

/// Everything two users do in a day, against any XMPP server for the domain
/// `localhost`: ours here, Prosody in the interoperability tests.
pub(crate) fn two_users_chat(server: &Server) {
    let mut alice = Client::start(server, "alice@localhost", "alice-pw", &["--register"]);
    let c = alice.expect("connected", |v| v["type"] == "connected");
    assert_eq!(
        c["encrypted"],
        server.twin.tls(),
        "TLS exactly when the twin says: {c}"
    );
    let mut bob = Client::start(server, "bob@localhost", "bob-pw", &["--register"]);
    connected(&mut bob);

    // Subscription handshake: each adds the other.
    alice.send("/add bob@localhost");
    bob.expect_event("subscribe", "from", "alice@localhost");
    bob.send("/add alice@localhost");
    alice.expect("roster push: bob both", |v| {
        v["type"] == "roster" && v["jid"] == "bob@localhost" && v["subscription"] == "both"
    });
    bob.expect("roster push: alice both", |v| {
        v["type"] == "roster" && v["jid"] == "alice@localhost" && v["subscription"] == "both"
    });

    // Presence with show and status reaches the subscriber.
    bob.send("/status away at lunch");
    alice.expect("bob away", |v| {
        presence_from(v, "bob@localhost") && v["show"] == "away" && v["status"] == "at lunch"
    });

    // A direct message and its delivery receipt.
    alice.send("/msg bob@localhost hello bob");
    let m = bob.expect_event("message", "from", "alice@localhost");
    assert_eq!(m["body"], "hello bob");
    assert!(
        m["delayed"].is_null(),
        "live message must not be marked delayed: {m}"
    );
    let id = m["id"].as_str().unwrap().to_string();
    let r = alice.expect_event("receipt", "from", "bob@localhost");
    assert_eq!(r["id"], id.as_str());

    // /chat then plain lines.
    bob.send("/chat alice@localhost");
    bob.send("hi alice, plain line");
    assert_eq!(
        alice.expect_event("message", "from", "bob@localhost")["body"],
        "hi alice, plain line"
    );

    // Bob signs out: alice sees him go offline.
    let (code, t) = bob.finish();
    assert_eq!(code, 0, "{t}");
    alice.expect("bob offline", |v| {
        presence_from(v, "bob@localhost") && v["available"] == false
    });

    // A message to offline bob is stored...
    alice.send("/msg bob@localhost while you were out");
    alice.send("/who");
    alice.expect("who", |v| v["type"] == "ok" && v["command"] == "/who");
    let (code, t) = alice.finish();
    assert_eq!(code, 0, "{t}");

    // ...and delivered at his next sign-in, with its delay stamp.
    let mut bob = Client::start(server, "bob@localhost", "bob-pw", &[]);
    connected(&mut bob);
    let m = bob.expect_event("message", "from", "alice@localhost");
    assert_eq!(m["body"], "while you were out");
    assert!(
        m["delayed"].as_str().is_some_and(|s| s.ends_with('Z')),
        "offline message has a delay stamp: {m}"
    );
    bob.send("/roster");
    bob.expect("roster lists alice", |v| {
        v["type"] == "roster" && v["jid"] == "alice@localhost"
    });
    let (code, t) = bob.finish();
    assert_eq!(code, 0, "{t}");

    // Both delete their accounts; signing in afterwards fails.
    for (jid, pw) in [("alice@localhost", "alice-pw"), ("bob@localhost", "bob-pw")] {
        let (code, out, err) = run_client(server, jid, pw, &[], "/unregister\n");
        assert_eq!(code, 0, "unregister {jid}: {out}\n{err}");
        assert!(out.contains("account deleted"), "{out}");
        let (code, out, err) = run_client(server, jid, pw, &[], "");
        assert_eq!(code, 2, "sign-in after removal must fail: {out}\n{err}");
        assert!(err.contains("wrong user name or password"), "{err}");
    }
}

fn wrong_password_taken_name_and_unreachable_server_are_clear_errors(twin: Twin) {
    let server = Server::start(twin, &[]);
    let (code, out, err) = run_client(&server, "carol@localhost", "right", &["--register"], "");
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, _, err) = run_client(&server, "carol@localhost", "wrong", &[], "");
    assert_eq!(code, 2);
    assert_eq!(
        err.trim(),
        format!(
            "{}: sign-in refused: wrong user name or password",
            twin.bin()
        )
    );
    let (code, _, err) = run_client(&server, "Carol@localhost", "x", &["--register"], "");
    assert_eq!(code, 2);
    assert!(
        err.contains("'carol' is taken"),
        "case folding makes Carol the same account: {err}"
    );
    // PLAIN works too when forced (the labs sniff it).
    let (code, out, err) = run_client(&server, "carol@localhost", "right", &["--plain"], "");
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("\"mechanism\":\"PLAIN\""), "{out}");
    // A command that fails makes the exit code 1.
    let (code, out, _) = run_client(
        &server,
        "carol@localhost",
        "right",
        &[],
        "/msg nobody@localhost hi\n",
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("service-unavailable"), "{out}");
    // The address the server had: nobody listens there once it is gone.
    let gone = server.addr;
    drop(server);
    let out = std::process::Command::new(tests::bin(twin.bin()))
        .args([
            "client",
            "--server",
            &gone.to_string(),
            "--jid",
            "carol@localhost",
        ])
        .env("CHAT_PASSWORD", "x")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect to 127.0.0.1:") && err.lines().count() == 1,
        "{err}"
    );
}

fn acknowledged_registration_and_offline_message_survive_kill_9(twin: Twin) {
    let server = Server::start(twin, &[]);
    let (code, out, err) = run_client(&server, "dave@localhost", "pw-d", &["--register"], "");
    assert_eq!(code, 0, "{out}\n{err}");
    // erin registers and sends dave a message; her client exits only after
    // the server closed the stream, that is after it stored the message.
    let (code, out, err) = run_client(
        &server,
        "erin@localhost",
        "pw-e",
        &["--register"],
        "/msg dave@localhost survives kill -9\n",
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let server = server.kill9_and_restart();
    let mut dave = Client::start(&server, "dave@localhost", "pw-d", &[]);
    connected(&mut dave);
    assert_eq!(
        dave.expect_event("message", "from", "erin@localhost")["body"],
        "survives kill -9"
    );
    let (code, t) = dave.finish();
    assert_eq!(code, 0, "{t}");
    let (code, out, err) = run_client(&server, "erin@localhost", "pw-e", &[], "");
    assert_eq!(
        code,
        0,
        "erin's account survived: {out}\n{err}\n{}",
        server.log()
    );
}

/// Message carbons (XEP-0280): alice on her phone and her laptop sees on
/// each what the other sent and received; the device that sent or got the
/// message gets no copy; a carbon forged by someone else is not believed.
fn carbons_show_each_device_what_the_other_sent_and_received(twin: Twin) {
    carbons_on_two_devices(&Server::start(twin, &[]));
}

/// The carbons scenario against any server for `localhost`: ours here,
/// Prosody (with mod_carbons) in the interoperability tests.
pub(crate) fn carbons_on_two_devices(server: &Server) {
    let twin = server.twin;
    let mut phone = Client::start(server, "alice@localhost/phone", "alice-pw", &["--register"]);
    connected(&mut phone);
    let mut laptop = Client::start(server, "alice@localhost/laptop", "alice-pw", &[]);
    connected(&mut laptop);
    // The laptop enables carbons before its initial presence: once the
    // phone sees it online, copies flow.
    phone.expect("the laptop online", |v| {
        v["type"] == "presence" && v["from"] == "alice@localhost/laptop" && v["available"] == true
    });
    let mut bob = Client::start(server, "bob@localhost", "bob-pw", &["--register"]);
    connected(&mut bob);

    phone.send("/msg bob@localhost sent from the phone");
    let m = bob.expect_event("message", "from", "alice@localhost/phone");
    assert_eq!(m["body"], "sent from the phone");
    let c = laptop.expect("a copy of what the phone sent", |v| v["type"] == "carbon");
    assert_eq!(c["sent"], true, "{c}");
    assert_eq!(c["peer"], "bob@localhost", "{c}");
    assert_eq!(c["body"], "sent from the phone", "{c}");

    bob.send("/msg alice@localhost/phone only to the phone");
    let m = phone.expect_event("message", "from", "bob@localhost");
    assert_eq!(m["body"], "only to the phone");
    let c = laptop.expect("a copy of what the phone received", |v| {
        v["type"] == "carbon"
    });
    assert_eq!(c["sent"], false, "{c}");
    assert!(
        c["peer"].as_str().unwrap().starts_with("bob@localhost/"),
        "{c}"
    );
    assert_eq!(c["body"], "only to the phone", "{c}");

    if twin == Twin::Plain && !server.is_prosody() {
        // mallory wraps a forged message in a carbon and sends it to the
        // laptop; then an ordinary one, to know the first was read.
        let answer = tests::XmppRaw::register(server, "mallory", "m-pw");
        assert_eq!(
            answer.get_attr("type"),
            Some("result"),
            "{}",
            answer.to_xml()
        );
        let mut mallory = tests::XmppRaw::login(server, "mallory", "m-pw", "x");
        mallory.send(
            "<message to='alice@localhost/laptop' type='chat'><received xmlns='urn:xmpp:carbons:2'>\
             <forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' type='chat' \
             from='bob@localhost/x' to='alice@localhost/phone'><body>forged by mallory</body>\
             </message></forwarded></received></message>",
        );
        mallory.send(
            "<message to='alice@localhost/laptop' type='chat'><body>plain hello</body></message>",
        );
        laptop.expect_event("message", "from", "mallory@localhost");
    }
    for c in [bob, phone] {
        let (code, t) = c.finish();
        assert_eq!(code, 0, "{t}");
    }
    let (code, t) = laptop.finish();
    assert_eq!(code, 0, "{t}");
    assert!(
        !t.contains("forged by mallory"),
        "a forged carbon was believed: {t}"
    );
}

/// The message archive (XEP-0313) with `--archive-days`: each side pages
/// back through the conversation with `/history`; a forged archive result
/// is not believed; a server without an archive says so.
fn history_pages_back_through_the_archive(twin: Twin) {
    let server = Server::start(twin, &["--archive-days", "30"]);
    let mut alice = Client::start(&server, "alice@localhost", "alice-pw", &["--register"]);
    connected(&mut alice);
    let mut bob = Client::start(&server, "bob@localhost", "bob-pw", &["--register"]);
    connected(&mut bob);
    for text in ["first", "second", "third"] {
        alice.send(&format!("/msg bob@localhost {text}"));
        bob.expect_event("message", "from", "alice@localhost");
    }
    bob.send("/msg alice@localhost fourth, from bob");
    alice.expect_event("message", "from", "bob@localhost");
    // The last two, oldest first, then the word that more are kept.
    alice.send("/history bob@localhost 2");
    let a = alice.expect("archived 1", |v| v["type"] == "archived");
    assert_eq!(a["body"], "third", "{a}");
    let b = alice.expect("archived 2", |v| v["type"] == "archived");
    assert_eq!(b["body"], "fourth, from bob", "{b}");
    assert!(
        b["from"].as_str().unwrap().starts_with("bob@localhost"),
        "{b}"
    );
    let done = alice.expect("history done", |v| {
        v["type"] == "ok" && v["command"] == "/history"
    });
    assert!(
        done["detail"]
            .as_str()
            .unwrap()
            .contains("older messages are kept"),
        "{done}"
    );
    // bob's own archive has the same conversation.
    bob.send("/history alice@localhost 100");
    let mut bodies = Vec::new();
    for _ in 0..4 {
        bodies.push(bob.expect("archived", |v| v["type"] == "archived")["body"].clone());
    }
    assert_eq!(bodies, ["first", "second", "third", "fourth, from bob"]);
    let done = bob.expect("history done", |v| {
        v["type"] == "ok" && v["command"] == "/history"
    });
    assert!(
        done["detail"]
            .as_str()
            .unwrap()
            .contains("all the archive keeps"),
        "{done}"
    );
    if twin == Twin::Plain {
        // mallory sends something shaped like an archive result.
        let answer = tests::XmppRaw::register(&server, "mallory", "m-pw");
        assert_eq!(answer.get_attr("type"), Some("result"));
        let mut mallory = tests::XmppRaw::login(&server, "mallory", "m-pw", "x");
        let bare = "alice@localhost";
        mallory.send(&format!(
            "<message to='{bare}'><result xmlns='urn:xmpp:mam:2' id='1'><forwarded xmlns='urn:xmpp:forward:0'>\
             <message xmlns='jabber:client' from='bob@localhost/x' to='{bare}'><body>forged history</body></message>\
             </forwarded></result></message>\
             <message to='{bare}' type='chat'><body>plain hello</body></message>"
        ));
        alice.expect_event("message", "from", "mallory@localhost");
        // A stanza-id claiming to be alice's archive id, from a client:
        // removed, and the real one (the server's) is there instead.
        let mut raw_alice = tests::XmppRaw::login(&server, "alice", "alice-pw", "raw");
        raw_alice.send("<presence/>");
        mallory.send(&format!(
            "<message to='{bare}/raw' type='chat'><body>stamped</body>\
             <stanza-id xmlns='urn:xmpp:sid:0' id='1' by='{bare}'/></message>"
        ));
        let m = raw_alice.expect("stamped", |e| e.to_xml().contains("stamped"));
        let ids: Vec<_> = m
            .elements()
            .filter(|e| e.is("stanza-id", "urn:xmpp:sid:0"))
            .collect();
        assert_eq!(ids.len(), 1, "{}", m.to_xml());
        assert_ne!(ids[0].get_attr("id"), Some("1"), "{}", m.to_xml());
        assert_eq!(ids[0].get_attr("by"), Some(bare));
    }
    // A room's archive: alice reads back what was said in a room she is in.
    for c in [&mut alice, &mut bob] {
        c.send("/join history@conference.localhost");
        c.expect("joined", |v| v["type"] == "room-joined");
    }
    bob.send("/say history@conference.localhost said in the room");
    alice.expect_event("room-message", "body", "said in the room");
    alice.send("/history history@conference.localhost 5");
    let a = alice.expect("room archived", |v| v["type"] == "archived");
    assert_eq!(a["body"], "said in the room", "{a}");
    assert_eq!(a["from"], "history@conference.localhost/bob", "{a}");
    alice.expect("room history done", |v| {
        v["type"] == "ok" && v["command"] == "/history"
    });
    let (code, t) = bob.finish();
    assert_eq!(code, 0, "{t}");
    let (code, t) = alice.finish();
    assert_eq!(code, 0, "{t}");
    assert!(!t.contains("forged history"), "{t}");
    // Without --archive-days: no archive, and the client is told.
    let plain = Server::start(twin, &[]);
    let (code, out, _) = tests::run_client(
        &plain,
        "carol@localhost",
        "c-pw",
        &["--register"],
        "/history bob@localhost\n",
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("keeps no archive"), "{out}");
}

/// PEP from our client end to end (XEP-0172 nicknames over XEP-0163): our
/// client's capabilities say it wants nicknames, the server asks it what
/// they mean, and a contact's `/nick` reaches it, now and at its next
/// sign-in.
fn nicknames_reach_contacts_over_pep(twin: Twin) {
    nicknames_over_pep(&Server::start(twin, &[]));
}

/// The nickname scenario against any server for `localhost`: ours here,
/// Prosody (mod_pep) in the interoperability tests.
pub(crate) fn nicknames_over_pep(server: &Server) {
    let mut kim = Client::start(server, "kim@localhost", "kim-pw", &["--register"]);
    connected(&mut kim);
    let mut lou = Client::start(server, "lou@localhost", "lou-pw", &["--register"]);
    connected(&mut lou);
    kim.send("/add lou@localhost");
    lou.expect_event("subscribe", "from", "kim@localhost");
    lou.send("/add kim@localhost");
    kim.expect("lou online", |v| {
        presence_from(v, "lou@localhost") && v["available"] == true
    });
    lou.expect("kim online", |v| {
        presence_from(v, "kim@localhost") && v["available"] == true
    });
    lou.send("/nick Lou the Second");
    lou.expect("published", |v| {
        v["type"] == "ok" && v["command"] == "/nick"
    });
    let n = kim.expect_event("nick", "from", "lou@localhost");
    assert_eq!(n["nick"], "Lou the Second", "{n}");
    let (code, t) = kim.finish();
    assert_eq!(code, 0, "{t}");
    // Signing in again, kim learns lou's current nickname at once.
    let mut kim = Client::start(server, "kim@localhost", "kim-pw", &[]);
    let n = kim.expect_event("nick", "from", "lou@localhost");
    assert_eq!(n["nick"], "Lou the Second", "{n}");
    for c in [kim, lou] {
        let (code, t) = c.finish();
        assert_eq!(code, 0, "{t}");
    }
}

tests::twin_tests!(
    nicknames_reach_contacts_over_pep,
    history_pages_back_through_the_archive,
    carbons_show_each_device_what_the_other_sent_and_received,
    two_clients_register_subscribe_chat_get_offline_delivery_and_remove_accounts,
    wrong_password_taken_name_and_unreachable_server_are_clear_errors,
    acknowledged_registration_and_offline_message_survive_kill_9,
);

/// Text mode says what a subscription did once, not every roster change
/// (`-v` shows them all): one `/add` was five roster lines.
#[test]
fn text_mode_shows_subscriptions_once_and_roster_changes_with_v() {
    let server = Server::start(Twin::Plain, &[]);
    let mut bob = Client::start(&server, "bob@localhost", "pw-b", &["--register"]);
    bob.expect("connected", |v| v["type"] == "connected");
    let mut run = |user: &str, extra: &[&str]| {
        use std::io::Write;
        let mut child = std::process::Command::new(tests::bin("chat-plain"))
            .args([
                "client",
                "--server",
                &server.addr.to_string(),
                "--jid",
                user,
                "--register",
            ])
            .args(extra)
            .env("CHAT_PASSWORD", "pw")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(
                b"/add bob@localhost\n/wait subscription bob@localhost 10\n/msg bob@localhost hi\n",
            )
            .unwrap();
        // bob says yes.
        bob.expect_event("subscribe", "from", user);
        bob.send(&format!("/add {user}"));
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let quiet = run("carol@localhost", &[]);
    assert!(
        quiet.contains("subscription: bob@localhost accepted"),
        "{quiet}"
    );
    assert!(!quiet.lines().any(|l| l.starts_with("roster ")), "{quiet}");
    // A script's stdin is not on the screen: its message gets a line.
    assert!(quiet.contains("sent m-"), "{quiet}");
    let verbose = run("dave@localhost", &["-v"]);
    assert!(
        verbose.lines().filter(|l| l.starts_with("roster ")).count() >= 2,
        "{verbose}"
    );
}
