//! `labs`: the lab sheets, their runner and checker, and the side-by-side
//! demo that is the toolkit's main job.
//!
//! ```text
//! labs demo                                   # plaintext and TLS, side by side
//! labs list                                   # the labs
//! labs show 1                                 # a lab sheet
//! labs run 1 --student "Ada Lovelace"         # start lab 1 with Ada's secrets
//! labs check 1 --student "Ada Lovelace" --answer password=...
//! labs progress                               # who solved what
//! ```
#![forbid(unsafe_code)]

mod chat;
mod class;
mod demo;
mod lab;
mod secrets;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
// Like print! and println!, but a closed pipe ends the program quietly.
use protocol::{out, outln};

/// Lab sheets, their runner and checker, and the plaintext-versus-TLS demo.
#[derive(Parser)]
#[command(name = "labs", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the same chat over plaintext and TLS under the sniffer, side by side.
    Demo(demo::DemoArgs),
    /// One numbered line per lab.
    List,
    /// Print a lab sheet.
    Show {
        /// The lab's number.
        n: u8,
    },
    /// Start everything a lab needs on loopback and walk through it.
    Run {
        /// The lab's number.
        n: u8,
        /// Your name: your secrets (passwords, messages) are derived from it.
        #[arg(long, value_parser = student_name)]
        student: String,
        /// The course secret (or LABS_COURSE_SECRET), for self-study.
        #[arg(long, conflicts_with = "class")]
        course_secret: Option<String>,
        /// The class server's URL (`labs serve` on the teacher's machine):
        /// your values come from it, and no course secret is needed here.
        #[arg(long)]
        class: Option<String>,
        /// Run the session at once and exit (no Enter, no waiting).
        #[arg(long)]
        once: bool,
        /// The server's port (default: one the system picks).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Check answers: exit 0 when all are right, 1 otherwise (with a hint).
    Check {
        /// The lab's number.
        n: u8,
        /// Your name, as given to `labs run`.
        #[arg(long, value_parser = student_name)]
        student: String,
        /// An answer, KEY=VALUE (repeatable).
        #[arg(long)]
        answer: Vec<String>,
        /// The course secret (or LABS_COURSE_SECRET), for self-study.
        #[arg(long, conflicts_with = "class")]
        course_secret: Option<String>,
        /// The class server's URL: it checks and records your answers.
        #[arg(long)]
        class: Option<String>,
        /// The progress file (or LABS_PROGRESS; default labs-progress.json).
        #[arg(long)]
        progress: Option<PathBuf>,
    },
    /// For instructors: a student's right answers to a lab. Anyone with
    /// the course secret can print them, so keep it from students.
    Answers {
        /// The lab's number.
        n: u8,
        /// The student's name, as given to `labs run`.
        #[arg(long, value_parser = student_name)]
        student: String,
        /// The course secret (or LABS_COURSE_SECRET).
        #[arg(long)]
        course_secret: Option<String>,
    },
    /// The next hint for a question: a nudge, then the tool, then where
    /// to look. None gives an answer away.
    Hint {
        /// The lab's number.
        n: u8,
        /// The question (a key of `labs check`); the lab's first by default.
        question: Option<String>,
        /// Your name (with --class: the server counts your hints).
        #[arg(long, value_parser = student_name)]
        student: Option<String>,
        /// The class server's URL.
        #[arg(long, requires = "student")]
        class: Option<String>,
        /// Which hint (1 to 3) without a class server; the first by default.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
        level: u8,
    },
    /// For the teacher: the class server (scoreboard, checks, hints) until
    /// Ctrl-C.
    Serve {
        /// Where it listens: loopback unless you give the lab network's
        /// address yourself.
        #[arg(long, default_value = "127.0.0.1:8470")]
        listen: std::net::SocketAddr,
        /// The course secret (or LABS_COURSE_SECRET): it stays here.
        #[arg(long)]
        course_secret: Option<String>,
        /// Where the class's progress is kept (SQLite).
        #[arg(long, default_value = "labs-class")]
        data: PathBuf,
        /// Show pseudonyms on the scoreboard instead of names.
        #[arg(long)]
        pseudonyms: bool,
    },
    /// For the teacher: the students of a class server's data.
    Class {
        #[command(subcommand)]
        command: ClassCommand,
        /// The class server's data folder.
        #[arg(long, default_value = "labs-class", global = true)]
        data: PathBuf,
    },
    /// Show who solved what.
    Progress {
        /// The progress file (or LABS_PROGRESS; default labs-progress.json).
        #[arg(long)]
        progress: Option<PathBuf>,
    },
}

/// A student's name: some letters, at most 64 characters, nothing a
/// terminal or a file would treat specially (control characters).
fn student_name(s: &str) -> Result<String, String> {
    valid_student(s)
}

/// [`student_name`], for the class server's requests too.
pub fn valid_student(s: &str) -> Result<String, String> {
    let name = s.trim();
    if name.is_empty() {
        return Err("a name is needed: --student \"Your Name\"".into());
    }
    if name.chars().any(char::is_control) {
        return Err("a name cannot hold control characters (tabs, new lines, escapes)".into());
    }
    if name.chars().count() > 64 {
        return Err("at most 64 characters".into());
    }
    if !name.chars().any(char::is_alphanumeric) {
        return Err("a name needs at least one letter or digit".into());
    }
    Ok(name.to_string())
}

#[derive(Subcommand)]
enum ClassCommand {
    /// Every student who joined: token state, questions solved, hints.
    List,
    /// The gradebook as CSV with real names, on stdout (the server's
    /// /export.csv shows pseudonyms when it runs with --pseudonyms).
    Export,
    /// Revoke a student's token (progress stays): their next run joins again.
    Reset {
        /// The student's name.
        student: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = harness::signals::catch_signals() {
        eprintln!("labs: cannot handle signals: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Demo(a) => demo::run(&a),
        Command::List => {
            for l in &lab::LABS {
                outln!(
                    "{}. {} ({} min; needs {})",
                    l.number,
                    l.title,
                    l.minutes,
                    l.needs
                );
            }
            Ok(0)
        }
        Command::Show { n } => lab::lab(n).map(|l| {
            out!("{}", l.sheet);
            0
        }),
        Command::Run {
            n,
            student,
            course_secret,
            class,
            once,
            port,
        } => {
            let course = match class {
                Some(url) => lab::Course::Class(url),
                None => lab::Course::Secret(lab::course_secret(course_secret)),
            };
            // The class server's values are fetched here: `lab` knows
            // nothing of HTTP.
            match &course {
                lab::Course::Secret(c) => Ok(secrets::Secrets::new(c, &student)),
                lab::Course::Class(url) => class::client::scenario(url, n, &student),
            }
            .and_then(|s| lab::run(n, &student, s, &course, once, port))
        }
        Command::Check {
            n,
            student,
            answer,
            course_secret,
            class: Some(url),
            ..
        } => {
            let _ = course_secret;
            class::client::check(&url, n, &student, &answer)
        }
        Command::Check {
            n,
            student,
            answer,
            course_secret,
            class: None,
            progress,
        } => lab::check(
            n,
            &student,
            &lab::course_secret(course_secret),
            &answer,
            &lab::progress_path(progress),
        ),
        Command::Hint {
            n,
            question,
            student,
            class,
            level,
        } => lab::lab(n).and_then(|l| {
            let q = question.unwrap_or_else(|| l.keys[0].0.to_string());
            match (class, student) {
                (Some(url), Some(student)) => class::client::hint(&url, n, &student, &q),
                _ => {
                    outln!("{}", lab::hint(n, &q, level)?);
                    if level < 3 {
                        outln!("(the next: labs hint {n} {q} --level {})", level + 1);
                    }
                    Ok(0)
                }
            }
        }),
        Command::Serve {
            listen,
            course_secret,
            data,
            pseudonyms,
        } => class::server::serve(listen, lab::course_secret(course_secret), data, pseudonyms),
        Command::Class { command, data } => match command {
            ClassCommand::List => class::server::list(&data),
            ClassCommand::Export => class::server::export_local(&data),
            ClassCommand::Reset { student } => class::server::reset(&data, &student),
        },
        Command::Answers {
            n,
            student,
            course_secret,
        } => lab::answers(n, &student, &lab::course_secret(course_secret)),
        Command::Progress { progress } => lab::show_progress(&lab::progress_path(progress)),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // Only now, with every process of the lab stopped by the drops on
        // the way here: a closed pipe ends quietly (exit 0), any other
        // failure to write is one line and exit 2.
        Err(e) => match e.downcast::<lab::StdoutFailed>() {
            Ok(lab::StdoutFailed(io)) => protocol::display::stdout_failed(io),
            Err(e) if interrupted(&e) => {
                eprintln!("labs: interrupted: every process the lab started was stopped");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("labs: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

/// Whether `e` is Ctrl-C (or SIGTERM) arriving during a wait.
fn interrupted(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<harness::Error>(),
            Some(harness::Error::Interrupted)
        )
    })
}
