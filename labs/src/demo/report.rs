//! The demo's outcome, from the findings: the verdict per category, the
//! side-by-side table, the `--json` line and the `--html` page.

use std::collections::BTreeMap;
use std::time::Instant;

use comfy_table::Cell;
use protocol::outln;
use serde::Serialize;
use sniffer::html::{escape, page};
use sniffer::report::Look;

use super::findings::{Findings, Side};
use crate::chat::Twin;

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
pub(super) struct Verdict {
    category: &'static str,
    pub(super) plaintext: &'static str,
    pub(super) tls: &'static str,
}

/// The rows of the verdict: (category, what kind of leak it is).
pub(super) const ROWS: [(&str, &str); 9] = [
    ("credentials", "content"),
    ("messages", "content"),
    ("contacts", "content"),
    ("presence", "content"),
    ("file", "content"),
    ("end-to-end messages", "e2e"),
    ("server name", "metadata"),
    ("who talks to whom, when", "metadata"),
    ("sizes", "metadata"),
];

/// The verdict on a message encrypted end to end (OMEMO): seen on the
/// wire, its text hidden, TLS or not.
pub(super) const E2E_HIDDEN: &str = "hidden (e2e)";

fn verdict(side: &Side, cat: &str, kind: &str) -> &'static str {
    match (
        side.categories.get(cat).is_some_and(|v| !v.is_empty()),
        kind,
    ) {
        (true, "content") => "LEAKED",
        (true, "e2e") => E2E_HIDDEN,
        (true, _) => "visible",
        // Under TLS not even the OMEMO message's metadata shows.
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

/// The verdict on every row, from what was found.
pub(super) fn verdicts(findings: &Findings) -> Vec<Verdict> {
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

/// The outcome, from the findings: `--html`, then `--json` or the table.
pub(super) fn finish(args: &DemoArgs, findings: &Findings, t0: Instant) -> anyhow::Result<u8> {
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
        "TLS hid the content; the server name, who talked to whom and when, and the sizes stay\nvisible. The end-to-end message (OMEMO) was hidden on both, and from the server too. ({:.1} s)",
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
        "hidden" | E2E_HIDDEN => "hidden",
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
