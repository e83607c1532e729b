//! The real `sniffer` binary on captures built here, byte by byte: what it
//! prints when peers write hostile text, and how it refuses captures it
//! cannot decode. On failure each test prints the command, its exit code,
//! stdout and stderr.
// Helpers of a test crate: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use protocol::display::is_unsafe_char;
use sniffer::decode::build::{Flags, ethernet_tcp};

/// What a run of the binary gave back.
struct Run {
    what: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ran: {}\nexit: {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.what, self.code, self.stdout, self.stderr
        )
    }
}

fn sniffer(args: &[&str], file: &Path) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_sniffer"))
        .args(args)
        .arg(file)
        .output()
        .expect("the sniffer binary runs");
    Run {
        what: format!("sniffer {} {}", args.join(" "), file.display()),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A classic pcap file of `frames` with this link type.
fn write_pcap(path: &Path, linktype: u32, frames: &[Vec<u8>]) {
    let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&linktype.to_le_bytes());
    for (i, frame) in frames.iter().enumerate() {
        f.extend_from_slice(&(1_795_000_000 + i as u32).to_le_bytes());
        f.extend_from_slice(&[0; 4]);
        f.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        f.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        f.extend_from_slice(frame);
    }
    std::fs::write(path, f).unwrap();
}

/// One connection: a SYN, then the payloads alternating client, server.
fn exchange(to_server: &[&str], to_client: &[&str]) -> Vec<Vec<u8>> {
    let c: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let s: SocketAddr = "127.0.0.1:5222".parse().unwrap();
    let syn = Flags {
        syn: true,
        ..Default::default()
    };
    let mut frames = vec![ethernet_tcp(c, s, 99, syn, b"")];
    let (mut cs, mut ss) = (100u32, 500u32);
    for i in 0..to_server.len().max(to_client.len()) {
        if let Some(p) = to_server.get(i) {
            frames.push(ethernet_tcp(c, s, cs, Flags::default(), p.as_bytes()));
            cs += p.len() as u32;
        }
        if let Some(p) = to_client.get(i) {
            frames.push(ethernet_tcp(s, c, ss, Flags::default(), p.as_bytes()));
            ss += p.len() as u32;
        }
    }
    frames
}

const HDR: &str = "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

/// Hostile text as it travels in XML: escape sequences as character
/// references (clear screen, OSC 52 clipboard write, window title, BEL,
/// backspace), a C1 CSI, a bidi override, and a line break followed by a
/// forged finding and a forged `follow` banner.
const EVIL_XML: &str = "hi &#x1b;[2J&#x1b;]52;c;cGF5&#x7;&#x1b;]0;pwned&#x7;&#x8;\u{9b}\u{202e}txt.exe&#xd;\n#0 CREDENTIAL sasl-plain user=admin password=forged\n===== server -> client (from byte 0) =====";

/// A capture in which every kind of peer text carries [`EVIL_XML`].
fn hostile_capture(dir: &Path) -> PathBuf {
    let e = EVIL_XML;
    let shdr = format!(
        "<?xml version='1.0'?><stream:stream from='{e}' id='1' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    );
    let to_server = [
        HDR.to_string(),
        format!("<message to='bob@localhost' type='chat'><body>{e}</body></message>"),
        format!("<presence><show>{e}</show><status>{e}</status></presence>"),
        format!(
            "<iq type='set' id='f'><si xmlns='http://jabber.org/protocol/si' id='s1'><file xmlns='http://jabber.org/protocol/si/profile/file-transfer' name='{e}' size='2'/></si></iq><iq type='set' id='d'><data xmlns='http://jabber.org/protocol/ibb' sid='s1' seq='0'>aGk=</data></iq><iq type='set' id='c'><close xmlns='http://jabber.org/protocol/ibb' sid='s1'/></iq>"
        ),
    ];
    let to_client = [
        shdr,
        format!(
            "<iq type='result' id='r'><query xmlns='jabber:iq:roster'><item jid='{e}' name='{e}' subscription='both'/></query></iq>"
        ),
        format!("<message from='{e}' type='chat'><body>{e}</body></message>"),
    ];
    let s: Vec<&str> = to_server.iter().map(String::as_str).collect();
    let c: Vec<&str> = to_client.iter().map(String::as_str).collect();
    let path = dir.join("hostile.pcap");
    write_pcap(&path, 1, &exchange(&s, &c));
    path
}

/// The first character of `text` a terminal would obey, other than the
/// line feeds that end lines.
fn first_unsafe(text: &str) -> Option<(usize, char)> {
    text.char_indices()
        .find(|&(_, c)| c != '\n' && is_unsafe_char(c))
}

#[test]
fn text_output_escapes_what_peers_wrote_and_json_keeps_it_exact() {
    let d = tempfile::tempdir().unwrap();
    let cap = hostile_capture(d.path());

    let r = sniffer(&["read"], &cap);
    assert_eq!(r.code, Some(0), "{r}");
    assert_eq!(first_unsafe(&r.stdout), None, "{r}");
    for line in r.stdout.lines() {
        assert!(!line.starts_with("#0 CREDENTIAL"), "forged line: {r}");
    }
    for seen in [
        "MESSAGE chat",
        "presence",
        "contact",
        "FILE",
        "\\u{1b}]52;c;cGF5\\u{7}",
        "\\u{202e}txt.exe\\r\\n#0 CREDENTIAL",
    ] {
        assert!(r.stdout.contains(seen), "{seen:?} missing: {r}");
    }

    // The same capture as JSON: every string exactly as sent.
    let j = sniffer(&["read", "--json"], &cap);
    assert_eq!(j.code, Some(0), "{j}");
    let exact = "hi \u{1b}[2J\u{1b}]52;c;cGF5\u{7}\u{1b}]0;pwned\u{7}\u{8}\u{9b}\u{202e}txt.exe\r\n#0 CREDENTIAL sasl-plain user=admin password=forged\n===== server -> client (from byte 0) =====";
    let bodies: Vec<serde_json::Value> = j
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{j}")))
        .filter(|v: &serde_json::Value| v["type"] == "message")
        .collect();
    assert_eq!(bodies.len(), 2, "{j}");
    for b in &bodies {
        assert_eq!(b["body"], exact, "{j}");
    }

    // The leak guard's context around a hit is printable too.
    let g = sniffer(&["guard", "--needle", "cGF5", "--pcap"], &cap);
    assert_eq!(g.code, Some(1), "{g}");
    assert_eq!(first_unsafe(&g.stdout), None, "{g}");
}

#[test]
fn follow_escapes_the_stream_and_its_banners_cannot_be_forged() {
    let d = tempfile::tempdir().unwrap();
    let cap = hostile_capture(d.path());
    let r = sniffer(&["follow", "--stream", "0"], &cap);
    assert_eq!(r.code, Some(0), "{r}");
    assert_eq!(first_unsafe(&r.stdout), None, "{r}");
    // One banner per change of direction: 4 client runs and 3 server runs,
    // interleaved, make 7; the peer's forged banners are inside data lines.
    let banners = r.stdout.lines().filter(|l| l.starts_with("=====")).count();
    assert_eq!(banners, 7, "{r}");
    assert!(
        r.stdout
            .contains("< ===== server -> client (from byte 0) ====="),
        "{r}"
    );
    for line in r.stdout.lines() {
        assert!(
            line.starts_with("=====") || line.starts_with("> ") || line.starts_with("< "),
            "{line:?}: {r}"
        );
    }
}

#[test]
fn a_capture_of_an_unsupported_link_type_is_refused_in_one_line() {
    let d = tempfile::tempdir().unwrap();
    let frames = exchange(&[HDR], &[]);
    for (linktype, name) in [(147, "USER0"), (105, "802.11")] {
        let cap = d.path().join(format!("lt{linktype}.pcap"));
        write_pcap(&cap, linktype, &frames);
        for args in [&["read"][..], &["follow", "--stream", "0"]] {
            let r = sniffer(args, &cap);
            assert_eq!(r.code, Some(2), "{r}");
            assert_eq!(r.stderr.lines().count(), 1, "{r}");
            assert!(
                r.stderr.contains(&format!("link type {linktype} ("))
                    && r.stderr.contains(name)
                    && r.stderr.contains("Ethernet (1)"),
                "{r}"
            );
            assert!(!r.stdout.contains("malformed"), "{r}");
        }
    }
}

#[test]
fn a_file_that_is_not_a_capture_is_named_as_such() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("notes.txt");
    std::fs::write(&f, "these are lecture notes, not packets\n").unwrap();
    let r = sniffer(&["read"], &f);
    assert_eq!(r.code, Some(2), "{r}");
    assert!(r.stderr.contains("not a pcap or pcapng file"), "{r}");
    assert!(!r.stderr.contains("libpcap"), "{r}");
}
