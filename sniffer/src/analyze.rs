//! The pipeline from frames to findings: decode, reassemble, then read
//! each connection (see [`crate::dissect`]) on this thread or, for a big
//! capture, on several (see [`crate::pool`]). UDP datagrams are counted
//! per address pair and searched like streams.

use rustc_hash::FxHashMap as HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::decode::{self, Datagram, DecodeError, LinkType, Packet};
pub use crate::dissect::{ConnSummary, Layer, Tap};
use crate::dissect::{Dissector, Hooks, Out};
use crate::findings::Finding;
use crate::keylog::KeyLog;
use crate::pool::{Merged, Pool};
pub use crate::pool::{Render, Write};
use crate::reassembly::{ConnId, Dir, Event, Limits, Reassembler};

/// Summary rows kept; beyond this, connections are still analysed and
/// counted in the totals but get no row of their own.
pub const MAX_SUMMARY_ROWS: usize = 100_000;

/// Datagrams between two addresses, both ways: UDP has no connection, so
/// the address pair is the flow (as Wireshark's UDP conversations).
#[derive(Debug)]
struct UdpFlow {
    id: ConnId,
    /// The first sender.
    client: SocketAddr,
    server: SocketAddr,
    /// Payload bytes, to the server and back (the tap's offsets).
    bytes: [u64; 2],
}

/// Counters of the whole capture.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Frames read.
    pub frames: u64,
    /// Frames that were TCP.
    pub tcp: u64,
    /// Frames that were UDP.
    pub udp: u64,
    /// Frames that were neither (ARP, ICMP...).
    pub other: u64,
    /// Frames too damaged to decode.
    pub malformed: u64,
    /// Frame bytes read.
    pub frame_bytes: u64,
    /// Live capture: packets the kernel dropped because they were not read
    /// in time (libpcap's own count). Any is traffic never seen.
    pub dropped: u64,
}

/// Called with each finding: connection, capture time, finding.
pub type Sink<'a> = Box<dyn FnMut(ConnId, f64, &Finding) + 'a>;

/// Where connections are read.
enum Back<'a> {
    /// Here, each finding to the sink as it is made.
    Here(Dissector, Sink<'a>),
    /// On worker threads, findings rendered there and written here.
    Pool(Box<Pool<'a>>),
}

/// The caller's sink as a [`Out`]: the analyser's tallies kept on the way.
struct Here<'x, 'a> {
    sink: &'x mut Sink<'a>,
    summaries: &'x mut Vec<ConnSummary>,
    totals: &'x mut [u64; crate::findings::CATEGORIES],
}

impl Out for Here<'_, '_> {
    fn finding(&mut self, conn: ConnId, ts: f64, f: &Finding) {
        if let Some(cat) = f.category() {
            self.totals[cat.index()] += 1;
        }
        (self.sink)(conn, ts, f);
    }

    fn summary(&mut self, s: ConnSummary) {
        if self.summaries.len() < MAX_SUMMARY_ROWS {
            self.summaries.push(s);
        }
    }
}

/// The analyser.
pub struct Analyzer<'a> {
    reasm: Reassembler,
    back: Back<'a>,
    hooks: Hooks<'a>,
    udp: HashMap<(SocketAddr, SocketAddr), UdpFlow>,
    /// UDP flows seen, and how many may be followed at once.
    udp_flows: u64,
    max_udp: usize,
    udp_bytes: u64,
    /// Finished connections, in order of their end.
    pub summaries: Vec<ConnSummary>,
    /// Findings per category, every connection.
    pub totals: [u64; crate::findings::CATEGORIES],
    /// Frame counters.
    pub stats: Stats,
    last_ts: f64,
}

impl<'a> Analyzer<'a> {
    /// An analyser sending findings to `sink`; in-band files are written
    /// to `export` when given.
    pub fn new(limits: Limits, export: Option<PathBuf>, sink: Sink<'a>) -> Self {
        let d = Dissector::new(export, None);
        Self::with_back(limits, Back::Here(d, sink))
    }

    /// An analyser that reads connections on `threads` worker threads
    /// (at least 2): each finding is made into bytes by `render` there,
    /// and those bytes given to `write` here, in the order [`Analyzer::new`]
    /// would have made them, so the output is the same, byte for byte.
    /// It takes the key log now (each worker has a copy), and no tap.
    /// An error when the threads cannot be started.
    pub fn parallel(
        limits: Limits,
        export: Option<PathBuf>,
        keylog: Option<KeyLog>,
        threads: usize,
        render: Render,
        write: Write<'a>,
    ) -> std::io::Result<Self> {
        let pool = Pool::new(threads, render, write, export, keylog)?;
        Ok(Self::with_back(limits, Back::Pool(Box::new(pool))))
    }

    fn with_back(limits: Limits, back: Back<'a>) -> Self {
        Analyzer {
            reasm: Reassembler::new(limits),
            back,
            hooks: Hooks::default(),
            udp: HashMap::default(),
            udp_flows: 0,
            max_udp: limits.max_flows.max(1),
            udp_bytes: 0,
            summaries: Vec::new(),
            totals: [0; crate::findings::CATEGORIES],
            stats: Stats::default(),
            last_ts: 0.0,
        }
    }

    /// Also sends every reassembled byte to `tap` (follow, guard). Only
    /// an analyser made by [`Analyzer::new`] has a tap: a parallel one
    /// reads inside TLS on other threads.
    pub fn with_tap(mut self, tap: Tap<'a>) -> Self {
        debug_assert!(
            matches!(self.back, Back::Here(..)),
            "a tap needs Analyzer::new"
        );
        self.hooks.tap = Some(tap);
        self
    }

    /// Also tells `ended` when a connection or UDP flow is over (the tap's
    /// user can forget what it kept for it). As for the tap, only an
    /// analyser made by [`Analyzer::new`].
    pub fn with_end(mut self, ended: Box<dyn FnMut(ConnId) + 'a>) -> Self {
        debug_assert!(
            matches!(self.back, Back::Here(..)),
            "ended needs Analyzer::new"
        );
        self.hooks.ended = Some(ended);
        self
    }

    /// Opens TLS with the secrets in `keylog`: what is inside is read
    /// like plaintext (and given to the tap as [`Layer::Decrypted`]). A
    /// parallel analyser takes its key log when it is made.
    pub fn with_keylog(mut self, keylog: KeyLog) -> Self {
        debug_assert!(
            matches!(self.back, Back::Here(..)),
            "use Analyzer::parallel's key log"
        );
        if let Back::Here(d, _) = &mut self.back {
            d.keylog = Some(keylog);
        }
        self
    }

    /// Connections seen: TCP connections and UDP flows (numbered together).
    pub fn connections(&self) -> u64 {
        self.reasm.connections + self.udp_flows
    }

    /// Reassembled bytes, both directions, and UDP payload bytes.
    pub fn bytes(&self) -> u64 {
        self.reasm.bytes + self.udp_bytes
    }

    /// Feeds one captured frame.
    pub fn frame(&mut self, link: LinkType, ts: f64, frame: &[u8]) {
        self.stats.frames += 1;
        self.stats.frame_bytes += frame.len() as u64;
        self.last_ts = ts;
        let seg = match decode::decode(link, frame) {
            Ok(Packet::Tcp(s)) => s,
            Ok(Packet::Udp(d)) => {
                self.stats.udp += 1;
                self.datagram(&d, ts);
                self.send_if_full();
                return;
            }
            Err(DecodeError::NotTcpOrUdp | DecodeError::Fragment) => {
                self.stats.other += 1;
                return;
            }
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        self.stats.tcp += 1;
        let mut events = Vec::new();
        self.reasm.push(&seg, ts, &mut |e| events.push(e));
        for e in events {
            self.event(e);
        }
        self.send_if_full();
    }

    fn event(&mut self, e: Event<'_>) {
        let ts = self.last_ts;
        match &mut self.back {
            Back::Here(d, sink) => {
                let mut out = Here {
                    sink,
                    summaries: &mut self.summaries,
                    totals: &mut self.totals,
                };
                d.event(e, ts, &mut self.hooks, &mut out);
            }
            Back::Pool(p) => p.push(e, ts),
        }
    }

    fn send_if_full(&mut self) {
        if let Back::Pool(p) = &mut self.back
            && let Some(m) = p.send_if_full()
        {
            self.keep(m);
        }
    }

    /// What the workers found, once written.
    fn keep(&mut self, m: Merged) {
        for (t, n) in self.totals.iter_mut().zip(m.totals) {
            *t += n;
        }
        let room = MAX_SUMMARY_ROWS.saturating_sub(self.summaries.len());
        self.summaries.extend(m.summaries.into_iter().take(room));
    }

    /// This thread's own finding (UDP), or summary, sent where the
    /// connections' go.
    fn here(&mut self, f: impl FnOnce(&mut dyn Out)) {
        match &mut self.back {
            Back::Here(_, sink) => f(&mut Here {
                sink,
                summaries: &mut self.summaries,
                totals: &mut self.totals,
            }),
            Back::Pool(p) => {
                p.main_seq();
                f(&mut p.main);
            }
        }
    }

    /// One UDP datagram: counted in its flow, and its payload given to the
    /// tap like a stream's bytes (the leak check searches it: a chat over
    /// UDP leaks as readily as one over TCP).
    fn datagram(&mut self, d: &Datagram<'_>, ts: f64) {
        let k = if d.src <= d.dst {
            (d.src, d.dst)
        } else {
            (d.dst, d.src)
        };
        if !self.udp.contains_key(&k) {
            if self.udp.len() >= self.max_udp {
                // Bounded like TCP: the flows so far get their rows.
                self.finish_udp();
            }
            let id = self.reasm.take_id();
            self.udp_flows += 1;
            self.udp.insert(
                k,
                UdpFlow {
                    id,
                    client: d.src,
                    server: d.dst,
                    bytes: [0; 2],
                },
            );
            let f = Finding::UdpFlow {
                client: d.src.to_string(),
                server: d.dst.to_string(),
            };
            self.here(|out| out.finding(id, ts, &f));
        }
        let Some(f) = self.udp.get_mut(&k) else {
            return;
        };
        let dir = if d.src == f.client {
            Dir::ToServer
        } else {
            Dir::ToClient
        };
        let at = &mut f.bytes[dir.pick(0, 1)];
        let offset = *at;
        *at += d.payload.len() as u64;
        self.udp_bytes += d.payload.len() as u64;
        if let Some(tap) = self.hooks.tap.as_mut() {
            tap(f.id, dir, Layer::Wire, offset, d.payload);
        }
    }

    /// Every UDP flow so far gets its summary row.
    fn finish_udp(&mut self) {
        let mut flows: Vec<UdpFlow> = self.udp.drain().map(|(_, f)| f).collect();
        flows.sort_by_key(|f| f.id);
        // The one finding of a flow: that it happened (metadata).
        let mut counts = [0; crate::findings::CATEGORIES];
        counts[crate::findings::Category::Metadata.index()] = 1;
        for f in flows {
            if let Some(end) = self.hooks.ended.as_mut() {
                end(f.id);
            }
            let s = ConnSummary {
                id: f.id,
                client: f.client,
                server: f.server,
                protocol: "UDP".into(),
                tls: false,
                decrypted: false,
                counts,
                bytes: f.bytes[0] + f.bytes[1],
            };
            self.here(|out| out.summary(s));
        }
    }

    /// Writes what the worker threads found so far (nothing to do on one
    /// thread, which writes as it goes): reading stopped with an error,
    /// and what was found before it must not be lost.
    pub fn flush(&mut self) {
        if let Back::Pool(p) = &mut self.back {
            let m = p.finish();
            self.keep(m);
        }
    }

    /// The capture is over: every open connection is finished (and, on
    /// several threads, everything found is written).
    pub fn finish(&mut self) {
        self.finish_udp();
        let mut events = Vec::new();
        let ts = self.last_ts;
        self.reasm
            .finish_all(ts, &mut |e| events.push(e.into_owned()));
        for e in events {
            self.event(e);
        }
        if let Back::Pool(p) = &mut self.back {
            let m = p.finish();
            self.keep(m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::build::{Flags, ethernet_tcp};

    fn run(frames: &[Vec<u8>]) -> (Vec<(ConnId, Finding)>, Vec<ConnSummary>) {
        let mut found = Vec::new();
        let summaries = {
            let mut a = Analyzer::new(
                Limits::default(),
                None,
                Box::new(|c, _, f: &Finding| found.push((c, f.clone()))),
            );
            for (i, f) in frames.iter().enumerate() {
                a.frame(LinkType::Ethernet, i as f64, f);
            }
            a.finish();
            a.summaries.clone()
        };
        (found, summaries)
    }

    /// A client/server exchange as frames on any ports.
    fn exchange(cport: u16, sport: u16, to_server: &[&[u8]], to_client: &[&[u8]]) -> Vec<Vec<u8>> {
        let c: SocketAddr = format!("127.0.0.1:{cport}").parse().unwrap();
        let s: SocketAddr = format!("127.0.0.1:{sport}").parse().unwrap();
        let syn = Flags {
            syn: true,
            ..Default::default()
        };
        let mut frames = vec![ethernet_tcp(c, s, 99, syn, b"")];
        let (mut cs, mut ss) = (100u32, 500u32);
        for i in 0..to_server.len().max(to_client.len()) {
            if let Some(p) = to_server.get(i) {
                frames.push(ethernet_tcp(c, s, cs, Flags::default(), p));
                cs += p.len() as u32;
            }
            if let Some(p) = to_client.get(i) {
                frames.push(ethernet_tcp(s, c, ss, Flags::default(), p));
                ss += p.len() as u32;
            }
        }
        frames
    }

    /// Frames of several connections and UDP flows, interleaved, with
    /// connections dropped for room: the same findings, in the same order,
    /// and the same summary, on one thread and on several (the unit tests
    /// send batches of three events, so many are in flight at once).
    #[test]
    fn several_threads_print_what_one_prints() {
        use crate::decode::build::ethernet_udp;
        let hdr: &[u8] = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
        let mut streams: Vec<std::collections::VecDeque<Vec<u8>>> = (0..7u16)
            .map(|i| {
                let body = format!("<message to='b@x'><body>hello {i}</body></message>");
                let auth = format!(
                    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
                    base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        format!("\0u{i}\0pw{i}")
                    )
                );
                exchange(
                    51000 + i,
                    5222,
                    &[hdr, auth.as_bytes(), body.as_bytes(), body.as_bytes()],
                    &[hdr, b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"],
                )
                .into()
            })
            .collect();
        let mut frames = Vec::new();
        let mut n = 0u16;
        while streams.iter().any(|s| !s.is_empty()) {
            for s in &mut streams {
                if let Some(f) = s.pop_front() {
                    frames.push(f);
                }
            }
            n += 1;
            let a: SocketAddr = format!("127.0.0.1:{}", 40000 + n % 5).parse().unwrap();
            let b: SocketAddr = "127.0.0.1:9999".parse().unwrap();
            frames.push(ethernet_udp(a, b, b"canary"));
        }
        let limits = Limits {
            max_flows: 4,
            ..Limits::default()
        };
        let line = |c: ConnId, ts: f64, f: &Finding| format!("{c} {ts} {f:?}\n");
        let mut one = String::new();
        let (sums, totals) = {
            let mut a = Analyzer::new(
                limits,
                None,
                Box::new(|c, ts, f: &Finding| one.push_str(&line(c, ts, f))),
            );
            for (i, f) in frames.iter().enumerate() {
                a.frame(LinkType::Ethernet, i as f64, f);
            }
            a.finish();
            (a.summaries.clone(), a.totals)
        };
        assert!(
            one.contains("pw6") && one.contains("UdpFlow") && one.contains("hello 3"),
            "{one}"
        );
        for threads in [2, 3] {
            let mut many = Vec::new();
            let render: Render = std::sync::Arc::new(move |c, ts, f, buf| {
                buf.extend_from_slice(line(c, ts, f).as_bytes())
            });
            let (s, t) = {
                let mut a = Analyzer::parallel(
                    limits,
                    None,
                    None,
                    threads,
                    render,
                    Box::new(|b: &[u8]| many.extend_from_slice(b)),
                )
                .unwrap();
                for (i, f) in frames.iter().enumerate() {
                    a.frame(LinkType::Ethernet, i as f64, f);
                }
                a.finish();
                (a.summaries.clone(), a.totals)
            };
            assert_eq!(String::from_utf8(many).unwrap(), one, "{threads} threads");
            assert_eq!(s, sums);
            assert_eq!(t, totals);
        }
    }

    #[test]
    fn xmpp_is_recognised_on_any_port_and_starttls_switches() {
        let hdr: &[u8] = b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
        let shdr: &[u8] = b"<stream:stream from='localhost' id='1' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>";
        let proceed: &[u8] = b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
        let frames = exchange(
            50000,
            8080, // not an XMPP port: recognised by content
            &[
                hdr,
                b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
                &[23, 3, 3, 0, 4, 9, 9, 9, 9],
            ],
            &[shdr, proceed, &[23, 3, 3, 0, 2, 1, 1]],
        );
        let (found, sums) = run(&frames);
        assert!(found.iter().any(|(_, f)| matches!(
            f,
            Finding::Features {
                starttls: true,
                starttls_required: true,
                ..
            }
        )));
        assert!(
            found
                .iter()
                .any(|(_, f)| matches!(f, Finding::TlsSwitch { .. }))
        );
        assert!(found.iter().any(|(_, f)| matches!(
            f,
            Finding::TlsTraffic {
                records_to_server: 1,
                records_to_client: 1,
                ..
            }
        )));
        assert_eq!(sums.len(), 1);
        assert_eq!(sums[0].protocol, "XMPP+STARTTLS");
        assert!(sums[0].tls);
    }

    #[test]
    fn http_files_others_and_summaries_count_categories() {
        // HTTP on any port, its first segment cut short ("GE"): the
        // answer's body is a file (an upload fetched).
        let frames = exchange(
            50001,
            8081,
            &[b"GE", b"T /upload/T/a.txt HTTP/1.1\r\n\r\n"],
            &[b"", b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"],
        );
        let (found, sums) = run(&frames);
        assert_eq!(sums[0].protocol, "HTTP");
        assert!(
            found.iter().any(|(_, f)| matches!(f, Finding::File { name, size: 5, complete: true, .. } if name == "a.txt")),
            "{found:?}"
        );
        let (_, sums) = run(&exchange(50003, 22, &[b"SSH-2.0-OpenSSH_9.2\r\n"], &[]));
        assert_eq!(sums[0].protocol, "other");
        let hdr: &[u8] = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
        let msg: &[u8] = b"<message to='b@x'><body>hi</body></message><message to='b@x'><body>again</body></message>";
        let (_, sums) = run(&exchange(50002, 5222, &[hdr, msg], &[]));
        assert_eq!(sums[0].counts[1], 2, "two messages: {:?}", sums[0]);
        assert!(!sums[0].tls);
    }
}
