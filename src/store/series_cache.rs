//! Block series that light queries read, kept decoded between queries.
//!
//! A sample batch is the unit a block read decompresses: up to
//! [`BATCH_ROWS`](super::block::BATCH_ROWS) samples of up to 256 series. A light
//! panel reads a few series, each in a batch of its own, so each refresh of a
//! dashboard decompressed some hundred times the samples it shows, in every block
//! its range covers. Blocks never change, so a series' decoded samples stay true for
//! the block's life; only light selections use the cache, so that a heavy query
//! neither pays for it nor flushes it.
//!
//! Two generations bound the memory without bookkeeping per read: entries go into
//! the newer one; when it holds half the budget it becomes the older one and the
//! older is dropped; a hit in the older one moves the entry to the newer. An entry
//! is keyed by its block's [`uid`](super::block::Block::uid), which no other block of
//! the process ever takes: a block that compaction replaced is never served, and its
//! entries age out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::block::{Block, BlockError, SampleBatch};

/// Bytes of decoded samples the cache holds at most.
pub const SERIES_CACHE_BYTES: usize = 8 << 20;

/// One block series, all its samples.
pub struct Decoded {
    ts: Box<[i64]>,
    vs: Box<[f64]>,
}

impl Decoded {
    /// Appends the samples in `[mint, maxt]` to `ts` and `vs`.
    pub fn append(&self, mint: i64, maxt: i64, ts: &mut Vec<i64>, vs: &mut Vec<f64>) {
        let a = self.ts.partition_point(|&t| t < mint);
        let b = self.ts.partition_point(|&t| t <= maxt).max(a);
        ts.extend_from_slice(&self.ts[a..b]);
        vs.extend_from_slice(&self.vs[a..b]);
    }

    fn bytes(&self) -> usize {
        // The samples, the two allocations' headers, the map entry.
        self.ts.len() * 16 + 64
    }
}

#[derive(Default)]
struct Generations {
    newer: HashMap<(u64, u32), Arc<Decoded>>,
    older: HashMap<(u64, u32), Arc<Decoded>>,
    newer_bytes: usize,
}

impl Generations {
    fn get(&mut self, key: (u64, u32), budget: usize) -> Option<Arc<Decoded>> {
        if let Some(d) = self.newer.get(&key) {
            return Some(d.clone());
        }
        let d = self.older.remove(&key)?;
        self.insert(key, d.clone(), budget);
        Some(d)
    }

    fn insert(&mut self, key: (u64, u32), d: Arc<Decoded>, budget: usize) {
        let bytes = d.bytes();
        if bytes > budget / 2 {
            return;
        }
        if self.newer_bytes + bytes > budget / 2 {
            self.older = std::mem::take(&mut self.newer);
            self.newer_bytes = 0;
        }
        self.newer_bytes += bytes;
        self.newer.insert(key, d);
    }
}

pub struct SeriesCache {
    budget: usize,
    generations: Mutex<Generations>,
}

impl SeriesCache {
    pub fn new(budget: usize) -> SeriesCache {
        SeriesCache {
            budget,
            generations: Mutex::default(),
        }
    }

    /// Series `id` of `block`, all its samples: from the cache, or decoded (through
    /// `batch`) and kept.
    pub fn series(
        &self,
        block: &Block,
        id: u32,
        batch: &mut SampleBatch,
    ) -> Result<Arc<Decoded>, BlockError> {
        let key = (block.uid, id);
        if let Some(d) = self.lock().get(key, self.budget) {
            return Ok(d);
        }
        let (mut ts, mut vs) = (Vec::new(), Vec::new());
        block.append_series(id, i64::MIN, i64::MAX, batch, &mut ts, &mut vs)?;
        let d = Arc::new(Decoded {
            ts: ts.into_boxed_slice(),
            vs: vs.into_boxed_slice(),
        });
        self.lock().insert(key, d.clone(), self.budget);
        Ok(d)
    }

    /// Bytes held, as counted against the budget.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        let g = self.lock();
        g.newer_bytes + g.older.values().map(|d| d.bytes()).sum::<usize>()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.generations.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::Labels;
    use crate::store::block::{BlockOrigin, BlockWriter};
    use crate::store::symbol::Interner;

    /// Writes a block of `n` series of 100 samples, values offset by `base`, and opens it.
    fn block(dir: &std::path::Path, n: usize, base: f64) -> Block {
        let mut w = BlockWriter::create(dir).unwrap();
        for i in 0..n {
            let labels = Labels::from_pairs([("__name__", "m"), ("i", &format!("{i:03}"))]);
            let ts: Vec<i64> = (0..100).map(|k| k * 1000).collect();
            let vs: Vec<f64> = (0..100).map(|k| base + (k * i) as f64).collect();
            w.push(&labels, &ts, &vs).unwrap();
        }
        w.finish(0, 100_000, 0, vec![], BlockOrigin::Head).unwrap();
        let mut interner = Interner::default();
        Block::open(dir, &mut |p| interner.series_labels_from_pairs(p)).unwrap()
    }

    fn read(cache: &SeriesCache, b: &Block, id: u32, mint: i64, maxt: i64) -> (Vec<i64>, Vec<f64>) {
        let (mut ts, mut vs) = (vec![-1], vec![-1.0]);
        let mut batch = SampleBatch::default();
        let d = cache.series(b, id, &mut batch).unwrap();
        d.append(mint, maxt, &mut ts, &mut vs);
        // Appended after what the caller had.
        assert_eq!((ts[0], vs[0]), (-1, -1.0));
        (ts[1..].to_vec(), vs[1..].to_vec())
    }

    #[test]
    fn cached_reads_are_the_block_s_and_stay_in_budget() {
        let dir = tempfile::tempdir().unwrap();
        let b = block(&dir.path().join("b"), 40, 0.5);
        // Six entries of 100 samples a generation.
        let budget = 2 * 6 * (100 * 16 + 64);
        let cache = SeriesCache::new(budget);
        for round in 0..3 {
            for id in 0..40u32 {
                for (mint, maxt) in [
                    (i64::MIN, i64::MAX),
                    (5_500, 20_000),
                    (99_000, 200_000),
                    (200_000, 300_000),
                    (7_000, 7_000),
                ] {
                    let mut want = (Vec::new(), Vec::new());
                    b.append_series(
                        id,
                        mint,
                        maxt,
                        &mut SampleBatch::default(),
                        &mut want.0,
                        &mut want.1,
                    )
                    .unwrap();
                    assert_eq!(
                        read(&cache, &b, id, mint, maxt),
                        want,
                        "round {round}, series {id}, {mint}..{maxt}"
                    );
                    assert!(cache.bytes() <= budget, "{} bytes", cache.bytes());
                }
            }
        }
        assert!(cache.bytes() > budget / 2);
    }

    #[test]
    fn a_block_written_again_under_the_same_name_is_read_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b");
        let cache = SeriesCache::new(SERIES_CACHE_BYTES);
        let first = block(&path, 3, 0.0);
        assert_eq!(read(&cache, &first, 1, 0, 2000).1, [0.0, 1.0, 2.0]);
        drop(first);
        std::fs::remove_dir_all(&path).unwrap();
        // Same directory, same series ordinals, other samples (as when compaction
        // replaces a block by one of the same name).
        let second = block(&path, 3, 10.0);
        assert_eq!(read(&cache, &second, 1, 0, 2000).1, [10.0, 11.0, 12.0]);
    }
}
