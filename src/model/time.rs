//! Calendar arithmetic and RFC 3339 text, for the API's times, the log's timestamps
//! and PromQL's date functions (all UTC, proleptic Gregorian calendar).

/// Days since 1970-01-01 to (year, month, day).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `2006-01-02T15:04:05[.frac](Z|±hh:mm)` to milliseconds since the epoch.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    // Digits only: `parse` alone would take a sign (`+1`) as well.
    let num = |r: std::ops::Range<usize>| {
        let t = s.get(r)?;
        t.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| t.parse::<i64>().ok())?
    };
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = s.get(start..i)?;
        if digits.is_empty() {
            return None;
        }
        let ms: String = digits.chars().chain("000".chars()).take(3).collect();
        frac_ms = ms.parse().ok()?;
    }
    // Byte offsets into the rest are checked: it is user text, maybe not ASCII.
    let offset_s = match s.get(i..)? {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && tz.get(3..4) == Some(":") => {
            let sign = match tz.get(0..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let two_digits = |r: std::ops::Range<usize>| {
                let t = tz.get(r)?;
                t.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| t.parse::<i64>().ok())?
            };
            let (oh, om) = (two_digits(1..3)?, two_digits(4..6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_s;
    Some(secs * 1000 + frac_ms)
}

/// `2006-01-02T15:04:05.000Z`: milliseconds since the epoch, as the API writes times.
pub fn format_rfc3339_ms(ms: i64) -> String {
    format_rfc3339(ms.div_euclid(1000), ms.rem_euclid(1000) as u32, 3)
}

/// A time as Go's `time.Time` marshals to JSON: RFC 3339 with the fraction's
/// trailing zeros dropped (`2006-01-02T15:04:05.12Z`, `2006-01-02T15:04:05Z`).
pub fn format_go_time_ms(ms: i64) -> String {
    let s = format_rfc3339_ms(ms);
    match s.strip_suffix('Z').and_then(|x| x.rsplit_once('.')) {
        Some((whole, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                format!("{whole}Z")
            } else {
                format!("{whole}.{frac}Z")
            }
        }
        None => s,
    }
}

/// Go's zero `time.Time` in JSON: a time that was never set.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `2006-01-02T15:04:05.000000Z`: microseconds since the epoch, as hclog writes times.
pub fn format_rfc3339_micros(us: i64) -> String {
    format_rfc3339(us.div_euclid(1_000_000), us.rem_euclid(1_000_000) as u32, 6)
}

/// Seconds since the epoch plus a fraction of `frac_digits` decimal digits.
fn format_rfc3339(secs: i64, frac: u32, frac_digits: usize) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:0frac_digits$}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_fractions() {
        assert_eq!(
            parse_rfc3339_ms("2015-07-01T20:10:51.781Z"),
            Some(1_435_781_451_781)
        );
        assert_eq!(
            parse_rfc3339_ms("2015-07-01T22:10:51+02:00"),
            Some(1_435_781_451_000)
        );
        assert_eq!(parse_rfc3339_ms("2015-07-01"), None);
        assert_eq!(parse_rfc3339_ms("+015-07-01T20:10:51Z"), None);
        assert_eq!(parse_rfc3339_ms("2015-07-01T22:10:51+2:000"), None);
    }

    #[test]
    fn non_ascii_text_is_refused_not_sliced_mid_character() {
        for s in [
            "2024-01-01T00:00:00+aé00",
            "2024-01-01T00:00:00+éé:0",
            "2024-01-01T00:00:00.1é",
            "2024-01-01T00:00:00ééé",
            "2024-01-01T00:00:0é",
        ] {
            assert_eq!(parse_rfc3339_ms(s), None, "{s}");
        }
    }

    #[test]
    fn formats_milliseconds_and_microseconds() {
        let t = 1_435_781_451_781;
        assert_eq!(format_rfc3339_ms(t), "2015-07-01T20:10:51.781Z");
        assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(t)), Some(t));
        assert_eq!(
            format_rfc3339_micros(1_764_160_999_123_456),
            "2025-11-26T12:43:19.123456Z"
        );
        assert_eq!(format_rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn calendar_round_trips() {
        for days in [-800_000, -1, 0, 59, 365, 11_016, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
