//! Reads: selecting series and their samples from the blocks and the head, and the
//! label sets, names and values of the series a query matches.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::model::labels::{Labels, Matcher};
use crate::model::{Points, SelectError, SelectFn, Series, Storage, StorageError};

use super::block::{self, Block};
use super::chunk::CHUNK_SAMPLES;
use super::head::{HeadSeries, SeriesData, StoreState};
use super::head_chunks::{self, ChainRead, ChunkRef, HeadChunkError, HeadChunkFiles, Samples};
use super::symbol::{ByIdentity, SeriesLabels};
use super::{read, Store, StoreError};

impl Store {
    /// The series matching every matcher that have samples in `[mint, maxt]`, with
    /// those samples from blocks and head in time order, sorted by labels: for callers
    /// that want whole series at once (the PromQL [`Storage::select`], checks after an
    /// import). Fails with an error that names the file when a head chunk cannot be
    /// read; a block that cannot be read is logged and left out.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, StoreError> {
        let got = self.select_with(matchers, mint, maxt, |labels, ts, vs| {
            Ok::<_, StoreError>(Some((
                labels.to_labels(),
                (std::mem::take(ts), std::mem::take(vs)),
            )))
        })?;
        Ok(got.into_iter().map(Series::from).collect())
    }

    /// `f` of each matching series' label set and samples in `[mint, maxt]` (blocks
    /// and head in time order, staleness markers included), in label order; series
    /// without samples there, and those `f` gives `None` for, are left out. The
    /// samples are assembled series by series in buffers that are reused (`f` may
    /// change them or take them), so a query over many series never holds all their
    /// samples at once; series are spread over the cores. The first error of `f`
    /// stops the selection; a head chunk that cannot be read fails it; a block that
    /// cannot be read is logged and its samples are left out. It exists for queries
    /// that reduce each series as it is read (the PromQL engine's
    /// [`Storage::select_with`]), which [`select`](Self::select) would make hold
    /// every selected sample at once.
    pub fn select_with<R, E, F>(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        f: F,
    ) -> Result<Vec<R>, E>
    where
        R: Send,
        E: Send + From<StoreError>,
        F: Fn(&SeriesLabels, &mut Vec<i64>, &mut Vec<f64>) -> Result<Option<R>, E> + Sync,
    {
        let state = &*self.state;
        if mint > maxt {
            return Ok(Vec::new());
        }
        // What the head holds is noted under the head guard, with a consistent view of
        // which blocks hold what is below the head; files are read after it is released.
        let (blocks, reads, snap, head_min) = {
            let _g = read(&state.head_guard);
            let blocks: Vec<Arc<Block>> = read(&state.blocks).clone();
            let head_min = state.head_min_t.load(Ordering::Acquire).max(mint);
            let mut reads = Vec::new();
            if head_min <= maxt {
                for s in state.head_matching(matchers) {
                    let r = s.lock().start_read(head_min, maxt);
                    if !r.is_empty() {
                        reads.push((s, r));
                    }
                }
            }
            // After the reads are noted: an append (which takes no head guard) may
            // close a chunk into a file it has just started, and a chunk a read names
            // is always in a file of a later snapshot. No cut can delete one meanwhile:
            // cuts take the head guard.
            let snap = state.head_chunks.snapshot();
            (blocks, reads, snap, head_min)
        };
        let (series, reads): (Vec<Arc<HeadSeries>>, Vec<HeadRead>) = reads.into_iter().unzip();
        let mut plan = SelectPlan::default();
        for (bi, b) in blocks.iter().enumerate() {
            let ids = b.matching(matchers, mint, maxt);
            plan.work +=
                (b.meta.num_samples as usize).saturating_mul(ids.len()) / b.series.len().max(1);
            plan.add_block(bi as u32, b, &ids);
        }
        plan.add_head(&series, &reads);
        // Contiguous runs of series, a few per core: each run keeps one decompressed
        // batch per block, which serves all of that block's series in the run, and
        // reads its series' closed head chunks together.
        // A run of fewer series than RUN_MIN_SERIES would decompress its blocks'
        // batches again for too few series (a light panel query is one run).
        const RUN_MIN_SERIES: usize = 512;
        // A selection that is one run is light: its block series go through the cache.
        let light = plan.series.len() <= RUN_MIN_SERIES;
        let per_run = plan
            .series
            .len()
            .div_ceil(crate::par::cores() * 8)
            .max(RUN_MIN_SERIES);
        let mut reads: Vec<Option<HeadRead>> = reads.into_iter().map(Some).collect();
        let items: Vec<(std::ops::Range<usize>, Vec<HeadRead>)> = (0..plan.series.len())
            .step_by(per_run)
            .map(|s| {
                let range = s..(s + per_run).min(plan.series.len());
                let run_reads = plan.series[range.clone()]
                    .iter()
                    .filter_map(|sel| sel.head.and_then(|h| reads.get_mut(h as usize)?.take()))
                    .collect();
                (range, run_reads)
            })
            .collect();
        let plan = &plan;
        let failed: Vec<std::sync::atomic::AtomicBool> =
            blocks.iter().map(|_| Default::default()).collect();
        let done = crate::par::map(items, plan.work, |(range, run_reads)| {
            let head = finish_reads(&state.head_chunks, &snap, run_reads, head_min, maxt)
                .map_err(|e| E::from(e.into()))?;
            let mut head = head.into_iter();
            let mut batches: Vec<block::SampleBatch> =
                blocks.iter().map(|_| Default::default()).collect();
            let (mut ts, mut vs): (Vec<i64>, Vec<f64>) = (Vec::new(), Vec::new());
            let mut out = Vec::new();
            for sel in &plan.series[range] {
                ts.clear();
                vs.clear();
                // Whether a later source starts at or before the end of an earlier one
                // (an imported block overlapping others): then the samples need sorting.
                let mut overlap = false;
                let mut note_overlap = |ts: &[i64], start: usize| {
                    if let (Some(first), Some(last)) = (ts.get(start), start.checked_sub(1)) {
                        overlap |= *first <= ts[last];
                    }
                };
                for &(bi, id) in plan.parts(sel) {
                    let b = bi as usize;
                    if failed[b].load(Ordering::Relaxed) {
                        continue;
                    }
                    let start = ts.len();
                    let (block, batch) = (&blocks[b], &mut batches[b]);
                    let read = if light {
                        let cached = state.series_cache.series(block, id, batch);
                        cached.map(|d| d.append(mint, maxt, &mut ts, &mut vs))
                    } else {
                        block.append_series(id, mint, maxt, batch, &mut ts, &mut vs)
                    };
                    if let Err(e) = read {
                        ts.truncate(start);
                        vs.truncate(start);
                        if !failed[b].swap(true, Ordering::Relaxed) {
                            tracing::error!(block = %blocks[b].dir.display(), error = %e, "cannot read block; its data is left out of the result");
                        }
                        continue;
                    }
                    note_overlap(&ts, start);
                }
                if let Some((hts, hvs)) = sel.head.and_then(|_| head.next()) {
                    let start = ts.len();
                    ts.extend_from_slice(&hts);
                    vs.extend_from_slice(&hvs);
                    note_overlap(&ts, start);
                }
                if ts.is_empty() {
                    continue;
                }
                if overlap {
                    merge_overlapping(&mut ts, &mut vs);
                }
                if let Some(r) = f(sel.labels, &mut ts, &mut vs)? {
                    out.push(r);
                }
            }
            Ok::<_, E>(out)
        })?;
        Ok(done.into_iter().flatten().collect())
    }

    /// Label sets of the matching series with samples in the range, without reading
    /// the samples: for the series and label APIs, which list series, not data.
    pub fn series(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Labels> {
        let state = &*self.state;
        let mut out: BTreeSet<Labels> = BTreeSet::new();
        let blocks: Vec<Arc<Block>> = {
            let _g = read(&state.head_guard);
            let head_min = state.head_min_t.load(Ordering::Acquire).max(mint);
            for s in state.head_matching(matchers) {
                let d = s.lock();
                let in_range = d.max_t() >= head_min && d.min_t().is_some_and(|t| t <= maxt);
                drop(d);
                if in_range {
                    out.insert(s.labels());
                }
            }
            read(&state.blocks).clone()
        };
        for b in &blocks {
            for id in b.matching(matchers, mint, maxt) {
                if let Some(s) = b.series.get(id as usize) {
                    out.insert(s.labels.to_labels());
                }
            }
        }
        out.into_iter().collect()
    }

    pub fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<String> {
        let names: BTreeSet<String> = if matchers.is_empty() {
            let state = &*self.state;
            let mut names: BTreeSet<String> = read(&state.index)
                .postings
                .label_names()
                .map(|n| n.to_string())
                .collect();
            for b in read(&state.blocks).iter() {
                if b.meta.maxt >= mint && b.meta.mint <= maxt {
                    names.extend(b.postings.label_names().map(|n| n.to_string()));
                }
            }
            names
        } else {
            self.series(matchers, mint, maxt)
                .iter()
                .flat_map(|l| l.iter().map(|l| l.name.to_string()).collect::<Vec<_>>())
                .collect()
        };
        names.into_iter().collect()
    }

    pub fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Vec<String> {
        let values: BTreeSet<String> = if matchers.is_empty() {
            let state = &*self.state;
            let mut values: BTreeSet<String> = read(&state.index)
                .postings
                .values(name)
                .map(|(v, _)| v.to_string())
                .collect();
            for b in read(&state.blocks).iter() {
                if b.meta.maxt >= mint && b.meta.mint <= maxt {
                    values.extend(b.postings.values(name).map(|(v, _)| v.to_string()));
                }
            }
            values
        } else {
            self.series(matchers, mint, maxt)
                .iter()
                .filter_map(|l| l.get(name).map(str::to_string))
                .collect()
        };
        values.into_iter().collect()
    }
}

impl Storage for Store {
    fn select(
        &self,
        matchers: &[Matcher],
        mint_ms: i64,
        maxt_ms: i64,
    ) -> Result<Vec<Series>, StorageError> {
        Store::select(self, matchers, mint_ms, maxt_ms).map_err(|e| StorageError(e.to_string()))
    }

    fn select_with(
        &self,
        matchers: &[Matcher],
        mint_ms: i64,
        maxt_ms: i64,
        f: &SelectFn<'_>,
    ) -> Result<Vec<(Labels, Points)>, SelectError> {
        Store::select_with(self, matchers, mint_ms, maxt_ms, |labels, ts, vs| {
            f(labels, ts, vs)
        })
    }
}

impl StoreState {
    fn head_matching(&self, matchers: &[Matcher]) -> Vec<Arc<HeadSeries>> {
        let idx = read(&self.index);
        idx.postings
            .select(matchers)
            .into_iter()
            .filter_map(|id| idx.series.get(id as usize).and_then(|s| s.clone()))
            .collect()
    }
}

/// What a read copies under the series lock; the closed chunks it names are read
/// from their files after the lock is released ([`HeadRead::finish`]).
#[derive(Default)]
pub(super) struct HeadRead {
    closed: Option<ChunkRef>,
    /// Samples of the open chunk, newer than every closed chunk.
    ts: Vec<i64>,
    vs: Vec<f64>,
    /// Out-of-order samples and unwritten chunks' samples, merged in by time.
    extra: Vec<(i64, f64)>,
}

impl HeadRead {
    fn is_empty(&self) -> bool {
        self.closed.is_none() && self.ts.is_empty() && self.extra.is_empty()
    }

    /// All samples in time order, given those of the closed chunks.
    fn finish(self, closed: Samples) -> Samples {
        let HeadRead {
            closed: _,
            ts: open_ts,
            vs: open_vs,
            mut extra,
        } = self;
        let (mut ts, mut vs) = if closed.0.is_empty() {
            (open_ts, open_vs)
        } else {
            let (mut ts, mut vs) = closed;
            ts.extend_from_slice(&open_ts);
            vs.extend_from_slice(&open_vs);
            (ts, vs)
        };
        if !extra.is_empty() {
            extra.extend(ts.iter().copied().zip(vs.iter().copied()));
            extra.sort_by_key(|s| s.0);
            ts.clear();
            vs.clear();
            for (t, v) in extra {
                ts.push(t);
                vs.push(v);
            }
        }
        (ts, vs)
    }
}

/// Finishes many head reads of `[mint, maxt]`, reading their closed chunks together
/// (see [`HeadChunkFiles::read_chains`]); no lock is held.
pub(super) fn finish_reads(
    files: &HeadChunkFiles,
    snap: &head_chunks::Snapshot,
    reads: Vec<HeadRead>,
    mint: i64,
    maxt: i64,
) -> Result<Vec<Samples>, HeadChunkError> {
    let reqs: Vec<ChainRead> = reads
        .iter()
        .filter_map(|r| {
            r.closed.map(|newest| ChainRead {
                newest,
                mint,
                maxt,
                room_after: r.ts.len(),
            })
        })
        .collect();
    let mut closed = files.read_chains(snap, &reqs)?.into_iter();
    Ok(reads
        .into_iter()
        .map(|r| {
            let c = match r.closed {
                Some(_) => closed.next().unwrap_or_default(),
                None => Default::default(),
            };
            r.finish(c)
        })
        .collect())
}

impl SeriesData {
    /// Copies what is in memory of `[mint, maxt]` and names the closed chunks to read.
    pub(super) fn start_read(&self, mint: i64, maxt: i64) -> HeadRead {
        let mut r = HeadRead::default();
        if self.closed_max_t >= mint && self.closed_min_t <= maxt {
            r.closed = self.closed;
        }
        let (mut ts, mut vs) = (Vec::new(), Vec::new());
        for c in self.unwritten() {
            if c.last_t >= mint && c.first_t <= maxt {
                c.decode_range(mint, maxt, &mut ts, &mut vs);
            }
        }
        r.extra.extend(ts.into_iter().zip(vs));
        if let Some(c) = &self.open {
            if c.count() > 0 && c.last_t() >= mint && c.first_t() <= maxt {
                c.decode_range(mint, maxt, &mut r.ts, &mut r.vs);
            }
        }
        let ooo = self.ooo();
        let lo = ooo.partition_point(|s| s.0 < mint);
        let hi = ooo.partition_point(|s| s.0 <= maxt);
        r.extra.extend_from_slice(&ooo[lo..hi]);
        r
    }
}

/// Where each selected series' samples are, in label order: its parts in the blocks
/// (in block time order) and in the head. A series is found again across sources by
/// its label set: the interner gives each distinct label set one allocation, which
/// the head and every block share, so the pointer identifies the series.
#[derive(Default)]
struct SelectPlan<'a> {
    series: Vec<SelectedSeries<'a>>,
    /// Block parts, each series' in a list linked through `next`.
    parts: Vec<PartLink>,
    /// Samples the blocks' parts hold, roughly.
    work: usize,
}

struct SelectedSeries<'a> {
    labels: &'a SeriesLabels,
    /// First and last of its block parts in [`SelectPlan::parts`].
    first: u32,
    last: u32,
    /// Its samples in the head, an index into the head's reads.
    head: Option<u32>,
}

#[derive(Clone, Copy)]
struct PartLink {
    /// Block index and series ordinal in the block.
    part: (u32, u32),
    next: u32,
}

const NO_PART: u32 = u32::MAX;

impl<'a> SelectPlan<'a> {
    /// Merges a block's matching series (in label order, as a block keeps them) into
    /// the series so far: one walk comparing label-set pointers, and labels only
    /// where the two lists differ.
    fn add_block(&mut self, bi: u32, block: &'a Block, ids: &[u32]) {
        let old = std::mem::take(&mut self.series);
        let mut merged = Vec::with_capacity(old.len().max(ids.len()));
        let mut old = old.into_iter().peekable();
        let mut new = ids
            .iter()
            .filter_map(|&id| block.series.get(id as usize).map(|s| (&s.labels, id)))
            .peekable();
        loop {
            let order = match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(o), Some(n)) if ByIdentity(o.labels) == ByIdentity(n.0) => {
                    std::cmp::Ordering::Equal
                }
                (Some(o), Some(n)) => o.labels.cmp(n.0),
            };
            match order {
                std::cmp::Ordering::Less => merged.extend(old.next()),
                std::cmp::Ordering::Greater => {
                    if let Some((labels, id)) = new.next() {
                        let p = self.push_part(NO_PART, (bi, id));
                        merged.push(SelectedSeries {
                            labels,
                            first: p,
                            last: p,
                            head: None,
                        });
                    }
                }
                std::cmp::Ordering::Equal => {
                    if let (Some(mut o), Some((_, id))) = (old.next(), new.next()) {
                        o.last = self.push_part(o.last, (bi, id));
                        merged.push(o);
                    }
                }
            }
        }
        self.series = merged;
    }

    fn push_part(&mut self, after: u32, part: (u32, u32)) -> u32 {
        let p = self.parts.len() as u32;
        self.parts.push(PartLink {
            part,
            next: NO_PART,
        });
        if let Some(prev) = self.parts.get_mut(after as usize) {
            prev.next = p;
        }
        p
    }

    /// Adds the head's series (in no particular order), found by hash.
    fn add_head(&mut self, series: &'a [Arc<HeadSeries>], reads: &[HeadRead]) {
        self.work += reads
            .iter()
            .map(|r| r.ts.len() + r.closed.map_or(0, |_| CHUNK_SAMPLES as usize))
            .sum::<usize>();
        if series.is_empty() {
            return;
        }
        let mut index: HashMap<ByIdentity<'a>, usize, foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(self.series.len(), Default::default());
        for (i, s) in self.series.iter().enumerate() {
            index.insert(ByIdentity(s.labels), i);
        }
        let before = self.series.len();
        for (h, s) in series.iter().enumerate() {
            match index.get(&ByIdentity(&s.labels)) {
                Some(&i) => self.series[i].head = Some(h as u32),
                None => self.series.push(SelectedSeries {
                    labels: &s.labels,
                    first: NO_PART,
                    last: NO_PART,
                    head: Some(h as u32),
                }),
            }
        }
        if self.series.len() > before {
            self.series.sort_by(|a, b| a.labels.cmp(b.labels));
        }
    }

    /// A series' block parts in block time order.
    fn parts(&self, s: &SelectedSeries) -> impl Iterator<Item = &(u32, u32)> + '_ {
        let mut p = s.first;
        std::iter::from_fn(move || {
            let link = self.parts.get(p as usize)?;
            p = link.next;
            Some(&link.part)
        })
    }
}

/// One series' samples from sources that may overlap in time (imported blocks, the
/// head), concatenated source by source: sorted by time, keeping the first source's
/// sample where two have the same timestamp. Sources that do not overlap, the usual
/// case, cost one pass.
pub(super) fn merge_overlapping(ts: &mut Vec<i64>, vs: &mut Vec<f64>) {
    if ts.windows(2).all(|w| w[0] < w[1]) {
        return;
    }
    let mut order: Vec<usize> = (0..ts.len()).collect();
    order.sort_by_key(|&i| ts[i]);
    order.dedup_by_key(|i| ts[*i]);
    *vs = order.iter().map(|&i| vs[i]).collect();
    *ts = order.iter().map(|&i| ts[i]).collect();
}

#[cfg(test)]
mod tests {
    use crate::model::labels::{Labels, Matcher};
    use crate::model::Storage;
    use crate::store::head_chunks;
    use crate::store::tests::{opts, sample, series_of};
    use crate::store::{write_imported_block, AppendSample, Store, StoreOptions};

    #[test]
    fn closed_chunks_read_back_from_files_and_leave_with_the_cut() {
        let dir = tempfile::tempdir().unwrap();
        let o = StoreOptions {
            block_range_ms: 100_000,
            out_of_order_window_ms: 50_000,
            head_chunk_segment_bytes: 4 << 10,
            ..opts()
        };
        let chunk_dir = dir.path().join(head_chunks::DIR);
        let files = || std::fs::read_dir(&chunk_dir).unwrap().count();
        let store = Store::open_with(dir.path(), o.clone()).unwrap();
        // 1000 samples a series: closed at 120 samples and at each 100 s boundary.
        for k in 0..1000i64 {
            let batch: Vec<AppendSample> = (0..30)
                .map(|i| sample("m", &format!("j{i}"), k * 250 + 1, (k * 7 + i) as f64))
                .collect();
            store.append(&batch);
        }
        // An out-of-order sample between two closed chunks, checked against them.
        let out = store.append(&[
            sample("m", "j3", 200_001, 9.0),
            sample("m", "j3", 200_002, 9.5),
        ]);
        assert_eq!((out.appended, out.duplicates), (1, 1));
        assert!(files() >= 1);
        let want = |lo: i64, hi: i64| -> Vec<i64> {
            let mut t: Vec<i64> = (0..1000i64)
                .map(|k| k * 250 + 1)
                .chain([200_002])
                .filter(|t| (lo..=hi).contains(t))
                .collect();
            t.sort();
            t
        };
        let j3 = [Matcher::equal("job", "j3")];
        for (lo, hi) in [
            (0, 300_000),
            (29_000, 31_000),
            (99_000, 100_400),
            (200_002, 200_002),
        ] {
            let got = store.select(&j3, lo, hi).unwrap();
            assert_eq!(got[0].timestamps, want(lo, hi), "[{lo}, {hi}]");
        }
        let got = store.select(&j3, 0, 300_000).unwrap();
        assert_eq!(got[0].values[1], 10.0);
        // Written out and read from the file, too.
        store.maintain().unwrap();
        assert_eq!(
            store.select(&j3, 0, 300_000).unwrap()[0].timestamps,
            want(0, 300_000)
        );
        // A cut moves the oldest range into a block and deletes the files that
        // held only it; every sample is still there once.
        store.cut_before(200_000).unwrap();
        let before = store.state.head_chunks.size_bytes();
        store.append(
            &(0..30)
                .map(|i| sample("m", &format!("j{i}"), 400_000, 1.0))
                .collect::<Vec<_>>(),
        );
        store.cut_before(400_000).unwrap();
        assert!(store.state.head_chunks.size_bytes() < before);
        let after_cut: Vec<i64> = want(0, 300_000).into_iter().chain([400_000]).collect();
        assert_eq!(
            store.select(&j3, 0, 500_000).unwrap()[0].timestamps,
            after_cut
        );
        drop(store);
        // At open the files are rebuilt from the WAL.
        let store = Store::open_with(dir.path(), o).unwrap();
        assert_eq!(
            store.select(&j3, 0, 500_000).unwrap()[0].timestamps,
            after_cut
        );
    }

    #[test]
    fn a_damaged_head_chunk_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), opts()).unwrap();
        for k in 0..500 {
            store.append(&[sample("m", "a", k * 1000, k as f64)]);
        }
        store.maintain().unwrap();
        let file = dir.path().join(head_chunks::DIR).join("00000001");
        let len = std::fs::metadata(&file).unwrap().len();
        assert!(len > 0);
        std::fs::write(&file, vec![0xa5; len as usize]).unwrap();
        let err = store.select(&[], 0, 1_000_000).unwrap_err().to_string();
        assert!(err.contains(&file.display().to_string()), "{err}");
        // Samples of the open chunk alone need no file.
        let got = store.select(&[], 490_000, 1_000_000).unwrap();
        assert_eq!(got[0].timestamps.len(), 10);
        let via_trait = Storage::select(&store, &[], 0, 1_000_000).unwrap_err();
        assert!(via_trait.to_string().contains("00000001"), "{via_trait}");
    }

    /// A block large enough that its batches are read on every core: the series come
    /// back whole, sorted by labels, each as it reads alone.
    #[test]
    fn large_block_reads_spread_over_cores_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<(Labels, Vec<i64>, Vec<f64>)> = (0..3000)
            .map(|i| {
                let ts: Vec<i64> = (0..100).map(|k| k * 10 + i % 7).collect();
                let vs = ts.iter().map(|&t| (t * i) as f64).collect();
                let job = format!("j{i:04}");
                (
                    Labels::from_pairs([("__name__", "m"), ("job", &job)]),
                    ts,
                    vs,
                )
            })
            .collect();
        write_imported_block(dir.path(), 0, 1000, data.clone()).unwrap();
        let store = Store::open_with(dir.path(), opts()).unwrap();
        let all = store
            .select(&[Matcher::equal("__name__", "m")], 0, 999)
            .unwrap();
        assert_eq!(all.len(), 3000);
        for (s, (labels, ts, vs)) in all.iter().zip(&data) {
            assert_eq!((&s.labels, &s.timestamps, &s.values), (labels, ts, vs));
        }
        let part = store
            .select(&[Matcher::equal("__name__", "m")], 500, 600)
            .unwrap();
        assert!(part
            .iter()
            .all(|s| s.timestamps.len() == 10 || s.timestamps.len() == 11));
        // A series only in the head, and one only in a later block, still come back
        // in label order.
        store.append(&[sample("m", "a", 5_000, 1.0)]);
        write_imported_block(
            dir.path(),
            1000,
            2000,
            vec![series_of("j1234x", &[1500], 1.0)],
        )
        .unwrap();
        store.maintain().unwrap();
        let all = store
            .select(&[Matcher::equal("__name__", "m")], 0, 10_000)
            .unwrap();
        assert_eq!(all.len(), 3002);
        assert!(all.windows(2).all(|w| w[0].labels < w[1].labels));
        assert_eq!(all[0].labels.get("job"), Some("a"));
    }

    #[test]
    fn series_in_blocks_and_head_come_back_whole_from_every_run() {
        let dir = tempfile::tempdir().unwrap();
        let o = StoreOptions {
            block_range_ms: 1000,
            ..opts()
        };
        let store = Store::open_with(dir.path(), o).unwrap();
        // 1500 series × 400 samples: enough work for the selection to run on every
        // core; blocks are cut below the head, which keeps closed chunks too.
        let jobs: Vec<String> = (0..1500).map(|i| format!("j{i:04}")).collect();
        for k in 0..400i64 {
            let batch: Vec<AppendSample> = jobs
                .iter()
                .enumerate()
                .map(|(i, job)| sample("m", job, k * 10, (k * i as i64) as f64))
                .collect();
            store.append(&batch);
            // Two cuts, too few for a compaction: a series has parts in two blocks.
            if k == 150 || k == 260 {
                store.maintain().unwrap();
            }
        }
        assert_eq!(store.blocks().len(), 2, "{:?}", store.blocks());
        for (mint, maxt) in [(0, 4000), (995, 3333)] {
            let all = store
                .select(&[Matcher::equal("__name__", "m")], mint, maxt)
                .unwrap();
            assert_eq!(all.len(), jobs.len());
            for (i, s) in all.iter().enumerate() {
                assert_eq!(s.labels.get("job"), Some(jobs[i].as_str()));
                let want: Vec<i64> = (0..400i64)
                    .map(|k| k * 10)
                    .filter(|t| (mint..=maxt).contains(t))
                    .collect();
                assert_eq!(s.timestamps, want, "{}", jobs[i]);
                let vals: Vec<f64> = want.iter().map(|t| (t / 10 * i as i64) as f64).collect();
                assert_eq!(s.values, vals, "{}", jobs[i]);
            }
        }
    }
}
