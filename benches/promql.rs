//! PromQL evaluation over the store: the heavy dashboard queries over 10k series × 1 h
//! at 15 s step, and one light panel query, data in a block as `import` writes it.
//!
//! `cargo bench --bench promql`. The data follow docs/design.md's value model in shape:
//! 5000 integer counters rising at 0.01–500/s (host × mode), 2000 gauges as a slow
//! sine with 2 decimals (host × device), and an 11-bucket classic histogram for 250
//! hosts (2750 buckets plus `_sum` and `_count`); one sample every 15 s for 65 min.
//! The side-by-side figures against Prometheus and VictoriaMetrics come from
//! `bench/compare` (its history phase runs the same kinds of queries).

use std::time::Duration;

use arrowmon::model::labels::Labels;
use arrowmon::promql::Engine;
use arrowmon::store::{write_imported_block, Store, StoreOptions};
use criterion::Criterion;

const STEP_MS: i64 = 15_000;
const POINTS: i64 = 65 * 4;
const LE: [&str; 11] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "+Inf",
];

/// A small deterministic generator (the data must be the same every run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

type SeriesData = (Labels, Vec<i64>, Vec<f64>);

fn series(pairs: &[(&str, &str)], f: impl Fn(i64) -> f64) -> SeriesData {
    let ts: Vec<i64> = (0..POINTS).map(|i| i * STEP_MS).collect();
    let vs = ts.iter().map(|&t| f(t)).collect();
    (Labels::from_pairs(pairs.iter().copied()), ts, vs)
}

fn data() -> Vec<SeriesData> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::new();
    for h in 0..500 {
        let host = format!("h{h:03}");
        for mode in 0..10 {
            let (start, rate) = ((rng.next() * 1e6).floor(), 0.01 + rng.next() * 500.0);
            out.push(series(
                &[
                    ("__name__", "bench_cpu_seconds_total"),
                    ("host", &host),
                    ("job", &format!("job{}", h % 5)),
                    ("mode", &format!("m{mode}")),
                ],
                |t| (start + rate * t as f64 / 1000.0).floor(),
            ));
        }
        for d in 0..4 {
            let (offset, amp) = (rng.next() * 1000.0, 1.0 + rng.next() * 99.0);
            let period = 60_000.0 + rng.next() * 3_540_000.0;
            out.push(series(
                &[
                    ("__name__", "bench_load"),
                    ("device", &format!("d{d}")),
                    ("host", &host),
                ],
                |t| {
                    let v = offset + amp * (t as f64 / period * std::f64::consts::TAU).sin();
                    (v * 100.0).round() / 100.0
                },
            ));
        }
        if h < 250 {
            let rate = 1.0 + rng.next() * 100.0;
            for (i, le) in LE.iter().enumerate() {
                let share = (i + 1) as f64 / LE.len() as f64;
                out.push(series(
                    &[
                        ("__name__", "bench_request_duration_seconds_bucket"),
                        ("host", &host),
                        ("le", le),
                    ],
                    |t| (rate * share * t as f64 / 1000.0).floor(),
                ));
            }
            for (name, per) in [("sum", 0.3), ("count", 1.0)] {
                out.push(series(
                    &[
                        (
                            "__name__",
                            &format!("bench_request_duration_seconds_{name}"),
                        ),
                        ("host", &host),
                    ],
                    |t| (rate * per * t as f64).floor() / 1000.0,
                ));
            }
        }
    }
    out
}

fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = data();
    let n = data.len();
    write_imported_block(dir.path(), 0, 7_200_000, data).expect("block written");
    let store = Store::open_with(
        dir.path(),
        StoreOptions {
            background: false,
            ..StoreOptions::default()
        },
    )
    .expect("store opens");
    let engine = Engine::new(Default::default());
    let (start, end) = (5 * 60_000, POINTS * STEP_MS - STEP_MS);
    let queries = [
        ("rate", "rate(bench_cpu_seconds_total[5m])"),
        ("sum_by_rate", "sum by (job) (rate(bench_cpu_seconds_total[5m]))"),
        (
            "histogram_quantile",
            "histogram_quantile(0.99, sum by (le) (rate(bench_request_duration_seconds_bucket[5m])))",
        ),
        ("topk", "topk(5, bench_load)"),
        ("count_all", "count({__name__=~\"bench_.+\"})"),
        (
            "rate_one_host",
            "rate(bench_cpu_seconds_total{host=\"h042\",mode=\"m3\"}[1m])",
        ),
    ];
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .configure_from_args();
    let mut g = c.benchmark_group(format!("{n} series x 1 h, 15 s step"));
    for (name, q) in queries {
        let r = engine
            .range_query(&store, q, start, end, STEP_MS)
            .expect("query runs");
        assert!(
            !matches!(&r.value, arrowmon::promql::Value::Matrix(m) if m.is_empty()),
            "{q}: empty result"
        );
        g.bench_function(name, |b| {
            b.iter(|| engine.range_query(&store, q, start, end, STEP_MS))
        });
    }
    g.finish();
    c.final_summary();
}
