//! The sniffer: what an attacker on the wire sees of the twin chat.
//!
//! - [`capture`]: frames from pcap/pcapng files or a live interface
//!   (libpcap), and the capture written back.
//! - [`decode`]: frames to TCP segments (Ethernet, Linux SLL, loopback, raw
//!   IP; IPv4 and IPv6).
//! - [`reassembly`]: TCP segments to each connection's two ordered byte
//!   streams, with gaps reported and memory bounded.
//! - [`xmpp`]: plaintext XMPP through the `protocol` crate's lenient parser:
//!   credentials, messages, contacts, presence, files, the STARTTLS switch.
//! - [`http`]: plain HTTP/1 bodies (a chat server's file upload) as files.
//! - [`tls`]: TLS records and hellos: SNI, ALPN, versions, suites, key
//!   shares, alerts, and the sizes and timing of encrypted records.
//! - [`keylog`]: TLS session secrets from an NSS key log (`SSLKEYLOGFILE`).
//! - [`decrypt`]: TLS 1.2 and 1.3 records opened with those secrets.
//! - [`dissect`]: one connection's bytes to findings, protocols recognised
//!   by content on any port, TLS opened with a key log.
//! - [`pool`]: connections read on several threads, the output the same.
//! - [`analyze`]: the pipeline: frames in, findings and per-connection
//!   summaries out.
//! - [`guard`]: the leak check's needle search (plain, hex, base64 at every
//!   alignment), streaming, and its verdict lines.
//! - [`findings`]: what was learned, one [`findings::Record`] per finding,
//!   shown as a text line or a JSON object from the same value.
//! - [`report`]: the summary table of what leaked, per connection (and its
//!   JSON lines), and a followed stream's bytes made safe to print.
//! - [`html`]: the same as one self-contained HTML page to hand out.
//! - [`jsonl`]: `--json` output, one line of JSON per serialized value.
#![forbid(unsafe_code)]

pub mod analyze;
pub mod capture;
pub mod decode;
pub mod decrypt;
pub mod dissect;
pub mod findings;
pub mod guard;
pub mod html;
pub mod http;
pub mod jsonl;
pub mod keylog;
pub mod pool;
pub mod reassembly;
pub mod report;
pub mod tls;
pub mod xmpp;
