//! Scrape-path throughput: parse + target labels + metric relabeling + limits +
//! append to the store, on recorded node_exporter and mysqld_exporter bodies and on
//! a synthetic 100k-series body, in samples per second on one core (the benchmark
//! runs on one thread).
//!
//! Recorded bodies: `scripts/record-fixtures.sh target/fixtures` (or set
//! `ARROWMON_FIXTURES` to the folder it wrote); without them only the synthetic body
//! is measured. Synthetic body: docs/design.md's value model without time evolution
//! (integer counters, 2-decimal gauges, one 11-bucket classic histogram with a
//! 3-decimal `_sum`; labels host/device/cpu/mode): 25,600 counters, 32,800 gauges,
//! 41,600 histogram series = 100,000 samples.
//!
//! Each body is measured twice: `plain` (a job without metric relabeling) and
//! `relabel` (a job whose metric_relabel_configs drop `go_*` series, copy a label
//! with a regex replace and drop a label, as typical configs do). Appends go to a
//! warmed store with a new timestamp each round, as steady-state scraping does.
//!
//! Run: `cargo bench --bench scrape`. Prints best-of-N samples/s first, then
//! criterion's own figures.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use arrowmon::config::{ScrapeConfig, ScrapeJob, SecretSource};
use arrowmon::scrape::exposition::Format;
use arrowmon::scrape::{parse_body, ScrapeCache};
use arrowmon::store::Store;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const MODES: [&str; 8] = [
    "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
];
const BUCKETS: [&str; 11] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "10", "+Inf",
];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn synthetic_body() -> String {
    let mut rng = Rng(7);
    let mut b = String::with_capacity(12 << 20);
    for f in 0..8 {
        let name = format!("synthetic_cpu_work_{f}_seconds_total");
        b.push_str(&format!(
            "# HELP {name} Synthetic counter.\n# TYPE {name} counter\n"
        ));
        for host in 0..50 {
            for cpu in 0..8 {
                for mode in MODES {
                    let v = rng.next() % 10_000_000_000;
                    b.push_str(&format!(
                        "{name}{{host=\"host-{host:03}\",cpu=\"{cpu}\",mode=\"{mode}\"}} {v}\n"
                    ));
                }
            }
        }
    }
    for f in 0..8 {
        let name = format!("synthetic_device_level_{f}");
        b.push_str(&format!(
            "# HELP {name} Synthetic gauge.\n# TYPE {name} gauge\n"
        ));
        for host in 0..50 {
            for dev in 0..82 {
                let v = (rng.next() % 200_000) as f64 / 100.0 - 100.0;
                b.push_str(&format!(
                    "{name}{{host=\"host-{host:03}\",device=\"sd{dev}\"}} {v:.2}\n"
                ));
            }
        }
    }
    let name = "synthetic_request_duration_seconds";
    b.push_str(&format!(
        "# HELP {name} Synthetic histogram.\n# TYPE {name} histogram\n"
    ));
    for host in 0..50 {
        for dev in 0..64 {
            let mut count = 0u64;
            for le in BUCKETS {
                count += rng.next() % 1000;
                b.push_str(&format!(
                    "{name}_bucket{{host=\"host-{host:03}\",device=\"sd{dev}\",le=\"{le}\"}} {count}\n"
                ));
            }
            let sum = (rng.next() % 100_000_000) as f64 / 1000.0;
            b.push_str(&format!(
                "{name}_sum{{host=\"host-{host:03}\",device=\"sd{dev}\"}} {sum:.3}\n{name}_count{{host=\"host-{host:03}\",device=\"sd{dev}\"}} {count}\n"
            ));
        }
    }
    b
}

fn job(relabel: bool) -> ScrapeJob {
    let mrc = if relabel {
        "    metric_relabel_configs:\n      - source_labels: [__name__]\n        regex: 'go_.*'\n        action: drop\n      - source_labels: [device]\n        regex: '(sd|nvme)(.*)'\n        target_label: disk\n        replacement: '$2'\n      - regex: 'mode'\n        action: labeldrop\n"
    } else {
        ""
    };
    let yaml = format!(
        "scrape_configs:\n  - job_name: bench\n    sample_limit: 1000000\n{mrc}    static_configs:\n      - targets: ['127.0.0.1:9100']\n        labels: {{env: bench}}\n"
    );
    ScrapeConfig::parse(&yaml, &SecretSource::File)
        .expect("bench config")
        .jobs
        .remove(0)
}

/// One scrape's work: parse, label, relabel, append. Returns samples appended.
fn scrape(body: &[u8], job: &ScrapeJob, cache: &mut ScrapeCache, store: &Store, ts: i64) -> usize {
    let target = &job.targets[0].labels;
    let scraped = parse_body(body, Format::PrometheusText, ts, target, job, cache, store)
        .expect("valid body");
    let n = scraped.samples.len();
    store.append_refs(&scraped.samples);
    n
}

fn bodies() -> Vec<(String, Vec<u8>)> {
    let mut out = vec![("synthetic_100k".to_string(), synthetic_body().into_bytes())];
    let dir = std::env::var_os("ARROWMON_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fixtures"));
    for name in ["node_exporter", "mysqld_exporter"] {
        match std::fs::read(dir.join(format!("{name}.prom"))) {
            Ok(b) => out.push((name.to_string(), b)),
            Err(_) => println!(
                "{name}: no fixture in {} (run scripts/record-fixtures.sh {}); skipped",
                dir.display(),
                dir.display()
            ),
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let only = std::env::var("SCRAPE_BENCH_ONLY").ok();
    for (name, body) in bodies() {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        for relabel in [false, true] {
            let variant = if relabel { "relabel" } else { "plain" };
            let job = job(relabel);
            let store = Store::open(&tmp.path().join(format!("{name}-{variant}"))).expect("store");
            let mut ts = 1_000_000i64;
            // Warm: create every series once.
            let mut cache = ScrapeCache::default();
            let samples = scrape(&body, &job, &mut cache, &store, ts);
            let rounds = if body.len() > 1 << 20 { 15 } else { 200 };
            let mut best = Duration::MAX;
            for _ in 0..rounds {
                ts += 15_000;
                let t = Instant::now();
                black_box(scrape(black_box(&body), &job, &mut cache, &store, ts));
                best = best.min(t.elapsed());
            }
            // The scrape module's share alone (no append), to tell it from the store's.
            let mut best_parse = Duration::MAX;
            for _ in 0..rounds {
                let t = Instant::now();
                let s = parse_body(
                    black_box(&body),
                    Format::PrometheusText,
                    ts,
                    &job.targets[0].labels,
                    &job,
                    &mut cache,
                    &store,
                );
                black_box(s.map(|s| s.samples.len()).unwrap_or(0));
                best_parse = best_parse.min(t.elapsed());
            }
            println!(
                "{name}/{variant}: {} bytes, {samples} samples appended; best of {rounds} {:.2} ms = {:.2} M samples/s on one core (parse+labels+relabel alone: {:.2} ms = {:.2} M samples/s)",
                body.len(),
                best.as_secs_f64() * 1e3,
                samples as f64 / best.as_secs_f64() / 1e6,
                best_parse.as_secs_f64() * 1e3,
                samples as f64 / best_parse.as_secs_f64() / 1e6
            );
            let mut g = c.benchmark_group(format!("scrape_{name}"));
            g.throughput(Throughput::Elements(samples as u64));
            g.sample_size(10);
            g.measurement_time(Duration::from_secs(5));
            g.bench_function(variant, |b| {
                b.iter(|| {
                    ts += 15_000;
                    scrape(black_box(&body), &job, &mut cache, &store, ts)
                })
            });
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
