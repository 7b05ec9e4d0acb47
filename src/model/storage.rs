//! The read interface a store offers and the query engine evaluates over, and an
//! in-memory implementation for the test-script runner and unit tests.

use std::sync::Arc;

use super::labels::{Labels, Matcher};

/// One series' points: timestamps (milliseconds) and their values.
pub type Points = (Vec<i64>, Vec<f64>);

/// One series with its samples in `[mint, maxt]`, sorted by time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub timestamps: Vec<i64>,
    pub values: Vec<f64>,
}

impl From<(Labels, Points)> for Series {
    fn from((labels, (timestamps, values)): (Labels, Points)) -> Series {
        Series {
            labels,
            timestamps,
            values,
        }
    }
}

/// A store could not read what a selection asked for; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("storage error: {0}")]
pub struct StorageError(pub String);

/// Why a selection with a function ([`Storage::select_with`]) ended without a result.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The function stopped the selection with its own error (a query limit, say),
    /// which the caller takes back out.
    #[error("{0}")]
    Stopped(Box<dyn std::error::Error + Send + Sync>),
}

/// A selected series' label set as the storage holds it, read without copying it:
/// an aggregation keeps only its grouping labels, and building every series' whole
/// label set only to drop most of it costs more than the query's arithmetic.
pub trait LabelsView {
    /// Each label, in name order.
    fn for_each_label(&self, f: &mut dyn FnMut(&Arc<str>, &Arc<str>));
    /// The whole label set.
    fn to_labels(&self) -> Labels;
}

impl LabelsView for Labels {
    fn for_each_label(&self, f: &mut dyn FnMut(&Arc<str>, &Arc<str>)) {
        for l in self {
            f(&l.name, &l.value);
        }
    }

    fn to_labels(&self) -> Labels {
        self.clone()
    }
}

/// A series' labels to keep and points, computed from its label set and samples
/// (timestamps, values), which it may change or take; `None` leaves the series out,
/// an error stops the selection.
pub type SelectFn<'a> = dyn Fn(
        &dyn LabelsView,
        &mut Vec<i64>,
        &mut Vec<f64>,
    ) -> Result<Option<(Labels, Points)>, SelectError>
    + Sync
    + 'a;

/// What the engine needs from a store.
pub trait Storage: Send + Sync {
    /// All series matching every matcher, with their samples `mint_ms <= t <= maxt_ms`
    /// (staleness markers included), sorted by time. Series are returned sorted by labels.
    fn select(
        &self,
        matchers: &[Matcher],
        mint_ms: i64,
        maxt_ms: i64,
    ) -> Result<Vec<Series>, StorageError>;

    /// [`select`](Self::select) with each series turned into labels and points by `f`
    /// as soon as it is read, so a store need not hold every series' samples at
    /// once: the selectors of heavy queries use this. Series `f` gives `None` for are
    /// left out.
    fn select_with(
        &self,
        matchers: &[Matcher],
        mint_ms: i64,
        maxt_ms: i64,
        f: &SelectFn<'_>,
    ) -> Result<Vec<(Labels, Points)>, SelectError> {
        let series = self.select(matchers, mint_ms, maxt_ms)?;
        let work = series.iter().map(|s| s.timestamps.len()).sum();
        let got = crate::par::map(series, work, |mut s| {
            f(&s.labels, &mut s.timestamps, &mut s.values)
        })?;
        Ok(got.into_iter().flatten().collect())
    }
}

/// A simple in-memory store: a sorted list of series.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    series: std::collections::BTreeMap<Labels, (Vec<i64>, Vec<f64>)>,
}

impl MemStorage {
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// Adds samples to a series; samples are kept sorted by time, a later sample at
    /// the same timestamp replaces the earlier one.
    pub fn add_samples(&mut self, labels: Labels, samples: &[(i64, f64)]) {
        let entry = self.series.entry(labels).or_default();
        for &(t, v) in samples {
            match entry.0.binary_search(&t) {
                Ok(i) => entry.1[i] = v,
                Err(i) => {
                    entry.0.insert(i, t);
                    entry.1.insert(i, v);
                }
            }
        }
    }

    /// Replaces a series' samples.
    pub fn set_series(&mut self, labels: Labels, samples: &[(i64, f64)]) {
        self.series.remove(&labels);
        self.add_samples(labels, samples);
    }

    pub fn clear(&mut self) {
        self.series.clear();
    }

    /// The newest timestamp of the series with exactly these labels.
    pub fn last_timestamp(&self, labels: &Labels) -> Option<i64> {
        self.series
            .get(labels)
            .and_then(|(ts, _)| ts.last().copied())
    }

    /// Every sample of the series with exactly these labels, oldest first.
    pub fn samples_of(&self, labels: &Labels) -> Vec<(i64, f64)> {
        self.series.get(labels).map_or_else(Vec::new, |(ts, vs)| {
            ts.iter().copied().zip(vs.iter().copied()).collect()
        })
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

impl Storage for MemStorage {
    fn select(
        &self,
        matchers: &[Matcher],
        mint_ms: i64,
        maxt_ms: i64,
    ) -> Result<Vec<Series>, StorageError> {
        let mut out = Vec::new();
        for (labels, (ts, vs)) in &self.series {
            if !matchers.iter().all(|m| m.matches_labels(labels)) {
                continue;
            }
            let lo = ts.partition_point(|&t| t < mint_ms);
            let hi = ts.partition_point(|&t| t <= maxt_ms);
            if lo >= hi {
                continue;
            }
            out.push(Series {
                labels: labels.clone(),
                timestamps: ts[lo..hi].to_vec(),
                values: vs[lo..hi].to_vec(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::MatchKind;

    #[test]
    fn select_filters_by_matchers_and_time() {
        let mut s = MemStorage::new();
        s.add_samples(
            Labels::from_pairs([("__name__", "up"), ("job", "a")]),
            &[(0, 1.0), (10, 2.0), (20, 3.0)],
        );
        s.add_samples(
            Labels::from_pairs([("__name__", "up"), ("job", "b")]),
            &[(5, 1.0)],
        );
        let m = [
            Matcher::equal("__name__", "up"),
            Matcher::new(MatchKind::Regex, "job", "a").unwrap(),
        ];
        let r = s.select(&m, 5, 20).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].timestamps, vec![10, 20]);
    }
}
