//! The sniffer as a process: live capture on loopback while a test runs.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use harness::{Input, Proc};
use serde_json::Value;

use crate::*;

/// `sniffer live` on `lo` for one server's ports, saving a pcap; stopped
/// with SIGINT like a user's Ctrl-C.
pub struct Sniffer {
    proc: Proc,
    /// The capture it writes.
    pub pcap: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sniffer {
    /// Starts capturing the server's ports; returns once capture is on.
    /// Live capture needs root or CAP_NET_RAW (CI runs as root).
    pub fn start(server: &Server) -> Sniffer {
        let mut ports = vec![server.addr.port()];
        ports.extend(server.direct.map(|d| d.port()));
        Sniffer::on_ports(&ports)
    }

    /// Starts capturing these TCP ports on `lo` (a server this harness did
    /// not start: a lab's, say); returns once capture is on.
    pub fn on_ports(ports: &[u16]) -> Sniffer {
        let dir = tempfile::tempdir().unwrap();
        let pcap = dir.path().join("capture.pcap");
        let filter = ports
            .iter()
            .map(|p| format!("tcp port {p}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let mut cmd = Command::new(bin("sniffer"));
        cmd.args([
            "live",
            "--interface",
            "lo",
            "--json",
            "--filter",
            &filter,
            "--write",
        ])
        .arg(&pcap)
        .arg("--export")
        .arg(dir.path().join("export"));
        let proc = Proc::spawn("sniffer live", cmd, Input::Null)
            .unwrap_or_else(|e| panic!("{}", chain(&e)));
        if let Err(e) = proc.wait_stderr("capturing on", WAIT) {
            panic!("{e}\n(live capture needs root or CAP_NET_RAW)");
        }
        Sniffer {
            proc,
            pcap,
            _dir: dir,
        }
    }

    /// Where `--export` puts recovered files.
    pub fn export_dir(&self) -> PathBuf {
        self._dir.path().join("export")
    }

    /// Ctrl-C, then every JSON line it printed (findings and summary).
    pub fn stop(mut self) -> (Vec<Value>, Sniffer) {
        // Let the last packets through the capture before stopping.
        std::thread::sleep(Duration::from_millis(300));
        let (status, lines) = self
            .proc
            .interrupt(WAIT)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.proc.stderr()));
        assert!(
            status.success(),
            "sniffer exit {status}: {}",
            self.proc.stderr()
        );
        let lines = lines
            .iter()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("sniffer printed non-JSON ({e}): {l}"))
            })
            .collect();
        (lines, self)
    }
}
