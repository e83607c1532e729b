//! The sniffer against real sessions on loopback: what it recovers from
//! `chat-plain`, and what it cannot recover from `chat-tls` (STARTTLS and
//! direct TLS). The same scenario runs for each twin; only the verdict
//! differs, which is the toolkit's whole point. Under TLS the clients write
//! their session secrets (`SSLKEYLOGFILE`), and the same capture read with
//! that key log gives up everything, as tshark's reading of it confirms.

use std::process::Command;

use serde_json::Value;
use tests::{Client, Server, Sniffer, Twin, bin, interop_tool};

const ALICE_PW: &str = "alice-secret-pw-1";
const BOB_PW: &str = "bob-secret-pw-2";
const DM: &str = "meet me at the library at 5";
const ROOM_MSG: &str = "room secret 123";
const STATUS: &str = "studying for exams";
const FILE_BODY: &[u8] = b"file secret contents 42, spread over a few bytes";

fn of_type<'a>(found: &'a [Value], t: &str) -> Vec<&'a Value> {
    found.iter().filter(|v| v["type"] == t).collect()
}

/// Everything of the scripted conversation an attacker who reads it gets:
/// both passwords (registration, PLAIN), what SCRAM gives away, the direct
/// and the room message, the contact, the status, the whole file.
fn the_conversation_leaked(found: &[Value], all: &str, want_sha: &str) {
    let creds = of_type(found, "credential");
    let has = |kind: &str, user: &str, pw: Option<&str>| {
        creds.iter().any(|c| {
            c["kind"] == kind && c["user"] == user && pw.is_none_or(|p| c["password"] == p)
        })
    };
    assert!(has("register", "alice", Some(ALICE_PW)), "{all}");
    assert!(has("sasl-plain", "bob", Some(BOB_PW)), "{all}");
    let scram = creds
        .iter()
        .find(|c| c["kind"] == "scram" && c["user"] == "alice");
    let detail = scram.and_then(|c| c["detail"].as_str()).unwrap_or_default();
    assert!(
        detail.contains("salt=") && detail.contains("iterations=4096"),
        "{all}"
    );
    let msgs = of_type(found, "message");
    assert!(
        msgs.iter().any(|m| m["body"] == DM && m["kind"] == "chat"),
        "{all}"
    );
    assert!(
        msgs.iter()
            .any(|m| m["body"] == ROOM_MSG && m["kind"] == "groupchat"),
        "{all}"
    );
    assert!(
        of_type(found, "contact")
            .iter()
            .any(|c| c["jid"] == "bob@localhost"),
        "{all}"
    );
    assert!(
        of_type(found, "presence")
            .iter()
            .any(|p| p["status"] == STATUS),
        "{all}"
    );
    assert!(
        of_type(found, "file")
            .iter()
            .any(|f| f["sha256"] == want_sha && f["complete"] == true),
        "{all}"
    );
}

fn a_whole_session_is_sniffed(twin: Twin) {
    let server = Server::start(twin, &[]);
    let sniffer = Sniffer::start(&server);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("homework.txt");
    std::fs::write(&file, FILE_BODY).unwrap();
    let dl = dir.path().join("downloads");
    // Under TLS, both clients write their session secrets here, as any
    // program does when SSLKEYLOGFILE is set.
    let keys = dir.path().join("keys.log");
    let start = |jid: &str, pw: &str, extra: &[&str]| {
        let mut cmd = tests::client_command(&server, jid, pw, extra);
        if twin.tls() {
            cmd.env("SSLKEYLOGFILE", &keys);
        }
        Client::spawn(jid, cmd)
    };

    let mut alice = start("alice@localhost", ALICE_PW, &["--register"]);
    alice.expect("connected", |v| v["type"] == "connected");
    // bob signs in with PLAIN, as lab 1 has students do.
    let mut bob = start(
        "bob@localhost",
        BOB_PW,
        &[
            "--register",
            "--plain",
            "--accept-files",
            "--downloads",
            dl.to_str().unwrap(),
        ],
    );
    bob.expect("connected", |v| v["type"] == "connected");
    alice.befriend(&mut bob);
    bob.send(&format!("/status away {STATUS}"));
    alice.expect("status", |v| v["status"] == STATUS);
    alice.send(&format!("/msg bob {DM}"));
    bob.expect("dm", |v| v["body"] == DM);
    alice.send("/join lab");
    alice.expect("joined", |v| v["type"] == "room-joined");
    bob.send("/join lab");
    bob.expect("joined", |v| v["type"] == "room-joined");
    alice.send(&format!("/say lab {ROOM_MSG}"));
    bob.expect("room msg", |v| v["body"] == ROOM_MSG);
    alice.send(&format!("/sendfile bob {}", file.display()));
    bob.expect("file", |v| v["type"] == "file-received");
    for c in [alice, bob] {
        let (code, t) = c.finish();
        assert_eq!(code, 0, "{t}");
    }
    let (found, sniffer) = sniffer.stop();
    let all = serde_json::to_string_pretty(&found).unwrap();
    let want_sha: String = tests::sha256_hex(FILE_BODY);

    if twin == Twin::Plain {
        the_conversation_leaked(&found, &all, &want_sha);
        assert!(
            of_type(&found, "features")
                .iter()
                .any(|f| f["starttls"] == false),
            "STARTTLS is not offered: {all}"
        );
        let files = of_type(&found, "file");
        let f = files
            .iter()
            .find(|f| f["sha256"] == want_sha.as_str())
            .unwrap_or_else(|| panic!("{all}"));
        assert_eq!(f["complete"], true);
        let exported = std::fs::read(f["path"].as_str().unwrap()).unwrap();
        assert_eq!(exported, FILE_BODY);
    } else {
        for t in [
            "credential",
            "message",
            "contact",
            "presence",
            "file",
            "bound-jid",
        ] {
            assert!(
                of_type(&found, t).is_empty(),
                "no {t} may leak under TLS: {all}"
            );
        }
        let hello = of_type(&found, "client-hello");
        assert!(hello.iter().all(|h| h["sni"] == "localhost"), "{all}");
        assert!(
            !hello.is_empty() && !of_type(&found, "server-hello").is_empty(),
            "{all}"
        );
        let traffic = of_type(&found, "tls-traffic");
        assert!(
            !traffic.is_empty() && traffic.iter().all(|t| t["plaintext_recovered"] == false),
            "{all}"
        );
        // Every record's size (signed by direction) has its time, from 0.
        for t in &traffic {
            let (sizes, times) = (
                t["sizes"].as_array().unwrap(),
                t["times"].as_array().unwrap(),
            );
            assert_eq!(sizes.len(), times.len(), "{t}");
            assert_eq!(times.first().and_then(Value::as_f64), Some(0.0), "{t}");
        }
        // The traffic-analysis view in text: one line per record.
        let (code, text, err) = tests::run_bin(
            "sniffer",
            &["read", sniffer.pcap.to_str().unwrap(), "--records"],
        );
        assert_eq!(code, 0, "{err}");
        let records: Vec<&str> = text.lines().filter(|l| l.contains("   record ")).collect();
        let total: usize = sizes_total(&traffic);
        assert_eq!(records.len(), total, "{text}");
        assert!(
            records
                .iter()
                .all(|l| (l.contains(" C->S ") || l.contains(" S->C "))
                    && l.contains(" bytes at +")
                    && l.ends_with(" s")),
            "{text}"
        );
        if twin == Twin::StartTls {
            assert!(!of_type(&found, "tls-switch").is_empty(), "{all}");
            assert!(
                of_type(&found, "features")
                    .iter()
                    .any(|f| f["starttls_required"] == true),
                "{all}"
            );
        }
        let rows = of_type(&found, "summary");
        assert!(
            !rows.is_empty() && rows.iter().all(|r| r["tls"] == true),
            "{all}"
        );
        opened_with_the_key_log(&sniffer.pcap, &keys, &server, &want_sha);
    }

    // The CI leak check on the same capture: fails on plaintext, passes on TLS.
    let out = Command::new(bin("sniffer"))
        .args(["guard", "--pcap"])
        .arg(&sniffer.pcap)
        .args([
            "--needle", ALICE_PW, "--needle", BOB_PW, "--needle", DM, "--needle",
        ])
        .arg(String::from_utf8_lossy(FILE_BODY).as_ref())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if twin == Twin::Plain {
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        for n in 1..=4 {
            assert!(
                stdout.contains(&format!("needle #{n} ")),
                "needle {n} found: {stdout}"
            );
        }
        assert!(
            !stdout.contains(ALICE_PW),
            "the guard does not print the secret itself: {stdout}"
        );
    } else {
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        assert!(stdout.starts_with("no needle found in "), "{stdout}");
    }

    // Follow TCP Stream, as Wireshark has it.
    let follow = Command::new(bin("sniffer"))
        .args(["follow"])
        .arg(&sniffer.pcap)
        .args(["--stream", "0"])
        .output()
        .unwrap();
    assert!(follow.status.success());
    let text = String::from_utf8_lossy(&follow.stdout);
    assert!(
        text.contains("===== client -> server (from byte 0) ====="),
        "{text}"
    );
    if twin == Twin::Plain {
        assert!(text.contains(DM), "{text}");
    } else {
        assert!(!text.contains(DM), "{text}");
    }

    // The pcap it wrote is a real pcap: tshark reads it.
    if let Some(tshark) = interop_tool("tshark") {
        let t = Command::new(tshark)
            .args(["-r"])
            .arg(&sniffer.pcap)
            .args(["-q", "-z", "conv,tcp"])
            .output()
            .unwrap();
        assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
        assert!(String::from_utf8_lossy(&t.stdout).contains("127.0.0.1"));
    }
}

tests::twin_tests!(a_whole_session_is_sniffed);

/// The TLS capture read again with the clients' key log: every secret the
/// plaintext twin leaks is back, each connection says it was decrypted,
/// the guard finds the needles inside TLS, and tshark, given the same key
/// log, reads the same message bodies.
fn opened_with_the_key_log(
    pcap: &std::path::Path,
    keys: &std::path::Path,
    server: &Server,
    want_sha: &str,
) {
    let (p, k) = (pcap.to_str().unwrap(), keys.to_str().unwrap());
    let (code, out, err) = sniffer(&["read", p, "--keylog", k, "--json"]);
    assert_eq!(code, 0, "{err}");
    // However many threads read the connections, the same bytes out.
    for threads in ["1", "3"] {
        let (code, again, err) =
            sniffer(&["read", p, "--keylog", k, "--json", "--threads", threads]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(again, out, "--threads {threads}");
    }
    // A second file that cannot be read: what the first gave is printed
    // all the same, by one thread or several, then the error.
    let missing = pcap.with_extension("missing");
    let m = missing.to_str().unwrap();
    let (code, one, _) = sniffer(&["read", p, m, "--keylog", k, "--json", "--threads", "1"]);
    assert_eq!(code, 2);
    let (code, three, err) = sniffer(&["read", p, m, "--keylog", k, "--json", "--threads", "3"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read"), "{err}");
    assert!(one.contains("\"type\":\"message\""), "{one}");
    assert_eq!(three, one);
    let found: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let all = serde_json::to_string_pretty(&found).unwrap();
    assert!(of_type(&found, "undecrypted").is_empty(), "{all}");
    let rows = of_type(&found, "summary");
    assert!(
        !rows.is_empty()
            && rows
                .iter()
                .all(|r| r["tls"] == true && r["decrypted"] == true),
        "{all}"
    );
    assert_eq!(of_type(&found, "tls-keys").len(), rows.len(), "{all}");
    // Inside TLS, everything the plaintext twin gives away.
    the_conversation_leaked(&found, &all, want_sha);
    let bodies: Vec<&str> = of_type(&found, "message")
        .iter()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert!(
        of_type(&found, "tls-traffic")
            .iter()
            .all(|t| t["plaintext_recovered"] == true && t["undecrypted"] == 0),
        "{all}"
    );

    // The leak check with the key log: the needles, inside TLS.
    let (code, out, _) = sniffer(&[
        "guard", "--pcap", p, "--keylog", k, "--needle", BOB_PW, "--needle", DM,
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .filter(|l| l.contains("inside TLS (opened with the key log)"))
            .count()
            >= 2,
        "{out}"
    );

    // tshark, told the same key log and which ports carry XMPP, follows
    // each TLS stream: the message bodies it shows are the sniffer's.
    let Some(text) = tests::tshark_follow_tls(pcap, keys, server, rows.len()) else {
        return;
    };
    let mut theirs: Vec<&str> = text
        .split("<body>")
        .skip(1)
        .filter_map(|s| s.split("</body>").next())
        .collect();
    let mut ours = bodies.clone();
    theirs.sort();
    theirs.dedup();
    ours.sort();
    ours.dedup();
    assert_eq!(ours, theirs, "tshark's decryption:\n{text}");
}

fn sniffer(args: &[&str]) -> (i32, String, String) {
    tests::run_bin("sniffer", args)
}

#[test]
fn bad_files_streams_and_permissions_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pcap");
    let (code, _, err) = sniffer(&["read", missing.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("sniffer: cannot read ") && err.lines().count() == 1,
        "{err}"
    );
    let garbage = dir.path().join("garbage.pcap");
    std::fs::write(&garbage, vec![0x42u8; 5000]).unwrap();
    let (code, _, err) = sniffer(&["read", garbage.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");

    // A real capture cut in the middle of a frame: what came before counts.
    let server = Server::start(Twin::Plain, &[]);
    let sn = Sniffer::start(&server);
    let (code, out, err) = tests::run_client(
        &server,
        "zoe@localhost",
        "pw-zoe",
        &["--register"],
        "/msg zoe hello me\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    let (_, sn) = sn.stop();
    let mut bytes = std::fs::read(&sn.pcap).unwrap();
    bytes.truncate(bytes.len() - 7);
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &bytes).unwrap();
    let (code, out, err) = sniffer(&["read", cut.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("damaged or cut short"), "{err}");
    assert!(out.contains("\"type\":\"credential\""), "{out}");
    let (code, _, err) = sniffer(&["follow", cut.to_str().unwrap(), "--stream", "99"]);
    assert_eq!(code, 2);
    assert!(err.contains("there is no stream 99"), "{err}");

    // Live capture without the right: one line saying what to do. (Run as
    // nobody when the tests run as root, as CI does.)
    let uid = Command::new("id").arg("-u").output().unwrap();
    let root = String::from_utf8_lossy(&uid.stdout).trim() == "0";
    let exe = dir.path().join("sniffer");
    std::fs::copy(bin("sniffer"), &exe).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = if root {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&exe)
            .args(["live", "--interface", "lo"])
            .output()
            .unwrap()
    } else {
        Command::new(&exe)
            .args(["live", "--interface", "lo"])
            .output()
            .unwrap()
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("permission denied") && err.contains("setcap"),
        "{err}"
    );
    let (code, _, err) = sniffer(&[
        "guard",
        "--interface",
        "no-such-if0",
        "--needle",
        "abcd",
        "--",
        "true",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("no such interface"), "{err}");
}

/// How many records the `tls-traffic` findings list, all connections.
fn sizes_total(traffic: &[&Value]) -> usize {
    traffic
        .iter()
        .map(|t| t["sizes"].as_array().map_or(0, Vec::len))
        .sum()
}

/// A leak over UDP is a leak: a canary sent in one datagram on loopback,
/// under `guard`, is found and named with its UDP addresses; `read` of the
/// guard's capture lists the flow by address pair.
#[test]
fn a_canary_over_udp_is_found_by_the_guard_and_read_shows_the_flow() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("udp.pcap");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let send = format!("printf 'hello canary-over-udp-77 bye' > /dev/udp/127.0.0.1/{port}");
    let (code, out, err) = sniffer(&[
        "guard",
        "--needle",
        "canary-over-udp-77",
        "--write",
        pcap.to_str().unwrap(),
        "--",
        "bash",
        "-c",
        &send,
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("found as plain") && out.contains(&format!("-> 127.0.0.1:{port})")),
        "{out}"
    );
    assert!(out.contains("(UDP 127.0.0.1:"), "{out}");
    let (code, out, err) = sniffer(&[
        "read",
        pcap.to_str().unwrap(),
        "--filter",
        &format!("udp port {port}"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("UDP datagrams 127.0.0.1:") && out.contains(" UDP "),
        "{out}"
    );
    assert!(
        out.contains("1 connection,") && out.contains("(0 TCP, 1 UDP, 0 malformed)"),
        "{out}"
    );
}

/// `sniffer report --html` on a real session: one page, nothing fetched,
/// the password masked, and, in a real browser (headless Chromium), the
/// verdict table drawn at the top of the screen with its red LEAKED cells.
#[test]
fn the_html_report_renders_in_chromium_with_the_verdict_table_visible() {
    let server = Server::start(Twin::Plain, &[]);
    let sn = Sniffer::start(&server);
    let (code, out, err) = tests::run_client(
        &server,
        "hana@localhost",
        "hana-report-pw-9",
        &["--register", "--plain"],
        "/msg hana@localhost <b>bold</b> <script>alert(1)</script>\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    let (_, sn) = sn.stop();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let (code, _, err) = sniffer(&[
        "report",
        sn.pcap.to_str().unwrap(),
        "--html",
        page.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("id=\"verdict\""), "{html}");
    assert!(!html.contains("hana-report-pw-9"), "masked by default");
    assert!(html.contains("password=(16 characters, masked"), "{html}");
    assert!(
        !html.contains("<script") && !html.contains("src=\"http"),
        "self-contained, no script"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    let Some(shot) = tests::screenshot(&page, 1280, 900) else {
        return;
    };
    // The LEAKED cells' red, in the top 400 rows: more than the legend's
    // one badge, so the table's cells were drawn where a reader looks first.
    let red = shot.count([0xc6, 0x28, 0x28], 0, 400);
    assert!(
        red > 4000,
        "{red} red pixels at the top (see {})",
        page.with_extension("png").display()
    );
    // --show-secrets shows it.
    let (code, _, err) = sniffer(&[
        "report",
        sn.pcap.to_str().unwrap(),
        "--html",
        page.to_str().unwrap(),
        "--show-secrets",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        std::fs::read_to_string(&page)
            .unwrap()
            .contains("hana-report-pw-9")
    );
}
