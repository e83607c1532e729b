//! OMEMO against the reference implementation. python-omemo's backends
//! (twomemo for `urn:xmpp:omemo:2`, oldmemo for
//! `eu.siacs.conversations.axolotl`), driven by
//! `tests/interop/omemo_driver.py`, and our `protocol::omemo` exchange
//! messages both ways in both versions: bundles and `<encrypted/>`
//! elements as XML, each side reading what the other wrote, the stanzas
//! handed over as files. Then over XMPP: slixmpp-omemo clients through our
//! server and Prosody, and our own client (`--e2e on`) with a slixmpp-omemo
//! partner (`tests/interop/omemo_partner.py`), both ways in both versions.

use std::path::PathBuf;
use std::process::Command;

use protocol::omemo::Version;
use protocol::omemo::keys::{Bundle, IdentityKey, PreKey};
use protocol::omemo::payload::{Sealed, open_old, open_two, seal_old, seal_two};
use protocol::omemo::session::Session;
use protocol::omemo::xml::{
    KeyFor, bundle_element, encrypted_element, envelope, read_bundle, read_encrypted, read_envelope,
};
use protocol::parser::parse_element;
use serde_json::Value;
use tests::{interop_tool, workspace_root};

/// The reference driver, run with the interop venv's Python.
struct Driver {
    python: PathBuf,
    dir: tempfile::TempDir,
}

impl Driver {
    fn new() -> Option<Driver> {
        Some(Driver {
            python: interop_tool("slixmpp")?,
            dir: tempfile::tempdir().unwrap(),
        })
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `decrypt`: the reference reads our message `msg` from `from`
    /// (whose bundle, for OMEMO 0.3's identity sign bit, is `bundle`).
    fn decrypt(
        &self,
        state: &str,
        v: Version,
        from: &str,
        msg: &str,
        bundle: &str,
        reply: bool,
    ) -> Value {
        let mut args = vec![
            "decrypt",
            "--state",
            state,
            "--ns",
            ns_arg(v),
            "--from-jid",
            from,
            "--message",
            msg,
            "--sender-bundle",
            bundle,
        ];
        if !reply {
            args.push("--no-auto-reply");
        }
        self.run(&args)
    }

    /// Runs one driver command; its JSON answer.
    fn run(&self, args: &[&str]) -> Value {
        let out = Command::new(&self.python)
            .arg(workspace_root().join("tests/interop/omemo_driver.py"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "omemo_driver {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn ns_arg(v: Version) -> &'static str {
    match v {
        Version::Two => "twomemo",
        Version::Old => "oldmemo",
    }
}

/// One of our devices: its keys, and its bundle.
struct Ours {
    jid: &'static str,
    id: u32,
    identity: IdentityKey,
    spk: PreKey,
    prekeys: Vec<PreKey>,
}

impl Ours {
    fn new(jid: &'static str, id: u32) -> Ours {
        Ours {
            jid,
            id,
            identity: IdentityKey::generate(),
            spk: PreKey::generate(1),
            prekeys: (1..=3).map(PreKey::generate).collect(),
        }
    }

    fn bundle_xml(&self, v: Version) -> String {
        bundle_element(v, &Bundle::new(v, &self.identity, &self.spk, &self.prekeys)).to_xml()
    }

    /// Seals `text` as the version does (OMEMO 2: inside an envelope).
    fn seal(&self, v: Version, text: &str) -> Sealed {
        match v {
            Version::Two => {
                seal_two(envelope(text, self.jid, None, "2026-12-03T12:00:00Z").as_bytes())
            }
            Version::Old => seal_old(text.as_bytes()),
        }
    }

    /// `<encrypted/>` from us to one device.
    fn message(&self, v: Version, to: &str, rid: u32, s: &mut Session, sealed: &Sealed) -> String {
        let key = s.encrypt(&sealed.key_material).unwrap();
        encrypted_element(
            v,
            self.id,
            &[KeyFor {
                jid: to.to_string(),
                rid,
                key,
            }],
            Some(&sealed.ciphertext),
            &sealed.iv,
        )
        .to_xml()
    }
}

/// The text of a payload, as the version carries it.
fn open(v: Version, material: &[u8], payload: &[u8], iv: &[u8]) -> String {
    match v {
        Version::Two => {
            read_envelope(&open_two(material, payload).unwrap())
                .unwrap()
                .body
        }
        Version::Old => String::from_utf8(open_old(material, iv, payload).unwrap()).unwrap(),
    }
}

/// What the reference decrypted, as text.
fn their_text(v: Version, answer: &Value) -> String {
    let key = if v == Version::Two {
        "sce_body"
    } else {
        "plaintext"
    };
    answer[key]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_string()
}

fn xml_of(v: &Value) -> protocol::Element {
    parse_element(v["xml"].as_str().unwrap()).unwrap()
}

/// We start the session: with the reference's bundle, our first message
/// (a key exchange) opens there, its automatic answer confirms our
/// session, and messages then go both ways.
fn we_start(v: Version, d: &Driver) {
    let state = d.path(&format!("bob-{v:?}.json"));
    let made = d.run(&[
        "gen",
        "--state",
        &state,
        "--jid",
        "bob@localhost",
        "--device-id",
        "2222",
        "--prekeys",
        "5",
    ]);
    let bundle_xml = made["bundles"][ns_arg(v)]["xml"].as_str().unwrap();
    let bundle = read_bundle(v, &parse_element(bundle_xml).unwrap()).unwrap();
    bundle.verify(v).unwrap();

    let alice = Ours::new("alice@localhost", 1111);
    let alice_bundle = d.write(&format!("alice-{v:?}.xml"), &alice.bundle_xml(v));
    let mut session = Session::initiate(v, &alice.identity, &bundle).unwrap();
    let sealed = alice.seal(v, "hello python");
    let msg = d.write(
        "a1.xml",
        &alice.message(v, "bob@localhost", 2222, &mut session, &sealed),
    );
    let got = d.decrypt(&state, v, "alice@localhost", &msg, &alice_bundle, true);
    assert_eq!(their_text(v, &got), "hello python", "{got}");
    assert_eq!(got["session"], "new-passive", "{got}");

    // The reference answers a key exchange with an empty message: it
    // confirms our session.
    let reply = read_encrypted(v, &xml_of(&got["auto_reply"])).unwrap();
    let (data, kex) = reply.key_for("alice@localhost", 1111).unwrap();
    assert!(!kex);
    session.decrypt(data).unwrap();
    assert!(session.confirmed());
    assert!(reply.payload.is_none(), "an empty message");

    // A real message from the reference.
    let mut args = vec![
        "encrypt",
        "--state",
        &state,
        "--ns",
        ns_arg(v),
        "--to-jid",
        "alice@localhost",
        "--to-device",
        "1111",
        "--plaintext",
        "hello rust",
    ];
    if v == Version::Two {
        args.push("--sce");
    }
    let sent = d.run(&args);
    let m = read_encrypted(v, &xml_of(&sent)).unwrap();
    assert_eq!(m.sid, 2222);
    let (data, kex) = m.key_for("alice@localhost", 1111).unwrap();
    assert!(!kex);
    let material = session.decrypt(data).unwrap();
    assert_eq!(
        open(v, &material, m.payload.as_deref().unwrap(), &m.iv),
        "hello rust"
    );

    // And ours again, now without a key exchange.
    let sealed = alice.seal(v, "and back");
    let msg = d.write(
        "a2.xml",
        &alice.message(v, "bob@localhost", 2222, &mut session, &sealed),
    );
    let got = d.decrypt(&state, v, "alice@localhost", &msg, &alice_bundle, false);
    assert_eq!(their_text(v, &got), "and back", "{got}");
    assert!(
        got["session"].as_str().unwrap().starts_with("existing"),
        "{got}"
    );
}

/// The reference starts the session with our published bundle (its
/// signature checked there, OMEMO 0.3's sign bit included); we answer.
fn they_start(v: Version, d: &Driver) {
    let dave = Ours::new("dave@localhost", 3333);
    let dave_bundle = d.write(&format!("dave-{v:?}.xml"), &dave.bundle_xml(v));
    let state = d.path(&format!("carol-{v:?}.json"));
    d.run(&[
        "gen",
        "--state",
        &state,
        "--jid",
        "carol@localhost",
        "--device-id",
        "4444",
    ]);
    let mut args = vec![
        "encrypt",
        "--state",
        &state,
        "--ns",
        ns_arg(v),
        "--to-jid",
        "dave@localhost",
        "--to-device",
        "3333",
        "--bundle",
        &dave_bundle,
        "--plaintext",
        "from python",
    ];
    if v == Version::Two {
        args.push("--sce");
    }
    let sent = d.run(&args);
    let m = read_encrypted(v, &xml_of(&sent)).unwrap();
    let (data, kex) = m.key_for("dave@localhost", 3333).unwrap();
    assert!(kex, "the first message is a key exchange");
    let (exchange, inner) = Session::read_key_exchange(v, data).unwrap();
    let pk = dave
        .prekeys
        .iter()
        .find(|p| p.id == exchange.pk_id)
        .expect("a pre key of ours");
    let (mut session, material) =
        Session::respond(v, &dave.identity, &dave.spk, pk, &exchange, &inner).unwrap();
    assert_eq!(
        open(v, &material, m.payload.as_deref().unwrap(), &m.iv),
        "from python"
    );

    let sealed = dave.seal(v, "from rust");
    let msg = d.write(
        "d1.xml",
        &dave.message(v, "carol@localhost", 4444, &mut session, &sealed),
    );
    let got = d.decrypt(&state, v, "dave@localhost", &msg, &dave_bundle, true);
    assert_eq!(their_text(v, &got), "from rust", "{got}");
    assert!(
        got["session"].as_str().unwrap().starts_with("existing"),
        "{got}"
    );
}

fn with_the_reference(v: Version) {
    let Some(d) = Driver::new() else { return };
    we_start(v, &d);
    they_start(v, &d);
}

#[test]
fn omemo_2_messages_go_both_ways_with_the_reference() {
    with_the_reference(Version::Two);
}

#[test]
fn omemo_0_3_messages_go_both_ways_with_the_reference() {
    with_the_reference(Version::Old);
}

/// slixmpp-omemo (the reference's XMPP plugin) clients through a server:
/// `tests/interop/omemo_peer.py` publishes device lists and bundles in
/// both versions (publish-options, precondition-not-met then configure),
/// checks that two people who add each other learn each other's devices
/// by PEP notification, exchanges OMEMO 0.3 messages both ways (and OMEMO
/// 2 at the backend level: slixmpp-omemo 2.2.0 has no SCE), with a
/// stranger, to a second device of the same account, and probes the PEP
/// rules OMEMO relies on. Exit 0: every required check passed.
fn slixmpp_omemo_through(server: &tests::Server) {
    let Some(python) = interop_tool("slixmpp") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = Command::new(python)
        .arg(workspace_root().join("tests/interop/omemo_peer.py"))
        .args([
            "--server",
            &server.addr.to_string(),
            "--register",
            "--timeout",
            "10",
        ])
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "omemo_peer.py failed:\n{stdout}\n{}\n--- server log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    // The messages themselves went through, not just the checks' bookkeeping.
    for must in [
        "PASS oldmemo: bob decrypts alice's message",
        "PASS oldmemo: alice decrypts bob's answer",
        "PASS omemo:2 raw: bob decrypts",
    ] {
        assert!(stdout.contains(must), "'{must}' missing:\n{stdout}");
    }
}

#[test]
fn slixmpp_omemo_clients_talk_through_our_server() {
    slixmpp_omemo_through(&tests::Server::start(tests::Twin::Plain, &[]));
}

#[test]
fn slixmpp_omemo_clients_talk_through_prosody() {
    let Some(prosody) = interop_tool("prosody") else {
        return;
    };
    slixmpp_omemo_through(&tests::Server::prosody(&prosody, tests::Twin::Plain));
}

/// Our client and a slixmpp-omemo partner (`omemo_partner.py`) through
/// `server`, in version `v` (the partner publishes OMEMO 0.3 alone for
/// 0.3, as Conversations does, so that our client must speak it): when
/// `they_start`, the partner writes first and builds the session; else
/// our client does. Either way the other answers, each side decrypts what
/// the other sent, and the fingerprint our client shows is the one the
/// partner's library has.
fn our_client_with_slixmpp_omemo(server: &tests::Server, v: Version, they_start: bool) {
    let Some(python) = interop_tool("slixmpp") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("{}{}", if they_start { "t" } else { "w" }, &protocol_tag(v));
    let me = format!("our-{tag}-{}@localhost", std::process::id());
    let py = format!("py-{tag}-{}@localhost", std::process::id());
    let mut cmd = Command::new(python);
    cmd.current_dir(workspace_root().join("tests/interop"))
        .arg("omemo_partner.py")
        .args(["--server", &server.addr.to_string(), "--register"])
        .args([
            "--jid",
            &py,
            "--peer",
            &me,
            "--answers",
            "1",
            "--timeout",
            "20",
        ]);
    if v == Version::Old {
        cmd.arg("--only-old");
    }
    if they_start {
        cmd.args(["--first", "first from slixmpp-omemo", "--first-ns"])
            .arg(if v == Version::Two { "2" } else { "old" });
    }
    let mut partner = tests::Client::spawn("omemo_partner.py", cmd);
    let ready = partner.expect_line("the partner's keys", |l| l.starts_with("READY "));
    let their_fp = ready
        .split("fingerprint=")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    let data = dir.path().to_str().unwrap();
    let mut ours = tests::Client::start(
        server,
        &me,
        "our-pw",
        &["--register", "--e2e", "on", "--data", data],
    );
    ours.send(&format!("/add {py}"));
    let is_e2e = |m: &Value| m["e2e"]["version"] == v.ns() && m["e2e"]["trust"] == "blind";
    if they_start {
        // On failure, the partner's side of the story too.
        let m = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ours.expect("their first message, decrypted", |m| {
                m["type"] == "message" && m["body"] == "first from slixmpp-omemo"
            })
        }))
        .unwrap_or_else(|_| panic!("the partner said:\n{}", partner.transcript()));
        assert!(is_e2e(&m), "{m}\n{}", ours.transcript());
    } else {
        // Once they are a contact (their device list arrives with it).
        ours.expect("their presence", |m| m["type"] == "presence");
    }
    ours.send(&format!("/msg {py} from our client"));
    partner.expect_line("our message, decrypted", |l| {
        l == format!("DECRYPTED {} from our client", v.ns())
    });
    let echo = ours.expect("their answer", |m| {
        m["type"] == "message" && m["body"] == "echo: from our client"
    });
    assert!(is_e2e(&echo), "{echo}\n{}", ours.transcript());
    // The fingerprint we show is theirs (grouped as people read it).
    ours.send(&format!("/fingerprints {py}"));
    let d = ours.expect("their device", |m| m["type"] == "device");
    assert_eq!(
        d["fingerprint"].as_str().unwrap().replace(' ', ""),
        their_fp,
        "{}",
        ours.transcript()
    );
    let (code, transcript) = partner.finish();
    assert_eq!(code, 0, "{transcript}");
}

fn protocol_tag(v: Version) -> &'static str {
    match v {
        Version::Two => "2",
        Version::Old => "03",
    }
}

#[test]
fn our_client_and_slixmpp_omemo_speak_omemo_2_through_our_server() {
    let server = tests::Server::start(tests::Twin::Plain, &[]);
    our_client_with_slixmpp_omemo(&server, Version::Two, false);
    our_client_with_slixmpp_omemo(&server, Version::Two, true);
}

#[test]
fn our_client_and_slixmpp_omemo_speak_omemo_0_3_through_our_server() {
    let server = tests::Server::start(tests::Twin::Plain, &[]);
    our_client_with_slixmpp_omemo(&server, Version::Old, false);
    our_client_with_slixmpp_omemo(&server, Version::Old, true);
}

#[test]
fn our_client_and_slixmpp_omemo_speak_both_versions_through_prosody() {
    let Some(prosody) = interop_tool("prosody") else {
        return;
    };
    let server = tests::Server::prosody(&prosody, tests::Twin::Plain);
    for v in Version::ALL {
        our_client_with_slixmpp_omemo(&server, v, false);
        our_client_with_slixmpp_omemo(&server, v, true);
    }
}

/// On the plaintext twin, under the sniffer: with `--e2e on` the words of
/// a chat never cross the wire (nor reach the server); the sniffer shows
/// each message as `encrypted-message` (end to end: who, which devices,
/// how big), counts it in the `end-to-end` column, and counts no message
/// text. The same exchange without `--e2e` leaks the text: the positive
/// control that keeps the first half from passing vacuously.
#[test]
fn the_sniffer_sees_omemo_messages_as_hidden_end_to_end_even_on_plaintext() {
    for e2e in [true, false] {
        let server = tests::Server::start(tests::Twin::Plain, &[]);
        let sniffer = tests::Sniffer::start(&server);
        let dir = tempfile::tempdir().unwrap();
        let words = format!("meet-behind-the-gym-{}", std::process::id());
        let flags = |who: &str| -> Vec<String> {
            let mut f = vec!["--register".to_string()];
            if e2e {
                f.extend(["--e2e".into(), "on".into(), "--data".into()]);
                f.push(dir.path().join(who).to_string_lossy().into_owned());
            }
            f
        };
        let (af, bf) = (flags("al"), flags("bo"));
        let mut al = tests::Client::start(
            &server,
            "al@localhost",
            "pw-al",
            &af.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let mut bo = tests::Client::start(
            &server,
            "bo@localhost",
            "pw-bo",
            &bf.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        al.befriend(&mut bo);
        al.send(&format!("/msg bo@localhost {words}"));
        let m = bo.expect("al's message", |m| m["type"] == "message");
        assert_eq!(m["body"], words.as_str(), "{}", bo.transcript());
        assert_eq!(m["e2e"].is_object(), e2e, "{m}");
        let (lines, sn) = sniffer.stop();
        let pcap = std::fs::read(&sn.pcap).unwrap();
        let on_wire = pcap.windows(words.len()).any(|w| w == words.as_bytes());
        let e2e_findings: Vec<&Value> = lines
            .iter()
            .filter(|l| l["type"] == "encrypted-message")
            .collect();
        let totals = lines.iter().find(|l| l["type"] == "totals").unwrap();
        if e2e {
            assert!(!on_wire, "the words crossed the wire despite --e2e on");
            assert!(
                e2e_findings.iter().any(|f| f["scheme"] == "OMEMO 2"
                    && f["key_exchange"] == true
                    && f["payload_bytes"].as_u64() > Some(0)
                    && f["devices"].as_array().is_some_and(|d| !d.is_empty())),
                "{lines:#?}"
            );
            assert_eq!(totals["messages"], 0, "{totals}");
            assert!(totals["end-to-end"].as_u64() >= Some(2), "{totals}");
        } else {
            assert!(on_wire, "positive control: plaintext words on the wire");
            assert!(e2e_findings.is_empty());
            assert!(totals["messages"].as_u64() >= Some(2), "{totals}");
        }
    }
}

/// `mitm-proxy --attack inject-omemo-device` between alice and the server
/// (bob talks to the server directly): the proxy adds its own device to
/// bob's device lists and serves its bundle as bob's. With blind trust
/// (nobody verified anything) alice encrypts to it too, and the proxy
/// reads the message; once alice verified bob's real fingerprint (as he
/// reads it to her, out of band), the injected device gets nothing, alice
/// is told it is not trusted, and the proxy's verdict says it was
/// defeated. Bob reads the message either way.
#[test]
fn an_injected_omemo_device_reads_blind_trust_and_is_refused_after_verification() {
    for verify in [false, true] {
        let server = tests::Server::start(tests::Twin::Plain, &[]);
        let proxy = tests::Proxy::start(server.addr, &["inject-omemo-device"]);
        let dir = tempfile::tempdir().unwrap();
        let data = |who: &str| dir.path().join(who).to_string_lossy().into_owned();
        let (bob_data, al_data) = (data("bob"), data("al"));
        let mut bob = tests::Client::start(
            &server,
            "bob@localhost",
            "pw-bob",
            &["--register", "--e2e", "on", "--data", &bob_data],
        );
        // Bob reads his own fingerprint (he would read it to alice).
        bob.send("/fingerprints");
        let own = bob.expect("bob's own device", |v| {
            v["type"] == "device" && v["trust"] == "own"
        });
        let fp = own["fingerprint"].as_str().unwrap().to_string();
        let mut al = tests::Client::start_via(
            &server,
            proxy.addr,
            "al@localhost",
            "pw-al",
            &["--register", "--e2e", "on", "--data", &al_data],
        );
        al.befriend(&mut bob);
        let secret = format!("the exam key is {}", std::process::id());
        if verify {
            al.send(&format!("/verify bob@localhost {fp}"));
            let ok = al.expect("verified", |v| {
                v["type"] == "ok" && v["command"] == "/verify"
            });
            let detail = ok["detail"].as_str().unwrap();
            assert!(detail.contains("NOT trusted any more"), "{detail}");
        }
        al.send(&format!("/msg bob@localhost {secret}"));
        let m = bob.expect("alice's message", |v| v["type"] == "message");
        assert_eq!(m["body"], secret.as_str(), "{}", bob.transcript());
        al.expect("the receipt", |v| v["type"] == "receipt");
        let al_out = al.transcript();
        let all = proxy.stop();
        let v = tests::verdict(&all, 1, "inject-omemo-device");
        let outcome = v["outcome"].as_str().unwrap();
        let read = all.iter().any(|e| {
            e["type"] == "attack"
                && e["did"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("DECRYPTED") && d.contains(&secret))
        });
        if verify {
            assert_eq!(v["defeated"], true, "{v}");
            assert!(
                outcome.contains("no key for the injected device"),
                "{outcome}"
            );
            assert!(!read, "{all:#?}");
        } else {
            assert_eq!(v["defeated"], false, "{v}");
            assert!(outcome.contains(&secret), "{outcome}");
            assert!(read, "{all:#?}");
            // Alice was told a new device appeared, trusted blindly.
            assert!(
                al_out.contains("NEW OMEMO DEVICE of bob@localhost"),
                "{al_out}"
            );
        }
    }
}

/// `--e2e require` refuses to send to a contact without an OMEMO device
/// (nothing goes out: a `not-sent` event, and the script fails);
/// `--e2e on` sends it in the clear and says so; `/e2e off` turns one
/// conversation back to the clear without a word; `/verify` with a
/// fingerprint nobody has verifies nothing.
#[test]
fn require_refuses_a_contact_without_omemo_and_on_says_it_sent_in_the_clear() {
    let server = tests::Server::start(tests::Twin::Plain, &[]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_string_lossy().into_owned();
    // plain has no OMEMO at all (the default --e2e off).
    let setup = tests::Client::start(&server, "plain@localhost", "pw-p", &["--register"]);
    setup.finish();
    for (mode, sent) in [("require", false), ("on", true)] {
        let mut c = tests::Client::start(
            &server,
            &format!("{mode}@localhost"),
            "pw",
            &["--register", "--e2e", mode, "--data", &data],
        );
        c.send("/msg plain@localhost hello there");
        if sent {
            let w = c.expect("the warning", |v| v["type"] == "e2e-warning");
            assert!(
                w["text"]
                    .as_str()
                    .unwrap()
                    .contains("NOT end-to-end encrypted"),
                "{w}"
            );
        } else {
            let n = c.expect("not sent", |v| v["type"] == "not-sent");
            assert!(
                n["reason"]
                    .as_str()
                    .unwrap()
                    .contains("has no OMEMO device"),
                "{n}"
            );
        }
        c.send("/e2e off plain@localhost");
        let ok = c.expect("switched", |v| v["type"] == "ok" && v["command"] == "/e2e");
        assert!(ok["detail"].as_str().unwrap().ends_with("e2e off"), "{ok}");
        let (code, t) = c.finish();
        // A message not sent is a failure the exit code tells; one sent in
        // the clear with a warning is not.
        assert_eq!(code, if sent { 0 } else { 1 }, "{t}");
    }
    // A fingerprint none of the contact's devices has verifies nothing.
    let (code, out, _) = tests::run_client(
        &server,
        "on@localhost",
        "pw",
        &["--e2e", "on", "--data", &data],
        "/verify plain@localhost 0123 4567\n",
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("nothing was verified"), "{out}");
    // Without --e2e the commands say how to turn it on.
    let (code, out, _) =
        tests::run_client(&server, "plain@localhost", "pw-p", &[], "/fingerprints\n");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("start the client with --e2e on"), "{out}");
}

/// Two devices of one account (`--e2e on`, each its own keys): what one
/// sends end to end, the other reads in its carbon copy (XEP-0280), since
/// a message is encrypted to the sender's own other devices too; and a
/// reply to the account reaches both, each decrypting its own key.
#[test]
fn the_other_device_of_an_account_reads_its_carbon_copies_end_to_end() {
    let server = tests::Server::start(tests::Twin::Plain, &[]);
    let dir = tempfile::tempdir().unwrap();
    let data = |who: &str| dir.path().join(who).to_string_lossy().into_owned();
    let (d1, d2, db) = (data("al-1"), data("al-2"), data("bo"));
    let mut bo = tests::Client::start(
        &server,
        "bo@localhost",
        "pw-bo",
        &["--register", "--e2e", "on", "--data", &db],
    );
    let mut al1 = tests::Client::start(
        &server,
        "al@localhost/one",
        "pw-al",
        &["--register", "--e2e", "on", "--data", &d1],
    );
    al1.befriend(&mut bo);
    let mut al2 = tests::Client::start(
        &server,
        "al@localhost/two",
        "pw-al",
        &["--e2e", "on", "--data", &d2],
    );
    al2.expect("signed in", |v| v["type"] == "connected");
    // al's first device learns of the second (its own device list, once
    // the second has published itself).
    let mut seen = false;
    for _ in 0..20 {
        al1.send("/fingerprints");
        let second = std::cell::Cell::new(false);
        al1.expect("the devices", |v| {
            if v["type"] == "device" && v["trust"] == "blind" {
                second.set(true);
            }
            v["type"] == "ok" && v["command"] == "/fingerprints"
        });
        let second = second.get();
        if second {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert!(seen, "{}", al1.transcript());
    al1.send("/msg bo@localhost sent from the first device");
    let m = bo.expect("al's message", |v| v["type"] == "message");
    assert_eq!(m["body"], "sent from the first device");
    let copy = al2.expect("the sent carbon", |v| v["type"] == "carbon");
    assert_eq!(copy["body"], "sent from the first device", "{copy}");
    assert_eq!(copy["sent"], true, "{copy}");
}
