//! Plaintext XMPP, read the way an attacker on the path reads it: both
//! directions of a connection through the `protocol` crate's lenient
//! parser, and everything worth stealing pulled out of the stanzas.
//!
//! Nothing here needs our chat: any XMPP client and server (Prosody,
//! slixmpp, ...) leak the same things when they talk without TLS.
//!
//! Files sent in-band (XEP-0047 blocks, offered with XEP-0096 and an
//! XEP-0300 hash) are rebuilt in `seq` order, not arrival order: a block
//! that arrives early waits for the ones before it, missing and duplicate
//! blocks are counted, and the caller compares the result with the offered
//! SHA-256. Otherwise a sender (or someone injecting stanzas) could have the
//! sniffer report a file it never sent as complete.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use protocol::ns;
use protocol::parser::{ElementRef, EventRef, Mode, StreamParser};
use sha2::{Digest, Sha256};

use crate::findings::Finding;
use crate::reassembly::Dir;

/// Most bytes of in-band files kept for one connection at a time: the
/// sniffer stays bounded whatever a capture holds.
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;

/// Most in-band files followed at once on one connection. Without a cap, a
/// stream of offers (or data for made-up stream ids) would grow the table
/// without end.
pub const MAX_OPEN_FILES: usize = 16;

/// Bytes charged against [`MAX_FILE_BYTES`] for each in-band block held
/// back because it came before its turn, on top of its data: its map entry
/// and allocation. Without it, a flood of empty blocks with distinct `seq`
/// numbers would cost memory while counting as nothing.
pub const EARLY_BLOCK_COST: usize = 64;

/// Where a connection switched to TLS: what each direction's parser had
/// consumed, and the bytes already fed that belong to TLS.
#[derive(Debug)]
pub struct Switch {
    /// Stream offset of the first TLS byte, client to server.
    pub to_server_offset: u64,
    /// Its bytes already buffered.
    pub to_server_rest: Vec<u8>,
    /// Stream offset of the first TLS byte, server to client.
    pub to_client_offset: u64,
    /// Its bytes already buffered.
    pub to_client_rest: Vec<u8>,
}

/// A file being carried over IBB.
#[derive(Debug, Default)]
struct File {
    name: String,
    offered_size: Option<u64>,
    /// The SHA-256 offered (XEP-0300), decoded; empty if it was not base64.
    offered_sha256: Option<Vec<u8>>,
    /// The blocks taken so far, in `seq` order.
    data: Vec<u8>,
    /// Number of the next block due, counted from 0 without wrapping: its
    /// `seq` is this modulo 65536.
    next: u64,
    /// Blocks that came before their turn, by number.
    early: BTreeMap<u64, Vec<u8>>,
    /// What `early` costs, [`EARLY_BLOCK_COST`] included.
    early_cost: usize,
    /// Block numbers never seen (known once the transfer is over).
    missing: u64,
    /// Blocks seen again after they were taken or while they waited.
    duplicates: u64,
    /// Blocks that came before one they follow.
    reordered: u64,
    truncated: bool,
    done: bool,
}

impl File {
    /// Bytes held, as charged against [`MAX_FILE_BYTES`].
    fn held(&self) -> usize {
        self.data.len() + self.early_cost
    }

    /// Takes the block numbered `seq`, holding at most `room` more bytes.
    fn block(&mut self, seq: u16, bytes: Vec<u8>, room: usize) {
        // Distance from the block due, in a sequence space that wraps from
        // 65535 to 0 (XEP-0047 2.2): behind it is a block already taken.
        let ahead = seq.wrapping_sub(self.next as u16) as i16;
        if ahead < 0 {
            self.duplicates += 1;
            return;
        }
        if ahead == 0 {
            if bytes.len() <= room {
                self.data.extend_from_slice(&bytes);
            } else {
                self.truncated = true;
            }
            self.next += 1;
            // The blocks it was holding up.
            while let Some(e) = self.early.first_entry()
                && *e.key() == self.next
            {
                let b = e.remove();
                self.early_cost -= b.len() + EARLY_BLOCK_COST;
                self.data.extend_from_slice(&b);
                self.next += 1;
            }
            return;
        }
        let at = self.next + ahead as u64;
        if self.early.contains_key(&at) {
            // Keep the first copy, as a receiver that takes a block once.
            self.duplicates += 1;
            return;
        }
        // Held back within the same bound as the file itself: a sender
        // that never sends block 0 cannot make the sniffer buffer more.
        let cost = bytes.len() + EARLY_BLOCK_COST;
        if cost > room {
            self.truncated = true;
            return;
        }
        self.reordered += 1;
        self.early_cost += cost;
        self.early.insert(at, bytes);
    }

    /// The transfer is over: blocks still waiting are taken in order, and
    /// the numbers before them that never came are counted missing.
    fn finish(&mut self) {
        for (at, b) in std::mem::take(&mut self.early) {
            self.missing += at - self.next;
            self.data.extend_from_slice(&b);
            self.next = at + 1;
        }
        self.early_cost = 0;
    }

    /// What the caller reports.
    fn carried(mut self, sid: String, closed: bool) -> CarriedFile {
        self.finish();
        let complete = closed
            && !self.truncated
            && self.missing == 0
            && self
                .offered_size
                .is_none_or(|s| s == self.data.len() as u64);
        CarriedFile {
            sid,
            name: self.name,
            offered_size: self.offered_size,
            offered_sha256: self.offered_sha256,
            data: self.data,
            complete,
            missing_blocks: self.missing,
            duplicate_blocks: self.duplicates,
            reordered_blocks: self.reordered,
        }
    }
}

/// A file recovered from In-Band Bytestreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarriedFile {
    /// The stream id.
    pub sid: String,
    /// The name the sender offered (unsafe: sanitise before use).
    pub name: String,
    /// The size the sender offered.
    pub offered_size: Option<u64>,
    /// The SHA-256 the sender offered (XEP-0300), decoded; empty when it
    /// was not valid base64.
    pub offered_sha256: Option<Vec<u8>>,
    /// The bytes recovered, in block order.
    pub data: Vec<u8>,
    /// The stream was closed, no block was missing or dropped, and the
    /// offered size (if any) matches.
    pub complete: bool,
    /// Block numbers that never arrived before later ones.
    pub missing_blocks: u64,
    /// Blocks that arrived more than once (the first copy is kept).
    pub duplicate_blocks: u64,
    /// Blocks that arrived before one they follow, and were put in order.
    pub reordered_blocks: u64,
}

/// A SCRAM exchange being watched.
#[derive(Debug, Default)]
struct Scram {
    mechanism: String,
    user: String,
    salt: Option<String>,
    iterations: Option<String>,
}

/// One XMPP connection, both directions.
#[derive(Debug)]
pub struct XmppConn {
    to_server: StreamParser,
    to_client: StreamParser,
    /// What the stanzas taught so far. Apart from the parsers, so that a
    /// stanza lent by one (`next_ref`) can be read into it.
    seen: Seen,
}

/// What one connection's stanzas taught the sniffer so far.
#[derive(Debug, Default)]
struct Seen {
    scram: Option<Scram>,
    authenticated: bool,
    /// In-band files by stream id.
    files: HashMap<String, File>,
    /// Finished files, ready for the caller to report and export.
    finished: Vec<CarriedFile>,
    /// Read inside TLS (with a key log): a `<proceed/>` here switches
    /// nothing, and is an element like any other.
    inside_tls: bool,
}

impl Default for XmppConn {
    fn default() -> Self {
        XmppConn {
            to_server: StreamParser::new(Mode::Lenient),
            to_client: StreamParser::new(Mode::Lenient),
            seen: Seen::default(),
        }
    }
}

impl XmppConn {
    /// The XMPP read inside TLS from what a key log opened.
    pub fn inside_tls() -> XmppConn {
        let mut x = XmppConn::default();
        x.seen.inside_tls = true;
        x
    }

    /// The files whose transfer ended, for the caller to report and export.
    pub fn take_finished(&mut self) -> Vec<CarriedFile> {
        std::mem::take(&mut self.seen.finished)
    }
}

fn sasl_text(el: ElementRef<'_>) -> Option<Vec<u8>> {
    let t = el.text();
    let t = t.trim();
    if t.is_empty() || t == "=" {
        return None;
    }
    B64.decode(t).ok()
}

/// `k=v` attributes of a SCRAM message.
fn scram_attr<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    msg.split(',')
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Bytes as lowercase hex.
pub fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 as hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

impl CarriedFile {
    /// SHA-256 of the recovered bytes, hex, and whether it is the one
    /// offered (`None`: no SHA-256 was offered).
    pub fn sha256(&self) -> (String, Option<bool>) {
        let digest = Sha256::digest(&self.data);
        let matches = self
            .offered_sha256
            .as_deref()
            .map(|o| o == digest.as_slice());
        (hex(&digest), matches)
    }
}

impl XmppConn {
    /// Feeds bytes of one direction; findings go to `out`. Returns where
    /// the connection switched to TLS, when `<proceed/>` was seen.
    pub fn feed(
        &mut self,
        dir: Dir,
        data: &[u8],
        _ts: f64,
        out: &mut impl FnMut(Finding),
    ) -> Option<Switch> {
        let parser = dir.pick(&mut self.to_server, &mut self.to_client);
        parser.feed(data);
        loop {
            // Each stanza is lent, not built: most of a capture's stanzas
            // are read for a few attributes and a body, and a tree of every
            // child cost most of the sniffer's time (`ElementRef`).
            match parser.next_ref() {
                Ok(None) => return None,
                Ok(Some(EventRef::StreamOpen(h))) => out(Finding::Stream {
                    dir,
                    to: h.to.clone(),
                    from: h.from.clone(),
                }),
                Ok(Some(EventRef::StreamClose)) => {}
                Ok(Some(EventRef::Element(el))) => {
                    if dir == Dir::ToClient && !self.seen.inside_tls && el.is("proceed", ns::TLS) {
                        return Some(self.switch());
                    }
                    self.seen.element(dir, el, out);
                }
                Err(e) => out(Finding::Malformed {
                    dir,
                    what: e.to_string(),
                }),
            }
        }
    }

    /// After `<proceed/>`: both directions are TLS from here on.
    fn switch(&mut self) -> Switch {
        let to_client_offset = self.to_client.offset();
        let to_client_rest = self.to_client.take_unconsumed();
        let to_server_offset = self.to_server.offset();
        let to_server_rest = self.to_server.take_unconsumed();
        Switch {
            to_server_offset,
            to_server_rest,
            to_client_offset,
            to_client_rest,
        }
    }

    /// Files whose transfer never closed (the capture ended first).
    pub fn unfinished(&mut self) {
        self.seen.unfinished();
    }
}

/// The OMEMO `<encrypted/>` (either version) of a message, as what a
/// sniffer sees of it: who, which devices, whether it starts a session,
/// and how big; never the text.
fn encrypted(el: ElementRef<'_>) -> Option<Finding> {
    let (scheme, ns, kex) = [
        ("OMEMO 2", "urn:xmpp:omemo:2", "kex"),
        ("OMEMO 0.3", "eu.siacs.conversations.axolotl", "prekey"),
    ]
    .into_iter()
    .find(|(_, ns, _)| el.has_child("encrypted", ns))?;
    let enc = el.child("encrypted", ns)?;
    let header = enc.child("header", ns);
    let mut devices = Vec::new();
    let mut key_exchange = false;
    if let Some(h) = header {
        // OMEMO 2 groups the keys by JID; 0.3 lists them in the header.
        let groups = h.elements().filter(|g| g.is("keys", ns));
        let keys = h
            .elements()
            .filter(|k| k.is("key", ns))
            .chain(groups.flat_map(|g| g.elements().filter(|k| k.is("key", ns))));
        for k in keys.take(crate::xmpp::MAX_DEVICES_SHOWN) {
            devices.extend(k.attr("rid").and_then(|r| r.parse::<u32>().ok()));
            key_exchange |= k.attr(kex).is_some_and(|f| f == "true" || f == "1");
        }
    }
    let payload_bytes = enc
        .child_text("payload", ns)
        .map_or(0, |p| p.trim().len() / 4 * 3);
    let attr = |n: &str| el.attr(n).map(Cow::into_owned);
    Some(Finding::EncryptedMessage {
        from: attr("from"),
        to: attr("to"),
        scheme,
        sender_device: header
            .and_then(|h| h.attr("sid"))
            .and_then(|s| s.parse().ok()),
        devices,
        key_exchange,
        payload_bytes,
        stamp: el
            .child("delay", ns::DELAY)
            .and_then(|d| d.attr("stamp"))
            .map(Cow::into_owned),
    })
}

/// How many recipient devices of one encrypted message are listed: a
/// message can name thousands (a flood), the report needs a few.
pub const MAX_DEVICES_SHOWN: usize = 64;

impl Seen {
    fn element(&mut self, dir: Dir, el: ElementRef<'_>, out: &mut impl FnMut(Finding)) {
        let attr = |n: &str| el.attr(n).map(Cow::into_owned);
        match (el.name(), el.ns()) {
            ("message", ns::CLIENT | ns::SERVER) => {
                if let Some(e2e) = encrypted(el) {
                    // End to end (OMEMO): the body, if any, is the
                    // fallback text for clients without OMEMO, not the
                    // message; what is left to see is metadata.
                    out(e2e);
                } else if let Some(body) = el.child_text("body", el.ns()) {
                    out(Finding::Message {
                        from: attr("from"),
                        to: attr("to"),
                        kind: attr("type").unwrap_or_else(|| "normal".into()),
                        body: body.into_owned(),
                        stamp: el
                            .child("delay", ns::DELAY)
                            .and_then(|d| d.attr("stamp"))
                            .map(Cow::into_owned),
                    });
                }
                // A copy of another message inside this one (carbons,
                // XEP-0280; archive results, XEP-0313): on the wire it is as
                // readable as the original, so it is dissected the same.
                for wrapper in el.elements() {
                    if let Some(inner) = wrapper
                        .child("forwarded", ns::FORWARD)
                        .and_then(|f| f.child("message", ns::CLIENT))
                    {
                        self.element(dir, inner, out);
                    }
                }
            }
            ("features", ns::STREAM) => {
                let tls = el.child("starttls", ns::TLS);
                out(Finding::Features {
                    starttls: tls.is_some(),
                    starttls_required: tls.is_some_and(|t| t.has_child("required", ns::TLS)),
                    mechanisms: el
                        .child("mechanisms", ns::SASL)
                        .map(|m| m.elements().map(|c| c.text().into_owned()).collect())
                        .unwrap_or_default(),
                    registration: el.has_child("register", ns::REGISTER_FEATURE),
                });
            }
            ("error", ns::STREAM) => {
                let condition = el
                    .elements()
                    .find(|c| c.ns() == ns::STREAM_ERRORS && c.name() != "text")
                    .map_or("undefined-condition".to_string(), |c| c.name().to_string());
                out(Finding::StreamError { dir, condition });
            }
            ("auth", ns::SASL) => self.auth(el, out),
            ("challenge", ns::SASL) => {
                if let (Some(s), Some(msg)) = (self.scram.as_mut(), sasl_text(el)) {
                    let m = String::from_utf8_lossy(&msg);
                    s.salt = scram_attr(&m, "s").map(str::to_string);
                    s.iterations = scram_attr(&m, "i").map(str::to_string);
                }
            }
            ("response", ns::SASL) => {
                if let (Some(s), Some(msg)) = (self.scram.as_ref(), sasl_text(el)) {
                    let m = String::from_utf8_lossy(&msg);
                    out(Finding::Credential {
                        kind: "scram",
                        user: s.user.clone(),
                        password: None,
                        detail: Some(format!(
                            "mechanism={} salt={} iterations={} proof={}",
                            s.mechanism,
                            s.salt.as_deref().unwrap_or("?"),
                            s.iterations.as_deref().unwrap_or("?"),
                            scram_attr(&m, "p").unwrap_or("?")
                        )),
                        note: "not the password, but salt, iterations and proof allow an offline dictionary attack",
                    });
                }
            }
            ("success", ns::SASL) => self.authenticated = true,
            (name, ns::CLIENT | ns::SERVER) => match name {
                "iq" => self.iq(el, out),
                "presence" => {
                    let kind = attr("type");
                    match kind.as_deref() {
                        None | Some("unavailable") => out(Finding::Presence {
                            from: attr("from"),
                            to: attr("to"),
                            available: kind.is_none(),
                            show: el.child_text("show", el.ns()).map(Cow::into_owned),
                            status: el.child_text("status", el.ns()).map(Cow::into_owned),
                        }),
                        Some(k @ ("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed")) => {
                            out(Finding::Subscription {
                                from: attr("from"),
                                to: attr("to"),
                                kind: k.to_string(),
                            })
                        }
                        _ => {}
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn auth(&mut self, el: ElementRef<'_>, out: &mut impl FnMut(Finding)) {
        let mech = el.attr("mechanism").unwrap_or_default().into_owned();
        let msg = sasl_text(el);
        if mech == "PLAIN" {
            if let Some(creds) = msg.and_then(|m| protocol::sasl::parse_plain(&m).ok()) {
                out(Finding::Credential {
                    kind: "sasl-plain",
                    user: creds.username,
                    password: Some(creds.password),
                    detail: None,
                    note: "SASL PLAIN is only base64: an encoding, not encryption",
                });
            }
        } else if mech.starts_with("SCRAM-") {
            let m = msg.map(|m| String::from_utf8_lossy(&m).into_owned());
            let user = m
                .as_deref()
                .and_then(|m| scram_attr(m, "n"))
                .unwrap_or("?")
                .to_string();
            self.scram = Some(Scram {
                mechanism: mech,
                user,
                ..Default::default()
            });
        }
    }

    fn iq(&mut self, el: ElementRef<'_>, out: &mut impl FnMut(Finding)) {
        let kind = el.attr("type").unwrap_or_default();
        for q in el.elements() {
            match (q.name(), q.ns()) {
                ("query", ns::REGISTER) if kind == "set" => {
                    if let (Some(user), Some(pw)) = (
                        q.child_text("username", ns::REGISTER),
                        q.child_text("password", ns::REGISTER),
                    ) {
                        out(Finding::Credential {
                            kind: if self.authenticated {
                                "password-change"
                            } else {
                                "register"
                            },
                            user: user.into_owned(),
                            password: Some(pw.into_owned()),
                            detail: None,
                            note: "in-band registration sends the password itself",
                        });
                    }
                }
                ("bind", ns::BIND) if kind == "result" => {
                    if let Some(jid) = q.child_text("jid", ns::BIND) {
                        out(Finding::BoundJid {
                            jid: jid.into_owned(),
                        });
                    }
                }
                ("query", ns::ROSTER) if kind == "result" || kind == "set" => {
                    for item in q.elements().filter(|i| i.is("item", ns::ROSTER)) {
                        if let Some(jid) = item.attr("jid") {
                            out(Finding::Contact {
                                jid: jid.into_owned(),
                                subscription: item.attr("subscription").map(Cow::into_owned),
                                name: item.attr("name").map(Cow::into_owned),
                            });
                        }
                    }
                }
                ("si", ns::SI) if kind == "set" => {
                    if let (Some(sid), Some(file)) = (q.attr("id"), q.child("file", ns::SI_FILE)) {
                        if self.files.len() >= MAX_OPEN_FILES {
                            continue;
                        }
                        let offered_sha256 = file
                            .elements()
                            .find(|h| {
                                h.is("hash", ns::HASHES)
                                    && h.attr("algo").as_deref() == Some("sha-256")
                            })
                            .map(|h| B64.decode(h.text().trim()).unwrap_or_default());
                        self.files.insert(
                            sid.into_owned(),
                            File {
                                name: file
                                    .attr("name")
                                    .map_or_else(|| "file".into(), Cow::into_owned),
                                offered_size: file.attr("size").and_then(|s| s.parse().ok()),
                                offered_sha256,
                                ..Default::default()
                            },
                        );
                    }
                }
                ("data", ns::IBB) => {
                    let sid = q.attr("sid").unwrap_or_default().into_owned();
                    if !self.files.contains_key(&sid) && self.files.len() >= MAX_OPEN_FILES {
                        continue;
                    }
                    let room = MAX_FILE_BYTES.saturating_sub(self.held());
                    let f = self.files.entry(sid).or_insert_with(|| File {
                        name: "unnamed".into(),
                        ..Default::default()
                    });
                    // A block without a valid seq or base64 is not taken;
                    // its number shows as missing, so the file is not
                    // reported complete.
                    let seq = q.attr("seq").and_then(|s| s.parse::<u16>().ok());
                    if let (Some(seq), Ok(bytes)) = (seq, B64.decode(q.text().trim())) {
                        f.block(seq, bytes, room);
                    }
                }
                ("close", ns::IBB) => {
                    let sid = q.attr("sid").unwrap_or_default().into_owned();
                    if let Some(mut f) = self.files.remove(&sid)
                        && !f.done
                    {
                        f.done = true;
                        self.finished.push(f.carried(sid, true));
                    }
                }
                _ => {}
            }
        }
    }

    /// Files whose transfer never closed (the capture ended first).
    pub fn unfinished(&mut self) {
        for (sid, f) in self.files.drain() {
            if !f.data.is_empty() || !f.early.is_empty() {
                self.finished.push(f.carried(sid, false));
            }
        }
    }

    /// Bytes of in-band files held, as charged against [`MAX_FILE_BYTES`].
    fn held(&self) -> usize {
        self.files.values().map(File::held).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(to_server: &[&str], to_client: &[&str]) -> Vec<Finding> {
        let mut c = XmppConn::default();
        let mut found = Vec::new();
        // Interleave like a real exchange: client line, server line, ...
        for i in 0..to_server.len().max(to_client.len()) {
            if let Some(s) = to_server.get(i) {
                c.feed(Dir::ToServer, s.as_bytes(), 0.0, &mut |f| found.push(f));
            }
            if let Some(s) = to_client.get(i) {
                c.feed(Dir::ToClient, s.as_bytes(), 0.0, &mut |f| found.push(f));
            }
        }
        found
    }

    const HDR: &str = "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
    const SHDR: &str = "<?xml version='1.0'?><stream:stream from='localhost' id='x' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

    /// Whatever crossed the wire is read, wherever it sits in the stream:
    /// an attacker sees it all, so the sniffer must too. After each of the
    /// places a dissector might stop (a stream close, a SASL failure, a
    /// stream error, bytes before any stream header), a PLAIN credential, a
    /// message and an in-band file chunk are still found.
    #[test]
    fn every_byte_is_read_after_a_close_a_failure_an_error_or_before_a_header() {
        const AUTH: &str = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHMzY3JldA==</auth>";
        const MSG: &str = "<message to='bob@localhost' type='chat'><body>after it</body></message>";
        const OPEN: &str = "<iq type='set' id='o'><open xmlns='http://jabber.org/protocol/ibb' sid='s1' block-size='4096'/></iq>";
        // "secret file" in base64.
        const DATA: &str = "<iq type='set' id='d'><data xmlns='http://jabber.org/protocol/ibb' sid='s1' seq='0'>c2VjcmV0IGZpbGU=</data></iq>";
        const CLOSE: &str =
            "<iq type='set' id='c'><close xmlns='http://jabber.org/protocol/ibb' sid='s1'/></iq>";
        let cases: [(&str, Vec<String>); 4] = [
            ("a stream close", vec![HDR.into(), "</stream:stream>".into(), HDR.into()]),
            (
                "a SASL failure",
                vec![
                    HDR.into(),
                    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHdyb25n</auth>".into(),
                    "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>".into(),
                ],
            ),
            (
                "a stream error",
                vec![
                    HDR.into(),
                    "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>".into(),
                ],
            ),
            ("bytes before any stream header", vec!["garbage \x01 <<< not xml".into()]),
        ];
        for (what, before) in cases {
            let mut c = XmppConn::default();
            let mut found = Vec::new();
            for b in &before {
                c.feed(Dir::ToServer, b.as_bytes(), 0.0, &mut |f| found.push(f));
            }
            for b in [AUTH, MSG, OPEN, DATA, CLOSE] {
                c.feed(Dir::ToServer, b.as_bytes(), 0.0, &mut |f| found.push(f));
            }
            assert!(
                found.iter().any(
                    |f| matches!(f, Finding::Credential { password: Some(p), .. } if p == "s3cret")
                ),
                "the password after {what}: {found:#?}"
            );
            assert!(
                found
                    .iter()
                    .any(|f| matches!(f, Finding::Message { body, .. } if body == "after it")),
                "the message after {what}: {found:#?}"
            );
            assert!(
                c.seen.finished.iter().any(|f| f.data == b"secret file"),
                "the file after {what}: {:#?}",
                c.seen.finished.len()
            );
        }
    }

    /// An OMEMO message (either version) is metadata to the eavesdropper:
    /// who, which devices, a key exchange, a size; its fallback body is
    /// not taken for the message.
    #[test]
    fn an_omemo_message_shows_its_metadata_not_its_text() {
        let cases = [
            (
                "<message from='al@x/a' to='bob@x' type='chat'><encrypted xmlns='urn:xmpp:omemo:2'>\
                 <header sid='11'><keys jid='bob@x'><key rid='22' kex='true'>AAAA</key></keys>\
                 <keys jid='al@x'><key rid='33'>AAAA</key></keys></header>\
                 <payload>AAAAAAAA</payload></encrypted><body>I sent you an OMEMO encrypted message</body></message>",
                "OMEMO 2",
                vec![22, 33],
                true,
                6,
            ),
            (
                "<message to='bob@x' type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'>\
                 <header sid='11'><key rid='22'>AAAA</key><iv>AAAA</iv></header></encrypted></message>",
                "OMEMO 0.3",
                vec![22],
                false,
                0,
            ),
        ];
        for (xml, want_scheme, want_devices, want_kex, want_bytes) in cases {
            let mut c = XmppConn::default();
            let mut found = Vec::new();
            for b in [HDR, xml] {
                c.feed(Dir::ToServer, b.as_bytes(), 0.0, &mut |f| found.push(f));
            }
            assert!(
                !found.iter().any(|f| matches!(f, Finding::Message { .. })),
                "{found:#?}"
            );
            let e = found
                .iter()
                .find(|f| matches!(f, Finding::EncryptedMessage { .. }))
                .unwrap_or_else(|| panic!("{found:#?}"));
            let Finding::EncryptedMessage {
                scheme,
                sender_device,
                devices,
                key_exchange,
                payload_bytes,
                to,
                ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!(*scheme, want_scheme);
            assert_eq!(*sender_device, Some(11));
            assert_eq!(devices, &want_devices);
            assert_eq!(*key_exchange, want_kex);
            assert_eq!(*payload_bytes, want_bytes);
            assert_eq!(to.as_deref(), Some("bob@x"));
            assert_eq!(e.category(), Some(crate::findings::Category::EndToEnd));
        }
    }

    /// A carbon (XEP-0280) carries a whole message: the eavesdropper reads
    /// it as it reads the original.
    #[test]
    fn a_message_inside_a_carbon_is_recovered() {
        let f = run(
            &[HDR],
            &[
                SHDR,
                "<message from='alice@localhost' to='alice@localhost/phone' type='chat'>\
                 <received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>\
                 <message xmlns='jabber:client' from='bob@localhost/x' to='alice@localhost/laptop' type='chat'>\
                 <body>copied to the phone</body></message></forwarded></received></message>",
            ],
        );
        assert!(
            f.iter().any(
                |x| matches!(x, Finding::Message { body, from: Some(from), .. }
                if body == "copied to the phone" && from == "bob@localhost/x")
            ),
            "{f:#?}"
        );
    }

    #[test]
    fn plain_credentials_features_messages_and_contacts_are_recovered() {
        // AGFsaWNlAHMzY3JldA== is "\0alice\0s3cret".
        let f = run(
            &[
                HDR,
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHMzY3JldA==</auth>",
                "<message to='bob@localhost' type='chat'><body>meet at 5</body></message>",
            ],
            &[
                &format!(
                    "{SHDR}<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
                ),
                "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
                "<iq type='result' id='r'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='both'/></query></iq><presence from='bob@localhost/x'><show>away</show><status>lunch</status></presence>",
            ],
        );
        assert!(f.contains(&Finding::Credential {
            kind: "sasl-plain",
            user: "alice".into(),
            password: Some("s3cret".into()),
            detail: None,
            note: "SASL PLAIN is only base64: an encoding, not encryption",
        }));
        assert!(f.iter().any(|x| matches!(x, Finding::Features { starttls: false, mechanisms, .. } if mechanisms == &["PLAIN"])));
        assert!(f.iter().any(|x| matches!(x, Finding::Message { body, to: Some(t), .. } if body == "meet at 5" && t == "bob@localhost")));
        assert!(
            f.iter()
                .any(|x| matches!(x, Finding::Contact { jid, .. } if jid == "bob@localhost"))
        );
        assert!(f.iter().any(|x| matches!(x, Finding::Presence { status: Some(s), show: Some(w), .. } if s == "lunch" && w == "away")));
    }

    #[test]
    fn scram_gives_the_attack_material_and_registration_the_password() {
        // n,,n=alice,r=abc ; r=abcdef,s=c2FsdA==,i=4096 ; c=biws,r=abcdef,p=cHJvb2Y=
        let first = B64.encode("n,,n=alice,r=abc");
        let chall = B64.encode("r=abcdef,s=c2FsdA==,i=4096");
        let resp = B64.encode("c=biws,r=abcdef,p=cHJvb2Y=");
        let f = run(
            &[
                HDR,
                "<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>alice</username><password>pw1</password></query></iq>",
                &format!(
                    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{first}</auth>"
                ),
                &format!("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{resp}</response>"),
            ],
            &[
                SHDR,
                "<iq type='result' id='reg'/>",
                &format!("<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{chall}</challenge>"),
            ],
        );
        assert!(f.iter().any(|x| matches!(x, Finding::Credential { kind: "register", password: Some(p), .. } if p == "pw1")));
        let scram = f
            .iter()
            .find_map(|x| match x {
                Finding::Credential {
                    kind: "scram",
                    user,
                    detail,
                    ..
                } => Some((user.clone(), detail.clone().unwrap())),
                _ => None,
            })
            .unwrap();
        assert_eq!(scram.0, "alice");
        assert!(
            scram.1.contains("salt=c2FsdA==")
                && scram.1.contains("iterations=4096")
                && scram.1.contains("proof=cHJvb2Y="),
            "{}",
            scram.1
        );
    }

    #[test]
    fn proceed_switches_both_directions_at_the_exact_byte() {
        let mut c = XmppConn::default();
        let mut sink = |_f: Finding| {};
        let client = format!("{HDR}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        assert!(
            c.feed(Dir::ToServer, client.as_bytes(), 0.0, &mut sink)
                .is_none()
        );
        let server =
            format!("{SHDR}<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\u{16}\u{3}\u{1}");
        let sw = c
            .feed(Dir::ToClient, server.as_bytes(), 0.0, &mut sink)
            .unwrap();
        assert_eq!(sw.to_server_offset, client.len() as u64);
        assert_eq!(sw.to_client_offset, (server.len() - 3) as u64);
        assert_eq!(sw.to_client_rest, [0x16, 3, 1]);
    }

    #[test]
    fn an_ibb_file_is_reassembled() {
        let mut c = XmppConn::default();
        let mut sink = |_f: Finding| {};
        let parts = [
            HDR.to_string(),
            "<iq type='set' to='b@l/x' id='1'><si xmlns='http://jabber.org/protocol/si' id='s1' profile='http://jabber.org/protocol/si/profile/file-transfer'><file xmlns='http://jabber.org/protocol/si/profile/file-transfer' name='notes.txt' size='11'/></si></iq>".into(),
            format!("<iq type='set' id='2'><data xmlns='http://jabber.org/protocol/ibb' sid='s1' seq='0'>{}</data></iq>", B64.encode("hello ")),
            format!("<iq type='set' id='3'><data xmlns='http://jabber.org/protocol/ibb' sid='s1' seq='1'>{}</data></iq>", B64.encode("world")),
            "<iq type='set' id='4'><close xmlns='http://jabber.org/protocol/ibb' sid='s1'/></iq>".into(),
        ];
        for p in &parts {
            c.feed(Dir::ToServer, p.as_bytes(), 0.0, &mut sink);
        }
        assert_eq!(c.seen.finished.len(), 1);
        assert_eq!(
            c.seen.finished[0],
            CarriedFile {
                sid: "s1".into(),
                name: "notes.txt".into(),
                offered_size: Some(11),
                offered_sha256: None,
                data: b"hello world".to_vec(),
                complete: true,
                missing_blocks: 0,
                duplicate_blocks: 0,
                reordered_blocks: 0,
            }
        );
    }

    /// An offer of `size` bytes with this SHA-256, then IBB blocks as
    /// `(seq, bytes)` in the order given, then the close.
    fn ibb(size: usize, sha256: &[u8], blocks: &[(u16, &str)]) -> XmppConn {
        let mut c = XmppConn::default();
        let mut sink = |_f: Finding| {};
        let mut parts = vec![
            HDR.to_string(),
            format!(
                "<iq type='set' id='o'><si xmlns='http://jabber.org/protocol/si' id='s1' profile='http://jabber.org/protocol/si/profile/file-transfer'><file xmlns='http://jabber.org/protocol/si/profile/file-transfer' name='f.txt' size='{size}'><hash xmlns='urn:xmpp:hashes:2' algo='sha-256'>{}</hash></file></si></iq>",
                B64.encode(sha256)
            ),
        ];
        for (i, (seq, b)) in blocks.iter().enumerate() {
            parts.push(format!("<iq type='set' id='{i}'><data xmlns='http://jabber.org/protocol/ibb' sid='s1' seq='{seq}'>{}</data></iq>", B64.encode(b)));
        }
        parts.push(
            "<iq type='set' id='c'><close xmlns='http://jabber.org/protocol/ibb' sid='s1'/></iq>"
                .into(),
        );
        for p in &parts {
            c.feed(Dir::ToServer, p.as_bytes(), 0.0, &mut sink);
        }
        c
    }

    #[test]
    fn ibb_blocks_are_taken_in_seq_order_and_checked_against_the_offered_hash() {
        let sha = Sha256::digest(b"hello world");
        // Blocks 0, 2, 1: in arrival order this would be "hel" "world" "lo ".
        let c = ibb(11, &sha, &[(0, "hel"), (2, "world"), (1, "lo ")]);
        let f = &c.seen.finished[0];
        assert_eq!(f.data, b"hello world");
        assert!(f.complete);
        assert_eq!(
            (f.missing_blocks, f.duplicate_blocks, f.reordered_blocks),
            (0, 0, 1)
        );
        assert_eq!(f.offered_sha256.as_deref(), Some(sha.as_slice()));
        assert_eq!(f.sha256(), (hex(&sha), Some(true)));

        // The same blocks, but the offer promised other bytes.
        let other = Sha256::digest(b"hello WORLD");
        let c = ibb(11, &other, &[(0, "hel"), (1, "lo "), (2, "world")]);
        assert_eq!(c.seen.finished[0].sha256(), (hex(&sha), Some(false)));
    }

    #[test]
    fn missing_and_duplicate_blocks_are_reported_and_the_file_is_incomplete() {
        let sha = Sha256::digest(b"hello world");
        // 0, 0 again (with other bytes: the first copy stays), 2; 1 never came.
        let c = ibb(11, &sha, &[(0, "hel"), (0, "XXX"), (2, "world")]);
        let f = &c.seen.finished[0];
        assert_eq!(f.data, b"helworld");
        assert!(!f.complete);
        assert_eq!(
            (f.missing_blocks, f.duplicate_blocks, f.reordered_blocks),
            (1, 1, 1)
        );
        assert_eq!(f.sha256().1, Some(false));
        // A duplicate of a block still waiting for its turn is caught too.
        let c = ibb(
            11,
            &sha,
            &[(2, "world"), (2, "WORLD"), (0, "hel"), (1, "lo ")],
        );
        let f = &c.seen.finished[0];
        assert_eq!((f.data.as_slice(), f.complete), (&b"hello world"[..], true));
        assert_eq!(f.duplicate_blocks, 1);
    }

    #[test]
    fn seq_wraps_from_65535_to_0() {
        let mut f = File {
            next: 65_534,
            ..Default::default()
        };
        for (seq, b) in [
            (65_535, "b"),
            (65_534, "a"),
            (1, "d"),
            (0, "c"),
            (65_535, "B"),
        ] {
            f.block(seq, b.as_bytes().to_vec(), MAX_FILE_BYTES);
        }
        assert_eq!(f.data, b"abcd");
        assert_eq!((f.next, f.reordered, f.duplicates), (65_538, 2, 1));
        assert!(f.early.is_empty());
    }

    #[test]
    fn blocks_held_back_count_against_the_memory_bound() {
        let mut c = XmppConn::default();
        let mut sink = |_f: Finding| {};
        c.feed(Dir::ToServer, HDR.as_bytes(), 0.0, &mut sink);
        // Block 0 never comes: block 1 waits, and what it holds is charged.
        let d = format!(
            "<iq type='set' id='1'><data xmlns='http://jabber.org/protocol/ibb' sid='s' seq='1'>{}</data></iq>",
            B64.encode([7u8; 100])
        );
        c.feed(Dir::ToServer, d.as_bytes(), 0.0, &mut sink);
        assert_eq!(c.seen.held(), 100 + EARLY_BLOCK_COST);
        // Within a bound: a block that does not fit is dropped, not held.
        let mut f = File::default();
        f.block(1, vec![1; 100], 300);
        assert_eq!(f.held(), 100 + EARLY_BLOCK_COST);
        f.block(2, vec![2; 100], 300 - f.held());
        assert_eq!((f.held(), f.truncated), (100 + EARLY_BLOCK_COST, true));
        // Even an empty block costs its entry.
        f.block(3, Vec::new(), 300 - f.held());
        assert_eq!(f.held(), 100 + 2 * EARLY_BLOCK_COST);
        // Block 0 releases block 1 and what its waiting cost; 3 still waits
        // for the dropped 2.
        f.block(0, vec![0; 10], 300 - f.held());
        assert_eq!(f.held(), 110 + EARLY_BLOCK_COST);
        let done = f.carried("s".into(), true);
        assert_eq!((done.data.len(), done.missing_blocks), (110, 1));
        assert!(!done.complete, "a dropped block makes it incomplete");
    }

    #[test]
    fn made_up_streams_are_bounded() {
        let mut c = XmppConn::default();
        let mut sink = |_f: Finding| {};
        c.feed(Dir::ToServer, HDR.as_bytes(), 0.0, &mut sink);
        for i in 0..100 {
            let d = format!(
                "<iq type='set' id='{i}'><data xmlns='http://jabber.org/protocol/ibb' sid='s{i}' seq='0'>aGk=</data></iq>"
            );
            c.feed(Dir::ToServer, d.as_bytes(), 0.0, &mut sink);
        }
        assert_eq!(c.seen.files.len(), MAX_OPEN_FILES);
        c.unfinished();
        assert_eq!(c.seen.finished.len(), MAX_OPEN_FILES);
    }

    #[test]
    fn garbage_is_reported_and_parsing_resumes() {
        let f = run(
            &[
                HDR,
                "<<\u{0}\u{1} junk \u{7f}>",
                "<message to='x@y'><body>after</body></message>",
            ],
            &[],
        );
        assert!(f.iter().any(|x| matches!(x, Finding::Malformed { .. })));
        assert!(
            f.iter()
                .any(|x| matches!(x, Finding::Message { body, .. } if body == "after"))
        );
    }
}
