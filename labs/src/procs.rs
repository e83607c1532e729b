//! The processes a lab or the demo starts: the toolkit's own binaries, on
//! loopback, each stopped when its owner is dropped, whatever happens
//! (error, Ctrl-C), so nothing is left running behind a class.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Set by Ctrl-C or SIGTERM; every wait checks it.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Routes Ctrl-C and SIGTERM to [`INTERRUPTED`] instead of killing the
/// process at once, so the cleanup code runs.
pub fn catch_signals() -> anyhow::Result<()> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone()).context("cannot handle signals")?;
    }
    std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
        INTERRUPTED.store(true, Ordering::Relaxed);
    });
    Ok(())
}

/// Fails with "interrupted" once Ctrl-C was pressed.
pub fn check_interrupt() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted: every process the lab started was stopped");
    }
    Ok(())
}

/// One of the toolkit's binaries, next to this one.
pub fn bin(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this program's folder")?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} is missing: build the toolkit first (cargo build --workspace --bins)",
            path.display()
        );
    }
    Ok(path)
}

/// A free loopback port (bound, then released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something listens on `addr`.
pub fn wait_port(addr: SocketAddr) -> anyhow::Result<()> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(15) {
        check_interrupt()?;
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    bail!("nothing started listening on {addr} within 15 s")
}

/// A child process, killed when dropped; its stderr is kept for errors.
pub struct Proc {
    /// What it is, for messages.
    pub name: String,
    child: Child,
    lines: Option<Receiver<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    /// Starts `cmd` with stdout piped (read it with [`Proc::line`]), stdin
    /// fed with `input` then closed, stderr kept.
    pub fn spawn(name: &str, mut cmd: Command, input: Option<&str>) -> anyhow::Result<Proc> {
        let mut child = cmd
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            let text = text.to_string();
            std::thread::spawn(move || {
                let _ = stdin.write_all(text.as_bytes());
            });
        }
        let (tx, rx) = channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for l in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            });
        }
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = child.stderr.take() {
            let e = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut s) = e.lock() {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            });
        }
        Ok(Proc {
            name: name.to_string(),
            child,
            lines: Some(rx),
            stderr,
        })
    }

    /// What it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits for its stderr to contain `text`.
    pub fn wait_stderr(&self, text: &str, limit: Duration) -> anyhow::Result<()> {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            check_interrupt()?;
            if self.stderr().contains(text) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("{} did not start: {}", self.name, self.stderr().trim())
    }

    /// The next stdout line, waiting up to `limit`; `None` at the end.
    pub fn line(&mut self, limit: Duration) -> anyhow::Result<Option<String>> {
        let Some(rx) = self.lines.as_ref() else {
            return Ok(None);
        };
        let t0 = Instant::now();
        loop {
            check_interrupt()?;
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(l) => return Ok(Some(l)),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(None),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if t0.elapsed() > limit => {
                    bail!("{} gave no answer within {} s", self.name, limit.as_secs())
                }
                Err(_) => {}
            }
        }
    }

    /// Reads stdout lines until one contains `text`.
    pub fn wait_line(&mut self, text: &str, limit: Duration) -> anyhow::Result<()> {
        let t0 = Instant::now();
        loop {
            let left = limit.saturating_sub(t0.elapsed());
            match self.line(left)? {
                Some(l) if l.contains(text) => return Ok(()),
                Some(_) => {}
                None => bail!(
                    "{} ended before '{text}': {}",
                    self.name,
                    self.stderr().trim()
                ),
            }
        }
    }

    /// Waits for it to exit (bounded); fails if it failed.
    pub fn finish(mut self, limit: Duration) -> anyhow::Result<Vec<String>> {
        let t0 = Instant::now();
        let mut lines = Vec::new();
        loop {
            check_interrupt()?;
            if let Some(rx) = self.lines.as_ref() {
                while let Ok(l) = rx.try_recv() {
                    lines.push(l);
                }
            }
            if let Some(status) = self.child.try_wait()? {
                std::thread::sleep(Duration::from_millis(50));
                if let Some(rx) = self.lines.as_ref() {
                    while let Ok(l) = rx.try_recv() {
                        lines.push(l);
                    }
                }
                if !status.success() {
                    let tail: Vec<&String> = lines
                        .iter()
                        .filter(|l| l.contains("error") || l.contains("failed"))
                        .rev()
                        .take(3)
                        .collect();
                    bail!(
                        "{} failed ({status}): {}; last output: {}",
                        self.name,
                        self.stderr().trim(),
                        tail.into_iter()
                            .rev()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(" | ")
                    );
                }
                return Ok(lines);
            }
            if t0.elapsed() > limit {
                bail!("{} did not finish within {} s", self.name, limit.as_secs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ctrl-C for it (SIGINT), then every stdout line until it exits.
    pub fn interrupt(mut self, limit: Duration) -> anyhow::Result<Vec<String>> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT)
            .with_context(|| format!("cannot stop {}", self.name))?;
        let t0 = Instant::now();
        let mut lines = Vec::new();
        while t0.elapsed() < limit {
            match self
                .lines
                .as_ref()
                .map(|rx| rx.recv_timeout(Duration::from_millis(50)))
            {
                Some(Ok(l)) => lines.push(l),
                Some(Err(std::sync::mpsc::RecvTimeoutError::Timeout)) => {}
                _ => break,
            }
        }
        let _ = self.child.wait();
        Ok(lines)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `chat-tls certs` into `dir` for `domain`.
pub fn make_certs(dir: &Path, domain: &str) -> anyhow::Result<()> {
    let out = Command::new(bin("chat-tls")?)
        .args(["certs", "--out"])
        .arg(dir)
        .args(["--domain", domain])
        .output()
        .context("cannot run chat-tls certs")?;
    if !out.status.success() {
        bail!(
            "chat-tls certs failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
