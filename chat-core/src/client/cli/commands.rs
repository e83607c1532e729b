//! Running a [`Command`]: one small function per command, each a call into
//! the client library and the line(s) that report it.
//!
//! A command that needs no answer from the server reports at once
//! ([`Step::Done`] or [`Step::Failed`]); one that waits for the server
//! returns its future ([`Step::Pending`]), which the session runs and whose
//! result it prints when it completes.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use protocol::Jid;
use protocol::stanza::Show;

use super::command::Command;
use super::format::{ANNOUNCE_TARGET, Line, Out};
use crate::client::api::Client;
use crate::client::directory::UserEntry;
use crate::client::error::ClientError;
use crate::client::event::ChatState;
use crate::client::omemo::store::Trust;
use crate::client::rooms::{muc_domain, room_jid};

/// What `/help` prints.
const HELP: &str = "\
commands:
  /msg JID TEXT          send a direct message (asks for a delivery receipt)
  /chat JID              talk to JID: plain lines then go to them
  /typing JID [on|off]   tell JID you are typing (or stopped)
  /history JID [N]       the last N messages with JID, from the server's archive
                         (a room's JID, once in it: the room's archive)
  /nick NAME             publish your nickname to your contacts (PEP)
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
  /sendfile JID PATH [as NAME]  send a file (under another name): directly
                         to an online contact once accepted; through the
                         server's upload service to an offline contact or a
                         room
  /share JID PATH [as NAME]  share a file through the server's upload
                         service (the server keeps it; the URL is the key)
  /accept [SID]          accept a file offer or download a shared file (the
                         latest by default)
  /reject [SID]          refuse a file offer (the latest by default)
  /fingerprints [JID]    OMEMO devices of JID (yours without one) and their
                         fingerprints, to compare out of band
  /verify JID FINGERPRINT  mark JID's device with that fingerprint verified:
                         from then on a new device of JID is not trusted
  /e2e [on|off] JID      end-to-end encryption (OMEMO) with JID on or off
                         (without on/off: how the conversation stands)
  /unregister            delete your account and quit
  /wait TYPE [JID] [SECONDS]  wait for an event (message, receipt, presence,
                         subscribe, subscription, roster, room-joined,
                         room-message, room-presence...); for scripts
  /help                  this list
  /quit                  sign out";

/// An in-flight request's result.
pub(super) struct Done {
    /// The command as typed (`/add`).
    pub(super) command: String,
    /// What it did, or why it failed.
    pub(super) result: Result<String, ClientError>,
    /// `/unregister` ends the session when it succeeds.
    pub(super) quit: bool,
}

/// A request waiting for the server.
pub(super) type Pending = Pin<Box<dyn Future<Output = Done> + Send>>;

/// What running a command led to.
pub(super) enum Step {
    /// Done at once.
    Done,
    /// Failed at once (bad arguments, no chat selected); already printed.
    Failed,
    /// Waiting for the server.
    Pending(Pending),
}

/// A JID from what the user typed: a bare name means a user on our own
/// server.
pub(super) fn parse_jid(typed: &str, domain: &str) -> Result<Jid, ClientError> {
    let full = if typed.contains('@') {
        typed.to_string()
    } else {
        format!("{typed}@{domain}")
    };
    Jid::parse(&full).map_err(|source| ClientError::BadJid {
        jid: typed.to_string(),
        source,
    })
}

/// Prints the failure of `command` at once.
pub(super) fn fail(out: &Out, command: &str, text: String) -> Step {
    out.error(command, text);
    Step::Failed
}

/// What a command runs with.
struct Ctx<'a> {
    client: &'a Client,
    out: Out,
    /// The chat or room plain lines go to.
    current: &'a mut Option<Jid>,
    /// The command as typed, for its `ok:` or `error:` line.
    name: String,
}

impl Ctx<'_> {
    fn jid(&self, typed: &str) -> Result<Jid, ClientError> {
        parse_jid(typed, self.client.jid().domain())
    }

    fn room(&self, typed: &str) -> Result<Jid, ClientError> {
        room_jid(self.client.jid(), typed)
    }

    /// Reports `ok: DETAIL` now.
    fn ok(&self, detail: String) -> Step {
        self.out.ok(&self.name, detail);
        Step::Done
    }

    /// Reports the outcome of `fut` when it completes.
    fn later(
        &self,
        fut: impl Future<Output = Result<String, ClientError>> + Send + 'static,
    ) -> Step {
        let command = self.name.clone();
        Step::Pending(Box::pin(async move {
            Done {
                command,
                result: fut.await,
                quit: false,
            }
        }))
    }
}

/// Runs a command (`line` is what was typed, for the name it reports
/// under). Requests that wait for the server return a future whose result
/// is printed when it completes.
pub(super) fn execute(
    client: &Client,
    out: &Out,
    cmd: Command,
    current: &mut Option<Jid>,
    line: &str,
) -> Step {
    let name = line.split_whitespace().next().unwrap_or("").to_string();
    let mut cx = Ctx {
        client,
        out: out.clone(),
        current,
        name,
    };
    match dispatch(&mut cx, cmd) {
        Ok(step) => step,
        Err(e) => fail(&cx.out, &cx.name, e.to_string()),
    }
}

/// One function per command.
fn dispatch(cx: &mut Ctx<'_>, cmd: Command) -> Result<Step, ClientError> {
    Ok(match cmd {
        Command::Empty | Command::Quit | Command::Wait { .. } => Step::Done,
        Command::Help => {
            cx.out.lines(HELP);
            Step::Done
        }
        Command::Msg(to, text) => send_text(cx, &cx.jid(&to)?, &text),
        Command::Nick(nick) => {
            let fut = cx.client.set_nick(&nick);
            cx.later(async move {
                fut.await?;
                Ok(format!("nickname '{nick}' published to your contacts"))
            })
        }
        Command::History(with, n) => {
            let with = cx.jid(&with)?;
            let fut = cx.client.history(&with, n);
            cx.later(async move {
                let complete = fut.await?;
                Ok(format!(
                    "history with {with}: {}",
                    if complete {
                        "that is all the archive keeps"
                    } else {
                        "older messages are kept too (ask for more)"
                    }
                ))
            })
        }
        Command::Typing(to, on) => {
            let state = if on {
                ChatState::Composing
            } else {
                ChatState::Paused
            };
            match cx.client.send_chat_state(&cx.jid(&to)?, state) {
                Ok(()) => Step::Done,
                Err(e) => fail(&cx.out, "/typing", e.to_string()),
            }
        }
        Command::Text(text) => plain_line(cx, &text),
        Command::Chat(to) => chat(cx, &to)?,
        Command::Add(j) => add(cx, &j)?,
        Command::Remove(j) => remove(cx, &j)?,
        Command::Roster => roster(cx),
        Command::Status(show, text) => status(cx, show, text)?,
        Command::Who => who(cx),
        Command::Join(room, nick) => join(cx, &room, nick)?,
        Command::Rooms => rooms(cx),
        Command::Say(room, text) => say(cx, &cx.room(&room)?, &text),
        Command::Subject(room, text) => subject(cx, &room, &text)?,
        Command::Occupants(room) => occupants(cx, &room)?,
        Command::Leave(room) => leave(cx, &room)?,
        Command::Destroy(room, reason) => destroy(cx, &room, reason)?,
        Command::Users => users(cx, cx.client.search(None)),
        Command::Search(term) => search(cx, &term),
        Command::Profile(None, None) => show_profile(cx),
        Command::Profile(name, email) => set_profile(cx, name, email),
        Command::Online => online(cx),
        Command::Broadcast(text) => broadcast(cx, &text)?,
        Command::SendFile(to, path, name) => send_file(cx, &to, &path, name, false)?,
        Command::Share(to, path, name) => send_file(cx, &to, &path, name, true)?,
        Command::Accept(sid) => cx.ok(format!(
            "accepted {}",
            cx.client.accept_file(sid.as_deref())?
        )),
        Command::Reject(sid) => cx.ok(format!(
            "refused {}",
            cx.client.reject_file(sid.as_deref())?
        )),
        Command::Fingerprints(who) => fingerprints(cx, who)?,
        Command::Verify(who, fp) => verify(cx, &who, &fp)?,
        Command::E2e(on, who) => e2e(cx, on, &who)?,
        Command::Unregister => unregister(cx),
    })
}

/// `/fingerprints [JID]`: fetched first (their device list and bundles),
/// then each device with its fingerprint and trust.
fn fingerprints(cx: &Ctx<'_>, who: Option<String>) -> Result<Step, ClientError> {
    let jid = match who {
        Some(w) => cx.jid(&w)?,
        None => cx.client.jid().to_bare(),
    };
    let fut = cx.client.fingerprints(&jid);
    let out = cx.out.clone();
    Ok(cx.later(async move {
        let devices = fut.await?;
        for d in &devices {
            out.print(&Line::Device {
                jid: jid.clone(),
                device: d.id,
                fingerprint: d.fingerprint.clone(),
                trust: match d.trust {
                    None => "own",
                    Some(Trust::Verified) => "verified",
                    Some(Trust::Blind) => "blind",
                    Some(Trust::Untrusted) => "untrusted",
                },
            });
        }
        Ok(match devices.len() {
            0 => format!("{jid} has no OMEMO device"),
            n => format!("{n} OMEMO device(s) of {jid}"),
        })
    }))
}

/// `/verify JID FINGERPRINT`.
fn verify(cx: &Ctx<'_>, who: &str, fp: &str) -> Result<Step, ClientError> {
    let jid = cx.jid(who)?;
    let fut = cx.client.verify(&jid, fp);
    let fp = fp.to_string();
    Ok(cx.later(async move {
        match fut.await? {
            Some((id, demoted)) => {
                let also = if demoted.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; NOT trusted any more (they were only trusted blindly): device(s) {}. Verify them too if they really are {jid}'s",
                        demoted
                            .iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                Ok(format!(
                    "{jid}'s device {id} is verified; a new device of {jid} will not be trusted until you verify it too{also}"
                ))
            }
            None => Err(ClientError::NoSuchFingerprint { jid, fingerprint: fp }),
        }
    }))
}

/// `/e2e [on|off] JID`.
fn e2e(cx: &Ctx<'_>, on: Option<bool>, who: &str) -> Result<Step, ClientError> {
    let jid = cx.jid(who)?;
    if let Some(on) = on {
        cx.client.set_e2e(&jid, on)?;
    }
    let state = cx.client.e2e_state(&jid).ok_or(ClientError::E2eOff)?;
    Ok(cx.ok(format!("{jid}: {state}")))
}

/// A message to `to`; a failure is reported under `/msg` whatever was
/// typed (a plain line sends one too).
fn send_text(cx: &Ctx<'_>, to: &Jid, text: &str) -> Step {
    match cx.client.send_message(to, text) {
        Ok(id) => {
            if cx.out.shows_sent() {
                cx.out.print(&Line::Sent { to: to.clone(), id });
            }
            Step::Done
        }
        Err(e) => fail(&cx.out, "/msg", e.to_string()),
    }
}

/// Something said in a room; a failure is reported under `/say`.
fn say(cx: &Ctx<'_>, room: &Jid, text: &str) -> Step {
    match cx.client.say(room, text) {
        Ok(id) => {
            cx.out.print(&Line::Said {
                room: room.clone(),
                id,
            });
            Step::Done
        }
        Err(e) => fail(&cx.out, "/say", e.to_string()),
    }
}

/// A line that is no command goes to the current chat or room.
fn plain_line(cx: &Ctx<'_>, text: &str) -> Step {
    match cx.current.clone() {
        Some(room) if room.domain() == muc_domain(cx.client.jid()) => say(cx, &room, text),
        Some(to) => send_text(cx, &to, text),
        None => fail(
            &cx.out,
            "message",
            "no chat selected: use /chat JID first, or /msg JID TEXT".into(),
        ),
    }
}

fn chat(cx: &mut Ctx<'_>, typed: &str) -> Result<Step, ClientError> {
    let to = cx.jid(typed)?;
    let step = cx.ok(format!("now chatting with {to}"));
    *cx.current = Some(to);
    Ok(step)
}

fn add(cx: &Ctx<'_>, typed: &str) -> Result<Step, ClientError> {
    let jid = cx.jid(typed)?;
    let fut = cx.client.add_contact(&jid);
    Ok(cx.later(async move {
        fut.await?;
        Ok(format!("added {jid}; asked to see their presence"))
    }))
}

fn remove(cx: &Ctx<'_>, typed: &str) -> Result<Step, ClientError> {
    let jid = cx.jid(typed)?;
    let fut = cx.client.remove_contact(&jid);
    Ok(cx.later(async move {
        fut.await?;
        Ok(format!("removed {jid}"))
    }))
}

fn roster(cx: &Ctx<'_>) -> Step {
    let fut = cx.client.roster();
    let out = cx.out.clone();
    cx.later(async move {
        let items = fut.await?;
        let n = items.len();
        for item in items {
            out.print(&Line::Contact(item));
        }
        Ok(format!("{n} contact(s)"))
    })
}

fn status(cx: &Ctx<'_>, show: Option<Show>, text: Option<String>) -> Result<Step, ClientError> {
    cx.client.set_presence(show, text.as_deref())?;
    Ok(cx.ok(format!(
        "status set to {}{}",
        show.map_or("available", Show::as_str),
        text.map(|t| format!(": {t}")).unwrap_or_default()
    )))
}

fn who(cx: &Ctx<'_>) -> Step {
    let online = cx.client.online_contacts();
    let n = online.len();
    for (jid, show, status) in online {
        cx.out.print(&Line::Online { jid, show, status });
    }
    cx.ok(format!("{n} contact resource(s) online"))
}

fn join(cx: &mut Ctx<'_>, typed: &str, nick: Option<String>) -> Result<Step, ClientError> {
    let room = cx.room(typed)?;
    let nick = nick.unwrap_or_else(|| cx.client.jid().local().unwrap_or("guest").to_string());
    *cx.current = Some(room.clone());
    let fut = cx.client.join_room(&room, &nick);
    Ok(cx.later(async move {
        fut.await?;
        Ok(format!(
            "in {room} as {nick}; plain lines now go to the room"
        ))
    }))
}

fn rooms(cx: &Ctx<'_>) -> Step {
    let fut = cx.client.list_rooms();
    let out = cx.out.clone();
    cx.later(async move {
        let rooms = fut.await?;
        let n = rooms.len();
        for (room, name) in rooms {
            out.print(&Line::Room { room, name });
        }
        Ok(format!("{n} room(s)"))
    })
}

fn subject(cx: &Ctx<'_>, typed: &str, text: &str) -> Result<Step, ClientError> {
    let room = cx.room(typed)?;
    cx.client.set_subject(&room, text)?;
    Ok(cx.ok(format!("subject of {room} set")))
}

fn occupants(cx: &Ctx<'_>, typed: &str) -> Result<Step, ClientError> {
    let room = cx.room(typed)?;
    let fut = cx.client.occupants(&room);
    let out = cx.out.clone();
    Ok(cx.later(async move {
        let list = fut.await?;
        let n = list.len();
        for occupant in list {
            out.print(&Line::Occupant {
                room: room.clone(),
                occupant,
            });
        }
        Ok(format!("{n} occupant(s) in {room}"))
    }))
}

/// Forgets `room` as the current chat: plain lines no longer go there.
fn forget_current(cx: &mut Ctx<'_>, room: &Jid) {
    if cx.current.as_ref() == Some(room) {
        *cx.current = None;
    }
}

fn leave(cx: &mut Ctx<'_>, typed: &str) -> Result<Step, ClientError> {
    let room = cx.room(typed)?;
    forget_current(cx, &room);
    cx.client.leave_room(&room)?;
    Ok(cx.ok(format!("leaving {room}")))
}

fn destroy(cx: &mut Ctx<'_>, typed: &str, reason: Option<String>) -> Result<Step, ClientError> {
    let room = cx.room(typed)?;
    forget_current(cx, &room);
    let fut = cx.client.destroy_room(&room, reason.as_deref());
    Ok(cx.later(async move {
        fut.await?;
        Ok(format!("{room} destroyed"))
    }))
}

/// Prints the users a directory request found, and how many matched.
fn users(
    cx: &Ctx<'_>,
    fut: impl Future<Output = Result<(Vec<UserEntry>, usize), ClientError>> + Send + 'static,
) -> Step {
    let out = cx.out.clone();
    cx.later(async move {
        let (users, total) = fut.await?;
        let shown = users.len();
        for u in users {
            out.print(&Line::User {
                jid: u.jid,
                name: u.name,
                email: u.email,
            });
        }
        Ok(if total > shown {
            format!("{shown} of {total} user(s) shown")
        } else {
            format!("{shown} user(s)")
        })
    })
}

fn search(cx: &Ctx<'_>, term: &str) -> Step {
    let fut = cx.client.find_users(term);
    users(cx, async move {
        let found = fut.await?;
        let n = found.len();
        Ok((found, n))
    })
}

fn show_profile(cx: &Ctx<'_>) -> Step {
    let fut = cx.client.profile(None);
    cx.later(async move {
        let (name, email) = fut.await?;
        Ok(format!(
            "your profile: name={} email={}",
            name.as_deref().unwrap_or("(none)"),
            email.as_deref().unwrap_or("(none)")
        ))
    })
}

fn set_profile(cx: &Ctx<'_>, name: Option<String>, email: Option<String>) -> Step {
    let fut = cx.client.set_profile(name, email);
    cx.later(async move {
        fut.await?;
        Ok("profile saved".to_string())
    })
}

fn online(cx: &Ctx<'_>) -> Step {
    let fut = cx.client.online_users();
    let out = cx.out.clone();
    cx.later(async move {
        let users = fut.await?;
        let n = users.len();
        for jid in users {
            out.print(&Line::OnlineUser { jid });
        }
        Ok(format!("{n} user(s) online"))
    })
}

fn broadcast(cx: &Ctx<'_>, text: &str) -> Result<Step, ClientError> {
    let id = cx.client.broadcast(text)?;
    cx.out.print(&Line::Announced {
        to: ANNOUNCE_TARGET,
        id,
    });
    Ok(Step::Done)
}

fn send_file(
    cx: &Ctx<'_>,
    typed: &str,
    path: &str,
    offered: Option<String>,
    share: bool,
) -> Result<Step, ClientError> {
    let to = cx.jid(typed)?;
    let path = Path::new(path);
    if share || cx.client.shares_by_upload(&to) {
        let fut = cx.client.share_file(&to, path, offered.as_deref());
        // `/sendfile` to a contact who is offline, on a server without an
        // upload service: say the contact is offline.
        let in_room = cx.client.joined_rooms().iter().any(|(r, _)| *r == to);
        let offline = (!share && !in_room).then(|| to.clone());
        return Ok(cx.later(async move {
            let d = match (fut.await, offline) {
                (Err(ClientError::NoUploadService), Some(to)) => {
                    return Err(ClientError::NotOnline(to));
                }
                (other, _) => other?,
            };
            Ok(format!(
                "shared {} with {} ({} bytes, sha256 {}) at {}",
                d.name,
                d.peer,
                d.size,
                d.sha256,
                d.url.unwrap_or_default()
            ))
        }));
    }
    let fut = cx.client.send_file(&to, path, offered.as_deref());
    Ok(cx.later(async move {
        let d = fut.await?;
        Ok(format!(
            "sent {} to {} ({} bytes, sha256 {})",
            d.name, d.peer, d.size, d.sha256
        ))
    }))
}

/// Deletes the account; the session ends once the server confirms.
fn unregister(cx: &Ctx<'_>) -> Step {
    let fut = cx.client.unregister();
    let command = cx.name.clone();
    Step::Pending(Box::pin(async move {
        Done {
            command,
            result: fut.await.map(|_| "account deleted".to_string()),
            quit: true,
        }
    }))
}
