//! Parse throughput of the exposition parser on a synthetic 100k-series body, in the
//! text format and in OpenMetrics.
//!
//! Value model (docs/design.md's synthetic exporter, minus time evolution since one body
//! is parsed repeatedly): counters are integers, gauges are printed with 2 decimals,
//! one classic histogram family with 11 buckets has integer bucket counts and a `_sum`
//! with 3 decimals; labels host/device/cpu/mode. Series: 8 counter families x 50 hosts
//! x 8 cpus x 8 modes (25,600), 8 gauge families x 50 hosts x 82 devices (32,800),
//! one histogram family x 50 hosts x 64 devices x 13 series (41,600) = 100,000.
//!
//! Run: `cargo bench --bench exposition`. First prints, per format, the body size, the
//! sample count and the best-of-60 throughput (MiB/s and samples/s); then criterion
//! reports its mean-based MiB/s. `entries` is the parse alone; `entries_and_labels`
//! also walks every label (unescaping, `le` normalisation), as the scrape loop does.

use std::hint::black_box;
use std::time::{Duration, Instant};

use arrowmon::scrape::exposition::{Entry, Format, Parser, ParserOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const MODES: [&str; 8] = [
    "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
];
/// Ten finite bounds plus `+Inf`: 11 buckets.
const BUCKETS: [&str; 10] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "10",
];

/// Deterministic PRNG so both bodies hold the same numbers.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn synthetic_body(openmetrics: bool) -> (String, usize) {
    let mut rng = Rng(42);
    let mut b = String::with_capacity(12 << 20);
    let mut samples = 0;
    for f in 0..8 {
        let family = format!("synthetic_cpu_work_{f}_seconds");
        let series = if openmetrics {
            b.push_str(&format!(
                "# HELP {family} Synthetic counter {f}.\n# TYPE {family} counter\n"
            ));
            format!("{family}_total")
        } else {
            let name = format!("{family}_total");
            b.push_str(&format!(
                "# HELP {name} Synthetic counter {f}.\n# TYPE {name} counter\n"
            ));
            name
        };
        for host in 0..50 {
            for cpu in 0..8 {
                for mode in MODES {
                    let v = rng.next() % 10_000_000_000;
                    b.push_str(&format!(
                        "{series}{{host=\"host-{host:03}\",cpu=\"{cpu}\",mode=\"{mode}\"}} {v}\n"
                    ));
                    samples += 1;
                }
            }
        }
    }
    for f in 0..8 {
        let family = format!("synthetic_device_level_{f}");
        b.push_str(&format!(
            "# HELP {family} Synthetic gauge {f}.\n# TYPE {family} gauge\n"
        ));
        for host in 0..50 {
            for dev in 0..82 {
                let v = (rng.next() % 200_000) as f64 / 100.0 - 100.0;
                b.push_str(&format!(
                    "{family}{{host=\"host-{host:03}\",device=\"sd{dev}\"}} {v:.2}\n"
                ));
                samples += 1;
            }
        }
    }
    let family = "synthetic_request_duration_seconds";
    b.push_str(&format!(
        "# HELP {family} Synthetic histogram.\n# TYPE {family} histogram\n"
    ));
    for host in 0..50 {
        for dev in 0..64 {
            let mut count = 0u64;
            for le in BUCKETS.iter().copied().chain(["+Inf"]) {
                count += rng.next() % 1000;
                // OpenMetrics writers (client_golang) print bounds as floats.
                let le = if openmetrics && !le.contains('.') && le != "+Inf" {
                    format!("{le}.0")
                } else {
                    le.to_string()
                };
                b.push_str(&format!(
                    "{family}_bucket{{host=\"host-{host:03}\",device=\"sd{dev}\",le=\"{le}\"}} {count}\n"
                ));
                samples += 1;
            }
            let sum = (rng.next() % 100_000_000) as f64 / 1000.0;
            b.push_str(&format!(
                "{family}_sum{{host=\"host-{host:03}\",device=\"sd{dev}\"}} {sum:.3}\n"
            ));
            b.push_str(&format!(
                "{family}_count{{host=\"host-{host:03}\",device=\"sd{dev}\"}} {count}\n"
            ));
            samples += 2;
        }
    }
    if openmetrics {
        b.push_str("# EOF\n");
    }
    (b, samples)
}

/// Parses the whole body; with `labels`, also walks every label (unescape and
/// `le` normalisation included), which is what the scrape loop does next.
fn parse(body: &[u8], format: Format, labels: bool) -> (usize, f64) {
    let mut p = Parser::new(body, format, ParserOptions::default());
    let mut n = 0;
    let mut acc = 0.0;
    while let Some(e) = p.next().expect("valid body") {
        if let Entry::Sample(s) = e {
            n += 1;
            acc += s.value;
            if labels {
                for (name, value) in s.labels() {
                    acc += (name.len() + value.len()) as f64;
                }
            }
        }
    }
    (n, acc)
}

fn bench(c: &mut Criterion) {
    for (label, format, om) in [
        ("text", Format::PrometheusText, false),
        ("openmetrics", Format::OpenMetrics, true),
    ] {
        let (body, samples) = synthetic_body(om);
        let (parsed, _) = parse(body.as_bytes(), format, true);
        assert_eq!(parsed, samples);
        println!(
            "{label}: {} bytes ({:.2} MiB), {samples} samples",
            body.len(),
            body.len() as f64 / (1 << 20) as f64
        );
        // Best-of-N wall time as well: the machines this runs on are shared, and the
        // fastest run is the closest to one uncontended core.
        for (variant, labels) in [("entries", false), ("entries_and_labels", true)] {
            let mut best = Duration::MAX;
            for _ in 0..60 {
                let t = Instant::now();
                black_box(parse(black_box(body.as_bytes()), format, labels));
                best = best.min(t.elapsed());
            }
            let secs = best.as_secs_f64();
            println!(
                "{label}/{variant}: best of 60 {:.2} ms = {:.0} MiB/s, {:.2} M samples/s",
                secs * 1e3,
                body.len() as f64 / secs / (1 << 20) as f64,
                samples as f64 / secs / 1e6
            );
        }
        let mut g = c.benchmark_group(format!("parse_{label}"));
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.sample_size(20);
        g.measurement_time(Duration::from_secs(6));
        g.bench_function("entries", |b| {
            b.iter(|| parse(black_box(body.as_bytes()), format, false))
        });
        g.bench_function("entries_and_labels", |b| {
            b.iter(|| parse(black_box(body.as_bytes()), format, true))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
