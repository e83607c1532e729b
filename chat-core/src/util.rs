//! Small helpers shared by server and client.

/// A random identifier of `bytes` random bytes, hex-encoded. Used for stream
/// ids, stanza ids and generated resources: unpredictable, so a peer cannot
/// guess another session's ids.
pub fn random_id(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    // The OS random source failing is not recoverable; a predictable id is
    // worse than stopping.
    getrandom::fill(&mut b)
        .unwrap_or_else(|e| panic!("the OS random number generator failed: {e}"));
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A file name for `name` (a JID): itself when it is short and plain
/// (so people find their folder), else its SHA-256 in hex (a JID may hold
/// characters or a length a file name may not).
pub fn file_safe(name: &str) -> String {
    let plain = name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if plain {
        return name.to_string();
    }
    use sha2::Digest;
    sha2::Sha256::digest(name.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// XMPP date-times (XEP-0082) live in the protocol crate, which the sniffer
/// shares.
pub use protocol::datetime::{parse_xmpp_datetime, xmpp_datetime};

/// Waits for a timer that may not be armed: for ever when it is not (a
/// `select!` branch that never fires until the timer is set).
pub(crate) async fn armed(t: &mut Option<std::pin::Pin<Box<tokio::time::Sleep>>>) {
    match t {
        Some(s) => s.as_mut().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_and_differ() {
        let a = random_id(8);
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, random_id(8));
    }
}
