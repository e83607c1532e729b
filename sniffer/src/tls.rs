//! TLS as seen from the wire: what stays visible when the content does not.
//!
//! The records' 5-byte headers are always in clear, so their count, sizes
//! and timing leak (traffic analysis). The hellos are in clear too: the
//! ClientHello names the server (SNI) and lists what the client supports;
//! the ServerHello says what was chosen. Everything after is ciphertext.
//!
//! Without the session's secrets that is where it ends: only sizes and
//! times. With them (a key log, see [`crate::keylog`]) each record is
//! opened ([`crate::decrypt`]) and its plaintext handed back, to be read
//! like any plaintext XMPP; a record that does not open is reported with
//! the reason (no key for the session, the wrong key, a bad tag).

use tls_parser::{
    TlsCipherSuite, TlsExtension, TlsMessage, TlsMessageHandshake,
    parse_tls_client_hello_extensions, parse_tls_message_handshake,
    parse_tls_server_hello_extensions,
};

use crate::decrypt::{self, OpenError, RecordKeys};
use crate::findings::Finding;
use crate::keylog::KeyLog;
use crate::reassembly::Dir;

/// Largest record TLS allows (2^14 plus the most expansion a cipher adds).
/// A bigger declared length is not TLS: stop instead of buffering it.
pub const MAX_RECORD: usize = 16_384 + 2_048;

/// Handshake bytes kept while a hello is reassembled from records.
const MAX_HANDSHAKE_BUFFER: usize = 64 * 1024;

/// Record sizes kept for the traffic report.
const MAX_SIZES: usize = 64;

fn version_name(v: u16) -> String {
    match v {
        0x0304 => "TLS 1.3".into(),
        0x0303 => "TLS 1.2".into(),
        0x0302 => "TLS 1.1".into(),
        0x0301 => "TLS 1.0".into(),
        0x0300 => "SSL 3.0".into(),
        other if other & 0x0f0f == 0x0a0a => "GREASE".into(),
        other => format!("0x{other:04x}"),
    }
}

fn group_name(g: u16) -> String {
    match g {
        0x001d => "x25519".into(),
        0x001e => "x448".into(),
        0x0017 => "secp256r1".into(),
        0x0018 => "secp384r1".into(),
        0x0019 => "secp521r1".into(),
        0x11ec => "X25519MLKEM768".into(),
        0x0100..=0x0104 => format!(
            "ffdhe{}",
            [2048, 3072, 4096, 6144, 8192][usize::from(g - 0x100)]
        ),
        other if other & 0x0f0f == 0x0a0a => "GREASE".into(),
        other => format!("0x{other:04x}"),
    }
}

fn cipher_name(id: u16) -> String {
    TlsCipherSuite::from_id(id).map_or_else(|| format!("0x{id:04x}"), |c| c.name.to_string())
}

/// The groups of a ClientHello key_share extension: a list of
/// (group, length, key) entries behind a 2-byte length.
fn key_share_groups(data: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(rest) = data.get(2..) else {
        return out;
    };
    let mut i = 0usize;
    while let (Some(g), Some(l)) = (rest.get(i..i + 2), rest.get(i + 2..i + 4)) {
        out.push(group_name(u16::from_be_bytes([g[0], g[1]])));
        let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
        i = match i.checked_add(4 + len) {
            Some(n) => n,
            None => break,
        };
    }
    out
}

/// HelloRetryRequest is a ServerHello with this random (RFC 8446 4.1.3):
/// the server asks for another ClientHello, and nothing is encrypted yet.
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Encrypted records held per direction while their session's secrets are
/// not in the key log yet (a live capture sees a session before its program
/// writes them). Beyond this the session counts as having no key.
const MAX_WAITING: usize = 256;

/// One direction's records.
#[derive(Debug, Default)]
struct Half {
    buf: Vec<u8>,
    handshake: Vec<u8>,
    /// Handshake parsing is over (encrypted from here).
    encrypted: bool,
    /// Not TLS after all: ignore the rest.
    broken: bool,
    records: u64,
    bytes: u64,
    /// With a key log: this direction's record keys, once known.
    keys: Option<RecordKeys>,
    /// TLS 1.3: the application traffic keys, taken after this side's
    /// Finished (until then its records use the handshake keys).
    next: Option<RecordKeys>,
    /// TLS 1.3, client: the 0-RTT keys, tried first until EndOfEarlyData.
    early: Option<RecordKeys>,
    /// TLS 1.3: the header of the decrypted handshake message being read
    /// (up to 4 bytes), and how many bytes of its body are still to pass.
    /// Only the message types matter (Finished, KeyUpdate, EndOfEarlyData),
    /// so no body is kept, however long it says it is.
    inner: Vec<u8>,
    inner_skip: usize,
    /// Encrypted records waiting for the key log to name their session
    /// (`true`: 0-RTT data, sent before the ServerHello).
    waiting: Vec<([u8; 5], Vec<u8>, bool)>,
    /// Records decrypted, and records that could not be.
    opened: u64,
    failed: u64,
    /// A failure was reported (once per direction; the count is in the
    /// traffic line).
    reported: bool,
}

/// What a hello says that decryption needs.
enum Hello {
    Client {
        random: [u8; 32],
    },
    Server {
        random: [u8; 32],
        suite: u16,
        tls13: bool,
    },
}

/// Where decryption stands for a connection (with a key log).
#[derive(Debug, Default)]
enum Keys {
    /// Not looked up yet, or not in the key log yet.
    #[default]
    Unknown,
    /// Both directions have keys.
    Ready,
    /// It cannot be decrypted, and why.
    Missing(String),
}

/// One TLS connection (or the TLS part of one after STARTTLS).
#[derive(Debug, Default)]
pub struct TlsConn {
    to_server: Half,
    to_client: Half,
    sizes: Vec<i64>,
    times: Vec<f64>,
    first_ts: Option<f64>,
    last_ts: f64,
    client_random: Option<[u8; 32]>,
    server_random: Option<[u8; 32]>,
    suite: Option<u16>,
    tls13: bool,
    keys: Keys,
    /// Decrypted application data, in order per direction, for the caller
    /// to take (and dissect as it would plaintext).
    pub plaintext: Vec<(Dir, Vec<u8>)>,
}

impl TlsConn {
    /// Feeds bytes of one direction.
    pub fn feed(&mut self, dir: Dir, data: &[u8], ts: f64, out: &mut impl FnMut(Finding)) {
        self.feed_with_keys(dir, data, ts, None, out);
    }

    /// Feeds bytes of one direction, decrypting its records with the
    /// secrets in `keylog` when it names this session; the plaintext is
    /// left in [`TlsConn::plaintext`].
    pub fn feed_with_keys(
        &mut self,
        dir: Dir,
        data: &[u8],
        ts: f64,
        mut keylog: Option<&mut KeyLog>,
        out: &mut impl FnMut(Finding),
    ) {
        let half = dir.pick(&mut self.to_server, &mut self.to_client);
        if half.broken {
            return;
        }
        half.buf.extend_from_slice(data);
        // The records are handed on as slices of the buffer (taken out of
        // the half meanwhile), not copied: only a record that must wait for
        // its keys is.
        let buf = std::mem::take(&mut half.buf);
        let mut at = 0usize;
        while let Some(hdr) = buf.get(at..at + 5) {
            let (kind, len) = (hdr[0], usize::from(u16::from_be_bytes([hdr[3], hdr[4]])));
            if !(20..=24).contains(&kind) || hdr[1] != 3 || len > MAX_RECORD {
                dir.pick(&mut self.to_server, &mut self.to_client).broken = true;
                out(Finding::Malformed {
                    dir,
                    what: format!("not a TLS record (type {kind}, length {len})"),
                });
                return;
            }
            let Some(body) = buf.get(at + 5..at + 5 + len) else {
                break;
            };
            let header = [hdr[0], hdr[1], hdr[2], hdr[3], hdr[4]];
            self.record(dir, header, body, ts, keylog.as_deref_mut(), out);
            at += 5 + len;
            if dir.pick(&self.to_server, &self.to_client).broken {
                return;
            }
        }
        let mut buf = buf;
        buf.drain(..at);
        dir.pick(&mut self.to_server, &mut self.to_client).buf = buf;
    }

    fn record(
        &mut self,
        dir: Dir,
        header: [u8; 5],
        body: &[u8],
        ts: f64,
        keylog: Option<&mut KeyLog>,
        out: &mut impl FnMut(Finding),
    ) {
        let kind = header[0];
        let half = dir.pick(&mut self.to_server, &mut self.to_client);
        let ciphertext = kind == 23 || (half.encrypted && matches!(kind, 21 | 22));
        if kind == 23 {
            half.encrypted = true;
            half.records += 1;
            half.bytes += body.len() as u64;
            let first = *self.first_ts.get_or_insert(ts);
            if self.sizes.len() < MAX_SIZES {
                let signed = body.len() as i64;
                self.sizes.push(if dir == Dir::ToServer {
                    signed
                } else {
                    -signed
                });
                // Microseconds are what a capture records.
                self.times.push(((ts - first) * 1e6).round() / 1e6);
            }
            self.last_ts = ts;
        }
        if ciphertext {
            match keylog {
                Some(k) => self.decrypt(dir, header, body, k, out),
                None if kind == 21 => out(Finding::Alert {
                    dir,
                    text: format!("(encrypted, {} bytes)", body.len()),
                }),
                None => {}
            }
            return;
        }
        match kind {
            22 => {
                if half.handshake.len() + body.len() > MAX_HANDSHAKE_BUFFER {
                    // No hello is that long: say so rather than skip a
                    // record and read the rest out of step.
                    half.broken = true;
                    out(Finding::Malformed {
                        dir,
                        what: format!(
                            "a TLS handshake message longer than {MAX_HANDSHAKE_BUFFER} bytes"
                        ),
                    });
                    return;
                }
                half.handshake.extend_from_slice(body);
                for hello in Self::handshake(half, dir, out) {
                    self.hello(hello);
                }
            }
            // TLS 1.2: from here this side encrypts. TLS 1.3 sends it only
            // to please middleboxes (RFC 8446 D.4): it changes nothing.
            20 if !self.tls13 => half.encrypted = true,
            21 => out(Finding::Alert {
                dir,
                text: alert_text(body),
            }),
            _ => {}
        }
    }

    fn hello(&mut self, hello: Hello) {
        match hello {
            Hello::Client { random } => self.client_random = Some(random),
            Hello::Server { random, .. } if random == HRR_RANDOM => self.tls13 = true,
            Hello::Server {
                random,
                suite,
                tls13,
            } => {
                self.server_random = Some(random);
                self.suite = Some(suite);
                self.tls13 = tls13;
                if tls13 {
                    // Everything the server sends next is encrypted.
                    self.to_client.encrypted = true;
                }
            }
        }
    }

    /// Looks the session up in the key log and derives both directions'
    /// keys, once it is there. `last`: no more will come (the capture is
    /// over), so what is missing now is missing for good.
    fn find_keys(&mut self, keylog: &mut KeyLog, last: bool, out: &mut impl FnMut(Finding)) {
        if !matches!(self.keys, Keys::Unknown) {
            return;
        }
        // The capture itself goes on until `last` (the ServerHello may
        // come after 0-RTT data); a finished key log will not grow, so a
        // miss in it is final at once.
        let over = last;
        let last = last || !keylog.live();
        let Some(random) = self.client_random else {
            self.keys = Keys::Missing(
                "the handshake was not captured (the connection was already open): no client random to find its secrets by".into(),
            );
            return;
        };
        let (Some(id), Some(server_random)) = (self.suite, self.server_random) else {
            // 0-RTT data comes before the ServerHello: wait for it.
            if over {
                self.keys = Keys::Missing(
                    "no ServerHello was captured: the cipher suite is not known".into(),
                );
            }
            return;
        };
        if keylog.server_key_only {
            self.keys = Keys::Missing(format!(
                "the server's private key cannot open this session: {}",
                key_exchange(id)
            ));
            return;
        }
        let Some(suite) = decrypt::suite(id) else {
            self.keys = Keys::Missing(format!(
                "cipher suite {}: the sniffer decrypts AES-GCM and ChaCha20-Poly1305 suites only",
                cipher_name(id)
            ));
            return;
        };
        let Some(secrets) = keylog.lookup(&random) else {
            if last {
                self.keys = Keys::Missing(self.no_key());
            }
            // Else perhaps not written yet: the records wait.
            return;
        };
        let keys = if suite.tls13 {
            let k = |s: &Option<Vec<u8>>| s.as_deref().and_then(|s| RecordKeys::tls13(suite, s));
            match (
                k(&secrets.client_handshake),
                k(&secrets.server_handshake),
                k(&secrets.client_traffic),
                k(&secrets.server_traffic),
            ) {
                (Some(ch), Some(sh), Some(ct), Some(st)) => {
                    Some(((ch, Some(ct)), (sh, Some(st)), k(&secrets.client_early)))
                }
                _ => None,
            }
        } else {
            secrets
                .master
                .as_deref()
                .and_then(|m| RecordKeys::tls12(suite, m, &random, &server_random))
                .map(|(c, s)| ((c, None), (s, None), None))
        };
        let Some(((client, client_next), (server, server_next), early)) = keys else {
            // A TLS 1.3 program writes its secrets a few at a time.
            if last {
                self.keys = Keys::Missing(format!(
                    "the key log names this session but lacks its {} secrets",
                    if suite.tls13 {
                        "TLS 1.3 handshake and traffic"
                    } else {
                        "TLS 1.2 master (CLIENT_RANDOM)"
                    }
                ));
            }
            return;
        };
        self.to_server.keys = Some(client);
        self.to_server.next = client_next;
        self.to_server.early = early;
        self.to_client.keys = Some(server);
        self.to_client.next = server_next;
        self.keys = Keys::Ready;
        out(Finding::TlsKeys {
            version: if suite.tls13 { "TLS 1.3" } else { "TLS 1.2" }.into(),
            cipher: cipher_name(id),
        });
        // What waited for the keys, in order.
        for dir in [Dir::ToServer, Dir::ToClient] {
            let waiting =
                std::mem::take(&mut dir.pick(&mut self.to_server, &mut self.to_client).waiting);
            for (header, body, early) in waiting {
                keylog.waiting_bytes = keylog.waiting_bytes.saturating_sub(body.len());
                self.open(dir, header, &body, early, out);
            }
        }
    }

    fn decrypt(
        &mut self,
        dir: Dir,
        header: [u8; 5],
        body: &[u8],
        keylog: &mut KeyLog,
        out: &mut impl FnMut(Finding),
    ) {
        // 0-RTT: the client's records before the server has answered.
        let early = dir == Dir::ToServer && self.server_random.is_none();
        self.find_keys(keylog, false, out);
        match &self.keys {
            Keys::Ready => self.open(dir, header, body, early, out),
            Keys::Unknown => {
                let half = dir.pick(&mut self.to_server, &mut self.to_client);
                if half.waiting.len() < MAX_WAITING
                    && keylog.waiting_bytes + body.len() <= KeyLog::MAX_WAITING_BYTES
                {
                    keylog.waiting_bytes += body.len();
                    half.waiting.push((header, body.to_vec(), early));
                } else {
                    self.keys = Keys::Missing(self.no_key());
                    self.give_up(keylog, out);
                    self.fail(dir, None, out);
                }
            }
            Keys::Missing(_) => self.fail(dir, None, out),
        }
    }

    fn no_key(&self) -> String {
        let random: String = self
            .client_random
            .unwrap_or_default()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("no key for this session in the key log (client random {random}...)")
    }

    /// Records still waiting count as failed, and say why.
    fn give_up(&mut self, keylog: &mut KeyLog, out: &mut impl FnMut(Finding)) {
        for dir in [Dir::ToServer, Dir::ToClient] {
            let waiting =
                std::mem::take(&mut dir.pick(&mut self.to_server, &mut self.to_client).waiting);
            for (_, body, _) in waiting {
                keylog.waiting_bytes = keylog.waiting_bytes.saturating_sub(body.len());
                self.fail(dir, None, out);
            }
        }
    }

    /// One record of `dir` not decrypted: counted, and the first reported
    /// with its reason (the key state's, or `why`).
    fn fail(&mut self, dir: Dir, why: Option<String>, out: &mut impl FnMut(Finding)) {
        let reason = why.unwrap_or_else(|| match &self.keys {
            Keys::Missing(r) => r.clone(),
            _ => self.no_key(),
        });
        let half = dir.pick(&mut self.to_server, &mut self.to_client);
        half.failed += 1;
        if !half.reported {
            half.reported = true;
            out(Finding::Undecrypted {
                dir,
                record: half.opened + half.failed,
                reason,
            });
        }
    }

    /// Opens one record with this direction's keys and routes its content:
    /// application data to [`TlsConn::plaintext`], handshake messages to
    /// the key schedule (Finished, KeyUpdate, EndOfEarlyData), alerts as
    /// findings. `early`: sent before the ServerHello, so 0-RTT data, which
    /// only the early keys may open (it must not use up a sequence number
    /// of the handshake keys).
    fn open(
        &mut self,
        dir: Dir,
        header: [u8; 5],
        body: &[u8],
        early: bool,
        out: &mut impl FnMut(Finding),
    ) {
        let tls13 = self.tls13;
        let half = dir.pick(&mut self.to_server, &mut self.to_client);
        // 0-RTT data may go on after the ServerHello, until EndOfEarlyData:
        // the early keys are tried first while they last (a tag that does
        // not match moves nothing on).
        let opened = match half.early.as_mut().map(|k| k.try_open(&header, body)) {
            Some(Ok(r)) => Ok((r, true)),
            _ if early => Err(OpenError::BadTag),
            _ => match half.keys.as_mut() {
                Some(keys) => keys.open(&header, body).map(|r| (r, false)),
                None => return,
            },
        };
        let ((kind, plain), with_early) = match opened {
            Ok(r) => r,
            Err(e) => {
                let why = match e {
                    _ if early => {
                        "0-RTT early data that the key log's CLIENT_EARLY_TRAFFIC_SECRET does not open (or that it lacks)"
                    }
                    OpenError::BadTag if half.opened == 0 => {
                        "wrong key: the key log's secrets for this session do not open its records"
                    }
                    OpenError::BadTag => {
                        "bad tag: the record was changed on the way, or is not part of this session"
                    }
                    OpenError::TooShort => "too short to be an encrypted record",
                    OpenError::NoContentType => "decrypted to padding only: no content type",
                };
                self.fail(dir, Some(why.into()), out);
                return;
            }
        };
        half.opened += 1;
        match kind {
            23 => self.plaintext.push((dir, plain)),
            21 => out(Finding::Alert {
                dir,
                text: format!("{} (decrypted)", alert_text(&plain)),
            }),
            22 if tls13 => {
                let (mut finished, mut update, mut end_early) = (false, false, false);
                let mut rest = &plain[..];
                while !rest.is_empty() {
                    if half.inner_skip > 0 {
                        let n = half.inner_skip.min(rest.len());
                        half.inner_skip -= n;
                        rest = &rest[n..];
                        continue;
                    }
                    let n = (4 - half.inner.len()).min(rest.len());
                    half.inner.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                    if let [kind, a, b, c] = half.inner[..] {
                        match kind {
                            5 => end_early = true,
                            20 => finished = true,
                            24 => update = true,
                            _ => {}
                        }
                        half.inner_skip =
                            (usize::from(a) << 16) | (usize::from(b) << 8) | usize::from(c);
                        half.inner.clear();
                    }
                }
                if end_early || (with_early && finished) {
                    half.early = None;
                }
                // The next record uses the next keys (RFC 8446 7.2, 4.4.4).
                if finished
                    && !with_early
                    && let Some(next) = half.next.take()
                {
                    half.keys = Some(next);
                    half.inner.clear();
                    half.inner_skip = 0;
                } else if update && let Some(k) = half.keys.as_mut() {
                    k.update();
                }
            }
            _ => {}
        }
    }

    /// The connection is over: records still waiting for keys that never
    /// came are reported.
    pub fn finish(&mut self, keylog: Option<&mut KeyLog>, out: &mut impl FnMut(Finding)) {
        let Some(keylog) = keylog else { return };
        let waiting = !self.to_server.waiting.is_empty() || !self.to_client.waiting.is_empty();
        if waiting {
            self.find_keys(keylog, true, out);
        }
        if matches!(self.keys, Keys::Unknown) && waiting {
            self.keys = Keys::Missing(self.no_key());
        }
        self.give_up(keylog, out);
    }

    fn handshake(half: &mut Half, dir: Dir, out: &mut impl FnMut(Finding)) -> Vec<Hello> {
        let mut hellos = Vec::new();
        loop {
            let Some(h) = half.handshake.get(..4) else {
                return hellos;
            };
            let len = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
            if half.handshake.len() < 4 + len {
                return hellos;
            }
            let msg: Vec<u8> = half.handshake.drain(..4 + len).collect();
            match parse_tls_message_handshake(&msg) {
                Ok((_, TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)))) => {
                    if let Ok(random) = <[u8; 32]>::try_from(ch.random) {
                        hellos.push(Hello::Client { random });
                    }
                    let mut sni = None;
                    let mut alpn = Vec::new();
                    let mut versions = vec![version_name(ch.version.0)];
                    let mut groups = Vec::new();
                    let ext = ch
                        .ext
                        .and_then(|e| parse_tls_client_hello_extensions(e).ok())
                        .map(|(_, v)| v)
                        .unwrap_or_default();
                    for e in ext {
                        match e {
                            TlsExtension::SNI(names) => {
                                sni = names
                                    .first()
                                    .map(|(_, n)| String::from_utf8_lossy(n).into_owned());
                            }
                            TlsExtension::ALPN(list) => {
                                alpn = list
                                    .iter()
                                    .map(|p| String::from_utf8_lossy(p).into_owned())
                                    .collect();
                            }
                            TlsExtension::SupportedVersions(v) => {
                                versions = v.iter().map(|x| version_name(x.0)).collect();
                            }
                            TlsExtension::KeyShare(data) => groups = key_share_groups(data),
                            _ => {}
                        }
                    }
                    out(Finding::ClientHello {
                        sni,
                        alpn,
                        versions,
                        ciphers: ch.ciphers.iter().map(|c| cipher_name(c.0)).collect(),
                        groups,
                    });
                }
                Ok((_, TlsMessage::Handshake(TlsMessageHandshake::ServerHello(sh)))) => {
                    let mut version = version_name(sh.version.0);
                    let ext = sh
                        .ext
                        .and_then(|e| parse_tls_server_hello_extensions(e).ok())
                        .map(|(_, v)| v)
                        .unwrap_or_default();
                    for e in ext {
                        if let TlsExtension::SupportedVersions(v) = e
                            && let Some(x) = v.first()
                        {
                            version = version_name(x.0);
                        }
                    }
                    let tls13 = version == "TLS 1.3";
                    let random = <[u8; 32]>::try_from(sh.random).unwrap_or_default();
                    let retry = random == HRR_RANDOM;
                    hellos.push(Hello::Server {
                        random,
                        suite: sh.cipher.0,
                        tls13,
                    });
                    out(Finding::ServerHello {
                        version: if retry {
                            format!("{version} (HelloRetryRequest: the client must try again)")
                        } else {
                            version
                        },
                        cipher: cipher_name(sh.cipher.0),
                    });
                    if tls13 && !retry {
                        // Everything the server sends next is encrypted.
                        return hellos;
                    }
                }
                Ok(_) => {}
                Err(_) => out(Finding::Malformed {
                    dir,
                    what: "a TLS handshake message that does not parse".into(),
                }),
            }
        }
    }

    /// The traffic report, once the connection is over (`None` if no
    /// encrypted record was seen).
    pub fn traffic(&self) -> Option<Finding> {
        let first = self.first_ts?;
        Some(Finding::TlsTraffic {
            records_to_server: self.to_server.records,
            bytes_to_server: self.to_server.bytes,
            records_to_client: self.to_client.records,
            bytes_to_client: self.to_client.bytes,
            sizes: self.sizes.clone(),
            times: self.times.clone(),
            duration: (self.last_ts - first).max(0.0),
            decrypted: self.to_server.opened + self.to_client.opened,
            undecrypted: self.to_server.failed + self.to_client.failed,
        })
    }
}

/// What a suite's key exchange means for someone holding only the
/// server's private key.
fn key_exchange(id: u16) -> &'static str {
    match id {
        0x1301..=0x1305 => {
            "TLS 1.3 keys always come from an ephemeral (EC)DHE exchange, and the private key only signed it (forward secrecy): only the session secrets (a key log) open it"
        }
        0x009c | 0x009d | 0x002f | 0x0035 | 0x003c | 0x003d => {
            "RSA key exchange: the private key does hold the secret (no forward secrecy), but this sniffer does not decrypt RSA key exchange; use the session secrets (a key log)"
        }
        _ => {
            "the key exchange was ephemeral (ECDHE or DHE), and the private key only signed it (forward secrecy): only the session secrets (a key log) open it"
        }
    }
}

/// A plaintext alert's two bytes in words.
fn alert_text(body: &[u8]) -> String {
    match body {
        [level, code] => {
            let level = if *level == 2 { "fatal" } else { "warning" };
            format!("{level} {}", alert_name(*code))
        }
        _ => format!("(malformed, {} bytes)", body.len()),
    }
}

fn alert_name(code: u8) -> String {
    match code {
        0 => "close_notify".into(),
        10 => "unexpected_message".into(),
        20 => "bad_record_mac".into(),
        40 => "handshake_failure".into(),
        42 => "bad_certificate".into(),
        43 => "unsupported_certificate".into(),
        44 => "certificate_revoked".into(),
        45 => "certificate_expired".into(),
        46 => "certificate_unknown".into(),
        47 => "illegal_parameter".into(),
        48 => "unknown_ca".into(),
        50 => "decode_error".into(),
        51 => "decrypt_error".into(),
        70 => "protocol_version".into(),
        80 => "internal_error".into(),
        112 => "unrecognized_name".into(),
        116 => "certificate_required".into(),
        120 => "no_application_protocol".into(),
        other => format!("alert {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal TLS 1.3 ClientHello: SNI chat.lab, ALPN xmpp-client,
    /// versions 1.3 and 1.2, two suites, an x25519 key share.
    fn client_hello() -> Vec<u8> {
        let mut ext = Vec::new();
        // server_name
        let name = b"chat.lab";
        let mut sni = vec![0, (name.len() + 3) as u8, 0, 0, name.len() as u8];
        sni.extend_from_slice(name);
        ext.extend_from_slice(&[0, 0, 0, sni.len() as u8]);
        ext.extend_from_slice(&sni);
        // ALPN
        let p = b"xmpp-client";
        let mut alpn = vec![0, (p.len() + 1) as u8, p.len() as u8];
        alpn.extend_from_slice(p);
        ext.extend_from_slice(&[0, 16, 0, alpn.len() as u8]);
        ext.extend_from_slice(&alpn);
        // supported_versions
        ext.extend_from_slice(&[0, 43, 0, 5, 4, 3, 4, 3, 3]);
        // key_share: x25519 with a 32-byte key
        ext.extend_from_slice(&[0, 51, 0, 38, 0, 36, 0, 0x1d, 0, 32]);
        ext.extend_from_slice(&[7; 32]);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[1; 32]); // random
        body.push(0); // session id
        body.extend_from_slice(&[0, 4, 0x13, 0x01, 0x13, 0x02]); // suites
        body.extend_from_slice(&[1, 0]); // compression
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
        hs.extend_from_slice(&body);
        let mut rec = vec![22, 3, 1, (hs.len() >> 8) as u8, hs.len() as u8];
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn client_hello_metadata_even_split_into_single_bytes() {
        let rec = client_hello();
        let mut t = TlsConn::default();
        let mut found = Vec::new();
        for b in &rec {
            t.feed(Dir::ToServer, std::slice::from_ref(b), 0.0, &mut |f| {
                found.push(f)
            });
        }
        assert_eq!(
            found,
            [Finding::ClientHello {
                sni: Some("chat.lab".into()),
                alpn: vec!["xmpp-client".into()],
                versions: vec!["TLS 1.3".into(), "TLS 1.2".into()],
                ciphers: vec![
                    "TLS_AES_128_GCM_SHA256".into(),
                    "TLS_AES_256_GCM_SHA384".into()
                ],
                groups: vec!["x25519".into()],
            }]
        );
    }

    #[test]
    fn application_data_is_counted_not_read_and_alerts_are_named() {
        let mut t = TlsConn::default();
        let mut found = Vec::new();
        let mut on = |f| found.push(f);
        t.feed(Dir::ToClient, &[21, 3, 3, 0, 2, 2, 48], 1.0, &mut on);
        t.feed(
            Dir::ToServer,
            &[23, 3, 3, 0, 3, 1, 2, 3, 23, 3, 3, 0, 1],
            2.0,
            &mut on,
        );
        t.feed(Dir::ToServer, &[9], 2.5, &mut on);
        t.feed(Dir::ToClient, &[23, 3, 3, 0, 2, 0, 0], 3.0, &mut on);
        assert_eq!(
            found,
            [Finding::Alert {
                dir: Dir::ToClient,
                text: "fatal unknown_ca".into()
            }]
        );
        match t.traffic().unwrap() {
            Finding::TlsTraffic {
                records_to_server,
                bytes_to_server,
                records_to_client,
                sizes,
                times,
                duration,
                ..
            } => {
                assert_eq!(
                    (records_to_server, bytes_to_server, records_to_client),
                    (2, 4, 1)
                );
                assert_eq!(sizes, [3, 1, -2]);
                assert_eq!(times.len(), sizes.len());
                assert_eq!(times.first(), Some(&0.0));
                assert!((duration - 1.0).abs() < 1e-9);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_and_oversized_records_stop_the_dissector() {
        let mut t = TlsConn::default();
        let mut found = Vec::new();
        t.feed(Dir::ToServer, &[22, 3, 3, 0xff, 0xff], 0.0, &mut |f| {
            found.push(f)
        });
        t.feed(Dir::ToServer, &client_hello(), 0.0, &mut |f| found.push(f));
        assert_eq!(found.len(), 1);
        assert!(matches!(found[0], Finding::Malformed { .. }));
        // Every prefix of a hello is fine: it just waits for more.
        for cut in 0..client_hello().len() {
            let mut t = TlsConn::default();
            t.feed(Dir::ToServer, &client_hello()[..cut], 0.0, &mut |_| {});
        }
    }
}
