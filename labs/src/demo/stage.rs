//! The demo's stage: the two servers and the sniffer watching them, and
//! the scripted conversation alice and bob hold on each.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use harness::{Input, Proc};

use super::findings::{Findings, Found};
use crate::chat::{ChatServer, Twin, bin, start_server};

/// The conversation's secrets: what must leak in plaintext and stay hidden
/// under TLS.
pub(super) const ALICE_PW: &str = "correct-horse-battery";
pub(super) const BOB_PW: &str = "tr0ub4dor-and-3";
pub(super) const DM_ALICE: &str = "Hi Bob, the exam answers are in the blue folder";
pub(super) const DM_BOB: &str = "Thanks Alice, see you at 5 in room 101";
pub(super) const ROOM_MSG: &str = "Study group moved to Thursday";
pub(super) const STATUS: &str = "revising cryptography";
/// The one message sent end to end (OMEMO): hidden even on the plaintext
/// twin.
pub(super) const DM_E2E: &str = "The real answers are taped under desk 7";
pub(super) const FILE_TEXT: &str =
    "Notes: a password hashed with SCRAM is still guessable offline.\n";

/// Who types a line of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Who {
    Alice,
    Bob,
}

/// One beat of the conversation: what it shows, and the lines alice and
/// bob type for it. Each `/wait` holds its client until the event it
/// depends on (alice is in the room before bob is told to join), so the
/// run is the same every time, at any pace.
pub(super) struct Beat {
    pub(super) caption: &'static str,
    pub(super) lines: Vec<(Who, String)>,
}

/// The scripted conversation: alice and bob sign up, add each other, set a
/// status, chat, talk in a room, send a small file.
pub(super) fn conversation(file: &Path) -> Vec<Beat> {
    use Who::{Alice, Bob};
    let l = |who, s: &str| (who, s.to_string());
    vec![
        Beat {
            caption: "alice and bob add each other as contacts",
            lines: vec![
                // Both clients do OMEMO, but talk in the clear until the
                // last beat (each conversation is switched on by hand).
                l(Alice, "/e2e off bob"),
                l(Bob, "/e2e off alice"),
                l(Alice, "/add bob"),
                l(Bob, "/wait subscribe alice 20"),
                l(Bob, "/add alice"),
                l(Alice, "/wait subscription bob 20"),
                l(Alice, "/wait presence bob 20"),
            ],
        },
        Beat {
            caption: "bob sets a status",
            lines: vec![l(Bob, &format!("/status away {STATUS}"))],
        },
        Beat {
            caption: "alice joins a room and writes to bob",
            lines: vec![
                l(Alice, "/join study"),
                l(Alice, &format!("/msg bob {DM_ALICE}")),
            ],
        },
        Beat {
            caption: "bob answers, and joins the room",
            lines: vec![
                l(Bob, "/wait message alice 20"),
                l(Bob, &format!("/msg alice {DM_BOB}")),
                l(Bob, "/join study"),
            ],
        },
        Beat {
            caption: "alice writes in the room",
            lines: vec![
                l(Alice, "/wait message bob 20"),
                l(Alice, "/wait room-presence study 20"),
                l(Alice, &format!("/say study {ROOM_MSG}")),
                l(Bob, "/wait room-message study 20"),
            ],
        },
        Beat {
            caption: "alice sends bob a file",
            lines: vec![
                l(Alice, &format!("/sendfile bob {}", file.display())),
                l(Bob, "/wait file-received alice 20"),
            ],
        },
        Beat {
            caption: "alice writes to bob end to end (OMEMO): hidden even in plaintext",
            lines: vec![
                l(Alice, "/e2e on bob"),
                l(Alice, &format!("/msg bob {DM_E2E}")),
                l(Bob, "/wait message alice 20"),
            ],
        },
    ]
}

/// Everyone's flags: both do OMEMO (keys in `keys`), bob signs in with
/// PLAIN (so the sniffer has a password to find on the plaintext twin)
/// and takes every file.
pub(super) fn flags<'a>(who: Who, downloads: &'a str, keys: &'a str) -> Vec<&'a str> {
    let mut f = vec!["--register", "--e2e", "on", "--data", keys];
    if who == Who::Bob {
        f.extend(["--plain", "--accept-files", "--downloads", downloads]);
    }
    f
}

/// The file alice sends, where bob saves it, and where both keep their
/// OMEMO keys, on `server`.
pub(super) fn files(
    server: &ChatServer,
    dir: &Path,
) -> anyhow::Result<(std::path::PathBuf, String, String)> {
    let file = dir.join(format!("notes-{}.txt", server.twin.bin()));
    std::fs::write(&file, FILE_TEXT)?;
    let downloads = dir.join(format!("downloads-{}", server.twin.bin()));
    let keys = dir.join(format!("keys-{}", server.twin.bin()));
    Ok((
        file,
        downloads.to_string_lossy().into_owned(),
        keys.to_string_lossy().into_owned(),
    ))
}

/// The conversation on one server, each client with its whole script.
pub(super) fn converse(server: &ChatServer, dir: &Path) -> anyhow::Result<()> {
    let (file, d, keys) = files(server, dir)?;
    let beats = conversation(&file);
    let script = |who: Who| {
        let mut s = String::new();
        for (w, line) in beats.iter().flat_map(|b| &b.lines) {
            if *w == who {
                s.push_str(line);
                s.push('\n');
            }
        }
        s
    };
    let bob = server.start(
        "bob",
        BOB_PW,
        &flags(Who::Bob, &d, &keys),
        &script(Who::Bob),
    )?;
    let alice = server.start(
        "alice",
        ALICE_PW,
        &flags(Who::Alice, &d, &keys),
        &script(Who::Alice),
    )?;
    alice.finish(Duration::from_secs(40))?;
    bob.finish(Duration::from_secs(40))?;
    Ok(())
}

/// The servers and the sniffer watching them.
pub(super) struct Stage {
    pub(super) plain: ChatServer,
    pub(super) tls: ChatServer,
    pub(super) sniffer: Proc,
    pub(super) findings: Findings,
}

impl Stage {
    /// Stops the sniffer and sorts what it still had; returns what that
    /// revealed.
    pub(super) fn stop_sniffer(&mut self) -> anyhow::Result<Vec<Found>> {
        // The last packets reach the sniffer a moment after the clients end.
        std::thread::sleep(Duration::from_millis(300));
        let (_, lines) = self.sniffer.interrupt(Duration::from_secs(10))?;
        Ok(lines.iter().flat_map(|l| self.findings.add(l)).collect())
    }

    /// Stops the servers; what was found stays.
    pub(super) fn into_findings(self) -> Findings {
        self.findings
    }
}

/// Starts both servers and the sniffer (`say` tells each step).
pub(super) fn set_up(
    dir: &Path,
    say: &mut dyn FnMut(u8, &str) -> anyhow::Result<()>,
) -> anyhow::Result<Stage> {
    let plain = start_server(Twin::Plain, dir, "localhost", None, &[])?;
    let tls = start_server(Twin::Tls, dir, "localhost", None, &[])?;
    say(2, "starting the sniffer on lo")?;
    let mut cmd = Command::new(bin("sniffer")?);
    cmd.args(["live", "--interface", "lo", "--json", "--filter"])
        .arg(format!(
            "tcp port {} or tcp port {}",
            plain.addr.port(),
            tls.addr.port()
        ));
    let sniffer = Proc::spawn("sniffer", cmd, Input::Null)?;
    sniffer
        .wait_stderr("capturing on", Duration::from_secs(10))
        .map_err(|e| match e {
            harness::Error::Interrupted => e.into(),
            e => anyhow::anyhow!(
                "{e}\n(the demo captures live traffic: run it as root, e.g. sudo scripts/demo.sh)"
            ),
        })?;
    let ports: HashMap<u16, Twin> = [
        (plain.addr.port(), Twin::Plain),
        (tls.addr.port(), Twin::Tls),
    ]
    .into();
    Ok(Stage {
        plain,
        tls,
        sniffer,
        findings: Findings::new(ports),
    })
}
