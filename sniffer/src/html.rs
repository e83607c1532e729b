//! A report people can hand out: one self-contained HTML page (its style
//! and its plot inline, nothing fetched), for `sniffer report --html` and
//! `labs demo --html`.
//!
//! Every string that came from the network is escaped twice over: first as
//! the text line shows it ([`crate::findings`]: no control character, no
//! bidi override), then for HTML ([`escape`]): a message body of
//! `<script>` is shown, never run. The page has no script at all.
//!
//! Passwords are masked unless the caller asks for them
//! ([`ReportPage::show_secrets`]): a report is made to be handed out.

use std::fmt::Write as _;

use crate::analyze::ConnSummary;
use crate::findings::{Category, Finding, Record};
use crate::reassembly::ConnId;
use crate::report::{Verdict, verdict};

/// `s` made safe inside HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page's style: plain, printable, the verdict colours of the
/// terminal (red for what leaked, green for what TLS hid).
const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 2em; color: #111; max-width: 75em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
.sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; }
td.n { text-align: right; }
.leaked { background: #c62828; color: #fff; font-weight: bold; }
.hidden { background: #2e7d32; color: #fff; }
.visible { background: #f9a825; color: #111; }
.none { color: #777; }
.found { background: #ffebee; color: #b71c1c; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; white-space: pre-wrap; word-break: break-all; }
.conn { margin-top: 2em; border-top: 2px solid #ccc; }
.legend span { display: inline-block; padding: 0 0.5em; margin-right: 0.5em; }
svg { border: 1px solid #ccc; background: #fff; }
";

/// A whole page: `title` and `body` (HTML, already escaped).
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n",
        escape(title)
    )
}

/// A verdict cell: its text and class.
pub fn verdict_cell(v: &Verdict) -> String {
    let class = match v {
        Verdict::Leaked(_) => "leaked",
        Verdict::Hidden | Verdict::EndToEnd(_) => "hidden",
        Verdict::Visible(_) => "visible",
        Verdict::Nothing => "none",
    };
    format!("<td class=\"n {class}\">{}</td>", escape(&v.to_string()))
}

/// Connections whose findings the page lists (a scan's capture has
/// hundreds of thousands; the verdict table has them all).
pub const MAX_CONNECTIONS: usize = 2_000;

/// Findings kept per connection for the page (the rest are counted).
pub const MAX_FINDINGS_PER_CONN: usize = 200;

/// One connection's findings for the page: its number, its findings in
/// order with their capture time (at most [`MAX_FINDINGS_PER_CONN`]), and
/// how many more there were.
pub type ConnFindings = (ConnId, Vec<(f64, Finding)>, u64);

/// What `sniffer report --html` shows.
#[derive(Debug)]
pub struct ReportPage<'a> {
    /// The files read, for the heading.
    pub source: String,
    /// Whether a key log opened TLS.
    pub keylog: bool,
    /// One row per connection.
    pub rows: &'a [ConnSummary],
    /// Findings per connection.
    pub findings: &'a [ConnFindings],
    /// Findings per category, every connection.
    pub totals: [u64; crate::findings::CATEGORIES],
    /// Show passwords as they were sent (default: masked).
    pub show_secrets: bool,
}

/// A password as the page shows it: its length, unless asked for in full.
fn mask(p: &str, show: bool) -> String {
    if show {
        return p.to_string();
    }
    // Its length only: even two characters give away a short one.
    format!("({} characters, masked: --show-secrets)", p.chars().count())
}

/// The verdict table: a row per connection, a column per category.
fn verdict_table(rows: &[ConnSummary]) -> String {
    let mut h = String::from(
        "<table id=\"verdict\"><tr><th>#</th><th>client &rarr; server</th><th>protocol</th><th>TLS</th>",
    );
    for c in Category::ALL {
        let _ = write!(h, "<th>{}</th>", c.name());
    }
    h.push_str("</tr>\n");
    for r in rows {
        let _ = write!(
            h,
            "<tr><td class=\"n\">{}</td><td><a href=\"#conn{}\">{}</a></td><td>{}</td><td>{}</td>",
            r.id,
            r.id,
            escape(&format!("{} -> {}", r.client, r.server)),
            escape(&r.protocol),
            match (r.tls, r.decrypted) {
                (true, true) => "opened with the key log",
                (true, false) => "yes",
                _ => "NO",
            }
        );
        for c in Category::ALL {
            h.push_str(&verdict_cell(&verdict(r, c)));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    h
}

/// Encrypted records over time, one direction above the axis and the
/// other below, each bar as tall as the record: what a traffic-analysis
/// attacker reads without any key.
fn timeline(sizes: &[i64], times: &[f64]) -> String {
    let (w, h) = (720.0f64, 220.0f64);
    let mid = h / 2.0;
    let span = times.iter().cloned().fold(0.0f64, f64::max).max(1e-6);
    let biggest = sizes
        .iter()
        .map(|s| s.unsigned_abs())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut svg = format!(
        "<svg width=\"{w}\" height=\"{}\" viewBox=\"0 0 {w} {}\" role=\"img\" aria-label=\"TLS record sizes over time\">\
         <line x1=\"40\" y1=\"{mid}\" x2=\"{}\" y2=\"{mid}\" stroke=\"#333\"/>\
         <text x=\"2\" y=\"14\" font-size=\"11\">to server</text>\
         <text x=\"2\" y=\"{}\" font-size=\"11\">to client</text>",
        h + 20.0,
        h + 20.0,
        w - 10.0,
        h - 4.0
    );
    for (s, t) in sizes.iter().zip(times) {
        let x = 40.0 + (t / span) * (w - 60.0);
        let len = (s.unsigned_abs() as f64 / biggest) * (mid - 18.0);
        let (y, color) = if *s >= 0 {
            (mid - len, "#1565c0")
        } else {
            (mid, "#6a1b9a")
        };
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"3\" height=\"{:.1}\" fill=\"{color}\"><title>{} bytes at +{t:.6} s</title></rect>",
            len.max(1.0),
            s.unsigned_abs()
        );
    }
    let _ = write!(
        svg,
        "<text x=\"40\" y=\"{}\" font-size=\"11\">0 s</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">+{span:.3} s</text></svg>",
        h + 16.0,
        w - 10.0,
        h + 16.0
    );
    svg
}

/// The page of `sniffer report --html`.
pub fn report(r: &ReportPage<'_>) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>What an attacker on the wire read</h1><p class=\"sub\">{} &mdash; {} connection{}{}</p>",
        escape(&r.source),
        r.rows.len(),
        if r.rows.len() == 1 { "" } else { "s" },
        if r.keylog {
            ", TLS opened with a key log"
        } else {
            ""
        }
    );
    b.push_str(
        "<p class=\"legend\"><span class=\"leaked\">LEAKED</span>content read off the wire \
         <span class=\"hidden\">hidden</span>protected by TLS (or end to end: OMEMO) \
         <span class=\"visible\">visible</span>metadata, which TLS never hides</p>",
    );
    b.push_str(&verdict_table(r.rows));
    let _ = write!(
        b,
        "<p>Found, every connection: {}</p>",
        Category::ALL
            .iter()
            .map(|c| format!("{} {}", r.totals[c.index()], c.name()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rows: std::collections::HashMap<ConnId, &ConnSummary> =
        r.rows.iter().map(|x| (x.id, x)).collect();
    for (i, (conn, found, more)) in r.findings.iter().enumerate() {
        if i == MAX_CONNECTIONS {
            let _ = write!(
                b,
                "<p>... more connections than one page lists ({MAX_CONNECTIONS}): the verdict table above has them all, and <code>sniffer read</code> their findings.</p>"
            );
            break;
        }
        let row = rows.get(conn);
        let _ = write!(
            b,
            "<div class=\"conn\" id=\"conn{conn}\"><h2>#{conn} {}</h2>",
            row.map(|x| escape(&format!("{} -> {} ({})", x.client, x.server, x.protocol)))
                .unwrap_or_default()
        );
        for (_, f) in found {
            if let Finding::TlsTraffic { sizes, times, .. } = f
                && !sizes.is_empty()
            {
                b.push_str("<h3>Encrypted records: size and time (traffic analysis)</h3>");
                b.push_str(&timeline(sizes, times));
            }
        }
        b.push_str("<pre>");
        for (ts, f) in found {
            let shown = match f {
                Finding::Credential {
                    kind,
                    user,
                    password: Some(p),
                    detail,
                    note,
                } => Finding::Credential {
                    kind,
                    user: user.clone(),
                    password: Some(mask(p, r.show_secrets)),
                    detail: detail.clone(),
                    note,
                },
                other => other.clone(),
            };
            let line = Record::new(*conn, *ts, &shown).to_string();
            let class = match shown.category() {
                Some(Category::Metadata | Category::EndToEnd) | None => "",
                Some(_) => " class=\"found\"",
            };
            let _ = writeln!(b, "<span{class}>{}</span>", escape(&line));
        }
        if *more > 0 {
            let _ = writeln!(b, "... and {more} more findings (see sniffer read)");
        }
        b.push_str("</pre></div>\n");
    }
    page("sniffer report", &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_text_is_escaped_and_passwords_masked() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        let rows = [ConnSummary {
            id: 0,
            client: "127.0.0.1:1".parse().unwrap(),
            server: "127.0.0.1:2".parse().unwrap(),
            protocol: "XMPP".into(),
            tls: false,
            decrypted: false,
            counts: [1, 1, 0, 0, 0, 0, 0],
            bytes: 10,
        }];
        let findings = vec![(
            0,
            vec![
                (
                    0.0,
                    Finding::Credential {
                        kind: "sasl-plain",
                        user: "bob".into(),
                        password: Some("hunter2-secret".into()),
                        detail: None,
                        note: "n",
                    },
                ),
                (
                    0.0,
                    Finding::Message {
                        from: None,
                        to: Some("a@b".into()),
                        kind: "chat".into(),
                        body: "<img src=x onerror=alert(1)>".into(),
                        stamp: None,
                    },
                ),
            ],
            0,
        )];
        let page = report(&ReportPage {
            source: "x.pcap".into(),
            keylog: false,
            rows: &rows,
            findings: &findings,
            totals: [1, 1, 0, 0, 0, 0, 0],
            show_secrets: false,
        });
        assert!(!page.contains("hunter2-secret"), "{page}");
        assert!(page.contains("password=(14 characters, masked"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("&lt;img src=x"), "{page}");
        assert!(
            page.contains("<td class=\"n leaked\">1 LEAKED</td>"),
            "{page}"
        );
        assert!(!page.contains("<script"), "no script of its own either");
    }
}
