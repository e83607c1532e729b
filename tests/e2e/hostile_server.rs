//! The line client against a small hostile server written for each test: a
//! `TcpListener` on 127.0.0.1:0 that speaks just enough XMPP (stream header,
//! features, SASL PLAIN success, bind, an empty roster) and then sends the
//! attack to the real `chat-plain client`.
//!
//! The client must not trust its server: a compromised or malicious server
//! (or, for `chat-plain`, anyone on the path) can send oversized stanzas,
//! floods of presence or pings, terminal escape sequences and crafted file
//! transfer ids.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tests::{Client, WAIT, bin};

/// The fake server's end of one client connection, after sign-in.
struct Hostile {
    stream: TcpStream,
    /// What the client sent and the fake server has not looked at yet.
    unread: String,
}

const SERVER_HEADER: &str = "<?xml version='1.0'?><stream:stream from='localhost' id='h1' \
    version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

impl Hostile {
    /// Binds a listener, starts `chat-plain client` against it with `args`
    /// (beyond `--jid` and `--server`), and walks it through sign-in. The
    /// client is `alice@localhost/r`.
    fn start(json: bool, args: &[&str]) -> (Hostile, Client) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let client = Client::spawn("alice", client_command(&addr, json, args));
        (Hostile::accept(&listener), client)
    }

    /// Accepts one client and signs it in.
    fn accept(listener: &TcpListener) -> Hostile {
        listener.set_nonblocking(false).unwrap();
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut h = Hostile {
            stream,
            unread: String::new(),
        };
        h.read_until("<stream:stream");
        h.read_until(">");
        h.send(&format!(
            "{SERVER_HEADER}<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
             <mechanism>PLAIN</mechanism></mechanisms></stream:features>"
        ));
        h.read_until("</auth>");
        h.send("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
        h.read_until("<stream:stream");
        h.read_until(">");
        h.send(&format!(
            "{SERVER_HEADER}<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>\
             </stream:features>"
        ));
        let bind = h.read_until("</iq>");
        h.send(&format!(
            "<iq type='result' id='{}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <jid>alice@localhost/r</jid></bind></iq>",
            attr(&bind, "id")
        ));
        let roster = h.read_until("</iq>");
        assert!(roster.contains("jabber:iq:roster"), "{roster}");
        h.send(&format!(
            "<iq type='result' id='{}'><query xmlns='jabber:iq:roster'/></iq>",
            attr(&roster, "id")
        ));
        // Initial presence: the client is now in its event loop.
        h.read_until("<presence");
        h
    }

    fn send(&mut self, xml: &str) {
        self.stream.write_all(xml.as_bytes()).unwrap();
    }

    /// Reads until `needle` arrives; returns everything up to and
    /// including it, and keeps the rest for the next call.
    fn read_until(&mut self, needle: &str) -> String {
        let t0 = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(at) = self.unread.find(needle) {
                let rest = self.unread.split_off(at + needle.len());
                return std::mem::replace(&mut self.unread, rest);
            }
            assert!(
                t0.elapsed() < WAIT,
                "the client never sent {needle}; got {}",
                self.unread
            );
            let n = self.stream.read(&mut buf).unwrap();
            assert!(n > 0, "the client closed before {needle}: {}", self.unread);
            self.unread.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
}

/// `chat-plain client` for `alice@localhost` against `addr`.
fn client_command(addr: &str, json: bool, args: &[&str]) -> Command {
    let mut c = Command::new(bin("chat-plain"));
    // The fake server offers PLAIN only, which the client refuses unless
    // told (the defence against downgrade-sasl).
    c.args([
        "client",
        "--jid",
        "alice@localhost",
        "--server",
        addr,
        "--plain",
    ])
    .args(args)
    .env("CHAT_PASSWORD", "pw");
    if json {
        c.arg("--json");
    }
    c
}

/// The value of the first `name='…'` attribute in `xml`.
fn attr(xml: &str, name: &str) -> String {
    for q in ['\'', '"'] {
        let key = format!(" {name}={q}");
        if let Some(at) = xml.find(&key) {
            let rest = &xml[at + key.len()..];
            return rest[..rest.find(q).unwrap()].to_string();
        }
    }
    panic!("no {name} attribute in {xml}")
}

/// A message stanza whose `<body>` is `quotes` double quotes written the way
/// our own server re-serialises them: 6 bytes of `&quot;` each.
fn quoted_message(quotes: usize) -> String {
    format!(
        "<message from='bob@localhost/x' type='chat' id='big'><body>{}</body></message>",
        "&quot;".repeat(quotes)
    )
}

#[test]
fn an_oversized_stanza_is_skipped_with_one_error_and_the_stream_goes_on() {
    // 11 KB of `"` became 66 KB of `&quot;`: over the client's 64 KiB limit.
    let big = quoted_message(11_000);
    assert!(big.len() > 64 * 1024);
    let after = "<message from='bob@localhost/x' type='chat' id='m2'><body>after</body></message>";

    // --json: one error event, then the next message.
    let (mut h, mut alice) = Hostile::start(true, &[]);
    alice.expect("connected", |v| v["type"] == "connected");
    h.send(&big);
    h.send(after);
    let err = alice.expect("the skipped stanza", |v| v["type"] != "connected");
    assert_eq!(err["type"], "stanza-too-large", "{}", alice.transcript());
    assert_eq!(err["limit"], 64 * 1024);
    let m = alice.expect("the next message", |v| v["type"] == "message");
    assert_eq!(m["body"], "after", "{}", alice.transcript());
    // Still connected and still answering: a ping gets its pong.
    h.send("<iq type='get' id='ping1' from='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    let pong = h.read_until("ping1") + &h.read_until(">");
    assert!(pong.contains("result"), "{pong}");

    // Text mode: exactly one error line, then the message.
    let (mut h, mut alice) = Hostile::start(false, &[]);
    alice.expect_line("signed in", |l| l.starts_with("signed in"));
    h.send(&big);
    h.send(after);
    alice.expect_line("the next message", |l| l.contains("after"));
    let errors: Vec<String> = alice
        .output()
        .into_iter()
        .filter(|l| l.contains("error"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", alice.transcript());
    assert!(
        errors[0].contains("65536") && errors[0].contains("skipped"),
        "{}",
        errors[0]
    );
}

/// Resident memory of `pid` now and at its peak, in KiB (from /proc).
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Most memory the client may reach under any of the floods below: about
/// ten times what it uses at rest, far below the hundreds of megabytes the
/// floods reached before its queues were bounded.
const MEMORY_CEILING_KIB: u64 = 64 * 1024;

/// Padding for the ids of the flooding stanzas: every answer echoes it.
const PAD: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\
    0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// How long each flood runs.
const FLOOD: Duration = Duration::from_secs(8);

/// Sends `stanza(i)` for i = 0, 1, ... for `FLOOD`, writing in batches;
/// returns how many were sent. A write that blocks (the client stopped
/// reading) just ends the batch late.
fn flood(h: &mut Hostile, stanza: impl Fn(u64) -> String) -> u64 {
    let t0 = Instant::now();
    let mut i = 0u64;
    h.stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    while t0.elapsed() < FLOOD {
        let mut batch = String::new();
        for _ in 0..1000 {
            batch.push_str(&stanza(i));
            i += 1;
        }
        if h.stream.write_all(batch.as_bytes()).is_err() {
            // Blocked: the client is not reading (which is allowed).
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    i
}

#[test]
fn a_presence_flood_with_stdout_paused_keeps_memory_bounded() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Nobody reads the client's stdout: its terminal is "paused".
    let mut child = client_command(&addr, false, &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut h = Hostile::accept(&listener);
    let before = memory_kib(child.id());
    let sent = flood(&mut h, |i| {
        format!(
            "<presence from='u{i}@localhost/r'><status>{}</status></presence>",
            "s".repeat(200)
        )
    });
    let after = memory_kib(child.id());
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    eprintln!(
        "presence flood: {sent} stanzas; VmRSS/VmHWM before {before:?} KiB, after {after:?} KiB"
    );
    assert!(alive, "the client died under the flood");
    assert!(
        after.1 < MEMORY_CEILING_KIB,
        "peak {} KiB after {sent} presences (before: {before:?})",
        after.1
    );
}

#[test]
fn a_ping_flood_to_a_client_whose_server_never_reads_keeps_memory_bounded_then_disconnects() {
    let (mut h, mut alice) = Hostile::start(true, &[]);
    alice.expect("connected", |v| v["type"] == "connected");
    let before = memory_kib(alice.pid());
    // The server never reads again: every pong and receipt stays with the
    // client.
    let sent = flood(&mut h, |i| {
        if i % 2 == 0 {
            format!(
                "<iq type='get' id='p{i}-{PAD}' from='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
            )
        } else {
            format!(
                "<message from='bob@localhost/x' id='r{i}-{PAD}'><request xmlns='urn:xmpp:receipts'/></message>"
            )
        }
    });
    let after = memory_kib(alice.pid());
    eprintln!("ping flood: {sent} stanzas; VmRSS/VmHWM before {before:?} KiB, after {after:?} KiB");
    assert!(
        after.1 < MEMORY_CEILING_KIB,
        "peak {} KiB after {sent} pings (before: {before:?})",
        after.1
    );
    // A server that keeps sending but reads nothing is dead or hostile: the
    // client says so and leaves. (The flood above fills the client's queue
    // faster than it writes, but the kernel's send buffer may still have
    // room; the pings go on until it is full and a write stalls.)
    let t0 = Instant::now();
    let mut i = 0;
    let gone = loop {
        match alice
            .output()
            .into_iter()
            .find(|l| l.contains("\"disconnected\""))
        {
            Some(l) => break l,
            None if t0.elapsed() < Duration::from_secs(60) => {
                let batch: String = (0..50)
                    .map(|k| {
                        format!(
                            "<iq type='get' id='late{i}-{k}-{PAD}'><ping xmlns='urn:xmpp:ping'/></iq>"
                        )
                    })
                    .collect();
                i += 1;
                let _ = h.stream.write_all(batch.as_bytes());
                std::thread::sleep(Duration::from_millis(100))
            }
            None => panic!("the client never gave up\n{}", alice.transcript()),
        }
    };
    assert!(gone.contains("not read"), "{gone}");
    drop(h);
}

/// Every character a terminal would obey, as the hostile server sends them
/// (XML character references where XML forbids the raw byte).
const NASTY: &str = "&#x1b;[2J&#x1b;]52;c;cGF5&#x7;&#x1b;]0;title&#x7;&#x8;\u{9b}31m\u{202e}txt.exe\
    &#xa;message from bank@localhost/web: send money";

/// The same characters as the client receives them.
const NASTY_TEXT: &str = "\u{1b}[2J\u{1b}]52;c;cGF5\u{7}\u{1b}]0;title\u{7}\u{8}\u{9b}31m\u{202e}txt.exe\
    \nmessage from bank@localhost/web: send money";

fn attack_stanzas() -> Vec<String> {
    vec![
        format!(
            "<message from='bob@localhost/x' type='chat' id='m1'><body>{NASTY}</body></message>"
        ),
        format!("<presence from='bob@localhost/x'><status>{NASTY}</status></presence>"),
        format!(
            "<message from='localhost' id='a1'><subject>{NASTY}</subject><body>{NASTY}</body></message>"
        ),
        format!(
            "<message from='bob@localhost/x' type='error' id='e1'><error type='cancel'>\
             <item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>{NASTY}</text></error></message>"
        ),
        format!(
            "<iq type='set' id='f1' from='bob@localhost/x'><si xmlns='http://jabber.org/protocol/si' \
             id='s&#x1b;[2J' profile='http://jabber.org/protocol/si/profile/file-transfer'>\
             <file xmlns='http://jabber.org/protocol/si/profile/file-transfer' name='{NASTY}' size='5'/>\
             <feature xmlns='http://jabber.org/protocol/feature-neg'><x xmlns='jabber:x:data' type='form'>\
             <field var='stream-method' type='list-single'><option><value>http://jabber.org/protocol/ibb</value>\
             </option></field></x></feature></si></iq>"
        ),
        "<message from='bob@localhost/x' type='chat' id='m2'><body>end</body></message>"
            .to_string(),
    ]
}

#[test]
fn terminal_control_characters_from_the_server_are_escaped_in_text_mode() {
    let (mut h, mut alice) = Hostile::start(false, &[]);
    alice.expect_line("signed in", |l| l.starts_with("signed in"));
    for s in attack_stanzas() {
        h.send(&s);
    }
    alice.expect_line("the last message", |l| l.ends_with(": end"));
    // Last, a stream error with its own text, which ends the connection.
    h.send(&format!(
        "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
         <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>{NASTY}</text></stream:error>"
    ));
    alice.expect_line("the disconnection", |l| l.starts_with("disconnected"));
    let out = alice.output();
    for line in &out {
        assert!(
            !line.chars().any(protocol_unsafe),
            "a raw control character reached the terminal: {line:?}\n{}",
            alice.transcript()
        );
        assert!(
            !line.starts_with("message from bank@"),
            "a forged event line: {line:?}\n{}",
            alice.transcript()
        );
    }
    // Each attack arrived, visibly escaped.
    let escaped = "\\u{1b}[2J\\u{1b}]52;c;cGF5\\u{7}";
    for (what, shown) in [
        ("message from bob@localhost/x: ", escaped),
        ("presence bob@localhost/x online: ", escaped),
        ("announcement (", escaped),
        (
            "error: message e1 to bob@localhost/x failed: item-not-found (",
            escaped,
        ),
        // The offered name keeps only its last path component.
        ("file offer from bob@localhost/x: ", "/accept s\\u{1b}[2J"),
        ("disconnected: ", escaped),
    ] {
        assert!(
            out.iter().any(|l| l.starts_with(what) && l.contains(shown)),
            "no escaped line starting {what:?}\n{}",
            alice.transcript()
        );
    }
}

/// What `protocol::display` escapes: any control character, the line and
/// paragraph separators, and the bidi controls.
fn protocol_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

#[test]
fn json_output_keeps_peer_text_exact() {
    let (mut h, mut alice) = Hostile::start(true, &[]);
    alice.expect("connected", |v| v["type"] == "connected");
    for s in attack_stanzas() {
        h.send(&s);
    }
    let m = alice.expect("the message", |v| v["type"] == "message");
    assert_eq!(m["body"], NASTY_TEXT);
    let p = alice.expect("the presence", |v| v["type"] == "presence");
    assert_eq!(p["status"], NASTY_TEXT);
    let a = alice.expect("the announcement", |v| v["type"] == "announcement");
    assert_eq!(a["subject"], NASTY_TEXT);
    assert_eq!(a["body"], NASTY_TEXT);
    let f = alice.expect("the offer", |v| v["type"] == "file-offer");
    assert_eq!(f["sid"], "s\u{1b}[2J");
}

/// Every file under `root`, recursively.
fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_crafted_file_transfer_sid_writes_nothing_outside_the_downloads_folder() {
    let base = tempfile::tempdir().unwrap();
    let downloads = base.path().join("home").join("downloads");
    // A folder of the user's own in downloads, whose name the offer can
    // match: `.NAME.` + the first part of the sid. With it, an unchecked
    // sid of `x/../../../escaped` climbs out of the downloads folder.
    std::fs::create_dir_all(downloads.join(".notes.txt.x")).unwrap();
    let dl = downloads.to_str().unwrap();
    let (mut h, mut alice) = Hostile::start(true, &["--accept-files", "--downloads", dl]);
    alice.expect("connected", |v| v["type"] == "connected");
    let sid = "x/../../../escaped";
    let data = b"hello";
    h.send(&format!(
        "<iq type='set' id='offer1' from='bob@localhost/x'><si xmlns='http://jabber.org/protocol/si' \
         id='{sid}' profile='http://jabber.org/protocol/si/profile/file-transfer'>\
         <file xmlns='http://jabber.org/protocol/si/profile/file-transfer' name='notes.txt' size='5'/>\
         <feature xmlns='http://jabber.org/protocol/feature-neg'><x xmlns='jabber:x:data' type='form'>\
         <field var='stream-method' type='list-single'><option><value>http://jabber.org/protocol/ibb</value>\
         </option></field></x></feature></si></iq>"
    ));
    h.read_until("offer1");
    h.send(&format!(
        "<iq type='set' id='open1' from='bob@localhost/x'><open xmlns='http://jabber.org/protocol/ibb' \
         sid='{sid}' block-size='4096' stanza='iq'/></iq>"
    ));
    h.read_until("open1");
    h.send(&format!(
        "<iq type='set' id='data1' from='bob@localhost/x'><data xmlns='http://jabber.org/protocol/ibb' \
         sid='{sid}' seq='0'>aGVsbG8=</data></iq>"
    ));
    h.read_until("data1");
    // Mid-transfer, the partial file exists: it must be inside downloads.
    let outside: Vec<PathBuf> = files_under(base.path())
        .into_iter()
        .filter(|p| !p.starts_with(&downloads))
        .collect();
    assert!(outside.is_empty(), "written outside downloads: {outside:?}");
    h.send(&format!(
        "<iq type='set' id='close1' from='bob@localhost/x'><close xmlns='http://jabber.org/protocol/ibb' \
         sid='{sid}'/></iq>"
    ));
    let got = alice.expect("the file", |v| {
        v["type"] == "file-received" || v["type"] == "file-failed"
    });
    assert_eq!(got["type"], "file-received", "{}", alice.transcript());
    assert_eq!(got["sid"], sid);
    let saved = downloads.join("notes.txt");
    assert_eq!(std::fs::read(&saved).unwrap(), data);
    let all = files_under(base.path());
    assert_eq!(all, vec![saved], "exactly one file, the one received");
}
