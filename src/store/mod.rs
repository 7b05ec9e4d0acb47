//! The time-series store: every scraped sample lives here.
//!
//! # Data model
//! A series is a sorted label set (`__name__` included, see [`Labels`]) with a
//! [`SeriesId`] that is stable for the life of the series in the head. Samples are
//! `(timestamp ms, f64)`; any f64 bit pattern is kept exactly, so Prometheus's
//! staleness marker NaN (`0x7ff0000000000002`) survives the WAL, the head and blocks.
//!
//! # Layout on disk
//! ```text
//! <dir>/arrowmon-store.json   {"format_version": 1}; another version or a damaged file is refused at open
//! <dir>/wal/00000001 …        WAL segments (≤ 64 MiB each), a new one at every open
//! <dir>/wal/checkpoint        series definitions of the head at the last WAL truncation
//! <dir>/blocks/b<start>_<end>/  immutable blocks: meta.json, series.arrow, samples.arrow
//! <dir>/chunks_head/00000001 …  closed head chunks (≤ 128 MiB each); emptied at open
//! <dir>/damaged/              damaged blocks moved aside (never deleted by us)
//! ```
//!
//! # Head (memory)
//! - Label strings are interned store-wide (one `Arc<str>` per distinct string, shared
//!   by the head and every loaded block). A head series holds its label set as thin
//!   pointers to those strings ([`symbol`]): 16 bytes a label, where a [`Labels`]
//!   costs 32; `Labels` are built on demand (select, series, cuts).
//! - Series index: a hash table of ids keyed by their label set's hash, a
//!   `Vec` slot per id, and an inverted index ([`index::Postings`]: label name → value
//!   → sorted ids). `name="x"` is a hash lookup; `=~` walks the values of one label
//!   name, never the series; `!=`/`!~` and matchers that match the empty string
//!   subtract the values they reject, so a series lacking the label matches as
//!   Prometheus says.
//! - Samples per series live in chunks ([`chunk`]) of ≤ 120 samples, closed early at
//!   a block-range boundary (so a cut drops whole chunks). Timestamps are
//!   delta-of-delta varints; values are scaled by a power of ten to integers and
//!   written as delta-of-delta varints, with escapes (a finer scale, XOR'd bits) that
//!   keep any f64 exact: 2–3 bytes a sample on exporter data, where Gorilla's XOR
//!   spends 5–8 on short decimals. Appends are O(1); open and closed chunks share
//!   the encoding, so closing one copies no samples.
//! - Only the open chunk is in memory. A closed chunk is appended to a head chunk
//!   file ([`head_chunks`]): segments in `chunks_head/`, one record per chunk with a
//!   CRC and a link to the series' previous chunk, so a series keeps one 12-byte
//!   reference however many chunks it has. Reads walk the links back with
//!   positional reads (pread, not mmap: page cache is not counted in the process's
//!   RSS), a round of all selected series at a time in file order, so records that
//!   lie together (chunks closed in the same scrape round) come in one read. The
//!   files are not durable on their own: at open they are emptied and the head is
//!   rebuilt from the WAL. A cut deletes the files whose chunks all end before it;
//!   a reader holds a snapshot of the open files, so a file deleted under a query
//!   stays readable to it. An unreadable or damaged chunk is an error naming the
//!   file ([`Store::select`]), never a panic; a write that
//!   fails keeps the chunk in memory.
//!   A sample older than the series' newest goes to a small sorted out-of-order buffer
//!   when it lies inside the tenant's out-of-order window; reads merge it in.
//! - Appends: the scraper resolves a series once ([`Store::series_ref`]) and keeps the
//!   [`SeriesRef`] in its scrape cache, so a sample costs no label hashing or
//!   comparison ([`Store::append`] by label set does the lookups itself: under a read
//!   lock, creation under the write lock). Then, under
//!   the WAL mutex, each sample is checked and appended under its series' own mutex
//!   and encoded into one WAL record per batch. Holding the WAL mutex across a batch
//!   keeps the WAL order equal to the apply order;
//!   reads never take it.
//! - Readers take a head read guard only while copying open chunks and noting the
//!   closed chunks to read; head chunk files and blocks are read from snapshots with
//!   no store lock held.
//! - A large select decodes a block's record batches on every core ([`crate::par`]),
//!   each series straight into its own columns. A block's series are in label order,
//!   so each block's list is merged into the series so far by one walk that compares
//!   label set identities (the same allocation in every block) and compares labels
//!   only where the lists differ; the head's series are matched by a hash of that
//!   identity. A series' parts are joined once, at their final size, on every core.
//! - A light select (at most 512 series, a dashboard panel) takes block series from
//!   a small cache of decoded samples ([`series_cache`]), so a refresh does not
//!   decompress again the batches it read before.
//!
//! # WAL
//! Segment files of frames `len u32 | crc32 u32 | payload` ([`wal`]). Records:
//! series definitions (id, labels) written before any sample of the series, and one
//! samples record per append batch: per sample the id delta, the timestamp delta from
//! the batch's first timestamp (zigzag varints) and the value on its own (a scaled
//! decimal varint, or the raw bits), so no record depends on another. Records are
//! written at 1 MiB and at each sync; a failed write is cut back off the file and
//! tried again later ([`Store::write_error`] says so meanwhile). The background
//! syncer fsyncs every `wal_sync_interval` (default 1 s); [`Store::flush`] and drop
//! sync too. [`Store::durable_appends`] says how many append batches are on disk. On
//! open, the checkpoint then every segment is replayed; a damaged stretch is logged
//! with the file, offset and size, skipped up to the next intact frame, and a
//! damaged tail is cut off. Samples older than the end of the newest block cut from
//! the head are skipped (they are in blocks), so a crash between a cut and the WAL
//! truncation duplicates nothing.
//!
//! # Blocks
//! When the head spans 1.5 block ranges (default 2 h; [`StoreOptions::block_range_ms`]),
//! the oldest aligned range is cut: appends below its end are refused from then on
//! (out of bounds), every series' samples in the range are written, sorted by labels
//! and time, into a block ([`block`]: Arrow IPC, ZSTD, a row a series of varints:
//! delta-of-delta timestamps, values as scaled decimals' deltas or XOR'd bits), the
//! block is renamed into place,
//! the head drops those chunks, series with no data left are removed, and the WAL is
//! truncated (checkpoint of live series, older segments deleted). Each block keeps
//! per-series min/max time (in memory in 255ths of its span, rounded outward) and a
//! `meta.json` with its range, counts and file checksums. Live blocks whose series
//! are the same label sets in the same order share one set of postings. A query
//! only opens blocks whose range overlaps, and only the record batches of the
//! series it selects. At open every block's checksums are verified; a damaged or
//! half-written block is moved to `damaged/` with an error naming the file
//! and the store runs on without it. A block of an unknown format version refuses the
//! store (a newer arrowmon wrote it; guessing would lose data).
//!
//! Backfill ([`write_imported_block`], used by `import`) writes blocks of its own,
//! marked `"origin": "import"`, without opening the store; an open store picks new
//! block directories up at its next maintenance pass. Imported blocks may overlap
//! each other, cut blocks and the head: they do not move the head's lower bound, and
//! reads and compaction merge a series' samples from overlapping sources by time,
//! keeping the first source's sample (blocks in range order, then the head) where
//! two share a timestamp. Block directory names are never reused in a process.
//!
//! Compaction merges the blocks inside an aligned window of 3×, 9×, 27×… the block
//! range (up to `max_block_range_ms`) into one, streaming series in label order; the
//! new block lists its sources, which are deleted at open if a crash left them.
//! Retention deletes whole blocks older than `retention_ms` (relative to the newest
//! sample, but never to a time more than [`MAX_AHEAD_MS`] past the wall clock) and
//! the oldest blocks while blocks exceed `retention_bytes`.
//!
//! # Measurements
//! The block format, the head chunk encoding and the memory layout of a head series
//! were chosen by measurement: the column transform (scaled decimals as delta
//! varints) matters far more than the container, and a block of varints is about
//! half the size of one of Int64 columns. The figures, their history and the
//! commands that reproduce them are in docs/performance.md.

mod block;
mod block_loading;
mod chunk;
mod compact;
pub mod exemplar;
mod head;
mod head_append;
mod head_chunks;
mod head_read;
mod head_wal;
mod import_writer;
mod index;
mod series_cache;
mod symbol;
mod wal;
mod wal_tail;

pub use block::{BlockMeta, BlockOrigin, BLOCK_FORMAT_VERSION};
pub use exemplar::{ExemplarError, ExemplarStats, ExemplarStorage, MAX_EXEMPLARS};
pub use head::block_range_of;
pub use import_writer::write_imported_block;
pub use wal_tail::{TailRead, WalPosition, WalRecord, WalSample, WalTail};

/// The block column transforms, for the format comparison in benches/store.rs.
#[doc(hidden)]
pub mod format {
    pub use super::block::{encode_ts, encode_values};
}

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use crate::model::labels::Labels;
use crate::model::{SelectError, StorageError};

use block::BlockError;
use head::{HeadIndex, HeadSeries, StoreState, WalState};
use head_chunks::{HeadChunkError, HeadChunkFiles};
use series_cache::{SeriesCache, SERIES_CACHE_BYTES};
use symbol::Interner;
use wal::WalWriter;

/// How far past the wall clock a sample may lie: Prometheus's scrape loop refuses
/// samples more than this ahead of the scrape (`maxAheadTime`), and the store never
/// measures cuts or retention from a time further ahead than this.
pub const MAX_AHEAD_MS: i64 = 10 * 60 * 1000;

/// The store layout version this code reads and writes.
pub const STORE_FORMAT_VERSION: u32 = 1;
const VERSION_FILE: &str = "arrowmon-store.json";

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
    #[error(
        "{path}: store format version {found} is not supported (this arrowmon reads version {STORE_FORMAT_VERSION}); \
         use the arrowmon release that wrote it, or point the data directory elsewhere"
    )]
    UnsupportedVersion { path: PathBuf, found: String },
    #[error(
        "{path}: the store marker is unreadable or damaged ({reason}); if this directory \
         was written by this arrowmon, replace the file's content with {{\"format_version\": {STORE_FORMAT_VERSION}}}"
    )]
    DamagedMarker { path: PathBuf, reason: String },
    #[error("{0}")]
    Block(#[from] BlockError),
    #[error("{0}")]
    HeadChunk(#[from] HeadChunkError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Settings of one store. Process-wide ones (sync interval, block range) come from
/// `serve` flags or grafana.ini; the rest are per tenant (datasource jsonData).
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How often the WAL is fsynced (default 1 s).
    pub wal_sync_interval: Duration,
    /// Length of the time range of a block cut from the head (default 2 h).
    pub block_range_ms: i64,
    /// The largest block compaction makes (default 31 days capped at a tenth of the
    /// retention, as Prometheus does).
    pub max_block_range_ms: Option<i64>,
    /// Blocks entirely older than this before the newest sample are deleted
    /// (default 15 days; 0 = keep forever). The newest sample counts at most
    /// [`MAX_AHEAD_MS`] past the wall clock.
    pub retention_ms: i64,
    /// Oldest blocks are deleted while all blocks together exceed this (0 = no limit).
    pub retention_bytes: u64,
    /// Samples up to this much older than the newest sample are accepted out of
    /// order (default 0: rejected, as in Prometheus).
    pub out_of_order_window_ms: i64,
    /// WAL segment size before a new segment is started.
    pub wal_segment_bytes: u64,
    /// Head chunk file size before a new one is started (at most 4 GiB). A cut
    /// deletes whole files, so smaller ones free disk sooner.
    pub head_chunk_segment_bytes: u64,
    /// How often the maintenance thread looks for blocks to cut, compact or expire.
    pub maintenance_interval: Duration,
    /// Run the syncer and maintenance threads (tests and benches may drive both by hand).
    pub background: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            wal_sync_interval: Duration::from_secs(1),
            block_range_ms: 2 * 3600 * 1000,
            max_block_range_ms: None,
            retention_ms: 15 * 24 * 3600 * 1000,
            retention_bytes: 0,
            out_of_order_window_ms: 0,
            wal_segment_bytes: 64 << 20,
            head_chunk_segment_bytes: 128 << 20,
            maintenance_interval: Duration::from_secs(10),
            background: true,
        }
    }
}

impl StoreOptions {
    fn max_block_range(&self) -> i64 {
        let mut max = self
            .max_block_range_ms
            .unwrap_or(31 * 24 * 3600 * 1000)
            .max(self.block_range_ms);
        if self.max_block_range_ms.is_none() && self.retention_ms > 0 {
            max = max.min(self.retention_ms / 10).max(self.block_range_ms);
        }
        max
    }
}

/// One sample to append.
#[derive(Clone, Debug)]
pub struct AppendSample {
    pub labels: Labels,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// A head series resolved once and appended to many times (the scrape cache keeps
/// one per scraped series): appending through it skips hashing and comparing the
/// label set. It stays valid when a cut removes the series: the next append
/// re-creates it from its labels.
#[derive(Clone)]
pub struct SeriesRef(Arc<HeadSeries>);

impl SeriesRef {
    pub fn id(&self) -> SeriesId {
        SeriesId(self.0.id)
    }

    pub fn labels(&self) -> Labels {
        self.0.labels()
    }
}

impl std::fmt::Debug for SeriesRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SeriesRef({}, {})", self.0.id, self.0.labels())
    }
}

/// One sample for a series resolved with [`Store::series_ref`].
#[derive(Clone, Debug)]
pub struct RefSample {
    pub series: SeriesRef,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// What an append did, for the scraper's `scrape_series_added` and the counters.
/// `out_of_order` includes the samples out of bounds (older than the head, or at a
/// time no block range can hold), which `out_of_bounds` counts on their own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    pub appended: u64,
    pub series_created: u64,
    pub out_of_order: u64,
    pub out_of_bounds: u64,
    pub duplicates: u64,
}

/// Totals since open, for the process metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub head_series: u64,
    pub samples_appended: u64,
    pub out_of_order: u64,
    pub out_of_bounds: u64,
    pub duplicates: u64,
    pub blocks: u64,
    pub block_bytes: u64,
    pub replayed_samples: u64,
    pub replay_ms: u64,
    /// Failed WAL writes and syncs.
    pub write_errors: u64,
    /// Samples records dropped because WAL writes kept failing.
    pub wal_lost_records: u64,
    /// Damaged WAL bytes skipped at replay.
    pub wal_damaged_bytes: u64,
}

/// A time-series store in one data directory: appends ([`append`](Self::append),
/// [`append_refs`](Self::append_refs)), reads ([`select`](Self::select),
/// [`select_with`](Self::select_with), [`series`](Self::series) and the label
/// lists), and the background threads that fsync the WAL and cut, compact and
/// expire blocks, stopped when the store is dropped.
pub struct Store {
    state: Arc<StoreState>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The exemplars of appended samples, in memory only.
    exemplars: ExemplarStorage,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    /// Opens (creating) a store in `dir` with default options.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, StoreOptions::default())
    }

    /// Opens (creating) a store: checks the format version, loads and verifies the
    /// blocks (moving damaged ones aside), replays the WAL, starts the background
    /// syncer and maintenance threads.
    pub fn open_with(dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        let started = std::time::Instant::now();
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        check_version(dir)?;
        let wal_dir = dir.join("wal");
        let blocks_dir = dir.join("blocks");
        std::fs::create_dir_all(&wal_dir).map_err(io_err(&wal_dir))?;
        std::fs::create_dir_all(&blocks_dir).map_err(io_err(&blocks_dir))?;
        // Emptied: the head is rebuilt from the WAL.
        let head_chunks =
            HeadChunkFiles::open(&dir.join(head_chunks::DIR), opts.head_chunk_segment_bytes)?;
        let hasher = foldhash::fast::RandomState::default();
        let state = StoreState {
            dir: dir.to_path_buf(),
            wal_dir: wal_dir.clone(),
            blocks_dir,
            opts: StoreOptions {
                block_range_ms: opts.block_range_ms.max(1),
                ..opts
            },
            hasher: hasher.clone(),
            interner: Mutex::new(Interner::default()),
            index: RwLock::new(HeadIndex::new(hasher)),
            head_chunks,
            wal: Mutex::new(WalState {
                writer: None,
                append_seq: 0,
            }),
            wal_end: Mutex::new(wal_tail::WalPosition::default()),
            head_guard: RwLock::new(()),
            blocks: RwLock::new(Vec::new()),
            series_cache: SeriesCache::new(SERIES_CACHE_BYTES),
            block_names: Mutex::new(HashSet::new()),
            maintenance: Mutex::new(()),
            min_valid_t: AtomicI64::new(i64::MIN),
            head_min_t: AtomicI64::new(i64::MIN),
            max_t: AtomicI64::new(i64::MIN),
            durable_seq: AtomicU64::new(0),
            samples_appended: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            out_of_bounds: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            replayed_samples: AtomicU64::new(0),
            replay_ms: AtomicU64::new(0),
            wal_error: Mutex::new(None),
            write_errors: AtomicU64::new(0),
            wal_lost_records: AtomicU64::new(0),
            wal_damaged_bytes: AtomicU64::new(0),
            old_segments: Mutex::new(Vec::new()),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
        };
        let state = Arc::new(state);
        state.load_blocks()?;
        let next_seq = state.replay()?;
        let writer = WalWriter::create(&wal_dir, next_seq, state.opts.wal_segment_bytes)
            .map_err(io_err(&wal::segment_path(&wal_dir, next_seq)))?;
        *lock(&state.wal_end) = writer.end();
        lock(&state.wal).writer = Some(writer);
        state
            .replay_ms
            .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        tracing::info!(
            dir = %dir.display(),
            series = read(&state.index).live,
            replayed_samples = state.replayed_samples.load(Ordering::Relaxed),
            blocks = read(&state.blocks).len(),
            ms = started.elapsed().as_millis() as u64,
            "store opened"
        );
        let store = Store {
            state,
            threads: Mutex::new(Vec::new()),
            exemplars: ExemplarStorage::default(),
        };
        if store.state.opts.background {
            store.start_threads();
        }
        Ok(store)
    }

    fn start_threads(&self) {
        let mut threads = lock(&self.threads);
        let state = self.state.clone();
        let sync = std::thread::Builder::new()
            .name("store-wal-sync".into())
            .spawn(move || {
                while !state.wait_stop(state.opts.wal_sync_interval) {
                    state.sync_wal_logged();
                }
            });
        let state = self.state.clone();
        let maint = std::thread::Builder::new()
            .name("store-maintenance".into())
            .spawn(move || {
                while !state.wait_stop(state.opts.maintenance_interval) {
                    if let Err(e) = state.maintain() {
                        tracing::error!(dir = %state.dir.display(), error = %e, "store maintenance failed");
                    }
                }
            });
        for t in [sync, maint] {
            match t {
                Ok(h) => threads.push(h),
                Err(e) => tracing::error!(error = %e, "cannot start a store thread"),
            }
        }
    }

    /// The WAL's folder, for a [`WalTail`] to follow.
    pub fn wal_dir(&self) -> &Path {
        &self.state.wal_dir
    }

    /// Where the WAL's written records end: a [`WalTail`] reads up to here.
    pub fn wal_end(&self) -> WalPosition {
        *lock(&self.state.wal_end)
    }

    /// The numbers of the WAL segments on disk, oldest first.
    pub fn wal_segments(&self) -> std::io::Result<Vec<u64>> {
        wal::list_segments(&self.state.wal_dir)
    }

    /// The newest sample timestamp the store holds (`i64::MIN` when empty).
    pub fn newest_sample_ms(&self) -> i64 {
        self.state.max_t.load(Ordering::Acquire)
    }

    /// The labels of the head series with this WAL id, while it is in the head.
    pub fn series_labels_by_id(&self, id: u32) -> Option<Labels> {
        read(&self.state.index)
            .series
            .get(id as usize)
            .and_then(|s| s.as_ref())
            .map(|s| s.labels())
    }

    pub fn dir(&self) -> &Path {
        &self.state.dir
    }

    pub fn options(&self) -> &StoreOptions {
        &self.state.opts
    }

    /// The store's current write failure (WAL or head chunk files), while writes
    /// fail; `None` once they succeed again.
    pub fn write_error(&self) -> Option<String> {
        self.state.write_error()
    }

    /// Proves the data directory accepts writes (for the health check).
    pub fn check_writable(&self) -> Result<(), StoreError> {
        let dir = &self.state.dir;
        let probe = dir.join(".write-probe");
        std::fs::write(&probe, b"ok").map_err(io_err(dir))?;
        std::fs::remove_file(&probe).map_err(io_err(dir))
    }

    /// The exemplars of the samples appended since open ([`MAX_EXEMPLARS`] at most).
    pub fn exemplars(&self) -> &ExemplarStorage {
        &self.exemplars
    }

    pub fn series_count(&self) -> usize {
        read(&self.state.index).live
    }

    pub fn samples_appended(&self) -> u64 {
        self.state.samples_appended.load(Ordering::Relaxed)
    }

    /// Append batches made durable so far (by the syncer, [`flush`](Self::flush) or a
    /// segment switch). Batch *n* is the *n*-th `append` call since open.
    pub fn durable_appends(&self) -> u64 {
        self.state.durable_seq.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> StoreStats {
        let i = &*self.state;
        let blocks = read(&i.blocks);
        StoreStats {
            head_series: read(&i.index).live as u64,
            samples_appended: i.samples_appended.load(Ordering::Relaxed),
            out_of_order: i.out_of_order.load(Ordering::Relaxed),
            out_of_bounds: i.out_of_bounds.load(Ordering::Relaxed),
            duplicates: i.duplicates.load(Ordering::Relaxed),
            blocks: blocks.len() as u64,
            block_bytes: blocks.iter().map(|b| b.size_bytes()).sum(),
            replayed_samples: i.replayed_samples.load(Ordering::Relaxed),
            replay_ms: i.replay_ms.load(Ordering::Relaxed),
            write_errors: i.write_errors.load(Ordering::Relaxed),
            wal_lost_records: i.wal_lost_records.load(Ordering::Relaxed),
            wal_damaged_bytes: i.wal_damaged_bytes.load(Ordering::Relaxed),
        }
    }

    /// Metadata of the blocks in time order.
    pub fn blocks(&self) -> Vec<BlockMeta> {
        read(&self.state.blocks)
            .iter()
            .map(|b| b.meta.clone())
            .collect()
    }

    /// Makes everything appended so far durable (fsyncs the WAL). Called at shutdown.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.state.sync_wal()
    }

    /// Runs one maintenance pass now: cut due blocks, compact, apply retention.
    pub fn maintain(&self) -> Result<(), StoreError> {
        self.state.maintain()
    }

    /// Cuts every complete block range up to `t` into blocks regardless of the
    /// 1.5-range rule (for tests and benchmarks).
    pub fn cut_before(&self, t: i64) -> Result<(), StoreError> {
        let _m = lock(&self.state.maintenance);
        self.state.cut_until(|_, end| end <= t)
    }

    /// Compacts what can be compacted now (for tests and benchmarks).
    pub fn compact(&self) -> Result<(), StoreError> {
        let _m = lock(&self.state.maintenance);
        while self.state.compact_once()? {}
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        *lock(&self.state.stop) = true;
        self.state.stop_cv.notify_all();
        for t in lock(&self.threads).drain(..) {
            let _ = t.join();
        }
        self.state.sync_wal_logged();
    }
}

/// How a store failure shows to a reader of the [`Storage`](crate::model::Storage) interface.
impl From<StoreError> for SelectError {
    fn from(e: StoreError) -> SelectError {
        SelectError::Storage(StorageError(e.to_string()))
    }
}

fn check_version(dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(VERSION_FILE);
    match std::fs::read(&path) {
        Ok(text) => {
            let damaged = |reason: String| StoreError::DamagedMarker {
                path: path.clone(),
                reason,
            };
            let v: serde_json::Value =
                serde_json::from_slice(&text).map_err(|e| damaged(format!("not JSON: {e}")))?;
            match v.get("format_version") {
                None => Err(damaged("no format_version field".into())),
                Some(serde_json::Value::Number(n)) => match n.as_u64() {
                    Some(n) if n == STORE_FORMAT_VERSION as u64 => Ok(()),
                    _ => Err(StoreError::UnsupportedVersion {
                        path,
                        found: n.to_string(),
                    }),
                },
                Some(other) => Err(damaged(format!("format_version is {other}, not a number"))),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = format!("{{\"format_version\": {STORE_FORMAT_VERSION}}}\n");
            std::fs::write(&path, text).map_err(io_err(&path))?;
            wal::sync_dir(dir).map_err(io_err(dir))
        }
        Err(e) => Err(io_err(&path)(e)),
    }
}

impl StoreState {
    fn wait_stop(&self, d: Duration) -> bool {
        let g = lock(&self.stop);
        if *g {
            return true;
        }
        let (g, _) = self
            .stop_cv
            .wait_timeout(g, d)
            .unwrap_or_else(|e| e.into_inner());
        *g
    }
}

#[cfg(test)]
mod tests;
