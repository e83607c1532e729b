//! `labs demo`: the toolkit's main job on one screen. The same scripted
//! conversation runs on `chat-plain` and on `chat-tls` while the sniffer
//! watches loopback; then what it recovered is shown side by side, with a
//! verdict per category. Every line of the verdict comes from what the
//! sniffer actually found in this run.

use std::time::{Duration, Instant};

use harness::signals::check_interrupt;

mod findings;
mod live;
mod report;
mod stage;

pub use report::DemoArgs;
use report::finish;
use stage::{converse, set_up};

fn step(json: bool, pace: f64, n: u8, text: &str) -> anyhow::Result<()> {
    check_interrupt()?;
    if !json {
        eprintln!("[{n}/6] {text}");
    }
    if pace > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(pace.min(60.0)));
    }
    Ok(())
}

/// Runs the demo; returns the exit code.
pub fn run(args: &DemoArgs) -> anyhow::Result<u8> {
    if args.live {
        return live::run(args);
    }
    let pace = args.pace.unwrap_or(0.0);
    let t0 = Instant::now();
    let dir = tempfile::Builder::new().prefix("labs-demo-").tempdir()?;
    step(
        args.json,
        pace,
        1,
        "starting a chat-plain server and a chat-tls server (lab CA made on the fly) on loopback",
    )?;
    if !args.json {
        eprintln!(
            "      (temporary files in {}, removed at the end)",
            dir.path().display()
        );
    }
    let mut stage = set_up(dir.path(), &mut |n, text| step(args.json, pace, n, text))?;
    step(
        args.json,
        pace,
        3,
        "alice and bob chat over chat-plain (sign up, contacts, status, messages, a room, a file)",
    )?;
    converse(&stage.plain, dir.path())?;
    step(
        args.json,
        pace,
        4,
        "the same conversation over chat-tls (STARTTLS required)",
    )?;
    converse(&stage.tls, dir.path())?;
    step(
        args.json,
        pace,
        5,
        "stopping the sniffer and reading what it saw",
    )?;
    stage.stop_sniffer()?;
    let findings = stage.into_findings();
    step(args.json, pace, 6, "what an attacker on the wire got")?;
    finish(args, &findings, t0)
}
