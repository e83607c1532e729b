//! One run of the line client: sign in, then read commands and print events
//! until stdin ends, `/quit`, or the connection is lost; then sign out.
//!
//! Commands run one after the other: a script line runs once the one
//! before it was answered (a `/say` after a `/join` finds the room joined),
//! while events keep printing as they come.

use std::io::IsTerminal;
use std::time::Duration;

use protocol::display::Safe;
use protocol::{Jid, outln};
use tokio::io::{AsyncBufReadExt, BufReader, Lines, Stdin};
use tokio::sync::mpsc;

use super::command::Command;
use super::commands::{Done, Step, execute, parse_jid};
use super::format::{Line, Out, Sink};
use super::wait::{Backlog, Wait};
use crate::client::api::Client;
use crate::client::connect::{ConnectOptions, connect};
use crate::client::error::ClientError;
use crate::client::event::{ClientEvent, RosterItem};
use crate::client::rooms::room_jid;
use crate::transport::ClientTransport;

/// How long the server has to close its side once we closed ours.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// How a run of the line client ended; the binary turns it into its exit
/// code (0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every command succeeded.
    Done,
    /// Some command failed, a `/wait` timed out, or an event reported a
    /// failure (a bounced message, a failed file).
    Failed,
    /// Signing in failed, or the connection was lost.
    Error,
}

/// Connects and runs the client until stdin ends, `/quit` or the end of
/// the connection.
pub async fn run<T: ClientTransport>(
    name: &str,
    transport: T,
    opts: ConnectOptions,
    json: bool,
    verbose: bool,
) -> Outcome {
    let out = Out {
        json,
        verbose,
        echoed: std::io::stdin().is_terminal(),
        sink: Sink::Stdout,
    };
    let client = match sign_in(name, &transport, &opts, &out).await {
        Ok((c, _)) => c,
        Err(e) => {
            // The error can quote the server (a stream error's text).
            eprintln!("{name}: {}", Safe(&e.to_string()));
            return Outcome::Error;
        }
    };
    if std::io::stdin().is_terminal() {
        outln!("type /help for commands");
    }
    let mut session = Session::new(client, out);
    let lines = BufReader::new(tokio::io::stdin()).lines();
    match session.commands(lines).await {
        End::Exit(code) => code,
        End::Lost => {
            eprintln!("{name}: connection lost");
            Outcome::Error
        }
        End::SignOut => session.sign_out(name).await,
    }
}

/// Connects, says who we are and how, then fetches the roster and sends
/// initial presence; returns the client and the roster.
pub(super) async fn sign_in<T: ClientTransport>(
    name: &str,
    transport: &T,
    opts: &ConnectOptions,
    out: &Out,
) -> Result<(Client, Vec<RosterItem>), ClientError> {
    let client = connect(transport, opts).await?;
    if opts.register {
        out.print(&Line::Registered {
            jid: opts.jid.to_bare(),
        });
    }
    out.print(&Line::Connected {
        jid: client.jid().clone(),
        mechanism: client.mechanism(),
        encrypted: client.is_secure(),
    });
    if !client.is_secure() {
        // The plaintext twin, said where it happens.
        out.warn(
            name,
            "warning: this connection is NOT encrypted; anyone on the network path can read and change it",
        );
    }
    if client.discarded_at_switch() > 0 {
        out.warn(
            name,
            &format!(
                "warning: {} bytes arrived after <proceed/>, before TLS, and were discarded (STARTTLS response injection?)",
                client.discarded_at_switch()
            ),
        );
    }
    // Roster first, so the client knows its contacts before presence and
    // subscription requests arrive; then initial presence, which also
    // releases offline messages.
    let roster = client.roster().await?;
    // Copies of what the account's other sessions send and receive. Not
    // waited for: a server without carbons (an old one, or Prosody without
    // the module) refuses, or never answers, and the session goes on
    // without them. Sent before the initial presence, so a server takes it
    // before anyone sees this session online.
    let enable = client.enable_carbons();
    tokio::spawn(async move {
        let _ = enable.await;
    });
    client.set_presence(None, None)?;
    Ok((client, roster))
}

/// How the command loop ended.
enum End {
    /// Stdin ended or `/quit`: sign out.
    SignOut,
    /// The connection went away on its own.
    Lost,
    /// Finished already (after `/unregister`), with this outcome.
    Exit(Outcome),
}

/// The command loop's state.
struct Session {
    client: Client,
    out: Out,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    /// Requests waiting for the server.
    in_flight: usize,
    /// Some command or event failed: exit 1.
    failed: bool,
    stdin_open: bool,
    quitting: bool,
    /// `/unregister` is under way: the server may close the stream.
    unregistering: bool,
    /// The chat or room plain lines go to.
    current: Option<Jid>,
    backlog: Backlog,
    wait: Option<Wait>,
}

impl Session {
    fn new(client: Client, out: Out) -> Session {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Session {
            client,
            out,
            done_tx,
            done_rx,
            in_flight: 0,
            failed: false,
            stdin_open: true,
            quitting: false,
            unregistering: false,
            current: None,
            backlog: Backlog::default(),
            wait: None,
        }
    }

    /// Reads and runs commands and prints events until the session ends.
    async fn commands(&mut self, mut lines: Lines<BufReader<Stdin>>) -> End {
        loop {
            let idle = self.in_flight == 0 && self.wait.is_none();
            if (!self.stdin_open || self.quitting) && idle {
                return End::SignOut;
            }
            // One command at a time (see the module header).
            let read_stdin = self.stdin_open && !self.quitting && idle;
            let deadline = self.wait.as_ref().map(|w| w.deadline);
            // In this order: what the server sent before a request's
            // answer (the archive's messages before `/history`'s end, a
            // roster push before `/add`'s) is shown before the answer.
            tokio::select! {
                biased;
                ev = self.client.next_event() => {
                    if let Some(end) = self.event(ev).await {
                        return end;
                    }
                },
                Some(d) = self.done_rx.recv() => {
                    self.in_flight -= 1;
                    self.report(d);
                },
                line = lines.next_line(), if read_stdin => match line {
                    Ok(Some(line)) => self.line(&line),
                    Ok(None) | Err(_) => self.stdin_open = false,
                },
                _ = sleep_until(deadline) => self.wait_timed_out(),
            }
        }
    }

    /// Runs one input line.
    fn line(&mut self, line: &str) {
        let cmd = match Command::parse(line) {
            Ok(cmd) => cmd,
            Err(bad) => {
                let name = line.split_whitespace().next().unwrap_or("");
                self.failed = true;
                self.out.error(name, bad.to_string());
                return;
            }
        };
        match cmd {
            Command::Quit => self.quitting = true,
            Command::Wait {
                kind,
                from,
                seconds,
            } => self.start_wait(kind, from, seconds),
            other => {
                self.unregistering |= matches!(other, Command::Unregister);
                match execute(&self.client, &self.out, other, &mut self.current, line) {
                    Step::Done => {}
                    Step::Failed => self.failed = true,
                    Step::Pending(f) => {
                        self.in_flight += 1;
                        let tx = self.done_tx.clone();
                        tokio::spawn(async move {
                            let _ = tx.send(f.await);
                        });
                    }
                }
            }
        }
    }

    /// `/wait`: done at once when the backlog holds the event, otherwise
    /// waits for it (no further command runs meanwhile).
    fn start_wait(&mut self, kind: String, from: Option<String>, seconds: Duration) {
        let me = self.client.jid();
        let resolve = |f: String| {
            if kind.starts_with("room") {
                room_jid(me, &f)
            } else {
                parse_jid(&f, me.domain())
            }
        };
        let from = match from.map(resolve).transpose() {
            Ok(f) => f,
            Err(e) => {
                self.failed = true;
                self.out.error("/wait", e.to_string());
                return;
            }
        };
        if !self.backlog.take(&kind, &from) {
            let deadline = tokio::time::Instant::now() + seconds;
            self.wait = Some(Wait {
                kind,
                from,
                deadline,
            });
        }
    }

    fn wait_timed_out(&mut self) {
        if let Some(w) = self.wait.take() {
            self.failed = true;
            let from = w.from.map(|f| format!(" from {f}")).unwrap_or_default();
            self.out.error(
                "/wait",
                format!("timed out waiting for a {} event{from}", w.kind),
            );
        }
    }

    /// Prints a request's outcome.
    fn report(&mut self, d: Done) {
        match d.result {
            Ok(text) => {
                self.out.ok(&d.command, text);
                if d.quit {
                    self.quitting = true;
                }
            }
            Err(e) => {
                self.failed = true;
                self.out.error(&d.command, e.to_string());
            }
        }
    }

    /// Prints an event and hands it to the `/wait` in progress, or keeps it
    /// for a later one. Says when the session ends with it.
    async fn event(&mut self, ev: Option<ClientEvent>) -> Option<End> {
        let Some(ev) = ev else {
            return Some(if self.quitting {
                End::SignOut
            } else {
                End::Lost
            });
        };
        if self.out.shows(&ev) {
            self.out.print(&ev);
        }
        if let ClientEvent::Disconnected { .. } = ev {
            return Some(self.disconnected().await);
        }
        self.failed |= ev.is_failure();
        if self.wait.as_ref().is_some_and(|w| w.matches(&ev)) {
            self.wait = None;
        } else {
            self.backlog.push(&ev);
        }
        None
    }

    /// The connection ended (already printed).
    async fn disconnected(&mut self) -> End {
        if !self.unregistering {
            return if self.quitting {
                End::SignOut
            } else {
                End::Lost
            };
        }
        // After /unregister the server closes the stream itself, possibly
        // before we have the iq result (Prosody sends a not-authorized
        // stream error instead). Every request in flight ends now that the
        // connection is gone; whether the removal counts is `unregister`'s
        // call.
        let (closed_tx, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.done_tx, closed_tx));
        while let Some(d) = self.done_rx.recv().await {
            self.report(d);
        }
        End::Exit(self.outcome())
    }

    /// Closes our side, then keeps printing until the server closes its
    /// side: it has then handled (and answered) everything we sent.
    async fn sign_out(&mut self, name: &str) -> Outcome {
        self.client.start_close();
        let drain = async {
            while let Some(ev) = self.client.next_event().await {
                if matches!(ev, ClientEvent::Disconnected { reason: None }) {
                    break;
                }
                self.failed |= ev.is_failure();
                if self.out.shows(&ev) {
                    self.out.print(&ev);
                }
            }
        };
        if tokio::time::timeout(CLOSE_WAIT, drain).await.is_err() {
            eprintln!("{name}: the server did not close the stream in time");
        }
        self.outcome()
    }

    fn outcome(&self) -> Outcome {
        if self.failed {
            Outcome::Failed
        } else {
            Outcome::Done
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
