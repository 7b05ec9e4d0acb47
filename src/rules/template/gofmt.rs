//! The parts of Go's `fmt` and `time` that templates print through: `%v` of
//! each value, `Sprint`, `Sprintln`, `Sprintf`, `Time.Format` and
//! `Duration.String`.

use std::fmt::Write as _;

use super::value::Value;
use crate::model::labels::go_quote;
use crate::model::number::{format_go_float_f, format_go_float_g};

/// `%v` of a value. `top` is fmt's depth 0, where a pointer to a struct prints
/// as `&{…}`.
pub(super) fn write_v(out: &mut String, v: &Value, top: bool) {
    match v {
        Value::Nil => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => out.push_str(&format_go_float_g(*f)),
        Value::Str(s) | Value::Html(s) => out.push_str(s),
        Value::StrMap(m) => {
            out.push_str("map[");
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                out.push_str(v);
            }
            out.push(']');
        }
        Value::AnyMap(m) => {
            out.push_str("map[");
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                write_v(out, v, false);
            }
            out.push(']');
        }
        Value::List(l, _) => {
            out.push('[');
            for (i, v) in l.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_v(out, v, false);
            }
            out.push(']');
        }
        Value::Samples(s) => {
            out.push('[');
            for (i, v) in s.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_v(out, &Value::Sample(v.clone()), true);
            }
            out.push(']');
        }
        Value::Sample(s) => {
            if top {
                out.push('&');
            }
            out.push('{');
            write_v(
                out,
                &Value::StrMap(std::rc::Rc::new(s.labels.clone())),
                false,
            );
            out.push(' ');
            out.push_str(&format_go_float_g(s.value));
            out.push('}');
        }
        Value::Alert(a) => {
            out.push('{');
            write_v(out, &Value::StrMap(a.labels.clone()), false);
            out.push(' ');
            write_v(out, &Value::StrMap(a.external_labels.clone()), false);
            out.push(' ');
            out.push_str(&a.external_url);
            out.push(' ');
            out.push_str(&format_go_float_g(a.value));
            out.push('}');
        }
        Value::Time(ns) => out.push_str(&format_time(*ns, TIME_STRING_LAYOUT)),
        Value::Duration(d) => out.push_str(&duration_string(*d)),
    }
}

pub(super) fn v_string(v: &Value) -> String {
    let mut s = String::new();
    write_v(&mut s, v, true);
    s
}

fn is_string(v: &Value) -> bool {
    matches!(v, Value::Str(_) | Value::Html(_))
}

/// `fmt.Sprint`: spaces between operands when neither is a string.
pub(super) fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !is_string(a) && !is_string(&args[i - 1]) {
            out.push(' ');
        }
        write_v(&mut out, a, true);
    }
    out
}

/// `fmt.Sprintln`: spaces between all operands, and a newline.
pub(super) fn sprintln(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_v(&mut out, a, true);
    }
    out.push('\n');
    out
}

#[derive(Default, Clone, Copy)]
struct Spec {
    plus: bool,
    minus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

/// fmt's limit on widths and precisions.
const TOO_LARGE: usize = 1_000_000;

fn parse_num(b: &[u8], mut i: usize) -> (Option<usize>, usize, bool) {
    let start = i;
    let mut n: usize = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        if n > TOO_LARGE {
            return (None, b.len(), false);
        }
        n = n * 10 + (b[i] - b'0') as usize;
        i += 1;
    }
    if i == start {
        (None, i, true)
    } else {
        (Some(n), i, true)
    }
}

/// `fmt.Sprintf` with the verbs templates use.
pub(super) fn sprintf(format: &str, args: &[Value]) -> String {
    let b = format.as_bytes();
    let mut out = String::new();
    let mut arg = 0;
    let mut reordered = false;
    let mut i = 0;
    while i < b.len() {
        let lasti = i;
        while i < b.len() && b[i] != b'%' {
            i += 1;
        }
        out.push_str(&format[lasti..i]);
        if i >= b.len() {
            break;
        }
        i += 1; // the '%'
        let mut spec = Spec::default();
        while i < b.len() {
            match b[i] {
                b'#' => spec.sharp = true,
                b'0' => spec.zero = true,
                b'+' => spec.plus = true,
                b'-' => spec.minus = true,
                b' ' => spec.space = true,
                _ => break,
            }
            i += 1;
        }
        let arg_index = |i: &mut usize, arg: &mut usize, reordered: &mut bool| {
            if *i < b.len() && b[*i] == b'[' {
                if let Some(close) = format[*i..].find(']') {
                    match format[*i + 1..*i + close].parse::<usize>() {
                        Ok(n) if n >= 1 && n <= args.len() => {
                            *arg = n - 1;
                            *reordered = true;
                            *i += close + 1;
                            return true;
                        }
                        _ => {
                            *reordered = true;
                            *i += close + 1;
                            return false;
                        }
                    }
                }
            }
            true
        };
        let mut good_index = arg_index(&mut i, &mut arg, &mut reordered);
        // Width.
        if i < b.len() && b[i] == b'*' {
            i += 1;
            match args.get(arg) {
                Some(Value::Int(w)) if (*w as i128).unsigned_abs() <= TOO_LARGE as u128 => {
                    if *w < 0 {
                        spec.minus = true;
                    }
                    spec.width = Some(w.unsigned_abs() as usize);
                }
                _ => out.push_str("%!(BADWIDTH)"),
            }
            arg += 1;
        } else {
            let (w, ni, ok) = parse_num(b, i);
            if !ok {
                out.push_str("%!(NOVERB)");
                break;
            }
            spec.width = w;
            i = ni;
        }
        // Precision.
        if i < b.len() && b[i] == b'.' {
            i += 1;
            good_index &= arg_index(&mut i, &mut arg, &mut reordered);
            if i < b.len() && b[i] == b'*' {
                i += 1;
                match args.get(arg) {
                    Some(Value::Int(p)) if *p >= 0 && (*p as usize) <= TOO_LARGE => {
                        spec.prec = Some(*p as usize)
                    }
                    _ => out.push_str("%!(BADPREC)"),
                }
                arg += 1;
            } else {
                let (p, ni, ok) = parse_num(b, i);
                if !ok {
                    out.push_str("%!(NOVERB)");
                    break;
                }
                spec.prec = Some(p.unwrap_or(0));
                i = ni;
            }
        }
        // Left-justifying pads with spaces.
        spec.zero &= !spec.minus;
        good_index &= arg_index(&mut i, &mut arg, &mut reordered);
        if i >= b.len() {
            out.push_str("%!(NOVERB)");
            break;
        }
        let Some(verb) = format[i..].chars().next() else {
            break;
        };
        i += verb.len_utf8();
        if verb == '%' {
            out.push('%');
            continue;
        }
        if !good_index {
            let _ = write!(out, "%!{verb}(BADINDEX)");
            continue;
        }
        let Some(a) = args.get(arg) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        arg += 1;
        print_arg(&mut out, a, verb, spec);
    }
    if !reordered && arg < args.len() {
        out.push_str("%!(EXTRA ");
        for (j, a) in args[arg..].iter().enumerate() {
            if j > 0 {
                out.push_str(", ");
            }
            if let Value::Nil = a {
                out.push_str("<nil>");
            } else {
                out.push_str(&a.type_name());
                out.push('=');
                write_v(&mut out, a, true);
            }
        }
        out.push(')');
    }
    out
}

fn bad_verb(out: &mut String, a: &Value, verb: char) {
    let _ = write!(out, "%!{verb}(");
    if let Value::Nil = a {
        out.push_str("<nil>");
    } else {
        out.push_str(&a.type_name());
        out.push('=');
        write_v(out, a, true);
    }
    out.push(')');
}

fn pad(out: &mut String, s: &str, spec: Spec) {
    let n = s.chars().count();
    let w = spec.width.unwrap_or(0);
    if n >= w {
        out.push_str(s);
        return;
    }
    let fill = w - n;
    if spec.minus {
        out.push_str(s);
        out.extend(std::iter::repeat_n(' ', fill));
    } else if spec.zero {
        out.extend(std::iter::repeat_n('0', fill));
        out.push_str(s);
    } else {
        out.extend(std::iter::repeat_n(' ', fill));
        out.push_str(s);
    }
}

/// Pads a signed number: zeros go after the sign.
fn pad_number(out: &mut String, s: &str, spec: Spec) {
    if spec.zero && !spec.minus {
        if let Some(w) = spec.width {
            if let Some(rest) = s.strip_prefix(['-', '+', ' ']) {
                out.push_str(&s[..1]);
                let inner = Spec {
                    width: Some(w.saturating_sub(1)),
                    ..spec
                };
                pad(out, rest, inner);
                return;
            }
        }
    }
    pad(out, s, spec)
}

fn print_arg(out: &mut String, a: &Value, verb: char, spec: Spec) {
    if verb == 'T' {
        return pad(out, &a.type_name(), spec);
    }
    match a {
        Value::Nil => match verb {
            'v' => pad(out, "<nil>", spec),
            _ => bad_verb(out, a, verb),
        },
        Value::Bool(b) => match verb {
            't' | 'v' => pad(out, if *b { "true" } else { "false" }, spec),
            _ => bad_verb(out, a, verb),
        },
        Value::Int(i) => fmt_int(out, a, *i, verb, spec),
        Value::Float(f) => fmt_float_verb(out, a, *f, verb, spec),
        Value::Str(s) | Value::Html(s) => fmt_str(out, a, s, verb, spec),
        Value::Time(_) | Value::Duration(_) => {
            // Stringers print their String() for every verb that takes a string.
            let s = v_string(a);
            fmt_str(out, a, &s, verb, spec)
        }
        Value::List(l, _) => {
            out.push('[');
            for (i, v) in l.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                print_arg(out, v, verb, spec);
            }
            out.push(']');
        }
        Value::StrMap(m) => {
            out.push_str("map[");
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                print_arg(out, &Value::str(k.as_str()), verb, spec);
                out.push(':');
                print_arg(out, &Value::str(v.as_str()), verb, spec);
            }
            out.push(']');
        }
        Value::Alert(al) => {
            out.push('{');
            print_arg(out, &Value::StrMap(al.labels.clone()), verb, spec);
            out.push(' ');
            print_arg(out, &Value::StrMap(al.external_labels.clone()), verb, spec);
            out.push(' ');
            print_arg(out, &Value::Str(al.external_url.clone()), verb, spec);
            out.push(' ');
            print_arg(out, &Value::Float(al.value), verb, spec);
            out.push('}');
        }
        Value::Sample(sm) => {
            out.push_str("&{");
            print_arg(
                out,
                &Value::StrMap(std::rc::Rc::new(sm.labels.clone())),
                verb,
                spec,
            );
            out.push(' ');
            print_arg(out, &Value::Float(sm.value), verb, spec);
            out.push('}');
        }
        _ => match verb {
            'v' | 's' => pad(out, &v_string(a), spec),
            _ => bad_verb(out, a, verb),
        },
    }
}

fn fmt_str(out: &mut String, a: &Value, s: &str, verb: char, spec: Spec) {
    let s: String = match spec.prec {
        Some(p) if matches!(verb, 'v' | 's' | 'q' | 'x' | 'X') => s.chars().take(p).collect(),
        _ => s.to_string(),
    };
    match verb {
        'v' if spec.sharp => pad(out, &go_quote(&s), spec),
        'v' | 's' => pad(out, &s, spec),
        'q' => {
            let q = if spec.sharp && !s.contains('`') {
                format!("`{s}`")
            } else if spec.plus {
                // strconv.QuoteToASCII.
                go_quote(&s)
                    .chars()
                    .map(|c| match c as u32 {
                        0..=0x7f => c.to_string(),
                        n @ 0x80..=0xffff => format!("\\u{n:04x}"),
                        n => format!("\\U{n:08x}"),
                    })
                    .collect()
            } else {
                go_quote(&s)
            };
            pad(out, &q, spec)
        }
        'x' | 'X' => {
            let mut h = String::new();
            for (i, byte) in s.bytes().enumerate() {
                if spec.space && i > 0 {
                    h.push(' ');
                }
                if spec.sharp && (spec.space || i == 0) {
                    h.push_str(if verb == 'x' { "0x" } else { "0X" });
                }
                if verb == 'x' {
                    let _ = write!(h, "{byte:02x}");
                } else {
                    let _ = write!(h, "{byte:02X}");
                }
            }
            pad(out, &h, spec)
        }
        _ => bad_verb(out, a, verb),
    }
}

fn fmt_int(out: &mut String, a: &Value, i: i64, verb: char, spec: Spec) {
    let neg = i < 0;
    let u = i.unsigned_abs();
    let mut digits = match verb {
        'v' | 'd' => u.to_string(),
        'b' => format!("{u:b}"),
        'o' | 'O' => format!("{u:o}"),
        'x' => format!("{u:x}"),
        'X' => format!("{u:X}"),
        'c' => {
            let c = char::from_u32(i as u32).filter(|_| (0..=0x10FFFF).contains(&i));
            return pad(out, &c.unwrap_or('\u{FFFD}').to_string(), spec);
        }
        'q' => {
            let c = char::from_u32(i as u32)
                .filter(|_| (0..=0x10FFFF).contains(&i))
                .unwrap_or('\u{FFFD}');
            let q = go_quote(&c.to_string());
            let inner = &q[1..q.len() - 1];
            let inner = if c == '\'' {
                "\\'".to_string()
            } else {
                inner.replace("\\\"", "\"")
            };
            return pad(out, &format!("'{inner}'"), spec);
        }
        'U' => {
            let s = format!("U+{:04X}", i);
            return pad(out, &s, spec);
        }
        _ => return bad_verb(out, a, verb),
    };
    if let Some(p) = spec.prec {
        if p == 0 && u == 0 {
            digits.clear();
        }
        while digits.len() < p {
            digits.insert(0, '0');
        }
    }
    let prefix = if spec.sharp {
        match verb {
            'x' => "0x",
            'X' => "0X",
            'o' if !digits.starts_with('0') => "0",
            'b' => "0b",
            _ => "",
        }
    } else if verb == 'O' {
        "0o"
    } else {
        ""
    };
    let sign = if neg {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    };
    let spec = Spec {
        zero: spec.zero && spec.prec.is_none(),
        ..spec
    };
    pad_number(out, &format!("{sign}{prefix}{digits}"), spec)
}

fn fmt_float_verb(out: &mut String, a: &Value, f: f64, verb: char, spec: Spec) {
    let body = match verb {
        'v' => format_float(f, 'g', spec.prec),
        'g' | 'G' | 'e' | 'E' | 'f' | 'F' => {
            let prec = match verb {
                'e' | 'E' | 'f' | 'F' => Some(spec.prec.unwrap_or(6)),
                _ => spec.prec,
            };
            format_float(f, verb, prec)
        }
        _ => return bad_verb(out, a, verb),
    };
    if f.is_nan() {
        let s = if spec.plus {
            "+NaN"
        } else if spec.space {
            " NaN"
        } else {
            "NaN"
        };
        return pad(
            out,
            s,
            Spec {
                zero: false,
                ..spec
            },
        );
    }
    if f.is_infinite() {
        let s = if f > 0.0 {
            if spec.space && !spec.plus {
                " Inf"
            } else {
                "+Inf"
            }
        } else {
            "-Inf"
        };
        return pad(
            out,
            s,
            Spec {
                zero: false,
                ..spec
            },
        );
    }
    let body = if spec.sharp && matches!(verb, 'e' | 'E' | 'f' | 'F') && !body.contains('.') {
        match body.find(['e', 'E']) {
            Some(i) => format!("{}.{}", &body[..i], &body[i..]),
            None => format!("{body}."),
        }
    } else {
        body
    };
    let body = if body.starts_with('-') {
        body
    } else if spec.plus {
        format!("+{body}")
    } else if spec.space {
        format!(" {body}")
    } else {
        body
    };
    pad_number(out, &body, spec)
}

/// Go's `strconv.FormatFloat(f, verb, prec, 64)` for 'e', 'f' and 'g' (and
/// their capitals); `None` is the shortest form. Infinities are `+Inf`/`-Inf`.
pub(super) fn format_float(f: f64, verb: char, prec: Option<usize>) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let upper = verb.is_ascii_uppercase();
    let s = match (verb.to_ascii_lowercase(), prec) {
        ('g', None) => format_go_float_g(f),
        ('f', None) => format_go_float_f(f),
        ('f', Some(p)) => fixed(f, p),
        ('e', None) => go_exponent(&format!("{f:e}")),
        ('e', Some(p)) => go_exponent(&scientific(f, p)),
        (_, Some(p)) => format_g(f, p.max(1)),
        _ => format_go_float_g(f),
    };
    if upper {
        s.to_ascii_uppercase()
    } else {
        s
    }
}

/// Every float64 is exact in this many decimal places (and significant
/// digits); Rust's formatter takes precisions up to 65535 only.
const EXACT_DIGITS: usize = 1100;

/// `f` with `p` decimals, exactly rounded.
fn fixed(f: f64, p: usize) -> String {
    let mut s = format!("{f:.*}", p.min(EXACT_DIGITS));
    s.extend(std::iter::repeat_n('0', p.saturating_sub(EXACT_DIGITS)));
    s
}

/// `f` as `d.ddde±x` with `p` digits after the point, exactly rounded.
fn scientific(f: f64, p: usize) -> String {
    let s = format!("{f:.*e}", p.min(EXACT_DIGITS));
    if p <= EXACT_DIGITS {
        return s;
    }
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let zeros: String = std::iter::repeat_n('0', p - EXACT_DIGITS).collect();
    format!("{mant}{zeros}e{exp}")
}

/// Rust's `1.5e3` as Go's `1.5e+03`.
fn go_exponent(s: &str) -> String {
    let Some((mant, exp)) = s.split_once('e') else {
        return s.to_string();
    };
    let (sign, digits) = match exp.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exp),
    };
    format!("{mant}e{sign}{digits:0>2}")
}

/// `%.Ng`: N significant digits, exponent form when the exponent is below -4
/// or at least N, trailing zeros dropped.
fn format_g(f: f64, prec: usize) -> String {
    let sci = scientific(f.abs(), prec - 1);
    let Some((mant, exp)) = sci.split_once('e') else {
        return sci;
    };
    let exp: i64 = exp.parse().unwrap_or(0);
    let mut digits: String = mant.chars().filter(|c| *c != '.').collect();
    while digits.ends_with('0') {
        digits.pop();
    }
    let neg = f.is_sign_negative();
    let (nd, dp) = if digits.is_empty() {
        (0i64, 0i64)
    } else {
        (digits.len() as i64, exp + 1)
    };
    let d = digits.as_bytes();
    let mut eprec = prec as i64;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    let x = dp - 1;
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if x < -4 || x >= eprec {
        let p = (prec as i64).min(nd) - 1;
        out.push(d.first().map_or('0', |&c| c as char));
        if p > 0 {
            out.push('.');
            for i in 1..=p as usize {
                out.push(d.get(i).map_or('0', |&c| c as char));
            }
        }
        let e = if nd == 0 { 0 } else { x };
        let _ = write!(out, "e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
        return out;
    }
    let mut p = prec as i64;
    if p > dp {
        p = nd;
    }
    let decimals = (p - dp).max(0);
    if dp > 0 {
        for i in 0..dp as usize {
            out.push(d.get(i).map_or('0', |&c| c as char));
        }
    } else {
        out.push('0');
    }
    if decimals > 0 {
        out.push('.');
        for i in 0..decimals {
            let idx = dp + i;
            out.push(if idx < 0 {
                '0'
            } else {
                d.get(idx as usize).map_or('0', |&c| c as char)
            });
        }
    }
    out
}

/// Go's `Time.String` layout.
pub(super) const TIME_STRING_LAYOUT: &str = "2006-01-02 15:04:05.999999999 -0700 MST";

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// The civil date and time of a UTC instant.
pub(super) struct Civil {
    pub year: i64,
    pub month: usize,
    pub day: i64,
    pub yday: i64,
    pub weekday: usize,
    pub hour: i64,
    pub min: i64,
    pub sec: i64,
    pub nsec: i64,
}

pub(super) fn civil(ns: i128) -> Civil {
    let secs = ns.div_euclid(1_000_000_000);
    let nsec = ns.rem_euclid(1_000_000_000) as i64;
    let days = secs.div_euclid(86_400) as i64;
    let sod = secs.rem_euclid(86_400) as i64;
    // Days to civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    const CUM: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = CUM[(month - 1) as usize] + day + i64::from(leap && month > 2);
    Civil {
        year,
        month: month as usize,
        day,
        yday,
        weekday: (days + 4).rem_euclid(7) as usize,
        hour: sod / 3600,
        min: sod % 3600 / 60,
        sec: sod % 60,
        nsec,
    }
}

/// Go's `Time.Format` for a UTC time.
pub(super) fn format_time(ns: i128, layout: &str) -> String {
    let c = civil(ns);
    let mut out = String::new();
    let b = layout.as_bytes();
    let mut i = 0;
    let lower_after = |j: usize| b.get(j).is_some_and(|c| c.is_ascii_lowercase());
    let starts = |i: usize, s: &str| layout[i..].starts_with(s);
    while i < b.len() {
        let rest = &layout[i..];
        let (text, len): (String, usize) = match b[i] {
            b'J' if starts(i, "January") => (MONTHS[c.month - 1].into(), 7),
            b'J' if starts(i, "Jan") && !lower_after(i + 3) => (MONTHS[c.month - 1][..3].into(), 3),
            b'M' if starts(i, "Monday") => (DAYS[c.weekday].into(), 6),
            b'M' if starts(i, "Mon") && !lower_after(i + 3) => (DAYS[c.weekday][..3].into(), 3),
            b'M' if starts(i, "MST") => ("UTC".into(), 3),
            b'0' if b.get(i + 1).is_some_and(|d| (b'1'..=b'6').contains(d)) => {
                let s = match b[i + 1] {
                    b'1' => format!("{:02}", c.month),
                    b'2' => format!("{:02}", c.day),
                    b'3' => format!("{:02}", if c.hour % 12 == 0 { 12 } else { c.hour % 12 }),
                    b'4' => format!("{:02}", c.min),
                    b'5' => format!("{:02}", c.sec),
                    _ => format!("{:02}", c.year.rem_euclid(100)),
                };
                (s, 2)
            }
            b'0' if starts(i, "002") => (format!("{:03}", c.yday), 3),
            b'1' if starts(i, "15") => (format!("{:02}", c.hour), 2),
            b'1' => (c.month.to_string(), 1),
            b'2' if starts(i, "2006") => (format!("{:04}", c.year), 4),
            b'2' => (c.day.to_string(), 1),
            b'_' if starts(i, "_2006") => ("_".into(), 1),
            b'_' if starts(i, "_2") => (format!("{:>2}", c.day), 2),
            b'_' if starts(i, "__2") => (format!("{:>3}", c.yday), 3),
            b'3' => (
                (if c.hour % 12 == 0 { 12 } else { c.hour % 12 }).to_string(),
                1,
            ),
            b'4' => (c.min.to_string(), 1),
            b'5' => (c.sec.to_string(), 1),
            b'P' if starts(i, "PM") => ((if c.hour >= 12 { "PM" } else { "AM" }).into(), 2),
            b'p' if starts(i, "pm") => ((if c.hour >= 12 { "pm" } else { "am" }).into(), 2),
            b'-' | b'Z' => {
                let z = b[i] == b'Z';
                let forms = [
                    ("070000", "+000000"),
                    ("07:00:00", "+00:00:00"),
                    ("0700", "+0000"),
                    ("07:00", "+00:00"),
                    ("07", "+00"),
                ];
                match forms.iter().find(|(f, _)| rest[1..].starts_with(f)) {
                    Some((f, utc)) => ((if z { "Z" } else { utc }).to_string(), 1 + f.len()),
                    None => (rest[..1].to_string(), 1),
                }
            }
            b'.' | b',' if matches!(b.get(i + 1), Some(b'0' | b'9')) => {
                let ch = b[i + 1];
                let mut j = i + 1;
                while j < b.len() && b[j] == ch {
                    j += 1;
                }
                if b.get(j).is_some_and(u8::is_ascii_digit) {
                    (rest[..1].to_string(), 1)
                } else {
                    let n = j - i - 1;
                    let digits = format!("{:09}", c.nsec);
                    let mut frac = digits[..n.min(9)].to_string();
                    if ch == b'9' {
                        while frac.ends_with('0') {
                            frac.pop();
                        }
                        if frac.is_empty() {
                            (String::new(), j - i)
                        } else {
                            (format!("{}{frac}", b[i] as char), j - i)
                        }
                    } else {
                        while frac.len() < n {
                            frac.push('0');
                        }
                        (format!("{}{frac}", b[i] as char), j - i)
                    }
                }
            }
            _ => {
                let ch = rest.chars().next().unwrap_or(' ');
                (ch.to_string(), ch.len_utf8())
            }
        };
        out.push_str(&text);
        i += len;
    }
    out
}

/// Go's `Duration.String`: `1h2m3.5s`, `1.5ms`, `0s`.
pub(super) fn duration_string(d: i64) -> String {
    let neg = d < 0;
    let mut u = d.unsigned_abs();
    let mut out = String::new();
    if u == 0 {
        return "0s".into();
    }
    fn frac(u: u64, prec: u32) -> (String, u64) {
        let pow = 10u64.pow(prec);
        let f = u % pow;
        if f == 0 {
            return (String::new(), u / pow);
        }
        let s = format!("{:0width$}", f, width = prec as usize);
        (format!(".{}", s.trim_end_matches('0')), u / pow)
    }
    if u < 1_000_000_000 {
        let (prec, unit) = if u < 1_000 {
            (0, "ns")
        } else if u < 1_000_000 {
            (3, "µs")
        } else {
            (6, "ms")
        };
        let (f, whole) = frac(u, prec);
        out.push_str(&format!("{whole}{f}{unit}"));
    } else {
        let (f, secs) = frac(u, 9);
        u = secs;
        let s = format!("{}{f}s", u % 60);
        u /= 60;
        if u > 0 {
            let m = u % 60;
            u /= 60;
            if u > 0 {
                out.push_str(&format!("{u}h"));
            }
            out.push_str(&format!("{m}m"));
        }
        out.push_str(&s);
    }
    if neg {
        out.insert(0, '-');
    }
    out
}
