//! Output: findings as they come (a line each, or JSON lines), and the
//! summary table of what leaked, per connection.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, Table};
use serde_json::json;

use crate::analyze::{ConnSummary, Stats};
use crate::findings::{self, Category, Finding};
use crate::reassembly::ConnId;

/// Prints findings as text or JSON lines.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    /// JSON lines instead of text.
    pub json: bool,
    /// Only the summary.
    pub quiet: bool,
}

impl Printer {
    /// Prints one finding (unless quiet).
    pub fn finding(&self, conn: ConnId, ts: f64, f: &Finding) {
        if self.quiet {
            return;
        }
        if self.json {
            println!("{}", findings::json(conn, ts, f));
        } else {
            println!("{}", findings::text(conn, ts, f));
        }
    }
}

/// The summary: one row per connection, then the totals; as JSON, one
/// `summary` object per connection and one `totals` object.
pub fn summary(
    rows: &[ConnSummary],
    totals: &[u64; 6],
    stats: &Stats,
    connections: u64,
    bytes: u64,
    json: bool,
) -> String {
    let mut rows: Vec<&ConnSummary> = rows.iter().collect();
    rows.sort_by_key(|r| r.id);
    if json {
        let mut out = String::new();
        for r in &rows {
            let mut v = json!({"type": "summary", "conn": r.id, "client": r.client.to_string(),
                "server": r.server.to_string(), "protocol": r.protocol, "tls": r.tls, "bytes": r.bytes});
            for (i, c) in Category::ALL.iter().enumerate() {
                v[c.name()] = json!(r.counts[i]);
            }
            out.push_str(&v.to_string());
            out.push('\n');
        }
        let mut t = json!({"type": "totals", "connections": connections, "bytes": bytes,
            "frames": stats.frames, "tcp_frames": stats.tcp, "malformed_frames": stats.malformed});
        for (i, c) in Category::ALL.iter().enumerate() {
            t[c.name()] = json!(totals[i]);
        }
        out.push_str(&t.to_string());
        out.push('\n');
        return out;
    }
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    let mut header = vec!["#", "client -> server", "protocol", "TLS"];
    header.extend(Category::ALL.iter().map(|c| c.name()));
    table.set_header(header);
    for r in &rows {
        let mut row = vec![
            Cell::new(r.id),
            Cell::new(format!("{} -> {}", r.client, r.server)),
            Cell::new(&r.protocol),
            Cell::new(if r.tls { "yes" } else { "NO" }),
        ];
        for (i, c) in Category::ALL.iter().enumerate() {
            let n = r.counts[i];
            // Under TLS the only things left are metadata; anything else
            // would mean the sniffer read plaintext.
            let text = match (n, *c) {
                (0, _) if r.tls && *c != Category::Metadata => "hidden".to_string(),
                (0, _) => "-".to_string(),
                (n, _) => format!("{n} LEAKED"),
            };
            let text = if *c == Category::Metadata && n > 0 {
                format!("{n} visible")
            } else {
                text
            };
            row.push(Cell::new(text).set_alignment(CellAlignment::Right));
        }
        table.add_row(row);
    }
    let mut out = table.to_string();
    out.push_str(&format!(
        "\n{connections} connection(s), {bytes} bytes reassembled from {} frames ({} TCP, {} malformed); found: {}",
        stats.frames,
        stats.tcp,
        stats.malformed,
        Category::ALL
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} {}", totals[i], c.name()))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    out
}
