//! Jabber IDs: `localpart@domainpart/resourcepart` (RFC 7622).
//!
//! We apply the rules that matter for security and interoperability: each part
//! is 1 to 1023 bytes, the localpart excludes the characters RFC 7622 3.3.1
//! forbids, no part carries control characters or (except the resource)
//! whitespace, and the localpart and domain are case-folded. Case folding is
//! what stops `Alice@localhost` from registering beside `alice@localhost` and
//! impersonating her to people who read names, not bytes. Full PRECIS
//! (Unicode width mapping, confusables) is left out; a production server
//! applies it with a PRECIS library.

use std::fmt;

/// Longest part of a JID, in bytes (RFC 7622 3.2, 3.3, 3.4).
pub const MAX_PART_BYTES: usize = 1023;

/// The longest a full JID can be once escaped into XML: a localpart and a
/// domain of [`MAX_PART_BYTES`] (neither may hold a character that needs
/// escaping) and a resource of as many `'` or `"` (6 bytes each escaped),
/// plus `@` and `/`. A server sizing a stanza it will send to *some* JID it
/// does not know yet (a room's future joiners) must assume this one.
pub const MAX_ESCAPED_JID_BYTES: usize = 2 * MAX_PART_BYTES + 2 + 6 * MAX_PART_BYTES;

/// Characters RFC 7622 3.3.1 forbids in a localpart.
const LOCAL_FORBIDDEN: &[char] = &['"', '&', '\'', '/', ':', '<', '>', '@'];

/// Why a string is not a valid JID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JidError {
    /// A part is empty (`@domain`, `local@`, `domain/`).
    #[error("the {part} of '{jid}' is empty")]
    EmptyPart {
        /// Which part.
        part: &'static str,
        /// The input.
        jid: String,
    },
    /// A part is longer than [`MAX_PART_BYTES`].
    #[error("the {part} of the JID is longer than {MAX_PART_BYTES} bytes")]
    TooLong {
        /// Which part.
        part: &'static str,
    },
    /// A part contains a character it may not.
    #[error("the {part} of '{jid}' contains the forbidden character {ch:?}")]
    ForbiddenChar {
        /// Which part.
        part: &'static str,
        /// The character.
        ch: char,
        /// The input.
        jid: String,
    },
}

/// A parsed, normalised JID. `Ord` and `Eq` compare the normalised form, so
/// two spellings of one account compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jid {
    local: Option<String>,
    domain: String,
    resource: Option<String>,
}

impl Jid {
    /// Parses and normalises a JID.
    pub fn parse(s: &str) -> Result<Jid, JidError> {
        let (bare, resource) = match s.split_once('/') {
            Some((b, r)) => (b, Some(r)),
            None => (s, None),
        };
        let (local, domain) = match bare.split_once('@') {
            Some((l, d)) => (Some(l), d),
            None => (None, bare),
        };
        let empty = |part| JidError::EmptyPart {
            part,
            jid: s.to_string(),
        };
        let local = match local {
            Some("") => return Err(empty("localpart")),
            Some(l) => Some(check_local(l, s)?),
            None => None,
        };
        // A trailing dot on the domain is the same domain (RFC 7622 3.2).
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        if domain.is_empty() {
            return Err(empty("domainpart"));
        }
        let domain = check_domain(domain, s)?;
        let resource = match resource {
            Some("") => return Err(empty("resourcepart")),
            Some(r) => Some(check_resource(r, s)?),
            None => None,
        };
        Ok(Jid {
            local,
            domain,
            resource,
        })
    }

    /// A bare JID `local@domain`.
    pub fn bare_from_parts(local: &str, domain: &str) -> Result<Jid, JidError> {
        Jid::parse(&format!("{local}@{domain}"))
    }

    /// The localpart (the user name), if any.
    pub fn local(&self) -> Option<&str> {
        self.local.as_deref()
    }

    /// The domainpart.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The resourcepart, if any.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// True when the JID has no resource.
    pub fn is_bare(&self) -> bool {
        self.resource.is_none()
    }

    /// The same JID without its resource.
    pub fn to_bare(&self) -> Jid {
        Jid {
            local: self.local.clone(),
            domain: self.domain.clone(),
            resource: None,
        }
    }

    /// The same bare JID with `resource` attached.
    pub fn with_resource(&self, resource: &str) -> Result<Jid, JidError> {
        Ok(Jid {
            local: self.local.clone(),
            domain: self.domain.clone(),
            resource: Some(check_resource(resource, resource)?),
        })
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.local {
            write!(f, "{l}@")?;
        }
        f.write_str(&self.domain)?;
        if let Some(r) = &self.resource {
            write!(f, "/{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Jid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Jid, JidError> {
        Jid::parse(s)
    }
}

fn check_len(part: &'static str, s: &str) -> Result<(), JidError> {
    if s.len() > MAX_PART_BYTES {
        return Err(JidError::TooLong { part });
    }
    Ok(())
}

fn check_local(l: &str, jid: &str) -> Result<String, JidError> {
    check_len("localpart", l)?;
    if let Some(ch) = l
        .chars()
        .find(|c| LOCAL_FORBIDDEN.contains(c) || c.is_whitespace() || c.is_control())
    {
        return Err(JidError::ForbiddenChar {
            part: "localpart",
            ch,
            jid: jid.to_string(),
        });
    }
    let folded = l.to_lowercase();
    check_len("localpart", &folded)?;
    Ok(folded)
}

fn check_domain(d: &str, jid: &str) -> Result<String, JidError> {
    check_len("domainpart", d)?;
    if let Some(ch) = d.chars().find(|c| {
        c.is_whitespace() || c.is_control() || matches!(c, '@' | '/' | '<' | '>' | '\'' | '"' | '&')
    }) {
        return Err(JidError::ForbiddenChar {
            part: "domainpart",
            ch,
            jid: jid.to_string(),
        });
    }
    let folded = d.to_lowercase();
    check_len("domainpart", &folded)?;
    Ok(folded)
}

fn check_resource(r: &str, jid: &str) -> Result<String, JidError> {
    check_len("resourcepart", r)?;
    if let Some(ch) = r.chars().find(|c| c.is_control()) {
        return Err(JidError::ForbiddenChar {
            part: "resourcepart",
            ch,
            jid: jid.to_string(),
        });
    }
    Ok(r.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_shapes() {
        let j = Jid::parse("alice@localhost/phone").unwrap();
        assert_eq!(j.local(), Some("alice"));
        assert_eq!(j.domain(), "localhost");
        assert_eq!(j.resource(), Some("phone"));
        assert_eq!(j.to_string(), "alice@localhost/phone");
        assert_eq!(j.to_bare().to_string(), "alice@localhost");
        let d = Jid::parse("conference.localhost").unwrap();
        assert_eq!((d.local(), d.resource()), (None, None));
        let dr = Jid::parse("localhost/announce/online").unwrap();
        assert_eq!(dr.resource(), Some("announce/online"));
    }

    #[test]
    fn case_folds_local_and_domain_but_not_resource() {
        let j = Jid::parse("Alice@LocalHost/Phone").unwrap();
        assert_eq!(j.to_string(), "alice@localhost/Phone");
        assert_eq!(j.to_bare(), Jid::parse("ALICE@localhost").unwrap());
        assert_eq!(
            Jid::parse("ÉLODIE@localhost").unwrap().local(),
            Some("élodie")
        );
    }

    #[test]
    fn resource_may_contain_at_and_slash() {
        let j = Jid::parse("a@b/c@d/e").unwrap();
        assert_eq!(j.local(), Some("a"));
        assert_eq!(j.resource(), Some("c@d/e"));
    }

    #[test]
    fn trailing_dot_on_domain_is_dropped() {
        assert_eq!(
            Jid::parse("a@example.com.").unwrap().domain(),
            "example.com"
        );
    }

    #[test]
    fn rejects_empty_parts() {
        for bad in ["", "@localhost", "alice@", "alice@localhost/", "/res", "."] {
            assert!(
                matches!(Jid::parse(bad), Err(JidError::EmptyPart { .. })),
                "{bad:?}: {:?}",
                Jid::parse(bad)
            );
        }
    }

    #[test]
    fn rejects_forbidden_characters() {
        for bad in [
            "al ice@localhost",
            "a\"b@localhost",
            "a&b@localhost",
            "a'b@localhost",
            "a:b@localhost",
            "a<b@localhost",
            "a>b@localhost",
            "a@b@localhost",
            "alice@local host",
            "alice@localhost/\u{7}",
        ] {
            assert!(
                matches!(Jid::parse(bad), Err(JidError::ForbiddenChar { .. })),
                "{bad:?}: {:?}",
                Jid::parse(bad)
            );
        }
    }

    #[test]
    fn enforces_part_lengths() {
        let max = "a".repeat(MAX_PART_BYTES);
        assert!(Jid::parse(&format!("{max}@localhost")).is_ok());
        let long = "a".repeat(MAX_PART_BYTES + 1);
        for bad in [
            format!("{long}@localhost"),
            format!("alice@{long}"),
            format!("alice@localhost/{long}"),
        ] {
            assert!(matches!(Jid::parse(&bad), Err(JidError::TooLong { .. })));
        }
        // Multi-byte characters count in bytes, not characters.
        let wide = "é".repeat(600);
        assert!(matches!(
            Jid::parse(&format!("{wide}@localhost")),
            Err(JidError::TooLong { .. })
        ));
    }
}
