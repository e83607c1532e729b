//! The load generator behind `chat-plain bench` and `chat-tls bench`: N
//! clients sign in (or register), then exchange messages one to one in
//! pairs and in one shared room, while it measures delivered messages per
//! second, latency percentiles, connection setup rate and, given the
//! server's pid, its memory per idle connection. It speaks plain XMPP, so
//! it measures any server on loopback, a reference server included.
//!
//! Everything is bounded: the number of clients and messages, and a time
//! limit after which the run stops and reports what it saw.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use protocol::{Element, Jid, ns, outln};
use serde::Serialize;

use crate::client::{Client, ClientEvent, ConnectOptions, connect};
use crate::transport::ClientTransport;

/// Most clients one run opens (each is a connection and a few tasks).
pub const MAX_CLIENTS: usize = 20_000;

/// Flags of `bench`, the same in both twins.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:5222")]
    pub server: String,
    /// The server's XMPP domain.
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// Clients (an even number: they chat in pairs).
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// Messages sent in each phase (pairs, then room).
    #[arg(long, default_value_t = 20_000)]
    pub messages: u64,
    /// Create the accounts first (in-band registration).
    #[arg(long)]
    pub register: bool,
    /// Send at this many messages per second in total (0: as fast as the
    /// server takes them). Latency is meaningful at a fixed rate.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Skip the room phase.
    #[arg(long)]
    pub no_room: bool,
    /// Stop each phase after this many seconds, whatever is left.
    #[arg(long, default_value_t = 60)]
    pub time_limit: u64,
    /// The server's process id, to measure its memory per idle connection.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Idle connections to open for the memory measurement.
    #[arg(long, default_value_t = 0)]
    pub idle: usize,
    /// User names are PREFIX0, PREFIX1, ...
    #[arg(long, default_value = "bench")]
    pub prefix: String,
    /// Sign in without channel binding (to measure through a proxy that
    /// ends TLS, which channel binding would refuse).
    #[arg(long)]
    pub no_channel_binding: bool,
    /// Use stream management (XEP-0198: acks, and resumption if the
    /// server allows it), to measure what it costs.
    #[arg(long)]
    pub stream_management: bool,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Latencies in microseconds; percentiles by sorting (a run holds at most
/// a few million).
#[derive(Debug, Default)]
struct Histogram(Vec<u32>);

impl Histogram {
    fn percentile(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.sort_unstable();
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.0[i.min(self.0.len() - 1)]) / 1000.0
    }
}

/// One phase's result.
#[derive(Debug)]
struct Phase {
    name: &'static str,
    sent: u64,
    delivered: u64,
    seconds: f64,
    p50: f64,
    p95: f64,
    p99: f64,
}

/// How fast clients signed in.
#[derive(Debug, Clone, Copy, Serialize)]
struct Rate {
    /// Clients signed in.
    connections: usize,
    /// How long it took them all.
    seconds: f64,
    /// Sign-ins per second.
    per_sec: f64,
}

impl Rate {
    fn new(connections: usize, seconds: f64) -> Rate {
        Rate {
            connections,
            seconds,
            per_sec: connections as f64 / seconds,
        }
    }
}

/// One line of `bench --json`: the `type` field names the kind.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum Report<'a> {
    /// The first sign-in of every client.
    Setup(Rate),
    /// Signing in again (TLS: resumed sessions).
    SetupAgain(Rate),
    /// One phase of messages.
    Phase {
        phase: &'static str,
        sent: u64,
        delivered: u64,
        seconds: f64,
        messages_per_sec: f64,
        p50_ms: f64,
        p95_ms: f64,
        p99_ms: f64,
    },
    /// The headline figures: the first phase and both sign-in rates.
    Summary {
        server: &'a str,
        clients: usize,
        messages_per_sec: f64,
        p50_ms: f64,
        p95_ms: f64,
        p99_ms: f64,
        setup_per_sec: f64,
        setup_again_per_sec: f64,
        kib_per_idle_connection: Option<f64>,
    },
}

/// The server's resident memory in KiB, from /proc.
fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Raises the soft open-file limit to the hard one: each client is a
/// socket, and 10,000 idle connections need more than the usual 1,024.
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

async fn connect_all<T: ClientTransport>(
    transport: &Arc<T>,
    args: &BenchArgs,
    first: usize,
    count: usize,
    register: bool,
) -> anyhow::Result<(Vec<Client>, f64)> {
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    // A bounded number of handshakes at once, as a real class logging in.
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    for i in first..first + count {
        let jid = Jid::parse(&format!("{}{i}@{}", args.prefix, args.domain))
            .with_context(|| format!("bad --prefix or --domain for client {i}"))?;
        let opts = ConnectOptions {
            e2e: None,
            server: args.server.clone(),
            jid,
            password: format!("pw-{}{i}", args.prefix),
            register,
            force_plain: false,
            min_mechanism: crate::client::DEFAULT_MIN_MECHANISM,
            channel_binding: !args.no_channel_binding,
            files: Default::default(),
            // Every message must be counted, and a burst outruns a person's
            // event queue (4,096 events; dropped beyond, which ended phases
            // at their time limit with a rate of messages/60 s). Bench
            // bodies are short: this is tens of MB at most, still bounded.
            events: crate::client::EventLimits {
                count: 1 << 18,
                bytes: 64 << 20,
            },
            pad: 0,
            // Off unless asked: the benchmarks measure the chat itself, as
            // they did before stream management, and compare with a
            // Prosody without it.
            stream_management: args.stream_management,
        };
        let t = transport.clone();
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            connect(t.as_ref(), &opts).await
        }));
    }
    let mut clients = Vec::with_capacity(count);
    for t in tasks {
        clients.push(t.await.context("a client task failed")??);
    }
    Ok((clients, t0.elapsed().as_secs_f64()))
}

/// Receives until `expected` messages arrived or the time is up; records
/// each one's latency from the send time in its body.
fn receiver(
    mut c: Client,
    start: Instant,
    delivered: Arc<AtomicU64>,
    expected: u64,
    deadline: Instant,
) -> tokio::task::JoinHandle<(Client, Vec<u32>)> {
    tokio::spawn(async move {
        let mut lat = Vec::new();
        let mut got = 0u64;
        while got < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(Some(ev)) = tokio::time::timeout(left, c.next_event()).await else {
                break;
            };
            let body = match ev {
                ClientEvent::Message { body, .. } => body,
                ClientEvent::RoomMessage {
                    body,
                    delayed: None,
                    ..
                } => body,
                ClientEvent::EventsDropped { count } => {
                    // Never silently: a figure built on lost events is wrong.
                    eprintln!(
                        "bench: warning: {count} events dropped because the load generator fell behind; this phase's figures undercount"
                    );
                    continue;
                }
                _ => continue,
            };
            if let Some(sent) = body
                .strip_prefix("t=")
                .and_then(|b| b.split(' ').next())
                .and_then(|n| n.parse::<u64>().ok())
            {
                let now = start.elapsed().as_micros() as u64;
                lat.push(now.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
                got += 1;
                delivered.fetch_add(1, Ordering::Relaxed);
            }
        }
        (c, lat)
    })
}

/// A chat or groupchat stanza carrying its send time.
fn stanza(to: &Jid, kind: &str, start: Instant, n: u64) -> Element {
    Element::new("message", ns::CLIENT)
        .attr("to", to.to_string())
        .attr("type", kind)
        .text_child(
            "body",
            ns::CLIENT,
            format!(
                "t={} message {n} of the load generator",
                start.elapsed().as_micros()
            ),
        )
}

async fn run_phase(
    name: &'static str,
    clients: Vec<Client>,
    args: &BenchArgs,
    room: Option<Jid>,
) -> anyhow::Result<(Phase, Vec<Client>)> {
    let n = clients.len();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.time_limit.max(1));
    let delivered = Arc::new(AtomicU64::new(0));
    let senders: Vec<usize> = match &room {
        Some(_) => (0..n).collect(),
        None => (0..n).step_by(2).collect(),
    };
    let per_sender = args.messages / senders.len().max(1) as u64;
    let total_sent = per_sender * senders.len() as u64;
    // Who receives how many: in pairs the partner gets one per message;
    // in the room every occupant gets every message (its own echo too).
    let expected = |i: usize| -> u64 {
        match &room {
            Some(_) => total_sent,
            None if i % 2 == 1 => per_sender,
            None => 0,
        }
    };
    let targets: Vec<Jid> = clients.iter().map(|c| c.jid().clone()).collect();
    let sends: Vec<(usize, crate::client::RawSender)> = senders
        .iter()
        .map(|&i| (i, clients[i].raw_sender()))
        .collect();
    let mut receivers = Vec::new();
    for (i, c) in clients.into_iter().enumerate() {
        receivers.push(receiver(c, start, delivered.clone(), expected(i), deadline));
    }
    let interval =
        (args.rate > 0).then(|| Duration::from_secs_f64(senders.len() as f64 / args.rate as f64));
    let mut send_tasks = Vec::new();
    for (i, tx) in sends {
        let to = match &room {
            Some(r) => r.clone(),
            None => targets[i + 1].clone(),
        };
        let kind = if room.is_some() { "groupchat" } else { "chat" };
        send_tasks.push(tokio::spawn(async move {
            let mut tick = interval.map(tokio::time::interval);
            for k in 0..per_sender {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                } else if k % 64 == 0 {
                    // Let the receivers run: a sender that never yields
                    // measures the queue, not the server.
                    tokio::task::yield_now().await;
                }
                if Instant::now() > deadline
                    || tx
                        .send_xml(stanza(&to, kind, start, k).to_xml())
                        .await
                        .is_err()
                {
                    break;
                }
            }
        }));
    }
    for t in send_tasks {
        let _ = t.await;
    }
    let mut all = Histogram::default();
    let mut back = Vec::with_capacity(n);
    for r in receivers {
        let (c, lat) = r.await.context("a receiver failed")?;
        all.0.extend(lat);
        back.push(c);
    }
    let seconds = start.elapsed().as_secs_f64();
    let phase = Phase {
        name,
        sent: total_sent,
        delivered: delivered.load(Ordering::Relaxed),
        seconds,
        p50: all.percentile(0.50),
        p95: all.percentile(0.95),
        p99: all.percentile(0.99),
    };
    Ok((phase, back))
}

/// Runs the benchmark over `transport`; returns the exit code.
pub async fn run<T: ClientTransport>(
    name: &str,
    args: &BenchArgs,
    transport: T,
) -> anyhow::Result<u8> {
    let n = args.clients.clamp(2, MAX_CLIENTS) & !1;
    raise_nofile();
    let transport = Arc::new(transport);
    let mut args = args.clone();
    args.clients = n;
    // 1. Sign in (or register), measuring the setup rate.
    let (clients, setup) = connect_all(&transport, &args, 0, n, args.register).await?;
    let first = Rate::new(n, setup);
    // Reconnecting reuses TLS sessions (resumption): the second rate.
    for c in &clients {
        c.start_close();
    }
    drop(clients);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (clients, again) = connect_all(&transport, &args, 0, n, false).await?;
    let second = Rate::new(n, again);
    for c in &clients {
        c.set_presence(None, None)?;
    }
    // 2. One to one, in pairs.
    let (pairs, clients) = run_phase("pairs", clients, &args, None).await?;
    let mut phases = vec![pairs];
    // 3. One shared room.
    let clients = if args.no_room {
        clients
    } else {
        let room = Jid::parse(&format!("{}-room@conference.{}", args.prefix, args.domain))?;
        for (i, c) in clients.iter().enumerate() {
            c.join_room(&room, &format!("u{i}")).await?;
        }
        let mut room_args = args.clone();
        // Each room message is delivered to everyone: keep the deliveries
        // comparable with the pairs phase.
        room_args.messages = (args.messages / n as u64).max(n as u64);
        let (p, clients) = run_phase("room", clients, &room_args, Some(room)).await?;
        phases.push(p);
        clients
    };
    // 4. Memory per idle connection, when the server's pid is known.
    let mut memory = None;
    if let (Some(pid), true) = (args.server_pid, args.idle > 0) {
        let before = rss_kib(pid);
        let (idle, _) = connect_all(
            &transport,
            &args,
            n,
            args.idle.min(MAX_CLIENTS),
            args.register,
        )
        .await?;
        // Idle means quiet: a server may keep a connection's buffers while
        // it is busy (ours gives them back after a second of silence,
        // `xmpp_io::QUIET_AFTER`), so the measure waits past that.
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let after = rss_kib(pid);
        if let (Some(b), Some(a)) = (before, after) {
            memory = Some((a.saturating_sub(b) as f64 / idle.len() as f64, idle.len()));
        }
        for c in &idle {
            c.start_close();
        }
    }
    for c in &clients {
        c.start_close();
    }
    print_report(name, &args, n, &phases, (first, second), memory)?;
    Ok(0)
}

/// Prints the results: a table, or with `--json` one JSON line per rate and
/// phase and a summary.
fn print_report(
    name: &str,
    args: &BenchArgs,
    n: usize,
    phases: &[Phase],
    (first, second): (Rate, Rate),
    memory: Option<(f64, usize)>,
) -> anyhow::Result<()> {
    let main = &phases[0];
    let mps = main.delivered as f64 / main.seconds;
    if args.json {
        let mut lines = vec![Report::Setup(first), Report::SetupAgain(second)];
        lines.extend(phases.iter().map(|p| Report::Phase {
            phase: p.name,
            sent: p.sent,
            delivered: p.delivered,
            seconds: p.seconds,
            messages_per_sec: p.delivered as f64 / p.seconds,
            p50_ms: p.p50,
            p95_ms: p.p95,
            p99_ms: p.p99,
        }));
        lines.push(Report::Summary {
            server: &args.server,
            clients: n,
            messages_per_sec: mps,
            p50_ms: main.p50,
            p95_ms: main.p95,
            p99_ms: main.p99,
            setup_per_sec: first.per_sec,
            setup_again_per_sec: second.per_sec,
            kib_per_idle_connection: memory.map(|m| m.0),
        });
        for line in &lines {
            // Through a `Value`, whose keys are sorted, as every JSON line
            // of the toolkit's client is.
            match serde_json::to_value(line) {
                Ok(v) => outln!("{v}"),
                Err(e) => anyhow::bail!("cannot write the report as JSON: {e}"),
            }
        }
    } else {
        let mut t = comfy_table::Table::new();
        t.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
        t.set_header(vec![
            "phase",
            "sent",
            "delivered",
            "seconds",
            "messages/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
        ]);
        for p in phases {
            t.add_row(vec![
                p.name.to_string(),
                p.sent.to_string(),
                p.delivered.to_string(),
                format!("{:.2}", p.seconds),
                format!("{:.0}", p.delivered as f64 / p.seconds),
                format!("{:.2}", p.p50),
                format!("{:.2}", p.p95),
                format!("{:.2}", p.p99),
            ]);
        }
        outln!("{name} bench against {} with {n} clients", args.server);
        outln!("{t}");
        outln!(
            "sign-in: {:.0}/s; again (TLS: resumed): {:.0}/s",
            first.per_sec,
            second.per_sec
        );
        if let Some((kib, k)) = memory {
            outln!("server memory: {kib:.1} KiB per idle connection ({k} connections)");
        }
    }
    Ok(())
}
