//! Store benchmarks and figures.
//!
//! `cargo bench --bench store` prints, before the criterion runs:
//! - bytes/sample on disk of each block-format candidate on the same data,
//! - memory per head series (process RSS delta ÷ series) with 1 sample, 1 h and 3 h
//!   (the most a head of the default 2 h block range holds) of samples,
//! - WAL replay time,
//!
//! then measures append throughput and select latency (1 series × 24 h from blocks,
//! 10k series × 1 h from the head). `STORE_BENCH_FIGURES=0` skips the figures,
//! `STORE_BENCH_FORMATS=0` only the format comparison, `STORE_BENCH_CRITERION=0` the
//! criterion runs; `STORE_BENCH_SERIES` scales the figure workloads (default 20000
//! series).
//!
//! Data follows docs/design.md's synthetic exporter model: counters are integers starting
//! at a random value rising at a per-series rate of 0.01–500/s; gauges are a slow sine
//! (offset 0–1000, amplitude 1–100, period 1–60 min, random phase) plus 1% noise,
//! printed with 2 decimals; one classic histogram family with 11 integer buckets and
//! a `_sum` with 3 decimals; labels host/device/cpu/mode; 5 s scrapes whose
//! timestamps jitter by 0–3 ms per target, as scrape start times do.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Float64Array, Int64Array, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use criterion::Criterion;

use arrowmon::model::labels::{Labels, Matcher};
use arrowmon::store::{format, AppendSample, Store, StoreOptions};

const STEP: i64 = 5000;
const T0: i64 = 1_764_115_200_000; // 2025-11-26T00:00:00Z, aligned to 2 h

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn f(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f()
    }
}

enum Kind {
    Counter {
        start: f64,
        rate: f64,
    },
    Gauge {
        offset: f64,
        amp: f64,
        period_s: f64,
        phase: f64,
    },
    /// Bucket counts: a share of one rising count.
    Bucket {
        share: f64,
        rate: f64,
    },
    Sum {
        rate: f64,
    },
}

struct SynthSeries {
    labels: Labels,
    target: usize,
    kind: Kind,
}

/// `n` series spread over targets of ~1000 series each, a node/mysql-like mix:
/// 50% counters, 30% gauges, 20% histogram buckets and sums.
fn synth(n: usize, seed: u64) -> Vec<SynthSeries> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(n);
    let modes = [
        "user", "system", "idle", "iowait", "irq", "softirq", "steal", "nice",
    ];
    let les = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf",
    ];
    let mut i = 0;
    while out.len() < n {
        let target = i / 1000;
        let host = format!("host-{target:04}");
        let r = i % 10;
        let (labels, kind) = if r < 5 {
            // Unique per target: (cpu, mode) from the series' position in it.
            let cpu = (i % 1000) / 8;
            let l = Labels::from_pairs([
                ("__name__", "node_cpu_seconds_total"),
                ("host", &host),
                ("cpu", &cpu.to_string()),
                ("mode", modes[i % 8]),
                ("job", "node"),
            ]);
            (
                l,
                Kind::Counter {
                    start: (rng.next() % 1_000_000_000) as f64,
                    rate: rng.range(0.01, 500.0),
                },
            )
        } else if r < 8 {
            let l = Labels::from_pairs([
                ("__name__", "mysql_global_status_threads_connected"),
                ("host", &host),
                ("device", &format!("sd{}", (b'a' + (i % 26) as u8) as char)),
                ("mode", &format!("g{i}")),
                ("job", "mysql"),
            ]);
            (
                l,
                Kind::Gauge {
                    offset: rng.range(0.0, 1000.0),
                    amp: rng.range(1.0, 100.0),
                    period_s: rng.range(60.0, 3600.0),
                    phase: rng.range(0.0, std::f64::consts::TAU),
                },
            )
        } else {
            let h = i / 10;
            let rate = rng.range(0.1, 50.0);
            let l = if r == 8 {
                Labels::from_pairs([
                    ("__name__", "mysql_query_duration_seconds_bucket"),
                    ("host", &host),
                    ("le", les[h % 11]),
                    ("mode", &format!("h{}", h / 11)),
                    ("job", "mysql"),
                ])
            } else {
                Labels::from_pairs([
                    ("__name__", "mysql_query_duration_seconds_sum"),
                    ("host", &host),
                    ("mode", &format!("h{}", h / 11)),
                    ("shard", &(h % 11).to_string()),
                    ("job", "mysql"),
                ])
            };
            let kind = if r == 8 {
                Kind::Bucket {
                    share: ((h % 11) + 1) as f64 / 11.0,
                    rate,
                }
            } else {
                Kind::Sum { rate }
            };
            (l, kind)
        };
        out.push(SynthSeries {
            labels,
            target,
            kind,
        });
        i += 1;
    }
    out
}

fn round_to(v: f64, decimals: usize) -> f64 {
    // As an exporter prints it and a parser reads it back.
    format!("{v:.decimals$}").parse().unwrap_or(v)
}

impl SynthSeries {
    fn value(&self, t: i64, noise: &mut Rng) -> f64 {
        let secs = (t - T0) as f64 / 1000.0;
        match self.kind {
            Kind::Counter { start, rate } => (start + rate * secs).floor(),
            Kind::Gauge {
                offset,
                amp,
                period_s,
                phase,
            } => {
                let v = offset
                    + amp * (secs / period_s * std::f64::consts::TAU + phase).sin()
                    + amp * 0.01 * (noise.f() * 2.0 - 1.0);
                round_to(v, 2)
            }
            Kind::Bucket { share, rate } => (rate * share * secs).floor(),
            Kind::Sum { rate } => round_to(rate * secs * 0.137, 3),
        }
    }
}

/// Timestamp of scrape `k` of `target` (per-target jitter of 0–3 ms).
fn ts(k: i64, target: usize) -> i64 {
    let j = (k as u64)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(target as u64 * 7919)
        >> 62;
    T0 + k * STEP + j as i64
}

/// Appends `scrapes` scrapes of every series (one batch per target per scrape);
/// returns the time spent inside `Store::append`.
fn ingest(store: &Store, series: &[SynthSeries], from: i64, scrapes: i64) -> Duration {
    let mut in_append = Duration::ZERO;
    let mut noise = Rng(7);
    let targets = series.iter().map(|s| s.target).max().map_or(0, |m| m + 1);
    let mut by_target: Vec<Vec<&SynthSeries>> = vec![Vec::new(); targets];
    for s in series {
        by_target[s.target].push(s);
    }
    let mut batch = Vec::with_capacity(1000);
    for k in from..from + scrapes {
        for (tg, ss) in by_target.iter().enumerate() {
            let t = ts(k, tg);
            batch.clear();
            batch.extend(ss.iter().map(|s| AppendSample {
                labels: s.labels.clone(),
                timestamp_ms: t,
                value: s.value(t, &mut noise),
            }));
            let t0 = Instant::now();
            store.append(&batch);
            in_append += t0.elapsed();
        }
    }
    in_append
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn dir_size(p: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            n += if path.is_dir() {
                dir_size(&path)
            } else {
                e.metadata().map_or(0, |m| m.len())
            };
        }
    }
    n
}

fn bench_opts() -> StoreOptions {
    StoreOptions {
        background: false,
        retention_ms: 0,
        ..StoreOptions::default()
    }
}

// ---- format candidates --------------------------------------------------------------

/// Columns of all series (sorted by labels) over a time range, per candidate.
struct Columns {
    sid: Vec<u32>,
    t: Vec<i64>,
    v: Vec<f64>,
    t_enc: Vec<i64>,
    v_enc: Vec<i64>,
}

fn columns(store: &Store, mint: i64, maxt: i64) -> Columns {
    let mut c = Columns {
        sid: vec![],
        t: vec![],
        v: vec![],
        t_enc: vec![],
        v_enc: vec![],
    };
    for (i, s) in store
        .select(&[], mint, maxt)
        .unwrap()
        .into_iter()
        .enumerate()
    {
        c.sid
            .extend(std::iter::repeat_n(i as u32, s.timestamps.len()));
        format::encode_ts(&s.timestamps, &mut c.t_enc);
        format::encode_values(&s.values, &mut c.v_enc);
        c.t.extend(s.timestamps);
        c.v.extend(s.values);
    }
    c
}

fn ipc_size(batch: &RecordBatch, codec: Option<arrow_ipc::CompressionType>) -> usize {
    let mut opts = arrow_ipc::writer::IpcWriteOptions::default()
        .try_with_compression(codec)
        .unwrap();
    if codec == Some(arrow_ipc::CompressionType::ZSTD) {
        opts = opts.try_with_compression_level(Some(3)).unwrap();
    }
    let mut buf = Vec::new();
    let mut w =
        arrow_ipc::writer::FileWriter::try_new_with_options(&mut buf, &batch.schema(), opts)
            .unwrap();
    for off in (0..batch.num_rows()).step_by(16 * 1024) {
        let len = (16 * 1024).min(batch.num_rows() - off);
        w.write(&batch.slice(off, len)).unwrap();
    }
    w.finish().unwrap();
    drop(w);
    buf.len()
}

/// Parquet is measured only with `--features format-comparison`: it is a large
/// dependency the product does not use, kept out of the test suite's build.
#[cfg(feature = "format-comparison")]
fn parquet_size(batch: &RecordBatch, encodings: &[(&str, parquet::basic::Encoding)]) -> usize {
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::WriterProperties;
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap()))
        .set_dictionary_enabled(false);
    for (col, enc) in encodings {
        props = props.set_column_encoding((*col).into(), *enc);
    }
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), Some(props.build()))
        .unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    buf.len()
}

fn format_figures(series: usize) {
    #[cfg(feature = "format-comparison")]
    use parquet::basic::Encoding;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), bench_opts()).unwrap();
    let data = synth(series, 42);
    let hours = 6;
    let scrapes = hours * 3600 * 1000 / STEP;
    let append_s = ingest(&store, &data, 0, scrapes).as_secs_f64();
    let n = store.samples_appended();
    let t = Instant::now();
    store.cut_before(T0 + hours * 3600 * 1000).unwrap();
    let cut_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    store.compact().unwrap();
    let compact_s = t.elapsed().as_secs_f64();
    let blocks = store.blocks();
    let block_bytes = dir_size(&dir.path().join("blocks"));
    println!(
        "store format: {series} series x {hours} h = {n} samples; append {:.2} M samples/s (time inside Store::append, 1 thread, WAL included), \
         cut {cut_s:.1} s, compact {compact_s:.1} s -> {} block(s) levels {:?}",
        n as f64 / append_s / 1e6,
        blocks.len(),
        blocks.iter().map(|b| b.level).collect::<Vec<_>>()
    );
    println!(
        "  arrow IPC + ZSTD(3), dod timestamps, decimal-delta/XOR values as varints, a row a series (the store's format 2, blocks dir incl. series table): {:.3} bytes/sample",
        block_bytes as f64 / n as f64
    );
    let samples_bytes: u64 = std::fs::read_dir(dir.path().join("blocks"))
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path().join("samples.arrow");
            std::fs::metadata(path).map_or(0, |m| m.len())
        })
        .sum();
    println!(
        "  the same, samples.arrow only: {:.3} bytes/sample",
        samples_bytes as f64 / n as f64
    );

    let c = columns(&store, i64::MIN, i64::MAX);
    let ns = c.t.len() as f64;
    let schema_raw = Arc::new(Schema::new(vec![
        Field::new("series", DataType::UInt32, false),
        Field::new("t", DataType::Int64, false),
        Field::new("v", DataType::Float64, false),
    ]));
    let raw = RecordBatch::try_new(
        schema_raw,
        vec![
            Arc::new(UInt32Array::from(c.sid.clone())),
            Arc::new(Int64Array::from(c.t.clone())),
            Arc::new(Float64Array::from(c.v.clone())),
        ],
    )
    .unwrap();
    let schema_enc = Arc::new(Schema::new(vec![
        Field::new("t", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
    ]));
    let enc = RecordBatch::try_new(
        schema_enc,
        vec![
            Arc::new(Int64Array::from(c.t_enc.clone())),
            Arc::new(Int64Array::from(c.v_enc.clone())),
        ],
    )
    .unwrap();
    let rows: Vec<(&str, usize)> = vec![
        (
            "arrow IPC + ZSTD(3), raw t/f64 columns",
            ipc_size(&raw, Some(arrow_ipc::CompressionType::ZSTD)),
        ),
        (
            "arrow IPC + LZ4, raw t/f64 columns",
            ipc_size(&raw, Some(arrow_ipc::CompressionType::LZ4_FRAME)),
        ),
        (
            "arrow IPC + LZ4, transformed columns",
            ipc_size(&enc, Some(arrow_ipc::CompressionType::LZ4_FRAME)),
        ),
        (
            "arrow IPC + ZSTD(3), transformed columns as Int64, a row a sample (format 1, samples only)",
            ipc_size(&enc, Some(arrow_ipc::CompressionType::ZSTD)),
        ),
    ];
    #[cfg(feature = "format-comparison")]
    let rows = {
        let mut rows = rows;
        rows.extend([
            (
                "parquet ZSTD(3), t DELTA_BINARY_PACKED, v BYTE_STREAM_SPLIT (raw f64)",
                parquet_size(
                    &raw,
                    &[
                        ("t", Encoding::DELTA_BINARY_PACKED),
                        ("series", Encoding::DELTA_BINARY_PACKED),
                        ("v", Encoding::BYTE_STREAM_SPLIT),
                    ],
                ),
            ),
            (
                "parquet ZSTD(3), t DELTA_BINARY_PACKED, v PLAIN (raw f64)",
                parquet_size(
                    &raw,
                    &[
                        ("t", Encoding::DELTA_BINARY_PACKED),
                        ("series", Encoding::DELTA_BINARY_PACKED),
                    ],
                ),
            ),
            (
                "parquet ZSTD(3), transformed columns DELTA_BINARY_PACKED",
                parquet_size(
                    &enc,
                    &[
                        ("t", Encoding::DELTA_BINARY_PACKED),
                        ("v", Encoding::DELTA_BINARY_PACKED),
                    ],
                ),
            ),
        ]);
        rows
    };
    for (name, bytes) in rows {
        println!("  {name}: {:.3} bytes/sample", bytes as f64 / ns);
    }
}

fn memory_figures(series: usize) {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(series, 43);
    let before = rss_bytes();
    let store = Store::open_with(dir.path(), bench_opts()).unwrap();
    ingest(&store, &data, 0, 1);
    let one = rss_bytes();
    println!(
        "memory: {series} head series after 1 scrape: {:.0} bytes RSS/series",
        (one.saturating_sub(before)) as f64 / series as f64
    );
    // An hour of 5 s scrapes in the head.
    ingest(&store, &data, 1, 719);
    let hour = rss_bytes();
    println!(
        "memory: {series} head series with 1 h of samples (720/series): {:.0} bytes RSS/series",
        (hour.saturating_sub(before)) as f64 / series as f64
    );
    // The most a head of the default 2 h block range holds: 1.5 ranges.
    ingest(&store, &data, 720, 1440);
    let peak = rss_bytes();
    println!(
        "memory: {series} head series with 3 h of samples (2160/series): {:.0} bytes RSS/series; head chunk files {:.2} bytes/sample",
        (peak.saturating_sub(before)) as f64 / series as f64,
        dir_size(&dir.path().join("chunks_head")) as f64 / (series as f64 * 2160.0)
    );
    store.flush().unwrap();
    let n = store.samples_appended();
    drop(store);
    let wal = dir_size(&dir.path().join("wal"));
    println!("WAL: {:.2} bytes/sample", wal as f64 / n as f64);
    let t = Instant::now();
    let store = Store::open_with(dir.path(), bench_opts()).unwrap();
    let el = t.elapsed();
    println!(
        "replay: {} samples (of {n} appended) of {} series in {:.2} s ({:.1} M samples/s)",
        store.stats().replayed_samples,
        store.series_count(),
        el.as_secs_f64(),
        store.stats().replayed_samples as f64 / el.as_secs_f64() / 1e6
    );
}

// ---- criterion ----------------------------------------------------------------------

fn bench_append(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), bench_opts()).unwrap();
    let data = synth(10_000, 44);
    ingest(&store, &data, 0, 1);
    let mut k = 1;
    let mut g = c.benchmark_group("append");
    g.throughput(criterion::Throughput::Elements(data.len() as u64));
    g.bench_function("10k-series scrape", |b| {
        // Only the time inside Store::append counts, not the data generator.
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += ingest(&store, &data, k, 1);
                k += 1;
            }
            total
        })
    });
    g.finish();
}

fn bench_select(c: &mut Criterion) {
    // 1 series x 24 h: 2000 series, a day, cut into blocks and compacted.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), bench_opts()).unwrap();
    let data = synth(2000, 45);
    let day = 24 * 3600 * 1000;
    ingest(&store, &data, 0, day / STEP + 720);
    store.cut_before(T0 + day).unwrap();
    store.compact().unwrap();
    let one = [
        Matcher::equal("__name__", "node_cpu_seconds_total"),
        Matcher::equal("host", "host-0001"),
        Matcher::equal("cpu", "3"),
        Matcher::equal("mode", "nice"),
    ];
    let got = store.select(&one, T0, T0 + day).unwrap();
    assert_eq!(got.len(), 1);
    println!(
        "select fixture: {} samples in the series, {} blocks",
        got[0].timestamps.len(),
        store.blocks().len()
    );
    let mut g = c.benchmark_group("select");
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("1 series x 24h (blocks)", |b| {
        b.iter(|| black_box(store.select(&one, T0, T0 + day).unwrap()))
    });
    drop(store);

    // 10k series x 1 h, from the head.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), bench_opts()).unwrap();
    let data = synth(20_000, 46);
    ingest(&store, &data, 0, 720);
    let ten_k = [Matcher::equal("__name__", "node_cpu_seconds_total")];
    let hour = 3600 * 1000;
    assert_eq!(store.select(&ten_k, T0, T0 + hour).unwrap().len(), 10_000);
    g.sample_size(10);
    g.bench_function("10k series x 1h (head)", |b| {
        b.iter(|| black_box(store.select(&ten_k, T0, T0 + hour).unwrap()))
    });
    // The same from a block.
    store.cut_before(T0 + 2 * hour).unwrap();
    ingest(&store, &data, 1440, 1);
    store.cut_before(T0 + 2 * hour).unwrap();
    g.bench_function("10k series x 1h (block)", |b| {
        b.iter(|| black_box(store.select(&ten_k, T0, T0 + hour).unwrap()))
    });
    g.finish();
}

fn main() {
    let series: usize = std::env::var("STORE_BENCH_SERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    if std::env::var("STORE_BENCH_FIGURES").as_deref() != Ok("0") {
        memory_figures(series);
        if std::env::var("STORE_BENCH_FORMATS").as_deref() != Ok("0") {
            format_figures(series);
        }
    }
    if std::env::var("STORE_BENCH_CRITERION").as_deref() == Ok("0") {
        return;
    }
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_append(&mut c);
    bench_select(&mut c);
    c.final_summary();
}
