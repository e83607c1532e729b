//! XMPP date-times (XEP-0082): delay stamps and the sniffer's times.

/// Formats Unix seconds as an XMPP date-time (XEP-0082), in UTC:
/// `2026-11-20T22:36:00Z`.
pub fn xmpp_datetime(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (H. Hinnant's algorithm), valid for the proleptic
    // Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_known_values() {
        assert_eq!(xmpp_datetime(0), "1970-01-01T00:00:00Z");
        assert_eq!(xmpp_datetime(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(xmpp_datetime(1_795_214_160), "2026-11-20T22:36:00Z");
    }
}
