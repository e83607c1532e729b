//! `--write FILE`: both legs of every connection as a pcap, with made-up
//! TCP/IP headers around what the proxy saw (as sslsplit does), so that
//! `sniffer read` and Wireshark open it.
//!
//! Each connection is two TCP conversations: the client's leg (client to
//! the proxy's listening address) and the server's leg (the proxy's own
//! address to the server). Each carries what crossed it at the proxy:
//! ciphertext where TLS passed through, plaintext where the proxy ended TLS
//! itself (`intercept-tls`, or `strip-starttls`' server leg). On such a
//! leg the `<starttls/>` and `<proceed/>` that led into the TLS the proxy
//! removed are left out, so that a reader sees one readable stream rather
//! than a switch to TLS that never shows.

use std::io::BufWriter;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use sniffer::decode::build::{Flags, PcapWriter, ethernet_tcp};

use crate::event::Dir;

/// Largest payload of one made-up segment: well under the 65,535 bytes an
/// IPv4 packet can carry, and what a reader expects of a loopback segment.
const SEGMENT: usize = 16 * 1024;

/// Why the capture file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the capture {path}: {source}")]
pub struct PcapError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// The capture file every connection writes to.
pub struct Recorder {
    path: PathBuf,
    out: Mutex<PcapWriter<BufWriter<std::fs::File>>>,
}

impl Recorder {
    /// Creates (or replaces) `path`.
    pub fn create(path: &Path) -> Result<Recorder, PcapError> {
        let err = |source| PcapError {
            path: path.to_path_buf(),
            source,
        };
        let f = std::fs::File::create(path).map_err(err)?;
        let w = PcapWriter::new(BufWriter::new(f)).map_err(err)?;
        Ok(Recorder {
            path: path.to_path_buf(),
            out: Mutex::new(w),
        })
    }

    /// Where it writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn frame(&self, frame: &[u8]) {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let mut w = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // A frame that cannot be written is lost from the record only.
        let _ = w.frame(ts, frame);
    }

    /// Pushes what is buffered to the file (at the end of a connection).
    pub fn flush(&self) {
        let _ = self.out.lock().unwrap_or_else(|p| p.into_inner()).flush();
    }
}

/// One TCP conversation: its two ends and the next sequence number each
/// way.
struct Leg {
    a: SocketAddr,
    b: SocketAddr,
    seq_ab: u32,
    seq_ba: u32,
}

impl Leg {
    fn new(a: SocketAddr, b: SocketAddr, isn: u32) -> Leg {
        Leg {
            a,
            b,
            seq_ab: isn,
            seq_ba: isn.wrapping_add(0x4000_0000),
        }
    }

    fn open(&mut self, rec: &Recorder) {
        let syn = Flags {
            syn: true,
            ..Flags::default()
        };
        // The opener's SYN says who is the client of the conversation; the
        // answer is left out (the frame builder makes a pure SYN, and a
        // second one would read as a connection the other way).
        rec.frame(&ethernet_tcp(self.a, self.b, self.seq_ab, syn, b""));
        self.seq_ab = self.seq_ab.wrapping_add(1);
    }

    fn data(&mut self, rec: &Recorder, forward: bool, bytes: &[u8]) {
        for chunk in bytes.chunks(SEGMENT) {
            let (src, dst, seq) = if forward {
                (self.a, self.b, &mut self.seq_ab)
            } else {
                (self.b, self.a, &mut self.seq_ba)
            };
            rec.frame(&ethernet_tcp(src, dst, *seq, Flags::default(), chunk));
            *seq = seq.wrapping_add(chunk.len() as u32);
        }
    }

    fn close(&mut self, rec: &Recorder) {
        let fin = Flags {
            fin: true,
            ..Flags::default()
        };
        rec.frame(&ethernet_tcp(self.a, self.b, self.seq_ab, fin, b""));
        rec.frame(&ethernet_tcp(self.b, self.a, self.seq_ba, fin, b""));
    }
}

/// Both legs of one connection.
pub struct Legs {
    client: Leg,
    server: Leg,
}

impl Legs {
    /// The client's leg (`client` to the proxy's `listen` address) and the
    /// server's (the proxy's `local` address to `upstream`), opened with a
    /// handshake each.
    pub fn open(
        rec: &Recorder,
        conn: u64,
        client: SocketAddr,
        listen: SocketAddr,
        local: SocketAddr,
        upstream: SocketAddr,
    ) -> Legs {
        // Initial sequence numbers told apart per connection, as a reader
        // expects of separate conversations.
        let isn = (conn as u32).wrapping_mul(0x9e37_79b9);
        let mut legs = Legs {
            client: Leg::new(client, listen, isn),
            server: Leg::new(local, upstream, isn.wrapping_add(0x1000_0000)),
        };
        legs.client.open(rec);
        legs.server.open(rec);
        legs
    }

    /// Bytes that arrived at the proxy travelling `dir`: on the client's
    /// leg from the client, or on the server's leg from the server.
    pub fn arrived(&mut self, rec: &Recorder, dir: Dir, bytes: &[u8]) {
        match dir {
            Dir::ClientToServer => self.client.data(rec, true, bytes),
            Dir::ServerToClient => self.server.data(rec, false, bytes),
        }
    }

    /// Bytes the proxy sent on travelling `dir`: on the server's leg to the
    /// server, or on the client's leg to the client.
    pub fn sent(&mut self, rec: &Recorder, dir: Dir, bytes: &[u8]) {
        match dir {
            Dir::ClientToServer => self.server.data(rec, true, bytes),
            Dir::ServerToClient => self.client.data(rec, false, bytes),
        }
    }

    /// Both legs closed.
    pub fn close(&mut self, rec: &Recorder) {
        self.client.close(rec);
        self.server.close(rec);
        rec.flush();
    }
}
