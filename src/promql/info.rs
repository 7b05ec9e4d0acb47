//! The experimental `info()` function: enriches series with data labels of info
//! metrics (`target_info` by default) joined on the identifying labels
//! `instance` and `job`, as Prometheus's `promql/info.go`.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::{AtModifier, Expr, Offset};

use super::evaluator::{
    duration_ms, exec_err, go_labels_string, EvalSeries, EvalValue, Evaluator, SeriesCollector,
};
use super::value::QueryError;
use crate::model::is_stale_nan;
use crate::model::labels::{Label, Labels, MatchKind, Matcher, METRIC_NAME};

const TARGET_INFO: &str = "target_info";
const IDENTIFYING: [&str; 2] = ["instance", "job"];

/// The reference time of the first selector in `e` as (fixed @ time, total offset):
/// subquery `@`/offsets on the path and the selector's own modifiers, as Prometheus
/// uses them to look up the info series.
fn first_selector_time(ev: &Evaluator, e: &Expr) -> (Option<i64>, i64) {
    fn off_ms(o: &Option<Offset>) -> i64 {
        match o {
            None => 0,
            Some(Offset::Pos(d)) => duration_ms(d),
            Some(Offset::Neg(d)) => -duration_ms(d),
        }
    }
    fn find(ev: &Evaluator, e: &Expr, at: Option<i64>, off: i64) -> Option<(Option<i64>, i64)> {
        let sel = |a: &Option<AtModifier>, o: &Option<Offset>| match ev.at_ms(a) {
            Some(t) => (Some(t), off_ms(o)),
            None => (at, off + off_ms(o)),
        };
        match e {
            Expr::VectorSelector(vs) => Some(sel(&vs.at, &vs.offset)),
            Expr::MatrixSelector(ms) => Some(sel(&ms.vs.at, &ms.vs.offset)),
            Expr::Subquery(s) => {
                let (a, o) = match ev.at_ms(&s.at) {
                    Some(t) => (Some(t), off_ms(&s.offset)),
                    None => (at, off + off_ms(&s.offset)),
                };
                find(ev, &s.expr, a, o)
            }
            Expr::Paren(p) => find(ev, &p.expr, at, off),
            Expr::Unary(u) => find(ev, &u.expr, at, off),
            Expr::Binary(b) => find(ev, &b.lhs, at, off).or_else(|| find(ev, &b.rhs, at, off)),
            Expr::Aggregate(a) => a
                .param
                .as_deref()
                .and_then(|p| find(ev, p, at, off))
                .or_else(|| find(ev, &a.expr, at, off)),
            Expr::Call(c) => c.args.args.iter().find_map(|x| find(ev, x, at, off)),
            _ => None,
        }
    }
    find(ev, e, None, 0).unwrap_or((None, 0))
}

impl Evaluator<'_> {
    /// `info(v, {selector})`: `v` with the data labels of its matching info series.
    pub(super) fn eval_info(&mut self, args: &[&Expr]) -> Result<EvalValue, QueryError> {
        let ev = self;
        let mat = ev.eval_vector(args[0])?;
        // Data label matchers by label name; info metric name matchers.
        let mut data: Vec<(String, Vec<Matcher>)> = Vec::new();
        let mut name_matchers: Vec<Matcher> = Vec::new();
        if args.len() > 1 {
            let Expr::VectorSelector(vs) = args[1] else {
                return exec_err("info(): second argument must be a label selector");
            };
            let sets = Evaluator::selector_matchers(vs)?;
            for m in sets.into_iter().next().unwrap_or_default() {
                if m.name == METRIC_NAME {
                    name_matchers.push(m.clone());
                }
                match data.iter_mut().find(|(n, _)| *n == m.name) {
                    Some((_, v)) => v.push(m),
                    None => data.push((m.name.clone(), vec![m])),
                }
            }
        } else {
            name_matchers.push(Matcher::equal(METRIC_NAME, TARGET_INFO));
        }

        // Only positive `__name__` matchers choose the info metrics; negative ones just
        // narrow down the default `target_info`.
        let positive = name_matchers
            .iter()
            .any(|m| matches!(m.kind, MatchKind::Equal | MatchKind::Regex));
        if !positive {
            name_matchers.insert(0, Matcher::equal(METRIC_NAME, TARGET_INFO));
        }
        // Info series themselves are not enriched.
        let ignored: Vec<bool> = mat
            .iter()
            .map(|s| {
                let name = s.labels.metric_name().unwrap_or("");
                name_matchers.iter().all(|m| m.matches(name))
            })
            .collect();

        let mut id_values: Vec<(&str, Vec<String>)> = Vec::new();
        for (s, ign) in mat.iter().zip(&ignored) {
            if *ign {
                continue;
            }
            for l in IDENTIFYING {
                if let Some(v) = s.labels.get(l) {
                    match id_values.iter_mut().find(|(n, _)| *n == l) {
                        Some((_, vals)) => {
                            if !vals.iter().any(|x| x == v) {
                                vals.push(v.to_string());
                            }
                        }
                        None => id_values.push((l, vec![v.to_string()])),
                    }
                }
            }
        }
        let has_name_matcher = args.len() > 1 && positive;
        let mut info_matchers: Vec<Matcher> = Vec::new();
        for (n, vals) in &id_values {
            let re = vals
                .iter()
                .map(|v| regex::escape(v))
                .collect::<Vec<_>>()
                .join("|");
            info_matchers.push(
                Matcher::new(MatchKind::Regex, n, &re)
                    .map_err(|e| QueryError::Execution(e.to_string()))?,
            );
        }
        for (_, ms) in &data {
            info_matchers.extend(ms.iter().cloned());
        }
        data.retain(|(n, _)| n != METRIC_NAME);
        if !has_name_matcher {
            info_matchers.insert(0, Matcher::equal(METRIC_NAME, TARGET_INFO));
        }

        // Info series evaluated per step, value = timestamp of the sample used.
        let mut info: Vec<EvalSeries> = Vec::new();
        if !id_values.is_empty() {
            let (at, off) = first_selector_time(ev, args[0]);
            let (start, end) = match at {
                Some(a) => (a, a),
                None => (ev.start, ev.end),
            };
            let mint = start - off - (ev.lookback - 1);
            let maxt = end - off;
            for s in ev.storage.select(&info_matchers, mint, maxt)? {
                let mut p = EvalSeries::new(s.labels, false);
                for i in 0..ev.nsteps() {
                    let t = ev.step_ts(i);
                    let r = at.unwrap_or(t) - off;
                    let j = s.timestamps.partition_point(|&x| x <= r);
                    if j > 0
                        && s.timestamps[j - 1] > r - ev.lookback
                        && !is_stale_nan(s.values[j - 1])
                    {
                        p.ts.push(t);
                        p.vs.push(s.timestamps[j - 1] as f64);
                    }
                }
                if !p.ts.is_empty() {
                    info.push(p);
                }
            }
        }

        // Signature of a label set for an info metric name: name + identifying labels.
        let sig = |name: &str, l: &Labels| -> Labels {
            let mut v = vec![Label::new(METRIC_NAME, name)];
            for n in IDENTIFYING {
                if let Some(x) = l.get(n) {
                    v.push(Label::new(n, x));
                }
            }
            Labels::new(v)
        };
        let mut info_names: Vec<String> = Vec::new();
        for p in &info {
            let n = p.labels.metric_name().unwrap_or("").to_string();
            if !info_names.contains(&n) {
                info_names.push(n);
            }
        }
        info_names.sort();
        let base_sigs: Vec<Vec<Labels>> = mat
            .iter()
            .map(|s| info_names.iter().map(|n| sig(n, &s.labels)).collect())
            .collect();
        let info_sigs: Vec<Labels> = info
            .iter()
            .map(|p| sig(p.labels.metric_name().unwrap_or(""), &p.labels))
            .collect();
        let all_match_empty = data.iter().all(|(_, ms)| ms.iter().all(|m| m.matches("")));

        let mut out = SeriesCollector::new();
        let (mut bc, mut ic) = (vec![0usize; mat.len()], vec![0usize; info.len()]);
        for step in 0..ev.nsteps() {
            ev.check_timeout()?;
            let t = ev.step_ts(step);
            let mut right: HashMap<&Labels, usize> = HashMap::new();
            for (k, p) in info.iter().enumerate() {
                if ic[k] < p.ts.len() && p.ts[ic[k]] == t {
                    let orig = p.vs[ic[k]] as i64;
                    match right.get(&info_sigs[k]) {
                        Some(&e) => {
                            let eorig = info[e].vs[ic[e]] as i64;
                            if eorig < orig {
                                right.insert(&info_sigs[k], k);
                            } else if eorig == orig {
                                return exec_err(format!(
                                "found duplicate series for info metric: existing {} @ {}, new {} @ {}",
                                go_labels_string(&info[e].labels),
                                eorig,
                                go_labels_string(&p.labels),
                                orig
                            ));
                            }
                        }
                        None => {
                            right.insert(&info_sigs[k], k);
                        }
                    }
                }
            }
            for (bi, s) in mat.iter().enumerate() {
                if bc[bi] >= s.ts.len() || s.ts[bc[bi]] != t {
                    continue;
                }
                let v = s.vs[bc[bi]];
                if ignored[bi] {
                    out.push(s.labels.clone(), s.drop_name, t, v)?;
                    continue;
                }
                let mut add: Vec<Label> = Vec::new();
                let mut seen = HashSet::new();
                for (ni, name) in info_names.iter().enumerate() {
                    let Some(&k) = right.get(&base_sigs[bi][ni]) else {
                        continue;
                    };
                    if !seen.insert(name) {
                        continue;
                    }
                    for l in info[k].labels.iter() {
                        if *l.name == *METRIC_NAME {
                            continue;
                        }
                        if !data.is_empty() && !data.iter().any(|(n, _)| *n == *l.name) {
                            continue;
                        }
                        if let Some(x) = add.iter().find(|x| x.name == l.name) {
                            if x.value != l.value {
                                return exec_err(format!("conflicting label: {}", l.name));
                            }
                        }
                        if s.labels.get(&l.name).is_some() {
                            continue;
                        }
                        if !add.iter().any(|x| x.name == l.name) {
                            add.push(l.clone());
                        }
                    }
                }
                if seen.is_empty() && !all_match_empty {
                    continue;
                }
                let mut all: Vec<Label> = s.labels.iter().cloned().collect();
                all.extend(add);
                out.push(Labels::new(all), s.drop_name, t, v)?;
            }
            for (k, p) in info.iter().enumerate() {
                if ic[k] < p.ts.len() && p.ts[ic[k]] == t {
                    ic[k] += 1;
                }
            }
            for (bi, s) in mat.iter().enumerate() {
                if bc[bi] < s.ts.len() && s.ts[bc[bi]] == t {
                    bc[bi] += 1;
                }
            }
        }
        Ok(EvalValue::Vector(out.finish()))
    }
}
