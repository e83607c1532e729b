//! `mitm-proxy` as a process: in the path between a client and a server,
//! its JSON events read back once it is stopped.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use harness::{Input, Proc};
use serde_json::Value;

use crate::*;

/// A running proxy; killed on drop.
pub struct Proxy {
    proc: Proc,
    /// Where clients connect.
    pub addr: SocketAddr,
}

impl Proxy {
    /// Starts `mitm-proxy --json` in front of `upstream` with these
    /// `--attack`s, on a port the kernel picks.
    pub fn start(upstream: SocketAddr, attacks: &[&str]) -> Proxy {
        let args: Vec<&str> = attacks.iter().flat_map(|a| ["--attack", a]).collect();
        Proxy::start_with(upstream, &args)
    }

    /// Starts `mitm-proxy --json` in front of `upstream` with any other
    /// arguments (`--attack`, `--ca-dir`, `--write`, ...).
    pub fn start_with<S: AsRef<std::ffi::OsStr>>(upstream: SocketAddr, args: &[S]) -> Proxy {
        let mut cmd = Command::new(bin("mitm-proxy"));
        cmd.args(["--json", "--listen", "127.0.0.1:0", "--upstream"])
            .arg(upstream.to_string())
            .args(args);
        Proxy::spawn(cmd)
    }

    /// Starts a proxy from a full command line (it must print JSON and
    /// listen where it reports).
    pub fn spawn(cmd: Command) -> Proxy {
        let proc =
            Proc::spawn("mitm-proxy", cmd, Input::Null).unwrap_or_else(|e| panic!("{}", chain(&e)));
        let ports = harness::chat::wait_ready(&proc).unwrap_or_else(|e| panic!("{}", chain(&e)));
        Proxy {
            proc,
            addr: ports.listen,
        }
    }

    /// Stops the proxy as a person would (Ctrl-C) and returns every event
    /// it printed, summary lines included.
    pub fn stop(mut self) -> Vec<Value> {
        let (status, lines) = self
            .proc
            .interrupt(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{}\n{}", chain(&e), self.proc.transcript()));
        assert!(
            status.success(),
            "mitm-proxy: {status}\n{}",
            self.proc.transcript()
        );
        lines
            .iter()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{}", self.proc.transcript()))
            })
            .collect()
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        self.proc.stderr()
    }
}

/// The verdict line of `attack` for connection `conn`.
pub fn verdict<'a>(events: &'a [Value], conn: u64, attack: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["type"] == "verdict" && e["conn"] == conn && e["attack"] == attack)
        .unwrap_or_else(|| panic!("no {attack} verdict for #{conn} in {events:#?}"))
}
