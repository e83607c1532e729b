//! `labs demo --live`: the demo as it happens, on one full screen for a
//! projector. Both conversations run side by side, beat by beat at
//! `--pace`: on the left the plaintext twin, on the right the TLS twin,
//! each with what alice and bob see (the chat) above what the sniffer on
//! loopback recovers from the wire at the same moment. The verdict fills
//! in as categories leak. At the end the screen stays until a key, then
//! the same table as without `--live` is printed from the same findings.

use std::time::{Duration, Instant};

use harness::signals::check_interrupt;
use harness::{Input, Proc};
use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Paragraph, Row, Table, Wrap};
use serde_json::Value;

use super::findings::Found;
use super::report::{DemoArgs, E2E_HIDDEN, ROWS, finish, verdicts};
use super::stage::{ALICE_PW, BOB_PW, Stage, Who, conversation, files, flags, set_up};
use crate::chat::Twin;

/// How long the clients may take to finish once their scripts are in.
const FINISH_WAIT: Duration = Duration::from_secs(60);

/// Lines each pane keeps.
const KEEP: usize = 200;

/// One client of one twin.
struct Person {
    twin: Twin,
    who: Who,
    proc: Proc,
    /// Its output has ended (it exited).
    ended: bool,
}

/// What the screen shows.
struct View {
    caption: String,
    /// Per twin (plaintext, TLS): the chat, and what the sniffer found.
    chat: [Vec<(String, bool)>; 2],
    found: [Vec<Found>; 2],
    /// The run is over: rows with nothing found are "hidden" now.
    done: bool,
    /// The verdict so far, per row: (plaintext, TLS); `None`: nothing yet.
    verdict: Vec<(Option<&'static str>, Option<&'static str>)>,
    color: bool,
}

fn side(twin: Twin) -> usize {
    match twin {
        Twin::Plain => 0,
        Twin::Tls => 1,
    }
}

impl View {
    fn push_chat(&mut self, twin: Twin, text: String, error: bool) {
        let pane = &mut self.chat[side(twin)];
        // alice and bob both see a room message: once is enough.
        if pane.iter().rev().take(20).any(|(t, _)| *t == text) {
            return;
        }
        pane.push((text, error));
        if pane.len() > KEEP {
            pane.remove(0);
        }
    }

    fn found(&mut self, f: Found) {
        if let Some(row) = ROWS.iter().position(|(cat, _)| *cat == f.category) {
            let word = match ROWS[row].1 {
                "content" => "LEAKED",
                "e2e" => E2E_HIDDEN,
                _ => "visible",
            };
            let cell = &mut self.verdict[row];
            match f.twin {
                Twin::Plain => cell.0 = Some(word),
                Twin::Tls => cell.1 = Some(word),
            }
        }
        let pane = &mut self.found[side(f.twin)];
        pane.push(f);
        if pane.len() > KEEP {
            pane.remove(0);
        }
    }
}

/// Runs the live demo; returns the exit code.
pub(super) fn run(args: &DemoArgs) -> anyhow::Result<u8> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        anyhow::bail!(
            "--live draws on a terminal: run it in one (without --live the demo prints its table)"
        );
    }
    let pace = Duration::from_secs_f64(args.pace.unwrap_or(2.0).clamp(0.0, 60.0));
    let t0 = Instant::now();
    let dir = tempfile::Builder::new().prefix("labs-demo-").tempdir()?;
    // Before the screen changes: a sniffer that cannot capture (not root)
    // says so in the terminal.
    eprintln!(
        "labs demo --live: starting a chat-plain server, a chat-tls server and the sniffer on loopback..."
    );
    let mut stage = set_up(dir.path(), &mut |_, _| Ok(check_interrupt()?))?;
    let mut terminal = ratatui::try_init()?;
    let mut view = View {
        caption: "signing in".into(),
        chat: Default::default(),
        found: Default::default(),
        done: false,
        verdict: vec![(None, None); ROWS.len()],
        color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    };
    let shown = show(&mut terminal, &mut stage, dir.path(), pace, &mut view);
    ratatui::restore();
    shown?;
    finish(args, &stage.into_findings(), t0)
}

/// The run itself, drawn as it goes.
fn show(
    term: &mut DefaultTerminal,
    stage: &mut Stage,
    dir: &std::path::Path,
    pace: Duration,
    view: &mut View,
) -> anyhow::Result<()> {
    let mut people = Vec::new();
    let mut beats = Vec::new();
    for (twin, server) in [(Twin::Plain, &stage.plain), (Twin::Tls, &stage.tls)] {
        let (file, d, keys) = files(server, dir)?;
        beats.push(conversation(&file));
        for (who, user, pw) in [(Who::Bob, "bob", BOB_PW), (Who::Alice, "alice", ALICE_PW)] {
            let cmd = server.client(user, pw, &flags(who, &d, &keys))?;
            people.push(Person {
                twin,
                who,
                proc: Proc::spawn(user, cmd, Input::Piped)?,
                ended: false,
            });
        }
    }
    let n = beats[0].len();
    for (i, (plain_beat, tls_beat)) in beats[0].iter().zip(&beats[1]).enumerate() {
        view.caption = format!("{}/{n}: {}", i + 1, plain_beat.caption);
        // The same beat on both twins at once.
        for (twin, beat) in [(Twin::Plain, plain_beat), (Twin::Tls, tls_beat)] {
            for (who, line) in &beat.lines {
                for p in people
                    .iter_mut()
                    .filter(|p| p.twin == twin && p.who == *who)
                {
                    p.proc.send_line(line)?;
                }
            }
        }
        pump_until(term, stage, &mut people, view, Some(Instant::now() + pace))?;
    }
    view.caption = "finishing: the clients sign out".into();
    for p in &mut people {
        p.proc.close_stdin();
    }
    let deadline = Instant::now() + FINISH_WAIT;
    while !people.iter().all(|p| p.ended) && Instant::now() < deadline {
        pump_until(term, stage, &mut people, view, None)?;
    }
    // What the sniffer still holds.
    for f in stage.stop_sniffer()? {
        view.found(f);
    }
    view.done = true;
    let final_verdict = verdicts(&stage.findings);
    for (row, v) in view.verdict.iter_mut().zip(&final_verdict) {
        *row = (Some(v.plaintext), Some(v.tls));
    }
    view.caption =
        "done: TLS hid the content; names, timing and sizes stay visible. Press a key to leave"
            .into();
    draw(term, view)?;
    loop {
        check_interrupt()?;
        if event::poll(Duration::from_millis(200))?
            && let Event::Key(k) = event::read()?
            && k.kind == KeyEventKind::Press
        {
            return Ok(());
        }
    }
}

/// Reads what came in (sniffer findings, client events) and redraws,
/// until `until` (or once, without). Ctrl-C or q stops the demo.
fn pump_until(
    term: &mut DefaultTerminal,
    stage: &mut Stage,
    people: &mut [Person],
    view: &mut View,
    until: Option<Instant>,
) -> anyhow::Result<()> {
    loop {
        check_interrupt()?;
        // Raw mode: Ctrl-C is a key here, not a signal.
        while event::poll(Duration::ZERO)? {
            if let Event::Key(k) = event::read()?
                && k.kind == KeyEventKind::Press
                && (k.code == KeyCode::Char('q')
                    || (k.code == KeyCode::Char('c')
                        && k.modifiers.contains(KeyModifiers::CONTROL)))
            {
                return Err(harness::Error::Interrupted.into());
            }
        }
        while let Ok(Some(line)) = stage.sniffer.line(Duration::ZERO) {
            for f in stage.findings.add(&line) {
                view.found(f);
            }
        }
        for p in people.iter_mut().filter(|p| !p.ended) {
            loop {
                match p.proc.line(Duration::ZERO) {
                    Ok(Some(line)) => {
                        if let Some((text, error)) = chat_line(p.who, &line) {
                            view.push_chat(p.twin, text, error);
                        }
                    }
                    Ok(None) => {
                        p.ended = true;
                        break;
                    }
                    Err(harness::Error::Interrupted) => {
                        return Err(harness::Error::Interrupted.into());
                    }
                    Err(_) => break,
                }
            }
        }
        draw(term, view)?;
        match until {
            Some(t) if Instant::now() < t => std::thread::sleep(Duration::from_millis(50)),
            Some(_) => return Ok(()),
            None => {
                std::thread::sleep(Duration::from_millis(50));
                return Ok(());
            }
        }
    }
}

/// A client's JSON event as a line of the chat pane, if it is one people
/// would see; `true` for a failure.
fn chat_line(who: Who, line: &str) -> Option<(String, bool)> {
    let v: Value = serde_json::from_str(line).ok()?;
    let me = match who {
        Who::Alice => "alice",
        Who::Bob => "bob",
    };
    let s = |k: &str| v[k].as_str().unwrap_or("?").to_string();
    let user = |k: &str| {
        let j = s(k);
        j.split('@').next().unwrap_or(&j).to_string()
    };
    Some(match v["type"].as_str()? {
        "connected" => (format!("{me} signed in with {}", s("mechanism")), false),
        "subscribe" => (
            format!("{} asks to see {me}'s presence", user("from")),
            false,
        ),
        "subscription" => (
            format!("{} accepted {me} as a contact", user("from")),
            false,
        ),
        "presence" if v["status"].is_string() => (
            format!("{} is {}: {}", user("from"), s("show"), s("status")),
            false,
        ),
        "message" => (format!("{} → {me}: {}", user("from"), s("body")), false),
        "room-message" => (
            format!("[{}] {}: {}", user("room"), s("nick"), s("body")),
            false,
        ),
        "file-received" => (
            format!(
                "{me} received {} ({} bytes) from {}",
                s("name"),
                v["size"],
                user("from")
            ),
            false,
        ),
        "error" => (format!("{me}: error: {}", s("error")), true),
        _ => return None,
    })
}

fn draw(term: &mut DefaultTerminal, view: &View) -> anyhow::Result<()> {
    term.draw(|f| {
        let [title, body, verdict] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(8),
            Constraint::Length(ROWS.len() as u16 + 3),
        ])
        .areas(f.area());
        f.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled(
                    " labs demo: the same chat, plaintext and TLS, a sniffer on the wire ",
                    Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
                ),
                Span::raw(format!("  {}", view.caption)),
            ])),
            title,
        );
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(body);
        for (i, (area, name)) in [
            (left, "PLAINTEXT (chat-plain)"),
            (right, "TLS (chat-tls, STARTTLS required)"),
        ]
        .into_iter()
        .enumerate()
        {
            let [chat, sniffed] =
                Layout::vertical([Constraint::Percentage(40), Constraint::Percentage(60)])
                    .areas(area);
            let lines: Vec<Line> = view.chat[i]
                .iter()
                .map(|(t, error)| {
                    let style = if *error {
                        view.fg(Color::Red)
                    } else {
                        Style::new()
                    };
                    Line::styled(safe(t), style)
                })
                .collect();
            pane(f, chat, &format!(" {name}: what alice and bob see "), lines);
            let lines: Vec<Line> = view.found[i]
                .iter()
                .map(|found| {
                    let kind = ROWS
                        .iter()
                        .find(|(c, _)| *c == found.category)
                        .map_or("metadata", |(_, k)| *k);
                    let colour = match kind {
                        "content" => Color::Red,
                        "e2e" => Color::Green,
                        _ => Color::Yellow,
                    };
                    Line::from(vec![
                        Span::styled(
                            format!("{}: ", found.category.to_uppercase()),
                            view.fg(colour).add_modifier(Modifier::BOLD),
                        ),
                        Span::raw(safe(&found.text)),
                    ])
                })
                .collect();
            pane(f, sniffed, " what the sniffer on the wire recovers ", lines);
        }
        let rows = ROWS.iter().zip(&view.verdict).map(|((cat, _), (p, t))| {
            Row::new(vec![
                Span::raw(cat.to_string()),
                view.word(*p),
                view.word(*t),
            ])
        });
        let table = Table::new(
            rows,
            [
                Constraint::Length(26),
                Constraint::Length(14),
                Constraint::Length(14),
            ],
        )
        .header(
            Row::new(vec!["what", "plaintext", "TLS"])
                .style(Style::new().add_modifier(Modifier::BOLD)),
        )
        .block(Block::bordered().title(" verdict "));
        f.render_widget(table, verdict);
    })?;
    Ok(())
}

impl View {
    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    /// A verdict cell: what was found, "hidden" once the run is over, or
    /// a dot while nothing was found yet.
    fn word(&self, w: Option<&'static str>) -> Span<'static> {
        match w {
            Some("LEAKED") => Span::styled(
                "LEAKED",
                self.fg(Color::Red)
                    .add_modifier(Modifier::BOLD | Modifier::REVERSED),
            ),
            Some(w @ ("hidden" | E2E_HIDDEN)) => {
                Span::styled(w, self.fg(Color::Green).add_modifier(Modifier::BOLD))
            }
            Some(other) => Span::styled(other, self.fg(Color::Yellow)),
            None if self.done => Span::styled("hidden", self.fg(Color::Green)),
            None => Span::styled("…", Style::new().add_modifier(Modifier::DIM)),
        }
    }
}

/// Whatever came off the wire, escaped for the terminal.
fn safe(s: &str) -> String {
    protocol::display::terminal_safe(s).into_owned()
}

/// A bordered pane showing the last lines that fit, wrapped.
fn pane(f: &mut ratatui::Frame, area: Rect, title: &str, lines: Vec<Line<'static>>) {
    let block = Block::bordered().title(title.to_string());
    let inner = block.inner(area);
    f.render_widget(block, area);
    if inner.width == 0 || inner.height == 0 {
        return;
    }
    let mut rows = 0;
    let mut shown = Vec::new();
    for line in lines.into_iter().rev() {
        rows += Paragraph::new(line.clone())
            .wrap(Wrap { trim: false })
            .line_count(inner.width);
        shown.push(line);
        if rows >= usize::from(inner.height) {
            break;
        }
    }
    shown.reverse();
    let overflow = rows.saturating_sub(usize::from(inner.height));
    f.render_widget(
        Paragraph::new(Text::from(shown))
            .wrap(Wrap { trim: false })
            .scroll((u16::try_from(overflow).unwrap_or(u16::MAX), 0)),
        inner,
    );
}
