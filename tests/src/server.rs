//! Servers under test: ours (either twin) and Prosody, with their logs.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::{Input, Proc};

use crate::*;

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
    /// The HTTP file upload listener (`--upload-listen`).
    pub upload: Option<SocketAddr>,
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
    /// Whether this is Prosody (started by [`Server::prosody`]), not ours.
    pub fn is_prosody(&self) -> bool {
        self.restart.is_none()
    }

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
            upload: ports.upload,
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
                && self.upload.is_none_or(|u| TcpStream::connect(u).is_ok())
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
    /// and data folder: in-band registration on, no s2s, nothing listening
    /// beyond loopback. Its HTTP file upload (`mod_http_file_share` on
    /// `upload.localhost`) is served the twin's way: HTTPS with the lab
    /// certificates, or plain HTTP for `Plain`. For a TLS twin it gets lab certificates,
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
        let http: SocketAddr = format!("127.0.0.1:{}", prosody_free_port())
            .parse()
            .unwrap();
        let web = if twin.tls() {
            format!(
                "https_ports = {{ {p} }}\nhttp_ports = {{ }}\nhttps_interfaces = {{ \"127.0.0.1\" }}\nhttps_ssl = {{ certificate = \"{c}/server.pem\", key = \"{c}/server.key\" }}\nhttp_external_url = \"https://localhost:{p}/\"\n",
                p = http.port(),
                c = certs_dir.display()
            )
        } else {
            format!(
                "http_ports = {{ {p} }}\nhttps_ports = {{ }}\nhttp_interfaces = {{ \"127.0.0.1\" }}\nhttp_external_url = \"http://localhost:{p}/\"\n",
                p = http.port()
            )
        };
        let modules = if twin.tls() {
            r#""roster"; "saslauth"; "tls"; "disco"; "register"; "ping"; "presence"; "message"; "offline"; "version"; "posix"; "carbons"; "mam"; "pep"; "smacks""#
        } else {
            r#""roster"; "saslauth"; "disco"; "register"; "ping"; "presence"; "message"; "offline"; "version"; "posix"; "carbons"; "mam"; "pep"; "smacks""#
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
{web}
modules_enabled = {{ {modules} }}
modules_disabled = {{ "s2s" }}
allow_registration = true
authentication = "internal_hashed"
log = {{ {{ levels = {{ min = "info" }}, to = "console" }} }}
VirtualHost "localhost"
Component "upload.localhost" "http_file_share"
    http_host = "localhost"
    http_file_share_size_limit = 1000000
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
            upload: Some(http),
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
