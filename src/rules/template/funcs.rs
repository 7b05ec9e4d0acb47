//! Go's template built-ins (funcs.go) and Prometheus's template functions
//! (template/template.go), with the methods of the `time` values they return.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use super::gofmt::{self, format_float, format_time};
use super::value::Value;
use super::QuerySample;
use crate::model::labels::go_quote;
use crate::model::number::{format_go_float_g, parse_go_float};

/// What the functions that reach outside the template need.
pub(super) struct Env<'a> {
    pub query: &'a dyn Fn(&str) -> Result<Vec<QuerySample>, String>,
    pub timestamp_ms: i64,
    pub external_url: &'a str,
    pub regexes: RefCell<HashMap<String, Result<regex::Regex, String>>>,
    /// Steps the costly functions (queries, regex compiles) used, which the
    /// executor adds to its count.
    pub cost: std::cell::Cell<u64>,
}

/// What a query or a regex compile costs, in steps: a template may run about
/// a thousand of them.
pub(super) const COSTLY_CALL: u64 = 1_000;

/// Regexes compiled once per expansion, up to this many.
const REGEX_CACHE: usize = 64;

/// Parameter types, named as Go names them in errors.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Ty {
    Any,
    /// The built-ins that take `reflect.Value`: any value.
    Reflect,
    Str,
    Int,
    Sample,
    Samples,
    Duration,
    Time,
}

impl Ty {
    pub fn name(self) -> &'static str {
        match self {
            Ty::Any => "interface {}",
            Ty::Reflect => "reflect.Value",
            Ty::Str => "string",
            Ty::Int => "int",
            Ty::Sample => "*template.sample",
            Ty::Samples => "template.queryResult",
            Ty::Duration => "time.Duration",
            Ty::Time => "time.Time",
        }
    }

    pub fn can_be_nil(self) -> bool {
        matches!(self, Ty::Any | Ty::Reflect | Ty::Sample | Ty::Samples)
    }

    pub fn accepts(self, v: &Value) -> bool {
        matches!(
            (self, v),
            (Ty::Any | Ty::Reflect, _)
                | (Ty::Str, Value::Str(_))
                | (Ty::Int, Value::Int(_))
                | (Ty::Sample, Value::Sample(_))
                | (Ty::Samples, Value::Samples(_))
                | (Ty::Duration, Value::Duration(_))
                | (Ty::Time, Value::Time(_))
        )
    }
}

#[derive(Clone, Copy)]
pub(super) struct Sig {
    pub params: &'static [Ty],
    pub variadic: Option<Ty>,
}

type FResult = Result<Value, String>;

pub(super) struct Function {
    pub name: &'static str,
    pub sig: Sig,
    pub call: fn(&Env, Vec<Value>) -> FResult,
}

pub(super) struct Method {
    pub name: &'static str,
    pub sig: Sig,
    pub call: fn(&Value, Vec<Value>) -> FResult,
}

const fn sig(params: &'static [Ty]) -> Sig {
    Sig {
        params,
        variadic: None,
    }
}

const fn var(params: &'static [Ty], rest: Ty) -> Sig {
    Sig {
        params,
        variadic: Some(rest),
    }
}

macro_rules! f {
    ($name:literal, $sig:expr, $call:expr) => {
        Function {
            name: $name,
            sig: $sig,
            call: $call,
        }
    };
}

use Ty::*;

static FUNCTIONS: &[Function] = &[
    // Go's built-ins. `and` and `or` are evaluated by the executor.
    f!("and", var(&[Reflect], Reflect), |_, a| Ok(a
        .into_iter()
        .last()
        .unwrap_or(Value::Nil))),
    f!("or", var(&[Reflect], Reflect), |_, a| Ok(a
        .into_iter()
        .last()
        .unwrap_or(Value::Nil))),
    f!("not", sig(&[Reflect]), |_, a| Ok(Value::Bool(
        !a[0].truth()
    ))),
    f!("len", sig(&[Reflect]), |_, a| length(&a[0])),
    f!("index", var(&[Reflect], Reflect), |_, a| index(a)),
    f!("slice", var(&[Reflect], Reflect), |_, a| slice(a)),
    f!("print", var(&[], Any), |_, a| Ok(Value::str(
        gofmt::sprint(&a)
    ))),
    f!("println", var(&[], Any), |_, a| Ok(Value::str(
        gofmt::sprintln(&a)
    ))),
    f!("printf", var(&[Str], Any), |_, a| {
        let Value::Str(format) = &a[0] else {
            return Err("printf needs a format".into());
        };
        Ok(Value::str(gofmt::sprintf(format, &a[1..])))
    }),
    f!("html", var(&[], Any), |_, a| Ok(Value::str(html_escape(
        &eval_args(&a)
    )))),
    f!("js", var(&[], Any), |_, a| Ok(Value::str(js_escape(
        &eval_args(&a)
    )))),
    f!("urlquery", var(&[], Any), |_, a| Ok(Value::str(
        crate::config::form_encode(&eval_args(&a))
    ))),
    f!("eq", var(&[Reflect], Reflect), |_, a| eq(&a[0], &a[1..])
        .map(Value::Bool)),
    f!("ne", sig(&[Reflect, Reflect]), |_, a| eq(&a[0], &a[1..])
        .map(|b| Value::Bool(!b))),
    f!("lt", sig(&[Reflect, Reflect]), |_, a| lt(&a[0], &a[1])
        .map(Value::Bool)),
    f!("le", sig(&[Reflect, Reflect]), |_, a| le(&a[0], &a[1])
        .map(Value::Bool)),
    f!("gt", sig(&[Reflect, Reflect]), |_, a| le(&a[0], &a[1])
        .map(|b| Value::Bool(!b))),
    f!("ge", sig(&[Reflect, Reflect]), |_, a| lt(&a[0], &a[1])
        .map(|b| Value::Bool(!b))),
    f!("call", var(&[Reflect], Reflect), |_, a| match &a[0] {
        Value::Nil => Err("call of nil".into()),
        v => Err(format!("non-function of type {}", v.type_name())),
    }),
    // Prometheus's functions.
    f!("query", sig(&[Str]), |env, a| {
        let q = as_str(&a[0]);
        env.cost.set(env.cost.get() + COSTLY_CALL);
        let samples = (env.query)(q)?;
        Ok(Value::Samples(Rc::new(
            samples.into_iter().map(Rc::new).collect(),
        )))
    }),
    f!("first", sig(&[Samples]), |_, a| match &a[0] {
        Value::Samples(s) if !s.is_empty() => Ok(Value::Sample(s[0].clone())),
        _ => Err("first() called on vector with no elements".into()),
    }),
    f!("label", sig(&[Str, Sample]), |_, a| {
        let s = sample(&a[1])?;
        Ok(Value::str(
            s.labels.get(as_str(&a[0])).map_or("", String::as_str),
        ))
    }),
    f!("value", sig(&[Sample]), |_, a| Ok(Value::Float(
        sample(&a[0])?.value
    ))),
    f!("strvalue", sig(&[Sample]), |_, a| {
        let s = sample(&a[0])?;
        Ok(Value::str(
            s.labels.get("__value__").map_or("", String::as_str),
        ))
    }),
    f!("args", var(&[], Any), |_, a| {
        let m: BTreeMap<String, Value> = a
            .into_iter()
            .enumerate()
            .map(|(i, v)| (format!("arg{i}"), v))
            .collect();
        Ok(Value::AnyMap(Rc::new(m)))
    }),
    f!("reReplaceAll", sig(&[Str, Str, Str]), |env, a| {
        let re = compile(env, as_str(&a[0]))
            .map_err(|e| format!("regexp: Compile({}): {e}", backquote(as_str(&a[0]))))?;
        Ok(Value::str(
            re.replace_all(as_str(&a[2]), as_str(&a[1])).as_ref(),
        ))
    }),
    f!("safeHtml", sig(&[Str]), |_, a| Ok(Value::Html(
        as_str(&a[0]).into()
    ))),
    f!("match", sig(&[Str, Str]), |env, a| {
        let re = compile(env, as_str(&a[0]))?;
        Ok(Value::Bool(re.is_match(as_str(&a[1]))))
    }),
    f!("title", sig(&[Str]), |_, a| Ok(Value::str(title(as_str(
        &a[0]
    ))))),
    f!("toUpper", sig(&[Str]), |_, a| Ok(Value::str(to_upper(
        as_str(&a[0])
    )))),
    f!("toLower", sig(&[Str]), |_, a| Ok(Value::str(to_lower(
        as_str(&a[0])
    )))),
    f!("graphLink", sig(&[Str]), |_, a| {
        Ok(Value::str(format!(
            "/graph?g0.expr={}&g0.tab=0",
            crate::config::form_encode(as_str(&a[0]))
        )))
    }),
    f!("tableLink", sig(&[Str]), |_, a| {
        Ok(Value::str(format!(
            "/graph?g0.expr={}&g0.tab=1",
            crate::config::form_encode(as_str(&a[0]))
        )))
    }),
    f!("sortByLabel", sig(&[Str, Samples]), |_, a| {
        let label = as_str(&a[0]);
        let Value::Samples(s) = &a[1] else {
            return Ok(a[1].clone());
        };
        let mut v: Vec<Rc<QuerySample>> = s.as_ref().clone();
        let key = |s: &Rc<QuerySample>| s.labels.get(label).cloned().unwrap_or_default();
        v.sort_by_key(key);
        Ok(Value::Samples(Rc::new(v)))
    }),
    f!("stripPort", sig(&[Str]), |_, a| {
        let hp = as_str(&a[0]);
        Ok(Value::str(split_host_port(hp).map_or(hp, |(h, _)| h)))
    }),
    f!("stripDomain", sig(&[Str]), |_, a| Ok(Value::str(
        strip_domain(as_str(&a[0]))
    ))),
    f!("humanize", sig(&[Any]), |_, a| humanize(to_float(&a[0])?)
        .map(Value::str)),
    f!("humanize1024", sig(&[Any]), |_, a| {
        let mut v = to_float(&a[0])?;
        if v.abs() <= 1.0 || !v.is_finite() {
            return Ok(Value::str(format_float(v, 'g', Some(4))));
        }
        let mut prefix = "";
        for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
            if v.abs() < 1024.0 {
                break;
            }
            prefix = p;
            v /= 1024.0;
        }
        Ok(Value::str(format!(
            "{}{prefix}",
            format_float(v, 'g', Some(4))
        )))
    }),
    f!("humanizeDuration", sig(&[Any]), |_, a| {
        Ok(Value::str(humanize_duration(to_float(&a[0])?)))
    }),
    f!("humanizePercentage", sig(&[Any]), |_, a| {
        let v = to_float(&a[0])?;
        Ok(Value::str(format!(
            "{}%",
            format_float(v * 100.0, 'g', Some(4))
        )))
    }),
    f!("humanizeTimestamp", sig(&[Any]), |_, a| {
        let v = to_float(&a[0])?;
        if !v.is_finite() {
            return Ok(Value::str(format_float(v, 'g', Some(4))));
        }
        let t = float_to_time(v)?;
        Ok(Value::str(format_time(t, gofmt::TIME_STRING_LAYOUT)))
    }),
    f!("toTime", sig(&[Any]), |_, a| {
        let v = to_float(&a[0])?;
        if !v.is_finite() {
            return Err("value is NaN or Inf".into());
        }
        Ok(Value::Time(float_to_time(v)?))
    }),
    f!("toDuration", sig(&[Any]), |_, a| {
        Ok(Value::Duration(go_f64_to_i64(to_float(&a[0])? * 1e9)))
    }),
    f!("now", sig(&[]), |env, _| Ok(Value::Float(
        env.timestamp_ms as f64 / 1000.0
    ))),
    f!("pathPrefix", sig(&[]), |env, _| Ok(Value::str(url_path(
        env.external_url
    )))),
    f!("externalURL", sig(&[]), |env, _| Ok(Value::str(
        env.external_url
    ))),
    f!("parseDuration", sig(&[Str]), |_, a| {
        let s = as_str(&a[0]);
        let (neg, body) = match s.strip_prefix('-') {
            Some(b) => (true, b),
            None => (false, s),
        };
        let d = crate::model::duration::parse_duration(body)?;
        let ns = (d.as_millis() as i64).saturating_mul(1_000_000);
        let secs = ns as f64 / 1e9;
        Ok(Value::Float(if neg { -secs } else { secs }))
    }),
    f!("urlQueryEscape", sig(&[Str]), |_, a| Ok(Value::str(
        crate::config::form_encode(as_str(&a[0]))
    ))),
];

/// The function a template may call by this name.
pub(super) fn function(name: &str) -> Option<&'static Function> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

pub(super) fn is_function(name: &str) -> bool {
    function(name).is_some()
}

macro_rules! m {
    ($name:literal, $sig:expr, $call:expr) => {
        Method {
            name: $name,
            sig: $sig,
            call: $call,
        }
    };
}

fn time_of(v: &Value) -> i128 {
    match v {
        Value::Time(t) => *t,
        _ => 0,
    }
}

fn duration_of(v: &Value) -> i64 {
    match v {
        Value::Duration(d) => *d,
        _ => 0,
    }
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// Go's zero `time.Time` (January 1, year 1), in nanoseconds since 1970.
const ZERO_TIME: i128 = -62_135_596_800 * 1_000_000_000;

static TIME_METHODS: &[Method] = &[
    m!("Format", sig(&[Str]), |t, a| Ok(Value::str(format_time(
        time_of(t),
        as_str(&a[0])
    )))),
    m!("String", sig(&[]), |t, _| Ok(Value::str(format_time(
        time_of(t),
        gofmt::TIME_STRING_LAYOUT
    )))),
    m!("Add", sig(&[Duration]), |t, a| Ok(Value::Time(
        time_of(t) + duration_of(&a[0]) as i128
    ))),
    m!("Sub", sig(&[Time]), |t, a| Ok(Value::Duration(clamp_i64(
        time_of(t) - time_of(&a[0])
    )))),
    m!("UTC", sig(&[]), |t, _| Ok(t.clone())),
    m!("Local", sig(&[]), |t, _| Ok(t.clone())),
    m!("Unix", sig(&[]), |t, _| Ok(Value::Int(clamp_i64(
        time_of(t).div_euclid(1_000_000_000)
    )))),
    m!("UnixMilli", sig(&[]), |t, _| Ok(Value::Int(clamp_i64(
        time_of(t).div_euclid(1_000_000)
    )))),
    m!("UnixMicro", sig(&[]), |t, _| Ok(Value::Int(clamp_i64(
        time_of(t).div_euclid(1_000)
    )))),
    m!("UnixNano", sig(&[]), |t, _| Ok(Value::Int(clamp_i64(
        time_of(t)
    )))),
    m!("Year", sig(&[]), |t, _| Ok(Value::Int(
        gofmt::civil(time_of(t)).year
    ))),
    m!("YearDay", sig(&[]), |t, _| Ok(Value::Int(
        gofmt::civil(time_of(t)).yday
    ))),
    m!("Month", sig(&[]), |t, _| Ok(Value::str(format_time(
        time_of(t),
        "January"
    )))),
    m!("Weekday", sig(&[]), |t, _| Ok(Value::str(format_time(
        time_of(t),
        "Monday"
    )))),
    m!("Day", sig(&[]), |t, _| Ok(Value::Int(
        gofmt::civil(time_of(t)).day
    ))),
    m!("Hour", sig(&[]), |t, _| Ok(Value::Int(
        gofmt::civil(time_of(t)).hour
    ))),
    m!("Minute", sig(&[]), |t, _| Ok(Value::Int(
        gofmt::civil(time_of(t)).min
    ))),
    m!("Second", sig(&[]), |t, _| Ok(Value::Int(
        gofmt::civil(time_of(t)).sec
    ))),
    m!("Nanosecond", sig(&[]), |t, _| Ok(Value::Int(
        gofmt::civil(time_of(t)).nsec
    ))),
    m!("IsZero", sig(&[]), |t, _| Ok(Value::Bool(
        time_of(t) == ZERO_TIME
    ))),
    m!("Before", sig(&[Time]), |t, a| Ok(Value::Bool(
        time_of(t) < time_of(&a[0])
    ))),
    m!("After", sig(&[Time]), |t, a| Ok(Value::Bool(
        time_of(t) > time_of(&a[0])
    ))),
    m!("Equal", sig(&[Time]), |t, a| Ok(Value::Bool(
        time_of(t) == time_of(&a[0])
    ))),
];

static DURATION_METHODS: &[Method] = &[
    m!("String", sig(&[]), |d, _| Ok(Value::str(
        gofmt::duration_string(duration_of(d))
    ))),
    m!("Seconds", sig(&[]), |d, _| Ok(Value::Float(
        duration_of(d) as f64 / 1e9
    ))),
    m!("Minutes", sig(&[]), |d, _| Ok(Value::Float(
        duration_of(d) as f64 / 6e10
    ))),
    m!("Hours", sig(&[]), |d, _| Ok(Value::Float(
        duration_of(d) as f64 / 3.6e12
    ))),
    m!("Milliseconds", sig(&[]), |d, _| Ok(Value::Int(
        duration_of(d) / 1_000_000
    ))),
    m!("Microseconds", sig(&[]), |d, _| Ok(Value::Int(
        duration_of(d) / 1_000
    ))),
    m!("Nanoseconds", sig(&[]), |d, _| Ok(Value::Int(duration_of(
        d
    )))),
    m!("Abs", sig(&[]), |d, _| {
        let d = duration_of(d);
        Ok(Value::Duration(if d == i64::MIN {
            i64::MAX
        } else {
            d.abs()
        }))
    }),
];

/// The method `name` of a value, if its Go type has one.
pub(super) fn method(v: &Value, name: &str) -> Option<&'static Method> {
    let table = match v {
        Value::Time(_) => TIME_METHODS,
        Value::Duration(_) => DURATION_METHODS,
        _ => return None,
    };
    table.iter().find(|m| m.name == name)
}

fn as_str(v: &Value) -> &str {
    match v {
        Value::Str(s) | Value::Html(s) => s,
        _ => "",
    }
}

fn sample(v: &Value) -> Result<&QuerySample, String> {
    match v {
        Value::Sample(s) => Ok(s),
        _ => Err("runtime error: invalid memory address or nil pointer dereference".into()),
    }
}

/// Go's conversion of a float64 to int64 on amd64: out of range (and NaN)
/// gives the minimum.
fn go_f64_to_i64(f: f64) -> i64 {
    // 2^63 is the first float64 above i64::MAX.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if f.is_nan() || !(-LIMIT..LIMIT).contains(&f) {
        i64::MIN
    } else {
        f as i64
    }
}

/// `common/helpers/templates.FloatToTime`: whole milliseconds, as Prometheus's
/// `model.Time` keeps them.
fn float_to_time(v: f64) -> Result<i128, String> {
    let ns = v * 1e9;
    if ns > i64::MAX as f64 || ns < i64::MIN as f64 {
        return Err(format!(
            "{} cannot be represented as a nanoseconds timestamp since it overflows int64",
            format_go_float_g(v)
        ));
    }
    let ms = go_f64_to_i64(ns) / 1_000_000;
    Ok(ms as i128 * 1_000_000)
}

/// `common/helpers/templates.ConvertToFloat`.
fn to_float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        Value::Str(s) => parse_float(s),
        other => Err(format!("can't convert {} to float", other.type_name())),
    }
}

/// Go's `strconv.ParseFloat(s, 64)` with its error texts.
fn parse_float(s: &str) -> Result<f64, String> {
    if let Some(f) = parse_go_float(s.as_bytes()) {
        return Ok(f);
    }
    // parse_go_float refuses a finite literal that overflows: Go's ErrRange.
    let clean: String = s.chars().filter(|&c| c != '_').collect();
    let reason = match clean.parse::<f64>() {
        Ok(f) if f.is_infinite() && !clean.to_ascii_lowercase().contains("inf") => {
            "value out of range"
        }
        _ => "invalid syntax",
    };
    Err(format!(
        "strconv.ParseFloat: parsing {}: {reason}",
        go_quote(s)
    ))
}

fn humanize(mut v: f64) -> Result<String, String> {
    if v == 0.0 || !v.is_finite() {
        return Ok(format_float(v, 'g', Some(4)));
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
        return Ok(format!("{}{prefix}", format_float(v, 'g', Some(4))));
    }
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    Ok(format!("{}{prefix}", format_float(v, 'g', Some(4))))
}

fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return format_float(v, 'g', Some(4));
    }
    if v == 0.0 {
        return format!("{}s", format_float(v, 'g', Some(4)));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = go_f64_to_i64(v);
        let (seconds, minutes, hours, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86_400);
        if days != 0 {
            return format!("{sign}{days}d {hours}h {minutes}m {seconds}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {minutes}m {seconds}s");
        }
        if minutes != 0 {
            return format!("{sign}{minutes}m {seconds}s");
        }
        return format!("{sign}{}s", format_float(v, 'g', Some(4)));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", format_float(v, 'g', Some(4)))
}

fn compile(env: &Env, pattern: &str) -> Result<regex::Regex, String> {
    if let Some(r) = env.regexes.borrow().get(pattern) {
        return r.clone();
    }
    env.cost.set(env.cost.get() + COSTLY_CALL);
    let translated = crate::config::relabel::go_regex_to_rust(pattern);
    let r = regex::Regex::new(&translated).map_err(|e| {
        let detail = e.to_string();
        let last = detail.lines().last().unwrap_or("").trim();
        let last = last.strip_prefix("error: ").unwrap_or(last);
        // Go's words for the errors users meet most.
        let reason = match last {
            "unclosed group" => "missing closing )",
            "unopened group" => "unexpected )",
            "unclosed character class" => "missing closing ]",
            "repetition operator missing expression" => "missing argument to repetition operator",
            other => other,
        };
        format!("error parsing regexp: {reason}: {}", backquote(pattern))
    });
    let mut cache = env.regexes.borrow_mut();
    if cache.len() < REGEX_CACHE {
        cache.insert(pattern.to_string(), r.clone());
    }
    r
}

/// Go regexp's quoting of a pattern in errors: backquoted when it can be.
fn backquote(s: &str) -> String {
    if s.chars()
        .all(|c| c != '`' && (c == '\t' || !c.is_control()))
    {
        format!("`{s}`")
    } else {
        go_quote(s)
    }
}

/// `cases.Title(language.AmericanEnglish, cases.NoLower)`: the first letter of
/// each word upper-cased, the rest left as they are. As there, an apostrophe
/// starts a new word (`o'neil` is `O'Neil`) and `_` and digits do not.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_word = false;
    for c in s.chars() {
        if c.is_alphanumeric() || c == '_' {
            if !in_word && c.is_alphabetic() {
                out.extend(c.to_uppercase());
            } else {
                out.push(c);
            }
            in_word = true;
        } else {
            out.push(c);
            in_word = false;
        }
    }
    out
}

/// Go's `strings.ToUpper`: each character's simple mapping, so a character
/// whose upper case is several (`ß`) stays as it is.
fn to_upper(s: &str) -> String {
    s.chars()
        .map(|c| {
            let mut u = c.to_uppercase();
            match (u.next(), u.next()) {
                (Some(one), None) => one,
                _ => c,
            }
        })
        .collect()
}

/// Go's `strings.ToLower`: each character's simple mapping (`İ` is `i`).
fn to_lower(s: &str) -> String {
    s.chars()
        .map(|c| c.to_lowercase().next().unwrap_or(c))
        .collect()
}

/// Go's `net.SplitHostPort`.
fn split_host_port(hp: &str) -> Option<(&str, &str)> {
    let i = hp.rfind(':')?;
    let (host, j, k);
    if hp.starts_with('[') {
        let end = hp.find(']')?;
        if end + 1 != i {
            return None;
        }
        host = &hp[1..end];
        (j, k) = (1, end + 1);
    } else {
        host = &hp[..i];
        if host.contains(':') {
            return None;
        }
        (j, k) = (0, 0);
    }
    if hp[j..].contains('[') || hp[k..].contains(']') {
        return None;
    }
    Some((host, &hp[i + 1..]))
}

fn strip_domain(hp: &str) -> String {
    let (host, port) = split_host_port(hp).unwrap_or((hp, ""));
    if host.parse::<std::net::IpAddr>().is_ok() {
        return hp.to_string();
    }
    let host = host.split('.').next().unwrap_or("");
    if port.is_empty() {
        return host.to_string();
    }
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn url_path(url: &str) -> String {
    let rest = match url.find("://") {
        Some(i) => &url[i + 3..],
        None => return url.split(['?', '#']).next().unwrap_or("").to_string(),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    match rest.find('/') {
        Some(i) => rest[i..].to_string(),
        None => String::new(),
    }
}

/// The text the `html`, `js` and `urlquery` built-ins escape.
fn eval_args(args: &[Value]) -> String {
    if let [Value::Str(s)] = args {
        return s.to_string();
    }
    let printable: Vec<Value> = args
        .iter()
        .map(|a| match a {
            Value::Nil => Value::str("<no value>"),
            other => other.clone(),
        })
        .collect();
    gofmt::sprint(&printable)
}

/// Go's `template.HTMLEscapeString`.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c if c.is_ascii() || super::parse::is_print(c) => out.push(c),
            c => out.push_str(&format!("\\u{:04X}", c as u32)),
        }
    }
    out
}

fn length(v: &Value) -> FResult {
    let n = match v {
        Value::Str(s) | Value::Html(s) => s.len(),
        Value::StrMap(m) => m.len(),
        Value::AnyMap(m) => m.len(),
        Value::List(l, _) => l.len(),
        Value::Samples(s) => s.len(),
        Value::Nil => return Err("reflect: call of reflect.Value.Type on zero Value".into()),
        Value::Sample(_) => return Err("len of type template.sample".into()),
        Value::Time(_) => return Err("len of type time.Time".into()),
        Value::Duration(_) => return Err("len of type time.Duration".into()),
        other => return Err(format!("len of type {}", other.type_name())),
    };
    Ok(Value::Int(n as i64))
}

/// An integer index in `0..=cap`, as Go's `indexArg` checks it.
fn int_index(v: &Value, cap: usize) -> Result<usize, String> {
    let x = match v {
        Value::Int(i) => *i,
        Value::Nil => return Err("cannot index slice/array with nil".into()),
        other => {
            return Err(format!(
                "cannot index slice/array with type {}",
                other.type_name()
            ))
        }
    };
    if x < 0 || x as u64 > cap as u64 {
        return Err(format!("index out of range: {x}"));
    }
    Ok(x as usize)
}

fn index_arg(v: &Value, len: usize, is_str: bool) -> Result<usize, String> {
    let x = int_index(v, len)?;
    if x == len {
        // Go's bound check lets the length through and reflect then panics.
        return Err(if is_str {
            "reflect: string index out of range".into()
        } else {
            "reflect: slice index out of range".into()
        });
    }
    Ok(x)
}

fn index(args: Vec<Value>) -> FResult {
    let mut item = args[0].clone();
    if let Value::Nil = item {
        return Err("index of untyped nil".into());
    }
    for ix in &args[1..] {
        item = match &item {
            Value::Str(s) | Value::Html(s) => {
                let i = index_arg(ix, s.len(), true)?;
                Value::Int(s.as_bytes()[i] as i64)
            }
            Value::List(l, _) => l[index_arg(ix, l.len(), false)?].clone(),
            Value::Samples(l) => Value::Sample(l[index_arg(ix, l.len(), false)?].clone()),
            Value::StrMap(m) => match ix {
                Value::Str(k) => Value::str(m.get(k.as_ref()).map_or("", String::as_str)),
                Value::Nil => return Err("value is nil; should be of type string".into()),
                other => {
                    return Err(format!(
                        "value has type {}; should be string",
                        other.type_name()
                    ))
                }
            },
            Value::AnyMap(m) => match ix {
                Value::Str(k) => m.get(k.as_ref()).cloned().unwrap_or(Value::Nil),
                Value::Nil => return Err("value is nil; should be of type string".into()),
                other => {
                    return Err(format!(
                        "value has type {}; should be string",
                        other.type_name()
                    ))
                }
            },
            Value::Nil => return Err("index of nil pointer".into()),
            Value::Sample(_) => return Err("can't index item of type template.sample".into()),
            other => return Err(format!("can't index item of type {}", other.type_name())),
        };
    }
    Ok(item)
}

fn slice(args: Vec<Value>) -> FResult {
    let item = &args[0];
    if let Value::Nil = item {
        return Err("slice of untyped nil".into());
    }
    let idx = &args[1..];
    if idx.len() > 3 {
        return Err(format!("too many slice indexes: {}", idx.len()));
    }
    let (len, is_str) = match item {
        Value::Str(s) | Value::Html(s) => (s.len(), true),
        Value::List(l, _) => (l.len(), false),
        Value::Samples(s) => (s.len(), false),
        other => return Err(format!("can't slice item of type {}", other.type_name())),
    };
    if is_str && idx.len() == 3 {
        return Err("cannot 3-index slice a string".into());
    }
    let mut bounds = [0usize, len, len];
    for (i, ix) in idx.iter().enumerate() {
        bounds[i] = int_index(ix, len)?;
    }
    if idx.len() < 2 {
        bounds[1] = len;
    }
    if bounds[0] > bounds[1] {
        return Err(format!(
            "invalid slice index: {} > {}",
            bounds[0], bounds[1]
        ));
    }
    if idx.len() == 3 && bounds[1] > bounds[2] {
        return Err(format!(
            "invalid slice index: {} > {}",
            bounds[1], bounds[2]
        ));
    }
    let (a, b) = (bounds[0], bounds[1]);
    Ok(match item {
        Value::Str(s) | Value::Html(s) => match s.get(a..b) {
            Some(sub) => Value::str(sub),
            None => Value::str(String::from_utf8_lossy(&s.as_bytes()[a..b]).as_ref()),
        },
        Value::List(l, t) => Value::List(Rc::new(l[a..b].to_vec()), t),
        Value::Samples(s) => Value::Samples(Rc::new(s[a..b].to_vec())),
        _ => Value::Nil,
    })
}

#[derive(PartialEq, Clone, Copy)]
enum Kind {
    Invalid,
    Bool,
    Int,
    Float,
    Str,
    Other,
}

fn kind(v: &Value) -> Kind {
    match v {
        Value::Nil => Kind::Invalid,
        Value::Bool(_) => Kind::Bool,
        Value::Int(_) => Kind::Int,
        Value::Float(_) => Kind::Float,
        Value::Str(_) | Value::Html(_) => Kind::Str,
        _ => Kind::Other,
    }
}

const BAD_COMPARISON_TYPE: &str = "invalid type for comparison";
const BAD_COMPARISON: &str = "incompatible types for comparison";

fn eq(a: &Value, rest: &[Value]) -> Result<bool, String> {
    if rest.is_empty() {
        return Err("missing argument for comparison".into());
    }
    let k1 = kind(a);
    for b in rest {
        let k2 = kind(b);
        let truth = if k1 != k2 {
            if k1 != Kind::Invalid && k2 != Kind::Invalid {
                return Err(BAD_COMPARISON.into());
            }
            false
        } else {
            match (a, b) {
                (Value::Bool(x), Value::Bool(y)) => x == y,
                (Value::Int(x), Value::Int(y)) => x == y,
                (Value::Float(x), Value::Float(y)) => x == y,
                (Value::Str(x) | Value::Html(x), Value::Str(y) | Value::Html(y)) => x == y,
                (Value::Nil, Value::Nil) => true,
                (Value::Sample(x), Value::Sample(y)) => Rc::ptr_eq(x, y),
                (Value::Time(x), Value::Time(y)) => x == y,
                (Value::Duration(x), Value::Duration(y)) => x == y,
                _ => {
                    if a.type_name() != b.type_name() {
                        return Err(format!(
                            "non-comparable types {}: {}, {}: {}",
                            gofmt::sprintf("%s", std::slice::from_ref(a)),
                            a.type_name(),
                            b.type_name(),
                            gofmt::sprintf("%v", std::slice::from_ref(b))
                        ));
                    }
                    return Err(format!(
                        "non-comparable type {}: {}",
                        gofmt::sprintf("%s", std::slice::from_ref(b)),
                        b.type_name()
                    ));
                }
            }
        };
        if truth {
            return Ok(true);
        }
    }
    Ok(false)
}

fn lt(a: &Value, b: &Value) -> Result<bool, String> {
    let (k1, k2) = (kind(a), kind(b));
    for k in [k1, k2] {
        if matches!(k, Kind::Invalid | Kind::Other) {
            return Err(BAD_COMPARISON_TYPE.into());
        }
    }
    if k1 != k2 {
        return Err(BAD_COMPARISON.into());
    }
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => x < y,
        (Value::Float(x), Value::Float(y)) => x < y,
        (Value::Str(x) | Value::Html(x), Value::Str(y) | Value::Html(y)) => x < y,
        _ => return Err(BAD_COMPARISON_TYPE.into()),
    })
}

fn le(a: &Value, b: &Value) -> Result<bool, String> {
    let less = lt(a, b)?;
    if less {
        return Ok(true);
    }
    eq(a, std::slice::from_ref(b))
}
