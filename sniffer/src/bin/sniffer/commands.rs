//! The subcommands, run: `read` and `live` analyse a capture and print
//! findings and the summary, `follow` prints one connection's bytes, and
//! `guard` runs a command under capture and fails if a needle leaks. Each
//! returns the exit code, or an error for exit 2.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use sniffer::analyze::{Analyzer, Layer};
use sniffer::capture;
use sniffer::findings::Finding;
use sniffer::guard::{Guard, Leak, NoLeak};
use sniffer::jsonl;
use sniffer::reassembly::{ConnId, Dir};
use sniffer::report::{self, StreamData};

use crate::cli::{Command, Common};
use crate::output::{flush_out, out, out_bytes, print_finding, print_summary};

/// Runs one subcommand.
pub(crate) fn run(cmd: Command) -> anyhow::Result<u8> {
    match cmd {
        Command::Read {
            files,
            filter,
            threads,
            common,
        } => read(&files, filter.as_deref(), threads, &common),
        Command::Live {
            interface,
            filter,
            write,
            common,
        } => live(&interface, filter.as_deref(), write, &common),
        Command::Report {
            files,
            html,
            show_secrets,
            filter,
            common,
        } => report_html(&files, &html, show_secrets, filter.as_deref(), &common),
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

/// `read`: every frame of the files, in order, as one capture; findings as
/// they come, then the summary. Connections are read on `threads` threads
/// (0: one per core, up to 8); the output does not depend on how many.
fn read(
    files: &[PathBuf],
    filter: Option<&str>,
    threads: usize,
    common: &Common,
) -> anyhow::Result<u8> {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
        n => n,
    };
    let keylog = common.keylog(false)?;
    let parallel = if threads > 1 {
        let p = common.printer();
        let render: sniffer::analyze::Render = std::sync::Arc::new(move |conn, ts, f, buf| {
            if let Some(line) = p.line(conn, ts, f) {
                buf.extend_from_slice(line.as_bytes());
                buf.push(b'\n');
            }
        });
        let a = Analyzer::parallel(
            common.limits(),
            common.export.clone(),
            keylog.clone(),
            threads,
            render,
            Box::new(out_bytes),
        );
        // Without threads to spare the same work is done on this one.
        a.inspect_err(|e| eprintln!("sniffer: warning: cannot start threads ({e}); reading on one"))
            .ok()
    } else {
        None
    };
    let mut a = match parallel {
        Some(a) => a,
        None => {
            let a = Analyzer::new(
                common.limits(),
                common.export.clone(),
                Box::new(print_finding(common.printer())),
            );
            match keylog {
                Some(k) => a.with_keylog(k),
                None => a,
            }
        }
    };
    if let Err(e) = read_files(&mut a, files, filter) {
        // What was read before the error is printed, as one thread would.
        a.flush();
        return Err(e);
    }
    a.finish();
    print_summary(&a, common.json, common.wide);
    Ok(0)
}

/// Every frame of `files`, in order, into `a`, as one capture: a progress
/// bar on big files, damage warned about, and an error (exit 2) when no
/// frame of any file could be decoded. `read` and `report` read alike.
fn read_files(a: &mut Analyzer<'_>, files: &[PathBuf], filter: Option<&str>) -> anyhow::Result<()> {
    // Files of which no frame could be decoded (link type).
    let mut undecodable = 0;
    for f in files {
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
            filter,
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
    Ok(())
}

/// `report --html`: the capture read as `read` reads it, written as one
/// HTML page.
fn report_html(
    files: &[PathBuf],
    html: &std::path::Path,
    show_secrets: bool,
    filter: Option<&str>,
    common: &Common,
) -> anyhow::Result<u8> {
    use sniffer::html::{ConnFindings, MAX_FINDINGS_PER_CONN, ReportPage};
    // Per connection, in order of first finding: its findings (bounded)
    // and how many more there were.
    let mut found: Vec<ConnFindings> = Vec::new();
    let mut index: std::collections::HashMap<ConnId, usize> = Default::default();
    let sink = Box::new(|c: ConnId, ts: f64, f: &Finding| {
        // Beyond what the page lists, connections are not kept at all.
        if found.len() > sniffer::html::MAX_CONNECTIONS && !index.contains_key(&c) {
            return;
        }
        let i = *index.entry(c).or_insert_with(|| {
            found.push((c, Vec::new(), 0));
            found.len() - 1
        });
        let entry = &mut found[i];
        // The traffic line always: the plot needs it.
        if entry.1.len() < MAX_FINDINGS_PER_CONN || matches!(f, Finding::TlsTraffic { .. }) {
            entry.1.push((ts, f.clone()));
        } else {
            entry.2 += 1;
        }
    });
    let (rows, totals) = {
        let mut a = with_keys(Analyzer::new(common.limits(), None, sink), common, false)?;
        read_files(&mut a, files, filter)?;
        a.finish();
        let mut rows = a.summaries.clone();
        rows.sort_by_key(|r| r.id);
        (rows, a.totals)
    };
    let page = sniffer::html::report(&ReportPage {
        source: files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        keylog: common.keylog.is_some(),
        rows: &rows,
        findings: &found,
        totals,
        show_secrets,
    });
    std::fs::write(html, page).with_context(|| format!("cannot write {}", html.display()))?;
    eprintln!(
        "sniffer: wrote {} ({} connection{})",
        html.display(),
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    Ok(0)
}

/// `live`: capture on `interface` until Ctrl-C, findings as they happen,
/// then the summary.
fn live(
    interface: &str,
    filter: Option<&str>,
    write: Option<PathBuf>,
    common: &Common,
) -> anyhow::Result<u8> {
    // The key log is checked before the capture starts.
    let mut a = with_keys(
        Analyzer::new(
            common.limits(),
            common.export.clone(),
            Box::new(print_finding(common.printer())),
        ),
        common,
        true,
    )?;
    let mut live = capture::open_live(interface, filter, write.as_deref())?;
    // On stderr, so it never mixes with JSON on stdout; scripts
    // wait for it before starting the traffic.
    eprintln!("sniffer: capturing on {interface}; Ctrl-C for the summary");
    let stop = stop_flag()?;
    live.run(&stop, |link, ts, data| {
        a.frame(link, ts, data);
        // Live: each event shows as it happens.
        flush_out();
    })?;
    // In the summary too (its totals line and JSON), so a saved report
    // says it is partial.
    a.stats.dropped = live.dropped();
    if a.stats.dropped > 0 {
        eprintln!(
            "sniffer: warning: the kernel dropped {} packets the sniffer did not read in time: some traffic was not seen",
            a.stats.dropped
        );
    }
    a.finish();
    print_summary(&a, common.json, common.wide);
    if let Some(w) = write {
        eprintln!("sniffer: capture saved to {}", w.display());
    }
    Ok(0)
}

/// `follow`: the reassembled bytes of connection `stream`, both directions,
/// as escaped text, a hex dump, raw bytes, or JSON lines.
fn follow(
    file: &std::path::Path,
    stream: ConnId,
    hex: bool,
    raw: bool,
    common: &Common,
) -> anyhow::Result<u8> {
    let mut last_dir: Option<(Dir, Layer)> = None;
    let mut seen = false;
    let json = common.json;
    let keylog = common.keylog.is_some();
    let tap = Box::new(
        |conn: ConnId, dir: Dir, layer: Layer, offset: u64, data: &[u8]| {
            if conn != stream {
                return;
            }
            seen = true;
            let name = match (dir, layer) {
                (Dir::ToServer, Layer::Wire) => "client -> server",
                (Dir::ToClient, Layer::Wire) => "server -> client",
                (Dir::ToServer, Layer::Decrypted) => "client -> server, DECRYPTED from TLS",
                (Dir::ToClient, Layer::Decrypted) => "server -> client, DECRYPTED from TLS",
            };
            let decrypted = layer == Layer::Decrypted;
            if json {
                let mut d = StreamData::new(conn, dir, offset, data);
                d.decrypted = decrypted;
                out(&jsonl::line(&d));
            } else if raw {
                // One byte stream, not two interleaved: with a key log, the
                // plaintext inside TLS only.
                if decrypted == keylog {
                    out_bytes(data);
                }
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
                    // `d>` and `d<`: bytes a key log opened (offsets in those).
                    let mark = match (dir, decrypted) {
                        (Dir::ToServer, false) => ">",
                        (Dir::ToClient, false) => "<",
                        (Dir::ToServer, true) => "d>",
                        (Dir::ToClient, true) => "d<",
                    };
                    out(&format!(
                        "{mark} {:08x}  {:<47}  {text}",
                        offset + (i * 16) as u64,
                        hexs.join(" ")
                    ));
                }
            } else {
                if last_dir != Some((dir, layer)) {
                    out(&format!("===== {name} (from byte {offset}) ====="));
                    last_dir = Some((dir, layer));
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
        },
    );
    {
        let mut a = with_keys(
            Analyzer::new(common.limits(), None, Box::new(|_, _, _| {})).with_tap(tap),
            common,
            false,
        )?;
        let report = capture::read_file(file, None, |l, ts, d| a.frame(l, ts, d), |_| {})?;
        if let Some(d) = report.damaged {
            eprintln!("sniffer: warning: {d}");
        }
        a.finish();
        if stream >= a.connections() {
            anyhow::bail!(
                "{} has {} connection{} (TCP and UDP), numbered 0 to {}: there is no stream {stream}",
                file.display(),
                a.connections(),
                if a.connections() == 1 { "" } else { "s" },
                a.connections().saturating_sub(1)
            );
        }
    }
    if !seen && !raw {
        eprintln!("sniffer: stream {stream} carried no data");
    }
    Ok(0)
}

/// `guard`: every reassembled byte of a capture (of `command`, run under
/// capture, or of `--pcap`) searched for the needles; exit 1 if any is found.
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
        let tap = Box::new(|c: ConnId, d: Dir, layer: Layer, off: u64, data: &[u8]| {
            guard.borrow_mut().feed(c, d, layer, off, data)
        });
        let sink = Box::new(|c: ConnId, _ts: f64, f: &Finding| match f {
            Finding::Connection { client, server, .. } => {
                endpoints.insert(c, format!("{client} -> {server}"));
            }
            Finding::UdpFlow { client, server } => {
                endpoints.insert(c, format!("UDP {client} -> {server}"));
            }
            _ => {}
        });
        let end = Box::new(|c: ConnId| guard.borrow_mut().forget(c));
        let mut a = with_keys(
            Analyzer::new(common.limits(), None, sink)
                .with_tap(tap)
                .with_end(end),
            common,
            pcap.is_none(),
        )?;
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
                let mut live = capture::open_live(interface, Some("tcp or udp"), write.as_deref())?;
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
                // A packet never seen could have carried a needle: a
                // verdict over part of the traffic is no verdict (exit 2).
                let dropped = live.dropped();
                if dropped > 0 {
                    anyhow::bail!(
                        "the kernel dropped {dropped} packets the sniffer did not read in time: the check cannot vouch for traffic it did not see (run it again on a less loaded machine)"
                    );
                }
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
            "no TCP connection or UDP datagram was captured on {interface}: nothing was checked (is the traffic on another interface?)"
        );
    }
    if g.hits.is_empty() {
        let verdict = NoLeak::new(connections, bytes);
        out(&if common.json {
            jsonl::line(&verdict)
        } else {
            verdict.to_string()
        });
        return Ok(0);
    }
    for h in &g.hits {
        // The needle is a secret: the report says which one, not what it is.
        let ends = endpoints.get(&h.conn).cloned().unwrap_or_default();
        let leak = Leak::new(h, &needles[h.needle], ends);
        out(&if common.json {
            jsonl::line(&leak)
        } else {
            leak.to_string()
        });
    }
    Ok(1)
}

/// The analyser, opening TLS with `--keylog` when given.
/// (`live`: the key log may not exist yet, its program is still to start).
fn with_keys<'a>(a: Analyzer<'a>, common: &Common, live: bool) -> anyhow::Result<Analyzer<'a>> {
    Ok(match common.keylog(live)? {
        Some(k) => a.with_keylog(k),
        None => a,
    })
}

/// Set by Ctrl-C or SIGTERM: the capture stops and the summary is printed.
fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("cannot handle signals")?;
    }
    Ok(stop)
}
