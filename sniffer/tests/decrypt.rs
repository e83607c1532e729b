//! Key-log decryption against TLS that rustls (the library our chat runs
//! on, not the sniffer's code) really made: in-memory sessions of every
//! cipher suite our configuration negotiates, TLS 1.3 and 1.2, with a
//! resumed session and key updates, captured as frames and read back with
//! the key log rustls itself wrote. The failures are real too: no key, the
//! wrong key, and a record changed on the way.
// Helpers of a test crate: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, ServerConfig, ServerConnection};
use sniffer::analyze::Analyzer;
use sniffer::decode::LinkType;
use sniffer::decode::build::{Flags, ethernet_tcp};
use sniffer::findings::Finding;
use sniffer::keylog::KeyLog;
use sniffer::reassembly::{ConnId, Limits};

/// The key log rustls writes, kept in memory.
#[derive(Debug, Default)]
struct MemKeyLog(Mutex<String>);

impl rustls::KeyLog for MemKeyLog {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let line = format!("{label} {} {}\n", hex(client_random), hex(secret));
        self.0.lock().unwrap().push_str(&line);
    }
}

/// A capture being made: frames of TCP connections on loopback.
#[derive(Default)]
struct Capture {
    frames: Vec<Vec<u8>>,
}

/// One TCP connection of the capture.
struct Tcp {
    client: SocketAddr,
    server: SocketAddr,
    cseq: u32,
    sseq: u32,
}

impl Capture {
    fn open(&mut self, port: u16) -> Tcp {
        let client: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let server: SocketAddr = "127.0.0.1:5223".parse().unwrap();
        let syn = Flags {
            syn: true,
            ..Default::default()
        };
        self.frames.push(ethernet_tcp(client, server, 99, syn, b""));
        Tcp {
            client,
            server,
            cseq: 100,
            sseq: 500,
        }
    }

    fn send(&mut self, t: &mut Tcp, to_server: bool, bytes: &[u8]) {
        for chunk in bytes.chunks(9000) {
            let (src, dst, seq) = if to_server {
                (t.client, t.server, &mut t.cseq)
            } else {
                (t.server, t.client, &mut t.sseq)
            };
            self.frames
                .push(ethernet_tcp(src, dst, *seq, Flags::default(), chunk));
            *seq = seq.wrapping_add(chunk.len() as u32);
        }
    }
}

/// Moves TLS bytes both ways until neither side has anything to send,
/// recording them on the wire.
fn pump(c: &mut ClientConnection, s: &mut ServerConnection, cap: &mut Capture, t: &mut Tcp) {
    loop {
        let mut moved = false;
        while c.wants_write() {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            cap.send(t, true, &buf);
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
                s.process_new_packets().unwrap();
            }
            moved = true;
        }
        while s.wants_write() {
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            cap.send(t, false, &buf);
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                c.process_new_packets().unwrap();
            }
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

/// Drains what a side has received, so its buffer never fills.
fn drain(r: &mut dyn Read) {
    let mut buf = [0u8; 65536];
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}

const HEADER: &str = "<?xml version='1.0'?><stream:stream to='chat.lab' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

const SERVER_HEADER: &str = "<?xml version='1.0'?><stream:stream from='chat.lab' id='1' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

fn message(to: &str, body: &str) -> String {
    format!("<message to='{to}' type='chat'><body>{body}</body></message>")
}

/// Configurations for exactly one suite (and its TLS version), sharing a
/// key log; the client resumes sessions like our chat's does.
fn configs(
    suite: rustls::SupportedCipherSuite,
) -> (Arc<ServerConfig>, Arc<ClientConfig>, Arc<MemKeyLog>) {
    let cert = rcgen::generate_simple_self_signed(vec!["chat.lab".into()]).unwrap();
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let provider = Arc::new(CryptoProvider {
        cipher_suites: vec![suite],
        ..ring::default_provider()
    });
    let version = suite.version();
    let log = Arc::new(MemKeyLog::default());
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    server.key_log = log.clone();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.key_log = log.clone();
    (Arc::new(server), Arc::new(client), log)
}

/// What a session said: the message bodies each side sent.
struct Session {
    capture: Capture,
    keylog: String,
    bodies: Vec<String>,
}

/// Two connections of one suite: a full handshake, then a resumed one;
/// each side sends a message, updates its keys (TLS 1.3), sends another.
fn session(suite: rustls::SupportedCipherSuite) -> Session {
    let (server_config, client_config, log) = configs(suite);
    let tls13 = suite.version() == &rustls::version::TLS13;
    let name = format!("{:?}", suite.suite());
    let mut capture = Capture::default();
    let mut bodies = Vec::new();
    for (round, port) in [(0, 40001u16), (1, 40002)] {
        let mut t = capture.open(port);
        let mut c = ClientConnection::new(
            client_config.clone(),
            ServerName::try_from("chat.lab").unwrap(),
        )
        .unwrap();
        let mut s = ServerConnection::new(server_config.clone()).unwrap();
        pump(&mut c, &mut s, &mut capture, &mut t);
        let expect = if round == 0 {
            HandshakeKind::Full
        } else {
            HandshakeKind::Resumed
        };
        assert_eq!(c.handshake_kind(), Some(expect), "{name} round {round}");
        let body = format!("secret-{name}-{round}-from-client");
        let reply = format!("secret-{name}-{round}-from-server");
        c.writer()
            .write_all(format!("{HEADER}{}", message("bob@chat.lab", &body)).as_bytes())
            .unwrap();
        s.writer()
            .write_all(format!("{SERVER_HEADER}{}", message("alice@chat.lab", &reply)).as_bytes())
            .unwrap();
        pump(&mut c, &mut s, &mut capture, &mut t);
        bodies.push(body);
        bodies.push(reply);
        if tls13 {
            // KeyUpdate both ways: the records after it use the next keys.
            c.refresh_traffic_keys().unwrap();
            s.refresh_traffic_keys().unwrap();
            let after = format!("secret-{name}-{round}-after-key-update");
            c.writer()
                .write_all(message("bob@chat.lab", &after).as_bytes())
                .unwrap();
            pump(&mut c, &mut s, &mut capture, &mut t);
            bodies.push(after);
        }
        drain(&mut s.reader());
        drain(&mut c.reader());
        c.send_close_notify();
        pump(&mut c, &mut s, &mut capture, &mut t);
    }
    let keylog = log.0.lock().unwrap().clone();
    Session {
        capture,
        keylog,
        bodies,
    }
}

/// The capture read with `keylog`: every finding.
fn read(frames: &[Vec<u8>], keylog: Option<&str>) -> Vec<(ConnId, Finding)> {
    let mut found = Vec::new();
    {
        let mut a = Analyzer::new(
            Limits::default(),
            None,
            Box::new(|c, _, f: &Finding| found.push((c, f.clone()))),
        );
        if let Some(k) = keylog {
            a = a.with_keylog(KeyLog::parse(k));
        }
        for (i, f) in frames.iter().enumerate() {
            a.frame(LinkType::Ethernet, 1_700_000_000.0 + i as f64 * 0.001, f);
        }
        a.finish();
    }
    found
}

fn bodies(found: &[(ConnId, Finding)]) -> Vec<String> {
    found
        .iter()
        .filter_map(|(_, f)| match f {
            Finding::Message { body, .. } => Some(body.clone()),
            _ => None,
        })
        .collect()
}

fn undecrypted(found: &[(ConnId, Finding)]) -> Vec<String> {
    found
        .iter()
        .filter_map(|(_, f)| match f {
            Finding::Undecrypted { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// The suites our chat can negotiate: its certificates are ECDSA (rcgen),
/// so of TLS 1.2 only the ECDHE_ECDSA suites. The ECDHE_RSA ones protect
/// records exactly as their ECDSA twins do (the signature differs, not the
/// cipher), and they are decrypted by the same code.
fn our_suites() -> Vec<rustls::SupportedCipherSuite> {
    ring::default_provider()
        .cipher_suites
        .into_iter()
        .filter(|s| !format!("{:?}", s.suite()).contains("_RSA_"))
        .collect()
}

#[test]
fn every_suite_of_our_tls_opens_with_the_key_log_resumed_and_after_key_updates() {
    let suites = our_suites();
    assert_eq!(suites.len(), 6, "3 of TLS 1.3, 3 of TLS 1.2");
    for suite in suites {
        let s = session(suite);
        let name = format!("{:?}", suite.suite());
        // Without the key log: sizes, no plaintext.
        let blind = read(&s.capture.frames, None);
        assert!(bodies(&blind).is_empty(), "{name}");
        // With it: every message, both connections, no record left shut.
        let found = read(&s.capture.frames, Some(&s.keylog));
        let mut got = bodies(&found);
        let mut want = s.bodies.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{name}");
        assert!(
            undecrypted(&found).is_empty(),
            "{name}: {:?}",
            undecrypted(&found)
        );
        let keys = found
            .iter()
            .filter(|(_, f)| matches!(f, Finding::TlsKeys { .. }))
            .count();
        assert_eq!(keys, 2, "{name}");
        for (_, f) in &found {
            if let Finding::TlsTraffic {
                decrypted,
                undecrypted,
                ..
            } = f
            {
                assert!(*decrypted > 0 && *undecrypted == 0, "{name}: {f:?}");
            }
        }
    }
}

#[test]
fn no_key_wrong_key_and_a_changed_record_are_each_reported() {
    let suite = ring::default_provider().cipher_suites[0];
    let s = session(suite);
    // No key: a key log of some other session.
    let other = session(suite).keylog;
    let found = read(&s.capture.frames, Some(&other));
    let why = undecrypted(&found);
    assert!(
        !why.is_empty() && why.iter().all(|w| w.starts_with("no key for this session")),
        "{why:?}"
    );
    assert!(bodies(&found).is_empty());
    // Wrong key: every secret's first byte changed.
    let wrong: String = s
        .keylog
        .lines()
        .map(|l| {
            let mut parts: Vec<String> = l.split(' ').map(str::to_string).collect();
            let flipped = if parts[2].starts_with('0') { "1" } else { "0" };
            parts[2].replace_range(0..1, flipped);
            parts.join(" ") + "\n"
        })
        .collect();
    let found = read(&s.capture.frames, Some(&wrong));
    let why = undecrypted(&found);
    assert!(
        !why.is_empty() && why.iter().all(|w| w.starts_with("wrong key")),
        "{why:?}"
    );
    // A changed record: the last byte (in the tag) of a frame carrying one
    // message, after the handshake opened fine.
    let mut frames = s.capture.frames.clone();
    let target = bodies_frame(&s, &frames);
    let last = frames[target].len() - 1;
    frames[target][last] ^= 1;
    let found = read(&frames, Some(&s.keylog));
    let why = undecrypted(&found);
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(why[0].starts_with("bad tag"), "{why:?}");
    // The other connection and the rest of this one still open.
    assert!(
        bodies(&found).len() >= s.bodies.len() - 1,
        "{:?}",
        bodies(&found)
    );
}

/// A frame carrying exactly one message: the last one whose change loses
/// exactly one message when read with the key log.
fn bodies_frame(s: &Session, frames: &[Vec<u8>]) -> usize {
    for i in (0..frames.len()).rev() {
        let mut f = frames.to_vec();
        if f[i].len() < 80 {
            continue;
        }
        let last = f[i].len() - 1;
        f[i][last] ^= 1;
        let found = read(&f, Some(&s.keylog));
        if bodies(&found).len() == s.bodies.len() - 1 {
            return i;
        }
    }
    panic!("no frame carries a single message");
}

/// 0-RTT: a resumed TLS 1.3 client sends a message before the server has
/// answered, under the early-traffic secret. The key log holds that secret
/// too: the early message opens, and so does everything after it (the
/// early data must not use up the handshake keys' sequence numbers).
#[test]
fn zero_rtt_early_data_opens_and_the_rest_of_the_session_too() {
    let suite = our_suites()
        .into_iter()
        .find(|s| s.version() == &rustls::version::TLS13)
        .unwrap();
    let (server_config, client_config, log) = configs(suite);
    let mut server_config = Arc::try_unwrap(server_config).unwrap_or_else(|a| (*a).clone());
    server_config.max_early_data_size = 16384;
    let server_config = Arc::new(server_config);
    let mut client_config = Arc::try_unwrap(client_config).unwrap_or_else(|a| (*a).clone());
    client_config.enable_early_data = true;
    let client_config = Arc::new(client_config);
    let mut capture = Capture::default();
    let name = || ServerName::try_from("chat.lab").unwrap();
    // A first session, for the ticket.
    let mut t = capture.open(40011);
    let mut c = ClientConnection::new(client_config.clone(), name()).unwrap();
    let mut s = ServerConnection::new(server_config.clone()).unwrap();
    pump(&mut c, &mut s, &mut capture, &mut t);
    c.writer().write_all(HEADER.as_bytes()).unwrap();
    pump(&mut c, &mut s, &mut capture, &mut t);
    drain(&mut s.reader());
    // The second: early data first.
    let mut t = capture.open(40012);
    let mut c = ClientConnection::new(client_config, name()).unwrap();
    let early = format!("{HEADER}{}", message("bob@chat.lab", "sent-in-zero-rtt"));
    c.early_data()
        .expect("0-RTT offered")
        .write_all(early.as_bytes())
        .unwrap();
    let mut s = ServerConnection::new(server_config).unwrap();
    pump(&mut c, &mut s, &mut capture, &mut t);
    assert!(c.is_early_data_accepted(), "the server took the early data");
    c.writer()
        .write_all(message("bob@chat.lab", "after-the-handshake").as_bytes())
        .unwrap();
    pump(&mut c, &mut s, &mut capture, &mut t);
    let keylog = log.0.lock().unwrap().clone();
    assert!(keylog.contains("CLIENT_EARLY_TRAFFIC_SECRET"));
    let found = read(&capture.frames, Some(&keylog));
    let got = bodies(&found);
    assert!(got.contains(&"sent-in-zero-rtt".to_string()), "{got:?}");
    assert!(got.contains(&"after-the-handshake".to_string()), "{got:?}");
    assert!(undecrypted(&found).is_empty(), "{:?}", undecrypted(&found));
}

/// Live, a TLS 1.3 program writes its handshake secrets before its
/// traffic secrets: a session seen in between waits for the rest instead
/// of being given up on, and opens once the file has them.
#[test]
fn live_a_session_whose_secrets_arrive_a_few_at_a_time_still_opens() {
    let suite = our_suites()
        .into_iter()
        .find(|s| s.version() == &rustls::version::TLS13)
        .unwrap();
    let s = session(suite);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.log");
    let (handshake, traffic): (Vec<&str>, Vec<&str>) =
        s.keylog.lines().partition(|l| l.contains("HANDSHAKE"));
    std::fs::write(&path, handshake.join("\n") + "\n").unwrap();
    let mut found = Vec::new();
    {
        let mut a = Analyzer::new(
            Limits::default(),
            None,
            Box::new(|c, _, f: &Finding| found.push((c, f.clone()))),
        )
        .with_keylog(KeyLog::watch(&path).unwrap());
        for (i, f) in s.capture.frames.iter().enumerate() {
            a.frame(LinkType::Ethernet, 1_700_000_000.0 + i as f64 * 0.001, f);
        }
        // The traffic secrets, written late.
        let all = handshake.join("\n") + "\n" + &traffic.join("\n") + "\n";
        std::fs::write(&path, all).unwrap();
        a.finish();
    }
    let mut got = bodies(&found);
    let mut want = s.bodies.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert!(undecrypted(&found).is_empty(), "{:?}", undecrypted(&found));
}
