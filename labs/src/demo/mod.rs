//! `labs demo`: the toolkit's main job on one screen. The same scripted
//! conversation runs on `chat-plain` and on `chat-tls` while the sniffer
//! watches loopback; then what it recovered is shown side by side, with a
//! verdict per category. Every line of the verdict comes from what the
//! sniffer actually found in this run.

use protocol::outln;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use comfy_table::Cell;
use serde::Serialize;
use sniffer::html::{escape, page};
use sniffer::report::Look;

use harness::signals::check_interrupt;
use harness::{Input, Proc};

use crate::chat::{ChatServer, Twin, bin, start_server};

mod findings;
mod live;

use findings::{Findings, Side};

/// The conversation's secrets: what must leak in plaintext and stay hidden
/// under TLS.
const ALICE_PW: &str = "correct-horse-battery";
const BOB_PW: &str = "tr0ub4dor-and-3";
const DM_ALICE: &str = "Hi Bob, the exam answers are in the blue folder";
const DM_BOB: &str = "Thanks Alice, see you at 5 in room 101";
const ROOM_MSG: &str = "Study group moved to Thursday";
const STATUS: &str = "revising cryptography";
const FILE_TEXT: &str = "Notes: a password hashed with SCRAM is still guessable offline.\n";

/// Options of `labs demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Print one JSON object instead of the side-by-side view.
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait between steps, for a live classroom (with --live,
    /// between the conversation's beats; 2 by default there).
    #[arg(long)]
    pub pace: Option<f64>,
    /// Show the demo as it happens, full screen (for a projector): each
    /// message in the chat panes, the sniffer's finding for it beside it,
    /// plaintext on the left and TLS on the right, and the verdict filling
    /// in. Needs a terminal; the table is printed at the end as without it.
    #[arg(long, conflicts_with = "json")]
    pub live: bool,
    /// Also write the side-by-side view as one self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
}

/// The demo's outcome: what the sniffer recovered on each side, and the
/// verdict per category. The table and the `--json` line are both printed
/// from it. Fields in alphabetical order, as the JSON line always had them.
#[derive(Serialize)]
struct Report<'a> {
    plaintext: &'a BTreeMap<&'static str, Vec<String>>,
    seconds: f64,
    tls: &'a BTreeMap<&'static str, Vec<String>>,
    #[serde(rename = "type")]
    kind: &'static str,
    verdict: Vec<Verdict>,
}

/// One row of the verdict: `LEAKED`, `visible` or `hidden` on each side.
#[derive(Serialize)]
struct Verdict {
    category: &'static str,
    plaintext: &'static str,
    tls: &'static str,
}

/// The rows of the verdict: (category, what kind of leak it is).
const ROWS: [(&str, &str); 8] = [
    ("credentials", "content"),
    ("messages", "content"),
    ("contacts", "content"),
    ("presence", "content"),
    ("file", "content"),
    ("server name", "metadata"),
    ("who talks to whom, when", "metadata"),
    ("sizes", "metadata"),
];

fn step(json: bool, pace: f64, n: u8, text: &str) -> anyhow::Result<()> {
    check_interrupt()?;
    if !json {
        eprintln!("[{n}/6] {text}");
    }
    if pace > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(pace.min(60.0)));
    }
    Ok(())
}

/// Who types a line of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Alice,
    Bob,
}

/// One beat of the conversation: what it shows, and the lines alice and
/// bob type for it. Each `/wait` holds its client until the event it
/// depends on (alice is in the room before bob is told to join), so the
/// run is the same every time, at any pace.
struct Beat {
    caption: &'static str,
    lines: Vec<(Who, String)>,
}

/// The scripted conversation: alice and bob sign up, add each other, set a
/// status, chat, talk in a room, send a small file.
fn conversation(file: &Path) -> Vec<Beat> {
    use Who::{Alice, Bob};
    let l = |who, s: &str| (who, s.to_string());
    vec![
        Beat {
            caption: "alice and bob add each other as contacts",
            lines: vec![
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
    ]
}

/// Everyone's flags: bob signs in with PLAIN (so the sniffer has a
/// password to find on the plaintext twin) and takes every file.
fn flags(who: Who, downloads: &str) -> Vec<&str> {
    match who {
        Who::Alice => vec!["--register"],
        Who::Bob => vec![
            "--register",
            "--plain",
            "--accept-files",
            "--downloads",
            downloads,
        ],
    }
}

/// The file alice sends, and where bob saves it, on `server`.
fn files(server: &ChatServer, dir: &Path) -> anyhow::Result<(std::path::PathBuf, String)> {
    let file = dir.join(format!("notes-{}.txt", server.twin.bin()));
    std::fs::write(&file, FILE_TEXT)?;
    let downloads = dir.join(format!("downloads-{}", server.twin.bin()));
    Ok((file, downloads.to_string_lossy().into_owned()))
}

/// The conversation on one server, each client with its whole script.
fn converse(server: &ChatServer, dir: &Path) -> anyhow::Result<()> {
    let (file, d) = files(server, dir)?;
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
    let bob = server.start("bob", BOB_PW, &flags(Who::Bob, &d), &script(Who::Bob))?;
    let alice = server.start(
        "alice",
        ALICE_PW,
        &flags(Who::Alice, &d),
        &script(Who::Alice),
    )?;
    alice.finish(Duration::from_secs(40))?;
    bob.finish(Duration::from_secs(40))?;
    Ok(())
}

fn verdict(side: &Side, cat: &str, kind: &str) -> &'static str {
    match (
        side.categories.get(cat).is_some_and(|v| !v.is_empty()),
        kind,
    ) {
        (true, "content") => "LEAKED",
        (true, _) => "visible",
        (false, _) => "hidden",
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(n - 3).collect::<String>())
    }
}

/// The servers and the sniffer watching them.
struct Stage {
    plain: ChatServer,
    tls: ChatServer,
    sniffer: Proc,
    findings: Findings,
}

impl Stage {
    /// Stops the sniffer and sorts what it still had; returns what that
    /// revealed.
    fn stop_sniffer(&mut self) -> anyhow::Result<Vec<findings::Found>> {
        // The last packets reach the sniffer a moment after the clients end.
        std::thread::sleep(Duration::from_millis(300));
        let (_, lines) = self.sniffer.interrupt(Duration::from_secs(10))?;
        Ok(lines.iter().flat_map(|l| self.findings.add(l)).collect())
    }

    /// Stops the servers; what was found stays.
    fn into_findings(self) -> Findings {
        self.findings
    }
}

/// Starts both servers and the sniffer (`say` tells each step).
fn set_up(
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

/// The verdict on every row, from what was found.
fn verdicts(findings: &Findings) -> Vec<Verdict> {
    let empty = Side::default();
    let p = findings.sides.get(&Twin::Plain).unwrap_or(&empty);
    let t = findings.sides.get(&Twin::Tls).unwrap_or(&empty);
    ROWS.iter()
        .map(|(cat, kind)| Verdict {
            category: cat,
            plaintext: verdict(p, cat, kind),
            tls: verdict(t, cat, kind),
        })
        .collect()
}

/// Runs the demo; returns the exit code.
pub fn run(args: &DemoArgs) -> anyhow::Result<u8> {
    if args.live {
        return live::run(args);
    }
    let pace = args.pace.unwrap_or(0.0);
    let t0 = Instant::now();
    let dir = tempfile::Builder::new().prefix("labs-demo-").tempdir()?;
    step(
        args.json,
        pace,
        1,
        "starting a chat-plain server and a chat-tls server (lab CA made on the fly) on loopback",
    )?;
    if !args.json {
        eprintln!(
            "      (temporary files in {}, removed at the end)",
            dir.path().display()
        );
    }
    let mut stage = set_up(dir.path(), &mut |n, text| step(args.json, pace, n, text))?;
    step(
        args.json,
        pace,
        3,
        "alice and bob chat over chat-plain (sign up, contacts, status, messages, a room, a file)",
    )?;
    converse(&stage.plain, dir.path())?;
    step(
        args.json,
        pace,
        4,
        "the same conversation over chat-tls (STARTTLS required)",
    )?;
    converse(&stage.tls, dir.path())?;
    step(
        args.json,
        pace,
        5,
        "stopping the sniffer and reading what it saw",
    )?;
    stage.stop_sniffer()?;
    let findings = stage.into_findings();
    step(args.json, pace, 6, "what an attacker on the wire got")?;
    finish(args, &findings, t0)
}

/// The outcome, from the findings: `--html`, then `--json` or the table.
fn finish(args: &DemoArgs, findings: &Findings, t0: Instant) -> anyhow::Result<u8> {
    let empty = Side::default();
    let p = findings.sides.get(&Twin::Plain).unwrap_or(&empty);
    let t = findings.sides.get(&Twin::Tls).unwrap_or(&empty);
    let report = Report {
        plaintext: &p.categories,
        seconds: t0.elapsed().as_secs_f64(),
        tls: &t.categories,
        kind: "demo",
        verdict: verdicts(findings),
    };
    if let Some(path) = &args.html {
        std::fs::write(path, html_page(&report))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        if !args.json {
            eprintln!(
                "      (the side-by-side view is also in {})",
                path.display()
            );
        }
    }
    if args.json {
        outln!("{}", serde_json::to_string(&report)?);
        return Ok(0);
    }
    // Two columns and the bar between them in 100.
    const W: usize = 48;
    outln!();
    outln!(
        "{:<W$} | TLS (chat-tls, STARTTLS required)",
        "PLAINTEXT (chat-plain)"
    );
    outln!("{}-+-{}", "-".repeat(W), "-".repeat(W));
    for (cat, _) in ROWS {
        let none = Vec::new();
        let a = p.categories.get(cat).unwrap_or(&none);
        let b = t.categories.get(cat).unwrap_or(&none);
        outln!("{:<W$} | {}", cat.to_uppercase(), cat.to_uppercase());
        let n = a.len().max(b.len()).clamp(1, 4);
        // Line i of one side's column.
        let cell = |list: &Vec<String>, i: usize| match list.get(i) {
            // What the sniffer recovered is whatever was on the wire: escape
            // control characters before they reach the projector's terminal.
            Some(s) => format!("  {}", clip(&protocol::display::terminal_safe(s), W - 2)),
            None if i == 0 => "  (nothing)".to_string(),
            None => String::new(),
        };
        for i in 0..n {
            let (left, right) = (cell(a, i), cell(b, i));
            outln!("{left:<W$} | {right}");
        }
    }
    let look = Look::for_stdout(false);
    let mut table = look.table();
    table.set_header(vec!["what", "plaintext", "TLS"]);
    for row in &report.verdict {
        table.add_row(vec![
            Cell::new(row.category),
            look.word_cell(row.plaintext),
            look.word_cell(row.tls),
        ]);
    }
    outln!("\n{table}");
    outln!(
        "TLS hid the content; the server name, who talked to whom and when, and the sizes stay\nvisible. ({:.1} s)",
        report.seconds
    );
    Ok(0)
}

/// The side-by-side view as a page: the verdict, then what the sniffer
/// recovered in each category on each side. Everything recovered came off
/// the network and is escaped.
fn html_page(r: &Report<'_>) -> String {
    use std::fmt::Write as _;
    let class = |v: &str| match v {
        "LEAKED" => "leaked",
        "hidden" => "hidden",
        _ => "visible",
    };
    let mut b = String::from(
        "<h1>The same chat, plaintext and TLS</h1>\
         <p class=\"sub\">What the sniffer on loopback recovered from chat-plain and from chat-tls \
         (STARTTLS required) in one run of <code>labs demo</code>.</p>\
         <table id=\"verdict\"><tr><th>what</th><th>plaintext</th><th>TLS</th></tr>",
    );
    for v in &r.verdict {
        let _ = write!(
            b,
            "<tr><td>{}</td><td class=\"{}\">{}</td><td class=\"{}\">{}</td></tr>",
            escape(v.category),
            class(v.plaintext),
            v.plaintext,
            class(v.tls),
            v.tls
        );
    }
    b.push_str(
        "</table><table><tr><th></th><th>PLAINTEXT (chat-plain)</th><th>TLS (chat-tls)</th></tr>",
    );
    let none = Vec::new();
    for (cat, _) in ROWS {
        let list = |side: &BTreeMap<&'static str, Vec<String>>| {
            let items = side.get(cat).unwrap_or(&none);
            if items.is_empty() {
                return "<span class=\"none\">(nothing)</span>".to_string();
            }
            items
                .iter()
                .map(|s| escape(&protocol::display::terminal_safe(s)))
                .collect::<Vec<_>>()
                .join("<br>")
        };
        let _ = write!(
            b,
            "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
            escape(cat),
            list(r.plaintext),
            list(r.tls)
        );
    }
    let _ = write!(
        b,
        "</table><p>TLS hid the content; the server name, who talked to whom and when, and the sizes stay visible. ({:.1} s)</p>",
        r.seconds
    );
    page("labs demo: plaintext and TLS", &b)
}
