//! The evaluator: walks the promql-parser AST and evaluates every node over the whole
//! query range at once ("range evaluation", as Prometheus does), on per-series columns.
//!
//! Every instant-vector node yields a list of [`Pts`]: a series with one point per step
//! at which it has a value, timestamps on the step grid. Scalars are dense per step.
//! Selectors fetch their data once for the whole range and slide windows over it.
//! A selector that an aggregation takes straight (`sum by (le) (rate(x[1m]))`) keeps
//! only the grouping labels of each series ([`Ev::grouping`]): the aggregation never
//! outputs the others, and copying every series' labels cost more than its sums.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use promql_parser::label::MatchOp;
use promql_parser::parser::{
    self, AtModifier, Expr, MatrixSelector, Offset, SubqueryExpr, VectorSelector,
};

use super::value::{EngineOptions, QueryError, QueryResult, Sample, Value};
use crate::model::labels::{Label, Labels, MatchKind, Matcher, METRIC_NAME};
use crate::model::Series;
use crate::model::{is_stale_nan, LabelsView, SelectError, Storage};

/// A series of an evaluated instant vector (or of a range vector, for `Val::Range`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Pts {
    pub labels: Labels,
    /// `__name__` is to be dropped at the end (delayed name removal) or was dropped.
    pub drop_name: bool,
    pub ts: Vec<i64>,
    pub vs: Vec<f64>,
}

impl Pts {
    pub fn new(labels: Labels, drop_name: bool) -> Pts {
        Pts {
            labels,
            drop_name,
            ts: Vec::new(),
            vs: Vec::new(),
        }
    }
}

pub(crate) use crate::model::Points;

/// One series' samples: timestamps and values.
pub(crate) type Window<'a> = (&'a [i64], &'a [f64]);

/// An evaluated node.
pub(crate) enum Val {
    Vector(Vec<Pts>),
    /// One value per step.
    Scalar(Vec<f64>),
    Str(String),
    /// A range vector (only for instant queries): raw samples per series.
    Range(Vec<Pts>),
}

impl Val {
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Vector(_) => "instant vector",
            Val::Scalar(_) => "scalar",
            Val::Str(_) => "string",
            Val::Range(_) => "range vector",
        }
    }
}

pub(crate) fn exec_err<T>(msg: impl Into<String>) -> Result<T, QueryError> {
    Err(QueryError::Execution(msg.into()))
}

pub(crate) const DUPLICATE_LABELSET: &str = "vector cannot contain metrics with the same labelset";

/// Labels a name-dropping operation removes: `__name__` and the type-and-unit
/// metadata labels (Prometheus's `schema.IsMetadataLabel`).
pub(crate) fn is_metadata_label(name: &str) -> bool {
    name == METRIC_NAME || name == "__type__" || name == "__unit__"
}

pub(crate) fn drop_metric_name(l: &Labels) -> Labels {
    if !l.iter().any(|x| is_metadata_label(&x.name)) {
        return l.clone();
    }
    Labels::new(
        l.iter()
            .filter(|x| !is_metadata_label(&x.name))
            .cloned()
            .collect(),
    )
}

/// The grouping labels of a series (after a name-dropping operation, if `drop_name`).
pub(crate) fn grouping_labels(labels: &dyn LabelsView, g: &Grouping, drop_name: bool) -> Labels {
    let mut kept = Vec::new();
    labels.for_each_label(&mut |name, value| {
        if g.keeps(name) && !(drop_name && is_metadata_label(name)) {
            kept.push(Label {
                name: name.clone(),
                value: value.clone(),
            });
        }
    });
    Labels::from_sorted(kept)
}

/// Prometheus's `labels.String()`: `{__name__="x", a="b"}`.
pub(crate) fn go_labels_string(l: &Labels) -> String {
    let mut s = String::from("{");
    for (i, x) in l.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&x.name);
        s.push('=');
        s.push_str(&crate::model::labels::go_quote(&x.value));
    }
    s.push('}');
    s
}

pub(crate) fn duration_ms(d: &Duration) -> i64 {
    d.as_millis() as i64
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// The PromQL engine.
#[derive(Clone, Debug, Default)]
pub struct Engine {
    opts: EngineOptions,
}

/// Parses a query with promql-parser, mapping its error to [`QueryError::Parse`].
/// Recent parses are kept: a dashboard sends the same queries on every refresh, and
/// parsing is a noticeable share of a light panel's time (docs/performance.md).
pub fn parse_expr(query: &str) -> Result<Expr, QueryError> {
    /// Distinct queries kept; when full, the map starts over.
    const KEPT: usize = 512;
    static PARSED: std::sync::Mutex<Option<HashMap<String, Expr>>> = std::sync::Mutex::new(None);
    let parsed = || PARSED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = parsed().as_ref().and_then(|m| m.get(query)) {
        return Ok(e.clone());
    }
    let e = parse_uncached(query)?;
    let mut m = parsed();
    let m = m.get_or_insert_with(HashMap::new);
    if m.len() >= KEPT {
        m.clear();
    }
    m.insert(query.to_string(), e.clone());
    Ok(e)
}

fn parse_uncached(query: &str) -> Result<Expr, QueryError> {
    // A panic inside the parser must not take the process down.
    let parsed = std::panic::catch_unwind(|| parser::parse(query)).unwrap_or_else(|_| {
        Err("internal parser error (the query could not be parsed)".to_string())
    });
    parsed.map_err(|m| {
        let position = parse_position(query, &m);
        QueryError::Parse {
            message: m,
            position,
        }
    })
}

/// The byte offset of the first unmatched closing bracket, or of the first opening
/// bracket left unclosed.
fn unbalanced_bracket(query: &str) -> Option<usize> {
    let mut stack: Vec<(usize, char)> = Vec::new();
    let mut in_str: Option<char> = None;
    let mut escaped = false;
    for (i, c) in query.char_indices() {
        if let Some(q) = in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' && q != '`' {
                escaped = true;
            } else if c == q {
                in_str = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => in_str = Some(c),
            '(' | '[' | '{' => stack.push((i, c)),
            ')' | ']' | '}' => {
                let want = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                match stack.pop() {
                    Some((_, o)) if o == want => {}
                    _ => return Some(i),
                }
            }
            '#' => break,
            _ => {}
        }
    }
    stack.first().map(|&(i, _)| i)
}

/// promql-parser's errors carry no position; recover one where the message lets us:
/// the named function/aggregation, an unclosed parenthesis, or a quoted token.
fn parse_position(query: &str, msg: &str) -> Option<usize> {
    if msg.contains("unclosed left parenthesis") {
        let mut stack = Vec::new();
        let mut in_str: Option<char> = None;
        let mut prev = ' ';
        for (i, c) in query.char_indices() {
            if let Some(q) = in_str {
                if c == q && prev != '\\' {
                    in_str = None;
                }
                prev = c;
                continue;
            }
            match c {
                '"' | '\'' | '`' => in_str = Some(c),
                '(' => stack.push(i),
                ')' => {
                    stack.pop();
                }
                _ => {}
            }
            prev = c;
        }
        return stack.first().copied();
    }
    // Any unbalanced bracket is the likeliest culprit of a generic grammar error.
    if let Some(p) = unbalanced_bracket(query) {
        return Some(p);
    }
    // A quoted name in the message ('rate', "foo"): its first occurrence.
    for q in ['\'', '"'] {
        if let Some(i) = msg.find(q) {
            if let Some(j) = msg[i + 1..].find(q) {
                let name = &msg[i + 1..i + 1 + j];
                if !name.is_empty() {
                    if let Some(p) = query.find(name) {
                        return Some(p);
                    }
                }
            }
        }
    }
    None
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Engine {
        Engine { opts }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    pub fn instant_query(
        &self,
        storage: &dyn Storage,
        expr: &str,
        time_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        let e = parse_expr(expr)?;
        self.exec_instant(storage, &e, expr, time_ms)
    }

    pub fn range_query(
        &self,
        storage: &dyn Storage,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        let e = parse_expr(expr)?;
        self.exec_range(storage, &e, expr, start_ms, end_ms, step_ms)
    }

    /// Evaluates an already parsed query (annotation positions refer to its
    /// re-rendered text).
    pub fn instant_query_expr(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        time_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        self.exec_instant(storage, expr, &expr.to_string(), time_ms)
    }

    pub fn range_query_expr(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        self.exec_range(storage, expr, &expr.to_string(), start_ms, end_ms, step_ms)
    }

    fn exec_instant(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        text: &str,
        time_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        guard(|| self.exec_instant_inner(storage, expr, text, time_ms))
    }

    fn exec_instant_inner(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        text: &str,
        time_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        check_supported(expr)?;
        let mut ev = Ev::new(storage, &self.opts, time_ms, time_ms, 1);
        ev.query = text.to_string();
        let val = ev.eval(expr)?;
        let val = ev.finish(val)?;
        let value = match val {
            Val::Vector(v) => Value::Vector(
                v.into_iter()
                    .filter_map(|p| {
                        p.vs.first().map(|&v| Sample {
                            labels: p.labels,
                            t: time_ms,
                            v,
                        })
                    })
                    .collect(),
            ),
            Val::Scalar(s) => Value::Scalar {
                t: time_ms,
                v: s.first().copied().unwrap_or(f64::NAN),
            },
            Val::Str(s) => Value::String { t: time_ms, v: s },
            Val::Range(r) => Value::Matrix(sorted_matrix(r)),
        };
        self.check_result_series(&value)?;
        Ok(QueryResult {
            value,
            warnings: dedup(ev.warnings),
            infos: dedup(ev.infos),
        })
    }

    fn exec_range(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        text: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        guard(|| self.exec_range_inner(storage, expr, text, start_ms, end_ms, step_ms))
    }

    fn exec_range_inner(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        text: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        check_supported(expr)?;
        if step_ms <= 0 {
            return exec_err("zero or negative query resolution step widths are not accepted. Try a positive integer");
        }
        if end_ms < start_ms {
            return exec_err("end timestamp must not be before start time");
        }
        match expr.value_type() {
            parser::value::ValueType::Vector | parser::value::ValueType::Scalar => {}
            parser::value::ValueType::Matrix => {
                return Err(QueryError::InvalidRangeQueryType {
                    found: "range vector",
                })
            }
            _ => return Err(QueryError::InvalidRangeQueryType { found: "string" }),
        }
        let mut ev = Ev::new(storage, &self.opts, start_ms, end_ms, step_ms);
        ev.query = text.to_string();
        let val = ev.eval(expr)?;
        let val = ev.finish(val)?;
        let series = match val {
            Val::Vector(v) => v,
            Val::Scalar(s) => {
                let mut p = Pts::new(Labels::empty(), false);
                for (i, v) in s.into_iter().enumerate() {
                    p.ts.push(start_ms + i as i64 * step_ms);
                    p.vs.push(v);
                }
                vec![p]
            }
            other => {
                return Err(QueryError::InvalidRangeQueryType {
                    found: other.type_name(),
                })
            }
        };
        let value = Value::Matrix(sorted_matrix(series));
        self.check_result_series(&value)?;
        Ok(QueryResult {
            value,
            warnings: dedup(ev.warnings),
            infos: dedup(ev.infos),
        })
    }

    fn check_result_series(&self, v: &Value) -> Result<(), QueryError> {
        let limit = self.opts.max_result_series;
        if limit == 0 {
            return Ok(());
        }
        let n = match v {
            Value::Vector(v) => v.len(),
            Value::Matrix(m) => m.len(),
            _ => 0,
        };
        if n > limit {
            return Err(QueryError::TooManySeries { limit });
        }
        Ok(())
    }
}

/// Turns a panic during evaluation into an error: a bad query must never take the
/// process down.
fn guard(f: impl FnOnce() -> Result<QueryResult, QueryError>) -> Result<QueryResult, QueryError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(QueryError::Execution(format!(
            "internal error while evaluating the query: {msg}"
        )))
    })
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.into_iter().filter(|s| seen.insert(s.clone())).collect()
}

/// Best-effort source position (` (line:col)`) of argument `arg` of the first call
/// or aggregation named `name` in `query`, or of the call itself when `arg` is None.
/// promql-parser keeps no positions, so this finds them in the text.
pub(crate) fn source_pos(query: &str, name: &str, arg: Option<usize>) -> String {
    let b = query.as_bytes();
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let fmt = |off: usize| {
        let line = query[..off].matches('\n').count() + 1;
        let col = off - query[..off].rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        format!(" ({line}:{col})")
    };
    let mut from = 0;
    while let Some(rel) = query[from..].find(name) {
        let start = from + rel;
        from = start + name.len();
        if start > 0 && is_ident(b[start - 1]) {
            continue;
        }
        let mut i = start + name.len();
        if i < b.len() && is_ident(b[i]) {
            continue;
        }
        let skip_ws = |mut i: usize| {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            i
        };
        i = skip_ws(i);
        // Aggregation clause before the arguments: by (...) / without (...).
        for kw in ["by", "without"] {
            if query[i..].to_ascii_lowercase().starts_with(kw)
                && !b.get(i + kw.len()).is_some_and(|&c| is_ident(c))
            {
                i = skip_ws(i + kw.len());
                if b.get(i) == Some(&b'(') {
                    while i < b.len() && b[i] != b')' {
                        i += 1;
                    }
                    i = skip_ws(i + 1);
                }
            }
        }
        if b.get(i) != Some(&b'(') {
            continue;
        }
        let Some(want) = arg else {
            return fmt(start);
        };
        let (mut depth, mut k, mut j) = (0i32, 0usize, i + 1);
        let mut in_str: Option<u8> = None;
        let mut arg_start = skip_ws(j);
        while j < b.len() {
            let c = b[j];
            if let Some(q) = in_str {
                if c == b'\\' {
                    j += 2;
                    continue;
                }
                if c == q {
                    in_str = None;
                }
            } else {
                match c {
                    b'"' | b'\'' | b'`' => in_str = Some(c),
                    b'(' | b'[' | b'{' => depth += 1,
                    b')' | b']' | b'}' if depth == 0 => break,
                    b')' | b']' | b'}' => depth -= 1,
                    b',' if depth == 0 => {
                        if k == want {
                            break;
                        }
                        k += 1;
                        arg_start = skip_ws(j + 1);
                    }
                    _ => {}
                }
            }
            j += 1;
        }
        if k == want {
            return fmt(arg_start);
        }
        return String::new();
    }
    String::new()
}

fn sorted_matrix(v: Vec<Pts>) -> Vec<Series> {
    let mut out: Vec<Series> = v
        .into_iter()
        .filter(|p| !p.ts.is_empty())
        .map(|p| Series {
            labels: p.labels,
            timestamps: p.ts,
            values: p.vs,
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

/// Rejects syntax this engine does not evaluate before running anything.
fn check_supported(e: &Expr) -> Result<(), QueryError> {
    match e {
        Expr::Extension(_) => Err(QueryError::Unsupported(
            "extension expressions are not supported".into(),
        )),
        Expr::Aggregate(a) => {
            check_supported(&a.expr)?;
            if let Some(p) = &a.param {
                check_supported(p)?;
            }
            Ok(())
        }
        Expr::Unary(u) => check_supported(&u.expr),
        Expr::Binary(b) => {
            check_supported(&b.lhs)?;
            check_supported(&b.rhs)
        }
        Expr::Paren(p) => check_supported(&p.expr),
        Expr::Subquery(s) => check_supported(&s.expr),
        Expr::Call(c) => {
            for a in &c.args.args {
                check_supported(a)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The evaluation state of one query (and, with saved/restored times, its subqueries).
pub(crate) struct Ev<'a> {
    pub storage: &'a dyn Storage,
    pub opts: &'a EngineOptions,
    pub start: i64,
    pub end: i64,
    pub interval: i64,
    pub query_start: i64,
    pub query_end: i64,
    /// The query's step (0 for an instant query).
    pub query_step: i64,
    pub lookback: i64,
    deadline: Instant,
    pub samples: usize,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
    /// The query text, for annotation positions.
    pub query: String,
    /// Set by an aggregation whose argument is a selector (or a range function of
    /// one) for that selector: its series need only their grouping labels.
    pub grouping: Option<Grouping>,
}

/// An aggregation's grouping: the labels `by` keeps (or `without` drops), sorted.
#[derive(Clone, Debug)]
pub(crate) struct Grouping {
    pub without: bool,
    pub names: Vec<String>,
}

impl Grouping {
    /// Whether a label of an argument series is part of its group's labels.
    #[inline]
    pub fn keeps(&self, name: &str) -> bool {
        if self.without {
            name != METRIC_NAME && !self.names.iter().any(|g| g == name)
        } else {
            self.names.iter().any(|g| g == name)
        }
    }
}

/// A range-vector argument of a function: its series (staleness markers removed)
/// and how to place the window for a step.
pub(crate) struct RangeArg {
    pub series: Vec<Pts>,
    pub range: i64,
    pub offset: i64,
    pub at: Option<i64>,
    /// The selector's label matchers, for `absent_over_time`.
    pub matchers: Option<Vec<Matcher>>,
}

impl<'a> Ev<'a> {
    pub fn new(
        storage: &'a dyn Storage,
        opts: &'a EngineOptions,
        start: i64,
        end: i64,
        interval: i64,
    ) -> Ev<'a> {
        let now = Instant::now();
        Ev {
            storage,
            opts,
            start,
            end,
            interval,
            query_start: start,
            query_end: end,
            query_step: if start == end { 0 } else { interval },
            lookback: duration_ms(&opts.lookback_delta),
            deadline: now + opts.timeout,
            samples: 0,
            warnings: Vec::new(),
            infos: Vec::new(),
            query: String::new(),
            grouping: None,
        }
    }

    pub fn nsteps(&self) -> usize {
        ((self.end - self.start) / self.interval + 1) as usize
    }

    #[inline]
    pub fn step_ts(&self, i: usize) -> i64 {
        self.start + i as i64 * self.interval
    }

    #[inline]
    pub fn step_idx(&self, t: i64) -> usize {
        ((t - self.start) / self.interval) as usize
    }

    pub fn delayed(&self) -> bool {
        self.opts.delayed_name_removal
    }

    pub fn check_timeout(&self) -> Result<(), QueryError> {
        if Instant::now() > self.deadline {
            return Err(QueryError::Timeout(self.opts.timeout));
        }
        Ok(())
    }

    /// Accounts `n` more samples held in memory.
    pub fn add_samples(&mut self, n: usize) -> Result<(), QueryError> {
        self.samples += n;
        if self.samples > self.opts.max_samples {
            return Err(QueryError::TooManySamples {
                limit: self.opts.max_samples,
            });
        }
        Ok(())
    }

    /// `f`'s points for each item, computed on every core when there is enough
    /// `work` (samples touched). Fails on a timeout, and as soon as the points
    /// produced, with what the query already holds, pass the sample limit. The caller
    /// accounts the points it keeps with [`add_samples`](Self::add_samples).
    pub fn map_points<T: Send>(
        &self,
        items: Vec<T>,
        work: usize,
        f: impl Fn(T) -> Result<Points, QueryError> + Sync,
    ) -> Result<Vec<Points>, QueryError> {
        let produced = AtomicUsize::new(self.samples);
        crate::par::map(items, work, |it| {
            self.check_timeout()?;
            let p = f(it)?;
            self.charge(&produced, p.0.len())?;
            Ok(p)
        })
    }

    /// Adds `n` points to those a parallel map has produced (`produced`, which starts
    /// at what the query already holds); fails past the sample limit.
    fn charge(&self, produced: &AtomicUsize, n: usize) -> Result<(), QueryError> {
        if produced.fetch_add(n, Ordering::Relaxed) + n > self.opts.max_samples {
            return Err(QueryError::TooManySamples {
                limit: self.opts.max_samples,
            });
        }
        Ok(())
    }

    /// Labels after a name-dropping operation: dropped now, or flagged for later.
    pub fn name_dropped(&self, l: &Labels) -> Labels {
        if self.delayed() {
            l.clone()
        } else {
            drop_metric_name(l)
        }
    }

    /// End-of-query cleanup for delayed name removal.
    pub fn finish(&mut self, v: Val) -> Result<Val, QueryError> {
        if !self.delayed() {
            return Ok(v);
        }
        match v {
            Val::Vector(mut m) => {
                for p in m.iter_mut() {
                    if p.drop_name {
                        p.labels = drop_metric_name(&p.labels);
                    }
                }
                Ok(Val::Vector(merge_same_labels(m)?))
            }
            Val::Range(mut m) => {
                for p in m.iter_mut() {
                    if p.drop_name {
                        p.labels = drop_metric_name(&p.labels);
                    }
                }
                Ok(Val::Range(merge_same_labels(m)?))
            }
            other => Ok(other),
        }
    }

    pub fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.query_start),
            Some(AtModifier::End) => Some(self.query_end),
            Some(AtModifier::At(t)) => Some(system_time_ms(t)),
        }
    }

    /// Evaluates a node. Sample accounting follows Prometheus: while a node runs,
    /// its inputs count against `max_samples`; afterwards only its output does.
    pub fn eval(&mut self, e: &Expr) -> Result<Val, QueryError> {
        let before = self.samples;
        let v = self.eval_node(e)?;
        let held = match &v {
            Val::Vector(m) | Val::Range(m) => m.iter().map(|p| p.ts.len()).sum(),
            Val::Scalar(s) => s.len(),
            Val::Str(_) => 0,
        };
        self.samples = before;
        self.add_samples(held)?;
        Ok(v)
    }

    fn eval_node(&mut self, e: &Expr) -> Result<Val, QueryError> {
        self.check_timeout()?;
        // Scalars are dense over the step grid: a grid with more steps than the
        // sample limit cannot be held (this also bounds subqueries like `x[1y:1s]`).
        if self.nsteps() > self.opts.max_samples {
            return Err(QueryError::TooManySamples {
                limit: self.opts.max_samples,
            });
        }
        match e {
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; self.nsteps()])),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Unary(u) => {
                let v = self.eval(&u.expr)?;
                match v {
                    Val::Scalar(mut s) => {
                        for x in s.iter_mut() {
                            *x = -*x;
                        }
                        Ok(Val::Scalar(s))
                    }
                    Val::Vector(mut m) => {
                        for p in m.iter_mut() {
                            p.labels = self.name_dropped(&p.labels);
                            p.drop_name = true;
                            for x in p.vs.iter_mut() {
                                *x = -*x;
                            }
                        }
                        if !self.delayed() {
                            m = merge_same_labels(m)?;
                        }
                        Ok(Val::Vector(m))
                    }
                    other => exec_err(format!(
                        "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                        other.type_name()
                    )),
                }
            }
            Expr::VectorSelector(vs) => Ok(Val::Vector(self.eval_vector_selector(vs)?)),
            Expr::MatrixSelector(ms) => {
                if self.start != self.end {
                    return exec_err("cannot do range evaluation of matrix selector");
                }
                let arg = self.eval_matrix_selector(ms)?;
                Ok(Val::Range(self.range_arg_to_instant_matrix(arg)))
            }
            Expr::Subquery(sq) => {
                if self.start != self.end {
                    return exec_err("cannot do range evaluation of subquery");
                }
                let arg = self.eval_subquery(sq)?;
                Ok(Val::Range(self.range_arg_to_instant_matrix(arg)))
            }
            Expr::Call(c) => super::functions::eval_call(self, c),
            Expr::Aggregate(a) => super::aggregate::eval_aggregate(self, a),
            Expr::Binary(b) => super::binary::eval_binary(self, b),
            Expr::Extension(_) => Err(QueryError::Unsupported(
                "extension expressions are not supported".into(),
            )),
        }
    }

    pub fn eval_vector(&mut self, e: &Expr) -> Result<Vec<Pts>, QueryError> {
        match self.eval(e)? {
            Val::Vector(v) => Ok(v),
            other => exec_err(format!(
                "expected instant vector, got {}",
                other.type_name()
            )),
        }
    }

    pub fn eval_scalar(&mut self, e: &Expr) -> Result<Vec<f64>, QueryError> {
        match self.eval(e)? {
            Val::Scalar(v) => Ok(v),
            other => exec_err(format!("expected scalar, got {}", other.type_name())),
        }
    }

    /// The storage matchers of a selector (the metric name included), one set per
    /// `or` alternative.
    pub fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>, QueryError> {
        let convert = |m: &promql_parser::label::Matcher| -> Result<Matcher, QueryError> {
            let kind = match m.op {
                MatchOp::Equal => MatchKind::Equal,
                MatchOp::NotEqual => MatchKind::NotEqual,
                MatchOp::Re(_) => MatchKind::Regex,
                MatchOp::NotRe(_) => MatchKind::NotRegex,
            };
            Matcher::new(kind, &m.name, &m.value).map_err(|e| QueryError::Parse {
                message: e.to_string(),
                position: None,
            })
        };
        let mut base = Vec::new();
        if let Some(n) = &vs.name {
            base.push(Matcher::equal(METRIC_NAME, n));
        }
        for m in &vs.matchers.matchers {
            base.push(convert(m)?);
        }
        if vs.matchers.or_matchers.is_empty() {
            return Ok(vec![base]);
        }
        let mut sets = Vec::new();
        for group in &vs.matchers.or_matchers {
            let mut set = base.clone();
            for m in group {
                set.push(convert(m)?);
            }
            sets.push(set);
        }
        Ok(sets)
    }

    /// A selector's series in `[mint, maxt]`, each turned into points by `f` as it is
    /// read, sorted by labels; series without points are left out. Each keeps its
    /// whole label set, or with `grouping` only its grouping labels (after `__name__`
    /// is dropped, if `drop_name`). The query's timeout and sample limit apply to the
    /// points produced.
    pub fn select_points(
        &self,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
        grouping: Option<&Grouping>,
        drop_name: bool,
        f: impl Fn(&dyn LabelsView, &mut Vec<i64>, &mut Vec<f64>) -> Result<Points, QueryError> + Sync,
    ) -> Result<Vec<(Labels, Points)>, QueryError> {
        let produced = AtomicUsize::new(self.samples);
        let sets = Self::selector_matchers(vs)?;
        // Alternatives are merged by whole label sets, grouped once merged.
        let (grouping, grouped_after) = if sets.len() == 1 {
            (grouping, None)
        } else {
            (None, grouping)
        };
        let points = |labels: &dyn LabelsView, ts: &mut Vec<i64>, vs: &mut Vec<f64>| {
            self.check_timeout()?;
            let p = f(labels, ts, vs)?;
            if p.0.is_empty() {
                return Ok(None);
            }
            self.charge(&produced, p.0.len())?;
            let kept = match grouping {
                Some(g) => grouping_labels(labels, g, drop_name),
                None => labels.to_labels(),
            };
            Ok(Some((kept, p)))
        };
        let limited = |labels: &dyn LabelsView, ts: &mut Vec<i64>, vs: &mut Vec<f64>| {
            points(labels, ts, vs).map_err(|e: QueryError| SelectError::from(e))
        };
        if sets.len() == 1 {
            // Result order (topk, sort ties, `or`) follows series order, which the
            // storage gives sorted by labels, as Prometheus's does.
            return Ok(self.storage.select_with(&sets[0], mint, maxt, &limited)?);
        }
        let mut all = Vec::new();
        let mut seen: HashMap<Labels, ()> = HashMap::new();
        for set in &sets {
            for (labels, p) in self.storage.select_with(set, mint, maxt, &limited)? {
                if seen.insert(labels.clone(), ()).is_none() {
                    all.push((labels, p));
                }
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(g) = grouped_after {
            for (labels, _) in all.iter_mut() {
                *labels = grouping_labels(&*labels, g, drop_name);
            }
        }
        Ok(all)
    }

    /// A selector's series with their samples in `[mint, maxt]`.
    fn select(
        &mut self,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, QueryError> {
        let got = self.select_points(vs, mint, maxt, None, false, |_, ts, vs| {
            Ok((std::mem::take(ts), std::mem::take(vs)))
        })?;
        Ok(got.into_iter().map(Series::from).collect())
    }

    pub fn eval_vector_selector(&mut self, vs: &VectorSelector) -> Result<Vec<Pts>, QueryError> {
        let grouping = self.grouping.take();
        let off = offset_ms(&vs.offset);
        let at = self.at_ms(&vs.at);
        let (lo_ref, hi_ref) = match at {
            Some(a) => (a - off, a - off),
            None => (self.start - off, self.end - off),
        };
        let n = self.nsteps();
        let lookback = self.lookback;
        // Each series' points are taken as soon as its samples are read.
        let points = self.select_points(
            vs,
            lo_ref - lookback + 1,
            hi_ref,
            grouping.as_ref(),
            false,
            |_, st, sv| {
                let (mut ts, mut vs) = (Vec::new(), Vec::new());
                if let Some(a) = at {
                    let r = a - off;
                    let j = st.partition_point(|&t| t <= r);
                    if j > 0 && st[j - 1] > r - lookback && !is_stale_nan(sv[j - 1]) {
                        ts = (0..n).map(|i| self.step_ts(i)).collect();
                        vs = vec![sv[j - 1]; n];
                    }
                    return Ok((ts, vs));
                }
                let mut j = 0;
                let len = st.len();
                // Room for a point at every step, the usual case; at most 8 steps per
                // sample for a series that is there only part of the range.
                let points = n.min(len.saturating_mul(8));
                ts.reserve(points);
                vs.reserve(points);
                for i in 0..n {
                    let t = self.step_ts(i);
                    let r = t - off;
                    while j < len && st[j] <= r {
                        j += 1;
                    }
                    if j > 0 {
                        let k = j - 1;
                        if st[k] > r - lookback && !is_stale_nan(sv[k]) {
                            ts.push(t);
                            vs.push(sv[k]);
                        }
                    }
                }
                Ok((ts, vs))
            },
        )?;
        let mut out = Vec::with_capacity(points.len());
        for (labels, (ts, vs)) in points {
            self.add_samples(ts.len())?;
            out.push(Pts {
                labels,
                drop_name: false,
                ts,
                vs,
            });
        }
        Ok(out)
    }

    /// For `timestamp(selector)`: like a selector but yields the sample timestamps.
    pub fn eval_vector_selector_timestamps(
        &mut self,
        vs: &VectorSelector,
    ) -> Result<Vec<Pts>, QueryError> {
        let off = offset_ms(&vs.offset);
        let at = self.at_ms(&vs.at);
        let (lo_ref, hi_ref) = match at {
            Some(a) => (a - off, a - off),
            None => (self.start - off, self.end - off),
        };
        let raw = self.select(vs, lo_ref - self.lookback + 1, hi_ref)?;
        let n = self.nsteps();
        let lookback = self.lookback;
        let mut out = Vec::with_capacity(raw.len());
        for s in raw {
            let mut p = Pts::new(s.labels, false);
            for i in 0..n {
                let t = self.step_ts(i);
                let r = at.unwrap_or(t) - off;
                let j = s.timestamps.partition_point(|&x| x <= r);
                if j > 0 && s.timestamps[j - 1] > r - lookback && !is_stale_nan(s.values[j - 1]) {
                    p.ts.push(t);
                    p.vs.push(s.timestamps[j - 1] as f64 / 1000.0);
                }
            }
            if !p.ts.is_empty() {
                self.add_samples(p.ts.len())?;
                out.push(p);
            }
        }
        Ok(out)
    }

    /// A matrix selector's window (its series still empty) and the time range its
    /// samples are selected from.
    pub fn matrix_window(&self, ms: &MatrixSelector) -> Result<(RangeArg, i64, i64), QueryError> {
        let vs = &ms.vs;
        let off = offset_ms(&vs.offset);
        let at = self.at_ms(&vs.at);
        let range = duration_ms(&ms.range);
        let (lo_ref, hi_ref) = match at {
            Some(a) => (a - off, a - off),
            None => (self.start - off, self.end - off),
        };
        let arg = RangeArg {
            series: Vec::new(),
            range,
            offset: off,
            at,
            matchers: Self::selector_matchers(vs)?.into_iter().next(),
        };
        Ok((arg, lo_ref - range + 1, hi_ref))
    }

    pub fn eval_matrix_selector(&mut self, ms: &MatrixSelector) -> Result<RangeArg, QueryError> {
        let (mut arg, mint, maxt) = self.matrix_window(ms)?;
        let raw = self.select(&ms.vs, mint, maxt)?;
        let mut total = 0;
        arg.series = raw
            .into_iter()
            .map(|mut s| {
                remove_stale(&mut s.timestamps, &mut s.values);
                total += s.timestamps.len();
                Pts {
                    labels: s.labels,
                    drop_name: false,
                    ts: s.timestamps,
                    vs: s.values,
                }
            })
            .collect();
        // An instant query holds all loaded samples at once; a range query holds
        // one window per series at a time (charged by the caller per output point).
        if self.start == self.end {
            self.add_samples(total)?;
        }
        Ok(arg)
    }

    /// Evaluates a subquery's inner expression on its own step grid.
    pub fn eval_subquery(&mut self, sq: &SubqueryExpr) -> Result<RangeArg, QueryError> {
        let off = offset_ms(&sq.offset);
        let at = self.at_ms(&sq.at);
        let range = duration_ms(&sq.range);
        let step = match &sq.step {
            Some(s) if !s.is_zero() => duration_ms(s),
            _ => duration_ms(&self.opts.default_subquery_step).max(1),
        };
        let (outer_start, outer_end) = match at {
            Some(a) => (a, a),
            None => (self.start, self.end),
        };
        let base = outer_start - off - range;
        let mut new_start = step * (base / step);
        if new_start <= base {
            new_start += step;
        }
        let new_end = outer_end - off;
        let saved = (self.start, self.end, self.interval);
        let result = if new_end < new_start {
            Ok(Val::Vector(Vec::new()))
        } else {
            self.start = new_start;
            self.end = new_end;
            self.interval = step;
            let r = self.eval(&sq.expr);
            (self.start, self.end, self.interval) = saved;
            r
        };
        let series = match result? {
            Val::Vector(v) => v,
            Val::Scalar(s) => {
                let mut p = Pts::new(Labels::empty(), false);
                let mut t = new_start;
                for v in s {
                    p.ts.push(t);
                    p.vs.push(v);
                    t += step;
                }
                vec![p]
            }
            other => {
                return exec_err(format!(
                    "subquery is only allowed on instant vector or scalar, got {}",
                    other.type_name()
                ))
            }
        };
        let series = series
            .into_iter()
            .map(|mut p| {
                if p.drop_name {
                    p.labels = drop_metric_name(&p.labels);
                    p.drop_name = false;
                }
                p
            })
            .collect();
        Ok(RangeArg {
            series,
            range,
            offset: off,
            at,
            matchers: None,
        })
    }

    pub fn eval_range_arg(&mut self, e: &Expr) -> Result<RangeArg, QueryError> {
        match e {
            Expr::MatrixSelector(ms) => self.eval_matrix_selector(ms),
            Expr::Subquery(sq) => self.eval_subquery(sq),
            Expr::Paren(p) => self.eval_range_arg(&p.expr),
            _ => exec_err("expected range vector argument"),
        }
    }

    /// An instant query's range-vector result: the samples in `(t-range, t]`.
    fn range_arg_to_instant_matrix(&mut self, arg: RangeArg) -> Vec<Pts> {
        let r = arg.at.unwrap_or(self.start) - arg.offset;
        let mut out = Vec::new();
        for s in arg.series {
            let lo = s.ts.partition_point(|&t| t <= r - arg.range);
            let hi = s.ts.partition_point(|&t| t <= r);
            if hi > lo {
                out.push(Pts {
                    labels: s.labels,
                    drop_name: s.drop_name,
                    ts: s.ts[lo..hi].to_vec(),
                    vs: s.vs[lo..hi].to_vec(),
                });
            }
        }
        out
    }

    /// Slides the window of `arg` over the steps for one series, calling `f` with
    /// (step time, window end, window timestamps, window values) for each non-empty window.
    #[inline]
    pub fn slide<F>(&self, arg: &RangeArg, (sts, svs): Window<'_>, mut f: F) -> Points
    where
        F: FnMut(usize, i64, i64, &[i64], &[f64]) -> Option<f64>,
    {
        let n = self.nsteps();
        // Room for a point at every step, the usual case; at most 8 steps per
        // sample for a series that is there only part of the range.
        let room = n.min(sts.len().saturating_mul(8));
        let mut ots = Vec::with_capacity(room);
        let mut ovs = Vec::with_capacity(room);
        let (mut lo, mut hi) = (0usize, 0usize);
        let len = sts.len();
        for i in 0..n {
            let t = self.step_ts(i);
            let r = arg.at.unwrap_or(t) - arg.offset;
            if arg.at.is_some() {
                lo = sts.partition_point(|&x| x <= r - arg.range);
                hi = sts.partition_point(|&x| x <= r);
            } else {
                while lo < len && sts[lo] <= r - arg.range {
                    lo += 1;
                }
                if hi < lo {
                    hi = lo;
                }
                while hi < len && sts[hi] <= r {
                    hi += 1;
                }
            }
            if hi > lo {
                if let Some(v) = f(i, t, r, &sts[lo..hi], &svs[lo..hi]) {
                    ots.push(t);
                    ovs.push(v);
                }
            }
        }
        (ots, ovs)
    }
}

/// Removes a series' staleness markers, which range functions never see.
pub(crate) fn remove_stale(ts: &mut Vec<i64>, vs: &mut Vec<f64>) {
    let Some(first) = vs.iter().position(|v| is_stale_nan(*v)) else {
        return;
    };
    let mut kept = first;
    for i in first + 1..vs.len().min(ts.len()) {
        if !is_stale_nan(vs[i]) {
            ts[kept] = ts[i];
            vs[kept] = vs[i];
            kept += 1;
        }
    }
    ts.truncate(kept);
    vs.truncate(kept);
}

/// Merges series with equal label sets whose points do not overlap; overlapping
/// points are Prometheus's "vector cannot contain metrics with the same labelset".
pub(crate) fn merge_same_labels(m: Vec<Pts>) -> Result<Vec<Pts>, QueryError> {
    if m.len() <= 1 {
        return Ok(m);
    }
    let mut idx: HashMap<Labels, usize> = HashMap::with_capacity(m.len());
    let mut dup = false;
    for (i, p) in m.iter().enumerate() {
        if idx.insert(p.labels.clone(), i).is_some() {
            dup = true;
            break;
        }
    }
    if !dup {
        return Ok(m);
    }
    let mut out: Vec<Pts> = Vec::with_capacity(m.len());
    let mut pos: HashMap<Labels, usize> = HashMap::with_capacity(m.len());
    for p in m {
        match pos.get(&p.labels) {
            None => {
                pos.insert(p.labels.clone(), out.len());
                out.push(p);
            }
            Some(&k) => {
                let base = &mut out[k];
                let mut pts: Vec<(i64, f64)> = base
                    .ts
                    .iter()
                    .copied()
                    .zip(base.vs.iter().copied())
                    .chain(p.ts.iter().copied().zip(p.vs.iter().copied()))
                    .collect();
                pts.sort_by_key(|x| x.0);
                for w in pts.windows(2) {
                    if w[0].0 == w[1].0 {
                        return exec_err(DUPLICATE_LABELSET);
                    }
                }
                base.ts = pts.iter().map(|x| x.0).collect();
                base.vs = pts.iter().map(|x| x.1).collect();
                base.drop_name |= p.drop_name;
            }
        }
    }
    Ok(out)
}

/// Collects per-step output samples into series, keyed by label set, keeping first-seen
/// order (which is the result order of an instant query).
pub(crate) struct OutBuilder {
    map: HashMap<Labels, usize>,
    pub series: Vec<Pts>,
}

impl OutBuilder {
    pub fn new() -> OutBuilder {
        OutBuilder {
            map: HashMap::new(),
            series: Vec::new(),
        }
    }

    /// The index of the output series with these labels, created empty if new.
    pub fn index_of(&mut self, labels: &Labels, drop_name: bool) -> usize {
        if let Some(&i) = self.map.get(labels) {
            return i;
        }
        self.map.insert(labels.clone(), self.series.len());
        self.series.push(Pts::new(labels.clone(), drop_name));
        self.series.len() - 1
    }

    /// Appends a point to output series `i`; a second point at the same time is a
    /// duplicate label set.
    #[inline]
    pub fn push_at(&mut self, i: usize, t: i64, v: f64) -> Result<(), QueryError> {
        let s = &mut self.series[i];
        if s.ts.last() == Some(&t) {
            return exec_err(DUPLICATE_LABELSET);
        }
        s.ts.push(t);
        s.vs.push(v);
        Ok(())
    }

    /// The series that received points, in first-seen order.
    pub fn finish(self) -> Vec<Pts> {
        self.series
            .into_iter()
            .filter(|p| !p.ts.is_empty())
            .collect()
    }

    pub fn push(
        &mut self,
        labels: Labels,
        drop_name: bool,
        t: i64,
        v: f64,
    ) -> Result<(), QueryError> {
        match self.map.get(&labels) {
            Some(&i) => {
                let s = &mut self.series[i];
                if s.ts.last() == Some(&t) {
                    return exec_err(DUPLICATE_LABELSET);
                }
                s.ts.push(t);
                s.vs.push(v);
            }
            None => {
                self.map.insert(labels.clone(), self.series.len());
                let mut p = Pts::new(labels, drop_name);
                p.ts.push(t);
                p.vs.push(v);
                self.series.push(p);
            }
        }
        Ok(())
    }
}

/// Builds a label set from a list of (name, value) edits applied to `base`.
pub(crate) fn labels_with(base: &Labels, set: &[(&str, &str)], del: &[&str]) -> Labels {
    let mut v: Vec<Label> = base
        .iter()
        .filter(|l| !del.contains(&&*l.name) && !set.iter().any(|(n, _)| *n == &*l.name))
        .cloned()
        .collect();
    for (n, val) in set {
        v.push(Label::new(*n, *val));
    }
    Labels::new(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MemStorage;

    fn store() -> MemStorage {
        let mut s = MemStorage::new();
        for (job, step) in [("a", 1.0), ("b", 2.0)] {
            let samples: Vec<(i64, f64)> =
                (0..=20).map(|i| (i * 15_000, i as f64 * step)).collect();
            s.add_samples(
                Labels::from_pairs([("__name__", "c_total"), ("job", job)]),
                &samples,
            );
        }
        s
    }

    #[test]
    fn kept_parses_are_the_parser_s_and_errors_are_not_kept() {
        for q in [
            "sum by (job) (rate(c_total{job!=\"a\"}[1m] offset 5m))",
            "histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))",
        ] {
            let fresh = parse_uncached(q).unwrap();
            assert_eq!(parse_expr(q).unwrap(), fresh);
            assert_eq!(parse_expr(q).unwrap(), fresh, "from the kept parses");
        }
        for _ in 0..2 {
            let err = parse_expr("sum(rate(x[5m])").unwrap_err().to_string();
            assert!(err.contains("unclosed"), "{err}");
        }
        // More distinct queries than are kept: each still parses to itself.
        for i in 0..1100 {
            let q = format!("up{{job=\"j{i}\"}}");
            assert_eq!(parse_expr(&q).unwrap(), parse_uncached(&q).unwrap());
        }
    }

    #[test]
    fn instant_rate_and_sum() {
        let e = Engine::new(EngineOptions::default());
        let r = e
            .instant_query(&store(), "sum by (job) (rate(c_total[1m]))", 300_000)
            .unwrap();
        let Value::Vector(v) = r.value else { panic!() };
        assert_eq!(v.len(), 2);
        let a = v.iter().find(|s| s.labels.get("job") == Some("a")).unwrap();
        assert!((a.v - 1.0 / 15.0).abs() < 1e-12);
    }

    #[test]
    fn range_query_steps_and_lookback() {
        let e = Engine::new(EngineOptions::default());
        let r = e
            .range_query(&store(), "c_total{job=\"a\"}", 0, 600_000, 60_000)
            .unwrap();
        let Value::Matrix(m) = r.value else { panic!() };
        assert_eq!(m.len(), 1);
        // Samples end at 300s; the 5m lookback keeps the last one until 599.999s.
        assert_eq!(m[0].timestamps.len(), 10);
        assert_eq!(*m[0].values.last().unwrap(), 20.0);
    }

    /// Enough series and samples that selectors and range functions run on every
    /// core: each series' result must equal the one it gets when queried alone
    /// (which stays on one thread), and the sample limit must still stop it.
    #[test]
    fn work_spread_over_cores_gives_single_series_answers() {
        let mut st = MemStorage::new();
        for i in 0..1500 {
            let mut v = i as f64 * 10.0;
            let samples: Vec<(i64, f64)> = (0..240)
                .map(|k| {
                    // A reset in every 7th series, so both rate paths run.
                    v = if i % 7 == 0 && k == 120 {
                        3.0
                    } else {
                        v + (i % 13) as f64
                    };
                    (k * 15_000 + 1_000, v)
                })
                .collect();
            st.add_samples(
                Labels::from_pairs([
                    ("__name__", "c_total"),
                    ("i", &i.to_string()),
                    ("g", &(i % 5).to_string()),
                ]),
                &samples,
            );
        }
        let e = Engine::new(EngineOptions::default());
        let (start, end) = (300_000, 3_600_000);
        for q in [
            "rate(c_total[5m])",
            "increase(c_total[2m])",
            "c_total",
            "max_over_time(c_total[1m])",
        ] {
            let Value::Matrix(all) = e.range_query(&st, q, start, end, 15_000).unwrap().value
            else {
                panic!("{q}: not a matrix")
            };
            assert_eq!(all.len(), 1500, "{q}");
            for i in [0, 1, 7, 700, 1499] {
                let one = q.replace("c_total", &format!("c_total{{i=\"{i}\"}}"));
                let Value::Matrix(m) = e.range_query(&st, &one, start, end, 15_000).unwrap().value
                else {
                    panic!("{one}: not a matrix")
                };
                let got = all
                    .iter()
                    .find(|s| s.labels.get("i") == Some(&i.to_string()));
                assert_eq!(Some(&m[0]), got, "{q} for series {i}");
            }
        }
        // Aggregations split by group across cores add each cell's series in the
        // same order as the one-step-at-a-time path (forced here) does.
        for q in [
            "sum by (g) (rate(c_total[5m]))",
            "avg by (g) (c_total)",
            "count by (g) (c_total)",
            "stddev by (g) (c_total)",
        ] {
            let spread = e.range_query(&st, q, start, end, 15_000).unwrap().value;
            crate::promql::aggregate::FORCE_STEP_MAJOR.with(|c| c.set(true));
            let one = e.range_query(&st, q, start, end, 15_000).unwrap().value;
            crate::promql::aggregate::FORCE_STEP_MAJOR.with(|c| c.set(false));
            let (Value::Matrix(a), Value::Matrix(b)) = (spread, one) else {
                panic!("{q}: not matrices")
            };
            assert_eq!(a.len(), 5, "{q}");
            assert_eq!(a, b, "{q}");
        }
        let limited = Engine::new(EngineOptions {
            max_samples: 100_000,
            ..EngineOptions::default()
        });
        for q in ["rate(c_total[5m])", "c_total"] {
            assert!(
                matches!(
                    limited.range_query(&st, q, start, end, 15_000),
                    Err(QueryError::TooManySamples { limit: 100_000 })
                ),
                "{q}"
            );
        }
    }

    #[test]
    fn errors_are_classified() {
        let e = Engine::new(EngineOptions {
            max_samples: 5,
            ..EngineOptions::default()
        });
        assert!(matches!(
            e.instant_query(&store(), "sum(", 0),
            Err(QueryError::Parse { .. })
        ));
        assert!(matches!(
            e.instant_query(&store(), "rate(x[5m]))", 0),
            Err(QueryError::Parse {
                position: Some(11),
                ..
            })
        ));
        assert!(matches!(
            e.range_query(&store(), "c_total", 0, 600_000, 15_000),
            Err(QueryError::TooManySamples { limit: 5 })
        ));
        let e = Engine::new(EngineOptions::default());
        let err = e
            .instant_query(&store(), "c_total + on() c_total", 60_000)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("many-to-many matching not allowed"),
            "{err}"
        );
        assert!(matches!(
            e.range_query(&store(), "c_total[5m]", 0, 60_000, 15_000),
            Err(QueryError::InvalidRangeQueryType {
                found: "range vector"
            })
        ));
    }
}

#[cfg(test)]
mod more_tests {
    use super::*;
    use crate::model::MemStorage;

    fn store() -> MemStorage {
        let mut s = MemStorage::new();
        let add = |s: &mut MemStorage, pairs: &[(&str, &str)], v: f64| {
            s.add_samples(
                Labels::from_pairs(pairs.iter().copied()),
                &[(0, v), (60_000, v)],
            );
        };
        add(
            &mut s,
            &[("__name__", "req"), ("job", "a"), ("inst", "1")],
            10.0,
        );
        add(
            &mut s,
            &[("__name__", "req"), ("job", "a"), ("inst", "2")],
            30.0,
        );
        add(
            &mut s,
            &[("__name__", "req"), ("job", "b"), ("inst", "3")],
            20.0,
        );
        add(
            &mut s,
            &[("__name__", "info"), ("job", "a"), ("team", "x")],
            1.0,
        );
        s
    }

    fn vector(q: &str) -> Vec<Sample> {
        let e = Engine::new(EngineOptions::default());
        match e.instant_query(&store(), q, 60_000).unwrap().value {
            Value::Vector(v) => v,
            other => panic!("{other:?}"),
        }
    }

    /// Series for aggregations over counters, histograms and gauges, 10 minutes at
    /// 15 s, a counter reset in each counter.
    fn grouping_store() -> MemStorage {
        let mut s = MemStorage::new();
        let mut add = |pairs: &[(&str, &str)], f: &dyn Fn(i64) -> f64| {
            let samples: Vec<(i64, f64)> = (0..40).map(|k| (k * 15_000 + 1_000, f(k))).collect();
            s.add_samples(Labels::from_pairs(pairs.iter().copied()), &samples);
        };
        for (inst, scale) in [("1", 1.0), ("2", 3.0)] {
            for (le, share) in [("0.1", 0.25), ("1", 0.75), ("+Inf", 1.0)] {
                add(
                    &[("__name__", "h_bucket"), ("inst", inst), ("le", le)],
                    &|k| ((k % 25) as f64) * scale * share * 7.0,
                );
            }
            // Same labels but the name: a name-dropping function of both collides.
            for name in ["c_total", "d_total"] {
                add(&[("__name__", name), ("inst", inst), ("job", "j")], &|k| {
                    ((k % 30) as f64) * scale + 0.1
                });
            }
            add(
                &[
                    ("__name__", "g"),
                    ("inst", inst),
                    ("job", "j"),
                    ("mode", "m"),
                ],
                &|k| (k as f64 * 0.37 * scale).sin() * 1e3,
            );
        }
        s
    }

    #[test]
    fn aggregations_of_selectors_keep_only_grouping_labels_with_the_same_results() {
        // `or` with a metric that does not exist changes nothing but takes the
        // argument off the grouped selection path.
        let general = |q: &str, arg: &str| q.replace("ARG", &format!("({arg} or nothing)"));
        let engine = Engine::new(EngineOptions::default());
        let store = grouping_store();
        let cases = [
            ("sum by (le) (ARG)", "rate(h_bucket[1m])"),
            (
                "histogram_quantile(0.9, sum by (le) (ARG))",
                "rate(h_bucket[1m])",
            ),
            ("count(ARG)", "{__name__=~\"h_bucket|g\"}"),
            ("count by (__name__) (ARG)", "{__name__=~\"h_bucket|g\"}"),
            ("sum by (__name__) (ARG)", "rate(c_total[1m])"),
            (
                "sum by (__name__, inst) (ARG)",
                "last_over_time(c_total[1m])",
            ),
            ("max without (inst) (ARG)", "g"),
            ("min by (job) (ARG)", "g{inst=\"1\" or inst=\"2\"}"),
            ("avg by (mode) (ARG)", "irate(c_total[1m])"),
            ("stddev(ARG)", "increase(c_total{job=\"j\"}[2m])"),
            ("stdvar by (inst) (ARG)", "deriv(g[2m])"),
            ("group by (inst) (ARG)", "changes(g[5m])"),
            ("sum(ARG)", "rate({__name__=~\"c_total|d_total\"}[1m])"),
            (
                "sum by (job) (ARG)",
                "rate({__name__=\"c_total\" or __name__=\"d_total\"}[1m])",
            ),
        ];
        for (q, arg) in cases {
            let direct = q.replace("ARG", arg);
            let a = engine.range_query(&store, &direct, 60_000, 600_000, 15_000);
            let b = engine.range_query(&store, &general(q, arg), 60_000, 600_000, 15_000);
            match (a, b) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.value, b.value, "{direct}");
                    assert_eq!(a.infos, b.infos, "{direct}");
                    assert!(
                        !matches!(&a.value, Value::Matrix(m) if m.is_empty()),
                        "{direct}"
                    );
                }
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{direct}"),
                (a, b) => panic!("{direct}: {a:?} against {b:?}"),
            }
        }
    }

    #[test]
    fn group_left_copies_labels_from_one_side() {
        let v = vector("req * on(job) group_left(team) info");
        assert_eq!(v.len(), 2);
        assert!(v.iter().all(|s| s.labels.get("team") == Some("x")));
        assert!(v.iter().all(|s| s.labels.metric_name().is_none()));
    }

    #[test]
    fn topk_is_ordered_and_keeps_names() {
        let v = vector("topk(2, req)");
        let vals: Vec<f64> = v.iter().map(|s| s.v).collect();
        assert_eq!(vals, vec![30.0, 20.0]);
        assert_eq!(v[0].labels.metric_name(), Some("req"));
    }

    #[test]
    fn count_values_and_absent() {
        let v = vector("count_values(\"val\", req)");
        assert_eq!(v.len(), 3);
        let v = vector("absent(nope{job=\"z\"})");
        assert_eq!(v[0].labels, Labels::from_pairs([("job", "z")]));
    }

    #[test]
    fn comparison_filters_and_bool_keeps() {
        assert_eq!(vector("req > 15").len(), 2);
        let v = vector("req > bool 15");
        assert_eq!(v.len(), 3);
        assert!(v.iter().all(|s| s.labels.metric_name().is_none()));
    }

    #[test]
    fn huge_step_grids_are_refused() {
        let e = Engine::new(EngineOptions {
            max_samples: 1000,
            ..EngineOptions::default()
        });
        assert!(matches!(
            e.instant_query(&store(), "max_over_time(req[1d:1s])", 60_000),
            Err(QueryError::TooManySamples { .. })
        ));
    }
}

#[cfg(test)]
mod robustness_tests {
    use super::*;
    use crate::model::MemStorage;

    #[test]
    fn odd_queries_give_results_or_clean_errors() {
        let mut s = MemStorage::new();
        s.add_samples(
            Labels::from_pairs([("__name__", "x"), ("a", "1")]),
            &[
                (0, 1.0),
                (10_000, f64::NAN),
                (20_000, crate::model::stale_nan()),
                (30_000, 4.0),
            ],
        );
        s.add_samples(Labels::from_pairs([("__name__", "y")]), &[(0, -1.0)]);
        let e = Engine::new(EngineOptions {
            max_samples: 100_000,
            ..EngineOptions::default()
        });
        let queries = [
            "topk(1e30, x)",
            "bottomk(-1, x)",
            "quantile(2, x)",
            "x offset -1h",
            "x @ -100",
            "rate(x[1ms])",
            "x[5m:1ms]",
            "max_over_time(x[1h:7s] offset 3s)",
            "histogram_quantile(0.5, x)",
            "label_replace(x, \"b\", \"$9\", \"a\", \"(.*)\")",
            "label_join(x, \"c\", \"\", \"a\", \"missing\")",
            "count_values(\"a\", x)",
            "x / on() y",
            "x and on(a) y",
            "x unless y",
            "-x",
            "scalar(x) * vector(2)",
            "absent_over_time(nope[1m])",
            "predict_linear(x[1m], -3600)",
            "deriv(y[1m])",
            "sort_desc(x or y)",
            "round(x, 0)",
            "clamp(x, 5, 1)",
            "day_of_week(vector(-1e300))",
            "timestamp(x @ end())",
            "time() - 1e308",
            "quantile_over_time(NaN, x[1m])",
            "avg(x) by (nope)",
            "stddev without (a) (x)",
            "x{a=~\"(\"}",
            "sum(",
            "1 +",
            "{__name__=~\".*\"}",
            "x[1m]",
            "info(x)",
            "limitk(1, x)",
            "mad_over_time(x[1m])",
            "double_exponential_smoothing(x[1m], 0.5, 0.5)",
            "sort_by_label(x, \"a\")",
            "min_of(1, 2)",
            "histogram_count(x)",
        ];
        for q in queries {
            for r in [
                e.instant_query(&s, q, 30_000),
                e.range_query(&s, q, 0, 60_000, 7_000),
            ] {
                if let Err(err) = &r {
                    assert!(!err.to_string().contains("internal error"), "{q}: {err}");
                }
            }
        }
    }
}

#[cfg(test)]
mod name_dropping_tests {
    use super::*;
    use crate::model::MemStorage;

    fn store() -> MemStorage {
        let mut s = MemStorage::new();
        for name in ["a_total", "b_total"] {
            s.add_samples(
                Labels::from_pairs([("__name__", name), ("job", "x")]),
                &[(0, 0.0), (30_000, 30.0), (60_000, 60.0)],
            );
        }
        s
    }

    #[test]
    fn immediate_name_removal_reports_collisions() {
        let e = Engine::new(EngineOptions::default());
        let err = e
            .instant_query(
                &store(),
                "rate({__name__=~\"a_total|b_total\"}[1m])",
                60_000,
            )
            .unwrap_err();
        assert_eq!(err.to_string(), DUPLICATE_LABELSET);
    }

    #[test]
    fn delayed_name_removal_allows_relabelling_first() {
        let e = Engine::new(EngineOptions {
            delayed_name_removal: true,
            ..EngineOptions::default()
        });
        let r = e
            .instant_query(
                &store(),
                "label_replace(rate({__name__=~\"a_total|b_total\"}[1m]), \"n\", \"$1\", \"__name__\", \"(.*)\")",
                60_000,
            )
            .unwrap();
        let Value::Vector(v) = r.value else { panic!() };
        assert_eq!(v.len(), 2);
        assert!(v.iter().all(|s| s.labels.metric_name().is_none()));
    }
}
