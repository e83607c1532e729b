//! Per-student secrets: every password, code word and server name a lab
//! uses is derived from the student's name and the course secret, with
//! HMAC-SHA-256. Two students get different answers, nobody can compute
//! another's without the course secret, and `labs check` can verify an
//! answer without any answer being stored.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The course secret used when none is given. Every class that keeps it
/// shares one set of answers, so `labs` warns about it.
pub const DEFAULT_COURSE_SECRET: &str = "twin-chat-demo-course";

/// The environment variable that holds the course secret.
pub const COURSE_SECRET_ENV: &str = "LABS_COURSE_SECRET";

const WORDS: [&str; 64] = [
    "amber", "anchor", "apple", "arrow", "badger", "basil", "beacon", "birch", "bison", "cactus",
    "canyon", "cedar", "cobalt", "comet", "coral", "crane", "delta", "dune", "ember", "falcon",
    "fennel", "fjord", "garnet", "glacier", "harbor", "hazel", "heron", "indigo", "iris", "jade",
    "juniper", "kelp", "kiwi", "lagoon", "lantern", "lemon", "lynx", "maple", "marble", "meadow",
    "nectar", "nimbus", "oasis", "olive", "onyx", "orbit", "otter", "pebble", "pepper", "quartz",
    "quill", "raven", "ripple", "saffron", "sierra", "spruce", "tango", "thistle", "tulip",
    "umber", "velvet", "walnut", "willow", "zephyr",
];

/// A student's secrets for one course.
#[derive(Debug, Clone)]
pub struct Secrets {
    source: Source,
    student: String,
}

/// Where a student's secret values come from.
#[derive(Debug, Clone)]
enum Source {
    /// Derived here from the course secret (self-study: whoever holds the
    /// secret can derive anyone's values).
    Course(Vec<u8>),
    /// Given by the class server for one lab ([`Secrets::scenario_values`]):
    /// this machine never holds the course secret.
    Given(std::collections::BTreeMap<String, [u8; 32]>),
}

/// Every value a lab's scenario and checks use, by name (prefixed
/// `labN/`): what the class server hands the runner for lab N.
fn scenario_names(lab: u8) -> Vec<String> {
    let mut names: Vec<String> = ["teacher", "careful", "classmate"]
        .iter()
        .map(|u| format!("password/{u}"))
        .collect();
    names.extend(
        [
            "codeword",
            "iterations",
            "tls",
            "domain",
            "notes",
            "contact",
            "typing/1",
            "typing/2",
            "canned/1",
            "canned/2",
            "omemo/teacher",
            "omemo/careful",
            "omemo/classmate",
        ]
        .map(String::from),
    );
    names.into_iter().map(|n| format!("lab{lab}/{n}")).collect()
}

/// A student's name as every value is keyed by it: lower case, words
/// joined by `-`.
pub fn normalise_student(student: &str) -> String {
    student
        .trim()
        .to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join("-")
}

impl Secrets {
    /// Secrets of `student` (case and spaces do not matter) under `course`.
    pub fn new(course: &str, student: &str) -> Self {
        Secrets {
            source: Source::Course(course.as_bytes().to_vec()),
            student: normalise_student(student),
        }
    }

    /// The values of one lab for `student`, as [`Secrets::scenario_values`]
    /// gave them (hex); an error if one is missing or malformed.
    pub fn given(
        student: &str,
        values: &std::collections::BTreeMap<String, String>,
        lab: u8,
    ) -> Result<Self, String> {
        let mut map = std::collections::BTreeMap::new();
        for name in scenario_names(lab) {
            let hex = values
                .get(&name)
                .ok_or_else(|| format!("the class server sent no value '{name}'"))?;
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|b| u8::from_str_radix(b, 16).ok())
                })
                .collect::<Option<_>>()
                .ok_or_else(|| format!("the class server sent a malformed '{name}'"))?;
            let bytes: [u8; 32] = bytes
                .try_into()
                .map_err(|_| format!("the class server sent a malformed '{name}'"))?;
            map.insert(name, bytes);
        }
        Ok(Secrets {
            source: Source::Given(map),
            student: normalise_student(student),
        })
    }

    /// Lab `lab`'s values for this student, hex, for the class server to
    /// hand the runner: that lab's only, never the course secret.
    pub fn scenario_values(&self, lab: u8) -> std::collections::BTreeMap<String, String> {
        scenario_names(lab)
            .into_iter()
            .map(|name| {
                let hex = self
                    .bytes(&name)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                (name, hex)
            })
            .collect()
    }

    /// The student's normalised name.
    pub fn student(&self) -> &str {
        &self.student
    }

    fn bytes(&self, what: &str) -> [u8; 32] {
        let key = match &self.source {
            Source::Course(key) => key,
            // `given` checked every name of its lab is there; a test runs
            // every lab's scenario and checks on given values.
            Source::Given(map) => {
                return *map
                    .get(what)
                    .unwrap_or_else(|| panic!("bug: '{what}' is used but not in scenario_names"));
            }
        };
        // The key is any length by HMAC's definition.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(what.as_bytes());
        mac.update(b"\0");
        mac.update(self.student.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// `n` words and a two-digit number, joined by `sep`.
    fn phrase(&self, what: &str, n: usize, sep: &str) -> String {
        let b = self.bytes(what);
        let mut parts: Vec<String> = (0..n)
            .map(|i| WORDS[usize::from(b[i]) % WORDS.len()].to_string())
            .collect();
        parts.push(format!("{:02}", b[n] % 100));
        parts.join(sep)
    }

    /// A password, e.g. `otter-maple-42`.
    pub fn password(&self, lab: u8, user: &str) -> String {
        self.phrase(&format!("lab{lab}/password/{user}"), 2, "-")
    }

    /// A code word for a message, e.g. `QUILL93`.
    pub fn codeword(&self, lab: u8) -> String {
        self.phrase(&format!("lab{lab}/codeword"), 1, "")
            .to_uppercase()
    }

    /// The SCRAM iteration count of a lab's server: 5,000 to 20,000, never
    /// the 4096 every default uses, so it is read from the capture, not
    /// guessed.
    pub fn iterations(&self, lab: u8) -> u32 {
        let b = self.bytes(&format!("lab{lab}/iterations"));
        5000 + u32::from(u16::from_be_bytes([b[0], b[1]])) % 15_001
    }

    /// The TLS version (`1.2` or `1.3`) and cipher suite (IANA name) a
    /// lab's server is limited to. The suites are the AEADs rustls offers
    /// with the lab's ECDSA certificate.
    pub fn tls(&self, lab: u8) -> (&'static str, &'static str) {
        const TLS13: [&str; 3] = [
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_CHACHA20_POLY1305_SHA256",
        ];
        const TLS12: [&str; 3] = [
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        ];
        let b = self.bytes(&format!("lab{lab}/tls"));
        let i = usize::from(b[1]) % 3;
        if b[0].is_multiple_of(2) {
            ("1.3", TLS13[i])
        } else {
            ("1.2", TLS12[i])
        }
    }

    /// A number from 0 to `n - 1`, for `what` (a choice among canned
    /// messages, a moment).
    pub fn pick(&self, what: &str, n: u32) -> u32 {
        let b = self.bytes(what);
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]) % n
    }

    /// The OMEMO device of `who` in a lab: its id (1 to 2³¹ − 2, as
    /// clients pick them) and its identity key's seed. Derived, so that
    /// `labs check` knows the device id and fingerprint a student reads.
    pub fn omemo(&self, lab: u8, who: &str) -> (u32, [u8; 32]) {
        let seed = self.bytes(&format!("lab{lab}/omemo/{who}"));
        let id = 1 + u32::from_be_bytes([seed[28], seed[29], seed[30], seed[31]]) % 0x7fff_fffe;
        (id, seed)
    }

    /// A contact's user name, e.g. `heron-quill-07`.
    pub fn contact(&self, lab: u8) -> String {
        self.phrase(&format!("lab{lab}/contact"), 2, "-")
    }

    /// The text of the file `classmate` sends in a lab: the same layout
    /// for everyone, with a line of the student's own.
    pub fn notes(&self, lab: u8) -> String {
        format!(
            "Exam rooms: do not share.\nThe key to room B is in locker {}.\n",
            self.phrase(&format!("lab{lab}/notes"), 2, "-")
        )
    }

    /// A server name, e.g. `cedar-jade.lab`.
    pub fn domain(&self, lab: u8) -> String {
        let b = self.bytes(&format!("lab{lab}/domain"));
        format!(
            "{}-{}.lab",
            WORDS[usize::from(b[0]) % WORDS.len()],
            WORDS[usize::from(b[1]) % WORDS.len()]
        )
    }
}

/// Writes `bytes` to `path`, readable by the user alone (mode 0600), whole:
/// to a temporary file first, synced, then renamed over `path`, so a crash
/// leaves the old file or the new one, never half of one. For what the
/// labs keep that is a secret: class tokens, a lab account's OMEMO keys.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_depend_on_student_and_course_only() {
        let a = Secrets::new("course-1", "Ada Lovelace");
        let a2 = Secrets::new("course-1", "  ada   lovelace ");
        let b = Secrets::new("course-1", "Alan Turing");
        let c = Secrets::new("course-2", "Ada Lovelace");
        assert_eq!(a.password(1, "classmate"), a2.password(1, "classmate"));
        assert_ne!(a.password(1, "classmate"), b.password(1, "classmate"));
        assert_ne!(a.password(1, "classmate"), c.password(1, "classmate"));
        assert_ne!(a.password(1, "classmate"), a.password(1, "careful"));
        assert!(a.domain(2).ends_with(".lab"));
        assert!(
            a.codeword(1)
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        );
        assert_eq!(a.student(), "ada-lovelace");
    }
}
