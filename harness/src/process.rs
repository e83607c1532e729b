//! [`Proc`]: one child process, from start to a guaranteed end.
//!
//! Each child is the leader of its own process group, and dropping the
//! handle kills the whole group: a program that starts helpers of its own
//! (`sniffer guard` runs a command under capture) cannot leave them behind
//! when a test fails half-way or a lab is interrupted. Its stdout is read
//! line by line on a thread (a child blocked on a full pipe would otherwise
//! stall), its stderr is kept whole for error messages and readiness lines,
//! and every line in or out goes to a transcript that a failing test prints.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::error::Error;
use crate::signals::check_interrupt;

/// How often a wait wakes up to look at Ctrl-C and its deadline.
const TICK: Duration = Duration::from_millis(50);

/// After a process exited, how long its pipes may stay open (held by a
/// helper it left behind) before the harness stops reading them.
const DRAIN: Duration = Duration::from_secs(2);

/// What a child reads on stdin.
#[derive(Debug, Clone)]
pub enum Input {
    /// Nothing: stdin is `/dev/null`.
    Null,
    /// This text, then end of file (a script).
    Text(String),
    /// A pipe kept open for [`Proc::send_line`] (an interactive session).
    Piped,
}

/// Stderr so far, and whether it has ended.
#[derive(Debug, Default)]
struct Stderr {
    text: String,
    closed: bool,
}

/// A running child process; killed, with its whole process group, when
/// dropped.
pub struct Proc {
    name: String,
    child: Child,
    /// Whether `wait` returned: the pid may then belong to someone else.
    reaped: bool,
    stdin: Option<ChildStdin>,
    /// Stdout lines not read yet. In a mutex only so that a `Proc` can be
    /// shared between threads (a server several client threads use); reads
    /// take `&mut self` and never contend for it.
    lines: Mutex<Receiver<String>>,
    transcript: Arc<Mutex<Vec<String>>>,
    stderr: Arc<(Mutex<Stderr>, Condvar)>,
}

/// Locks a mutex even if a reader thread panicked while holding it: the
/// text inside is still worth showing.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Proc {
    /// Starts `cmd` in a process group of its own, with stdout and stderr
    /// piped and stdin as `input` says; `name` is what messages call it.
    pub fn spawn(name: &str, mut cmd: Command, input: Input) -> Result<Proc, Error> {
        let mut child = cmd
            .process_group(0)
            .stdin(match input {
                Input::Null => Stdio::null(),
                Input::Text(_) | Input::Piped => Stdio::piped(),
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Spawn {
                name: name.to_string(),
                source,
            })?;
        let mut stdin = child.stdin.take();
        if let Input::Text(text) = input
            && let Some(mut pipe) = stdin.take()
        {
            // On a thread: a child that does not read stdin before it
            // writes a lot would otherwise deadlock with us. Dropping the
            // pipe afterwards is the end of file.
            std::thread::spawn(move || {
                let _ = pipe.write_all(text.as_bytes());
            });
        }
        let transcript = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = channel();
        if let Some(out) = child.stdout.take() {
            let t = transcript.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(out);
                let mut buf = Vec::new();
                // Byte lines, not `lines()`: one invalid UTF-8 byte must not
                // stop the reading (and then block the child on a full pipe).
                while matches!(r.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                    let end = buf.strip_suffix(b"\n").unwrap_or(&buf);
                    let end = end.strip_suffix(b"\r").unwrap_or(end);
                    let l = String::from_utf8_lossy(end).into_owned();
                    buf.clear();
                    lock(&t).push(format!("< {l}"));
                    // Nobody listening any more is fine: keep draining so
                    // the child never blocks on a full pipe.
                    let _ = tx.send(l);
                }
            });
        }
        let stderr = Arc::new((Mutex::new(Stderr::default()), Condvar::new()));
        if let Some(err) = child.stderr.take() {
            let e = stderr.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(err);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match r.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            lock(&e.0).text.push_str(&String::from_utf8_lossy(&buf));
                            e.1.notify_all();
                        }
                    }
                }
                lock(&e.0).closed = true;
                e.1.notify_all();
            });
        }
        Ok(Proc {
            name: name.to_string(),
            child,
            reaped: false,
            stdin,
            lines: Mutex::new(lines),
            transcript,
            stderr,
        })
    }

    /// What messages call it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id (also its process group's id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        lock(&self.stderr.0).text.clone()
    }

    /// Waits for a stderr line that satisfies `pred` (a readiness line) and
    /// returns it; [`Error::NotStarted`] with its stderr if stderr ends or
    /// `limit` passes first.
    pub fn wait_stderr_line(
        &self,
        pred: impl Fn(&str) -> bool,
        limit: Duration,
    ) -> Result<String, Error> {
        let t0 = Instant::now();
        let (m, cv) = &*self.stderr;
        let mut s = lock(m);
        loop {
            if let Some(l) = s.text.lines().find(|l| pred(l)) {
                return Ok(l.to_string());
            }
            if s.closed || t0.elapsed() >= limit {
                return Err(Error::NotStarted {
                    name: self.name.clone(),
                    stderr: s.text.trim().to_string(),
                });
            }
            drop(s);
            check_interrupt()?;
            s = cv
                .wait_timeout(lock(m), TICK)
                .map_or_else(|e| e.into_inner().0, |(g, _)| g);
        }
    }

    /// Waits for its stderr to contain `text`.
    pub fn wait_stderr(&self, text: &str, limit: Duration) -> Result<(), Error> {
        self.wait_stderr_line(|l| l.contains(text), limit)
            .map(|_| ())
    }

    /// The next stdout line, waiting up to `limit`; `None` once stdout has
    /// ended.
    pub fn line(&mut self, limit: Duration) -> Result<Option<String>, Error> {
        let t0 = Instant::now();
        loop {
            check_interrupt()?;
            match self.rx().recv_timeout(TICK.min(limit)) {
                Ok(l) => return Ok(Some(l)),
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
                Err(RecvTimeoutError::Timeout) if t0.elapsed() >= limit => {
                    return Err(Error::NoAnswer {
                        name: self.name.clone(),
                        secs: limit.as_secs(),
                    });
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Reads stdout lines until one contains `text`; returns it.
    pub fn wait_line(&mut self, text: &str, limit: Duration) -> Result<String, Error> {
        let t0 = Instant::now();
        loop {
            let left = limit.saturating_sub(t0.elapsed());
            match self.line(left)? {
                Some(l) if l.contains(text) => return Ok(l),
                Some(_) => {}
                None => {
                    return Err(Error::EndedBefore {
                        name: self.name.clone(),
                        text: text.to_string(),
                        stderr: self.stderr().trim().to_string(),
                    });
                }
            }
        }
    }

    /// Writes one line to its stdin (opened with [`Input::Piped`]).
    pub fn send_line(&mut self, line: &str) -> std::io::Result<()> {
        lock(&self.transcript).push(format!("> {line}"));
        let stdin = self.stdin.as_mut().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "stdin is closed")
        })?;
        writeln!(stdin, "{line}")?;
        stdin.flush()
    }

    /// Closes its stdin: the end of an interactive session.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Every line that went in (`> `) and came out (`< `) so far, then its
    /// stderr: what a failing test prints.
    pub fn transcript(&self) -> String {
        format!(
            "--- {} ---\n{}\n--- {} stderr ---\n{}",
            self.name,
            lock(&self.transcript).join("\n"),
            self.name,
            self.stderr()
        )
    }

    /// Its stdout lines so far, whether read or not.
    pub fn output(&self) -> Vec<String> {
        lock(&self.transcript)
            .iter()
            .filter_map(|l| l.strip_prefix("< ").map(str::to_string))
            .collect()
    }

    /// Waits (up to `limit`) for it to exit; returns how it ended and the
    /// stdout lines not read yet, once its pipes have ended (or [`DRAIN`]
    /// passed: a helper it left behind may hold them open).
    pub fn wait_exit(&mut self, limit: Duration) -> Result<(ExitStatus, Vec<String>), Error> {
        let t0 = Instant::now();
        let mut lines = Vec::new();
        let status = loop {
            check_interrupt()?;
            while let Ok(l) = self.rx().try_recv() {
                lines.push(l);
            }
            let exited = self.child.try_wait().map_err(|source| Error::Wait {
                name: self.name.clone(),
                source,
            })?;
            if let Some(status) = exited {
                self.reaped = true;
                break status;
            }
            if t0.elapsed() > limit {
                return Err(Error::Unfinished {
                    name: self.name.clone(),
                    secs: limit.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.drain(&mut lines);
        Ok((status, lines))
    }

    /// Collects the rest of stdout and waits for stderr's end, both bounded
    /// by [`DRAIN`].
    fn drain(&mut self, lines: &mut Vec<String>) {
        let t0 = Instant::now();
        while let Ok(l) = self.rx().recv_timeout(DRAIN.saturating_sub(t0.elapsed())) {
            lines.push(l);
        }
        let (m, cv) = &*self.stderr;
        let _ = cv.wait_timeout_while(lock(m), DRAIN.saturating_sub(t0.elapsed()), |s| !s.closed);
    }

    /// Waits (up to `limit`) for it to exit and fails if it failed; returns
    /// every stdout line not read yet.
    pub fn finish(mut self, limit: Duration) -> Result<Vec<String>, Error> {
        let (status, lines) = self.wait_exit(limit)?;
        if !status.success() {
            // The lines that say what went wrong, not the whole session;
            // without such a line, its last lines; without any, say so.
            let mut tail: Vec<&String> = lines
                .iter()
                .filter(|l| l.contains("error") || l.contains("failed"))
                .rev()
                .take(3)
                .collect();
            if tail.is_empty() {
                tail = lines.iter().rev().take(3).collect();
            }
            let tail = if tail.is_empty() {
                "(nothing on stdout)".to_string()
            } else {
                tail.into_iter()
                    .rev()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" | ")
            };
            let stderr = self.stderr().trim().to_string();
            return Err(Error::Failed {
                name: self.name.clone(),
                status,
                stderr: if stderr.is_empty() {
                    "(nothing on stderr)".into()
                } else {
                    stderr
                },
                tail,
            });
        }
        Ok(lines)
    }

    /// Ctrl-C for it (SIGINT, to the process alone, as a person would), then
    /// how it ended and every stdout line not read yet; it must exit within
    /// `limit`.
    pub fn interrupt(&mut self, limit: Duration) -> Result<(ExitStatus, Vec<String>), Error> {
        self.signal(Signal::SIGINT)?;
        self.wait_exit(limit)
    }

    /// Sends `sig` to the process alone.
    pub fn signal(&self, sig: Signal) -> Result<(), Error> {
        kill(self.nix_pid(), sig).map_err(|source| Error::Signal {
            name: self.name.clone(),
            source,
        })
    }

    /// `kill -9` of the whole group, and waits for the end.
    pub fn kill(&mut self) {
        if !self.reaped {
            let _ = killpg(self.nix_pid(), Signal::SIGKILL);
            let _ = self.child.wait();
            self.reaped = true;
        }
    }

    /// The stdout lines' receiver.
    fn rx(&mut self) -> &Receiver<String> {
        self.lines.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    /// Its pid, which is also its process group's id (it leads its own
    /// group, see [`Proc::spawn`]).
    fn nix_pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.reaped {
            // The leader is gone but helpers it started may still run in
            // its group; the group's id stays reserved while any member
            // lives, so this reaches only them (or nobody).
            let _ = killpg(self.nix_pid(), Signal::SIGKILL);
        }
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn lines_stderr_and_exit_status_come_back() {
        let mut p = Proc::spawn(
            "echo",
            sh("read x; echo got $x; echo ready >&2; echo two"),
            Input::Text("one\n".into()),
        )
        .unwrap();
        assert_eq!(
            p.wait_stderr_line(|l| l.starts_with("ready"), Duration::from_secs(5))
                .unwrap(),
            "ready"
        );
        assert_eq!(
            p.line(Duration::from_secs(5)).unwrap().as_deref(),
            Some("got one")
        );
        assert_eq!(
            p.finish(Duration::from_secs(5)).unwrap(),
            vec!["two".to_string()]
        );
    }

    #[test]
    fn a_failure_carries_stderr_and_a_missing_readiness_line_is_an_error() {
        let p = Proc::spawn("false", sh("echo boom >&2; exit 3"), Input::Null).unwrap();
        let e = p
            .wait_stderr("ready", Duration::from_secs(5))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "false did not start: boom");
        let e = p.finish(Duration::from_secs(5)).unwrap_err().to_string();
        assert!(e.starts_with("false failed (exit status: 3): boom"), "{e}");
        // A failure that said nothing on stderr and no "error" line shows
        // its last lines, never an empty "last output:".
        let p = Proc::spawn("quiet", sh("echo one; echo two; exit 4"), Input::Null).unwrap();
        let e = p.finish(Duration::from_secs(5)).unwrap_err().to_string();
        assert_eq!(
            e,
            "quiet failed (exit status: 4): (nothing on stderr); last output: one | two"
        );
    }

    #[test]
    fn a_silent_process_is_a_timeout_not_a_hang() {
        let mut p = Proc::spawn("sleeper", sh("sleep 30"), Input::Null).unwrap();
        let e = p.line(Duration::from_millis(200)).unwrap_err().to_string();
        assert_eq!(e, "sleeper gave no answer within 0 s");
        let e = p
            .wait_exit(Duration::from_millis(200))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "sleeper did not finish within 0 s");
    }

    #[test]
    fn an_interactive_session_is_transcribed() {
        let mut p = Proc::spawn("cat", Command::new("cat"), Input::Piped).unwrap();
        p.send_line("hello").unwrap();
        assert_eq!(p.wait_line("hel", Duration::from_secs(5)).unwrap(), "hello");
        p.close_stdin();
        let (status, rest) = p.wait_exit(Duration::from_secs(5)).unwrap();
        assert!(status.success() && rest.is_empty(), "{status} {rest:?}");
        assert_eq!(p.output(), vec!["hello".to_string()]);
        assert!(
            p.transcript().contains("> hello\n< hello"),
            "{}",
            p.transcript()
        );
    }

    /// The point of the process group: a helper the child started dies
    /// with it when the handle drops.
    #[test]
    fn dropping_kills_the_whole_group() {
        let mut p = Proc::spawn("parent", sh("sleep 300 & echo $!; wait"), Input::Null).unwrap();
        let helper: u32 = p
            .line(Duration::from_secs(5))
            .unwrap()
            .unwrap()
            .parse()
            .unwrap();
        // Running: neither gone nor a zombie (state `Z` in /proc: killed,
        // not yet reaped by whoever inherited it).
        let alive = || {
            std::fs::read_to_string(format!("/proc/{helper}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| !r.trim_start().starts_with('Z'))
            })
        };
        assert!(alive(), "the helper runs");
        drop(p);
        let t0 = Instant::now();
        while alive() {
            assert!(t0.elapsed() < Duration::from_secs(5), "the helper survived");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
