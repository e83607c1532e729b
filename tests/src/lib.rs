//! Harness for end-to-end tests: starts the real binaries on loopback, talks
//! to them over pipes and raw sockets, and on failure prints what it ran and
//! everything that came back.
//!
//! The processes themselves are run by the `harness` crate, shared with
//! `labs`: each in its own process group, killed on drop. [`bin`] builds the
//! binaries on first use (`cargo build --workspace --bins`, once per test
//! process), so a test always runs the code as it is now. Our servers bind
//! port 0 and say which port they got ([`harness::chat`]); only Prosody, which
//! cannot, still gets a port found free beforehand.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::{Input, Proc};

use serde_json::Value;

/// The default wait for something that should happen.
pub const WAIT: Duration = Duration::from_secs(15);

/// Which twin, and which way in: every end-to-end test that is about the
/// chat (not about one transport) runs once per variant, through
/// [`twin_tests!`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Twin {
    /// `chat-plain`: no TLS at all.
    Plain,
    /// `chat-tls` on the STARTTLS port (required).
    StartTls,
    /// `chat-tls` on its direct TLS port.
    DirectTls,
}

impl Twin {
    /// The binary.
    pub fn bin(self) -> &'static str {
        match self {
            Twin::Plain => "chat-plain",
            Twin::StartTls | Twin::DirectTls => "chat-tls",
        }
    }

    /// Whether the twin speaks TLS.
    pub fn tls(self) -> bool {
        self != Twin::Plain
    }
}

/// Instantiates scenario functions `fn name(twin: Twin)` as one test per
/// [`Twin`]: `name::plain`, `name::starttls`, `name::direct_tls`. The same
/// test body for every transport, never a copy.
#[macro_export]
macro_rules! twin_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn plain() {
                    super::$name($crate::Twin::Plain)
                }
                #[test]
                fn starttls() {
                    super::$name($crate::Twin::StartTls)
                }
                #[test]
                fn direct_tls() {
                    super::$name($crate::Twin::DirectTls)
                }
            }
        )*
    };
}

/// Runs `chat-tls certs` into `dir` (a lab CA and a server certificate),
/// with extra flags such as `--domain` or `--expired`; returns the server
/// key's pin (`sha256:...`).
pub fn make_certs(dir: &Path, extra: &[&str]) -> String {
    harness::chat::make_certs(&bin("chat-tls"), dir, extra)
        .unwrap_or_else(|e| panic!("{}", chain(&e)))
}

/// Path of a workspace binary, as built for this test process: the first
/// call runs `cargo build --workspace --bins` (see [`harness::bins`]), so a
/// test never runs a binary older than the code.
pub fn bin(name: &str) -> PathBuf {
    harness::bins::cargo_built(name).unwrap_or_else(|e| panic!("{}", chain(&e)))
}

/// A harness error with its causes, for a panic message.
pub fn chain(e: &harness::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// True for a `presence` event from a resource of the bare JID `bare`.
pub fn presence_from(v: &Value, bare: &str) -> bool {
    v["type"] == "presence"
        && v["from"]
            .as_str()
            .is_some_and(|f| f.strip_prefix(bare).is_some_and(|r| r.starts_with('/')))
}

/// A third-party program the tests run, which `scripts/setup.sh --interop`
/// installs: `prosody`, `tshark`, or `slixmpp` (the Python of the venv that
/// holds it). A missing tool fails the test with the
/// command that installs it; `CHAT_SKIP_INTEROP=1` skips instead (and says
/// so), for machines that cannot install packages.
pub fn interop_tool(name: &str) -> Option<PathBuf> {
    let path = match name {
        "prosody" => ["/usr/bin/prosody", "/usr/local/bin/prosody"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists()),
        "slixmpp" => {
            let venv = workspace_root().join("target/interop-venv/bin/python");
            venv.exists().then_some(venv)
        }
        "tshark" => ["/usr/bin/tshark", "/usr/local/bin/tshark"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists()),
        other => panic!("unknown interop tool {other}"),
    };
    if path.is_none() {
        if std::env::var("CHAT_SKIP_INTEROP").as_deref() == Ok("1") {
            eprintln!("SKIPPED: {name} is not installed and CHAT_SKIP_INTEROP=1");
            return None;
        }
        panic!(
            "{name} is not installed: run `scripts/setup.sh --interop` (as root for Debian packages), \
             or set CHAT_SKIP_INTEROP=1 to skip the interoperability tests"
        );
    }
    path
}

/// The workspace root (the tests crate's parent folder).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Runs one of the workspace's binaries with `args` to the end: exit code,
/// stdout, stderr.
pub fn run_bin(name: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin(name)).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A free loopback port, bound then released. Only for Prosody, which
/// cannot report the port it bound: between the release and Prosody's bind
/// another process may take the port (the race our own servers avoid by
/// binding port 0 and reporting it, see [`harness::chat`]).
fn prosody_free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running server, killed (with its process group) on drop. Failures
/// print its log.
pub struct Server {
    /// The plaintext or STARTTLS port.
    pub addr: SocketAddr,
    /// The direct TLS port (TLS twins).
    pub direct: Option<SocketAddr>,
    /// How clients connect.
    pub twin: Twin,
    /// The lab CA and server certificate (TLS twins): `ca.pem`, ...
    pub certs: Option<PathBuf>,
    /// The server key's pin, `sha256:...` (TLS twins).
    pub pin: Option<String>,
    pub data: PathBuf,
    proc: Proc,
    /// The log of the runs before a [`Server::kill9_and_restart`].
    earlier_log: String,
    _dir: Option<tempfile::TempDir>,
    /// Our server's flags, to restart it; `None` for Prosody.
    restart: Option<Vec<String>>,
}

impl Server {
    /// Starts the twin's server on ports the system picks, with a fresh data
    /// folder (and, for TLS, fresh lab certificates and a direct TLS port).
    pub fn start(twin: Twin, extra: &[&str]) -> Server {
        Self::start_custom(twin, "localhost", &[], extra)
    }

    /// [`Server::start`] for another XMPP `domain`, with `cert_flags` for
    /// `chat-tls certs` (`--expired`, `--domain ...`).
    pub fn start_custom(twin: Twin, domain: &str, cert_flags: &[&str], extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut flags: Vec<String> = vec!["--domain".into(), domain.into()];
        flags.extend(extra.iter().map(|s| s.to_string()));
        let mut certs = None;
        let mut pin = None;
        if twin.tls() {
            let c = dir.path().join("certs");
            pin = Some(make_certs(&c, cert_flags));
            flags.extend([
                "--cert".to_string(),
                c.join("server.pem").display().to_string(),
                "--key".to_string(),
                c.join("server.key").display().to_string(),
                "--direct-tls".to_string(),
                "127.0.0.1:0".to_string(),
            ]);
            certs = Some(c);
        }
        let mut s = Self::spawn(twin, &data, certs, flags);
        s.pin = pin;
        s._dir = Some(dir);
        s
    }

    /// A plaintext server on a data folder the test made (a small tmpfs,
    /// say), with `extra` flags.
    pub fn start_plain_in(data: &Path, extra: &[&str]) -> Server {
        let mut flags: Vec<String> = vec!["--domain".into(), "localhost".into()];
        flags.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn(Twin::Plain, data, None, flags)
    }

    /// Starts our server on `127.0.0.1:0` and waits for the readiness line
    /// that says which ports it got.
    fn spawn(twin: Twin, data: &Path, certs: Option<PathBuf>, flags: Vec<String>) -> Server {
        let mut cmd = Command::new(bin(twin.bin()));
        cmd.args(["server", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(&flags);
        let proc = Proc::spawn(&format!("{} server", twin.bin()), cmd, Input::Null)
            .unwrap_or_else(|e| panic!("{}", chain(&e)));
        let ports = harness::chat::wait_ready(&proc).unwrap_or_else(|e| panic!("{}", chain(&e)));
        assert_eq!(
            ports.direct_tls.is_some(),
            twin.tls(),
            "a direct TLS port exactly for the TLS twin: {ports:?}"
        );
        Server {
            addr: ports.listen,
            direct: ports.direct_tls,
            twin,
            certs,
            pin: None,
            data: data.to_path_buf(),
            proc,
            earlier_log: String::new(),
            _dir: None,
            restart: Some(flags),
        }
    }

    /// The flags a client needs to reach this server the twin's way:
    /// `--server ADDR` plus, for TLS, `--ca` and `--direct-tls`.
    pub fn client_flags(&self) -> Vec<String> {
        let ca = || {
            self.certs
                .as_ref()
                .map(|c| c.join("ca.pem").display().to_string())
        };
        match self.twin {
            Twin::Plain => vec!["--server".into(), self.addr.to_string()],
            Twin::StartTls => vec![
                "--server".into(),
                self.addr.to_string(),
                "--ca".into(),
                ca().expect("certs"),
            ],
            Twin::DirectTls => vec![
                "--server".into(),
                self.direct.expect("a direct TLS port").to_string(),
                "--direct-tls".into(),
                "--ca".into(),
                ca().expect("certs"),
            ],
        }
    }

    /// Prosody's readiness: its ports accept connections.
    fn wait_listening(&self) {
        let t0 = Instant::now();
        while t0.elapsed() < WAIT {
            if TcpStream::connect(self.addr).is_ok()
                && self.direct.is_none_or(|d| TcpStream::connect(d).is_ok())
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "server did not start on {}\n--- server log ---\n{}",
            self.addr,
            self.log()
        );
    }

    /// Prosody, the reference XMPP server (Debian's package), on free
    /// loopback ports for the domain `localhost`, with a throw-away config
    /// and data folder: in-band registration on, no s2s, no HTTP, nothing
    /// listening beyond loopback. For a TLS twin it gets lab certificates,
    /// requires STARTTLS and serves direct TLS too; for `Plain` it allows
    /// plaintext, as our plaintext twin does.
    pub fn prosody(prosody: &Path, twin: Twin) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let certs_dir = dir.path().join("certs");
        // The documented exception to "servers report their ports":
        // Prosody cannot, so it gets ports found free a moment before.
        let addr: SocketAddr = format!("127.0.0.1:{}", prosody_free_port())
            .parse()
            .unwrap();
        let (direct, certs, tls) = if twin.tls() {
            make_certs(&certs_dir, &[]);
            let d: SocketAddr = format!("127.0.0.1:{}", prosody_free_port())
                .parse()
                .unwrap();
            let tls = format!(
                r#"c2s_direct_tls_ports = {{ {dport} }}
c2s_require_encryption = true
allow_unencrypted_plain_auth = false
ssl = {{ certificate = "{c}/server.pem", key = "{c}/server.key" }}
"#,
                dport = d.port(),
                c = certs_dir.display()
            );
            (Some(d), Some(certs_dir.clone()), tls)
        } else {
            std::fs::create_dir_all(&certs_dir).unwrap();
            (
                None,
                None,
                "c2s_direct_tls_ports = { }\nc2s_require_encryption = false\nallow_unencrypted_plain_auth = true\n"
                    .to_string(),
            )
        };
        let modules = if twin.tls() {
            r#""roster"; "saslauth"; "tls"; "disco"; "register"; "ping"; "presence"; "message"; "offline"; "version"; "posix""#
        } else {
            r#""roster"; "saslauth"; "disco"; "register"; "ping"; "presence"; "message"; "offline"; "version"; "posix""#
        };
        let config = dir.path().join("prosody.cfg.lua");
        std::fs::write(
            &config,
            format!(
                r#"-- written by the interoperability tests
run_as_root = true
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
certificates = "{dir}/certs"
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
legacy_ssl_ports = {{ }}
s2s_ports = {{ }}
{tls}
modules_enabled = {{ {modules} }}
modules_disabled = {{ "s2s"; "http" }}
allow_registration = true
authentication = "internal_hashed"
log = {{ {{ levels = {{ min = "info" }}, to = "console" }} }}
VirtualHost "localhost"
"#,
                dir = dir.path().display(),
                port = addr.port(),
            ),
        )
        .unwrap();
        let mut cmd = Command::new(prosody);
        cmd.arg("-F").arg("--config").arg(&config);
        let proc =
            Proc::spawn("prosody", cmd, Input::Null).unwrap_or_else(|e| panic!("{}", chain(&e)));
        let s = Server {
            addr,
            direct,
            twin,
            certs,
            pin: None,
            data,
            proc,
            earlier_log: String::new(),
            _dir: Some(dir),
            restart: None,
        };
        s.wait_listening();
        s
    }

    /// The server's log so far (stderr, then stdout), every run.
    pub fn log(&self) -> String {
        format!(
            "{}{}{}",
            self.earlier_log,
            self.proc.stderr(),
            self.proc.output().join("\n")
        )
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The server's resident memory now and at its peak, in KiB (VmRSS and
    /// VmHWM from /proc).
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// `kill -9`, then start again on the same data folder and certificates
    /// (on new ports, which [`Server::addr`] and the client flags follow).
    pub fn kill9_and_restart(mut self) -> Server {
        let flags = self.restart.take().expect("only our servers restart");
        self.proc.kill();
        let mut s = Self::spawn(self.twin, &self.data, self.certs.clone(), flags);
        s.earlier_log = self.log();
        s._dir = self._dir.take();
        s.pin = self.pin.take();
        s
    }
}

/// The twin's `client --json` command for `jid`, connected the twin's way.
fn client_command(server: &Server, jid: &str, password: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(bin(server.twin.bin()));
    cmd.args(["client", "--json", "--jid", jid])
        .args(server.client_flags())
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

/// A raw TCP connection for sending hostile bytes.
pub struct Raw {
    pub stream: TcpStream,
}

/// A client stream header for `domain`.
pub fn header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    )
}

impl Raw {
    pub fn connect(server: &Server) -> Raw {
        let stream = TcpStream::connect(server.addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Raw { stream }
    }

    /// Writes bytes; a reset by the server part-way is not an error here.
    pub fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Whether the server has closed (or reset) the connection, without
    /// consuming anything or waiting: a peek that finds the end of stream.
    pub fn is_closed(&self) -> bool {
        self.stream.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let closed = match self.stream.peek(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        };
        self.stream.set_nonblocking(false).unwrap();
        closed
    }

    /// Reads until the server closes the connection (or `WAIT` passes).
    pub fn read_to_close(&mut self) -> String {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        let t0 = Instant::now();
        while t0.elapsed() < WAIT {
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(_) => break,
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    }
}

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

/// A hand-driven XMPP client over a raw socket (plaintext twin): signs in
/// with PLAIN, binds, and then sends and reads exactly what a test says, so
/// a test can be the hostile or broken peer a real client never is (one
/// that never reads, floods, or guesses passwords).
pub struct XmppRaw {
    pub stream: TcpStream,
    parser: protocol::StreamParser,
    /// The bound full JID, once bound.
    pub jid: String,
    /// The stream features the server sent last.
    pub features: Option<protocol::Element>,
}

/// What a raw read returned.
#[derive(Debug)]
pub enum RawEvent {
    /// A top-level element.
    Element(protocol::Element),
    /// The server closed the stream or the connection.
    Closed,
    /// Nothing within the wait.
    Timeout,
}

impl XmppRaw {
    /// Connects from the default source address.
    pub fn connect(server: &Server) -> XmppRaw {
        Self::connect_from(server, None)
    }

    /// Connects from a chosen loopback source address (`127.0.0.2`).
    pub fn connect_from(server: &Server, source: Option<std::net::IpAddr>) -> XmppRaw {
        assert_eq!(server.twin, Twin::Plain, "XmppRaw speaks plaintext only");
        let stream = match source {
            None => TcpStream::connect(server.addr).unwrap(),
            Some(ip) => {
                let s = socket2::Socket::new(
                    socket2::Domain::IPV4,
                    socket2::Type::STREAM,
                    Some(socket2::Protocol::TCP),
                )
                .unwrap();
                s.bind(&SocketAddr::new(ip, 0).into()).unwrap();
                s.connect(&server.addr.into()).unwrap();
                s.into()
            }
        };
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut raw = XmppRaw {
            stream,
            parser: protocol::StreamParser::new(protocol::Mode::Strict),
            jid: String::new(),
            features: None,
        };
        raw.open();
        raw
    }

    /// Sends a stream header and reads the server's header and features.
    fn open(&mut self) {
        self.parser.reset();
        self.send(&header("localhost"));
        loop {
            match self.next_event(WAIT) {
                Some(protocol::Event::StreamOpen(_)) => {}
                Some(protocol::Event::Element(e)) if e.name == "features" => {
                    self.features = Some(e);
                    return;
                }
                other => panic!("expected stream features, got {other:?}"),
            }
        }
    }

    /// Registers an account (XEP-0077) on a fresh connection; returns the
    /// server's answer (`result` or `error`).
    pub fn register(server: &Server, user: &str, password: &str) -> protocol::Element {
        let mut raw = Self::connect(server);
        raw.send(&format!(
            "<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>{user}</username><password>{password}</password></query></iq>"
        ));
        let answer = raw.expect("registration answer", |e| e.name == "iq");
        raw.send("</stream:stream>");
        answer
    }

    /// Tries SASL PLAIN; returns the `<success/>` or `<failure/>`, or
    /// `None` when the server closed the connection instead.
    pub fn auth_plain(&mut self, user: &str, password: &str) -> Option<protocol::Element> {
        use base64::Engine;
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        ));
        match self.read(WAIT) {
            RawEvent::Element(e) => Some(e),
            _ => None,
        }
    }

    /// Signs in (SASL PLAIN and the stream restart), without binding.
    pub fn login_unbound(server: &Server, user: &str, password: &str) -> XmppRaw {
        Self::login_unbound_from(server, None, user, password)
    }

    /// [`XmppRaw::login_unbound`] from a chosen source address.
    pub fn login_unbound_from(
        server: &Server,
        source: Option<std::net::IpAddr>,
        user: &str,
        password: &str,
    ) -> XmppRaw {
        let mut raw = Self::connect_from(server, source);
        let answer = raw.auth_plain(user, password);
        assert!(
            answer.as_ref().is_some_and(|e| e.name == "success"),
            "sign-in failed: {answer:?}"
        );
        raw.open();
        raw
    }

    /// Signs in and binds `resource`; panics with the answer on failure.
    pub fn login(server: &Server, user: &str, password: &str, resource: &str) -> XmppRaw {
        let mut raw = Self::login_unbound(server, user, password);
        let bound = raw.bind(resource);
        assert_eq!(
            bound.get_attr("type"),
            Some("result"),
            "bind failed: {}",
            bound.to_xml()
        );
        raw
    }

    /// Sends a bind request; returns the answer (and keeps the JID on
    /// success).
    pub fn bind(&mut self, resource: &str) -> protocol::Element {
        self.send(&format!(
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"
        ));
        let answer = self.expect("bind answer", |e| e.get_attr("id") == Some("bind"));
        if let Some(jid) = answer
            .elements()
            .next()
            .and_then(|b| b.child_text("jid", protocol::ns::BIND))
        {
            self.jid = jid;
        }
        answer
    }

    /// Joins (or creates) `room` on `conference.localhost` as `nick` and
    /// reads up to the subject message, which ends a join (XEP-0045 7.2).
    pub fn join_room(&mut self, room: &str, nick: &str) {
        self.send(&format!(
            "<presence to='{room}@conference.localhost/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        ));
        self.expect("the subject that ends the join", |e| {
            e.name == "message" && e.to_xml().contains("<subject")
        });
    }

    /// Writes text; a reset by the server part-way is not an error here.
    pub fn send(&mut self, xml: &str) {
        let _ = self.stream.write_all(xml.as_bytes());
    }

    fn next_event(&mut self, wait: Duration) -> Option<protocol::Event> {
        let t0 = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.parser.next_event() {
                Ok(Some(p)) => return Some(p.event),
                Ok(None) => {}
                Err(e) => panic!("the server sent malformed XML: {e}"),
            }
            let left = wait.checked_sub(t0.elapsed())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.parser.feed(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    /// The next top-level element, within `wait`.
    pub fn read(&mut self, wait: Duration) -> RawEvent {
        let t0 = Instant::now();
        loop {
            let left = wait.saturating_sub(t0.elapsed());
            match self.next_event(left) {
                Some(protocol::Event::Element(e)) => return RawEvent::Element(e),
                Some(protocol::Event::StreamClose) => return RawEvent::Closed,
                Some(protocol::Event::StreamOpen(_)) => {}
                None if t0.elapsed() >= wait => return RawEvent::Timeout,
                None => return RawEvent::Closed,
            }
        }
    }

    /// Reads until an element matches; panics with what came instead.
    pub fn expect(
        &mut self,
        what: &str,
        pred: impl Fn(&protocol::Element) -> bool,
    ) -> protocol::Element {
        let mut seen = Vec::new();
        let t0 = Instant::now();
        while t0.elapsed() < WAIT {
            match self.read(WAIT.saturating_sub(t0.elapsed())) {
                RawEvent::Element(e) if pred(&e) => return e,
                RawEvent::Element(e) => seen.push(e.to_xml()),
                other => {
                    seen.push(format!("{other:?}"));
                    break;
                }
            }
        }
        panic!("expected {what}; got:\n{}", seen.join("\n"));
    }

    /// Everything until the server closes the stream: the elements, in
    /// order (a stream error is an element named `error`).
    pub fn read_to_close(&mut self) -> Vec<protocol::Element> {
        let mut out = Vec::new();
        let t0 = Instant::now();
        while t0.elapsed() < WAIT {
            match self.read(WAIT.saturating_sub(t0.elapsed())) {
                RawEvent::Element(e) => out.push(e),
                _ => break,
            }
        }
        out
    }
}
