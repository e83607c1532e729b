//! The load generator through the real binaries, over each transport: every
//! message sent is delivered and the summary carries its figures.

use serde_json::Value;
use tests::{Server, Twin, bin};

fn the_load_generator_delivers_everything_and_reports(twin: Twin) {
    let server = Server::start(twin, &[]);
    let out = std::process::Command::new(bin(twin.bin()))
        .args([
            "bench",
            "--clients",
            "6",
            "--messages",
            "600",
            "--register",
            "--json",
        ])
        .args(server.client_flags())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let phases: Vec<&Value> = lines.iter().filter(|v| v["type"] == "phase").collect();
    // Both phases ran, in order: a run that printed none would otherwise
    // pass the checks below without checking anything.
    let names: Vec<&str> = phases.iter().filter_map(|p| p["phase"].as_str()).collect();
    assert_eq!(names, ["pairs", "room"], "{stdout}");
    for p in phases {
        let sent = p["sent"].as_u64().unwrap();
        assert!(sent > 0, "the phase sent messages: {p}");
        // A room message reaches all six clients.
        let expect = if p["phase"] == "room" { sent * 6 } else { sent };
        assert_eq!(p["delivered"].as_u64().unwrap(), expect, "{p}");
    }
    let s = lines.iter().find(|v| v["type"] == "summary").unwrap();
    for f in ["messages_per_sec", "p50_ms", "p95_ms", "p99_ms"] {
        assert!(s[f].as_f64().is_some_and(|x| x > 0.0), "{f} in {s}");
    }
}

tests::twin_tests!(the_load_generator_delivers_everything_and_reports);
