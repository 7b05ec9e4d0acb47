//! The evaluator: walks the promql-parser AST and evaluates every node over the whole
//! query range at once ("range evaluation", as Prometheus does), on per-series columns.
//!
//! Every instant-vector node yields a list of [`EvalSeries`]: a series with one point per step
//! at which it has a value, timestamps on the step grid. Scalars are dense per step.
//! Selectors fetch their data once for the whole range and slide windows over it.
//! A selector that an aggregation takes straight (`sum by (le) (rate(x[1m]))`) keeps
//! only the grouping labels of each series ([`Evaluator::grouping`]): the aggregation never
//! outputs the others, and copying every series' labels cost more than its sums.
//!
//! The operators live beside it and extend [`Evaluator`] with one method each
//! (`eval_aggregate` in `aggregate.rs`, `eval_binary` in `binary.rs`, `eval_call` in
//! `functions.rs`, `eval_info` in `info.rs`): they import the evaluator's vocabulary,
//! and the evaluator imports none of them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use promql_parser::label::MatchOp;
use promql_parser::parser::{
    AtModifier, Expr, MatrixSelector, Offset, SubqueryExpr, VectorSelector,
};

use super::value::{EngineOptions, QueryError};
use crate::model::labels::{Label, Labels, MatchKind, Matcher, METRIC_NAME};
use crate::model::Series;
use crate::model::{is_stale_nan, LabelsView, SelectError, Storage};
use crate::runtime::query_budget::{MemoryCharge, BYTES_PER_SAMPLE};

/// A series of an evaluated instant vector (or of a range vector, for `EvalValue::Range`).
#[derive(Clone, Debug, Default)]
pub(crate) struct EvalSeries {
    pub labels: Labels,
    /// `__name__` is to be dropped at the end (delayed name removal) or was dropped.
    pub drop_name: bool,
    pub ts: Vec<i64>,
    pub vs: Vec<f64>,
}

impl EvalSeries {
    pub fn new(labels: Labels, drop_name: bool) -> EvalSeries {
        EvalSeries {
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
pub(crate) enum EvalValue {
    Vector(Vec<EvalSeries>),
    /// One value per step.
    Scalar(Vec<f64>),
    Str(String),
    /// A range vector (only for instant queries): raw samples per series.
    Range(Vec<EvalSeries>),
}

impl EvalValue {
    pub fn type_name(&self) -> &'static str {
        match self {
            EvalValue::Vector(_) => "instant vector",
            EvalValue::Scalar(_) => "scalar",
            EvalValue::Str(_) => "string",
            EvalValue::Range(_) => "range vector",
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
            let rest = query.get(i..).unwrap_or("");
            if rest.len() >= kw.len()
                && rest.as_bytes()[..kw.len()].eq_ignore_ascii_case(kw.as_bytes())
                && !b.get(i + kw.len()).is_some_and(|&c| is_ident(c))
            {
                i = skip_ws(i + kw.len());
                if b.get(i) == Some(&b'(') {
                    while i < b.len() && b[i] != b')' {
                        i += 1;
                    }
                    // An unclosed clause (the name again in a trailing comment)
                    // leaves i at the end; stepping past it must not overrun.
                    i = skip_ws((i + 1).min(b.len()));
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

/// The evaluation state of one query (and, with saved/restored times, its subqueries).
pub(crate) struct Evaluator<'a> {
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
    /// What the query holds of the memory budget of queries in flight: the samples
    /// it holds, and ahead of a large allocation, what that will hold.
    memory: Option<MemoryCharge>,
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
    pub series: Vec<EvalSeries>,
    pub range: i64,
    pub offset: i64,
    pub at: Option<i64>,
    /// The selector's label matchers, for `absent_over_time`.
    pub matchers: Option<Vec<Matcher>>,
}

impl<'a> Evaluator<'a> {
    pub fn new(
        storage: &'a dyn Storage,
        opts: &'a EngineOptions,
        start: i64,
        end: i64,
        interval: i64,
    ) -> Evaluator<'a> {
        let arrived = opts.arrived.unwrap_or_else(Instant::now);
        Evaluator {
            storage,
            opts,
            start,
            end,
            interval,
            query_start: start,
            query_end: end,
            query_step: if start == end { 0 } else { interval },
            lookback: duration_ms(&opts.lookback_delta),
            deadline: arrived + opts.timeout,
            samples: 0,
            // The oldest query in flight waits for memory until its own timeout.
            memory: opts
                .memory
                .as_ref()
                .map(|b| b.charge(Some(arrived + opts.timeout))),
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
        if let Some(m) = &self.memory {
            m.hold(self.samples as u64 * BYTES_PER_SAMPLE)?;
        }
        Ok(())
    }

    /// Checks `held` samples (what the query holds, counted by the caller while
    /// it builds a node's output) against the sample limit and the memory budget.
    pub fn check_held(&self, held: usize) -> Result<(), QueryError> {
        if held > self.opts.max_samples {
            return Err(QueryError::TooManySamples {
                limit: self.opts.max_samples,
            });
        }
        if let Some(m) = &self.memory {
            m.hold_at_least(held as u64 * BYTES_PER_SAMPLE)?;
        }
        Ok(())
    }

    /// Charges the memory budget for `n` samples about to be allocated on top of
    /// what the query holds, before allocating them. Only the budget: the sample
    /// limit counts a node's output once it exists, as Prometheus does.
    pub fn reserve_memory(&self, n: usize) -> Result<(), QueryError> {
        if let Some(m) = &self.memory {
            m.hold_at_least(self.samples.saturating_add(n) as u64 * BYTES_PER_SAMPLE)?;
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
        self.check_held(produced.fetch_add(n, Ordering::Relaxed) + n)
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
    pub fn finish(&mut self, v: EvalValue) -> Result<EvalValue, QueryError> {
        if !self.delayed() {
            return Ok(v);
        }
        match v {
            EvalValue::Vector(mut m) => {
                for p in m.iter_mut() {
                    if p.drop_name {
                        p.labels = drop_metric_name(&p.labels);
                    }
                }
                Ok(EvalValue::Vector(merge_same_labels(m)?))
            }
            EvalValue::Range(mut m) => {
                for p in m.iter_mut() {
                    if p.drop_name {
                        p.labels = drop_metric_name(&p.labels);
                    }
                }
                Ok(EvalValue::Range(merge_same_labels(m)?))
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
    pub fn eval(&mut self, e: &Expr) -> Result<EvalValue, QueryError> {
        let before = self.samples;
        // A scalar is one value per step, and `vector(s)` one point per step: their
        // size is known before they exist, so the budget is charged before.
        let dense = matches!(e, Expr::Call(c) if c.func.name == "vector")
            || e.value_type() == promql_parser::parser::value::ValueType::Scalar;
        if dense {
            self.reserve_memory(self.nsteps())?;
        }
        let v = self.eval_node(e)?;
        let held = match &v {
            EvalValue::Vector(m) | EvalValue::Range(m) => m.iter().map(|p| p.ts.len()).sum(),
            EvalValue::Scalar(s) => s.len(),
            EvalValue::Str(_) => 0,
        };
        self.samples = before;
        self.add_samples(held)?;
        Ok(v)
    }

    fn eval_node(&mut self, e: &Expr) -> Result<EvalValue, QueryError> {
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
            Expr::NumberLiteral(n) => Ok(EvalValue::Scalar(vec![n.val; self.nsteps()])),
            Expr::StringLiteral(s) => Ok(EvalValue::Str(s.val.clone())),
            Expr::Unary(u) => {
                let v = self.eval(&u.expr)?;
                match v {
                    EvalValue::Scalar(mut s) => {
                        for x in s.iter_mut() {
                            *x = -*x;
                        }
                        Ok(EvalValue::Scalar(s))
                    }
                    EvalValue::Vector(mut m) => {
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
                        Ok(EvalValue::Vector(m))
                    }
                    other => exec_err(format!(
                        "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                        other.type_name()
                    )),
                }
            }
            Expr::VectorSelector(vs) => Ok(EvalValue::Vector(self.eval_vector_selector(vs)?)),
            Expr::MatrixSelector(ms) => {
                if self.start != self.end {
                    return exec_err("cannot do range evaluation of matrix selector");
                }
                let arg = self.eval_matrix_selector(ms)?;
                Ok(EvalValue::Range(self.range_arg_to_instant_matrix(arg)))
            }
            Expr::Subquery(sq) => {
                if self.start != self.end {
                    return exec_err("cannot do range evaluation of subquery");
                }
                let arg = self.eval_subquery(sq)?;
                Ok(EvalValue::Range(self.range_arg_to_instant_matrix(arg)))
            }
            Expr::Call(c) => self.eval_call(c),
            Expr::Aggregate(a) => self.eval_aggregate(a),
            Expr::Binary(b) => self.eval_binary(b),
            Expr::Extension(_) => Err(QueryError::Unsupported(
                "extension expressions are not supported".into(),
            )),
        }
    }

    pub fn eval_vector(&mut self, e: &Expr) -> Result<Vec<EvalSeries>, QueryError> {
        match self.eval(e)? {
            EvalValue::Vector(v) => Ok(v),
            other => exec_err(format!(
                "expected instant vector, got {}",
                other.type_name()
            )),
        }
    }

    pub fn eval_scalar(&mut self, e: &Expr) -> Result<Vec<f64>, QueryError> {
        match self.eval(e)? {
            EvalValue::Scalar(v) => Ok(v),
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

    pub fn eval_vector_selector(
        &mut self,
        vs: &VectorSelector,
    ) -> Result<Vec<EvalSeries>, QueryError> {
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
            out.push(EvalSeries {
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
    ) -> Result<Vec<EvalSeries>, QueryError> {
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
            let mut p = EvalSeries::new(s.labels, false);
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
                EvalSeries {
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
            Ok(EvalValue::Vector(Vec::new()))
        } else {
            self.start = new_start;
            self.end = new_end;
            self.interval = step;
            let r = self.eval(&sq.expr);
            (self.start, self.end, self.interval) = saved;
            r
        };
        let series = match result? {
            EvalValue::Vector(v) => v,
            EvalValue::Scalar(s) => {
                self.reserve_memory(s.len())?;
                let mut p = EvalSeries::new(Labels::empty(), false);
                p.ts.reserve_exact(s.len());
                p.vs.reserve_exact(s.len());
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
    fn range_arg_to_instant_matrix(&mut self, arg: RangeArg) -> Vec<EvalSeries> {
        let r = arg.at.unwrap_or(self.start) - arg.offset;
        let mut out = Vec::new();
        for s in arg.series {
            let lo = s.ts.partition_point(|&t| t <= r - arg.range);
            let hi = s.ts.partition_point(|&t| t <= r);
            if hi > lo {
                out.push(EvalSeries {
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
pub(crate) fn merge_same_labels(m: Vec<EvalSeries>) -> Result<Vec<EvalSeries>, QueryError> {
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
    let mut out: Vec<EvalSeries> = Vec::with_capacity(m.len());
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
pub(crate) struct SeriesCollector {
    map: HashMap<Labels, usize>,
    pub series: Vec<EvalSeries>,
}

impl SeriesCollector {
    pub fn new() -> SeriesCollector {
        SeriesCollector {
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
        self.series.push(EvalSeries::new(labels.clone(), drop_name));
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
    pub fn finish(self) -> Vec<EvalSeries> {
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
                let mut p = EvalSeries::new(labels, drop_name);
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
