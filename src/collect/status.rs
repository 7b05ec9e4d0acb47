//! The values of `SHOW GLOBAL STATUS`, `SHOW GLOBAL VARIABLES` and `SHOW SLAVE
//! STATUS` as numbers, read as mysqld_exporter 0.14.0 reads them (its
//! `parseStatus`): switch words, two date forms, then a float in Go's syntax.
//! A value that reads as none of these is not a number, and the exporter leaves
//! its series out.

use crate::model::number::parse_go_float;
use crate::model::time::days_from_civil;

/// The number a status or variable value stands for, if any.
pub fn parse_status(value: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(value).ok();
    if let Some(t) = text {
        match t.to_lowercase().as_str() {
            "yes" | "on" | "primary" => return Some(1.0),
            "no" | "off" | "disabled" | "connecting" | "non-primary" | "disconnected" => {
                return Some(0.0)
            }
            _ => {}
        }
        if let Some(s) = parse_cert_time(t).or_else(|| parse_sql_time(t)) {
            return Some(s as f64);
        }
    }
    // A value ending in `.<digits>` (a binary log file name) is read whole; the
    // exporter matches `.+\.(\d+)$` and parses the match, which for a value
    // without line breaks is the value itself.
    let candidate = match value.iter().rposition(|&b| b == b'\n') {
        Some(nl) if ends_with_dot_digits(&value[nl + 1..]) => &value[nl + 1..],
        _ => value,
    };
    parse_go_float(candidate)
}

fn ends_with_dot_digits(v: &[u8]) -> bool {
    let digits = v.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    digits > 0 && v.len() > digits + 1 && v[v.len() - digits - 1] == b'.'
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// `Jan 02 15:04:05 2006 MST` (OpenSSL's certificate dates in `Ssl_server_not_*`),
/// as Go's `time.Parse` reads that layout: a zone abbreviation of letters stands
/// for UTC.
fn parse_cert_time(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 24 || b[3] != b' ' || b[6] != b' ' || b[15] != b' ' || b[20] != b' ' {
        return None;
    }
    let month = MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(&t[0..3]))? as u32
        + 1;
    let day = two_digits(&b[4..6])?;
    let (h, mi, s) = clock(&b[7..15])?;
    let year = digits(&b[16..20])? as i64;
    let zone = &t[21..];
    // Go's abbreviations: three capitals, or four or five ending in T.
    let capitals = zone.bytes().all(|c| c.is_ascii_uppercase());
    if !capitals || !(zone.len() == 3 || (4..=5).contains(&zone.len()) && zone.ends_with('T')) {
        return None;
    }
    unix_seconds(year, month, day, h, mi, s)
}

/// `2006-01-02 15:04:05`, UTC.
fn parse_sql_time(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() != 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b' ' {
        return None;
    }
    let year = digits(&b[0..4])? as i64;
    let month = two_digits(&b[5..7])?;
    let day = two_digits(&b[8..10])?;
    let (h, mi, s) = clock(&b[11..19])?;
    unix_seconds(year, month, day, h, mi, s)
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    b.iter().try_fold(0u32, |n, d| {
        n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })
}

fn two_digits(b: &[u8]) -> Option<u32> {
    (b.len() == 2).then(|| digits(b)).flatten()
}

/// `15:04:05`.
fn clock(b: &[u8]) -> Option<(u32, u32, u32)> {
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    Some((
        two_digits(&b[0..2])?,
        two_digits(&b[3..5])?,
        two_digits(&b[6..8])?,
    ))
}

/// Seconds since the epoch, with Go's range checks (no February 30th).
fn unix_seconds(year: i64, month: u32, day: u32, h: u32, mi: u32, s: u32) -> Option<i64> {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if day == 0 || day > days_in_month || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + i64::from(h * 3600 + mi * 60 + s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_dates_and_numbers_read_as_the_exporter_reads_them() {
        let cases: [(&str, Option<f64>); 20] = [
            ("ON", Some(1.0)),
            ("Yes", Some(1.0)),
            ("Connecting", Some(0.0)),
            ("Primary", Some(1.0)),
            ("Non-Primary", Some(0.0)),
            ("DISABLED", Some(0.0)),
            ("off", Some(0.0)),
            ("12345", Some(12345.0)),
            ("-1.5", Some(-1.5)),
            ("1e3", Some(1000.0)),
            ("0x10p0", Some(16.0)),
            ("", None),
            ("REPEATABLE-READ", None),
            ("mysql-bin.000123", None),
            ("10.11.14-MariaDB", None),
            ("8.0.32", None),
            ("5.7", Some(5.7)),
            ("2024-02-29 12:00:01", Some(1_709_208_001.0)),
            ("2023-02-29 12:00:01", None),
            ("Jan 02 15:04:05 2006 GMT", Some(1_136_214_245.0)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_status(text.as_bytes()), want, "{text:?}");
        }
        // A one-digit day padded with a space is not Go's `02`.
        assert_eq!(parse_status(b"Jan  2 15:04:05 2006 GMT"), None);
        assert_eq!(parse_status(b"1e400"), None);
        assert_eq!(parse_status(&[0xff, 0xfe]), None);
        // The exporter reads the last line of a value whose last line ends in `.N`.
        assert_eq!(parse_status(b"x\n1.5"), Some(1.5));
        assert_eq!(parse_status(b"1.5\nx"), None);
    }
}
