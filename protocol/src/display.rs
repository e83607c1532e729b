//! Peer-supplied text made safe to print on a terminal.
//!
//! Every string a client or sniffer prints came from someone on the network: a
//! message body, a status, a nickname, an error text, even a stream id. A
//! terminal obeys the control characters inside them. An attacker can then:
//! - clear the screen or move the cursor (ESC `[2J`), hiding what came before;
//! - write the victim's clipboard (OSC 52) or set the window title;
//! - forge a whole line of output with an embedded newline, such as
//!   `message from bank@localhost/web: …`, which looks exactly like a real
//!   event line;
//! - reverse the text that follows with a bidi override (U+202E), so that
//!   `exe.txt` reads as `txt.exe` ("Trojan Source", CVE-2021-42574).
//!
//! [`terminal_safe`] turns each such character into a visible escape (`\n`,
//! `\u{1b}`, `\u{202e}`) and doubles a backslash, so that the escaped text is
//! unambiguous: `\n` on screen always means the peer sent a newline, never
//! that it typed a backslash and an `n`. Machine output (`--json`) must not use
//! it: JSON escapes control characters itself and keeps the text exact.

use std::borrow::Cow;
use std::fmt;
use std::io;

/// A file name a peer offered, made safe for a disk and a URL: its last
/// path part only (`../../etc/passwd` is `passwd`: no writing outside the
/// folder it is meant for), only ASCII letters, digits, `.`, `-` and `_`
/// (anything else `_`), no leading dot (no hidden `.bashrc`), at most 100
/// characters, and `file` when nothing is left.
pub fn ascii_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let s: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let s = s.trim_start_matches('.');
    if s.is_empty() {
        "file".into()
    } else {
        s.into()
    }
}

/// Whether `c` must not reach a terminal as it is: every C0 and C1 control
/// (which includes ESC, BEL, backspace, CR, LF and TAB), DEL, the Unicode line
/// and paragraph separators, and the bidirectional formatting characters.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            // Line and paragraph separators: a line break by another name.
            '\u{2028}' | '\u{2029}'
            // Bidi marks, embeddings, overrides and isolates (Unicode UAX #9).
            | '\u{061c}' | '\u{200e}' | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
        )
}

/// `s` with every unsafe character (see [`is_unsafe_char`]) escaped, and each
/// backslash doubled. Borrows `s` when there is nothing to change, which is
/// almost always.
pub fn terminal_safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c == '\\' || is_unsafe_char(c)) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(Safe(s).to_string())
}

/// Displays its string as [`terminal_safe`] would return it, without an
/// allocation: `println!("{}", Safe(body))`.
#[derive(Debug, Clone, Copy)]
pub struct Safe<'a>(pub &'a str);

impl fmt::Display for Safe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(|c: char| c == '\\' || is_unsafe_char(c)) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                other => write!(f, "\\u{{{:x}}}", other as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// What every command of the kit does when writing to stdout fails: a
/// closed pipe (`labs list | head`) is a normal end, exit 0, silently; any
/// other failure (a full disk behind a redirect) is a runtime error, exit 2,
/// with one line. Rust's `print!` panics instead.
pub fn stdout_failed(e: io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("cannot write to standard output: {e}");
    std::process::exit(2);
}

/// `print!` that ends the program as [`stdout_failed`] says when stdout
/// fails, instead of panicking.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout(), $($arg)*) {
            $crate::display::stdout_failed(e);
        }
    }};
}

/// `println!` that ends the program as [`stdout_failed`] says when stdout
/// fails, instead of panicking.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::out!("\n")
    };
    ($($arg:tt)*) => {
        $crate::out!("{}\n", format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        let s = "hello, wörld 😀 <b>&amp;";
        assert!(matches!(terminal_safe(s), Cow::Borrowed(t) if t == s));
    }

    #[test]
    fn attacks_become_visible_escapes() {
        // Clear screen, OSC 52 clipboard write (ended by BEL), window title.
        assert_eq!(terminal_safe("\x1b[2Jhi"), "\\u{1b}[2Jhi");
        assert_eq!(
            terminal_safe("\x1b]52;c;cGF5\x07"),
            "\\u{1b}]52;c;cGF5\\u{7}"
        );
        // A forged event line.
        assert_eq!(
            terminal_safe("ok\nmessage from bank@localhost/web: send money"),
            "ok\\nmessage from bank@localhost/web: send money"
        );
        // Backspace, CR, TAB, DEL, a C1 control (CSI), and the bidi override.
        assert_eq!(
            terminal_safe("a\x08\r\t\x7f\u{9b}\u{202e}txt.exe"),
            "a\\u{8}\\r\\t\\u{7f}\\u{9b}\\u{202e}txt.exe"
        );
        assert_eq!(terminal_safe("x\u{2028}y\u{2069}"), "x\\u{2028}y\\u{2069}");
    }

    #[test]
    fn escaping_is_unambiguous() {
        // A backslash and an `n` typed by the peer are not a newline.
        assert_eq!(terminal_safe("a\\nb"), "a\\\\nb");
        assert_ne!(terminal_safe("a\\nb"), terminal_safe("a\nb"));
        assert_eq!(Safe("a\\nb\n").to_string(), terminal_safe("a\\nb\n"));
    }
}
