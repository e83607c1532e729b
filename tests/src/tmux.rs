//! A program in a real terminal: tmux runs it in a detached session of a
//! fixed size, the test types keys into it and reads the screen back, as
//! a person would see it. Every session has its own tmux server (its own
//! socket in a temporary folder), killed on drop.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a screen may take to show what is expected.
const WAIT: Duration = Duration::from_secs(20);

/// One program in one terminal.
pub struct Tmux {
    dir: tempfile::TempDir,
}

impl Tmux {
    /// Runs `program args` with `env` in a `width`×`height` terminal. The
    /// pane stays after the program exits, so its last screen and its exit
    /// status can be read.
    pub fn start(program: &Path, args: &[String], env: &[(&str, &str)], size: (u16, u16)) -> Tmux {
        let dir = tempfile::tempdir().unwrap();
        // No user or system configuration: the same terminal everywhere.
        let conf = dir.path().join("tmux.conf");
        std::fs::write(&conf, "set -g remain-on-exit on\nset -g status off\n").unwrap();
        let t = Tmux { dir };
        let mut cmd = t.tmux();
        cmd.arg("-f").arg(&conf).args([
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &size.0.to_string(),
            "-y",
            &size.1.to_string(),
        ]);
        for (k, v) in env {
            cmd.arg("-e").arg(format!("{k}={v}"));
        }
        // Through a shell that writes the exit status down: tmux's own
        // record of it comes late, or not at all, on some versions.
        let status = t.dir.path().join("status");
        let script = format!("\"$0\" \"$@\"; echo $? > '{}'", status.display());
        cmd.args(["--", "sh", "-c", &script])
            .arg(program)
            .args(args);
        let out = cmd
            .output()
            .expect("tmux runs (scripts/setup.sh installs it)");
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn tmux(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S")
            .arg(self.dir.path().join("sock"))
            .env("TERM", "xterm-256color");
        cmd
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.tmux().args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` as it is (no key names).
    pub fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "t", "-l", text]);
    }

    /// Presses keys by tmux's names (`Enter`, `C-c`, `M-2`, `PageUp`).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// The screen as text.
    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "t"])
    }

    /// The screen with its colours and attributes (escape sequences).
    pub fn screen_with_styles(&self) -> String {
        self.run(&["capture-pane", "-p", "-e", "-t", "t"])
    }

    /// Changes the terminal's size, as a user resizing the window.
    pub fn resize(&self, width: u16, height: u16) {
        self.run(&[
            "resize-window",
            "-t",
            "t",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
        ]);
    }

    /// Waits until the screen satisfies `pred`; returns it. Fails with the
    /// screen as it was.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_for_within(what, WAIT, pred)
    }

    /// [`Tmux::wait_for`] with a time of its own.
    pub fn wait_for_within(
        &self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if t0.elapsed() > limit {
                panic!("timed out waiting for {what}; the screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the screen shows `text`.
    pub fn wait_text(&self, text: &str) -> String {
        self.wait_for(&format!("'{text}'"), |s| s.contains(text))
    }

    /// Whether the program switched the terminal to its alternate screen
    /// (a full-screen program does; leaving it gives back the screen from
    /// before).
    pub fn alternate_screen(&self) -> bool {
        self.run(&["display-message", "-p", "-t", "t", "#{alternate_on}"])
            .trim()
            == "1"
    }

    /// The program's exit status once it ended (waits for it).
    pub fn exit_status(&self) -> i32 {
        let t0 = Instant::now();
        let status = self.dir.path().join("status");
        loop {
            if let Ok(s) = std::fs::read_to_string(&status)
                && s.ends_with('\n')
            {
                return s.trim().parse().unwrap_or(-1);
            }
            if t0.elapsed() > WAIT {
                panic!("the program did not exit; the screen:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").output();
    }
}
