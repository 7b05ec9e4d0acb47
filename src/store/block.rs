//! Immutable on-disk blocks: Arrow IPC files (ZSTD) of series-sorted, transformed
//! sample columns, plus a `meta.json` with the time range, counts and file checksums.
//!
//! Layout of a block directory `blocks/b<mint>_<maxt>/`:
//! - `meta.json`: [`BlockMeta`].
//! - `series.arrow`: record batches of ≤ [`SERIES_BATCH_ROWS`] rows (older blocks:
//!   one batch), one row per series, sorted by labels:
//!   `labels` (binary, varint-length-prefixed name/value pairs), `mint`, `maxt`,
//!   `batch` and `row` (its row in that batch of `samples.arrow`; in format 1 the
//!   row of its first sample), `count`,
//!   `vmode` and `vscale` (how its values are encoded).
//! - `samples.arrow`: record batches of ≤ [`BATCH_ROWS`] samples and ≤ [`BATCH_SERIES`]
//!   series (a series never spans two batches), one row per series, columns `t` and
//!   `v`, both Binary: each a series' transformed samples as varints.
//!   - `t`: first timestamp, then the delta, then deltas-of-deltas (zigzag varints).
//!     Regular scrapes give runs of zero bytes and scrape jitter a few small ones,
//!     which ZSTD packs into well under a byte.
//!   - `v`: when every value of the series is a decimal with ≤ 9 fractional digits
//!     that round-trips bit-exactly as `int / 10^scale` (counters, gauges printed
//!     with few decimals: almost all exporter output), the scaled integers as deltas
//!     (`vmode` 1, gauges) or deltas-of-deltas (`vmode` 2, steady counters), whichever
//!     is smaller, as zigzag varints; otherwise (NaN, staleness markers, ±Inf, -0,
//!     long fractions) the raw bits XOR the previous value's bits (`vmode` 0) as
//!     unsigned varints, bit-exact.
//!
//!   Format 1 (still read, no longer written) kept the same transformed integers as
//!   Int64 columns, one row per sample: 16 bytes a sample for ZSTD to decompress,
//!   where varints are 2–3, and up to twice the size on disk (see
//!   docs/performance.md).
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
use super::wal::{put_uvarint, put_varint, Cursor};
use crate::model::labels::{Labels, Matcher};

/// The block format this code writes.
pub const BLOCK_FORMAT_VERSION: u32 = 2;
/// The oldest block format this code reads.
pub const OLDEST_BLOCK_FORMAT: u32 = 1;
/// Samples per sample record batch: a batch is the unit a query decompresses.
pub const BATCH_ROWS: usize = 16 * 1024;
/// Series per sample record batch, in blocks of short series (freshly cut, lowered
/// block range); series of a full 2 h block fill [`BATCH_ROWS`] first. A heavy
/// query pays a fixed cost a batch (a read, four ZSTD frames' entropy tables); a
/// light one decompresses a whole batch for each series it reads, once (the series
/// cache keeps what it decoded). Larger batches speed heavy queries and slow light
/// ones; 256 gained most of the heavy queries' gain for a small cost to light ones
/// (see docs/performance.md).
pub const BATCH_SERIES: u32 = 256;
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
        "{path}: block format version {found} is not supported (this arrowmon reads versions \
         {OLDEST_BLOCK_FORMAT} to {BLOCK_FORMAT_VERSION}); it was written by a newer arrowmon"
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

pub(super) fn decode_ts(mut col: impl Iterator<Item = i64>, out: &mut Vec<i64>) {
    let Some(mut t) = col.next() else { return };
    out.push(t);
    let Some(mut d) = col.next() else { return };
    t = t.wrapping_add(d);
    out.push(t);
    for x in col {
        d = d.wrapping_add(x);
        t = t.wrapping_add(d);
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

pub(super) fn decode_values(
    mut col: impl Iterator<Item = i64>,
    vmode: u8,
    vscale: u8,
    out: &mut Vec<f64>,
) {
    if vmode == 0 {
        let mut prev = 0u64;
        for x in col {
            prev ^= x as u64;
            out.push(f64::from_bits(prev));
        }
        return;
    }
    // Division, not multiplication by 1/p: it is what round-trips bit-exactly.
    let p = 10f64.powi(vscale.min(MAX_SCALE) as i32);
    let Some(mut x) = col.next() else { return };
    out.push(x as f64 / p);
    if vmode == 1 {
        for d in col {
            x = x.wrapping_add(d);
            out.push(x as f64 / p);
        }
        return;
    }
    let Some(mut d) = col.next() else { return };
    x = x.wrapping_add(d);
    out.push(x as f64 / p);
    for dd in col {
        d = d.wrapping_add(dd);
        x = x.wrapping_add(d);
        out.push(x as f64 / p);
    }
}

/// Appends a transformed column as varints: zigzag for the signed deltas, plain for
/// XOR'd bits (`vmode` 0), whose sign bit is just another bit.
fn put_varints(col: &[i64], zigzag: bool, out: &mut Vec<u8>) {
    for &x in col {
        if zigzag {
            put_varint(out, x);
        } else {
            put_uvarint(out, x as u64);
        }
    }
}

/// Reads back what [`put_varints`] wrote: at most `left` values (the series table's
/// count). It ends early at the end of the bytes or at a malformed varint, so the
/// reader checks [`Varints::complete`] afterwards.
struct Varints<'a, const ZIGZAG: bool> {
    bytes: Cursor<'a>,
    left: usize,
}

impl<'a, const ZIGZAG: bool> Varints<'a, ZIGZAG> {
    fn new(bytes: &'a [u8], count: usize) -> Self {
        Varints {
            bytes: Cursor::new(bytes),
            left: count,
        }
    }

    /// A varint of more than one byte (or the end). With 8 bytes at hand it is
    /// decoded without a branch per byte: gauges mix lengths, which the cursor's
    /// byte loop mispredicts. Out of line, so the one-byte path inlines into the
    /// decoders.
    #[inline(never)]
    fn long_uvarint(&mut self) -> Option<u64> {
        let c = &mut self.bytes;
        if let Some(word) = c.buf.get(c.pos..).and_then(|b| b.first_chunk::<8>()) {
            let w = u64::from_le_bytes(*word);
            let stops = !w & 0x8080_8080_8080_8080;
            if stops != 0 {
                // Up to and including the first byte without a continuation bit.
                let x = w & (stops ^ (stops - 1)) & 0x7f7f_7f7f_7f7f_7f7f;
                let mut u = 0;
                for k in 0..8 {
                    u |= (x >> k) & (0x7f << (7 * k));
                }
                c.pos += (stops.trailing_zeros() / 8 + 1) as usize;
                return Some(u);
            }
        }
        c.uvarint()
    }

    /// Whether every promised value was read and every byte used.
    fn complete(&self) -> bool {
        self.left == 0 && self.bytes.at_end()
    }
}

impl<const ZIGZAG: bool> Iterator for Varints<'_, ZIGZAG> {
    type Item = i64;
    // The hot loop of a block read: kept small enough to inline into the decoders.
    #[inline(always)]
    fn next(&mut self) -> Option<i64> {
        if self.left == 0 {
            return None;
        }
        let c = &mut self.bytes;
        let u = match c.buf.get(c.pos) {
            // Timestamps and steady counters: almost every varint is one byte.
            Some(&b) if b < 0x80 => {
                c.pos += 1;
                b as u64
            }
            _ => self.long_uvarint()?,
        };
        self.left -= 1;
        Some(if ZIGZAG {
            ((u >> 1) as i64) ^ -((u & 1) as i64)
        } else {
            u as i64
        })
    }
}

// ---- writing ------------------------------------------------------------------------

fn samples_schema(format_version: u32) -> Arc<Schema> {
    let column = if format_version == 1 {
        DataType::Int64
    } else {
        DataType::Binary
    };
    Arc::new(Schema::new(vec![
        Field::new("t", column.clone(), false),
        Field::new("v", column, false),
    ]))
}

/// A Binary column being filled, one value at a time.
#[derive(Default)]
struct BinaryColumn {
    bytes: Vec<u8>,
    offsets: Vec<i32>,
}

impl BinaryColumn {
    /// Ends the current value. Errs when the column outgrows Arrow's 32-bit offsets.
    fn end_value(&mut self) -> Result<(), std::num::TryFromIntError> {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.offsets.push(i32::try_from(self.bytes.len())?);
        Ok(())
    }

    fn take(&mut self) -> BinaryArray {
        let mut offsets = std::mem::take(&mut self.offsets);
        if offsets.is_empty() {
            offsets.push(0);
        }
        // Offsets start at 0 and never decrease: end_value pushes lengths as they grow.
        BinaryArray::new(
            arrow_buffer::OffsetBuffer::new(arrow_buffer::ScalarBuffer::from(offsets)),
            arrow_buffer::Buffer::from_vec(std::mem::take(&mut self.bytes)),
            None,
        )
    }
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
    t_col: BinaryColumn,
    v_col: BinaryColumn,
    /// One series' transformed timestamps or values, before they become varints.
    transformed: Vec<i64>,
    batch: u32,
    /// Series and samples in the batch being filled.
    batch_series: u32,
    batch_samples: usize,
    /// The label sets of the pending series-table batch.
    labels_col: BinaryColumn,
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
            &samples_schema(BLOCK_FORMAT_VERSION),
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
            t_col: BinaryColumn::default(),
            v_col: BinaryColumn::default(),
            transformed: Vec::new(),
            batch: 0,
            batch_series: 0,
            batch_samples: 0,
            labels_col: BinaryColumn::default(),
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
        if self.batch_series == 0 {
            return Ok(());
        }
        let path = self.dir.join("samples.arrow");
        let (t, v) = (self.t_col.take(), self.v_col.take());
        RecordBatch::try_new(
            samples_schema(BLOCK_FORMAT_VERSION),
            vec![Arc::new(t), Arc::new(v)],
        )
        .and_then(|b| self.samples.write(&b))
        .map_err(|source| BlockError::Arrow { path, source })?;
        self.batch += 1;
        self.batch_series = 0;
        self.batch_samples = 0;
        Ok(())
    }

    /// Adds one series; series must come in increasing label order, samples in
    /// increasing time order. Empty series are skipped.
    pub fn push(&mut self, labels: &Labels, ts: &[i64], vs: &[f64]) -> Result<(), BlockError> {
        if ts.is_empty() {
            return Ok(());
        }
        if self.batch_series > 0
            && (self.batch_samples + ts.len() > BATCH_ROWS || self.batch_series >= BATCH_SERIES)
        {
            self.flush_batch()?;
        }
        let too_big = |file: &str, what: &'static str| {
            let path = self.dir.join(file);
            move |_| corrupt(&path, format!("{what} of one record batch exceed 2 GiB"))
        };
        let row = self.batch_series;
        self.transformed.clear();
        encode_ts(ts, &mut self.transformed);
        put_varints(&self.transformed, true, &mut self.t_col.bytes);
        self.t_col
            .end_value()
            .map_err(too_big("samples.arrow", "timestamps"))?;
        self.transformed.clear();
        let (vmode, vscale) = encode_values(vs, &mut self.transformed);
        put_varints(&self.transformed, vmode != 0, &mut self.v_col.bytes);
        self.v_col
            .end_value()
            .map_err(too_big("samples.arrow", "values"))?;
        let lb = &mut self.labels_col.bytes;
        for l in labels {
            put_uvarint(lb, l.name.len() as u64);
            lb.extend_from_slice(l.name.as_bytes());
            put_uvarint(lb, l.value.len() as u64);
            lb.extend_from_slice(l.value.as_bytes());
        }
        self.labels_col
            .end_value()
            .map_err(too_big("series.arrow", "label sets"))?;
        self.batch_samples += ts.len();
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
        let arrow = |source| BlockError::Arrow {
            path: path.clone(),
            source,
        };
        let labels = self.labels_col.take();
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
/// consecutive series).
pub struct BlockSeries {
    pub labels: SeriesLabels,
    count: u32,
    /// Where its samples start in its batch: the series' row (format 2, below
    /// [`BATCH_SERIES`]), or the sample row (format 1, 16 bits because a batch holds
    /// at most [`BATCH_ROWS`] rows whenever a series does not start it).
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
    /// Which block this is, among every block the process opens: no two take the
    /// same, also when one replaces another under the same name.
    pub uid: u64,
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

/// The most rows a count read from a file may reserve room for before the rows
/// themselves are read.
const MAX_PRESIZED_ROWS: u64 = 1 << 16;

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
    if !(OLDEST_BLOCK_FORMAT..=BLOCK_FORMAT_VERSION).contains(&v.format_version) {
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
    format_version: u32,
    batches: Vec<arrow_ipc::Block>,
}

/// An Arrow IPC file's schema and record batch blocks from its footer, each block
/// checked to lie inside the file.
fn ipc_file_batches(
    file: &File,
    path: &Path,
) -> Result<(arrow_schema::Schema, Vec<arrow_ipc::Block>), BlockError> {
    use std::os::unix::fs::FileExt;
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
    Ok((schema, batches))
}

/// The record batch header of an IPC message as a block stores it: the
/// continuation marker and length (or, in the oldest layout, only the length),
/// then the flatbuffer.
fn ipc_message(meta: &[u8]) -> Result<arrow_ipc::Message<'_>, String> {
    let message = if meta.starts_with(&[0xff; 4]) {
        meta.get(8..)
    } else {
        meta.get(4..)
    };
    arrow_ipc::root_as_message(message.unwrap_or_default())
        .map_err(|e| format!("unreadable IPC message: {e}"))
}

/// Checks a series file's compressed buffers before Arrow's reader decodes them:
/// Arrow allocates each buffer's stated uncompressed length at once, so a damaged
/// or crafted length would ask for any amount of memory (an abort, not an error).
/// arrowmon writes ZSTD, whose frames expand at most 32768-fold (a 4-byte RLE
/// block of 128 KiB); a stated length past that is damage, as is another codec.
fn check_series_buffers(path: &Path) -> Result<(), BlockError> {
    use std::os::unix::fs::FileExt;
    let file = File::open(path).map_err(io_err(path))?;
    let (_, batches) = ipc_file_batches(&file, path)?;
    let mut meta = Vec::new();
    for (i, b) in batches.iter().enumerate() {
        let bad = |what: String| corrupt(path, format!("batch {i}: {what}"));
        meta.resize(b.metaDataLength() as usize, 0);
        file.read_exact_at(&mut meta, b.offset() as u64)
            .map_err(io_err(path))?;
        let message = ipc_message(&meta).map_err(bad)?;
        let Some(batch) = message.header_as_record_batch() else {
            return Err(bad("not a record batch".into()));
        };
        match batch.compression().map(|c| c.codec()) {
            None => continue,
            Some(arrow_ipc::CompressionType::ZSTD) => {}
            Some(other) => return Err(bad(format!("compressed with {other:?}, not ZSTD"))),
        }
        let body_start = b.offset() as u64 + b.metaDataLength() as u64;
        for (k, desc) in batch.buffers().into_iter().flatten().enumerate() {
            if desc.length() < 8 {
                continue;
            }
            if desc.offset() < 0
                || (desc.offset() as u64 + desc.length() as u64) > b.bodyLength() as u64
            {
                return Err(bad(format!("buffer {k} lies outside the batch")));
            }
            let mut prefix = [0u8; 8];
            file.read_exact_at(&mut prefix, body_start + desc.offset() as u64)
                .map_err(io_err(path))?;
            let stated = i64::from_le_bytes(prefix);
            let most = (desc.length() as u64 - 8) * 32_768 + 131_072;
            if stated < -1 || stated as u64 > most && stated != -1 {
                return Err(bad(format!(
                    "buffer {k}: stated uncompressed length {stated} is out of bounds for {} compressed bytes",
                    desc.length() - 8
                )));
            }
        }
    }
    Ok(())
}

impl SampleFile {
    fn open(path: &Path, format_version: u32) -> Result<SampleFile, BlockError> {
        let file = File::open(path).map_err(io_err(path))?;
        let (schema, batches) = ipc_file_batches(&file, path)?;
        if schema.fields() != samples_schema(format_version).fields() {
            return Err(corrupt(path, format!("unexpected columns {schema:?}")));
        }
        Ok(SampleFile {
            path: path.to_path_buf(),
            file,
            format_version,
            batches,
        })
    }

    /// Reads batch `i` into `into`: its `t` and `v` buffers, decompressed. `limit`
    /// bounds each buffer's stated uncompressed length, so a damaged length prefix is
    /// an error rather than a huge allocation.
    fn load_batch(&self, i: u32, limit: usize, into: &mut SampleBatch) -> Result<(), BlockError> {
        use std::os::unix::fs::FileExt;
        let path = &self.path;
        into.index = None;
        let b = self
            .batches
            .get(i as usize)
            .ok_or_else(|| corrupt(path, format!("no batch {i}")))?;
        // Offsets and lengths were checked against the file size at open.
        let meta_len = b.metaDataLength() as usize;
        into.raw.resize(meta_len + b.bodyLength() as usize, 0);
        self.file
            .read_exact_at(&mut into.raw, b.offset() as u64)
            .map_err(io_err(path))?;
        let bad = |what: String| corrupt(path, format!("batch {i}: {what}"));
        let (meta, body) = into.raw.split_at(meta_len);
        // An IPC message: the continuation marker and length (or, in the oldest
        // layout, only the length), then the flatbuffer.
        let message = ipc_message(meta).map_err(bad)?;
        let batch = message
            .header_as_record_batch()
            .ok_or_else(|| bad("not a record batch".into()))?;
        let compressed = match batch.compression().map(|c| c.codec()) {
            None => false,
            Some(arrow_ipc::CompressionType::ZSTD) => true,
            Some(other) => return Err(bad(format!("compressed with {other:?}, not ZSTD"))),
        };
        let buffers = batch
            .buffers()
            .ok_or_else(|| bad("no buffer list".into()))?;
        // Each column's buffers in IPC order: validity, then (Binary) offsets, then
        // values. The validity buffers are empty: the columns have no nulls.
        let SampleBatch { t, v, .. } = into;
        t.offsets.clear();
        v.offsets.clear();
        let wanted = if self.format_version == 1 {
            vec![(1, &mut t.values), (3, &mut v.values)]
        } else {
            vec![
                (1, &mut t.offsets),
                (2, &mut t.values),
                (4, &mut v.offsets),
                (5, &mut v.values),
            ]
        };
        for (k, out) in wanted {
            let desc = (k < buffers.len()).then(|| buffers.get(k)).ok_or_else(|| {
                bad(format!(
                    "{} buffers, not enough for two columns",
                    buffers.len()
                ))
            })?;
            let src = (desc.offset() as usize)
                .checked_add(desc.length() as usize)
                .and_then(|end| body.get(desc.offset() as usize..end))
                .ok_or_else(|| bad(format!("buffer {k} lies outside the batch")))?;
            decompress_buffer(src, compressed, limit, out)
                .map_err(|e| bad(format!("buffer {k}: {e}")))?;
        }
        into.rows =
            usize::try_from(batch.length()).map_err(|_| bad("negative row count".into()))?;
        into.index = Some(i);
        Ok(())
    }
}

/// A sample batch as a query reads it: its `t` and `v` columns' buffers,
/// decompressed into memory kept from the batch read before. Arrow's own decoder
/// would create a ZSTD context for every batch (a CPUID, which a virtual machine
/// traps, and some 100 KB of tables), allocate every buffer anew and check every
/// row's offsets, where a light query reads one row of each batch it decompresses.
#[derive(Default)]
pub struct SampleBatch {
    /// The batch loaded, if any.
    index: Option<u32>,
    rows: usize,
    t: ColumnBuffers,
    v: ColumnBuffers,
    /// The batch as read from the file.
    raw: Vec<u8>,
}

/// A column's buffers: Binary (format 2) offsets (little-endian i32) and bytes, or
/// Int64 (format 1) values (little-endian) with no offsets.
#[derive(Default)]
struct ColumnBuffers {
    offsets: Vec<u8>,
    values: Vec<u8>,
}

impl ColumnBuffers {
    /// Row `row`'s bytes of a Binary column.
    fn binary_value(&self, row: usize) -> Option<&[u8]> {
        let offset = |r: usize| {
            let b = self.offsets.get(r * 4..r * 4 + 4)?;
            usize::try_from(i32::from_le_bytes(b.try_into().ok()?)).ok()
        };
        self.values.get(offset(row)?..offset(row + 1)?)
    }

    /// Rows `lo..hi` of an Int64 column.
    fn int64_values(&self, lo: usize, hi: usize) -> Option<impl Iterator<Item = i64> + '_> {
        let bytes = self.values.get(lo.checked_mul(8)?..hi.checked_mul(8)?)?;
        Some(
            bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default())),
        )
    }
}

thread_local! {
    /// The thread's ZSTD decompression context, kept between batches and queries.
    static ZSTD: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// An IPC body buffer into `out`: as stored, or (compressed) its 8-byte
/// little-endian uncompressed length (-1: stored as is) and a ZSTD frame.
fn decompress_buffer(
    src: &[u8],
    compressed: bool,
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    out.clear();
    if src.is_empty() {
        return Ok(());
    }
    if !compressed {
        out.extend_from_slice(src);
        return Ok(());
    }
    let (prefix, frame) = src
        .split_first_chunk::<8>()
        .ok_or("shorter than its length prefix")?;
    match i64::from_le_bytes(*prefix) {
        0 => Ok(()),
        -1 => {
            out.extend_from_slice(frame);
            Ok(())
        }
        n if n > 0 && n as u64 <= limit as u64 => {
            out.reserve(n as usize);
            ZSTD.with(|z| {
                let mut z = z.borrow_mut();
                let z = match &mut *z {
                    Some(z) => z,
                    empty => empty.insert(
                        zstd::bulk::Decompressor::new()
                            .map_err(|e| format!("no ZSTD context: {e}"))?,
                    ),
                };
                z.decompress_to_buffer(frame, out)
                    .map_err(|e| format!("ZSTD: {e}"))
            })?;
            if out.len() as u64 != n as u64 {
                return Err(format!("{} bytes decompressed, {n} stated", out.len()));
            }
            Ok(())
        }
        n => Err(format!("stated uncompressed length {n} is out of bounds")),
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
        check_series_buffers(&path)?;
        let f = File::open(&path).map_err(io_err(&path))?;
        let arrow = |source| BlockError::Arrow {
            path: path.clone(),
            source,
        };
        let reader = FileReader::try_new(BufReader::new(f), None).map_err(arrow)?;
        // meta.json's count is checked against the table below; until then it only
        // hints at a size, so a damaged one cannot ask for a huge allocation.
        let expected = meta.num_series.min(MAX_PRESIZED_ROWS) as usize;
        let mut series = Vec::with_capacity(expected);
        let mut spans = Vec::with_capacity(expected);
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
                // Readers take a stored set as it is: sorted, no name twice, no
                // empty value.
                if pairs.windows(2).any(|w| w[0].0 >= w[1].0)
                    || pairs.iter().any(|p| p.1.is_empty())
                {
                    return Err(corrupt(
                        &path,
                        format!("label set of row {i} is not sorted by name, repeats a name or has an empty value"),
                    ));
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
        let samples = SampleFile::open(&spath, meta.format_version)?;
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
        static NEXT_UID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Ok(Block {
            uid: NEXT_UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
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
        let mut batch = SampleBatch::default();
        for &id in ids {
            // The stored count only hints at a size (the samples are decoded and
            // checked against it while reading).
            let count = self
                .series
                .get(id as usize)
                .map_or(0, |s| (s.count as u64).min(MAX_PRESIZED_ROWS) as usize);
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
        batch: &mut SampleBatch,
        ts: &mut Vec<i64>,
        vs: &mut Vec<f64>,
    ) -> Result<(), BlockError> {
        let path = &self.samples.path;
        let s = self
            .series
            .get(id as usize)
            .ok_or_else(|| corrupt(path, format!("no series {id}")))?;
        let bi = self.batch_of(id as usize);
        if batch.index != Some(bi) {
            self.samples
                .load_batch(bi, self.batch_bytes_limit(bi), batch)?;
        }
        let start = ts.len();
        let count = s.count as usize;
        if self.meta.format_version == 1 {
            let (lo, hi) = (s.row as usize, s.row as usize + count);
            let (Some(tc), Some(vc)) = (batch.t.int64_values(lo, hi), batch.v.int64_values(lo, hi))
            else {
                return Err(corrupt(
                    path,
                    format!("rows {lo}..{hi} out of range in batch {bi}"),
                ));
            };
            decode_ts(tc, ts);
            decode_values(vc, s.vmode, s.vscale, vs);
        } else {
            let row = s.row as usize;
            let (Some(t), Some(v)) = (batch.t.binary_value(row), batch.v.binary_value(row)) else {
                return Err(corrupt(
                    path,
                    format!("row {row} of {} out of range in batch {bi}", batch.rows),
                ));
            };
            // Each sample takes at least a byte of `t`: a damaged count asks for no more.
            let room = count.min(t.len());
            ts.reserve(room);
            vs.reserve(room);
            let mut tc = Varints::<true>::new(t, count);
            decode_ts(&mut tc, ts);
            let values_whole = if s.vmode == 0 {
                let mut vc = Varints::<false>::new(v, count);
                decode_values(&mut vc, s.vmode, s.vscale, vs);
                vc.complete()
            } else {
                let mut vc = Varints::<true>::new(v, count);
                decode_values(&mut vc, s.vmode, s.vscale, vs);
                vc.complete()
            };
            if !tc.complete() || !values_whole {
                ts.truncate(start);
                vs.truncate(start);
                return Err(corrupt(
                    path,
                    format!(
                        "batch {bi}, row {row}: samples do not decode to the {} the series table lists",
                        s.count
                    ),
                ));
            }
        }
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

    /// The most bytes a buffer of sample batch `bi` can hold: ten (the longest
    /// varint) a sample, plus the Binary offsets.
    fn batch_bytes_limit(&self, bi: u32) -> usize {
        let first = self
            .batch_starts
            .get(bi as usize)
            .map_or(0, |&s| s as usize);
        let end = self
            .batch_starts
            .get(bi as usize + 1)
            .map_or(self.series.len(), |&s| s as usize);
        let series = self.series.get(first..end).unwrap_or_default();
        let samples: usize = series.iter().map(|s| s.count as usize).sum();
        10 * samples + 4 * (series.len() + 1) + 64
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
            decode_values(col.iter().copied(), mode, scale, &mut out);
            let a: Vec<u64> = vs.iter().map(|v| v.to_bits()).collect();
            let b: Vec<u64> = out.iter().map(|v| v.to_bits()).collect();
            assert_eq!(a, b, "mode {mode} scale {scale}");
        }
        let ts = vec![1000, 6000, 11001, 16000, 16001, -5];
        let mut col = Vec::new();
        encode_ts(&ts, &mut col);
        let mut out = Vec::new();
        decode_ts(col.iter().copied(), &mut out);
        assert_eq!(ts, out);
    }

    #[test]
    fn varints_round_trip_at_every_length_and_position() {
        let mut vals: Vec<i64> = vec![0, 1, -1, 63, -64, 64, 127, 128, i64::MIN, i64::MAX];
        for k in 0..64 {
            vals.extend([
                1i64 << k,
                (1i64 << k).wrapping_sub(1),
                (1i64 << k).wrapping_neg(),
                !(1i64 << k),
            ]);
        }
        // Every suffix, so each value is read with 8 bytes at hand and near the end.
        for zigzag in [true, false] {
            for skip in 0..vals.len() {
                let col = &vals[skip..];
                let mut bytes = Vec::new();
                put_varints(col, zigzag, &mut bytes);
                let got: Vec<i64> = if zigzag {
                    let mut v = Varints::<true>::new(&bytes, col.len());
                    let got = v.by_ref().collect();
                    assert!(v.complete());
                    got
                } else {
                    let mut v = Varints::<false>::new(&bytes, col.len());
                    let got = v.by_ref().collect();
                    assert!(v.complete());
                    got
                };
                assert_eq!(got, col, "zigzag {zigzag}, from {skip}");
            }
        }
        // Too few bytes, too many, an 11-byte varint: never complete, never a panic.
        let mut bytes = Vec::new();
        put_varints(&[300, 5], true, &mut bytes);
        let mut short = Varints::<true>::new(&bytes[..bytes.len() - 1], 2);
        assert_eq!(short.by_ref().count(), 1);
        assert!(!short.complete());
        let mut long = Varints::<true>::new(&bytes, 1);
        assert_eq!(long.by_ref().count(), 1);
        assert!(!long.complete());
        let endless = [0xffu8; 16];
        let mut bad = Varints::<false>::new(&endless, 1);
        assert_eq!(bad.next(), None);
        assert!(!bad.complete());
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
    fn sample_buffers_with_a_wrong_stated_length_are_an_error() {
        let frame = zstd::bulk::compress(&[7u8; 1000], 3).unwrap();
        let buffer = |len: i64, body: &[u8]| [&len.to_le_bytes()[..], body].concat();
        let mut out = vec![1, 2, 3];
        decompress_buffer(&buffer(1000, &frame), true, 2000, &mut out).unwrap();
        assert_eq!(out, [7u8; 1000]);
        decompress_buffer(&buffer(-1, b"as is"), true, 10, &mut out).unwrap();
        assert_eq!(out, b"as is");
        decompress_buffer(&buffer(0, b""), true, 10, &mut out).unwrap();
        assert!(out.is_empty());
        // A length beyond what the batch's samples can take is not allocated.
        let err = decompress_buffer(&buffer(1 << 40, &frame), true, 2000, &mut out).unwrap_err();
        assert!(err.contains("out of bounds"), "{err}");
        let err = decompress_buffer(&buffer(-2, &frame), true, 2000, &mut out).unwrap_err();
        assert!(err.contains("out of bounds"), "{err}");
        // A frame that holds fewer or more bytes than stated.
        let err = decompress_buffer(&buffer(1500, &frame), true, 2000, &mut out).unwrap_err();
        assert!(
            err.contains("1000 bytes decompressed, 1500 stated"),
            "{err}"
        );
        let err = decompress_buffer(&buffer(999, &frame), true, 2000, &mut out).unwrap_err();
        assert!(err.contains("1000 bytes decompressed, 999 stated"), "{err}");
        let err = decompress_buffer(&buffer(999, &frame), true, 2000, &mut Vec::new()).unwrap_err();
        assert!(err.contains("ZSTD"), "{err}");
        let err = decompress_buffer(&frame[..5], true, 2000, &mut out).unwrap_err();
        assert!(err.contains("prefix"), "{err}");
    }

    #[test]
    fn samples_that_do_not_match_the_series_table_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let bdir = dir.path().join("b");
        let mut w = BlockWriter::create(&bdir).unwrap();
        for i in 0..3 {
            let labels = Labels::from_pairs([("i", format!("{i}").as_str())]);
            w.push(&labels, &[1000, 2000, 3000], &[1.5, 2.5, f64::NAN])
                .unwrap();
        }
        w.finish(0, 10_000, 0, vec![], BlockOrigin::Head).unwrap();
        let mut interner = Interner::default();
        let mut intern = |p: &[(&str, &str)]| interner.series_labels_from_pairs(p);
        let mut b = Block::open(&bdir, &mut intern).unwrap();
        // As if the series table of a checksummed block disagreed with its samples.
        b.series[1].count = 4;
        b.series[2].count = 2;
        let mut batch = SampleBatch::default();
        for id in [1, 2] {
            let (mut ts, mut vs) = (vec![7], vec![7.0]);
            let err = b
                .append_series(id, i64::MIN, i64::MAX, &mut batch, &mut ts, &mut vs)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("samples.arrow") && err.contains(&format!("row {id}")),
                "{err}"
            );
            // What the caller had is kept; nothing half-decoded is left behind.
            assert_eq!((ts, vs), (vec![7], vec![7.0]));
        }
        let (mut ts, mut vs) = (vec![], vec![]);
        b.append_series(0, i64::MIN, i64::MAX, &mut batch, &mut ts, &mut vs)
            .unwrap();
        assert_eq!(ts, [1000, 2000, 3000]);
        assert_eq!(&vs[..2], [1.5, 2.5]);
        assert!(vs[2].is_nan());
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
        let version = format!("\"format_version\": {BLOCK_FORMAT_VERSION}");
        assert!(text.contains(&version), "{text}");
        std::fs::write(&meta, text.replace(&version, "\"format_version\": 7")).unwrap();
        let err = Block::open(&bdir, &mut intern).err().unwrap();
        assert!(
            matches!(err, BlockError::UnknownVersion { found: 7, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("meta.json"));
    }
}
