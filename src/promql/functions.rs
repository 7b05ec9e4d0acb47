//! PromQL functions. Range-vector functions run over window slices of one series'
//! columns; instant-vector functions map whole value columns.

use std::collections::{BTreeSet, HashMap};

use promql_parser::parser::{Call, Expr, MatrixSelector, VectorSelector};

use super::evaluator::{
    drop_metric_name, exec_err, labels_with, merge_same_labels, remove_stale, source_pos,
    EvalSeries, EvalValue, Evaluator, Points, RangeArg, SeriesCollector, Window,
    DUPLICATE_LABELSET,
};
use super::value::QueryError;
use crate::model::labels::{Labels, MatchKind, Matcher, METRIC_NAME};
use crate::model::number::{format_go_float_g, parse_go_float};
use crate::model::time::civil_from_days;
use crate::model::LabelsView;

// ---------------------------------------------------------------------------
// Numeric helpers shared with aggregations.

/// Neumaier-improved Kahan summation step (Prometheus's `kahansum.Inc`).
#[inline]
pub fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// The φ-quantile of `values` (sorted in place), as Prometheus's `quantile`.
pub fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // NaN sorts first (vectorByValueHeap's Less).
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// A classic histogram bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    pub upper: f64,
    pub count: f64,
}

/// Prometheus's `BucketQuantile`: sorts buckets, merges equal bounds, fixes tiny
/// precision errors and forces monotonicity. Returns (value, forced monotonicity).
pub fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    buckets.sort_by(|a, b| {
        a.upper
            .partial_cmp(&b.upper)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    match buckets.last() {
        Some(b) if b.upper == f64::INFINITY => {}
        _ => return (f64::NAN, false),
    }
    // Coalesce equal upper bounds.
    let mut merged: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.upper == b.upper => last.count += b.count,
            _ => merged.push(*b),
        }
    }
    *buckets = merged;
    // Precision errors.
    let mut prev = buckets[0].count;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.count;
        let delta = (curr - prev).abs();
        if delta == 0.0 {
            continue;
        }
        if delta / curr <= 1e-12 {
            b.count = prev;
        } else {
            prev = curr;
        }
    }
    // Monotonicity.
    let mut forced = false;
    let mut max = buckets[0].count;
    for b in buckets.iter_mut().skip(1) {
        if b.count > max {
            max = b.count;
        } else if b.count < max {
            b.count = max;
            forced = true;
        }
    }
    if buckets.len() < 2 {
        return (f64::NAN, false);
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 {
        return (f64::NAN, false);
    }
    let mut rank = q * observations;
    let n = buckets.len() - 1;
    let b = buckets[..n].partition_point(|x| x.count < rank);
    if b == n {
        return (buckets[n - 1].upper, forced);
    }
    if b == 0 && buckets[0].upper <= 0.0 {
        return (buckets[0].upper, forced);
    }
    let mut start = 0.0;
    let end = buckets[b].upper;
    let mut count = buckets[b].count;
    if b > 0 {
        start = buckets[b - 1].upper;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    (start + (end - start) * (rank / count), forced)
}

// ---------------------------------------------------------------------------
// Range-vector functions over one window.

/// Which of Prometheus's three functions over `extrapolatedRate` is computed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Extrapolated {
    Rate,
    Increase,
    Delta,
}

/// Prometheus's `extrapolatedRate` for floats. `may_reset` false promises that no
/// value in `vs` is below its predecessor (the caller checked the whole series
/// once), which skips the per-window search for counter resets.
#[inline]
pub fn extrapolated_rate(
    ts: &[i64],
    vs: &[f64],
    range_start: i64,
    range_end: i64,
    range_ms: i64,
    kind: Extrapolated,
    may_reset: bool,
) -> Option<f64> {
    if ts.len() < 2 {
        return None;
    }
    let is_counter = kind != Extrapolated::Delta;
    let n1 = ts.len() - 1;
    let first_t = ts[0];
    let last_t = ts[n1];
    let mut result = vs[n1] - vs[0];
    if is_counter && may_reset {
        for i in 1..vs.len() {
            if vs[i] < vs[i - 1] {
                result += vs[i - 1];
            }
        }
    }
    let mut duration_to_start = (first_t - range_start) as f64 / 1000.0;
    let mut duration_to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled_interval = (last_t - first_t) as f64 / 1000.0;
    let avg = sampled_interval / n1 as f64;
    let threshold = avg * 1.1;
    if duration_to_start >= threshold {
        duration_to_start = avg / 2.0;
    }
    if is_counter {
        let mut duration_to_zero = duration_to_start;
        if result > 0.0 && vs[0] >= 0.0 {
            duration_to_zero = sampled_interval * (vs[0] / result);
        }
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    if duration_to_end >= threshold {
        duration_to_end = avg / 2.0;
    }
    let mut factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval;
    if kind == Extrapolated::Rate {
        factor /= range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `irate`/`idelta`: from the last two samples.
pub fn instant_value(ts: &[i64], vs: &[f64], is_rate: bool) -> Option<f64> {
    let n = ts.len();
    if n < 2 {
        return None;
    }
    let (t0, v0, t1, v1) = (ts[n - 2], vs[n - 2], ts[n - 1], vs[n - 1]);
    let interval = t1 - t0;
    if interval == 0 {
        return None;
    }
    let mut r = v1;
    if !is_rate || v1 >= v0 || v1.is_nan() || v0.is_nan() {
        r = v1 - v0;
    }
    if is_rate {
        r /= interval as f64 / 1000.0;
    }
    Some(r)
}

pub fn avg_over_time(vs: &[f64]) -> f64 {
    let mut sum = vs[0];
    let mut count = 1.0;
    let mut mean = 0.0;
    let mut c = 0.0;
    let mut incremental = false;
    for (i, &f) in vs.iter().enumerate().skip(1) {
        count = (i + 1) as f64;
        if !incremental {
            let (ns, nc) = kahan_inc(f, sum, c);
            if !ns.is_infinite() {
                sum = ns;
                c = nc;
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        let (m, nc) = kahan_inc(f / count, q * mean, q * c);
        mean = m;
        c = nc;
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

pub fn sum_over_time(vs: &[f64]) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for &f in vs {
        (sum, c) = kahan_inc(f, sum, c);
    }
    if sum.is_infinite() {
        sum
    } else {
        sum + c
    }
}

pub fn variance_over_time(vs: &[f64]) -> f64 {
    let (mut count, mut mean, mut cmean, mut aux, mut caux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &f in vs {
        count += 1.0;
        let delta = f - (mean + cmean);
        (mean, cmean) = kahan_inc(delta / count, mean, cmean);
        (aux, caux) = kahan_inc(delta * (f - (mean + cmean)), aux, caux);
    }
    (aux + caux) / count
}

fn compare_over_time(
    ts: &[i64],
    vs: &[f64],
    better: impl Fn(f64, f64) -> bool,
    want_ts: bool,
) -> f64 {
    let mut best = vs[0];
    let mut best_t = ts[0];
    for (i, &f) in vs.iter().enumerate() {
        if better(f, best) {
            best = f;
            best_t = ts[i];
        }
    }
    if want_ts {
        best_t as f64 / 1000.0
    } else {
        best
    }
}

pub fn changes(vs: &[f64]) -> f64 {
    let mut n = 0;
    for w in vs.windows(2) {
        if w[1] != w[0] && !(w[1].is_nan() && w[0].is_nan()) {
            n += 1;
        }
    }
    n as f64
}

pub fn resets(vs: &[f64]) -> f64 {
    vs.windows(2).filter(|w| w[1] < w[0]).count() as f64
}

/// Least-squares regression (Prometheus's `linearRegression`).
pub fn linear_regression(ts: &[i64], vs: &[f64], intercept_time: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init_y = vs[0];
    let mut const_y = true;
    for (i, (&t, &v)) in ts.iter().zip(vs).enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_time) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(v, sy, cy);
        (sxy, cxy) = kahan_inc(x * v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

pub fn double_exponential_smoothing(vs: &[f64], sf: f64, tf: f64) -> Option<f64> {
    let l = vs.len();
    if l < 2 {
        return None;
    }
    let mut s0 = 0.0;
    let mut s1 = vs[0];
    let mut b = vs[1] - vs[0];
    for (i, &v) in vs.iter().enumerate().skip(1) {
        let x = sf * v;
        b = if i - 1 == 0 {
            b
        } else {
            tf * (s1 - s0) + (1.0 - tf) * b
        };
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

fn mad(vs: &[f64]) -> f64 {
    if vs.iter().any(|x| x.is_nan()) {
        return f64::NAN;
    }
    let mut v = vs.to_vec();
    let median = quantile(0.5, &mut v);
    let mut d: Vec<f64> = vs.iter().map(|x| (x - median).abs()).collect();
    quantile(0.5, &mut d)
}

// ---------------------------------------------------------------------------
// Dispatch.

fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

fn string_arg(e: &Expr) -> Result<String, QueryError> {
    match unwrap_parens(e) {
        Expr::StringLiteral(s) => Ok(s.val.clone()),
        _ => exec_err("expected string literal argument"),
    }
}

const RANGE_FUNCTIONS: &[&str] = &[
    "rate",
    "increase",
    "delta",
    "irate",
    "idelta",
    "avg_over_time",
    "sum_over_time",
    "count_over_time",
    "min_over_time",
    "max_over_time",
    "quantile_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "last_over_time",
    "first_over_time",
    "present_over_time",
    "absent_over_time",
    "changes",
    "resets",
    "deriv",
    "predict_linear",
    "double_exponential_smoothing",
    "mad_over_time",
    "ts_of_first_over_time",
    "ts_of_last_over_time",
    "ts_of_max_over_time",
    "ts_of_min_over_time",
];

impl Evaluator<'_> {
    /// A function call.
    pub(super) fn eval_call(&mut self, c: &Call) -> Result<EvalValue, QueryError> {
        let ev = self;
        let name = c.func.name;
        let args: Vec<&Expr> = c.args.args.iter().map(|a| unwrap_parens(a)).collect();
        if RANGE_FUNCTIONS.contains(&name) {
            return eval_range_function(ev, name, &args);
        }
        match name {
            "time" => {
                let n = ev.nsteps();
                Ok(EvalValue::Scalar(
                    (0..n).map(|i| ev.step_ts(i) as f64 / 1000.0).collect(),
                ))
            }
            "pi" => Ok(EvalValue::Scalar(vec![std::f64::consts::PI; ev.nsteps()])),
            "start" => Ok(EvalValue::Scalar(vec![
                ev.query_start as f64 / 1000.0;
                ev.nsteps()
            ])),
            "end" => Ok(EvalValue::Scalar(vec![
                ev.query_end as f64 / 1000.0;
                ev.nsteps()
            ])),
            "range" => Ok(EvalValue::Scalar(vec![
                (ev.query_end - ev.query_start)
                    as f64
                    / 1000.0;
                ev.nsteps()
            ])),
            "step" => Ok(EvalValue::Scalar(vec![
                ev.query_step as f64 / 1000.0;
                ev.nsteps()
            ])),
            "min_of" | "max_of" => {
                let mut acc: Option<Vec<f64>> = None;
                for a in &args {
                    let v = ev.eval_scalar(a)?;
                    acc = Some(match acc {
                        None => v,
                        Some(prev) => prev
                            .iter()
                            .zip(&v)
                            .map(|(&x, &y)| {
                                if x.is_nan() || y.is_nan() {
                                    f64::NAN
                                } else if name == "min_of" {
                                    x.min(y)
                                } else {
                                    x.max(y)
                                }
                            })
                            .collect(),
                    });
                }
                Ok(EvalValue::Scalar(
                    acc.unwrap_or_else(|| vec![f64::NAN; ev.nsteps()]),
                ))
            }
            "vector" => {
                let s = ev.eval_scalar(args[0])?;
                // The series is built while the scalar is still held.
                ev.reserve_memory(s.len())?;
                let mut p = EvalSeries::new(Labels::empty(), false);
                p.ts.reserve_exact(s.len());
                p.vs.reserve_exact(s.len());
                for (i, v) in s.into_iter().enumerate() {
                    p.ts.push(ev.step_ts(i));
                    p.vs.push(v);
                }
                Ok(EvalValue::Vector(vec![p]))
            }
            "scalar" => {
                let v = ev.eval_vector(args[0])?;
                let n = ev.nsteps();
                let mut out = vec![f64::NAN; n];
                let mut count = vec![0u32; n];
                for p in &v {
                    for (t, x) in p.ts.iter().zip(&p.vs) {
                        let i = ev.step_idx(*t);
                        count[i] += 1;
                        out[i] = *x;
                    }
                }
                for i in 0..n {
                    if count[i] != 1 {
                        out[i] = f64::NAN;
                    }
                }
                Ok(EvalValue::Scalar(out))
            }
            "absent" => {
                let v = ev.eval_vector(args[0])?;
                let n = ev.nsteps();
                let mut present = vec![false; n];
                for p in &v {
                    for t in &p.ts {
                        present[ev.step_idx(*t)] = true;
                    }
                }
                let labels = absent_labels(args[0])?;
                Ok(absent_steps(ev, &present, labels, false))
            }
            "timestamp" => {
                let v = match args[0] {
                    Expr::VectorSelector(vs) => ev.eval_vector_selector_timestamps(vs)?,
                    other => {
                        let mut v = ev.eval_vector(other)?;
                        for p in v.iter_mut() {
                            for (t, x) in p.ts.iter().zip(p.vs.iter_mut()) {
                                *x = *t as f64 / 1000.0;
                            }
                        }
                        v
                    }
                };
                finish_instant_fn(ev, v)
            }
            "label_replace" => label_replace(ev, &args),
            "info" => ev.eval_info(&args),
            "label_join" => label_join(ev, &args),
            "sort" | "sort_desc" => {
                sort_in_range_warning(ev, name);
                let mut v = ev.eval_vector(args[0])?;
                if ev.start == ev.end {
                    let desc = name == "sort_desc";
                    v.sort_by(|a, b| {
                        let (x, y) = (a.vs[0], b.vs[0]);
                        match (x.is_nan(), y.is_nan()) {
                            (true, true) => std::cmp::Ordering::Equal,
                            (true, false) => std::cmp::Ordering::Greater,
                            (false, true) => std::cmp::Ordering::Less,
                            _ => {
                                let o = x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal);
                                if desc {
                                    o.reverse()
                                } else {
                                    o
                                }
                            }
                        }
                    });
                }
                Ok(EvalValue::Vector(v))
            }
            "sort_by_label" | "sort_by_label_desc" => {
                sort_in_range_warning(ev, name);
                let mut v = ev.eval_vector(args[0])?;
                let names: Vec<String> = args[1..]
                    .iter()
                    .map(|a| string_arg(a))
                    .collect::<Result<_, _>>()?;
                let desc = name == "sort_by_label_desc";
                v.sort_by(|a, b| {
                    for n in &names {
                        let x = a.labels.get(n).unwrap_or("");
                        let y = b.labels.get(n).unwrap_or("");
                        if x == y {
                            continue;
                        }
                        let o = natural_cmp(x, y);
                        return if desc { o.reverse() } else { o };
                    }
                    let o = a.labels.cmp(&b.labels);
                    if desc {
                        o.reverse()
                    } else {
                        o
                    }
                });
                Ok(EvalValue::Vector(v))
            }
            "histogram_quantile" => histogram_quantile(ev, &args),
            // These only read native histogram samples, which this engine does not have.
            "histogram_count"
            | "histogram_sum"
            | "histogram_avg"
            | "histogram_stddev"
            | "histogram_stdvar"
            | "histogram_fraction"
            | "histogram_quantiles" => Err(QueryError::Unsupported(format!(
                "native histograms are not supported ({name}() reads native histograms)"
            ))),
            _ => instant_function(ev, name, &args),
        }
    }
}

fn sort_in_range_warning(ev: &mut Evaluator, name: &str) {
    if ev.query_start != ev.query_end {
        let pos = source_pos(&ev.query, name, None);
        ev.warnings.push(format!(
            "PromQL warning: sort is ineffective for range queries since results are always ordered by labels{pos}"
        ));
    }
}

/// Natural ("version") ordering of label values, as `natsort.Compare`.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < ab.len() && j < bb.len() {
        if ab[i].is_ascii_digit() && bb[j].is_ascii_digit() {
            let si = i;
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let na = a[si..i].trim_start_matches('0');
            let nb = b[sj..j].trim_start_matches('0');
            let o = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        } else {
            if ab[i] != bb[j] {
                return ab[i].cmp(&bb[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (ab.len() - i).cmp(&(bb.len() - j))
}

/// Labels for `absent(sel)`: the equality matchers' labels, except names matched twice.
fn absent_labels(e: &Expr) -> Result<Labels, QueryError> {
    let vs = match e {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Ok(Labels::empty()),
    };
    let ms: Vec<Matcher> = Evaluator::selector_matchers(vs)?
        .into_iter()
        .next()
        .unwrap_or_default();
    Ok(absent_labels_from(&ms))
}

fn absent_labels_from(ms: &[Matcher]) -> Labels {
    let mut has: HashMap<&str, bool> = HashMap::new();
    let mut set: Vec<(String, Option<String>)> = Vec::new();
    for m in ms {
        if m.name == METRIC_NAME {
            continue;
        }
        if m.kind == MatchKind::Equal && !has.get(m.name.as_str()).copied().unwrap_or(false) {
            set.retain(|(n, _)| n != &m.name);
            set.push((m.name.clone(), Some(m.value.clone())));
            has.insert(&m.name, true);
        } else {
            set.retain(|(n, _)| n != &m.name);
            set.push((m.name.clone(), None));
        }
    }
    Labels::new(
        set.into_iter()
            .filter_map(|(n, v)| v.map(|v| crate::model::labels::Label::new(n, v)))
            .collect(),
    )
}

fn eval_range_function(
    ev: &mut Evaluator,
    name: &str,
    args: &[&Expr],
) -> Result<EvalValue, QueryError> {
    // Taken first: it is meant for this function's own selector only.
    let grouping = ev.grouping.take();
    let midx = args
        .iter()
        .position(|a| matches!(a, Expr::MatrixSelector(_) | Expr::Subquery(_)))
        .unwrap_or(0);
    let mut scalars: Vec<Vec<f64>> = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i != midx {
            scalars.push(ev.eval_scalar(a)?);
        }
    }
    if let (Some(ms), true) = (plain_matrix_selector(args[midx]), streams_series(ev, name)) {
        let (arg, mint, maxt) = ev.matrix_window(ms)?;
        let ev_ref = &*ev;
        // Metric names that do not look like counters, for the annotation.
        let not_counters = std::sync::Mutex::new(BTreeSet::new());
        let got = ev_ref.select_points(
            &ms.vs,
            mint,
            maxt,
            grouping.as_ref(),
            !keeps_name(name) && !ev_ref.delayed(),
            |labels, ts, vs| {
                remove_stale(ts, vs);
                let p = window_values(ev_ref, name, &arg, &scalars, (ts, vs))?;
                if !p.0.is_empty() {
                    if let Some(m) = not_counter_name(name, labels) {
                        not_counters
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(m);
                    }
                }
                Ok(p)
            },
        )?;
        for m in not_counters.into_inner().unwrap_or_else(|e| e.into_inner()) {
            not_counter_info(ev, name, &m);
        }
        let results = got.into_iter().map(|(labels, p)| (labels, false, p));
        // Grouping labels are not the series' own: different series share them.
        return range_function_result(ev, name, results, grouping.is_none(), false);
    }
    let stateful = matches!(name, "quantile_over_time" | "double_exponential_smoothing");
    let arg = ev.eval_range_arg(args[midx])?;
    if name == "absent_over_time" {
        return absent_over_time(ev, &arg, args[midx]);
    }
    let windows = if stateful {
        stateful_window_values(ev, name, &arg, &scalars)?
    } else {
        let work =
            arg.series.iter().map(|s| s.ts.len()).sum::<usize>() + arg.series.len() * ev.nsteps();
        ev.map_points(arg.series.iter().collect(), work, |s| {
            window_values(ev, name, &arg, &scalars, (&s.ts, &s.vs))
        })?
    };
    let results = arg
        .series
        .into_iter()
        .zip(windows)
        .map(|(s, p)| (s.labels, s.drop_name, p));
    range_function_result(ev, name, results, true, true)
}

/// Whether a range query evaluates this range function of a plain selector series
/// by series as their samples are read, never holding every series' samples. An
/// instant query holds them all anyway (and is charged for them); functions that
/// carry state from series to series hold them too.
fn streams_series(ev: &Evaluator, name: &str) -> bool {
    ev.start != ev.end
        && !matches!(
            name,
            "quantile_over_time" | "double_exponential_smoothing" | "absent_over_time"
        )
}

/// Whether a range function's result keeps the metric name.
fn keeps_name(name: &str) -> bool {
    name == "last_over_time" || name == "first_over_time"
}

/// Whether an aggregation's argument `e` takes its series straight from a selector
/// (itself, or a one-argument range function of it evaluated series by series), so
/// that its series need only carry their grouping labels. A name-dropping function
/// must then select one metric name: two series that differ only in their names
/// are an error it could no longer see.
pub(crate) fn selects_directly(ev: &Evaluator, e: &Expr) -> bool {
    match e {
        Expr::Paren(p) => selects_directly(ev, &p.expr),
        Expr::VectorSelector(_) => true,
        Expr::Call(c) if c.args.args.len() == 1 && RANGE_FUNCTIONS.contains(&c.func.name) => {
            let name = c.func.name;
            match plain_matrix_selector(&c.args.args[0]) {
                Some(ms) if streams_series(ev, name) => {
                    keeps_name(name) || ev.delayed() || selects_one_name(&ms.vs)
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether a selector can only select series of one metric name.
fn selects_one_name(vs: &VectorSelector) -> bool {
    let Ok(sets) = Evaluator::selector_matchers(vs) else {
        return false;
    };
    let name_of = |set: &[Matcher]| {
        set.iter()
            .find(|m| m.name == METRIC_NAME && m.kind == MatchKind::Equal)
            .map(|m| m.value.clone())
    };
    let first = sets.first().and_then(|s| name_of(s));
    first.is_some() && sets.iter().all(|s| name_of(s) == first)
}

/// A matrix selector, possibly in parentheses.
fn plain_matrix_selector(e: &Expr) -> Option<&MatrixSelector> {
    match e {
        Expr::MatrixSelector(ms) => Some(ms),
        Expr::Paren(p) => plain_matrix_selector(&p.expr),
        _ => None,
    }
}

/// The metric name of a series a `rate` or `increase` is taken of, when the name
/// does not end like a counter's.
fn not_counter_name(name: &str, labels: &dyn LabelsView) -> Option<String> {
    if name != "rate" && name != "increase" {
        return None;
    }
    // Only the rare offending name is copied: every series of a metric shares its
    // name's allocation, whose reference count the query's threads would contend on.
    let mut not_counter = None;
    labels.for_each_label(&mut |n, v| {
        if &**n == METRIC_NAME
            && !["_total", "_sum", "_count", "_bucket"]
                .iter()
                .any(|suf| v.ends_with(suf))
        {
            not_counter = Some(v.to_string());
        }
    });
    not_counter
}

/// The annotation for a `rate` or `increase` of a metric that may not be a counter.
fn not_counter_info(ev: &mut Evaluator, name: &str, metric: &str) {
    let pos = source_pos(&ev.query, name, Some(0));
    ev.infos.push(format!(
        "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {}{pos}",
        crate::model::labels::go_quote(metric)
    ));
}

/// A range function's output series from each input series' (labels, whether
/// `__name__` is to be dropped, points). `own_labels`: the labels are the series'
/// own (not only its grouping labels), so names are dropped here and series left
/// with the same labels are an error. `check_names`: the metric names are still to
/// be checked for the counter annotation.
fn range_function_result(
    ev: &mut Evaluator,
    name: &str,
    results: impl Iterator<Item = (Labels, bool, Points)>,
    own_labels: bool,
    check_names: bool,
) -> Result<EvalValue, QueryError> {
    let keep_name = keeps_name(name);
    let mut out: Vec<EvalSeries> = Vec::with_capacity(results.size_hint().0);
    for (labels, drop_name, (ts, vs)) in results {
        if ts.is_empty() {
            continue;
        }
        ev.add_samples(ts.len())?;
        if check_names {
            if let Some(m) = not_counter_name(name, &labels) {
                not_counter_info(ev, name, &m);
            }
        }
        let labels = if keep_name || !own_labels {
            labels
        } else {
            ev.name_dropped(&labels)
        };
        out.push(EvalSeries {
            labels,
            drop_name: !keep_name || drop_name,
            ts,
            vs,
        });
    }
    if own_labels && !ev.delayed() && out.len() > 1 {
        let mut seen: std::collections::HashSet<_, foldhash::fast::RandomState> =
            std::collections::HashSet::with_capacity_and_hasher(out.len(), Default::default());
        for p in &out {
            if !seen.insert(&p.labels) {
                return exec_err(DUPLICATE_LABELSET);
            }
        }
    }
    Ok(EvalValue::Vector(out))
}

/// One series' points of a range function that keeps no state across series.
fn window_values(
    ev: &Evaluator,
    name: &str,
    arg: &RangeArg,
    scalars: &[Vec<f64>],
    s: Window<'_>,
) -> Result<Points, QueryError> {
    let range = arg.range;
    Ok(match name {
        "rate" | "increase" | "delta" => {
            let kind = match name {
                "rate" => Extrapolated::Rate,
                "increase" => Extrapolated::Increase,
                _ => Extrapolated::Delta,
            };
            // Most counters never reset: one look at the series spares every window
            // its own search.
            let may_reset = s.1.windows(2).any(|w| w[1] < w[0]);
            ev.slide(arg, s, |_, _, r, t, v| {
                extrapolated_rate(t, v, r - range, r, range, kind, may_reset)
            })
        }
        "irate" => ev.slide(arg, s, |_, _, _, t, v| instant_value(t, v, true)),
        "idelta" => ev.slide(arg, s, |_, _, _, t, v| instant_value(t, v, false)),
        "avg_over_time" => ev.slide(arg, s, |_, _, _, _, v| Some(avg_over_time(v))),
        "sum_over_time" => ev.slide(arg, s, |_, _, _, _, v| Some(sum_over_time(v))),
        "count_over_time" => ev.slide(arg, s, |_, _, _, _, v| Some(v.len() as f64)),
        "present_over_time" => ev.slide(arg, s, |_, _, _, _, _| Some(1.0)),
        "min_over_time" => ev.slide(arg, s, |_, _, _, t, v| {
            Some(compare_over_time(t, v, |c, m| c < m || m.is_nan(), false))
        }),
        "max_over_time" => ev.slide(arg, s, |_, _, _, t, v| {
            Some(compare_over_time(t, v, |c, m| c > m || m.is_nan(), false))
        }),
        "ts_of_min_over_time" => ev.slide(arg, s, |_, _, _, t, v| {
            Some(compare_over_time(t, v, |c, m| c <= m || m.is_nan(), true))
        }),
        "ts_of_max_over_time" => ev.slide(arg, s, |_, _, _, t, v| {
            Some(compare_over_time(t, v, |c, m| c >= m || m.is_nan(), true))
        }),
        "ts_of_first_over_time" => ev.slide(arg, s, |_, _, _, t, _| Some(t[0] as f64 / 1000.0)),
        "ts_of_last_over_time" => {
            ev.slide(arg, s, |_, _, _, t, _| Some(t[t.len() - 1] as f64 / 1000.0))
        }
        "stddev_over_time" => ev.slide(arg, s, |_, _, _, _, v| Some(variance_over_time(v).sqrt())),
        "stdvar_over_time" => ev.slide(arg, s, |_, _, _, _, v| Some(variance_over_time(v))),
        "last_over_time" => ev.slide(arg, s, |_, _, _, _, v| Some(v[v.len() - 1])),
        "first_over_time" => ev.slide(arg, s, |_, _, _, _, v| Some(v[0])),
        "changes" => ev.slide(arg, s, |_, _, _, _, v| Some(changes(v))),
        "resets" => ev.slide(arg, s, |_, _, _, _, v| Some(resets(v))),
        "mad_over_time" => ev.slide(arg, s, |_, _, _, _, v| Some(mad(v))),
        "deriv" => ev.slide(arg, s, |_, _, _, t, v| {
            if t.len() < 2 {
                None
            } else {
                Some(linear_regression(t, v, t[0]).0)
            }
        }),
        "predict_linear" => {
            let d = &scalars[0];
            ev.slide(arg, s, |i, st, _, t, v| {
                if t.len() < 2 {
                    None
                } else {
                    let (slope, intercept) = linear_regression(t, v, st);
                    Some(slope * d[i] + intercept)
                }
            })
        }
        _ => {
            return Err(QueryError::Unsupported(format!(
                "function {name}() is not supported"
            )))
        }
    })
}

/// The points of the range functions that carry state from window to window
/// (an error, a warning), one series after another.
fn stateful_window_values(
    ev: &mut Evaluator,
    name: &str,
    arg: &RangeArg,
    scalars: &[Vec<f64>],
) -> Result<Vec<Points>, QueryError> {
    let mut out = Vec::with_capacity(arg.series.len());
    let mut held = ev.samples;
    let mut bad_quantile = None;
    for p in &arg.series {
        ev.check_timeout()?;
        let s = (&p.ts[..], &p.vs[..]);
        let mut err = None;
        let w = if name == "quantile_over_time" {
            let q = &scalars[0];
            ev.slide(arg, s, |i, _, _, _, v| {
                if q[i].is_nan() || !(0.0..=1.0).contains(&q[i]) {
                    bad_quantile = Some(q[i]);
                }
                let mut v = v.to_vec();
                Some(quantile(q[i], &mut v))
            })
        } else {
            let (sf, tf) = (&scalars[0], &scalars[1]);
            ev.slide(arg, s, |i, _, _, _, v| {
                if err.is_some() {
                    return None;
                }
                if sf[i] <= 0.0 || sf[i] >= 1.0 {
                    err = Some(QueryError::Execution(format!(
                        "invalid smoothing factor. Expected: 0 < sf < 1, got: {:.6}",
                        sf[i]
                    )));
                    return None;
                }
                if tf[i] <= 0.0 || tf[i] >= 1.0 {
                    err = Some(QueryError::Execution(format!(
                        "invalid trend factor. Expected: 0 < tf < 1, got: {:.6}",
                        tf[i]
                    )));
                    return None;
                }
                double_exponential_smoothing(v, sf[i], tf[i])
            })
        };
        if let Some(e) = err {
            return Err(e);
        }
        held += w.0.len();
        ev.check_held(held)?;
        out.push(w);
    }
    if let Some(b) = bad_quantile {
        let pos = source_pos(&ev.query, "quantile_over_time", Some(0));
        ev.warnings.push(format!(
            "PromQL warning: quantile value should be between 0 and 1, got {}{pos}",
            format_go_float_g(b)
        ));
    }
    Ok(out)
}

fn absent_over_time(ev: &mut Evaluator, arg: &RangeArg, e: &Expr) -> Result<EvalValue, QueryError> {
    let n = ev.nsteps();
    let mut present = vec![false; n];
    for s in &arg.series {
        let (ts, _) = ev.slide(arg, (&s.ts, &s.vs), |_, _, _, _, _| Some(1.0));
        for t in ts {
            present[ev.step_idx(t)] = true;
        }
    }
    let labels = match e {
        Expr::MatrixSelector(_) => absent_labels_from(arg.matchers.as_deref().unwrap_or(&[])),
        _ => Labels::empty(),
    };
    Ok(absent_steps(ev, &present, labels, true))
}

/// `absent`'s answer: 1 with `labels` at each step where nothing was `present`.
fn absent_steps(ev: &Evaluator, present: &[bool], labels: Labels, drop_name: bool) -> EvalValue {
    let mut p = EvalSeries::new(labels, drop_name);
    for (i, _) in present.iter().enumerate().filter(|(_, &pr)| !pr) {
        p.ts.push(ev.step_ts(i));
        p.vs.push(1.0);
    }
    EvalValue::Vector(if p.ts.is_empty() { vec![] } else { vec![p] })
}

/// Name dropping and duplicate check shared by instant-vector functions.
fn finish_instant_fn(ev: &mut Evaluator, mut v: Vec<EvalSeries>) -> Result<EvalValue, QueryError> {
    for p in v.iter_mut() {
        p.labels = ev.name_dropped(&p.labels);
        p.drop_name = true;
    }
    if !ev.delayed() {
        v = merge_same_labels(v)?;
    }
    Ok(EvalValue::Vector(v))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn date_part(name: &str, secs: f64) -> f64 {
    // Go: time.Unix(int64(f), 0); out-of-range conversions give MinInt64.
    let s = if secs.is_nan() || secs >= 9.2e18 || secs <= -9.2e18 {
        i64::MIN
    } else {
        secs as i64
    };
    let days = s.div_euclid(86_400);
    let sod = s.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    match name {
        "year" => y as f64,
        "month" => m as f64,
        "day_of_month" => d as f64,
        "day_of_week" => ((days.rem_euclid(7) + 4) % 7) as f64,
        "day_of_year" => {
            let cum = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
            let mut doy = cum[(m - 1) as usize] + d as i64;
            if m > 2 && is_leap(y) {
                doy += 1;
            }
            doy as f64
        }
        "hour" => (sod / 3600) as f64,
        "minute" => ((sod % 3600) / 60) as f64,
        "days_in_month" => match m {
            2 => {
                if is_leap(y) {
                    29.0
                } else {
                    28.0
                }
            }
            4 | 6 | 9 | 11 => 30.0,
            _ => 31.0,
        },
        _ => f64::NAN,
    }
}

fn simple_fn(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "rad" => |v| v * std::f64::consts::PI / 180.0,
        "deg" => |v| v * 180.0 / std::f64::consts::PI,
        "sgn" => |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        _ => return None,
    })
}

const DATE_FUNCTIONS: &[&str] = &[
    "year",
    "month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "days_in_month",
];

fn instant_function(
    ev: &mut Evaluator,
    name: &str,
    args: &[&Expr],
) -> Result<EvalValue, QueryError> {
    if let Some(f) = simple_fn(name) {
        let mut v = ev.eval_vector(args[0])?;
        for p in v.iter_mut() {
            for x in p.vs.iter_mut() {
                *x = f(*x);
            }
        }
        return finish_instant_fn(ev, v);
    }
    if DATE_FUNCTIONS.contains(&name) {
        if args.is_empty() {
            let mut p = EvalSeries::new(Labels::empty(), false);
            for i in 0..ev.nsteps() {
                let t = ev.step_ts(i);
                p.ts.push(t);
                p.vs.push(date_part(name, (t / 1000) as f64));
            }
            return Ok(EvalValue::Vector(vec![p]));
        }
        let mut v = ev.eval_vector(args[0])?;
        for p in v.iter_mut() {
            for x in p.vs.iter_mut() {
                *x = date_part(name, *x);
            }
        }
        return finish_instant_fn(ev, v);
    }
    match name {
        "clamp" | "clamp_min" | "clamp_max" => {
            let v = ev.eval_vector(args[0])?;
            let n = ev.nsteps();
            let (lo, hi) = match name {
                "clamp" => (ev.eval_scalar(args[1])?, ev.eval_scalar(args[2])?),
                "clamp_min" => (ev.eval_scalar(args[1])?, vec![f64::INFINITY; n]),
                _ => (vec![f64::NEG_INFINITY; n], ev.eval_scalar(args[1])?),
            };
            let mut out = Vec::with_capacity(v.len());
            for mut p in v {
                let mut ts = Vec::with_capacity(p.ts.len());
                let mut vs = Vec::with_capacity(p.ts.len());
                for (t, x) in p.ts.iter().zip(&p.vs) {
                    let i = ev.step_idx(*t);
                    if hi[i] < lo[i] {
                        continue;
                    }
                    ts.push(*t);
                    vs.push(go_max(lo[i], go_min(hi[i], *x)));
                }
                if !ts.is_empty() {
                    p.ts = ts;
                    p.vs = vs;
                    out.push(p);
                }
            }
            finish_instant_fn(ev, out)
        }
        "round" => {
            let mut v = ev.eval_vector(args[0])?;
            let n = ev.nsteps();
            let to = if args.len() > 1 {
                ev.eval_scalar(args[1])?
            } else {
                vec![1.0; n]
            };
            for p in v.iter_mut() {
                for (t, x) in p.ts.iter().zip(p.vs.iter_mut()) {
                    let inv = 1.0 / to[ev.step_idx(*t)];
                    *x = (*x * inv + 0.5).floor() / inv;
                }
            }
            finish_instant_fn(ev, v)
        }
        _ => Err(QueryError::Unsupported(format!(
            "function {name}() is not supported"
        ))),
    }
}

/// Go's `math.Max`: +Inf wins over NaN, NaN over everything else, +0 over -0.
/// Rust's `f64::max` returns the other operand for a NaN, so `clamp` of a NaN
/// would give a bound instead of NaN.
fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        f64::INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && y == 0.0 {
        if x.is_sign_negative() {
            y
        } else {
            x
        }
    } else if x > y {
        x
    } else {
        y
    }
}

/// Go's `math.Min`: -Inf wins over NaN, NaN over everything else, -0 over +0.
fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && y == 0.0 {
        if x.is_sign_negative() {
            x
        } else {
            y
        }
    } else if x < y {
        x
    } else {
        y
    }
}

fn is_valid_label_name(s: &str) -> bool {
    !s.is_empty()
}

fn label_replace(ev: &mut Evaluator, args: &[&Expr]) -> Result<EvalValue, QueryError> {
    let dst = string_arg(args[1])?;
    let repl = string_arg(args[2])?;
    let src = string_arg(args[3])?;
    let re_str = string_arg(args[4])?;
    let re = regex::Regex::new(&format!("^(?s:{re_str})$")).map_err(|_| {
        QueryError::Execution(format!(
            "invalid regular expression in label_replace(): {re_str}"
        ))
    })?;
    if !is_valid_label_name(&dst) {
        return exec_err(format!(
            "invalid destination label name in label_replace(): {dst}"
        ));
    }
    let mut v = ev.eval_vector(args[0])?;
    for p in v.iter_mut() {
        let sv = p.labels.get(&src).unwrap_or("").to_string();
        if let Some(caps) = re.captures(&sv) {
            let mut res = String::new();
            caps.expand(&repl, &mut res);
            p.labels = labels_with(&p.labels, &[(&dst, &res)], &[]);
            if dst == METRIC_NAME {
                p.drop_name = false;
            }
        }
    }
    Ok(EvalValue::Vector(merge_same_labels(v)?))
}

fn label_join(ev: &mut Evaluator, args: &[&Expr]) -> Result<EvalValue, QueryError> {
    let dst = string_arg(args[1])?;
    let sep = string_arg(args[2])?;
    let mut srcs = Vec::new();
    for a in &args[3..] {
        let s = string_arg(a)?;
        if !is_valid_label_name(&s) {
            return exec_err(format!("invalid source label name in label_join(): {s}"));
        }
        srcs.push(s);
    }
    if !is_valid_label_name(&dst) {
        return exec_err(format!(
            "invalid destination label name in label_join(): {dst}"
        ));
    }
    let mut v = ev.eval_vector(args[0])?;
    for p in v.iter_mut() {
        let joined = srcs
            .iter()
            .map(|s| p.labels.get(s).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(&sep);
        p.labels = labels_with(&p.labels, &[(&dst, &joined)], &[]);
        if dst == METRIC_NAME {
            p.drop_name = false;
        }
    }
    Ok(EvalValue::Vector(merge_same_labels(v)?))
}

fn histogram_quantile(ev: &mut Evaluator, args: &[&Expr]) -> Result<EvalValue, QueryError> {
    let q = ev.eval_scalar(args[0])?;
    let v = ev.eval_vector(args[1])?;
    // Per input series: its bucket bound and group (all labels but `le`).
    let mut group_of: Vec<Option<(usize, f64)>> = Vec::with_capacity(v.len());
    let mut groups: HashMap<Labels, usize> = HashMap::new();
    let mut group_labels: Vec<Labels> = Vec::new();
    let mut group_names: Vec<String> = Vec::new();
    let delayed = ev.delayed();
    let mut bad_le: Vec<(String, String)> = Vec::new();
    for p in &v {
        let le = p.labels.get("le").unwrap_or("");
        match parse_go_float(le.as_bytes()) {
            None => {
                let name = if delayed {
                    p.labels.metric_name().unwrap_or("").to_string()
                } else {
                    String::new()
                };
                bad_le.push((le.to_string(), name));
                group_of.push(None);
            }
            Some(ub) => {
                let key = labels_with(&p.labels, &[], &["le"]);
                let next = groups.len();
                let g = *groups.entry(key.clone()).or_insert_with(|| {
                    group_labels.push(labels_with(&key, &[], &[METRIC_NAME]));
                    group_names.push(if delayed {
                        key.metric_name().unwrap_or("").to_string()
                    } else {
                        String::new()
                    });
                    next
                });
                group_of.push(Some((g, ub)));
            }
        }
    }
    let pos1 = source_pos(&ev.query, "histogram_quantile", Some(1));
    for (le, name) in bad_le {
        ev.warnings.push(format!(
            "PromQL warning: bucket label \"le\" is missing or has a malformed value of {} for metric name {}{pos1}",
            crate::model::labels::go_quote(&le),
            crate::model::labels::go_quote(&name)
        ));
    }
    let n = ev.nsteps();
    let mut cur = vec![0usize; v.len()];
    let mut buckets: Vec<Vec<Bucket>> = vec![Vec::new(); group_labels.len()];
    let mut out = SeriesCollector::new();
    let mut forced: Vec<bool> = vec![false; group_labels.len()];
    for (i, &qi) in q.iter().enumerate().take(n) {
        let t = ev.step_ts(i);
        for b in buckets.iter_mut() {
            b.clear();
        }
        for (si, p) in v.iter().enumerate() {
            if cur[si] < p.ts.len() && p.ts[cur[si]] == t {
                if let Some((g, ub)) = group_of[si] {
                    buckets[g].push(Bucket {
                        upper: ub,
                        count: p.vs[cur[si]],
                    });
                }
                cur[si] += 1;
            }
        }
        for (g, b) in buckets.iter_mut().enumerate() {
            if b.is_empty() {
                continue;
            }
            let (val, f) = bucket_quantile(qi, b);
            forced[g] |= f;
            out.push(group_labels[g].clone(), true, t, val)?;
        }
    }
    for (g, f) in forced.iter().enumerate() {
        if *f {
            ev.infos.push(format!(
                "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {}{pos1}",
                crate::model::labels::go_quote(&group_names[g])
            ));
        }
    }
    let pos0 = source_pos(&ev.query, "histogram_quantile", Some(0));
    let mut bad_q: Vec<f64> = Vec::new();
    for &x in &q {
        if (x.is_nan() || !(0.0..=1.0).contains(&x))
            && !bad_q.iter().any(|y| y.to_bits() == x.to_bits())
        {
            bad_q.push(x);
        }
    }
    for x in bad_q {
        ev.warnings.push(format!(
            "PromQL warning: quantile value should be between 0 and 1, got {}{pos0}",
            format_go_float_g(x)
        ));
    }
    let mut series = out.series;
    if ev.delayed() {
        // Labels already lack __name__; nothing to flag.
        for p in series.iter_mut() {
            p.drop_name = true;
        }
    }
    for p in series.iter_mut() {
        p.labels = drop_metric_name(&p.labels);
    }
    Ok(EvalValue::Vector(series))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_extrapolates_like_prometheus() {
        // 0, 10, ..., 50 at 0s..50s (every 10s); range (0s, 50s] -> samples 10s..50s.
        let ts: Vec<i64> = (1..=5).map(|i| i * 10_000).collect();
        let vs: Vec<f64> = (1..=5).map(|i| i as f64 * 10.0).collect();
        // increase over (0,50]: raw 40 over 40s, extrapolated to start (10s < 11s
        // threshold) but not below zero: zero point is 10s before first sample.
        let inc =
            extrapolated_rate(&ts, &vs, 0, 50_000, 50_000, Extrapolated::Increase, true).unwrap();
        assert!((inc - 50.0).abs() < 1e-9, "{inc}");
        let rate =
            extrapolated_rate(&ts, &vs, 0, 50_000, 50_000, Extrapolated::Rate, true).unwrap();
        assert!((rate - 1.0).abs() < 1e-9);
        assert!(extrapolated_rate(
            &ts[..1],
            &vs[..1],
            0,
            50_000,
            50_000,
            Extrapolated::Rate,
            true
        )
        .is_none());
    }

    #[test]
    fn counter_resets_are_added_back() {
        let ts = [10_000, 20_000, 30_000];
        let vs = [10.0, 2.0, 4.0];
        let d = extrapolated_rate(
            &ts,
            &vs,
            10_000,
            30_000,
            20_000,
            Extrapolated::Increase,
            true,
        )
        .unwrap();
        // raw: 4 - 10 + 10 = 4 over 20s, no extrapolation needed.
        assert!((d - 4.0).abs() < 1e-9, "{d}");
    }

    #[test]
    fn irate_and_idelta() {
        assert_eq!(instant_value(&[0, 10_000], &[5.0, 3.0], true), Some(0.3));
        assert_eq!(instant_value(&[0, 10_000], &[5.0, 3.0], false), Some(-2.0));
    }

    #[test]
    fn bucket_quantile_sorts_and_fixes_monotonicity() {
        let mut b = vec![
            Bucket {
                upper: f64::INFINITY,
                count: 10.0,
            },
            Bucket {
                upper: 1.0,
                count: 5.0,
            },
            Bucket {
                upper: 2.0,
                count: 4.0,
            },
        ];
        let (v, forced) = bucket_quantile(0.5, &mut b);
        assert!(forced);
        assert!((v - 1.0).abs() < 1e-12, "{v}");
        let mut none = vec![Bucket {
            upper: 1.0,
            count: 1.0,
        }];
        assert!(bucket_quantile(0.5, &mut none).0.is_nan());
    }

    #[test]
    fn quantile_interpolates() {
        let mut v = vec![4.0, 1.0, 2.0, 3.0];
        assert_eq!(quantile(0.5, &mut v), 2.5);
        assert_eq!(quantile(2.0, &mut v), f64::INFINITY);
    }

    #[test]
    fn kahan_keeps_small_terms() {
        let (s, c) = [1e100, 1.0, -1e100]
            .iter()
            .fold((0.0, 0.0), |(s, c), &x| kahan_inc(x, s, c));
        assert_eq!(s + c, 1.0);
    }

    #[test]
    fn dates() {
        assert_eq!(date_part("year", 0.0), 1970.0);
        assert_eq!(date_part("day_of_week", 0.0), 4.0);
        assert_eq!(date_part("days_in_month", 1_078_099_200.0), 31.0); // 2004-03-01
        assert_eq!(date_part("day_of_year", 1_078_099_200.0), 61.0);
    }

    #[test]
    fn clamp_bounds_follow_go_min_max() {
        // clamp(NaN, 0, +Inf) is NaN in Prometheus, not the bound.
        assert!(go_max(0.0, go_min(f64::INFINITY, f64::NAN)).is_nan());
        assert!(go_max(f64::NEG_INFINITY, go_min(0.0, f64::NAN)).is_nan());
        assert_eq!(go_max(f64::INFINITY, f64::NAN), f64::INFINITY);
        assert_eq!(go_min(f64::NEG_INFINITY, f64::NAN), f64::NEG_INFINITY);
        assert!(go_max(-0.0, 0.0).is_sign_positive());
        assert!(go_min(0.0, -0.0).is_sign_negative());
        assert_eq!(go_max(1.0, go_min(5.0, 7.0)), 5.0);
    }
}
