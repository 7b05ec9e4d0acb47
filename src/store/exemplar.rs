//! The exemplars of scraped samples, kept in memory as Prometheus's
//! `CircularExemplarStorage` (tsdb/exemplar.go) keeps them: one ring of a fixed
//! number of exemplars shared by every series of the store, the oldest overwritten
//! first, and per series a chain through the ring in time order.
//!
//! As in Prometheus an exemplar equal to its series' newest one (labels, value and
//! timestamp) is a harmless repeat and ignored (a target shows the same exemplar
//! until a new event replaces it), one not newer than the series' newest is out of
//! order and refused, and one whose label names and values together pass
//! [`MAX_LABEL_SET_CHARS`] UTF-8 characters is refused.
//!
//! Exemplars are not written to the WAL or to blocks: a restart loses them
//! (Prometheus keeps them in its WAL; see docs/design.md).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::model::exemplar::{Exemplar, ExemplarSeries};
use crate::model::labels::{Labels, Matcher};

/// Exemplars a store keeps at most: Prometheus's default
/// `storage.exemplars.max_exemplars`.
pub const MAX_EXEMPLARS: usize = 100_000;

/// The most UTF-8 characters an exemplar's label names and values may have
/// together (Prometheus's `exemplar.ExemplarMaxLabelSetLength`).
pub const MAX_LABEL_SET_CHARS: usize = 128;

/// Why an exemplar was refused, in Prometheus's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExemplarError {
    #[error("out of order exemplar")]
    OutOfOrder,
    #[error("label length for exemplar exceeds maximum of 128 UTF-8 characters")]
    LabelSetTooLong,
}

/// The storage's counts, for the self-metrics (Prometheus's
/// `prometheus_tsdb_exemplar_*`, and the refusals Prometheus only logs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExemplarStats {
    pub appended: u64,
    pub in_storage: u64,
    pub series: u64,
    pub max_exemplars: u64,
    pub out_of_order: u64,
    pub label_set_too_long: u64,
}

/// No next exemplar in a series' chain.
const NONE: u32 = u32::MAX;

struct Slot {
    exemplar: Exemplar,
    /// The exemplar came with its own timestamp (else it took its sample's).
    has_timestamp: bool,
    /// The series' entry in `Ring::series`.
    series: u32,
    /// The series' next (newer) exemplar in the ring, or [`NONE`].
    next: u32,
}

struct SeriesEntry {
    labels: Labels,
    oldest: u32,
    newest: u32,
}

#[derive(Default)]
struct Ring {
    capacity: usize,
    /// Grows to `capacity`, then each new exemplar replaces the one at `next`.
    slots: Vec<Slot>,
    next: usize,
    /// Series entries, by slot number; freed ones are reused.
    series: Vec<Option<SeriesEntry>>,
    free: Vec<u32>,
    index: HashMap<Labels, u32>,
    stats: ExemplarStats,
}

/// A store's exemplars (see the module documentation).
pub struct ExemplarStorage {
    ring: Mutex<Ring>,
}

impl Default for ExemplarStorage {
    fn default() -> Self {
        ExemplarStorage::new(MAX_EXEMPLARS)
    }
}

/// The label set's size as Prometheus counts it: characters of names and values.
fn label_set_chars(labels: &Labels) -> usize {
    labels
        .iter()
        .map(|l| l.name.chars().count() + l.value.chars().count())
        .sum()
}

/// Prometheus's `Exemplar.Equals`: the timestamps count only when one of the two
/// exemplars came with its own, and values compare with `==`, so a NaN never
/// repeats.
fn same(a: &Exemplar, a_has_ts: bool, b: &Exemplar, b_has_ts: bool) -> bool {
    a.labels == b.labels
        && (!(a_has_ts || b_has_ts) || a.timestamp_ms == b.timestamp_ms)
        && a.value == b.value
}

impl ExemplarStorage {
    /// A storage of at most `capacity` exemplars (0 keeps none). The ring grows as
    /// exemplars come, so an idle storage costs nothing.
    pub fn new(capacity: usize) -> ExemplarStorage {
        // Slot numbers are u32, NONE excluded.
        let capacity = capacity.min(NONE as usize - 1);
        ExemplarStorage {
            ring: Mutex::new(Ring {
                capacity,
                stats: ExemplarStats {
                    max_exemplars: capacity as u64,
                    ..Default::default()
                },
                ..Default::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an exemplar of the series `series_labels`: `Ok(true)` when stored,
    /// `Ok(false)` when it repeats the series' newest exemplar (or the storage
    /// keeps none), an error (counted) when refused. `has_timestamp` says whether
    /// the exemplar came with its own timestamp: one that took its sample's
    /// repeats the newest when labels and value are the same, whatever the time,
    /// as in Prometheus (a target showing the same exemplar without a timestamp
    /// at every scrape gives one exemplar, not one per scrape).
    pub fn add(
        &self,
        series_labels: &Labels,
        e: Exemplar,
        has_timestamp: bool,
    ) -> Result<bool, ExemplarError> {
        let mut ring = self.lock();
        ring.add(series_labels, e, has_timestamp)
    }

    /// The exemplars in `[start_ms, end_ms]` of every series whose labels satisfy
    /// all matchers of at least one of `matcher_sets`; series sorted by labels,
    /// each one's exemplars oldest first. No sets select nothing.
    pub fn select(
        &self,
        start_ms: i64,
        end_ms: i64,
        matcher_sets: &[Vec<Matcher>],
    ) -> Vec<ExemplarSeries> {
        let ring = self.lock();
        let mut out = Vec::new();
        for entry in ring.series.iter().flatten() {
            let oldest = &ring.slots[entry.oldest as usize].exemplar;
            let newest = &ring.slots[entry.newest as usize].exemplar;
            if oldest.timestamp_ms > end_ms || newest.timestamp_ms < start_ms {
                continue;
            }
            if !matcher_sets
                .iter()
                .any(|set| set.iter().all(|m| m.matches_labels(&entry.labels)))
            {
                continue;
            }
            let mut exemplars = Vec::new();
            let mut at = entry.oldest;
            while at != NONE {
                let slot = &ring.slots[at as usize];
                if slot.exemplar.timestamp_ms > end_ms {
                    break;
                }
                if slot.exemplar.timestamp_ms >= start_ms {
                    exemplars.push(slot.exemplar.clone());
                }
                at = slot.next;
            }
            if !exemplars.is_empty() {
                out.push(ExemplarSeries {
                    series_labels: entry.labels.clone(),
                    exemplars,
                });
            }
        }
        drop(ring);
        out.sort_by(|a, b| a.series_labels.cmp(&b.series_labels));
        out
    }

    pub fn stats(&self) -> ExemplarStats {
        let ring = self.lock();
        ExemplarStats {
            in_storage: ring.slots.len() as u64,
            series: ring.index.len() as u64,
            ..ring.stats
        }
    }
}

impl Ring {
    fn add(
        &mut self,
        series_labels: &Labels,
        e: Exemplar,
        has_timestamp: bool,
    ) -> Result<bool, ExemplarError> {
        if self.capacity == 0 {
            return Ok(false);
        }
        if label_set_chars(&e.labels) > MAX_LABEL_SET_CHARS {
            self.stats.label_set_too_long += 1;
            return Err(ExemplarError::LabelSetTooLong);
        }
        if let Some(&sid) = self.index.get(series_labels) {
            if let Some(entry) = &self.series[sid as usize] {
                let newest = &self.slots[entry.newest as usize];
                if same(&newest.exemplar, newest.has_timestamp, &e, has_timestamp) {
                    return Ok(false);
                }
                if e.timestamp_ms <= newest.exemplar.timestamp_ms {
                    self.stats.out_of_order += 1;
                    return Err(ExemplarError::OutOfOrder);
                }
            }
        }
        let pos = self.next;
        // Make room: the slot's exemplar leaves its series' chain (always its oldest).
        if pos < self.slots.len() {
            let (old_sid, old_next) = (self.slots[pos].series, self.slots[pos].next);
            if old_next == NONE {
                if let Some(old) = self.series[old_sid as usize].take() {
                    self.index.remove(&old.labels);
                }
                self.free.push(old_sid);
            } else if let Some(old) = &mut self.series[old_sid as usize] {
                old.oldest = old_next;
            }
        }
        let sid = match self.index.get(series_labels) {
            Some(&sid) => {
                if let Some(entry) = &mut self.series[sid as usize] {
                    let prev = entry.newest;
                    entry.newest = pos as u32;
                    self.slots[prev as usize].next = pos as u32;
                }
                sid
            }
            None => {
                let entry = SeriesEntry {
                    labels: series_labels.clone(),
                    oldest: pos as u32,
                    newest: pos as u32,
                };
                let sid = match self.free.pop() {
                    Some(sid) => {
                        self.series[sid as usize] = Some(entry);
                        sid
                    }
                    None => {
                        self.series.push(Some(entry));
                        (self.series.len() - 1) as u32
                    }
                };
                self.index.insert(series_labels.clone(), sid);
                sid
            }
        };
        let slot = Slot {
            exemplar: e,
            has_timestamp,
            series: sid,
            next: NONE,
        };
        if pos < self.slots.len() {
            self.slots[pos] = slot;
        } else {
            self.slots.push(slot);
        }
        self.next = (pos + 1) % self.capacity;
        self.stats.appended += 1;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::MatchKind;

    fn ex(trace: &str, value: f64, t: i64) -> Exemplar {
        Exemplar {
            labels: Labels::from_pairs([("trace_id", trace)]),
            value,
            timestamp_ms: t,
        }
    }

    fn series(name: &str, job: &str) -> Labels {
        Labels::from_pairs([("__name__", name), ("job", job)])
    }

    fn all() -> Vec<Vec<Matcher>> {
        vec![vec![
            Matcher::new(MatchKind::Regex, "__name__", ".+").unwrap()
        ]]
    }

    /// Every exemplar of every series, as (series name+job, trace ids).
    fn contents(s: &ExemplarStorage) -> Vec<(String, Vec<String>)> {
        s.select(i64::MIN, i64::MAX, &all())
            .into_iter()
            .map(|r| {
                (
                    r.series_labels.to_string(),
                    r.exemplars
                        .iter()
                        .map(|e| e.labels.get("trace_id").unwrap_or("").to_string())
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn exemplar_ring_overwrites_the_oldest_first() {
        let s = ExemplarStorage::new(4);
        let (a, b) = (series("a", "j"), series("b", "j"));
        for (i, l) in [&a, &b, &a, &b].into_iter().enumerate() {
            assert_eq!(
                s.add(l, ex(&format!("t{i}"), 1.0, i as i64), true),
                Ok(true)
            );
        }
        assert_eq!(s.stats().in_storage, 4);
        // The fifth replaces a's first; two more replace b's first and a's second,
        // so a is left with nothing but its newest.
        s.add(&b, ex("t4", 1.0, 4), true).unwrap();
        s.add(&b, ex("t5", 1.0, 5), true).unwrap();
        s.add(&b, ex("t6", 1.0, 6), true).unwrap();
        let traces = |v: &[&str]| v.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        assert_eq!(
            contents(&s),
            vec![(
                "b{job=\"j\"}".to_string(),
                traces(&["t3", "t4", "t5", "t6"])
            )]
        );
        let st = s.stats();
        assert_eq!((st.in_storage, st.series, st.appended), (4, 1, 7));
        // a comes back after losing all its exemplars; the ring keeps wrapping.
        for i in 7..40 {
            let l = if i % 3 == 0 { &a } else { &b };
            s.add(l, ex(&format!("t{i}"), 1.0, i), true).unwrap();
        }
        let c = contents(&s);
        let n: usize = c.iter().map(|(_, v)| v.len()).sum();
        assert_eq!(n, 4);
        assert_eq!(c[0].1, traces(&["t36", "t39"]));
        assert_eq!(c[1].1, traces(&["t37", "t38"]));
        assert_eq!(s.stats().series, 2);
    }

    #[test]
    fn exemplar_one_slot_ring_keeps_the_newest() {
        let s = ExemplarStorage::new(1);
        let a = series("a", "j");
        s.add(&a, ex("x", 1.0, 1), true).unwrap();
        s.add(&a, ex("y", 2.0, 2), true).unwrap();
        s.add(&series("b", "j"), ex("z", 3.0, 3), true).unwrap();
        assert_eq!(
            contents(&s),
            vec![("b{job=\"j\"}".to_string(), vec!["z".to_string()])]
        );
        assert!(ExemplarStorage::new(0)
            .add(&a, ex("x", 1.0, 1), true)
            .is_ok_and(|stored| !stored));
    }

    #[test]
    fn exemplar_duplicates_are_ignored_and_out_of_order_refused() {
        let s = ExemplarStorage::new(10);
        let a = series("a", "j");
        assert_eq!(s.add(&a, ex("x", 1.0, 10), true), Ok(true));
        // The same exemplar again: nothing stored, nothing counted.
        assert_eq!(s.add(&a, ex("x", 1.0, 10), true), Ok(false));
        // Same time, another value or trace: out of order, as in Prometheus.
        assert_eq!(
            s.add(&a, ex("x", 2.0, 10), true),
            Err(ExemplarError::OutOfOrder)
        );
        assert_eq!(
            s.add(&a, ex("y", 1.0, 10), true),
            Err(ExemplarError::OutOfOrder)
        );
        assert_eq!(
            s.add(&a, ex("x", 1.0, 9), true),
            Err(ExemplarError::OutOfOrder)
        );
        // NaN never equals itself: a repeated NaN exemplar is out of order.
        assert_eq!(s.add(&a, ex("n", f64::NAN, 11), true), Ok(true));
        assert_eq!(
            s.add(&a, ex("n", f64::NAN, 11), true),
            Err(ExemplarError::OutOfOrder)
        );
        assert_eq!(s.add(&a, ex("z", 1.0, 12), true), Ok(true));
        // Another series is not affected by a's newest.
        assert_eq!(s.add(&series("b", "j"), ex("x", 1.0, 1), true), Ok(true));
        // Without timestamps of their own (they took their samples'), exemplars with
        // the same labels and value repeat whatever their times, as in Prometheus.
        let c = series("c", "j");
        assert_eq!(s.add(&c, ex("x", 1.0, 100), false), Ok(true));
        assert_eq!(s.add(&c, ex("x", 1.0, 200), false), Ok(false));
        assert_eq!(s.add(&c, ex("x", 2.0, 300), false), Ok(true));
        // Once one side has a timestamp, times count again.
        assert_eq!(s.add(&c, ex("x", 2.0, 400), true), Ok(true));
        let st = s.stats();
        assert_eq!((st.appended, st.out_of_order, st.in_storage), (7, 4, 7));
        assert_eq!(
            ExemplarError::OutOfOrder.to_string(),
            "out of order exemplar"
        );
    }

    #[test]
    fn exemplar_label_sets_over_128_characters_are_refused() {
        let s = ExemplarStorage::new(10);
        let a = series("a", "j");
        // "trace_id" is 8 characters: 120 more make 128, allowed.
        let ok = "é".repeat(120);
        assert_eq!(s.add(&a, ex(&ok, 1.0, 1), true), Ok(true));
        let long = "é".repeat(121);
        let err = s.add(&a, ex(&long, 1.0, 2), true).unwrap_err();
        assert_eq!(err, ExemplarError::LabelSetTooLong);
        assert_eq!(
            err.to_string(),
            "label length for exemplar exceeds maximum of 128 UTF-8 characters"
        );
        // Names count too, over several labels.
        let many = Exemplar {
            labels: Labels::from_pairs([("a".repeat(60).as_str(), "x"), ("b", &"y".repeat(67))]),
            value: 1.0,
            timestamp_ms: 3,
        };
        assert_eq!(s.add(&a, many, true), Err(ExemplarError::LabelSetTooLong));
        assert_eq!(s.stats().label_set_too_long, 2);
        assert_eq!(s.stats().in_storage, 1);
    }

    #[test]
    fn exemplar_select_takes_the_range_inclusive_and_sorts_series() {
        let s = ExemplarStorage::new(100);
        let (a, b2, b1) = (series("a", "j"), series("b", "2"), series("b", "1"));
        for t in [10, 20, 30, 40] {
            s.add(&b2, ex(&format!("b2-{t}"), 1.0, t), true).unwrap();
            s.add(&a, ex(&format!("a-{t}"), 1.0, t + 5), true).unwrap();
            s.add(&b1, ex(&format!("b1-{t}"), 1.0, t), true).unwrap();
        }
        let got = s.select(20, 30, &all());
        let names: Vec<String> = got.iter().map(|r| r.series_labels.to_string()).collect();
        assert_eq!(names, ["a{job=\"j\"}", "b{job=\"1\"}", "b{job=\"2\"}"]);
        let times: Vec<Vec<i64>> = got
            .iter()
            .map(|r| r.exemplars.iter().map(|e| e.timestamp_ms).collect())
            .collect();
        assert_eq!(times, vec![vec![25], vec![20, 30], vec![20, 30]]);
        // Series with nothing in the range are left out.
        assert_eq!(s.select(41, 44, &all()).len(), 0);
        assert_eq!(s.select(41, 45, &all()).len(), 1);
        assert!(s.select(i64::MIN, 9, &all()).is_empty());
        // No matcher sets select nothing.
        assert!(s.select(i64::MIN, i64::MAX, &[]).is_empty());
    }

    #[test]
    fn exemplar_select_matches_any_of_the_matcher_sets() {
        let s = ExemplarStorage::new(100);
        for (i, l) in [series("a", "1"), series("a", "2"), series("b", "1")]
            .iter()
            .enumerate()
        {
            s.add(l, ex("t", 1.0, i as i64), true).unwrap();
        }
        let names = |sets: Vec<Vec<Matcher>>| -> Vec<String> {
            s.select(i64::MIN, i64::MAX, &sets)
                .iter()
                .map(|r| r.series_labels.to_string())
                .collect()
        };
        let eq = Matcher::equal;
        assert_eq!(
            names(vec![vec![eq("__name__", "a"), eq("job", "2")]]),
            ["a{job=\"2\"}"]
        );
        assert_eq!(
            names(vec![
                vec![eq("__name__", "b")],
                vec![eq("__name__", "a"), eq("job", "1")]
            ]),
            ["a{job=\"1\"}", "b{job=\"1\"}"]
        );
        assert_eq!(
            names(vec![vec![
                Matcher::new(MatchKind::NotEqual, "__name__", "a").unwrap(),
                eq("missing", "")
            ]]),
            ["b{job=\"1\"}"]
        );
        assert!(names(vec![vec![eq("__name__", "c")]]).is_empty());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever comes in, the storage holds at most its capacity, every chain is
        /// in time order, and the counts add up.
        #[test]
        fn exemplar_ring_stays_bounded_and_ordered(
            capacity in 0usize..8,
            adds in proptest::collection::vec((0u8..4, -3i64..30, 0u8..3), 0..64),
        ) {
            let s = ExemplarStorage::new(capacity);
            let mut stored = 0u64;
            for (series, t, v) in adds {
                let l = Labels::from_pairs([("__name__", "m"), ("s", series.to_string().as_str())]);
                let e = Exemplar { labels: Labels::from_pairs([("v", v.to_string().as_str())]), value: v as f64, timestamp_ms: t };
                if let Ok(true) = s.add(&l, e, true) {
                    stored += 1;
                }
            }
            let st = s.stats();
            prop_assert_eq!(st.appended, stored);
            prop_assert!(st.in_storage as usize <= capacity);
            prop_assert_eq!(st.in_storage, stored.min(capacity as u64));
            let all = vec![vec![Matcher::equal("__name__", "m")]];
            let got = s.select(i64::MIN, i64::MAX, &all);
            prop_assert_eq!(got.len() as u64, st.series);
            let n: usize = got.iter().map(|r| r.exemplars.len()).sum();
            prop_assert_eq!(n as u64, st.in_storage);
            for r in &got {
                prop_assert!(r.exemplars.windows(2).all(|w| w[0].timestamp_ms < w[1].timestamp_ms));
            }
        }
    }
}
