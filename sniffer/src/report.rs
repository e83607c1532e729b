//! Output: findings as they come (a line each, or JSON lines), the summary
//! table of what leaked, per connection, and a connection's bytes made safe
//! to print ([`escape_bytes`], for `follow`).
//!
//! Text output escapes whatever came from the network with
//! [`protocol::display`] (see [`crate::findings`]): the table's cells too,
//! since a cell with a newline or an escape sequence would break or rewrite
//! the table on the projector.

use std::fmt::Write as _;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, Table};
use protocol::display::Safe;
use protocol::outln;
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
            outln!("{}", findings::json(conn, ts, f));
        } else {
            outln!("{}", findings::text(conn, ts, f));
        }
    }
}

/// A table cell of text that may come from the network, escaped.
fn cell(text: &str) -> Cell {
    Cell::new(Safe(text))
}

/// `data` (a run of a TCP stream, any bytes) as terminal-safe text: valid
/// UTF-8 shown as text with [`Safe`] escapes for controls and bidi
/// characters, each invalid byte as `\xNN`. A backslash in the data is
/// doubled, so every escape on screen is unambiguous. Line feeds are
/// escaped too; a caller that keeps the stream's lines splits on them first.
pub fn escape_bytes(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len());
    for chunk in data.utf8_chunks() {
        let _ = write!(s, "{}", Safe(chunk.valid()));
        for b in chunk.invalid() {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s
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
            cell(&format!("{} -> {}", r.client, r.server)),
            cell(&r.protocol),
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

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::display::is_unsafe_char;

    #[test]
    fn table_cells_are_escaped() {
        let row = ConnSummary {
            id: 0,
            client: "127.0.0.1:1".parse().unwrap(),
            server: "127.0.0.1:2".parse().unwrap(),
            protocol: "XMPP\x1b[2J\n\u{202e}forged row".into(),
            tls: false,
            counts: [0; 6],
            bytes: 0,
        };
        let t = summary(&[row], &[0; 6], &Stats::default(), 1, 0, false);
        assert!(!t.chars().any(|c| c != '\n' && is_unsafe_char(c)), "{t}");
        // Header, one row, the frame, the totals line: no extra line.
        assert_eq!(t.lines().count(), 6, "{t}");
        assert!(t.contains("XMPP\\u{1b}[2J\\n\\u{202e}forged row"), "{t}");
    }

    #[test]
    fn stream_bytes_are_escaped_and_invalid_utf8_shown_as_hex() {
        assert_eq!(escape_bytes(b"<body>hi</body>"), "<body>hi</body>");
        assert_eq!(
            escape_bytes(b"a\x1b]52;c;x\x07\r\n\\n\xff\x16\x03"),
            "a\\u{1b}]52;c;x\\u{7}\\r\\n\\\\n\\xff\\u{16}\\u{3}"
        );
        // U+202E and U+009B arrive as UTF-8: escaped as characters.
        assert_eq!(
            escape_bytes("w\u{f6}rld \u{202e}txt \u{9b}".as_bytes()),
            "w\u{f6}rld \\u{202e}txt \\u{9b}"
        );
        // A multibyte character cut by a segment boundary: its bytes.
        assert_eq!(escape_bytes(&"\u{f6}".as_bytes()[..1]), "\\xc3");
    }
}
