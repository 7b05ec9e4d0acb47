//! Binary operators: arithmetic, comparisons (with `bool`), set operators, and
//! vector matching (`on`/`ignoring`, `group_left`/`group_right`, fill values).

use std::collections::HashMap;

use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB,
};
use promql_parser::parser::{BinModifier, BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::evaluator::{
    drop_metric_name, exec_err, go_labels_string, is_metadata_label, merge_same_labels, EvalSeries,
    EvalValue, Evaluator, SeriesCollector,
};
use super::value::QueryError;
use crate::model::labels::{Label, Labels, METRIC_NAME};

fn is_comparison(op: u16) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

fn changes_metric_schema(op: u16) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_POW | T_MOD | T_ATAN2)
}

#[inline]
fn b2f(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Scalar-scalar arithmetic and comparisons (comparisons give 0/1).
#[inline]
pub fn scalar_binop(op: u16, l: f64, r: f64) -> f64 {
    match op {
        T_ADD => l + r,
        T_SUB => l - r,
        T_MUL => l * r,
        T_DIV => l / r,
        T_POW => l.powf(r),
        T_MOD => l % r,
        T_ATAN2 => l.atan2(r),
        T_EQLC => b2f(l == r),
        T_NEQ => b2f(l != r),
        T_GTR => b2f(l > r),
        T_LSS => b2f(l < r),
        T_GTE => b2f(l >= r),
        T_LTE => b2f(l <= r),
        _ => f64::NAN,
    }
}

/// Element operation between two floats: (value, keep).
#[inline]
fn elem_binop(op: u16, l: f64, r: f64) -> (f64, bool) {
    match op {
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => (scalar_binop(op, l, r), true),
    }
}

impl Evaluator<'_> {
    /// A binary operation: arithmetic, comparison or set operator, with vector matching.
    pub(super) fn eval_binary(&mut self, b: &BinaryExpr) -> Result<EvalValue, QueryError> {
        let ev = self;
        let op = b.op.id();
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let lhs = ev.eval(&b.lhs)?;
        let rhs = ev.eval(&b.rhs)?;
        match (lhs, rhs) {
            (EvalValue::Scalar(l), EvalValue::Scalar(r)) => Ok(EvalValue::Scalar(
                l.iter()
                    .zip(&r)
                    .map(|(&a, &c)| scalar_binop(op, a, c))
                    .collect(),
            )),
            (EvalValue::Vector(l), EvalValue::Scalar(r)) => {
                vector_scalar(ev, op, l, &r, false, return_bool)
            }
            (EvalValue::Scalar(l), EvalValue::Vector(r)) => {
                vector_scalar(ev, op, r, &l, true, return_bool)
            }
            (EvalValue::Vector(l), EvalValue::Vector(r)) => {
                let m = Matching::from(b.modifier.as_ref());
                match op {
                    T_LAND | T_LOR | T_LUNLESS => set_op(ev, op, l, r, &m),
                    _ => vector_binop(ev, op, l, r, &m, return_bool),
                }
            }
            (l, r) => exec_err(format!(
            "binary expression must contain only scalar and instant vector types, got {} and {}",
            l.type_name(),
            r.type_name()
        )),
        }
    }
}

fn vector_scalar(
    ev: &mut Evaluator,
    op: u16,
    v: Vec<EvalSeries>,
    s: &[f64],
    swap: bool,
    return_bool: bool,
) -> Result<EvalValue, QueryError> {
    let rename = changes_metric_schema(op) || return_bool;
    let mut out = Vec::with_capacity(v.len());
    for mut p in v {
        let mut ts = Vec::with_capacity(p.ts.len());
        let mut vs = Vec::with_capacity(p.ts.len());
        for (&t, &x) in p.ts.iter().zip(&p.vs) {
            let sv = s[ev.step_idx(t)];
            let (l, r) = if swap { (sv, x) } else { (x, sv) };
            let (mut val, mut keep) = elem_binop(op, l, r);
            if is_comparison(op) && swap {
                val = r;
            }
            if return_bool {
                val = b2f(keep);
                keep = true;
            }
            if keep {
                ts.push(t);
                vs.push(val);
            }
        }
        if ts.is_empty() {
            continue;
        }
        p.ts = ts;
        p.vs = vs;
        if rename {
            p.labels = ev.name_dropped(&p.labels);
            p.drop_name = true;
        }
        out.push(p);
    }
    if rename && !ev.delayed() {
        out = merge_same_labels(out)?;
    }
    Ok(EvalValue::Vector(out))
}

/// How two vectors' series are matched.
struct Matching {
    on: bool,
    labels: Vec<String>,
    card: Cardinality,
    include: Vec<String>,
    fill_lhs: Option<f64>,
    fill_rhs: Option<f64>,
}

#[derive(Clone, Copy, PartialEq)]
enum Cardinality {
    OneToOne,
    ManyToOne,
    OneToMany,
    ManyToMany,
}

impl Matching {
    fn from(m: Option<&BinModifier>) -> Matching {
        let mut out = Matching {
            on: false,
            labels: Vec::new(),
            card: Cardinality::OneToOne,
            include: Vec::new(),
            fill_lhs: None,
            fill_rhs: None,
        };
        if let Some(m) = m {
            match &m.matching {
                Some(LabelModifier::Include(l)) => {
                    out.on = true;
                    out.labels = l.labels.clone();
                }
                Some(LabelModifier::Exclude(l)) => out.labels = l.labels.clone(),
                None => {}
            }
            out.card = match &m.card {
                VectorMatchCardinality::OneToOne => Cardinality::OneToOne,
                VectorMatchCardinality::ManyToOne(l) => {
                    out.include = l.labels.clone();
                    Cardinality::ManyToOne
                }
                VectorMatchCardinality::OneToMany(l) => {
                    out.include = l.labels.clone();
                    Cardinality::OneToMany
                }
                VectorMatchCardinality::ManyToMany => Cardinality::ManyToMany,
            };
            out.fill_lhs = m.fill_values.lhs;
            out.fill_rhs = m.fill_values.rhs;
        }
        out.labels.sort();
        out
    }

    /// The labels that must match (Prometheus's `MatchLabels`).
    fn match_labels(&self, l: &Labels) -> Labels {
        if self.on {
            Labels::new(
                l.iter()
                    .filter(|x| self.labels.iter().any(|n| *n == *x.name))
                    .cloned()
                    .collect(),
            )
        } else {
            Labels::new(
                l.iter()
                    .filter(|x| {
                        &*x.name != METRIC_NAME && !self.labels.iter().any(|n| *n == *x.name)
                    })
                    .cloned()
                    .collect(),
            )
        }
    }
}

/// Assigns each series of both sides a signature ordinal.
fn signatures(m: &Matching, l: &[EvalSeries], r: &[EvalSeries]) -> (Vec<usize>, Vec<usize>, usize) {
    let mut map: HashMap<Labels, usize> = HashMap::new();
    let mut sig = |p: &EvalSeries| {
        let k = m.match_labels(&p.labels);
        let n = map.len();
        *map.entry(k).or_insert(n)
    };
    let ls: Vec<usize> = l.iter().map(&mut sig).collect();
    let rs: Vec<usize> = r.iter().map(&mut sig).collect();
    (ls, rs, map.len())
}

/// The indexes of the series that have a point at `t`, advancing the cursors.
fn gather(v: &[EvalSeries], cur: &mut [usize], t: i64, out: &mut Vec<usize>) {
    out.clear();
    for (i, p) in v.iter().enumerate() {
        let c = cur[i];
        if c < p.ts.len() && p.ts[c] == t {
            out.push(i);
        }
    }
}

fn set_op(
    ev: &mut Evaluator,
    op: u16,
    l: Vec<EvalSeries>,
    r: Vec<EvalSeries>,
    m: &Matching,
) -> Result<EvalValue, QueryError> {
    let (lsig, rsig, nsig) = signatures(m, &l, &r);
    let n = ev.nsteps();
    let (mut lc, mut rc) = (vec![0usize; l.len()], vec![0usize; r.len()]);
    let mut mark = vec![usize::MAX; nsig];
    let (mut li, mut ri) = (Vec::new(), Vec::new());
    let mut out = SeriesCollector::new();
    // Output series of each input series (outputs keep input labels).
    let mut lout = vec![usize::MAX; l.len()];
    let mut rout = vec![usize::MAX; r.len()];
    let emit = |out: &mut SeriesCollector,
                cache: &mut [usize],
                p: &EvalSeries,
                i: usize,
                t: i64,
                v: f64| {
        if cache[i] == usize::MAX {
            cache[i] = out.index_of(&p.labels, p.drop_name);
        }
        out.push_at(cache[i], t, v)
    };
    for step in 0..n {
        let t = ev.step_ts(step);
        gather(&l, &mut lc, t, &mut li);
        gather(&r, &mut rc, t, &mut ri);
        match op {
            T_LAND => {
                if !li.is_empty() && !ri.is_empty() {
                    for &j in &ri {
                        mark[rsig[j]] = step;
                    }
                    for &i in &li {
                        if mark[lsig[i]] == step {
                            emit(&mut out, &mut lout, &l[i], i, t, l[i].vs[lc[i]])?;
                        }
                    }
                }
            }
            T_LOR => {
                for &i in &li {
                    mark[lsig[i]] = step;
                    emit(&mut out, &mut lout, &l[i], i, t, l[i].vs[lc[i]])?;
                }
                for &j in &ri {
                    if li.is_empty() || mark[rsig[j]] != step {
                        emit(&mut out, &mut rout, &r[j], j, t, r[j].vs[rc[j]])?;
                    }
                }
            }
            _ => {
                // unless
                for &j in &ri {
                    mark[rsig[j]] = step;
                }
                for &i in &li {
                    if ri.is_empty() || mark[lsig[i]] != step {
                        emit(&mut out, &mut lout, &l[i], i, t, l[i].vs[lc[i]])?;
                    }
                }
            }
        }
        for &i in &li {
            lc[i] += 1;
        }
        for &j in &ri {
            rc[j] += 1;
        }
    }
    Ok(EvalValue::Vector(out.finish()))
}

fn vector_binop(
    ev: &mut Evaluator,
    op: u16,
    l: Vec<EvalSeries>,
    r: Vec<EvalSeries>,
    m: &Matching,
    return_bool: bool,
) -> Result<EvalValue, QueryError> {
    let (lsig, rsig, nsig) = signatures(m, &l, &r);
    if let Some(v) = static_pairs(ev, op, &l, &r, &lsig, &rsig, nsig, m, return_bool)? {
        return Ok(EvalValue::Vector(v));
    }
    let n = ev.nsteps();
    let (mut lc, mut rc) = (vec![0usize; l.len()], vec![0usize; r.len()]);
    let (mut li, mut ri) = (Vec::new(), Vec::new());
    let swap = m.card == Cardinality::OneToMany;
    // Per signature: the "one"-side series index at this step (step-stamped).
    let mut right_at: Vec<(usize, usize)> = vec![(usize::MAX, 0); nsig];
    let mut st = BinState {
        op,
        m,
        swap,
        return_bool,
        delayed: ev.delayed(),
        matched: vec![usize::MAX; nsig],
        last_insert: Vec::new(),
        metric_cache: HashMap::new(),
        out: SeriesCollector::new(),
    };
    let none_fill = m.fill_lhs.is_none() && m.fill_rhs.is_none();
    for step in 0..n {
        ev.check_timeout()?;
        let t = ev.step_ts(step);
        gather(&l, &mut lc, t, &mut li);
        gather(&r, &mut rc, t, &mut ri);
        let skip =
            (li.is_empty() && ri.is_empty()) || ((li.is_empty() || ri.is_empty()) && none_fill);
        if !skip {
            // After a possible swap, "many" is the many side and "one" the one side.
            let (many, many_sig, many_idx, many_cur, one, one_sig, one_idx, one_cur) = if swap {
                (&r, &rsig, &ri, &rc, &l, &lsig, &li, &lc)
            } else {
                (&l, &lsig, &li, &lc, &r, &rsig, &ri, &rc)
            };
            for &j in one_idx.iter() {
                let s = one_sig[j];
                if right_at[s].0 == step {
                    let dup = &one[right_at[s].1];
                    let side = if swap { "left" } else { "right" };
                    // Report the two series in a stable, sorted order.
                    let (a, b) = if one[j].labels <= dup.labels {
                        (&one[j], dup)
                    } else {
                        (dup, &one[j])
                    };
                    return exec_err(format!(
                        "found duplicate series for the match group {} on the {} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                        go_labels_string(&m.match_labels(&one[j].labels)),
                        side,
                        go_labels_string(&a.labels),
                        go_labels_string(&b.labels),
                    ));
                }
                right_at[s] = (step, j);
            }
            for &i in many_idx.iter() {
                let s = many_sig[i];
                let mv = many[i].vs[many_cur[i]];
                if right_at[s].0 == step {
                    let j = right_at[s].1;
                    let ov = one[j].vs[one_cur[j]];
                    do_op(
                        &mut st,
                        step,
                        t,
                        Side::Series(&many[i].labels, i),
                        mv,
                        Side::Series(&one[j].labels, j),
                        ov,
                        s,
                    )?;
                } else {
                    // Prometheus does not swap the fill values for group_right.
                    let fill = m.fill_rhs;
                    if let Some(f) = fill {
                        let ml = m.match_labels(&many[i].labels);
                        do_op(
                            &mut st,
                            step,
                            t,
                            Side::Series(&many[i].labels, i),
                            mv,
                            Side::Filled(&ml),
                            f,
                            s,
                        )?;
                    }
                }
            }
            let fill_other = m.fill_lhs;
            if let Some(f) = fill_other {
                let mut pending: Vec<usize> = one_idx
                    .iter()
                    .copied()
                    .filter(|&j| st.matched[one_sig[j]] != step)
                    .collect();
                pending.sort_by_key(|&j| one_sig[j]);
                for j in pending {
                    let s = one_sig[j];
                    let ml = m.match_labels(&one[j].labels);
                    let ov = one[j].vs[one_cur[j]];
                    do_op(
                        &mut st,
                        step,
                        t,
                        Side::Filled(&ml),
                        f,
                        Side::Series(&one[j].labels, j),
                        ov,
                        s,
                    )?;
                }
            }
        }
        for &i in &li {
            lc[i] += 1;
        }
        for &j in &ri {
            rc[j] += 1;
        }
    }
    Ok(EvalValue::Vector(st.out.finish()))
}

/// Fast path when the pairing of series cannot change between steps: no fill
/// values, at most one series per signature on the "one" side (and on both sides
/// for one-to-one matching). Each pair is then joined on its timestamps column by
/// column. Returns None when the general per-step path is needed.
#[allow(clippy::too_many_arguments)]
fn static_pairs(
    ev: &mut Evaluator,
    op: u16,
    l: &[EvalSeries],
    r: &[EvalSeries],
    lsig: &[usize],
    rsig: &[usize],
    nsig: usize,
    m: &Matching,
    return_bool: bool,
) -> Result<Option<Vec<EvalSeries>>, QueryError> {
    if m.fill_lhs.is_some() || m.fill_rhs.is_some() {
        return Ok(None);
    }
    let swap = m.card == Cardinality::OneToMany;
    let (many, many_sig, one, one_sig) = if swap {
        (r, rsig, l, lsig)
    } else {
        (l, lsig, r, rsig)
    };
    let mut one_of: Vec<usize> = vec![usize::MAX; nsig];
    for (j, &s) in one_sig.iter().enumerate() {
        if one_of[s] != usize::MAX {
            return Ok(None);
        }
        one_of[s] = j;
    }
    if m.card == Cardinality::OneToOne {
        let mut seen = vec![false; nsig];
        for &s in many_sig {
            if seen[s] {
                return Ok(None);
            }
            seen[s] = true;
        }
    }
    // One output series per pair; a label collision falls back to the general path.
    let mut out: Vec<EvalSeries> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut collided = false;
    let delayed = ev.delayed();
    for (i, p) in many.iter().enumerate() {
        let s = many_sig[i];
        let j = one_of[s];
        if j == usize::MAX {
            continue;
        }
        let q = &one[j];
        let mut ts = Vec::new();
        let mut vs = Vec::new();
        let (mut a, mut b) = (0usize, 0usize);
        while a < p.ts.len() && b < q.ts.len() {
            match p.ts[a].cmp(&q.ts[b]) {
                std::cmp::Ordering::Less => a += 1,
                std::cmp::Ordering::Greater => b += 1,
                std::cmp::Ordering::Equal => {
                    let (fl, fr) = if swap {
                        (q.vs[b], p.vs[a])
                    } else {
                        (p.vs[a], q.vs[b])
                    };
                    let (mut val, keep) = elem_binop(op, fl, fr);
                    if return_bool {
                        val = b2f(keep);
                    }
                    if keep || return_bool {
                        ts.push(p.ts[a]);
                        vs.push(val);
                    }
                    a += 1;
                    b += 1;
                }
            }
        }
        // Filtered-out pairs still take part in the uniqueness checks.
        let metric = result_metric(&p.labels, &q.labels, op, m);
        let metric = if !delayed && return_bool {
            drop_metric_name(&metric)
        } else {
            metric
        };
        if index.insert(metric.clone(), out.len()).is_some() {
            collided = true;
        }
        out.push(EvalSeries {
            labels: metric,
            drop_name: return_bool,
            ts,
            vs,
        });
    }
    if collided {
        // Rare: resolve label collisions exactly with the per-step path.
        return Ok(None);
    }
    Ok(Some(out.into_iter().filter(|p| !p.ts.is_empty()).collect()))
}

/// One operand of a matched pair: an input series (labels, index) or a fill value's labels.
enum Side<'a> {
    Series(&'a Labels, usize),
    Filled(&'a Labels),
}

impl Side<'_> {
    fn labels(&self) -> &Labels {
        match self {
            Side::Series(l, _) | Side::Filled(l) => l,
        }
    }
    fn idx(&self) -> Option<usize> {
        match self {
            Side::Series(_, i) => Some(*i),
            Side::Filled(_) => None,
        }
    }
}

struct BinState<'a> {
    op: u16,
    m: &'a Matching,
    swap: bool,
    return_bool: bool,
    delayed: bool,
    matched: Vec<usize>,
    /// Per output series: (step, signature) of its last insertion.
    last_insert: Vec<(usize, usize)>,
    /// (many index, one index) -> output series index.
    metric_cache: HashMap<(usize, usize), usize>,
    out: SeriesCollector,
}

/// One matched pair (Prometheus's `doBinOp`).
#[allow(clippy::too_many_arguments)]
fn do_op(
    st: &mut BinState,
    step: usize,
    t: i64,
    ls: Side,
    lv: f64,
    rs: Side,
    rv: f64,
    sig: usize,
) -> Result<(), QueryError> {
    let (fl, fr) = if st.swap { (rv, lv) } else { (lv, rv) };
    let (mut val, keep) = elem_binop(st.op, fl, fr);
    if st.return_bool {
        val = b2f(keep);
    }
    let (op, m) = (st.op, st.m);
    let key = match (ls.idx(), rs.idx()) {
        (Some(a), Some(b)) => Some((a, b)),
        _ => None,
    };
    let cached = key.and_then(|k| st.metric_cache.get(&k).copied());
    let oi = match cached {
        Some(oi) => oi,
        None => {
            let metric = result_metric(ls.labels(), rs.labels(), op, m);
            let metric = if !st.delayed && st.return_bool {
                drop_metric_name(&metric)
            } else {
                metric
            };
            let oi = st.out.index_of(&metric, st.return_bool);
            if oi >= st.last_insert.len() {
                st.last_insert.resize(oi + 1, (usize::MAX, usize::MAX));
            }
            if let Some(k) = key {
                st.metric_cache.insert(k, oi);
            }
            oi
        }
    };
    if m.card == Cardinality::OneToOne {
        if st.matched[sig] == step {
            return exec_err("multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)");
        }
        st.matched[sig] = step;
    } else {
        st.matched[sig] = step;
        if st.last_insert[oi] == (step, sig) {
            return exec_err(
                "multiple matches for labels: grouping labels must ensure unique matches",
            );
        }
        st.last_insert[oi] = (step, sig);
    }
    if !keep && !st.return_bool {
        return Ok(());
    }
    st.out.push_at(oi, t, val)
}

/// Prometheus's `resultMetric`.
fn result_metric(lhs: &Labels, rhs: &Labels, op: u16, m: &Matching) -> Labels {
    let mut v: Vec<Label> = lhs.iter().cloned().collect();
    if changes_metric_schema(op) {
        v.retain(|x| !is_metadata_label(&x.name));
    }
    if m.card == Cardinality::OneToOne {
        if m.on {
            v.retain(|x| m.labels.iter().any(|n| *n == *x.name));
        } else {
            v.retain(|x| !m.labels.iter().any(|n| *n == *x.name));
        }
    }
    for ln in &m.include {
        v.retain(|x| *x.name != **ln);
        if let Some(val) = rhs.get(ln) {
            v.push(Label::new(ln.as_str(), val));
        }
    }
    Labels::new(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_ops() {
        assert_eq!(scalar_binop(T_ADD, 1.0, 2.0), 3.0);
        assert_eq!(scalar_binop(T_MOD, -7.0, 3.0), -1.0);
        assert_eq!(scalar_binop(T_GTE, 2.0, 2.0), 1.0);
        assert_eq!(elem_binop(T_LSS, 3.0, 2.0), (3.0, false));
    }

    #[test]
    fn result_metric_on_and_group_left() {
        let l = Labels::from_pairs([("__name__", "a"), ("x", "1"), ("y", "2")]);
        let r = Labels::from_pairs([("__name__", "b"), ("x", "1"), ("z", "3")]);
        let m = Matching {
            on: true,
            labels: vec!["x".into()],
            card: Cardinality::OneToOne,
            include: vec![],
            fill_lhs: None,
            fill_rhs: None,
        };
        assert_eq!(
            result_metric(&l, &r, T_ADD, &m),
            Labels::from_pairs([("x", "1")])
        );
        let m2 = Matching {
            card: Cardinality::ManyToOne,
            include: vec!["z".into()],
            ..m
        };
        assert_eq!(
            result_metric(&l, &r, T_MUL, &m2),
            Labels::from_pairs([("x", "1"), ("y", "2"), ("z", "3")])
        );
    }
}
