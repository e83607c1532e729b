//! The user directory, profiles, who is online, and announcements.

use serde_json::Value;
use tests::{Client, Server, Twin, run_client};

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn users(out: &str) -> Vec<String> {
    json_lines(out)
        .into_iter()
        .filter(|v| v["type"] == "user")
        .map(|v| v["jid"].as_str().unwrap().to_string())
        .collect()
}

fn search_finds_users_by_user_name_display_name_and_email(twin: Twin) {
    let server = Server::start(twin, &[]);
    let (code, out, err) = run_client(
        &server,
        "alice@localhost",
        "pw-a",
        &["--register"],
        "/profile name Alice Liddell email alice@wonderland.example\n/profile\n",
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("name=Alice Liddell email=alice@wonderland.example"),
        "{out}"
    );
    for u in ["bob", "carol"] {
        let (code, out, err) = run_client(
            &server,
            &format!("{u}@localhost"),
            "pw",
            &["--register"],
            "",
        );
        assert_eq!(code, 0, "{out}\n{err}");
    }
    let (code, out, err) = run_client(&server, "bob@localhost", "pw", &[], "/users\n");
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        users(&out),
        ["alice@localhost", "bob@localhost", "carol@localhost"]
    );
    let alice = json_lines(&out)
        .into_iter()
        .find(|v| v["jid"] == "alice@localhost")
        .unwrap();
    assert_eq!(alice["name"], "Alice Liddell");
    assert_eq!(alice["email"], "alice@wonderland.example");

    for (term, want) in [
        ("liddell", vec!["alice@localhost"]),    // display name
        ("WONDERLAND", vec!["alice@localhost"]), // email, any case
        ("car", vec!["carol@localhost"]),        // user name
        ("nobody-here", vec![]),
    ] {
        let (code, out, _) = run_client(
            &server,
            "bob@localhost",
            "pw",
            &[],
            &format!("/search {term}\n"),
        );
        assert_eq!(code, 0, "{out}");
        assert_eq!(users(&out), want, "search {term}: {out}");
    }

    // Who is online now.
    let mut bob = Client::start(&server, "bob@localhost", "pw", &[]);
    bob.expect("connected", |v| v["type"] == "connected");
    bob.send("/online");
    bob.expect("bob online", |v| {
        v["type"] == "online-user" && v["jid"] == "bob@localhost"
    });
    let (code, t) = bob.finish();
    assert_eq!(code, 0, "{t}");
}

fn announcements_reach_everyone_online_and_only_admins_may_send_them(twin: Twin) {
    let server = Server::start(twin, &["--admin", "teacher@localhost"]);
    let mut teacher = Client::start(&server, "teacher@localhost", "pw-t", &["--register"]);
    teacher.expect("connected", |v| v["type"] == "connected");
    let mut students: Vec<Client> = (0..3)
        .map(|i| {
            let mut c = Client::start(
                &server,
                &format!("student{i}@localhost"),
                "pw",
                &["--register"],
            );
            c.expect("connected", |v| v["type"] == "connected");
            c
        })
        .collect();
    // A student who is not an admin is refused, and the client says so.
    let (code, out, _) = run_client(
        &server,
        "student0@localhost",
        "pw",
        &[],
        "/broadcast free pizza in room 101\n",
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        json_lines(&out)
            .iter()
            .any(|v| v["type"] == "message-error" && v["condition"] == "forbidden"),
        "{out}"
    );
    teacher.send("/broadcast the lab starts in 5 minutes");
    for s in students.iter_mut() {
        let a = s.expect("announcement", |v| v["type"] == "announcement");
        assert_eq!(a["body"], "the lab starts in 5 minutes");
        assert!(
            a["subject"]
                .as_str()
                .is_some_and(|t| t.contains("teacher@localhost")),
            "{a}"
        );
    }
    for s in students {
        let (code, t) = s.finish();
        assert_eq!(code, 0, "{t}");
        assert!(
            !t.contains("free pizza"),
            "the refused announcement reached no one: {t}"
        );
    }
    let (code, t) = teacher.finish();
    assert_eq!(code, 0, "{t}");
}

tests::twin_tests!(
    search_finds_users_by_user_name_display_name_and_email,
    announcements_reach_everyone_online_and_only_admins_may_send_them,
);
