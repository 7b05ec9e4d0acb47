//! The head: the series appended recently, their samples in memory and in head
//! chunk files, the index that finds them, and the state the whole store shares.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use crate::model::labels::Labels;

use super::block::Block;
use super::chunk::{FrozenChunk, OpenChunk};
use super::head_chunks::{ChunkRef, HeadChunkFiles};
use super::index::Postings;
use super::series_cache::SeriesCache;
use super::symbol::{Interner, SeriesLabels};
use super::wal::WalWriter;
use super::{lock, StoreOptions, MAX_AHEAD_MS};

/// The samples of one series in the head: the open chunk in memory, the closed ones
/// in the head chunk files ([`head_chunks`](super::head_chunks)), out-of-order
/// samples in a small buffer.
pub(super) struct SeriesData {
    pub(super) open: Option<OpenChunk>,
    /// The newest closed chunk; each closed chunk names the one before it.
    pub(super) closed: Option<ChunkRef>,
    /// Oldest and newest timestamps of the closed chunks in the head. After a cut the
    /// oldest is a lower bound (the cut's end): the chain is not read to find it.
    pub(super) closed_min_t: i64,
    pub(super) closed_max_t: i64,
    /// Out-of-order samples and chunks no file took: few series have any.
    pub(super) off_chain: Option<Box<OffChainSamples>>,
    /// At replay of old-format (XOR) WAL segments: the value of the series' last
    /// sample read, and the low 32 bits of its segment's number (only compared for equality with the current
    /// segment's; 2^32 segments apart never happens). 32 bits, so the data packs
    /// into 112 bytes.
    pub(super) wal_seg: u32,
    pub(super) wal_bits: u64,
}

/// The samples of a series kept outside its chain of chunks: accepted out-of-order
/// samples, and closed chunks that no head chunk file took. Few series have any, so
/// a series holds this boxed, and only while it has some.
#[derive(Default)]
pub(super) struct OffChainSamples {
    /// Accepted out-of-order samples, sorted by time.
    pub(super) ooo: Vec<(i64, f64)>,
    /// Closed chunks no head chunk file took (a write error); kept in memory.
    pub(super) unwritten: Vec<FrozenChunk>,
}

impl SeriesData {
    fn new() -> SeriesData {
        SeriesData {
            open: None,
            closed: None,
            closed_min_t: i64::MAX,
            closed_max_t: i64::MIN,
            off_chain: None,
            wal_seg: 0,
            wal_bits: 0,
        }
    }

    pub(super) fn ooo(&self) -> &[(i64, f64)] {
        self.off_chain.as_deref().map_or(&[], |r| r.ooo.as_slice())
    }

    pub(super) fn unwritten(&self) -> &[FrozenChunk] {
        self.off_chain
            .as_deref()
            .map_or(&[], |r| r.unwritten.as_slice())
    }

    /// The newest sample's time (the open chunk's last: out-of-order samples are
    /// older, and a cut that drops the open chunk drops everything before it).
    pub(super) fn max_t(&self) -> i64 {
        self.open
            .as_ref()
            .filter(|c| c.count() > 0)
            .map_or(i64::MIN, |c| c.last_t())
    }

    pub(super) fn min_t(&self) -> Option<i64> {
        let closed = self.closed.map(|_| self.closed_min_t);
        let unwritten = self.unwritten().first().map(|c| c.first_t);
        let open = self
            .open
            .as_ref()
            .filter(|c| c.count() > 0)
            .map(|c| c.first_t());
        let ooo = self.ooo().first().map(|s| s.0);
        [closed, unwritten, open, ooo].into_iter().flatten().min()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.closed.is_none()
            && self.off_chain.is_none()
            && self.open.as_ref().is_none_or(|c| c.count() == 0)
    }
}

pub(super) fn align_down(t: i64, range: i64) -> i64 {
    t.div_euclid(range).saturating_mul(range)
}

/// The aligned block range `[start, end)` holding `t`, or `None` when that range
/// does not fit in i64 milliseconds (within one range of `i64::MIN` or
/// `i64::MAX`): such a sample could never be cut into a block, so the store
/// refuses it as out of bounds.
pub fn block_range_of(t: i64, range: i64) -> Option<(i64, i64)> {
    let start = t.div_euclid(range).checked_mul(range)?;
    Some((start, start.checked_add(range)?))
}

/// Milliseconds since the epoch by the wall clock.
pub(super) fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// 136 bytes, so its `Arc` is a 152-byte request: glibc's 160-byte chunk (the
/// size test below keeps it there).
pub(super) struct HeadSeries {
    pub(super) id: u32,
    /// Set, under the series lock, when the series was dropped from the index;
    /// appenders (holding the lock) see it and re-resolve. Outside the mutex because
    /// inside it the flag would take the data past 112 bytes.
    pub(super) removed: AtomicBool,
    pub(super) labels: SeriesLabels,
    data: Mutex<SeriesData>,
}

impl HeadSeries {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, SeriesData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The series' label set (built from its interned strings).
    pub(super) fn labels(&self) -> Labels {
        self.labels.to_labels()
    }
}

#[derive(Default)]
pub(super) struct HeadIndex {
    pub(super) series: Vec<Option<Arc<HeadSeries>>>,
    /// Ids by the hash of their label set: 5 bytes a slot (a `HashMap<u64, u32>`
    /// took 17, with a side map for colliding hashes). The hashes are not kept: a
    /// lookup compares the labels of each candidate, and growing the table hashes
    /// the series' labels again.
    by_hash: hashbrown::HashTable<u32>,
    /// The store's label-set hasher ([`StoreState::hash_pairs`]), for that rehashing.
    hasher: foldhash::fast::RandomState,
    pub(super) postings: Postings,
    pub(super) live: usize,
}

/// The hash of a label set given as (name, value) pairs, as the head index keys it.
fn hash_label_pairs<'a>(
    hasher: &foldhash::fast::RandomState,
    pairs: impl Iterator<Item = (&'a Arc<str>, &'a Arc<str>)>,
) -> u64 {
    let mut h = hasher.build_hasher();
    for (name, value) in pairs {
        name.as_bytes().hash(&mut h);
        value.as_bytes().hash(&mut h);
    }
    h.finish()
}

impl HeadIndex {
    pub(super) fn new(hasher: foldhash::fast::RandomState) -> HeadIndex {
        HeadIndex {
            hasher,
            ..Default::default()
        }
    }

    fn series(&self, id: u32) -> Option<&Arc<HeadSeries>> {
        self.series.get(id as usize).and_then(|s| s.as_ref())
    }

    pub(super) fn get(&self, hash: u64, labels: &Labels) -> Option<&Arc<HeadSeries>> {
        let id = self.by_hash.find(hash, |&id| {
            self.series(id).is_some_and(|s| s.labels.eq_labels(labels))
        })?;
        self.series(*id)
    }

    /// Inserts a series with a given id (from the WAL) or the next free one.
    pub(super) fn insert(
        &mut self,
        hash: u64,
        labels: SeriesLabels,
        id: Option<u32>,
    ) -> Arc<HeadSeries> {
        let id = id.unwrap_or(self.series.len() as u32);
        if self.series.len() <= id as usize {
            self.series.resize(id as usize + 1, None);
        }
        let s = Arc::new(HeadSeries {
            id,
            removed: AtomicBool::new(false),
            labels,
            data: Mutex::new(SeriesData::new()),
        });
        self.postings.add_pairs(id, s.labels.pairs());
        self.series[id as usize] = Some(s.clone());
        let (series, hasher) = (&self.series, &self.hasher);
        self.by_hash.insert_unique(hash, id, |&other| {
            // Every id in the table has its series (removal takes it out first).
            let slot = series.get(other as usize).and_then(|s| s.as_ref());
            slot.map_or(0, |s| hash_label_pairs(hasher, s.labels.pairs()))
        });
        self.live += 1;
        s
    }

    pub(super) fn remove(&mut self, hash: u64, id: u32) {
        if let Ok(entry) = self.by_hash.find_entry(hash, |&other| other == id) {
            entry.remove();
        }
        if let Some(slot) = self.series.get_mut(id as usize) {
            if slot.take().is_some() {
                self.live -= 1;
            }
        }
    }
}

/// The WAL writer and what the append path counts and reports about it, under
/// one mutex (see [`StoreState::wal`]).
pub(super) struct WalState {
    pub(super) writer: Option<WalWriter>,
    /// Append batches logged so far (the durability test's sync points count these).
    pub(super) append_seq: u64,
}

/// Everything one store holds, shared by the [`Store`](super::Store) handle and its
/// syncer and maintenance threads: the head (index, series, head chunk files), the
/// WAL, the blocks, the time bounds between them and the counters.
pub(super) struct StoreState {
    pub(super) dir: PathBuf,
    pub(super) wal_dir: PathBuf,
    pub(super) blocks_dir: PathBuf,
    pub(super) opts: StoreOptions,
    /// Label-set hashing for the series map (foldhash: the append path hashes every sample).
    pub(super) hasher: foldhash::fast::RandomState,
    pub(super) interner: Mutex<Interner>,
    pub(super) index: RwLock<HeadIndex>,
    /// Closed head chunks, on disk.
    pub(super) head_chunks: HeadChunkFiles,
    pub(super) wal: Mutex<WalState>,
    /// The writer's end, for followers of the WAL (see `wal_tail.rs`).
    pub(super) wal_end: Mutex<super::wal_tail::WalPosition>,
    /// Held for reading while head samples are copied, for writing while a cut moves
    /// the head's lower boundary; never while blocks are read.
    pub(super) head_guard: RwLock<()>,
    pub(super) blocks: RwLock<Vec<Arc<Block>>>,
    /// Block series light queries read, decoded.
    pub(super) series_cache: SeriesCache,
    /// Every block name this process has loaded, written or seen listed as a
    /// compaction source: a new block never takes one, and the scan for blocks
    /// written by `import` skips them (a retired block's files outlive its readers).
    pub(super) block_names: Mutex<HashSet<String>>,
    pub(super) maintenance: Mutex<()>,
    /// Appends below this are out of bounds (the start of the range not yet cut).
    pub(super) min_valid_t: AtomicI64,
    /// Head reads start here (the end of the newest block cut from the head).
    pub(super) head_min_t: AtomicI64,
    pub(super) max_t: AtomicI64,
    pub(super) durable_seq: AtomicU64,
    pub(super) samples_appended: AtomicU64,
    pub(super) out_of_order: AtomicU64,
    pub(super) out_of_bounds: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) replayed_samples: AtomicU64,
    pub(super) replay_ms: AtomicU64,
    /// The WAL's write failure while writes fail.
    pub(super) wal_error: Mutex<Option<String>>,
    pub(super) write_errors: AtomicU64,
    pub(super) wal_lost_records: AtomicU64,
    pub(super) wal_damaged_bytes: AtomicU64,
    /// Segments found at open with their newest sample, until the first truncation.
    pub(super) old_segments: Mutex<Vec<(u64, i64)>>,
    pub(super) stop: Mutex<bool>,
    pub(super) stop_cv: Condvar,
}

impl StoreState {
    pub(super) fn hash(&self, labels: &Labels) -> u64 {
        self.hash_pairs(labels.iter().map(|l| (&l.name, &l.value)))
    }

    pub(super) fn hash_pairs<'a>(
        &self,
        pairs: impl Iterator<Item = (&'a Arc<str>, &'a Arc<str>)>,
    ) -> u64 {
        hash_label_pairs(&self.hasher, pairs)
    }

    pub(super) fn intern(&self, s: &str) -> Arc<str> {
        lock(&self.interner).string(s)
    }

    pub(super) fn intern_pairs(&self, pairs: &[(&str, &str)]) -> SeriesLabels {
        lock(&self.interner).series_labels_from_pairs(pairs)
    }

    pub(super) fn intern_labels(&self, labels: &Labels) -> SeriesLabels {
        lock(&self.interner).series_labels(labels)
    }

    /// The time cuts, retention and the out-of-order window measure from: the
    /// newest sample, but never more than [`MAX_AHEAD_MS`] past the wall clock, so
    /// one sample from a host with a wrong clock (or an imported outlier) cannot
    /// cut the head early or expire every block.
    pub(super) fn reference_t(&self) -> i64 {
        let newest = self.max_t.load(std::sync::atomic::Ordering::Acquire);
        newest.min(wall_clock_ms().saturating_add(MAX_AHEAD_MS))
    }

    pub(super) fn stopping(&self) -> bool {
        *lock(&self.stop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every head series holds one of each: a byte over a glibc chunk boundary
    /// costs 16 a series.
    #[test]
    fn head_series_fit_their_malloc_chunks() {
        assert_eq!(std::mem::size_of::<SeriesData>(), 112);
        // ArcInner: two counts, then the series; ≤ 152 bytes is a 160-byte chunk.
        assert!(16 + std::mem::size_of::<HeadSeries>() <= 152);
    }
}
