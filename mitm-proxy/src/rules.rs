//! `tamper`: rules that change stanzas in flight, read from a small file.
//!
//! One rule per line; `#` starts a comment:
//!
//! ```text
//! WHERE NAME [ATTR=VALUE]... [body~REGEX] => ACTION [ARGUMENTS]
//! ```
//!
//! - `WHERE`: `c2s` (client to server), `s2c` (server to client) or `any`.
//! - `NAME`: the element's name (`message`, `presence`, `iq`, ...) or `*`.
//! - `ATTR=VALUE`: an attribute the element must have, exactly.
//! - `body~REGEX`: the `<body/>` text must match (Rust `regex` syntax).
//! - `ACTION`:
//!   - `replace-body TEXT`: the `<body/>` becomes TEXT;
//!   - `set-attr NAME VALUE`: the attribute is set (or added);
//!   - `drop`: the stanza never arrives;
//!   - `inject XML`: XML is sent right after the stanza;
//!   - `delay MS`: the stanza (and what follows) waits MS milliseconds;
//!   - `swap-file PATH`: a file offered through SI (XEP-0096) is replaced
//!     by PATH's content (same size) in its In-Band Bytestream (XEP-0047)
//!     data, and the SHA-256 in the offer by PATH's. The receiver checks
//!     the hash and finds it right: a checksum sent along with the data,
//!     which anyone in the path can recompute, protects nothing.
//!
//! Rules apply to parsed stanzas, not to reads, so a rule never misses a
//! stanza TCP split in two; and only where the proxy can read (plaintext,
//! or where it ended TLS itself).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use protocol::{Element, Node, ns};
use regex::Regex;
use sha2::{Digest, Sha256};

use crate::event::Dir;

/// Why a rules file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a rule.
    #[error("{path}:{line}: {what}")]
    Line {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        what: String,
    },
}

/// What a rule does to a matching stanza.
#[derive(Debug, Clone)]
pub enum Action {
    /// New `<body/>` text.
    ReplaceBody(String),
    /// An attribute set to a value.
    SetAttr(String, String),
    /// The stanza is dropped.
    Drop,
    /// This XML follows the stanza.
    Inject(String),
    /// The stanza waits this long.
    Delay(Duration),
    /// A file offered through SI/IBB is swapped for this one.
    SwapFile(Arc<Swap>),
}

/// A replacement file: its bytes and SHA-256.
#[derive(Debug)]
pub struct Swap {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its content.
    pub bytes: Vec<u8>,
    /// Its SHA-256, base64, as an offer carries it (XEP-0300).
    pub sha256: String,
}

/// One rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its line in the file, for messages.
    pub line: usize,
    dir: Option<Dir>,
    name: String,
    attrs: Vec<(String, String)>,
    body: Option<Regex>,
    /// What it does.
    pub action: Action,
}

impl Rule {
    /// Whether the rule applies to `el` travelling `dir`.
    pub fn matches(&self, dir: Dir, el: &Element) -> bool {
        if self.dir.is_some_and(|d| d != dir) {
            return false;
        }
        if self.name != "*" && el.name != self.name {
            return false;
        }
        if !self
            .attrs
            .iter()
            .all(|(k, v)| el.get_attr(k) == Some(v.as_str()))
        {
            return false;
        }
        match &self.body {
            Some(re) => el
                .child_text("body", ns::CLIENT)
                .is_some_and(|b| re.is_match(&b)),
            None => true,
        }
    }
}

/// The rules of a file, in order.
#[derive(Debug, Clone, Default)]
pub struct Rules(pub Vec<Rule>);

impl Rules {
    /// Reads and checks a rules file.
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Rules::parse(&text, path)
    }

    /// Parses rules; `path` names the file in errors (and anchors
    /// `swap-file` paths that are relative).
    pub fn parse(text: &str, path: &Path) -> Result<Rules, RulesError> {
        let mut rules = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let err = |what: String| RulesError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                what,
            };
            rules.push(parse_rule(line, i + 1, path).map_err(err)?);
        }
        Ok(Rules(rules))
    }
}

fn parse_rule(line: &str, n: usize, path: &Path) -> Result<Rule, String> {
    let (pattern, action) = line
        .split_once("=>")
        .ok_or("a rule is WHERE NAME [ATTR=VALUE]... [body~REGEX] => ACTION")?;
    let mut words = pattern.split_whitespace();
    let dir = match words.next() {
        Some("c2s") => Some(Dir::ClientToServer),
        Some("s2c") => Some(Dir::ServerToClient),
        Some("any") => None,
        other => return Err(format!("WHERE must be c2s, s2c or any, not {other:?}")),
    };
    let name = words.next().ok_or("no element name")?.to_string();
    let mut attrs = Vec::new();
    let mut body = None;
    for w in words {
        if let Some(re) = w.strip_prefix("body~") {
            body = Some(Regex::new(re).map_err(|e| format!("body~{re}: {e}"))?);
        } else if let Some((k, v)) = w.split_once('=') {
            attrs.push((k.to_string(), v.to_string()));
        } else {
            return Err(format!("'{w}' is neither ATTR=VALUE nor body~REGEX"));
        }
    }
    let action = action.trim();
    let (verb, rest) = action.split_once(' ').unwrap_or((action, ""));
    let rest = rest.trim();
    let action = match verb {
        "replace-body" => Action::ReplaceBody(rest.to_string()),
        "set-attr" => {
            let (k, v) = rest.split_once(' ').ok_or("set-attr NAME VALUE")?;
            Action::SetAttr(k.to_string(), v.trim().to_string())
        }
        "drop" => Action::Drop,
        "inject" if rest.starts_with('<') && rest.ends_with('>') => {
            Action::Inject(rest.to_string())
        }
        "inject" => return Err("inject takes one XML element: inject <message .../>".into()),
        "delay" => Action::Delay(Duration::from_millis(
            rest.parse::<u64>()
                .map_err(|_| format!("delay takes milliseconds, not '{rest}'"))?
                .min(60_000),
        )),
        "swap-file" => {
            let p = Path::new(rest);
            let p = if p.is_relative() {
                path.parent().unwrap_or(Path::new(".")).join(p)
            } else {
                p.to_path_buf()
            };
            let bytes = std::fs::read(&p).map_err(|e| format!("swap-file {}: {e}", p.display()))?;
            let sha256 = B64.encode(Sha256::digest(&bytes));
            Action::SwapFile(Arc::new(Swap {
                path: p,
                bytes,
                sha256,
            }))
        }
        other => {
            return Err(format!(
                "unknown action '{other}' (replace-body, set-attr, drop, inject, delay, swap-file)"
            ));
        }
    };
    Ok(Rule {
        line: n,
        dir,
        name,
        attrs,
        body,
        action,
    })
}

/// Replaces (or adds) an element's `<body/>` text.
pub fn set_body(el: &mut Element, text: &str) {
    el.children
        .retain(|c| !matches!(c, Node::Element(b) if b.is("body", ns::CLIENT)));
    el.children
        .push(Node::Element(Element::new("body", ns::CLIENT).text(text)));
}

/// A file offer in `el` (an `<iq type='set'>` with SI, XEP-0096): its
/// stream id and the declared size.
pub fn file_offer(el: &Element) -> Option<(String, u64)> {
    let si = el.get_child("si", ns::SI)?;
    let file = si.get_child("file", ns::SI_FILE)?;
    let size = file.get_attr("size")?.parse().ok()?;
    Some((si.get_attr("id")?.to_string(), size))
}

/// The SHA-256 (base64, as XEP-0300 carries it) in an offer's
/// `<hash algo='sha-256'/>`.
pub fn offer_hash(el: &Element) -> Option<String> {
    el.get_child("si", ns::SI)?
        .get_child("file", ns::SI_FILE)?
        .elements()
        .find(|h| h.is("hash", ns::HASHES) && h.get_attr("algo") == Some("sha-256"))
        .map(|h| h.text_content().trim().to_string())
}

/// A base64 hash as the offer carries it, and in hex as `sha256sum` and
/// the receiving client print it.
pub fn hash_both_ways(b64: &str) -> String {
    match B64.decode(b64) {
        Ok(bytes) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("{b64}, hex {hex}")
        }
        Err(_) => b64.to_string(),
    }
}

/// Puts `sha256` (base64) in an offer's `<hash algo='sha-256'/>`.
pub fn set_offer_hash(el: &mut Element, sha256: &str) {
    if let Some(file) = el
        .get_child_mut("si", ns::SI)
        .and_then(|si| si.get_child_mut("file", ns::SI_FILE))
    {
        file.children
            .retain(|c| !matches!(c, Node::Element(h) if h.is("hash", ns::HASHES)));
        file.children.push(Node::Element(
            Element::new("hash", ns::HASHES)
                .attr("algo", "sha-256")
                .text(sha256),
        ));
    }
}

/// An In-Band Bytestream block in `el` (`<iq><data sid seq>`): its stream
/// id and bytes.
pub fn ibb_block(el: &Element) -> Option<(String, Vec<u8>)> {
    let data = el.get_child("data", ns::IBB)?;
    let bytes = B64.decode(data.text_content().trim()).ok()?;
    Some((data.get_attr("sid")?.to_string(), bytes))
}

/// Replaces an IBB block's bytes.
pub fn set_ibb_block(el: &mut Element, bytes: &[u8]) {
    if let Some(data) = el.get_child_mut("data", ns::IBB) {
        data.children = vec![Node::Text(B64.encode(bytes))];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Rules, RulesError> {
        Rules::parse(text, Path::new("rules.txt"))
    }

    #[test]
    fn rules_match_by_direction_name_attribute_and_body() {
        let rules = parse(
            "# the lesson\nc2s message type=chat body~(?i)meet => replace-body Meet at noon instead.\n\
             s2c * => delay 5\n",
        )
        .unwrap();
        assert_eq!(rules.0.len(), 2);
        let m = Element::new("message", ns::CLIENT)
            .attr("type", "chat")
            .text_child("body", ns::CLIENT, "MEET at 5");
        assert!(rules.0[0].matches(Dir::ClientToServer, &m));
        assert!(!rules.0[0].matches(Dir::ServerToClient, &m));
        let other = Element::new("message", ns::CLIENT)
            .attr("type", "normal")
            .text_child("body", ns::CLIENT, "meet");
        assert!(!rules.0[0].matches(Dir::ClientToServer, &other));
        assert!(rules.0[1].matches(Dir::ServerToClient, &other));
        let mut changed = m.clone();
        set_body(&mut changed, "Meet at noon instead.");
        assert_eq!(
            changed.child_text("body", ns::CLIENT).as_deref(),
            Some("Meet at noon instead.")
        );
    }

    #[test]
    fn bad_lines_are_refused_with_their_line_number() {
        for (text, says) in [
            ("c2s message", "a rule is"),
            ("up message => drop", "WHERE must be"),
            ("c2s message body~( => drop", "body~("),
            ("c2s message => explode", "unknown action"),
            ("c2s message => delay soon", "milliseconds"),
            ("c2s iq => swap-file /nonexistent/evil.txt", "swap-file"),
            ("c2s message => inject hello", "one XML element"),
        ] {
            let e = parse(&format!("# ok\n{text}\n")).unwrap_err().to_string();
            assert!(e.starts_with("rules.txt:2: "), "{e}");
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
