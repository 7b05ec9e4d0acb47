//! Blocks below the head: the maintenance pass, the cut of the head's oldest range
//! into a block, compaction of blocks into larger ones, and retention.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::runtime::memory::release_free_memory;

use super::block::{Block, BlockOrigin, BlockWriter};
use super::head::{align_down, block_range_of, HeadSeries, SeriesData, StoreState};
use super::head_read::{finish_reads, merge_overlapping, HeadRead};
use super::import_writer::PendingBlock;
use super::symbol::SeriesLabels;
use super::{lock, read, write, StoreError};

impl StoreState {
    pub(super) fn maintain(&self) -> Result<(), StoreError> {
        let _m = lock(&self.maintenance);
        self.load_new_blocks()?;
        // Keeps the pending head chunks small, and retries writes that failed.
        self.head_chunks.retry_pending();
        let range = self.opts.block_range_ms;
        let reference = self.reference_t();
        self.cut_until(|_, end| end.saturating_add(range / 2) <= reference)?;
        while self.compact_once()? {}
        self.apply_retention();
        Ok(())
    }

    /// Oldest sample in the head at or after the head boundary.
    fn head_data_min(&self) -> Option<i64> {
        let all: Vec<Arc<HeadSeries>> =
            read(&self.index).series.iter().flatten().cloned().collect();
        let floor = self.head_min_t.load(Ordering::Acquire);
        all.iter()
            .filter_map(|s| {
                let d = s.lock();
                // Chunks below the floor are dropped at the cut; look past them.
                let min = d.min_t()?;
                Some(min.max(floor))
            })
            .min()
    }

    /// Cuts block ranges from the head's oldest while `due(start, end)` holds. Each
    /// cut moves the head's lower bound past the range it wrote, so every pass ends;
    /// a store being dropped stops between cuts.
    pub(super) fn cut_until(&self, due: impl Fn(i64, i64) -> bool) -> Result<(), StoreError> {
        let range = self.opts.block_range_ms;
        let mut last_end = i64::MIN;
        loop {
            if self.stopping() {
                return Ok(());
            }
            let Some(min) = self.head_data_min() else {
                return Ok(());
            };
            // The head holds no sample outside a representable range (appends refuse
            // them), so this only guards against a range that cannot be written.
            let Some((start, end)) = block_range_of(min, range) else {
                return Ok(());
            };
            if !due(start, end) {
                return Ok(());
            }
            if start < last_end {
                tracing::error!(
                    start,
                    end,
                    last_end,
                    "head cut made no progress; cutting stops until the next pass"
                );
                return Ok(());
            }
            self.cut(start, end)?;
            last_end = end;
        }
    }

    fn cut(&self, start: i64, end: i64) -> Result<(), StoreError> {
        let began = std::time::Instant::now();
        // From now on nothing below `end` enters the head, so the block is complete.
        self.min_valid_t.fetch_max(end, Ordering::AcqRel);
        // Wait for in-flight appends that read the old bound.
        drop(lock(&self.wal));
        let mut series: Vec<Arc<HeadSeries>> =
            read(&self.index).series.iter().flatten().cloned().collect();
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        let name = self.fresh_block_name(start, end);
        let fin = self.blocks_dir.join(&name);
        let pending = PendingBlock::new(&self.blocks_dir, &name);
        let mut writer = BlockWriter::create(&pending.tmp)?;
        // Nothing else deletes head chunk files while the maintenance lock is held.
        let snap = self.head_chunks.snapshot();
        // Some series at a time: their closed chunks are read together, and what is
        // decoded at once stays small (a 2 h range is ~23 KB of samples a series).
        for group in series.chunks(256) {
            let reads: Vec<HeadRead> = group
                .iter()
                .map(|s| s.lock().start_read(start, end - 1))
                .collect();
            // On an error the WAL still has these samples (it is truncated only after
            // a cut), so a restart rebuilds the head; until then the cut waits.
            let samples = finish_reads(&self.head_chunks, &snap, reads, start, end - 1)?;
            for (s, (ts, vs)) in group.iter().zip(samples) {
                writer.push(&s.labels(), &ts, &vs)?;
            }
        }
        drop(snap);
        let block = if writer.num_series() > 0 {
            writer.finish(start, end, 0, Vec::new(), BlockOrigin::Head)?;
            pending.install(&fin)?;
            let mut intern = |p: &[(&str, &str)]| self.intern_pairs(p);
            let mut b = Block::open(&fin, &mut intern)?;
            self.share_postings(&mut b);
            Some(Arc::new(b))
        } else {
            None
        };
        // Switch readers over: the block appears and the head boundary moves at once.
        let mut dead = Vec::new();
        {
            let _g = write(&self.head_guard);
            if let Some(b) = &block {
                let mut blocks = write(&self.blocks);
                blocks.push(b.clone());
                blocks.sort_by_key(|b| b.meta.range_start);
            }
            self.head_min_t.fetch_max(end, Ordering::AcqRel);
            for s in &series {
                let mut d = s.lock();
                d.truncate_before(end);
                if d.is_empty() && d.max_t() < end {
                    dead.push(s.clone());
                }
            }
        }
        // Series with nothing left in the head leave the index.
        if !dead.is_empty() {
            let mut idx = write(&self.index);
            let mut ids = Vec::new();
            for s in &dead {
                let d = s.lock();
                if d.is_empty() && d.max_t() < end {
                    s.removed.store(true, Ordering::Relaxed);
                    ids.push(s.id);
                    let h = self.hash_pairs(s.labels.pairs());
                    idx.remove(h, s.id);
                }
            }
            ids.sort_unstable();
            idx.postings.remove(&ids);
        }
        {
            // The head's lists change little once its series exist: packed, they
            // take about a byte an id instead of four plus what they grew by.
            let mut idx = write(&self.index);
            idx.postings.freeze();
            // Likewise the slots, which grew by doubling (a little room stays).
            let slots = idx.series.len();
            idx.series.shrink_to(slots + slots / 16);
        }
        drop(series);
        drop(dead);
        self.head_chunks.delete_before(end);
        self.truncate_wal(end)?;
        self.purge_interner();
        release_free_memory();
        tracing::info!(
            block = %fin.display(), start, end,
            series = block.as_ref().map_or(0, |b| b.meta.num_series),
            samples = block.as_ref().map_or(0, |b| b.meta.num_samples),
            ms = began.elapsed().as_millis() as u64,
            "head cut into a block"
        );
        Ok(())
    }

    fn purge_interner(&self) {
        lock(&self.interner).purge();
    }

    /// Merges the blocks of one complete aligned window; returns whether it did.
    pub(super) fn compact_once(&self) -> Result<bool, StoreError> {
        let range = self.opts.block_range_ms;
        let max = self.opts.max_block_range();
        let head_min = self.head_min_t.load(Ordering::Acquire);
        let blocks: Vec<Arc<Block>> = read(&self.blocks).clone();
        let mut window = range.saturating_mul(3);
        while window <= max {
            let mut groups: BTreeMap<i64, Vec<Arc<Block>>> = BTreeMap::new();
            for b in &blocks {
                let w0 = align_down(b.meta.range_start, window);
                if b.meta.range_end <= w0.saturating_add(window) {
                    groups.entry(w0).or_default().push(b.clone());
                }
            }
            for (w0, group) in groups {
                if group.len() >= 2 && w0.saturating_add(window) <= head_min {
                    self.merge(&group)?;
                    return Ok(true);
                }
            }
            window = window.saturating_mul(3);
        }
        Ok(false)
    }

    fn merge(&self, group: &[Arc<Block>]) -> Result<(), StoreError> {
        let began = std::time::Instant::now();
        let start = group.iter().map(|b| b.meta.range_start).min().unwrap_or(0);
        let end = group.iter().map(|b| b.meta.range_end).max().unwrap_or(0);
        let level = group
            .iter()
            .map(|b| b.meta.level)
            .max()
            .unwrap_or(0)
            .saturating_add(1);
        let origin = if group.iter().any(|b| b.meta.origin == BlockOrigin::Head) {
            BlockOrigin::Head
        } else {
            BlockOrigin::Import
        };
        let name = self.fresh_block_name(start, end);
        let fin = self.blocks_dir.join(&name);
        let pending = PendingBlock::new(&self.blocks_dir, &name);
        let mut writer = BlockWriter::create(&pending.tmp)?;
        // k-way merge in label order, one source batch at a time per block.
        let mut cursors: Vec<BlockCursor> =
            group.iter().map(|b| BlockCursor::new(b.clone())).collect();
        loop {
            let mut min: Option<SeriesLabels> = None;
            for c in cursors.iter_mut() {
                if let Some(l) = c.peek()? {
                    if min.as_ref().is_none_or(|m| l < m) {
                        min = Some(l.clone());
                    }
                }
            }
            let Some(labels) = min else { break };
            let (mut ts, mut vs) = (Vec::new(), Vec::new());
            for c in cursors.iter_mut() {
                if c.peek()? == Some(&labels) {
                    if let Some((t, v)) = c.take() {
                        ts.extend(t);
                        vs.extend(v);
                    }
                }
            }
            merge_overlapping(&mut ts, &mut vs);
            writer.push(&labels.to_labels(), &ts, &vs)?;
        }
        let sources: Vec<String> = group.iter().map(|b| b.name.clone()).collect();
        writer.finish(start, end, level, sources, origin)?;
        pending.install(&fin)?;
        let mut intern = |p: &[(&str, &str)]| self.intern_pairs(p);
        let mut merged = Block::open(&fin, &mut intern)?;
        // Usually the sources' series, whose postings then live on in the new block.
        self.share_postings(&mut merged);
        let merged = Arc::new(merged);
        {
            let mut blocks = write(&self.blocks);
            blocks.retain(|b| !group.iter().any(|g| Arc::ptr_eq(b, g)));
            blocks.push(merged.clone());
            blocks.sort_by_key(|b| b.meta.range_start);
        }
        for b in group {
            b.delete_on_drop.store(true, Ordering::Release);
        }
        release_free_memory();
        tracing::info!(
            block = %fin.display(), sources = group.len(), samples = merged.meta.num_samples,
            bytes = merged.size_bytes(), ms = began.elapsed().as_millis() as u64,
            "blocks compacted"
        );
        Ok(())
    }

    fn apply_retention(&self) {
        let reference = self.reference_t();
        let mut blocks = write(&self.blocks);
        let mut expired = Vec::new();
        if self.opts.retention_ms > 0 {
            let cutoff = reference.saturating_sub(self.opts.retention_ms);
            blocks.retain(|b| {
                let keep = b.meta.maxt >= cutoff;
                if !keep {
                    expired.push(b.clone());
                }
                keep
            });
        }
        if self.opts.retention_bytes > 0 {
            let mut total: u64 = blocks.iter().map(|b| b.size_bytes()).sum();
            while total > self.opts.retention_bytes && !blocks.is_empty() {
                let b = blocks.remove(0);
                total -= b.size_bytes();
                expired.push(b);
            }
        }
        drop(blocks);
        for b in expired {
            tracing::info!(block = %b.dir.display(), "block deleted by retention");
            b.delete_on_drop.store(true, Ordering::Release);
        }
    }
}

impl SeriesData {
    /// Drops everything before `t` (now in a block). Chunks never cross a block
    /// boundary, so what remains of the closed chain starts at `t` or later.
    fn truncate_before(&mut self, t: i64) {
        if self.closed.is_some() {
            if self.closed_max_t < t {
                self.closed = None;
                self.closed_min_t = i64::MAX;
                self.closed_max_t = i64::MIN;
            } else {
                self.closed_min_t = self.closed_min_t.max(t);
            }
        }
        if let Some(r) = self.off_chain.as_mut() {
            r.unwritten.retain(|c| c.last_t >= t);
            r.ooo.retain(|s| s.0 >= t);
            if r.unwritten.is_empty() && r.ooo.is_empty() {
                self.off_chain = None;
            }
        }
        if self
            .open
            .as_ref()
            .is_some_and(|c| c.count() > 0 && c.last_t() < t)
        {
            self.open = None;
        }
    }
}

/// Reads a block's series in order, one record batch at a time (for compaction).
struct BlockCursor {
    block: Arc<Block>,
    next: usize,
    buf: std::collections::VecDeque<(u32, Vec<i64>, Vec<f64>)>,
}

impl BlockCursor {
    fn new(block: Arc<Block>) -> BlockCursor {
        BlockCursor {
            block,
            next: 0,
            buf: Default::default(),
        }
    }

    fn fill(&mut self) -> Result<(), StoreError> {
        while self.buf.is_empty() && self.next < self.block.series.len() {
            // All series of the next batch.
            let batch = self.block.batch_of(self.next);
            let mut ids = Vec::new();
            while self.next < self.block.series.len() && self.block.batch_of(self.next) == batch {
                ids.push(self.next as u32);
                self.next += 1;
            }
            let buf = &mut self.buf;
            self.block
                .read_series(&ids, i64::MIN, i64::MAX, |id, t, v| {
                    buf.push_back((id, t, v))
                })?;
        }
        Ok(())
    }

    fn peek(&mut self) -> Result<Option<&SeriesLabels>, StoreError> {
        self.fill()?;
        Ok(self
            .buf
            .front()
            .and_then(|(id, _, _)| self.block.series.get(*id as usize))
            .map(|s| &s.labels))
    }

    fn take(&mut self) -> Option<(Vec<i64>, Vec<f64>)> {
        self.buf.pop_front().map(|(_, t, v)| (t, v))
    }
}

#[cfg(test)]
mod tests {
    use crate::model::labels::Matcher;
    use crate::store::tests::{opts, sample};
    use crate::store::{AppendSample, Store, StoreOptions};

    #[test]
    fn cut_compact_retain_and_restart_keep_each_sample_once() {
        let dir = tempfile::tempdir().unwrap();
        let o = StoreOptions {
            block_range_ms: 1000,
            retention_ms: 0,
            ..opts()
        };
        let batch = |k: i64| -> Vec<AppendSample> {
            (0..20)
                .map(|i| sample("m", &format!("j{i}"), k * 100, k as f64))
                .collect()
        };
        let assert_every_sample_once = |store: &Store| {
            let got = store
                .select(&[Matcher::equal("job", "j3")], i64::MIN, i64::MAX)
                .unwrap();
            assert_eq!(
                got[0].timestamps,
                (0..100).map(|k| k * 100).collect::<Vec<_>>()
            );
        };
        {
            let store = Store::open_with(dir.path(), o.clone()).unwrap();
            for k in 0..100 {
                store.append(&batch(k));
                if k % 10 == 0 {
                    store.maintain().unwrap();
                    // A light read goes through the series cache: what it kept of
                    // blocks that cuts and compactions replace is never served.
                    let got = store
                        .select(&[Matcher::equal("job", "j3")], i64::MIN, i64::MAX)
                        .unwrap();
                    let want: Vec<i64> = (0..=k).map(|k| k * 100).collect();
                    assert_eq!(got[0].timestamps, want);
                }
            }
            assert!(store.state.series_cache.bytes() > 0);
            store.maintain().unwrap();
            let metas = store.blocks();
            assert!(
                metas.iter().any(|b| b.level > 0),
                "no compaction: {metas:?}"
            );
            assert_every_sample_once(&store);
        }
        // Restart: blocks plus the WAL's remainder, nothing twice.
        let store = Store::open_with(dir.path(), o.clone()).unwrap();
        assert_every_sample_once(&store);
        assert_eq!(store.series_count(), 20);
        // Samples below the cut are out of bounds now.
        let out = store.append(&[sample("m", "j3", 50, 0.0)]);
        assert_eq!(out.out_of_order, 1);
        drop(store);

        // Retention by size keeps only the newest blocks; by time drops old ones.
        let store = Store::open_with(
            dir.path(),
            StoreOptions {
                retention_bytes: 1,
                ..o.clone()
            },
        )
        .unwrap();
        store.maintain().unwrap();
        assert!(store.blocks().is_empty());
        let got = store
            .select(&[Matcher::equal("job", "j3")], i64::MIN, i64::MAX)
            .unwrap();
        assert!(
            got[0].timestamps.iter().all(|&t| t >= 6000),
            "{:?}",
            got[0].timestamps
        );
    }

    fn wall_now_ms() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    }

    #[test]
    fn a_far_future_sample_cannot_make_retention_delete_older_blocks_or_cut_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let hour = 3_600_000;
        let now = wall_now_ms();
        let store = Store::open_with(dir.path(), opts()).unwrap();
        // Three days of history, most of it cut into blocks; the last hours stay in
        // the head.
        let history: Vec<i64> = (0..72).map(|h| now - (72 - h) * hour).collect();
        for &t in &history {
            store.append(&[sample("m", "a", t, 1.0)]);
        }
        store.maintain().unwrap();
        let blocks_before = store.blocks();
        assert!(blocks_before.len() >= 3, "{blocks_before:?}");
        // One sample ten years ahead, from a host with a wrong clock.
        let ten_years = 10 * 365 * 24 * hour;
        store.append(&[sample("m", "wrong_clock", now + ten_years, 1.0)]);
        store.maintain().unwrap();
        // Nothing was deleted: every earlier block's range is still held (the clock
        // moving on may cut or merge more, so the list itself can change) ...
        let after = store.blocks();
        for b in &blocks_before {
            assert!(
                after
                    .iter()
                    .any(|a| a.range_start <= b.range_start && b.range_end <= a.range_end),
                "{b:?} is gone: {after:?}"
            );
        }
        // ... and no cut reached the far-future sample: blocks hold history only.
        assert!(after.iter().all(|b| b.maxt < now), "{after:?}");
        let got = store
            .select(&[Matcher::equal("job", "a")], i64::MIN, i64::MAX)
            .unwrap();
        assert_eq!(got[0].timestamps, history);
        // The head's lower bound stayed where it was: now is still accepted.
        let out = store.append(&[sample("m", "a", now + 1000, 2.0)]);
        assert_eq!(out.appended, 1, "{out:?}");
    }

    #[test]
    fn extreme_timestamps_neither_loop_the_cut_nor_panic_and_the_store_stops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let o = StoreOptions {
                background: true,
                maintenance_interval: std::time::Duration::from_millis(5),
                ..opts()
            };
            let store = Store::open_with(&path, o).unwrap();
            let now = wall_now_ms();
            let mut refused = 0;
            for t in [i64::MIN, i64::MIN + 1, now - 1000, now] {
                refused += store.append(&[sample("m", "low", t, 1.0)]).out_of_bounds;
            }
            for t in [now, i64::MAX - 1, i64::MAX] {
                refused += store.append(&[sample("m", "high", t, 1.0)]).out_of_bounds;
            }
            // No block range holds a time within one range of either end of i64.
            assert_eq!(refused, 4);
            store.maintain().unwrap();
            store.cut_before(i64::MAX).unwrap();
            store.maintain().unwrap();
            let low = store
                .select(&[Matcher::equal("job", "low")], i64::MIN, i64::MAX)
                .unwrap();
            // Dropping the store stops its maintenance thread (as at shutdown).
            drop(store);
            done_tx.send(low[0].timestamps.clone()).unwrap();
        });
        let low = done_rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the store did not finish its cuts and stop within 20 s");
        assert_eq!(low.len(), 2, "{low:?}");
        // And it opens again (the WAL holds nothing that loops the cut).
        let store = Store::open_with(dir.path(), opts()).unwrap();
        store.maintain().unwrap();
    }
}
