//! Reading an input line as a [`Command`]: the typed form of what the user
//! typed, or a [`BadCommand`] saying how to type it. Nothing here touches
//! the network; JIDs stay as typed until a command runs (a bare name means a
//! user or room on our own server, which only the connection knows).

use std::time::Duration;

use protocol::stanza::Show;

/// How long `/wait` waits by default.
pub(super) const WAIT_DEFAULT: Duration = Duration::from_secs(10);

/// The longest `/wait`: an hour, so that a script's typo cannot hang it for
/// days.
const WAIT_MAX_SECONDS: f64 = 3600.0;

/// A parsed input line.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Command {
    /// `/help`.
    Help,
    /// `/msg JID TEXT`.
    Msg(String, String),
    /// `/chat JID`.
    Chat(String),
    /// `/add JID`.
    Add(String),
    /// `/remove JID`.
    Remove(String),
    /// `/roster`.
    Roster,
    /// `/status [SHOW] [TEXT]`.
    Status(Option<Show>, Option<String>),
    /// `/who`.
    Who,
    /// `/join ROOM [NICK]`.
    Join(String, Option<String>),
    /// `/rooms`.
    Rooms,
    /// `/say ROOM TEXT`.
    Say(String, String),
    /// `/subject ROOM TEXT`.
    Subject(String, String),
    /// `/occupants ROOM`.
    Occupants(String),
    /// `/leave ROOM`.
    Leave(String),
    /// `/destroy ROOM [REASON]`.
    Destroy(String, Option<String>),
    /// `/users`.
    Users,
    /// `/search TERM`.
    Search(String),
    /// `/profile [name NAME] [email EMAIL]`; both `None` shows the profile.
    Profile(Option<String>, Option<String>),
    /// `/online`.
    Online,
    /// `/broadcast TEXT`.
    Broadcast(String),
    /// `/sendfile JID PATH [as NAME]`.
    SendFile(String, String, Option<String>),
    /// `/share JID PATH [as NAME]`: through the server's upload service,
    /// whoever is online.
    Share(String, String, Option<String>),
    /// `/accept [SID]`.
    Accept(Option<String>),
    /// `/reject [SID]`.
    Reject(Option<String>),
    /// `/nick NAME`: our nickname, published over PEP (XEP-0172).
    Nick(String),
    /// `/history JID [N]`: the last N messages with JID from the archive.
    History(String, usize),
    /// `/typing JID [on|off]`: a chat state (XEP-0085).
    Typing(String, bool),
    /// `/fingerprints [JID]`: OMEMO devices and their fingerprints (ours
    /// without a JID).
    Fingerprints(Option<String>),
    /// `/verify JID FINGERPRINT`.
    Verify(String, String),
    /// `/e2e [on|off] JID`: end to end in that conversation (the state
    /// without on or off).
    E2e(Option<bool>, String),
    /// `/unregister`.
    Unregister,
    /// `/quit`.
    Quit,
    /// `/wait TYPE [JID] [SECONDS]`.
    Wait {
        /// The event type waited for.
        kind: String,
        /// As typed: a bare name means a user on our own server.
        from: Option<String>,
        /// How long.
        seconds: Duration,
    },
    /// A line that is not a command: a message to the current chat.
    Text(String),
    /// A blank line.
    Empty,
}

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum BadCommand {
    /// The command exists; its arguments are wrong.
    #[error("usage: {0}")]
    Usage(&'static str),
    /// No such command.
    #[error("unknown command {0}; type /help")]
    Unknown(String),
    /// `/wait` for a negative or too long time.
    #[error("/wait takes 0 to 3600 seconds")]
    WaitSeconds,
}

use BadCommand::Usage;

impl Command {
    /// Reads one input line.
    pub(super) fn parse(line: &str) -> Result<Command, BadCommand> {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            return Ok(Command::Empty);
        }
        if !line.starts_with('/') {
            return Ok(Command::Text(line.to_string()));
        }
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        let optional = || Some(rest.to_string()).filter(|r| !r.is_empty());
        Ok(match cmd {
            "/help" => Command::Help,
            "/msg" => two(rest, Command::Msg, "/msg JID TEXT")?,
            "/chat" => one(rest, Command::Chat, "/chat JID")?,
            "/add" => one(rest, Command::Add, "/add JID")?,
            "/remove" => one(rest, Command::Remove, "/remove JID")?,
            "/roster" => Command::Roster,
            "/status" => status(rest),
            "/who" => Command::Who,
            "/join" => join(rest)?,
            "/rooms" => Command::Rooms,
            "/say" => two(rest, Command::Say, "/say ROOM TEXT")?,
            "/subject" => two(rest, Command::Subject, "/subject ROOM TEXT")?,
            "/occupants" => one(rest, Command::Occupants, "/occupants ROOM")?,
            "/leave" => one(rest, Command::Leave, "/leave ROOM")?,
            "/destroy" => destroy(rest)?,
            "/users" => Command::Users,
            "/search" => Command::Search(nonempty(rest, "/search TERM")?),
            "/profile" => profile(rest)?,
            "/online" => Command::Online,
            "/broadcast" => Command::Broadcast(nonempty(rest, "/broadcast TEXT")?),
            "/sendfile" => {
                let (to, path, name) = file_args(rest, "/sendfile JID PATH")?;
                Command::SendFile(to, path, name)
            }
            "/share" => {
                let (to, path, name) = file_args(rest, "/share JID PATH")?;
                Command::Share(to, path, name)
            }
            "/accept" => Command::Accept(optional()),
            "/reject" => Command::Reject(optional()),
            "/typing" => typing(rest)?,
            "/history" => history(rest)?,
            "/nick" => Command::Nick(nonempty(rest, "/nick NAME")?),
            "/fingerprints" => Command::Fingerprints(optional()),
            "/verify" => two(rest, Command::Verify, "/verify JID FINGERPRINT")?,
            "/e2e" => e2e(rest)?,
            "/unregister" => Command::Unregister,
            "/quit" => Command::Quit,
            "/wait" => wait(rest)?,
            other => return Err(BadCommand::Unknown(other.to_string())),
        })
    }
}

/// `/history JID [N]` (N from 1 to 100, 20 by default).
fn history(rest: &str) -> Result<Command, BadCommand> {
    const USAGE: &str = "/history JID [N]  (N: 1 to 100)";
    let mut words = rest.split_whitespace();
    let who = words.next().ok_or(Usage(USAGE))?;
    let n = match words.next() {
        None => 20,
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or(Usage(USAGE))?,
    };
    if words.next().is_some() {
        return Err(Usage(USAGE));
    }
    Ok(Command::History(who.to_string(), n))
}

/// `/e2e [on|off] JID`.
fn e2e(rest: &str) -> Result<Command, BadCommand> {
    const USAGE: &str = "/e2e [on|off] JID";
    let words: Vec<&str> = rest.split_whitespace().collect();
    match words.as_slice() {
        ["on", who] => Ok(Command::E2e(Some(true), who.to_string())),
        ["off", who] => Ok(Command::E2e(Some(false), who.to_string())),
        [who] if *who != "on" && *who != "off" => Ok(Command::E2e(None, who.to_string())),
        _ => Err(Usage(USAGE)),
    }
}

/// `/typing JID [on|off]`.
fn typing(rest: &str) -> Result<Command, BadCommand> {
    const USAGE: &str = "/typing JID [on|off]";
    let mut words = rest.split_whitespace();
    let who = words.next().ok_or(Usage(USAGE))?;
    let on = match words.next() {
        None | Some("on") => true,
        Some("off") => false,
        Some(_) => return Err(Usage(USAGE)),
    };
    if words.next().is_some() {
        return Err(Usage(USAGE));
    }
    Ok(Command::Typing(who.to_string(), on))
}

/// `rest`, which must not be empty.
fn nonempty(rest: &str, usage: &'static str) -> Result<String, BadCommand> {
    if rest.is_empty() {
        return Err(Usage(usage));
    }
    Ok(rest.to_string())
}

/// Exactly one word.
fn one(rest: &str, c: fn(String) -> Command, usage: &'static str) -> Result<Command, BadCommand> {
    if rest.is_empty() || rest.contains(' ') {
        return Err(Usage(usage));
    }
    Ok(c(rest.to_string()))
}

/// A word, then text that is not blank.
fn two(
    rest: &str,
    c: fn(String, String) -> Command,
    usage: &'static str,
) -> Result<Command, BadCommand> {
    match rest.split_once(' ') {
        Some((first, text)) if !text.trim().is_empty() => {
            Ok(c(first.to_string(), text.to_string()))
        }
        _ => Err(Usage(usage)),
    }
}

/// `[away|dnd|xa|chat] [TEXT]`: a first word that is no show value starts
/// the text.
fn status(rest: &str) -> Command {
    let (first, tail) = rest.split_once(' ').unwrap_or((rest, ""));
    match Show::parse(first) {
        Ok(s) => Command::Status(
            Some(s),
            Some(tail.trim().to_string()).filter(|t| !t.is_empty()),
        ),
        Err(_) => Command::Status(None, Some(rest.to_string()).filter(|t| !t.is_empty())),
    }
}

/// `ROOM [NICK]`.
fn join(rest: &str) -> Result<Command, BadCommand> {
    let mut parts = rest.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(room), nick, None) => Ok(Command::Join(room.to_string(), nick.map(str::to_string))),
        _ => Err(Usage("/join ROOM [NICK]")),
    }
}

/// `ROOM [REASON...]`.
fn destroy(rest: &str) -> Result<Command, BadCommand> {
    if rest.is_empty() {
        return Err(Usage("/destroy ROOM [REASON]"));
    }
    Ok(match rest.split_once(' ') {
        Some((room, reason)) => Command::Destroy(room.to_string(), Some(reason.trim().to_string())),
        None => Command::Destroy(rest.to_string(), None),
    })
}

/// `JID PATH [as NAME]`: the last ` as ` splits off the offered name.
fn file_args(
    rest: &str,
    usage: &'static str,
) -> Result<(String, String, Option<String>), BadCommand> {
    match rest.split_once(' ') {
        Some((to, path)) if !path.trim().is_empty() => {
            let (path, name) = match path.rsplit_once(" as ") {
                Some((p, n)) if !n.trim().is_empty() => (p, Some(n.trim().to_string())),
                _ => (path, None),
            };
            Ok((to.to_string(), path.trim().to_string(), name))
        }
        _ => Err(Usage(usage)),
    }
}

/// `TYPE [JID] [SECONDS]`, the last two in either order.
fn wait(rest: &str) -> Result<Command, BadCommand> {
    let mut parts = rest.split_whitespace();
    let Some(kind) = parts.next() else {
        return Err(Usage("/wait TYPE [JID] [SECONDS]"));
    };
    let mut from = None;
    let mut seconds = WAIT_DEFAULT;
    for p in parts {
        if let Ok(s) = p.parse::<f64>() {
            if !(0.0..=WAIT_MAX_SECONDS).contains(&s) {
                return Err(BadCommand::WaitSeconds);
            }
            seconds = Duration::from_secs_f64(s);
        } else {
            from = Some(p.to_string());
        }
    }
    Ok(Command::Wait {
        kind: kind.to_string(),
        from,
        seconds,
    })
}

/// `/profile [name NAME...] [email EMAIL]`: the words after `name` up to
/// `email` are the name.
fn profile(rest: &str) -> Result<Command, BadCommand> {
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
            _ => return Err(Usage("/profile [name NAME] [email EMAIL]")),
        }
    }
    Ok(Command::Profile(name.map(|n| n.join(" ")), email))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert!(
            matches!(Command::parse("/msg bob@x hello there"), Ok(Command::Msg(t, m)) if t == "bob@x" && m == "hello there")
        );
        assert!(matches!(Command::parse("/msg bob@x"), Err(Usage(_))));
        assert!(
            matches!(Command::parse("/status away out for lunch"), Ok(Command::Status(Some(Show::Away), Some(t))) if t == "out for lunch")
        );
        assert!(
            matches!(Command::parse("/status busy today"), Ok(Command::Status(None, Some(t))) if t == "busy today")
        );
        assert!(matches!(
            Command::parse("/status"),
            Ok(Command::Status(None, None))
        ));
        assert!(matches!(Command::parse("hello"), Ok(Command::Text(t)) if t == "hello"));
        assert!(matches!(
            Command::parse("/frobnicate"),
            Err(BadCommand::Unknown(_))
        ));
        assert!(matches!(Command::parse("/add a b"), Err(Usage(_))));
        match Command::parse("/wait message bob@localhost 2.5") {
            Ok(Command::Wait {
                kind,
                from,
                seconds,
            }) => {
                assert_eq!(kind, "message");
                assert_eq!(from.as_deref(), Some("bob@localhost"));
                assert_eq!(seconds, Duration::from_millis(2500));
            }
            _ => panic!("not a wait"),
        }
    }

    #[test]
    fn usage_errors_keep_their_words() {
        let err = |line: &str| Command::parse(line).unwrap_err().to_string();
        assert_eq!(err("/join a b c"), "usage: /join ROOM [NICK]");
        assert_eq!(err("/destroy"), "usage: /destroy ROOM [REASON]");
        assert_eq!(err("/wait x 5000"), "/wait takes 0 to 3600 seconds");
        assert_eq!(err("/nope"), "unknown command /nope; type /help");
        assert_eq!(
            err("/profile colour red"),
            "usage: /profile [name NAME] [email EMAIL]"
        );
        assert_eq!(
            Command::parse("/sendfile bob a b.txt as c.txt"),
            Ok(Command::SendFile(
                "bob".into(),
                "a b.txt".into(),
                Some("c.txt".into())
            ))
        );
        assert_eq!(
            Command::parse("/share lab@conference.localhost notes.txt"),
            Ok(Command::Share(
                "lab@conference.localhost".into(),
                "notes.txt".into(),
                None
            ))
        );
        assert_eq!(err("/share bob"), "usage: /share JID PATH");
        assert_eq!(
            Command::parse("/profile name Ada Lovelace email a@b"),
            Ok(Command::Profile(
                Some("Ada Lovelace".into()),
                Some("a@b".into())
            ))
        );
    }
}
