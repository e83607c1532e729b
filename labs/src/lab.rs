//! The labs: sheets, `run` (everything a lab needs, on loopback, with the
//! student's own secrets), `check` (answers verified, never stored) and
//! `progress` (who solved what).

use protocol::outln;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use sha2::{Digest, Sha256};

use harness::signals::check_interrupt;

use crate::chat::{ChatServer, Twin, start_server};
use crate::secrets::Secrets;

/// Writing to stdout failed while the lab's processes were running (see `say!`
/// below): an error that unwinds through their drops, where
/// `outln!` would end the program at once and leave them running.
#[derive(Debug)]
pub struct StdoutFailed(pub std::io::Error);

impl std::fmt::Display for StdoutFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot write to standard output: {}", self.0)
    }
}

impl std::error::Error for StdoutFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// `outln!` for `labs run`, whose lines are written while the lab's server
/// runs: a failed write (a closed pipe: `labs run 1 | head -1`) returns
/// [`StdoutFailed`], so the drops on the way out stop the server first.
/// `outln!` would end the program on the spot and leave the server running.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*).map_err(StdoutFailed)?;
    }};
}

/// A lab: its sheet and what `check` asks.
pub struct Lab {
    /// Its number.
    pub number: u8,
    /// One line.
    pub title: &'static str,
    /// The sheet (markdown).
    pub sheet: &'static str,
    /// How long it takes a student, in minutes.
    pub minutes: u16,
    /// What it builds on.
    pub needs: &'static str,
    /// The twin it runs.
    twin: Twin,
    /// Who attacks, and how.
    scenario: Scenario,
    /// The answers `check` takes: key and where to look when it is wrong.
    pub keys: &'static [(&'static str, &'static str)],
}

/// What a lab's session is, from the attacker's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// The student sniffs a session on loopback.
    Sniff,
    /// The student puts `mitm-proxy --attack intercept-tls` between the
    /// classmates and the server, with a self-signed certificate.
    Intercept,
    /// The same with certificates minted by the attacker's CA, which the
    /// classmates were tricked into trusting; then the server's key is
    /// rotated.
    InterceptCa,
    /// `strip-starttls`, then `inject-starttls`, in front of a server that
    /// requires STARTTLS.
    Strip,
    /// `downgrade-sasl` on the plaintext twin, then `intercept-tls` against
    /// channel binding.
    Downgrade,
    /// `tamper` with the student's rules on the plaintext twin, then
    /// `corrupt-tls`.
    Tamper,
    /// `replay` of a PLAIN and a SCRAM sign-in, on the plaintext twin.
    Replay,
    /// The student sniffs a TLS session; one client writes a key log.
    KeyLog,
    /// The student sniffs a TLS session and reads sizes and times; then the
    /// same with padding.
    Traffic,
    /// The student is the server's operator and reads its database: a
    /// message over TLS, then messages end to end (OMEMO).
    Operator,
    /// `inject-omemo-device` between classmate and the server: blind trust,
    /// then verification.
    InjectDevice,
}

impl Scenario {
    /// Whether `classmate` signs up during the session (its password then
    /// crosses in the registration); otherwise it signed up before.
    fn classmate_registers(self) -> bool {
        matches!(
            self,
            Scenario::Sniff | Scenario::Intercept | Scenario::InterceptCa | Scenario::KeyLog
        )
    }
}

/// Every lab, in order.
pub const LABS: [Lab; 12] = [
    Lab {
        number: 1,
        title: "Sniff the plaintext chat",
        sheet: include_str!("../sheets/01-sniff-plaintext.md"),
        minutes: 45,
        needs: "no other lab",
        twin: Twin::Plain,
        scenario: Scenario::Sniff,
        keys: &[
            (
                "password",
                "look for a CREDENTIAL line of classmate, or decode the <auth mechanism='PLAIN'> with base64 -d",
            ),
            (
                "codeword",
                "it is in a MESSAGE line from classmate to teacher",
            ),
            (
                "iterations",
                "the SCRAM challenge of careful's sign-in carries i=...; the sniffer prints it as iterations=",
            ),
        ],
    },
    Lab {
        number: 2,
        title: "The same chat over TLS",
        sheet: include_str!("../sheets/02-tls.md"),
        minutes: 45,
        needs: "lab 1",
        twin: Twin::Tls,
        scenario: Scenario::Sniff,
        keys: &[
            ("server-name", "read the TLS ClientHello: SNI=..."),
            ("version", "read the TLS ServerHello"),
            (
                "cipher",
                "read the TLS ServerHello: the suite after the version",
            ),
        ],
    },
    Lab {
        number: 3,
        title: "Self-signed certificates: why the client must validate",
        sheet: include_str!("../sheets/03-self-signed.md"),
        minutes: 45,
        needs: "lab 2",
        twin: Twin::Tls,
        scenario: Scenario::Intercept,
        keys: &[
            (
                "password",
                "in the proxy's output: what it captured from classmate's registration",
            ),
            (
                "codeword",
                "in the proxy's output: the message classmate sent to teacher, read inside TLS",
            ),
        ],
    },
    Lab {
        number: 4,
        title: "The trusted CA store, forged certificates and pinning",
        sheet: include_str!("../sheets/04-ca-and-pinning.md"),
        minutes: 60,
        needs: "lab 3",
        twin: Twin::Tls,
        scenario: Scenario::InterceptCa,
        keys: &[
            (
                "password",
                "in the proxy's output: what it captured from classmate's registration",
            ),
            (
                "codeword",
                "in the proxy's output: the message classmate sent to teacher",
            ),
        ],
    },
    Lab {
        number: 5,
        title: "STARTTLS stripping, and STARTTLS injection",
        sheet: include_str!("../sheets/05-starttls.md"),
        minutes: 60,
        needs: "lab 3",
        twin: Twin::Tls,
        scenario: Scenario::Strip,
        keys: &[
            (
                "codeword",
                "in the proxy's output of part 1: classmate's message, in plaintext after the strip",
            ),
            (
                "iterations",
                "classmate's SCRAM sign-in crossed in plaintext: base64 -d the <challenge>, read i=",
            ),
        ],
    },
    Lab {
        number: 6,
        title: "SASL downgrade and channel binding",
        sheet: include_str!("../sheets/06-sasl-downgrade.md"),
        minutes: 60,
        needs: "lab 4 and lab 5",
        twin: Twin::Tls,
        scenario: Scenario::Downgrade,
        keys: &[
            (
                "password",
                "in part 1: classmate's <auth mechanism='PLAIN'>, which the proxy decodes",
            ),
            (
                "iterations",
                "in part 2: the proxy read classmate's SCRAM exchange inside TLS; base64 -d the <challenge>, read i=",
            ),
        ],
    },
    Lab {
        number: 7,
        title: "Tampering, checksums and AEAD",
        sheet: include_str!("../sheets/07-tampering.md"),
        minutes: 60,
        needs: "lab 3",
        twin: Twin::Plain,
        scenario: Scenario::Tamper,
        keys: &[
            (
                "codeword",
                "in the proxy's output: what classmate's message said before your rule replaced it",
            ),
            (
                "sha256",
                "in the proxy's output: the SHA-256 the offer carried before your swap-file rule replaced it",
            ),
        ],
    },
    Lab {
        number: 8,
        title: "Replay",
        sheet: include_str!("../sheets/08-replay.md"),
        minutes: 45,
        needs: "lab 1 and lab 3",
        twin: Twin::Plain,
        scenario: Scenario::Replay,
        keys: &[
            (
                "contact",
                "the proxy's replay line for classmate's connection: the roster it read while signed in as classmate",
            ),
            (
                "password",
                "the proxy's CAPTURED line: classmate's PLAIN sign-in",
            ),
        ],
    },
    Lab {
        number: 9,
        title: "Key logs and forward secrecy",
        sheet: include_str!("../sheets/09-keylog.md"),
        minutes: 45,
        needs: "lab 2",
        twin: Twin::Tls,
        scenario: Scenario::KeyLog,
        keys: &[
            (
                "password",
                "sniffer read lab9.pcap --keylog KEYLOG: a CREDENTIAL line of classmate (its registration)",
            ),
            (
                "codeword",
                "sniffer read lab9.pcap --keylog KEYLOG: a MESSAGE line from classmate to teacher",
            ),
        ],
    },
    Lab {
        number: 10,
        title: "Traffic analysis",
        sheet: include_str!("../sheets/10-traffic-analysis.md"),
        minutes: 60,
        needs: "lab 2",
        twin: Twin::Tls,
        scenario: Scenario::Traffic,
        keys: &[
            (
                "message",
                "sniffer read lab10.pcap --records: the size of classmate's largest record to the server, less the size of its typing notification, is the message's length plus about 30",
            ),
            (
                "typing",
                "sniffer read lab10.pcap --records: the time of the small record classmate sent a few seconds before its message (seconds after classmate's first record, to within 1)",
            ),
        ],
    },
    Lab {
        number: 11,
        title: "Hop by hop, end to end: what the server's operator reads",
        sheet: include_str!("../sheets/11-end-to-end.md"),
        minutes: 45,
        needs: "lab 2",
        twin: Twin::Tls,
        scenario: Scenario::Operator,
        keys: &[
            (
                "codeword",
                "the archive table: the stanza of classmate's message to teacher, in the clear although it crossed the network in TLS",
            ),
            (
                "contact",
                "the archive rows of careful's end-to-end messages: the peer column (or the stanza's to='...'), a bare JID",
            ),
            (
                "device",
                "the <header sid='...'> of careful's <encrypted/>: the OMEMO device the message came from",
            ),
        ],
    },
    Lab {
        number: 12,
        title: "Trusted contacts: an injected OMEMO device, and verification",
        sheet: include_str!("../sheets/12-trusted-contacts.md"),
        minutes: 45,
        needs: "lab 11 and lab 7",
        twin: Twin::Plain,
        scenario: Scenario::InjectDevice,
        keys: &[
            (
                "codeword",
                "the proxy's DECRYPTED line in part 1: classmate's end-to-end message to teacher",
            ),
            (
                "device",
                "the proxy's 'added the attacker's device' lines: the device list classmate saw holds teacher's real device and the attacker's",
            ),
        ],
    },
];

/// Lab 10's canned messages: classmate sends one of these. Their lengths
/// differ enough (2 to about 400 characters) to tell them apart by size.
pub const CANNED: [&str; 5] = [
    "ok",
    "running late, start without me",
    "I found the bug: the parser drops the last byte when a read ends exactly on a tag boundary",
    "Notes from today: the proxy strips STARTTLS, the careful client refuses, the server logs the session as secure anyway. Bring your capture of lab 5 tomorrow, we compare the record sizes.",
    "Long version, since you asked. Channel binding ties the SCRAM proof to the TLS session: with tls-exporter the value comes from the session's secrets, with tls-server-end-point from the certificate the client saw. A proxy that ends TLS on both sides has two sessions, so the proof made on one fails on the other. Pinning needs the key in advance; binding needs nothing but the server's own TLS.",
];

/// The seconds, counted from classmate's sign-in, before it starts typing
/// in lab 10 (3 to 12).
fn typing_at(s: &Secrets, lab: u8, part: u8) -> u32 {
    3 + s.pick(&format!("lab{lab}/typing/{part}"), 10)
}

/// Which canned message (0-based) classmate sends in part `part`.
fn canned(s: &Secrets, lab: u8, part: u8) -> usize {
    s.pick(&format!("lab{lab}/canned/{part}"), CANNED.len() as u32) as usize
}

/// Progressive hints, first a nudge, then which tool; the third is each
/// question's own hint (which field). None gives an answer away.
const HINTS: [(u8, &str, &str); 12] = [
    (
        1,
        "Everything classmate typed crossed the wire as it typed it: look for it rather than compute it.",
        "Run the sniffer as `labs run 1` printed it; its CREDENTIAL, MESSAGE and SCRAM lines are what you need.",
    ),
    (
        2,
        "TLS hides the content, not the handshake: what was said in clear before the encryption started?",
        "The sniffer's ClientHello and ServerHello lines (or tshark -Y tls.handshake).",
    ),
    (
        3,
        "The proxy ended classmate's TLS and opened its own: it read both legs in clear.",
        "The proxy's own output (its CAPTURED and stanza lines), not the sniffer.",
    ),
    (
        4,
        "classmate trusted your CA, so the proxy read everything again; careful pinned the key.",
        "The proxy's output for classmate's connection; the refusal line labs run printed for careful.",
    ),
    (
        5,
        "After the strip, classmate's session went on in plaintext: the proxy read it all.",
        "The first proxy's stanza lines for classmate's connection; `base64 -d` for the SASL steps.",
    ),
    (
        6,
        "Part 1 ran over plaintext with only PLAIN offered; part 2 inside TLS the proxy ended.",
        "Each part's proxy output: the CAPTURED line, then the <challenge> decoded with `base64 -d`.",
    ),
    (
        7,
        "Your rules changed stanzas: the proxy's log says what each one said before.",
        "The proxy's `tamper:` lines (run it with your lab7-rules.txt, a file of the right size to swap).",
    ),
    (
        8,
        "The proxy replays a sign-in when its connection ends, then acts as that user.",
        "The proxy's `replay:` and CAPTURED lines for classmate's connection.",
    ),
    (
        9,
        "The capture alone opens nothing; classmate's client wrote the secrets of its own session.",
        "`sniffer read lab9.pcap --keylog` with the key log labs run named.",
    ),
    (
        10,
        "Only sizes and times are visible: compare classmate's two lone records after its sign-in.",
        "`sniffer read lab10.pcap --records`, classmate's connection, records after the first second.",
    ),
    (
        11,
        "TLS ended at the server: everything it stores, it stores as it read it.",
        "`sqlite3` on the database `labs run` named: the archive and offline tables.",
    ),
    (
        12,
        "The proxy added a device of its own to teacher's list; classmate trusted it blindly.",
        "The proxy's inject-omemo-device lines: what it added, and what it DECRYPTED.",
    ),
];

/// Hint `level` (1 to 3) for question `key` of lab `n`: the lab's nudge,
/// then the tool, then the question's own hint.
pub fn hint(n: u8, key: &str, level: u8) -> anyhow::Result<String> {
    let l = lab(n)?;
    let Some((_, field)) = l.keys.iter().find(|(k, _)| *k == key) else {
        bail!(
            "lab {n} has no question '{key}' (keys: {})",
            l.keys
                .iter()
                .map(|(k, _)| *k)
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let (_, nudge, tool) = HINTS
        .iter()
        .find(|(m, _, _)| *m == n)
        .with_context(|| format!("lab {n} has no hints"))?;
    Ok(match level {
        0 | 1 => format!("hint 1 of 3 (a nudge): {nudge}"),
        2 => format!("hint 2 of 3 (the tool): {tool}"),
        _ => format!("hint 3 of 3 (where to look): {field}"),
    })
}

/// The lab numbered `n`.
pub fn lab(n: u8) -> anyhow::Result<&'static Lab> {
    LABS.iter()
        .find(|l| l.number == n)
        .with_context(|| format!("there is no lab {n}: `labs list` shows them"))
}

/// Where a student's values come from: the course secret here
/// (self-study), or the class server.
pub enum Course {
    /// Derived from this course secret on this machine: whoever holds it
    /// can derive anyone's answers (the weaker mode).
    Secret(String),
    /// Fetched, one lab at a time, from the class server at this URL.
    Class(String),
}

impl Course {
    /// What `labs run` notes of the course it ran with: the secret's
    /// tag, or the class server's.
    pub fn tag(&self) -> String {
        match self {
            Course::Secret(c) => course_tag(c),
            Course::Class(url) => course_tag(&format!("class:{url}")),
        }
    }

    /// ` --class URL` for a printed command, or nothing.
    fn class_flag(&self) -> String {
        match self {
            Course::Secret(_) => String::new(),
            Course::Class(url) => format!(" --class {url}"),
        }
    }
}

/// The course secret from the flag or the environment; the default, with a
/// warning, when neither is set.
pub fn course_secret(flag: Option<String>) -> String {
    flag.or_else(|| std::env::var(crate::secrets::COURSE_SECRET_ENV).ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            eprintln!(
                "labs: warning: no course secret (--course-secret or {}): every class using the default has the same answers",
                crate::secrets::COURSE_SECRET_ENV
            );
            crate::secrets::DEFAULT_COURSE_SECRET.to_string()
        })
}

/// The right answer for `key` of lab `n`.
fn expected(n: u8, key: &str, s: &Secrets) -> Option<String> {
    Some(match (n, key) {
        (1, "password") => s.password(1, "classmate"),
        (1, "codeword") => s.codeword(1),
        (1, "iterations") => s.iterations(1).to_string(),
        (2, "server-name") => s.domain(2),
        // The student's server speaks only this version and suite.
        (2, "version") => format!("TLS {}", s.tls(2).0),
        (2, "cipher") => s.tls(2).1.into(),
        (3, "password") => s.password(3, "classmate"),
        (3, "codeword") => s.codeword(3),
        (4, "password") => s.password(4, "classmate"),
        (4, "codeword") => s.codeword(4),
        (5, "codeword") => s.codeword(5),
        (5, "iterations") => s.iterations(5).to_string(),
        (6, "password") => s.password(6, "classmate"),
        (6, "iterations") => s.iterations(6).to_string(),
        (7, "codeword") => s.codeword(7),
        (7, "sha256") => hex(&Sha256::digest(s.notes(7).as_bytes())),
        (8, "contact") => format!("{}@localhost", s.contact(8)),
        (8, "password") => s.password(8, "classmate"),
        (9, "password") => s.password(9, "classmate"),
        (9, "codeword") => s.codeword(9),
        (10, "message") => (canned(s, 10, 1) + 1).to_string(),
        (10, "typing") => typing_at(s, 10, 1).to_string(),
        (11, "codeword") => s.codeword(11),
        (11, "contact") => format!("{}@{}", s.contact(11), s.domain(11)),
        (11, "device") => s.omemo(11, "careful").0.to_string(),
        (12, "codeword") => s.codeword(12),
        (12, "device") => s.omemo(12, "teacher").0.to_string(),
        _ => return None,
    })
}

/// Answers compare without case, spaces, `-` or `_`, and with `TLSv1.3` the
/// same as `TLS 1.3`.
fn normalise(s: &str) -> String {
    let s: String = s
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-' && *c != '_')
        .collect();
    s.replace("tlsv", "tls")
        .replace("tls13aes", "tlsaes")
        .replace("tls13chacha", "tlschacha")
}

/// Whether `value` is the right answer `want` for `key`: a time to within
/// one second (read off a capture), anything else as [`normalise`] and
/// [`canonical`] make it.
fn right_answer(key: &str, value: &str, want: &str) -> bool {
    if key == "typing" {
        let seconds = value.trim().trim_end_matches('s').trim();
        return match (seconds.parse::<f64>(), want.parse::<f64>()) {
            (Ok(v), Ok(w)) => (v - w).abs() <= 1.0,
            _ => false,
        };
    }
    normalise(&canonical(key, value)) == normalise(want)
}

/// An answer in the form `expected` gives: a SHA-256 given in base64 (as
/// an XMPP file offer carries it) becomes hex (as `sha256sum` prints it).
fn canonical(key: &str, value: &str) -> String {
    use base64::Engine as _;
    if key == "sha256"
        && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(value.trim())
        && bytes.len() == 32
    {
        return hex(&bytes);
    }
    value.to_string()
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `labs run N`: the lab's server and scenario.
pub fn run(
    n: u8,
    student: &str,
    s: Secrets,
    course: &Course,
    once: bool,
    port: Option<u16>,
) -> anyhow::Result<u8> {
    let lab = lab(n)?;
    note_last_run(n, &s, &course.tag());
    let dir = tempfile::Builder::new()
        .prefix(&format!("lab{n}-"))
        .tempdir()?;
    let domain = if lab.twin == Twin::Tls {
        s.domain(n)
    } else {
        "localhost".to_string()
    };
    // Each student's server differs in what the lab asks about: its SCRAM
    // iteration count and, for TLS, its version and cipher suite.
    let iterations = s.iterations(n).to_string();
    let mut args = vec!["--scram-iterations", &iterations];
    let (version, cipher) = s.tls(n);
    if lab.twin == Twin::Tls {
        args.extend(["--tls-version", version, "--cipher", cipher]);
    }
    if lab.scenario == Scenario::Operator {
        // The operator's archive (XEP-0313), as most servers keep one.
        args.extend(["--archive-days", "30"]);
    }
    let mut server = start_server(lab.twin, dir.path(), &domain, port, &args)?;
    let (teacher_pw, careful_pw) = (s.password(n, "teacher"), s.password(n, "careful"));
    // These accounts exist before the session starts: only their sign-ins
    // are on the wire.
    server.run("teacher", &teacher_pw, &["--register"], "")?;
    server.run("careful", &careful_pw, &["--register"], "")?;
    if !lab.scenario.classmate_registers() {
        server.run(
            "classmate",
            &s.password(n, "classmate"),
            &["--register"],
            "",
        )?;
    }
    say!("Lab {n}: {} (student: {})", lab.title, s.student());
    if let Course::Secret(_) = course {
        say!(
            "Self-study mode: your values come from the course secret on this machine, from which anyone's answers can be computed; in class, the teacher's server keeps it (--class URL)."
        );
    }
    // Not the server name: for TLS labs it is an answer.
    say!("{} server on {}", lab.twin.bin(), server.addr);
    let mut kept = None;
    match lab.scenario {
        Scenario::Sniff | Scenario::KeyLog | Scenario::Traffic => {
            say!("In another terminal, start the sniffer:");
            // Its full path: sudo's `secure_path` would not find it where
            // it was built or installed.
            let sniffer = crate::chat::bin("sniffer")?;
            say!(
                "  sudo {} live --interface lo --filter \"tcp port {}\" --write lab{n}.pcap",
                sniffer.display(),
                server.addr.port()
            );
            if !once {
                say!("then press Enter here to start the session.");
                wait_enter()?;
            }
            check_interrupt()?;
            sniffed_lab_session(lab.scenario, &server, &s, n, dir.path())?;
        }
        Scenario::Intercept | Scenario::InterceptCa => {
            intercepted_session(&server, &s, n, once, lab.scenario, dir.path())?;
        }
        Scenario::Strip => stripped_session(&server, &s, n, once)?,
        // Their second server stays up with the first, for the student.
        Scenario::Downgrade => kept = Some(downgraded_session(&server, &s, n, once, dir.path())?),
        Scenario::Tamper => kept = Some(tampered_session(&server, &s, n, once, dir.path())?),
        Scenario::Replay => replayed_session(&server, &s, n, once)?,
        Scenario::Operator => operator_session(&server, &s, n, dir.path())?,
        Scenario::InjectDevice => injected_session(&server, &s, n, once, dir.path())?,
    }
    if lab.scenario == Scenario::InterceptCa {
        // Key rotation: the same CA, a new server key. careful pinned the
        // old one, so it now refuses the real server too: the cost of a
        // pin without a backup.
        let old_pin = server.pin.clone().unwrap_or_default();
        let new_pin = crate::chat::renew_key(dir.path(), &domain)?;
        let at = server.addr.port();
        drop(server);
        server = start_server(lab.twin, dir.path(), &domain, Some(at), &args)?;
        say!("The server's key was rotated: a new key under the same CA, on the same port.");
        let refused = run_refused(
            &server,
            server.addr,
            "careful",
            &s.password(n, "careful"),
            &["--pin", &old_pin],
        )?;
        say!("careful, straight to the server with the pin it kept:");
        say!("  {refused}");
        say!("The new key's pin: {new_pin}");
    }
    let keys: Vec<&str> = lab.keys.iter().map(|(k, _)| *k).collect();
    say!("The session is over. Answer with:");
    say!(
        "  labs check {n}{} --student \"{student}\" {}",
        course.class_flag(),
        keys.iter()
            .map(|k| format!("--answer {k}=..."))
            .collect::<Vec<_>>()
            .join(" ")
    );
    // A student who started the sniffer late runs the session again; an
    // attacker lab waits for the student's proxy, so it cannot start early.
    let again = matches!(
        lab.scenario,
        Scenario::Sniff | Scenario::KeyLog | Scenario::Traffic
    );
    if !once {
        if again {
            say!(
                "(the server keeps running for you: Enter runs the session again; Ctrl-C stops everything)"
            );
        } else {
            say!("(the server keeps running for you; Ctrl-C stops everything)");
        }
        loop {
            match wait_enter() {
                Ok(true) if again => {
                    if lab.scenario.classmate_registers() {
                        // It signs up again in the session.
                        server.run(
                            "classmate",
                            &s.password(n, "classmate"),
                            &[],
                            "/unregister\n",
                        )?;
                    }
                    sniffed_lab_session(lab.scenario, &server, &s, n, dir.path())?;
                    say!("The session is over again (Enter: once more; Ctrl-C stops everything).");
                }
                Ok(true) => {}
                // Input closed: wait for Ctrl-C.
                Ok(false) => {
                    while check_interrupt().is_ok() {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    break;
                }
                Err(_) => break,
            }
        }
    }
    drop(kept);
    Ok(0)
}

/// `labs answers N`: a student's right answers, `KEY=VALUE` per line, as
/// `labs check` takes them.
pub fn answers(n: u8, student: &str, course: &str) -> anyhow::Result<u8> {
    let lab = lab(n)?;
    let s = Secrets::new(course, student);
    for (key, _) in lab.keys {
        let want =
            expected(n, key, &s).with_context(|| format!("lab {n} has no answer for '{key}'"))?;
        outln!("{key}={want}");
    }
    Ok(0)
}

/// Lines typed on stdin, read by a thread of their own so that a wait for
/// Enter still sees Ctrl-C (a blocked read would not return for it).
fn stdin_lines() -> &'static std::sync::Mutex<std::sync::mpsc::Receiver<()>> {
    static LINES: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Receiver<()>>> =
        std::sync::OnceLock::new();
    LINES.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut input = std::io::stdin().lock();
            while matches!(input.read_line(&mut line), Ok(n) if n > 0) {
                line.clear();
                if tx.send(()).is_err() {
                    return;
                }
            }
        });
        std::sync::Mutex::new(rx)
    })
}

/// Waits for Enter: `true`, or `false` when input has ended (nobody will
/// press it); Ctrl-C is an error.
fn wait_enter() -> Result<bool, harness::Error> {
    let lines = stdin_lines()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        check_interrupt()?;
        match lines.recv_timeout(Duration::from_millis(100)) {
            Ok(()) => return Ok(true),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(false),
        }
    }
}

/// The session of a lab the student sniffs (1, 2, 9, 10).
fn sniffed_lab_session(
    scenario: Scenario,
    server: &ChatServer,
    s: &Secrets,
    n: u8,
    dir: &Path,
) -> anyhow::Result<()> {
    match scenario {
        Scenario::Sniff => sniffed_session(server, s, n),
        Scenario::KeyLog => keylogged_session(server, s, n, dir),
        _ => traffic_session(server, s, n),
    }
}

/// `teacher`, signed in straight to the server, waiting for classmate's
/// message.
fn teacher_waits(server: &ChatServer, s: &Secrets, n: u8) -> anyhow::Result<harness::Proc> {
    server.start(
        "teacher",
        &s.password(n, "teacher"),
        &[],
        "/wait message classmate 30\n",
    )
}

/// Labs 1 and 2: `teacher` waits for a message; `classmate` registers,
/// signs in with PLAIN and sends the code word; `careful` signs in with
/// SCRAM and sets a status.
fn sniffed_session(server: &ChatServer, s: &Secrets, n: u8) -> anyhow::Result<()> {
    let teacher = teacher_waits(server, s, n)?;
    server.run(
        "classmate",
        &s.password(n, "classmate"),
        &["--register", "--plain"],
        &format!(
            "/msg teacher the code word is {}\n/wait receipt teacher 20\n",
            s.codeword(n)
        ),
    )?;
    server.run(
        "careful",
        &s.password(n, "careful"),
        &[],
        "/status away reading the RFCs\n",
    )?;
    teacher.finish(Duration::from_secs(30))?;
    Ok(())
}

/// The attacker's `mitm-proxy` between the classmates and a server: the
/// student runs it from the command printed here; with `--once` (a
/// projector) the lab runs it itself and prints what it saw at the end.
struct Attacker {
    /// Where the classmates connect, taking it for the server.
    addr: std::net::SocketAddr,
    /// The lab's own proxy (`--once`).
    own: Option<harness::Proc>,
}

impl Attacker {
    /// Puts a proxy with `attack` (its flags) in front of `upstream`.
    fn start(upstream: std::net::SocketAddr, attack: &[&str], once: bool) -> anyhow::Result<Self> {
        let addr = free_loopback_port()?;
        let bin = crate::chat::bin("mitm-proxy")?;
        let (listen, upstream) = (addr.to_string(), upstream.to_string());
        let mut args = vec!["--listen", &listen, "--upstream", &upstream];
        args.extend(attack);
        if once {
            let mut cmd = std::process::Command::new(&bin);
            cmd.args(&args);
            let p = harness::Proc::spawn("mitm-proxy", cmd, harness::Input::Null)?;
            harness::chat::wait_ready(&p)?;
            return Ok(Attacker { addr, own: Some(p) });
        }
        say!("You are the attacker. In another terminal, put the proxy in the path:");
        say!("  {} {}", bin.display(), args.join(" "));
        say!("Your classmates will connect to {addr}, taking it for the server.");
        say!("Press Enter here once the proxy is listening.");
        wait_enter()?;
        // Nothing listens there until the student's proxy does; binding
        // the port ourselves tells, without a connection the proxy would
        // log as a client.
        while std::net::TcpListener::bind(addr).is_ok() {
            check_interrupt()?;
            say!("Nothing listens on {addr} yet: start the proxy (above), then press Enter.");
            if !wait_enter()? {
                bail!("input ended before the proxy was listening on {addr}");
            }
        }
        check_interrupt()?;
        Ok(Attacker { addr, own: None })
    }

    /// With `--once`: stops the lab's proxy and prints what it saw.
    fn report(self) -> anyhow::Result<()> {
        if let Some(mut p) = self.own {
            let (_, lines) = p.interrupt(Duration::from_secs(20))?;
            say!("What the proxy saw:");
            for l in lines {
                say!("  {l}");
            }
        }
        Ok(())
    }
}

/// `classmate` at `addr` with `flags`: sends teacher the code word, and
/// teacher (signed in straight to the server) receives it. Returns what
/// classmate's client said of a certificate it accepted unchecked.
fn classmate_sends_codeword(
    server: &ChatServer,
    addr: std::net::SocketAddr,
    s: &Secrets,
    n: u8,
    flags: &[&str],
) -> anyhow::Result<Vec<String>> {
    let teacher = teacher_waits(server, s, n)?;
    let script = format!(
        "/msg teacher the code word is {}\n/wait receipt teacher 20\n",
        s.codeword(n)
    );
    let (ok, said) = server.run_to_end(
        addr,
        "classmate",
        &s.password(n, "classmate"),
        flags,
        &script,
    )?;
    if !ok {
        bail!("classmate's client failed: {}", said.trim());
    }
    teacher.finish(Duration::from_secs(30))?;
    let shown: Vec<&str> = flags
        .iter()
        .copied()
        .filter(|f| *f != "--register")
        .collect();
    say!(
        "classmate ({}) signed in through {addr} and sent a message.",
        shown.join(" ")
    );
    Ok(said
        .lines()
        .filter(|l| l.contains("without any check"))
        .map(|l| l.trim().to_string())
        .collect())
}

/// `careful` at `addr` with `flags` (`how`, in words), expecting a
/// refusal: prints the client's own reason.
fn careful_refused(
    server: &ChatServer,
    addr: std::net::SocketAddr,
    s: &Secrets,
    n: u8,
    flags: &[&str],
    how: &str,
) -> anyhow::Result<()> {
    let refused = run_refused(server, addr, "careful", &s.password(n, "careful"), flags)?;
    say!("careful ({how}) through {addr}:");
    say!("  {refused}");
    Ok(())
}

/// Lab 9: the session of labs 1 and 2 over TLS, where classmate's client
/// writes its session secrets to a key log (`SSLKEYLOGFILE`, the NSS
/// format browsers write too) and careful's does not. The student opens
/// the capture with that key log, and tries the server's private key.
fn keylogged_session(server: &ChatServer, s: &Secrets, n: u8, dir: &Path) -> anyhow::Result<()> {
    let keylog = dir.join("classmate-keys.log");
    let teacher = teacher_waits(server, s, n)?;
    let mut cmd = server.client("classmate", &s.password(n, "classmate"), &["--register"])?;
    // Deliberately weak: whoever reads this file decrypts the session.
    cmd.env("SSLKEYLOGFILE", &keylog);
    let script = format!(
        "/msg teacher the code word is {}\n/wait receipt teacher 20\n",
        s.codeword(n)
    );
    harness::Proc::spawn("classmate", cmd, harness::Input::Text(script))?
        .finish(Duration::from_secs(60))?;
    server.run(
        "careful",
        &s.password(n, "careful"),
        &[],
        "/status away reading the RFCs\n",
    )?;
    teacher.finish(Duration::from_secs(30))?;
    say!("classmate signed up and sent teacher a message; careful signed in and set a status.");
    say!(
        "classmate's client wrote its TLS session secrets (SSLKEYLOGFILE) to: {}",
        keylog.display()
    );
    say!(
        "The server's private key: {}",
        dir.join("certs").join("server.key").display()
    );
    say!("Stop the sniffer (Ctrl-C), then read the capture with each (the sheet says how).");
    Ok(())
}

/// Lab 10: classmate signs in, waits, types (a chat state), and two
/// seconds later sends teacher one of the [`CANNED`] messages; under TLS
/// only sizes and times show. Then the same again with `--pad 256`, with
/// another message at another moment.
fn traffic_session(server: &ChatServer, s: &Secrets, n: u8) -> anyhow::Result<()> {
    for part in 1..=2 {
        // Without stream management: its acks (`<r/>`, `<a/>`) come and go
        // on their own timing, records that blur the two this lab is about
        // (a lesson of their own, not this lab's).
        let flags: &[&str] = if part == 1 {
            &["--no-stream-management"]
        } else {
            &["--pad", "256", "--no-stream-management"]
        };
        let teacher = teacher_waits(server, s, n)?;
        let cmd = server.client("classmate", &s.password(n, "classmate"), flags)?;
        let mut c = harness::Proc::spawn("classmate", cmd, harness::Input::Piped)?;
        c.wait_line("\"type\":\"connected\"", Duration::from_secs(20))?;
        say!(
            "Part {part}: classmate signed in{}; it will type, then send teacher one message.",
            if part == 1 { "" } else { " with --pad 256" }
        );
        wait_seconds(typing_at(s, n, part.try_into()?))?;
        c.send_line("/typing teacher")?;
        wait_seconds(2)?;
        c.send_line(&format!(
            "/msg teacher {}",
            CANNED[canned(s, n, part.try_into()?)]
        ))?;
        c.send_line("/wait receipt teacher 20")?;
        c.close_stdin();
        c.finish(Duration::from_secs(60))?;
        teacher.finish(Duration::from_secs(30))?;
        say!("Part {part} is over: classmate signed out.");
    }
    say!("Stop the sniffer (Ctrl-C), then read the capture with --records (the sheet says how).");
    Ok(())
}

/// Sleeps `n` seconds, stopping early on Ctrl-C.
fn wait_seconds(n: u32) -> anyhow::Result<()> {
    for _ in 0..n * 10 {
        check_interrupt()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Lab 3: the student is the attacker in the path. `classmate` connects
/// through the student's proxy with `--insecure` (deliberately weak: it
/// accepts any certificate), registers and sends the code word; `careful`
/// connects the same way with the default settings and refuses the forged
/// certificate; `teacher` reaches the server directly.
///
/// Lab 4: the proxy mints certificates with the attacker's CA, which both
/// classmates' clients were tricked into trusting (`--ca`); `careful` has
/// also pinned the server's key (`--pin`), which the attacker cannot forge.
fn intercepted_session(
    server: &ChatServer,
    s: &Secrets,
    n: u8,
    once: bool,
    scenario: Scenario,
    dir: &Path,
) -> anyhow::Result<()> {
    let pin = server.pin.clone().unwrap_or_default();
    let attacker_ca;
    let (classmate_trust, careful_trust, proxy): (Vec<&str>, Vec<&str>, Attacker) = match scenario {
        // Deliberately weak: `--insecure` takes any certificate.
        Scenario::Intercept => {
            if !once && let Some(ca) = &server.ca {
                say!(
                    "The lab CA (what a careful client trusts): {}",
                    ca.display()
                );
            }
            let proxy = Attacker::start(server.addr, &["--attack", "intercept-tls"], once)?;
            (vec!["--insecure"], vec![], proxy)
        }
        _ => {
            let ca_dir = attacker_ca_in(dir)?;
            attacker_ca = ca_dir.join("ca.pem").display().to_string();
            if !once {
                say!(
                    "Your CA as the attacker (the classmates' machines were made to trust it): {attacker_ca}"
                );
            }
            let ca_dir = ca_dir.display().to_string();
            let proxy = Attacker::start(
                server.addr,
                &["--attack", "intercept-tls", "--ca-dir", &ca_dir],
                once,
            )?;
            // Deliberately weak: both trust the attacker's CA (installed by
            // malware, a "security" product, or a careless admin).
            (
                vec!["--ca", attacker_ca.as_str()],
                vec!["--ca", attacker_ca.as_str(), "--pin", pin.as_str()],
                proxy,
            )
        }
    };
    // Without channel binding the server cannot tell its TLS is not the
    // client's (lab 6).
    let mut flags = vec!["--register", "--no-channel-binding"];
    flags.extend(&classmate_trust);
    let unchecked = classmate_sends_codeword(server, proxy.addr, s, n, &flags)?;
    if !unchecked.is_empty() {
        say!("classmate's client said:");
        for l in unchecked {
            say!("  {l}");
        }
        say!("The real server's key (`chat-tls certs` printed it): {pin}");
    }
    let how = if careful_trust.is_empty() {
        "default settings"
    } else {
        "the same CA, and a pin"
    };
    careful_refused(server, proxy.addr, s, n, &careful_trust, how)?;
    proxy.report()
}

/// The attacker's CA, made as the student would (`mitm-proxy ca --out`),
/// in `dir/attacker-ca`; returns that folder.
fn attacker_ca_in(dir: &Path) -> anyhow::Result<PathBuf> {
    let ca = dir.join("attacker-ca");
    let out = std::process::Command::new(crate::chat::bin("mitm-proxy")?)
        .args(["ca", "--out"])
        .arg(&ca)
        .output()?;
    if !out.status.success() {
        bail!(
            "mitm-proxy ca failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(ca)
}

/// Lab 5, part 1: the proxy removes `<starttls/>` from the features.
/// `classmate` (signed up before, on a safe connection) insists on nothing:
/// `--starttls opportunistic` goes on in plaintext, where its SCRAM
/// sign-in and its message are readable. `careful` (the default,
/// `required`) stops. The server required STARTTLS and still believes the
/// session was secure: the proxy took TLS in the client's place.
///
/// Part 2: the proxy slips a plaintext stanza in after `<starttls/>` and
/// after `<proceed/>` (CVE-2011-0411 class); the server and the client
/// discard whatever was read before the switch, and say so.
fn stripped_session(server: &ChatServer, s: &Secrets, n: u8, once: bool) -> anyhow::Result<()> {
    if !once && let Some(ca) = &server.ca {
        say!("The lab CA (what the classmates trust): {}", ca.display());
    }
    say!("Part 1: strip STARTTLS.");
    let strip = Attacker::start(server.addr, &["--attack", "strip-starttls"], once)?;
    // Deliberately weak: `opportunistic` takes plaintext when STARTTLS is
    // not offered, which is exactly what the attacker arranges.
    classmate_sends_codeword(server, strip.addr, s, n, &["--starttls", "opportunistic"])?;
    careful_refused(
        server,
        strip.addr,
        s,
        n,
        &[],
        "default settings: --starttls required",
    )?;
    // The last: the first was classmate's sign-up, straight to the server.
    if let Some(l) = server
        .log_lines("session bound")
        .iter()
        .rfind(|l| l.contains("classmate@"))
    {
        say!("What the server logged of classmate's session (it requires STARTTLS):");
        say!("  {}", l.trim());
    }
    strip.report()?;

    say!("Part 2: inject a command at the STARTTLS switch.");
    let inject = Attacker::start(server.addr, &["--attack", "inject-starttls"], once)?;
    let (ok, careful) = server.run_to_end(
        inject.addr,
        "careful",
        &s.password(n, "careful"),
        &[],
        "/status away reading the RFCs\n",
    )?;
    say!(
        "careful (default settings) through {}: {}",
        inject.addr,
        if ok {
            "signed in and set its status"
        } else {
            "failed"
        }
    );
    say!("What careful's client said:");
    for l in careful.lines().filter(|l| l.contains("discarded")) {
        say!("  {}", l.trim());
    }
    say!("What the server logged:");
    for l in server.log_lines("discarded plaintext") {
        say!("  {}", l.trim());
    }
    inject.report()
}

/// Lab 6, part 1 (the plaintext twin): the proxy offers only PLAIN.
/// `classmate` takes whatever is offered (`--sasl PLAIN`) and sends its
/// password; `careful` (the default minimum, SCRAM) refuses.
///
/// Part 2 (TLS): the proxy ends classmate's TLS with a certificate from the
/// attacker's CA, which classmate trusts by mistake. classmate binds its
/// SCRAM sign-in to the TLS it sees (`-PLUS`, the default); the server
/// compares with its own TLS, finds another certificate, and refuses.
fn downgraded_session(
    server: &ChatServer,
    s: &Secrets,
    n: u8,
    once: bool,
    dir: &Path,
) -> anyhow::Result<ChatServer> {
    say!("Part 1: downgrade SASL on the plaintext twin.");
    let plain = start_server(Twin::Plain, dir, "localhost", None, &[])?;
    let pw = s.password(n, "classmate");
    // Both signed up before, on a connection the attacker did not see.
    plain.run("classmate", &pw, &["--register"], "")?;
    plain.run("careful", &s.password(n, "careful"), &["--register"], "")?;
    say!("chat-plain server on {}", plain.addr);
    let down = Attacker::start(plain.addr, &["--attack", "downgrade-sasl"], once)?;
    // Deliberately weak: `--sasl PLAIN` takes whatever the offer says.
    plain.run_at(
        down.addr,
        "classmate",
        &pw,
        &["--sasl", "PLAIN"],
        "/status away reading the RFCs\n",
    )?;
    say!(
        "classmate (--sasl PLAIN) signed in through {} and set its status.",
        down.addr
    );
    careful_refused(&plain, down.addr, s, n, &[], "default settings")?;
    down.report()?;

    say!("Part 2: channel binding, against a CA the client trusts by mistake.");
    let ca_dir = attacker_ca_in(dir)?;
    let attacker_ca = ca_dir.join("ca.pem").display().to_string();
    if !once {
        say!("Your CA as the attacker (classmate's machine was made to trust it): {attacker_ca}");
    }
    let ca_dir = ca_dir.display().to_string();
    let icpt = Attacker::start(
        server.addr,
        &["--attack", "intercept-tls", "--ca-dir", &ca_dir],
        once,
    )?;
    // Deliberately weak: classmate trusts the attacker's CA. Its sign-in
    // is bound to its TLS (SCRAM-*-PLUS, the default), which is the
    // defence this part shows.
    let refused = run_refused(server, icpt.addr, "classmate", &pw, &["--ca", &attacker_ca])?;
    say!(
        "classmate (trusting your CA; channel binding on, the default) through {}:",
        icpt.addr
    );
    say!("  {refused}");
    icpt.report()?;
    Ok(plain)
}

/// Lab 7, part 1 and 2 (the plaintext twin): the student's proxy changes
/// stanzas by the student's own rules (`--attack tamper --rules FILE`).
/// classmate sends teacher a message and then a file, whose offer carries
/// its SHA-256; the lab says whether what teacher's client showed and saved
/// is what classmate sent, and that teacher's client checked the hash.
///
/// Part 3 (TLS): the proxy flips one bit of one encrypted record, and the
/// connection dies of it.
fn tampered_session(
    server: &ChatServer,
    s: &Secrets,
    n: u8,
    once: bool,
    dir: &Path,
) -> anyhow::Result<ChatServer> {
    let (teacher_pw, classmate_pw) = (s.password(n, "teacher"), s.password(n, "classmate"));
    // Contacts before the session (straight to the server): a file goes to
    // a contact's full address, which presence tells.
    let teacher = server.start(
        "teacher",
        &teacher_pw,
        &[],
        "/wait subscribe classmate 20\n/add classmate\n",
    )?;
    server.run(
        "classmate",
        &classmate_pw,
        &[],
        "/add teacher\n/wait subscription teacher 20\n",
    )?;
    teacher.finish(Duration::from_secs(30))?;
    let notes = s.notes(n);
    let notes_path = dir.join("notes.txt");
    std::fs::write(&notes_path, &notes)?;
    say!("Parts 1 and 2: change what classmate says, and the file it sends.");
    say!(
        "classmate will send teacher a message, then the file notes.txt ({} bytes).",
        notes.len()
    );
    let rules = if once {
        // The lab as its own attacker: a rule for each lesson.
        let evil = dir.join("evil.txt");
        let mut fake = "The key to room B is under the mat.".to_string();
        while fake.len() + 1 < notes.len() {
            fake.push(' ');
        }
        fake.truncate(notes.len() - 1);
        std::fs::write(&evil, fake + "\n")?;
        let rules = dir.join("lab7-rules.txt");
        std::fs::write(
            &rules,
            format!(
                "c2s message body~code.word => replace-body the code word is CHANGED\n\
                 c2s iq => swap-file {}\n",
                evil.display()
            ),
        )?;
        rules.display().to_string()
    } else {
        say!(
            "Write your rules in lab7-rules.txt (the sheet shows how), in the folder where you run the proxy."
        );
        "lab7-rules.txt".to_string()
    };
    let tamper = Attacker::start(
        server.addr,
        &["--attack", "tamper", "--rules", &rules],
        once,
    )?;
    let downloads = dir.join("teacher-downloads");
    let mut teacher = server.start(
        "teacher",
        &teacher_pw,
        &[
            "--accept-files",
            "--downloads",
            &downloads.display().to_string(),
        ],
        "/wait message classmate 30\n/wait file-received classmate 60\n",
    )?;
    let sent = format!("the code word is {}", s.codeword(n));
    server.run_at(
        tamper.addr,
        "classmate",
        &classmate_pw,
        &[],
        &format!(
            "/wait presence teacher 20\n/msg teacher {sent}\n/sendfile teacher {}\n",
            notes_path.display()
        ),
    )?;
    // What teacher's client showed, whatever the rules did (a dropped
    // message or file is an outcome too, not an error).
    let (_, lines) = teacher.wait_exit(Duration::from_secs(90))?;
    let events: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    match events.iter().find(|v| v["type"] == "message") {
        Some(m) if m["body"] == sent.as_str() => {
            say!("teacher's client showed classmate's message as classmate wrote it.")
        }
        Some(_) => say!(
            "teacher's client showed classmate's message CHANGED in flight, and nothing warned teacher."
        ),
        None => say!("teacher's client showed no message from classmate."),
    }
    match events.iter().find(|v| v["type"] == "file-received") {
        Some(f) => {
            let saved = std::fs::read(f["path"].as_str().unwrap_or_default()).unwrap_or_default();
            say!(
                "teacher's client saved notes.txt and checked its SHA-256 against the one in the offer: it matched."
            );
            if saved == notes.as_bytes() {
                say!("Its content is what classmate sent.");
            } else {
                say!("Its content is NOT what classmate sent.");
            }
        }
        None => say!("teacher's client saved no file from classmate."),
    }
    tamper.report()?;

    say!("Part 3: flip one bit inside TLS.");
    let tls = start_server(Twin::Tls, dir, &s.domain(n), None, &[])?;
    tls.run("classmate", &classmate_pw, &["--register"], "")?;
    let flip = Attacker::start(tls.addr, &["--attack", "corrupt-tls"], once)?;
    let (ok, said) = tls.run_to_end(
        flip.addr,
        "classmate",
        &classmate_pw,
        &[],
        "/status away reading the RFCs\n/msg careful hello\n",
    )?;
    say!(
        "classmate (default settings) through {}: {}",
        flip.addr,
        if ok {
            "finished normally"
        } else {
            "its connection failed"
        }
    );
    for l in said.lines().filter(|l| !l.trim().is_empty()) {
        say!("  {}", l.trim());
    }
    say!("What the chat-tls server logged:");
    for l in tls.log_lines("connection failed") {
        say!("  {}", l.trim());
    }
    flip.report()?;
    Ok(tls)
}

/// Lab 8 (the plaintext twin): the proxy records each sign-in it sees
/// succeed and plays it again on a connection of its own. `classmate`
/// signs in with PLAIN: the same bytes sign in again, and the proxy reads
/// classmate's roster as classmate. `careful` signs in with SCRAM: the
/// server's nonce is new on the proxy's connection, the recorded proof does
/// not fit it, and the server refuses.
fn replayed_session(server: &ChatServer, s: &Secrets, n: u8, once: bool) -> anyhow::Result<()> {
    let pw = s.password(n, "classmate");
    // classmate's contacts, made before the session: what an attacker
    // signed in as classmate reads first.
    server.run(
        "classmate",
        &pw,
        &[],
        &format!("/add teacher\n/add {}\n", s.contact(n)),
    )?;
    // The sign-ins so far (sign-ups, classmate's contacts) are not the
    // session's.
    let before = server.log_lines("authenticated").len();
    let proxy = Attacker::start(server.addr, &["--attack", "replay"], once)?;
    // Deliberately weak: PLAIN sends the same bytes at every sign-in.
    server.run_at(
        proxy.addr,
        "classmate",
        &pw,
        &["--plain"],
        "/status away reading the RFCs\n",
    )?;
    say!(
        "classmate (--plain) signed in through {} and signed out.",
        proxy.addr
    );
    server.run_at(
        proxy.addr,
        "careful",
        &s.password(n, "careful"),
        &[],
        "/status away reading the RFCs\n",
    )?;
    say!(
        "careful (default settings: SCRAM) signed in through {} and signed out.",
        proxy.addr
    );
    // The proxy replays when a connection ends: give it the time.
    std::thread::sleep(Duration::from_secs(1));
    say!("What the server logged of the sign-ins after the session began:");
    for l in server.log_lines("authenticated").iter().skip(before) {
        say!("  {}", l.trim());
    }
    for l in server.log_lines("authentication failed") {
        say!("  {}", l.trim());
    }
    proxy.report()
}

/// Runs `user` at `addr` with `extra` flags, expecting a refusal: the
/// client's own last line saying why, or a note that it was not refused.
fn run_refused(
    server: &ChatServer,
    addr: std::net::SocketAddr,
    user: &str,
    password: &str,
    extra: &[&str],
) -> anyhow::Result<String> {
    let (ok, why) = server.run_to_end(
        addr,
        user,
        password,
        extra,
        "/status away reading the RFCs\n",
    )?;
    if ok {
        return Ok(format!("{user} was NOT refused: it signed in"));
    }
    Ok(why
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no reason given)")
        .to_string())
}

/// A loopback address with a port nothing uses now.
/// Writes `jid`'s OMEMO device (`id`, identity from `seed`) where its
/// client keeps it in `data` (`--data`): the lab's answers include a
/// device id, which must then be known in advance. Readable by the user
/// alone, as the client writes it.
fn seed_device(data: &Path, jid: &str, id: u32, seed: [u8; 32]) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    // The client's folder for an account is its bare JID (a plain one, as
    // every lab account's is).
    let dir = data.join(jid).join("omemo");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let device = protocol::omemo::device::Device::from_seed(id, seed);
    crate::secrets::write_private(&dir.join("device.json"), &serde_json::to_vec(&device)?)?;
    Ok(())
}

/// The fingerprint of the identity from `seed`, as clients show it.
fn fingerprint(seed: [u8; 32]) -> String {
    protocol::omemo::keys::IdentityKey::from_seed(seed).fingerprint()
}

/// Lab 11: the student is the operator of a TLS server that keeps an
/// archive. classmate writes to teacher over TLS (hop by hop: the server
/// reads and stores it); careful writes to a contact end to end (OMEMO:
/// the server stores ciphertext), once while the contact is online (the
/// archive) and once while it is not (the offline store).
fn operator_session(server: &ChatServer, s: &Secrets, n: u8, dir: &Path) -> anyhow::Result<()> {
    let data = dir.join("clients");
    let careful = format!("careful@{}", server.domain);
    let (id, seed) = s.omemo(n, "careful");
    seed_device(&data, &careful, id, seed)?;
    let d = data.display().to_string();
    let e2e = ["--e2e", "on", "--data", d.as_str()];
    let contact = s.contact(n);
    // Not an answer: derived from careful's, so the class server's values
    // cover it.
    let contact_pw = format!("{}-friend", s.password(n, "careful"));
    let mut with_register = e2e.to_vec();
    with_register.push("--register");
    // The contact signs up with OMEMO (its device list published).
    server.run(&contact, &contact_pw, &with_register, "")?;
    say!("Part 1: classmate writes to teacher over TLS.");
    let teacher = server.start(
        "teacher",
        &s.password(n, "teacher"),
        &[],
        "/wait message classmate 30
",
    )?;
    server.run(
        "classmate",
        &s.password(n, "classmate"),
        &[],
        &format!(
            "/msg teacher the code word is {}
",
            s.codeword(n)
        ),
    )?;
    teacher.finish(Duration::from_secs(30))?;
    say!(
        "Part 2: careful writes to a contact end to end (OMEMO), twice: once while the contact is online, once while it is not."
    );
    let friend = server.start(
        &contact,
        &contact_pw,
        &e2e,
        "/wait message careful 30
",
    )?;
    server.run(
        "careful",
        &s.password(n, "careful"),
        &e2e,
        &format!(
            "/msg {contact} the real meeting is at five, tell nobody
"
        ),
    )?;
    let lines = friend.finish(Duration::from_secs(30))?;
    if lines
        .iter()
        .any(|l| l.contains(r#""type":"message""#) && l.contains(r#""e2e""#))
    {
        say!("careful's contact read the message, decrypted on its own device.");
    } else {
        say!(
            "careful's contact did not get the message end to end (see the sheet's instructor notes)."
        );
    }
    server.run(
        "careful",
        &s.password(n, "careful"),
        &e2e,
        &format!(
            "/msg {contact} and bring the blue folder
"
        ),
    )?;
    let db = dir
        .join(format!("{}-data", server.twin.bin()))
        .join("chat.db");
    say!("You are the server's operator. Its database:");
    say!("  {}", db.display());
    say!("Read it as the sheet shows (sqlite3), while the server runs.");
    Ok(())
}

/// Lab 12: `inject-omemo-device` between classmate and the server.
/// classmate trusts teacher's devices blindly (part 1: the proxy reads
/// its message), then verifies teacher's fingerprint, read out over the
/// phone, and writes again (part 2: the injected device gets nothing).
fn injected_session(
    server: &ChatServer,
    s: &Secrets,
    n: u8,
    once: bool,
    dir: &Path,
) -> anyhow::Result<()> {
    let (teacher_pw, classmate_pw) = (s.password(n, "teacher"), s.password(n, "classmate"));
    let data = dir.join("clients");
    let (id, seed) = s.omemo(n, "teacher");
    seed_device(&data, &format!("teacher@{}", server.domain), id, seed)?;
    let d = data.display().to_string();
    let e2e = ["--e2e", "on", "--data", d.as_str()];
    // Contacts before the session, straight to the server.
    let teacher = server.start(
        "teacher",
        &teacher_pw,
        &e2e,
        "/wait subscribe classmate 20
/add classmate
",
    )?;
    server.run(
        "classmate",
        &classmate_pw,
        &e2e,
        "/add teacher
/wait subscription teacher 20
",
    )?;
    teacher.finish(Duration::from_secs(30))?;
    say!(
        "Part 1: classmate writes to teacher end to end (OMEMO), through your proxy. Its client trusts a contact's new devices blindly until it has verified one (the default of most OMEMO clients)."
    );
    let proxy = Attacker::start(server.addr, &["--attack", "inject-omemo-device"], once)?;
    let round = |script: &str| -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let teacher = server.start(
            "teacher",
            &teacher_pw,
            &e2e,
            "/wait message classmate 30
",
        )?;
        let said = server.run_at(proxy.addr, "classmate", &classmate_pw, &e2e, script)?;
        Ok((said, teacher.finish(Duration::from_secs(40))?))
    };
    let (said, got) = round(&format!(
        "/wait presence teacher 20
/msg teacher the code word is {}
",
        s.codeword(n)
    ))?;
    let new_devices = said
        .iter()
        .filter(|l| l.contains("NEW OMEMO DEVICE of teacher"))
        .count();
    say!(
        "classmate's client was told of {new_devices} new OMEMO device(s) of teacher, and trusted them blindly."
    );
    if got
        .iter()
        .any(|l| l.contains(r#""type":"message""#) && l.contains(r#""e2e""#))
    {
        say!("teacher read the message, decrypted on its own device: nothing looked wrong.");
    }
    let fp = fingerprint(seed);
    say!(
        "Part 2: teacher reads classmate its fingerprint over the phone (out of band: neither the server nor your proxy carries it):"
    );
    say!("  {fp}");
    say!(
        "classmate compares, verifies it (/verify teacher FINGERPRINT) and writes again, through your proxy."
    );
    let (said, _) = round(&format!(
        "/wait presence teacher 20
/verify teacher {fp}
/msg teacher the meeting moved to room 12
"
    ))?;
    if said
        .iter()
        .any(|l| l.contains(r#""command":"/verify""#) && l.contains("NOT trusted any more"))
    {
        say!(
            "classmate's client: teacher's device is verified; the other device it had trusted blindly is NOT trusted any more."
        );
    }
    proxy.report()?;
    Ok(())
}

fn free_loopback_port() -> anyhow::Result<std::net::SocketAddr> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?)
}

/// Who solved what: student → lab → keys.
type Progress = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn load(path: &Path) -> anyhow::Result<Progress> {
    match std::fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t)
            .with_context(|| format!("{} is not a progress file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Progress::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The progress file: `--progress`, `LABS_PROGRESS`, or `labs-progress.json`.
pub fn progress_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("LABS_PROGRESS").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("labs-progress.json"))
}

/// What checking a set of answers found.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Checked {
    /// One line per answer: `KEY: right`, or wrong with a hint.
    pub verdicts: Vec<String>,
    /// The keys answered right.
    pub right: Vec<String>,
    /// How many were wrong.
    pub wrong: usize,
}

/// Checks `answers` (`KEY=VALUE`) to lab `n` against `s`'s values;
/// `mismatch` replaces the hint of a wrong answer when the student or
/// course differs from what the lab ran with. An error for an answer that
/// is not KEY=VALUE or names no question of the lab.
pub fn verdicts(
    n: u8,
    s: &Secrets,
    answers: &[String],
    mismatch: Option<&str>,
) -> anyhow::Result<Checked> {
    let lab = lab(n)?;
    let keys = || {
        lab.keys
            .iter()
            .map(|(k, _)| *k)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if answers.is_empty() {
        bail!("no answer: give --answer KEY=VALUE (keys: {})", keys());
    }
    let mut c = Checked::default();
    for a in answers {
        let Some((key, value)) = a.split_once('=') else {
            bail!("'{a}' is not KEY=VALUE");
        };
        let key = key.trim();
        let (Some(want), Some((_, hint))) = (
            expected(n, key, s),
            lab.keys.iter().find(|(k, _)| *k == key),
        ) else {
            bail!("lab {n} has no question '{key}' (keys: {})", keys());
        };
        if right_answer(key, value, &want) {
            c.verdicts.push(format!("{key}: right"));
            if !c.right.iter().any(|k| k == key) {
                c.right.push(key.to_string());
            }
        } else {
            match mismatch {
                Some(why) => c.verdicts.push(format!("{key}: wrong, but {why}")),
                None => c.verdicts.push(format!("{key}: wrong. Hint: {hint}")),
            }
            c.wrong += 1;
        }
    }
    Ok(c)
}

/// `labs check N`: exit 0 when every answer is right, 1 otherwise.
pub fn check(
    n: u8,
    student: &str,
    course: &str,
    answers: &[String],
    progress: &Path,
) -> anyhow::Result<u8> {
    let s = Secrets::new(course, student);
    // A wrong answer may be right for the name or course secret `labs run`
    // used on this machine: say so, instead of a hint that sends the
    // student hunting for the wrong thing.
    let mismatch = last_run_mismatch(n, &s, &course_tag(course));
    let Checked {
        verdicts,
        right,
        wrong,
    } = verdicts(n, &s, answers, mismatch.as_deref())?;
    if !right.is_empty() {
        // One `labs check` at a time on this file (ten students on one
        // shared folder, or one student in ten terminals): read, change and
        // replace it under a lock, or records are lost.
        let _lock = lock_beside(progress)?;
        let mut p = load(progress)?;
        let solved = p
            .entry(s.student().to_string())
            .or_default()
            .entry(format!("lab{n}"))
            .or_default();
        for k in right {
            if !solved.contains(&k) {
                solved.push(k);
            }
        }
        solved.sort();
        let text = serde_json::to_string_pretty(&p)?;
        // Replaced whole (a new file renamed over it): a check killed
        // mid-write leaves the old file, never half of the new one.
        let tmp = sibling(progress, ".tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, progress))
            .with_context(|| format!("cannot write {}", progress.display()))?;
    }
    for v in verdicts {
        outln!("{v}");
    }
    Ok(if wrong == 0 { 0 } else { 1 })
}

/// `path` with `suffix` added to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// An exclusive lock on `FILE.lock` beside `file`, released when the
/// returned file is dropped: one writer of `file` at a time.
pub fn lock_beside(file: &Path) -> anyhow::Result<std::fs::File> {
    let path = sibling(file, ".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    f.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(f)
}

/// Where `labs run` notes, per lab, the student and course it last ran
/// for on this machine (never an answer: a name and a hash of the secret).
fn last_run_path() -> PathBuf {
    state_dir().join("last-run.json")
}

/// This user's state folder for the labs (`$XDG_STATE_HOME/twin-chat-labs`,
/// by default `~/.local/state/twin-chat-labs`).
pub fn state_dir() -> PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir)
        .join("twin-chat-labs")
}

/// The first 8 bytes of the course secret's SHA-256, in hex: enough to
/// tell two secrets apart, of no use to find one.
pub fn course_tag(course: &str) -> String {
    hex(&Sha256::digest(course.as_bytes())[..8])
}

/// Notes that lab `n` ran for this student and course (best effort: a lab
/// runs whether or not the note can be written).
fn note_last_run(n: u8, s: &Secrets, tag: &str) {
    let path = last_run_path();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // Two labs started at once must not lose each other's note.
    let Ok(_lock) = lock_beside(&path) else {
        return;
    };
    let mut all: BTreeMap<String, (String, String)> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    all.insert(n.to_string(), (s.student().to_string(), tag.to_string()));
    if let Ok(text) = serde_json::to_string(&all) {
        let tmp = sibling(&path, ".tmp");
        let _ = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path));
    }
}

/// Why answers for lab `n` checked as `s` under `course` cannot match what
/// `labs run` last used on this machine, if they cannot.
pub fn last_run_mismatch(n: u8, s: &Secrets, tag: &str) -> Option<String> {
    let all: BTreeMap<String, (String, String)> =
        serde_json::from_str(&std::fs::read_to_string(last_run_path()).ok()?).ok()?;
    let (student, saved) = all.get(&n.to_string())?;
    if student != s.student() {
        Some(format!(
            "`labs run {n}` last ran here for student '{student}', not '{}': every answer depends on the name; check with the same --student",
            s.student()
        ))
    } else if saved != tag {
        Some(format!(
            "`labs run {n}` last ran here with another course secret or class server: every answer depends on it; check with the same --course-secret (or LABS_COURSE_SECRET) or --class"
        ))
    } else {
        None
    }
}

/// `labs progress`: a table of who solved what.
pub fn show_progress(progress: &Path) -> anyhow::Result<u8> {
    let p = load(progress)?;
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    let mut header = vec!["student".to_string()];
    header.extend(LABS.iter().map(|l| format!("lab {}", l.number)));
    table.set_header(header);
    for (student, labs) in &p {
        let mut row = vec![student.clone()];
        for l in &LABS {
            let n = labs.get(&format!("lab{}", l.number)).map_or(0, Vec::len);
            row.push(format!("{n}/{}", l.keys.len()));
        }
        table.add_row(row);
    }
    outln!("{table}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every answer of every lab comes from the student's own secrets:
    /// for two students, none is the same. (Two names whose TLS versions
    /// differ: there are only two versions.)
    #[test]
    fn every_answer_differs_between_two_students() {
        let (a, b) = (
            Secrets::new("c", "Ada Lovelace"),
            Secrets::new("c", "Alan Turing"),
        );
        for l in &LABS {
            for (key, _) in l.keys {
                let (x, y) = (expected(l.number, key, &a), expected(l.number, key, &b));
                assert!(x.is_some(), "lab {} has no answer for {key}", l.number);
                assert_ne!(x, y, "lab {} {key} is the same for both", l.number);
                // Nothing a student reads before doing the task is an answer
                // (a choice among five, or a second count, is a number any
                // sheet has: that sheet lists the choices).
                let x = x.unwrap();
                assert!(
                    x.len() < 3 || !l.sheet.contains(&x),
                    "lab {} sheet gives away {key}",
                    l.number
                );
            }
        }
        assert_ne!(a.iterations(1), protocol::sasl::DEFAULT_ITERATIONS);
    }

    /// The class server hands the runner one lab's values: with them alone
    /// every scenario value and every answer of that lab comes out as the
    /// course secret gives it (a value the runner used but the server did
    /// not send would panic here), and no hint gives an answer away.
    #[test]
    fn a_labs_given_values_are_all_it_needs_and_hints_give_nothing_away() {
        let local = Secrets::new("c", "Ada Lovelace");
        for l in &LABS {
            let n = l.number;
            let given = Secrets::given("Ada Lovelace", &local.scenario_values(n), n).unwrap();
            for (key, _) in l.keys {
                let want = expected(n, key, &local).unwrap();
                assert_eq!(
                    expected(n, key, &given),
                    Some(want.clone()),
                    "lab {n} {key}"
                );
                for level in 1..=3 {
                    let h = hint(n, key, level).unwrap();
                    assert!(
                        want.len() < 3 || !h.contains(&want),
                        "lab {n} {key} hint {level}"
                    );
                }
            }
            for user in ["teacher", "careful", "classmate"] {
                assert_eq!(given.password(n, user), local.password(n, user));
            }
            assert_eq!(given.domain(n), local.domain(n));
            assert_eq!(given.tls(n), local.tls(n));
            assert_eq!(given.iterations(n), local.iterations(n));
            assert_eq!(given.notes(n), local.notes(n));
            assert_eq!(given.contact(n), local.contact(n));
            for part in 1..=2 {
                assert_eq!(typing_at(&given, n, part), typing_at(&local, n, part));
                assert_eq!(canned(&given, n, part), canned(&local, n, part));
            }
        }
        // Values for one lab open no other.
        let one = local.scenario_values(1);
        assert!(one.keys().all(|k| k.starts_with("lab1/")));
        assert!(Secrets::given("Ada Lovelace", &one, 2).is_err());
    }

    /// Each sheet's title names its own number, and every lab a sheet
    /// points to ("lab 6", "labs 3 to 8") exists.
    #[test]
    fn sheets_point_only_to_labs_that_exist() {
        for l in &LABS {
            assert!(
                l.sheet.starts_with(&format!("# Lab {}: ", l.number)),
                "lab {}",
                l.number
            );
            let words: Vec<String> = l
                .sheet
                .split(|c: char| !c.is_alphanumeric())
                .map(str::to_lowercase)
                .collect();
            for (i, w) in words.iter().enumerate() {
                if w == "lab" || w == "labs" {
                    for n in words[i + 1..].iter().take(4) {
                        if let Ok(n) = n.parse::<usize>() {
                            assert!(
                                (1..=LABS.len()).contains(&n),
                                "lab {} points to lab {n}",
                                l.number
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn answers_are_checked_and_progress_records_keys_not_answers() {
        let d = tempfile::tempdir().unwrap();
        let prog = d.path().join("p.json");
        let s = Secrets::new("c", "Eve");
        let pw = format!("password={}", s.password(1, "classmate"));
        assert_eq!(
            check(1, "Eve", "c", std::slice::from_ref(&pw), &prog).unwrap(),
            0
        );
        assert_eq!(
            check(1, "Eve", "c", &["codeword=nope".into()], &prog).unwrap(),
            1
        );
        assert_eq!(
            check(1, "Mallory", "c", std::slice::from_ref(&pw), &prog).unwrap(),
            1,
            "another student's answer"
        );
        // Written as tools print them: `TLSv1.3`, a lower-case suite.
        let (version, cipher) = s.tls(2);
        assert_eq!(
            check(
                2,
                "Eve",
                "c",
                &[
                    format!("version=TLSv{version}"),
                    format!("cipher={}", cipher.to_lowercase())
                ],
                &prog
            )
            .unwrap(),
            0
        );
        // A file's SHA-256 in hex (`sha256sum`) or base64 (the offer).
        use base64::Engine as _;
        let digest = Sha256::digest(s.notes(7).as_bytes());
        for form in [
            hex(&digest).to_uppercase(),
            base64::engine::general_purpose::STANDARD.encode(digest),
        ] {
            let a = [format!("sha256={form}")];
            assert_eq!(check(7, "Eve", "c", &a, &prog).unwrap(), 0, "{form}");
        }
        assert_eq!(
            check(7, "Eve", "c", &["sha256=0000".into()], &prog).unwrap(),
            1
        );
        let text = std::fs::read_to_string(&prog).unwrap();
        assert!(
            !text.contains(&s.password(1, "classmate")),
            "no answer is stored: {text}"
        );
        assert!(text.contains("\"password\"") && text.contains("\"cipher\""));
        assert!(check(1, "Eve", "c", &["colour=blue".into()], &prog).is_err());
    }
}
