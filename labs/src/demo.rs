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
use serde_json::Value;
use sniffer::html::{escape, page};
use sniffer::report::Look;

use harness::signals::check_interrupt;
use harness::{Input, Proc};

use crate::chat::{ChatServer, Twin, bin, start_server};

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
    /// Seconds to wait between steps, for a live classroom.
    #[arg(long, default_value_t = 0.0)]
    pub pace: f64,
    /// Also write the side-by-side view as one self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
}

/// What the sniffer found about one twin.
#[derive(Debug, Default)]
struct Side {
    categories: BTreeMap<&'static str, Vec<String>>,
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

/// The scripted conversation on one server: alice and bob sign up, add
/// each other, set a status, chat, talk in a room, send a small file. Each
/// step waits for the event it depends on (alice is in the room before bob
/// is told to join), so the run is the same every time.
fn converse(server: &ChatServer, dir: &Path) -> anyhow::Result<()> {
    let file = dir.join(format!("notes-{}.txt", server.twin.bin()));
    std::fs::write(&file, FILE_TEXT)?;
    let downloads = dir.join(format!("downloads-{}", server.twin.bin()));
    let d = downloads.to_string_lossy().into_owned();
    let bob = server.start(
        "bob",
        BOB_PW,
        &["--register", "--plain", "--accept-files", "--downloads", &d],
        &format!(
            "/wait subscribe alice 20\n/add alice\n/status away {STATUS}\n/wait message alice 20\n\
             /msg alice {DM_BOB}\n/join study\n/wait room-message study 20\n/wait file-received alice 20\n"
        ),
    )?;
    let alice = server.start(
        "alice",
        ALICE_PW,
        &["--register"],
        &format!(
            "/add bob\n/wait subscription bob 20\n/wait presence bob 20\n/join study\n\
             /msg bob {DM_ALICE}\n/wait message bob 20\n/wait room-presence study 20\n\
             /say study {ROOM_MSG}\n/sendfile bob {}\n",
            file.display()
        ),
    )?;
    alice.finish(Duration::from_secs(40))?;
    bob.finish(Duration::from_secs(40))?;
    Ok(())
}

/// Sorts the sniffer's findings by the server each connection went to.
fn sort_findings(lines: &[String], ports: &HashMap<u16, Twin>) -> HashMap<Twin, Side> {
    let mut conn_twin: HashMap<u64, Twin> = HashMap::new();
    // A client's own stanzas carry no `from`; its bound JID says who it is.
    let mut bound: HashMap<u64, String> = HashMap::new();
    let mut first_ts: Option<f64> = None;
    let mut body_sizes: Vec<String> = Vec::new();
    let mut sides: HashMap<Twin, Side> = HashMap::new();
    sides.insert(Twin::Plain, Side::default());
    sides.insert(Twin::Tls, Side::default());
    for l in lines {
        let Ok(v) = serde_json::from_str::<Value>(l) else {
            continue;
        };
        let conn = v["conn"].as_u64().unwrap_or(u64::MAX);
        if v["type"] == "connection" {
            let port = v["server"]
                .as_str()
                .and_then(|s| s.rsplit(':').next())
                .and_then(|p| p.parse::<u16>().ok());
            if let Some(t) = port.and_then(|p| ports.get(&p)) {
                conn_twin.insert(conn, *t);
            }
        }
        let Some(twin) = conn_twin.get(&conn) else {
            continue;
        };
        if v["type"] == "bound-jid" {
            let jid = v["jid"].as_str().unwrap_or("?");
            bound.insert(conn, jid.split('/').next().unwrap_or(jid).to_string());
        }
        let me = bound.get(&conn).cloned().unwrap_or_else(|| "?".into());
        let side = sides.entry(*twin).or_default();
        let s = |k: &str| v[k].as_str().unwrap_or("?").to_string();
        // An address, without the resource; a missing `from` is the client.
        let who = |k: &str| match v[k].as_str() {
            Some(x) => x.split('/').next().unwrap_or(x).to_string(),
            None => me.clone(),
        };
        let ts = v["ts"].as_f64().unwrap_or(0.0);
        let t0 = *first_ts.get_or_insert(ts);
        let (cat, text): (&'static str, String) = match v["type"].as_str().unwrap_or("") {
            "credential" => (
                "credentials",
                match v["password"].as_str() {
                    Some(p) => format!("{}: password {p} ({})", s("user"), s("kind")),
                    None => format!("{}: {} {}", s("user"), s("kind"), s("detail")),
                },
            ),
            "message" => {
                if *twin == Twin::Plain {
                    body_sizes.push(format!("{} bytes: {}", s("body").len(), s("body")));
                }
                (
                    "messages",
                    format!("{} -> {}: {}", who("from"), who("to"), s("body")),
                )
            }
            "contact" => (
                "contacts",
                match v["subscription"].as_str() {
                    Some(sub) => format!("{} (subscription {sub})", s("jid")),
                    None => format!("{} (added to a roster)", s("jid")),
                },
            ),
            "subscription" => (
                "contacts",
                format!("{} {} -> {}", s("kind"), who("from"), who("to")),
            ),
            "presence" if !v["status"].is_null() => {
                ("presence", format!("{}: {}", who("from"), s("status")))
            }
            "file" => (
                "file",
                format!(
                    "{} {} bytes sha256 {}",
                    s("name"),
                    v["size"],
                    &s("sha256")[..16.min(s("sha256").len())]
                ),
            ),
            "stream" if !v["to"].is_null() => ("server name", format!("stream to {}", s("to"))),
            "client-hello" => ("server name", format!("SNI {}", s("sni"))),
            "connection" => (
                "who talks to whom, when",
                format!(
                    "{} -> {} at +{:.3} s",
                    v["client"].as_str().unwrap_or("?"),
                    v["server"].as_str().unwrap_or("?"),
                    ts - t0
                ),
            ),
            "tls-traffic" => (
                "sizes",
                format!(
                    "{} records / {} bytes up, {} / {} down; first sizes {}",
                    v["records_to_server"],
                    v["bytes_to_server"],
                    v["records_to_client"],
                    v["bytes_to_client"],
                    v["sizes"]
                        .as_array()
                        .map(|a| a
                            .iter()
                            .take(6)
                            .map(|x| x.to_string())
                            .collect::<Vec<_>>()
                            .join(" "))
                        .unwrap_or_default()
                ),
            ),
            _ => continue,
        };
        // The same stanza is seen going in and coming out: show it once.
        let list = side.categories.entry(cat).or_default();
        if !list.contains(&text) {
            list.push(text);
        }
    }
    // Plaintext sizes: every message's length is right there.
    if let Some(plain) = sides.get_mut(&Twin::Plain) {
        body_sizes.dedup();
        let list = plain.categories.entry("sizes").or_default();
        for b in body_sizes {
            if !list.contains(&b) {
                list.push(b);
            }
        }
    }
    sides
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

/// Runs the demo; returns the exit code.
pub fn run(args: &DemoArgs) -> anyhow::Result<u8> {
    let t0 = Instant::now();
    let dir = tempfile::Builder::new().prefix("labs-demo-").tempdir()?;
    step(
        args.json,
        args.pace,
        1,
        "starting a chat-plain server and a chat-tls server (lab CA made on the fly) on loopback",
    )?;
    if !args.json {
        eprintln!(
            "      (temporary files in {}, removed at the end)",
            dir.path().display()
        );
    }
    let plain = start_server(Twin::Plain, dir.path(), "localhost", None, &[])?;
    let tls = start_server(Twin::Tls, dir.path(), "localhost", None, &[])?;
    step(args.json, args.pace, 2, "starting the sniffer on lo")?;
    let mut cmd = Command::new(bin("sniffer")?);
    cmd.args(["live", "--interface", "lo", "--json", "--filter"])
        .arg(format!(
            "tcp port {} or tcp port {}",
            plain.addr.port(),
            tls.addr.port()
        ));
    let mut sniffer = Proc::spawn("sniffer", cmd, Input::Null)?;
    sniffer
        .wait_stderr("capturing on", Duration::from_secs(10))
        .map_err(|e| match e {
            harness::Error::Interrupted => e.into(),
            e => anyhow::anyhow!(
                "{e}\n(the demo captures live traffic: run it as root, e.g. sudo scripts/demo.sh)"
            ),
        })?;
    step(
        args.json,
        args.pace,
        3,
        "alice and bob chat over chat-plain (sign up, contacts, status, messages, a room, a file)",
    )?;
    converse(&plain, dir.path())?;
    step(
        args.json,
        args.pace,
        4,
        "the same conversation over chat-tls (STARTTLS required)",
    )?;
    converse(&tls, dir.path())?;
    step(
        args.json,
        args.pace,
        5,
        "stopping the sniffer and reading what it saw",
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let (_, lines) = sniffer.interrupt(Duration::from_secs(10))?;
    let ports: HashMap<u16, Twin> = [
        (plain.addr.port(), Twin::Plain),
        (tls.addr.port(), Twin::Tls),
    ]
    .into();
    let sides = sort_findings(&lines, &ports);
    drop((plain, tls));
    step(args.json, args.pace, 6, "what an attacker on the wire got")?;
    let empty = Side::default();
    let p = sides.get(&Twin::Plain).unwrap_or(&empty);
    let t = sides.get(&Twin::Tls).unwrap_or(&empty);
    let report = Report {
        plaintext: &p.categories,
        seconds: t0.elapsed().as_secs_f64(),
        tls: &t.categories,
        kind: "demo",
        verdict: ROWS
            .iter()
            .map(|(cat, kind)| Verdict {
                category: cat,
                plaintext: verdict(p, cat, kind),
                tls: verdict(t, cat, kind),
            })
            .collect(),
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
