//! Runner for Prometheus's PromQL test-script language (`promql/promqltest`), as
//! described in `../shared/promql-testdata/README.md`.
//!
//! A case is one `eval` command. Instant evals are additionally re-run with `@ t`
//! added to every selector (at several evaluation times) and as a range query from
//! t-1m to t+1m, as upstream's runner does.
//!
//! Known differences file format (one entry per line, `#` comments):
//! * `category: <name>` — failures of cases in that category (native histograms,
//!   experimental functions, ...) are expected. A category is derived from the case
//!   itself (its expression, data and expectations), never from how it failed.
//! * `<file>.test:<line> <reason>` — that one case is expected to fail; if it passes,
//!   the run fails so the list stays true.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use promql_parser::parser::{AtModifier, Expr};

use super::engine::{parse_expr, Engine};
use super::value::{EngineOptions, QueryError, QueryResult, Value};
use crate::model::duration::parse_duration;
use crate::model::labels::{Label, Labels, METRIC_NAME};
use crate::model::number::parse_go_float;
use crate::model::{is_stale_nan, stale_nan, MemStorage};

/// A failed case.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseFailure {
    pub line: usize,
    pub expr: String,
    pub detail: String,
    /// Feature categories of the case (empty for plain float PromQL).
    pub categories: Vec<String>,
}

/// The outcome of one file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileReport {
    pub passed: usize,
    pub failed: Vec<CaseFailure>,
    /// Line numbers of every case, with its categories (passed or not).
    pub cases: Vec<(usize, Vec<String>)>,
}

/// The engine settings of upstream's test runner.
pub fn test_engine_options() -> EngineOptions {
    EngineOptions {
        lookback_delta: Duration::from_secs(300),
        max_samples: 10_000,
        timeout: Duration::from_secs(100),
        default_subquery_step: Duration::from_secs(60),
        delayed_name_removal: true,
        max_result_series: 0,
        ..EngineOptions::default()
    }
}

/// Runs one test file.
pub fn run_file(path: impl AsRef<Path>) -> FileReport {
    let path = path.as_ref();
    match std::fs::read_to_string(path) {
        Ok(text) => run_script(&text),
        Err(e) => FileReport {
            passed: 0,
            failed: vec![CaseFailure {
                line: 0,
                expr: String::new(),
                detail: format!("cannot read {}: {e}", path.display()),
                categories: vec![],
            }],
            cases: vec![],
        },
    }
}

/// Runs a test script given as text.
pub fn run_script(text: &str) -> FileReport {
    let mut runner = Runner {
        storage: MemStorage::new(),
        engine: Engine::new(test_engine_options()),
        hist_names: HashSet::new(),
        start_timestamps: false,
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut report = FileReport::default();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if line.is_empty() || line.starts_with('#') {
            i += 1;
            continue;
        }
        let lower = line.to_ascii_lowercase();
        // A block: this line and following non-blank, non-comment lines.
        let mut j = i + 1;
        while j < lines.len() && lower != "clear" {
            let l = lines[j].trim();
            if l.is_empty() || l.starts_with('#') {
                break;
            }
            j += 1;
        }
        let body: Vec<(usize, &str)> = (i + 1..j).map(|k| (k + 1, lines[k].trim())).collect();
        if lower == "clear" {
            runner.storage.clear();
            runner.hist_names.clear();
            runner.start_timestamps = false;
        } else if lower.starts_with("load") {
            runner.load(line, &body);
        } else if lower.starts_with("eval") {
            let (cats, outcome) = runner.eval(line, &body);
            report.cases.push((i + 1, cats.clone()));
            match outcome {
                Ok(()) => report.passed += 1,
                Err(detail) => report.failed.push(CaseFailure {
                    line: i + 1,
                    expr: eval_expr_text(line),
                    detail,
                    categories: cats,
                }),
            }
        }
        i = j;
    }
    report
}

fn eval_expr_text(line: &str) -> String {
    parse_eval_line(line)
        .map(|e| e.expr)
        .unwrap_or_else(|_| line.to_string())
}

struct Runner {
    storage: MemStorage,
    engine: Engine,
    /// Metric names loaded as native histograms since the last `clear`.
    hist_names: HashSet<String>,
    start_timestamps: bool,
}

// ---------------------------------------------------------------------------
// Lexical helpers.

/// A time or duration of a test script: a Prometheus duration (`1h30m`, `5m`, `0`)
/// or plain seconds (`1.5`), either with a leading `-`.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let ms = match s.parse::<f64>() {
        Ok(secs) => (secs * 1000.0).round() as i64,
        Err(_) => i64::try_from(parse_duration(s).ok()?.as_millis()).ok()?,
    };
    Some(if neg { -ms } else { ms })
}

/// Unquotes a Go/PromQL string literal starting at `s[0]`; returns (value, bytes consumed).
fn unquote_prefix(s: &str) -> Option<(String, usize)> {
    let q = s.chars().next()?;
    if q == '`' {
        let end = s[1..].find('`')?;
        return Some((s[1..1 + end].to_string(), end + 2));
    }
    if q != '"' && q != '\'' {
        return None;
    }
    let mut out = String::new();
    let mut bytes: Vec<u8> = Vec::new();
    let mut it = s.char_indices().skip(1).peekable();
    let flush = |bytes: &mut Vec<u8>, out: &mut String| {
        if !bytes.is_empty() {
            out.push_str(&String::from_utf8_lossy(bytes));
            bytes.clear();
        }
    };
    while let Some((i, c)) = it.next() {
        if c == q {
            flush(&mut bytes, &mut out);
            return Some((out, i + 1));
        }
        if c != '\\' {
            flush(&mut bytes, &mut out);
            out.push(c);
            continue;
        }
        let (_, e) = it.next()?;
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'v' => out.push('\u{b}'),
            '\\' => out.push('\\'),
            '"' => out.push('"'),
            '\'' => out.push('\''),
            'x' => {
                let h: String = (0..2).filter_map(|_| it.next().map(|x| x.1)).collect();
                bytes.push(u8::from_str_radix(&h, 16).ok()?);
                continue;
            }
            'u' | 'U' => {
                let n = if e == 'u' { 4 } else { 8 };
                let h: String = (0..n).filter_map(|_| it.next().map(|x| x.1)).collect();
                out.push(char::from_u32(u32::from_str_radix(&h, 16).ok()?)?);
            }
            '0'..='7' => {
                let mut h = String::from(e);
                for _ in 0..2 {
                    h.push(it.next()?.1);
                }
                bytes.push(u8::from_str_radix(&h, 8).ok()?);
                continue;
            }
            _ => return None,
        }
        flush(&mut bytes, &mut out);
    }
    None
}

/// Parses `name{a="b", ...}` or `{__name__="x", ...}` at the start of `s`;
/// returns the labels and the rest of the line. Also read by the runner of rule
/// unit tests (input series, expected samples).
pub fn parse_series_desc(s: &str) -> Result<(Labels, &str), String> {
    let s = s.trim_start();
    let name_end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(s.len());
    let mut labels: Vec<Label> = Vec::new();
    if name_end > 0 {
        labels.push(Label::new(METRIC_NAME, &s[..name_end]));
    }
    let mut rest = &s[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let (lname, r) = if rest.starts_with('"') {
                let (n, used) = unquote_prefix(rest).ok_or("bad quoted label name")?;
                (n, &rest[used..])
            } else {
                let e = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .ok_or("unterminated label set")?;
                (rest[..e].to_string(), &rest[e..])
            };
            let r = r.trim_start();
            // A quoted name alone is a metric name: {"metric.name", a="b"}.
            if r.starts_with(',') || r.starts_with('}') {
                labels.push(Label::new(METRIC_NAME, lname));
                rest = r.strip_prefix(',').unwrap_or(r);
                continue;
            }
            let r = r
                .strip_prefix('=')
                .ok_or_else(|| format!("expected '=' after label {lname}"))?
                .trim_start();
            let (val, used) = unquote_prefix(r).ok_or("bad label value")?;
            labels.push(Label::new(lname, val));
            rest = r[used..].trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            }
        }
    }
    if labels.is_empty() && !s.starts_with('{') {
        return Err(format!("invalid series description {s:?}"));
    }
    Ok((Labels::new(labels), rest))
}

/// One item of a value sequence: Some(value) or None for an omitted slot.
pub type SeqVal = Option<f64>;

/// A value of a series description, as the PromQL parser reads numbers: Go's
/// `strconv.ParseInt(s, 0, 64)` (so `0x1f`, `0o17`, `017`, `0b101`), else
/// `strconv.ParseFloat`.
fn parse_number(s: &str) -> Option<f64> {
    if s == "stale" {
        return Some(stale_nan());
    }
    parse_go_int(s)
        .map(|i| i as f64)
        .or_else(|| parse_go_float(s.as_bytes()))
}

/// Go's `strconv.ParseInt(s, 0, 64)`: optional sign, base from the prefix (`0x`,
/// `0o`, `0b`, a lone leading `0` for octal, else decimal), underscores only as
/// separators between digits (or after the prefix).
fn parse_go_int(s: &str) -> Option<i64> {
    let (negative, unsigned) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = unsigned.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if lower.contains('_') && !underscores_separate_digits(&lower) {
        return None;
    }
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let magnitude = u64::from_str_radix(&digits, radix).ok()?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Go's `underscoreOK` for an unsigned, lower-cased number: every underscore
/// follows a digit or the base prefix and is followed by a digit.
fn underscores_separate_digits(s: &str) -> bool {
    let b = s.as_bytes();
    let hex = b.len() >= 2 && b[0] == b'0' && b[1] == b'x';
    let prefixed = b.len() >= 2 && b[0] == b'0' && matches!(b[1], b'b' | b'o' | b'x');
    // What came last: '^' nothing, '0' a digit (or the prefix), '_' an underscore.
    let mut saw = if prefixed { b'0' } else { b'^' };
    for &c in &b[if prefixed { 2 } else { 0 }..] {
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else if saw == b'_' {
            return false;
        } else {
            saw = b'!';
        }
    }
    saw != b'_'
}

/// Expands a value sequence (`1 2 _ 3+4x2 _x3 stale`). Errors mention native histograms.
pub fn parse_values(s: &str) -> Result<Vec<SeqVal>, String> {
    if s.contains("{{") {
        return Err("native histograms are not supported".into());
    }
    let mut out = Vec::new();
    for tok in s.split_whitespace() {
        if tok == "_" {
            out.push(None);
            continue;
        }
        if let Some(n) = tok.strip_prefix("_x") {
            let n: usize = n.parse().map_err(|_| format!("bad repetition {tok}"))?;
            out.extend(std::iter::repeat_n(None, n));
            continue;
        }
        // `NxM` is a repetition (not a hex number) in sequences.
        let repetition = tok.rsplit_once('x').is_some_and(|(a, n)| {
            !a.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
        });
        if !repetition {
            if let Some(v) = parse_number(tok) {
                out.push(Some(v));
                continue;
            }
        }
        // a+bxn, a-bxn, axn
        let (lhs, times) = tok
            .rsplit_once('x')
            .ok_or_else(|| format!("bad value {tok:?}"))?;
        let times: u64 = times.parse().map_err(|_| format!("bad value {tok:?}"))?;
        let bytes = lhs.as_bytes();
        let mut split = None;
        for k in 1..bytes.len() {
            if (bytes[k] == b'+' || bytes[k] == b'-') && !matches!(bytes[k - 1], b'e' | b'E') {
                split = Some(k);
            }
        }
        let (a, b) = match split {
            Some(k) => (
                parse_number(&lhs[..k]).ok_or_else(|| format!("bad value {tok:?}"))?,
                parse_number(&lhs[k..]).ok_or_else(|| format!("bad value {tok:?}"))?,
            ),
            None => (
                parse_number(lhs).ok_or_else(|| format!("bad value {tok:?}"))?,
                0.0,
            ),
        };
        let mut v = a;
        for _ in 0..=times {
            out.push(Some(v));
            v += b;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Eval command.

#[derive(Debug, Clone)]
struct EvalLine {
    range: Option<(i64, i64, i64)>,
    at: i64,
    expr: String,
    suffix: Option<String>,
}

fn parse_eval_line(line: &str) -> Result<EvalLine, String> {
    use std::sync::OnceLock;
    static INSTANT: OnceLock<regex::Regex> = OnceLock::new();
    static RANGE: OnceLock<regex::Regex> = OnceLock::new();
    let instant = INSTANT.get_or_init(|| {
        regex::Regex::new(
            r"(?i)^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$",
        )
        .expect("static regex")
    });
    let range = RANGE.get_or_init(|| {
        regex::Regex::new(
            r"(?i)^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$",
        )
        .expect("static regex")
    });
    if let Some(c) = instant.captures(line) {
        let t = c.get(2).map(|m| m.as_str()).unwrap_or("0");
        let at = parse_duration_ms(t).ok_or_else(|| format!("bad time {t}"))?;
        return Ok(EvalLine {
            range: None,
            at,
            expr: c[3].trim().to_string(),
            suffix: c.get(1).map(|m| m.as_str().to_ascii_lowercase()),
        });
    }
    if let Some(c) = range.captures(line) {
        let s = parse_duration_ms(&c[2]).ok_or("bad start")?;
        let e = parse_duration_ms(&c[3]).ok_or("bad end")?;
        let st = parse_duration_ms(&c[4]).ok_or("bad step")?;
        return Ok(EvalLine {
            range: Some((s, e, st)),
            at: 0,
            expr: c[5].trim().to_string(),
            suffix: c.get(1).map(|m| m.as_str().to_ascii_lowercase()),
        });
    }
    Err(format!("invalid eval command {line:?}"))
}

#[derive(Debug, Default)]
struct Expectations {
    fail: bool,
    fail_msg: Option<String>,
    fail_regex: Option<String>,
    warn: Vec<(Option<String>, Option<String>)>,
    info: Vec<(Option<String>, Option<String>)>,
    warn_any: bool,
    info_any: bool,
    no_warn: bool,
    no_info: bool,
    ordered: bool,
    range_vector: Option<(i64, i64, i64)>,
    string: Option<String>,
    scalar: Option<f64>,
    /// Expected series: labels, values, source line.
    series: Vec<(Labels, Vec<SeqVal>, usize)>,
}

fn parse_msg_spec(rest: &str) -> Result<(Option<String>, Option<String>), String> {
    let rest = rest.trim();
    if rest.is_empty() {
        return Ok((None, None));
    }
    if let Some(m) = rest.strip_prefix("msg:") {
        return Ok((Some(m.trim().to_string()), None));
    }
    if let Some(r) = rest.strip_prefix("regex:") {
        return Ok((None, Some(r.trim().to_string())));
    }
    Err(format!("bad expect line remainder {rest:?}"))
}

fn parse_expectations(ev: &EvalLine, body: &[(usize, &str)]) -> Result<Expectations, String> {
    let mut x = Expectations::default();
    match ev.suffix.as_deref() {
        Some("fail") => x.fail = true,
        Some("warn") => x.warn_any = true,
        Some("info") => x.info_any = true,
        Some("ordered") => x.ordered = true,
        Some(other) => return Err(format!("unknown eval suffix {other}")),
        None => {}
    }
    for &(lineno, l) in body {
        if let Some(rest) = l.strip_prefix("expect ") {
            let rest = rest.trim();
            let (kind, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            match kind {
                "fail" => {
                    x.fail = true;
                    let (m, r) = parse_msg_spec(tail)?;
                    x.fail_msg = m;
                    x.fail_regex = r;
                }
                "warn" => x.warn.push(parse_msg_spec(tail)?),
                "info" => x.info.push(parse_msg_spec(tail)?),
                "no_warn" => x.no_warn = true,
                "no_info" => x.no_info = true,
                "ordered" => x.ordered = true,
                "range" => {
                    let w: Vec<&str> = tail.split_whitespace().collect();
                    if w.len() != 7 || w[0] != "vector" || w[1] != "from" {
                        return Err(format!("bad expect range line {l:?}"));
                    }
                    x.range_vector = Some((
                        parse_duration_ms(w[2]).ok_or("bad time")?,
                        parse_duration_ms(w[4]).ok_or("bad time")?,
                        parse_duration_ms(w[6]).ok_or("bad step")?,
                    ));
                }
                "string" => {
                    let (s, _) = unquote_prefix(tail.trim()).ok_or("bad expected string")?;
                    x.string = Some(s);
                }
                _ => return Err(format!("unknown expect line {l:?}")),
            }
            continue;
        }
        if let Some(m) = l.strip_prefix("expected_fail_message") {
            x.fail = true;
            x.fail_msg = Some(m.trim().to_string());
            continue;
        }
        if let Some(m) = l.strip_prefix("expected_fail_regexp") {
            x.fail = true;
            x.fail_regex = Some(m.trim().to_string());
            continue;
        }
        // Scalar: a single number.
        if !l.contains(char::is_whitespace) && !l.contains('{') {
            if let Some(v) = parse_number(l) {
                x.scalar = Some(v);
                continue;
            }
        }
        let (labels, rest) = parse_series_desc(l).map_err(|e| format!("line {lineno}: {e}"))?;
        let vals = parse_values(rest).map_err(|e| format!("line {lineno}: {e}"))?;
        x.series.push((labels, vals, lineno));
    }
    Ok(x)
}

/// Prometheus's `almost.Equal` with epsilon 1e-6.
pub fn almost_equal(a: f64, b: f64) -> bool {
    const EPS: f64 = 1e-6;
    const MIN_NORMAL: f64 = 2.2250738585072014e-308;
    if is_stale_nan(a) || is_stale_nan(b) {
        return is_stale_nan(a) && is_stale_nan(b);
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || a.abs() + b.abs() < MIN_NORMAL {
        return diff < EPS * MIN_NORMAL;
    }
    diff / (a.abs() + b.abs()).min(f64::MAX) < EPS
}

const EXPERIMENTAL_FUNCTIONS: &[&str] = &[
    "double_exponential_smoothing",
    "info",
    "mad_over_time",
    "sort_by_label",
    "sort_by_label_desc",
    "histogram_quantiles",
    "max_of",
    "min_of",
    "start",
    "end",
    "range",
    "step",
    "start_timestamp",
    "ts_of_first_over_time",
    "ts_of_last_over_time",
    "ts_of_max_over_time",
    "ts_of_min_over_time",
    "limitk",
    "limit_ratio",
];

const NATIVE_HIST_FUNCTIONS: &[&str] = &[
    "histogram_count",
    "histogram_sum",
    "histogram_avg",
    "histogram_fraction",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_quantiles",
];

fn identifiers(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_str: Option<char> = None;
    for c in expr.chars() {
        if let Some(q) = in_str {
            if c == q {
                in_str = None;
            }
            continue;
        }
        if c == '"' || c == '\'' || c == '`' {
            in_str = Some(c);
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            cur.push(c);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl Runner {
    fn load(&mut self, line: &str, body: &[(usize, &str)]) {
        let mut words = line.split_whitespace();
        let cmd = words.next().unwrap_or("").to_ascii_lowercase();
        let nhcb = cmd == "load_with_nhcb";
        let interval = words.next().and_then(parse_duration_ms).unwrap_or(0);
        let mut block: Vec<(Labels, Vec<(i64, f64)>)> = Vec::new();
        for &(_, l) in body {
            let Ok((labels, rest)) = parse_series_desc(l) else {
                continue;
            };
            if rest.trim_start().starts_with("@st") {
                self.start_timestamps = true;
                continue;
            }
            let name = labels.metric_name().unwrap_or("").to_string();
            match parse_values(rest) {
                Ok(vals) => {
                    let samples: Vec<(i64, f64)> = vals
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| v.map(|v| (i as i64 * interval, v)))
                        .collect();
                    if nhcb {
                        for suffix in ["_bucket", "_count", "_sum"] {
                            if let Some(base) = name.strip_suffix(suffix) {
                                self.hist_names.insert(base.to_string());
                            }
                        }
                    }
                    block.retain(|(l, _)| *l != labels);
                    block.push((labels, samples));
                }
                Err(_) => {
                    self.hist_names.insert(name);
                }
            }
        }
        for (labels, samples) in block {
            self.storage.add_samples(labels, &samples);
        }
    }

    /// Whether a selector of the expression can select a series loaded as a native histogram.
    fn selects_histograms(&self, expr: &str) -> bool {
        if self.hist_names.is_empty() {
            return false;
        }
        let Ok(e) = parse_expr(expr) else {
            return false;
        };
        let Ok(sets) = super::engine::extract_selectors(&e) else {
            return false;
        };
        sets.iter().any(|set| {
            self.hist_names.iter().any(|h| {
                set.iter()
                    .filter(|m| m.name == METRIC_NAME)
                    .all(|m| m.matches(h))
            })
        })
    }

    fn categories(&self, ev: &EvalLine, body: &[(usize, &str)]) -> Vec<String> {
        let mut cats = Vec::new();
        let idents = identifiers(&ev.expr);
        let body_text: String = body.iter().map(|(_, l)| *l).collect::<Vec<_>>().join("\n");
        if body_text.contains("{{")
            || idents.iter().any(|i| self.hist_names.contains(i))
            || self.selects_histograms(&ev.expr)
            || idents
                .iter()
                .any(|i| NATIVE_HIST_FUNCTIONS.contains(&i.as_str()))
        {
            cats.push("native histograms".to_string());
        }
        if idents
            .iter()
            .any(|i| EXPERIMENTAL_FUNCTIONS.contains(&i.to_ascii_lowercase().as_str()))
        {
            cats.push("experimental functions".to_string());
        }
        if idents.iter().any(|i| i == "anchored" || i == "smoothed") {
            cats.push("extended range selectors".to_string());
        }
        if idents
            .iter()
            .any(|i| i == "fill" || i == "fill_left" || i == "fill_right")
        {
            cats.push("fill modifiers".to_string());
        }
        if self.start_timestamps {
            cats.push("start timestamps".to_string());
        }
        if body
            .iter()
            .any(|(_, l)| l.starts_with("expect warn") || l.starts_with("expect info"))
            || matches!(ev.suffix.as_deref(), Some("warn") | Some("info"))
        {
            cats.push("annotations".to_string());
        }
        if has_duration_expr(&ev.expr) {
            cats.push("duration expressions".to_string());
        }
        cats
    }

    fn eval(&mut self, line: &str, body: &[(usize, &str)]) -> (Vec<String>, Result<(), String>) {
        let ev = match parse_eval_line(line) {
            Ok(e) => e,
            Err(e) => return (vec![], Err(format!("bad eval command: {e}"))),
        };
        let cats = self.categories(&ev, body);
        let x = match parse_expectations(&ev, body) {
            Ok(x) => x,
            Err(e) => {
                let mut cats = cats;
                if e.contains("native histograms") && !cats.iter().any(|c| c == "native histograms")
                {
                    cats.push("native histograms".into());
                }
                return (cats, Err(format!("unsupported expectation: {e}")));
            }
        };
        let r = match ev.range {
            Some((s, e, st)) => self.run_range(&ev.expr, s, e, st, &x),
            None => self.run_instant(&ev.expr, ev.at, &x),
        };
        let r = r.map_err(|d| {
            if cats.iter().any(|c| c == "native histograms")
                && !d.contains("native histograms are not supported")
            {
                format!("native histograms are not supported (case uses them): {d}")
            } else {
                d
            }
        });
        (cats, r)
    }

    fn run_range(
        &self,
        expr: &str,
        s: i64,
        e: i64,
        st: i64,
        x: &Expectations,
    ) -> Result<(), String> {
        let res = self.engine.range_query(&self.storage, expr, s, e, st);
        let res = match check_failure(res, x)? {
            Some(r) => r,
            None => return Ok(()),
        };
        check_annotations(&res, x)?;
        let Value::Matrix(m) = &res.value else {
            return Err(format!(
                "expected matrix result, got {}",
                res.value.type_name()
            ));
        };
        compare_matrix(m, x, s, st)
    }

    fn run_instant(&self, expr: &str, t: i64, x: &Expectations) -> Result<(), String> {
        let parsed = parse_expr(expr);
        let res = self.engine.instant_query(&self.storage, expr, t);
        let res = match check_failure(res, x)? {
            Some(r) => r,
            None => return Ok(()),
        };
        check_annotations(&res, x)?;
        compare_instant(&res.value, x, t)?;
        let Ok(parsed) = parsed else { return Ok(()) };

        // Re-run with `@ t` on every selector, at other evaluation times.
        if let Some(at_expr) = with_at_modifier(&parsed, t) {
            let times: Vec<i64> = if t == 0 {
                vec![-1000, 0, 1000]
            } else {
                vec![-10 * t, 0, t / 5, t, 10 * t]
            };
            for et in times {
                let r = self
                    .engine
                    .instant_query_expr(&self.storage, &at_expr, et)
                    .map_err(|e| format!("error in @-modifier re-run at {et}ms: {e}"))?;
                compare_instant(&r.value, x, et)
                    .map_err(|e| format!("@-modifier re-run (eval time {et}ms): {e}"))?;
            }
        }

        // Range mode: the point at t of a range query from t-1m to t+1m.
        if x.ordered || x.range_vector.is_some() || x.string.is_some() {
            return Ok(());
        }
        let idents = identifiers(expr);
        if idents
            .iter()
            .any(|i| matches!(i.as_str(), "start" | "end" | "range" | "step"))
        {
            return Ok(());
        }
        let rr = self
            .engine
            .range_query_expr(&self.storage, &parsed, t - 60_000, t + 60_000, 60_000)
            .map_err(|e| format!("error evaluating query {expr:?} in range mode: {e}"))?;
        let Value::Matrix(m) = rr.value else {
            return Err("range mode did not return a matrix".into());
        };
        if m.windows(2).any(|w| w[0].labels > w[1].labels) {
            return Err("range mode result is not sorted".into());
        }
        let mut vec = Vec::new();
        for s in &m {
            if let Some(i) = s.timestamps.iter().position(|&ts| ts == t) {
                vec.push(super::value::Sample {
                    labels: s.labels.clone(),
                    t,
                    v: s.values[i],
                });
            }
        }
        let v = if x.scalar.is_some() {
            match vec.first() {
                Some(s) => Value::Scalar { t, v: s.v },
                None => return Err("range mode: no scalar point at eval time".into()),
            }
        } else {
            Value::Vector(vec)
        };
        compare_instant(&v, x, t).map_err(|e| format!("range mode (t-1m..t+1m): {e}"))
    }
}

/// Whether the expression uses duration arithmetic (`[5m+1m]`, `offset (...)`).
fn has_duration_expr(expr: &str) -> bool {
    let b = expr.as_bytes();
    let mut depth = 0usize;
    let mut in_str: Option<u8> = None;
    for (i, &c) in b.iter().enumerate() {
        if let Some(q) = in_str {
            if c == q {
                in_str = None;
            }
            continue;
        }
        match c {
            b'"' | b'\'' | b'`' => in_str = Some(c),
            b'[' => depth += 1,
            b']' => depth = depth.saturating_sub(1),
            b'+' | b'*' | b'/' | b'(' | b'-' | b'%' | b'^' if depth > 0 => return true,
            _ => {}
        }
        if expr[i..].starts_with("offset") {
            let rest = expr[i + 6..].trim_start();
            if rest.starts_with('(')
                || rest.starts_with('-') && rest[1..].trim_start().starts_with('(')
            {
                return true;
            }
        }
    }
    false
}

/// Adds `@ t` to every selector and subquery that lacks one (not inside subqueries),
/// unless the expression uses an @-unsafe function. None when skipped.
fn with_at_modifier(e: &Expr, t: i64) -> Option<Expr> {
    fn unsafe_fn(e: &Expr) -> bool {
        match e {
            Expr::Call(c) => {
                matches!(
                    c.func.name,
                    "days_in_month"
                        | "day_of_month"
                        | "day_of_week"
                        | "day_of_year"
                        | "hour"
                        | "minute"
                        | "month"
                        | "year"
                        | "predict_linear"
                        | "time"
                        | "timestamp"
                        | "start"
                        | "end"
                        | "range"
                        | "step"
                ) || c.args.args.iter().any(|a| unsafe_fn(a))
            }
            Expr::Aggregate(a) => unsafe_fn(&a.expr) || a.param.as_deref().is_some_and(unsafe_fn),
            Expr::Unary(u) => unsafe_fn(&u.expr),
            Expr::Binary(b) => unsafe_fn(&b.lhs) || unsafe_fn(&b.rhs),
            Expr::Paren(p) => unsafe_fn(&p.expr),
            Expr::Subquery(s) => unsafe_fn(&s.expr),
            _ => false,
        }
    }
    fn set(e: &mut Expr, at: &AtModifier) {
        match e {
            Expr::VectorSelector(vs) if vs.at.is_none() => vs.at = Some(at.clone()),
            Expr::MatrixSelector(ms) if ms.vs.at.is_none() => ms.vs.at = Some(at.clone()),
            Expr::Subquery(s) if s.at.is_none() => s.at = Some(at.clone()),
            Expr::Call(c) => {
                for a in c.args.args.iter_mut() {
                    set(a, at);
                }
            }
            Expr::Aggregate(a) => {
                set(&mut a.expr, at);
                if let Some(p) = a.param.as_mut() {
                    set(p, at);
                }
            }
            Expr::Unary(u) => set(&mut u.expr, at),
            Expr::Binary(b) => {
                set(&mut b.lhs, at);
                set(&mut b.rhs, at);
            }
            Expr::Paren(p) => set(&mut p.expr, at),
            _ => {}
        }
    }
    if unsafe_fn(e) {
        return None;
    }
    let at = if t >= 0 {
        AtModifier::At(std::time::UNIX_EPOCH + Duration::from_millis(t as u64))
    } else {
        AtModifier::At(std::time::UNIX_EPOCH - Duration::from_millis((-t) as u64))
    };
    let mut out = e.clone();
    set(&mut out, &at);
    Some(out)
}

/// Checks `expect fail`; returns the result to compare when the query succeeded
/// as expected, None when it failed as expected.
fn check_failure(
    res: Result<QueryResult, QueryError>,
    x: &Expectations,
) -> Result<Option<QueryResult>, String> {
    match res {
        Err(e) => {
            if let QueryError::Unsupported(m) = &e {
                if !x.fail {
                    return Err(format!("unsupported: {m}"));
                }
            }
            if !x.fail {
                return Err(format!("unexpected error: {e}"));
            }
            let msg = e.to_string();
            if let Some(m) = &x.fail_msg {
                if &msg != m {
                    return Err(format!("expected error {m:?}, got {msg:?}"));
                }
            }
            if let Some(r) = &x.fail_regex {
                let re = regex::Regex::new(r).map_err(|e| format!("bad regex: {e}"))?;
                if !re.is_match(&msg) {
                    return Err(format!("expected error matching {r:?}, got {msg:?}"));
                }
            }
            Ok(None)
        }
        Ok(r) => {
            if x.fail {
                return Err(format!(
                    "expected error, got result: {}",
                    short_value(&r.value)
                ));
            }
            Ok(Some(r))
        }
    }
}

fn check_annotations(res: &QueryResult, x: &Expectations) -> Result<(), String> {
    let check = |got: &[String],
                 want: &[(Option<String>, Option<String>)],
                 any: bool,
                 none: bool,
                 kind: &str|
     -> Result<(), String> {
        if none && !got.is_empty() {
            return Err(format!("expected no {kind} annotations, got {got:?}"));
        }
        if any && got.is_empty() {
            return Err(format!("expected {kind} annotations, got none"));
        }
        if want.is_empty() {
            return Ok(());
        }
        let matches = |g: &str, w: &(Option<String>, Option<String>)| -> bool {
            match w {
                (Some(m), _) => g == m,
                (None, Some(r)) => regex::Regex::new(r).is_ok_and(|re| re.is_match(g)),
                (None, None) => true,
            }
        };
        for w in want {
            if !got.iter().any(|g| matches(g, w)) {
                return Err(format!("expected {kind} annotation {w:?}, got {got:?}"));
            }
        }
        for g in got {
            if !want.iter().any(|w| matches(g, w)) {
                return Err(format!("unexpected {kind} annotation {g:?}"));
            }
        }
        Ok(())
    };
    check(&res.warnings, &x.warn, x.warn_any, x.no_warn, "warn")?;
    check(&res.infos, &x.info, x.info_any, x.no_info, "info")
}

fn short_value(v: &Value) -> String {
    match v {
        Value::Scalar { v, .. } => format!("scalar {v}"),
        Value::String { v, .. } => format!("string {v:?}"),
        Value::Vector(s) => {
            let mut o = String::from("vector [");
            for (i, x) in s.iter().enumerate() {
                if i > 0 {
                    o.push_str(", ");
                }
                let _ = write!(o, "{} => {}", x.labels, x.v);
            }
            o.push(']');
            o
        }
        Value::Matrix(m) => {
            let mut o = String::from("matrix [");
            for (i, s) in m.iter().enumerate() {
                if i > 0 {
                    o.push_str(", ");
                }
                let _ = write!(o, "{} => ", s.labels);
                for (t, v) in s.timestamps.iter().zip(&s.values) {
                    let _ = write!(o, "{v}@{t} ");
                }
            }
            o.push(']');
            o
        }
    }
}

fn compare_instant(v: &Value, x: &Expectations, t: i64) -> Result<(), String> {
    if let Some(s) = &x.string {
        return match v {
            Value::String { v, .. } if v == s => Ok(()),
            other => Err(format!("expected string {s:?}, got {}", short_value(other))),
        };
    }
    if let Some((s, _e, st)) = x.range_vector {
        let Value::Matrix(m) = v else {
            return Err(format!("expected range vector, got {}", short_value(v)));
        };
        return compare_matrix(m, x, s, st);
    }
    if let Some(sv) = x.scalar {
        return match v {
            Value::Scalar { v, .. } if almost_equal(*v, sv) => Ok(()),
            other => Err(format!("expected scalar {sv}, got {}", short_value(other))),
        };
    }
    let Value::Vector(vec) = v else {
        return Err(format!("expected vector, got {}", short_value(v)));
    };
    let mut want: HashMap<&Labels, (usize, f64)> = HashMap::new();
    for (pos, (l, vals, line)) in x.series.iter().enumerate() {
        let present: Vec<f64> = vals.iter().flatten().copied().collect();
        if present.len() != 1 || vals.len() != 1 {
            return Err(format!(
                "expected exactly one value for {l} (line {line}) in an instant eval"
            ));
        }
        want.insert(l, (pos, present[0]));
    }
    for (i, s) in vec.iter().enumerate() {
        let Some(&(pos, ev)) = want.get(&s.labels) else {
            return Err(format!(
                "unexpected metric {} in result, got {}",
                s.labels,
                short_value(v)
            ));
        };
        if x.ordered && pos != i {
            return Err(format!(
                "expected metric {} with {ev} at position {pos} but was at {i}",
                s.labels
            ));
        }
        if !almost_equal(s.v, ev) {
            return Err(format!(
                "expected {ev} for {} but got {} (t={t})",
                s.labels, s.v
            ));
        }
    }
    if vec.len() != want.len() {
        for (l, _) in want.iter() {
            if !vec.iter().any(|s| &s.labels == *l) {
                return Err(format!(
                    "expected metric {l} not found, got {}",
                    short_value(v)
                ));
            }
        }
        return Err(format!(
            "expected {} series, got {}",
            want.len(),
            short_value(v)
        ));
    }
    Ok(())
}

fn compare_matrix(
    m: &[crate::model::Series],
    x: &Expectations,
    start: i64,
    step: i64,
) -> Result<(), String> {
    if x.scalar.is_some() {
        return Err("expected scalar result in a range eval".into());
    }
    let mut want: HashMap<&Labels, Vec<(i64, f64)>> = HashMap::new();
    for (l, vals, _) in &x.series {
        let pts: Vec<(i64, f64)> = vals
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (start + i as i64 * step, v)))
            .collect();
        want.insert(l, pts);
    }
    for s in m {
        let Some(w) = want.get(&s.labels) else {
            return Err(format!("unexpected series {} in result", s.labels));
        };
        let got: Vec<(i64, f64)> = s
            .timestamps
            .iter()
            .copied()
            .zip(s.values.iter().copied())
            .collect();
        let same = got.len() == w.len()
            && got
                .iter()
                .zip(w)
                .all(|(a, b)| a.0 == b.0 && almost_equal(a.1, b.1));
        if !same {
            return Err(format!(
                "series {}: expected {:?}, got {:?}",
                s.labels, w, got
            ));
        }
    }
    for l in want.keys() {
        if !m.iter().any(|s| &s.labels == *l) {
            return Err(format!("expected series {l} not found in result"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Running a set of files against the known-differences list.

/// The parsed known-differences file.
#[derive(Debug, Default, Clone)]
pub struct KnownDifferences {
    pub categories: Vec<String>,
    /// (file name, line) -> reason.
    pub cases: HashMap<(String, usize), String>,
}

impl KnownDifferences {
    pub fn parse(text: &str) -> Result<KnownDifferences, String> {
        let mut k = KnownDifferences::default();
        for (n, raw) in text.lines().enumerate() {
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if let Some(c) = l.strip_prefix("category:") {
                k.categories.push(c.trim().to_string());
                continue;
            }
            let (loc, reason) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            let (file, line) = loc
                .rsplit_once(':')
                .ok_or_else(|| format!("known differences line {}: expected file:line", n + 1))?;
            let line: usize = line
                .parse()
                .map_err(|_| format!("known differences line {}: bad line number", n + 1))?;
            if reason.trim().is_empty() {
                return Err(format!(
                    "known differences line {}: a reason is required",
                    n + 1
                ));
            }
            k.cases
                .insert((file.to_string(), line), reason.trim().to_string());
        }
        Ok(k)
    }

    pub fn load(path: &Path) -> Result<KnownDifferences, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text)
    }
}

/// The outcome of a run over several files.
#[derive(Debug, Default, Clone)]
pub struct RunSummary {
    pub passed: usize,
    pub failed: usize,
    /// Failures accepted by a category of the known-differences file.
    pub expected_by_category: usize,
    /// Failures accepted by a case entry.
    pub expected_by_case: usize,
    /// Problems that make the run fail: unlisted failures and listed cases that pass.
    pub problems: Vec<String>,
    /// Cases without any feature category: (passed, failed).
    pub plain: (usize, usize),
    pub per_file: Vec<(String, FileReport)>,
}

/// Runs every file, prints one line per file, the failing cases, and a final
/// `N passed, N failed` line to `out`, and compares the failures with `known`.
pub fn run_files(
    files: &[PathBuf],
    known: &KnownDifferences,
    out: &mut dyn std::io::Write,
) -> RunSummary {
    let mut sum = RunSummary::default();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let rep = run_file(f);
        let _ = writeln!(
            out,
            "{name}: {} passed, {} failed",
            rep.passed,
            rep.failed.len()
        );
        sum.passed += rep.passed;
        sum.failed += rep.failed.len();
        let failed_lines: HashSet<usize> = rep.failed.iter().map(|c| c.line).collect();
        for (line, cats) in &rep.cases {
            if cats.is_empty() {
                if failed_lines.contains(line) {
                    sum.plain.1 += 1;
                } else {
                    sum.plain.0 += 1;
                }
            }
        }
        for c in &rep.failed {
            let cat = if c.categories.is_empty() {
                String::new()
            } else {
                format!(" [{}]", c.categories.join(", "))
            };
            let _ = writeln!(
                out,
                "  {name}:{}{cat} {}\n      {}",
                c.line, c.expr, c.detail
            );
            if known.cases.contains_key(&(name.clone(), c.line)) {
                sum.expected_by_case += 1;
            } else if c.categories.iter().any(|k| known.categories.contains(k)) {
                sum.expected_by_category += 1;
            } else {
                sum.problems.push(format!(
                    "{name}:{} fails and is not in the known differences: {} — {}",
                    c.line, c.expr, c.detail
                ));
            }
        }
        for (line, _) in &rep.cases {
            if known.cases.contains_key(&(name.clone(), *line)) && !failed_lines.contains(line) {
                sum.problems.push(format!(
                    "{name}:{line} is listed in the known differences but passes"
                ));
            }
        }
        sum.per_file.push((name, rep));
    }
    // Entries for files that ran but name no eval line are stale.
    for (file, line) in known.cases.keys() {
        if let Some((_, rep)) = sum.per_file.iter().find(|(n, _)| n == file) {
            if !rep.cases.iter().any(|(l, _)| l == line) {
                sum.problems.push(format!(
                    "{file}:{line} is listed in the known differences but is not an eval line"
                ));
            }
        }
    }
    sum.problems.sort();
    for p in &sum.problems {
        let _ = writeln!(out, "PROBLEM: {p}");
    }
    let _ = writeln!(out, "{} passed, {} failed", sum.passed, sum.failed);
    sum
}

/// Runs `files` against the known-differences file at `known` (none: every failure
/// is a problem), printing the report to `out`. Ok when every failure is listed and
/// no listed case passes; Err with the problems otherwise (a CLI exits non-zero).
pub fn run_and_check(
    files: &[PathBuf],
    known: Option<&Path>,
    out: &mut dyn std::io::Write,
) -> Result<RunSummary, String> {
    let known = match known {
        Some(p) => KnownDifferences::load(p)?,
        None => KnownDifferences::default(),
    };
    let sum = run_files(files, &known, out);
    if sum.problems.is_empty() {
        Ok(sum)
    } else {
        Err(sum.problems.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("0"), Some(0));
        assert_eq!(parse_duration_ms("10s"), Some(10_000));
        assert_eq!(parse_duration_ms("1d"), Some(86_400_000));
    }

    #[test]
    fn numbers_read_as_the_promql_parser_reads_them() {
        let cases: &[(&str, f64)] = &[
            ("0x10", 16.0),
            ("-0x10", -16.0),
            ("017", 15.0),
            ("0o17", 15.0),
            ("0b101", 5.0),
            ("1_000", 1000.0),
            ("0x_ff", 255.0),
            ("0", 0.0),
            ("1e3", 1000.0),
            ("1.5", 1.5),
            ("+Inf", f64::INFINITY),
            ("9223372036854775808", 9.223372036854776e18),
        ];
        for (s, want) in cases {
            assert_eq!(parse_number(s), Some(*want), "{s}");
        }
        for s in ["abc", "1__0", "_1", "0x", "1_"] {
            assert_eq!(parse_number(s), None, "{s}");
        }
        assert!(is_stale_nan(parse_number("stale").unwrap()));
    }

    #[test]
    fn value_sequences() {
        let v = parse_values("1 _ 0+10x2 _x2 stale 5-1x1").unwrap();
        assert_eq!(v.len(), 1 + 1 + 3 + 2 + 1 + 2);
        assert_eq!(v[2..5], [Some(0.0), Some(10.0), Some(20.0)]);
        assert!(is_stale_nan(v[7].unwrap()));
        assert_eq!(v[9], Some(4.0));
        assert!(parse_values("{{schema:1}}").is_err());
    }

    #[test]
    fn series_descriptions() {
        let (l, rest) = parse_series_desc(r#"m{a="x\"y", b="2"} 1 2"#).unwrap();
        assert_eq!(l.get("a"), Some("x\"y"));
        assert_eq!(l.metric_name(), Some("m"));
        assert_eq!(rest.trim(), "1 2");
        let (l, _) = parse_series_desc("{} 3").unwrap();
        assert!(l.is_empty());
    }

    #[test]
    fn small_script_runs() {
        let script = r#"
load 5m
  http_requests_total{job="a"} 0+10x10
  http_requests_total{job="b"} 0+20x10

eval instant at 50m sum(http_requests_total)
  {} 300

eval instant at 50m rate(http_requests_total{job="a"}[25m])
  {job="a"} 0.03333333333

eval range from 0 to 10m step 5m http_requests_total{job="b"}
  http_requests_total{job="b"} 0 20 40

eval instant at 50m 1 + 2
  3

eval instant at 50m http_requests_total + on() group_left http_requests_total
  expect fail msg: found duplicate series for the match group {} on the right hand-side of the operation: [{__name__="http_requests_total", job="a"}, {__name__="http_requests_total", job="b"}];many-to-many matching not allowed: matching labels must be unique on one side
"#;
        let r = run_script(script);
        assert!(r.failed.is_empty(), "{:#?}", r.failed);
        assert_eq!(r.passed, 5);
    }

    #[test]
    fn known_differences_parse() {
        let k = KnownDifferences::parse(
            "# c\ncategory: native histograms\nfunctions.test:12 some reason\n",
        )
        .unwrap();
        assert_eq!(k.categories, vec!["native histograms".to_string()]);
        assert!(k.cases.contains_key(&("functions.test".to_string(), 12)));
        assert!(KnownDifferences::parse("functions.test:12").is_err());
    }

    #[test]
    fn almost_equal_follows_prometheus() {
        assert!(almost_equal(1.0, 1.0 + 1e-9));
        assert!(!almost_equal(1.0, 1.001));
        assert!(almost_equal(f64::NAN, f64::NAN));
        assert!(!almost_equal(0.0, 1e-300));
    }
}
