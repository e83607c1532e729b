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

/// Reads an XMPP date-time (XEP-0082: `2026-11-20T22:36:00Z`, with
/// optional fractions of a second and a `+hh:mm`/`-hh:mm` offset) as Unix
/// seconds; `None` when it is not one.
pub fn parse_xmpp_datetime(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let o = rest.get(1..)?;
            if o.len() != 5 || o.as_bytes()[2] != b':' {
                return None;
            }
            let (oh, om): (i64, i64) = (o[..2].parse().ok()?, o[3..].parse().ok()?);
            sign * (oh * 3600 + om * 60)
        }
    };
    // Days-from-civil (H. Hinnant's algorithm), the inverse of the above.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_read_back() {
        for secs in [0, 951_782_400, 1_795_214_160, 4_102_444_799] {
            assert_eq!(parse_xmpp_datetime(&xmpp_datetime(secs)), Some(secs));
        }
        assert_eq!(
            parse_xmpp_datetime("2026-11-20T22:36:00.123Z"),
            Some(1_795_214_160)
        );
        assert_eq!(
            parse_xmpp_datetime("2026-11-20T23:36:00+01:00"),
            Some(1_795_214_160)
        );
        for bad in [
            "",
            "2026-11-20",
            "2026-13-20T22:36:00Z",
            "2026-11-20T22:36:00",
            "2026-11-20T22:36:00+1",
            "x026-11-20T22:36:00Z",
        ] {
            assert_eq!(parse_xmpp_datetime(bad), None, "{bad}");
        }
    }

    #[test]
    fn datetime_known_values() {
        assert_eq!(xmpp_datetime(0), "1970-01-01T00:00:00Z");
        assert_eq!(xmpp_datetime(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(xmpp_datetime(1_795_214_160), "2026-11-20T22:36:00Z");
    }
}
