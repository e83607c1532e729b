//! The input line: editing (as in a shell: arrows, Home/End, Ctrl-A/E/U/K/W),
//! a history of what was entered (Up/Down), and Tab completion of
//! commands, JIDs and nicknames.

/// Lines the history keeps.
const MAX_HISTORY: usize = 500;

/// Completion in progress: Tab again moves to the next match.
#[derive(Debug, Clone)]
struct Completing {
    /// Where the completed word starts (a char index).
    start: usize,
    matches: Vec<String>,
    next: usize,
}

/// The line being typed.
#[derive(Debug, Default)]
pub(super) struct Input {
    chars: Vec<char>,
    /// The cursor, a char index.
    cursor: usize,
    history: Vec<String>,
    /// The history entry shown (Up), and the line being typed before.
    browsing: Option<usize>,
    draft: Vec<char>,
    completing: Option<Completing>,
}

impl Input {
    /// The text.
    pub(super) fn text(&self) -> String {
        self.chars.iter().collect()
    }

    /// The text before the cursor (to place the terminal's cursor).
    pub(super) fn before_cursor(&self) -> String {
        self.chars[..self.cursor].iter().collect()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// Any key but Tab ends a completion.
    fn edited(&mut self) {
        self.completing = None;
    }

    pub(super) fn insert(&mut self, c: char) {
        self.edited();
        self.chars.insert(self.cursor, c);
        self.cursor += 1;
    }

    /// Text pasted (or typed fast): newlines become spaces, so a paste is
    /// one message, not several.
    pub(super) fn insert_str(&mut self, s: &str) {
        for c in s.chars() {
            self.insert(if c == '\n' || c == '\r' { ' ' } else { c });
        }
    }

    pub(super) fn backspace(&mut self) {
        self.edited();
        if self.cursor > 0 {
            self.cursor -= 1;
            self.chars.remove(self.cursor);
        }
    }

    pub(super) fn delete(&mut self) {
        self.edited();
        if self.cursor < self.chars.len() {
            self.chars.remove(self.cursor);
        }
    }

    pub(super) fn left(&mut self) {
        self.edited();
        self.cursor = self.cursor.saturating_sub(1);
    }

    pub(super) fn right(&mut self) {
        self.edited();
        self.cursor = (self.cursor + 1).min(self.chars.len());
    }

    pub(super) fn home(&mut self) {
        self.edited();
        self.cursor = 0;
    }

    pub(super) fn end(&mut self) {
        self.edited();
        self.cursor = self.chars.len();
    }

    /// Ctrl-U: deletes up to the cursor.
    pub(super) fn kill_before(&mut self) {
        self.edited();
        self.chars.drain(..self.cursor);
        self.cursor = 0;
    }

    /// Ctrl-K: deletes from the cursor on.
    pub(super) fn kill_after(&mut self) {
        self.edited();
        self.chars.truncate(self.cursor);
    }

    /// Ctrl-W: deletes the word before the cursor.
    pub(super) fn kill_word(&mut self) {
        self.edited();
        let mut start = self.cursor;
        while start > 0 && self.chars[start - 1] == ' ' {
            start -= 1;
        }
        while start > 0 && self.chars[start - 1] != ' ' {
            start -= 1;
        }
        self.chars.drain(start..self.cursor);
        self.cursor = start;
    }

    /// Enter: the line, now in the history; the input is empty again.
    pub(super) fn take(&mut self) -> String {
        self.edited();
        let line = self.text();
        if !line.trim().is_empty() && self.history.last() != Some(&line) {
            if self.history.len() == MAX_HISTORY {
                self.history.remove(0);
            }
            self.history.push(line.clone());
        }
        self.chars.clear();
        self.cursor = 0;
        self.browsing = None;
        line
    }

    /// Up: the entry before the one shown.
    pub(super) fn older(&mut self) {
        self.edited();
        let i = match self.browsing {
            None if self.history.is_empty() => return,
            None => {
                self.draft = self.chars.clone();
                self.history.len() - 1
            }
            Some(0) => return,
            Some(i) => i - 1,
        };
        self.browsing = Some(i);
        self.show(self.history[i].chars().collect());
    }

    /// Down: the entry after, and at the end the line being typed.
    pub(super) fn newer(&mut self) {
        self.edited();
        match self.browsing {
            None => {}
            Some(i) if i + 1 < self.history.len() => {
                self.browsing = Some(i + 1);
                self.show(self.history[i + 1].chars().collect());
            }
            Some(_) => {
                self.browsing = None;
                let draft = std::mem::take(&mut self.draft);
                self.show(draft);
            }
        }
    }

    fn show(&mut self, chars: Vec<char>) {
        self.chars = chars;
        self.cursor = self.chars.len();
    }

    /// Tab: completes the word before the cursor from `commands` (when it
    /// is the first word and starts with `/`) or `names`; Tab again shows
    /// the next match. A nickname of `nicks` at the start of the line gets
    /// `: ` after it (addressing them), any other completion a space.
    pub(super) fn complete(&mut self, commands: &[&str], names: &[String], nicks: &[String]) {
        if let Some(c) = self.completing.as_mut() {
            if c.matches.len() > 1 {
                let word = c.matches[c.next].clone();
                c.next = (c.next + 1) % c.matches.len();
                let start = c.start;
                self.replace_word(start, &word);
            }
            return;
        }
        let mut start = self.cursor;
        while start > 0 && self.chars[start - 1] != ' ' {
            start -= 1;
        }
        let word: String = self.chars[start..self.cursor].iter().collect();
        // Nothing typed: nothing to complete (a second Tab after a
        // completion must not add a word).
        if word.is_empty() {
            return;
        }
        let lower = word.to_lowercase();
        let candidates: Vec<String> = if start == 0 && word.starts_with('/') {
            commands.iter().map(|c| c.to_string()).collect()
        } else {
            names.to_vec()
        };
        let matches: Vec<String> = candidates
            .into_iter()
            .filter(|c| c.to_lowercase().starts_with(&lower))
            .collect();
        match matches.len() {
            0 => {}
            1 => {
                let mut w = matches[0].clone();
                if start == 0 && nicks.contains(&w) {
                    w.push(':');
                }
                w.push(' ');
                self.replace_word(start, &w);
            }
            _ => {
                // The longest common prefix first; Tab again cycles.
                let common = common_prefix(&matches);
                if common.chars().count() > word.chars().count() {
                    self.replace_word(start, &common);
                } else {
                    self.replace_word(start, &matches[0]);
                    self.completing = Some(Completing {
                        start,
                        matches,
                        next: 1,
                    });
                }
            }
        }
    }

    /// Replaces the word from `start` to the cursor with `word`.
    fn replace_word(&mut self, start: usize, word: &str) {
        self.chars.splice(start..self.cursor, word.chars());
        self.cursor = start + word.chars().count();
    }
}

fn common_prefix(words: &[String]) -> String {
    let first: Vec<char> = words[0].chars().collect();
    let mut n = first.len();
    for w in &words[1..] {
        n = n.min(
            first
                .iter()
                .zip(w.chars())
                .take_while(|(a, b)| a.eq_ignore_ascii_case(b))
                .count(),
        );
    }
    first[..n].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(s: &str) -> Input {
        let mut i = Input::default();
        i.insert_str(s);
        i
    }

    #[test]
    fn editing_keys_move_and_delete_where_the_cursor_is() {
        let mut i = typed("hello world");
        i.left();
        i.left();
        i.insert('X');
        assert_eq!(i.text(), "hello worXld");
        i.home();
        i.delete();
        i.end();
        i.backspace();
        assert_eq!(i.text(), "ello worXl");
        i.kill_word();
        assert_eq!(i.text(), "ello ");
        i.home();
        i.right();
        i.kill_after();
        assert_eq!(i.text(), "e");
        i.kill_before();
        assert!(i.is_empty());
        // Non-ASCII text is edited by character, not by byte.
        let mut i = typed("héé");
        i.backspace();
        assert_eq!(i.text(), "hé");
        assert_eq!(i.before_cursor(), "hé");
    }

    #[test]
    fn history_goes_back_and_returns_to_the_draft() {
        let mut i = typed("one");
        assert_eq!(i.take(), "one");
        i.insert_str("two");
        i.take();
        i.insert_str("dra");
        i.older();
        assert_eq!(i.text(), "two");
        i.older();
        i.older();
        assert_eq!(i.text(), "one");
        i.newer();
        i.newer();
        assert_eq!(i.text(), "dra");
        i.newer();
        assert_eq!(i.text(), "dra");
    }

    #[test]
    fn tab_completes_commands_then_names_and_cycles() {
        let cmds = ["/join", "/history", "/help"];
        let names = vec![
            "bob@localhost".to_string(),
            "bobby@localhost".to_string(),
            "carol@localhost".to_string(),
        ];
        let none: Vec<String> = Vec::new();
        let mut i = typed("/jo");
        i.complete(&cmds, &names, &none);
        assert_eq!(i.text(), "/join ");
        let mut i = typed("/h");
        i.complete(&cmds, &names, &none);
        assert_eq!(i.text(), "/history");
        i.complete(&cmds, &names, &none);
        assert_eq!(i.text(), "/help");
        let mut i = typed("/msg ca");
        i.complete(&cmds, &names, &none);
        assert_eq!(i.text(), "/msg carol@localhost ");
        // A second Tab after a whole word adds nothing.
        i.complete(&cmds, &names, &none);
        assert_eq!(i.text(), "/msg carol@localhost ");
        // Two matches with a longer common prefix: that first.
        let mut i = typed("/msg b");
        i.complete(&cmds, &names, &none);
        assert_eq!(i.text(), "/msg bob");
        // Nothing matches: nothing changes.
        let mut i = typed("zz");
        i.complete(&cmds, &names, &none);
        assert_eq!(i.text(), "zz");
        // A room nickname first on the line addresses them.
        let nicks = vec!["dave".to_string()];
        let mut i = typed("da");
        i.complete(&cmds, &nicks, &nicks);
        assert_eq!(i.text(), "dave: ");
        let mut i = typed("hi da");
        i.complete(&cmds, &nicks, &nicks);
        assert_eq!(i.text(), "hi dave ");
    }

    #[test]
    fn a_paste_with_newlines_stays_one_line() {
        assert_eq!(typed("a\nb\r\nc").text(), "a b  c");
    }
}
