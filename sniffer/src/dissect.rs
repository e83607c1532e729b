//! One connection's bytes to findings: recognise each direction by its
//! content (XMPP, TLS, or neither; never by port), hand the bytes to the
//! right dissector, follow the switch to TLS after `<proceed/>`, open TLS
//! with a key log, and keep the connection's tally for the summary.
//!
//! A [`Dissector`] holds every connection it was given and nothing else,
//! so connections can be split among several (see [`crate::pool`]): what
//! one connection shows never depends on another.

use rustc_hash::FxHashMap as HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::findings::Finding;
use crate::http::HttpConn;
use crate::keylog::KeyLog;
use crate::reassembly::{ConnId, Dir, Event};
use crate::tls::TlsConn;
use crate::xmpp::{CarriedFile, XmppConn, hex};

/// Bytes looked at before a direction that is neither XMPP nor TLS is
/// given up on.
const SNIFF_BYTES: usize = 16;

/// What a direction carries.
#[derive(Debug)]
enum Side {
    /// Not known yet: the first bytes.
    Sniffing(Vec<u8>),
    Xmpp,
    Tls,
    /// Plain HTTP (a chat server's file upload).
    Http,
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
    pub counts: [u64; crate::findings::CATEGORIES],
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
    http: Option<HttpConn>,
    /// The XMPP read inside TLS, from records a key log opened.
    inner: Option<XmppConn>,
    /// Decrypted bytes so far, per direction (the tap's offsets).
    inner_bytes: [u64; 2],
    switched: bool,
    counts: [u64; crate::findings::CATEGORIES],
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
        } else if any(|s| matches!(s, Side::Http)) {
            "HTTP".into()
        } else {
            "other".into()
        }
    }
}

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

/// Beginnings of HTTP/1 requests and responses.
const HTTP_STARTS: [&[u8]; 8] = [
    b"GET /",
    b"PUT /",
    b"POST /",
    b"HEAD /",
    b"DELETE /",
    b"OPTIONS ",
    b"PATCH /",
    b"HTTP/1.",
];

/// Whether `b` begins as an HTTP/1 request or response does.
fn is_http(b: &[u8]) -> bool {
    HTTP_STARTS.iter().any(|s| b.starts_with(s))
}

/// Whether `b` is too short to tell, and could still begin one (`GE`: a
/// first segment cut short; the next bytes decide).
fn may_be_http(b: &[u8]) -> bool {
    HTTP_STARTS
        .iter()
        .any(|s| b.len() < s.len() && s.starts_with(b))
}

/// Where a [`Dissector`]'s results go: each finding as it is made, and
/// each connection's summary when it ends.
pub(crate) trait Out {
    /// One finding of `conn` at capture time `ts`.
    fn finding(&mut self, conn: ConnId, ts: f64, f: &Finding);
    /// A connection ended.
    fn summary(&mut self, s: ConnSummary);
}

/// What the caller asked to be told besides findings.
#[derive(Default)]
pub(crate) struct Hooks<'a> {
    /// Every reassembled byte (follow, guard).
    pub(crate) tap: Option<Tap<'a>>,
    /// A connection or UDP flow is over.
    pub(crate) ended: Option<Box<dyn FnMut(ConnId) + 'a>>,
}

/// The connections being read, and what reading them needs.
#[derive(Debug, Default)]
pub(crate) struct Dissector {
    conns: HashMap<ConnId, Conn>,
    /// Where in-band files are written, when asked.
    export: Option<PathBuf>,
    /// The secrets that open TLS, when given.
    pub(crate) keylog: Option<KeyLog>,
}

impl Dissector {
    /// No connection yet; files written to `export`, TLS opened with
    /// `keylog`, when given.
    pub(crate) fn new(export: Option<PathBuf>, keylog: Option<KeyLog>) -> Self {
        Dissector {
            conns: HashMap::default(),
            export,
            keylog,
        }
    }

    /// A finding of `conn`: counted in its tally, then sent out.
    fn emit(&mut self, conn: ConnId, ts: f64, f: Finding, out: &mut impl Out) {
        if let (Some(cat), Some(c)) = (f.category(), self.conns.get_mut(&conn)) {
            c.counts[cat.index()] += 1;
        }
        out.finding(conn, ts, &f);
    }

    /// One event of the reassembler; `last_ts` is the time of the frame
    /// that caused it (a gap has none of its own).
    pub(crate) fn event(
        &mut self,
        e: Event<'_>,
        last_ts: f64,
        hooks: &mut Hooks<'_>,
        out: &mut impl Out,
    ) {
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
                        http: None,
                        inner: None,
                        inner_bytes: [0; 2],
                        switched: false,
                        counts: [0; crate::findings::CATEGORIES],
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
                    out,
                );
            }
            Event::Data {
                conn,
                dir,
                offset,
                data,
                ts,
            } => {
                if let Some(tap) = hooks.tap.as_mut() {
                    tap(conn, dir, Layer::Wire, offset, &data);
                }
                self.data(conn, dir, &data, ts, hooks, out);
            }
            Event::Gap {
                conn,
                dir,
                offset,
                len,
            } => {
                if let Some(h) = self.conns.get_mut(&conn).and_then(|c| c.http.as_mut()) {
                    h.gap(dir);
                }
                self.emit(conn, last_ts, Finding::Gap { dir, offset, len }, out);
            }
            Event::Close { conn, ts, .. } => self.close(conn, ts, hooks, out),
        }
    }

    fn data(
        &mut self,
        conn: ConnId,
        dir: Dir,
        data: &[u8],
        ts: f64,
        hooks: &mut Hooks<'_>,
        out: &mut impl Out,
    ) {
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
                Some(b) if is_http(b) => Some(Side::Http),
                Some(b) if may_be_http(b) => None,
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
                Side::Http => "http",
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
            Side::Http => c
                .http
                .get_or_insert_with(HttpConn::default)
                .feed(dir, bytes),
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
        inside_tls(c, conn, ts, &mut hooks.tap, &mut on);
        let mut files: Vec<CarriedFile> = c
            .xmpp
            .as_mut()
            .map(XmppConn::take_finished)
            .unwrap_or_default();
        if let Some(x) = c.inner.as_mut() {
            files.append(&mut x.take_finished());
        }
        if let Some(h) = c.http.as_mut() {
            files.append(&mut h.take_finished());
        }
        for f in found {
            self.emit(conn, ts, f, out);
        }
        for f in files {
            let finding = self.file(conn, f);
            self.emit(conn, ts, finding, out);
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

    fn close(&mut self, conn: ConnId, ts: f64, hooks: &mut Hooks<'_>, out: &mut impl Out) {
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
        inside_tls(c, conn, ts, &mut hooks.tap, &mut |f| found.push(f));
        let mut files = Vec::new();
        for x in [c.xmpp.as_mut(), c.inner.as_mut()].into_iter().flatten() {
            x.unfinished();
            files.append(&mut x.take_finished());
        }
        if let Some(h) = c.http.as_mut() {
            h.finish();
            files.append(&mut h.take_finished());
        }
        let traffic = c.tls.as_ref().and_then(TlsConn::traffic);
        for f in found {
            self.emit(conn, ts, f, out);
        }
        for f in files {
            let finding = self.file(conn, f);
            self.emit(conn, ts, finding, out);
        }
        if let Some(t) = traffic {
            self.emit(conn, ts, t, out);
        }
        if let Some(end) = hooks.ended.as_mut() {
            end(conn);
        }
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        out.summary(ConnSummary {
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

/// What a key log opened: to the tap, then read as XMPP (a stream of its
/// own, begun after the handshake).
fn inside_tls(
    c: &mut Conn,
    conn: ConnId,
    ts: f64,
    tap: &mut Option<Tap<'_>>,
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

/// Writes a recovered file under `dir` with a safe name; `None` (and a
/// warning) when it cannot.
fn export(dir: &Path, conn: ConnId, f: &CarriedFile) -> Option<String> {
    let safe = protocol::display::ascii_file_name;
    let name = format!("conn{conn}-{}-{}", safe(&f.sid), safe(&f.name));
    // Two files of one connection can share a name (the same URL fetched
    // twice): the second is `-2`, never written over the first.
    let path = (1..1000)
        .map(|i| match i {
            1 => dir.join(&name),
            i => dir.join(format!("{name}-{i}")),
        })
        .find(|p| !p.exists())
        .unwrap_or_else(|| dir.join(&name));
    if let Err(e) = std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&path, &f.data)) {
        eprintln!("sniffer: cannot export {}: {e}", path.display());
        return None;
    }
    Some(path.display().to_string())
}
