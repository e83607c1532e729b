//! The twins' servers seen from outside: the readiness line, and the lab
//! certificates.
//!
//! A server is started on port 0 and the kernel picks free ports as it
//! binds. Asking for a free port first and passing it on would race: between
//! the check and the server's bind, a parallel test can take that port. The
//! server says which ports it got in one machine-readable line on stderr,
//! printed once every listener is bound (`run_server` in
//! `chat-core/src/cli.rs` writes it):
//!
//! ```text
//! chat-tls server: ready listen=127.0.0.1:40211 direct-tls=127.0.0.1:40213
//! ```
//!
//! `listen=` is the plaintext or STARTTLS port; `direct-tls=` is there when
//! the server also serves direct TLS, `upload=` when it serves HTTP file
//! upload. Unknown `key=value` words are skipped,
//! so the line can grow.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::error::Error;
use crate::process::Proc;

/// What marks the readiness line on a server's stderr: the twins'
/// (`chat-tls server: ready listen=...`) and `mitm-proxy`'s
/// (`mitm-proxy: ready listen=... upstream=...`).
pub const READY: &str = ": ready ";

/// How long a server may take to bind its ports.
pub const START_LIMIT: Duration = Duration::from_secs(15);

/// The addresses a server bound, from its readiness line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// The plaintext (`chat-plain`) or STARTTLS (`chat-tls`) port.
    pub listen: SocketAddr,
    /// The direct TLS port (XEP-0368), when the server serves one.
    pub direct_tls: Option<SocketAddr>,
    /// The HTTP file upload listener (XEP-0363), when there is one.
    pub upload: Option<SocketAddr>,
}

impl Ports {
    /// The addresses in a readiness line; `None` if `line` is not one or
    /// lacks `listen=`.
    pub fn parse(line: &str) -> Option<Ports> {
        let (_, words) = line.split_once(READY)?;
        let mut listen = None;
        let mut direct_tls = None;
        let mut upload = None;
        for w in words.split_whitespace() {
            match w.split_once('=') {
                Some(("listen", a)) => listen = Some(a.parse().ok()?),
                Some(("direct-tls", a)) => direct_tls = Some(a.parse().ok()?),
                Some(("upload", a)) => upload = Some(a.parse().ok()?),
                _ => {}
            }
        }
        Some(Ports {
            listen: listen?,
            direct_tls,
            upload,
        })
    }
}

/// Waits for `server`'s readiness line (up to [`START_LIMIT`]) and returns
/// the addresses in it. A server that exits first, or never says it is
/// ready, is [`Error::NotStarted`] with its stderr (a port in use, a bad
/// certificate).
pub fn wait_ready(server: &Proc) -> Result<Ports, Error> {
    let line = server.wait_stderr_line(|l| l.contains(READY), START_LIMIT)?;
    Ports::parse(&line).ok_or_else(|| Error::BadReadiness {
        name: server.name().to_string(),
        line,
    })
}

/// Runs `chat-tls certs --out dir` (a lab CA and a server certificate) with
/// `extra` flags (`--domain`, `--expired`); returns the server key's pin
/// (`sha256:...`) it prints.
pub fn make_certs(chat_tls: &Path, dir: &Path, extra: &[&str]) -> Result<String, Error> {
    let out = Command::new(chat_tls)
        .args(["certs", "--out"])
        .arg(dir)
        .args(extra)
        .output()
        .map_err(|source| Error::Spawn {
            name: "chat-tls certs".into(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pin = stdout.split_whitespace().find(|w| w.starts_with("sha256:"));
    match pin {
        Some(pin) if out.status.success() => Ok(pin.to_string()),
        _ => Err(Error::Certs(
            format!("{}{stdout}", String::from_utf8_lossy(&out.stderr))
                .trim()
                .to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn readiness_lines_are_parsed() {
        let p = Ports::parse("chat-plain server: ready listen=127.0.0.1:40211").unwrap();
        assert_eq!(p.listen, "127.0.0.1:40211".parse().unwrap());
        assert_eq!(p.direct_tls, None);
        assert_eq!(p.upload, None);
        let p =
            Ports::parse("chat-plain server: ready listen=127.0.0.1:1 upload=127.0.0.1:3").unwrap();
        assert_eq!(p.upload, Some("127.0.0.1:3".parse().unwrap()));
        let p =
            Ports::parse("chat-tls server: ready listen=127.0.0.1:1 future=x direct-tls=[::1]:2")
                .unwrap();
        assert_eq!(p.listen, "127.0.0.1:1".parse().unwrap());
        assert_eq!(p.direct_tls, Some("[::1]:2".parse().unwrap()));
    }

    #[test]
    fn other_lines_are_not_readiness_lines() {
        for l in [
            "chat-plain server: listening on 127.0.0.1:5222 for domain 'localhost'",
            "chat-plain server: ready direct-tls=127.0.0.1:2",
            "chat-plain server: ready listen=nowhere",
            "",
        ] {
            assert_eq!(Ports::parse(l), None, "{l}");
        }
    }
}
