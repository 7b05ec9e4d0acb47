//! Aggregation operators (`sum`, `avg`, ..., `topk`, `quantile`, `count_values`).

use std::collections::HashMap;

use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_LIMITK, T_LIMIT_RATIO, T_MAX, T_MIN,
    T_QUANTILE, T_STDDEV, T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};

use super::engine::{exec_err, Ev, OutBuilder, Pts, Val};
use super::functions::{kahan_inc, quantile};
use super::value::QueryError;
use crate::labels::{Label, Labels, METRIC_NAME};

/// The output labels of a series' group (also its grouping key).
fn group_labels(l: &Labels, without: bool, grouping: &[String]) -> Labels {
    if without {
        Labels::new(
            l.iter()
                .filter(|x| &*x.name != METRIC_NAME && !grouping.iter().any(|g| *g == *x.name))
                .cloned()
                .collect(),
        )
    } else if grouping.is_empty() {
        Labels::empty()
    } else {
        Labels::new(
            l.iter()
                .filter(|x| grouping.iter().any(|g| *g == *x.name))
                .cloned()
                .collect(),
        )
    }
}

/// Go's `%v` for a float64 (`strconv.FormatFloat(f, 'g', -1, 64)` with Go's exponent form).
pub(crate) fn go_fmt_v(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let e = format!("{f:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        return format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    format!("{f}")
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`.
pub(crate) fn go_fmt_f(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{f}")
    }
}

fn f2i64(f: f64) -> i64 {
    // Go's int64(f) truncates toward zero (out-of-range handled by the callers).
    f as i64
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

pub(crate) fn eval_aggregate(ev: &mut Ev, a: &AggregateExpr) -> Result<Val, QueryError> {
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
                crate::labels::go_quote(&label)
            ));
        }
        if !without {
            grouping.push(label.clone());
            grouping.sort();
        }
        let input = ev.eval_vector(&a.expr)?;
        return count_values(ev, input, &label, without, &grouping);
    }
    let param: Option<Vec<f64>> = match op {
        T_TOPK | T_BOTTOMK | T_QUANTILE | T_LIMITK | T_LIMIT_RATIO => match a.param.as_deref() {
            Some(p) => Some(ev.eval_scalar(p)?),
            None => return exec_err("aggregation requires a parameter"),
        },
        _ => None,
    };
    let input = ev.eval_vector(&a.expr)?;
    let n = ev.nsteps();

    // Map series to groups once.
    let mut gindex: HashMap<Labels, usize> = HashMap::new();
    let mut glabels: Vec<Labels> = Vec::new();
    let mut series_group: Vec<usize> = Vec::with_capacity(input.len());
    for p in &input {
        let gl = group_labels(&p.labels, without, &grouping);
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
                return Ok(Val::Vector(Vec::new()));
            }
            if k.iter().any(|x| x.is_nan()) {
                return exec_err("Parameter value is NaN");
            }
            let min = k.iter().copied().fold(f64::INFINITY, f64::min);
            if min <= i64::MIN as f64 {
                return exec_err(format!("Scalar value {} underflows int64", go_fmt_v(min)));
            }
            if max_eff >= i64::MAX as f64 {
                return exec_err(format!(
                    "Scalar value {} overflows int64",
                    go_fmt_v(max_eff)
                ));
            }
            return select_k(ev, op, &input, &series_group, glabels.len(), &k);
        }
        T_LIMIT_RATIO => {
            return Err(QueryError::Unsupported(
                "limit_ratio is not supported".into(),
            ))
        }
        T_QUANTILE => {
            let q = param.as_deref().unwrap_or(&[]);
            if q.iter().any(|x| x.is_nan() || *x < 0.0 || *x > 1.0) && !input.is_empty() {
                ev.warnings
                    .push("PromQL warning: quantile value should be between 0 and 1".into());
            }
        }
        _ => {}
    }

    let mut groups = vec![Group::default(); glabels.len()];
    let mut out: Vec<Pts> = glabels.iter().map(|l| Pts::new(l.clone(), false)).collect();
    let mut cur = vec![0usize; input.len()];
    for i in 0..n {
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
            let f = p.vs[c];
            let g = &mut groups[series_group[si]];
            if !g.seen {
                *g = Group {
                    seen: true,
                    f,
                    mean: f,
                    c: 0.0,
                    count: 1.0,
                    incremental: false,
                    heap: Vec::new(),
                    drop_name: p.drop_name,
                };
                match op {
                    T_STDVAR | T_STDDEV => {
                        g.f = if f.is_nan() || f.is_infinite() {
                            f64::NAN
                        } else {
                            0.0
                        }
                    }
                    T_QUANTILE => g.heap.push(f),
                    T_GROUP => g.f = 1.0,
                    _ => {}
                }
                continue;
            }
            if p.drop_name {
                g.drop_name = true;
            }
            match op {
                T_SUM => (g.f, g.c) = kahan_inc(f, g.f, g.c),
                T_AVG => {
                    g.count += 1.0;
                    let mut done = false;
                    if !g.incremental {
                        let (nv, nc) = kahan_inc(f, g.f, g.c);
                        if !nv.is_infinite() {
                            g.f = nv;
                            g.c = nc;
                            done = true;
                        } else {
                            g.incremental = true;
                            g.mean = g.f / (g.count - 1.0);
                            g.c /= g.count - 1.0;
                        }
                    }
                    if !done {
                        let q = (g.count - 1.0) / g.count;
                        (g.mean, g.c) = kahan_inc(f / g.count, q * g.mean, q * g.c);
                    }
                }
                T_GROUP => {}
                T_MAX => {
                    if g.f < f || g.f.is_nan() {
                        g.f = f;
                    }
                }
                T_MIN => {
                    if g.f > f || g.f.is_nan() {
                        g.f = f;
                    }
                }
                T_COUNT => g.count += 1.0,
                T_STDVAR | T_STDDEV => {
                    g.count += 1.0;
                    let delta = f - g.mean;
                    g.mean += delta / g.count;
                    g.f += delta * (f - g.mean);
                }
                T_QUANTILE => g.heap.push(f),
                _ => return exec_err(format!("unsupported aggregation operator {}", a.op)),
            }
        }
        for (gi, g) in groups.iter_mut().enumerate() {
            if !g.seen {
                continue;
            }
            let v = match op {
                T_AVG => {
                    if g.incremental {
                        g.mean + g.c
                    } else {
                        g.f / g.count + g.c / g.count
                    }
                }
                T_COUNT => g.count,
                T_STDVAR => g.f / g.count,
                T_STDDEV => (g.f / g.count).sqrt(),
                T_QUANTILE => {
                    let q = param.as_ref().map(|p| p[i]).unwrap_or(f64::NAN);
                    quantile(q, &mut g.heap)
                }
                T_SUM => g.f + g.c,
                _ => g.f,
            };
            let o = &mut out[gi];
            o.ts.push(t);
            o.vs.push(v);
            o.drop_name = g.drop_name;
        }
    }
    let out: Vec<Pts> = out.into_iter().filter(|p| !p.ts.is_empty()).collect();
    let total: usize = out.iter().map(|p| p.ts.len()).sum();
    ev.add_samples(total)?;
    Ok(Val::Vector(out))
}

fn select_k(
    ev: &mut Ev,
    op: u16,
    input: &[Pts],
    series_group: &[usize],
    ngroups: usize,
    k: &[f64],
) -> Result<Val, QueryError> {
    let n = ev.nsteps();
    let mut cur = vec![0usize; input.len()];
    let mut cands: Vec<Vec<(usize, f64)>> = vec![Vec::new(); ngroups];
    let mut out = OutBuilder::new();
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
                T_TOPK => c.sort_by(|a, b| desc_nan_last(a.1, b.1)),
                T_BOTTOMK => c.sort_by(|a, b| asc_nan_last(a.1, b.1)),
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
    Ok(Val::Vector(out.series))
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
    ev: &mut Ev,
    input: Vec<Pts>,
    label: &str,
    without: bool,
    grouping: &[String],
) -> Result<Val, QueryError> {
    let n = ev.nsteps();
    let mut cur = vec![0usize; input.len()];
    let mut out = OutBuilder::new();
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
            lv.push(Label::new(label, go_fmt_f(p.vs[c])));
            let metric = Labels::new(lv);
            let gl = group_labels(&metric, without, grouping);
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
    Ok(Val::Vector(out.series))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_formatting() {
        assert_eq!(go_fmt_f(1.5), "1.5");
        assert_eq!(go_fmt_f(f64::INFINITY), "+Inf");
        assert_eq!(go_fmt_f(100.0), "100");
        assert_eq!(go_fmt_v(9.3e18), "9.3e+18");
        assert_eq!(go_fmt_v(12345.0), "12345");
    }

    #[test]
    fn grouping_labels() {
        let l = Labels::from_pairs([("__name__", "x"), ("a", "1"), ("b", "2")]);
        assert_eq!(
            group_labels(&l, false, &["a".to_string()]),
            Labels::from_pairs([("a", "1")])
        );
        assert_eq!(
            group_labels(&l, true, &["a".to_string()]),
            Labels::from_pairs([("b", "2")])
        );
    }
}
