//! Many appenders and readers at once, for a bounded time, while the maintenance
//! thread cuts blocks and compacts: every read of a series must be an in-order,
//! gap-free prefix of what was appended to it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrowmon::model::labels::{Labels, Matcher};
use arrowmon::store::{AppendSample, Store, StoreOptions};

const APPENDERS: usize = 3;
const SERIES_PER_APPENDER: usize = 50;
const READERS: usize = 3;

fn labels(a: usize, i: usize) -> Labels {
    Labels::from_pairs([
        ("__name__", "stress_total"),
        ("appender", &a.to_string()),
        ("series", &i.to_string()),
    ])
}

#[test]
fn concurrent_appends_and_reads_see_gap_free_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        Store::open_with(
            dir.path(),
            StoreOptions {
                // Cuts are due half a range behind the newest sample: 500 ms of slack for
                // a descheduled appender on a loaded machine.
                block_range_ms: 1000,
                maintenance_interval: Duration::from_millis(20),
                wal_sync_interval: Duration::from_millis(10),
                wal_segment_bytes: 512 << 10,
                // Small head chunk files, so cuts delete them under running reads.
                head_chunk_segment_bytes: 64 << 10,
                ..StoreOptions::default()
            },
        )
        .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    // Appenders share one clock (as scrapes do), so none lags behind a block cut.
    let clock = Instant::now();
    let mut handles = Vec::new();
    for a in 0..APPENDERS {
        let (store, stop) = (store.clone(), stop.clone());
        handles.push(std::thread::spawn(move || {
            let mut k = 0i64;
            let mut t = 0i64;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                // One append per millisecond of the shared clock.
                loop {
                    let now = clock.elapsed().as_millis() as i64 + 1;
                    if now > t {
                        t = now;
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                let batch: Vec<AppendSample> = (0..SERIES_PER_APPENDER)
                    .map(|i| AppendSample {
                        labels: labels(a, i),
                        timestamp_ms: t,
                        value: k as f64,
                    })
                    .collect();
                let out = store.append(&batch);
                assert_eq!(out.appended, SERIES_PER_APPENDER as u64);
            }
            k
        }));
    }
    let mut readers = Vec::new();
    for r in 0..READERS {
        let (store, stop, reads) = (store.clone(), stop.clone(), reads.clone());
        readers.push(std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let a = (n + r) % APPENDERS;
                let ms = [
                    Matcher::equal("__name__", "stress_total"),
                    Matcher::equal("appender", &a.to_string()),
                ];
                // Every read succeeds: one that names a closed chunk must find its
                // file, however the appends race it.
                for s in store.select(&ms, i64::MIN, i64::MAX).unwrap() {
                    // Values count the appends: 1, 2, 3, … with rising timestamps.
                    for (j, &v) in s.values.iter().enumerate() {
                        assert_eq!(v, (j + 1) as f64, "{}: hole or duplicate at {j}", s.labels);
                    }
                    assert!(
                        s.timestamps.windows(2).all(|w| w[0] < w[1]),
                        "{}: timestamps out of order",
                        s.labels
                    );
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    let counts: Vec<i64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for r in readers {
        r.join().unwrap();
    }
    let started = Instant::now();
    store.maintain().unwrap();
    for (a, &k) in counts.iter().enumerate() {
        let got = store
            .select(
                &[Matcher::equal("appender", &a.to_string())],
                i64::MIN,
                i64::MAX,
            )
            .unwrap();
        assert_eq!(got.len(), SERIES_PER_APPENDER);
        for s in got {
            assert_eq!(s.timestamps.len() as i64, k, "{}", s.labels);
        }
    }
    let blocks = store.blocks();
    eprintln!(
        "appended {:?} batches, {} reads, {} blocks (levels {:?}), final check {:?}",
        counts,
        reads.load(Ordering::Relaxed),
        blocks.len(),
        blocks.iter().map(|b| b.level).collect::<Vec<_>>(),
        started.elapsed()
    );
    assert!(!blocks.is_empty(), "no block was cut during the test");
    assert!(reads.load(Ordering::Relaxed) > 10);
}
