//! File transfer client to client (SI + IBB) through `chat-plain client`.

use std::path::Path;

use sha2::{Digest, Sha256};
use tests::{Client, Server, Twin};

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

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

tests::twin_tests!(
    a_5_mib_file_arrives_with_the_same_sha256_and_progress,
    a_hostile_file_name_is_saved_inside_the_downloads_folder,
    the_receiver_refuses_an_offer_and_oversized_files_are_refused_at_once,
);
