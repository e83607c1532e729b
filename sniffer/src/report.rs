//! Output: findings as they come (a line each, or JSON lines), the summary
//! table of what leaked, per connection, and a connection's bytes made safe
//! to print ([`escape_bytes`], for `follow`).
//!
//! Each JSON line is a value that derives `Serialize` ([`ConnSummary`] for a
//! summary row, [`Totals`], [`StreamData`]); the text forms read the same
//! values.
//!
//! Text output escapes whatever came from the network with
//! [`protocol::display`] (see [`crate::findings`]): the table's cells too,
//! since a cell with a newline or an escape sequence would break or rewrite
//! the table on the projector.

use std::borrow::Cow;
use std::fmt::Write as _;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Attribute, Cell, CellAlignment, Color, ContentArrangement, Table};
use protocol::display::Safe;
use serde::Serialize;

use crate::analyze::{ConnSummary, Stats};
use crate::findings::{Category, Finding, Record};
use crate::jsonl;
use crate::reassembly::{ConnId, Dir};

/// Prints findings as text or JSON lines.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    /// JSON lines instead of text.
    pub json: bool,
    /// Only the summary.
    pub quiet: bool,
    /// In text, each encrypted record under a connection's TLS traffic
    /// line: direction, size and time (`--records`, for the
    /// traffic-analysis lab; JSON always carries them).
    pub records: bool,
}

impl Printer {
    /// The line to print for one finding (`None` when quiet): the text line
    /// or the JSON object of the same [`Record`].
    pub fn line(&self, conn: ConnId, ts: f64, f: &Finding) -> Option<String> {
        if self.quiet {
            return None;
        }
        let record = Record::new(conn, ts, f);
        if self.json {
            return Some(jsonl::line(&record));
        }
        let mut text = record.to_string();
        if let (true, Finding::TlsTraffic { sizes, times, .. }) = (self.records, f) {
            for (i, (size, t)) in sizes.iter().zip(times).enumerate() {
                let dir = if *size >= 0 { "C->S" } else { "S->C" };
                text.push_str(&format!(
                    "\n#{conn}   record {} {dir} {} bytes at +{t:.6} s",
                    i + 1,
                    size.unsigned_abs()
                ));
            }
        }
        Some(text)
    }
}

/// The totals under the summary: connections, bytes, frames, and findings
/// per category. As JSON, one `totals` object.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename = "totals")]
pub struct Totals {
    /// Connections seen.
    pub connections: u64,
    /// Bytes reassembled.
    pub bytes: u64,
    /// Frames read.
    pub frames: u64,
    /// Of those, TCP.
    pub tcp_frames: u64,
    /// Of those, UDP.
    pub udp_frames: u64,
    /// Of those, damaged.
    pub malformed_frames: u64,
    /// Live capture: packets the kernel dropped, never seen (libpcap's
    /// statistics; 0 for a file).
    pub dropped: u64,
    /// Findings per [`Category`], in [`Category::ALL`] order; as JSON, one
    /// key per category.
    #[serde(flatten, serialize_with = "crate::findings::by_category")]
    pub found: [u64; crate::findings::CATEGORIES],
}

/// A run of one connection's bytes, as `follow --json` prints it: the text
/// is the bytes as UTF-8, each invalid sequence replaced by U+FFFD.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename = "data")]
pub struct StreamData<'a> {
    /// The connection.
    pub conn: ConnId,
    /// Which way the bytes went.
    pub dir: Dir,
    /// Stream offset of the first byte (in the decrypted bytes, for bytes
    /// a key log opened).
    pub offset: u64,
    /// Bytes a key log opened inside TLS (absent: as on the wire).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub decrypted: bool,
    /// The bytes, as text.
    pub text: Cow<'a, str>,
}

impl<'a> StreamData<'a> {
    /// `data`, seen on `conn` going `dir` at stream offset `offset`.
    pub fn new(conn: ConnId, dir: Dir, offset: u64, data: &'a [u8]) -> Self {
        StreamData {
            conn,
            dir,
            offset,
            decrypted: false,
            text: String::from_utf8_lossy(data),
        }
    }
}

/// What one connection gave away in one category: a summary cell, in the
/// text table and in the HTML report alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Content read off the wire (or out of TLS, with a key log).
    Leaked(u64),
    /// Metadata: what even TLS shows.
    Visible(u64),
    /// Nothing of it, and TLS was on: what TLS is for.
    Hidden,
    /// Messages encrypted end to end (OMEMO): there, but their text hidden
    /// from the wire and the server alike, TLS or not.
    EndToEnd(u64),
    /// Nothing of it, without TLS (nothing was sent).
    Nothing,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Leaked(n) => write!(f, "{n} LEAKED"),
            Verdict::Visible(n) => write!(f, "{n} visible"),
            Verdict::Hidden => f.write_str("hidden"),
            Verdict::EndToEnd(n) => write!(f, "{n} hidden (end-to-end)"),
            Verdict::Nothing => f.write_str("-"),
        }
    }
}

/// The verdict of row `r` for category `c`. Under TLS the only things left
/// are metadata; anything else means the sniffer read plaintext.
pub fn verdict(r: &ConnSummary, c: Category) -> Verdict {
    match (r.counts[c.index()], c) {
        (n, Category::Metadata) if n > 0 => Verdict::Visible(n),
        (0, Category::Metadata) => Verdict::Nothing,
        (n, Category::EndToEnd) if n > 0 => Verdict::EndToEnd(n),
        (0, Category::EndToEnd) => Verdict::Nothing,
        // TLS that a key log opened hid nothing: none was sent.
        (0, _) if r.tls && !r.decrypted => Verdict::Hidden,
        (0, _) => Verdict::Nothing,
        (n, _) => Verdict::Leaked(n),
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

/// Widest a text table is drawn unless asked for wide (`--wide`): it
/// fits a projector's terminal, and long cells wrap.
pub const TABLE_WIDTH: u16 = 100;

/// How a text table looks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Look {
    /// `LEAKED` in red and `hidden` in green.
    pub colour: bool,
    /// As wide as its content, not [`TABLE_WIDTH`].
    pub wide: bool,
}

impl Look {
    /// Colour when standard output is a terminal and `NO_COLOR` is not set
    /// (<https://no-color.org>): never in a file, a pipe or a CI log.
    pub fn for_stdout(wide: bool) -> Look {
        use std::io::IsTerminal;
        Look {
            colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            wide,
        }
    }

    /// A table drawn this way: the style, the width, the colour switch.
    pub fn table(self) -> Table {
        let mut t = Table::new();
        t.load_style(UTF8_FULL_CONDENSED);
        if self.wide {
            t.set_content_arrangement(ContentArrangement::Disabled);
        } else {
            t.set_content_arrangement(ContentArrangement::Dynamic);
            t.set_width(TABLE_WIDTH);
        }
        if self.colour {
            t.enforce_styling();
        } else {
            t.force_no_tty();
        }
        t
    }

    /// A verdict's cell, coloured if colour is on.
    pub fn verdict_cell(self, v: &Verdict) -> Cell {
        self.word_cell(&v.to_string())
            .set_alignment(CellAlignment::Right)
    }

    /// A cell of verdict words (`LEAKED`, `hidden`, `visible`), coloured
    /// by them if colour is on: red for what leaked, green for what TLS hid.
    pub fn word_cell(self, text: &str) -> Cell {
        let cell = Cell::new(text);
        if !self.colour {
            cell
        } else if text.contains("LEAKED") {
            cell.fg(Color::Red).add_attribute(Attribute::Bold)
        } else if text.contains("hidden") {
            cell.fg(Color::Green)
        } else {
            cell
        }
    }
}

/// `text` in lines of at most [`TABLE_WIDTH`] characters, broken after a
/// space (a word longer than that stays whole).
fn wrap(text: &str) -> String {
    let mut out = String::new();
    let mut line = 0usize;
    for word in text.split(' ') {
        let n = word.chars().count();
        if line > 0 && line + 1 + n > usize::from(TABLE_WIDTH) {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += n;
    }
    out
}

/// The summary: one row per connection, then the totals; as JSON, one
/// `summary` object per connection and one `totals` object.
pub fn summary(
    rows: &[ConnSummary],
    totals: &[u64; crate::findings::CATEGORIES],
    stats: &Stats,
    connections: u64,
    bytes: u64,
    json: bool,
    look: Look,
) -> String {
    let mut rows: Vec<&ConnSummary> = rows.iter().collect();
    rows.sort_by_key(|r| r.id);
    let totals = Totals {
        connections,
        bytes,
        frames: stats.frames,
        tcp_frames: stats.tcp,
        udp_frames: stats.udp,
        malformed_frames: stats.malformed,
        dropped: stats.dropped,
        found: *totals,
    };
    if json {
        let mut out = String::new();
        for r in &rows {
            out.push_str(&jsonl::line(r));
            out.push('\n');
        }
        out.push_str(&jsonl::line(&totals));
        out.push('\n');
        return out;
    }
    let mut table = look.table();
    // Within 100 columns, the addresses and protocol of each connection
    // are listed above the table, which keeps its number; --wide puts them
    // in the table, as one row per connection.
    let mut out = String::new();
    let mut header = vec!["#"];
    if look.wide {
        header.extend(["client -> server", "protocol"]);
    } else {
        for r in &rows {
            let _ = writeln!(
                out,
                "#{} {} {} -> {}",
                r.id,
                Safe(&r.protocol),
                r.client,
                r.server
            );
        }
    }
    header.push("TLS");
    header.extend(Category::ALL.iter().map(|c| c.name()));
    table.set_header(header);
    for r in &rows {
        let mut row = vec![Cell::new(r.id)];
        if look.wide {
            row.extend([
                cell(&format!("{} -> {}", r.client, r.server)),
                cell(&r.protocol),
            ]);
        }
        // "opened": TLS, but a key log gave its content away.
        row.push(Cell::new(match (r.tls, r.decrypted) {
            (true, true) => "opened",
            (true, false) => "yes",
            _ => "NO",
        }));
        for c in Category::ALL {
            row.push(look.verdict_cell(&verdict(r, c)));
        }
        table.add_row(row);
    }
    out.push_str(&table.to_string());
    let Totals {
        connections,
        bytes,
        frames,
        tcp_frames,
        udp_frames,
        malformed_frames,
        dropped,
        found,
    } = totals;
    let mut lines = vec![
        format!(
            "{connections} connection{}, {bytes} bytes reassembled from {frames} frames ({tcp_frames} TCP, {udp_frames} UDP, {malformed_frames} malformed)",
            if connections == 1 { "" } else { "s" }
        ),
        format!(
            "found: {}",
            Category::ALL
                .iter()
                .map(|c| format!("{} {}", found[c.index()], c.name()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ];
    if dropped > 0 {
        lines.push(format!(
            "the kernel DROPPED {dropped} packets the sniffer did not read in time: that traffic was not seen, and what it carried is not above"
        ));
    }
    for l in lines {
        out.push('\n');
        out.push_str(&if look.wide { l } else { wrap(&l) });
    }
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
            decrypted: false,
            counts: [0; crate::findings::CATEGORIES],
            bytes: 0,
        };
        for wide in [false, true] {
            let look = Look {
                wide,
                colour: false,
            };
            let t = summary(
                std::slice::from_ref(&row),
                &[0; crate::findings::CATEGORIES],
                &Stats::default(),
                1,
                0,
                false,
                look,
            );
            assert!(!t.chars().any(|c| c != '\n' && is_unsafe_char(c)), "{t}");
            // The connection's line (within 100 columns), header, one row,
            // the frame, the two totals lines: no extra line.
            let lines = if wide { 7 } else { 8 };
            assert_eq!(t.lines().count(), lines, "{t}");
            assert!(t.contains("XMPP\\u{1b}[2J\\n\\u{202e}forged row"), "{t}");
        }
    }

    /// Within 100 columns, whatever the addresses (IPv6 included) and
    /// counts; colour only when asked, and then LEAKED in red.
    #[test]
    fn the_summary_fits_100_columns_and_colours_only_when_asked() {
        let row = ConnSummary {
            id: 99_999,
            client: "[2001:db8:1234:5678:9abc:def0:1234:5678]:65535"
                .parse()
                .unwrap(),
            server: "[2001:db8::1]:5222".parse().unwrap(),
            protocol: "XMPP+STARTTLS".into(),
            tls: true,
            decrypted: true,
            counts: [123_456, 1_234_567, 12_345, 12_345, 1_234, 0, 12_345_678],
            bytes: 1 << 40,
        };
        let plain = summary(
            std::slice::from_ref(&row),
            &row.counts,
            &Stats::default(),
            1,
            1 << 40,
            false,
            Look::default(),
        );
        for l in plain.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                l.chars().count() <= usize::from(TABLE_WIDTH),
                "{} columns: {l}",
                l.chars().count()
            );
        }
        assert!(!plain.contains('\x1b'), "no colour unless asked: {plain}");
        let coloured = Look {
            colour: true,
            wide: false,
        };
        let c = summary(
            &[row],
            &[0; crate::findings::CATEGORIES],
            &Stats::default(),
            1,
            0,
            false,
            coloured,
        );
        assert!(c.contains("\x1b[") && c.contains("LEAKED"), "{c}");
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

    /// The summary and totals lines scripts and labs read, exactly as the
    /// hand-built objects these types replaced printed them (sorted keys).
    #[test]
    fn summary_json_lines_keep_their_shape() {
        let row = ConnSummary {
            id: 0,
            client: "127.0.0.1:20001".parse().unwrap(),
            server: "[::1]:5222".parse().unwrap(),
            protocol: "XMPP".into(),
            tls: false,
            decrypted: false,
            counts: [1, 40, 2, 1, 0, 0, 6],
            bytes: 7517,
        };
        let stats = Stats {
            frames: 5112,
            tcp: 5110,
            malformed: 2,
            ..Stats::default()
        };
        let out = summary(
            &[row],
            &[92, 3640, 184, 92, 3, 0, 552],
            &stats,
            92,
            692319,
            true,
            Look::default(),
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                r#"{"bytes":7517,"client":"127.0.0.1:20001","conn":0,"contacts":2,"credentials":1,"decrypted":false,"end-to-end":0,"files":0,"messages":40,"metadata":6,"presence":1,"protocol":"XMPP","server":"[::1]:5222","tls":false,"type":"summary"}"#,
                r#"{"bytes":692319,"connections":92,"contacts":184,"credentials":92,"dropped":0,"end-to-end":0,"files":3,"frames":5112,"malformed_frames":2,"messages":3640,"metadata":552,"presence":92,"tcp_frames":5110,"type":"totals","udp_frames":0}"#,
            ]
        );
        // The text form reads the same totals.
        let text = summary(
            &[],
            &[92, 3640, 184, 92, 3, 0, 552],
            &stats,
            92,
            692319,
            false,
            Look::default(),
        );
        assert!(
            text.ends_with(
                "92 connections, 692319 bytes reassembled from 5112 frames (5110 TCP, 0 UDP, 2 malformed)\nfound: 92 credentials, 3640 messages, 184 contacts, 92 presence, 3 files, 0 end-to-end, 552 metadata"
            ),
            "{text}"
        );
    }

    #[test]
    fn followed_data_json_keeps_its_shape() {
        let line = jsonl::line(&StreamData::new(3, Dir::ToClient, 17, b"<a>\xff\n"));
        // The invalid byte is U+FFFD, the line feed JSON's `\n`.
        assert_eq!(
            line,
            "{\"conn\":3,\"dir\":\"to-client\",\"offset\":17,\"text\":\"<a>\u{fffd}\\n\",\"type\":\"data\"}"
        );
    }
}
