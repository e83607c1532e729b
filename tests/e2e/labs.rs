//! `labs`: the side-by-side demo, and the labs solved the way a student
//! solves them (capture or attack, read the sniffer or the proxy, answer), through the real
//! binaries.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{Input, Proc};
use serde_json::Value;
use tests::{Sniffer, WAIT, bin, chain};

/// Where `labs` notes what it last ran, for this test process: not the
/// user's own note, and the same for every `labs` these tests run.
fn state_dir() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fn labs(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin("labs"))
        .args(args)
        .env("XDG_STATE_HOME", state_dir())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_demo_shows_what_leaks_in_plaintext_and_what_tls_hides() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("demo.html");
    let (code, out, err) = labs(&["demo", "--json", "--html", page.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "the demo takes under a minute"
    );
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let rows = v["verdict"].as_array().unwrap();
    // Every row of the verdict is there: an empty verdict would pass the
    // loop below.
    let cats: Vec<&str> = rows.iter().filter_map(|r| r["category"].as_str()).collect();
    assert_eq!(
        cats,
        [
            "credentials",
            "messages",
            "contacts",
            "presence",
            "file",
            "end-to-end messages",
            "server name",
            "who talks to whom, when",
            "sizes"
        ],
        "{v}"
    );
    for r in rows {
        let cat = r["category"].as_str().unwrap();
        let content = ["credentials", "messages", "contacts", "presence", "file"].contains(&cat);
        if cat == "end-to-end messages" {
            // Seen on the plaintext wire, its text not; under TLS not
            // even that.
            assert_eq!(r["plaintext"], "hidden (e2e)", "{r}");
            assert_eq!(r["tls"], "hidden", "{r}");
        } else if content {
            assert_eq!(r["plaintext"], "LEAKED", "{r}");
            assert_eq!(r["tls"], "hidden", "{r}");
        } else {
            assert_eq!(r["plaintext"], "visible", "{r}");
            assert_eq!(r["tls"], "visible", "{r}");
        }
    }
    let creds = v["plaintext"]["credentials"].to_string();
    assert!(creds.contains("correct-horse-battery"), "{creds}");
    // The end-to-end message's words are nowhere in what was recovered,
    // even from the plaintext twin; the message itself was seen.
    assert!(!v.to_string().contains("taped under desk"), "{v}");
    assert!(
        v["plaintext"]["end-to-end messages"]
            .to_string()
            .contains("alice@localhost -> bob@localhost: text hidden"),
        "{v}"
    );
    assert!(
        v["tls"]["server name"]
            .to_string()
            .contains("SNI localhost")
    );
    // The same view as a page, drawn by a real browser: the verdict's red
    // (LEAKED) and green (hidden) cells at the top of the screen.
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("id=\"verdict\"") && html.contains("correct-horse-battery"));
    if let Some(shot) = tests::screenshot(&page, 1280, 900) {
        let red = shot.count([0xc6, 0x28, 0x28], 0, 450);
        let green = shot.count([0x2e, 0x7d, 0x32], 0, 450);
        assert!(red > 5000 && green > 5000, "red {red}, green {green}");
    }
}

#[test]
fn the_live_demo_shows_each_finding_as_it_happens_and_ends_with_the_same_table() {
    let args: Vec<String> = ["demo", "--live", "--pace", "0.3"]
        .map(String::from)
        .to_vec();
    let dir = state_dir().display().to_string();
    let t = tests::Tmux::start(&bin("labs"), &args, &[("XDG_STATE_HOME", &dir)], (160, 45));
    // While it runs: the conversation on both sides, and a plaintext
    // message recovered from the wire on the left only.
    let during = t.wait_for_within("a message recovered", Duration::from_secs(90), |s| {
        s.contains("MESSAGES: alice@localhost -> bob@localhost: Hi Bob")
    });
    assert!(
        during.contains("PLAINTEXT (chat-plain): what alice and bob see"),
        "{during}"
    );
    assert!(
        during.contains("TLS (chat-tls, STARTTLS required): what alice and bob see"),
        "{during}"
    );
    for line in during.lines().filter(|l| l.contains("MESSAGES:")) {
        // The left pane ends at the middle of the screen.
        let at = line.find("MESSAGES:").unwrap();
        assert!(
            line[..at].chars().count() < 80,
            "a message leaked on the TLS side: {line}"
        );
    }
    let done = t.wait_for_within("the end", Duration::from_secs(90), |s| {
        s.contains("Press a key to leave")
    });
    let row = |name: &str| {
        done.lines()
            .find(|l| l.trim_start_matches('│').starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row:\n{done}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let creds = row("credentials");
    assert!(
        creds.contains(&"LEAKED".to_string()) && creds.contains(&"hidden".to_string()),
        "{creds:?}"
    );
    let names = row("server name");
    assert_eq!(
        names.iter().filter(|w| *w == "visible").count(),
        2,
        "{names:?}"
    );
    t.keys(&["Enter"]);
    assert_eq!(t.exit_status(), 0, "{}", t.screen());
    let after = t.screen();
    assert!(after.contains("TLS hid the content"), "{after}");
    assert!(!t.alternate_screen());
}

#[test]
fn the_live_demo_needs_a_terminal_and_says_so() {
    let (code, _, err) = labs(&["demo", "--live"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--live draws on a terminal"), "{err}");
}

#[test]
fn ctrl_c_stops_every_process_and_removes_every_file() {
    let mut child = Command::new(bin("labs"))
        .args(["demo", "--pace", "3"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut dir = String::new();
    let mut line = String::new();
    // Wait until the servers and the sniffer run.
    while err.read_line(&mut line).unwrap() > 0 {
        if let Some(d) = line.trim().strip_prefix("(temporary files in ") {
            dir = d.split(',').next().unwrap().to_string();
        }
        if line.contains("[3/6]") {
            break;
        }
        line.clear();
    }
    assert!(!dir.is_empty(), "the demo names its temporary folder");
    assert!(std::path::Path::new(&dir).exists());
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2), "interrupted is not success");
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut err, &mut rest);
    assert!(rest.contains("interrupted"), "{rest}");
    assert!(!std::path::Path::new(&dir).exists(), "{dir} was removed");
    // Every process's command line, from /proc.
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&dir))
        .collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

/// `labs run N` for `student`, waiting for Enter.
fn start_lab(n: u8, student: &str) -> Proc {
    let mut cmd = Command::new(bin("labs"));
    cmd.args([
        "run",
        &n.to_string(),
        "--student",
        student,
        "--course-secret",
        "test-course",
    ])
    .env("XDG_STATE_HOME", state_dir());
    Proc::spawn("labs run", cmd, Input::Piped).unwrap()
}

/// The test's end when a wait on `labs run` failed: why, and all it said.
fn fail(e: harness::Error, lab: &Proc) -> ! {
    panic!("{}\n{}", chain(&e), lab.transcript())
}

/// Runs `labs run N` as a student does: it starts the lab's server (on a
/// port the system picks) and says which port to capture; the sniffer
/// starts on that port; Enter starts the session; Ctrl-C ends it. Returns
/// the sniffer's JSON findings.
fn sniff_lab(n: u8, student: &str) -> Vec<Value> {
    let (mut lab, sniffer) = sniff_lab_session(n, student);
    let (status, _) = lab.interrupt(WAIT).unwrap_or_else(|e| fail(e, &lab));
    assert_eq!(status.code(), Some(0), "{}", lab.transcript());
    no_answer_in(&lab.transcript(), n, student);
    sniffer.stop().0
}

/// [`sniff_lab`] up to the end of the session: the lab still running (its
/// files still there) and the sniffer still capturing.
fn sniff_lab_session(n: u8, student: &str) -> (Proc, Sniffer) {
    let mut lab = start_lab(n, student);
    // "chat-plain server on 127.0.0.1:40123" (not its name: an answer)
    let line = lab
        .wait_line(" server on ", WAIT)
        .unwrap_or_else(|e| fail(e, &lab));
    let port: u16 = line
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in: {line}"));
    assert_ne!(port, 0, "the port the server got, not the one asked for");
    lab.wait_line("press Enter", WAIT)
        .unwrap_or_else(|e| fail(e, &lab));
    let sniffer = Sniffer::on_ports(&[port]);
    lab.send_line("").unwrap();
    let line = lab
        .wait_line(
            &format!("labs check {n} --student"),
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| fail(e, &lab));
    assert!(line.contains("--answer"), "{line}");
    lab.wait_line("the server keeps running", WAIT)
        .unwrap_or_else(|e| fail(e, &lab));
    (lab, sniffer)
}

/// Nothing `labs run` printed (`said`) is one of the student's answers to
/// lab `n`: they come from the traffic, found by doing the task.
fn no_answer_in(said: &str, n: u8, student: &str) {
    let (code, answers, err) = labs(&[
        "answers",
        &n.to_string(),
        "--student",
        student,
        "--course-secret",
        "test-course",
    ]);
    assert_eq!(code, 0, "{err}");
    // Whole words: a four-digit iteration count may be part of a port.
    let words: Vec<&str> = said
        .split(|c: char| !(c.is_alphanumeric() || "._-".contains(c)))
        .collect();
    for line in answers.lines() {
        let (key, value) = line.split_once('=').unwrap();
        // A choice among five or a second count (lab 10) is a number that
        // any output has ("Part 1"); what it must not hold is what shows
        // the choice: lab 10's test checks the message texts.
        if value.len() < 3 {
            continue;
        }
        let printed = if value.contains(' ') {
            said.contains(value)
        } else {
            words.contains(&value)
        };
        assert!(!printed, "labs run printed the {key}: {said}");
    }
}

fn check(n: u8, student: &str, answers: &[String], progress: &std::path::Path) -> (i32, String) {
    let mut args = vec![
        "check".to_string(),
        n.to_string(),
        "--student".into(),
        student.into(),
        "--course-secret".into(),
        "test-course".into(),
        "--progress".into(),
        progress.display().to_string(),
    ];
    for a in answers {
        args.push("--answer".into());
        args.push(a.clone());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = labs(&refs);
    (code, format!("{out}{err}"))
}

/// Lab 1's answers as a student reads them in the sniffer's findings:
/// classmate's PLAIN password, the code word in its message, careful's
/// SCRAM iteration count, as `KEY=VALUE`.
fn lab_1_answers(found: &[Value]) -> Vec<String> {
    let password = found
        .iter()
        .find(|v| {
            v["type"] == "credential" && v["user"] == "classmate" && v["kind"] == "sasl-plain"
        })
        .and_then(|v| v["password"].as_str())
        .unwrap_or_else(|| panic!("no PLAIN credential: {found:?}"));
    let codeword = found
        .iter()
        .filter(|v| v["type"] == "message")
        .find_map(|v| v["body"].as_str()?.strip_prefix("the code word is "))
        .unwrap_or_else(|| panic!("no message: {found:?}"));
    let iterations = found
        .iter()
        .find(|v| v["type"] == "credential" && v["user"] == "careful" && v["kind"] == "scram")
        .and_then(|v| v["detail"].as_str())
        .and_then(|d| d.split("iterations=").nth(1))
        .and_then(|d| d.split_whitespace().next())
        .unwrap_or_else(|| panic!("no SCRAM exchange: {found:?}"));
    vec![
        format!("password={password}"),
        format!("codeword={codeword}"),
        format!("iterations={iterations}"),
    ]
}

#[test]
fn lab_1_is_solved_from_the_capture_and_answers_are_per_student() {
    let found = sniff_lab(1, "Ada Lovelace");
    let dir = tempfile::tempdir().unwrap();
    let progress = dir.path().join("progress.json");
    let answers = lab_1_answers(&found);
    let password = answers[0].split_once('=').unwrap().1.to_string();
    let (code, out) = check(1, "Ada Lovelace", &answers, &progress);
    assert_eq!(code, 0, "{out}");
    // Another student cannot reuse Ada's answers; as `labs run 1` ran
    // here for Ada, the check says that, not a task hint.
    let (code, out) = check(1, "Alan Turing", &answers[..1], &progress);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("`labs run 1` last ran here for student 'ada-lovelace', not 'alan-turing'"),
        "{out}"
    );
    // Ada with another course secret: said too.
    let (code, out, _) = labs(&[
        "check",
        "1",
        "--student",
        "Ada Lovelace",
        "--course-secret",
        "another-course",
        "--progress",
        progress.to_str().unwrap(),
        "--answer",
        &answers[0],
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("with another course secret"), "{out}");
    // Wrong for the right student and secret: the task's hint.
    let (code, out) = check(1, "Ada Lovelace", &["codeword=NOPE".into()], &progress);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Hint:"), "{out}");
    let (code, out, _) = labs(&["progress", "--progress", progress.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("ada-lovelace") && out.contains("3/3"), "{out}");
    assert!(
        !out.contains(&password)
            && !std::fs::read_to_string(&progress)
                .unwrap()
                .contains(&password)
    );
}

#[test]
fn lab_2_is_solved_from_the_tls_metadata() {
    let found = sniff_lab(2, "Grace Hopper");
    assert!(
        !found
            .iter()
            .any(|v| v["type"] == "credential" || v["type"] == "message"),
        "nothing readable under TLS"
    );
    let sni = found
        .iter()
        .find(|v| v["type"] == "client-hello")
        .and_then(|v| v["sni"].as_str())
        .unwrap()
        .to_string();
    let hello = found.iter().find(|v| v["type"] == "server-hello").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let progress = dir.path().join("progress.json");
    let answers = vec![
        format!("server-name={sni}"),
        format!("version={}", hello["version"].as_str().unwrap()),
        format!("cipher={}", hello["cipher"].as_str().unwrap()),
    ];
    let (code, out) = check(2, "Grace Hopper", &answers, &progress);
    assert_eq!(code, 0, "{out}");
    let (code, _) = check(2, "Someone Else", &answers[..1], &progress);
    assert_eq!(code, 1, "server names differ per student");
}

/// Lab 3 as a student does it: `labs run 3` prints the proxy command; the
/// student runs it exactly as printed (with `--json` added to read it
/// here), presses Enter, and answers from what the proxy captured.
/// careful's default client refuses the self-signed certificate.
#[test]
fn lab_3_is_solved_from_the_interception_proxy() {
    let lab = solve_interception_lab(3, "Ada Lovelace", "unknown issuer");
    assert!(!lab.contains("rotated"), "{lab}");
    // The fingerprints: the key classmate accepted unchecked is the one
    // careful refused (the proxy's), not the server's.
    let key_after = |label: &str| -> String {
        let rest = lab
            .split(label)
            .nth(1)
            .unwrap_or_else(|| panic!("no '{label}': {lab}"));
        let b64 = rest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("no key after '{label}': {lab}"));
        let end = b64
            .find(|c: char| !(c.is_ascii_alphanumeric() || "+/=".contains(c)))
            .unwrap_or(b64.len());
        format!("sha256:{}", &b64[..end])
    };
    let accepted = key_after("whose key is ");
    let refused = key_after("the certificate's key is ");
    let real = key_after("printed it): ");
    assert_eq!(accepted.len(), "sha256:".len() + 44, "{lab}");
    assert_eq!(accepted, refused, "{lab}");
    assert_ne!(accepted, real, "{lab}");
}

/// Lab 4 the same way: the proxy mints with the attacker's CA, which
/// classmate trusts; careful's pin refuses it, and after the key rotation
/// refuses the real server too.
#[test]
fn lab_4_is_solved_from_the_proxy_and_the_pin_holds_then_breaks() {
    let lab = solve_interception_lab(4, "Grace Hopper", "public key pin mismatch");
    let after = lab
        .split("key was rotated")
        .nth(1)
        .unwrap_or_else(|| panic!("{lab}"));
    assert!(after.contains("public key pin mismatch"), "{lab}");
    assert!(after.contains("The new key's pin: sha256:"), "{lab}");
}

/// Runs attacker lab `n` as `student` does: for each of its `parts`, waits
/// for the proxy command `labs run` prints, runs it exactly as printed
/// (with `--json` added to read it here) and presses Enter. Returns what
/// `labs run` said and each proxy's events, in order.
fn run_attacker_lab(n: u8, student: &str, parts: usize) -> (String, Vec<Vec<Value>>) {
    run_attacker_lab_with(n, student, parts, &|_, _, _| {})
}

/// [`run_attacker_lab`], calling `prepare(part, said so far, folder)`
/// before each proxy starts in `folder` (the student's files: lab 7's
/// rules).
fn run_attacker_lab_with(
    n: u8,
    student: &str,
    parts: usize,
    prepare: &dyn Fn(usize, &str, &std::path::Path),
) -> (String, Vec<Vec<Value>>) {
    let mut lab = start_lab(n, student);
    let folder = tempfile::tempdir().unwrap();
    let mut proxies = Vec::new();
    for part in 0..parts {
        let printed = lab
            .wait_line("mitm-proxy --listen", Duration::from_secs(90))
            .unwrap_or_else(|e| fail(e, &lab));
        prepare(part, &lab.transcript(), folder.path());
        let mut words = printed.split_whitespace();
        let mut proxy = Command::new(words.next().unwrap());
        proxy.args(words).arg("--json").current_dir(folder.path());
        let proxy = Proc::spawn("mitm-proxy", proxy, Input::Null).unwrap();
        harness::chat::wait_ready(&proxy).unwrap();
        lab.wait_line("Press Enter", WAIT)
            .unwrap_or_else(|e| fail(e, &lab));
        lab.send_line("").unwrap();
        proxies.push(proxy);
    }
    lab.wait_line(
        &format!("labs check {n} --student"),
        Duration::from_secs(90),
    )
    .unwrap_or_else(|e| fail(e, &lab));
    lab.wait_line("the server keeps running", WAIT)
        .unwrap_or_else(|e| fail(e, &lab));
    let events = proxies
        .iter_mut()
        .map(|p| {
            let (_, lines) = p.interrupt(WAIT).unwrap();
            lines
                .iter()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .collect();
    let (status, _) = lab.interrupt(WAIT).unwrap_or_else(|e| fail(e, &lab));
    assert_eq!(status.code(), Some(0), "{}", lab.transcript());
    let said = lab.transcript();
    no_answer_in(&said, n, student);
    (said, events)
}

/// The password the proxy captured from `user`.
fn captured(events: &[Value], user: &str) -> String {
    events
        .iter()
        .find(|v| v["type"] == "captured" && v["user"] == user)
        .and_then(|v| v["secret"].as_str())
        .unwrap_or_else(|| panic!("nothing captured from {user}: {events:#?}"))
        .to_string()
}

/// The code word in the message the proxy read.
fn codeword_read(events: &[Value]) -> String {
    events
        .iter()
        .filter(|v| v["type"] == "stanza")
        .find_map(|v| {
            let s = v["stanza"].as_str()?;
            Some(s.split("the code word is ").nth(1)?.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no message read: {events:#?}"))
}

/// `i=` of the SCRAM server-first message the proxy read, decoded as a
/// student does (`base64 -d`).
fn iterations_read(events: &[Value]) -> String {
    use base64::Engine as _;
    let b64 = events
        .iter()
        .filter(|v| v["type"] == "stanza")
        .find_map(|v| v["stanza"].as_str()?.strip_prefix("<challenge> "))
        .unwrap_or_else(|| panic!("no SCRAM challenge read: {events:#?}"));
    let text = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .unwrap();
    String::from_utf8(text)
        .unwrap()
        .split(',')
        .find_map(|kv| kv.strip_prefix("i="))
        .unwrap()
        .to_string()
}

/// The proxy's verdict for `attack` on connection `conn`.
fn verdict<'a>(events: &'a [Value], conn: u64, attack: &str) -> &'a Value {
    events
        .iter()
        .find(|v| v["type"] == "verdict" && v["conn"] == conn && v["attack"] == attack)
        .unwrap_or_else(|| panic!("no {attack} verdict on #{conn}: {events:#?}"))
}

/// `answers` are right for `student` and wrong for another.
fn answers_check(n: u8, student: &str, answers: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let progress = dir.path().join("progress.json");
    let (code, out) = check(n, student, answers, &progress);
    assert_eq!(code, 0, "{out}");
    let (code, _) = check(n, "Alan Turing", answers, &progress);
    assert_eq!(code, 1, "another student's answers");
}

/// Solves interception lab `n` as `student` (see lab 3), checking careful's
/// refusal says `refusal`; returns what `labs run` said.
fn solve_interception_lab(n: u8, student: &str, refusal: &str) -> String {
    let (said, mut events) = run_attacker_lab(n, student, 1);
    let events = events.remove(0);
    let careful = said
        .split("careful (")
        .nth(1)
        .unwrap_or_else(|| panic!("{said}"));
    assert!(careful.contains(refusal), "the client's own reason: {said}");
    // careful's connection: the proxy says the attack was defeated.
    assert_eq!(verdict(&events, 2, "intercept-tls")["defeated"], true);
    answers_check(
        n,
        student,
        &[
            format!("password={}", captured(&events, "classmate")),
            format!("codeword={}", codeword_read(&events)),
        ],
    );
    said
}

/// Lab 5: the first proxy strips STARTTLS; classmate (opportunistic) goes
/// on in plaintext, careful (required) stops, and the server believed the
/// session secure. The second injects at the switch, and both ends say
/// they discarded it.
#[test]
fn lab_5_is_solved_from_the_stripped_session_and_the_injection_is_discarded() {
    let (said, events) = run_attacker_lab(5, "Ada Lovelace", 2);
    let (strip, inject) = (&events[0], &events[1]);
    assert_eq!(verdict(strip, 1, "strip-starttls")["defeated"], false);
    assert_eq!(verdict(strip, 2, "strip-starttls")["defeated"], true);
    assert!(
        said.contains("possible STARTTLS stripping attack"),
        "careful's reason: {said}"
    );
    assert!(said.contains("secure=true"), "the server's belief: {said}");
    assert!(
        said.contains("were discarded (STARTTLS response injection?)")
            && said.contains("discarded plaintext sent after <starttls/>"),
        "both ends dropped the injection: {said}"
    );
    assert!(said.contains("signed in and set its status"), "{said}");
    assert_eq!(
        inject
            .iter()
            .filter(|v| v["type"] == "attack" && v["attack"] == "inject-starttls")
            .count(),
        2
    );
    // SCRAM kept the password off the wire, even in plaintext.
    assert!(!strip.iter().any(|v| v["type"] == "captured"), "{strip:#?}");
    answers_check(
        5,
        "Ada Lovelace",
        &[
            format!("codeword={}", codeword_read(strip)),
            format!("iterations={}", iterations_read(strip)),
        ],
    );
}

/// Lab 6: the downgrade gets classmate's password over plaintext and is
/// refused by careful's minimum; over TLS, channel binding makes the relayed
/// sign-in fail although classmate accepted the forged certificate.
#[test]
fn lab_6_is_solved_from_the_downgrade_and_channel_binding_holds() {
    let (said, events) = run_attacker_lab(6, "Grace Hopper", 2);
    let (down, icpt) = (&events[0], &events[1]);
    assert_eq!(verdict(down, 1, "downgrade-sasl")["defeated"], false);
    assert_eq!(verdict(down, 2, "downgrade-sasl")["defeated"], true);
    assert!(
        said.contains("(a SASL downgrade)"),
        "careful's reason: {said}"
    );
    let v = verdict(icpt, 1, "intercept-tls");
    assert_eq!(v["defeated"], true, "{v}");
    assert!(
        said.contains("channel binding failed: someone is relaying this TLS connection"),
        "{said}"
    );
    // The sign-in the proxy read was a -PLUS one.
    assert!(
        icpt.iter().any(|v| v["type"] == "stanza"
            && v["stanza"]
                .as_str()
                .is_some_and(|s| s.starts_with("<auth mechanism='SCRAM-SHA-256-PLUS'>"))),
        "{icpt:#?}"
    );
    answers_check(
        6,
        "Grace Hopper",
        &[
            format!("password={}", captured(down, "classmate")),
            format!("iterations={}", iterations_read(icpt)),
        ],
    );
}

/// Lab 7 as a student does it: rules that rewrite classmate's message and
/// swap its file for one of the size `labs run` gave; teacher's client is
/// fooled by both and says the hash matched; the answers come from what
/// the proxy says the stanzas were before. Over TLS one flipped bit ends
/// the connection with bad_record_mac, and the server says why.
#[test]
fn lab_7_is_solved_by_tampering_and_tls_catches_one_bit() {
    let prepare = |part: usize, said: &str, dir: &std::path::Path| {
        if part != 0 {
            return;
        }
        let size: usize = said
            .split("notes.txt (")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no file size: {said}"));
        let mut evil = b"the key is under the mat".to_vec();
        evil.resize(size, b' ');
        std::fs::write(dir.join("evil.txt"), evil).unwrap();
        std::fs::write(
            dir.join("lab7-rules.txt"),
            "c2s message body~code.word => replace-body meet me at noon\n\
             c2s iq => swap-file evil.txt\n",
        )
        .unwrap();
    };
    let (said, events) = run_attacker_lab_with(7, "Ada Lovelace", 2, &prepare);
    assert!(
        said.contains("CHANGED in flight, and nothing warned teacher")
            && said.contains("checked its SHA-256 against the one in the offer: it matched")
            && said.contains("NOT what classmate sent"),
        "{said}"
    );
    let did: Vec<&str> = events[0]
        .iter()
        .filter(|v| v["type"] == "attack" && v["attack"] == "tamper")
        .filter_map(|v| v["did"].as_str())
        .collect();
    let codeword = did
        .iter()
        .find_map(|d| d.split("(it said \"the code word is ").nth(1))
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("{did:#?}"));
    let sha = did
        .iter()
        .find_map(|d| d.split("(its SHA-256 was ").nth(1))
        .and_then(|r| r.split(',').next())
        .unwrap_or_else(|| panic!("{did:#?}"));
    // TLS: the record's tag did not match; the server says so and the
    // client names the alert.
    assert_eq!(verdict(&events[1], 1, "corrupt-tls")["defeated"], true);
    assert!(
        said.contains("BadRecordMac") && said.contains("cannot decrypt peer's message"),
        "{said}"
    );
    // The hash as the offer carries it (base64); hex is taken too.
    answers_check(
        7,
        "Ada Lovelace",
        &[format!("codeword={codeword}"), format!("sha256={sha}")],
    );
}

/// Lab 8: the proxy's replay of classmate's PLAIN sign-in gets in and reads
/// the roster; the replay of careful's SCRAM sign-in is refused, and the
/// server says the nonce did not match.
#[test]
fn lab_8_is_solved_from_the_replayed_plain_sign_in_and_scram_holds() {
    let (said, events) = run_attacker_lab(8, "Grace Hopper", 1);
    let events = &events[0];
    assert_eq!(verdict(events, 1, "replay")["defeated"], false);
    assert_eq!(verdict(events, 2, "replay")["defeated"], true);
    assert!(
        said.contains("the server nonce does not start with the client nonce"),
        "{said}"
    );
    // Two PLAIN sign-ins as classmate: its own and the proxy's.
    assert_eq!(
        said.lines()
            .filter(|l| l.contains("user=\"classmate\" mechanism=\"PLAIN\""))
            .count(),
        2,
        "{said}"
    );
    let roster = events
        .iter()
        .filter(|v| v["type"] == "attack" && v["attack"] == "replay")
        .find_map(|v| v["did"].as_str()?.split("read the user's roster: ").nth(1))
        .unwrap_or_else(|| panic!("{events:#?}"));
    let contact = roster
        .split(", ")
        .find(|c| !c.starts_with("teacher@"))
        .unwrap_or_else(|| panic!("{roster}"));
    answers_check(
        8,
        "Grace Hopper",
        &[
            format!("contact={contact}"),
            format!("password={}", captured(events, "classmate")),
        ],
    );
}

/// Lab 9: the live capture reads nothing; the same capture read with
/// classmate's key log gives its password and code word, and leaves the
/// sessions without keys closed; with the server's private key nothing
/// opens, and the sniffer says why (forward secrecy).
#[test]
fn lab_9_is_solved_with_the_key_log_and_the_server_key_opens_nothing() {
    let student = "Ada Lovelace";
    let (mut lab, sniffer) = sniff_lab_session(9, student);
    let said = lab.transcript();
    let path_after = |label: &str| -> String {
        said.lines()
            .find_map(|l| l.split(label).nth(1))
            .unwrap_or_else(|| panic!("no '{label}' in: {said}"))
            .trim()
            .to_string()
    };
    let keylog = path_after("(SSLKEYLOGFILE) to: ");
    let server_key = path_after("The server's private key: ");
    let (live, sniffer) = sniffer.stop();
    assert!(
        !live
            .iter()
            .any(|v| v["type"] == "credential" || v["type"] == "message"),
        "nothing readable live"
    );
    let read = |flag: &str, file: &str| -> Vec<Value> {
        let pcap = sniffer.pcap.to_str().unwrap();
        let (code, out, err) = tests::run_bin("sniffer", &["read", pcap, "--json", flag, file]);
        assert_eq!(code, 0, "{err}");
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    };
    let opened = read("--keylog", &keylog);
    let password = opened
        .iter()
        .find(|v| {
            v["type"] == "credential" && v["user"] == "classmate" && v["password"].is_string()
        })
        .and_then(|v| v["password"].as_str())
        .unwrap_or_else(|| panic!("{opened:#?}"))
        .to_string();
    let codeword = opened
        .iter()
        .filter(|v| v["type"] == "message")
        .find_map(|v| {
            let body = v["body"].as_str()?;
            Some(body.split("the code word is ").nth(1)?.trim().to_string())
        })
        .unwrap_or_else(|| panic!("{opened:#?}"));
    // teacher's and careful's sessions are not in classmate's key log.
    let closed = opened.iter().filter(|v| {
        v.to_string()
            .contains("no key for this session in the key log")
    });
    assert!(closed.count() >= 2, "{opened:#?}");
    let with_key = read("--server-key", &server_key);
    assert!(
        !with_key
            .iter()
            .any(|v| v["type"] == "credential" || v["type"] == "message"),
        "the server's key opens nothing"
    );
    assert!(
        with_key
            .iter()
            .any(|v| v.to_string().contains("(forward secrecy)")),
        "{with_key:#?}"
    );
    let (status, _) = lab.interrupt(WAIT).unwrap_or_else(|e| fail(e, &lab));
    assert_eq!(status.code(), Some(0), "{}", lab.transcript());
    no_answer_in(&lab.transcript(), 9, student);
    answers_check(
        9,
        student,
        &[
            format!("password={password}"),
            format!("codeword={codeword}"),
        ],
    );
}

/// Lab 10 as a student does it: from classmate's records alone, the
/// message is the one whose length fits the difference between its record
/// and the typing notification's, and the typing time is that small
/// record's. With `--pad 256` classmate's records come in multiples of the
/// padding; teacher's leg still shows the true size.
#[test]
fn lab_10_is_solved_from_record_sizes_and_times_and_padding_blurs_them() {
    let student = "Grace Hopper";
    let (mut lab, sniffer) = sniff_lab_session(10, student);
    let said = lab.transcript();
    let (_, sniffer) = sniffer.stop();
    let (code, out, err) = tests::run_bin(
        "sniffer",
        &["read", sniffer.pcap.to_str().unwrap(), "--json"],
    );
    assert_eq!(code, 0, "{err}");
    // Each TLS connection's records: sizes (positive to the server) and
    // times, in the order the connections ended.
    let traffic: Vec<Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "tls-traffic")
        .collect();
    assert_eq!(traffic.len(), 4, "{out}");
    // classmate's connections: the ones whose last records after the
    // sign-in go to the server (teacher's come from it).
    let records = |v: &Value| -> Vec<(i64, f64)> {
        let sizes = v["sizes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_i64().unwrap());
        let times = v["times"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_f64().unwrap());
        sizes.zip(times).collect()
    };
    // After the sign-in (the first second), what each side sent alone.
    let late = |r: &[(i64, f64)]| -> Vec<(i64, f64)> {
        r.iter().copied().filter(|(_, t)| *t > 1.0).collect()
    };
    let classmate: Vec<Vec<(i64, f64)>> = traffic
        .iter()
        .map(records)
        .filter(|r| late(r).first().is_some_and(|(s, _)| *s > 0))
        .collect();
    assert_eq!(classmate.len(), 2, "one per part: {traffic:#?}");
    let solve = |r: &[(i64, f64)]| -> (usize, f64, i64) {
        let late = late(r);
        let (typing, at) = late[0];
        let message = late[1].0;
        let diff = message - typing;
        // The message whose length plus the envelope's difference is
        // nearest.
        let lens = [2i64, 30, 90, 185, 393];
        let k = (0..5).min_by_key(|&i| (lens[i] + 32 - diff).abs()).unwrap();
        (k + 1, at, message)
    };
    let (k, at, _) = solve(&classmate[0]);
    // Part 2: the typing notification and the message are each the
    // padding's multiple plus the same TLS overhead (what follows holds
    // the unpadded end of the stream).
    let padded = late(&classmate[1]);
    let overhead = padded[0].0 % 256;
    assert!(overhead < 40, "{padded:?}");
    assert!(
        padded[..2]
            .iter()
            .all(|(s, _)| *s > 0 && s % 256 == overhead),
        "{padded:?}"
    );
    let (status, _) = lab.interrupt(WAIT).unwrap_or_else(|e| fail(e, &lab));
    assert_eq!(status.code(), Some(0), "{}", lab.transcript());
    assert!(said.contains("with --pad 256"), "{said}");
    for text in [
        "ok",
        "running late",
        "I found the bug",
        "Notes from",
        "Long version",
    ] {
        assert!(
            !said
                .lines()
                .any(|l| l.contains(text) && !l.contains("labs check")),
            "labs run shows the message: {said}"
        );
    }
    no_answer_in(&lab.transcript(), 10, student);
    answers_check(
        10,
        student,
        &[format!("message={k}"), format!("typing={at:.1}")],
    );
}

/// Ten `labs check` at once on one progress file (a class on a shared
/// folder): every student's record is there.
#[test]
fn ten_checks_at_once_lose_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let progress = dir.path().join("progress.json");
    let students: Vec<String> = (0..10).map(|i| format!("Student {i}")).collect();
    // Every answer first, so that the ten checks start together.
    let answers: Vec<String> = students
        .iter()
        .map(|student| {
            let (_, answers, err) = labs(&[
                "answers",
                "1",
                "--student",
                student,
                "--course-secret",
                "test-course",
            ]);
            assert!(!answers.is_empty(), "{err}");
            answers
        })
        .collect();
    let children: Vec<_> = students
        .iter()
        .zip(&answers)
        .map(|(student, answers)| {
            let mut cmd = Command::new(bin("labs"));
            cmd.args([
                "check",
                "1",
                "--student",
                student,
                "--course-secret",
                "test-course",
                "--progress",
                progress.to_str().unwrap(),
            ])
            .env("XDG_STATE_HOME", state_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
            for a in answers.lines() {
                cmd.args(["--answer", a]);
            }
            cmd.spawn().unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&progress).unwrap()).unwrap();
    for i in 0..10 {
        let lab1 = &saved[format!("student-{i}")]["lab1"];
        assert_eq!(
            lab1.as_array().map(Vec::len),
            Some(3),
            "student {i}: {saved:#}"
        );
    }
}

/// Names that are not names are refused, with a reason.
#[test]
fn an_empty_or_control_character_name_is_refused() {
    for bad in ["", "   ", "ada\u{1b}[2J", "tab\there", "---"] {
        let (code, out, err) = labs(&["check", "1", "--student", bad, "--answer", "password=x"]);
        assert_eq!(code, 2, "{bad:?}: {out}{err}");
        assert!(err.contains("--student"), "{bad:?}: {err}");
    }
}

/// `--port` already taken: the lab refuses in one line, and runs nothing
/// against whatever listens there.
#[test]
fn a_taken_port_is_refused() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, out, err) = labs(&[
        "run",
        "1",
        "--student",
        "Ada Lovelace",
        "--course-secret",
        "test-course",
        "--once",
        "--port",
        &port,
    ]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("cannot listen on 127.0.0.1:") && err.contains("in use"),
        "{err}"
    );
    assert!(!out.contains("The session is over"), "{out}");
}

/// `labs serve` on a port the system picks, with its own data folder.
struct ClassServer {
    proc: Proc,
    addr: std::net::SocketAddr,
    url: String,
    _data: tempfile::TempDir,
}

impl ClassServer {
    fn start() -> ClassServer {
        Self::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> ClassServer {
        let data = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(bin("labs"));
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--course-secret",
            "test-course",
            "--data",
        ])
        .arg(data.path())
        .args(extra);
        let proc = Proc::spawn("labs serve", cmd, Input::Null).unwrap();
        let addr = harness::chat::wait_ready(&proc).unwrap().listen;
        ClassServer {
            proc,
            addr,
            url: format!("http://{addr}"),
            _data: data,
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        tests::http(self.addr, "GET", path, None, "")
    }

    fn post(&self, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
        tests::http(self.addr, "POST", path, token, body)
    }

    fn board(&self) -> Value {
        let (code, body) = self.get("/api/scoreboard");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// `labs check --class` as a student runs it, in its own state folder
/// (where its token is kept).
fn class_check(
    class: &ClassServer,
    state: &std::path::Path,
    student: &str,
    answers: &str,
) -> Command {
    let mut cmd = Command::new(bin("labs"));
    cmd.args(["check", "1", "--class", &class.url, "--student", student])
        .env("XDG_STATE_HOME", state);
    for a in answers.lines() {
        cmd.args(["--answer", a]);
    }
    cmd
}

/// Sixty students check at once: every one is recorded, with the right
/// count, on the scoreboard and in the CSV.
#[test]
fn sixty_checks_at_once_against_the_class_server_lose_nothing() {
    let class = ClassServer::start();
    let students: Vec<String> = (0..60).map(|i| format!("Student {i:02}")).collect();
    let answers: Vec<String> = students
        .iter()
        .map(|s| {
            let (code, out, err) = labs(&[
                "answers",
                "1",
                "--student",
                s,
                "--course-secret",
                "test-course",
            ]);
            assert_eq!(code, 0, "{err}");
            out
        })
        .collect();
    let states: Vec<tempfile::TempDir> = students
        .iter()
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let children: Vec<_> = students
        .iter()
        .zip(&answers)
        .zip(&states)
        .map(|((s, a), state)| {
            class_check(&class, state.path(), s, a)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let board = class.board();
    let rows = board["students"].as_array().unwrap();
    assert_eq!(rows.len(), 60, "{board}");
    for r in rows {
        assert_eq!(r["count"], 3, "{r}");
        assert_eq!(r["solved"]["1"].as_array().unwrap().len(), 3, "{r}");
    }
    let (code, csv) = class.get("/export.csv");
    assert_eq!(code, 200);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 61, "{csv}");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.contains(",3,0,0,0,0,0,0,0,0,0,0,0,3,0")),
        "{csv}"
    );
    // The answers themselves are nowhere in what the server keeps or shows.
    let data = std::fs::read(class._data.path().join("class.db")).unwrap();
    let first = answers[0]
        .lines()
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1;
    assert!(!String::from_utf8_lossy(&data).contains(first));
}

/// A token is one student's: it cannot check for another name, a forged
/// one is refused, and every bad request gets one clear line.
#[test]
fn a_class_token_cannot_check_for_another_name() {
    let class = ClassServer::start();
    let (code, body) = class.post("/api/join", None, r#"{"student":"Ada Lovelace"}"#);
    assert_eq!(code, 201, "{body}");
    let ada: Value = serde_json::from_str(&body).unwrap();
    let token = ada["token"].as_str().unwrap();
    let check = |student: &str, token: Option<&str>| {
        class.post(
            "/api/labs/1/check",
            token,
            &format!(r#"{{"student":"{student}","answers":["password=x"]}}"#),
        )
    };
    let (code, body) = check("Grace Hopper", Some(token));
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("belongs to 'ada-lovelace', not 'grace-hopper'"),
        "{body}"
    );
    let (code, body) = check("Ada Lovelace", Some("0123456789abcdef"));
    assert_eq!(code, 401, "{body}");
    let (code, body) = check("Ada Lovelace", None);
    assert_eq!(code, 401, "{body}");
    // Ada's own, wrong: a verdict, not an error.
    let (code, body) = check("Ada Lovelace", Some(token));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("password: wrong"), "{body}");
    // The name is taken: nobody else gets a token for it.
    let (code, body) = class.post("/api/join", None, r#"{"student":"ada   LOVELACE"}"#);
    assert_eq!(code, 409, "{body}");
    for (path, body, want) in [
        ("/api/join", "not json", 400),
        ("/api/join", r#"{"student":"\u001b[2J"}"#, 400),
        ("/api/join", r#"{"name":"x"}"#, 400),
        (
            "/api/labs/99/check",
            r#"{"student":"Ada Lovelace","answers":[]}"#,
            404,
        ),
        (
            "/api/labs/1/check",
            r#"{"student":"Ada Lovelace","answers":[1]}"#,
            400,
        ),
        (
            "/api/labs/1/check",
            r#"{"student":"Ada Lovelace","answers":["colour=blue"]}"#,
            400,
        ),
    ] {
        let (code, answer) = class.post(path, Some(token), body);
        assert_eq!(code, want, "{path} {body}: {answer}");
        let v: Value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"));
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{answer}"
        );
    }
    // The teacher resets Ada: her old token stops, and she can join again.
    let (code, out, err) = labs(&[
        "class",
        "reset",
        "Ada Lovelace",
        "--data",
        class._data.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _) = check("Ada Lovelace", Some(token));
    assert_eq!(code, 401);
    let (code, body) = class.post("/api/join", None, r#"{"student":"Ada Lovelace"}"#);
    assert_eq!(code, 201, "{body}");
    assert!(class.proc.stderr().contains("ready listen="));
}

/// Lab 1 end to end through the class server, as a student in class does
/// it: `labs run --class` (no course secret on this machine), the sniffer,
/// `labs check --class`, a hint; the scoreboard page in a real browser
/// then shows the three solved questions in green.
#[test]
fn lab_1_through_the_class_server_shows_on_the_scoreboard() {
    let class = ClassServer::start();
    let state = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin("labs"));
    cmd.args([
        "run",
        "1",
        "--class",
        &class.url,
        "--student",
        "Grace Hopper",
    ])
    .env("XDG_STATE_HOME", state.path())
    .env_remove("LABS_COURSE_SECRET");
    let mut lab = Proc::spawn("labs run --class", cmd, Input::Piped).unwrap();
    let line = lab
        .wait_line(" server on ", WAIT)
        .unwrap_or_else(|e| fail(e, &lab));
    let port: u16 = line.rsplit(':').next().unwrap().parse().unwrap();
    lab.wait_line("press Enter", WAIT)
        .unwrap_or_else(|e| fail(e, &lab));
    let sniffer = Sniffer::on_ports(&[port]);
    lab.send_line("").unwrap();
    let printed = lab
        .wait_line("labs check 1 --class", Duration::from_secs(60))
        .unwrap_or_else(|e| fail(e, &lab));
    assert!(printed.contains(&class.url), "{printed}");
    lab.wait_line("the server keeps running", WAIT)
        .unwrap_or_else(|e| fail(e, &lab));
    let (status, _) = lab.interrupt(WAIT).unwrap_or_else(|e| fail(e, &lab));
    assert_eq!(status.code(), Some(0), "{}", lab.transcript());
    // No course secret was needed, and no warning about one.
    assert!(
        !lab.stderr().contains("no course secret"),
        "{}",
        lab.stderr()
    );
    let answers = lab_1_answers(&sniffer.stop().0);
    let out = class_check(&class, state.path(), "Grace Hopper", &answers.join("\n"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(said.matches(": right").count(), 3, "{said}");
    // A hint, counted.
    let out = Command::new(bin("labs"))
        .args([
            "hint",
            "1",
            "codeword",
            "--class",
            &class.url,
            "--student",
            "Grace Hopper",
        ])
        .env("XDG_STATE_HOME", state.path())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("hint 1 of 3"),
        "{out:?}"
    );
    let board = class.board();
    assert_eq!(board["students"][0]["student"], "Grace Hopper", "{board}");
    assert_eq!(board["students"][0]["count"], 3, "{board}");
    assert_eq!(board["students"][0]["hints"], 1, "{board}");
    // The page, in a real browser: the three solved cells are green.
    let dir = tempfile::tempdir().unwrap();
    if let Some(shot) = tests::screenshot_url(
        &format!("{}/", class.url),
        &dir.path().join("board.png"),
        1400,
        500,
    ) {
        let green = shot.count([0x2e, 0x7d, 0x32], 0, 500);
        assert!(green > 1500, "green {green}");
    }
}

/// `--pseudonyms`: what the server shows (scoreboard, CSV) hides names;
/// the teacher's `labs class export` has them.
#[test]
fn pseudonyms_hide_names_from_the_projector_not_from_the_teacher() {
    let class = ClassServer::start_with(&["--pseudonyms"]);
    let (code, body) = class.post("/api/join", None, r#"{"student":"Ada Lovelace"}"#);
    assert_eq!(code, 201, "{body}");
    let board = class.board();
    let shown = board["students"][0]["student"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(shown.starts_with("student-"), "{board}");
    let (_, csv) = class.get("/export.csv");
    assert!(
        csv.contains(&shown) && !csv.to_lowercase().contains("ada"),
        "{csv}"
    );
    let (code, out, err) = labs(&[
        "class",
        "export",
        "--data",
        class._data.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Ada Lovelace") && !out.contains(&shown),
        "{out}"
    );
}

/// Lab 11, as a student does it: `labs run 11` runs its session at once
/// and names the server's database; the student, as its operator, reads
/// it with `sqlite3` while the lab runs: classmate's message over TLS is
/// there in the clear, careful's end-to-end messages (archive and offline
/// store alike) only as `<encrypted/>` with the fallback body, their
/// recipient and sending device readable.
#[test]
fn lab_11_is_solved_from_the_servers_database_and_end_to_end_text_is_not_in_it() {
    let Some(sqlite3) = tests::interop_tool("sqlite3") else {
        return;
    };
    let student = "Ada Lovelace";
    let mut lab = start_lab(11, student);
    let line = lab
        .wait_line("chat.db", Duration::from_secs(90))
        .unwrap_or_else(|e| fail(e, &lab));
    let db = line.trim().to_string();
    lab.wait_line("the server keeps running", WAIT)
        .unwrap_or_else(|e| fail(e, &lab));
    let query = |sql: &str| {
        let out = Command::new(&sqlite3)
            .args(["-readonly", &db, sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let archive = query("SELECT owner, peer, stanza FROM archive");
    let offline = query("SELECT owner, stanza FROM offline");
    let (status, _) = lab.interrupt(WAIT).unwrap_or_else(|e| fail(e, &lab));
    assert_eq!(status.code(), Some(0), "{}", lab.transcript());
    no_answer_in(&lab.transcript(), 11, student);
    // Part 1: over TLS, yet in the clear on the server's disk.
    let codeword = archive
        .split("the code word is ")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap_or_else(|| panic!("{archive}"))
        .to_string();
    // Part 2: careful's rows hold ciphertext, in the archive and offline.
    let careful_rows: Vec<&str> = archive
        .lines()
        .filter(|l| l.starts_with("careful|"))
        .collect();
    assert_eq!(careful_rows.len(), 2, "{archive}");
    for row in careful_rows.iter().copied().chain(offline.lines()) {
        assert!(
            row.contains("<encrypted xmlns='urn:xmpp:omemo:2'>"),
            "{row}"
        );
        assert!(
            !row.contains("meeting") && !row.contains("blue folder"),
            "{row}"
        );
    }
    let contact = careful_rows[0].split('|').nth(1).unwrap().to_string();
    let device = careful_rows[0]
        .split("<header sid='")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .unwrap()
        .to_string();
    answers_check(
        11,
        student,
        &[
            format!("codeword={codeword}"),
            format!("contact={contact}"),
            format!("device={device}"),
        ],
    );
}

/// Lab 12: the student's `inject-omemo-device` proxy reads classmate's
/// end-to-end message while classmate trusts blindly (part 1); after
/// classmate verifies teacher's fingerprint the injected device gets no
/// key and the proxy's verdict says defeated (part 2). teacher's real
/// device is the one in the list the proxy did not add.
#[test]
fn lab_12_is_solved_from_the_injected_device_and_verification_defeats_it() {
    let student = "Grace Hopper";
    let (said, events) = run_attacker_lab(12, student, 1);
    let events = &events[0];
    assert!(
        said.contains("NOT trusted any more"),
        "classmate's verification: {said}"
    );
    let did: Vec<&str> = events
        .iter()
        .filter(|v| v["type"] == "attack" && v["attack"] == "inject-omemo-device")
        .filter_map(|v| v["did"].as_str())
        .collect();
    let codeword = did
        .iter()
        .find_map(|d| d.split("DECRYPTED \"the code word is ").nth(1))
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("{did:#?}"));
    let added = did
        .iter()
        .find(|d| d.starts_with("added the attacker's device "))
        .unwrap_or_else(|| panic!("{did:#?}"));
    let injected = added
        .trim_start_matches("added the attacker's device ")
        .split(' ')
        .next()
        .unwrap();
    let real = added
        .split("the client now sees devices ")
        .nth(1)
        .unwrap()
        .split(", ")
        .find(|d| *d != injected)
        .unwrap_or_else(|| panic!("{added}"));
    assert_eq!(verdict(events, 1, "inject-omemo-device")["defeated"], false);
    assert_eq!(verdict(events, 2, "inject-omemo-device")["defeated"], true);
    answers_check(
        12,
        student,
        &[format!("codeword={codeword}"), format!("device={real}")],
    );
}
