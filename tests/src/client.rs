//! Our line client as a process: driven through stdin, read as JSON lines.

use std::process::Command;
use std::time::{Duration, Instant};

use harness::{Input, Proc};
use serde_json::Value;

use crate::*;

/// The twin's `client --json` command for `jid`, connected the twin's way.
pub fn client_command(server: &Server, jid: &str, password: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(bin(server.twin.bin()));
    cmd.args(["client", "--json", "--jid", jid])
        .args(server.client_flags())
        .args(extra)
        .env("CHAT_PASSWORD", password);
    cmd
}

/// The same command, connected to `addr` (a proxy in the path) instead of
/// the server itself; everything else (the CA, direct TLS) as the twin's.
fn client_command_via(
    server: &Server,
    addr: std::net::SocketAddr,
    jid: &str,
    password: &str,
    extra: &[&str],
) -> Command {
    let mut flags = server.client_flags();
    if let Some(i) = flags.iter().position(|f| f == "--server") {
        flags[i + 1] = addr.to_string();
    }
    let mut cmd = Command::new(bin(server.twin.bin()));
    cmd.args(["client", "--json", "--jid", jid])
        .args(flags)
        .args(extra)
        .env("CHAT_PASSWORD", password);
    cmd
}

/// A client process driven through stdin, reading its JSON lines; killed
/// on drop.
pub struct Client {
    pub name: String,
    proc: Proc,
}

impl Client {
    /// Starts the server's twin's `client --json` for `jid` with
    /// `password`, connected the twin's way.
    pub fn start(server: &Server, jid: &str, password: &str, extra: &[&str]) -> Client {
        Client::spawn(jid, client_command(server, jid, password, extra))
    }

    /// Makes `self` and `other` contacts both ways, as users would (each
    /// `/add`s the other), and waits until `self` sees `other` online.
    pub fn befriend(&mut self, other: &mut Client) {
        let bare = |name: &str| name.split('/').next().unwrap_or(name).to_string();
        let (me, them) = (bare(&self.name), bare(&other.name));
        self.send(&format!("/add {them}"));
        other.expect_event("subscribe", "from", &me);
        other.send(&format!("/add {me}"));
        self.expect(&format!("{them} online"), |v| {
            crate::presence_from(v, &them) && v["available"] == true
        });
    }

    /// Like [`Client::start`], but connected through `addr` (a proxy).
    pub fn start_via(
        server: &Server,
        addr: std::net::SocketAddr,
        jid: &str,
        password: &str,
        extra: &[&str],
    ) -> Client {
        Client::spawn(jid, client_command_via(server, addr, jid, password, extra))
    }

    /// Runs any program that speaks the same JSON lines (the third-party
    /// peers of the interoperability tests do).
    pub fn spawn(name: &str, command: Command) -> Client {
        let shown = format!("{command:?}");
        let proc = Proc::spawn(name, command, Input::Piped)
            .unwrap_or_else(|e| panic!("{} ({shown})", chain(&e)));
        Client {
            name: name.to_string(),
            proc,
        }
    }

    /// Sends one command line.
    pub fn send(&mut self, line: &str) {
        if let Err(e) = self.proc.send_line(line) {
            panic!(
                "{}: cannot send {line}: {e}\n{}",
                self.name,
                self.transcript()
            );
        }
    }

    /// What went in and came out, for failure messages.
    pub fn transcript(&self) -> String {
        self.proc.transcript()
    }

    /// The next output line within what is left until `deadline`; panics
    /// with the transcript, naming `what` it waited for, when the time is
    /// up or the program ended.
    fn next_line(&mut self, what: &str, deadline: Instant) -> String {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.proc.line(left) {
            Ok(Some(line)) => line,
            Ok(None) => {
                // Let its last words reach the transcript.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "{}: exited while waiting for {what}\n{}",
                    self.name,
                    self.transcript()
                )
            }
            Err(_) => panic!(
                "{}: timed out waiting for {what}\n{}",
                self.name,
                self.transcript()
            ),
        }
    }

    /// Reads JSON lines until one satisfies `pred`; panics with the
    /// transcript after `WAIT`.
    pub fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let line = self.next_line(what, deadline);
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{}", self.transcript()));
            if pred(&v) {
                return v;
            }
        }
    }

    /// Reads output lines (text mode or JSON alike) until one satisfies
    /// `pred`; panics with the transcript after `WAIT`.
    pub fn expect_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let line = self.next_line(what, deadline);
            if pred(&line) {
                return line;
            }
        }
    }

    /// The output lines seen so far, commands excluded.
    pub fn output(&self) -> Vec<String> {
        self.proc.output()
    }

    /// The process id, to read its memory from `/proc`.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Waits for an event of `kind` whose `field` equals `value`.
    pub fn expect_event(&mut self, kind: &str, field: &str, value: &str) -> Value {
        self.expect(&format!("{kind} with {field}={value}"), |v| {
            v["type"] == kind
                && v[field]
                    .as_str()
                    .is_some_and(|s| s == value || s.starts_with(&format!("{value}/")))
        })
    }

    /// Closes stdin and waits for the exit code (bounded).
    pub fn finish(mut self) -> (i32, String) {
        self.proc.close_stdin();
        match self.proc.wait_exit(WAIT) {
            Ok((status, _)) => (status.code().unwrap_or(-1), self.transcript()),
            Err(e) => panic!(
                "{} did not exit after stdin closed ({e})\n{}",
                self.name,
                self.transcript()
            ),
        }
    }
}

/// How long a scripted client may run: its script's own `/wait`s are
/// bounded, so this only catches a hang.
const SCRIPT_LIMIT: Duration = Duration::from_secs(120);

/// Runs a client with a fixed script and no interaction; returns exit code,
/// stdout and stderr.
pub fn run_client(
    server: &Server,
    jid: &str,
    password: &str,
    extra: &[&str],
    script: &str,
) -> (i32, String, String) {
    let cmd = client_command(server, jid, password, extra);
    let mut proc = Proc::spawn(jid, cmd, Input::Text(script.into()))
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    let (status, lines) = proc
        .wait_exit(SCRIPT_LIMIT)
        .unwrap_or_else(|e| panic!("{e}\n{}", proc.transcript()));
    let stdout: String = lines.iter().map(|l| format!("{l}\n")).collect();
    (status.code().unwrap_or(-1), stdout, proc.stderr())
}
