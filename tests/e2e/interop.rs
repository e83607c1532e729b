//! Interoperability with XMPP software nobody here wrote, over plaintext,
//! STARTTLS and direct TLS (`twin_tests!`):
//! - slixmpp (PyPI), a client library, against our server;
//! - Prosody (Debian), a server, under our client.
//!
//! `scripts/setup.sh --interop` installs both; see `tests::interop_tool`.

use std::process::Command;

use serde_json::Value;
use tests::{Client, Server, Twin, interop_tool, presence_from, run_client, workspace_root};

use crate::chat::two_users_chat;

/// A slixmpp client process (tests/interop/slixmpp_peer.py) for `jid`,
/// connecting the way the server's twin says (plain, STARTTLS trusting the
/// lab CA, or direct TLS).
fn slixmpp(python: &std::path::Path, server: &Server, jid: &str, args: &[&str]) -> Client {
    let mut cmd = Command::new(python);
    cmd.arg(workspace_root().join("tests/interop/slixmpp_peer.py"))
        .args(["--jid", jid, "--password", "sally-pw", "--timeout", "30"]);
    let ca = server.certs.as_ref().map(|c| c.join("ca.pem"));
    match server.twin {
        Twin::Plain => cmd.args(["--server", &server.addr.to_string(), "--tls", "plain"]),
        Twin::StartTls => cmd.args(["--server", &server.addr.to_string(), "--tls", "starttls"]),
        Twin::DirectTls => cmd.args([
            "--server",
            &server.direct.expect("direct port").to_string(),
            "--tls",
            "direct",
        ]),
    };
    if let Some(ca) = ca {
        // aiohttp (HTTP file upload) trusts what OpenSSL's default paths
        // name: the lab CA, as the XMPP connection does.
        cmd.env("SSL_CERT_FILE", &ca);
        cmd.arg("--ca").arg(ca);
    }
    cmd.args(args);
    Client::spawn(&format!("slixmpp {jid}"), cmd)
}

/// Waits for sign-in; checks TLS is on exactly when the twin says so.
fn connected_with(c: &mut Client, twin: Twin) -> String {
    let v = c.expect("connected", |v| v["type"] == "connected");
    assert_eq!(v["encrypted"], twin.tls(), "{v}");
    v["mechanism"].as_str().unwrap_or_default().to_string()
}

fn slixmpp_registers_signs_in_with_every_mechanism_chats_and_deletes_its_account(twin: Twin) {
    let Some(python) = interop_tool("slixmpp") else {
        return;
    };
    let server = Server::start(twin, &[]);
    let mut alice = Client::start(&server, "alice@localhost", "alice-pw", &["--register"]);
    alice.expect("connected", |v| v["type"] == "connected");

    // In-band registration, sign-in (slixmpp picks SCRAM-SHA-256, the best
    // we offer), disco/version/ping on the domain, and a subscription
    // request to alice.
    let mut sally = slixmpp(
        &python,
        &server,
        "sally@localhost",
        &[
            "--register",
            "--name",
            "Sally Python",
            "--email",
            "sally@python.example",
            "--probe-server",
            "--show",
            "away",
            "--status",
            "written in Python",
            "--add",
            "alice@localhost",
        ],
    );
    sally.expect("registered", |v| v["type"] == "registered");
    assert_eq!(connected_with(&mut sally, twin), "SCRAM-SHA-256");
    let info = sally.expect("server_info", |v| v["type"] == "server_info");
    let features: Vec<&str> = info["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for f in [
        "http://jabber.org/protocol/disco#info",
        "urn:xmpp:ping",
        "jabber:iq:version",
        "jabber:iq:register",
    ] {
        assert!(features.contains(&f), "disco#info lacks {f}: {info}");
    }
    assert_eq!(info["ping"], true, "{info}");
    assert!(info["software"].as_str().is_some_and(|s| !s.is_empty()));

    // Every mechanism we offer works with a client we did not write.
    for mech in ["SCRAM-SHA-1", "PLAIN"] {
        let mut other = slixmpp(
            &python,
            &server,
            "sally@localhost",
            &["--mech", mech, "--quit"],
        );
        assert_eq!(connected_with(&mut other, twin), mech);
        let (code, t) = other.finish();
        assert_eq!(code, 0, "{t}");
    }

    // The subscription handshake across the two implementations: alice
    // accepts and subscribes back; slixmpp auto-approves.
    alice.expect_event("subscribe", "from", "sally@localhost");
    alice.send("/add sally@localhost");
    // Both arrive, in either order: slixmpp approves and sends its
    // presence while alice's own approval is still on its way.
    let (both, present) = (std::cell::Cell::new(false), std::cell::Cell::new(false));
    alice.expect(
        "roster push: sally both, and sally's presence with show and status",
        |v| {
            if v["type"] == "roster" && v["jid"] == "sally@localhost" && v["subscription"] == "both"
            {
                both.set(true);
            }
            if presence_from(v, "sally@localhost")
                && v["show"] == "away"
                && v["status"] == "written in Python"
            {
                present.set(true);
            }
            both.get() && present.get()
        },
    );
    sally.expect_event("presence", "from", "alice@localhost");

    // Chat states (XEP-0085): slixmpp's plugin reads ours.
    alice.send("/typing sally@localhost");
    let st = sally.expect_event("chat-state", "from", "alice@localhost");
    assert_eq!(st["state"], "composing", "{st}");
    alice.send("/typing sally@localhost off");
    let st = sally.expect_event("chat-state", "from", "alice@localhost");
    assert_eq!(st["state"], "paused", "{st}");

    // Messages both ways, with XEP-0184 receipts both ways; slixmpp says
    // it is typing before it answers, and our client shows it.
    alice.send("/msg sally@localhost hello sally");
    assert_eq!(
        sally.expect_event("message", "from", "alice@localhost")["body"],
        "hello sally"
    );
    let st = alice.expect_event("chat-state", "from", "sally@localhost");
    assert_eq!(st["state"], "composing", "{st}");
    assert_eq!(
        alice.expect_event("message", "from", "sally@localhost")["body"],
        "echo: hello sally"
    );
    alice.expect_event("receipt", "from", "sally@localhost");
    sally.expect_event("receipt", "from", "alice@localhost");

    // The registration form's name and email went into the directory.
    alice.send("/search python");
    let u = alice.expect("sally in the directory", |v| v["type"] == "user");
    assert_eq!(u["jid"], "sally@localhost");
    assert_eq!(u["name"], "Sally Python");
    assert_eq!(u["email"], "sally@python.example");

    // "bye" makes slixmpp delete its account (XEP-0077 remove) and leave.
    alice.send("/msg sally@localhost bye");
    sally.expect("unregistered", |v| v["type"] == "unregistered");
    let (code, t) = sally.finish();
    assert_eq!(code, 0, "{t}");
    alice.expect("sally gone", |v| {
        presence_from(v, "sally@localhost") && v["available"] == false
    });
    let mut again = slixmpp(&python, &server, "sally@localhost", &["--quit"]);
    again.expect("refused", |v| v["type"] == "error");
    let (code, t) = again.finish();
    assert_eq!(code, 2, "a deleted account cannot sign in: {t}");
    let (code, t) = alice.finish();
    assert_eq!(code, 0, "{t}");
}

/// Our client shares a file with a contact who is offline, through the
/// server's upload service; the contact downloads it on signing in. Over
/// TLS the file goes over HTTPS, checked with the chat's own CA.
fn shares_a_file_with_an_offline_contact(server: &Server) {
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("photo of us.jpg");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(&photo, &data).unwrap();
    let want: String = tests::sha256_hex(&data);
    let mut frank = Client::start(server, "frank@localhost", "frank-pw", &["--register"]);
    frank.expect("connected", |v| v["type"] == "connected");
    let (code, t) = frank.finish();
    assert_eq!(code, 0, "{t}");
    let mut gina = Client::start(server, "gina@localhost", "gina-pw", &["--register"]);
    gina.expect("connected", |v| v["type"] == "connected");
    gina.send(&format!("/sendfile frank@localhost {}", photo.display()));
    let shared = gina.expect("shared", |v| {
        v["command"] == "/sendfile" && (v["type"] == "ok" || v["type"] == "error")
    });
    assert_eq!(shared["type"], "ok", "{shared}\n{}", server.log());
    let detail = shared["detail"].as_str().unwrap();
    assert!(detail.contains(&want), "{shared}");
    if server.is_prosody() {
        // Through mod_http_file_share, the twin's way.
        let scheme = if server.twin.tls() { "https" } else { "http" };
        assert!(
            detail.contains(&format!("at {scheme}://localhost:"))
                && detail.contains("/file_share/"),
            "{shared}"
        );
    }
    let downloads = dir.path().join("downloads");
    let mut frank = Client::start(
        server,
        "frank@localhost",
        "frank-pw",
        &["--accept-files", "--downloads", downloads.to_str().unwrap()],
    );
    let offer = frank.expect_event("file-shared", "name", "photo of us.jpg");
    assert!(
        offer["from"]
            .as_str()
            .unwrap()
            .starts_with("gina@localhost"),
        "{offer}"
    );
    let got = frank.expect("downloaded", |v| {
        v["type"] == "file-received" || v["type"] == "file-failed"
    });
    assert_eq!(got["type"], "file-received", "{got}\n{}", server.log());
    assert_eq!(got["sha256"], want.as_str());
    assert_eq!(
        std::fs::read(downloads.join("photo of us.jpg")).unwrap(),
        data
    );
    for c in [frank, gina] {
        let (code, t) = c.finish();
        assert_eq!(code, 0, "{t}");
    }
}

fn our_client_against_prosody(twin: Twin) {
    let Some(prosody) = interop_tool("prosody") else {
        return;
    };
    // The one server the suite starts on ports found free beforehand
    // (a small race with parallel tests): Prosody cannot report the port it
    // bound, as ours do (see `Server::prosody`).
    let server = Server::prosody(&prosody, twin);
    two_users_chat(&server);
    // Message carbons with Prosody's mod_carbons: our client enables them
    // and shows the copies.
    crate::chat::carbons_on_two_devices(&server);
    // PEP with Prosody's mod_pep: our client's nickname reaches a contact.
    crate::chat::nicknames_over_pep(&server);
    // HTTP file upload with Prosody's mod_http_file_share.
    shares_a_file_with_an_offline_contact(&server);
    // Stream management with Prosody's mod_smacks: our client resumes
    // after the network drops, and misses nothing.
    crate::stream_management::resumes_after_the_network_drops(&server);
    // The message archive with Prosody's mod_mam: our client's /history.
    let mut dave = Client::start(&server, "dave@localhost", "dave-pw", &["--register"]);
    dave.expect("connected", |v| v["type"] == "connected");
    let mut erin = Client::start(&server, "erin@localhost", "erin-pw", &["--register"]);
    erin.expect("connected", |v| v["type"] == "connected");
    dave.send("/msg erin@localhost kept by prosody");
    erin.expect_event("message", "from", "dave@localhost");
    dave.send("/history erin@localhost 5");
    let a = dave.expect("archived by prosody", |v| v["type"] == "archived");
    assert_eq!(a["body"], "kept by prosody", "{a}");
    dave.expect("history done", |v| {
        v["type"] == "ok" && v["command"] == "/history"
    });
    for c in [dave, erin] {
        let (code, t) = c.finish();
        assert_eq!(code, 0, "{t}");
    }
    // The mechanism the labs force, and the errors a user sees, hold against
    // a server we did not write too.
    let (code, out, err) = run_client(
        &server,
        "carol@localhost",
        "carol-pw",
        &["--register", "--plain"],
        "",
    );
    assert_eq!(code, 0, "{out}\n{err}\n{}", server.log());
    assert!(out.contains("\"mechanism\":\"PLAIN\""), "{out}");
    // Without --plain: the best Prosody offers (SCRAM-SHA-1). Over TLS our
    // client says `y` in its GS2 header (it would bind to the channel, but
    // Prosody 0.12 offers no -PLUS over TLS 1.3), and Prosody accepts it.
    let (code, out, err) = run_client(&server, "carol@localhost", "carol-pw", &[], "");
    assert_eq!(code, 0, "{out}\n{err}\n{}", server.log());
    assert!(out.contains("\"mechanism\":\"SCRAM-SHA-1\""), "{out}");
    let (code, _, err) = run_client(&server, "carol@localhost", "wrong", &[], "");
    assert_eq!(code, 2);
    assert!(err.contains("wrong user name or password"), "{err}");
    let (code, _, err) = run_client(&server, "carol@localhost", "x", &["--register"], "");
    assert_eq!(code, 2);
    assert!(err.contains("'carol' is taken"), "{err}");
}

fn slixmpp_creates_and_joins_our_rooms_and_exchanges_groupchat_with_our_client(twin: Twin) {
    let Some(python) = interop_tool("slixmpp") else {
        return;
    };
    let server = Server::start(twin, &[]);
    let mut alice = Client::start(&server, "alice@localhost", "alice-pw", &["--register"]);
    // alice creates one room and leaves a message in it...
    alice.send("/join rustroom");
    alice.expect("joined", |v| v["type"] == "room-joined");
    alice.send("/say rustroom written before sally came");
    alice.expect("echo", |v| v["type"] == "room-message");
    // ...slixmpp creates another, then joins alice's and gets its history.
    let mut sally = slixmpp(
        &python,
        &server,
        "sally@localhost",
        &[
            "--register",
            "--join",
            "pyroom@conference.localhost",
            "--join",
            "rustroom@conference.localhost",
        ],
    );
    let created = sally.expect("pyroom", |v| {
        v["type"] == "room-joined" && v["room"] == "pyroom@conference.localhost"
    });
    assert_eq!(created["created"], true, "{created}");
    let joined = sally.expect("rustroom", |v| {
        v["type"] == "room-joined" && v["room"] == "rustroom@conference.localhost"
    });
    assert_eq!(joined["created"], false);
    // slixmpp counts itself among the occupants.
    assert_eq!(
        joined["occupants"],
        serde_json::json!(["alice", "sally"]),
        "{joined}"
    );
    assert_eq!(
        joined["history"],
        serde_json::json!(["written before sally came"])
    );
    alice.expect("sally joined rustroom", |v| {
        v["type"] == "room-presence" && v["nick"] == "sally" && v["joined"] == true
    });

    // alice joins the room slixmpp created; both talk there.
    alice.send("/join pyroom");
    let j = alice.expect("joined pyroom", |v| {
        v["type"] == "room-joined" && v["room"] == "pyroom@conference.localhost"
    });
    assert_eq!(j["created"], false);
    assert_eq!(j["occupants"], serde_json::json!(["alice", "sally"]), "{j}");
    sally.expect("alice in pyroom", |v| {
        v["type"] == "room-presence" && v["nick"] == "alice" && v["available"] == true
    });
    alice.send("hello python");
    let m = sally.expect("groupchat from alice", |v| {
        v["type"] == "room-message" && v["body"] == "hello python"
    });
    assert_eq!(m["nick"], "alice");
    assert_eq!(m["room"], "pyroom@conference.localhost");
    let echo = alice.expect("slixmpp's answer", |v| {
        v["type"] == "room-message" && v["body"] == "echo: hello python"
    });
    assert_eq!(echo["nick"], "sally");
    let (code, t) = alice.finish();
    assert_eq!(code, 0, "{t}");
    sally.expect("alice left", |v| {
        v["type"] == "room-presence" && v["nick"] == "alice" && v["available"] == false
    });
}

/// Message carbons (XEP-0280) between slixmpp's plugin and our client,
/// both signed in as sally: each sees what the other sent, and slixmpp
/// sees what its other session received.
fn slixmpp_and_our_client_share_carbons(twin: Twin) {
    let Some(python) = interop_tool("slixmpp") else {
        return;
    };
    let server = Server::start(twin, &[]);
    let mut alice = Client::start(&server, "alice@localhost", "alice-pw", &["--register"]);
    alice.expect("connected", |v| v["type"] == "connected");
    let mut sally = slixmpp(
        &python,
        &server,
        "sally@localhost",
        &["--register", "--carbons"],
    );
    sally.expect("carbons on", |v| v["type"] == "carbons-enabled");
    let mut desk = Client::start(&server, "sally@localhost/desk", "sally-pw", &[]);
    connected_with(&mut desk, twin);

    // Our session sends: slixmpp gets the copy.
    desk.send("/msg alice@localhost from the desk");
    alice.expect_event("message", "from", "sally@localhost/desk");
    let c = sally.expect("copy of what the desk sent", |v| v["type"] == "carbon");
    assert_eq!(c["sent"], true, "{c}");
    assert_eq!(c["peer"], "alice@localhost", "{c}");
    assert_eq!(c["body"], "from the desk", "{c}");

    // Our session receives: slixmpp gets the copy.
    alice.send("/msg sally@localhost/desk to the desk only");
    desk.expect_event("message", "from", "alice@localhost");
    let c = sally.expect("copy of what the desk received", |v| v["type"] == "carbon");
    assert_eq!(c["sent"], false, "{c}");
    assert!(
        c["peer"].as_str().unwrap().starts_with("alice@localhost/"),
        "{c}"
    );
    assert_eq!(c["body"], "to the desk only", "{c}");

    // slixmpp's session sends (its echo of a message to both): our client
    // gets the copy.
    alice.send("/msg sally@localhost to both");
    let c = desk.expect("copy of slixmpp's echo", |v| {
        v["type"] == "carbon" && v["body"] == "echo: to both"
    });
    assert_eq!(c["sent"], true, "{c}");
    assert!(
        c["peer"].as_str().unwrap().starts_with("alice@localhost"),
        "{c}"
    );
    for c in [desk, alice] {
        let (code, t) = c.finish();
        assert_eq!(code, 0, "{t}");
    }
}

/// PEP (XEP-0163) with slixmpp's XEP-0060/0163/0115 plugins: sam, a
/// contact of sally who said (in his capabilities) he wants the node, is
/// sent sally's item; another user reads the open node; a node with the
/// default access model refuses a stranger.
fn slixmpp_publishes_and_reads_pep_and_gets_notifications(twin: Twin) {
    let Some(python) = interop_tool("slixmpp") else {
        return;
    };
    const NODE: &str = "urn:example:pep:notes";
    let server = Server::start(twin, &[]);
    // sally publishes once she sees sam online; sam subscribes to her
    // presence (both approve, as users would) and wants the node.
    let note = format!("{NODE}=hello from sally");
    let mut sally = slixmpp(
        &python,
        &server,
        "sally@localhost",
        &[
            "--register",
            "--pep-publish",
            &note,
            "--pep-when",
            "sam@localhost",
        ],
    );
    connected_with(&mut sally, twin);
    let mut sam = slixmpp(
        &python,
        &server,
        "sam@localhost",
        &[
            "--register",
            "--pep-notify",
            NODE,
            "--add",
            "sally@localhost",
        ],
    );
    connected_with(&mut sam, twin);
    let p = sally.expect("published", |v| v["type"] == "pep-published");
    let id = p["id"].as_str().unwrap().to_string();
    let e = sam.expect("sally's item, as a notification", |v| {
        v["type"] == "pep-event"
    });
    assert_eq!(e["from"], "sally@localhost", "{e}");
    assert_eq!(e["node"], NODE, "{e}");
    assert_eq!(e["id"], id.as_str(), "{e}");
    assert_eq!(e["text"], "hello from sally", "{e}");
    // Anyone reads an open node.
    let mut ted = slixmpp(
        &python,
        &server,
        "ted@localhost",
        &[
            "--register",
            "--pep-items",
            "sally@localhost",
            NODE,
            "--quit",
        ],
    );
    let items = ted.expect("items", |v| v["type"] == "pep-items");
    assert_eq!(items["items"][0][0], id.as_str(), "{items}");
    assert_eq!(items["items"][0][1], "hello from sally", "{items}");
    let (code, t) = ted.finish();
    assert_eq!(code, 0, "{t}");
    // sue subscribed to sally earlier (with our client, while slixmpp's
    // sally approved); signing in with slixmpp wanting the node, she is
    // sent sally's latest item at once (XEP-0163 6.2).
    let mut sue = Client::start(&server, "sue@localhost", "sally-pw", &["--register"]);
    connected_with(&mut sue, twin);
    sue.send("/add sally@localhost");
    sue.expect_event("subscription", "from", "sally@localhost");
    let (code, t) = sue.finish();
    assert_eq!(code, 0, "{t}");
    let mut sue = slixmpp(&python, &server, "sue@localhost", &["--pep-notify", NODE]);
    let e = sue.expect("sally's latest item, at sign-in", |v| {
        v["type"] == "pep-event"
    });
    assert_eq!(e["from"], "sally@localhost", "{e}");
    assert_eq!(e["text"], "hello from sally", "{e}");
    // The peers stay signed in until dropped (which stops them).
    drop((sally, sam, sue));
}

/// slixmpp's XEP-0313 plugin reads our archive of its conversation with
/// our client.
fn slixmpp_reads_our_message_archive(twin: Twin) {
    let Some(python) = interop_tool("slixmpp") else {
        return;
    };
    let server = Server::start(twin, &["--archive-days", "30"]);
    let mut sally = slixmpp(&python, &server, "sally@localhost", &["--register"]);
    connected_with(&mut sally, twin);
    let mut alice = Client::start(&server, "alice@localhost", "alice-pw", &["--register"]);
    alice.expect("connected", |v| v["type"] == "connected");
    alice.send("/msg sally@localhost for the archive");
    // Delivered with its id in sally's archive (XEP-0359).
    let got = sally.expect_event("message", "body", "for the archive");
    let stanza_id = got["stanza_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{got}"))
        .to_string();
    alice.expect("slixmpp's echo", |v| {
        v["type"] == "message" && v["body"] == "echo: for the archive"
    });
    drop(sally);
    let mut sally = slixmpp(
        &python,
        &server,
        "sally@localhost",
        &["--mam-with", "alice@localhost", "--quit"],
    );
    let m = sally.expect("the archive", |v| v["type"] == "mam");
    assert_eq!(
        m["bodies"],
        serde_json::json!(["for the archive", "echo: for the archive"]),
        "{m}"
    );
    // The same id in the archive: a client reading both knows it has it.
    assert_eq!(m["ids"][0], stanza_id.as_str(), "{m}");

    // A room's archive, for those in it: alice (ours) talks in a room,
    // sally joins later and reads it; asked from outside, it is refused.
    alice.send("/join archived@conference.localhost");
    alice.expect("joined", |v| v["type"] == "room-joined");
    for line in ["first for the room", "second for the room"] {
        alice.send(&format!("/say archived@conference.localhost {line}"));
        alice.expect_event("room-message", "body", line);
    }
    let mut sally = slixmpp(
        &python,
        &server,
        "sally@localhost",
        &[
            "--join",
            "archived@conference.localhost",
            "--mam-room",
            "archived@conference.localhost",
            "--quit",
        ],
    );
    let m = sally.expect("the room's archive", |v| {
        v["type"] == "mam" || v["type"] == "error"
    });
    assert_eq!(
        m["bodies"],
        serde_json::json!(["first for the room", "second for the room"]),
        "{m}"
    );
    drop(sally);
    let mut sally = slixmpp(
        &python,
        &server,
        "sally@localhost",
        &["--mam-room", "archived@conference.localhost", "--quit"],
    );
    let e = sally.expect("refused", |v| v["type"] == "mam" || v["type"] == "error");
    assert_eq!(e["detail"], "mam: forbidden", "{e}");
    let (code, t) = alice.finish();
    assert_eq!(code, 0, "{t}");
}

/// HTTP file upload (XEP-0363): slixmpp's plugin finds the service, gets a
/// slot and PUTs the file with aiohttp; curl fetches it back, over plain
/// HTTP on the plaintext twin and HTTPS (the lab CA) on the TLS twins.
/// Then what a careless or hostile client tries: the same slot twice, more
/// bytes than the slot, fewer, an expired slot, a made-up token, a path in
/// the file name, a file over the size limit, over the quota. Each is
/// refused with its own status or error, and the first file is still there.
fn slixmpp_uploads_a_file_and_curl_fetches_it(twin: Twin) {
    let (Some(python), Some(curl)) = (interop_tool("slixmpp"), interop_tool("curl")) else {
        return;
    };
    let server = Server::start(
        twin,
        &[
            "--upload-listen",
            "127.0.0.1:0",
            "--upload-max-size",
            "400000",
            "--upload-quota",
            "700000",
            "--upload-expiry",
            "3",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("photo.jpg");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&photo, &data).unwrap();
    let curl_cmd = |args: &[&str]| {
        let mut c = Command::new(&curl);
        c.args(["-s", "-S", "--max-time", "20"]);
        if let Some(certs) = &server.certs {
            c.arg("--cacert").arg(certs.join("ca.pem"));
        }
        let out = c.args(args).output().unwrap();
        (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // PUT `len` bytes of `body` (curl sends the length it is given).
    let put = |url: &str, body: &[u8]| {
        let f = dir.path().join(format!("body-{}", body.len()));
        std::fs::write(&f, body).unwrap();
        let at = format!("@{}", f.display());
        curl_cmd(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            "--data-binary",
            &at,
            url,
        ])
        .0
    };

    // The sniffer on the chat's ports and the upload's.
    let mut ports = vec![
        server.addr.port(),
        server.upload.expect("upload port").port(),
    ];
    ports.extend(server.direct.map(|d| d.port()));
    let sniffer = tests::Sniffer::on_ports(&ports);
    let mut sally = slixmpp(
        &python,
        &server,
        "sally@localhost",
        &["--register", "--quit", "--upload", photo.to_str().unwrap()],
    );
    let up = sally.expect("uploaded", |v| {
        v["type"] == "uploaded" || v["type"] == "error"
    });
    assert_eq!(up["type"], "uploaded", "{up}\n{}", server.log());
    let url = up["url"].as_str().unwrap().to_string();
    let scheme = if twin == Twin::Plain {
        "http://"
    } else {
        "https://"
    };
    assert!(
        url.starts_with(scheme) && url.ends_with("/photo.jpg"),
        "{url}"
    );
    let got = dir.path().join("got.jpg");
    let (headers, err) = curl_cmd(&["-D", "-", "-o", got.to_str().unwrap(), &url]);
    assert!(headers.starts_with("HTTP/1.1 200"), "{headers}{err}");
    assert!(headers.contains("content-type: image/jpeg"), "{headers}");
    assert!(
        headers.contains("x-content-type-options: nosniff"),
        "{headers}"
    );
    assert_eq!(
        std::fs::read(&got).unwrap(),
        data,
        "the file came back changed"
    );
    let (code, t) = sally.finish();
    assert_eq!(code, 0, "{t}");
    sniffed_upload(sniffer, &server, &data);

    // The same slot again: refused, the file unchanged.
    assert_eq!(put(&url, b"overwritten"), "409");
    // A made-up token, and a real one with another name.
    let base = &url[..url.find("/upload/").unwrap()];
    assert_eq!(
        put(&format!("{base}/upload/AAAAAAAA/photo.jpg"), b"x"),
        "404"
    );
    let (status, _) = curl_cmd(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url.replace("photo.jpg", "other.jpg"),
    ]);
    assert_eq!(status, "404");

    // Slots asked for by hand: a path in the name, the size limit, the quota.
    let mut sally = slixmpp(
        &python,
        &server,
        "sally@localhost",
        &[
            "--quit",
            "--upload-slot",
            "../../etc/passwd",
            "1000",
            "--upload-slot",
            "big.bin",
            "400001",
            "--upload-slot",
            "short.bin",
            "1000",
            "--upload-slot",
            "late.bin",
            "1000",
            "--upload-slot",
            "second.bin",
            "300000",
            "--upload-slot",
            "third.bin",
            "300000",
        ],
    );
    let next = |sally: &mut Client| {
        sally.expect("a slot or an error", |v| {
            v["type"] == "slot" || v["type"] == "error"
        })
    };
    let tricky = next(&mut sally);
    let tricky_put = tricky["put"].as_str().unwrap_or_else(|| panic!("{tricky}"));
    assert!(
        tricky_put.ends_with("/passwd") && !tricky_put.contains(".."),
        "{tricky}"
    );
    let big = next(&mut sally);
    assert_eq!(big["detail"], "slot: not-acceptable", "{big}");
    assert!(
        big["text"].as_str().unwrap().contains("400000 bytes"),
        "{big}"
    );
    let short = next(&mut sally);
    let late = next(&mut sally);
    let second = next(&mut sally);
    assert_eq!(second["type"], "slot", "{second}");
    // 300,000 kept + 1,000 x3 + 300,000 open: the next 300,000 is over 700,000.
    let third = next(&mut sally);
    assert_eq!(third["detail"], "slot: resource-constraint", "{third}");
    assert!(third["text"].as_str().unwrap().contains("quota"), "{third}");
    let (code, t) = sally.finish();
    assert_eq!(code, 0, "{t}");

    // The file in the slot with the path trick lands under its token.
    assert_eq!(put(tricky_put, &[1u8; 1000]), "201");
    assert!(!server.data.join("etc").exists());
    // More bytes than the slot, then fewer: refused, nothing kept.
    let short_put = short["put"].as_str().unwrap();
    assert_eq!(put(short_put, &[2u8; 1001]), "413");
    assert_eq!(put(short_put, &[2u8; 999]), "400");
    let (status, _) = curl_cmd(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        short["get"].as_str().unwrap(),
    ]);
    assert_eq!(status, "404", "a refused upload is not served");
    // A slot left past its expiry (3 s here).
    std::thread::sleep(std::time::Duration::from_secs(4));
    let late_put = late["put"].as_str().unwrap();
    assert_eq!(put(late_put, &[3u8; 1000]), "410");

    // Through all that, the first file is still served, whole.
    let (_, err) = curl_cmd(&["-o", got.to_str().unwrap(), &url]);
    assert_eq!(std::fs::read(&got).unwrap(), data, "{err}");
    let parts: Vec<_> = std::fs::read_dir(server.data.join("uploads"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "part"))
        .collect();
    assert!(parts.is_empty(), "partial uploads left behind: {parts:?}");
}

/// What the sniffer made of the upload and the download: on the plaintext
/// twin the file twice (the PUT's body and the GET's answer), whole, with
/// the SHA-256 of what was sent, and the URL with its token; under TLS no
/// file, but a connection to the upload port whose records to the server
/// add up to at least the file's size.
fn sniffed_upload(sniffer: tests::Sniffer, server: &Server, data: &[u8]) {
    let (_, sniffer) = sniffer.stop();
    let (code, out, err) = tests::run_bin(
        "sniffer",
        &["read", sniffer.pcap.to_str().unwrap(), "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let found: Vec<Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let sha: String = tests::sha256_hex(data);
    let files: Vec<&Value> = found
        .iter()
        .filter(|v| v["type"] == "file" && v["name"] == "photo.jpg")
        .collect();
    if server.twin == Twin::Plain {
        assert_eq!(files.len(), 2, "{out}");
        for f in &files {
            assert_eq!(f["sha256"], sha.as_str(), "{f}");
            assert_eq!(f["complete"], true, "{f}");
            assert!(f["sid"].as_str().unwrap().contains("/upload/"), "{f}");
        }
        return;
    }
    assert!(files.is_empty(), "{out}");
    let upload = server.upload.unwrap().to_string();
    let conns: Vec<&Value> = found
        .iter()
        .filter(|v| v["type"] == "connection" && v["server"] == upload.as_str())
        .collect();
    let sent = found
        .iter()
        .filter(|v| v["type"] == "tls-traffic" && conns.iter().any(|c| c["conn"] == v["conn"]))
        .flat_map(|v| {
            v["sizes"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_i64)
        })
        .filter(|&n| n > 0)
        .sum::<i64>();
    assert!(
        sent >= data.len() as i64,
        "{sent} bytes to the upload port:\n{out}"
    );
}

/// Files shared both ways between slixmpp and our client through our
/// upload service, each side downloading what the other uploaded: our
/// share message (a body and XEP-0066 out-of-band data) and our PUT are
/// understood by a client we did not write, and its are by ours.
fn slixmpp_and_our_client_share_files_both_ways(twin: Twin) {
    let Some(python) = interop_tool("slixmpp") else {
        return;
    };
    let server = Server::start(twin, &["--upload-listen", "127.0.0.1:0"]);
    let dir = tempfile::tempdir().unwrap();
    let ours: Vec<u8> = (0..150_000u32).map(|i| (i * 31 % 253) as u8).collect();
    let theirs: Vec<u8> = (0..90_000u32).map(|i| (i * 17 % 241) as u8).collect();
    let ours_path = dir.path().join("slides.pdf");
    let theirs_path = dir.path().join("scan.png");
    std::fs::write(&ours_path, &ours).unwrap();
    std::fs::write(&theirs_path, &theirs).unwrap();
    let downloads = dir.path().join("downloads");
    let mut alice = Client::start(
        &server,
        "alice@localhost",
        "alice-pw",
        &[
            "--register",
            "--accept-files",
            "--downloads",
            downloads.to_str().unwrap(),
        ],
    );
    alice.expect("connected", |v| v["type"] == "connected");
    let mut sally = slixmpp(&python, &server, "sally@localhost", &["--register"]);
    connected_with(&mut sally, twin);

    // Ours to slixmpp: it downloads our upload with aiohttp.
    alice.send(&format!("/share sally@localhost {}", ours_path.display()));
    alice.expect("shared", |v| v["type"] == "ok" && v["command"] == "/share");
    let got = sally.expect("downloaded", |v| {
        v["type"] == "downloaded" || v["type"] == "error"
    });
    assert_eq!(got["type"], "downloaded", "{got}");
    assert_eq!(got["sha256"], tests::sha256_hex(&ours).as_str(), "{got}");
    assert!(
        got["from"]
            .as_str()
            .unwrap()
            .starts_with("alice@localhost/")
    );

    // slixmpp's to ours: its upload and share message, our download.
    let mut sam = slixmpp(
        &python,
        &server,
        "sally@localhost",
        &[
            "--upload",
            theirs_path.to_str().unwrap(),
            "--share-to",
            "alice@localhost",
        ],
    );
    sam.expect("uploaded", |v| v["type"] == "uploaded");
    let offer = alice.expect_event("file-shared", "name", "scan.png");
    assert!(
        offer["from"]
            .as_str()
            .unwrap()
            .starts_with("sally@localhost/")
    );
    let got = alice.expect("downloaded", |v| {
        v["type"] == "file-received" || v["type"] == "file-failed"
    });
    assert_eq!(got["type"], "file-received", "{got}");
    assert_eq!(got["sha256"], tests::sha256_hex(&theirs).as_str());
    assert_eq!(std::fs::read(downloads.join("scan.png")).unwrap(), theirs);
    drop((sally, sam));
    let (code, t) = alice.finish();
    assert_eq!(code, 0, "{t}");
}

/// slixmpp's stream management (XEP-0198) against our server: its
/// connection drops right after a message, our client sends two more into
/// the void, and slixmpp resumes the session and gets both (and our client
/// the echoes of all three).
fn slixmpp_resumes_a_dropped_session_and_misses_nothing(twin: Twin) {
    let Some(python) = interop_tool("slixmpp") else {
        return;
    };
    let server = Server::start(twin, &[]);
    let mut sally = slixmpp(
        &python,
        &server,
        "sally@localhost",
        &["--register", "--sm", "--drop-after", "1"],
    );
    connected_with(&mut sally, twin);
    let enabled = sally.expect("sm on", |v| {
        v["type"] == "sm-enabled" || v["type"] == "error"
    });
    assert_eq!(enabled["type"], "sm-enabled", "{enabled}");
    assert_eq!(enabled["resume"], true, "{enabled}");
    let mut alice = Client::start(&server, "alice@localhost", "alice-pw", &["--register"]);
    alice.expect("connected", |v| v["type"] == "connected");
    alice.send("/msg sally@localhost one");
    alice.expect_event("message", "body", "echo: one");
    // slixmpp drops its connection 0.2 s after reading it, and comes back
    // a second later; these go to its session meanwhile, and must not be
    // lost.
    std::thread::sleep(std::time::Duration::from_millis(500));
    alice.send("/msg sally@localhost two");
    alice.send("/msg sally@localhost three");
    sally.expect("resumed", |v| v["type"] == "sm-resumed");
    let mut bodies = Vec::new();
    while bodies.len() < 2 {
        let m = sally.expect("a message", |v| v["type"] == "message");
        bodies.push(m["body"].as_str().unwrap().to_string());
    }
    bodies.sort();
    assert_eq!(bodies, ["three", "two"], "each once");
    for n in ["two", "three"] {
        alice.expect_event("message", "body", &format!("echo: {n}"));
    }
    let log = server.log();
    let resent: usize = log
        .lines()
        .filter_map(|l| l.split("resent=").nth(1))
        .filter_map(|n| n.trim().parse::<usize>().ok())
        .sum();
    assert!(resent >= 2, "the server sent two and three again:\n{log}");
    let (code, t) = alice.finish();
    assert_eq!(code, 0, "{t}");
}

tests::twin_tests!(
    slixmpp_resumes_a_dropped_session_and_misses_nothing,
    slixmpp_and_our_client_share_files_both_ways,
    slixmpp_uploads_a_file_and_curl_fetches_it,
    slixmpp_reads_our_message_archive,
    slixmpp_publishes_and_reads_pep_and_gets_notifications,
    slixmpp_and_our_client_share_carbons,
    slixmpp_registers_signs_in_with_every_mechanism_chats_and_deletes_its_account,
    our_client_against_prosody,
    slixmpp_creates_and_joins_our_rooms_and_exchanges_groupchat_with_our_client,
);

/// A slixmpp peer (`--tls starttls`, trusting the lab CA) connecting
/// through `addr` (a proxy) instead of the server.
fn slixmpp_via(
    python: &std::path::Path,
    server: &Server,
    addr: std::net::SocketAddr,
    jid: &str,
    args: &[&str],
) -> Client {
    let mut cmd = Command::new(python);
    cmd.arg(workspace_root().join("tests/interop/slixmpp_peer.py"))
        .args(["--jid", jid, "--password", "sally-pw", "--timeout", "15"])
        .args(["--server", &addr.to_string(), "--tls", "starttls"]);
    if let Some(c) = &server.certs {
        cmd.arg("--ca").arg(c.join("ca.pem"));
    }
    cmd.args(args);
    Client::spawn(&format!("slixmpp {jid}"), cmd)
}

#[test]
fn slixmpp_under_strip_starttls_guards_its_sign_in_but_not_its_registration() {
    let Some(python) = interop_tool("slixmpp") else {
        return;
    };
    let server = Server::start(Twin::StartTls, &[]);
    // sally exists; bea does not yet.
    let (code, out, err) = run_client(&server, "sally@localhost", "sally-pw", &["--register"], "");
    assert_eq!(code, 0, "{out}\n{err}");
    let proxy = tests::Proxy::start(server.addr, &["strip-starttls"]);

    // Signing in: slixmpp will not send a password, nor a SCRAM proof,
    // without TLS. It gives up.
    let sally = slixmpp_via(&python, &server, proxy.addr, "sally@localhost", &["--quit"]);
    let (_, t) = sally.finish();
    assert!(!t.contains("\"connected\""), "{t}");
    assert!(t.contains("No appropriate login method"), "{t}");

    // Registering: slixmpp sends XEP-0077's form, password included, over
    // the stripped stream. The finding: its guard covers SASL only.
    let bea = slixmpp_via(
        &python,
        &server,
        proxy.addr,
        "bea@localhost",
        &["--register", "--quit"],
    );
    let (_, t) = bea.finish();
    assert!(t.contains("\"registered\""), "{t}");

    let all = proxy.stop();
    let v1 = tests::verdict(&all, 1, "strip-starttls");
    assert_eq!(v1["defeated"], true, "{v1}");
    let v2 = tests::verdict(&all, 2, "strip-starttls");
    assert_eq!(v2["defeated"], false, "{v2}");
    assert_eq!(
        v2["outcome"],
        "client went on in plaintext; password of bea captured (registration)"
    );
}

#[test]
fn prosody_behind_the_proxy_is_stripped_and_intercepted_like_ours() {
    let Some(prosody) = interop_tool("prosody") else {
        return;
    };
    // Prosody requires STARTTLS (c2s_require_encryption): the proxy takes
    // it in the client's place, and Prosody sees an encrypted client.
    let server = Server::prosody(&prosody, Twin::StartTls);
    let proxy = tests::Proxy::start(server.addr, &["strip-starttls"]);
    let mut weak = Client::start_via(
        &server,
        proxy.addr,
        "pat@localhost",
        "pat-pw",
        &["--register", "--plain", "--starttls", "opportunistic"],
    );
    let v = weak.expect("connected", |v| v["type"] == "connected");
    assert_eq!(v["encrypted"], false, "{v}");
    let (code, t) = weak.finish();
    assert_eq!(code, 0, "{t}\n{}", server.log());
    let strong = Client::start_via(&server, proxy.addr, "pat@localhost", "pat-pw", &[]);
    let (code, t) = strong.finish();
    assert_eq!(code, 2, "{t}");
    let all = proxy.stop();
    assert!(
        all.iter().any(|e| e["type"] == "captured"
            && e["secret"] == "pat-pw"
            && e["source"] == "SASL PLAIN"),
        "{all:#?}"
    );
    assert_eq!(tests::verdict(&all, 2, "strip-starttls")["defeated"], true);

    // Intercepted with a self-signed certificate: our client, checking
    // Prosody's certificate against the lab CA, refuses.
    let proxy = tests::Proxy::start(server.addr, &["intercept-tls"]);
    let c = Client::start_via(&server, proxy.addr, "pat@localhost", "pat-pw", &[]);
    let (code, t) = c.finish();
    assert_eq!(code, 2, "{t}");
    assert!(t.contains("certificate"), "{t}");
    let all = proxy.stop();
    assert_eq!(tests::verdict(&all, 1, "intercept-tls")["defeated"], true);
}

/// Prosody and slixmpp, neither ours, over TLS: slixmpp (Python's `ssl`,
/// that is OpenSSL) writes its session secrets because SSLKEYLOGFILE is
/// set, and the sniffer opens the capture with them: the registration's
/// password, sent inside TLS, is read, where without the key log it is
/// not; tshark given the same key log shows the same password.
fn a_third_party_tls_session_opens_with_its_own_key_log(twin: Twin) {
    let (Some(prosody), Some(python)) = (interop_tool("prosody"), interop_tool("slixmpp")) else {
        return;
    };
    let server = Server::prosody(&prosody, twin);
    let sniffer = tests::Sniffer::start(&server);
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.log");
    let mut cmd = Command::new(&python);
    cmd.arg(workspace_root().join("tests/interop/slixmpp_peer.py"))
        .args([
            "--jid",
            "sally@localhost",
            "--password",
            "sally-pw-inside-tls",
        ])
        .args(["--timeout", "30", "--register", "--quit"])
        .env("SSLKEYLOGFILE", &keys);
    let (addr, how) = match twin {
        Twin::DirectTls => (server.direct.expect("direct port"), "direct"),
        _ => (server.addr, "starttls"),
    };
    cmd.args(["--server", &addr.to_string(), "--tls", how]);
    if let Some(c) = &server.certs {
        cmd.arg("--ca").arg(c.join("ca.pem"));
    }
    let mut sally = Client::spawn("slixmpp sally", cmd);
    connected_with(&mut sally, twin);
    let (_, t) = sally.finish();
    assert!(t.contains("\"registered\""), "{t}\n{}", server.log());
    let (_, sniffer) = sniffer.stop();
    let (p, k) = (sniffer.pcap.to_str().unwrap(), keys.to_str().unwrap());
    let password = |out: &str| {
        out.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|v| v["type"] == "credential" && v["password"] == "sally-pw-inside-tls")
    };
    let (code, blind, err) = tests::run_bin("sniffer", &["read", p, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(!password(&blind), "{blind}");
    let (code, open, err) = tests::run_bin("sniffer", &["read", p, "--keylog", k, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(password(&open), "{open}");
    assert!(!open.contains("\"type\":\"undecrypted\""), "{open}");
    if let Some(text) = tests::tshark_follow_tls(&sniffer.pcap, &keys, &server, 1) {
        assert!(
            text.contains("<password>sally-pw-inside-tls</password>"),
            "tshark with the same key log:\n{text}"
        );
    }
}

#[test]
fn prosody_and_slixmpp_over_starttls_open_with_slixmpps_key_log() {
    a_third_party_tls_session_opens_with_its_own_key_log(Twin::StartTls);
}

#[test]
fn prosody_and_slixmpp_over_direct_tls_open_with_slixmpps_key_log() {
    a_third_party_tls_session_opens_with_its_own_key_log(Twin::DirectTls);
}
