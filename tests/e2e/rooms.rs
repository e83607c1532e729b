//! Group rooms (XEP-0045 subset) through `chat-plain client`.

use std::collections::HashMap;

use tests::{Client, Server, Twin, run_client};

const ROOM: &str = "lab@conference.localhost";

fn joined(c: &mut Client, nick: &str) -> serde_json::Value {
    c.expect("room-joined", |v| {
        v["type"] == "room-joined" && v["nick"] == nick
    })
}

fn rooms_join_talk_history_private_messages_and_leave(twin: Twin) {
    let server = Server::start(twin, &[]);
    let mut alice = Client::start(&server, "alice@localhost", "pw-a", &["--register"]);
    alice.send("/join lab");
    let j = joined(&mut alice, "alice");
    assert_eq!(j["created"], true, "the first join creates the room: {j}");
    alice.send("/say lab first words");
    alice.send("the second line goes to the current room");
    alice.expect("own echo", |v| {
        v["type"] == "room-message" && v["body"] == "the second line goes to the current room"
    });

    // bob joins later: history with delay stamps, then the subject.
    let mut bob = Client::start(&server, "bob@localhost", "pw-b", &["--register"]);
    bob.send("/join lab bobby");
    let j = joined(&mut bob, "bobby");
    assert_eq!(j["created"], false);
    assert_eq!(j["occupants"], serde_json::json!(["alice", "bobby"]), "{j}");
    let h = bob.expect("history", |v| v["type"] == "room-message");
    assert_eq!(h["body"], "first words");
    assert_eq!(h["nick"], "alice");
    assert!(
        h["delayed"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{h}"
    );
    bob.expect("second history line", |v| {
        v["type"] == "room-message" && v["nick"] == "alice" && v["delayed"].is_string()
    });
    bob.expect("subject at the end of the join", |v| {
        v["type"] == "room-subject"
    });
    alice.expect("bobby joined", |v| {
        v["type"] == "room-presence" && v["nick"] == "bobby" && v["joined"] == true
    });

    // A nickname in use is refused with conflict, and the other user's
    // client says so in one line.
    let (code, out, _) = run_client(
        &server,
        "carol@localhost",
        "pw-c",
        &["--register"],
        "/join lab alice\n",
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("conflict"), "{out}");

    // Live messages, and a private message through the room.
    bob.send("hello from bobby");
    let m = alice.expect("bobby's message", |v| {
        v["type"] == "room-message" && v["body"] == "hello from bobby"
    });
    assert_eq!(m["nick"], "bobby");
    assert!(m["delayed"].is_null());
    bob.send(&format!("/msg {ROOM}/alice just between us"));
    let pm = alice.expect_event("message", "from", &format!("{ROOM}/bobby"));
    assert_eq!(pm["body"], "just between us");

    // /rooms and /occupants.
    alice.send("/rooms");
    alice.expect("room listed", |v| v["type"] == "room" && v["room"] == ROOM);
    alice.send("/occupants lab");
    let o = alice.expect("alice owns", |v| {
        v["type"] == "occupant" && v["nick"] == "alice"
    });
    assert_eq!(o["affiliation"], "owner");
    alice.expect("bobby listed", |v| {
        v["type"] == "occupant" && v["nick"] == "bobby"
    });

    // Leaving, and signing out, both show as leaving.
    bob.send("/leave lab");
    bob.expect("left", |v| v["type"] == "room-left" && v["room"] == ROOM);
    alice.expect("bobby left", |v| {
        v["type"] == "room-presence" && v["nick"] == "bobby" && v["available"] == false
    });
    bob.send("/say lab still here?");
    bob.expect("not in the room", |v| {
        v["type"] == "error" && v["command"] == "/say"
    });
    let (code, t) = bob.finish();
    assert_eq!(code, 1, "the failed /say makes the exit code 1: {t}");
    // Without stream management: killed, dave leaves at once. (With it,
    // his session would wait --resume-timeout for him to come back first,
    // still in the room: tests/e2e/stream_management.rs.)
    let mut dave = Client::start(
        &server,
        "dave@localhost",
        "pw-d",
        &["--register", "--no-stream-management"],
    );
    dave.send("/join lab");
    joined(&mut dave, "dave");
    alice.expect("dave joined", |v| {
        v["type"] == "room-presence" && v["nick"] == "dave"
    });
    drop(dave); // killed: the server notices the connection end
    alice.expect("dave left", |v| {
        v["type"] == "room-presence" && v["nick"] == "dave" && v["available"] == false
    });
    let (code, t) = alice.finish();
    assert_eq!(code, 0, "{t}");
}

fn in_a_room_of_50_every_occupant_gets_each_message_exactly_once(twin: Twin) {
    const N: usize = 50;
    const SENDERS: usize = 5;
    let server = Server::start(twin, &[]);
    let mut clients: Vec<Client> = (0..N)
        .map(|i| Client::start(&server, &format!("u{i}@localhost"), "pw", &["--register"]))
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send("/join crowd");
        joined(c, &format!("u{i}"));
    }
    for (i, c) in clients.iter_mut().take(SENDERS).enumerate() {
        c.send(&format!("/say crowd message number {i}"));
    }
    let mut transcripts = Vec::new();
    // Senders are concurrent, so each client may see them in any order.
    for c in clients.iter_mut() {
        let mut got = std::collections::HashSet::new();
        while got.len() < SENDERS {
            let m = c.expect("the room's messages", |v| v["type"] == "room-message");
            got.insert(m["body"].as_str().unwrap().to_string());
        }
    }
    for c in clients {
        let (code, t) = c.finish();
        assert_eq!(code, 0, "{t}");
        transcripts.push(t);
    }
    for t in &transcripts {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for line in t.lines().filter_map(|l| l.strip_prefix("< ")) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v["type"] == "room-message" {
                *seen
                    .entry(v["body"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
        }
        assert_eq!(seen.len(), SENDERS, "{t}");
        assert!(seen.values().all(|&n| n == 1), "a duplicate: {seen:?}\n{t}");
    }
}

fn rooms_subject_and_history_survive_a_restart(twin: Twin) {
    let server = Server::start(twin, &[]);
    let (code, out, err) = run_client(
        &server,
        "alice@localhost",
        "pw-a",
        &["--register"],
        "/join lab\n/subject lab Week 3: sniffing\n/say lab one\n/say lab two\n",
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let server = server.kill9_and_restart();
    let (code, out, err) = run_client(
        &server,
        "bob@localhost",
        "pw-b",
        &["--register"],
        "/rooms\n/join lab\n",
    );
    assert_eq!(code, 0, "{out}\n{err}\n{}", server.log());
    assert!(out.contains(&format!("\"room\":\"{ROOM}\"")), "{out}");
    let bodies: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "room-message")
        .collect();
    assert_eq!(bodies.len(), 2, "{out}");
    assert_eq!(bodies[0]["body"], "one");
    assert_eq!(bodies[1]["body"], "two");
    assert!(bodies.iter().all(|b| b["delayed"].is_string()), "{out}");
    assert!(
        out.contains("\"subject\":\"Week 3: sniffing\""),
        "the subject survived: {out}"
    );
    // The creator is still the owner after the restart.
    let (code, out, _) = run_client(
        &server,
        "alice@localhost",
        "pw-a",
        &[],
        "/join lab\n/occupants lab\n",
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"affiliation\":\"owner\""), "{out}");
}

tests::twin_tests!(
    rooms_join_talk_history_private_messages_and_leave,
    in_a_room_of_50_every_occupant_gets_each_message_exactly_once,
    rooms_subject_and_history_survive_a_restart,
);
