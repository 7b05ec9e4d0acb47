//! The exemplar frame of a query with "Exemplars" switched on, as Grafana's
//! Prometheus backend builds it (promlib `querydata/exemplar`): every exemplar of
//! the query's series goes through its standard-deviation sampler, which keeps per
//! step bucket the highest exemplar and those more than two standard deviations
//! below the last one kept, and the survivors make one long frame named `exemplar`:
//! `Time`, `Value`, then one string field per label name seen (series labels and
//! exemplar labels, sorted), which is what a time-series panel draws as dots.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::frames::{Column, Field, Frame};
use super::interval::align_ms;
use crate::model::exemplar::ExemplarSeries;

/// One exemplar as the sampler sees it: where it came from, to read its labels.
struct Candidate {
    time_ms: i64,
    value: f64,
    series: usize,
    row: usize,
}

/// The label fields Grafana's converter makes of one series' exemplars: names in
/// the order first seen, a row per exemplar, "" where an exemplar lacks the label.
struct SeriesFields {
    names: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl SeriesFields {
    fn of(s: &ExemplarSeries) -> SeriesFields {
        let mut names: Vec<String> = Vec::new();
        for e in &s.exemplars {
            for l in e.labels.iter() {
                if !names.iter().any(|n| n == &*l.name) {
                    names.push(l.name.to_string());
                }
            }
        }
        let rows = s
            .exemplars
            .iter()
            .map(|e| {
                names
                    .iter()
                    .map(|n| e.labels.get(n).unwrap_or("").to_string())
                    .collect()
            })
            .collect();
        SeriesFields { names, rows }
    }

    fn value(&self, row: usize, name: &str) -> Option<&str> {
        let i = self.names.iter().position(|n| n == name)?;
        Some(self.rows[row][i].as_str())
    }
}

/// The time Grafana reads from Prometheus's JSON: seconds as a float, times 1000,
/// truncated; some millisecond values come out one less.
fn grafana_time_ms(ms: i64) -> i64 {
    ((ms as f64 / 1000.0) * 1000.0) as i64
}

/// Welford's running mean and variance, in the order exemplars are added.
#[derive(Default)]
struct Spread {
    count: u64,
    mean: f64,
    m2: f64,
}

impl Spread {
    fn add(&mut self, v: f64) {
        self.count += 1;
        let delta = v - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (v - self.mean);
    }

    fn standard_deviation(&self) -> f64 {
        if self.count < 2 {
            return 0.0;
        }
        (self.m2 / (self.count - 1) as f64).sqrt()
    }
}

/// The sampled exemplars, oldest first.
fn sample(series: &[&ExemplarSeries], step_ms: i64) -> Vec<Candidate> {
    let step_ns = step_ms.saturating_mul(1_000_000);
    let mut spread = Spread::default();
    let mut buckets: BTreeMap<i64, Vec<Candidate>> = BTreeMap::new();
    for (si, s) in series.iter().enumerate() {
        for (row, e) in s.exemplars.iter().enumerate() {
            let time_ms = grafana_time_ms(e.timestamp_ms);
            spread.add(e.value);
            // A step under a millisecond is 0 in Grafana, whose float division then
            // puts every exemplar in one bucket.
            let bucket = if step_ns > 0 {
                align_ms(time_ms, step_ns, 0)
            } else {
                i64::MIN
            };
            buckets.entry(bucket).or_default().push(Candidate {
                time_ms,
                value: e.value,
                series: si,
                row,
            });
        }
    }
    let sd = spread.standard_deviation();
    let mut out = Vec::new();
    for (_, mut b) in buckets {
        go_sort_stable(&mut b, |x, y| x.value > y.value);
        let mut kept: Vec<Candidate> = Vec::new();
        for c in b {
            let take = match kept.last() {
                None => true,
                Some(prev) => sd != 0.0 && prev.value - c.value > sd * 2.0,
            };
            if take {
                kept.push(c);
            }
        }
        out.extend(kept);
    }
    go_sort_stable(&mut out, |x, y| x.time_ms < y.time_ms);
    out
}

/// The exemplar frame, or none when the series carry no exemplar. `step_ms` is the
/// query's step; `executed` its `executedQueryString`, which Grafana's frame keeps
/// only when a single series had exemplars (it copies the last series' meta).
pub fn exemplar_frame(
    ref_id: &str,
    step_ms: i64,
    executed: &str,
    series: &[ExemplarSeries],
) -> Option<Frame> {
    let series: Vec<&ExemplarSeries> = series.iter().filter(|s| !s.exemplars.is_empty()).collect();
    if series.is_empty() {
        return None;
    }
    let fields: Vec<SeriesFields> = series.iter().map(|s| SeriesFields::of(s)).collect();
    let mut names: BTreeSet<String> = BTreeSet::new();
    for (s, f) in series.iter().zip(&fields) {
        names.extend(s.series_labels.iter().map(|l| l.name.to_string()));
        names.extend(f.names.iter().cloned());
    }
    let sampled = sample(&series, step_ms);
    let mut times = Vec::with_capacity(sampled.len());
    let mut values = Vec::with_capacity(sampled.len());
    let mut columns: Vec<Vec<String>> = vec![Vec::with_capacity(sampled.len()); names.len()];
    for c in &sampled {
        times.push(c.time_ms);
        values.push(c.value);
        let s = series[c.series];
        for (col, name) in columns.iter_mut().zip(&names) {
            let v = fields[c.series]
                .value(c.row, name)
                .or_else(|| s.series_labels.get(name))
                .unwrap_or("");
            col.push(v.to_string());
        }
    }
    let mut meta = json!({"custom": {"resultType": "exemplar"}});
    if series.len() == 1 {
        meta["executedQueryString"] = json!(executed);
    }
    let mut out_fields = vec![
        Field {
            name: "Time".into(),
            labels: None,
            config: None,
            values: Column::Time(times),
        },
        Field {
            name: "Value".into(),
            labels: None,
            config: None,
            values: Column::Float(values),
        },
    ];
    out_fields.extend(names.into_iter().zip(columns).map(|(name, col)| Field {
        name,
        labels: None,
        config: None,
        values: Column::String(col),
    }));
    Some(Frame {
        name: "exemplar".into(),
        ref_id: ref_id.to_string(),
        meta: Some(meta),
        fields: out_fields,
    })
}

/// Go's `sort.SliceStable`: insertion-sorted blocks of 20, merged in place with
/// SymMerge. Any stable sort gives its order for a consistent `less`; this one also
/// gives Go's order where `less` is not one (NaN values), and never panics.
fn go_sort_stable<T>(v: &mut [T], less: impl Fn(&T, &T) -> bool) {
    let n = v.len();
    let mut block = 20;
    let (mut a, mut b) = (0, block);
    while b <= n {
        insertion_sort(v, a, b, &less);
        a = b;
        b += block;
    }
    insertion_sort(v, a, n, &less);
    while block < n {
        a = 0;
        b = 2 * block;
        while b <= n {
            sym_merge(v, a, a + block, b, &less);
            a = b;
            b += 2 * block;
        }
        let m = a + block;
        if m < n {
            sym_merge(v, a, m, n, &less);
        }
        block *= 2;
    }
}

fn insertion_sort<T>(v: &mut [T], a: usize, b: usize, less: &impl Fn(&T, &T) -> bool) {
    for i in a + 1..b {
        let mut j = i;
        while j > a && less(&v[j], &v[j - 1]) {
            v.swap(j, j - 1);
            j -= 1;
        }
    }
}

fn sym_merge<T>(v: &mut [T], a: usize, m: usize, b: usize, less: &impl Fn(&T, &T) -> bool) {
    if m - a == 1 {
        // Binary search for the place of v[a] in v[m..b], then move it there.
        let (mut i, mut j) = (m, b);
        while i < j {
            let h = (i + j) / 2;
            if less(&v[h], &v[a]) {
                i = h + 1;
            } else {
                j = h;
            }
        }
        for k in a..i - 1 {
            v.swap(k, k + 1);
        }
        return;
    }
    if b - m == 1 {
        let (mut i, mut j) = (a, m);
        while i < j {
            let h = (i + j) / 2;
            if !less(&v[m], &v[h]) {
                i = h + 1;
            } else {
                j = h;
            }
        }
        let mut k = m;
        while k > i {
            v.swap(k, k - 1);
            k -= 1;
        }
        return;
    }
    let mid = (a + b) / 2;
    let n = mid + m;
    let (mut start, mut r) = if m > mid { (n - b, mid) } else { (a, m) };
    let p = n - 1;
    while start < r {
        let c = (start + r) / 2;
        if !less(&v[p - c], &v[c]) {
            start = c + 1;
        } else {
            r = c;
        }
    }
    let end = n - start;
    if start < m && m < end {
        v[start..end].rotate_left(m - start);
    }
    if a < start && start < mid {
        sym_merge(v, a, start, mid, less);
    }
    if mid < end && end < b {
        sym_merge(v, mid, end, b, less);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::exemplar::Exemplar;
    use crate::model::Labels;
    use proptest::prelude::*;

    fn ex(labels: &[(&str, &str)], value: f64, timestamp_ms: i64) -> Exemplar {
        Exemplar {
            labels: Labels::from_pairs(labels.iter().copied()),
            value,
            timestamp_ms,
        }
    }

    fn strings(f: &Field) -> &[String] {
        match &f.values {
            Column::String(v) => v,
            other => panic!("{} is not a string field: {other:?}", f.name),
        }
    }

    /// Grafana's own sampler test (`sampler_stddev_test.go`): one exemplar a second
    /// over 100,000 s, value = the second, step 600 s. Its golden frame keeps the
    /// last second of every bucket: 599, 1199, …, 99599, then 99999.
    #[test]
    fn grafanas_stddev_sampler_case() {
        let series = vec![ExemplarSeries {
            series_labels: Labels::empty(),
            exemplars: (0..100_000).map(|s| ex(&[], s as f64, s * 1000)).collect(),
        }];
        let f = exemplar_frame("A", 600_000, "", &series).unwrap();
        assert_eq!(f.name, "exemplar");
        assert_eq!(f.fields.len(), 2);
        let Column::Float(values) = &f.fields[1].values else {
            panic!("value field")
        };
        let mut want: Vec<f64> = (1..=166).map(|k| (k * 600 - 1) as f64).collect();
        want.push(99_999.0);
        assert_eq!(values, &want);
        let Column::Time(times) = &f.fields[0].values else {
            panic!("time field")
        };
        assert_eq!(times[0], 599_000);
        assert_eq!(times[166], 99_999_000);
    }

    /// Grafana's converter golden (`prom-exemplars-frame.jsonc`) through its framer:
    /// two series, labels of both kinds, a label only one exemplar has.
    #[test]
    fn labels_of_series_and_exemplars_become_sorted_string_fields() {
        let series_labels = |service: &str| {
            Labels::from_pairs([
                ("__name__", "test_exemplar_metric_total"),
                ("instance", "localhost:8090"),
                ("job", "prometheus"),
                ("service", service),
            ])
        };
        let series = vec![
            ExemplarSeries {
                series_labels: series_labels("bar"),
                exemplars: vec![ex(
                    &[("traceID", "EpTxMJ40fUus7aGY"), ("a", "not in next")],
                    6.0,
                    1_600_096_945_479,
                )],
            },
            ExemplarSeries {
                series_labels: series_labels("foo"),
                exemplars: vec![
                    ex(&[("traceID", "Olp9XHlq763ccsfa")], 19.0, 1_600_096_955_479),
                    ex(&[("traceID", "hCtjygkIHwAN9vs4")], 20.0, 1_600_096_965_489),
                ],
            },
        ];
        let f = exemplar_frame("A", 15_000, "Expr: x\nStep: 15s", &series).unwrap();
        let names: Vec<&str> = f.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["Time", "Value", "__name__", "a", "instance", "job", "service", "traceID"]
        );
        // Standard deviation of 6, 19, 20 is 7.8: each is alone in its 15 s bucket.
        let Column::Time(times) = &f.fields[0].values else {
            panic!("time field")
        };
        assert_eq!(times.len(), 3);
        assert_eq!(strings(&f.fields[3]), ["not in next", "", ""]);
        assert_eq!(strings(&f.fields[6]), ["bar", "foo", "foo"]);
        assert_eq!(
            strings(&f.fields[7]),
            ["EpTxMJ40fUus7aGY", "Olp9XHlq763ccsfa", "hCtjygkIHwAN9vs4"]
        );
        // Two series: the frame has the last one's meta, without the query string.
        assert_eq!(f.meta, Some(json!({"custom": {"resultType": "exemplar"}})));
        assert_eq!(f.ref_id, "A");
    }

    #[test]
    fn a_single_series_keeps_the_executed_query_string() {
        let series = vec![ExemplarSeries {
            series_labels: Labels::from_pairs([("__name__", "x")]),
            exemplars: vec![ex(&[("trace_id", "t1")], 1.0, 1_000)],
        }];
        let f = exemplar_frame("B", 1_000, "Expr: x\nStep: 1s", &series).unwrap();
        assert_eq!(
            f.meta,
            Some(
                json!({"custom": {"resultType": "exemplar"}, "executedQueryString": "Expr: x\nStep: 1s"})
            )
        );
        assert!(exemplar_frame("B", 1_000, "", &[]).is_none());
    }

    /// In a bucket the highest exemplar is kept, then each one more than two
    /// standard deviations below the last kept.
    #[test]
    fn a_bucket_keeps_outliers_two_deviations_apart() {
        // 100, 99, 98 and 1 in the first 10 s bucket, 200 exemplars of 50 in
        // buckets of their own.
        let mut exemplars = vec![
            ex(&[], 100.0, 1_000),
            ex(&[], 99.0, 2_000),
            ex(&[], 98.0, 3_000),
            ex(&[], 1.0, 4_000),
        ];
        for i in 0..200 {
            exemplars.push(ex(&[], 50.0, 20_000 + i * 10_000));
        }
        let series = vec![ExemplarSeries {
            series_labels: Labels::empty(),
            exemplars,
        }];
        let f = exemplar_frame("A", 10_000, "", &series).unwrap();
        let Column::Float(values) = &f.fields[1].values else {
            panic!("value field")
        };
        // The standard deviation over all 204 values is 6.86: 99 and 98 are within
        // 13.7 of 100, the last kept, and 1 is not.
        assert_eq!(&values[..2], &[100.0, 1.0]);
        assert_eq!(values.len(), 202);
    }

    #[test]
    fn times_are_read_as_grafana_reads_prometheus_json() {
        for ms in [0, 1_000, 1_600_096_945_479, 1_700_000_000_123] {
            let t = grafana_time_ms(ms);
            assert!(t == ms || t == ms - 1, "{ms} -> {t}");
        }
        // Some land one millisecond early, as in Grafana (none of this decade's).
        assert_eq!(grafana_time_ms(134_915_957_371), 134_915_957_370);
        assert_eq!(grafana_time_ms(2_195_256_657_398), 2_195_256_657_397);
    }

    #[test]
    fn nan_values_neither_panic_nor_vanish() {
        let series = vec![ExemplarSeries {
            series_labels: Labels::empty(),
            exemplars: (0..100)
                .map(|i| ex(&[], if i % 3 == 0 { f64::NAN } else { i as f64 }, i))
                .collect(),
        }];
        let f = exemplar_frame("A", 1_000_000, "", &series).unwrap();
        let Column::Float(values) = &f.fields[1].values else {
            panic!("value field")
        };
        assert!(!values.is_empty());
    }

    proptest! {
        /// For a consistent order Go's stable sort is any stable sort.
        #[test]
        fn go_stable_sort_is_a_stable_sort(v in proptest::collection::vec((0u8..8, any::<u16>()), 0..300)) {
            let mut got = v.clone();
            go_sort_stable(&mut got, |a, b| a.0 < b.0);
            let mut want = v;
            want.sort_by_key(|x| x.0);
            prop_assert_eq!(got, want);
        }

        #[test]
        fn go_stable_sort_never_panics_on_nan(v in proptest::collection::vec(prop_oneof![Just(f64::NAN), -5.0f64..5.0], 0..300)) {
            let mut got = v.clone();
            go_sort_stable(&mut got, |a, b| a > b);
            prop_assert_eq!(got.len(), v.len());
        }
    }
}
