//! Appends: resolving a sample's series (creating it if new), deciding whether the
//! sample is stored (in order, out of order, a repeat, a duplicate or out of bounds),
//! and logging the stored ones to the WAL.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::model::labels::Labels;

use super::chunk::{OpenChunk, CHUNK_BYTES, CHUNK_SAMPLES};
use super::head::{align_down, block_range_of, HeadSeries, SeriesData};
use super::head_chunks::HeadChunkFiles;
use super::wal::{self, REC_SAMPLES, REC_SERIES};
use super::{lock, read, write, AppendOutcome, AppendSample, RefSample, SeriesRef, Store};

/// What became of one sample appended to a series: stored (in order or into the
/// out-of-order buffer), or why it was not.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AppendDecision {
    Appended,
    /// Same timestamp and same bits as a stored sample: a harmless repeat.
    Repeat,
    /// Same timestamp as a stored sample, another value: rejected.
    Duplicate,
    /// Older than the series' newest sample and outside the out-of-order window.
    OutOfOrder,
    /// Below the head's lower bound (that range is already cut into a block), or
    /// at a time whose block range does not fit in i64 milliseconds.
    OutOfBounds,
}

impl Store {
    /// Appends a batch (one scrape). A sample older than its series' newest one is
    /// rejected as out of order unless it lies in the out-of-order window; a repeat of
    /// a stored timestamp with another value is a duplicate; with the same value it is
    /// ignored; below the head's lower bound it is out of bounds. As in Prometheus.
    pub fn append(&self, batch: &[AppendSample]) -> AppendOutcome {
        let mut out = AppendOutcome::default();
        let labels: Vec<&Labels> = batch.iter().map(|s| &s.labels).collect();
        let refs = self.resolve(&labels, &mut out);
        let resolved: Vec<RefSample> = refs
            .into_iter()
            .zip(batch)
            .map(|(series, s)| RefSample {
                series,
                timestamp_ms: s.timestamp_ms,
                value: s.value,
            })
            .collect();
        self.append_resolved(&resolved, &mut out, &mut Vec::new());
        out
    }

    /// Appends samples of series resolved earlier with [`series_ref`](Self::series_ref);
    /// the same rules as [`append`](Self::append), without hashing or comparing a
    /// label set per sample.
    pub fn append_refs(&self, batch: &[RefSample]) -> AppendOutcome {
        let mut out = AppendOutcome::default();
        self.append_resolved(batch, &mut out, &mut Vec::new());
        out
    }

    /// [`append_refs`](Self::append_refs), also telling which samples were refused
    /// (out of order, out of bounds, duplicates): their positions in `batch` go
    /// into `refused`. A harmless repeat is not refused.
    pub fn append_refs_reporting(
        &self,
        batch: &[RefSample],
        refused: &mut Vec<usize>,
    ) -> AppendOutcome {
        let mut out = AppendOutcome::default();
        self.append_resolved(batch, &mut out, refused);
        out
    }

    /// The series with these labels, created (and logged) if the head lacks it;
    /// `true` when it was created.
    pub fn series_ref(&self, labels: &Labels) -> (SeriesRef, bool) {
        let mut out = AppendOutcome::default();
        let series = self.resolve(&[labels], &mut out).pop();
        let series =
            series.unwrap_or_else(|| unreachable!("resolve returns one series per label set"));
        (series, out.series_created > 0)
    }

    /// Appends `batch`; the positions of refused samples go into `refused`.
    fn append_resolved(
        &self,
        batch: &[RefSample],
        out: &mut AppendOutcome,
        refused: &mut Vec<usize>,
    ) {
        let state = &*self.state;
        // Positions in `batch` of the samples to try again.
        let mut retry = self.apply(batch, out, refused);
        for _attempt in 0..3 {
            if retry.is_empty() {
                break;
            }
            // Series a cut removed since they were resolved: resolve them again.
            let labels: Vec<Labels> = retry.iter().map(|&i| batch[i].series.labels()).collect();
            let refs = self.resolve(&labels.iter().collect::<Vec<_>>(), out);
            let again: Vec<RefSample> = refs
                .into_iter()
                .zip(&retry)
                .map(|(series, &i)| RefSample {
                    series,
                    timestamp_ms: batch[i].timestamp_ms,
                    value: batch[i].value,
                })
                .collect();
            let mut refused_again = Vec::new();
            let again_retry = self.apply(&again, out, &mut refused_again);
            refused.extend(refused_again.into_iter().map(|j| retry[j]));
            retry = again_retry.into_iter().map(|j| retry[j]).collect();
        }
        // Samples whose series kept vanishing under concurrent cuts (never in practice).
        out.out_of_order += retry.len() as u64;
        refused.extend(retry);
        state
            .samples_appended
            .fetch_add(out.appended, Ordering::Relaxed);
        state
            .out_of_order
            .fetch_add(out.out_of_order, Ordering::Relaxed);
        state
            .duplicates
            .fetch_add(out.duplicates, Ordering::Relaxed);
    }

    /// Finds or creates the series of each label set.
    fn resolve(&self, labels: &[&Labels], out: &mut AppendOutcome) -> Vec<SeriesRef> {
        let state = &*self.state;
        let hashes: Vec<u64> = labels.iter().map(|l| state.hash(l)).collect();
        let mut refs: Vec<Option<Arc<HeadSeries>>> = {
            let idx = read(&state.index);
            labels
                .iter()
                .zip(&hashes)
                .map(|(l, &h)| idx.get(h, l).cloned())
                .collect()
        };
        if refs.iter().any(|r| r.is_none()) {
            let mut idx = write(&state.index);
            let mut rec = vec![REC_SERIES];
            for (k, slot) in refs.iter_mut().enumerate() {
                if slot.is_some() {
                    continue;
                }
                let s = match idx.get(hashes[k], labels[k]) {
                    Some(s) => s.clone(),
                    None => {
                        let interned = state.intern_labels(labels[k]);
                        let s = idx.insert(hashes[k], interned, None);
                        wal::encode_series(&mut rec, s.id, labels[k]);
                        out.series_created += 1;
                        s
                    }
                };
                *slot = Some(s);
            }
            if rec.len() > 1 {
                // Under the index lock, so no sample of these series can reach the WAL
                // before their definition.
                let mut w = lock(&state.wal);
                state.wal_write(&mut w, &rec, None);
            }
        }
        refs.into_iter().flatten().map(SeriesRef).collect()
    }

    /// Applies the samples and logs them, noting the positions of refused ones in
    /// `refused`; returns the positions of those whose series was removed meanwhile
    /// (to be resolved again).
    fn apply(
        &self,
        batch: &[RefSample],
        out: &mut AppendOutcome,
        refused: &mut Vec<usize>,
    ) -> Vec<usize> {
        let state = &*self.state;
        let mut retry = Vec::new();
        let range = state.opts.block_range_ms;
        let mut w = lock(&state.wal);
        let min_valid = state.min_valid_t.load(Ordering::Acquire);
        let window = state.opts.out_of_order_window_ms;
        let ooo_min = if window > 0 {
            state.reference_t().saturating_sub(window)
        } else {
            i64::MAX
        };
        let base_t = batch.first().map_or(0, |s| s.timestamp_ms);
        let mut rec = Vec::with_capacity(16 + batch.len() * 8);
        rec.push(REC_SAMPLES);
        wal::put_varint(&mut rec, base_t);
        let (mut prev_id, mut batch_max, mut n) = (0i64, i64::MIN, 0u64);
        for (k, s) in batch.iter().enumerate() {
            let series = &s.series.0;
            let mut d = series.lock();
            if series.removed.load(Ordering::Relaxed) {
                retry.push(k);
                continue;
            }
            match d.append(
                s.timestamp_ms,
                s.value,
                min_valid,
                ooo_min,
                range,
                &state.head_chunks,
            ) {
                AppendDecision::Appended => {
                    let id = series.id as i64;
                    wal::put_varint(&mut rec, id - prev_id);
                    prev_id = id;
                    wal::put_varint(&mut rec, s.timestamp_ms.wrapping_sub(base_t));
                    wal::put_standalone_value(&mut rec, s.value);
                    batch_max = batch_max.max(s.timestamp_ms);
                    n += 1;
                }
                AppendDecision::Repeat => {}
                AppendDecision::Duplicate => {
                    out.duplicates += 1;
                    refused.push(k);
                }
                AppendDecision::OutOfOrder => {
                    out.out_of_order += 1;
                    refused.push(k);
                }
                AppendDecision::OutOfBounds => {
                    refused.push(k);
                    out.out_of_order += 1;
                    out.out_of_bounds += 1;
                    state.out_of_bounds.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if n > 0 {
            state.wal_write(&mut w, &rec, Some(batch_max));
            state.max_t.fetch_max(batch_max, Ordering::AcqRel);
        }
        out.appended += n;
        w.append_seq += 1;
        retry
    }
}

impl SeriesData {
    /// Whether a stored sample has timestamp `t`; its value bits if so.
    fn find(&self, t: i64, files: &HeadChunkFiles) -> Option<u64> {
        let ooo = self.ooo();
        if let Ok(i) = ooo.binary_search_by_key(&t, |s| s.0) {
            return Some(ooo[i].1.to_bits());
        }
        let (mut ts, mut vs) = (Vec::new(), Vec::new());
        if let Some(c) = self.closed {
            if self.closed_min_t <= t && t <= self.closed_max_t {
                match files.read_chain(&files.snapshot(), c, t, t) {
                    Ok(got) => (ts, vs) = got,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read a head chunk to check an out-of-order sample against it")
                    }
                }
            }
        }
        for c in self.unwritten() {
            if c.first_t <= t && t <= c.last_t {
                c.decode_range(t, t, &mut ts, &mut vs);
            }
        }
        if let Some(c) = &self.open {
            if c.count() > 0 && c.first_t() <= t && t <= c.last_t() {
                c.decode_range(t, t, &mut ts, &mut vs);
            }
        }
        vs.first().map(|v| v.to_bits())
    }

    /// Closes the open chunk into the head chunk files (into memory if they fail).
    fn close_open(&mut self, files: &HeadChunkFiles) {
        let Some(c) = self.open.take().filter(|c| c.count() > 0) else {
            return;
        };
        let frozen = c.close();
        let prev = self.closed;
        match files.write(&frozen, prev, self.closed_max_t) {
            Ok(r) => {
                if prev.is_none() {
                    self.closed_min_t = frozen.first_t;
                }
                self.closed = Some(r);
                self.closed_max_t = frozen.last_t;
            }
            Err(_) => self
                .off_chain
                .get_or_insert_with(Default::default)
                .unwritten
                .push(frozen),
        }
    }

    /// Applies one sample. `ooo_min` is the oldest timestamp the out-of-order window
    /// admits (`i64::MAX` when there is no window; replay passes `i64::MIN`).
    pub(super) fn append(
        &mut self,
        t: i64,
        v: f64,
        min_valid: i64,
        ooo_min: i64,
        range: i64,
        files: &HeadChunkFiles,
    ) -> AppendDecision {
        if t < min_valid || block_range_of(t, range).is_none() {
            return AppendDecision::OutOfBounds;
        }
        let max_t = self.max_t();
        if t > max_t {
            // A chunk ends at the block boundary after its first sample, so a cut
            // drops whole chunks (and its last sample is in its first one's range).
            let roll = match &self.open {
                None => true,
                Some(c) => {
                    c.count() >= CHUNK_SAMPLES
                        || c.bytes().len() >= CHUNK_BYTES
                        || align_down(t, range) != align_down(c.last_t(), range)
                }
            };
            if roll {
                let previous_len = self.open.as_ref().map_or(0, |c| c.bytes().len());
                self.close_open(files);
                self.open = Some(OpenChunk::with_capacity(previous_len));
            }
            if let Some(c) = self.open.as_mut() {
                c.append(t, v);
            }
            return AppendDecision::Appended;
        }
        if t == max_t {
            if let Some(c) = self
                .open
                .as_ref()
                .filter(|c| c.count() > 0 && c.last_t() == t)
            {
                return if c.last_value_bits() == v.to_bits() {
                    AppendDecision::Repeat
                } else {
                    AppendDecision::Duplicate
                };
            }
        }
        if t < ooo_min {
            return AppendDecision::OutOfOrder;
        }
        match self.find(t, files) {
            Some(bits) if bits == v.to_bits() => AppendDecision::Repeat,
            Some(_) => AppendDecision::Duplicate,
            None => {
                let ooo = &mut self.off_chain.get_or_insert_with(Default::default).ooo;
                let i = ooo.partition_point(|s| s.0 < t);
                ooo.insert(i, (t, v));
                AppendDecision::Appended
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::store::head_chunks;
    use crate::store::tests::{opts, sample};
    use crate::store::{Store, StoreOptions};

    #[test]
    fn duplicates_and_repeats_follow_prometheus() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), opts()).unwrap();
        store.append(&[sample("x", "a", 10, 1.0)]);
        // Same timestamp, same value: ignored silently; another value: a duplicate.
        let out = store.append(&[sample("x", "a", 10, 1.0), sample("x", "a", 10, 2.0)]);
        assert_eq!((out.appended, out.duplicates, out.out_of_order), (0, 1, 0));
        assert_eq!(store.stats().duplicates, 1);
    }

    #[test]
    fn out_of_order_window_accepts_and_merges() {
        let dir = tempfile::tempdir().unwrap();
        let o = StoreOptions {
            out_of_order_window_ms: 1000,
            ..opts()
        };
        {
            let store = Store::open_with(dir.path(), o.clone()).unwrap();
            store.append(&[sample("x", "a", 5000, 5.0)]);
            let out = store.append(&[
                sample("x", "a", 4500, 4.5),
                sample("x", "a", 4500, 4.5),
                sample("x", "a", 4500, 9.9),
                sample("x", "a", 3000, 3.0),
            ]);
            assert_eq!((out.appended, out.duplicates, out.out_of_order), (1, 1, 1));
            store.append(&[sample("x", "a", 6000, 6.0)]);
            let got = store.select(&[], 0, 10_000).unwrap();
            assert_eq!(got[0].timestamps, vec![4500, 5000, 6000]);
        }
        // And after a restart (replayed from the WAL).
        let store = Store::open_with(dir.path(), o).unwrap();
        let got = store.select(&[], 0, 10_000).unwrap();
        assert_eq!(got[0].timestamps, vec![4500, 5000, 6000]);
        assert_eq!(got[0].values, vec![4.5, 5.0, 6.0]);
    }

    #[test]
    fn chunks_stay_in_memory_when_no_head_chunk_file_takes_them() {
        let dir = tempfile::tempdir().unwrap();
        let o = StoreOptions {
            block_range_ms: 1_000_000,
            head_chunk_segment_bytes: 256,
            ..opts()
        };
        let store = Store::open_with(dir.path(), o).unwrap();
        let mut want = Vec::new();
        for k in 0..300 {
            if k == 100 {
                // New head chunk files cannot be created from here on.
                std::fs::remove_dir_all(dir.path().join(head_chunks::DIR)).unwrap();
            }
            store.append(&[sample("m", "a", k * 1000, k as f64 * 1.5)]);
            want.push(k * 1000);
        }
        store.maintain().unwrap();
        let got = store.select(&[], 0, i64::MAX).unwrap();
        assert_eq!(got[0].timestamps, want);
        assert_eq!(got[0].values[299], 448.5);
        // And a cut writes them into a block.
        store.cut_before(1_000_000).unwrap();
        let got = store.select(&[], 0, i64::MAX).unwrap();
        assert_eq!(got[0].timestamps, want);
    }
}
