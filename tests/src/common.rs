//! What every test file uses: the default wait, the binaries, certificates,
//! third-party tools, and readable errors.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

/// The default wait for something that should happen.
pub const WAIT: Duration = Duration::from_secs(15);

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
/// installs: `prosody`, `tshark`, `chromium`, or `slixmpp` (the Python of
/// the venv that holds it). A missing tool fails the test with the
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
        "sqlite3" => ["/usr/bin/sqlite3", "/usr/local/bin/sqlite3"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists()),
        "curl" => ["/usr/bin/curl", "/usr/local/bin/curl"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists()),
        "chromium" => ["/usr/bin/chromium", "/usr/local/bin/chromium"]
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

/// What tshark shows of TCP streams `0..streams` of `pcap`, decrypted with
/// `keylog` (`-z follow,tls,ascii,N`), told that the server's ports carry
/// XMPP (its STARTTLS port) and TLS (its direct TLS port). `None` when
/// tshark is not installed and the interop tests are skipped.
pub fn tshark_follow_tls(
    pcap: &Path,
    keylog: &Path,
    server: &crate::Server,
    streams: usize,
) -> Option<String> {
    let tshark = interop_tool("tshark")?;
    let mut cmd = Command::new(tshark);
    cmd.arg("-r")
        .arg(pcap)
        .arg("-o")
        .arg(format!("tls.keylog_file:{}", keylog.display()))
        .args(["-d", &format!("tcp.port=={},xmpp", server.addr.port())])
        .arg("-q");
    if let Some(d) = server.direct {
        cmd.args(["-d", &format!("tcp.port=={},tls", d.port())]);
    }
    for n in 0..streams {
        cmd.args(["-z", &format!("follow,tls,ascii,{n}")]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One HTTP/1.1 request to `addr` (`Connection: close`): the status and
/// the body. Enough for our own servers' JSON APIs; `token`, when given,
/// goes in `Authorization: Bearer`.
pub fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // A chunked body (axum's for a streamed one): its chunks joined.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut r = rest;
        while let Some((size, after)) = r.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || after.len() < n {
                break;
            }
            out.push_str(&after[..n]);
            r = after[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        rest.to_string()
    };
    (status, body)
}

/// The SHA-256 of `bytes` in lowercase hex, as the client and the sniffer
/// print it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
