//! The pipeline from frames to findings: decode, reassemble, recognise each
//! direction by its content (XMPP, TLS, or neither; never by port), hand the
//! bytes to the right dissector, follow the switch to TLS after
//! `<proceed/>`, and keep a per-connection tally for the summary.

use rustc_hash::FxHashMap as HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::decode::{self, Datagram, DecodeError, LinkType, Packet};
use crate::findings::Finding;
use crate::keylog::KeyLog;
use crate::reassembly::{ConnId, Dir, Event, Limits, Reassembler};
use crate::tls::TlsConn;
use crate::xmpp::{CarriedFile, XmppConn, hex};

/// Bytes looked at before a direction that is neither XMPP nor TLS is
/// given up on.
const SNIFF_BYTES: usize = 16;

/// Summary rows kept; beyond this, connections are still analysed and
/// counted in the totals but get no row of their own.
pub const MAX_SUMMARY_ROWS: usize = 100_000;

/// What a direction carries.
#[derive(Debug)]
enum Side {
    /// Not known yet: the first bytes.
    Sniffing(Vec<u8>),
    Xmpp,
    Tls,
    Other,
}

/// How a connection turned out. As JSON, one `summary` object: `conn`
/// (the number), the addresses as `IP:PORT`, and one key per [`Category`](crate::findings::Category).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename = "summary")]
pub struct ConnSummary {
    /// Its number.
    #[serde(rename = "conn")]
    pub id: ConnId,
    /// Client address.
    pub client: SocketAddr,
    /// Server address.
    pub server: SocketAddr,
    /// `XMPP`, `XMPP+STARTTLS`, `TLS`, `other`.
    pub protocol: String,
    /// Whether the content was protected by TLS (all of it after a switch).
    pub tls: bool,
    /// Whether a key log opened that TLS: what was found inside it counts
    /// like plaintext.
    pub decrypted: bool,
    /// Findings per [`Category`](crate::findings::Category), in [`Category::ALL`](crate::findings::Category::ALL) order.
    #[serde(flatten, serialize_with = "crate::findings::by_category")]
    pub counts: [u64; 6],
    /// Bytes reassembled, both directions.
    pub bytes: u64,
}

#[derive(Debug)]
struct Conn {
    client: SocketAddr,
    server: SocketAddr,
    to_server: Side,
    to_client: Side,
    xmpp: Option<XmppConn>,
    tls: Option<TlsConn>,
    /// The XMPP read inside TLS, from records a key log opened.
    inner: Option<XmppConn>,
    /// Decrypted bytes so far, per direction (the tap's offsets).
    inner_bytes: [u64; 2],
    switched: bool,
    counts: [u64; 6],
    bytes: u64,
}

impl Conn {
    fn side(&mut self, dir: Dir) -> &mut Side {
        dir.pick(&mut self.to_server, &mut self.to_client)
    }

    fn protocol(&self) -> String {
        let any = |f: fn(&Side) -> bool| f(&self.to_server) || f(&self.to_client);
        if self.switched {
            "XMPP+STARTTLS".into()
        } else if any(|s| matches!(s, Side::Xmpp)) {
            "XMPP".into()
        } else if any(|s| matches!(s, Side::Tls)) {
            "TLS".into()
        } else {
            "other".into()
        }
    }
}

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

/// Which bytes a [`Tap`] is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// What crossed the wire (TLS records as ciphertext).
    Wire,
    /// What a key log opened inside TLS, offsets counted in the plaintext.
    Decrypted,
}

/// Called with each run of reassembled bytes: connection, direction,
/// layer, stream offset (within that layer), bytes.
pub type Tap<'a> = Box<dyn FnMut(ConnId, Dir, Layer, u64, &[u8]) + 'a>;

/// The analyser.
pub struct Analyzer<'a> {
    reasm: Reassembler,
    conns: HashMap<ConnId, Conn>,
    export: Option<PathBuf>,
    sink: Sink<'a>,
    tap: Option<Tap<'a>>,
    ended: Option<Box<dyn FnMut(ConnId) + 'a>>,
    keylog: Option<KeyLog>,
    udp: HashMap<(SocketAddr, SocketAddr), UdpFlow>,
    /// UDP flows seen, and how many may be followed at once.
    udp_flows: u64,
    max_udp: usize,
    udp_bytes: u64,
    /// Finished connections, in order of their end.
    pub summaries: Vec<ConnSummary>,
    /// Findings per category, every connection.
    pub totals: [u64; 6],
    /// Frame counters.
    pub stats: Stats,
    last_ts: f64,
}

/// Keeps only characters that are safe in a file name.
fn safe_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let s: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let s = s.trim_start_matches('.').to_string();
    if s.is_empty() { "file".into() } else { s }
}

impl<'a> Analyzer<'a> {
    /// An analyser sending findings to `sink`; in-band files are written
    /// to `export` when given.
    pub fn new(limits: Limits, export: Option<PathBuf>, sink: Sink<'a>) -> Self {
        Analyzer {
            reasm: Reassembler::new(limits),
            conns: HashMap::default(),
            export,
            sink,
            tap: None,
            ended: None,
            keylog: None,
            udp: HashMap::default(),
            udp_flows: 0,
            max_udp: limits.max_flows.max(1),
            udp_bytes: 0,
            summaries: Vec::new(),
            totals: [0; 6],
            stats: Stats::default(),
            last_ts: 0.0,
        }
    }

    /// Also sends every reassembled byte to `tap` (follow, guard).
    pub fn with_tap(mut self, tap: Tap<'a>) -> Self {
        self.tap = Some(tap);
        self
    }

    /// Also tells `ended` when a connection or UDP flow is over (the tap's
    /// user can forget what it kept for it).
    pub fn with_end(mut self, ended: Box<dyn FnMut(ConnId) + 'a>) -> Self {
        self.ended = Some(ended);
        self
    }

    /// Opens TLS with the secrets in `keylog`: what is inside is read
    /// like plaintext (and given to the tap as [`Layer::Decrypted`]).
    pub fn with_keylog(mut self, keylog: KeyLog) -> Self {
        self.keylog = Some(keylog);
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
            self.emit(
                id,
                ts,
                Finding::UdpFlow {
                    client: d.src.to_string(),
                    server: d.dst.to_string(),
                },
            );
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
        if let Some(tap) = self.tap.as_mut() {
            tap(f.id, dir, Layer::Wire, offset, d.payload);
        }
    }

    /// Every UDP flow so far gets its summary row.
    fn finish_udp(&mut self) {
        let mut flows: Vec<UdpFlow> = self.udp.drain().map(|(_, f)| f).collect();
        flows.sort_by_key(|f| f.id);
        // The one finding of a flow: that it happened (metadata).
        let mut counts = [0; 6];
        counts[crate::findings::Category::Metadata.index()] = 1;
        for f in flows {
            if let Some(end) = self.ended.as_mut() {
                end(f.id);
            }
            if self.summaries.len() < MAX_SUMMARY_ROWS {
                self.summaries.push(ConnSummary {
                    id: f.id,
                    client: f.client,
                    server: f.server,
                    protocol: "UDP".into(),
                    tls: false,
                    decrypted: false,
                    counts,
                    bytes: f.bytes[0] + f.bytes[1],
                });
            }
        }
    }

    /// The capture is over: every open connection is finished.
    pub fn finish(&mut self) {
        self.finish_udp();
        let mut events = Vec::new();
        let ts = self.last_ts;
        self.reasm
            .finish_all(ts, &mut |e| events.push(e.into_owned()));
        for e in events {
            self.event(e);
        }
    }

    fn emit(&mut self, conn: ConnId, ts: f64, f: Finding) {
        if let Some(cat) = f.category() {
            let i = cat.index();
            self.totals[i] += 1;
            if let Some(c) = self.conns.get_mut(&conn) {
                c.counts[i] += 1;
            }
        }
        (self.sink)(conn, ts, &f);
    }

    fn event(&mut self, e: Event<'_>) {
        match e {
            Event::Open {
                conn,
                client,
                server,
                mid_stream,
                ts,
            } => {
                self.conns.insert(
                    conn,
                    Conn {
                        client,
                        server,
                        to_server: Side::Sniffing(Vec::new()),
                        to_client: Side::Sniffing(Vec::new()),
                        xmpp: None,
                        tls: None,
                        inner: None,
                        inner_bytes: [0; 2],
                        switched: false,
                        counts: [0; 6],
                        bytes: 0,
                    },
                );
                self.emit(
                    conn,
                    ts,
                    Finding::Connection {
                        client: client.to_string(),
                        server: server.to_string(),
                        mid_stream,
                    },
                );
            }
            Event::Data {
                conn,
                dir,
                offset,
                data,
                ts,
            } => {
                if let Some(tap) = self.tap.as_mut() {
                    tap(conn, dir, Layer::Wire, offset, &data);
                }
                self.data(conn, dir, &data, ts);
            }
            Event::Gap {
                conn,
                dir,
                offset,
                len,
            } => {
                let ts = self.last_ts;
                self.emit(conn, ts, Finding::Gap { dir, offset, len });
            }
            Event::Close { conn, ts, .. } => self.close(conn, ts),
        }
    }

    fn data(&mut self, conn: ConnId, dir: Dir, data: &[u8], ts: f64) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.bytes += data.len() as u64;
        let mut found = Vec::new();
        let mut on = |f: Finding| found.push(f);
        // Recognise the direction by its first bytes.
        let mut owned: Option<Vec<u8>> = None;
        if let Side::Sniffing(buf) = c.side(dir) {
            buf.extend_from_slice(data);
            let first = buf.iter().position(|b| !b.is_ascii_whitespace());
            let kind = match first.map(|i| &buf[i..]) {
                Some([b'<', ..]) => Some(Side::Xmpp),
                Some([0x16, 0x03, ..]) | Some([0x16]) if buf.len() < 2 => None,
                Some([0x16, 0x03, ..]) => Some(Side::Tls),
                Some(_) => Some(Side::Other),
                None if buf.len() > SNIFF_BYTES => Some(Side::Other),
                None => None,
            };
            let Some(kind) = kind else { return };
            let name = match kind {
                Side::Xmpp => "xmpp",
                Side::Tls => "tls",
                _ => "unknown",
            };
            owned = Some(std::mem::take(buf));
            *c.side(dir) = kind;
            on(Finding::Protocol {
                dir,
                protocol: name,
            });
        }
        let bytes: &[u8] = owned.as_deref().unwrap_or(data);
        match c.side(dir) {
            Side::Xmpp => {
                let x = c.xmpp.get_or_insert_with(XmppConn::default);
                if let Some(sw) = x.feed(dir, bytes, ts, &mut on) {
                    c.switched = true;
                    c.to_server = Side::Tls;
                    c.to_client = Side::Tls;
                    on(Finding::TlsSwitch {
                        to_server_offset: sw.to_server_offset,
                        to_client_offset: sw.to_client_offset,
                    });
                    let t = c.tls.get_or_insert_with(TlsConn::default);
                    let mut k = self.keylog.as_mut();
                    t.feed_with_keys(
                        Dir::ToServer,
                        &sw.to_server_rest,
                        ts,
                        k.as_deref_mut(),
                        &mut on,
                    );
                    t.feed_with_keys(Dir::ToClient, &sw.to_client_rest, ts, k, &mut on);
                }
            }
            Side::Tls => {
                c.tls.get_or_insert_with(TlsConn::default).feed_with_keys(
                    dir,
                    bytes,
                    ts,
                    self.keylog.as_mut(),
                    &mut on,
                );
            }
            _ => {}
        }
        Self::inside_tls(c, conn, ts, &mut self.tap, &mut on);
        let mut files: Vec<CarriedFile> = c
            .xmpp
            .as_mut()
            .map(XmppConn::take_finished)
            .unwrap_or_default();
        if let Some(x) = c.inner.as_mut() {
            files.append(&mut x.take_finished());
        }
        for f in found {
            self.emit(conn, ts, f);
        }
        for f in files {
            let finding = self.file(conn, f);
            self.emit(conn, ts, finding);
        }
    }

    /// What a key log opened: to the tap, then read as XMPP (a stream of
    /// its own, begun after the handshake).
    fn inside_tls(
        c: &mut Conn,
        conn: ConnId,
        ts: f64,
        tap: &mut Option<Tap<'a>>,
        on: &mut impl FnMut(Finding),
    ) {
        let Some(t) = c.tls.as_mut() else { return };
        for (dir, plain) in std::mem::take(&mut t.plaintext) {
            let at = &mut c.inner_bytes[dir.pick(0, 1)];
            if let Some(tap) = tap.as_mut() {
                tap(conn, dir, Layer::Decrypted, *at, &plain);
            }
            *at += plain.len() as u64;
            // A STARTTLS inside TLS switches nothing (and never returns one).
            let _ = c
                .inner
                .get_or_insert_with(XmppConn::inside_tls)
                .feed(dir, &plain, ts, on);
        }
    }

    fn file(&self, conn: ConnId, f: CarriedFile) -> Finding {
        let (sha256, sha256_matches) = f.sha256();
        let path = self.export.as_ref().and_then(|dir| export(dir, conn, &f));
        Finding::File {
            sid: f.sid,
            name: f.name,
            size: f.data.len() as u64,
            offered_size: f.offered_size,
            sha256,
            offered_sha256: f.offered_sha256.as_deref().map(hex),
            sha256_matches,
            path,
            complete: f.complete,
            missing_blocks: f.missing_blocks,
            duplicate_blocks: f.duplicate_blocks,
            reordered_blocks: f.reordered_blocks,
        }
    }

    fn close(&mut self, conn: ConnId, ts: f64) {
        // What only the end of a connection tells: files whose transfer
        // never closed, and the TLS traffic totals. Counted like any other
        // finding, while the connection is still in the table.
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let mut found = Vec::new();
        if let Some(t) = c.tls.as_mut() {
            t.finish(self.keylog.as_mut(), &mut |f| found.push(f));
        }
        Self::inside_tls(c, conn, ts, &mut self.tap, &mut |f| found.push(f));
        let mut files = Vec::new();
        for x in [c.xmpp.as_mut(), c.inner.as_mut()].into_iter().flatten() {
            x.unfinished();
            files.append(&mut x.take_finished());
        }
        let traffic = c.tls.as_ref().and_then(TlsConn::traffic);
        for f in found {
            self.emit(conn, ts, f);
        }
        for f in files {
            let finding = self.file(conn, f);
            self.emit(conn, ts, finding);
        }
        if let Some(t) = traffic {
            self.emit(conn, ts, t);
        }
        if let Some(end) = self.ended.as_mut() {
            end(conn);
        }
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if self.summaries.len() < MAX_SUMMARY_ROWS {
            self.summaries.push(ConnSummary {
                id: conn,
                client: c.client,
                server: c.server,
                protocol: c.protocol(),
                tls: c.switched || matches!((&c.to_server, &c.to_client), (Side::Tls, Side::Tls)),
                decrypted: c.inner_bytes != [0, 0],
                counts: c.counts,
                bytes: c.bytes,
            });
        }
    }
}

/// Writes a recovered file under `dir` with a safe name; `None` (and a
/// warning) when it cannot.
fn export(dir: &Path, conn: ConnId, f: &CarriedFile) -> Option<String> {
    let name = format!("conn{conn}-{}-{}", safe_name(&f.sid), safe_name(&f.name));
    let path = dir.join(name);
    if let Err(e) = std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&path, &f.data)) {
        eprintln!("sniffer: cannot export {}: {e}", path.display());
        return None;
    }
    Some(path.display().to_string())
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
    fn neither_xmpp_nor_tls_is_other_and_summaries_count_categories() {
        let frames = exchange(
            50001,
            80,
            &[b"GET / HTTP/1.0\r\n\r\n"],
            &[b"HTTP/1.0 200 OK\r\n\r\n"],
        );
        let (_, sums) = run(&frames);
        assert_eq!(sums[0].protocol, "other");
        let hdr: &[u8] = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
        let msg: &[u8] = b"<message to='b@x'><body>hi</body></message><message to='b@x'><body>again</body></message>";
        let (_, sums) = run(&exchange(50002, 5222, &[hdr, msg], &[]));
        assert_eq!(sums[0].counts[1], 2, "two messages: {:?}", sums[0]);
        assert!(!sums[0].tls);
    }

    #[test]
    fn names_of_exported_files_are_made_safe() {
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("a b;c.txt"), "a_b_c.txt");
        assert_eq!(safe_name("..."), "file");
    }
}
