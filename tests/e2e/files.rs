//! File transfer client to client (SI + IBB) through `chat-plain client`,
//! and files shared through the server's upload service (XEP-0363).

use std::path::Path;

use tests::{Client, Server, Twin, sha256_hex};

/// alice and bob, contacts of each other and online; bob runs with `bob_flags`.
fn pair(server: &Server, downloads: &Path, bob_flags: &[&str]) -> (Client, Client) {
    let dl = downloads.to_str().unwrap();
    let mut flags = vec!["--register", "--downloads", dl];
    flags.extend_from_slice(bob_flags);
    let mut alice = Client::start(server, "alice@localhost", "pw-a", &["--register"]);
    alice.expect("connected", |v| v["type"] == "connected");
    let mut bob = Client::start(server, "bob@localhost", "pw-b", &flags);
    bob.expect("connected", |v| v["type"] == "connected");
    alice.befriend(&mut bob);
    (alice, bob)
}

fn a_5_mib_file_arrives_with_the_same_sha256_and_progress(twin: Twin) {
    let server = Server::start(twin, &[]);
    let dir = tempfile::tempdir().unwrap();
    let downloads = dir.path().join("downloads");
    let src = dir.path().join("lecture.bin");
    // Not all zeros: a pattern that a dropped or repeated block would break.
    let data: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    let want = sha256_hex(&data);
    let (mut alice, mut bob) = pair(&server, &downloads, &["--accept-files"]);

    alice.send(&format!("/sendfile bob {}", src.display()));
    let offer = bob.expect_event("file-offer", "from", "alice@localhost");
    assert_eq!(offer["name"], "lecture.bin");
    assert_eq!(offer["size"], data.len());
    let progress = bob.expect("progress", |v| v["type"] == "file-progress");
    assert_eq!(progress["total"], data.len());
    let got = bob.expect_event("file-received", "from", "alice@localhost");
    assert_eq!(got["sha256"], want.as_str());
    let sent = alice.expect("sent", |v| v["type"] == "ok" && v["command"] == "/sendfile");
    assert!(sent["detail"].as_str().unwrap().contains(&want), "{sent}");
    let saved = downloads.join("lecture.bin");
    assert_eq!(got["path"], saved.to_str().unwrap());
    assert_eq!(sha256_hex(&std::fs::read(&saved).unwrap()), want);

    // The same file again never overwrites the first copy.
    alice.send(&format!("/sendfile bob {}", src.display()));
    let again = bob.expect_event("file-received", "from", "alice@localhost");
    assert_eq!(again["name"], "lecture (1).bin");
    let mut names: Vec<String> = std::fs::read_dir(&downloads)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["lecture (1).bin", "lecture.bin"],
        "no .part file left"
    );
    for c in [alice, bob] {
        let (code, t) = c.finish();
        assert_eq!(code, 0, "{t}");
    }
}

fn a_hostile_file_name_is_saved_inside_the_downloads_folder(twin: Twin) {
    let server = Server::start(twin, &[]);
    let dir = tempfile::tempdir().unwrap();
    // downloads is two levels deep, so ../../etc/x would land in dir/etc/x.
    let downloads = dir.path().join("home/student/downloads");
    let src = dir.path().join("payload.txt");
    std::fs::write(&src, b"owned").unwrap();
    let (mut alice, mut bob) = pair(&server, &downloads, &["--accept-files"]);
    alice.send(&format!("/sendfile bob {} as ../../etc/x", src.display()));
    let got = bob.expect_event("file-received", "from", "alice@localhost");
    assert_eq!(got["name"], "x");
    assert_eq!(std::fs::read(downloads.join("x")).unwrap(), b"owned");
    assert!(!dir.path().join("home/etc/x").exists());
    assert!(!dir.path().join("etc/x").exists());
    drop((alice, bob));
}

fn the_receiver_refuses_an_offer_and_oversized_files_are_refused_at_once(twin: Twin) {
    let server = Server::start(twin, &[]);
    let dir = tempfile::tempdir().unwrap();
    let downloads = dir.path().join("downloads");
    let small = dir.path().join("small.txt");
    std::fs::write(&small, b"hello").unwrap();
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![7u8; 5000]).unwrap();
    let (mut alice, mut bob) = pair(&server, &downloads, &["--max-file-size", "1000"]);

    // Asked, bob says no: alice's /sendfile fails with forbidden.
    alice.send(&format!("/sendfile bob {}", small.display()));
    let offer = bob.expect_event("file-offer", "from", "alice@localhost");
    bob.send(&format!("/reject {}", offer["sid"].as_str().unwrap()));
    let e = alice.expect("refused", |v| {
        v["type"] == "error" && v["command"] == "/sendfile"
    });
    assert!(e["error"].as_str().unwrap().contains("forbidden"), "{e}");

    // Too big for bob's limit: refused before a byte is sent.
    alice.send(&format!("/sendfile bob {}", big.display()));
    let e = alice.expect("too big", |v| {
        v["type"] == "error" && v["command"] == "/sendfile"
    });
    assert!(
        e["error"].as_str().unwrap().contains("not-acceptable"),
        "{e}"
    );
    bob.expect("bob says why", |v| v["type"] == "file-failed");

    // Accepting by hand works.
    alice.send(&format!("/sendfile bob {}", small.display()));
    bob.expect_event("file-offer", "from", "alice@localhost");
    bob.send("/accept");
    bob.expect_event("file-received", "from", "alice@localhost");
    assert_eq!(
        std::fs::read(downloads.join("small.txt")).unwrap(),
        b"hello"
    );
    let (code, t) = alice.finish();
    assert_eq!(code, 1, "two /sendfile failed: {t}");
    let (code, t) = bob.finish();
    assert_eq!(
        code, 1,
        "the refused oversized offer counts as a failure: {t}"
    );
}

/// A file for an offline contact, and one for a room, go through the
/// server's upload service; the contact downloads it later, once accepted.
/// The limits, and a file gone from the server, give clear errors.
fn files_for_offline_contacts_and_rooms_go_through_the_upload_service(twin: Twin) {
    let server = Server::start(
        twin,
        &[
            "--upload-listen",
            "127.0.0.1:0",
            "--upload-max-size",
            "400000",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let downloads = dir.path().join("home/bob/downloads");
    let dl = downloads.to_str().unwrap();
    let photo = dir.path().join("photo.jpg");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&photo, &data).unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, b"meet at noon").unwrap();
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![1u8; 400_001]).unwrap();

    let mut bob = Client::start(&server, "bob@localhost", "pw-b", &["--register"]);
    bob.expect("connected", |v| v["type"] == "connected");
    let (code, t) = bob.finish();
    assert_eq!(code, 0, "{t}");
    let mut alice = Client::start(&server, "alice@localhost", "pw-a", &["--register"]);
    alice.expect("connected", |v| v["type"] == "connected");

    // bob is offline: /sendfile goes through the upload service.
    alice.send(&format!("/sendfile bob@localhost {}", photo.display()));
    let shared = alice.expect("shared", |v| {
        v["command"] == "/sendfile" && (v["type"] == "ok" || v["type"] == "error")
    });
    let detail = shared["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("{shared}"));
    assert!(detail.contains(&sha256_hex(&data)), "{detail}");
    let scheme = if twin.tls() { "https://" } else { "http://" };
    assert!(detail.contains(scheme), "{detail}");
    // A hostile name, then a file over the service's limit.
    alice.send(&format!(
        "/sendfile bob@localhost {} as ../../etc/cron.d/x",
        notes.display()
    ));
    alice.expect("second shared", |v| {
        v["command"] == "/sendfile" && v["type"] == "ok"
    });
    alice.send(&format!("/sendfile bob@localhost {}", notes.display()));
    alice.expect("third shared", |v| {
        v["command"] == "/sendfile" && v["type"] == "ok"
    });
    alice.send(&format!("/sendfile bob@localhost {}", big.display()));
    let e = alice.expect("too big", |v| {
        v["command"] == "/sendfile" && v["type"] == "error"
    });
    assert!(
        e["error"].as_str().unwrap().contains("up to 400000 bytes"),
        "{e}"
    );

    // bob signs in: both shares wait for him; nothing downloads unasked.
    let mut bob = Client::start(&server, "bob@localhost", "pw-b", &["--downloads", dl]);
    let first = bob.expect_event("file-shared", "name", "photo.jpg");
    assert!(
        first["from"]
            .as_str()
            .unwrap()
            .starts_with("alice@localhost")
    );
    let second = bob.expect_event("file-shared", "name", "x");
    let third = bob.expect_event("file-shared", "name", "notes.txt");
    assert!(!downloads.exists(), "nothing downloaded before /accept");
    bob.send(&format!("/accept {}", first["sid"].as_str().unwrap()));
    let got = bob.expect("received", |v| {
        v["type"] == "file-received" || v["type"] == "file-failed"
    });
    assert_eq!(got["type"], "file-received", "{got}");
    assert_eq!(got["sha256"], sha256_hex(&data).as_str());
    assert_eq!(std::fs::read(downloads.join("photo.jpg")).unwrap(), data);

    // The hostile name lands inside the downloads folder.
    bob.send(&format!("/accept {}", second["sid"].as_str().unwrap()));
    let got = bob.expect_event("file-received", "name", "x");
    assert_eq!(got["path"], downloads.join("x").to_str().unwrap());
    assert!(!dir.path().join("home/etc/cron.d/x").exists());

    // alice deletes her account, and her files go with it: the third
    // share is gone, and bob is told so.
    alice.send("/unregister");
    let (code, t) = alice.finish();
    assert_eq!(code, 1, "the oversized file failed: {t}");
    bob.send(&format!("/accept {}", third["sid"].as_str().unwrap()));
    let gone = bob.expect("gone", |v| {
        v["type"] == "file-received" || v["type"] == "file-failed"
    });
    assert_eq!(gone["type"], "file-failed", "{gone}");
    assert!(gone["reason"].as_str().unwrap().contains("404"), "{gone}");
    let mut left: Vec<String> = std::fs::read_dir(&downloads)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["photo.jpg", "x"], "nothing else");

    // In a room, with --accept-files: the file arrives by itself.
    let mut carol = Client::start(&server, "carol@localhost", "pw-c", &["--register"]);
    carol.expect("connected", |v| v["type"] == "connected");
    let mut dave = Client::start(
        &server,
        "dave@localhost",
        "pw-d",
        &["--register", "--accept-files", "--downloads", dl],
    );
    dave.expect("connected", |v| v["type"] == "connected");
    for c in [&mut carol, &mut dave] {
        c.send("/join lab@conference.localhost");
        c.expect("joined", |v| v["type"] == "room-joined");
    }
    carol.expect_event("room-presence", "nick", "dave");
    carol.send(&format!(
        "/sendfile lab@conference.localhost {}",
        notes.display()
    ));
    carol.expect("room share", |v| {
        v["command"] == "/sendfile" && v["type"] == "ok"
    });
    let shared = dave.expect_event("file-shared", "from", "lab@conference.localhost/carol");
    assert_eq!(shared["name"], "notes.txt");
    let got = dave.expect_event("file-received", "from", "lab@conference.localhost/carol");
    assert_eq!(
        std::fs::read(got["path"].as_str().unwrap()).unwrap(),
        b"meet at noon"
    );
    for c in [bob, carol, dave] {
        let (code, t) = c.finish();
        assert!(code <= 1, "{t}");
    }
}

/// Without an upload service, a file for an offline contact is refused
/// with a clear reason (nothing to leave it with).
fn without_an_upload_service_offline_contacts_get_no_files(twin: Twin) {
    let server = Server::start(twin, &[]);
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, b"x").unwrap();
    let mut alice = Client::start(&server, "alice@localhost", "pw-a", &["--register"]);
    alice.expect("connected", |v| v["type"] == "connected");
    alice.send(&format!("/sendfile bob@localhost {}", notes.display()));
    let e = alice.expect("refused", |v| {
        v["command"] == "/sendfile" && v["type"] == "error"
    });
    assert!(
        e["error"].as_str().unwrap().contains("no upload service"),
        "{e}"
    );
    alice.send(&format!("/share bob@localhost {}", notes.display()));
    let e = alice.expect("refused", |v| {
        v["command"] == "/share" && v["type"] == "error"
    });
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("offers no file upload service"),
        "{e}"
    );
}

tests::twin_tests!(
    files_for_offline_contacts_and_rooms_go_through_the_upload_service,
    without_an_upload_service_offline_contacts_get_no_files,
    a_5_mib_file_arrives_with_the_same_sha256_and_progress,
    a_hostile_file_name_is_saved_inside_the_downloads_folder,
    the_receiver_refuses_an_offer_and_oversized_files_are_refused_at_once,
);
