//! Aggregation operators (`sum`, `avg`, ..., `topk`, `quantile`, `count_values`).

use std::collections::HashMap;

use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_LIMITK, T_LIMIT_RATIO, T_MAX, T_MIN,
    T_QUANTILE, T_STDDEV, T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};

use super::evaluator::{
    exec_err, grouping_labels, source_pos, EvalSeries, EvalValue, Evaluator, Grouping,
    SeriesCollector,
};
use super::functions::{kahan_inc, quantile, selects_directly};
use super::value::QueryError;
use crate::model::labels::{Label, Labels};
use crate::model::number::{format_go_float_f, format_go_float_g};

/// The output labels of a series' group (also its grouping key).
fn group_labels(l: &Labels, g: &Grouping) -> Labels {
    grouping_labels(l, g, false)
}

fn f2i64(f: f64) -> i64 {
    // Go's int64(f) truncates toward zero (out-of-range handled by the callers).
    f as i64
}

/// Above this many (group, step) cells, aggregate step by step instead of series by series.
const SERIES_MAJOR_CELLS: usize = 1 << 19;

#[cfg(test)]
thread_local! {
    /// Lets tests force the step-by-step path.
    pub(crate) static FORCE_STEP_MAJOR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn series_major_cells() -> usize {
    #[cfg(test)]
    if FORCE_STEP_MAJOR.with(|c| c.get()) {
        return 0;
    }
    SERIES_MAJOR_CELLS
}

#[derive(Clone, Default)]
struct Group {
    seen: bool,
    f: f64,
    mean: f64,
    c: f64,
    count: f64,
    incremental: bool,
    heap: Vec<f64>,
    drop_name: bool,
}

impl Group {
    /// The first sample of a group at a step.
    fn init(&mut self, op: u16, f: f64, drop_name: bool) {
        *self = Group {
            seen: true,
            f,
            mean: f,
            c: 0.0,
            count: 1.0,
            incremental: false,
            heap: Vec::new(),
            drop_name,
        };
        match op {
            T_STDVAR | T_STDDEV => {
                self.f = if f.is_nan() || f.is_infinite() {
                    f64::NAN
                } else {
                    0.0
                }
            }
            T_QUANTILE => self.heap.push(f),
            T_GROUP => self.f = 1.0,
            _ => {}
        }
    }

    /// Every further sample (Prometheus's `aggregation`).
    #[inline]
    fn update(&mut self, op: u16, f: f64, drop_name: bool) {
        if drop_name {
            self.drop_name = true;
        }
        match op {
            T_SUM => (self.f, self.c) = kahan_inc(f, self.f, self.c),
            T_AVG => {
                self.count += 1.0;
                if !self.incremental {
                    let (nv, nc) = kahan_inc(f, self.f, self.c);
                    if !nv.is_infinite() {
                        self.f = nv;
                        self.c = nc;
                        return;
                    }
                    self.incremental = true;
                    self.mean = self.f / (self.count - 1.0);
                    self.c /= self.count - 1.0;
                }
                let q = (self.count - 1.0) / self.count;
                (self.mean, self.c) = kahan_inc(f / self.count, q * self.mean, q * self.c);
            }
            T_MAX if self.f < f || self.f.is_nan() => self.f = f,
            T_MIN if self.f > f || self.f.is_nan() => self.f = f,
            T_COUNT => self.count += 1.0,
            T_STDVAR | T_STDDEV => {
                self.count += 1.0;
                let delta = f - self.mean;
                self.mean += delta / self.count;
                self.f += delta * (f - self.mean);
            }
            T_QUANTILE => self.heap.push(f),
            _ => {}
        }
    }

    /// The group's result at a step (`q` for quantile).
    fn value(&mut self, op: u16, q: f64) -> f64 {
        match op {
            T_AVG => {
                if self.incremental {
                    self.mean + self.c
                } else {
                    self.f / self.count + self.c / self.count
                }
            }
            T_COUNT => self.count,
            T_STDVAR => self.f / self.count,
            T_STDDEV => (self.f / self.count).sqrt(),
            T_QUANTILE => quantile(q, &mut self.heap),
            T_SUM => self.f + self.c,
            _ => self.f,
        }
    }
}

impl Evaluator<'_> {
    /// An aggregation (`sum by (job) (x)`, `topk(3, x)`, ...).
    pub(super) fn eval_aggregate(&mut self, a: &AggregateExpr) -> Result<EvalValue, QueryError> {
        let ev = self;
        let op = a.op.id();
        let (without, mut grouping): (bool, Vec<String>) = match &a.modifier {
            None => (false, Vec::new()),
            Some(LabelModifier::Include(l)) => (false, l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => (true, l.labels.clone()),
        };
        grouping.sort();
        if op == T_COUNT_VALUES {
            let label = match a.param.as_deref() {
                Some(Expr::StringLiteral(s)) => s.val.clone(),
                Some(Expr::Paren(p)) => match &*p.expr {
                    Expr::StringLiteral(s) => s.val.clone(),
                    _ => return exec_err("count_values requires a string parameter"),
                },
                _ => return exec_err("count_values requires a string parameter"),
            };
            if label.is_empty() {
                return exec_err(format!(
                    "invalid label name {}",
                    crate::model::labels::go_quote(&label)
                ));
            }
            if !without {
                grouping.push(label.clone());
                grouping.sort();
            }
            let input = ev.eval_vector(&a.expr)?;
            let g = Grouping {
                without,
                names: grouping,
            };
            return count_values(ev, input, &label, &g);
        }
        let param: Option<Vec<f64>> = match op {
            T_TOPK | T_BOTTOMK | T_QUANTILE | T_LIMITK | T_LIMIT_RATIO => {
                match a.param.as_deref() {
                    Some(p) => Some(ev.eval_scalar(p)?),
                    None => return exec_err("aggregation requires a parameter"),
                }
            }
            _ => None,
        };
        let g = Grouping {
            without,
            names: grouping,
        };
        // An argument that selects series straight from the store keeps only their
        // grouping labels: these aggregations never output an argument's own labels.
        if matches!(
            op,
            T_SUM | T_AVG | T_COUNT | T_GROUP | T_MIN | T_MAX | T_STDDEV | T_STDVAR
        ) && selects_directly(ev, &a.expr)
        {
            ev.grouping = Some(g.clone());
        }
        let input = ev.eval_vector(&a.expr);
        ev.grouping = None;
        let input = input?;
        let n = ev.nsteps();

        // Map series to groups once.
        let mut gindex: HashMap<Labels, usize, foldhash::fast::RandomState> = HashMap::default();
        let mut glabels: Vec<Labels> = Vec::new();
        let mut series_group: Vec<usize> = Vec::with_capacity(input.len());
        for p in &input {
            let gl = group_labels(&p.labels, &g);
            let next = glabels.len();
            let g = *gindex.entry(gl.clone()).or_insert_with(|| {
                glabels.push(gl);
                next
            });
            series_group.push(g);
        }

        match op {
            T_TOPK | T_BOTTOMK | T_LIMITK => {
                let k = param.unwrap_or_default();
                let max = k
                    .iter()
                    .copied()
                    .fold(f64::NAN, |m, x| if m.is_nan() || x > m { x } else { m });
                let max_no_nan = k
                    .iter()
                    .copied()
                    .filter(|x| !x.is_nan())
                    .fold(f64::NAN, f64::max);
                let max_eff = if k.iter().all(|x| x.is_nan()) {
                    max
                } else {
                    max_no_nan
                };
                if max_eff < 1.0 {
                    return Ok(EvalValue::Vector(Vec::new()));
                }
                if k.iter().any(|x| x.is_nan()) {
                    return exec_err("Parameter value is NaN");
                }
                let min = k.iter().copied().fold(f64::INFINITY, f64::min);
                if min <= i64::MIN as f64 {
                    return exec_err(format!(
                        "Scalar value {} underflows int64",
                        format_go_float_g(min)
                    ));
                }
                if max_eff >= i64::MAX as f64 {
                    return exec_err(format!(
                        "Scalar value {} overflows int64",
                        format_go_float_g(max_eff)
                    ));
                }
                return select_k(ev, op, &input, &series_group, glabels.len(), &k);
            }
            T_LIMIT_RATIO => {
                let r = param.unwrap_or_default();
                if r.iter().all(|x| *x == 0.0) {
                    return Ok(EvalValue::Vector(Vec::new()));
                }
                if r.iter().any(|x| x.is_nan()) {
                    return exec_err("Ratio value is NaN");
                }
                return limit_ratio(ev, &input, &r);
            }
            T_QUANTILE => {
                let q = param.as_deref().unwrap_or(&[]);
                let pos = source_pos(&ev.query, "quantile", Some(0));
                let max = q
                    .iter()
                    .copied()
                    .filter(|x| !x.is_nan())
                    .fold(f64::NAN, f64::max);
                let min = q
                    .iter()
                    .copied()
                    .filter(|x| !x.is_nan())
                    .fold(f64::NAN, f64::min);
                for (bad, v) in [
                    (q.iter().any(|x| x.is_nan()), f64::NAN),
                    (max > 1.0, max),
                    (min < 0.0, min),
                ] {
                    if bad {
                        ev.warnings.push(format!(
                            "PromQL warning: quantile value should be between 0 and 1, got {}{pos}",
                            format_go_float_g(v)
                        ));
                    }
                }
            }
            _ => {}
        }

        if !matches!(
            op,
            T_SUM | T_AVG | T_COUNT | T_GROUP | T_MIN | T_MAX | T_STDDEV | T_STDVAR | T_QUANTILE
        ) {
            return exec_err(format!("unsupported aggregation operator {}", a.op));
        }
        let mut out: Vec<EvalSeries> = glabels
            .iter()
            .map(|l| EvalSeries::new(l.clone(), false))
            .collect();
        let ngroups = glabels.len();
        if op != T_QUANTILE && ngroups.saturating_mul(n) <= series_major_cells() {
            // Few (group, step) cells: accumulate series by series over whole columns.
            // Within a cell, series are still added in input order, as Prometheus does.
            let mut cells = vec![Group::default(); ngroups * n];
            let points: usize = input.iter().map(|p| p.ts.len()).sum();
            let ev_ref = &*ev;
            if matches!(op, T_COUNT | T_GROUP) && ngroups < crate::par::cores() {
                // Fewer groups than cores (`count` of everything): counting comes out the
                // same in any order, so ranges of series count on their own and add up.
                let per_range = input.len().div_ceil(crate::par::cores() * 4).max(1);
                let ranges: Vec<std::ops::Range<usize>> = (0..input.len())
                    .step_by(per_range)
                    .map(|s| s..(s + per_range).min(input.len()))
                    .collect();
                let counted = crate::par::map(ranges, points, |range| {
                    let mut own = vec![Group::default(); ngroups * n];
                    for si in range {
                        if si % 1024 == 0 {
                            ev_ref.check_timeout()?;
                        }
                        let base = series_group[si] * n;
                        add_to_cells(&mut own[base..base + n], op, &input[si], ev_ref);
                    }
                    Ok::<_, QueryError>(own)
                })?;
                for own in counted {
                    for (c, o) in cells.iter_mut().zip(own) {
                        match (c.seen, o.seen) {
                            (_, false) => {}
                            (false, true) => *c = o,
                            (true, true) => {
                                c.count += o.count;
                                c.drop_name |= o.drop_name;
                            }
                        }
                    }
                }
            } else {
                // Groups are independent: each thread takes a range of groups and walks
                // the series in input order, so every cell sees its series in the same
                // order.
                let ranges = ngroups.min(crate::par::cores() * 4).max(1);
                let per_range = ngroups.div_ceil(ranges).max(1);
                let parts: Vec<(usize, &mut [Group])> = cells
                    .chunks_mut(per_range * n)
                    .enumerate()
                    .map(|(k, c)| (k * per_range, c))
                    .collect();
                let work = if ngroups > 1 { points } else { 0 };
                crate::par::map(parts, work, |(first, cells)| {
                    let groups = first..first + cells.len() / n;
                    for (si, p) in input.iter().enumerate() {
                        if si % 1024 == 0 {
                            ev_ref.check_timeout()?;
                        }
                        if !groups.contains(&series_group[si]) {
                            continue;
                        }
                        let base = (series_group[si] - first) * n;
                        add_to_cells(&mut cells[base..base + n], op, p, ev_ref);
                    }
                    Ok::<_, QueryError>(())
                })?;
            }
            for (gi, o) in out.iter_mut().enumerate() {
                for i in 0..n {
                    let g = &mut cells[gi * n + i];
                    if g.seen {
                        o.ts.push(ev.step_ts(i));
                        o.vs.push(g.value(op, f64::NAN));
                        o.drop_name |= g.drop_name;
                    }
                }
            }
        } else {
            let mut groups = vec![Group::default(); ngroups];
            let mut cur = vec![0usize; input.len()];
            for i in 0..n {
                if i % 64 == 0 {
                    ev.check_timeout()?;
                }
                let t = ev.step_ts(i);
                for g in groups.iter_mut() {
                    g.seen = false;
                }
                for (si, p) in input.iter().enumerate() {
                    let c = cur[si];
                    if c >= p.ts.len() || p.ts[c] != t {
                        continue;
                    }
                    cur[si] = c + 1;
                    let g = &mut groups[series_group[si]];
                    if g.seen {
                        g.update(op, p.vs[c], p.drop_name);
                    } else {
                        g.init(op, p.vs[c], p.drop_name);
                    }
                }
                let q = param.as_ref().map(|p| p[i]).unwrap_or(f64::NAN);
                for (gi, g) in groups.iter_mut().enumerate() {
                    if !g.seen {
                        continue;
                    }
                    let o = &mut out[gi];
                    o.ts.push(t);
                    o.vs.push(g.value(op, q));
                    o.drop_name = g.drop_name;
                }
            }
        }
        let out: Vec<EvalSeries> = out.into_iter().filter(|p| !p.ts.is_empty()).collect();
        let total: usize = out.iter().map(|p| p.ts.len()).sum();
        ev.add_samples(total)?;
        Ok(EvalValue::Vector(out))
    }
}

/// Adds a series' points to its group's cells, one cell a step: points lie on the
/// step grid in time order, so the grid is walked, not divided.
#[inline]
fn add_to_cells(cells: &mut [Group], op: u16, p: &EvalSeries, ev: &Evaluator) {
    let (mut i, mut step_t) = (0, ev.start);
    for (&t, &f) in p.ts.iter().zip(&p.vs) {
        while step_t < t {
            step_t += ev.interval;
            i += 1;
        }
        let Some(g) = cells.get_mut(i) else { return };
        if g.seen {
            g.update(op, f, p.drop_name);
        } else {
            g.init(op, f, p.drop_name);
        }
    }
}

fn select_k(
    ev: &mut Evaluator,
    op: u16,
    input: &[EvalSeries],
    series_group: &[usize],
    ngroups: usize,
    k: &[f64],
) -> Result<EvalValue, QueryError> {
    let n = ev.nsteps();
    let mut cur = vec![0usize; input.len()];
    let mut cands: Vec<Vec<(usize, f64)>> = vec![Vec::new(); ngroups];
    let mut out = SeriesCollector::new();
    for (i, kf) in k.iter().enumerate().take(n) {
        let t = ev.step_ts(i);
        for c in cands.iter_mut() {
            c.clear();
        }
        let mut group_order: Vec<usize> = Vec::new();
        for (si, p) in input.iter().enumerate() {
            let c = cur[si];
            if c >= p.ts.len() || p.ts[c] != t {
                continue;
            }
            cur[si] = c + 1;
            let g = series_group[si];
            if cands[g].is_empty() {
                group_order.push(g);
            }
            cands[g].push((si, p.vs[c]));
        }
        let kk = f2i64(*kf).min(input.len() as i64);
        if kk < 1 {
            continue;
        }
        let kk = kk as usize;
        group_order.sort_unstable();
        for g in group_order {
            let c = &mut cands[g];
            match op {
                T_TOPK => {
                    *c = heap_select(c, kk, true);
                    c.sort_by(|a, b| desc_nan_last(a.1, b.1));
                }
                T_BOTTOMK => {
                    *c = heap_select(c, kk, false);
                    c.sort_by(|a, b| asc_nan_last(a.1, b.1));
                }
                _ => {}
            }
            for &(si, v) in c.iter().take(kk) {
                let p = &input[si];
                out.push(p.labels.clone(), p.drop_name, t, v)?;
            }
        }
    }
    let total: usize = out.series.iter().map(|p| p.ts.len()).sum();
    ev.add_samples(total)?;
    Ok(EvalValue::Vector(out.series))
}

/// `limit_ratio`: keeps a series when its label-set hash, scaled to [0, 1), falls
/// below the ratio (or, for a negative ratio, at or above `1 + ratio`), as Prometheus's
/// `HashRatioSampler` does with its default (`stringlabels`) label hash.
fn limit_ratio(
    ev: &mut Evaluator,
    input: &[EvalSeries],
    ratio: &[f64],
) -> Result<EvalValue, QueryError> {
    let offsets: Vec<f64> = input
        .iter()
        .map(|p| prometheus_labels_hash(&p.labels) as f64 / u64::MAX as f64)
        .collect();
    let mut out = SeriesCollector::new();
    let mut cur = vec![0usize; input.len()];
    for (i, &r) in ratio.iter().enumerate().take(ev.nsteps()) {
        let t = ev.step_ts(i);
        let r = r.clamp(-1.0, 1.0);
        for (si, p) in input.iter().enumerate() {
            let c = cur[si];
            if c >= p.ts.len() || p.ts[c] != t {
                continue;
            }
            cur[si] = c + 1;
            let o = offsets[si];
            let keep = r != 0.0 && ((r >= 0.0 && o < r) || (r < 0.0 && o >= 1.0 + r));
            if keep {
                out.push(p.labels.clone(), p.drop_name, t, p.vs[c])?;
            }
        }
    }
    Ok(EvalValue::Vector(out.finish()))
}

/// Prometheus's `labels.Labels.Hash()` for its default `stringlabels` encoding:
/// xxhash64 over each name and value prefixed by its length (one byte below 255,
/// else 0xff and three little-endian bytes).
pub(crate) fn prometheus_labels_hash(l: &Labels) -> u64 {
    let mut buf: Vec<u8> = Vec::with_capacity(64);
    let mut put = |s: &str| {
        let n = s.len();
        if n < 255 {
            buf.push(n as u8);
        } else {
            buf.extend_from_slice(&[255, n as u8, (n >> 8) as u8, (n >> 16) as u8]);
        }
        buf.extend_from_slice(s.as_bytes());
    };
    for x in l.iter() {
        put(&x.name);
        put(&x.value);
    }
    twox_hash::XxHash64::oneshot(0, &buf)
}

/// The `k` candidates `topk` (`top`) or `bottomk` keep, chosen the way Prometheus
/// chooses them: a heap of up to `k` samples in input order, the weakest at the root,
/// replaced only by a strictly better sample. Among equal values this decides which
/// series stay, so a plain sort would keep different series than Prometheus on ties.
fn heap_select(cands: &[(usize, f64)], k: usize, top: bool) -> Vec<(usize, f64)> {
    // The heap order (Prometheus's vectorByValueHeap / vectorByReverseValueHeap): NaN
    // is always "less", so it sits at the root and is evicted first.
    let less = |a: f64, b: f64| a.is_nan() || if top { a < b } else { a > b };
    let mut heap: Vec<(usize, f64)> = Vec::with_capacity(k.min(cands.len()));
    for &c in cands {
        if heap.len() < k {
            heap.push(c);
            let last = heap.len() - 1;
            heap_up(&mut heap, last, &less);
        } else {
            let root = heap[0].1;
            let better = if top { root < c.1 } else { root > c.1 };
            if better || (root.is_nan() && !c.1.is_nan()) {
                heap[0] = c;
                heap_down(&mut heap, 0, &less);
            }
        }
    }
    heap
}

/// Go's `container/heap` `up`.
fn heap_up(h: &mut [(usize, f64)], mut j: usize, less: &impl Fn(f64, f64) -> bool) {
    while j > 0 {
        let parent = (j - 1) / 2;
        if !less(h[j].1, h[parent].1) {
            break;
        }
        h.swap(parent, j);
        j = parent;
    }
}

/// Go's `container/heap` `down`.
fn heap_down(h: &mut [(usize, f64)], mut i: usize, less: &impl Fn(f64, f64) -> bool) {
    let n = h.len();
    loop {
        let left = 2 * i + 1;
        if left >= n {
            break;
        }
        let mut j = left;
        if left + 1 < n && less(h[left + 1].1, h[left].1) {
            j = left + 1;
        }
        if !less(h[j].1, h[i].1) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
}

fn desc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Equal,
        (true, false) => Greater,
        (false, true) => Less,
        _ => b.partial_cmp(&a).unwrap_or(Equal),
    }
}

fn asc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Equal,
        (true, false) => Greater,
        (false, true) => Less,
        _ => a.partial_cmp(&b).unwrap_or(Equal),
    }
}

fn count_values(
    ev: &mut Evaluator,
    input: Vec<EvalSeries>,
    label: &str,
    g: &Grouping,
) -> Result<EvalValue, QueryError> {
    let n = ev.nsteps();
    let mut cur = vec![0usize; input.len()];
    let mut out = SeriesCollector::new();
    for i in 0..n {
        let t = ev.step_ts(i);
        let mut counts: Vec<(Labels, f64)> = Vec::new();
        let mut idx: HashMap<Labels, usize> = HashMap::new();
        for (si, p) in input.iter().enumerate() {
            let c = cur[si];
            if c >= p.ts.len() || p.ts[c] != t {
                continue;
            }
            cur[si] = c + 1;
            let mut lv: Vec<Label> = p
                .labels
                .iter()
                .filter(|l| &*l.name != label)
                .cloned()
                .collect();
            lv.push(Label::new(label, format_go_float_f(p.vs[c])));
            let metric = Labels::new(lv);
            let gl = group_labels(&metric, g);
            match idx.get(&gl) {
                Some(&k) => counts[k].1 += 1.0,
                None => {
                    idx.insert(gl.clone(), counts.len());
                    counts.push((gl, 1.0));
                }
            }
        }
        for (l, c) in counts {
            out.push(l, false, t, c)?;
        }
    }
    Ok(EvalValue::Vector(out.series))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_aggregation_paths_agree_on_the_corpus() {
        // Prometheus's corpus lives beside the repository (docs/design.md, "Reference data
        // outside the repository").
        let dir = std::env::var_os("PROMQL_TESTDATA")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/promql-testdata")
            });
        let path = dir.join("aggregators.test");
        assert!(
            path.is_file(),
            "Prometheus's PromQL corpus is missing: {} not found (set PROMQL_TESTDATA)",
            path.display()
        );
        let a = crate::promql::testscript::run_file(&path);
        FORCE_STEP_MAJOR.with(|c| c.set(true));
        let b = crate::promql::testscript::run_file(&path);
        FORCE_STEP_MAJOR.with(|c| c.set(false));
        assert_eq!(a.passed, b.passed);
        assert_eq!(a.failed.len(), b.failed.len());
    }

    #[test]
    fn topk_ties_keep_the_series_prometheus_keeps() {
        // Inputs in series order; two series tie for the last place of topk(3).
        let cands = [(0, -5.0), (1, -20.1), (2, -20.1), (3, -10.0)];
        let mut kept: Vec<usize> = heap_select(&cands, 3, true).iter().map(|c| c.0).collect();
        kept.sort();
        // The heap evicts series 1 (its root) for series 3, and keeps series 2.
        assert_eq!(kept, vec![0, 2, 3]);
        let mut kept: Vec<usize> = heap_select(&[(0, 1.0), (1, 1.0), (2, 0.5)], 1, false)
            .iter()
            .map(|c| c.0)
            .collect();
        kept.sort();
        assert_eq!(kept, vec![2]);
        // NaN goes first when anything else is there.
        let kept = heap_select(&[(0, f64::NAN), (1, 2.0), (2, 1.0)], 2, true);
        assert!(kept.iter().all(|c| !c.1.is_nan()));
    }

    #[test]
    fn series_hash_is_xxhash64_as_prometheus_has_it() {
        // Reference values of xxHash64 with seed 0 (cespare/xxhash's Sum64).
        assert_eq!(twox_hash::XxHash64::oneshot(0, b""), 0xef46db3751d8e999);
        assert_eq!(twox_hash::XxHash64::oneshot(0, b"a"), 0xd24ec4f1a98c6e5b);
        assert_eq!(
            twox_hash::XxHash64::oneshot(0, b"Nobody inspects the spammish repetition"),
            0xfbcea83c8a378bf1
        );
    }

    #[test]
    fn grouping_labels() {
        let l = Labels::from_pairs([("__name__", "x"), ("a", "1"), ("b", "2")]);
        let by = |without| Grouping {
            without,
            names: vec!["a".to_string()],
        };
        assert_eq!(
            group_labels(&l, &by(false)),
            Labels::from_pairs([("a", "1")])
        );
        assert_eq!(
            group_labels(&l, &by(true)),
            Labels::from_pairs([("b", "2")])
        );
        let all = Grouping {
            without: false,
            names: vec![],
        };
        assert_eq!(group_labels(&l, &all), Labels::empty());
    }
}
