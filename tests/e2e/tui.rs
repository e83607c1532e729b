//! The terminal UI through a real terminal: tmux runs the client, the test
//! types into it and reads the screen, as a person at the keyboard would.
//! The peer is the line client, scripted, so every step is checked from
//! the other side too (the message arrived, the typing notification went
//! out).

use std::time::Duration;

use tests::{Client, Relay, Server, Tmux, Twin, bin, twin_tests};

/// The twin's client in the terminal UI for `jid`, in a `size` terminal,
/// connected to `server` (or through `via`).
fn tui(
    server: &Server,
    via: Option<std::net::SocketAddr>,
    jid: &str,
    extra: &[&str],
    env: &[(&str, &str)],
    size: (u16, u16),
) -> Tmux {
    let mut args: Vec<String> = vec!["client".into(), "--jid".into(), jid.into()];
    let mut flags = server.client_flags();
    if let Some(addr) = via {
        flags[1] = addr.to_string();
    }
    args.extend(flags);
    args.extend(extra.iter().map(|s| s.to_string()));
    // Received files go to a scratch folder, not the working directory.
    let downloads = std::env::temp_dir().join(format!("tui-downloads-{}", std::process::id()));
    args.extend(["--downloads".into(), downloads.display().to_string()]);
    let mut all_env = vec![("CHAT_PASSWORD", "pw-tui")];
    all_env.extend_from_slice(env);
    Tmux::start(&bin(server.twin.bin()), &args, &all_env, size)
}

/// alice, new, in a 120×34 terminal.
fn alice(server: &Server) -> Tmux {
    tui(
        server,
        None,
        "alice@localhost",
        &["--register"],
        &[],
        (120, 34),
    )
}

/// alice, new, through `relay`, with `extra` flags.
fn alice_via(server: &Server, relay: &Relay, extra: &[&str]) -> Tmux {
    let mut flags = vec!["--register"];
    flags.extend_from_slice(extra);
    tui(
        server,
        Some(relay.addr),
        "alice@localhost",
        &flags,
        &[],
        (120, 34),
    )
}

fn enter(t: &Tmux, line: &str) {
    t.type_text(line);
    t.keys(&["Enter"]);
}

/// alice (in the UI) and bob (line client) become contacts; returns when
/// alice's contact list shows bob online.
fn befriend(alice: &Tmux, bob: &mut Client) {
    alice.wait_text("signed in as alice@localhost");
    enter(alice, "/add bob");
    bob.expect_event("subscribe", "from", "alice@localhost");
    bob.send("/add alice");
    alice.wait_text("● bob");
}

fn chat_in_the_terminal_ui(twin: Twin) {
    let server = Server::start(twin, &[]);
    let mut bob = Client::start(&server, "bob@localhost", "pw-b", &["--register"]);
    let alice = alice(&server);
    befriend(&alice, &mut bob);

    // What protects the chat is on screen, per twin.
    let screen = alice.screen();
    match twin {
        Twin::Plain => assert!(
            screen.contains("PLAINTEXT: anyone on the network path reads and changes this chat"),
            "{screen}"
        ),
        Twin::StartTls | Twin::DirectTls => {
            let how = if twin == Twin::StartTls {
                "· STARTTLS"
            } else {
                "· direct TLS"
            };
            for part in [
                how,
                "TLS 1.3 · TLS_",
                "certificate verified (--ca)",
                "SCRAM-SHA-256-PLUS, bound to tls-exporter",
            ] {
                assert!(screen.contains(part), "'{part}' missing:\n{screen}");
            }
        }
    }
    assert!(screen.contains("not end-to-end"), "{screen}");

    // A message: typing is announced (XEP-0085), the message arrives, and
    // bob's receipt turns into a tick on alice's line.
    enter(&alice, "/chat bob");
    alice.wait_text("to bob>");
    alice.type_text("hello bob");
    bob.expect_event("chat-state", "state", "composing");
    alice.keys(&["Enter"]);
    bob.expect_event("message", "body", "hello bob");
    alice.wait_text("alice: hello bob ✓");

    // A message arrives while half a line is typed: the typed text stays
    // whole, on its own line.
    alice.type_text("half a li");
    alice.wait_text("to bob> half a li");
    bob.send("/msg alice ping from bob");
    let screen = alice.wait_text("bob: ping from bob");
    assert!(screen.contains("to bob> half a li"), "{screen}");
    alice.type_text("ne");
    alice.keys(&["Enter"]);
    bob.expect_event("message", "body", "half a line");

    // Keys edit, they are not sent as text: Up recalls the last line, Left
    // moves the cursor; Ctrl-E goes to the end and Ctrl-U clears.
    alice.keys(&["Up", "Left", "Left"]);
    alice.type_text("X");
    alice.wait_text("to bob> half a liXne");
    alice.keys(&["C-e", "C-u"]);
    alice.wait_for("an empty input line", |s| {
        s.lines().any(|l| l.trim_end() == "to bob>")
    });

    // Resizing redraws at the new size (too narrow for the contact pane).
    alice.resize(60, 20);
    alice.wait_for("the narrow layout", |s| {
        !s.contains("Contacts")
            && s.contains("to bob>")
            && s.lines().all(|l| l.chars().count() <= 60)
    });

    // Ctrl-C signs out, gives the terminal back (off the alternate screen)
    // and exits 0.
    assert!(alice.alternate_screen());
    alice.keys(&["C-c"]);
    assert_eq!(alice.exit_status(), 0, "{}", alice.screen());
    assert!(!alice.alternate_screen(), "{}", alice.screen());
    bob.expect("alice offline", |v| {
        tests::presence_from(v, "alice@localhost") && v["available"] == false
    });
}

twin_tests!(chat_in_the_terminal_ui);

#[test]
fn a_file_offer_waits_in_the_background_while_the_chat_goes_on() {
    let server = Server::start(Twin::StartTls, &[]);
    let dir = tempfile::tempdir().unwrap();
    let downloads = dir.path().join("bob");
    let mut bob = Client::start(
        &server,
        "bob@localhost",
        "pw-b",
        &["--register", "--downloads", downloads.to_str().unwrap()],
    );
    let alice = alice(&server);
    befriend(&alice, &mut bob);
    let path = dir.path().join("notes.bin");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &data).unwrap();

    enter(&alice, &format!("/sendfile bob {}", path.display()));
    let offer = bob.expect_event("file-offer", "name", "notes.bin");
    // bob does not answer yet; alice's keyboard is hers meanwhile.
    enter(&alice, "/chat bob");
    enter(&alice, "while it waits");
    bob.expect_event("message", "body", "while it waits");
    alice.wait_text("alice: while it waits ✓");
    let sid = offer["sid"].as_str().unwrap();
    bob.send(&format!("/accept {sid}"));
    bob.expect_event("file-received", "sid", sid);
    assert_eq!(std::fs::read(downloads.join("notes.bin")).unwrap(), data);
    // The answer shows where the command was typed (the console).
    enter(&alice, "/win 1");
    alice.wait_text("ok: sent notes.bin to bob@localhost");
}

#[test]
fn a_lost_connection_shows_and_the_client_signs_in_again_and_rejoins() {
    let server = Server::start(Twin::StartTls, &[]);
    let mut bob = Client::start(&server, "bob@localhost", "pw-b", &["--register"]);
    let relay = Relay::start(server.addr);
    // Without stream management nothing is resumed: the UI itself signs in
    // again and joins its rooms again.
    let alice = alice_via(&server, &relay, &["--no-stream-management"]);
    alice.wait_text("signed in as alice@localhost");
    enter(&alice, "/join lab");
    alice.wait_text("joined lab@conference.localhost as alice");
    bob.send("/join lab");
    bob.expect_event("room-joined", "room", "lab@conference.localhost");

    relay.cut(Duration::from_secs(3));
    alice.wait_for("the loss in the status bar", |s| {
        s.contains("OFFLINE") || s.contains("RECONNECTING")
    });
    // Typed with no session: kept, and said once the room is joined again.
    enter(&alice, "said while away");
    alice.wait_text("back in lab@conference.localhost as alice");
    bob.expect_event("room-message", "body", "said while away");
    alice.wait_text("alice: said while away ✓");
    let screen = alice.screen();
    assert!(
        !screen.contains("OFFLINE") && !screen.contains("RECONNECTING"),
        "{screen}"
    );
    bob.send("/say lab are you back?");
    alice.wait_text("bob: are you back?");
    enter(&alice, "yes");
    bob.expect_event("room-message", "body", "yes");
    alice.wait_text("alice: yes ✓");
}

#[test]
fn no_color_keeps_emphasis_and_drops_colour() {
    let server = Server::start(Twin::Plain, &[]);
    let coloured = tui(
        &server,
        None,
        "ann@localhost",
        &["--register"],
        &[],
        (100, 24),
    );
    let plain = tui(
        &server,
        None,
        "cid@localhost",
        &["--register"],
        &[("NO_COLOR", "1")],
        (100, 24),
    );
    coloured.wait_text("PLAINTEXT");
    plain.wait_text("PLAINTEXT");
    // The plaintext warning: red where colour is allowed, reversed and
    // bold without.
    let with = coloured.screen_with_styles();
    let without = plain.screen_with_styles();
    let colour = |s: &str| {
        s.contains("[38;5;") || s.contains("[48;5;") || s.contains("[31m") || s.contains("[41m")
    };
    assert!(colour(&with), "{with:?}");
    assert!(!colour(&without), "{without:?}");
    let reversed = without.contains("[7m") || without.contains(";7m");
    assert!(without.contains("[1m") && reversed, "{without:?}");
}

#[test]
fn the_line_client_at_a_terminal_leaves_when_the_server_goes_without_waiting_for_enter() {
    let server = Server::start(Twin::Plain, &[]);
    let mut args: Vec<String> = [
        "client",
        "--line",
        "--no-stream-management",
        "--register",
        "--jid",
        "dan@localhost",
    ]
    .map(String::from)
    .to_vec();
    args.extend(server.client_flags());
    let t = Tmux::start(
        &bin("chat-plain"),
        &args,
        &[("CHAT_PASSWORD", "pw-d")],
        (100, 20),
    );
    t.wait_text("type /help for commands");
    drop(server);
    // Before, the process sat on its blocking read of stdin until Enter,
    // and took the next line typed with it.
    assert_eq!(t.exit_status(), 2, "{}", t.screen());
    assert!(t.screen().contains("connection lost"), "{}", t.screen());
}

#[test]
fn a_message_typed_while_the_connection_is_down_arrives_once_it_is_back() {
    // The server forgets a dropped session after a second: the client
    // cannot resume it and signs in anew, and what the old session's server
    // never acknowledged goes again on the new one.
    let server = Server::start(Twin::Plain, &["--resume-timeout", "1"]);
    let mut bob = Client::start(&server, "bob@localhost", "pw-b", &["--register"]);
    let relay = Relay::start(server.addr);
    let alice = alice_via(&server, &relay, &[]);
    befriend(&alice, &mut bob);
    enter(&alice, "/chat bob");
    alice.wait_text("to bob>");
    relay.cut(Duration::from_secs(3));
    alice.wait_text("RECONNECTING");
    enter(&alice, "typed while down");
    bob.expect_event("message", "body", "typed while down");
    alice.wait_text("alice: typed while down ✓");
    // Typed while the client was still resuming, it went out again as one
    // the server had not acknowledged; typed a moment later (the client
    // already knew the session was gone, under load), from the outbox.
    // Either way it arrived once, and the console says how.
    enter(&alice, "/win 1");
    alice.wait_text("signed in again");
    let console = alice.screen();
    assert!(
        console.contains("1 message(s) the server had not acknowledged were sent again")
            || console.contains("kept, and sent once signed in again"),
        "{console}"
    );
}

/// End to end in the terminal UI: alice (`--e2e on`) writes to bob
/// (`--e2e on`, line client); the security line says the conversation is
/// end to end and that bob's device is not verified yet, bob's message
/// comes back marked `(e2e)`, and after `/verify` the line says verified.
#[test]
fn the_security_line_shows_the_conversations_end_to_end_state() {
    let server = Server::start(Twin::Plain, &[]);
    let dir = tempfile::tempdir().unwrap();
    let data = |who: &str| dir.path().join(who).display().to_string();
    let (bob_data, alice_data) = (data("bob"), data("alice"));
    let mut bob = Client::start(
        &server,
        "bob@localhost",
        "pw-b",
        &["--register", "--e2e", "on", "--data", &bob_data],
    );
    bob.send("/fingerprints");
    let fp = bob.expect("bob's own device", |v| v["type"] == "device")["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let alice = tui(
        &server,
        None,
        "alice@localhost",
        &["--register", "--e2e", "on", "--data", &alice_data],
        &[],
        // Wide: the security line holds the sign-in and the e2e state.
        (200, 34),
    );
    befriend(&alice, &mut bob);
    enter(&alice, "/chat bob");
    enter(&alice, "hello over omemo");
    let m = bob.expect("alice's message", |v| v["type"] == "message");
    assert_eq!(m["body"], "hello over omemo");
    assert!(m["e2e"].is_object(), "{m}");
    bob.send("/msg alice@localhost hi back, end to end");
    let screen = alice.wait_text("hi back, end to end");
    assert!(screen.contains("bob (e2e)"), "{screen}");
    alice.wait_text("none verified");
    enter(&alice, &format!("/verify bob {fp}"));
    let screen = alice.wait_text("1 verified");
    assert!(
        screen.contains("e2e on (OMEMO), 1 device(s), 1 verified"),
        "{screen}"
    );
}
