//! What the terminal UI shows, as plain data: a window per conversation
//! (the console, each contact, each room), the contacts and their
//! presence, the transfers under way, and the state of the connection.
//! Client events update it ([`App::event`]); `view` draws it. Nothing here
//! touches the terminal or the network, so all of it is tested directly.

use std::collections::{BTreeMap, VecDeque};

use protocol::Jid;
use protocol::display::Safe;
use protocol::stanza::Show;

use crate::client::event::{ChatState, ClientEvent, FileDone, RosterItem};
use crate::client::limits::MAX_ROSTER_ITEMS;
use crate::client::omemo::store::Trust;
use crate::client::rooms::MAX_ROOM_OCCUPANTS;
use crate::client::state::Link;
use crate::client::state::muc_domain;

/// Lines a window keeps; older ones scroll away for good.
pub(super) const MAX_LINES: usize = 2_000;

/// Windows open at most: a flood of messages from made-up senders does not
/// open windows (2,000 lines each) without end; beyond, they land in the
/// console.
pub(super) const MAX_WINDOWS: usize = 100;

/// Resources of one contact shown online at most.
const MAX_RESOURCES: usize = 64;

/// A window's stable name (its place in the list changes as windows close).
pub(super) type WinId = u64;

/// The console: the client's own lines, and events of no conversation.
pub(super) const CONSOLE: WinId = 0;

/// What became of a message we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tick {
    /// Not a message of ours, or nothing to show.
    None,
    /// Sent; no receipt yet.
    Sent,
    /// The peer's client confirmed it (XEP-0184), or the room reflected it
    /// back to us (XEP-0045: it went out to everyone in the room).
    Delivered,
    /// Bounced with an error.
    Failed,
}

/// How a line is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tone {
    /// Something we said.
    Me,
    /// Something someone else said.
    Peer,
    /// The client or server telling us something.
    Info,
    /// Needs attention (an offer, a subscription request, an announcement).
    Notice,
    /// Something failed.
    Error,
}

/// One line of a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// `HH:MM`, or the date and time a delayed message was sent.
    pub(super) time: String,
    /// Who said it (messages only).
    pub(super) who: Option<String>,
    /// The text, terminal-safe.
    pub(super) text: String,
    pub(super) tone: Tone,
    /// The message id, for its receipt.
    pub(super) id: Option<String>,
    pub(super) tick: Tick,
}

/// A conversation's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Console,
    Chat,
    Room,
}

/// One window.
#[derive(Debug)]
pub(super) struct Window {
    pub(super) id: WinId,
    pub(super) kind: Kind,
    /// The contact's bare JID or the room's (none for the console).
    pub(super) jid: Option<Jid>,
    pub(super) lines: VecDeque<Entry>,
    /// Lines that arrived while another window was shown.
    pub(super) unread: usize,
    /// How many lines up from the bottom the view is scrolled.
    pub(super) scroll: usize,
    /// How far it can be scrolled: the view sets it as it draws (it
    /// knows the height), so PgUp stops with the first line at the top.
    pub(super) max_scroll: std::cell::Cell<usize>,
    /// The contact's chat state (XEP-0085), shown in the title.
    pub(super) state: Option<ChatState>,
    /// A room's occupants, by nickname.
    pub(super) occupants: BTreeMap<String, Option<Show>>,
    /// Our nickname in a room, and whether we are in it.
    pub(super) nick: Option<String>,
    pub(super) joined: bool,
    pub(super) subject: Option<String>,
}

impl Window {
    fn new(id: WinId, kind: Kind, jid: Option<Jid>) -> Window {
        Window {
            id,
            kind,
            jid,
            lines: VecDeque::new(),
            unread: 0,
            scroll: 0,
            max_scroll: std::cell::Cell::new(0),
            state: None,
            occupants: BTreeMap::new(),
            nick: None,
            joined: false,
            subject: None,
        }
    }

    /// The short name in the window bar and the prompt (terminal-safe:
    /// it comes from the network).
    pub(super) fn label(&self) -> String {
        let label = match (&self.kind, &self.jid) {
            (Kind::Console, _) | (_, None) => "console".to_string(),
            (Kind::Room, Some(j)) => format!("#{}", j.local().unwrap_or_default()),
            (Kind::Chat, Some(j)) => j.local().unwrap_or(j.domain()).to_string(),
        };
        Safe(&label).to_string()
    }
}

/// A contact: the roster's view and the presence of each resource.
#[derive(Debug, Default, Clone)]
pub(super) struct Contact {
    pub(super) name: Option<String>,
    /// A nickname the contact published (XEP-0172).
    pub(super) nick: Option<String>,
    pub(super) subscription: String,
    /// Our subscription request is pending.
    pub(super) ask: bool,
    /// Resources online: their show and status.
    pub(super) online: BTreeMap<String, (Option<Show>, Option<String>)>,
}

impl Contact {
    /// The presence to show: the most available resource's.
    pub(super) fn presence(&self) -> Option<(Option<Show>, Option<String>)> {
        let rank = |s: &Option<Show>| match s {
            Some(Show::Chat) => 0,
            None => 1,
            Some(Show::Away) => 2,
            Some(Show::Xa) => 3,
            Some(Show::Dnd) => 4,
        };
        self.online.values().min_by_key(|(s, _)| rank(s)).cloned()
    }
}

/// A file on its way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Transfer {
    pub(super) name: String,
    pub(super) sending: bool,
    pub(super) bytes: u64,
    pub(super) total: u64,
}

/// The connection to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Conn {
    Online,
    /// Dropped; the client is resuming or signing in again.
    Reconnecting(String),
    /// Gone; the reason.
    Offline(String),
}

/// Everything the UI shows.
pub(super) struct App {
    pub(super) me: Jid,
    pub(super) windows: Vec<Window>,
    /// The window shown (its id).
    pub(super) active: WinId,
    next_id: WinId,
    pub(super) contacts: BTreeMap<Jid, Contact>,
    /// By stream id.
    pub(super) transfers: BTreeMap<String, Transfer>,
    /// The shown conversation's end-to-end state (OMEMO), when the client
    /// does end to end.
    pub(super) e2e: Option<crate::client::omemo::engine::E2eState>,
    /// What protects the connection (none while signed out).
    pub(super) link: Option<Link>,
    pub(super) conn: Conn,
    /// The clock: the local time of day, `HH:MM`.
    clock: fn() -> String,
}

impl App {
    pub(super) fn new(me: Jid, clock: fn() -> String) -> App {
        App {
            me,
            windows: vec![Window::new(CONSOLE, Kind::Console, None)],
            active: CONSOLE,
            next_id: 1,
            contacts: BTreeMap::new(),
            transfers: BTreeMap::new(),
            link: None,
            e2e: None,
            conn: Conn::Online,
            clock,
        }
    }

    /// The window shown.
    pub(super) fn shown(&self) -> &Window {
        self.window(self.active).unwrap_or_else(|| &self.windows[0])
    }

    pub(super) fn window(&self, id: WinId) -> Option<&Window> {
        self.windows.iter().find(|w| w.id == id)
    }

    fn window_mut(&mut self, id: WinId) -> &mut Window {
        let i = self.windows.iter().position(|w| w.id == id).unwrap_or(0);
        &mut self.windows[i]
    }

    /// Whether `jid` is a room (on our server's MUC service).
    pub(super) fn is_room(&self, jid: &Jid) -> bool {
        jid.domain() == muc_domain(&self.me) && jid.local().is_some()
    }

    /// The window of the conversation with `jid` (bare), opened if needed.
    pub(super) fn open(&mut self, jid: &Jid) -> WinId {
        let bare = jid.to_bare();
        if let Some(w) = self.windows.iter().find(|w| w.jid.as_ref() == Some(&bare)) {
            return w.id;
        }
        if self.windows.len() >= MAX_WINDOWS {
            return CONSOLE;
        }
        let kind = if self.is_room(&bare) {
            Kind::Room
        } else {
            Kind::Chat
        };
        let id = self.next_id;
        self.next_id += 1;
        self.windows.push(Window::new(id, kind, Some(bare)));
        id
    }

    /// The window of `jid`, if one is open.
    fn find(&self, jid: &Jid) -> Option<WinId> {
        let bare = jid.to_bare();
        self.windows
            .iter()
            .find(|w| w.jid.as_ref() == Some(&bare))
            .map(|w| w.id)
    }

    /// Shows window `id`: its lines are read now.
    pub(super) fn focus(&mut self, id: WinId) {
        if self.window(id).is_some() {
            self.active = id;
            self.window_mut(id).unread = 0;
        }
    }

    /// Shows the `n`th window (1 is the console), if there is one.
    pub(super) fn focus_nth(&mut self, n: usize) -> bool {
        match n.checked_sub(1).and_then(|i| self.windows.get(i)) {
            Some(w) => {
                let id = w.id;
                self.focus(id);
                true
            }
            None => false,
        }
    }

    /// The next (or previous) window, wrapping around.
    pub(super) fn cycle(&mut self, forward: bool) {
        let n = self.windows.len();
        let i = self
            .windows
            .iter()
            .position(|w| w.id == self.active)
            .unwrap_or(0);
        let j = if forward {
            (i + 1) % n
        } else {
            (i + n - 1) % n
        };
        let id = self.windows[j].id;
        self.focus(id);
    }

    /// Closes the shown window (not the console); says whether it did.
    pub(super) fn close_shown(&mut self) -> Option<Window> {
        if self.active == CONSOLE {
            return None;
        }
        let i = self.windows.iter().position(|w| w.id == self.active)?;
        let w = self.windows.remove(i);
        let next = self.windows[i.min(self.windows.len() - 1)].id;
        self.focus(next);
        Some(w)
    }

    /// Scrolls the shown window by `lines` (up when positive).
    pub(super) fn scroll(&mut self, lines: isize) {
        let id = self.active;
        let w = self.window_mut(id);
        let max = w.max_scroll.get();
        w.scroll = w.scroll.min(max).saturating_add_signed(lines).min(max);
    }

    /// Adds a line to window `id`.
    pub(super) fn push(&mut self, id: WinId, entry: Entry) {
        let active = self.active;
        let w = self.window_mut(id);
        if w.lines.len() == MAX_LINES {
            w.lines.pop_front();
        }
        // A reader scrolled up keeps their place.
        if w.scroll > 0 {
            w.scroll += 1;
        }
        let counts = matches!(entry.tone, Tone::Peer | Tone::Notice | Tone::Error);
        w.lines.push_back(entry);
        if w.id != active && counts {
            w.unread += 1;
        }
    }

    fn entry(&self, tone: Tone, who: Option<String>, text: &str) -> Entry {
        Entry {
            time: (self.clock)(),
            who,
            text: safe_lines(text),
            tone,
            id: None,
            tick: Tick::None,
        }
    }

    /// A line of the client's own in window `id`.
    pub(super) fn say(&mut self, id: WinId, tone: Tone, text: &str) {
        let e = self.entry(tone, None, text);
        self.push(id, e);
    }

    /// A message we sent to `to` (a contact or a room), waiting for its
    /// receipt.
    pub(super) fn sent(&mut self, to: &Jid, id: String, body: &str) {
        let win = self.open(to);
        let who = match self.window(win) {
            Some(w) if w.kind == Kind::Room => w.nick.clone(),
            _ => None,
        }
        .unwrap_or_else(|| self.me.local().unwrap_or("me").to_string());
        let mut e = self.entry(Tone::Me, Some(who), body);
        e.id = Some(id);
        e.tick = Tick::Sent;
        self.push(win, e);
        // Sending a message ends our typing in that conversation.
    }

    /// Our message shown under `old` (queued) now went out as `new`: its
    /// receipt will tick it.
    pub(super) fn rekey(&mut self, to: &Jid, old: &str, new: String) {
        if let Some(win) = self.find(to) {
            let w = self.window_mut(win);
            if let Some(e) = w
                .lines
                .iter_mut()
                .rev()
                .find(|e| e.id.as_deref() == Some(old))
            {
                e.id = Some(new);
            }
        }
    }

    /// Our message `id` to `to` never reached the server (its session
    /// ended unresumed): marked, and said.
    pub(super) fn not_delivered(&mut self, to: &Jid, id: &str) {
        if let Some(win) = self.find(to)
            && self.mark(win, id, Tick::Failed)
        {
            self.say(
                win,
                Tone::Error,
                "a message above was lost with the connection: send it again",
            );
        }
    }

    /// Marks our message `id` in window `win`; true if it was there.
    fn mark(&mut self, win: WinId, id: &str, tick: Tick) -> bool {
        let w = self.window_mut(win);
        match w
            .lines
            .iter_mut()
            .rev()
            .find(|e| e.tone == Tone::Me && e.id.as_deref() == Some(id))
        {
            Some(e) => {
                // A receipt never undoes a bounce.
                if e.tick != Tick::Failed {
                    e.tick = tick;
                }
                true
            }
            None => false,
        }
    }

    /// The name shown for a contact: their roster name, their nickname,
    /// or the user part of the JID (terminal-safe: all come from the
    /// network).
    pub(super) fn name_of(&self, jid: &Jid) -> String {
        let bare = jid.to_bare();
        let name = self
            .contacts
            .get(&bare)
            .and_then(|c| c.name.clone().or_else(|| c.nick.clone()))
            .unwrap_or_else(|| bare.local().unwrap_or(bare.domain()).to_string());
        Safe(&name).to_string()
    }

    /// A roster fetched whole (at sign-in).
    pub(super) fn roster(&mut self, items: Vec<RosterItem>) {
        for item in items {
            self.roster_item(item);
        }
    }

    fn roster_item(&mut self, item: RosterItem) {
        let bare = item.jid.to_bare();
        if !self.contacts.contains_key(&bare) && self.contacts.len() >= MAX_ROSTER_ITEMS {
            return;
        }
        let c = self.contacts.entry(bare).or_default();
        c.name = item.name;
        c.subscription = item.subscription;
        c.ask = item.ask;
    }

    /// Takes one client event.
    pub(super) fn event(&mut self, ev: &ClientEvent) {
        match ev {
            ClientEvent::Message {
                from,
                body,
                delayed,
                e2e,
                ..
            } => {
                let win = self.open(from);
                // End to end is said on every message, and an untrusted
                // device loudly.
                let who = match e2e {
                    Some(e) if e.trust == Trust::Untrusted => {
                        format!(
                            "{} (e2e, UNTRUSTED device {})",
                            self.name_of(from),
                            e.device
                        )
                    }
                    Some(_) => format!("{} (e2e)", self.name_of(from)),
                    None => self.name_of(from),
                };
                let mut e = self.entry(Tone::Peer, Some(who), body);
                if let Some(t) = delayed {
                    e.time = short_stamp(t);
                }
                self.push(win, e);
                // A message ends the typing it followed.
                self.window_mut(win).state = None;
            }
            ClientEvent::Receipt { from, id } => {
                if let Some(win) = self.find(from) {
                    self.mark(win, id, Tick::Delivered);
                }
            }
            ClientEvent::MessageError { from, id, .. } => {
                let win = from.as_ref().and_then(|f| self.find(f)).unwrap_or(CONSOLE);
                if let Some(id) = id {
                    self.mark(win, id, Tick::Failed);
                }
                self.say(win, Tone::Error, &ev.to_string());
            }
            ClientEvent::E2eWarning { jid, .. } => {
                let win = jid.as_ref().map_or(CONSOLE, |j| self.open(j));
                self.say(win, Tone::Error, &ev.to_string());
            }
            ClientEvent::NotSent { to, id, .. } => {
                let win = self.find(to).unwrap_or(CONSOLE);
                self.mark(win, id, Tick::Failed);
                self.say(win, Tone::Error, &ev.to_string());
            }
            ClientEvent::ChatState { from, state } => {
                // Only typing is shown: "paused" and the rest would stay in
                // the title long after they meant anything.
                if let Some(win) = self.find(from) {
                    self.window_mut(win).state = (*state == ChatState::Composing).then_some(*state);
                }
            }
            ClientEvent::Carbon {
                sent, peer, body, ..
            } => {
                let win = self.open(peer);
                let (tone, who) = if *sent {
                    (
                        Tone::Me,
                        format!("{} (other device)", self.me.local().unwrap_or("me")),
                    )
                } else {
                    (Tone::Peer, self.name_of(peer))
                };
                let e = self.entry(tone, Some(who), body);
                self.push(win, e);
            }
            ClientEvent::Archived {
                from,
                to,
                body,
                stamp,
            } => self.archived(from.as_ref(), to.as_ref(), body, stamp.as_deref()),
            // Our own nickname comes back too (PEP): we are no contact.
            ClientEvent::Nick { from, .. } if from.to_bare() == self.me.to_bare() => {}
            // Only a contact's nickname is kept (the server sends only
            // those; anything else would grow the list without end).
            ClientEvent::Nick { from, nick } => {
                if let Some(c) = self.contacts.get_mut(&from.to_bare()) {
                    c.nick = Some(nick.clone());
                }
            }
            ClientEvent::Presence {
                from,
                available,
                show,
                status,
            } => self.presence(from, *available, *show, status.clone()),
            ClientEvent::RosterPush(item) => self.roster_item(item.clone()),
            ClientEvent::RosterRemoved(jid) => {
                self.contacts.remove(&jid.to_bare());
            }
            ClientEvent::SubscriptionRequest { .. }
            | ClientEvent::Subscription { .. }
            | ClientEvent::Announcement { .. } => {
                self.say(CONSOLE, Tone::Notice, &ev.to_string());
            }
            ClientEvent::FileOffer { from, .. } | ClientEvent::FileShared { from, .. } => {
                let win = self.open(from);
                self.say(win, Tone::Notice, &ev.to_string());
            }
            ClientEvent::FileProgress {
                sid,
                name,
                sending,
                bytes,
                total,
            } if bytes >= total => {
                self.transfers.remove(sid);
            }
            ClientEvent::FileProgress {
                sid,
                name,
                sending,
                bytes,
                total,
            } => {
                self.transfers.insert(
                    sid.clone(),
                    Transfer {
                        name: name.clone(),
                        sending: *sending,
                        bytes: *bytes,
                        total: *total,
                    },
                );
            }
            ClientEvent::FileReceived(FileDone { sid, peer, .. }) => {
                self.transfers.remove(sid);
                let win = self.open(peer);
                self.say(win, Tone::Notice, &ev.to_string());
            }
            ClientEvent::FileFailed { sid, .. } => {
                self.transfers.remove(sid);
                let win = self.active;
                self.say(win, Tone::Error, &ev.to_string());
            }
            ClientEvent::RoomJoined {
                room,
                nick,
                occupants,
                ..
            } => {
                let win = self.open(room);
                let w = self.window_mut(win);
                w.joined = true;
                w.nick = Some(nick.clone());
                w.occupants = occupants.iter().map(|o| (o.clone(), None)).collect();
                w.occupants.insert(nick.clone(), None);
                self.say(win, Tone::Info, &ev.to_string());
            }
            ClientEvent::RoomPresence {
                room,
                nick,
                joined,
                available,
                show,
                ..
            } => {
                // A window closed (and the room left) stays closed.
                let Some(win) = self.find(room) else { return };
                let w = self.window_mut(win);
                let known = w.occupants.contains_key(nick);
                if *available && (known || w.occupants.len() < MAX_ROOM_OCCUPANTS) {
                    w.occupants.insert(nick.clone(), *show);
                } else {
                    w.occupants.remove(nick);
                }
                // Arrivals and departures are worth a line; a status
                // change of someone already here only updates the list.
                if *joined || !available || !known {
                    self.say(win, Tone::Info, &ev.to_string());
                }
            }
            ClientEvent::RoomMessage {
                room,
                nick,
                body,
                id,
                delayed,
            } => {
                let win = self.open(room);
                let mine = nick.is_some()
                    && self.window(win).and_then(|w| w.nick.as_ref()) == nick.as_ref();
                // Our own message coming back from the room: it reached
                // everyone in it. Tick the line we showed when sending.
                if mine
                    && delayed.is_none()
                    && let Some(id) = id
                    && self.mark(win, id, Tick::Delivered)
                {
                    return;
                }
                let tone = if mine { Tone::Me } else { Tone::Peer };
                let who = nick.clone().unwrap_or_else(|| "(room)".to_string());
                let mut e = self.entry(tone, Some(who), body);
                // The room's recent history comes again on each join (a
                // rejoin after signing in again): what is shown already
                // is not shown twice.
                if delayed.is_some()
                    && self
                        .window(win)
                        .is_some_and(|w| w.lines.iter().any(|l| l.who == e.who && l.text == e.text))
                {
                    return;
                }
                if let Some(t) = delayed {
                    e.time = short_stamp(t);
                }
                self.push(win, e);
            }
            ClientEvent::RoomSubject { room, subject, .. } => {
                let Some(win) = self.find(room) else { return };
                self.window_mut(win).subject =
                    Some(Safe(subject).to_string()).filter(|s| !s.is_empty());
                self.say(win, Tone::Info, &ev.to_string());
            }
            ClientEvent::RoomLeft { room, .. } => {
                let Some(win) = self.find(room) else { return };
                let w = self.window_mut(win);
                w.joined = false;
                w.occupants.clear();
                self.say(win, Tone::Info, &ev.to_string());
            }
            ClientEvent::StanzaTooLarge { .. } | ClientEvent::EventsDropped { .. } => {
                self.say(CONSOLE, Tone::Error, &ev.to_string());
            }
            ClientEvent::Reconnecting { reason } => {
                self.conn = Conn::Reconnecting(reason.clone());
                self.say(CONSOLE, Tone::Error, &ev.to_string());
            }
            ClientEvent::Resumed { .. } => {
                self.conn = Conn::Online;
                self.say(CONSOLE, Tone::Info, &ev.to_string());
            }
            ClientEvent::Disconnected { reason } => {
                self.signed_out();
                self.conn = Conn::Offline(
                    reason
                        .clone()
                        .unwrap_or_else(|| "the server closed the connection".into()),
                );
                self.say(CONSOLE, Tone::Error, &ev.to_string());
            }
        }
    }

    /// The session ended: nobody is known to be online any more (a new
    /// session hears everyone's presence again), and no one is typing.
    pub(super) fn signed_out(&mut self) {
        for c in self.contacts.values_mut() {
            c.online.clear();
        }
        for w in &mut self.windows {
            w.state = None;
        }
    }

    fn presence(
        &mut self,
        from: &Jid,
        available: bool,
        show: Option<Show>,
        status: Option<String>,
    ) {
        if from.to_bare() == self.me.to_bare() {
            return;
        }
        let resource = from.resource().unwrap_or_default().to_string();
        // Presence of someone not in the roster (a directed presence) is
        // not kept: the list stays the roster's size.
        let Some(c) = self.contacts.get_mut(&from.to_bare()) else {
            return;
        };
        let before = c.presence().is_some();
        if available && (c.online.contains_key(&resource) || c.online.len() < MAX_RESOURCES) {
            c.online.insert(resource, (show, status));
        } else {
            c.online.remove(&resource);
        }
        let after = c.presence().is_some();
        // The conversation says when the contact comes and goes.
        if before != after
            && let Some(win) = self.find(from)
        {
            let name = self.name_of(from);
            let what = if after { "is online" } else { "went offline" };
            self.say(win, Tone::Info, &format!("{name} {what}"));
        }
    }

    /// A message from the archive (`/history`), in its conversation's
    /// window.
    fn archived(&mut self, from: Option<&Jid>, to: Option<&Jid>, body: &str, stamp: Option<&str>) {
        let me = self.me.to_bare();
        let ours = from.is_some_and(|f| f.to_bare() == me);
        let Some(peer) = (if ours { to } else { from }) else {
            return;
        };
        let win = self.open(peer);
        let room = self.is_room(&peer.to_bare());
        let who = match (room, ours) {
            // In a room's archive, `from` is room@service/nick.
            (true, _) => peer.resource().unwrap_or("(room)").to_string(),
            (false, true) => me.local().unwrap_or("me").to_string(),
            (false, false) => self.name_of(peer),
        };
        let tone = if ours { Tone::Me } else { Tone::Peer };
        let mut e = self.entry(tone, Some(who), body);
        e.time = stamp.map(short_stamp).unwrap_or_else(|| "--:--".into());
        let w = self.window_mut(win);
        if w.lines.len() == MAX_LINES {
            w.lines.pop_front();
        }
        w.lines.push_back(e);
    }

    /// A file sent by a command that ended (`/sendfile`, `/share`; its
    /// answer says what, not which transfer): its gauge goes.
    pub(super) fn send_ended(&mut self, text: &str) {
        let sending: Vec<String> = self
            .transfers
            .iter()
            .filter(|(_, t)| t.sending)
            .map(|(sid, _)| sid.clone())
            .collect();
        let named: Vec<&String> = sending
            .iter()
            .filter(|sid| text.contains(&self.transfers[*sid].name))
            .collect();
        let gone: Vec<String> = match (named.len(), sending.len()) {
            (0, 1) => sending.clone(),
            (0, _) => Vec::new(),
            _ => named.into_iter().cloned().collect(),
        };
        for sid in gone {
            self.transfers.remove(&sid);
        }
    }

    /// The nicknames of the room shown, and the JIDs of contacts and
    /// rooms: what Tab completes.
    pub(super) fn completions(&self) -> Vec<String> {
        let mut out: Vec<String> = self.shown().occupants.keys().cloned().collect();
        let me = self.me.to_bare();
        for jid in self.contacts.keys().filter(|j| **j != me) {
            out.push(jid.to_string());
        }
        for w in &self.windows {
            if let Some(j) = &w.jid {
                out.push(j.to_string());
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Text made terminal-safe line by line: a message of several lines (from
/// clients that allow them) keeps its lines, which the view indents under
/// the first, so none can pass for a message of its own; every other
/// control character is shown escaped.
fn safe_lines(text: &str) -> String {
    text.split('\n')
        .map(|l| Safe(l.strip_suffix('\r').unwrap_or(l)).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A timestamp (XEP-0082, `2026-12-03T14:05:09Z` or with fractions) as
/// `12-03 14:05` (UTC, as sent).
pub(super) fn short_stamp(stamp: &str) -> String {
    match (stamp.get(5..10), stamp.get(11..16)) {
        (Some(day), Some(time)) => format!("{day} {time}"),
        _ => Safe(stamp).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    fn app() -> App {
        App::new(jid("alice@localhost/tui"), || "12:00".to_string())
    }

    /// bob in alice's roster, both ways.
    fn with_bob(a: &mut App) {
        a.roster(vec![RosterItem {
            jid: jid("bob@localhost"),
            name: None,
            subscription: "both".into(),
            ask: false,
        }]);
    }

    /// alice in lab@conference.localhost as "al", with `others`.
    fn in_lab(a: &mut App, others: &[&str]) -> Jid {
        let room = jid("lab@conference.localhost");
        a.event(&ClientEvent::RoomJoined {
            room: room.clone(),
            nick: "al".into(),
            created: false,
            occupants: others.iter().map(|o| o.to_string()).collect(),
        });
        room
    }

    #[test]
    fn a_sent_message_is_ticked_by_its_receipt_and_not_by_another() {
        let mut a = app();
        a.sent(&jid("bob@localhost"), "m-1".into(), "hi");
        a.sent(&jid("bob@localhost"), "m-2".into(), "there");
        a.event(&ClientEvent::Receipt {
            from: jid("bob@localhost/phone"),
            id: "m-2".into(),
        });
        let w = a.window(1).unwrap();
        assert_eq!(w.label(), "bob");
        let ticks: Vec<Tick> = w.lines.iter().map(|e| e.tick).collect();
        assert_eq!(ticks, [Tick::Sent, Tick::Delivered]);
        // A bounce marks the line and says why, in the conversation.
        a.event(&ClientEvent::MessageError {
            from: Some(jid("bob@localhost")),
            id: Some("m-1".into()),
            condition: "service-unavailable".into(),
            text: None,
        });
        let w = a.window(1).unwrap();
        assert_eq!(w.lines[0].tick, Tick::Failed);
        assert_eq!(w.lines[2].tone, Tone::Error);
    }

    #[test]
    fn messages_open_their_window_and_count_as_unread_until_shown() {
        let mut a = app();
        let msg = |body: &str| ClientEvent::Message {
            from: jid("bob@localhost/phone"),
            body: body.into(),
            id: None,
            kind: protocol::stanza::MessageType::Chat,
            delayed: None,
            e2e: None,
        };
        a.event(&msg("one"));
        a.event(&msg("two\u{1b}[2J"));
        assert_eq!(a.windows.len(), 2);
        let w = a.window(1).unwrap();
        assert_eq!(w.unread, 2);
        // Peer text is made terminal-safe.
        assert!(!w.lines[1].text.contains('\u{1b}'));
        a.focus_nth(2);
        assert_eq!(a.shown().unread, 0);
        a.event(&msg("three"));
        assert_eq!(a.shown().unread, 0);
        assert!(!a.focus_nth(3));
        assert!(a.close_shown().is_some());
        assert_eq!(a.active, CONSOLE);
        assert!(a.close_shown().is_none(), "the console stays");
    }

    #[test]
    fn our_room_message_is_ticked_when_the_room_reflects_it() {
        let mut a = app();
        let room = in_lab(&mut a, &["bo"]);
        a.sent(&room, "r-1".into(), "hello room");
        a.event(&ClientEvent::RoomMessage {
            room: room.clone(),
            nick: Some("al".into()),
            body: "hello room".into(),
            id: Some("r-1".into()),
            delayed: None,
        });
        a.event(&ClientEvent::RoomMessage {
            room: room.clone(),
            nick: Some("bo".into()),
            body: "hi al".into(),
            id: Some("x".into()),
            delayed: None,
        });
        let w = a.window(1).unwrap();
        assert_eq!(w.label(), "#lab");
        let said: Vec<(&str, Tick)> = w
            .lines
            .iter()
            .filter(|e| e.who.is_some())
            .map(|e| (e.text.as_str(), e.tick))
            .collect();
        assert_eq!(
            said,
            [("hello room", Tick::Delivered), ("hi al", Tick::None)]
        );
        assert!(a.completions().contains(&"bo".to_string()) || a.active != 1);
        a.focus(1);
        assert!(a.completions().contains(&"bo".to_string()));
    }

    #[test]
    fn presence_shows_the_most_available_resource_and_says_comings_and_goings() {
        let mut a = app();
        with_bob(&mut a);
        a.open(&jid("bob@localhost"));
        let p = |res: &str, available, show| ClientEvent::Presence {
            from: jid(&format!("bob@localhost/{res}")),
            available,
            show,
            status: None,
        };
        a.event(&p("phone", true, Some(Show::Away)));
        a.event(&p("desk", true, None));
        let bob = &a.contacts[&jid("bob@localhost")];
        assert_eq!(bob.presence(), Some((None, None)));
        a.event(&p("desk", false, None));
        a.event(&p("phone", false, None));
        assert_eq!(a.contacts[&jid("bob@localhost")].presence(), None);
        let said: Vec<&str> = a
            .window(1)
            .unwrap()
            .lines
            .iter()
            .map(|e| e.text.as_str())
            .collect();
        assert_eq!(said, ["bob is online", "bob went offline"]);
    }

    #[test]
    fn connection_events_set_the_state_shown() {
        let mut a = app();
        a.event(&ClientEvent::Reconnecting {
            reason: "reset".into(),
        });
        assert_eq!(a.conn, Conn::Reconnecting("reset".into()));
        a.event(&ClientEvent::Resumed {
            redelivered: 1,
            resent: 0,
        });
        assert_eq!(a.conn, Conn::Online);
        a.event(&ClientEvent::Disconnected { reason: None });
        assert!(matches!(a.conn, Conn::Offline(_)));
    }

    #[test]
    fn a_closed_room_window_stays_closed_when_the_room_says_goodbye() {
        let mut a = app();
        let room = in_lab(&mut a, &[]);
        a.focus(1);
        assert!(a.close_shown().is_some());
        a.event(&ClientEvent::RoomPresence {
            room: room.clone(),
            nick: "al".into(),
            joined: false,
            available: false,
            show: None,
            status: None,
        });
        a.event(&ClientEvent::RoomLeft {
            room,
            destroyed: false,
            reason: None,
        });
        assert_eq!(a.windows.len(), 1, "only the console");
    }

    #[test]
    fn our_own_nickname_makes_no_contact_and_a_lost_session_forgets_presence() {
        let mut a = app();
        with_bob(&mut a);
        a.event(&ClientEvent::Nick {
            from: jid("alice@localhost"),
            nick: "Al".into(),
        });
        assert!(!a.contacts.contains_key(&jid("alice@localhost")));
        a.event(&ClientEvent::Presence {
            from: jid("bob@localhost/desk"),
            available: true,
            show: None,
            status: None,
        });
        a.open(&jid("bob@localhost"));
        a.event(&ClientEvent::ChatState {
            from: jid("bob@localhost/desk"),
            state: ChatState::Composing,
        });
        assert!(a.window(1).unwrap().state.is_some());
        a.event(&ClientEvent::Disconnected { reason: None });
        assert_eq!(a.contacts[&jid("bob@localhost")].presence(), None);
        assert!(a.window(1).unwrap().state.is_none());
        // "Paused" shows nothing: only typing does.
        a.event(&ClientEvent::ChatState {
            from: jid("bob@localhost/desk"),
            state: ChatState::Paused,
        });
        assert!(a.window(1).unwrap().state.is_none());
    }

    #[test]
    fn a_message_of_several_lines_keeps_them_and_escapes_the_rest() {
        let mut a = app();
        a.event(&ClientEvent::Message {
            from: jid("bob@localhost/phone"),
            body: "one\r\ntwo\u{1b}[2J\rthree".into(),
            id: None,
            kind: protocol::stanza::MessageType::Chat,
            delayed: None,
            e2e: None,
        });
        let text = &a.window(1).unwrap().lines[0].text;
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines.len(), 2, "{text:?}");
        assert_eq!(lines[0], "one");
        assert!(
            !lines[1].contains('\u{1b}') && !lines[1].contains('\r'),
            "{text:?}"
        );
    }

    #[test]
    fn strangers_cannot_grow_the_windows_or_the_contact_list_without_end() {
        let mut a = app();
        for i in 0..MAX_WINDOWS + 20 {
            a.event(&ClientEvent::Message {
                from: jid(&format!("spam{i}@localhost/x")),
                body: "hi".into(),
                id: None,
                kind: protocol::stanza::MessageType::Chat,
                delayed: None,
                e2e: None,
            });
            a.event(&ClientEvent::Presence {
                from: jid(&format!("spam{i}@localhost/x")),
                available: true,
                show: None,
                status: None,
            });
        }
        assert_eq!(a.windows.len(), MAX_WINDOWS);
        assert!(a.contacts.is_empty(), "presence of strangers is not kept");
        // What did not get a window is still shown, in the console.
        assert!(a.window(CONSOLE).unwrap().lines.len() >= 20);
    }

    #[test]
    fn stamps_are_shortened() {
        assert_eq!(short_stamp("2026-12-03T14:05:09Z"), "12-03 14:05");
        assert_eq!(short_stamp("junk"), "junk");
    }
}
