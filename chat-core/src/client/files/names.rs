//! What a received file is called. Nothing the sender chose reaches a path
//! unchecked: the offered name is reduced to one safe file name, the
//! partial file is named locally, and no existing file is overwritten.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::client::event::{ClientEvent, FileDone};
use crate::client::state::Offer;

/// Reduces an offered file name to one safe name inside the downloads
/// folder: the last path component only (no `..`, no `/`, no `\`), no
/// control characters and no bidi controls or line separators (which make
/// `txt.exe` read as `exe.txt`: see [`protocol::display`]), no leading dots
/// (no hidden files, and never the name of a partial file, which starts with
/// a dot), at most 200 bytes.
pub fn safe_file_name(offered: &str) -> String {
    let last = offered
        .rsplit(['/', '\\'])
        .find(|p| !p.trim().is_empty() && *p != "." && *p != "..")
        .unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|&c| !protocol::display::is_unsafe_char(c))
        .collect::<String>()
        .trim()
        .trim_start_matches('.')
        .to_string();
    let mut end = cleaned.len().min(200);
    while !cleaned.is_char_boundary(end) {
        end -= 1;
    }
    let name = cleaned[..end].trim().to_string();
    if name.is_empty() {
        "file".to_string()
    } else {
        name
    }
}

/// The name of a new partial file: a dot (so that no safe file name, which
/// never starts with one, can be the same), this process and a counter.
/// Nothing the sender chose is in it: its `sid` once was, and `../../x`
/// then put the partial file outside the downloads folder.
pub(super) fn part_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        ".incoming-{}-{}.part",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The first `name`, `name (1)`, `name (2)`... that does not exist in `dir`.
pub(super) fn free_path(dir: &Path, name: &str) -> Option<PathBuf> {
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s.to_string(), format!(".{e}")),
        _ => (name.to_string(), String::new()),
    };
    (0..1000)
        .map(|i| {
            if i == 0 {
                dir.join(name)
            } else {
                dir.join(format!("{stem} ({i}){ext}"))
            }
        })
        .find(|p| !p.exists())
}

/// What a saved incoming file is reported as: its name as saved (which may
/// differ from the offered one: `name (1)`).
pub(super) fn saved(
    offer: &Offer,
    dest: PathBuf,
    size: u64,
    sha256: String,
    url: Option<String>,
) -> FileDone {
    FileDone {
        sid: offer.sid.clone(),
        peer: offer.from.clone(),
        name: dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: Some(dest),
        size,
        sha256,
        url,
    }
}

/// The event that ends an incoming file: saved, or why not.
pub(super) fn received(offer: &Offer, outcome: Result<FileDone, String>) -> ClientEvent {
    match outcome {
        Ok(done) => ClientEvent::FileReceived(done),
        Err(reason) => ClientEvent::FileFailed {
            sid: offer.sid.clone(),
            name: offer.name.clone(),
            sending: false,
            reason,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_names_cannot_leave_the_downloads_folder() {
        assert_eq!(safe_file_name("../../etc/x"), "x");
        assert_eq!(safe_file_name("..\\..\\windows\\system.ini"), "system.ini");
        assert_eq!(safe_file_name("/etc/passwd"), "passwd");
        assert_eq!(safe_file_name("notes/"), "notes");
        assert_eq!(safe_file_name(".."), "file");
        assert_eq!(safe_file_name(".bashrc"), "bashrc");
        assert_eq!(safe_file_name("a\u{0}b\nc.txt"), "abc.txt");
        // Bidi overrides and line separators go too: `\u{202e}txt.exe`
        // would read as `exe.txt`.
        assert_eq!(safe_file_name("\u{202e}txt.exe"), "txt.exe");
        assert_eq!(safe_file_name("a\u{2028}b\u{9b}"), "ab");
        assert_eq!(safe_file_name("..."), "file");
        assert_eq!(safe_file_name(""), "file");
        let long = "é".repeat(300);
        let s = safe_file_name(&long);
        assert!(s.len() <= 200 && s.chars().all(|c| c == 'é'));
    }

    #[test]
    fn partial_files_are_named_locally_and_never_clash_with_a_saved_name() {
        let a = part_name();
        let b = part_name();
        assert_ne!(a, b);
        for p in [&a, &b] {
            assert!(p.starts_with('.') && p.ends_with(".part"), "{p}");
            assert!(!p.contains(['/', '\\']), "{p}");
            assert_ne!(safe_file_name(p), *p);
        }
    }

    #[test]
    fn free_path_never_reuses_a_name() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            free_path(d.path(), "x.txt").unwrap(),
            d.path().join("x.txt")
        );
        std::fs::write(d.path().join("x.txt"), "a").unwrap();
        assert_eq!(
            free_path(d.path(), "x.txt").unwrap(),
            d.path().join("x (1).txt")
        );
        std::fs::write(d.path().join("x (1).txt"), "a").unwrap();
        assert_eq!(
            free_path(d.path(), "x.txt").unwrap(),
            d.path().join("x (2).txt")
        );
        assert_eq!(
            free_path(d.path(), "noext").unwrap(),
            d.path().join("noext")
        );
    }
}
