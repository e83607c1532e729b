//! `mitm-proxy` in the path, through the real binaries: each attack against
//! the setting it beats, and against the setting that beats it.

use serde_json::Value;
use tests::{Client, Proxy, Server, Twin, verdict};

/// The events of `kind` for connection `conn`.
fn events<'a>(all: &'a [Value], conn: u64, kind: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|e| e["conn"] == conn && e["type"] == kind)
        .collect()
}

/// A message sent through the proxy, and whether the client got it back.
fn chat_once(client: &mut Client, to: &str, text: &str) {
    client.send(&format!("/msg {to} {text}"));
    client.expect("the message back", |v| {
        v["type"] == "message" && v["body"] == text
    });
}

#[test]
fn strip_starttls_beats_an_opportunistic_client_and_loses_to_a_required_one() {
    // The server requires STARTTLS; the proxy strips it from the client and
    // encrypts the server leg itself.
    let server = Server::start(Twin::StartTls, &[]);
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("strip.pcap");
    let proxy = Proxy::start_with(
        server.addr,
        &[
            "--attack".as_ref(),
            "strip-starttls".as_ref(),
            "--write".as_ref(),
            pcap.as_os_str(),
        ],
    );

    // Weak: --starttls opportunistic goes on in plaintext. It registers,
    // signs in and chats as if nothing happened (the server sees TLS).
    let mut weak = Client::start_via(
        &server,
        proxy.addr,
        "alice@localhost",
        "correct horse",
        &["--register", "--starttls", "opportunistic"],
    );
    let connected = weak.expect("connected", |v| v["type"] == "connected");
    assert_eq!(connected["encrypted"], false, "{connected}");
    chat_once(&mut weak, "alice@localhost", "through the proxy");
    let (code, t) = weak.finish();
    assert_eq!(code, 0, "{t}");

    // Strong: the default, --starttls required, stops with one line.
    let strong = Client::start_via(&server, proxy.addr, "alice@localhost", "correct horse", &[]);
    let (code, t) = strong.finish();
    assert_eq!(code, 2, "{t}");
    assert!(
        t.contains("did not offer STARTTLS") && t.contains("stripping"),
        "the client names the attack: {t}"
    );

    let all = proxy.stop();
    // Connection 1: the password, read in the clear, and the message.
    let captured = events(&all, 1, "captured");
    assert!(
        captured
            .iter()
            .any(|c| c["user"] == "alice" && c["secret"] == "correct horse"),
        "{all:#?}"
    );
    assert!(
        events(&all, 1, "stanza").iter().any(|s| s["stanza"]
            .as_str()
            .is_some_and(|t| t.contains("body: through the proxy"))),
        "the message body was read: {all:#?}"
    );
    let v1 = verdict(&all, 1, "strip-starttls");
    assert_eq!(v1["defeated"], false, "{v1}");
    assert!(
        v1["outcome"]
            .as_str()
            .unwrap()
            .starts_with("client went on in plaintext; password of alice captured"),
        "{v1}"
    );
    // Connection 2: refused, nothing captured.
    let v2 = verdict(&all, 2, "strip-starttls");
    assert_eq!(v2["defeated"], true, "{v2}");
    assert_eq!(
        v2["outcome"], "client refused (no STARTTLS offered): attack defeated",
        "{v2}"
    );
    assert!(events(&all, 2, "captured").is_empty(), "{all:#?}");
    // The capture: the client's leg in the clear as the client sent it, and
    // the server's leg as the proxy read it inside the TLS it took on the
    // client's behalf; the sniffer reads the password and the message on
    // both legs of connection 1.
    let found = sniffed(&pcap);
    let legs: Vec<&Value> = found
        .iter()
        .filter(|f| f["type"] == "summary" && f["credentials"].as_u64() >= Some(1))
        .collect();
    assert_eq!(legs.len(), 2, "{found:#?}");
    assert!(
        legs.iter()
            .all(|l| l["messages"].as_u64() >= Some(1) && l["tls"] == false),
        "{found:#?}"
    );
    // The Ctrl-C summary carries both verdicts.
    assert_eq!(
        all.iter()
            .filter(|e| e["type"] == "summary" && e["attack"] == "strip-starttls")
            .count(),
        2,
        "{all:#?}"
    );
}

#[test]
fn strip_starttls_has_nothing_to_strip_from_direct_tls() {
    let server = Server::start(Twin::DirectTls, &[]);
    let proxy = Proxy::start(server.direct.expect("direct TLS"), &["strip-starttls"]);
    let mut client =
        Client::start_via(&server, proxy.addr, "dora@localhost", "pw", &["--register"]);
    let connected = client.expect("connected", |v| v["type"] == "connected");
    assert_eq!(connected["encrypted"], true, "{connected}");
    let (code, t) = client.finish();
    assert_eq!(code, 0, "{t}");
    let all = proxy.stop();
    let v = verdict(&all, 1, "strip-starttls");
    assert_eq!(v["defeated"], true, "{v}");
    assert!(v["outcome"].as_str().unwrap().contains("direct TLS"), "{v}");
    assert!(events(&all, 1, "captured").is_empty(), "{all:#?}");
    assert!(
        events(&all, 1, "stanza").is_empty(),
        "nothing readable: {all:#?}"
    );
}

#[test]
fn downgrade_sasl_gets_the_password_a_scram_client_would_have_kept() {
    let server = Server::start(Twin::Plain, &[]);
    // Registered directly, so the only secret on the proxied wire is the
    // sign-in itself.
    let setup = Client::start(&server, "bob@localhost", "tr0ub4dor", &["--register"]);
    let (code, t) = setup.finish();
    assert_eq!(code, 0, "{t}");

    // Without the attack, the client picks SCRAM and no password crosses.
    let relay = Proxy::start(server.addr, &[]);
    let mut c = Client::start_via(&server, relay.addr, "bob@localhost", "tr0ub4dor", &[]);
    let connected = c.expect("connected", |v| v["type"] == "connected");
    assert_eq!(connected["mechanism"], "SCRAM-SHA-256", "{connected}");
    let (code, t) = c.finish();
    assert_eq!(code, 0, "{t}");
    let all = relay.stop();
    assert!(events(&all, 1, "captured").is_empty(), "{all:#?}");
    let v = verdict(&all, 1, "relay");
    assert!(v["outcome"].as_str().unwrap().starts_with("read "), "{v}");

    // With it, a client that takes whatever is offered (--sasl PLAIN) is
    // offered PLAIN only, and sends the password.
    let proxy = Proxy::start(server.addr, &["downgrade-sasl"]);
    let mut c = Client::start_via(
        &server,
        proxy.addr,
        "bob@localhost",
        "tr0ub4dor",
        &["--sasl", "PLAIN"],
    );
    let connected = c.expect("connected", |v| v["type"] == "connected");
    assert_eq!(connected["mechanism"], "PLAIN", "{connected}");
    let (code, t) = c.finish();
    assert_eq!(code, 0, "{t}");
    let all = proxy.stop();
    assert!(
        events(&all, 1, "captured")
            .iter()
            .any(|e| e["secret"] == "tr0ub4dor" && e["source"] == "SASL PLAIN"),
        "{all:#?}"
    );
    let v = verdict(&all, 1, "downgrade-sasl");
    assert_eq!(v["defeated"], false, "{v}");
    assert_eq!(
        v["outcome"],
        "client accepted PLAIN; password of bob captured (SASL PLAIN)"
    );
    assert!(
        all.iter().any(|e| e["type"] == "attack"
            && e["did"].as_str().is_some_and(|d| d.contains("only PLAIN"))),
        "{all:#?}"
    );

    // The default client accepts SCRAM or stronger: it stops, and says why.
    let proxy = Proxy::start(server.addr, &["downgrade-sasl"]);
    let c = Client::start_via(&server, proxy.addr, "bob@localhost", "tr0ub4dor", &[]);
    let (code, t) = c.finish();
    assert_eq!(code, 2, "{t}");
    assert!(
        t.contains("offers nothing stronger than PLAIN") && t.contains("SASL downgrade"),
        "{t}"
    );
    let all = proxy.stop();
    assert!(events(&all, 1, "captured").is_empty(), "{all:#?}");
    let v = verdict(&all, 1, "downgrade-sasl");
    assert_eq!(v["defeated"], true, "{v}");

    // A subtler cut: SCRAM-SHA-256 removed, SCRAM-SHA-1 left (which the
    // client accepts). The server signs the offer it made in the SCRAM
    // exchange (XEP-0474); the client compares it with the offer it saw
    // and stops before it proves anything.
    let proxy = Proxy::start_with(
        server.addr,
        &["--attack", "downgrade-sasl", "--offer", "SCRAM-SHA-1"],
    );
    let c = Client::start_via(&server, proxy.addr, "bob@localhost", "tr0ub4dor", &[]);
    let (code, t) = c.finish();
    assert_eq!(code, 2, "{t}");
    assert!(t.contains("someone is downgrading this sign-in"), "{t}");
    let all = proxy.stop();
    let v = verdict(&all, 1, "downgrade-sasl");
    assert_eq!(v["defeated"], true, "{v}");
    assert!(v["outcome"].as_str().unwrap().contains("XEP-0474"), "{v}");
}

#[test]
fn removing_plus_is_noticed_and_a_relayed_bound_sign_in_is_refused() {
    // The proxy ends the client's TLS with a certificate from a CA the
    // client trusts by mistake, and removes SCRAM-*-PLUS (and the binding
    // types) from the offer, so the client cannot bind. The client says
    // over TLS that it saw no -PLUS (`y`); the server, which offers it,
    // knows the offer was cut and refuses.
    let atk = tempfile::tempdir().unwrap();
    let (code, _, err) =
        tests::run_bin("mitm-proxy", &["ca", "--out", atk.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let attacker_ca = atk.path().join("ca.pem");
    let server = Server::start(Twin::StartTls, &[]);
    let lab_ca = server.certs.clone().expect("certs").join("ca.pem");
    let (code, t) = tls_client(
        &server,
        server.addr,
        "max@localhost",
        &["--ca", lab_ca.to_str().unwrap(), "--register"],
    )
    .finish();
    assert_eq!(code, 0, "{t}");
    let proxy = Proxy::start_with(
        server.addr,
        &[
            "--attack",
            "intercept-tls",
            "--ca-dir",
            atk.path().to_str().unwrap(),
            "--attack",
            "downgrade-sasl",
            "--offer",
            "SCRAM-SHA-256,SCRAM-SHA-1",
        ],
    );
    let (code, t) = tls_client(
        &server,
        proxy.addr,
        "max@localhost",
        &["--ca", attacker_ca.to_str().unwrap()],
    )
    .finish();
    assert_eq!(code, 2, "{t}");
    assert!(t.contains("someone removed it on the way"), "{t}");
    let all = proxy.stop();
    for attack in ["downgrade-sasl", "intercept-tls"] {
        let v = verdict(&all, 1, attack);
        assert_eq!(v["defeated"], true, "{v}");
        assert!(
            v["outcome"].as_str().unwrap().contains("saw no -PLUS"),
            "{v}"
        );
    }
    assert!(events(&all, 1, "captured").is_empty(), "{all:#?}");
}

#[test]
fn downgrade_sasl_cannot_touch_what_starttls_hides() {
    // Through a plain relay of STARTTLS, the mechanisms are inside TLS.
    let server = Server::start(Twin::StartTls, &[]);
    let proxy = Proxy::start(server.addr, &["downgrade-sasl"]);
    let mut c = Client::start_via(&server, proxy.addr, "erin@localhost", "pw", &["--register"]);
    let connected = c.expect("connected", |v| v["type"] == "connected");
    assert_eq!(connected["encrypted"], true, "{connected}");
    assert_ne!(connected["mechanism"], "PLAIN", "{connected}");
    let (code, t) = c.finish();
    assert_eq!(code, 0, "{t}");
    let all = proxy.stop();
    let v = verdict(&all, 1, "downgrade-sasl");
    assert_eq!(v["defeated"], true, "{v}");
    assert!(v["outcome"].as_str().unwrap().contains("inside TLS"), "{v}");
    // The relay saw the switch to TLS at an exact byte, and nothing after.
    let opaque = events(&all, 1, "opaque");
    assert!(
        opaque.iter().any(|o| o["dir"] == "client-to-server"
            && o["reason"] == "TLS"
            && o["at_byte"].as_u64() > Some(0)),
        "{all:#?}"
    );
    assert!(events(&all, 1, "captured").is_empty(), "{all:#?}");
}

#[test]
fn the_proxy_survives_a_dead_upstream_and_garbage() {
    // An upstream nobody listens on: a stopped server's address.
    let gone = Server::start(Twin::Plain, &[]);
    let dead = gone.addr;
    drop(gone);
    let proxy = Proxy::start(dead, &[]);
    let c = Client::start_via(
        &Server::start(Twin::Plain, &[]),
        proxy.addr,
        "x@localhost",
        "pw",
        &[],
    );
    let (code, t) = c.finish();
    assert_eq!(code, 2, "the client sees the connection end: {t}");
    let all = proxy.stop();
    let down = events(&all, 1, "upstream-down");
    assert_eq!(down.len(), 1, "{all:#?}");
    assert_eq!(down[0]["upstream"], dead.to_string());

    // Garbage from a client is passed on for the server to judge; the proxy
    // goes on serving the next client.
    let server = Server::start(Twin::Plain, &[]);
    let proxy = Proxy::start(server.addr, &[]);
    {
        use std::io::{Read, Write};
        let mut raw = std::net::TcpStream::connect(proxy.addr).unwrap();
        raw.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        raw.write_all(b"\x00\x01garbage <<<>>> not xml at all\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = raw.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.contains("not-well-formed"),
            "the server's verdict reached the client: {answer}"
        );
    }
    let mut next = Client::start_via(&server, proxy.addr, "fay@localhost", "pw", &["--register"]);
    next.expect("connected", |v| v["type"] == "connected");
    let (code, t) = next.finish();
    assert_eq!(code, 0, "{t}");
    let all = proxy.stop();
    assert!(
        events(&all, 1, "opaque").iter().any(|o| o["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("not readable XMPP"))),
        "{all:#?}"
    );
    assert_eq!(verdict(&all, 2, "relay")["defeated"], false);
}

#[test]
fn corrupt_tls_is_caught_by_the_aead_tag_of_the_record() {
    for twin in [Twin::StartTls, Twin::DirectTls] {
        let server = Server::start(twin, &[]);
        let target = match twin {
            Twin::DirectTls => server.direct.expect("direct TLS"),
            _ => server.addr,
        };
        let dir = tempfile::tempdir().unwrap();
        let pcap = dir.path().join("corrupt.pcap");
        let proxy = Proxy::start_with(
            target,
            &[
                "--attack".as_ref(),
                "corrupt-tls".as_ref(),
                "--write".as_ref(),
                pcap.as_os_str(),
            ],
        );
        let client = Client::start_via(&server, proxy.addr, "gil@localhost", "pw", &["--register"]);
        let (code, t) = client.finish();
        // The server refused the changed record and said so in an alert.
        assert_eq!(code, 2, "{twin:?}: {t}");
        assert!(t.contains("BadRecordMac"), "{twin:?}: {t}");
        let all = proxy.stop();
        let v = verdict(&all, 1, "corrupt-tls");
        assert_eq!(v["defeated"], true, "{twin:?}: {v}");
        assert!(
            v["outcome"]
                .as_str()
                .unwrap()
                .contains("TLS detected the change"),
            "{twin:?}: {v}"
        );
        // The capture has the record as the client sent it on the
        // client's leg, and with the bit flipped on the server's leg.
        if let Some(tshark) = tests::interop_tool("tshark") {
            let sent = |stream: u32| client_bytes(&tshark, &pcap, stream);
            let (from_client, to_server) = (sent(0), sent(1));
            assert_eq!(from_client.len(), to_server.len(), "{twin:?}");
            let flipped: u32 = from_client
                .iter()
                .zip(&to_server)
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            assert_eq!(flipped, 1, "{twin:?}: one bit differs between the legs");
        }
    }
    // On plaintext there is no record to flip, and the proxy says so.
    let server = Server::start(Twin::Plain, &[]);
    let proxy = Proxy::start(server.addr, &["corrupt-tls"]);
    let client = Client::start_via(&server, proxy.addr, "hal@localhost", "pw", &["--register"]);
    let (code, t) = client.finish();
    assert_eq!(code, 0, "{t}");
    let all = proxy.stop();
    assert_eq!(
        verdict(&all, 1, "corrupt-tls")["outcome"],
        "no TLS to corrupt: the stream was plaintext"
    );
}

/// What the opener of TCP stream `stream` in `pcap` sent (the client on
/// the client's leg, the proxy on the server's), as tshark follows it.
fn client_bytes(tshark: &std::path::Path, pcap: &std::path::Path, stream: u32) -> Vec<u8> {
    let out = std::process::Command::new(tshark)
        .arg("-r")
        .arg(pcap)
        .args(["-q", "-z", &format!("follow,tcp,raw,{stream}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // Between the `Node 1:` line and the closing `=====` line, one hex line
    // per segment; the other side's segments are indented with a tab.
    let hex: String = text
        .lines()
        .skip_while(|l| !l.starts_with("Node 1:"))
        .skip(1)
        .take_while(|l| !l.starts_with("====="))
        .filter(|l| !l.starts_with('\t'))
        .collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// The TLS twin's client through `addr`, trusting what `trust` says
/// (`--ca FILE`, `--insecure`, `--pin ...`) instead of the lab CA, with
/// any other flags there too (`--register`, `--no-channel-binding`).
fn tls_client(server: &Server, addr: std::net::SocketAddr, jid: &str, trust: &[&str]) -> Client {
    let mut cmd = std::process::Command::new(tests::bin(server.twin.bin()));
    cmd.args(["client", "--json", "--jid", jid, "--server"])
        .arg(addr.to_string())
        .args(trust)
        .env("CHAT_PASSWORD", "hunter2");
    if server.twin == Twin::DirectTls {
        cmd.arg("--direct-tls");
    }
    Client::spawn(jid, cmd)
}

#[test]
fn intercept_tls_beats_a_client_that_trusts_too_much_and_loses_to_validation_and_pins() {
    let atk = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(tests::bin("mitm-proxy"))
        .args(["ca", "--out"])
        .arg(atk.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let attacker_ca = atk.path().join("ca.pem");
    let attacker_ca = attacker_ca.to_str().unwrap();
    for twin in [Twin::StartTls, Twin::DirectTls] {
        let server = Server::start(twin, &[]);
        let upstream = match twin {
            Twin::DirectTls => server.direct.expect("direct TLS"),
            _ => server.addr,
        };
        let certs = server.certs.clone().expect("lab certificates");
        let lab_ca = certs.join("ca.pem");
        let lab_ca = lab_ca.to_str().unwrap();
        let pin = server.pin.clone().expect("the server's pin");
        let keys = atk.path().join(format!("keys-{twin:?}.log"));

        let proxy = Proxy::start_with(
            upstream,
            &[
                "--attack".as_ref(),
                "intercept-tls".as_ref(),
                "--ca-dir".as_ref(),
                atk.path().as_os_str(),
                "--keylog".as_ref(),
                keys.as_os_str(),
            ],
        );

        // 1: the default client checks the certificate against the lab CA.
        let c = tls_client(
            &server,
            proxy.addr,
            "ivy@localhost",
            &["--ca", lab_ca, "--register"],
        );
        let (code, t) = c.finish();
        assert_eq!(code, 2, "{twin:?}: {t}");
        assert!(t.contains("unknown issuer"), "{twin:?}: {t}");
        // 2: a client told to trust the attacker's CA, and without channel
        // binding, hands over everything.
        let mut c = tls_client(
            &server,
            proxy.addr,
            "ivy@localhost",
            &["--ca", attacker_ca, "--register", "--no-channel-binding"],
        );
        c.expect("connected", |v| {
            v["type"] == "connected" && v["encrypted"] == true
        });
        chat_once(&mut c, "ivy@localhost", "for your eyes only");
        let (code, t) = c.finish();
        assert_eq!(code, 0, "{twin:?}: {t}");
        // 3: the same mistake with the server's key pinned: refused.
        let c = tls_client(
            &server,
            proxy.addr,
            "ivy@localhost",
            &["--ca", attacker_ca, "--pin", &pin, "--register"],
        );
        let (code, t) = c.finish();
        assert_eq!(code, 2, "{twin:?}: {t}");
        assert!(t.contains("pin mismatch"), "{twin:?}: {t}");
        // 4: --insecure accepts anything.
        let mut c = tls_client(
            &server,
            proxy.addr,
            "ike@localhost",
            &["--insecure", "--register", "--no-channel-binding"],
        );
        c.expect("connected", |v| v["type"] == "connected");
        let (code, t) = c.finish();
        assert_eq!(code, 0, "{twin:?}: {t}");
        // 5: the same trust mistake, with channel binding (the default):
        // the client's TLS ends at the proxy, the server's at the proxy
        // too, and their values differ, so the server refuses the relayed
        // proof. (Registered directly first: a registration form sent
        // through the proxy would still give the password away.)
        let direct = match twin {
            Twin::DirectTls => server.direct.expect("direct TLS"),
            _ => server.addr,
        };
        let (code, t) = tls_client(
            &server,
            direct,
            "cal@localhost",
            &["--ca", lab_ca, "--register"],
        )
        .finish();
        assert_eq!(code, 0, "{twin:?}: {t}");
        let (code, t) =
            tls_client(&server, proxy.addr, "cal@localhost", &["--ca", attacker_ca]).finish();
        assert_eq!(code, 2, "{twin:?}: {t}");
        assert!(
            t.contains("channel binding failed: someone is relaying this TLS connection"),
            "{twin:?}: {t}"
        );

        let all = proxy.stop();
        assert_eq!(
            verdict(&all, 1, "intercept-tls")["defeated"],
            true,
            "{all:#?}"
        );
        let v2 = verdict(&all, 2, "intercept-tls");
        assert_eq!(v2["defeated"], false, "{v2}");
        assert_eq!(
            v2["outcome"],
            "client accepted the forged certificate; password of ivy captured (registration)"
        );
        assert!(
            events(&all, 2, "stanza").iter().any(|s| s["stanza"]
                .as_str()
                .is_some_and(|t| t.contains("body: for your eyes only"))),
            "{twin:?}: read inside TLS: {all:#?}"
        );
        assert_eq!(
            verdict(&all, 3, "intercept-tls")["defeated"],
            true,
            "{all:#?}"
        );
        assert_eq!(
            verdict(&all, 4, "intercept-tls")["defeated"],
            false,
            "{all:#?}"
        );
        let v5 = verdict(&all, 5, "intercept-tls");
        assert_eq!(v5["defeated"], true, "{v5}");
        assert!(
            v5["outcome"].as_str().unwrap().contains("channel binding"),
            "{v5}"
        );
        assert!(events(&all, 5, "captured").is_empty(), "{all:#?}");
        // The key log holds both legs of each intercepted connection: two
        // client randoms (the client's handshake, the proxy's own) each.
        let log = std::fs::read_to_string(&keys).unwrap();
        let randoms: std::collections::HashSet<&str> = log
            .lines()
            .filter(|l| l.starts_with("CLIENT_TRAFFIC_SECRET_0 "))
            .filter_map(|l| l.split(' ').nth(1))
            .collect();
        assert!(randoms.len() >= 4, "{twin:?}: {log}");
    }
}

#[test]
fn intercept_tls_with_the_servers_own_stolen_key_passes_a_pin_but_not_channel_binding() {
    // The third kind of certificate: one the attacker got hold of. With the
    // real server's key, validation and pinning both pass: keys are the
    // secret everything rests on.
    let server = Server::start(Twin::StartTls, &[]);
    let certs = server.certs.clone().expect("lab certificates");
    let (cert, key) = (certs.join("server.pem"), certs.join("server.key"));
    let proxy = Proxy::start_with(
        server.addr,
        &[
            "--attack".as_ref(),
            "intercept-tls".as_ref(),
            "--cert".as_ref(),
            cert.as_os_str(),
            "--key".as_ref(),
            key.as_os_str(),
        ],
    );
    let lab_ca = certs.join("ca.pem");
    let lab_ca = lab_ca.to_str().unwrap();
    let pin = server.pin.clone().expect("pin");
    let mut c = tls_client(
        &server,
        proxy.addr,
        "jo@localhost",
        &[
            "--ca",
            lab_ca,
            "--pin",
            &pin,
            "--register",
            "--no-channel-binding",
        ],
    );
    c.expect("connected", |v| v["type"] == "connected");
    let (code, t) = c.finish();
    assert_eq!(code, 0, "{t}");
    // Channel binding with tls-exporter (TLS 1.3) still tells the two
    // sessions apart, even with the server's own certificate and key: the
    // exported value is the session's, not the certificate's.
    let (code, t) = tls_client(
        &server,
        server.addr,
        "lu@localhost",
        &["--ca", lab_ca, "--register"],
    )
    .finish();
    assert_eq!(code, 0, "{t}");
    let (code, t) = tls_client(
        &server,
        proxy.addr,
        "lu@localhost",
        &["--ca", lab_ca, "--pin", &pin],
    )
    .finish();
    assert_eq!(code, 2, "{t}");
    assert!(t.contains("channel binding failed"), "{t}");
    let all = proxy.stop();
    assert_eq!(
        verdict(&all, 1, "intercept-tls")["outcome"],
        "client accepted the forged certificate; password of jo captured (registration)"
    );
    assert_eq!(
        verdict(&all, 2, "intercept-tls")["defeated"],
        true,
        "{all:#?}"
    );
}

#[test]
fn tshark_decrypts_both_intercepted_legs_with_the_proxys_key_log() {
    let Some(tshark) = tests::interop_tool("tshark") else {
        return;
    };
    let server = Server::start(Twin::StartTls, &[]);
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.log");
    let proxy = Proxy::start_with(
        server.addr,
        &[
            "--attack".as_ref(),
            "intercept-tls".as_ref(),
            "--keylog".as_ref(),
            keys.as_os_str(),
        ],
    );
    // Both legs on the wire: client to proxy, proxy to server.
    let sniffer = tests::Sniffer::on_ports(&[proxy.addr.port(), server.addr.port()]);
    let mut c = tls_client(
        &server,
        proxy.addr,
        "kim@localhost",
        &["--insecure", "--register", "--no-channel-binding"],
    );
    chat_once(&mut c, "kim@localhost", "only the key log opens this");
    let (code, t) = c.finish();
    assert_eq!(code, 0, "{t}");
    let (_, sniffer) = sniffer.stop();
    let proxy_port = proxy.addr.port();
    proxy.stop();
    // tshark, told only the key log and which ports are XMPP, reads the
    // message inside TLS on each leg.
    for port in [proxy_port, server.addr.port()] {
        let out = std::process::Command::new(&tshark)
            .arg("-r")
            .arg(&sniffer.pcap)
            .arg("-o")
            .arg(format!("tls.keylog_file:{}", keys.display()))
            .args(["-d", &format!("tcp.port=={port},xmpp")])
            .args(["-Y", &format!("tcp.port=={port} && tls"), "-V"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("only the key log opens this"),
            "port {port}: tshark did not decrypt the message:\n{}",
            &text[..text.len().min(3000)]
        );
    }
    // Without the key log, the same capture shows no message.
    let blind = std::process::Command::new(&tshark)
        .arg("-r")
        .arg(&sniffer.pcap)
        .arg("-V")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&blind.stdout).contains("only the key log opens this"));
}

#[test]
fn inject_starttls_is_dropped_at_the_switch_by_our_server_and_client() {
    let server = Server::start(Twin::StartTls, &[]);
    let proxy = Proxy::start(server.addr, &["inject-starttls"]);
    let mut c = Client::start_via(&server, proxy.addr, "lee@localhost", "pw", &["--register"]);
    c.expect("connected", |v| {
        v["type"] == "connected" && v["encrypted"] == true
    });
    chat_once(&mut c, "lee@localhost", "after the switch");
    let (code, t) = c.finish();
    assert_eq!(code, 0, "{t}");
    // The client never showed the stanza slipped in after <proceed/>.
    assert!(!t.contains("INJECTED"), "{t}");
    // The server says it dropped what came after <starttls/>.
    assert!(
        server
            .log()
            .contains("discarded plaintext sent after <starttls/>"),
        "{}",
        server.log()
    );
    let all = proxy.stop();
    assert_eq!(
        all.iter()
            .filter(|e| e["type"] == "attack" && e["attack"] == "inject-starttls")
            .count(),
        2,
        "both directions injected: {all:#?}"
    );
    // What the proxy can see: the TLS session went on. Whether a side
    // acted on the stanza only that side can say (the server's log above).
    let v = verdict(&all, 1, "inject-starttls");
    assert!(
        v["outcome"]
            .as_str()
            .unwrap()
            .contains("the TLS session went on"),
        "{v}"
    );
}

#[test]
fn replay_signs_in_with_a_recorded_plain_exchange_but_not_a_scram_one() {
    let server = Server::start(Twin::Plain, &[]);
    let proxy = Proxy::start(server.addr, &["replay"]);
    // 1: SCRAM (the default): the recorded proof was for another nonce.
    let c = Client::start_via(&server, proxy.addr, "max@localhost", "pw", &["--register"]);
    let (code, t) = c.finish();
    assert_eq!(code, 0, "{t}");
    // 2: PLAIN: the same bytes sign in again.
    let c = Client::start_via(&server, proxy.addr, "max@localhost", "pw", &["--plain"]);
    let (code, t) = c.finish();
    assert_eq!(code, 0, "{t}");
    let all = proxy.stop();
    let v1 = verdict(&all, 1, "replay");
    assert_eq!(v1["defeated"], true, "{v1}");
    assert!(
        v1["outcome"].as_str().unwrap().starts_with(
            "replayed the SCRAM-SHA-256 exchange on a new connection: the server refused it"
        ),
        "{v1}"
    );
    let v2 = verdict(&all, 2, "replay");
    assert_eq!(v2["defeated"], false, "{v2}");
    assert_eq!(
        v2["outcome"],
        "replayed the PLAIN exchange on a new connection: the server accepted it (signed in without knowing the password); read the user's roster: it is empty"
    );
    // The server saw the replayed PLAIN sign-in as max's own: two PLAIN
    // sign-ins, the client's and the proxy's.
    let log = server.log();
    let plain = log
        .lines()
        .filter(|l| l.contains("authenticated") && l.contains("\"PLAIN\""))
        .count();
    assert_eq!(plain, 2, "{log}");

    // Over STARTTLS the exchange is out of sight.
    let server = Server::start(Twin::StartTls, &[]);
    let proxy = Proxy::start(server.addr, &["replay"]);
    let c = Client::start_via(&server, proxy.addr, "nel@localhost", "pw", &["--register"]);
    let (code, t) = c.finish();
    assert_eq!(code, 0, "{t}");
    let all = proxy.stop();
    assert_eq!(
        verdict(&all, 1, "replay")["outcome"],
        "nothing to replay: authentication ran inside TLS: attack defeated"
    );
}

#[test]
fn a_thousand_connections_at_once_leave_the_proxy_serving() {
    use std::io::Write;
    let server = Server::start(Twin::Plain, &[]);
    let proxy = Proxy::start(server.addr, &[]);
    let mut held: Vec<std::net::TcpStream> = (0..1000)
        .map(|_| std::net::TcpStream::connect(proxy.addr).unwrap())
        .collect();
    for (i, s) in held.iter_mut().enumerate() {
        // Half of them say something, half stay silent.
        if i % 2 == 0 {
            let _ = s.write_all(tests::header("localhost").as_bytes());
        }
    }
    // With all of them open, a real client signs in and chats through it.
    let mut c = Client::start_via(&server, proxy.addr, "oz@localhost", "pw", &["--register"]);
    c.expect("connected", |v| v["type"] == "connected");
    chat_once(&mut c, "oz@localhost", "still here");
    let (code, t) = c.finish();
    assert_eq!(code, 0, "{t}");
    drop(held);
    let all = proxy.stop();
    let connections = all.iter().filter(|e| e["type"] == "connection").count();
    assert_eq!(connections, 1001, "every connection was relayed");
    assert!(
        all.iter().any(|e| e["type"] == "verdict"
            && e["attack"] == "relay"
            && e["outcome"]
                .as_str()
                .is_some_and(|o| o.starts_with("read "))),
        "the real client's connection got its verdict"
    );
}

/// `sniffer read --json` of a capture: every finding.
fn sniffed(pcap: &std::path::Path) -> Vec<Value> {
    let (code, out, err) = tests::run_bin("sniffer", &["read", pcap.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn the_proxys_capture_of_both_legs_reads_back_in_the_sniffer_and_tshark() {
    let dir = tempfile::tempdir().unwrap();
    // Relayed plaintext: both legs carry the same stanzas.
    let server = Server::start(Twin::Plain, &[]);
    let pcap = dir.path().join("relay.pcap");
    let proxy = Proxy::start_with(server.addr, &["--write".as_ref(), pcap.as_os_str()]);
    let mut c = Client::start_via(
        &server,
        proxy.addr,
        "quinn@localhost",
        "pw",
        &["--register"],
    );
    chat_once(&mut c, "quinn@localhost", "on both legs");
    let (code, t) = c.finish();
    assert_eq!(code, 0, "{t}");
    proxy.stop();
    let found = sniffed(&pcap);
    let legs_with_body: std::collections::BTreeSet<u64> = found
        .iter()
        .filter(|f| f["type"] == "message" && f["body"] == "on both legs")
        .filter_map(|f| f["conn"].as_u64())
        .collect();
    assert_eq!(
        legs_with_body.len(),
        2,
        "the message on each leg: {found:#?}"
    );
    if let Some(tshark) = tests::interop_tool("tshark") {
        let out = std::process::Command::new(tshark)
            .arg("-r")
            .arg(&pcap)
            .args(["-q", "-z", "conv,tcp"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let convs = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("<->"))
            .count();
        assert_eq!(convs, 2, "{}", String::from_utf8_lossy(&out.stdout));
    }

    // Intercepted TLS: the capture holds what the proxy read inside TLS.
    let server = Server::start(Twin::StartTls, &[]);
    let pcap = dir.path().join("intercept.pcap");
    let proxy = Proxy::start_with(
        server.addr,
        &[
            "--attack".as_ref(),
            "intercept-tls".as_ref(),
            "--write".as_ref(),
            pcap.as_os_str(),
        ],
    );
    let mut c = tls_client(
        &server,
        proxy.addr,
        "rae@localhost",
        &["--insecure", "--register", "--no-channel-binding"],
    );
    chat_once(&mut c, "rae@localhost", "inside tls");
    let (code, t) = c.finish();
    assert_eq!(code, 0, "{t}");
    proxy.stop();
    let found = sniffed(&pcap);
    assert!(
        found
            .iter()
            .any(|f| f["type"] == "message" && f["body"] == "inside tls"),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f["type"] == "credential" && f["user"] == "rae" && f["password"] == "hunter2"),
        "{found:#?}"
    );
}

/// alice and bob, through `addr`, contacts of each other and online; bob
/// accepts files into `downloads`.
fn pair_via(
    server: &Server,
    addr: std::net::SocketAddr,
    downloads: &std::path::Path,
) -> (Client, Client) {
    let dl = downloads.to_str().unwrap();
    let mut alice = Client::start_via(server, addr, "alice@localhost", "pw-a", &["--register"]);
    alice.expect("connected", |v| v["type"] == "connected");
    let mut bob = Client::start_via(
        server,
        addr,
        "bob@localhost",
        "pw-b",
        &["--register", "--accept-files", "--downloads", dl],
    );
    bob.expect("connected", |v| v["type"] == "connected");
    alice.befriend(&mut bob);
    (alice, bob)
}

#[test]
fn tamper_rewrites_a_message_and_swaps_a_file_with_its_checksum() {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let hex = tests::sha256_hex;
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("notes.txt");
    let evil = dir.path().join("evil.txt");
    // The same length: the offer's size stays true, only the content and
    // its hash change.
    std::fs::write(&real, "the exam is on Monday at 9\n").unwrap();
    std::fs::write(&evil, "the exam is on Friday at 7\n").unwrap();
    let rules = dir.path().join("rules.txt");
    std::fs::write(
        &rules,
        "# the lessons of tamper\n\
         c2s message type=chat body~Monday => replace-body the exam is cancelled\n\
         c2s iq => swap-file evil.txt\n",
    )
    .unwrap();
    for twin in [Twin::Plain, Twin::StartTls] {
        let server = Server::start(twin, &[]);
        let proxy = Proxy::start_with(
            server.addr,
            &[
                "--attack".as_ref(),
                "tamper".as_ref(),
                "--rules".as_ref(),
                rules.as_os_str(),
            ],
        );
        let downloads = dir.path().join(format!("downloads-{twin:?}"));
        let (mut alice, mut bob) = pair_via(&server, proxy.addr, &downloads);
        alice.send("/msg bob see you Monday");
        let m = bob.expect_event("message", "from", "alice@localhost");
        alice.send(&format!("/sendfile bob {}", real.display()));
        let got = bob.expect_event("file-received", "from", "alice@localhost");
        let saved = std::fs::read(got["path"].as_str().unwrap()).unwrap();
        for c in [alice, bob] {
            let (code, t) = c.finish();
            assert_eq!(code, 0, "{twin:?}: {t}");
        }
        let all = proxy.stop();
        let v = verdict(&all, 1, "tamper");
        match twin {
            Twin::Plain => {
                assert_eq!(m["body"], "the exam is cancelled", "{m}");
                // The receiver checked the SHA-256 from the offer and found
                // it right: it was the attacker's file's.
                assert_eq!(saved, std::fs::read(&evil).unwrap());
                assert_eq!(got["sha256"], hex(&saved).as_str(), "{got}");
                assert!(
                    all.iter().any(|e| e["type"] == "attack"
                        && e["attack"] == "tamper"
                        && e["did"].as_str().is_some_and(|d| d.starts_with(&format!(
                            "swapped the offered file (its SHA-256 was {}, hex {})",
                            base64::engine::general_purpose::STANDARD
                                .encode(Sha256::digest(std::fs::read(&real).unwrap())),
                            hex(&std::fs::read(&real).unwrap())
                        )))),
                    "the attacker's log keeps the real hash: {all:#?}"
                );
                // ... and what the message said before.
                assert!(
                    all.iter().any(|e| e["type"] == "attack"
                        && e["did"]
                            .as_str()
                            .is_some_and(|d| d.contains("(it said \"see you Monday\")"))),
                    "{all:#?}"
                );
                assert_eq!(v["defeated"], false, "{v}");
            }
            _ => {
                // Inside TLS nothing matched, nothing changed.
                assert_eq!(m["body"], "see you Monday", "{m}");
                assert_eq!(saved, std::fs::read(&real).unwrap());
                // Each connection's verdict: no rule could apply.
                let all_v: Vec<&Value> = all
                    .iter()
                    .filter(|e| e["type"] == "verdict" && e["attack"] == "tamper")
                    .collect();
                assert!(!all_v.is_empty());
                for v in all_v {
                    assert_eq!(v["defeated"], true, "{v}");
                }
            }
        }
    }
}

#[test]
fn intercept_tls_leaves_a_client_without_tls_to_the_pumps() {
    // chat-plain offers no STARTTLS: nothing to intercept, and the session
    // must run its whole length (not end at the set-up's time limit).
    let server = Server::start(Twin::Plain, &[]);
    let proxy = Proxy::start(server.addr, &["intercept-tls"]);
    let mut c = Client::start_via(&server, proxy.addr, "una@localhost", "pw", &["--register"]);
    c.expect("connected", |v| v["type"] == "connected");
    chat_once(&mut c, "una@localhost", "no tls here");
    std::thread::sleep(std::time::Duration::from_millis(200));
    chat_once(&mut c, "una@localhost", "still relayed");
    let (code, t) = c.finish();
    assert_eq!(code, 0, "{t}");
    let all = proxy.stop();
    assert_eq!(
        verdict(&all, 1, "intercept-tls")["outcome"],
        "the client never started TLS: nothing to intercept"
    );
}
