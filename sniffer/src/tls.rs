//! TLS as seen from the wire: what stays visible when the content does not.
//!
//! The records' 5-byte headers are always in clear, so their count, sizes
//! and timing leak (traffic analysis). The hellos are in clear too: the
//! ClientHello names the server (SNI) and lists what the client supports;
//! the ServerHello says what was chosen. Everything after is ciphertext:
//! this module does not try, and cannot, read it.

use tls_parser::{
    TlsCipherSuite, TlsExtension, TlsMessage, TlsMessageHandshake,
    parse_tls_client_hello_extensions, parse_tls_message_handshake,
    parse_tls_server_hello_extensions,
};

use crate::findings::Finding;
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
}

impl TlsConn {
    /// Feeds bytes of one direction.
    pub fn feed(&mut self, dir: Dir, data: &[u8], ts: f64, out: &mut impl FnMut(Finding)) {
        let half = dir.pick(&mut self.to_server, &mut self.to_client);
        if half.broken {
            return;
        }
        half.buf.extend_from_slice(data);
        let mut at = 0usize;
        while let Some(hdr) = half.buf.get(at..at + 5) {
            let (kind, len) = (hdr[0], usize::from(u16::from_be_bytes([hdr[3], hdr[4]])));
            if !(20..=24).contains(&kind) || hdr[1] != 3 || len > MAX_RECORD {
                half.broken = true;
                out(Finding::Malformed {
                    dir,
                    what: format!("not a TLS record (type {kind}, length {len})"),
                });
                half.buf.clear();
                return;
            }
            let Some(body) = half.buf.get(at + 5..at + 5 + len) else {
                break;
            };
            let body = body.to_vec();
            at += 5 + len;
            match kind {
                22 if !half.encrypted => {
                    if half.handshake.len() + body.len() <= MAX_HANDSHAKE_BUFFER {
                        half.handshake.extend_from_slice(&body);
                    }
                    Self::handshake(half, dir, out);
                }
                20 => half.encrypted = true,
                21 => out(Finding::Alert {
                    dir,
                    text: if half.encrypted || body.len() != 2 {
                        format!("(encrypted, {} bytes)", body.len())
                    } else {
                        let level = if body[0] == 2 { "fatal" } else { "warning" };
                        format!("{level} {}", alert_name(body[1]))
                    },
                }),
                23 => {
                    half.encrypted = true;
                    half.records += 1;
                    half.bytes += len as u64;
                    let first = *self.first_ts.get_or_insert(ts);
                    if self.sizes.len() < MAX_SIZES {
                        let signed = len as i64;
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
                _ => {}
            }
        }
        half.buf.drain(..at);
    }

    fn handshake(half: &mut Half, dir: Dir, out: &mut impl FnMut(Finding)) {
        loop {
            let Some(h) = half.handshake.get(..4) else {
                return;
            };
            let len = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
            if half.handshake.len() < 4 + len {
                return;
            }
            let msg: Vec<u8> = half.handshake.drain(..4 + len).collect();
            match parse_tls_message_handshake(&msg) {
                Ok((_, TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)))) => {
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
                    out(Finding::ServerHello {
                        version,
                        cipher: cipher_name(sh.cipher.0),
                    });
                    if tls13 {
                        // Everything the server sends next is encrypted.
                        half.encrypted = true;
                        return;
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
        })
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
