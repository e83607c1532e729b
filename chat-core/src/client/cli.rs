//! The line client: interactive on a terminal, scripted otherwise.
//!
//! Commands come one per line from stdin and run one after the other (each
//! waits for the server's answer to the one before); events print one per
//! line as they happen (`--json`: one JSON object per line, with a `type` field). When
//! stdin ends, the client waits for its outstanding requests, signs out, and
//! exits 0, or 1 if any command failed. Connection failures exit 2.
//!
//! Every text line goes through [`protocol::display::Safe`]: bodies,
//! statuses, nicknames, subjects, file names, error texts and JIDs all come
//! from the network, and a terminal obeys the escape sequences in them
//! (clear the screen, write the clipboard with OSC 52, set the window
//! title), and a newline in a body forges a whole event line such as
//! `message from bank@localhost/web: …`. `--json` output is left exact: JSON
//! escapes control characters itself.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::time::Duration;

use protocol::display::Safe;
use protocol::stanza::{PresenceType, Show};
use protocol::{Jid, outln};
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use super::directory::UserEntry;
use super::rooms::{muc_domain, room_jid};
use super::{Client, ClientError, ClientEvent, ConnectOptions, RosterItem, connect};
use crate::transport::ClientTransport;

/// Events kept for `/wait` to match later (only their type and sender, not
/// their text). At the bound the oldest is forgotten. A JID is at most about
/// 3 KiB, so this is at most about 12 MiB even when a hostile server sends
/// the longest JIDs it can; it used to hold 10,000 whole events, bodies
/// included, up to 640 MiB.
const BACKLOG: usize = 4096;

/// How long `/wait` waits by default.
const WAIT_DEFAULT: Duration = Duration::from_secs(10);

const HELP: &str = "\
commands:
  /msg JID TEXT          send a direct message (asks for a delivery receipt)
  /chat JID              talk to JID: plain lines then go to them
  /add JID               add a contact and ask to see their presence
  /remove JID            remove a contact
  /roster                list your contacts
  /status [away|dnd|xa|chat] [TEXT]   set your status
  /who                   list contacts online now
  /join ROOM [NICK]      join (or create) a room; plain lines then go to it
  /rooms                 list the server's rooms
  /say ROOM TEXT         say something in a room
  /subject ROOM TEXT     set a room's subject
  /occupants ROOM        who is in a room
  /leave ROOM            leave a room
  /destroy ROOM [REASON] destroy a room you own (everyone in it is told)
  /users                 list every registered user
  /search TERM           find users by user name, display name or email
  /profile [name NAME] [email EMAIL]  set (or show) your public profile
  /online                users online now (up to 100)
  /broadcast TEXT        announce to everyone online (admins only)
  /sendfile JID PATH [as NAME]  offer a file (under another name) and send
                         it once accepted
  /accept [SID]          accept a file offer (the latest by default)
  /reject [SID]          refuse a file offer (the latest by default)
  /unregister            delete your account and quit
  /wait TYPE [JID] [SECONDS]  wait for an event (message, receipt, presence,
                         subscribe, subscription, roster, room-joined,
                         room-message, room-presence...); for scripts
  /help                  this list
  /quit                  sign out";

/// Where output goes, in text or JSON.
struct Out {
    json: bool,
}

impl Out {
    /// Prints one line: in text mode made safe for a terminal, since the
    /// text holds peer-supplied strings.
    fn line(&self, text: String, value: serde_json::Value) {
        if self.json {
            outln!("{value}");
        } else {
            outln!("{}", Safe(&text));
        }
    }

    fn event(&self, ev: &ClientEvent) {
        let (text, value) = render(ev);
        self.line(text, value);
    }

    fn ok(&self, command: &str, text: String) {
        self.line(
            format!("ok: {text}"),
            json!({"type": "ok", "command": command, "detail": text}),
        );
    }

    fn error(&self, command: &str, text: String) {
        if self.json {
            outln!(
                "{}",
                json!({"type": "error", "command": command, "error": text})
            );
        } else {
            outln!("error: {}", Safe(&text));
        }
    }
}

/// An event as a text line (not yet made terminal-safe) and as JSON.
fn render(ev: &ClientEvent) -> (String, serde_json::Value) {
    let kind = ev.kind();
    match ev {
        ClientEvent::Message {
            from,
            body,
            id,
            kind: mk,
            delayed,
        } => (
            match delayed {
                Some(t) => {
                    format!("message from {from} (sent {t}, kept while you were offline): {body}")
                }
                None => format!("message from {from}: {body}"),
            },
            json!({"type": kind, "from": from.to_string(), "body": body, "id": id,
                       "message_type": mk.as_str(), "delayed": delayed}),
        ),
        ClientEvent::Receipt { from, id } => (
            format!("receipt from {from}: message {id} was delivered"),
            json!({"type": kind, "from": from.to_string(), "id": id}),
        ),
        ClientEvent::Presence {
            from,
            available,
            show,
            status,
        } => {
            let show_s = show.map(Show::as_str);
            let mut t = format!(
                "presence {from} {}",
                if *available { "online" } else { "offline" }
            );
            if let Some(s) = show_s {
                t.push_str(&format!(" [{s}]"));
            }
            if let Some(s) = status {
                t.push_str(&format!(": {s}"));
            }
            (
                t,
                json!({"type": kind, "from": from.to_string(), "available": available,
                           "show": show_s, "status": status}),
            )
        }
        ClientEvent::SubscriptionRequest {
            from,
            auto_approved,
        } => (
            if *auto_approved {
                format!("subscription request from {from}: approved (you added them too)")
            } else {
                format!("subscription request from {from}: type /add {from} to accept")
            },
            json!({"type": kind, "from": from.to_string(), "auto_approved": auto_approved}),
        ),
        ClientEvent::Subscription { from, kind: pk } => (
            match pk {
                PresenceType::Subscribed => {
                    format!("subscription: {from} accepted your request")
                }
                PresenceType::Unsubscribed => {
                    format!("subscription: {from} cancelled your subscription")
                }
                _ => format!("subscription: {from} unsubscribed from you"),
            },
            json!({"type": kind, "from": from.to_string(), "subscription": pk.as_str()}),
        ),
        ClientEvent::RosterPush(item) => {
            (format!("roster {}", roster_text(item)), roster_json(item))
        }
        ClientEvent::RosterRemoved(jid) => (
            format!("roster {jid} removed"),
            json!({"type": kind, "jid": jid.to_string(), "subscription": "remove"}),
        ),
        ClientEvent::MessageError {
            from,
            id,
            condition,
            text,
        } => (
            format!(
                "error: message {} to {} failed: {condition}{}",
                id.as_deref().unwrap_or("?"),
                from.as_ref().map_or("?".to_string(), Jid::to_string),
                text.as_ref().map(|t| format!(" ({t})")).unwrap_or_default()
            ),
            json!({"type": kind, "to": from.as_ref().map(Jid::to_string), "id": id,
                       "condition": condition, "text": text}),
        ),
        ClientEvent::FileOffer {
            from,
            sid,
            name,
            size,
        } => (
            format!(
                "file offer from {from}: {name} ({size} bytes); /accept {sid} or /reject {sid}"
            ),
            json!({"type": kind, "from": from.to_string(), "sid": sid, "name": name, "size": size}),
        ),
        ClientEvent::FileProgress {
            sid,
            name,
            sending,
            bytes,
            total,
        } => (
            format!(
                "file {name}: {} {bytes} of {total} bytes ({}%)",
                if *sending { "sent" } else { "received" },
                bytes * 100 / (*total).max(1)
            ),
            json!({"type": kind, "sid": sid, "name": name, "sending": sending,
                       "bytes": bytes, "total": total}),
        ),
        ClientEvent::FileReceived(d) => (
            format!(
                "file received from {}: {} ({} bytes, sha256 {}) saved as {}",
                d.peer,
                d.name,
                d.size,
                d.sha256,
                d.path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            json!({"type": kind, "from": d.peer.to_string(), "sid": d.sid, "name": d.name,
                       "size": d.size, "sha256": d.sha256,
                       "path": d.path.as_ref().map(|p| p.display().to_string())}),
        ),
        ClientEvent::FileFailed {
            sid,
            name,
            sending,
            reason,
        } => (
            format!(
                "file {name} {}: {reason}",
                if *sending { "not sent" } else { "not received" }
            ),
            json!({"type": kind, "sid": sid, "name": name, "sending": sending, "reason": reason}),
        ),
        ClientEvent::Announcement { subject, body } => (
            format!(
                "announcement{}: {body}",
                subject
                    .as_ref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default()
            ),
            json!({"type": kind, "subject": subject, "body": body}),
        ),
        ClientEvent::RoomJoined {
            room,
            nick,
            created,
            occupants,
        } => (
            format!(
                "joined {room} as {nick}{}; here: {}",
                if *created {
                    " (new room: you own it)"
                } else {
                    ""
                },
                occupants.join(", ")
            ),
            json!({"type": kind, "room": room.to_string(), "nick": nick,
                       "created": created, "occupants": occupants}),
        ),
        ClientEvent::RoomPresence {
            room,
            nick,
            joined,
            available,
            show,
            status,
        } => {
            let show_s = show.map(Show::as_str);
            let what = if !available {
                "left".to_string()
            } else if *joined {
                "joined".to_string()
            } else {
                format!("is now {}", show_s.unwrap_or("available"))
            };
            (
                format!(
                    "{room}: {nick} {what}{}",
                    status
                        .as_ref()
                        .map(|s| format!(": {s}"))
                        .unwrap_or_default()
                ),
                json!({"type": kind, "room": room.to_string(), "nick": nick, "joined": joined,
                           "available": available, "show": show_s, "status": status}),
            )
        }
        ClientEvent::RoomMessage {
            room,
            nick,
            body,
            id,
            delayed,
        } => (
            format!(
                "[{room}] {}{}: {body}",
                nick.as_deref().unwrap_or("(room)"),
                delayed
                    .as_ref()
                    .map(|t| format!(" (at {t})"))
                    .unwrap_or_default()
            ),
            json!({"type": kind, "room": room.to_string(), "nick": nick, "body": body,
                       "id": id, "delayed": delayed}),
        ),
        ClientEvent::RoomSubject {
            room,
            nick,
            subject,
        } => (
            if subject.is_empty() {
                format!("{room}: no subject")
            } else {
                format!(
                    "{room}: subject: {subject}{}",
                    nick.as_ref()
                        .map(|n| format!(" (set by {n})"))
                        .unwrap_or_default()
                )
            },
            json!({"type": kind, "room": room.to_string(), "nick": nick, "subject": subject}),
        ),
        ClientEvent::RoomLeft { room, destroyed } => (
            match &destroyed {
                None => format!("left {room}"),
                Some(r) if r.is_empty() => format!("left {room}: its owner destroyed it"),
                Some(r) => format!("left {room}: its owner destroyed it ({r})"),
            },
            json!({"type": kind, "room": room.to_string(), "destroyed": destroyed.is_some(),
                   "reason": destroyed}),
        ),
        ClientEvent::StanzaTooLarge { limit } => (
            format!(
                "error: the server sent a stanza larger than the {limit}-byte limit; it was skipped"
            ),
            json!({"type": kind, "limit": limit}),
        ),
        ClientEvent::EventsDropped { count } => (
            format!(
                "warning: {count} event(s) dropped: the server sent them faster than they could be shown"
            ),
            json!({"type": kind, "count": count}),
        ),
        ClientEvent::Disconnected { reason } => (
            format!(
                "disconnected{}",
                reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
            json!({"type": kind, "reason": reason}),
        ),
    }
}

fn roster_text(i: &RosterItem) -> String {
    format!(
        "{} subscription={}{}{}",
        i.jid,
        i.subscription,
        if i.ask { " (request pending)" } else { "" },
        i.name
            .as_ref()
            .map(|n| format!(" name={n}"))
            .unwrap_or_default()
    )
}

fn roster_json(i: &RosterItem) -> serde_json::Value {
    json!({"type": "roster", "jid": i.jid.to_string(), "subscription": i.subscription,
           "ask": i.ask, "name": i.name})
}

/// An in-flight request's result.
struct Done {
    command: String,
    result: Result<String, ClientError>,
    /// `/unregister` ends the session when it succeeds.
    quit: bool,
}

/// A pending `/wait`.
struct Wait {
    kind: String,
    from: Option<Jid>,
    deadline: tokio::time::Instant,
}

fn matches(ev: &ClientEvent, kind: &str, from: &Option<Jid>) -> bool {
    matches_kind(ev.kind(), ev.from(), kind, from)
}

/// Whether an event of type `ev_kind` from `ev_from` is what a `/wait` for
/// `kind` from `from` waits for.
fn matches_kind(ev_kind: &str, ev_from: Option<&Jid>, kind: &str, from: &Option<Jid>) -> bool {
    if ev_kind != kind {
        return false;
    }
    match (from, ev_from) {
        (None, _) => true,
        (Some(want), Some(got)) => {
            if want.is_bare() {
                got.to_bare() == *want
            } else {
                got == want
            }
        }
        (Some(_), None) => false,
    }
}

/// Connects and runs the client; returns the exit code.
pub async fn run<T: ClientTransport>(
    name: &str,
    transport: T,
    opts: ConnectOptions,
    json: bool,
) -> u8 {
    let out = Out { json };
    let mut client = match connect(&transport, &opts).await {
        Ok(c) => c,
        Err(e) => {
            // The error can quote the server (a stream error's text).
            eprintln!("{name}: {}", Safe(&e.to_string()));
            return crate::cli::EXIT_ERROR;
        }
    };
    if opts.register {
        out.line(
            format!("registered {}", opts.jid.to_bare()),
            json!({"type": "registered", "jid": opts.jid.to_bare().to_string()}),
        );
    }
    out.line(
        format!(
            "signed in as {} with {} over {}",
            client.jid(),
            client.mechanism().name(),
            if client.is_secure() {
                "TLS"
            } else {
                "plaintext"
            }
        ),
        json!({"type": "connected", "jid": client.jid().to_string(),
               "mechanism": client.mechanism().name(), "encrypted": client.is_secure()}),
    );
    if !client.is_secure() {
        // The plaintext twin, said where it happens.
        eprintln!(
            "{name}: warning: this connection is NOT encrypted; anyone on the network path can read and change it"
        );
    }
    // Roster first, so the client knows its contacts before presence and
    // subscription requests arrive; then initial presence, which also
    // releases offline messages.
    if let Err(e) = client.roster().await {
        eprintln!("{name}: {}", Safe(&e.to_string()));
        return crate::cli::EXIT_ERROR;
    }
    if let Err(e) = client.set_presence(None, None) {
        eprintln!("{name}: {}", Safe(&e.to_string()));
        return crate::cli::EXIT_ERROR;
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        outln!("type /help for commands");
    }
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut in_flight = 0usize;
    let mut failed = false;
    let mut stdin_open = true;
    let mut quitting = false;
    let mut lost = false;
    let mut unregistering = false;
    let mut current: Option<Jid> = None;
    let mut backlog: VecDeque<(&'static str, Option<Jid>)> = VecDeque::new();
    let mut wait: Option<Wait> = None;
    loop {
        if (!stdin_open || quitting) && in_flight == 0 && wait.is_none() {
            break;
        }
        // One command at a time: a script line runs once the one before it
        // was answered (a /say after a /join finds the room joined), while
        // events keep printing as they come.
        let read_stdin = stdin_open && !quitting && wait.is_none() && in_flight == 0;
        let deadline = wait.as_ref().map(|w| w.deadline);
        tokio::select! {
            line = lines.next_line(), if read_stdin => match line {
                Ok(Some(line)) => {
                    let cmd = Command::parse(&line);
                    match cmd {
                        Command::Quit => quitting = true,
                        Command::Wait { kind, from, seconds } => 'wait: {
                            let resolve = |f: String| if kind.starts_with("room") {
                                room_jid(client.jid(), &f)
                            } else {
                                parse_jid(&f, client.jid().domain())
                            };
                            let from = match from.map(resolve).transpose() {
                                Ok(f) => f,
                                Err(e) => {
                                    failed = true;
                                    out.error("/wait", e);
                                    break 'wait;
                                }
                            };
                            if let Some(pos) = backlog.iter().position(|(k, f)| matches_kind(k, f.as_ref(), &kind, &from)) {
                                backlog.remove(pos);
                            } else {
                                wait = Some(Wait { kind, from, deadline: tokio::time::Instant::now() + seconds });
                            }
                        }
                        other => {
                            unregistering |= matches!(other, Command::Unregister);
                            let step = execute(&client, &out, other, &mut current, &line);
                            match step {
                            Step::Done => {}
                            Step::Failed => failed = true,
                            Step::Pending(f) => {
                                in_flight += 1;
                                let tx = done_tx.clone();
                                tokio::spawn(async move {
                                    let d = f.await;
                                    let _ = tx.send(d);
                                });
                            }
                            }
                        }
                    }
                }
                Ok(None) | Err(_) => stdin_open = false,
            },
            Some(d) = done_rx.recv() => {
                in_flight -= 1;
                match d.result {
                    Ok(text) => {
                        out.ok(&d.command, text);
                        if d.quit {
                            quitting = true;
                        }
                    }
                    Err(e) => {
                        failed = true;
                        out.error(&d.command, e.to_string());
                    }
                }
            },
            ev = client.next_event() => match ev {
                Some(ClientEvent::Disconnected { reason }) => {
                    out.event(&ClientEvent::Disconnected { reason: reason.clone() });
                    // After /unregister the server closes the stream itself,
                    // possibly before we have the iq result (Prosody sends a
                    // not-authorized stream error instead). Every request in
                    // flight ends now that the connection is gone; whether
                    // the removal counts is `unregister`'s call.
                    if unregistering {
                        drop(done_tx);
                        while let Some(d) = done_rx.recv().await {
                            match d.result {
                                Ok(text) => out.ok(&d.command, text),
                                Err(e) => { failed = true; out.error(&d.command, e.to_string()); }
                            }
                        }
                        return if failed { crate::cli::EXIT_FAILED } else { 0 };
                    }
                    if !quitting {
                        lost = true;
                    }
                    break;
                }
                Some(ev) => {
                    out.event(&ev);
                    if matches!(ev, ClientEvent::MessageError { .. } | ClientEvent::FileFailed { .. } | ClientEvent::StanzaTooLarge { .. }) {
                        failed = true;
                    }
                    let consumed = wait.as_ref().is_some_and(|w| matches(&ev, &w.kind, &w.from));
                    if consumed {
                        wait = None;
                    } else {
                        if backlog.len() >= BACKLOG {
                            backlog.pop_front();
                        }
                        backlog.push_back((ev.kind(), ev.from().cloned()));
                    }
                }
                None => { lost = !quitting; break; }
            },
            _ = sleep_until(deadline) => {
                if let Some(w) = wait.take() {
                    failed = true;
                    out.error("/wait", format!("timed out waiting for a {} event{}", w.kind,
                        w.from.map(|f| format!(" from {f}")).unwrap_or_default()));
                }
            }
        }
    }
    if lost {
        eprintln!("{name}: connection lost");
        return crate::cli::EXIT_ERROR;
    }
    // Close our side, then keep printing until the server closes its side:
    // it has then handled (and answered) everything we sent.
    client.start_close();
    let drain = async {
        while let Some(ev) = client.next_event().await {
            if matches!(ev, ClientEvent::Disconnected { reason: None }) {
                break;
            }
            if matches!(
                ev,
                ClientEvent::MessageError { .. }
                    | ClientEvent::FileFailed { .. }
                    | ClientEvent::StanzaTooLarge { .. }
            ) {
                failed = true;
            }
            out.event(&ev);
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        eprintln!("{name}: the server did not close the stream in time");
    }
    if failed { crate::cli::EXIT_FAILED } else { 0 }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A parsed input line.
enum Command {
    Help,
    Msg(String, String),
    Chat(String),
    Add(String),
    Remove(String),
    Roster,
    Status(Option<Show>, Option<String>),
    Who,
    Join(String, Option<String>),
    Rooms,
    Say(String, String),
    Subject(String, String),
    Occupants(String),
    Leave(String),
    Destroy(String, Option<String>),
    Users,
    Search(String),
    Profile(Option<String>, Option<String>),
    Online,
    Broadcast(String),
    SendFile(String, String, Option<String>),
    Accept(Option<String>),
    Reject(Option<String>),
    Unregister,
    Quit,
    Wait {
        kind: String,
        /// As typed: a bare name means a user on our own server.
        from: Option<String>,
        seconds: Duration,
    },
    Text(String),
    Empty,
    Bad(String),
}

impl Command {
    fn parse(line: &str) -> Command {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            return Command::Empty;
        }
        if !line.starts_with('/') {
            return Command::Text(line.to_string());
        }
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        let one_arg = |c: fn(String) -> Command, usage: &str| {
            if rest.is_empty() || rest.contains(' ') {
                Command::Bad(format!("usage: {usage}"))
            } else {
                c(rest.to_string())
            }
        };
        match cmd {
            "/help" => Command::Help,
            "/msg" => match rest.split_once(' ') {
                Some((to, text)) if !text.trim().is_empty() => {
                    Command::Msg(to.to_string(), text.to_string())
                }
                _ => Command::Bad("usage: /msg JID TEXT".into()),
            },
            "/chat" => one_arg(Command::Chat, "/chat JID"),
            "/add" => one_arg(Command::Add, "/add JID"),
            "/remove" => one_arg(Command::Remove, "/remove JID"),
            "/roster" => Command::Roster,
            "/status" => {
                let (first, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                match Show::parse(first) {
                    Ok(s) => Command::Status(
                        Some(s),
                        Some(tail.trim().to_string()).filter(|t| !t.is_empty()),
                    ),
                    Err(_) => {
                        Command::Status(None, Some(rest.to_string()).filter(|t| !t.is_empty()))
                    }
                }
            }
            "/who" => Command::Who,
            "/join" => {
                let mut parts = rest.split_whitespace();
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(room), nick, None) => {
                        Command::Join(room.to_string(), nick.map(str::to_string))
                    }
                    _ => Command::Bad("usage: /join ROOM [NICK]".into()),
                }
            }
            "/rooms" => Command::Rooms,
            "/say" => match rest.split_once(' ') {
                Some((room, text)) if !text.trim().is_empty() => {
                    Command::Say(room.to_string(), text.to_string())
                }
                _ => Command::Bad("usage: /say ROOM TEXT".into()),
            },
            "/subject" => match rest.split_once(' ') {
                Some((room, text)) if !text.trim().is_empty() => {
                    Command::Subject(room.to_string(), text.to_string())
                }
                _ => Command::Bad("usage: /subject ROOM TEXT".into()),
            },
            "/occupants" => one_arg(Command::Occupants, "/occupants ROOM"),
            "/leave" => one_arg(Command::Leave, "/leave ROOM"),
            "/destroy" if !rest.is_empty() => match rest.split_once(' ') {
                Some((room, reason)) => {
                    Command::Destroy(room.to_string(), Some(reason.trim().to_string()))
                }
                None => Command::Destroy(rest.to_string(), None),
            },
            "/destroy" => Command::Bad("usage: /destroy ROOM [REASON]".into()),
            "/users" => Command::Users,
            "/search" if !rest.is_empty() => Command::Search(rest.to_string()),
            "/search" => Command::Bad("usage: /search TERM".into()),
            "/profile" => parse_profile(rest),
            "/online" => Command::Online,
            "/broadcast" if !rest.is_empty() => Command::Broadcast(rest.to_string()),
            "/broadcast" => Command::Bad("usage: /broadcast TEXT".into()),
            "/sendfile" => match rest.split_once(' ') {
                Some((to, path)) if !path.trim().is_empty() => {
                    let (path, name) = match path.rsplit_once(" as ") {
                        Some((p, n)) if !n.trim().is_empty() => (p, Some(n.trim().to_string())),
                        _ => (path, None),
                    };
                    Command::SendFile(to.to_string(), path.trim().to_string(), name)
                }
                _ => Command::Bad("usage: /sendfile JID PATH".into()),
            },
            "/accept" => Command::Accept(Some(rest.to_string()).filter(|r| !r.is_empty())),
            "/reject" => Command::Reject(Some(rest.to_string()).filter(|r| !r.is_empty())),
            "/unregister" => Command::Unregister,
            "/quit" => Command::Quit,
            "/wait" => {
                let mut parts = rest.split_whitespace();
                let Some(kind) = parts.next() else {
                    return Command::Bad("usage: /wait TYPE [JID] [SECONDS]".into());
                };
                let mut from = None;
                let mut seconds = WAIT_DEFAULT;
                for p in parts {
                    if let Ok(s) = p.parse::<f64>() {
                        if !(0.0..=3600.0).contains(&s) {
                            return Command::Bad("/wait takes 0 to 3600 seconds".into());
                        }
                        seconds = Duration::from_secs_f64(s);
                    } else {
                        from = Some(p.to_string());
                    }
                }
                Command::Wait {
                    kind: kind.to_string(),
                    from,
                    seconds,
                }
            }
            other => Command::Bad(format!("unknown command {other}; type /help")),
        }
    }
}

type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = Done> + Send>>;

/// What running a command led to.
enum Step {
    /// Done at once.
    Done,
    /// Failed at once (bad arguments, no chat selected); already printed.
    Failed,
    /// Waiting for the server.
    Pending(Pending),
}

fn fail_sync(out: &Out, command: &str, text: String) -> Step {
    out.error(command, text);
    Step::Failed
}

fn parse_jid(s: &str, domain: &str) -> Result<Jid, String> {
    // A bare name means a user on our own server.
    let full = if s.contains('@') {
        s.to_string()
    } else {
        format!("{s}@{domain}")
    };
    Jid::parse(&full).map_err(|e| format!("invalid JID '{s}': {e}"))
}

/// Runs a command. Requests that wait for the server return a future whose
/// result is printed when it completes.
fn execute(
    client: &Client,
    out: &Out,
    cmd: Command,
    current: &mut Option<Jid>,
    line: &str,
) -> Step {
    let name = line.split_whitespace().next().unwrap_or("").to_string();
    let domain = client.jid().domain().to_string();
    let done = |command: String,
                fut: std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<String, ClientError>> + Send>,
    >,
                quit: bool| {
        Step::Pending(Box::pin(async move {
            Done {
                command,
                result: fut.await,
                quit,
            }
        }))
    };
    macro_rules! room {
        ($s:expr) => {
            match room_jid(client.jid(), &$s) {
                Ok(j) => j,
                Err(e) => return fail_sync(out, &name, e),
            }
        };
    }
    macro_rules! jid {
        ($s:expr) => {
            match parse_jid(&$s, &domain) {
                Ok(j) => j,
                Err(e) => return fail_sync(out, &name, e),
            }
        };
    }
    match cmd {
        Command::Empty | Command::Quit | Command::Wait { .. } => Step::Done,
        Command::Help => {
            outln!("{HELP}");
            Step::Done
        }
        Command::Bad(text) => fail_sync(out, &name, text),
        Command::Msg(to, text) => {
            let to = jid!(to);
            send_text(client, out, &to, &text)
        }
        Command::Text(text) => match current.clone() {
            Some(room) if room.domain() == muc_domain(client.jid()) => {
                say(client, out, &room, &text)
            }
            Some(to) => send_text(client, out, &to, &text),
            None => fail_sync(
                out,
                "message",
                "no chat selected: use /chat JID first, or /msg JID TEXT".into(),
            ),
        },
        Command::Chat(to) => {
            let to = jid!(to);
            out.ok(&name, format!("now chatting with {to}"));
            *current = Some(to);
            Step::Done
        }
        Command::Add(j) => {
            let jid = jid!(j);
            let fut = client.add_contact(&jid);
            done(
                name,
                Box::pin(async move {
                    fut.await
                        .map(|_| format!("added {jid}; asked to see their presence"))
                }),
                false,
            )
        }
        Command::Remove(j) => {
            let jid = jid!(j);
            let fut = client.remove_contact(&jid);
            done(
                name,
                Box::pin(async move { fut.await.map(|_| format!("removed {jid}")) }),
                false,
            )
        }
        Command::Roster => {
            let fut = client.roster();
            let json = out.json;
            done(
                name,
                Box::pin(async move {
                    let items = fut.await?;
                    for i in &items {
                        if json {
                            outln!("{}", roster_json(i));
                        } else {
                            outln!("contact {}", Safe(&roster_text(i)));
                        }
                    }
                    Ok(format!("{} contact(s)", items.len()))
                }),
                false,
            )
        }
        Command::Status(show, text) => match client.set_presence(show, text.as_deref()) {
            Ok(()) => {
                out.ok(
                    &name,
                    format!(
                        "status set to {}{}",
                        show.map_or("available", Show::as_str),
                        text.map(|t| format!(": {t}")).unwrap_or_default()
                    ),
                );
                Step::Done
            }
            Err(e) => fail_sync(out, &name, e.to_string()),
        },
        Command::Who => {
            let online = client.online_contacts();
            for (jid, show, status) in &online {
                out.line(
                    format!("online {jid}{}{}", show.map(|s| format!(" [{}]", s.as_str())).unwrap_or_default(),
                        status.as_ref().map(|s| format!(": {s}")).unwrap_or_default()),
                    json!({"type": "online", "jid": jid.to_string(), "show": show.map(Show::as_str), "status": status}),
                );
            }
            out.ok(
                &name,
                format!("{} contact resource(s) online", online.len()),
            );
            Step::Done
        }
        Command::Join(room, nick) => {
            let room = room!(room);
            let nick = nick.unwrap_or_else(|| client.jid().local().unwrap_or("guest").to_string());
            *current = Some(room.clone());
            let fut = client.join_room(&room, &nick);
            done(
                name,
                Box::pin(async move {
                    fut.await?;
                    Ok(format!(
                        "in {room} as {nick}; plain lines now go to the room"
                    ))
                }),
                false,
            )
        }
        Command::Rooms => {
            let fut = client.list_rooms();
            let json = out.json;
            done(
                name,
                Box::pin(async move {
                    let rooms = fut.await?;
                    for (jid, label) in &rooms {
                        if json {
                            outln!(
                                "{}",
                                json!({"type": "room", "room": jid.to_string(), "name": label})
                            );
                        } else {
                            let line = format!(
                                "room {jid}{}",
                                label.as_ref().map(|l| format!(" {l}")).unwrap_or_default()
                            );
                            outln!("{}", Safe(&line));
                        }
                    }
                    Ok(format!("{} room(s)", rooms.len()))
                }),
                false,
            )
        }
        Command::Say(room, text) => {
            let room = room!(room);
            say(client, out, &room, &text)
        }
        Command::Subject(room, text) => {
            let room = room!(room);
            match client.set_subject(&room, &text) {
                Ok(()) => {
                    out.ok(&name, format!("subject of {room} set"));
                    Step::Done
                }
                Err(e) => fail_sync(out, &name, e.to_string()),
            }
        }
        Command::Occupants(room) => {
            let room = room!(room);
            let fut = client.occupants(&room);
            let json = out.json;
            done(
                name,
                Box::pin(async move {
                    let list = fut.await?;
                    for o in &list {
                        if json {
                            outln!(
                                "{}",
                                json!({"type": "occupant", "room": room.to_string(), "nick": o.nick,
                                "role": o.role, "affiliation": o.affiliation,
                                "show": o.show.map(Show::as_str), "status": o.status})
                            );
                        } else {
                            let line = format!(
                                "occupant {} {}{}",
                                room,
                                o.nick,
                                if o.role.is_empty() {
                                    String::new()
                                } else {
                                    format!(" ({}, {})", o.role, o.affiliation)
                                }
                            );
                            outln!("{}", Safe(&line));
                        }
                    }
                    Ok(format!("{} occupant(s) in {room}", list.len()))
                }),
                false,
            )
        }
        Command::Leave(room) => {
            let room = room!(room);
            if current.as_ref() == Some(&room) {
                *current = None;
            }
            match client.leave_room(&room) {
                Ok(()) => {
                    out.ok(&name, format!("leaving {room}"));
                    Step::Done
                }
                Err(e) => fail_sync(out, &name, e.to_string()),
            }
        }
        Command::Destroy(room, reason) => {
            let room = room!(room);
            if current.as_ref() == Some(&room) {
                *current = None;
            }
            let fut = client.destroy_room(&room, reason.as_deref());
            done(
                name,
                Box::pin(async move {
                    fut.await?;
                    Ok(format!("{room} destroyed"))
                }),
                false,
            )
        }
        Command::Users => users_step(name, out.json, client.search(None)),
        Command::Search(term) => {
            let f = client.find_users(&term);
            users_step(name, out.json, async move {
                f.await.map(|u| {
                    let n = u.len();
                    (u, n)
                })
            })
        }
        Command::Profile(None, None) => {
            let fut = client.profile(None);
            done(
                name,
                Box::pin(async move {
                    let (n, e) = fut.await?;
                    Ok(format!(
                        "your profile: name={} email={}",
                        n.as_deref().unwrap_or("(none)"),
                        e.as_deref().unwrap_or("(none)")
                    ))
                }),
                false,
            )
        }
        Command::Profile(n, e) => {
            let fut = client.set_profile(n, e);
            done(
                name,
                Box::pin(async move { fut.await.map(|_| "profile saved".to_string()) }),
                false,
            )
        }
        Command::Online => {
            let fut = client.online_users();
            let json = out.json;
            done(
                name,
                Box::pin(async move {
                    let users = fut.await?;
                    for u in &users {
                        if json {
                            outln!("{}", json!({"type": "online-user", "jid": u.to_string()}));
                        } else {
                            outln!("{}", Safe(&format!("online {u}")));
                        }
                    }
                    Ok(format!("{} user(s) online", users.len()))
                }),
                false,
            )
        }
        Command::Broadcast(text) => match client.broadcast(&text) {
            Ok(id) => {
                out.line(
                    format!("announcement {id} sent"),
                    json!({"type": "sent", "to": "announce/online", "id": id}),
                );
                Step::Done
            }
            Err(e) => fail_sync(out, &name, e.to_string()),
        },
        Command::SendFile(to, path, offered) => {
            let to = jid!(to);
            let fut = client.send_file(&to, std::path::Path::new(&path), offered.as_deref());
            done(
                name,
                Box::pin(async move {
                    let d = fut.await?;
                    Ok(format!(
                        "sent {} to {} ({} bytes, sha256 {})",
                        d.name, d.peer, d.size, d.sha256
                    ))
                }),
                false,
            )
        }
        Command::Accept(sid) => match client.accept_file(sid.as_deref()) {
            Ok(file) => {
                out.ok(&name, format!("accepted {file}"));
                Step::Done
            }
            Err(e) => fail_sync(out, &name, e.to_string()),
        },
        Command::Reject(sid) => match client.reject_file(sid.as_deref()) {
            Ok(file) => {
                out.ok(&name, format!("refused {file}"));
                Step::Done
            }
            Err(e) => fail_sync(out, &name, e.to_string()),
        },
        Command::Unregister => {
            let fut = client.unregister();
            done(
                name,
                Box::pin(async move { fut.await.map(|_| "account deleted".to_string()) }),
                true,
            )
        }
    }
}

fn send_text(client: &Client, out: &Out, to: &Jid, text: &str) -> Step {
    match client.send_message(to, text) {
        Ok(id) => {
            out.line(
                format!("sent {id} to {to}"),
                json!({"type": "sent", "to": to.to_string(), "id": id}),
            );
            Step::Done
        }
        Err(e) => fail_sync(out, "/msg", e.to_string()),
    }
}

/// Prints the users a directory request found.
fn users_step(
    command: String,
    json: bool,
    fut: impl std::future::Future<Output = Result<(Vec<UserEntry>, usize), ClientError>>
    + Send
    + 'static,
) -> Step {
    Step::Pending(Box::pin(async move {
        let result = fut.await.map(|(users, total)| {
            for u in &users {
                if json {
                    outln!(
                        "{}",
                        json!({"type": "user", "jid": u.jid.to_string(), "name": u.name, "email": u.email})
                    );
                } else {
                    let line = format!(
                        "user {}{}{}",
                        u.jid,
                        u.name.as_ref().map(|n| format!(" name={n}")).unwrap_or_default(),
                        u.email.as_ref().map(|e| format!(" email={e}")).unwrap_or_default()
                    );
                    outln!("{}", Safe(&line));
                }
            }
            if total > users.len() {
                format!("{} of {total} user(s) shown", users.len())
            } else {
                format!("{} user(s)", users.len())
            }
        });
        Done {
            command,
            result,
            quit: false,
        }
    }))
}

/// `/profile [name NAME...] [email EMAIL]`: the words after `name` up to
/// `email` are the name.
fn parse_profile(rest: &str) -> Command {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let mut name: Option<Vec<&str>> = None;
    let mut email: Option<String> = None;
    let mut i = 0;
    while i < words.len() {
        match words[i] {
            "name" => {
                let mut n = Vec::new();
                i += 1;
                while i < words.len() && words[i] != "email" {
                    n.push(words[i]);
                    i += 1;
                }
                name = Some(n);
            }
            "email" if i + 1 < words.len() => {
                email = Some(words[i + 1].to_string());
                i += 2;
            }
            _ => return Command::Bad("usage: /profile [name NAME] [email EMAIL]".into()),
        }
    }
    Command::Profile(name.map(|n| n.join(" ")), email)
}

fn say(client: &Client, out: &Out, room: &Jid, text: &str) -> Step {
    match client.say(room, text) {
        Ok(id) => {
            out.line(
                format!("said {id} in {room}"),
                json!({"type": "said", "room": room.to_string(), "id": id}),
            );
            Step::Done
        }
        Err(e) => fail_sync(out, "/say", e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert!(
            matches!(Command::parse("/msg bob@x hello there"), Command::Msg(t, m) if t == "bob@x" && m == "hello there")
        );
        assert!(matches!(Command::parse("/msg bob@x"), Command::Bad(_)));
        assert!(
            matches!(Command::parse("/status away out for lunch"), Command::Status(Some(Show::Away), Some(t)) if t == "out for lunch")
        );
        assert!(
            matches!(Command::parse("/status busy today"), Command::Status(None, Some(t)) if t == "busy today")
        );
        assert!(matches!(
            Command::parse("/status"),
            Command::Status(None, None)
        ));
        assert!(matches!(Command::parse("hello"), Command::Text(t) if t == "hello"));
        assert!(matches!(Command::parse("/frobnicate"), Command::Bad(_)));
        assert!(matches!(Command::parse("/add a b"), Command::Bad(_)));
        match Command::parse("/wait message bob@localhost 2.5") {
            Command::Wait {
                kind,
                from,
                seconds,
            } => {
                assert_eq!(kind, "message");
                assert_eq!(from.as_deref(), Some("bob@localhost"));
                assert_eq!(seconds, Duration::from_millis(2500));
            }
            _ => panic!("not a wait"),
        }
    }

    #[test]
    fn wait_matches_bare_and_full_jids() {
        let ev = ClientEvent::Receipt {
            from: Jid::parse("bob@localhost/phone").unwrap(),
            id: "1".into(),
        };
        assert!(matches(&ev, "receipt", &None));
        assert!(matches(
            &ev,
            "receipt",
            &Some(Jid::parse("bob@localhost").unwrap())
        ));
        assert!(matches(
            &ev,
            "receipt",
            &Some(Jid::parse("bob@localhost/phone").unwrap())
        ));
        assert!(!matches(
            &ev,
            "receipt",
            &Some(Jid::parse("bob@localhost/pc").unwrap())
        ));
        assert!(!matches(&ev, "message", &None));
    }
}
