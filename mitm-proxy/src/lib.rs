//! `mitm-proxy`: the attacker who sits in the path between an XMPP client
//! and its server, reads both directions, and changes what it can.
//!
//! The sniffer shows what a passive eavesdropper reads. This crate is the
//! active one: it relays every byte, parses both directions with the same
//! `protocol` parser the chat uses, and applies the attacks it was told to.
//! At the end of each connection it says what it obtained, or that the
//! client refused. Every attack names the client setting that defeats it
//! ([`attack::Attack::info`]); the end-to-end tests prove both outcomes.
//!
//! - [`attack`]: the attacks, what each does, and what defeats it.
//! - [`event`]: what the proxy reports, one line (text or JSON) per event.
//! - [`xmpp`]: one direction of an XMPP stream cut into forwardable units
//!   (header, element, close) with their exact bytes, then raw bytes once
//!   TLS starts.
//! - [`records`]: TLS records counted as they go past (and one bit
//!   flipped, for `corrupt-tls`).
//! - [`intercept`]: forged certificates (self-signed, the attacker's CA,
//!   or given), the `ca` command, and the key log.
//! - [`replay`]: a recorded SASL exchange played again.
//! - [`rules`]: `--rules FILE` for `tamper`: what to change in which stanza.
//! - [`omemo`]: `inject-omemo-device`, the attacker's own OMEMO device slipped
//!   into a contact's device list, and the messages it then reads.
//! - [`pcap`]: `--write`, both legs of each connection as a capture.
//! - [`tls`]: the proxy's own TLS client to the server (for stripping
//!   STARTTLS from a server that requires it).
//! - [`conn`]: one proxied connection: setup, the two pumps, the verdict.
//! - [`verdict`]: what each attack obtained, from what the pumps saw.
//! - [`shared`]: what every connection shares, and the printer of events.
//! - [`proxy`]: the listener, loopback only, and the end-of-run summary.
//!
//! Everything here is an attack tool for a classroom: it listens and
//! connects on loopback only (127.0.0.0/8, ::1), and refuses anything else.
#![forbid(unsafe_code)]

pub mod attack;
pub mod conn;
pub mod event;
pub mod intercept;
pub mod omemo;
pub mod pcap;
pub mod proxy;
pub mod records;
pub mod replay;
pub mod rules;
pub mod shared;
pub mod tls;
pub mod verdict;
pub mod xmpp;
