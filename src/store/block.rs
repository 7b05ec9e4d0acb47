//! Immutable on-disk blocks: Arrow IPC files (ZSTD) of series-sorted, transformed
//! sample columns, plus a `meta.json` with the time range, counts and file checksums.
//!
//! Layout of a block directory `blocks/b<mint>_<maxt>/`:
//! - `meta.json`: [`BlockMeta`].
//! - `series.arrow`: record batches of ≤ [`SERIES_BATCH_ROWS`] rows (older blocks:
//!   one batch), one row per series, sorted by labels:
//!   `labels` (binary, varint-length-prefixed name/value pairs), `mint`, `maxt`,
//!   `batch` and `row` (where its samples start in `samples.arrow`), `count`,
//!   `vmode` and `vscale` (how its values are encoded).
//! - `samples.arrow`: record batches of ≤ [`BATCH_ROWS`] rows and ≤ [`BATCH_SERIES`]
//!   series (a series never spans two batches), columns `t` and `v`, both Int64:
//!   - `t`: first timestamp, then the delta, then deltas-of-deltas. Regular scrapes
//!     give runs of zeros and scrape jitter a few ms, which ZSTD packs into well
//!     under a byte.
//!   - `v`: when every value of the series is a decimal with ≤ 9 fractional digits
//!     that round-trips bit-exactly as `int / 10^scale` (counters, gauges printed
//!     with few decimals: almost all exporter output), the scaled integers as deltas
//!     (`vmode` 1, gauges) or deltas-of-deltas (`vmode` 2, steady counters), whichever
//!     is smaller; otherwise (NaN, staleness markers, ±Inf, -0, long fractions) the
//!     raw bits XOR the previous value's bits (`vmode` 0), bit-exact.
//!
//! A query reads `series.arrow` once at open (the block's inverted index lives in
//! memory) and then only the sample batches of the series it selects.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, BinaryArray, Int64Array, RecordBatch, UInt32Array, UInt8Array};
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_schema::{ArrowError, DataType, Field, Schema};

use super::index::Postings;
use super::symbol::{ByIdentity, SeriesLabels};
use super::wal::{put_uvarint, Cursor};
use crate::labels::{Labels, Matcher};

/// The block format this code writes and reads.
pub const BLOCK_FORMAT_VERSION: u32 = 1;
/// Rows per sample record batch: the unit a query decompresses.
pub const BATCH_ROWS: usize = 16 * 1024;
/// Series per sample record batch. A light query reads one series per block, so in
/// blocks of short series (freshly cut, lowered block range) batches stay small;
/// series of a full 2 h block fill [`BATCH_ROWS`] first, so compaction is unaffected.
pub const BATCH_SERIES: u32 = 64;
/// Rows per series-table record batch. The writer and [`Block::open`] hold one
/// batch at a time, so a cut or compaction of many series does not hold every
/// series' label bytes at once (the process's peak RSS).
pub const SERIES_BATCH_ROWS: usize = 8192;
const MAX_SCALE: u8 = 9;
const ZSTD_LEVEL: i32 = 3;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct FileStat {
    pub size: u64,
    pub crc32: u32,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct BlockMeta {
    pub format_version: u32,
    /// The time range the block owns: `[range_start, range_end)`.
    pub range_start: i64,
    pub range_end: i64,
    /// Oldest and newest sample.
    pub mint: i64,
    pub maxt: i64,
    pub num_series: u64,
    pub num_samples: u64,
    /// How many times its data was compacted (0 = cut from the head).
    pub level: u32,
    /// Blocks merged into this one; they are deleted if still present at open.
    pub sources: Vec<String>,
    pub files: BTreeMap<String, FileStat>,
    /// Where the samples came from. Only blocks cut from the head move the head's
    /// lower bound; imported blocks may overlap the head and each other.
    #[serde(default)]
    pub origin: BlockOrigin,
}

#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BlockOrigin {
    /// Cut from the head, or compacted from blocks of which one was.
    #[default]
    Head,
    /// Written by `import` (backfill), or compacted from imported blocks only.
    Import,
}

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Arrow { path: PathBuf, source: ArrowError },
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "{path}: block format version {found} is not supported (this arrowmon reads version {BLOCK_FORMAT_VERSION}); \
         it was written by a newer arrowmon"
    )]
    UnknownVersion { path: PathBuf, found: u32 },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BlockError + '_ {
    move |source| BlockError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> BlockError {
    BlockError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

// ---- column transforms --------------------------------------------------------------

/// The smallest decimal scale at which every value round-trips bit-exactly.
fn decimal_scale(vs: &[f64]) -> Option<u8> {
    'scale: for e in 0..=MAX_SCALE {
        let p = 10f64.powi(e as i32);
        for &v in vs {
            if !v.is_finite() {
                return None;
            }
            let i = (v * p).round();
            if i.abs() > 9.0e15 {
                return None;
            }
            // Through i64, as stored: -0.0 comes back as 0.0, so it is no decimal.
            if ((i as i64) as f64 / p).to_bits() != v.to_bits() {
                continue 'scale;
            }
        }
        return Some(e);
    }
    None
}

pub fn encode_ts(ts: &[i64], out: &mut Vec<i64>) {
    let (mut prev, mut prev_delta) = (0i64, 0i64);
    for (i, &t) in ts.iter().enumerate() {
        match i {
            0 => out.push(t),
            _ => {
                let d = t.wrapping_sub(prev);
                out.push(if i == 1 {
                    d
                } else {
                    d.wrapping_sub(prev_delta)
                });
                prev_delta = d;
            }
        }
        prev = t;
    }
}

pub(super) fn decode_ts(col: &[i64], out: &mut Vec<i64>) {
    let (mut t, mut d) = (0i64, 0i64);
    for (i, &x) in col.iter().enumerate() {
        match i {
            0 => t = x,
            1 => {
                d = x;
                t = t.wrapping_add(d);
            }
            _ => {
                d = d.wrapping_add(x);
                t = t.wrapping_add(d);
            }
        }
        out.push(t);
    }
}

/// Encodes values; returns (vmode, vscale).
pub fn encode_values(vs: &[f64], out: &mut Vec<i64>) -> (u8, u8) {
    if let Some(scale) = decimal_scale(vs) {
        let p = 10f64.powi(scale as i32);
        let ints: Vec<i64> = vs.iter().map(|v| (v * p).round() as i64).collect();
        let mut delta = Vec::with_capacity(ints.len());
        let mut dod = Vec::with_capacity(ints.len());
        let mut prev_d = 0i64;
        for (i, &x) in ints.iter().enumerate() {
            if i == 0 {
                delta.push(x);
                dod.push(x);
                continue;
            }
            let d = x.wrapping_sub(ints[i - 1]);
            delta.push(d);
            dod.push(if i == 1 { d } else { d.wrapping_sub(prev_d) });
            prev_d = d;
        }
        let cost = |v: &[i64]| -> u64 {
            v.iter()
                .skip(1)
                .map(|x| 64 - x.unsigned_abs().leading_zeros() as u64)
                .sum()
        };
        if cost(&dod) < cost(&delta) {
            out.extend_from_slice(&dod);
            (2, scale)
        } else {
            out.extend_from_slice(&delta);
            (1, scale)
        }
    } else {
        let mut prev = 0u64;
        for v in vs {
            let b = v.to_bits();
            out.push((b ^ prev) as i64);
            prev = b;
        }
        (0, 0)
    }
}

pub(super) fn decode_values(col: &[i64], vmode: u8, vscale: u8, out: &mut Vec<f64>) {
    match vmode {
        0 => {
            let mut prev = 0u64;
            for &x in col {
                prev ^= x as u64;
                out.push(f64::from_bits(prev));
            }
        }
        _ => {
            let p = 10f64.powi(vscale.min(MAX_SCALE) as i32);
            let (mut x, mut d) = (0i64, 0i64);
            for (i, &c) in col.iter().enumerate() {
                if i == 0 {
                    x = c;
                } else if vmode == 1 || i == 1 {
                    d = c;
                    x = x.wrapping_add(d);
                } else {
                    d = d.wrapping_add(c);
                    x = x.wrapping_add(d);
                }
                out.push(x as f64 / p);
            }
        }
    }
}

// ---- writing ------------------------------------------------------------------------

fn samples_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("t", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
    ]))
}

fn series_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("labels", DataType::Binary, false),
        Field::new("mint", DataType::Int64, false),
        Field::new("maxt", DataType::Int64, false),
        Field::new("batch", DataType::UInt32, false),
        Field::new("row", DataType::UInt32, false),
        Field::new("count", DataType::UInt32, false),
        Field::new("vmode", DataType::UInt8, false),
        Field::new("vscale", DataType::UInt8, false),
    ]))
}

fn ipc_options() -> Result<IpcWriteOptions, ArrowError> {
    IpcWriteOptions::default()
        .try_with_compression(Some(arrow_ipc::CompressionType::ZSTD))?
        .try_with_compression_level(Some(ZSTD_LEVEL))
}

/// A file writer that computes its CRC32 and size as it goes.
struct HashingWriter {
    inner: BufWriter<File>,
    crc: crc32fast::Hasher,
    size: u64,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl HashingWriter {
    fn create(path: &Path) -> Result<HashingWriter, BlockError> {
        let f = File::create(path).map_err(io_err(path))?;
        Ok(HashingWriter {
            inner: BufWriter::with_capacity(1 << 20, f),
            crc: crc32fast::Hasher::new(),
            size: 0,
        })
    }
    fn finish(mut self, path: &Path) -> Result<FileStat, BlockError> {
        self.inner.flush().map_err(io_err(path))?;
        self.inner.get_ref().sync_all().map_err(io_err(path))?;
        Ok(FileStat {
            size: self.size,
            crc32: self.crc.finalize(),
        })
    }
}

/// Streams series (in label order) into a new block directory.
pub struct BlockWriter {
    dir: PathBuf,
    samples: FileWriter<HashingWriter>,
    series: FileWriter<HashingWriter>,
    num_series: usize,
    t_col: Vec<i64>,
    v_col: Vec<i64>,
    batch: u32,
    /// Series in the batch being filled.
    batch_series: u32,
    /// The label bytes of the series of the pending series batch, back to back.
    labels_col: Vec<u8>,
    labels_offsets: Vec<i32>,
    mint_col: Vec<i64>,
    maxt_col: Vec<i64>,
    batch_col: Vec<u32>,
    row_col: Vec<u32>,
    count_col: Vec<u32>,
    vmode_col: Vec<u8>,
    vscale_col: Vec<u8>,
    mint: i64,
    maxt: i64,
    num_samples: u64,
}

impl BlockWriter {
    /// Starts writing into `dir` (created; it should be a temporary name that
    /// [`finish`](Self::finish)'s caller renames into place).
    pub fn create(dir: &Path) -> Result<BlockWriter, BlockError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join("samples.arrow");
        let arrow = |source| BlockError::Arrow {
            path: path.clone(),
            source,
        };
        let opts = ipc_options().map_err(arrow)?;
        let samples = FileWriter::try_new_with_options(
            HashingWriter::create(&path)?,
            &samples_schema(),
            opts,
        )
        .map_err(|source| BlockError::Arrow {
            path: path.clone(),
            source,
        })?;
        let spath = dir.join("series.arrow");
        let series = FileWriter::try_new_with_options(
            HashingWriter::create(&spath)?,
            &series_schema(),
            ipc_options().map_err(|source| BlockError::Arrow {
                path: spath.clone(),
                source,
            })?,
        )
        .map_err(|source| BlockError::Arrow {
            path: spath.clone(),
            source,
        })?;
        Ok(BlockWriter {
            dir: dir.to_path_buf(),
            samples,
            series,
            num_series: 0,
            t_col: Vec::new(),
            v_col: Vec::new(),
            batch: 0,
            batch_series: 0,
            labels_col: Vec::new(),
            labels_offsets: vec![0],
            mint_col: Vec::new(),
            maxt_col: Vec::new(),
            batch_col: Vec::new(),
            row_col: Vec::new(),
            count_col: Vec::new(),
            vmode_col: Vec::new(),
            vscale_col: Vec::new(),
            mint: i64::MAX,
            maxt: i64::MIN,
            num_samples: 0,
        })
    }

    fn flush_batch(&mut self) -> Result<(), BlockError> {
        if self.t_col.is_empty() {
            return Ok(());
        }
        let path = self.dir.join("samples.arrow");
        let t = Int64Array::from(std::mem::take(&mut self.t_col));
        let v = Int64Array::from(std::mem::take(&mut self.v_col));
        RecordBatch::try_new(samples_schema(), vec![Arc::new(t), Arc::new(v)])
            .and_then(|b| self.samples.write(&b))
            .map_err(|source| BlockError::Arrow { path, source })?;
        self.batch += 1;
        self.batch_series = 0;
        Ok(())
    }

    /// Adds one series; series must come in increasing label order, samples in
    /// increasing time order. Empty series are skipped.
    pub fn push(&mut self, labels: &Labels, ts: &[i64], vs: &[f64]) -> Result<(), BlockError> {
        if ts.is_empty() {
            return Ok(());
        }
        if !self.t_col.is_empty()
            && (self.t_col.len() + ts.len() > BATCH_ROWS || self.batch_series >= BATCH_SERIES)
        {
            self.flush_batch()?;
        }
        let row = self.t_col.len() as u32;
        encode_ts(ts, &mut self.t_col);
        let (vmode, vscale) = encode_values(vs, &mut self.v_col);
        let lb = &mut self.labels_col;
        for l in labels {
            put_uvarint(lb, l.name.len() as u64);
            lb.extend_from_slice(l.name.as_bytes());
            put_uvarint(lb, l.value.len() as u64);
            lb.extend_from_slice(l.value.as_bytes());
        }
        let end = i32::try_from(lb.len()).map_err(|_| {
            corrupt(
                &self.dir.join("series.arrow"),
                "label bytes of one series batch exceed 2 GiB",
            )
        })?;
        self.labels_offsets.push(end);
        self.num_series += 1;
        let (first, last) = (ts[0], ts[ts.len() - 1]);
        self.mint_col.push(first);
        self.maxt_col.push(last);
        self.batch_col.push(self.batch);
        self.batch_series += 1;
        self.row_col.push(row);
        self.count_col.push(ts.len() as u32);
        self.vmode_col.push(vmode);
        self.vscale_col.push(vscale);
        self.mint = self.mint.min(first);
        self.maxt = self.maxt.max(last);
        self.num_samples += ts.len() as u64;
        if self.mint_col.len() >= SERIES_BATCH_ROWS {
            self.flush_series()?;
        }
        Ok(())
    }

    pub fn num_series(&self) -> usize {
        self.num_series
    }

    /// Writes the pending rows of the series table as one record batch.
    fn flush_series(&mut self) -> Result<(), BlockError> {
        if self.mint_col.is_empty() {
            return Ok(());
        }
        let path = self.dir.join("series.arrow");
        let offsets = arrow_buffer::OffsetBuffer::new(arrow_buffer::ScalarBuffer::from(
            std::mem::replace(&mut self.labels_offsets, vec![0]),
        ));
        let values = arrow_buffer::Buffer::from_vec(std::mem::take(&mut self.labels_col));
        let arrow = |source| BlockError::Arrow {
            path: path.clone(),
            source,
        };
        let labels = BinaryArray::try_new(offsets, values, None).map_err(arrow)?;
        let batch = RecordBatch::try_new(
            series_schema(),
            vec![
                Arc::new(labels),
                Arc::new(Int64Array::from(std::mem::take(&mut self.mint_col))),
                Arc::new(Int64Array::from(std::mem::take(&mut self.maxt_col))),
                Arc::new(UInt32Array::from(std::mem::take(&mut self.batch_col))),
                Arc::new(UInt32Array::from(std::mem::take(&mut self.row_col))),
                Arc::new(UInt32Array::from(std::mem::take(&mut self.count_col))),
                Arc::new(UInt8Array::from(std::mem::take(&mut self.vmode_col))),
                Arc::new(UInt8Array::from(std::mem::take(&mut self.vscale_col))),
            ],
        )
        .map_err(arrow)?;
        self.series.write(&batch).map_err(arrow)
    }

    /// Writes the series table and `meta.json`, fsynced. Returns the meta.
    pub fn finish(
        mut self,
        range_start: i64,
        range_end: i64,
        level: u32,
        sources: Vec<String>,
        origin: BlockOrigin,
    ) -> Result<BlockMeta, BlockError> {
        self.flush_batch()?;
        self.flush_series()?;
        let spath = self.dir.join("samples.arrow");
        self.samples.finish().map_err(|source| BlockError::Arrow {
            path: spath.clone(),
            source,
        })?;
        let samples_stat = self
            .samples
            .into_inner()
            .map_err(|source| BlockError::Arrow {
                path: spath.clone(),
                source,
            })?
            .finish(&spath)?;

        let path = self.dir.join("series.arrow");
        let arrow = |source| BlockError::Arrow {
            path: path.clone(),
            source,
        };
        self.series.finish().map_err(arrow)?;
        let series_stat = self.series.into_inner().map_err(arrow)?.finish(&path)?;

        let meta = BlockMeta {
            format_version: BLOCK_FORMAT_VERSION,
            range_start,
            range_end,
            mint: self.mint,
            maxt: self.maxt,
            num_series: self.num_series as u64,
            num_samples: self.num_samples,
            level,
            sources,
            files: BTreeMap::from([
                ("samples.arrow".to_string(), samples_stat),
                ("series.arrow".to_string(), series_stat),
            ]),
            origin,
        };
        let mpath = self.dir.join("meta.json");
        let text = serde_json::to_vec_pretty(&meta).map_err(|e| corrupt(&mpath, e.to_string()))?;
        let mut f = File::create(&mpath).map_err(io_err(&mpath))?;
        f.write_all(&text).map_err(io_err(&mpath))?;
        f.sync_all().map_err(io_err(&mpath))?;
        super::wal::sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        Ok(meta)
    }
}

// ---- reading ------------------------------------------------------------------------

/// One row of a block's series table, as kept in memory for the block's life: every
/// live block holds one per series, so it is kept to 16 bytes (its time span is
/// beside it, in [`Block::spans`]). The sample batch is found from
/// [`Block::batch_starts`] (a series never spans two batches, and batches hold
/// consecutive series), and the row within a batch fits 16 bits because a batch
/// holds at most [`BATCH_ROWS`] rows whenever a series does not start it.
pub struct BlockSeries {
    pub labels: SeriesLabels,
    count: u32,
    row: u16,
    vmode: u8,
    vscale: u8,
}

/// Where in its block a series has samples, in 255ths of the block's time span,
/// rounded outward: 2 bytes a series in every live block, where exact offsets took
/// 8. A series may thus be taken for one with samples in a range it misses by less
/// than a 255th of the block (28 s of a 2 h block); reads find no samples there and
/// leave it out, and the series API lists it, as Prometheus's chunk-granular index
/// may.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeriesSpan {
    first: u8,
    last: u8,
}

impl SeriesSpan {
    /// The 255th of the block's span: every offset in the block fits 255 of them.
    fn granule(meta: &BlockMeta) -> i128 {
        (meta.maxt as i128 - meta.mint as i128).max(0) / 255 + 1
    }

    fn new(meta: &BlockMeta, s_mint: i64, s_maxt: i64) -> SeriesSpan {
        let (g, base) = (Self::granule(meta), meta.mint as i128);
        let first = (s_mint as i128 - base).div_euclid(g);
        let last = (s_maxt as i128 - base + g - 1).div_euclid(g);
        SeriesSpan {
            first: first.clamp(0, 255) as u8,
            last: last.clamp(0, 255) as u8,
        }
    }

    /// Whether the series may have samples in `[mint, maxt]`.
    fn overlaps(self, meta: &BlockMeta, mint: i64, maxt: i64) -> bool {
        let (g, base) = (Self::granule(meta), meta.mint as i128);
        let lo = base + self.first as i128 * g;
        let hi = base + self.last as i128 * g;
        hi >= mint as i128 && lo <= maxt as i128
    }
}

/// An open, verified block: its meta, its series table and inverted index in memory.
pub struct Block {
    pub dir: PathBuf,
    pub name: String,
    pub meta: BlockMeta,
    pub series: Vec<BlockSeries>,
    /// Each series' time span, by ordinal.
    spans: Box<[SeriesSpan]>,
    /// The first series ordinal of each sample batch.
    batch_starts: Vec<u32>,
    /// Shared with another live block that has the same series in the same order
    /// ([`Block::share_postings`]): consecutive blocks usually do.
    pub postings: Arc<Postings>,
    /// `samples.arrow`, open for positional reads, and where each record batch lies
    /// in it (read from the IPC footer once at open, not per query).
    samples: SampleFile,
    /// Set when the block was replaced (compaction) or expired (retention): the
    /// directory is removed when the last reader lets go of it.
    pub delete_on_drop: std::sync::atomic::AtomicBool,
}

impl Drop for Block {
    fn drop(&mut self) {
        if self
            .delete_on_drop
            .load(std::sync::atomic::Ordering::Acquire)
        {
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                tracing::error!(block = %self.dir.display(), error = %e, "cannot delete block");
            }
        }
    }
}

/// Reads and checks `meta.json` only.
pub fn read_meta(dir: &Path) -> Result<BlockMeta, BlockError> {
    let path = dir.join("meta.json");
    let text = std::fs::read(&path).map_err(io_err(&path))?;
    // Look at the version before the rest, so a newer layout gets the clear message.
    #[derive(serde::Deserialize)]
    struct Version {
        format_version: u32,
    }
    let v: Version = serde_json::from_slice(&text).map_err(|e| corrupt(&path, e.to_string()))?;
    if v.format_version != BLOCK_FORMAT_VERSION {
        return Err(BlockError::UnknownVersion {
            path,
            found: v.format_version,
        });
    }
    serde_json::from_slice(&text).map_err(|e| corrupt(&path, e.to_string()))
}

fn verify_file(dir: &Path, name: &str, stat: Option<&FileStat>) -> Result<(), BlockError> {
    let path = dir.join(name);
    let stat =
        stat.ok_or_else(|| corrupt(&dir.join("meta.json"), format!("no entry for {name}")))?;
    let mut f = File::open(&path).map_err(io_err(&path))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io_err(&path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    if size != stat.size {
        return Err(corrupt(
            &path,
            format!("size {size} bytes, meta.json says {}", stat.size),
        ));
    }
    let crc = hasher.finalize();
    if crc != stat.crc32 {
        return Err(corrupt(
            &path,
            format!("checksum {crc:08x}, meta.json says {:08x}", stat.crc32),
        ));
    }
    Ok(())
}

fn column<'a, T: Array + 'static>(
    batch: &'a RecordBatch,
    name: &str,
    path: &Path,
) -> Result<&'a T, BlockError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| corrupt(path, format!("column {name} missing or of the wrong type")))
}

/// A block's `samples.arrow`: an open file and the record batch positions of its
/// IPC footer, so a query reads exactly the bytes of the batches it needs.
struct SampleFile {
    path: PathBuf,
    file: File,
    schema: Arc<Schema>,
    version: arrow_ipc::MetadataVersion,
    batches: Vec<arrow_ipc::Block>,
}

impl SampleFile {
    fn open(path: &Path) -> Result<SampleFile, BlockError> {
        use std::os::unix::fs::FileExt;
        let file = File::open(path).map_err(io_err(path))?;
        let len = file.metadata().map_err(io_err(path))?.len();
        let arrow = |source| BlockError::Arrow {
            path: path.to_path_buf(),
            source,
        };
        let mut trailer = [0u8; 10];
        if len < 10 + 8 {
            return Err(corrupt(
                path,
                format!("{len} bytes: too short for an Arrow file"),
            ));
        }
        file.read_exact_at(&mut trailer, len - 10)
            .map_err(io_err(path))?;
        let footer_len = arrow_ipc::reader::read_footer_length(trailer).map_err(arrow)? as u64;
        if footer_len > len - 10 {
            return Err(corrupt(
                path,
                format!("footer of {footer_len} bytes in a {len}-byte file"),
            ));
        }
        let mut footer_buf = vec![0u8; footer_len as usize];
        file.read_exact_at(&mut footer_buf, len - 10 - footer_len)
            .map_err(io_err(path))?;
        let footer = arrow_ipc::root_as_footer(&footer_buf)
            .map_err(|e| corrupt(path, format!("unreadable IPC footer: {e}")))?;
        let schema = footer
            .schema()
            .ok_or_else(|| corrupt(path, "IPC footer without a schema"))
            .and_then(|s| arrow_ipc::convert::try_fb_to_schema(s).map_err(arrow))?;
        if schema.fields() != samples_schema().fields() {
            return Err(corrupt(path, format!("unexpected columns {schema:?}")));
        }
        let batches: Vec<arrow_ipc::Block> = footer
            .recordBatches()
            .map(|b| b.iter().copied().collect())
            .unwrap_or_default();
        for b in &batches {
            let end = (b.offset() as u64)
                .checked_add(b.metaDataLength() as u64)
                .and_then(|e| e.checked_add(b.bodyLength() as u64));
            if b.offset() < 0
                || b.metaDataLength() < 0
                || b.bodyLength() < 0
                || end.is_none_or(|e| e > len)
            {
                return Err(corrupt(path, "record batch outside the file"));
            }
        }
        Ok(SampleFile {
            path: path.to_path_buf(),
            file,
            schema: Arc::new(schema),
            version: footer.version(),
            batches,
        })
    }

    fn read_batch(&self, i: usize) -> Result<RecordBatch, BlockError> {
        use std::os::unix::fs::FileExt;
        let path = &self.path;
        let b = self
            .batches
            .get(i)
            .ok_or_else(|| corrupt(path, format!("no batch {i}")))?;
        // Offsets and lengths were checked against the file size at open.
        let len = b.metaDataLength() as usize + b.bodyLength() as usize;
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, b.offset() as u64)
            .map_err(io_err(path))?;
        let decoder = arrow_ipc::reader::FileDecoder::new(self.schema.clone(), self.version);
        decoder
            .read_record_batch(b, &arrow_buffer::Buffer::from_vec(buf))
            .map_err(|source| BlockError::Arrow {
                path: path.clone(),
                source,
            })?
            .ok_or_else(|| corrupt(path, format!("batch {i} is not a record batch")))
    }
}

/// Turns a block's (name, value) pairs into the store's interned label set.
pub type InternLabels<'a> = dyn FnMut(&[(&str, &str)]) -> SeriesLabels + 'a;

impl Block {
    /// Opens a block: checks the version, both files' sizes and checksums, and loads
    /// the series table. `intern` shares label strings with the rest of the store.
    pub fn open(dir: &Path, intern: &mut InternLabels<'_>) -> Result<Block, BlockError> {
        let meta = read_meta(dir)?;
        verify_file(dir, "series.arrow", meta.files.get("series.arrow"))?;
        verify_file(dir, "samples.arrow", meta.files.get("samples.arrow"))?;

        let path = dir.join("series.arrow");
        let f = File::open(&path).map_err(io_err(&path))?;
        let arrow = |source| BlockError::Arrow {
            path: path.clone(),
            source,
        };
        let reader = FileReader::try_new(BufReader::new(f), None).map_err(arrow)?;
        let mut series = Vec::with_capacity(meta.num_series as usize);
        let mut spans = Vec::with_capacity(meta.num_series as usize);
        let mut batch_starts: Vec<u32> = Vec::new();
        for batch in reader {
            let batch = batch.map_err(arrow)?;
            let mut pairs = Vec::new();
            let labels = column::<BinaryArray>(&batch, "labels", &path)?;
            let mint = column::<Int64Array>(&batch, "mint", &path)?;
            let maxt = column::<Int64Array>(&batch, "maxt", &path)?;
            let bidx = column::<UInt32Array>(&batch, "batch", &path)?;
            let row = column::<UInt32Array>(&batch, "row", &path)?;
            let count = column::<UInt32Array>(&batch, "count", &path)?;
            let vmode = column::<UInt8Array>(&batch, "vmode", &path)?;
            let vscale = column::<UInt8Array>(&batch, "vscale", &path)?;
            for i in 0..batch.num_rows() {
                let ordinal = series.len();
                let mut c = Cursor::new(labels.value(i));
                pairs.clear();
                while !c.at_end() {
                    let (Some(n), Some(v)) = (c.str(), c.str()) else {
                        return Err(corrupt(&path, format!("bad label set in row {i}")));
                    };
                    pairs.push((n, v));
                }
                // The writer fills batches with consecutive series: batch numbers
                // start at 0 and rise by one, which lets memory keep one entry a batch.
                let b = bidx.value(i) as usize;
                if b == batch_starts.len() {
                    batch_starts.push(ordinal as u32);
                } else if b + 1 != batch_starts.len() {
                    return Err(corrupt(
                        &path,
                        format!(
                            "series {ordinal} is in batch {b} after batch {}",
                            batch_starts.len() as i64 - 1
                        ),
                    ));
                }
                spans.push(SeriesSpan::new(&meta, mint.value(i), maxt.value(i)));
                let row = u16::try_from(row.value(i)).map_err(|_| {
                    corrupt(
                        &path,
                        format!(
                            "series {ordinal} starts at row {} of its batch",
                            row.value(i)
                        ),
                    )
                })?;
                series.push(BlockSeries {
                    labels: intern(&pairs),
                    row,
                    count: count.value(i),
                    vmode: vmode.value(i),
                    vscale: vscale.value(i),
                });
            }
        }
        if series.len() as u64 != meta.num_series {
            return Err(corrupt(
                &path,
                format!(
                    "{} series, meta.json says {}",
                    series.len(),
                    meta.num_series
                ),
            ));
        }
        let spath = dir.join("samples.arrow");
        let samples = SampleFile::open(&spath)?;
        let num_batches = samples.batches.len();
        if batch_starts.len() > num_batches {
            return Err(corrupt(
                &spath,
                format!(
                    "series {} points at batch {} of {num_batches}",
                    batch_starts[num_batches],
                    batch_starts.len() - 1
                ),
            ));
        }
        batch_starts.shrink_to_fit();
        let mut postings = Postings::dense();
        for (i, s) in series.iter().enumerate() {
            postings.add_pairs(i as u32, s.labels.pairs());
        }
        postings.freeze();
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        Ok(Block {
            dir: dir.to_path_buf(),
            name,
            meta,
            series,
            spans: spans.into_boxed_slice(),
            batch_starts,
            postings: Arc::new(postings),
            samples,
            delete_on_drop: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Ordinals of the series matching `matchers` with samples in `[mint, maxt]`.
    pub fn matching(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<u32> {
        if self.meta.maxt < mint || self.meta.mint > maxt {
            return Vec::new();
        }
        let mut ids = self.postings.select(matchers);
        ids.retain(|&i| {
            self.spans
                .get(i as usize)
                .is_some_and(|s| s.overlaps(&self.meta, mint, maxt))
        });
        ids
    }

    /// Takes `other`'s postings if it has the same series in the same order (the
    /// same label set allocations), dropping its own: postings depend on nothing
    /// else. Returns whether it did.
    pub fn share_postings(&mut self, other: &Block) -> bool {
        let same = self.series.len() == other.series.len()
            && self
                .series
                .iter()
                .zip(&other.series)
                .all(|(a, b)| ByIdentity(&a.labels) == ByIdentity(&b.labels));
        if same {
            self.postings = other.postings.clone();
        }
        same
    }

    /// Calls `f` with each series' samples in `[mint, maxt]`, for series ids in
    /// ascending order; series without samples there are skipped.
    pub fn read_series(
        &self,
        ids: &[u32],
        mint: i64,
        maxt: i64,
        mut f: impl FnMut(u32, Vec<i64>, Vec<f64>),
    ) -> Result<(), BlockError> {
        let mut batch = None;
        for &id in ids {
            let count = self.series.get(id as usize).map_or(0, |s| s.count as usize);
            let (mut ts, mut vs) = (Vec::with_capacity(count), Vec::with_capacity(count));
            self.append_series(id, mint, maxt, &mut batch, &mut ts, &mut vs)?;
            if !ts.is_empty() {
                f(id, ts, vs);
            }
        }
        Ok(())
    }

    /// Appends series `id`'s samples in `[mint, maxt]` to `ts` and `vs`. `batch` keeps
    /// the sample batch last decompressed: reading series in ascending id order, one
    /// decompression serves every series of a batch.
    pub fn append_series(
        &self,
        id: u32,
        mint: i64,
        maxt: i64,
        batch: &mut Option<(u32, RecordBatch)>,
        ts: &mut Vec<i64>,
        vs: &mut Vec<f64>,
    ) -> Result<(), BlockError> {
        let path = &self.samples.path;
        let s = self
            .series
            .get(id as usize)
            .ok_or_else(|| corrupt(path, format!("no series {id}")))?;
        let bi = self.batch_of(id as usize);
        let current = match batch {
            Some((b, current)) if *b == bi => current,
            _ => &batch.insert((bi, self.samples.read_batch(bi as usize)?)).1,
        };
        // The columns are `t` and `v`, in that order: checked when the file was opened.
        let int64 = |i: usize| {
            current
                .columns()
                .get(i)
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                .map(|a| a.values())
                .ok_or_else(|| corrupt(path, format!("batch {bi}: column {i} is not Int64")))
        };
        let (t, v) = (int64(0)?, int64(1)?);
        let (lo, hi) = (s.row as usize, s.row as usize + s.count as usize);
        let (Some(tc), Some(vc)) = (t.get(lo..hi), v.get(lo..hi)) else {
            return Err(corrupt(
                path,
                format!("rows {lo}..{hi} out of range in batch {bi}"),
            ));
        };
        let start = ts.len();
        decode_ts(tc, ts);
        decode_values(vc, s.vmode, s.vscale, vs);
        let a = start + ts[start..].partition_point(|&x| x < mint);
        let b = start + ts[start..].partition_point(|&x| x <= maxt);
        // Usually the whole series is in range and nothing moves.
        ts.truncate(b);
        vs.truncate(b);
        if a > start {
            ts.drain(start..a);
            vs.drain(start..a);
        }
        Ok(())
    }

    /// The sample batch holding series `i`.
    pub fn batch_of(&self, i: usize) -> u32 {
        if i >= self.series.len() {
            return u32::MAX;
        }
        // batch_starts[0] is 0 whenever there is a series, so this is ≥ 1.
        (self.batch_starts.partition_point(|&s| s as usize <= i) as u32).saturating_sub(1)
    }

    /// Total size of the block's files.
    pub fn size_bytes(&self) -> u64 {
        self.meta.files.values().map(|f| f.size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::symbol::Interner;

    #[test]
    fn transforms_round_trip_bit_exactly() {
        let cases: Vec<Vec<f64>> = vec![
            vec![1.0, 2.0, 4.0, 8.0],
            vec![12.34, 12.35, 99.99, -0.01],
            vec![0.1, 0.2, 0.30000000000000004],
            vec![1.0, f64::NAN, f64::from_bits(0x7ff0_0000_0000_0002), -0.0],
            vec![1e300, 1e-300, 5.5],
            vec![123456789.0, 123456789.5, 123456790.25],
            vec![1.5, -0.0, 2.0],
        ];
        for vs in cases {
            let mut col = Vec::new();
            let (mode, scale) = encode_values(&vs, &mut col);
            let mut out = Vec::new();
            decode_values(&col, mode, scale, &mut out);
            let a: Vec<u64> = vs.iter().map(|v| v.to_bits()).collect();
            let b: Vec<u64> = out.iter().map(|v| v.to_bits()).collect();
            assert_eq!(a, b, "mode {mode} scale {scale}");
        }
        let ts = vec![1000, 6000, 11001, 16000, 16001, -5];
        let mut col = Vec::new();
        encode_ts(&ts, &mut col);
        let mut out = Vec::new();
        decode_ts(&col, &mut out);
        assert_eq!(ts, out);
    }

    #[test]
    fn write_open_read() {
        let dir = tempfile::tempdir().unwrap();
        let bdir = dir.path().join("b");
        let mut w = BlockWriter::create(&bdir).unwrap();
        let mut all = Vec::new();
        for i in 0..50 {
            let labels = Labels::from_pairs([("__name__", "m"), ("i", &format!("{i:03}"))]);
            let ts: Vec<i64> = (0..1000).map(|k| k * 5000 + (k % 3)).collect();
            let vs: Vec<f64> = (0..1000).map(|k| (k * i) as f64 + 0.25).collect();
            w.push(&labels, &ts, &vs).unwrap();
            all.push((labels, ts, vs));
        }
        let meta = w
            .finish(0, 5_000_000, 0, vec![], BlockOrigin::Head)
            .unwrap();
        assert_eq!((meta.num_series, meta.num_samples), (50, 50_000));
        let mut interner = Interner::default();
        let mut intern = |p: &[(&str, &str)]| interner.series_labels_from_pairs(p);
        let b = Block::open(&bdir, &mut intern).unwrap();
        let m = [Matcher::equal("i", "007")];
        let ids = b.matching(&m, 10_000, 20_000);
        let mut got = Vec::new();
        b.read_series(&ids, 10_000, 20_000, |id, t, v| got.push((id, t, v)))
            .unwrap();
        assert_eq!(got, vec![(7, vec![10_002, 15_000], vec![14.25, 21.25])]);
        // Every series, every sample.
        let ids = b.matching(&[], i64::MIN, i64::MAX);
        let mut n = 0;
        b.read_series(&ids, i64::MIN, i64::MAX, |id, t, v| {
            assert_eq!(t, all[id as usize].1);
            assert_eq!(v, all[id as usize].2);
            n += 1;
        })
        .unwrap();
        assert_eq!(n, 50);
    }

    #[test]
    fn series_table_spans_several_record_batches() {
        let dir = tempfile::tempdir().unwrap();
        let bdir = dir.path().join("b");
        let mut w = BlockWriter::create(&bdir).unwrap();
        let n = 2 * SERIES_BATCH_ROWS + 5;
        for i in 0..n {
            let labels = Labels::from_pairs([("__name__", "m"), ("i", &format!("{i:06}"))]);
            w.push(&labels, &[i as i64, i as i64 + 10], &[1.0, i as f64])
                .unwrap();
        }
        let meta = w.finish(0, 100_000, 0, vec![], BlockOrigin::Head).unwrap();
        assert_eq!(meta.num_series, n as u64);
        let mut interner = Interner::default();
        let mut intern = |p: &[(&str, &str)]| interner.series_labels_from_pairs(p);
        let b = Block::open(&bdir, &mut intern).unwrap();
        let last = format!("{:06}", n - 1);
        let ids = b.matching(&[Matcher::equal("i", &last)], i64::MIN, i64::MAX);
        assert_eq!(ids, vec![n as u32 - 1]);
        let mut got = Vec::new();
        b.read_series(&ids, i64::MIN, i64::MAX, |_, t, v| {
            got.push((t.to_vec(), v.to_vec()))
        })
        .unwrap();
        let t = (n - 1) as i64;
        assert_eq!(got, vec![(vec![t, t + 10], vec![1.0, t as f64])]);
        // Series 0-5 span t=5. Spans are kept in 255ths of the block (65 ms here),
        // so series that start within one of it may be listed too; reading them
        // finds the one sample at t=5 (series 5's).
        let ids = b.matching(&[], 5, 5);
        assert!(ids.starts_with(&[0, 1, 2, 3, 4, 5]) && ids.len() <= 6 + 65);
        let mut with_samples = 0;
        b.read_series(&ids, 5, 5, |_, _, _| with_samples += 1)
            .unwrap();
        assert_eq!(with_samples, 1);
    }

    #[test]
    fn series_table_rows_stay_small() {
        // Every live block holds one per series.
        assert_eq!(std::mem::size_of::<BlockSeries>(), 16);
    }

    #[test]
    fn series_spans_round_outward() {
        let meta = |mint, maxt| BlockMeta {
            format_version: BLOCK_FORMAT_VERSION,
            range_start: 0,
            range_end: 0,
            mint,
            maxt,
            num_series: 1,
            num_samples: 1,
            level: 0,
            sources: vec![],
            files: BTreeMap::new(),
            origin: BlockOrigin::Head,
        };
        // A 2 h block: granules of 28,236 ms.
        let block = meta(7_200_000, 14_399_999);
        let whole = SeriesSpan::new(&block, 7_200_000, 14_399_999);
        assert_eq!((whole.first, whole.last), (0, 255));
        assert!(whole.overlaps(&block, 14_399_999, i64::MAX));
        assert!(whole.overlaps(&block, i64::MIN, 7_200_000));
        // Samples from 10:00 to 20:00 into the block: yes inside, and within a
        // granule outside; no further out.
        let s = SeriesSpan::new(&block, 7_800_000, 8_400_000);
        assert!(s.overlaps(&block, 8_000_000, 8_000_000));
        assert!(s.overlaps(&block, 7_795_000, 7_795_000));
        assert!(s.overlaps(&block, 8_410_000, 9_000_000));
        assert!(!s.overlaps(&block, 7_200_000, 7_700_000));
        assert!(!s.overlaps(&block, 8_500_000, 9_000_000));
        // Exact at any span, never overflowing.
        let all = meta(i64::MIN, i64::MAX);
        let far = SeriesSpan::new(&all, i64::MAX - 5, i64::MAX);
        assert!(far.overlaps(&all, i64::MAX, i64::MAX));
        assert!(!far.overlaps(&all, 0, 1000));
        let one = meta(5, 5);
        let s = SeriesSpan::new(&one, 5, 5);
        assert!(s.overlaps(&one, 5, 5) && !s.overlaps(&one, 6, 9) && !s.overlaps(&one, 0, 4));
    }

    #[test]
    fn blocks_with_the_same_series_share_postings() {
        let dir = tempfile::tempdir().unwrap();
        let mut interner = Interner::default();
        let mut open = |name: &str, hosts: &[&str], t0: i64| {
            let bdir = dir.path().join(name);
            let mut w = BlockWriter::create(&bdir).unwrap();
            for h in hosts {
                let labels = Labels::from_pairs([("__name__", "up"), ("host", h)]);
                w.push(&labels, &[t0, t0 + 5], &[1.0, 2.0]).unwrap();
            }
            w.finish(t0, t0 + 10, 0, vec![], BlockOrigin::Head).unwrap();
            let mut intern = |p: &[(&str, &str)]| interner.series_labels_from_pairs(p);
            Block::open(&bdir, &mut intern).unwrap()
        };
        let a = open("a", &["h1", "h2", "h3"], 0);
        let mut b = open("b", &["h1", "h2", "h3"], 10);
        let mut c = open("c", &["h1", "h3", "h4"], 20);
        let mut d = open("d", &["h1", "h2"], 30);
        assert!(b.share_postings(&a) && Arc::ptr_eq(&a.postings, &b.postings));
        assert!(!c.share_postings(&a) && !d.share_postings(&a));
        let m = [Matcher::equal("host", "h2")];
        assert_eq!(b.matching(&m, 10, 20), vec![1]);
        assert_eq!(c.matching(&[Matcher::equal("host", "h4")], 20, 30), vec![2]);
        assert_eq!(d.matching(&m, 30, 40), vec![1]);
    }

    #[test]
    fn damage_and_versions_are_reported_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bdir = dir.path().join("b");
        let mut w = BlockWriter::create(&bdir).unwrap();
        w.push(&Labels::from_pairs([("a", "b")]), &[1, 2], &[1.0, 2.0])
            .unwrap();
        w.finish(0, 10, 0, vec![], BlockOrigin::Head).unwrap();
        let mut interner = Interner::default();
        let mut intern = |p: &[(&str, &str)]| interner.series_labels_from_pairs(p);
        let samples = bdir.join("samples.arrow");
        let mut data = std::fs::read(&samples).unwrap();
        let mid = data.len() / 2;
        data[mid] ^= 0x55;
        std::fs::write(&samples, &data).unwrap();
        let err = Block::open(&bdir, &mut intern).err().unwrap().to_string();
        assert!(
            err.contains("samples.arrow") && err.contains("checksum"),
            "{err}"
        );

        let meta = bdir.join("meta.json");
        let text = std::fs::read_to_string(&meta).unwrap();
        std::fs::write(
            &meta,
            text.replace("\"format_version\": 1", "\"format_version\": 7"),
        )
        .unwrap();
        let err = Block::open(&bdir, &mut intern).err().unwrap();
        assert!(
            matches!(err, BlockError::UnknownVersion { found: 7, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("meta.json"));
    }
}
