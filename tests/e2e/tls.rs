//! What only the TLS twin does: certificate checks with one-line errors,
//! pinning, the refusal to continue without STARTTLS, the deliberately weak
//! options, the key log, and handshakes that fail without disturbing
//! anyone else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use tests::{Client, Server, Twin, bin, header, make_certs};

/// Runs `chat-tls client` with exactly `args` (no flags added) and no
/// commands; returns exit code, stdout, stderr.
fn tls_client(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    client_of("chat-tls", args, env)
}

fn client_of(binary: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(bin(binary));
    cmd.args(["client", "--json"])
        .args(args)
        .env("CHAT_PASSWORD", "pw")
        .env_remove("SSLKEYLOGFILE")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ca(server: &Server) -> String {
    server
        .certs
        .as_ref()
        .unwrap()
        .join("ca.pem")
        .display()
        .to_string()
}

/// The last line of stderr, which must be the only error line.
fn one_line_error(err: &str) -> &str {
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.contains("warning") && !l.contains("WARNING"))
        .collect();
    assert_eq!(lines.len(), 1, "one error line: {err}");
    lines[0]
}

#[test]
fn each_certificate_failure_is_one_line_naming_its_cause() {
    let server = Server::start(Twin::StartTls, &[]);
    let addr = server.addr.to_string();
    let direct = server.direct.unwrap().to_string();
    let good_ca = ca(&server);
    let (code, out, err) = tls_client(
        &[
            "--server",
            &addr,
            "--jid",
            "alice@localhost",
            "--register",
            "--ca",
            &good_ca,
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("\"encrypted\":true"), "{out}");

    // Unknown issuer: another lab's CA (a forged certificate looks like this).
    let other = tempfile::tempdir().unwrap();
    make_certs(other.path(), &[]);
    let other_ca = other.path().join("ca.pem").display().to_string();
    for via in [
        ["--server", &addr, ""],
        ["--server", &direct, "--direct-tls"],
    ] {
        let mut args = vec![
            via[0],
            via[1],
            "--jid",
            "alice@localhost",
            "--ca",
            &other_ca,
        ];
        if !via[2].is_empty() {
            args.push(via[2]);
        }
        let (code, out, err) = tls_client(&args, &[]);
        assert_eq!(code, 2, "{out}\n{err}");
        assert!(one_line_error(&err).contains("unknown issuer"), "{err}");
        assert!(!out.contains("connected"), "{out}");
    }

    // Pin: the right key signs in, any other key is refused even though
    // its certificate chains to the trusted CA.
    let pin = tests::make_certs(tempfile::tempdir().unwrap().path(), &[]);
    let (code, _, err) = tls_client(
        &[
            "--server",
            &addr,
            "--jid",
            "alice@localhost",
            "--ca",
            &good_ca,
            "--pin",
            &pin,
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(one_line_error(&err).contains("pin mismatch"), "{err}");
    let right = server.pin.clone().unwrap();
    let (code, out, err) = tls_client(
        &[
            "--server",
            &addr,
            "--jid",
            "alice@localhost",
            "--ca",
            &good_ca,
            "--pin",
            &right,
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}\n{err}");

    // --insecure accepts the unknown CA, and says loudly that it does.
    let (code, out, err) = tls_client(
        &[
            "--server",
            &addr,
            "--jid",
            "alice@localhost",
            "--ca",
            &other_ca,
            "--insecure",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("--insecure"), "{err}");
}

#[test]
fn name_mismatch_and_expiry_are_named() {
    // The server serves chat.lab with a certificate for localhost only.
    let server = Server::start_custom(Twin::DirectTls, "chat.lab", &[], &[]);
    for (addr, direct) in [(server.addr, false), (server.direct.unwrap(), true)] {
        let a = addr.to_string();
        let mut args = vec!["--server", &a, "--jid", "alice@chat.lab", "--ca"];
        let c = ca(&server);
        args.push(&c);
        if direct {
            args.push("--direct-tls");
        }
        let (code, _, err) = tls_client(&args, &[]);
        assert_eq!(code, 2);
        assert!(
            one_line_error(&err).contains("name mismatch") && err.contains("chat.lab"),
            "{err}"
        );
    }
    let expired = Server::start_custom(Twin::StartTls, "localhost", &["--expired"], &[]);
    let (code, _, err) = tls_client(
        &[
            "--server",
            &expired.addr.to_string(),
            "--jid",
            "alice@localhost",
            "--ca",
            &ca(&expired),
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(one_line_error(&err).contains("expired"), "{err}");
}

#[test]
fn without_starttls_the_client_stops_unless_told_to_be_weak() {
    // A server that cannot offer STARTTLS: the plaintext twin (what a
    // STARTTLS-stripping man in the middle makes any server look like).
    let plain = Server::start(Twin::Plain, &[]);
    let addr = plain.addr.to_string();
    let (code, out, err) = tls_client(
        &["--server", &addr, "--jid", "alice@localhost", "--register"],
        &[],
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        one_line_error(&err).contains("did not offer STARTTLS"),
        "{err}"
    );
    assert!(!out.contains("registered"), "nothing was sent: {out}");
    let (code, out, err) = tls_client(
        &[
            "--server",
            &addr,
            "--jid",
            "alice@localhost",
            "--register",
            "--starttls",
            "opportunistic",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("\"encrypted\":false"), "{out}");
    assert!(err.contains("PLAINTEXT"), "the weak option warns: {err}");

    // And the other way round: chat-plain cannot meet a TLS-only server.
    let tls = Server::start(Twin::StartTls, &[]);
    let (code, _, err) = client_of(
        "chat-plain",
        &[
            "--server",
            &tls.addr.to_string(),
            "--jid",
            "bob@localhost",
            "--register",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(one_line_error(&err).contains("requires STARTTLS"), "{err}");
}

#[test]
fn the_key_log_is_written_and_announced() {
    let server = Server::start(Twin::StartTls, &[]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("keys.log");
    let (code, out, err) = tls_client(
        &[
            "--server",
            &server.addr.to_string(),
            "--jid",
            "alice@localhost",
            "--register",
            "--ca",
            &ca(&server),
        ],
        &[("SSLKEYLOGFILE", log.to_str().unwrap())],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("SSLKEYLOGFILE is set"), "{err}");
    let keys = std::fs::read_to_string(&log).unwrap();
    assert!(
        keys.lines()
            .any(|l| l.starts_with("CLIENT_TRAFFIC_SECRET_0 ") || l.starts_with("CLIENT_RANDOM ")),
        "NSS key log lines: {keys}"
    );
}

fn read_some(s: &mut TcpStream) -> String {
    let mut buf = [0u8; 4096];
    let mut all = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                all.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&all).contains("<proceed") {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

#[test]
fn failed_handshakes_close_only_their_connection_and_are_logged() {
    let server = Server::start(Twin::StartTls, &[]);
    let mut alice = Client::start(&server, "alice@localhost", "pw", &["--register"]);
    alice.expect("connected", |v| v["type"] == "connected");

    // Garbage instead of a ClientHello on the direct TLS port.
    let mut g = TcpStream::connect(server.direct.unwrap()).unwrap();
    g.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    g.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut sink = Vec::new();
    let _ = g.read_to_end(&mut sink);

    // A peer that vanishes in the middle of the handshake.
    let mut v = TcpStream::connect(server.direct.unwrap()).unwrap();
    v.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
    drop(v);

    // Garbage after <proceed/> on the STARTTLS port.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(header("localhost").as_bytes()).unwrap();
    s.write_all(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .unwrap();
    let got = read_some(&mut s);
    assert!(got.contains("<proceed"), "{got}");
    assert!(
        !got.contains("mechanism"),
        "no SASL before TLS when required: {got}"
    );
    s.write_all(b"this is not TLS at all\r\n").unwrap();
    let _ = s.read_to_end(&mut sink);

    // Everyone else is still served.
    alice.send("/roster");
    alice.expect("still served", |v| {
        v["type"] == "ok" && v["command"] == "/roster"
    });
    let mut bob = Client::start(&server, "bob@localhost", "pw", &["--register"]);
    bob.expect("a new client signs in", |v| v["type"] == "connected");
    let log = server.log();
    assert!(
        log.matches("connection setup failed").count() >= 2,
        "direct TLS failures are logged: {log}"
    );
    assert!(
        log.contains("TLS handshake failed"),
        "the failed STARTTLS upgrade is logged: {log}"
    );
    drop((alice, bob));
}

/// Common mistakes, each answered with what to do: the STARTTLS port with
/// `--direct-tls` and the reverse (with either twin), a JID without a
/// name, and a pin without the CA it narrows.
#[test]
fn wrong_ports_jids_and_pins_get_a_hint() {
    let server = Server::start(Twin::DirectTls, &[]);
    let (starttls, direct) = (server.addr.to_string(), server.direct.unwrap().to_string());
    let ca = ca(&server);
    let (code, _, err) = tls_client(
        &[
            "--server",
            &starttls,
            "--direct-tls",
            "--jid",
            "a@localhost",
            "--ca",
            &ca,
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        one_line_error(&err).contains("is this the STARTTLS port? drop --direct-tls"),
        "{err}"
    );
    for twin in ["chat-tls", "chat-plain"] {
        let mut args = vec!["--server", direct.as_str(), "--jid", "a@localhost"];
        if twin == "chat-tls" {
            args.extend(["--ca", &ca]);
        }
        let (code, _, err) = client_of(twin, &args, &[]);
        assert_eq!(code, 2, "{err}");
        assert!(
            one_line_error(&err).contains("is this the direct-TLS port? try --direct-tls"),
            "{twin}: {err}"
        );
    }
    let (code, _, err) = tls_client(&["--server", &starttls, "--jid", "alice", "--ca", &ca], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("a JID is name@domain (for example alice@localhost)"),
        "{err}"
    );
    let (_, _, err) = tls_client(
        &[
            "--server",
            &starttls,
            "--jid",
            "a@localhost",
            "--pin",
            "sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ],
        &[],
    );
    assert!(
        err.contains("--pin is checked in addition to trust in the certificate's CA"),
        "{err}"
    );
}

/// A server stopped with SIGTERM tells its clients why, and closes TLS
/// properly: the client shows `system-shutdown`, not a TLS error about a
/// missing close_notify.
#[test]
fn a_server_shutting_down_says_so_and_closes_tls_cleanly() {
    let server = Server::start(Twin::StartTls, &[]);
    let mut alice = Client::start(&server, "alice@localhost", "pw-a", &["--register"]);
    alice.expect("connected", |v| v["type"] == "connected");
    alice.send("/roster");
    alice.expect("settled", |v| {
        v["type"] == "ok" && v["command"] == "/roster"
    });
    let ok = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let end = alice.expect("disconnected", |v| v["type"] == "disconnected");
    let reason = end["reason"].as_str().unwrap_or("");
    assert!(reason.contains("system-shutdown"), "{end}");
    assert!(!reason.contains("close_notify"), "{end}");
}
