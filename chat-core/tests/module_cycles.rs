//! The crates read top to bottom: no module uses another that uses it
//! back, directly or through others (issue 13).
//!
//! A cycle is where a reader loses the thread: at `self.muc(..)` in a
//! session file that the rooms file also imports, nothing says which file
//! to open first. This test reads the sources of `protocol`, `chat-core`,
//! the sniffer's library, the twins, `harness`, `labs` and `mitm-proxy`,
//! builds the graph of which module names which
//! (through `use`, `crate::`, `super::` and `self::` paths), and fails on
//! any strongly connected group of two or more modules, printing it.
//!
//! Conventions it relies on, which the code follows:
//! - a module is a file (`a.rs` or `a/mod.rs`); inline `mod tests` blocks
//!   after `#[cfg(test)]` are the module's own tests and are skipped;
//! - a path through a `pub use` re-export counts as a use of the module
//!   that defines the item, so `protocol::Element` at the crate root does
//!   not make every module depend on the root.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type ModPath = Vec<String>;

/// Module path -> source text (comments and test modules removed).
fn modules(src: &Path) -> BTreeMap<ModPath, String> {
    let mut out = BTreeMap::new();
    walk(src, src, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<ModPath, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let rel = path.strip_prefix(root).expect("under root");
        if path.is_dir() {
            // Binaries are separate crates.
            if rel != Path::new("bin") {
                walk(root, &path, out);
            }
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let mut parts: ModPath = rel
            .with_extension("")
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        match parts.last().map(String::as_str) {
            Some("lib") if parts.len() == 1 => parts.clear(),
            // A binary crate's root; in a crate with a library, the library
            // is the root and `main.rs` a separate crate that uses it.
            Some("main") if parts.len() == 1 => {
                if root.join("lib.rs").exists() {
                    continue;
                }
                parts.clear();
            }
            Some("mod") => {
                parts.pop();
            }
            _ => {}
        }
        let text = std::fs::read_to_string(&path).expect("read source");
        out.insert(parts, code_only(&text));
    }
}

/// The source without line comments and without its test module.
fn code_only(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|n| n.trim_start().starts_with("mod tests"))
        {
            break;
        }
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Every `use` statement, expanded into its paths (`use a::{b, c::d}` is
/// `a::b` and `a::c::d`), with whether it is a re-export.
fn use_paths(code: &str) -> Vec<(bool, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = find_word(rest, "use") {
        let line = rest[..i].rfind('\n').map_or(0, |n| n + 1);
        let public = rest[line..i].trim().starts_with("pub");
        let after = &rest[i + 3..];
        let Some(end) = after.find(';') else { break };
        let stmt: String = after[..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        for p in expand(&stmt) {
            let segs: Vec<String> = p
                .split("::")
                .map(|s| s.split(" as ").next().unwrap_or(s).to_string())
                .filter(|s| !s.is_empty())
                .collect();
            out.push((public, segs));
        }
        rest = &after[end..];
    }
    out
}

/// Position of `word` where it starts a statement: first on its line, or
/// after a visibility (`pub use`, `pub(crate) use`).
fn find_word(s: &str, word: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(i) = s[from..].find(word).map(|i| i + from) {
        let line = s[..i].rfind('\n').map_or(0, |n| n + 1);
        let before = s[line..i].trim();
        let before_ok = before.is_empty() || before == "pub" || before.starts_with("pub(");
        let after_ok = b.get(i + word.len()).is_some_and(|c| *c == b' ');
        if before_ok && after_ok {
            return Some(i);
        }
        from = i + word.len();
    }
    None
}

/// `a::{b,c::{d,e}}` -> `a::b`, `a::c::d`, `a::c::e`.
fn expand(stmt: &str) -> Vec<String> {
    let Some(open) = stmt.find('{') else {
        return vec![stmt.to_string()];
    };
    let prefix = &stmt[..open];
    let close = stmt.rfind('}').filter(|c| *c > open).unwrap_or(stmt.len());
    let inner = &stmt[open + 1..close];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(expand)
        .map(|p| {
            if p == "self" {
                prefix.trim_end_matches("::").to_string()
            } else {
                format!("{prefix}{p}")
            }
        })
        .collect()
}

/// Paths written in code outside `use` (`crate::a::b(..)`, `super::x`, and
/// `child::f(..)` through a child module's name).
fn inline_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // `name::` at the start of a path: a child module (or another crate,
    // or a type: `resolve` keeps only the first).
    let b = code.as_bytes();
    let mut i = 0;
    while let Some(at) = code[i..].find("::").map(|p| p + i) {
        let start = code[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(0, |p| p + 1);
        let before = code[..start].chars().last();
        if start < at
            && !matches!(before, Some(':'))
            && b[start].is_ascii_lowercase()
            && !matches!(&code[start..at], "crate" | "super" | "self")
        {
            out.push(vec![code[start..at].to_string()]);
        }
        i = at + 2;
    }
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start).map(|i| i + from) {
            let b = code.as_bytes();
            let whole = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
            let end = code[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| i + e);
            if whole {
                out.push(
                    code[i..end]
                        .split("::")
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                );
            }
            from = end.max(i + 1);
        }
    }
    out
}

/// The module a path names, from module `here`; `None` for other crates.
fn resolve(
    here: &ModPath,
    path: &[String],
    mods: &BTreeMap<ModPath, String>,
    reexports: &BTreeMap<(ModPath, String), Option<ModPath>>,
) -> Option<ModPath> {
    let mut base: ModPath;
    let mut segs = path;
    match segs.first().map(String::as_str) {
        Some("crate") => {
            base = Vec::new();
            segs = &segs[1..];
        }
        Some("self") => {
            base = here.clone();
            segs = &segs[1..];
        }
        Some("super") => {
            base = here.clone();
            while segs.first().map(String::as_str) == Some("super") {
                base.pop();
                segs = &segs[1..];
            }
        }
        Some(first) => {
            // A child module named without `self::` (2018 paths).
            let mut child = here.clone();
            child.push(first.to_string());
            if !mods.contains_key(&child) {
                return None;
            }
            base = here.clone();
        }
        None => return None,
    }
    for s in segs {
        let mut next = base.clone();
        next.push(s.clone());
        if mods.contains_key(&next) {
            base = next;
        } else if let Some(target) = reexports.get(&(base.clone(), s.clone())) {
            // Defined elsewhere in the crate, or in another crate.
            return target.clone();
        } else {
            break;
        }
    }
    Some(base)
}

/// Strongly connected groups of two or more modules (Tarjan).
fn cycles(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    struct T<'a> {
        edges: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<ModPath, usize>,
        low: BTreeMap<ModPath, usize>,
        stack: Vec<ModPath>,
        on: BTreeSet<ModPath>,
        out: Vec<Vec<ModPath>>,
    }
    fn visit(t: &mut T, v: &ModPath) {
        let i = t.index.len();
        t.index.insert(v.clone(), i);
        t.low.insert(v.clone(), i);
        t.stack.push(v.clone());
        t.on.insert(v.clone());
        for w in t.edges.get(v).into_iter().flatten() {
            if !t.index.contains_key(w) {
                visit(t, w);
                let l = t.low[v].min(t.low[w]);
                t.low.insert(v.clone(), l);
            } else if t.on.contains(w) {
                let l = t.low[v].min(t.index[w]);
                t.low.insert(v.clone(), l);
            }
        }
        if t.low[v] == t.index[v] {
            let mut group = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(&w);
                let done = &w == v;
                group.push(w);
                if done {
                    break;
                }
            }
            if group.len() > 1 {
                t.out.push(group);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// The module graph of one crate's `src` folder.
fn graph(src: &Path) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let mods = modules(src);
    // Where each re-exported name really lives.
    let mut reexports = BTreeMap::new();
    for (here, code) in &mods {
        for (public, path) in use_paths(code) {
            if !public {
                continue;
            }
            let Some(name) = path.last() else { continue };
            let empty = BTreeMap::new();
            match resolve(here, &path, &mods, &empty) {
                // `pub use compact_str::CompactString`: another crate's.
                None => {
                    reexports.insert((here.clone(), name.clone()), None);
                }
                Some(target) if &target != here => {
                    reexports.insert((here.clone(), name.clone()), Some(target));
                }
                Some(_) => {}
            }
        }
    }
    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (here, code) in &mods {
        let set = edges.entry(here.clone()).or_default();
        let paths = use_paths(code)
            .into_iter()
            .map(|(_, p)| p)
            .chain(inline_paths(code));
        for path in paths {
            if let Some(target) = resolve(here, &path, &mods, &reexports)
                && &target != here
            {
                set.insert(target);
            }
        }
    }
    edges
}

fn show(group: &[ModPath]) -> String {
    group
        .iter()
        .map(|m| {
            if m.is_empty() {
                "crate".to_string()
            } else {
                m.join("::")
            }
        })
        .collect::<Vec<_>>()
        .join(" <-> ")
}

fn assert_acyclic(krate: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("src");
    let edges = graph(&src);
    // Every crate here has a root and at least one module: fewer means
    // the walk found no sources and the check would pass vacuously.
    assert!(
        edges.len() >= 2,
        "{krate}: found only {} modules",
        edges.len()
    );
    let found = cycles(&edges);
    assert!(
        found.is_empty(),
        "module cycles in {krate}:\n{}",
        found.iter().map(|g| show(g)).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn protocol_has_no_module_cycles() {
    assert_acyclic("protocol");
}

#[test]
fn chat_core_has_no_module_cycles() {
    assert_acyclic("chat-core");
}

#[test]
fn the_sniffer_library_has_no_module_cycles() {
    assert_acyclic("sniffer");
}

#[test]
fn the_twins_the_harness_labs_and_the_proxy_have_no_module_cycles() {
    for krate in ["chat-plain", "chat-tls", "harness", "labs", "mitm-proxy"] {
        assert_acyclic(krate);
    }
}

/// The checker itself finds a cycle when there is one, and follows
/// re-exports to the module that defines the item.
#[test]
fn the_checker_sees_a_cycle_and_sees_through_re_exports() {
    let dir = std::env::temp_dir().join(format!("module-cycles-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("b")).unwrap();
    std::fs::write(
        src.join("lib.rs"),
        "pub mod a;\npub mod b;\npub mod c;\npub mod d;\npub use c::Thing;\npub fn top() {}\nfn call() { d::h(); }\n",
    )
    .unwrap();
    // d is called through its name alone, and calls back into the root.
    std::fs::write(src.join("d.rs"), "pub fn h() { crate::top(); }\n").unwrap();
    std::fs::write(
        src.join("a.rs"),
        "use crate::b::helper;\nuse crate::Thing;\n",
    )
    .unwrap();
    std::fs::write(src.join("b/mod.rs"), "pub fn helper() { super::a::f(); }\n").unwrap();
    std::fs::write(src.join("c.rs"), "pub struct Thing;\n").unwrap();
    let edges = graph(&src);
    let found = cycles(&edges);
    std::fs::remove_dir_all(&dir).ok();
    let mut groups: Vec<Vec<String>> = found
        .iter()
        .map(|g| {
            let mut names: Vec<String> = g.iter().map(|m| show(std::slice::from_ref(m))).collect();
            names.sort();
            names
        })
        .collect();
    groups.sort();
    assert_eq!(groups, [vec!["a", "b"], vec!["crate", "d"]], "{found:?}");
    // `crate::Thing` is `c::Thing`: a uses c, not the crate root.
    assert!(edges[&vec!["a".to_string()]].contains(&vec!["c".to_string()]));
    assert!(!edges[&vec!["a".to_string()]].contains(&Vec::new()));
}
