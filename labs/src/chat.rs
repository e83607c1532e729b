//! The chat side of labs and the demo: a `chat-plain` or `chat-tls` server
//! on loopback, and scripted users driven through the real client binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::procs::{Proc, bin, free_port, make_certs, wait_port};

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
    _proc: Proc,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Which twin.
    pub twin: Twin,
    /// Its XMPP domain (and, for TLS, the certificate's name).
    pub domain: String,
    /// The lab CA clients trust (TLS).
    pub ca: Option<PathBuf>,
}

/// Starts a server of `twin` for `domain` on `port` (a free one if
/// `None`), with data (and certificates) under `dir`.
pub fn start_server(
    twin: Twin,
    dir: &Path,
    domain: &str,
    port: Option<u16>,
) -> anyhow::Result<ChatServer> {
    let port = match port {
        Some(p) => p,
        None => free_port()?,
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut cmd = Command::new(bin(twin.bin())?);
    cmd.args([
        "server",
        "--listen",
        &addr.to_string(),
        "--domain",
        domain,
        "--data",
    ])
    .arg(dir.join(format!("{}-data", twin.bin())));
    let mut ca = None;
    if twin == Twin::Tls {
        let certs = dir.join("certs");
        make_certs(&certs, domain)?;
        cmd.arg("--cert")
            .arg(certs.join("server.pem"))
            .arg("--key")
            .arg(certs.join("server.key"))
            .args(["--starttls", "required"]);
        ca = Some(certs.join("ca.pem"));
    }
    let proc = Proc::spawn(&format!("{} server", twin.bin()), cmd, None)?;
    wait_port(addr).with_context(|| format!("{} server: {}", twin.bin(), proc.stderr()))?;
    Ok(ChatServer {
        _proc: proc,
        addr,
        twin,
        domain: domain.to_string(),
        ca,
    })
}

impl ChatServer {
    /// The client command for `user` (`--json`, password in the
    /// environment), plus `extra` flags.
    pub fn client(&self, user: &str, password: &str, extra: &[&str]) -> anyhow::Result<Command> {
        let mut cmd = Command::new(bin(self.twin.bin())?);
        cmd.args([
            "client",
            "--json",
            "--server",
            &self.addr.to_string(),
            "--jid",
            &format!("{user}@{}", self.domain),
        ])
        .args(extra)
        .env("CHAT_PASSWORD", password);
        if let Some(ca) = &self.ca {
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
        let cmd = self.client(user, password, extra)?;
        Proc::spawn(user, cmd, Some(script))?.finish(Duration::from_secs(60))
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
        let mut p = Proc::spawn(user, cmd, Some(script))?;
        p.wait_line("\"type\":\"connected\"", Duration::from_secs(20))?;
        Ok(p)
    }
}
