//! The time-series store: every scraped sample lives here.
//!
//! This first version keeps the head in memory only: a map from label set to
//! [`SeriesId`] and, per series, its timestamps and values as two columns. The
//! on-disk WAL, sealed Arrow blocks and retention replace it behind the same
//! surface (`append`, `select`, label and series listings).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use crate::labels::{Labels, Matcher};
use crate::promql::{Series, Storage, StorageError};

/// Stable identifier of a series within one store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId(pub u32);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One sample to append.
#[derive(Clone, Debug)]
pub struct AppendSample {
    pub labels: Labels,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// What an append did, for the scraper's `scrape_series_added` and the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    pub appended: u64,
    pub series_created: u64,
    pub out_of_order: u64,
    pub duplicates: u64,
}

#[derive(Default)]
struct HeadSeries {
    labels: Labels,
    timestamps: Vec<i64>,
    values: Vec<f64>,
}

#[derive(Default)]
struct Head {
    ids: HashMap<Labels, SeriesId>,
    series: Vec<HeadSeries>,
}

pub struct Store {
    dir: PathBuf,
    head: RwLock<Head>,
    samples_appended: AtomicU64,
    out_of_order: AtomicU64,
}

impl Store {
    /// Opens (creating) a store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Store {
            dir: dir.to_path_buf(),
            head: RwLock::new(Head::default()),
            samples_appended: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Proves the data directory accepts writes (for the health check).
    pub fn check_writable(&self) -> Result<(), StoreError> {
        let probe = self.dir.join(".write-probe");
        let io = |source| StoreError::Io {
            path: self.dir.clone(),
            source,
        };
        std::fs::write(&probe, b"ok").map_err(io)?;
        std::fs::remove_file(&probe).map_err(io)
    }

    /// Appends a batch. Samples older than a series' newest one are rejected as out
    /// of order, a repeat of the newest timestamp as a duplicate (Prometheus's rules
    /// without an out-of-order window).
    pub fn append(&self, batch: &[AppendSample]) -> AppendOutcome {
        let mut out = AppendOutcome::default();
        let mut head = self.head.write().unwrap_or_else(|e| e.into_inner());
        for s in batch {
            let id = match head.ids.get(&s.labels) {
                Some(id) => *id,
                None => {
                    let id = SeriesId(head.series.len() as u32);
                    head.series.push(HeadSeries {
                        labels: s.labels.clone(),
                        ..Default::default()
                    });
                    head.ids.insert(s.labels.clone(), id);
                    out.series_created += 1;
                    id
                }
            };
            let series = &mut head.series[id.0 as usize];
            match series.timestamps.last() {
                Some(&last) if s.timestamp_ms < last => out.out_of_order += 1,
                Some(&last) if s.timestamp_ms == last => {
                    // Same timestamp and same bits is a harmless repeat; another value is
                    // a duplicate-sample error in Prometheus.
                    if series.values.last().map(|v| v.to_bits()) != Some(s.value.to_bits()) {
                        out.duplicates += 1;
                    }
                }
                _ => {
                    series.timestamps.push(s.timestamp_ms);
                    series.values.push(s.value);
                    out.appended += 1;
                }
            }
        }
        self.samples_appended
            .fetch_add(out.appended, Ordering::Relaxed);
        self.out_of_order
            .fetch_add(out.out_of_order, Ordering::Relaxed);
        out
    }

    pub fn series_count(&self) -> usize {
        self.head
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .series
            .len()
    }

    pub fn samples_appended(&self) -> u64 {
        self.samples_appended.load(Ordering::Relaxed)
    }

    /// The series matching every matcher that have samples in `[mint, maxt]`.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Series> {
        let head = self.head.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for s in &head.series {
            if !matchers.iter().all(|m| m.matches_labels(&s.labels)) {
                continue;
            }
            let lo = s.timestamps.partition_point(|&t| t < mint);
            let hi = s.timestamps.partition_point(|&t| t <= maxt);
            if lo < hi {
                out.push(Series {
                    labels: s.labels.clone(),
                    timestamps: s.timestamps[lo..hi].to_vec(),
                    values: s.values[lo..hi].to_vec(),
                });
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// Label sets of the matching series with samples in the range.
    pub fn series(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Labels> {
        let head = self.head.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Labels> = head
            .series
            .iter()
            .filter(|s| matchers.iter().all(|m| m.matches_labels(&s.labels)))
            .filter(|s| {
                let lo = s.timestamps.partition_point(|&t| t < mint);
                s.timestamps.get(lo).is_some_and(|&t| t <= maxt)
            })
            .map(|s| s.labels.clone())
            .collect();
        out.sort();
        out
    }

    pub fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<String> {
        let names: BTreeSet<String> = self
            .series(matchers, mint, maxt)
            .iter()
            .flat_map(|l| l.iter().map(|l| l.name.to_string()).collect::<Vec<_>>())
            .collect();
        names.into_iter().collect()
    }

    pub fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Vec<String> {
        let values: BTreeSet<String> = self
            .series(matchers, mint, maxt)
            .iter()
            .filter_map(|l| l.get(name).map(str::to_string))
            .collect();
        values.into_iter().collect()
    }

    /// Makes appended data durable. The in-memory head has nothing to write yet.
    pub fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Storage for Store {
    fn select(
        &self,
        matchers: &[Matcher],
        mint_ms: i64,
        maxt_ms: i64,
    ) -> Result<Vec<Series>, StorageError> {
        Ok(Store::select(self, matchers, mint_ms, maxt_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::MatchKind;

    fn sample(name: &str, job: &str, t: i64, v: f64) -> AppendSample {
        AppendSample {
            labels: Labels::from_pairs([("__name__", name), ("job", job)]),
            timestamp_ms: t,
            value: v,
        }
    }

    #[test]
    fn append_then_select_in_time_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let out = store.append(&[sample("up", "a", 1000, 1.0), sample("up", "b", 1000, 0.0)]);
        assert_eq!(out.series_created, 2);
        let out = store.append(&[sample("up", "a", 2000, 1.0), sample("up", "a", 1500, 9.0)]);
        assert_eq!((out.appended, out.out_of_order), (1, 1));
        let got = store.select(&[Matcher::equal("job", "a")], 0, 5000);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].timestamps, vec![1000, 2000]);
        let re = Matcher::new(MatchKind::Regex, "__name__", "u.").unwrap();
        assert_eq!(store.select(&[re], 1500, 1500).len(), 0);
        assert_eq!(store.label_values("job", &[], 0, 5000), vec!["a", "b"]);
    }

    #[test]
    fn stale_marker_bits_survive() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let stale = crate::promql::stale_nan();
        store.append(&[sample("x", "a", 1, 1.0), sample("x", "a", 2, stale)]);
        let got = store.select(&[], 0, 10);
        assert_eq!(got[0].values[1].to_bits(), stale.to_bits());
    }
}
