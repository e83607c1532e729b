//! The chat side of labs and the demo: a `chat-plain` or `chat-tls` server
//! on loopback, and scripted users driven through the real client binary.
//! The processes themselves are run by the `harness` crate (shared with the
//! end-to-end tests): each in its own process group, stopped when its handle
//! drops, whatever happens (error, Ctrl-C), so nothing is left running
//! behind a class.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use harness::{Input, Proc};

/// One of the toolkit's binaries, next to this one.
pub fn bin(name: &str) -> anyhow::Result<PathBuf> {
    Ok(harness::bins::beside_current_exe(name)?)
}

/// Which twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Twin {
    /// `chat-plain`.
    Plain,
    /// `chat-tls` with STARTTLS required.
    Tls,
}

impl Twin {
    /// The binary.
    pub fn bin(self) -> &'static str {
        match self {
            Twin::Plain => "chat-plain",
            Twin::Tls => "chat-tls",
        }
    }
}

/// A running chat server.
pub struct ChatServer {
    /// The process (stopped when this is dropped).
    proc: Proc,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Which twin.
    pub twin: Twin,
    /// Its XMPP domain (and, for TLS, the certificate's name).
    pub domain: String,
    /// The lab CA clients trust (TLS).
    pub ca: Option<PathBuf>,
    /// The pin of the server's key (TLS), when this start made it.
    pub pin: Option<String>,
}

/// Starts a server of `twin` for `domain` on `port` (one the system picks
/// if `None`: the server reports it, see `harness::chat`), with data (and
/// certificates) under `dir`, and `extra` server flags.
pub fn start_server(
    twin: Twin,
    dir: &Path,
    domain: &str,
    port: Option<u16>,
    extra: &[&str],
) -> anyhow::Result<ChatServer> {
    let listen = SocketAddr::from(([127, 0, 0, 1], port.unwrap_or(0)));
    let mut cmd = Command::new(bin(twin.bin())?);
    cmd.args([
        "server",
        "--listen",
        &listen.to_string(),
        "--domain",
        domain,
        "--data",
    ])
    .arg(dir.join(format!("{}-data", twin.bin())));
    let (mut ca, mut pin) = (None, None);
    if twin == Twin::Tls {
        let certs = dir.join("certs");
        // A restart (after `renew_key`) keeps the certificates it finds.
        if !certs.join("server.pem").exists() {
            pin = Some(harness::chat::make_certs(
                &bin("chat-tls")?,
                &certs,
                &["--domain", domain],
            )?);
        }
        cmd.arg("--cert")
            .arg(certs.join("server.pem"))
            .arg("--key")
            .arg(certs.join("server.key"))
            .args(["--starttls", "required"]);
        ca = Some(certs.join("ca.pem"));
    }
    cmd.args(extra);
    let proc = Proc::spawn(&format!("{} server", twin.bin()), cmd, Input::Null)?;
    let ports = harness::chat::wait_ready(&proc)?;
    Ok(ChatServer {
        proc,
        addr: ports.listen,
        twin,
        domain: domain.to_string(),
        ca,
        pin,
    })
}

/// Issues the TLS server in `dir` a new key and certificate under the same
/// CA (`chat-tls certs --renew`): key rotation, taken by the server at its
/// next start. Returns the new key's pin.
pub fn renew_key(dir: &Path, domain: &str) -> anyhow::Result<String> {
    Ok(harness::chat::make_certs(
        &bin("chat-tls")?,
        &dir.join("certs"),
        &["--domain", domain, "--renew"],
    )?)
}

impl ChatServer {
    /// The server's log lines (stderr) so far that contain `text`.
    pub fn log_lines(&self, text: &str) -> Vec<String> {
        self.proc
            .stderr()
            .lines()
            .filter(|l| l.contains(text))
            .map(str::to_string)
            .collect()
    }

    /// The client command for `user` (`--json`, password in the
    /// environment), plus `extra` flags.
    pub fn client(&self, user: &str, password: &str, extra: &[&str]) -> anyhow::Result<Command> {
        self.client_at(self.addr, user, password, extra)
    }

    /// The same, connecting to `addr` instead (an attacker in the path who
    /// clients take for the server).
    pub fn client_at(
        &self,
        addr: SocketAddr,
        user: &str,
        password: &str,
        extra: &[&str],
    ) -> anyhow::Result<Command> {
        let mut cmd = Command::new(bin(self.twin.bin())?);
        cmd.args([
            "client",
            "--json",
            "--server",
            &addr.to_string(),
            "--jid",
            &format!("{user}@{}", self.domain),
        ])
        .args(extra)
        .env("CHAT_PASSWORD", password);
        // The lab CA, unless the caller says which CA this user trusts.
        if let Some(ca) = &self.ca
            && !extra.contains(&"--ca")
        {
            cmd.arg("--ca").arg(ca);
        }
        Ok(cmd)
    }

    /// Runs `user` with `script` to the end.
    pub fn run(
        &self,
        user: &str,
        password: &str,
        extra: &[&str],
        script: &str,
    ) -> anyhow::Result<Vec<String>> {
        self.run_at(self.addr, user, password, extra, script)
    }

    /// The same, connecting to `addr` (an attacker in the path).
    pub fn run_at(
        &self,
        addr: SocketAddr,
        user: &str,
        password: &str,
        extra: &[&str],
        script: &str,
    ) -> anyhow::Result<Vec<String>> {
        let cmd = self.client_at(addr, user, password, extra)?;
        Ok(Proc::spawn(user, cmd, Input::Text(script.into()))?.finish(Duration::from_secs(60))?)
    }

    /// Runs `user` at `addr` with `extra` flags and `script` to its end (up
    /// to a minute), failing or not: whether it succeeded, and its stderr
    /// (where the client says why it stopped).
    pub fn run_to_end(
        &self,
        addr: SocketAddr,
        user: &str,
        password: &str,
        extra: &[&str],
        script: &str,
    ) -> anyhow::Result<(bool, String)> {
        let cmd = self.client_at(addr, user, password, extra)?;
        let mut p = Proc::spawn(user, cmd, Input::Text(script.into()))?;
        let (status, _) = p.wait_exit(Duration::from_secs(60))?;
        Ok((status.success(), p.stderr()))
    }

    /// Starts `user` with `script`, returning once it is signed in.
    pub fn start(
        &self,
        user: &str,
        password: &str,
        extra: &[&str],
        script: &str,
    ) -> anyhow::Result<Proc> {
        let cmd = self.client(user, password, extra)?;
        let mut p = Proc::spawn(user, cmd, Input::Text(script.into()))?;
        p.wait_line("\"type\":\"connected\"", Duration::from_secs(20))?;
        Ok(p)
    }
}
