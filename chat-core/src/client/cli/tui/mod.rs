//! The terminal UI: the client as people use it by hand. It starts when
//! stdin and stdout are a terminal (`--line` keeps the line client).
//!
//! - `app`: what is shown, as data (windows, contacts, transfers, the
//!   connection), updated by client events.
//! - `input`: the input line (editing, history, Tab completion).
//! - `view`: drawing it with ratatui.
//!
//! This module runs the loop: keys, client events and finished commands
//! come in on their own queues, and nothing waits on the server while the
//! user types: every command that needs an answer runs in the background
//! (a file offer waits for the peer while the chat goes on). The commands
//! are the line client's own (`commands::execute`), their lines shown in
//! the window they were typed in.
//!
//! A connection lost for good (no stream management, or the server forgot
//! the session) shows in the status bar, and the client signs in again
//! with backoff and rejoins its rooms. The terminal is restored on every
//! way out: `/quit`, Ctrl-C, Ctrl-D, SIGTERM, SIGHUP, and a panic
//! (ratatui's hook).

mod app;
mod input;
mod view;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use protocol::Jid;
use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc;
use tokio::time::Instant;

use self::app::{App, CONSOLE, Kind, Tone, WinId};
use self::input::Input;
use self::view::Theme;
use super::command::Command;
use super::commands::{Done, Step, execute};
use super::format::{Out, Sink};
use super::session::{Outcome, sign_in};
use crate::client::api::Client;
use crate::client::connect::ConnectOptions;
use crate::client::error::ClientError;
use crate::client::event::{ChatState, ClientEvent, RosterItem};
use crate::client::sm::RETRY_WAITS;
use crate::transport::ClientTransport;

/// Commands Tab completes (those of the line client, and the UI's own).
const COMMANDS: &[&str] = &[
    "/accept",
    "/add",
    "/broadcast",
    "/chat",
    "/clear",
    "/close",
    "/destroy",
    "/help",
    "/history",
    "/join",
    "/leave",
    "/msg",
    "/nick",
    "/occupants",
    "/online",
    "/profile",
    "/quit",
    "/reject",
    "/remove",
    "/roster",
    "/rooms",
    "/say",
    "/search",
    "/sendfile",
    "/share",
    "/status",
    "/subject",
    "/typing",
    "/unregister",
    "/users",
    "/who",
    "/win",
];

/// What `/help` adds in the UI.
const UI_HELP: &str = "\
in this window:
  plain text             goes to the conversation shown (see the prompt)
  /win N | /win JID      show window N, or the conversation with JID
  /close                 close this window (leaving the room)
  /clear                 clear this window
keys: Alt-1..9 or Ctrl-N/Ctrl-P switch windows, PgUp/PgDn scroll,
      Up/Down history, Tab completes, Ctrl-L redraws, Ctrl-C quits";

/// After this long without a key, \"typing\" becomes \"paused\" (XEP-0085
/// suggests about 30 s for paused; people expect the indicator to go
/// sooner).
const PAUSED_AFTER: Duration = Duration::from_secs(5);

/// How long signing out may take before the client leaves anyway.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// Set when any thread panics: the UI ends (see [`run`]).
static PANICKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The local time zone's offset, read at start-up (see
/// [`remember_local_offset`]).
static LOCAL_OFFSET: OnceLock<time::UtcOffset> = OnceLock::new();

/// Reads the local time zone's offset for the UI's timestamps. Call it
/// while the process has one thread: `time` refuses to read the offset
/// later, because reading it races with another thread changing the
/// environment. Without it, times are UTC.
pub fn remember_local_offset() {
    if let Ok(off) = time::UtcOffset::current_local_offset() {
        let _ = LOCAL_OFFSET.set(off);
    }
}

/// `HH:MM`, local time.
fn clock() -> String {
    let off = LOCAL_OFFSET.get().copied().unwrap_or(time::UtcOffset::UTC);
    let now = time::OffsetDateTime::now_utc().to_offset(off);
    format!("{:02}:{:02}", now.hour(), now.minute())
}

/// A sign-in under way (after the connection was lost).
type SigningIn =
    Pin<Box<dyn Future<Output = Result<(Client, Vec<RosterItem>), ClientError>> + Send>>;

/// Signs in, then runs the UI until the user quits.
pub async fn run<T: ClientTransport>(
    name: &str,
    transport: T,
    mut opts: ConnectOptions,
    verbose: bool,
) -> Outcome {
    let (lines_tx, lines) = mpsc::unbounded_channel();
    let ui_out = UiOut {
        tx: lines_tx,
        verbose,
    };
    // Signed in before the screen changes: a wrong password or a server
    // that is down is said in the terminal as the line client says it.
    eprintln!("{name}: connecting to {} as {}...", opts.server, opts.jid);
    let (client, roster) = match sign_in(name, &transport, &opts, &ui_out.at(CONSOLE)).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: {}", protocol::display::Safe(&e.to_string()));
            return Outcome::Error;
        }
    };
    // An account is registered once; signing in again must not.
    opts.register = false;
    if client
        .link()
        .tls
        .as_ref()
        .is_some_and(|t| t.trust == Some(crate::transport::Trust::Insecure))
    {
        // Deliberately weak, said where the student looks, not only in the
        // terminal the UI now covers.
        ui_out.at(CONSOLE).text(
            "warning: --insecure: the server's certificate was NOT checked; anyone in the middle can pose as the server and read everything",
            true,
        );
    }
    let mut app = App::new(client.jid().clone(), clock);
    app.link = Some(client.link().clone());
    app.roster(roster);
    // After the sign-in's own lines (they come through the same queue).
    ui_out.at(CONSOLE).text(
        "type /help for commands; /chat JID or /join ROOM opens a conversation",
        false,
    );
    let mut terminal = match ratatui::try_init() {
        Ok(t) => {
            // ratatui's hook gives the terminal back on a panic; a panic in
            // a background task leaves the process running, so the UI
            // also learns of it and ends instead of drawing into a
            // terminal that is no longer raw.
            let restore = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                PANICKED.store(true, std::sync::atomic::Ordering::SeqCst);
                restore(info);
            }));
            t
        }
        Err(e) => {
            eprintln!("{name}: cannot start the terminal UI ({e}); try --line");
            client.close().await;
            return Outcome::Error;
        }
    };
    let (done_tx, done) = mpsc::unbounded_channel();
    let name = name.to_string();
    let again: Arc<dyn Fn() -> SigningIn + Send + Sync> = {
        let out = ui_out.at(CONSOLE);
        Arc::new(move || {
            let (transport, opts, out, name) =
                (transport.clone(), opts.clone(), out.clone(), name.clone());
            Box::pin(async move { sign_in(&name, &transport, &opts, &out).await })
        })
    };
    let mut ui = Ui {
        app,
        input: Input::default(),
        client,
        live: true,
        theme: Theme::from_env(),
        out: ui_out,
        done_tx,
        typing_to: None,
        last_key: Instant::now(),
        quitting: None,
        unregistered: false,
        clear: false,
        again,
        signing_in: None,
        retry_at: None,
        attempt: 0,
        left_behind: Vec::new(),
        outbox: Vec::new(),
        queued_total: 0,
    };
    let result = ui.run(&mut terminal, lines, done).await;
    ratatui::restore();
    if let Err(e) = result {
        eprintln!("chat client: the terminal failed: {e}");
    }
    ui.sign_out().await;
    Outcome::Done
}

/// Makes the [`Out`] each command prints through: its lines go to the
/// window it was typed in.
struct UiOut {
    tx: mpsc::UnboundedSender<(WinId, String, bool)>,
    verbose: bool,
}

impl UiOut {
    fn at(&self, win: WinId) -> Out {
        let tx = self.tx.clone();
        Out {
            json: false,
            verbose: self.verbose,
            echoed: true,
            sink: Sink::Window(Arc::new(move |line, error| {
                let _ = tx.send((win, line, error));
            })),
        }
    }
}

/// The loop's state.
struct Ui {
    app: App,
    input: Input,
    client: Client,
    /// The client's events still come (false once its queue ended).
    live: bool,
    theme: Theme,
    out: UiOut,
    done_tx: mpsc::UnboundedSender<(WinId, Done)>,
    /// Whom we told we are typing (XEP-0085), and when the last key was.
    typing_to: Option<Jid>,
    last_key: Instant,
    /// Signing out: leave at this time at the latest.
    quitting: Option<Instant>,
    /// The account was deleted: nothing to sign in to again.
    unregistered: bool,
    /// Redraw every cell (something may have written over the screen).
    clear: bool,
    /// Signs in again after the connection was lost for good.
    again: Arc<dyn Fn() -> SigningIn + Send + Sync>,
    signing_in: Option<SigningIn>,
    retry_at: Option<Instant>,
    attempt: usize,
    /// Messages of a session that ended unresumed which its server never
    /// acknowledged: sent again once signed in again.
    left_behind: Vec<protocol::Element>,
    /// Lines typed while there was no session, oldest first.
    outbox: Vec<Queued>,
    /// How many were ever queued (their local ids stay unique).
    queued_total: usize,
}

/// A line typed while there was no session.
struct Queued {
    to: Jid,
    text: String,
    /// The id it is shown under until it is sent.
    local: String,
    room: bool,
}

impl Ui {
    async fn run(
        &mut self,
        terminal: &mut DefaultTerminal,
        mut lines: mpsc::UnboundedReceiver<(WinId, String, bool)>,
        mut done: mpsc::UnboundedReceiver<(WinId, Done)>,
    ) -> std::io::Result<()> {
        let mut keys = key_reader();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut term = signal(tokio::signal::unix::SignalKind::terminate());
        let mut hangup = signal(tokio::signal::unix::SignalKind::hangup());
        // Drawn when something may have changed, not on every tick: an
        // idle client on sixty laptops should cost nothing.
        let mut dirty = true;
        loop {
            if PANICKED.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(std::io::Error::other(
                    "a part of the client failed (the message is above); signing out",
                ));
            }
            if std::mem::take(&mut self.clear) {
                terminal.clear()?;
            }
            if std::mem::take(&mut dirty) {
                // End to end is per conversation: the shown one's state
                // (which can change with any event: a new device, /verify).
                let shown = self.app.shown();
                self.app.e2e = match shown.kind {
                    Kind::Chat => shown.jid.as_ref().and_then(|j| self.client.e2e_state(j)),
                    _ => None,
                };
                terminal.draw(|f| view::draw(f, &self.app, &self.input, self.theme))?;
            }
            if self.quitting.is_some_and(|t| Instant::now() >= t)
                || (self.quitting.is_some() && !self.live)
            {
                return Ok(());
            }
            tokio::select! {
                k = keys.recv() => match k {
                    Some(ev) => self.terminal_event(ev),
                    None => self.quit(),
                },
                ev = self.client.next_event(), if self.live => self.client_event(ev),
                Some((win, line, error)) = lines.recv() => {
                    let tone = if error { Tone::Error } else { Tone::Info };
                    self.app.say(win, tone, &line);
                }
                Some((win, d)) = done.recv() => self.done(win, d),
                r = poll_opt(&mut self.signing_in) => self.signed_in_again(r),
                () = sleep_opt(self.retry_at) => {
                    self.retry_at = None;
                    self.signing_in = Some((self.again)());
                }
                _ = tick.tick() => {
                    // Nothing on screen moves with time alone.
                    self.tick();
                    continue;
                }
                _ = recv_opt(&mut term) => self.quit(),
                _ = recv_opt(&mut hangup) => self.quit(),
            }
            dirty = true;
        }
    }

    /// A key, a resize.
    fn terminal_event(&mut self, ev: Event) {
        match ev {
            Event::Key(k) if k.kind == KeyEventKind::Press || k.kind == KeyEventKind::Repeat => {
                self.key(k)
            }
            Event::Paste(text) => self.input.insert_str(&text),
            // The next draw fits the new size.
            Event::Resize(..) => self.clear = true,
            _ => {}
        }
    }

    fn key(&mut self, k: KeyEvent) {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        let alt = k.modifiers.contains(KeyModifiers::ALT);
        let before = self.input.text();
        match k.code {
            KeyCode::Char('c') if ctrl => self.quit(),
            KeyCode::Char('d') if ctrl && self.input.is_empty() => self.quit(),
            KeyCode::Char('d') if ctrl => self.input.delete(),
            KeyCode::Char('a') if ctrl => self.input.home(),
            KeyCode::Char('e') if ctrl => self.input.end(),
            KeyCode::Char('u') if ctrl => self.input.kill_before(),
            KeyCode::Char('k') if ctrl => self.input.kill_after(),
            KeyCode::Char('w') if ctrl => self.input.kill_word(),
            KeyCode::Char('l') if ctrl => self.clear = true,
            KeyCode::Char('n') if ctrl => self.switch(|a| a.cycle(true)),
            KeyCode::Char('p') if ctrl => self.switch(|a| a.cycle(false)),
            KeyCode::Char(d @ '0'..='9') if alt => {
                let n = d
                    .to_digit(10)
                    .map_or(0, |n| if n == 0 { 10 } else { n as usize });
                self.switch(|a| {
                    a.focus_nth(n);
                });
            }
            KeyCode::Right if alt => self.switch(|a| a.cycle(true)),
            KeyCode::Left if alt => self.switch(|a| a.cycle(false)),
            KeyCode::Char(c) if !ctrl && !alt => self.input.insert(c),
            KeyCode::Enter => self.enter(),
            KeyCode::Backspace => self.input.backspace(),
            KeyCode::Delete => self.input.delete(),
            KeyCode::Left => self.input.left(),
            KeyCode::Right => self.input.right(),
            KeyCode::Home => self.input.home(),
            KeyCode::End => self.input.end(),
            KeyCode::Up => self.input.older(),
            KeyCode::Down => self.input.newer(),
            KeyCode::Tab => {
                let mut names = self.app.completions();
                if self.input.text().starts_with("/win ") {
                    names.extend(self.app.windows.iter().map(|w| w.label()));
                }
                // A nickname at the start of a line in a room addresses
                // that person: "bob: ".
                let room_nicks: Vec<String> = self.app.shown().occupants.keys().cloned().collect();
                self.input.complete(COMMANDS, &names, &room_nicks);
            }
            KeyCode::PageUp => self.app.scroll(10),
            KeyCode::PageDown => self.app.scroll(-10),
            _ => {}
        }
        if self.input.text() != before {
            self.typed();
        }
    }

    /// Switches windows; typing stops where it was.
    fn switch(&mut self, f: impl FnOnce(&mut App)) {
        self.stop_typing(ChatState::Paused);
        f(&mut self.app);
    }

    /// The input changed: tell the contact shown that we type (XEP-0085),
    /// once, and that we stopped when the line is emptied.
    fn typed(&mut self) {
        self.last_key = Instant::now();
        let w = self.app.shown();
        let to = match (&w.kind, &w.jid) {
            (Kind::Chat, Some(j)) => j.clone(),
            _ => return,
        };
        let text = self.input.text();
        if text.is_empty() || text.starts_with('/') {
            self.stop_typing(ChatState::Active);
            return;
        }
        // Only to a contact online: a chat state to someone offline would
        // be a message without a body for the server to keep.
        let online = self
            .app
            .contacts
            .get(&to)
            .is_some_and(|c| c.presence().is_some());
        if self.typing_to.as_ref() != Some(&to) && online {
            self.stop_typing(ChatState::Paused);
            if self
                .client
                .send_chat_state(&to, ChatState::Composing)
                .is_ok()
            {
                self.typing_to = Some(to);
            }
        }
    }

    fn stop_typing(&mut self, state: ChatState) {
        if let Some(to) = self.typing_to.take() {
            let _ = self.client.send_chat_state(&to, state);
        }
    }

    fn tick(&mut self) {
        if self.typing_to.is_some() && self.last_key.elapsed() >= PAUSED_AFTER {
            self.stop_typing(ChatState::Paused);
        }
    }

    /// Enter: a UI command, a line client command, or a message to the
    /// conversation shown.
    fn enter(&mut self) {
        let line = self.input.take();
        let win = self.app.active;
        let trimmed = line.trim();
        let (head, rest) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
        match head {
            "/win" => return self.win(rest.trim()),
            "/close" => return self.close(),
            "/clear" => {
                let id = self.app.active;
                if let Some(i) = self.app.windows.iter().position(|w| w.id == id) {
                    self.app.windows[i].lines.clear();
                    self.app.windows[i].scroll = 0;
                }
                return;
            }
            _ => {}
        }
        let shown = self.app.shown();
        let (kind, jid) = (shown.kind, shown.jid.clone());
        // Commands about a conversation default to the one shown.
        let line = match (head, rest.trim().is_empty(), &jid) {
            ("/occupants" | "/leave" | "/destroy", true, Some(room)) if kind == Kind::Room => {
                format!("{head} {room}")
            }
            ("/history", true, Some(j)) => format!("/history {j}"),
            _ => line,
        };
        let cmd = match Command::parse(&line) {
            Ok(c) => c,
            Err(bad) => return self.app.say(win, Tone::Error, &format!("error: {bad}")),
        };
        match cmd {
            Command::Empty => {}
            Command::Quit => self.quit(),
            Command::Wait { .. } => self.app.say(
                win,
                Tone::Error,
                "error: /wait is for scripts (the line client: --line)",
            ),
            Command::Text(text) => match (kind, jid) {
                (Kind::Console, _) | (_, None) => self.app.say(
                    win,
                    Tone::Error,
                    "error: this is the console: /chat JID or /join ROOM opens a conversation (or /msg JID TEXT)",
                ),
                (Kind::Room, Some(room)) => self.say_in(&room, &text),
                (Kind::Chat, Some(to)) => self.message(&to, &text),
            },
            Command::Msg(to, text) => match super::commands::parse_jid(&to, self.app.me.domain()) {
                Ok(to) if self.app.is_room(&to) => self.say_in(&to, &text),
                Ok(to) => {
                    let id = self.app.open(&to);
                    self.app.focus(id);
                    self.message(&to, &text);
                }
                Err(e) => self.app.say(win, Tone::Error, &format!("error: {e}")),
            },
            Command::Say(room, text) => match crate::client::rooms::room_jid(&self.app.me, &room) {
                Ok(room) => self.say_in(&room, &text),
                Err(e) => self.app.say(win, Tone::Error, &format!("error: {e}")),
            },
            other => {
                let help = matches!(other, Command::Help);
                if let Command::SendFile(to, path, _) | Command::Share(to, path, _) = &other {
                    self.app.say(
                        win,
                        Tone::Info,
                        &format!(
                            "{path} for {to}: under way in the background; the answer will show here"
                        ),
                    );
                }
                if matches!(other, Command::Unregister) {
                    self.unregistered = true;
                }
                let out = self.out.at(win);
                let mut current = jid.clone();
                match execute(&self.client, &out, other, &mut current, &line) {
                    Step::Done | Step::Failed => {}
                    Step::Pending(f) => {
                        let tx = self.done_tx.clone();
                        tokio::spawn(async move {
                            let _ = tx.send((win, f.await));
                        });
                    }
                }
                if help {
                    out.lines(UI_HELP);
                }
                // `/chat` and `/join` open the conversation they name.
                if current != jid
                    && let Some(j) = current
                {
                    let id = self.app.open(&j);
                    self.app.focus(id);
                }
            }
        }
    }

    /// A message to a contact, shown at once; ticked by its receipt.
    /// Without a session it waits in the outbox.
    fn message(&mut self, to: &Jid, text: &str) {
        // The message itself says "active" (XEP-0085).
        self.typing_to = None;
        if !self.live {
            return self.queue(to, text, false);
        }
        match self.client.send_message(to, text) {
            Ok(id) => self.app.sent(to, id, text),
            Err(e) => self
                .app
                .say(self.app.active, Tone::Error, &format!("error: {e}")),
        }
    }

    /// Something said in a room, shown at once; ticked when the room
    /// sends it back. Without a session it waits in the outbox until the
    /// room is joined again.
    fn say_in(&mut self, room: &Jid, text: &str) {
        if !self.live {
            return self.queue(room, text, true);
        }
        match self.client.say(room, text) {
            Ok(id) => self.app.sent(room, id, text),
            Err(e) => self
                .app
                .say(self.app.active, Tone::Error, &format!("error: {e}")),
        }
    }

    /// A line typed while there is no session: shown (not yet ticked) and
    /// kept, to go once signed in again (see [`Ui::flush`]); nothing typed
    /// is lost.
    fn queue(&mut self, to: &Jid, text: &str, room: bool) {
        let local = format!("queued-{}", self.outbox.len() + self.queued_total);
        self.queued_total += 1;
        self.app.sent(to, local.clone(), text);
        self.outbox.push(Queued {
            to: to.clone(),
            text: text.to_string(),
            local,
            room,
        });
        if self.outbox.len() == 1 {
            self.app.say(
                self.app.active,
                Tone::Info,
                "not connected: kept, and sent once signed in again",
            );
        }
    }

    /// Sends what waited in the outbox: direct messages (`room` `None`),
    /// or what was said in `room` once it is joined again.
    fn flush(&mut self, room: Option<&Jid>) {
        if !self.live {
            return;
        }
        let (now, later): (Vec<Queued>, Vec<Queued>) = std::mem::take(&mut self.outbox)
            .into_iter()
            .partition(|q| match room {
                None => !q.room,
                Some(r) => q.room && q.to == *r,
            });
        self.outbox = later;
        for q in now {
            let sent = if q.room {
                self.client.say(&q.to, &q.text)
            } else {
                self.client.send_message(&q.to, &q.text)
            };
            match sent {
                Ok(id) => self.app.rekey(&q.to, &q.local, id),
                Err(e) => {
                    self.app.not_delivered(&q.to, &q.local);
                    self.app.say(CONSOLE, Tone::Error, &format!("error: {e}"));
                }
            }
        }
    }

    /// `/win N` or `/win JID`.
    fn win(&mut self, which: &str) {
        if which.is_empty() {
            return self.app.say(
                self.app.active,
                Tone::Error,
                "error: usage: /win N or /win JID",
            );
        }
        if let Ok(n) = which.parse::<usize>() {
            if !self.app.focus_nth(n) {
                let count = self.app.windows.len();
                self.app.say(
                    self.app.active,
                    Tone::Error,
                    &format!("error: there are {count} windows"),
                );
            }
            return;
        }
        let found = self.app.windows.iter().find(|w| {
            w.label() == which
                || w.jid
                    .as_ref()
                    .is_some_and(|j| j.to_string() == which || j.local() == Some(which))
        });
        match found {
            Some(w) => {
                let id = w.id;
                self.switch(|a| a.focus(id));
            }
            None => self.app.say(
                self.app.active,
                Tone::Error,
                &format!("error: no window '{which}' (/chat JID opens one)"),
            ),
        }
    }

    /// `/close`: closes the window shown, leaving its room.
    fn close(&mut self) {
        self.stop_typing(ChatState::Gone);
        match self.app.close_shown() {
            Some(w) if w.kind == Kind::Room && w.joined => {
                if let Some(room) = w.jid {
                    let _ = self.client.leave_room(&room);
                }
            }
            Some(_) => {}
            None => self.app.say(
                CONSOLE,
                Tone::Error,
                "error: the console stays open (/quit to leave)",
            ),
        }
    }

    /// A command's answer came.
    fn done(&mut self, win: WinId, d: Done) {
        if d.command == "/sendfile" || d.command == "/share" {
            let text = match &d.result {
                Ok(t) => t.clone(),
                Err(e) => e.to_string(),
            };
            self.app.send_ended(&text);
        }
        match d.result {
            Ok(text) => {
                self.app.say(win, Tone::Info, &format!("ok: {text}"));
                if d.quit {
                    self.quit();
                }
            }
            Err(e) => {
                if d.quit {
                    self.unregistered = false;
                }
                self.app.say(win, Tone::Error, &format!("error: {e}"));
            }
        }
    }

    fn client_event(&mut self, ev: Option<ClientEvent>) {
        let Some(ev) = ev else {
            self.live = false;
            self.lost();
            return;
        };
        // Whatever went to stderr meanwhile (a reconnection's warnings)
        // is painted over.
        if matches!(
            ev,
            ClientEvent::Reconnecting { .. }
                | ClientEvent::Resumed { .. }
                | ClientEvent::Disconnected { .. }
        ) {
            self.clear = true;
        }
        self.app.event(&ev);
        if let ClientEvent::RoomJoined { room, .. } = &ev {
            self.flush(Some(room));
        }
        if let ClientEvent::Disconnected { .. } = ev {
            self.left_behind = self.client.unacknowledged_messages();
            self.live = false;
            self.lost();
        }
    }

    /// The session is gone: sign in again later, unless we are leaving.
    fn lost(&mut self) {
        self.typing_to = None;
        if self.quitting.is_some()
            || self.unregistered
            || self.signing_in.is_some()
            || self.retry_at.is_some()
        {
            return;
        }
        self.retry();
    }

    fn retry(&mut self) {
        let wait = RETRY_WAITS[self.attempt.min(RETRY_WAITS.len() - 1)];
        self.attempt += 1;
        self.retry_at = Some(Instant::now() + wait);
        if let app::Conn::Offline(why) = &self.app.conn {
            let why = why.clone();
            self.app.conn = app::Conn::Reconnecting(why);
        }
    }

    /// A new sign-in ended.
    fn signed_in_again(&mut self, r: Result<(Client, Vec<RosterItem>), ClientError>) {
        self.signing_in = None;
        self.clear = true;
        match r {
            Ok((client, roster)) => {
                self.client = client;
                self.live = true;
                self.attempt = 0;
                self.app.link = Some(self.client.link().clone());
                self.app.conn = app::Conn::Online;
                self.app.roster(roster);
                // Rooms are per session: join again those we were in.
                let rooms: Vec<(Jid, String)> = self
                    .app
                    .windows
                    .iter()
                    .filter(|w| w.kind == Kind::Room && w.joined)
                    .filter_map(|w| Some((w.jid.clone()?, w.nick.clone()?)))
                    .collect();
                for (room, nick) in rooms {
                    let fut = self.client.join_room(&room, &nick);
                    let tx = self.done_tx.clone();
                    let win = self.app.open(&room);
                    tokio::spawn(async move {
                        let result = fut.await.map(|_| format!("back in {room} as {nick}"));
                        let _ = tx.send((
                            win,
                            Done {
                                command: "/join".into(),
                                result,
                                quit: false,
                            },
                        ));
                    });
                }
                self.app.say(CONSOLE, Tone::Info, "signed in again");
                self.send_left_behind();
                self.flush(None);
            }
            Err(e) if e.is_network_trouble() => {
                self.app.say(
                    CONSOLE,
                    Tone::Error,
                    &format!("signing in again failed: {e}"),
                );
                self.retry();
            }
            Err(e) => {
                // The server said no (a deleted account, a changed
                // password, a certificate that no longer verifies): it
                // would say no again.
                let why = format!("cannot sign in again: {e}");
                self.app.say(CONSOLE, Tone::Error, &why);
                self.app.conn = app::Conn::Offline(format!("{why}; /quit"));
            }
        }
    }

    /// What the last session's server never acknowledged: a message to a
    /// contact goes again on the new session (its receipt ticks it; the
    /// same id lets the peer's client drop a copy); one to a room waits in
    /// the outbox until the room is joined again (it would refuse it
    /// before).
    fn send_left_behind(&mut self) {
        let mut again = 0;
        for el in std::mem::take(&mut self.left_behind) {
            let to = el.get_attr("to").and_then(|t| Jid::parse(t).ok());
            let id = el.get_attr("id").map(str::to_string);
            let groupchat = el.get_attr("type") == Some("groupchat");
            match (to, groupchat) {
                (Some(to), true) => {
                    if let (Some(local), Some(text)) =
                        (id, el.child_text("body", protocol::ns::CLIENT))
                    {
                        self.outbox.push(Queued {
                            to,
                            text: text.to_string(),
                            local,
                            room: true,
                        });
                    }
                }
                (Some(_), false) => {
                    if self.client.send(&el).is_ok() {
                        again += 1;
                    }
                }
                (None, _) => {}
            }
        }
        if again > 0 {
            self.app.say(
                CONSOLE,
                Tone::Info,
                &format!("{again} message(s) the server had not acknowledged were sent again"),
            );
        }
    }

    /// Starts signing out (the loop ends once the server closed, or after
    /// [`CLOSE_WAIT`]).
    fn quit(&mut self) {
        if self.quitting.is_some() {
            return;
        }
        self.stop_typing(ChatState::Gone);
        self.quitting = Some(Instant::now() + CLOSE_WAIT);
        if self.live {
            self.client.start_close();
            self.app.say(self.app.active, Tone::Info, "signing out...");
        }
    }

    /// After the loop: the server closes its side (it has then handled
    /// everything we sent), or we stop waiting.
    async fn sign_out(&mut self) {
        if !self.live {
            return;
        }
        self.client.start_close();
        let drain = async {
            while let Some(ev) = self.client.next_event().await {
                if matches!(ev, ClientEvent::Disconnected { .. }) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_WAIT, drain).await;
    }
}

/// Keys and resizes, read on a thread of their own (crossterm's reads
/// block); it stops when the UI is gone.
fn key_reader() -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel(256);
    std::thread::spawn(move || {
        loop {
            match event::poll(Duration::from_millis(200)) {
                Ok(true) => match event::read() {
                    Ok(ev) => {
                        if tx.blocking_send(ev).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                },
                Ok(false) if tx.is_closed() => break,
                Ok(false) => {}
                Err(_) => break,
            }
        }
    });
    rx
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).ok()
}

async fn recv_opt(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn poll_opt<T>(f: &mut Option<Pin<Box<dyn Future<Output = T> + Send>>>) -> T {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}
