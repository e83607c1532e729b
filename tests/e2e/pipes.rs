//! Every binary ends quietly at the edge of a pipe: when whoever reads its
//! output goes away (`labs list | head -1`, `chat-plain client --json |
//! head -1`), it exits with 0 and says nothing on stderr, instead of
//! panicking with "failed printing to stdout" and exit 101. One test per
//! binary. The pipe is closed before the command starts, so that its very
//! first write fails; where a program goes on writing as things happen (the
//! client, the sniffer), also after the first line was read.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use tests::{Server, Twin, WAIT, bin};

/// The one line the plaintext twin's client always writes on stderr, on
/// purpose: a warning, not a complaint about the pipe.
const PLAINTEXT_WARNING: &str = "chat-plain: warning: this connection is NOT encrypted; anyone on the network path can read and change it";

/// Waits (bounded) for `child` to end and checks it ended quietly: exit 0,
/// nothing on stderr (but the plaintext warning).
fn ends_quietly(what: &str, mut child: Child) {
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if t0.elapsed() > WAIT {
            let _ = child.kill();
            panic!("{what}: still running {WAIT:?} after its reader went away");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut stderr).unwrap();
    }
    assert_eq!(status.code(), Some(0), "{what}: {status}\n{stderr}");
    let said: Vec<&str> = stderr.lines().filter(|l| *l != PLAINTEXT_WARNING).collect();
    assert!(said.is_empty(), "{what}: nothing on stderr, got:\n{stderr}");
}

/// Runs `cmd` with its stdout into a pipe whose reading end is already
/// closed: its first write fails.
fn into_closed_pipe(what: &str, mut cmd: Command) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `cmd` still holds our copy of the writing end: let it go.
    drop(cmd);
    ends_quietly(what, child);
}

/// Reads the first line of the child's stdout, then closes the pipe: the
/// reader of `| head -1` leaving while the program still writes.
fn first_line_then_close(child: &mut Child) -> String {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    first
}

fn command(name: &str, args: &[&str]) -> Command {
    let mut c = Command::new(bin(name));
    c.args(args);
    c
}

/// The twin's line client, `--json`, reading commands from stdin: the
/// first output line is read, then the reader goes away while the client
/// still has things to say.
fn client_after_the_first_line(twin: Twin) {
    let server = Server::start(twin, &[]);
    let what = format!("{} client --json | head -1", twin.bin());
    let mut child = Command::new(bin(twin.bin()))
        .args(["client", "--json", "--register", "--jid", "pipe@localhost"])
        .args(server.client_flags())
        .env("CHAT_PASSWORD", "pw")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = first_line_then_close(&mut child);
    assert!(first.contains("\"type\""), "{what}: a JSON line: {first:?}");
    // Commands whose answers now go nowhere; the client may be gone before
    // it reads them all.
    let mut stdin = child.stdin.take().unwrap();
    for line in [
        "/roster",
        "/msg pipe@localhost one",
        "/msg pipe@localhost two",
    ] {
        let _ = writeln!(stdin, "{line}");
    }
    let _ = stdin.flush();
    ends_quietly(&what, child);
    drop(stdin);
    // Closed before it starts: the sign-in line is its first write.
    let mut c = Command::new(bin(twin.bin()));
    c.args(["client", "--json", "--jid", "pipe@localhost"])
        .args(server.client_flags())
        .env("CHAT_PASSWORD", "pw");
    into_closed_pipe(&format!("{} client --json | head -c 0", twin.bin()), c);
}

#[test]
fn chat_plain_ends_quietly_on_a_closed_pipe() {
    into_closed_pipe("chat-plain --help", command("chat-plain", &["--help"]));
    client_after_the_first_line(Twin::Plain);
}

#[test]
fn chat_tls_ends_quietly_on_a_closed_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs").display().to_string();
    into_closed_pipe(
        "chat-tls certs",
        command("chat-tls", &["certs", "--out", &certs]),
    );
    assert!(
        Path::new(&certs).join("ca.pem").exists(),
        "the certificates were written before the output failed"
    );
    client_after_the_first_line(Twin::StartTls);
}

/// A synthetic capture of plaintext chat, `megabytes` big.
fn capture(dir: &Path, megabytes: &str) -> std::path::PathBuf {
    let pcap = dir.join("chat.pcap");
    let out = command(
        "xmpp-capgen",
        &["--out", pcap.to_str().unwrap(), "--megabytes", megabytes],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pcap
}

#[test]
fn xmpp_capgen_ends_quietly_on_a_closed_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("chat.pcap");
    into_closed_pipe(
        "xmpp-capgen",
        command(
            "xmpp-capgen",
            &["--out", pcap.to_str().unwrap(), "--megabytes", "1"],
        ),
    );
    let size = std::fs::metadata(&pcap).unwrap().len();
    assert!(
        size > 500_000,
        "the capture was written first: {size} bytes"
    );
}

#[test]
fn sniffer_ends_quietly_on_a_closed_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = capture(dir.path(), "2");
    let pcap = pcap.to_str().unwrap();
    into_closed_pipe("sniffer read", command("sniffer", &["read", pcap]));
    into_closed_pipe(
        "sniffer read --json",
        command("sniffer", &["read", pcap, "--json"]),
    );
    // Findings stream out as it reads: the reader leaves after the first.
    let mut child = command("sniffer", &["read", pcap, "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = first_line_then_close(&mut child);
    assert!(first.starts_with('{'), "a JSON line: {first:?}");
    ends_quietly("sniffer read --json | head -1", child);
}

#[test]
fn labs_ends_quietly_on_a_closed_pipe() {
    let dir = tempfile::tempdir().unwrap();
    into_closed_pipe("labs list", command("labs", &["list"]));
    into_closed_pipe("labs show 1", command("labs", &["show", "1"]));
    // `check` saves the progress before it prints the verdicts: nobody
    // reading them does not lose the student's work.
    let progress = dir.path().join("progress.json");
    let progress = progress.to_str().unwrap();
    // Ada's right answer, as her instructor would look it up.
    let (code, out, err) = tests::run_bin(
        "labs",
        &[
            "answers",
            "1",
            "--student",
            "Ada Lovelace",
            "--course-secret",
            "test-course",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let iterations = out
        .lines()
        .find(|l| l.starts_with("iterations="))
        .unwrap_or_else(|| panic!("no iterations answer: {out}"))
        .to_string();
    into_closed_pipe(
        "labs check | head -0",
        command(
            "labs",
            &[
                "check",
                "1",
                "--student",
                "Ada Lovelace",
                "--course-secret",
                "test-course",
                "--progress",
                progress,
                "--answer",
                &iterations,
            ],
        ),
    );
    let saved = std::fs::read_to_string(progress)
        .unwrap_or_else(|e| panic!("labs check saved no progress ({e})"));
    assert!(saved.contains("ada-lovelace"), "{saved}");
    into_closed_pipe(
        "labs progress | head -0",
        command("labs", &["progress", "--progress", progress]),
    );
    // `run` has a server going when it first prints: the server must stop
    // too, not be left behind when the output fails. Its files are under
    // a TMPDIR of this test's own, so that its processes can be told from
    // a parallel test's.
    let tmp = tempfile::tempdir().unwrap();
    let mut run = command(
        "labs",
        &[
            "run",
            "1",
            "--student",
            "Ada Lovelace",
            "--course-secret",
            "test-course",
            "--once",
        ],
    );
    run.env("TMPDIR", tmp.path());
    into_closed_pipe("labs run 1 --once | head -0", run);
    let mark = tmp.path().display().to_string();
    let left: Vec<(String, String)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), cmdline))
        })
        .map(|(pid, c)| (pid, String::from_utf8_lossy(&c).replace('\0', " ")))
        .filter(|(_, c)| c.contains(&mark))
        .collect();
    for (pid, _) in &left {
        // Do not leave them running after the failure either.
        let _ = Command::new("kill").args(["-9", pid]).status();
    }
    assert!(left.is_empty(), "processes left behind: {left:?}");
    let files: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(files.is_empty(), "the lab's files were removed: {files:?}");
}

#[test]
fn mitm_proxy_ends_quietly_on_a_closed_pipe() {
    into_closed_pipe(
        "mitm-proxy attacks | head -0",
        command("mitm-proxy", &["attacks"]),
    );
    into_closed_pipe(
        "mitm-proxy attacks --json | head -0",
        command("mitm-proxy", &["attacks", "--json"]),
    );
}
