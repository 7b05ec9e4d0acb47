//! Numbers in Go's text forms. Prometheus parses values with Go's
//! `strconv.ParseFloat` and writes them with `strconv.FormatFloat` ('g' for label
//! values and messages, 'f' for API sample values); matching them to the byte keeps
//! series identity and answers identical to Prometheus's.

use std::fmt::Write as _;

use super::value::normal_nan;

/// Go's `strconv.ParseFloat(s, 64)`: decimal (`1`, `-1.5`, `.5`, `5.`, `1e3`),
/// hexadecimal with its mandatory binary exponent (`0x1.8p3`, underscores allowed
/// between digits), and `inf`/`infinity`/`nan` in any case (NaN without a sign). A
/// finite literal that overflows is an error, as Go's `ErrRange` is to Prometheus.
/// NaN comes back as [`normal_nan`], the bits Go's `math.NaN()` has.
pub fn parse_go_float(s: &[u8]) -> Option<f64> {
    let (first, rest) = s.split_first()?;
    let (negative, unsigned) = match first {
        b'+' => (false, rest),
        b'-' => (true, rest),
        _ => (false, s),
    };
    let v = match unsigned.first() {
        Some(b'n' | b'N') => {
            // Go accepts "nan" in any case, but never with a sign.
            return (unsigned.len() == s.len() && s.eq_ignore_ascii_case(b"nan")).then(normal_nan);
        }
        Some(b'i' | b'I') => {
            if unsigned.eq_ignore_ascii_case(b"inf") || unsigned.eq_ignore_ascii_case(b"infinity") {
                f64::INFINITY
            } else {
                return None;
            }
        }
        _ if unsigned.len() > 2 && unsigned[0] == b'0' && unsigned[1] | 0x20 == b'x' => {
            parse_hex_float(&unsigned[2..])?
        }
        _ => parse_decimal(unsigned)?,
    };
    Some(if negative { -v } else { v })
}

/// Go's decimal grammar without sign: digits [. digits] | . digits, then
/// `[eE][+-]digits`. Overflow to infinity is an error.
fn parse_decimal(s: &[u8]) -> Option<f64> {
    let mut i = 0;
    let mut mantissa_digits = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        i += 1;
        mantissa_digits += 1;
    }
    if i < s.len() && s[i] == b'.' {
        i += 1;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
            mantissa_digits += 1;
        }
    }
    if mantissa_digits == 0 {
        return None;
    }
    if i < s.len() && (s[i] == b'e' || s[i] == b'E') {
        i += 1;
        if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
            i += 1;
        }
        let exp_start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return None;
        }
    }
    if i != s.len() {
        return None;
    }
    // The grammar above is ASCII and a subset of what Rust's parser accepts.
    let v: f64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    (!v.is_infinite()).then_some(v)
}

/// The part of a hexadecimal float after `0x`: hex digits with at most one point,
/// underscores only between digits (or right after the prefix), then `p` and a
/// signed decimal exponent, which Go requires.
fn parse_hex_float(s: &[u8]) -> Option<f64> {
    let p = s.iter().position(|&c| c == b'p' || c == b'P')?;
    let (mantissa, exponent) = (&s[..p], &s[p + 1..]);
    let exponent: i32 = std::str::from_utf8(exponent).ok()?.parse().ok()?;
    let mut value = 0f64;
    let mut scale = 0i32;
    let (mut digits, mut seen_point) = (0, false);
    for (i, &c) in mantissa.iter().enumerate() {
        match c {
            b'.' if !seen_point => seen_point = true,
            b'_' => {
                let before_ok = i == 0 || mantissa[i - 1].is_ascii_hexdigit();
                let after_ok = mantissa.get(i + 1).is_some_and(u8::is_ascii_hexdigit);
                if !(before_ok && after_ok) {
                    return None;
                }
            }
            _ => {
                let d = (c as char).to_digit(16)?;
                value = value * 16.0 + f64::from(d);
                digits += 1;
                if seen_point {
                    scale -= 4;
                }
            }
        }
    }
    if digits == 0 {
        return None;
    }
    let v = value * 2f64.powi(exponent.saturating_add(scale));
    (!v.is_infinite()).then_some(v)
}

/// A fixed buffer that `write!` fills without allocating: the shortest digits of an
/// f64 and its exponent fit in 40 bytes, so formatting on a hot path needs no heap.
pub struct StackBuf {
    buf: [u8; 40],
    len: usize,
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl Default for StackBuf {
    fn default() -> StackBuf {
        StackBuf::new()
    }
}

impl StackBuf {
    pub fn new() -> StackBuf {
        StackBuf {
            buf: [0; 40],
            len: 0,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn as_str(&self) -> &str {
        // Only whole `str`s are ever written.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

/// Writes Go's `strconv.FormatFloat(f, 'g', -1, 64)` (also `%v`): the shortest
/// digits that round-trip, in exponent form when the exponent is below -4 or at
/// least 6 (`1e+06`, `1.5e-07`), plain otherwise (`12345`, `0.0001`).
pub fn write_go_float_g(out: &mut impl std::fmt::Write, f: f64) -> std::fmt::Result {
    write_go_float_shortest(out, f, false)
}

/// Writes Go's `strconv.FormatFloat(f, 'e', -1, 64)`: the shortest digits that
/// round-trip, always in exponent form (`1e+00`, `1.5e-07`).
pub fn write_go_float_e(out: &mut impl std::fmt::Write, f: f64) -> std::fmt::Result {
    write_go_float_shortest(out, f, true)
}

/// [`write_go_float_e`] as a String.
pub fn format_go_float_e(f: f64) -> String {
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = write_go_float_e(&mut s, f);
    s
}

fn write_go_float_shortest(
    out: &mut impl std::fmt::Write,
    f: f64,
    exponent_form: bool,
) -> std::fmt::Result {
    if f.is_nan() {
        return out.write_str("NaN");
    }
    if f.is_infinite() {
        return out.write_str(if f > 0.0 { "+Inf" } else { "-Inf" });
    }
    if f == 0.0 {
        let sign = if f.is_sign_negative() { "-" } else { "" };
        let exp = if exponent_form { "e+00" } else { "" };
        return write!(out, "{sign}0{exp}");
    }
    // Rust's `{:e}` gives the shortest round-tripping digits, as Go's shortest mode does.
    let mut sci = StackBuf::new();
    write!(sci, "{:e}", f.abs())?;
    let sci = sci.as_bytes();
    let e_pos = sci.iter().position(|&c| c == b'e').ok_or(std::fmt::Error)?;
    let exp: i32 = std::str::from_utf8(&sci[e_pos + 1..])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(std::fmt::Error)?;
    let digits = sci[..e_pos]
        .iter()
        .filter(|&&c| c != b'.')
        .map(|&c| c as char);
    if f < 0.0 {
        out.write_char('-')?;
    }
    if exponent_form || !(-4..6).contains(&exp) {
        let mut digits = digits;
        if let Some(d) = digits.next() {
            out.write_char(d)?;
        }
        let mut rest = digits.peekable();
        if rest.peek().is_some() {
            out.write_char('.')?;
            for d in rest {
                out.write_char(d)?;
            }
        }
        let sign = if exp < 0 { '-' } else { '+' };
        return write!(out, "e{sign}{:02}", exp.unsigned_abs());
    }
    // Plain form with exactly the significant digits; `dp` is where the point goes
    // relative to the first digit.
    let dp = exp + 1;
    if dp <= 0 {
        out.write_str("0.")?;
        for _ in 0..-dp {
            out.write_char('0')?;
        }
        for d in digits {
            out.write_char(d)?;
        }
        return Ok(());
    }
    let digits: StackBuf = {
        let mut b = StackBuf::new();
        for d in digits {
            b.write_char(d)?;
        }
        b
    };
    let digits = digits.as_bytes();
    let dp = dp as usize;
    for i in 0..dp.max(digits.len()) {
        if i == dp {
            out.write_char('.')?;
        }
        out.write_char(digits.get(i).map_or('0', |&d| d as char))?;
    }
    Ok(())
}

/// [`write_go_float_g`] as a String.
pub fn format_go_float_g(f: f64) -> String {
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = write_go_float_g(&mut s, f);
    s
}

/// Writes Go's `strconv.FormatFloat(f, 'f', -1, 64)`: the shortest round-trip
/// digits, never in exponent form; `NaN`, `+Inf`, `-Inf`.
pub fn write_go_float_f(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
    } else if f == f64::INFINITY {
        out.push_str("+Inf");
    } else if f == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        // zmij's output without its ".0"; where it chose an exponent, std's plain
        // decimal instead (both give the shortest round-trip digits).
        let mut buf = zmij::Buffer::new();
        let s = buf.format_finite(f);
        if s.contains('e') {
            let _ = write!(out, "{f}");
        } else {
            out.push_str(s.strip_suffix(".0").unwrap_or(s));
        }
    }
}

/// [`write_go_float_f`] as a String.
pub fn format_go_float_f(f: f64) -> String {
    let mut s = String::new();
    write_go_float_f(&mut s, f);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::value::NORMAL_NAN_BITS;

    #[test]
    fn parses_go_float_grammar() {
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
            ("0x1p3", 8.0),
            ("0X1.8p1", 3.0),
            ("-0x10p-4", -1.0),
            ("0x_1_0p0", 16.0),
        ];
        for (s, want) in ok {
            assert_eq!(parse_go_float(s.as_bytes()), Some(*want), "{s}");
        }
        for s in ["Inf", "+Inf", "inf", "INF", "infinity", "+Infinity"] {
            assert_eq!(parse_go_float(s.as_bytes()), Some(f64::INFINITY), "{s}");
        }
        assert_eq!(parse_go_float(b"-inf"), Some(f64::NEG_INFINITY));
        for s in ["NaN", "nan", "NAN"] {
            assert_eq!(
                parse_go_float(s.as_bytes()).map(f64::to_bits),
                Some(NORMAL_NAN_BITS)
            );
        }
        for s in [
            "", "+", "-", ".", "e3", "1e", "1e+", "+nan", "-NaN", "infin", "1_000", "0x10", "0x",
            "0xp3", "0x1__0p0", "0x1_p0", "1p3", "1.2.3", "1 ", " 1", "1e400", "-1e400",
            "0x1p2000", "--1", "1,5", "∞",
        ] {
            assert_eq!(parse_go_float(s.as_bytes()), None, "{s:?}");
        }
    }

    #[test]
    fn formats_as_go_does() {
        let g: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (12345.0, "12345"),
            (100000.0, "100000"),
            (1e6, "1e+06"),
            (9.3e18, "9.3e+18"),
            (123456789.0, "1.23456789e+08"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-5, "-2.5e-05"),
            (5e-324, "5e-324"),
            (1e100, "1e+100"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (f, want) in g {
            assert_eq!(format_go_float_g(*f), *want, "{f:e}");
        }
        // 'e': what the alerts API writes as an alert's value.
        let e: &[(f64, &str)] = &[
            (0.0, "0e+00"),
            (1.0, "1e+00"),
            (0.5, "5e-01"),
            (123.45, "1.2345e+02"),
            (-1e-7, "-1e-07"),
            (1e100, "1e+100"),
            (f64::INFINITY, "+Inf"),
        ];
        for (f, want) in e {
            assert_eq!(format_go_float_e(*f), *want, "{f:e}");
        }
        let f: &[(f64, &str)] = &[
            (1.5, "1.5"),
            (100.0, "100"),
            (1e21, "1000000000000000000000"),
            (1e-7, "0.0000001"),
            (-0.25, "-0.25"),
            (f64::INFINITY, "+Inf"),
            (f64::NAN, "NaN"),
        ];
        for (v, want) in f {
            assert_eq!(format_go_float_f(*v), *want, "{v:e}");
        }
        // The same digits as std's shortest formatting (Go's 'f' -1), across magnitudes.
        let mut x = 1.234_567_890_123e-12_f64;
        while x < 1e25 {
            for v in [x, -x, x.trunc(), x * 3.0, (x * 100.0).round() / 100.0] {
                assert_eq!(format_go_float_f(v), format!("{v}"), "{v:e}");
            }
            x *= 7.3;
        }
        assert_eq!(format_go_float_f(-0.0), "-0");
        assert_eq!(format_go_float_f(5e-324), format!("{}", 5e-324));
    }
}
