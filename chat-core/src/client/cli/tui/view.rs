//! Drawing the UI from [`App`] and [`Input`]:
//!
//! ```text
//! ┌ bob@localhost · typing… ─────────────────────┐┌ contacts ─────────┐
//! │12:01 alice: hi ✓                             ││● bob  away: lunch │
//! │12:02 bob: hello                              ││○ carol            │
//! └──────────────────────────────────────────────┘└───────────────────┘
//!  ↑ report.pdf  ━━━━━━━━━━━━───────── 61%            (transfers)
//!  1:console  2:bob  3:#lab(2)                          (windows)
//!  TLS 1.3 · TLS_AES_256_GCM_SHA384 · STARTTLS · certificate verified… (security)
//! to bob> _                                              (input)
//! ```
//!
//! The security line is the point of the exercise: what protects the
//! conversation shown, and what does not, where the student looks. On the
//! plaintext twin it is red and says who can read along.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, LineGauge, Paragraph, Wrap};

use super::app::{App, Conn, Entry, Kind, Tick, Tone};
use super::input::Input;
use crate::client::state::Link;
use crate::transport::Trust;
use protocol::stanza::Show;

/// The side pane appears from this width on.
const SIDE_FROM_WIDTH: u16 = 70;
const SIDE_WIDTH: u16 = 30;
/// Transfers shown at most.
const MAX_GAUGES: usize = 3;

/// Colours, or none (`NO_COLOR`, <https://no-color.org>): emphasis then
/// stays (bold, reverse), colour goes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Theme {
    pub(super) color: bool,
}

impl Theme {
    /// Colour unless `NO_COLOR` is set to anything but an empty string.
    pub(super) fn from_env() -> Theme {
        Theme {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    fn fg(self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    /// A warning: red (bold and reversed without colour).
    fn alarm(self) -> Style {
        if self.color {
            Style::new()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED)
        }
    }

    fn good(self) -> Style {
        if self.color {
            Style::new().fg(Color::Black).bg(Color::Green)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        }
    }

    fn caution(self) -> Style {
        if self.color {
            Style::new()
                .fg(Color::Black)
                .bg(Color::Yellow)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED)
        }
    }

    fn dim(self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new().add_modifier(Modifier::DIM)
        }
    }
}

/// Draws the whole screen.
pub(super) fn draw(frame: &mut Frame, app: &App, input: &Input, theme: Theme) {
    let area = frame.area();
    let gauges = app.transfers.len().min(MAX_GAUGES) as u16;
    // The security lines wrap rather than lose their end (a warning cut
    // short is no warning); at most a third of the screen.
    let security_text = security_lines(app, theme);
    let security_rows = Paragraph::new(security_text.clone())
        .wrap(Wrap { trim: false })
        .line_count(area.width.max(1))
        .clamp(1, usize::from(area.height / 3).max(1));
    let [main, transfers, bar, security, prompt] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(gauges),
        Constraint::Length(1),
        Constraint::Length(u16::try_from(security_rows).unwrap_or(1)),
        Constraint::Length(1),
    ])
    .areas(area);
    let (chat, side) = if area.width >= SIDE_FROM_WIDTH {
        let [c, s] =
            Layout::horizontal([Constraint::Min(20), Constraint::Length(SIDE_WIDTH)]).areas(main);
        (c, Some(s))
    } else {
        (main, None)
    };
    conversation(frame, app, chat, theme);
    if let Some(side) = side {
        side_pane(frame, app, side, theme);
    }
    transfer_gauges(frame, app, transfers, theme);
    frame.render_widget(Paragraph::new(window_bar(app, theme)), bar);
    frame.render_widget(
        Paragraph::new(security_text).wrap(Wrap { trim: false }),
        security,
    );
    input_line(frame, app, input, prompt, theme);
}

/// The shown window's lines, the newest at the bottom.
fn conversation(frame: &mut Frame, app: &App, area: Rect, theme: Theme) {
    let w = app.shown();
    let mut title = match &w.jid {
        None => " console ".to_string(),
        Some(j) => format!(" {} ", protocol::display::Safe(&j.to_string())),
    };
    if let Some(s) = &w.subject {
        title.push_str(&format!("· {s} "));
    }
    if w.kind == Kind::Room && !w.joined {
        title.push_str("· not joined ");
    }
    let mut block =
        Block::bordered().title(Line::from(title).style(Style::new().add_modifier(Modifier::BOLD)));
    if w.state.is_some() {
        block = block.title(
            Line::from(" typing… ")
                .style(theme.fg(Color::Yellow))
                .right_aligned(),
        );
    }
    let inner = block.inner(area);
    // How far up the view can go: until the first line is at the top.
    let height = usize::from(inner.height);
    let mut top_rows = 0usize;
    let mut max_scroll = 0usize;
    for (i, e) in w.lines.iter().enumerate() {
        top_rows += Paragraph::new(entry_line(e, theme))
            .wrap(Wrap { trim: false })
            .line_count(inner.width.max(1));
        if top_rows >= height {
            max_scroll = w.lines.len() - 1 - i;
            break;
        }
    }
    w.max_scroll.set(max_scroll);
    let scroll = w.scroll.min(max_scroll);
    if scroll > 0 {
        block = block.title_bottom(
            Line::from(format!(" ↓ {scroll} more below (PgDn) ")).style(theme.fg(Color::Yellow)),
        );
    }
    frame.render_widget(block, area);
    if inner.height == 0 || inner.width == 0 {
        return;
    }
    // Only as many entries as can show (the last ones, less the scroll):
    // each is wrapped to the width, so count its rows.
    let end = w.lines.len().saturating_sub(scroll);
    let mut rows = 0usize;
    let mut entries: Vec<Text> = Vec::new();
    for e in w.lines.range(..end).rev() {
        let text = entry_line(e, theme);
        rows += Paragraph::new(text.clone())
            .wrap(Wrap { trim: false })
            .line_count(inner.width);
        entries.push(text);
        if rows >= usize::from(inner.height) {
            break;
        }
    }
    let text = Text::from(
        entries
            .into_iter()
            .rev()
            .flat_map(|t| t.lines)
            .collect::<Vec<_>>(),
    );
    let overflow = rows.saturating_sub(usize::from(inner.height));
    let p = Paragraph::new(text)
        .wrap(Wrap { trim: false })
        .scroll((u16::try_from(overflow).unwrap_or(u16::MAX), 0));
    frame.render_widget(p, inner);
}

/// One entry of a window: time, who, text, tick. A text of several lines
/// continues under a bar, so no line of it passes for a message of its own.
fn entry_line(e: &Entry, theme: Theme) -> Text<'static> {
    let text_style = match e.tone {
        Tone::Me | Tone::Peer => Style::new(),
        Tone::Info => theme.dim(),
        Tone::Notice => theme.fg(Color::Yellow).add_modifier(Modifier::BOLD),
        Tone::Error => theme.fg(Color::Red).add_modifier(Modifier::BOLD),
    };
    let mut parts = e.text.split('\n');
    let mut first = vec![Span::styled(format!("{} ", e.time), theme.dim())];
    if let Some(who) = &e.who {
        let colour = if e.tone == Tone::Me {
            Color::Cyan
        } else {
            Color::Magenta
        };
        first.push(Span::styled(
            format!("{who}: "),
            theme.fg(colour).add_modifier(Modifier::BOLD),
        ));
    }
    first.push(Span::styled(
        parts.next().unwrap_or("").to_string(),
        text_style,
    ));
    let mut lines = vec![Line::from(first)];
    for more in parts {
        lines.push(Line::from(vec![
            Span::styled("      ┆ ", theme.dim()),
            Span::styled(more.to_string(), text_style),
        ]));
    }
    let tick = match e.tick {
        Tick::None => None,
        Tick::Sent => Some(Span::styled(" ·", theme.dim())),
        Tick::Delivered => Some(Span::styled(" ✓", theme.fg(Color::Green))),
        Tick::Failed => Some(Span::styled(
            " ✗ not delivered",
            theme.fg(Color::Red).add_modifier(Modifier::BOLD),
        )),
    };
    if let (Some(t), Some(last)) = (tick, lines.last_mut()) {
        last.push_span(t);
    }
    Text::from(lines)
}

/// Contacts and their presence, the rooms we are in, and the occupants of
/// the room shown.
fn side_pane(frame: &mut Frame, app: &App, area: Rect, theme: Theme) {
    let mut lines: Vec<Line> = Vec::new();
    lines.push(Line::from(Span::styled(
        "Contacts",
        Style::new().add_modifier(Modifier::BOLD),
    )));
    if app.contacts.is_empty() {
        lines.push(Line::from(Span::styled(" none yet: /add JID", theme.dim())));
    }
    for (jid, c) in &app.contacts {
        let (dot, colour, status) = match c.presence() {
            Some((show, status)) => {
                let (dot, colour) = presence_mark(show);
                let mut s = show.map(|s| s.as_str().to_string()).unwrap_or_default();
                if let Some(t) = status {
                    if !s.is_empty() {
                        s.push_str(": ");
                    }
                    s.push_str(&t);
                }
                (dot, colour, s)
            }
            None => ("○", Color::DarkGray, String::new()),
        };
        let mut spans = vec![
            Span::styled(format!("{dot} "), theme.fg(colour)),
            Span::raw(app.name_of(jid)),
        ];
        if c.ask {
            spans.push(Span::styled(" (asked)", theme.dim()));
        } else if c.subscription == "none" || c.subscription == "from" {
            spans.push(Span::styled(" (no presence)", theme.dim()));
        }
        if !status.is_empty() {
            spans.push(Span::styled(
                format!(" {}", protocol::display::Safe(&status)),
                theme.dim(),
            ));
        }
        lines.push(Line::from(spans));
    }
    let rooms: Vec<_> = app
        .windows
        .iter()
        .filter(|w| w.kind == Kind::Room && w.joined)
        .collect();
    if !rooms.is_empty() {
        lines.push(Line::default());
        lines.push(Line::from(Span::styled(
            "Rooms",
            Style::new().add_modifier(Modifier::BOLD),
        )));
        for w in rooms {
            lines.push(Line::from(format!(
                "# {} ({})",
                w.label().trim_start_matches('#'),
                w.occupants.len()
            )));
        }
    }
    let shown = app.shown();
    if shown.kind == Kind::Room && !shown.occupants.is_empty() {
        lines.push(Line::default());
        lines.push(Line::from(Span::styled(
            format!("In {}", shown.label()),
            Style::new().add_modifier(Modifier::BOLD),
        )));
        for (nick, show) in &shown.occupants {
            let (dot, colour) = presence_mark(*show);
            let me = shown.nick.as_deref() == Some(nick.as_str());
            lines.push(Line::from(vec![
                Span::styled(format!("{dot} "), theme.fg(colour)),
                Span::raw(protocol::display::Safe(nick).to_string()),
                Span::styled(if me { " (you)" } else { "" }, theme.dim()),
            ]));
        }
    }
    frame.render_widget(Paragraph::new(lines).block(Block::bordered()), area);
}

fn presence_mark(show: Option<Show>) -> (&'static str, Color) {
    match show {
        None | Some(Show::Chat) => ("●", Color::Green),
        Some(Show::Away) | Some(Show::Xa) => ("◐", Color::Yellow),
        Some(Show::Dnd) => ("●", Color::Red),
    }
}

fn transfer_gauges(frame: &mut Frame, app: &App, area: Rect, theme: Theme) {
    let rows = Layout::vertical(vec![Constraint::Length(1); area.height as usize]).split(area);
    for (t, row) in app.transfers.values().zip(rows.iter()) {
        let ratio = if t.total == 0 {
            0.0
        } else {
            (t.bytes as f64 / t.total as f64).clamp(0.0, 1.0)
        };
        let arrow = if t.sending { "↑" } else { "↓" };
        let label = format!(
            "{arrow} {} {}% ({} of {} bytes)",
            protocol::display::Safe(&t.name),
            (ratio * 100.0).round(),
            t.bytes,
            t.total
        );
        frame.render_widget(
            LineGauge::default()
                .ratio(ratio)
                .label(label)
                .filled_style(theme.fg(Color::Cyan)),
            *row,
        );
    }
}

/// `1:console  2:bob(3)  3:#lab`: every window, the shown one reversed,
/// unread counts in brackets.
fn window_bar(app: &App, theme: Theme) -> Line<'static> {
    let mut spans = Vec::new();
    for (i, w) in app.windows.iter().enumerate() {
        let mut text = format!(" {}:{}", i + 1, w.label());
        if w.unread > 0 {
            text.push_str(&format!("({})", w.unread));
        }
        text.push(' ');
        let style = if w.id == app.active {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else if w.unread > 0 {
            theme.fg(Color::Yellow).add_modifier(Modifier::BOLD)
        } else {
            Style::new()
        };
        spans.push(Span::styled(text, style));
    }
    spans.push(Span::styled(
        "  Alt-1..9, Ctrl-N/P: switch · PgUp/PgDn: scroll · /help",
        theme.dim(),
    ));
    Line::from(spans)
}

/// What protects the conversation shown, and what does not: the link to
/// the server on the first line, the sign-in and the reach of the
/// protection on the second.
fn security_lines(app: &App, theme: Theme) -> Vec<Line<'static>> {
    let mut first = Vec::new();
    match &app.conn {
        Conn::Online => {}
        Conn::Reconnecting(why) => first.push(Span::styled(
            format!(" RECONNECTING ({why}) "),
            theme.caution(),
        )),
        Conn::Offline(why) => first.push(Span::styled(format!(" OFFLINE: {why} "), theme.alarm())),
    }
    let Some(link) = &app.link else {
        return vec![Line::from(first)];
    };
    let [link_parts, mut session_parts] = security_parts(link, app.shown().kind);
    if let Some(state) = app.e2e.filter(|s| s.on) {
        // End to end replaces "not end-to-end", and says how far the
        // contact's keys were checked.
        session_parts.pop();
        let level = if state.devices == 0 {
            Level::Bad
        } else if state.verified == 0 {
            Level::Weak
        } else if state.untrusted > 0 {
            Level::Bad
        } else {
            Level::Good
        };
        session_parts.push((
            match level {
                Level::Weak => format!("{state}: compare fingerprints (/fingerprints)"),
                _ => state.to_string(),
            },
            level,
        ));
    }
    let styled = |parts: Vec<(String, Level)>, mut spans: Vec<Span<'static>>| {
        for (text, level) in parts {
            let style = match level {
                Level::Good => theme.good(),
                Level::Weak => theme.caution(),
                Level::Bad => theme.alarm(),
                Level::Note => theme.dim(),
            };
            if !spans.is_empty() {
                spans.push(Span::raw(" "));
            }
            spans.push(Span::styled(format!(" {text} "), style));
        }
        Line::from(spans)
    };
    vec![styled(link_parts, first), styled(session_parts, Vec::new())]
}

/// How good a part of the protection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    Good,
    Weak,
    Bad,
    Note,
}

/// The security lines' parts: the link to the server, then the sign-in
/// and how far the protection reaches.
pub(super) fn security_parts(link: &Link, kind: Kind) -> [Vec<(String, Level)>; 2] {
    let mut first = Vec::new();
    match &link.tls {
        None => first.push((
            "PLAINTEXT: anyone on the network path reads and changes this chat".to_string(),
            Level::Bad,
        )),
        Some(tls) => {
            let how = if link.direct {
                "direct TLS"
            } else {
                "STARTTLS"
            };
            first.push((
                format!("{} · {} · {how}", tls.version, tls.suite),
                Level::Good,
            ));
            first.push(match tls.trust {
                Some(Trust::Insecure) => (
                    "certificate NOT checked (--insecure): anyone in the middle can pose as the server"
                        .to_string(),
                    Level::Bad,
                ),
                Some(Trust::Pinned) => ("certificate verified, key pinned".to_string(), Level::Good),
                Some(Trust::Ca) => ("certificate verified (--ca)".to_string(), Level::Good),
                Some(Trust::SystemRoots) => {
                    ("certificate verified (system CAs)".to_string(), Level::Good)
                }
                None => ("certificate not checked".to_string(), Level::Weak),
            });
        }
    }
    let mech = link.mechanism.name();
    let sign_in = match (link.mechanism, link.binding) {
        (protocol::sasl::Mechanism::Plain, _) if link.tls.is_none() => (
            format!("{mech}: your password crossed the wire readable"),
            Level::Bad,
        ),
        (protocol::sasl::Mechanism::Plain, _) => {
            (format!("{mech}: the server saw your password"), Level::Weak)
        }
        (_, Some(b)) => (format!("{mech}, bound to {}", b.name()), Level::Good),
        (_, None) if link.tls.is_some() => {
            (format!("{mech}, not bound to the channel"), Level::Weak)
        }
        // SCRAM over plaintext: the password is not sent, but a sniffed
        // exchange lets an eavesdropper try guesses offline.
        (_, None) => (
            format!(
                "{mech}: no password on the wire, but a sniffed sign-in can be guessed at offline"
            ),
            Level::Weak,
        ),
    };
    // Hop by hop: TLS covers us to our server, not beyond.
    let reach = (
        match kind {
            Kind::Room => "not end-to-end: the server reads the room",
            _ => "not end-to-end: the server reads every message",
        }
        .to_string(),
        Level::Note,
    );
    [first, vec![sign_in, reach]]
}

/// `to bob> text`: where a plain line goes, then what is typed.
fn input_line(frame: &mut Frame, app: &App, input: &Input, area: Rect, theme: Theme) {
    let w = app.shown();
    let target = match w.kind {
        Kind::Console => "command".to_string(),
        _ => format!("to {}", w.label()),
    };
    let prompt = format!("{target}> ");
    let before = Line::from(format!("{prompt}{}", input.before_cursor())).width();
    // Scrolled sideways to keep the cursor in view.
    let width = usize::from(area.width.max(1));
    let offset = (before + 1).saturating_sub(width);
    let line = Line::from(vec![
        Span::styled(prompt, theme.fg(Color::Cyan).add_modifier(Modifier::BOLD)),
        Span::raw(input.text()),
    ]);
    frame.render_widget(
        Paragraph::new(line).scroll((0, u16::try_from(offset).unwrap_or(u16::MAX))),
        area,
    );
    let x = area.x + u16::try_from(before - offset).unwrap_or(0);
    frame.set_cursor_position((x, area.y));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::TlsInfo;
    use protocol::sasl::{ChannelBindingType, Mechanism};

    #[test]
    fn the_security_line_says_what_protects_the_chat_and_what_does_not() {
        let plain = Link {
            tls: None,
            direct: false,
            mechanism: Mechanism::Plain,
            binding: None,
        };
        let [link, session] = security_parts(&plain, Kind::Chat);
        assert_eq!(link.len(), 1);
        assert_eq!(link[0].1, Level::Bad);
        assert!(link[0].0.starts_with("PLAINTEXT"));
        assert!(session[0].0.contains("password crossed the wire"));
        let tls = Link {
            tls: Some(TlsInfo {
                bindings: Vec::new(),
                version: "TLS 1.3".into(),
                suite: "TLS_AES_256_GCM_SHA384".into(),
                trust: Some(Trust::Insecure),
            }),
            direct: true,
            mechanism: Mechanism::ScramSha256Plus,
            binding: Some(ChannelBindingType::TlsExporter),
        };
        let [link, session] = security_parts(&tls, Kind::Room);
        assert_eq!(
            link[0],
            (
                "TLS 1.3 · TLS_AES_256_GCM_SHA384 · direct TLS".into(),
                Level::Good
            )
        );
        assert_eq!(link[1].1, Level::Bad, "{:?}", link[1]);
        assert_eq!(
            session[0],
            (
                "SCRAM-SHA-256-PLUS, bound to tls-exporter".into(),
                Level::Good
            )
        );
        assert!(session[1].0.contains("server reads the room"));
    }
}
