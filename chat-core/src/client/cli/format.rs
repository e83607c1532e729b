//! The line client's output: every line is one value that is both
//! `Serialize` (the `--json` line) and `Display` (the text line), so that
//! the two forms cannot drift apart. Events are [`ClientEvent`]s; the
//! client's own lines (answers to commands, lists, errors) are [`Line`]s.
//!
//! Every text line goes through [`protocol::display::Safe`]: bodies,
//! statuses, nicknames, subjects, file names, error texts and JIDs all come
//! from the network, and a terminal obeys the escape sequences in them
//! (clear the screen, write the clipboard with OSC 52, set the window
//! title), and a newline in a body forges a whole event line such as
//! `message from bank@localhost/web: …`. `--json` output is left exact: JSON
//! escapes control characters itself.

use std::fmt::{self, Display, Formatter};
use std::sync::Arc;

use protocol::display::Safe;
use protocol::outln;
use protocol::stanza::{PresenceType, Show};
use protocol::{Jid, sasl::Mechanism};
use serde::Serialize;

use crate::client::event::{ChatState, ClientEvent, E2e, FileDone, RosterItem, wire};
use crate::client::omemo::store::Trust;
use crate::client::rooms::Occupant;

/// Where output goes, in text or JSON.
#[derive(Clone)]
pub(super) struct Out {
    /// JSON lines instead of text.
    pub(super) json: bool,
    /// Text mode shows every roster change (`-v`); otherwise the
    /// subscription lines say what happened, once.
    pub(super) verbose: bool,
    /// The user's typed line is on the screen (stdin is a terminal): a
    /// sent message needs no line of its own.
    pub(super) echoed: bool,
    /// Where the lines go.
    pub(super) sink: Sink,
}

/// Where [`Out`]'s lines go.
#[derive(Clone)]
pub(super) enum Sink {
    /// Standard output, a line each.
    Stdout,
    /// The terminal UI: each line (already made terminal-safe) to the
    /// window the command was typed in; `true` for an error.
    Window(Arc<dyn Fn(String, bool) + Send + Sync>),
}

impl Out {
    /// Whether an event gets a line. JSON shows everything (scripts count
    /// on it); text leaves out the roster pushes of each subscription
    /// step unless asked (`-v`): one `/add` was five roster lines.
    pub(super) fn shows(&self, ev: &ClientEvent) -> bool {
        self.json || self.verbose || !matches!(ev, ClientEvent::RosterPush(_))
    }

    /// Whether a sent message gets its `sent ID to JID` line: in JSON, and
    /// when the typed line is not on the screen (a script's stdin).
    pub(super) fn shows_sent(&self) -> bool {
        self.json || !self.echoed
    }

    /// Prints one value as one line: its JSON, or its text made safe for a
    /// terminal.
    pub(super) fn print<T: Serialize + Display>(&self, value: &T) {
        if self.json {
            // Through a `Value`, whose object keys are sorted: every line
            // lists its fields in the same order whatever the type.
            // (Our types always serialize: no map has a key that is not a
            // string. Were one ever to fail, the text line still shows it.)
            match serde_json::to_value(value) {
                Ok(v) => outln!("{v}"),
                Err(_) => outln!("{}", Safe(&value.to_string())),
            }
        } else {
            self.text(&value.to_string(), false);
        }
    }

    /// One line, made terminal-safe: a newline in it (a peer's) is shown
    /// escaped, never taken as the start of another line.
    pub(super) fn text(&self, line: &str, error: bool) {
        match &self.sink {
            Sink::Stdout => outln!("{}", Safe(line)),
            Sink::Window(put) => put(Safe(line).to_string(), error),
        }
    }

    /// A warning about the connection: on stderr for the line client
    /// (stdout carries events), in the console of the terminal UI.
    pub(super) fn warn(&self, name: &str, text: &str) {
        match &self.sink {
            Sink::Stdout => eprintln!("{name}: {text}"),
            Sink::Window(_) => self.text(text, true),
        }
    }

    /// Our own text of several lines (`/help`).
    pub(super) fn lines(&self, text: &str) {
        for line in text.lines() {
            self.text(line, false);
        }
    }

    /// `ok: DETAIL` for `command`.
    pub(super) fn ok(&self, command: &str, detail: String) {
        self.print(&Line::Ok {
            command: command.to_string(),
            detail,
        });
    }

    /// `error: TEXT` for `command`.
    pub(super) fn error(&self, command: &str, error: String) {
        let line = Line::Error {
            command: command.to_string(),
            error,
        };
        if self.json {
            self.print(&line);
        } else {
            self.text(&line.to_string(), true);
        }
    }
}

/// A line the client prints of its own (not an event).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub(super) enum Line {
    /// A command succeeded.
    Ok {
        /// The command as typed (`/add`).
        command: String,
        /// What it did.
        detail: String,
    },
    /// A command failed.
    Error {
        /// The command as typed.
        command: String,
        /// Why.
        error: String,
    },
    /// The account was registered before signing in.
    Registered {
        /// The bare JID.
        #[serde(serialize_with = "wire::jid")]
        jid: Jid,
    },
    /// Signed in.
    Connected {
        /// The bound full JID.
        #[serde(serialize_with = "wire::jid")]
        jid: Jid,
        /// The SASL mechanism.
        #[serde(serialize_with = "mechanism_name")]
        mechanism: Mechanism,
        /// Over TLS.
        encrypted: bool,
    },
    /// A contact's resource online (`/who`).
    Online {
        /// The full JID.
        #[serde(serialize_with = "wire::jid")]
        jid: Jid,
        /// away, dnd, xa, chat.
        #[serde(serialize_with = "wire::show")]
        show: Option<Show>,
        /// Status message.
        status: Option<String>,
    },
    /// A roster item (`/roster`); the same JSON as a roster push.
    #[serde(rename = "roster")]
    Contact(RosterItem),
    /// A room of the server (`/rooms`).
    Room {
        /// The room.
        #[serde(serialize_with = "wire::jid")]
        room: Jid,
        /// Its name.
        name: Option<String>,
    },
    /// Someone in a room (`/occupants`).
    Occupant {
        /// The room.
        #[serde(serialize_with = "wire::jid")]
        room: Jid,
        /// The occupant.
        #[serde(flatten)]
        occupant: Occupant,
    },
    /// A user online on the server (`/online`).
    OnlineUser {
        /// The bare JID.
        #[serde(serialize_with = "wire::jid")]
        jid: Jid,
    },
    /// A user of the directory (`/users`, `/search`).
    User {
        /// The bare JID.
        #[serde(serialize_with = "wire::jid")]
        jid: Jid,
        /// Display name.
        name: Option<String>,
        /// Email.
        email: Option<String>,
    },
    /// An OMEMO device and its fingerprint (`/fingerprints`).
    Device {
        /// Whose.
        #[serde(serialize_with = "wire::jid")]
        jid: Jid,
        /// The device id.
        device: u32,
        /// Hex in groups of eight.
        fingerprint: String,
        /// verified, blind, untrusted, or own (this device).
        trust: &'static str,
    },
    /// A message was sent.
    Sent {
        /// To whom.
        #[serde(serialize_with = "wire::jid")]
        to: Jid,
        /// Its id.
        id: String,
    },
    /// An announcement was sent (`/broadcast`).
    #[serde(rename = "sent")]
    Announced {
        /// The server's announcement address, as the user knows it.
        to: &'static str,
        /// Its id.
        id: String,
    },
    /// Something was said in a room.
    Said {
        /// The room.
        #[serde(serialize_with = "wire::jid")]
        room: Jid,
        /// The message id.
        id: String,
    },
}

/// Where `/broadcast` sends, as shown to the user.
pub(super) const ANNOUNCE_TARGET: &str = "announce/online";

fn mechanism_name<S: serde::Serializer>(m: &Mechanism, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.name())
}

/// ` [SHOW]` or nothing.
fn show_text(show: Option<Show>) -> String {
    show.map(|s| format!(" [{}]", s.as_str()))
        .unwrap_or_default()
}

/// `PREFIX TEXT` when there is a text, else nothing.
fn opt(prefix: &str, text: Option<&String>) -> String {
    text.map(|t| format!("{prefix}{t}")).unwrap_or_default()
}

impl Display for Line {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Line::Ok { detail, .. } => write!(f, "ok: {detail}"),
            Line::Error { error, .. } => write!(f, "error: {error}"),
            Line::Registered { jid } => write!(f, "registered {jid}"),
            Line::Connected {
                jid,
                mechanism,
                encrypted,
            } => {
                let over = if *encrypted { "TLS" } else { "plaintext" };
                write!(
                    f,
                    "signed in as {jid} with {} over {over}",
                    mechanism.name()
                )
            }
            Line::Online { jid, show, status } => {
                write!(
                    f,
                    "online {jid}{}{}",
                    show_text(*show),
                    opt(": ", status.as_ref())
                )
            }
            Line::Contact(item) => write!(f, "contact {}", RosterText(item)),
            Line::Room { room, name } => write!(f, "room {room}{}", opt(" ", name.as_ref())),
            Line::Occupant { room, occupant: o } => {
                write!(f, "occupant {room} {}", o.nick)?;
                if !o.role.is_empty() {
                    write!(f, " ({}, {})", o.role, o.affiliation)?;
                }
                Ok(())
            }
            Line::OnlineUser { jid } => write!(f, "online {jid}"),
            Line::User { jid, name, email } => write!(
                f,
                "user {jid}{}{}",
                opt(" name=", name.as_ref()),
                opt(" email=", email.as_ref())
            ),
            Line::Device {
                jid,
                device,
                fingerprint,
                trust,
            } => {
                let trust = match *trust {
                    "own" => "this device",
                    "verified" => "verified",
                    "blind" => "trusted blindly, not verified",
                    _ => "NOT trusted",
                };
                write!(f, "device {jid} {device}: {fingerprint} [{trust}]")
            }
            Line::Sent { to, id } => write!(f, "sent {id} to {to}"),
            Line::Announced { id, .. } => write!(f, "announcement {id} sent"),
            Line::Said { room, id } => write!(f, "said {id} in {room}"),
        }
    }
}

/// A roster item as text: `JID subscription=S[ (request pending)][ name=N]`.
struct RosterText<'a>(&'a RosterItem);

impl Display for RosterText<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let i = self.0;
        write!(f, "{} subscription={}", i.jid, i.subscription)?;
        if i.ask {
            write!(f, " (request pending)")?;
        }
        write!(f, "{}", opt(" name=", i.name.as_ref()))
    }
}

/// The text form of an event (the JSON form is its `Serialize`).
impl Display for ClientEvent {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            ev @ (ClientEvent::Message { .. }
            | ClientEvent::Receipt { .. }
            | ClientEvent::MessageError { .. }
            | ClientEvent::ChatState { .. }
            | ClientEvent::Carbon { .. }
            | ClientEvent::Archived { .. }
            | ClientEvent::Nick { .. }
            | ClientEvent::Announcement { .. }
            | ClientEvent::E2eWarning { .. }
            | ClientEvent::NotSent { .. }) => message_event(ev, f),
            ev @ (ClientEvent::Presence { .. }
            | ClientEvent::SubscriptionRequest { .. }
            | ClientEvent::Subscription { .. }
            | ClientEvent::RosterPush(_)
            | ClientEvent::RosterRemoved(_)) => contact_event(ev, f),
            ev @ (ClientEvent::FileOffer { .. }
            | ClientEvent::FileShared { .. }
            | ClientEvent::FileProgress { .. }
            | ClientEvent::FileReceived(_)
            | ClientEvent::FileFailed { .. }) => file_event(ev, f),
            ev @ (ClientEvent::RoomJoined { .. }
            | ClientEvent::RoomPresence { .. }
            | ClientEvent::RoomMessage { .. }
            | ClientEvent::RoomSubject { .. }
            | ClientEvent::RoomLeft { .. }) => room_event(ev, f),
            ev @ (ClientEvent::StanzaTooLarge { .. }
            | ClientEvent::EventsDropped { .. }
            | ClientEvent::Reconnecting { .. }
            | ClientEvent::Resumed { .. }
            | ClientEvent::Disconnected { .. }) => connection_event(ev, f),
        }
    }
}

/// How an end-to-end message was protected, in words.
pub(super) fn e2e_words(e: &E2e) -> String {
    let version = match e.version {
        protocol::omemo::Version::Two => "OMEMO 2",
        protocol::omemo::Version::Old => "OMEMO 0.3",
    };
    let trust = match e.trust {
        Trust::Verified => "verified",
        Trust::Blind => "not verified",
        Trust::Untrusted => "UNTRUSTED",
    };
    format!("end-to-end, {version}, device {} {trust}", e.device)
}

/// The text of a message event (the caller passes no other kind).
fn message_event(ev: &ClientEvent, f: &mut Formatter<'_>) -> fmt::Result {
    match ev {
        ClientEvent::Message {
            from,
            body,
            delayed,
            e2e,
            ..
        } => {
            write!(f, "message from {from}")?;
            if let Some(e) = e2e {
                write!(f, " ({})", e2e_words(e))?;
            }
            match delayed {
                Some(t) => write!(f, " (sent {t}, kept while you were offline): {body}"),
                None => write!(f, ": {body}"),
            }
        }
        ClientEvent::E2eWarning { text, .. } => write!(f, "e2e: {text}"),
        ClientEvent::NotSent { to, id, reason } => {
            write!(f, "error: message {id} to {to} was NOT sent: {reason}")
        }
        ClientEvent::Receipt { from, id } => {
            write!(f, "receipt from {from}: message {id} was delivered")
        }
        ClientEvent::Carbon {
            sent: true,
            peer,
            body,
            ..
        } => write!(f, "sent from your other device to {peer}: {body}"),
        ClientEvent::Carbon { peer, body, .. } => {
            write!(f, "message from {peer} (to your other device): {body}")
        }
        ClientEvent::Nick { from, nick } => write!(f, "{from} is known as '{nick}'"),
        ClientEvent::Archived {
            from,
            to,
            body,
            stamp,
        } => write!(
            f,
            "history {} {} -> {}: {body}",
            stamp.as_deref().unwrap_or("?"),
            from.as_ref().map_or("?".to_string(), |j| j.to_string()),
            to.as_ref().map_or("?".to_string(), |j| j.to_string())
        ),
        ClientEvent::ChatState { from, state } => write!(
            f,
            "{from} {}",
            match state {
                ChatState::Composing => "is typing",
                ChatState::Paused => "stopped typing",
                ChatState::Active => "is in the conversation",
                ChatState::Inactive => "is not paying attention",
                ChatState::Gone => "left the conversation",
            }
        ),
        ClientEvent::MessageError {
            from,
            id,
            condition,
            text,
        } => write!(
            f,
            "error: message {} to {} failed: {condition}{}",
            id.as_deref().unwrap_or("?"),
            from.as_ref().map_or("?".to_string(), Jid::to_string),
            text.as_ref().map(|t| format!(" ({t})")).unwrap_or_default()
        ),
        ClientEvent::Announcement { subject, body } => write!(
            f,
            "announcement{}: {body}",
            subject
                .as_ref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default()
        ),
        _ => Ok(()),
    }
}

/// The text of a presence, subscription or roster event (the caller passes
/// no other kind).
fn contact_event(ev: &ClientEvent, f: &mut Formatter<'_>) -> fmt::Result {
    match ev {
        ClientEvent::Presence {
            from,
            available,
            show,
            status,
        } => {
            let state = if *available { "online" } else { "offline" };
            write!(
                f,
                "presence {from} {state}{}{}",
                show_text(*show),
                opt(": ", status.as_ref())
            )
        }
        ClientEvent::SubscriptionRequest {
            from,
            auto_approved: true,
        } => write!(
            f,
            "subscription request from {from}: approved (you added them too)"
        ),
        ClientEvent::SubscriptionRequest { from, .. } => write!(
            f,
            "subscription request from {from}: type /add {from} to accept"
        ),
        ClientEvent::Subscription { from, kind } => match kind {
            PresenceType::Subscribed => write!(f, "subscription: {from} accepted your request"),
            PresenceType::Unsubscribed => {
                write!(f, "subscription: {from} cancelled your subscription")
            }
            _ => write!(f, "subscription: {from} unsubscribed from you"),
        },
        ClientEvent::RosterPush(item) => write!(f, "roster {}", RosterText(item)),
        ClientEvent::RosterRemoved(jid) => write!(f, "roster {jid} removed"),
        _ => Ok(()),
    }
}

/// The text of a file transfer event (the caller passes no other kind).
fn file_event(ev: &ClientEvent, f: &mut Formatter<'_>) -> fmt::Result {
    match ev {
        ClientEvent::FileOffer {
            from,
            sid,
            name,
            size,
        } => write!(
            f,
            "file offer from {from}: {name} ({size} bytes); /accept {sid} or /reject {sid}"
        ),
        ClientEvent::FileShared {
            from,
            sid,
            name,
            url,
        } => write!(
            f,
            "file shared by {from}: {name} at {url}; /accept {sid} to download it, or /reject {sid}"
        ),
        ClientEvent::FileProgress {
            name,
            sending,
            bytes,
            total,
            ..
        } => write!(
            f,
            "file {name}: {} {bytes} of {total} bytes ({}%)",
            if *sending { "sent" } else { "received" },
            bytes * 100 / (*total).max(1)
        ),
        ClientEvent::FileReceived(FileDone {
            peer,
            name,
            size,
            sha256,
            path,
            ..
        }) => write!(
            f,
            "file received from {peer}: {name} ({size} bytes, sha256 {sha256}) saved as {}",
            path.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
        ClientEvent::FileFailed {
            name,
            sending,
            reason,
            ..
        } => write!(
            f,
            "file {name} {}: {reason}",
            if *sending { "not sent" } else { "not received" }
        ),
        _ => Ok(()),
    }
}

/// The text of a room event (the caller passes no other kind).
fn room_event(ev: &ClientEvent, f: &mut Formatter<'_>) -> fmt::Result {
    match ev {
        ClientEvent::RoomJoined {
            room,
            nick,
            created,
            occupants,
        } => write!(
            f,
            "joined {room} as {nick}{}; here: {}",
            if *created {
                " (new room: you own it)"
            } else {
                ""
            },
            occupants.join(", ")
        ),
        ClientEvent::RoomPresence {
            room,
            nick,
            joined,
            available,
            show,
            status,
        } => {
            let what = if !available {
                "left".to_string()
            } else if *joined {
                "joined".to_string()
            } else {
                format!("is now {}", show.map_or("available", Show::as_str))
            };
            write!(f, "{room}: {nick} {what}{}", opt(": ", status.as_ref()))
        }
        ClientEvent::RoomMessage {
            room,
            nick,
            body,
            delayed,
            ..
        } => write!(
            f,
            "[{room}] {}{}: {body}",
            nick.as_deref().unwrap_or("(room)"),
            delayed
                .as_ref()
                .map(|t| format!(" (at {t})"))
                .unwrap_or_default()
        ),
        ClientEvent::RoomSubject { room, subject, .. } if subject.is_empty() => {
            write!(f, "{room}: no subject")
        }
        ClientEvent::RoomSubject {
            room,
            nick,
            subject,
        } => write!(
            f,
            "{room}: subject: {subject}{}",
            nick.as_ref()
                .map(|n| format!(" (set by {n})"))
                .unwrap_or_default()
        ),
        ClientEvent::RoomLeft {
            room,
            destroyed: false,
            ..
        } => write!(f, "left {room}"),
        ClientEvent::RoomLeft { room, reason, .. } => match reason.as_deref() {
            None | Some("") => write!(f, "left {room}: its owner destroyed it"),
            Some(r) => write!(f, "left {room}: its owner destroyed it ({r})"),
        },
        _ => Ok(()),
    }
}

/// The text of an event about the connection itself (the caller passes no
/// other kind).
fn connection_event(ev: &ClientEvent, f: &mut Formatter<'_>) -> fmt::Result {
    match ev {
        ClientEvent::StanzaTooLarge { limit } => write!(
            f,
            "error: the server sent a stanza larger than the {limit}-byte limit; it was skipped"
        ),
        ClientEvent::EventsDropped { count } => write!(
            f,
            "warning: {count} event(s) dropped: the server sent them faster than they could be shown"
        ),
        ClientEvent::Disconnected { reason } => {
            write!(f, "disconnected{}", opt(": ", reason.as_ref()))
        }
        ClientEvent::Reconnecting { reason } => {
            write!(f, "connection lost ({reason}); resuming the session...")
        }
        ClientEvent::Resumed {
            redelivered,
            resent,
        } => {
            let plural = |n: usize| if n == 1 { "" } else { "s" };
            write!(
                f,
                "resumed; {redelivered} message{} redelivered",
                plural(*redelivered)
            )?;
            if *resent > 0 {
                write!(f, ", {resent} stanza{} of ours sent again", plural(*resent))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_come_from_the_same_line() {
        let bob = Jid::parse("bob@localhost").unwrap();
        let line = Line::User {
            jid: bob.clone(),
            name: Some("Bob".into()),
            email: None,
        };
        assert_eq!(line.to_string(), "user bob@localhost name=Bob");
        assert_eq!(
            serde_json::to_value(&line).unwrap(),
            serde_json::json!({"type": "user", "jid": "bob@localhost", "name": "Bob", "email": null})
        );
        let occ = Line::Occupant {
            room: Jid::parse("r@conference.localhost").unwrap(),
            occupant: Occupant {
                nick: "al".into(),
                role: String::new(),
                affiliation: String::new(),
                show: Some(Show::Dnd),
                status: None,
            },
        };
        assert_eq!(occ.to_string(), "occupant r@conference.localhost al");
        assert_eq!(
            serde_json::to_value(&occ).unwrap(),
            serde_json::json!({"type": "occupant", "room": "r@conference.localhost",
                "nick": "al", "role": "", "affiliation": "", "show": "dnd", "status": null})
        );
        let sent = Line::Announced {
            to: ANNOUNCE_TARGET,
            id: "b-1".into(),
        };
        assert_eq!(sent.to_string(), "announcement b-1 sent");
        assert_eq!(serde_json::to_value(&sent).unwrap()["type"], "sent");
    }

    #[test]
    fn a_destroyed_room_says_so_with_or_without_a_reason() {
        let room = Jid::parse("r@conference.localhost").unwrap();
        let left = |destroyed, reason: Option<&str>| {
            ClientEvent::RoomLeft {
                room: room.clone(),
                destroyed,
                reason: reason.map(str::to_string),
            }
            .to_string()
        };
        assert_eq!(left(false, None), "left r@conference.localhost");
        assert_eq!(
            left(true, Some("")),
            "left r@conference.localhost: its owner destroyed it"
        );
        assert_eq!(
            left(true, Some("done")),
            "left r@conference.localhost: its owner destroyed it (done)"
        );
    }
}
