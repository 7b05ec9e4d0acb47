//! Float parsing and formatting with Go's rules, because Prometheus parses sample
//! values with `strconv.ParseFloat` and normalises `le`/`quantile` label values with
//! `FormatOpenMetricsFloat` (`strconv.FormatFloat(f, 'g', -1, 64)` plus ".0").

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::model::number::{parse_go_float, write_go_float_g, StackBuf};
#[cfg(test)]
use crate::model::NORMAL_NAN_BITS;

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Parses a sample value as Prometheus does: Go's `strconv.ParseFloat(s, 64)` after
/// rejecting `p`, `P` and `_` (Prometheus keeps to pre-Go-1.13 float syntax, so no
/// hex floats and no digit separators). `NaN`, `Inf`, `+Inf`, `-Inf`, `infinity` are
/// accepted case-insensitively; a signed NaN is not (Go rejects it); a finite literal
/// that overflows to infinity is an error (Go's `ErrRange`). NaN comes back as
/// [`crate::model::NORMAL_NAN_BITS`].
pub fn parse_value(s: &[u8]) -> Option<f64> {
    if let Some(v) = fast_decimal(s) {
        return Some(v);
    }
    if s.iter().any(|&c| matches!(c, b'p' | b'P' | b'_')) {
        return None;
    }
    parse_go_float(s)
}

/// Exact fast path for the common shapes `123` and `123.456` (at most 15 significant
/// digits and 22 decimals): both operands are exact doubles, so one IEEE division
/// gives the correctly rounded result, the same as a full parser.
#[inline]
fn fast_decimal(s: &[u8]) -> Option<f64> {
    let (neg, digits) = match s.first()? {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 24 {
        return None;
    }
    let mut mantissa: u64 = 0;
    let mut n_digits = 0u32;
    let mut frac_digits: Option<u32> = None;
    for &c in digits {
        match c {
            b'0'..=b'9' => {
                // More digits than the fast path takes (and than a u64 holds).
                if n_digits == 15 {
                    return None;
                }
                mantissa = mantissa * 10 + u64::from(c - b'0');
                n_digits += 1;
                if let Some(f) = frac_digits.as_mut() {
                    *f += 1;
                }
            }
            b'.' if frac_digits.is_none() => frac_digits = Some(0),
            _ => return None,
        }
    }
    if n_digits == 0 {
        return None;
    }
    let frac = frac_digits.unwrap_or(0) as usize;
    if frac > 22 {
        return None;
    }
    let v = mantissa as f64 / POW10[frac];
    Some(if neg { -v } else { v })
}

/// Parses a base-10 integer as Go's `strconv.ParseInt(s, 10, 64)` does for the
/// digits-only timestamp token of the text format.
pub fn parse_i64_digits(s: &[u8]) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
    }
    Some(v)
}

/// Writes `f` as Prometheus's `FormatOpenMetricsFloat` does: Go's 'g' form with
/// ".0" added to integers, and `1.0`, `0.0`, `-1.0` spelled out.
fn write_openmetrics_float(f: f64, out: &mut StackBuf) {
    let special = if f == 1.0 {
        Some("1.0")
    } else if f == 0.0 {
        Some("0.0")
    } else if f == -1.0 {
        Some("-1.0")
    } else {
        None
    };
    if let Some(s) = special {
        let _ = out.write_str(s);
        return;
    }
    if write_go_float_g(out, f).is_err() {
        return;
    }
    if f.is_finite() && !out.as_bytes().iter().any(|&c| c == b'.' || c == b'e') {
        let _ = out.write_str(".0");
    }
}

/// `FormatOpenMetricsFloat` as a String (used by tests and callers that need it).
pub fn format_openmetrics_float(f: f64) -> String {
    let mut b = StackBuf::new();
    write_openmetrics_float(f, &mut b);
    String::from_utf8_lossy(b.as_bytes()).into_owned()
}

/// Prometheus 3's `normalizeFloatsInLabelValues` for one value: if it parses as a
/// float (Go's `ParseFloat`), it is rewritten in OpenMetrics form (`1` → `1.0`,
/// `inf` → `+Inf`); otherwise it is kept. Borrows when nothing changes.
pub fn normalize_float_label<'a>(v: Cow<'a, str>) -> Cow<'a, str> {
    if is_canonical_openmetrics_float(v.as_bytes()) {
        return v;
    }
    let Some(f) = parse_go_float(v.as_bytes()) else {
        return v;
    };
    let mut b = StackBuf::new();
    write_openmetrics_float(f, &mut b);
    if b.as_bytes() == v.as_bytes() {
        v
    } else {
        Cow::Owned(String::from_utf8_lossy(b.as_bytes()).into_owned())
    }
}

/// A cheap, conservative check that `s` is already what `FormatOpenMetricsFloat`
/// would print, so the common bucket bounds (`0.005`, `1.0`, `+Inf`) skip the
/// parse-and-format round trip. Fixed notation only: `-?(0|[1-9]\d{0,5})\.\d+`
/// with at most 15 significant digits (so the decimal is its own shortest
/// round-trip form), no trailing zero in the fraction except a lone `.0` after a
/// non-zero integer part, and an exponent in Go's %f range (-4..6).
fn is_canonical_openmetrics_float(s: &[u8]) -> bool {
    match s {
        b"+Inf" | b"-Inf" | b"NaN" | b"0.0" => return true,
        _ => {}
    }
    let (neg, body) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let Some(dot) = body.iter().position(|&c| c == b'.') else {
        return false;
    };
    let (int, frac) = (&body[..dot], &body[dot + 1..]);
    if int.is_empty()
        || frac.is_empty()
        || int.len() > 6
        || !int.iter().all(u8::is_ascii_digit)
        || !frac.iter().all(u8::is_ascii_digit)
        || (int.len() > 1 && int[0] == b'0')
    {
        return false;
    }
    if int == b"0" {
        // 0.x: the first significant digit must be within 4 decimals, and the
        // fraction must end in a non-zero digit (0.0 and -0.0 are handled above/below).
        let lead = frac.iter().take_while(|&&c| c == b'0').count();
        if lead == frac.len() || lead > 3 || frac.last() == Some(&b'0') {
            return false;
        }
        frac.len() - lead <= 15
    } else {
        if frac == b"0" {
            return int.len() <= 15 && !(neg && int == b"0");
        }
        frac.last() != Some(&b'0') && int.len() + frac.len() <= 15
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Up to 24 characters reach the fast path; more than 15 digits leave it before
    /// they overflow its u64 (a panic with overflow checks on).
    #[test]
    fn long_digit_runs_leave_the_fast_path_without_overflow() {
        assert_eq!(parse_value(b"99999999999999999999999"), Some(1e23));
        assert_eq!(
            parse_value(b"-184467440737095516160"),
            Some(-184_467_440_737_095_516_160.0)
        );
        assert_eq!(
            parse_value(b"1234567890.12345678901"),
            Some(1234567890.1234567)
        );
        assert_eq!(parse_value(b"123456789012345"), Some(123456789012345.0));
    }

    #[test]
    fn go_parse_float_grammar() {
        let ok: &[(&str, f64)] = &[
            ("1", 1.0),
            ("-1.5", -1.5),
            ("+2", 2.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("1e3", 1000.0),
            ("1E+3", 1000.0),
            ("2.5e-3", 0.0025),
            ("1e-400", 0.0),
            ("0.1", 0.1),
            ("123456789012345678901234567890", 1.2345678901234568e29),
        ];
        for (s, want) in ok {
            assert_eq!(parse_value(s.as_bytes()), Some(*want), "{s}");
        }
        for s in ["Inf", "+Inf", "inf", "+inf", "INF", "infinity", "+Infinity"] {
            assert_eq!(parse_value(s.as_bytes()), Some(f64::INFINITY), "{s}");
        }
        for s in ["-Inf", "-inf", "-INFINITY"] {
            assert_eq!(parse_value(s.as_bytes()), Some(f64::NEG_INFINITY), "{s}");
        }
        for s in ["NaN", "nan", "NAN"] {
            assert_eq!(
                parse_value(s.as_bytes()).map(f64::to_bits),
                Some(NORMAL_NAN_BITS)
            );
        }
        for s in [
            "", "+", "-", ".", "e3", "1e", "1e+", "+nan", "-NaN", "infin", "1_000", "0x1p3", "1p3",
            "1.2.3", "1 ", " 1", "1e400", "-1e400", "--1", "1,5", "∞",
        ] {
            assert_eq!(parse_value(s.as_bytes()), None, "{s:?}");
        }
    }

    #[test]
    fn fast_path_agrees_with_full_parser() {
        for s in [
            "0",
            "1",
            "123.456",
            "0.1",
            "9007199254740993",
            "999999999999999",
            "0.000001",
            "12345.678901234",
            "-0.3",
            "3.14159",
            "1.7976931348623157",
        ] {
            let full: f64 = s.parse().unwrap();
            assert_eq!(parse_value(s.as_bytes()), Some(full), "{s}");
        }
    }

    #[test]
    fn openmetrics_float_format_matches_go() {
        let cases: &[(f64, &str)] = &[
            (1.0, "1.0"),
            (0.0, "0.0"),
            (-0.0, "0.0"),
            (-1.0, "-1.0"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (0.5, "0.5"),
            (2.5, "2.5"),
            (10.0, "10.0"),
            (100000.0, "100000.0"),
            (1e6, "1e+06"),
            (1.5e6, "1.5e+06"),
            (123456789.0, "1.23456789e+08"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (0.000123, "0.000123"),
            (1.5e-7, "1.5e-07"),
            (1e21, "1e+21"),
            (1e100, "1e+100"),
            (-2.5e-5, "-2.5e-05"),
            (0.005, "0.005"),
            (0.1, "0.1"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (120.0, "120.0"),
            (999999.0, "999999.0"),
        ];
        for (f, want) in cases {
            assert_eq!(format_openmetrics_float(*f), *want, "{f:e}");
        }
        assert_eq!(format_openmetrics_float(f64::NAN), "NaN");
    }

    #[test]
    fn canonical_check_agrees_with_formatting() {
        let mut rng = 0x1234_5678_9abc_def0_u64;
        let check = |t: &str| {
            let canonical = parse_go_float(t.as_bytes())
                .map(format_openmetrics_float)
                .is_some_and(|f| f == t);
            if is_canonical_openmetrics_float(t.as_bytes()) {
                assert!(canonical, "{t} claimed canonical");
            }
        };
        for t in [
            "0.005",
            "1.0",
            "10.0",
            "0.0",
            "-0.0",
            "-1.0",
            "0.10",
            "1.50",
            "0.0001",
            "0.00001",
            "999999.0",
            "1000000.0",
            "123456.789",
            "01.0",
            "0.5",
            "2.5",
            "-2.5",
            "+Inf",
            "NaN",
            "1.",
            ".5",
            "0.1234567890123456",
        ] {
            check(t);
        }
        for _ in 0..20000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let int = rng % 2_000_000;
            let frac_digits = (rng >> 24) % 6;
            let frac = (rng >> 32) % 10u64.pow(frac_digits as u32 + 1);
            let t = format!("{int}.{frac:0width$}", width = frac_digits as usize + 1);
            check(&t);
            check(&format!(
                "0.{frac:0width$}",
                width = frac_digits as usize + 1
            ));
        }
        assert!(is_canonical_openmetrics_float(b"0.005"));
        assert!(is_canonical_openmetrics_float(b"10.0"));
        assert!(!is_canonical_openmetrics_float(b"10"));
        assert!(!is_canonical_openmetrics_float(b"-0.0"));
    }

    #[test]
    fn normalize_keeps_non_floats_and_borrows_canonical() {
        assert!(matches!(
            normalize_float_label(Cow::Borrowed("0.5")),
            Cow::Borrowed("0.5")
        ));
        assert_eq!(normalize_float_label(Cow::Borrowed("1")), "1.0");
        assert_eq!(normalize_float_label(Cow::Borrowed("+inf")), "+Inf");
        assert_eq!(normalize_float_label(Cow::Borrowed("1000000")), "1e+06");
        assert_eq!(normalize_float_label(Cow::Borrowed("0.50")), "0.5");
        assert_eq!(normalize_float_label(Cow::Borrowed("abc")), "abc");
        assert_eq!(normalize_float_label(Cow::Borrowed("")), "");
        assert_eq!(normalize_float_label(Cow::Borrowed("1e400")), "1e400");
    }
}
