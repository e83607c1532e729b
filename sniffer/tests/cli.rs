//! The real `sniffer` binary on captures built here, byte by byte: how it
//! refuses captures it cannot decode. On failure each test prints the command, its exit code,
//! stdout and stderr.
// Helpers of a test crate: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

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
