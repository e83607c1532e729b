//! `sniffer`: what an attacker on the wire sees of the twin chat.
//!
//! ```text
//! sniffer live --interface lo                 # events as they happen; Ctrl-C: summary
//! sniffer read capture.pcap                   # the same from a file
//! sniffer follow capture.pcap --stream 0      # one connection's bytes
//! sniffer guard --needle s3cret -- CMD ARGS   # CI: fail if a secret crosses the wire readable
//! ```
//!
//! Exit codes: 0 done (guard: nothing found), 1 guard found a needle, 2 could
//! not run (bad file, no permission to capture, bad flags).
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};

/// mimalloc: every stanza builds a small element tree, and the C library's
/// allocator was a fifth of the time reading a capture.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use sniffer::analyze::Analyzer;
use sniffer::capture;
use sniffer::guard::Guard;
use sniffer::reassembly::{ConnId, Dir, Limits};
use sniffer::report::{self, Printer};

/// What an attacker on the wire can read of XMPP, with and without TLS.
#[derive(Parser)]
#[command(name = "sniffer", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// Print JSON lines instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Only the summary, not each finding.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Write files recovered from In-Band Bytestreams to this folder.
    #[arg(long, value_name = "DIR", global = true)]
    export: Option<PathBuf>,
    /// Out-of-order bytes held per connection direction before a hole is
    /// given up on.
    #[arg(long, default_value_t = sniffer::reassembly::DEFAULT_MAX_BUFFER, global = true)]
    max_flow_buffer: usize,
    /// Connections tracked at once (the least recently active is dropped).
    #[arg(long, default_value_t = sniffer::reassembly::DEFAULT_MAX_FLOWS, global = true)]
    max_flows: usize,
}

impl Common {
    fn limits(&self) -> Limits {
        Limits {
            max_buffer: self.max_flow_buffer,
            max_flows: self.max_flows.max(1),
        }
    }
    fn printer(&self) -> Printer {
        Printer {
            json: self.json,
            quiet: self.quiet,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Capture live and show each finding as it happens; Ctrl-C for the summary.
    Live {
        /// Interface to capture on.
        #[arg(long, default_value = "lo")]
        interface: String,
        /// BPF filter (as tcpdump takes it).
        #[arg(long)]
        filter: Option<String>,
        /// Also save the capture to this pcap file.
        #[arg(long, value_name = "FILE")]
        write: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Read pcap or pcapng files: the same findings and summary as live.
    Read {
        /// Capture files, read in order as one capture.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// BPF filter.
        #[arg(long)]
        filter: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Print the reassembled bytes of one TCP connection, both directions:
    /// as text, each line marked `>` (to the server) or `<` (to the client),
    /// with control characters escaped.
    Follow {
        /// Capture file.
        file: PathBuf,
        /// The connection's number (as the other commands print it, #N).
        #[arg(long)]
        stream: ConnId,
        /// Hex dump.
        #[arg(long, conflicts_with = "raw")]
        hex: bool,
        /// The raw bytes, as they came, unescaped: for a file or a pipe, not
        /// a terminal (the peer's escape sequences reach it as they are).
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Fail (exit 1) if any needle crosses the wire readable while COMMAND runs.
    Guard {
        /// Interface to capture on.
        #[arg(long, default_value = "lo")]
        interface: String,
        /// A secret that must not appear (repeatable).
        #[arg(long)]
        needle: Vec<String>,
        /// A file of secrets, one per line.
        #[arg(long, value_name = "FILE")]
        needle_file: Option<PathBuf>,
        /// Check this capture instead of running a command.
        #[arg(long, value_name = "FILE", conflicts_with = "command")]
        pcap: Option<PathBuf>,
        /// Also save the capture.
        #[arg(long, value_name = "FILE")]
        write: Option<PathBuf>,
        /// The command to run under capture.
        #[arg(last = true)]
        command: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
}

thread_local! {
    /// Findings go out in big writes, not one system call per line: a
    /// capture can hold millions of them. `flush_out` runs after every
    /// live frame and at the end.
    static OUT: std::cell::RefCell<std::io::BufWriter<std::io::Stdout>> =
        std::cell::RefCell::new(std::io::BufWriter::with_capacity(1 << 16, std::io::stdout()));
}

/// A closed pipe (`sniffer ... | head`) ends the program quietly; any
/// other failure to write is one line and exit 2.
fn quiet_on_broken_pipe(r: std::io::Result<()>) {
    if let Err(e) = r {
        protocol::display::stdout_failed(e);
    }
}

/// Writes a line to stdout.
fn out(line: &str) {
    OUT.with(|o| quiet_on_broken_pipe(writeln!(o.borrow_mut(), "{line}")));
}

/// Writes raw bytes to stdout.
fn out_bytes(data: &[u8]) {
    OUT.with(|o| quiet_on_broken_pipe(o.borrow_mut().write_all(data)));
}

/// Sends what is buffered.
fn flush_out() {
    OUT.with(|o| quiet_on_broken_pipe(o.borrow_mut().flush()));
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = run(cli.command);
    flush_out();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("sniffer: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("cannot handle signals")?;
    }
    Ok(stop)
}

fn print_finding(p: Printer) -> impl FnMut(ConnId, f64, &sniffer::findings::Finding) {
    move |conn, ts, f| {
        if p.quiet {
            return;
        }
        if p.json {
            out(&sniffer::findings::json(conn, ts, f).to_string());
        } else {
            out(&sniffer::findings::text(conn, ts, f));
        }
    }
}

fn print_summary(a: &Analyzer<'_>, json: bool) {
    out(report::summary(
        &a.summaries,
        &a.totals,
        &a.stats,
        a.connections(),
        a.bytes(),
        json,
    )
    .trim_end());
}

fn run(cmd: Command) -> anyhow::Result<u8> {
    match cmd {
        Command::Read {
            files,
            filter,
            common,
        } => {
            let mut a = Analyzer::new(
                common.limits(),
                common.export.clone(),
                Box::new(print_finding(common.printer())),
            );
            // Files of which no frame could be decoded (link type).
            let mut undecodable = 0;
            for f in &files {
                let size = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
                let bar = (size > 16 << 20 && std::io::stderr().is_terminal()).then(|| {
                    let b = indicatif::ProgressBar::new(size);
                    b.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    );
                    b
                });
                let read = capture::read_file(
                    f,
                    filter.as_deref(),
                    |link, ts, data| a.frame(link, ts, data),
                    |n| {
                        if let Some(b) = &bar {
                            b.set_position(n);
                        }
                    },
                );
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
                let report = match read {
                    Ok(r) => r,
                    // Among several files, one of a link type we cannot
                    // decode is skipped with a warning; see below.
                    Err(e @ capture::CaptureError::UnsupportedLink { .. }) if files.len() > 1 => {
                        eprintln!("sniffer: warning: {e}; skipped");
                        undecodable += 1;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                if report.mixed_link && report.frames == 0 {
                    undecodable += 1;
                }
                if let Some(d) = report.damaged {
                    eprintln!("sniffer: warning: {d}");
                }
            }
            if undecodable == files.len() {
                // Exit 2, not an empty summary: "0 connections" would read
                // as "nothing leaked" when the sniffer could not look.
                anyhow::bail!(
                    "no frame of {} could be decoded (see the warnings above)",
                    if files.len() == 1 {
                        "the capture"
                    } else {
                        "any of the captures"
                    }
                );
            }
            a.finish();
            print_summary(&a, common.json);
            Ok(0)
        }
        Command::Live {
            interface,
            filter,
            write,
            common,
        } => {
            let mut live = capture::open_live(&interface, filter.as_deref(), write.as_deref())?;
            // On stderr, so it never mixes with JSON on stdout; scripts
            // wait for it before starting the traffic.
            eprintln!("sniffer: capturing on {interface}; Ctrl-C for the summary");
            let stop = stop_flag()?;
            let mut a = Analyzer::new(
                common.limits(),
                common.export.clone(),
                Box::new(print_finding(common.printer())),
            );
            live.run(&stop, |link, ts, data| {
                a.frame(link, ts, data);
                // Live: each event shows as it happens.
                flush_out();
            })?;
            a.finish();
            print_summary(&a, common.json);
            if let Some(w) = write {
                eprintln!("sniffer: capture saved to {}", w.display());
            }
            Ok(0)
        }
        Command::Follow {
            file,
            stream,
            hex,
            raw,
            common,
        } => follow(&file, stream, hex, raw, &common),
        Command::Guard {
            interface,
            needle,
            needle_file,
            pcap,
            write,
            command,
            common,
        } => guard(
            &interface,
            needle,
            needle_file,
            pcap,
            write,
            command,
            &common,
        ),
    }
}

fn follow(
    file: &std::path::Path,
    stream: ConnId,
    hex: bool,
    raw: bool,
    common: &Common,
) -> anyhow::Result<u8> {
    let mut last_dir: Option<Dir> = None;
    let mut seen = false;
    let json = common.json;
    let tap = Box::new(|conn: ConnId, dir: Dir, offset: u64, data: &[u8]| {
        if conn != stream {
            return;
        }
        seen = true;
        let name = match dir {
            Dir::ToServer => "client -> server",
            Dir::ToClient => "server -> client",
        };
        if json {
            out(&serde_json::json!({"type": "data", "conn": conn,
                "dir": if dir == Dir::ToServer { "to-server" } else { "to-client" },
                "offset": offset, "text": String::from_utf8_lossy(data)})
            .to_string());
        } else if raw {
            out_bytes(data);
        } else if hex {
            for (i, chunk) in data.chunks(16).enumerate() {
                let hexs: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
                let text: String = chunk
                    .iter()
                    .map(|&b| {
                        if b.is_ascii_graphic() || b == b' ' {
                            b as char
                        } else {
                            '.'
                        }
                    })
                    .collect();
                let mark = if dir == Dir::ToServer { ">" } else { "<" };
                out(&format!(
                    "{mark} {:08x}  {:<47}  {text}",
                    offset + (i * 16) as u64,
                    hexs.join(" ")
                ));
            }
        } else {
            if last_dir != Some(dir) {
                out(&format!("===== {name} (from byte {offset}) ====="));
                last_dir = Some(dir);
            }
            // The stream's own lines are kept, but each starts with its
            // direction's mark and everything else is escaped: the peer's
            // bytes can neither drive the terminal (escape sequences, CR
            // overwriting a line, bidi overrides) nor forge a `=====`
            // direction banner or the other side's data with a newline.
            let mark = if dir == Dir::ToServer { ">" } else { "<" };
            let body = data.strip_suffix(b"\n").unwrap_or(data);
            for line in body.split(|&b| b == b'\n') {
                out(&format!("{mark} {}", report::escape_bytes(line)));
            }
        }
    });
    {
        let mut a = Analyzer::new(common.limits(), None, Box::new(|_, _, _| {})).with_tap(tap);
        let report = capture::read_file(file, None, |l, ts, d| a.frame(l, ts, d), |_| {})?;
        if let Some(d) = report.damaged {
            eprintln!("sniffer: warning: {d}");
        }
        a.finish();
        if stream >= a.connections() {
            anyhow::bail!(
                "{} has {} TCP connection(s), numbered 0 to {}: there is no stream {stream}",
                file.display(),
                a.connections(),
                a.connections().saturating_sub(1)
            );
        }
    }
    if !seen && !raw {
        eprintln!("sniffer: stream {stream} carried no data");
    }
    Ok(0)
}

fn guard(
    interface: &str,
    mut needles: Vec<String>,
    needle_file: Option<PathBuf>,
    pcap: Option<PathBuf>,
    write: Option<PathBuf>,
    command: Vec<String>,
    common: &Common,
) -> anyhow::Result<u8> {
    if let Some(f) = &needle_file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        needles.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    }
    needles.retain(|n| !n.is_empty());
    if needles.is_empty() {
        anyhow::bail!("no needle: give --needle TEXT or --needle-file FILE");
    }
    for (i, n) in needles.iter().enumerate() {
        if n.len() < 4 {
            eprintln!(
                "sniffer: warning: needle #{} is {} bytes long: short needles match by chance",
                i + 1,
                n.len()
            );
        }
    }
    if pcap.is_none() && command.is_empty() {
        anyhow::bail!("nothing to check: give -- COMMAND ARGS, or --pcap FILE");
    }
    let guard = std::cell::RefCell::new(Guard::new(&needles));
    let mut endpoints: std::collections::HashMap<ConnId, String> = Default::default();
    let (connections, bytes) = {
        let tap = Box::new(|c: ConnId, d: Dir, off: u64, data: &[u8]| {
            guard.borrow_mut().feed(c, d, off, data)
        });
        let sink = Box::new(|c: ConnId, _ts: f64, f: &sniffer::findings::Finding| {
            if let sniffer::findings::Finding::Connection { client, server, .. } = f {
                endpoints.insert(c, format!("{client} -> {server}"));
            }
        });
        let mut a = Analyzer::new(common.limits(), None, sink).with_tap(tap);
        match &pcap {
            Some(file) => {
                let r = capture::read_file(file, None, |l, ts, d| a.frame(l, ts, d), |_| {})?;
                if let Some(d) = r.damaged {
                    eprintln!("sniffer: warning: {d}");
                }
            }
            None => {
                // Capture first, then start the command, so its first packet
                // is seen. A failure to capture is exit 2: the guard never
                // passes because it could not look.
                let mut live = capture::open_live(interface, Some("tcp"), write.as_deref())?;
                let stop = Arc::new(AtomicBool::new(false));
                let mut child = std::process::Command::new(&command[0])
                    .args(&command[1..])
                    .spawn()
                    .with_context(|| format!("cannot run {}", command[0]))?;
                let status = std::thread::scope(|s| {
                    let st = stop.clone();
                    let waiter = s.spawn(move || {
                        let r = child.wait();
                        // Let the last packets arrive before stopping.
                        std::thread::sleep(std::time::Duration::from_millis(300));
                        st.store(true, Ordering::Relaxed);
                        r
                    });
                    let captured = live.run(&stop, |l, ts, d| a.frame(l, ts, d));
                    let status = waiter
                        .join()
                        .map_err(|_| anyhow::anyhow!("the command's waiter failed"))?;
                    captured?;
                    anyhow::Ok(status?)
                })?;
                if !status.success() {
                    anyhow::bail!(
                        "the command failed ({status}): a run that did not do its job proves nothing about leaks"
                    );
                }
            }
        }
        a.finish();
        (a.connections(), a.bytes())
    };
    let g = guard.into_inner();
    if connections == 0 {
        anyhow::bail!(
            "no TCP connection was captured on {interface}: nothing was checked (is the traffic on another interface?)"
        );
    }
    if g.hits.is_empty() {
        let msg = format!("no needle found in {connections} connections, {bytes} bytes");
        if common.json {
            out(&serde_json::json!({"type": "guard", "found": false, "connections": connections, "bytes": bytes}).to_string());
        } else {
            out(&msg);
        }
        return Ok(0);
    }
    for h in &g.hits {
        // The needle is a secret: say which one, not what it is.
        let n = &needles[h.needle];
        let shown: String = n.chars().take(2).collect();
        let label = format!(
            "needle #{} ({} chars, starts '{shown}')",
            h.needle + 1,
            n.chars().count()
        );
        let ends = endpoints.get(&h.conn).cloned().unwrap_or_default();
        let dir = if h.dir == Dir::ToServer {
            "client to server"
        } else {
            "server to client"
        };
        if common.json {
            out(&serde_json::json!({"type": "leak", "needle": h.needle + 1, "how": h.how, "conn": h.conn,
                "endpoints": ends, "dir": dir, "offset": h.offset, "context": h.context}).to_string());
        } else {
            out(&format!(
                "LEAK: {label} found as {} in connection #{} ({ends}), {dir}, at byte {}: ...{}...",
                h.how, h.conn, h.offset, h.context
            ));
        }
    }
    Ok(1)
}
