//! The write-ahead log: numbered segment files of framed records.
//!
//! Frame: `len: u32 LE | crc32(payload): u32 LE | payload` where `payload[0]` is the
//! record type. A frame that is short or fails its CRC starts a damaged stretch that
//! reading skips up to the next intact frame ([`read_records`]); the writer cuts a
//! failed write back off the file ([`WalWriter`]), so a segment never holds a torn
//! frame followed by good ones.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::model::labels::{Label, Labels};

pub const REC_SERIES: u8 = 1;
/// Samples whose values are XOR'd with the series' previous value in the segment
/// (read, no longer written: a lost record made every later value of its series in
/// the segment unreadable).
pub const REC_SAMPLES_XOR: u8 = 2;
/// Samples whose values stand alone ([`put_standalone_value`]), so a damaged record
/// costs only its own samples.
pub const REC_SAMPLES: u8 = 3;
/// The first record of a checkpoint: the id the next new series gets, so that
/// replay knows how far good series ids reach ([`REC_SERIES`] ids past it, by more
/// than a gap, are damage).
pub const REC_NEXT_ID: u8 = 4;

const FRAME_HEADER: usize = 8;
/// A frame larger than this is treated as corruption (a scrape batch is far smaller).
const MAX_RECORD: usize = 256 << 20;
pub const CHECKPOINT: &str = "checkpoint";

// ---- varints ------------------------------------------------------------------------

#[inline]
pub fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

#[inline]
pub fn put_varint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

/// A cursor over a record payload; every read is checked.
pub struct Cursor<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Cursor<'a> {
        Cursor { buf, pos: 0 }
    }
    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }
    #[inline]
    pub fn uvarint(&mut self) -> Option<u64> {
        // Most varints of chunks and records are one byte.
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Some(b as u64);
            }
        }
        let mut out = 0u64;
        let mut shift = 0;
        loop {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            if shift >= 64 {
                return None;
            }
            out |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Some(out);
            }
            shift += 7;
        }
    }
    #[inline]
    pub fn varint(&mut self) -> Option<i64> {
        let u = self.uvarint()?;
        Some(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
    #[inline]
    pub fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    pub fn str(&mut self) -> Option<&'a str> {
        let n = self.uvarint()? as usize;
        std::str::from_utf8(self.bytes(n)?).ok()
    }
}

// ---- record payloads ----------------------------------------------------------------

/// Appends one series definition to a `REC_SERIES` payload (which starts with the type byte).
pub fn encode_series(buf: &mut Vec<u8>, id: u32, labels: &Labels) {
    put_uvarint(buf, id as u64);
    put_uvarint(buf, labels.len() as u64);
    for l in labels {
        put_uvarint(buf, l.name.len() as u64);
        buf.extend_from_slice(l.name.as_bytes());
        put_uvarint(buf, l.value.len() as u64);
        buf.extend_from_slice(l.value.as_bytes());
    }
}

pub fn decode_series(
    c: &mut Cursor,
    intern: &mut dyn FnMut(&str) -> std::sync::Arc<str>,
) -> Option<(u32, Labels)> {
    let id = u32::try_from(c.uvarint()?).ok()?;
    let n = c.uvarint()? as usize;
    if n > 1 << 16 {
        return None;
    }
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let name = intern(c.str()?);
        let value = intern(c.str()?);
        labels.push(Label { name, value });
    }
    Some((id, Labels::new(labels)))
}

/// Encodes a value as the XOR with the series' previous WAL value: a trailing-zero
/// count byte (64 = identical) and the remaining bits as a varint. Typically 1–4 bytes.
/// Writes old-format (XOR) values; tests use it to make old segments.
#[cfg(test)]
#[inline]
pub fn put_xor_value(buf: &mut Vec<u8>, prev: u64, v: u64) {
    let x = prev ^ v;
    if x == 0 {
        buf.push(64);
    } else {
        let tz = x.trailing_zeros();
        buf.push(tz as u8);
        put_uvarint(buf, x >> tz);
    }
}

const POW10: [f64; 10] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
/// Scale tag of a value written as its raw 8 bytes.
const RAW_VALUE: u64 = 15;

/// Encodes a value on its own: a uvarint of `zigzag(i) << 4 | s` when the value's
/// bits are exactly `i / 10^s` (s ≤ 9, |i| < 2^53), else the tag 15 and the raw bits
/// (8 bytes LE). Small integers and short decimals take 1–5 bytes.
#[inline]
pub fn put_standalone_value(buf: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        for (s, p) in POW10.iter().enumerate() {
            let scaled = v * p;
            if scaled.abs() >= (1u64 << 53) as f64 {
                break;
            }
            if scaled == scaled.round() {
                let i = scaled as i64;
                if (i as f64 / p).to_bits() == v.to_bits() {
                    let z = ((i << 1) ^ (i >> 63)) as u64;
                    put_uvarint(buf, (z << 4) | s as u64);
                    return;
                }
            }
        }
    }
    put_uvarint(buf, RAW_VALUE);
    buf.extend_from_slice(&v.to_bits().to_le_bytes());
}

#[inline]
pub fn get_standalone_value(c: &mut Cursor) -> Option<u64> {
    let h = c.uvarint()?;
    let s = (h & 15) as usize;
    if h == RAW_VALUE {
        let b = c.bytes(8)?;
        return Some(u64::from_le_bytes(b.try_into().ok()?));
    }
    let p = POW10.get(s)?;
    let z = h >> 4;
    let i = ((z >> 1) as i64) ^ -((z & 1) as i64);
    Some((i as f64 / p).to_bits())
}

#[inline]
pub fn get_xor_value(c: &mut Cursor, prev: u64) -> Option<u64> {
    let tz = c.byte()?;
    if tz == 64 {
        return Some(prev);
    }
    if tz > 63 {
        return None;
    }
    Some(prev ^ (c.uvarint()? << tz))
}

// ---- segments -----------------------------------------------------------------------

pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:08}"))
}

/// Segment numbers present in `dir`, ascending.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if let Some(seq) = e.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) {
            out.push(seq);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// A damaged stretch of a segment: skipped, and everything around it read.
#[derive(Debug, PartialEq, Eq)]
pub struct Damage {
    pub offset: usize,
    /// Bytes skipped, up to the next intact frame or the end of the data.
    pub len: usize,
    pub reason: &'static str,
}

impl Damage {
    /// Whether nothing readable follows it.
    pub fn reaches_end(&self, data_len: usize) -> bool {
        self.offset + self.len >= data_len
    }
}

/// Why the frame at `pos` cannot be read, if it cannot; else its payload length.
fn check_frame(data: &[u8], pos: usize) -> Result<usize, &'static str> {
    let Some(header) = data.get(pos..pos + FRAME_HEADER) else {
        return Err("truncated frame header");
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 || len > MAX_RECORD {
        return Err("invalid record length");
    }
    let Some(payload) = data.get(pos + FRAME_HEADER..pos + FRAME_HEADER + len) else {
        return Err("truncated record");
    };
    if !matches!(
        payload[0],
        REC_SERIES | REC_SAMPLES_XOR | REC_SAMPLES | REC_NEXT_ID
    ) {
        return Err("unknown record type");
    }
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch");
    }
    Ok(len)
}

/// Calls `f` with each intact record payload, and whether a damaged stretch came
/// before it in `data`. A frame that cannot be read is skipped up to the next
/// intact one (found by trying every offset), so damage costs only the records it
/// hit. Returns the damaged stretches.
pub fn read_records(data: &[u8], mut f: impl FnMut(&[u8], bool)) -> Vec<Damage> {
    read_records_at(data, |payload, _, after_damage| f(payload, after_damage))
}

/// As [`read_records`], also giving each record's end offset in `data`.
pub fn read_records_at(data: &[u8], mut f: impl FnMut(&[u8], usize, bool)) -> Vec<Damage> {
    let mut damage = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        match check_frame(data, pos) {
            Ok(len) => {
                let end = pos + FRAME_HEADER + len;
                f(&data[pos + FRAME_HEADER..end], end, !damage.is_empty());
                pos = end;
            }
            Err(reason) => {
                // Zero fill after a crash on a filesystem that extended the file first.
                let zero_tail = data[pos..].iter().all(|&b| b == 0);
                let reason = if zero_tail {
                    "zero-filled tail"
                } else {
                    reason
                };
                let next = if zero_tail {
                    data.len()
                } else {
                    (pos + 1..data.len())
                        .find(|&p| check_frame(data, p).is_ok())
                        .unwrap_or(data.len())
                };
                damage.push(Damage {
                    offset: pos,
                    len: next - pos,
                    reason,
                });
                pos = next;
            }
        }
    }
    damage
}

/// The length of the frame at the start of `data` (header included), when its
/// header is there and declares a possible length.
pub fn first_frame_len(data: &[u8]) -> Option<u64> {
    let header = data.get(..FRAME_HEADER)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    (len != 0 && len <= MAX_RECORD).then_some((FRAME_HEADER + len) as u64)
}

/// How many bytes at the start of `data` are frames whose declared length lies
/// wholly inside it (checksums are not checked).
pub fn whole_frames(data: &[u8]) -> usize {
    let mut pos = 0usize;
    while let Some(len) = data.get(pos..).and_then(first_frame_len) {
        let end = pos + len as usize;
        if end > data.len() {
            break;
        }
        pos = end;
    }
    pos
}

pub fn frame(out: &mut impl Write, payload: &[u8]) -> std::io::Result<()> {
    out.write_all(&(payload.len() as u32).to_le_bytes())?;
    out.write_all(&crc32fast::hash(payload).to_le_bytes())?;
    out.write_all(payload)
}

/// Where a segment's bytes go: a file, or in tests a file that fails on purpose.
pub trait SegmentFile: Send {
    /// Writes all of `buf` at `offset`; on error some prefix of it may be written.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()>;
    fn set_len(&self, len: u64) -> std::io::Result<()>;
    /// A handle to fsync the segment outside any lock.
    fn sync_handle(&self) -> std::io::Result<File>;
}

impl SegmentFile for File {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, buf, offset)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        File::set_len(self, len)
    }
    fn sync_handle(&self) -> std::io::Result<File> {
        self.try_clone()
    }
}

/// Creates (truncating) the segment file at a path.
pub type SegmentOpener = dyn Fn(&Path) -> std::io::Result<Box<dyn SegmentFile>> + Send + Sync;

fn open_segment_file(path: &Path) -> std::io::Result<Box<dyn SegmentFile>> {
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)?;
    Ok(Box::new(file))
}

/// Records kept in memory are written once they reach this size.
const WRITE_BUFFER: usize = 1 << 20;
/// While writes fail, records wait in memory up to this size; past it the waiting
/// samples records are dropped (series records are kept: later samples need them).
const MAX_PENDING: usize = 256 << 20;

/// The open segment being appended to.
///
/// Records are gathered in memory as whole frames and written at a record
/// boundary. A write that fails (a full disk) is rolled back: the file is cut to
/// the end of the last record written whole, and the records stay in memory to be
/// written again later, so a segment never holds a torn frame followed by good
/// ones. If the cut fails too, the next write starts a new segment.
pub struct WalWriter {
    dir: PathBuf,
    seq: u64,
    file: Box<dyn SegmentFile>,
    open: std::sync::Arc<SegmentOpener>,
    /// Bytes of whole records in the file.
    written: u64,
    /// Whole frames not yet in the file.
    pending: Vec<u8>,
    /// The file may end in a torn frame that could not be cut off.
    torn: bool,
    segment_max: u64,
    /// Samples records dropped because writes kept failing, since open.
    pub lost_records: u64,
    /// Per closed or open segment: the newest sample timestamp in it.
    pub segment_maxt: Vec<(u64, i64)>,
}

impl WalWriter {
    /// Starts a new segment numbered `seq` (never appends to an old one).
    pub fn create(dir: &Path, seq: u64, segment_max: u64) -> std::io::Result<WalWriter> {
        Self::create_with(
            dir,
            seq,
            segment_max,
            std::sync::Arc::new(open_segment_file),
        )
    }

    /// As [`create`](Self::create), with the files made by `open`.
    pub fn create_with(
        dir: &Path,
        seq: u64,
        segment_max: u64,
        open: std::sync::Arc<SegmentOpener>,
    ) -> std::io::Result<WalWriter> {
        let file = open(&segment_path(dir, seq))?;
        sync_dir(dir)?;
        Ok(WalWriter {
            dir: dir.to_path_buf(),
            seq,
            file,
            open,
            written: 0,
            pending: Vec::new(),
            torn: false,
            segment_max,
            lost_records: 0,
            segment_maxt: vec![(seq, i64::MIN)],
        })
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The end of the records in the file: everything before it is whole frames.
    pub fn end(&self) -> super::wal_tail::WalPosition {
        super::wal_tail::WalPosition {
            segment: self.seq,
            offset: self.written,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Adds one record. `maxt` is the newest sample timestamp in it, if any. An
    /// error means the records could not be written yet; they are kept and written
    /// with the next record or flush that succeeds.
    pub fn write(&mut self, payload: &[u8], maxt: Option<i64>) -> std::io::Result<()> {
        frame(&mut self.pending, payload)?;
        if let (Some(t), Some(last)) = (maxt, self.segment_maxt.last_mut()) {
            last.1 = last.1.max(t);
        }
        if self.pending.len() >= WRITE_BUFFER {
            self.write_pending()?;
        }
        Ok(())
    }

    /// Writes the records waiting in memory; on failure cuts the file back to its
    /// last whole record.
    fn write_pending(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.torn {
            // The records waiting were counted in the torn segment's newest time.
            let maxt = self.segment_maxt.last().map_or(i64::MIN, |s| s.1);
            self.start_segment(self.seq + 1)?;
            if let Some(last) = self.segment_maxt.last_mut() {
                last.1 = maxt;
            }
        }
        match self.file.write_all_at(&self.pending, self.written) {
            Ok(()) => {
                self.written += self.pending.len() as u64;
                self.pending.clear();
                Ok(())
            }
            Err(e) => {
                if self.file.set_len(self.written).is_err() {
                    self.torn = true;
                }
                if self.pending.len() > MAX_PENDING {
                    self.drop_pending_samples();
                }
                Err(e)
            }
        }
    }

    /// Keeps only the series records among those waiting.
    fn drop_pending_samples(&mut self) {
        let mut kept = Vec::new();
        let mut dropped = 0u64;
        read_records(&self.pending, |p, _| {
            if p[0] == REC_SERIES {
                // Writing into a Vec cannot fail.
                let _ = frame(&mut kept, p);
            } else {
                dropped += 1;
            }
        });
        self.pending = kept;
        self.lost_records += dropped;
    }

    fn start_segment(&mut self, seq: u64) -> std::io::Result<()> {
        let file = (self.open)(&segment_path(&self.dir, seq))?;
        sync_dir(&self.dir)?;
        self.file = file;
        self.seq = seq;
        self.written = 0;
        self.torn = false;
        self.segment_maxt.push((seq, i64::MIN));
        Ok(())
    }

    /// Whether the segment is full and the caller should [`rotate`](Self::rotate)
    /// at the next record boundary.
    pub fn is_full(&self) -> bool {
        self.written + self.pending.len() as u64 >= self.segment_max
    }

    /// Pushes the records to the kernel and returns a handle to fsync them
    /// outside any lock.
    pub fn flush(&mut self) -> std::io::Result<File> {
        self.write_pending()?;
        self.file.sync_handle()
    }

    /// Closes the segment (fsynced) and starts the next one.
    pub fn rotate(&mut self) -> std::io::Result<()> {
        self.flush()?.sync_data()?;
        self.start_segment(self.seq + 1)
    }
    /// Deletes closed segments whose samples are all older than `t` (they are in
    /// blocks now). The open segment is never deleted.
    pub fn delete_segments_before(&mut self, t: i64) -> std::io::Result<usize> {
        let current = self.seq;
        let mut deleted = 0;
        let mut keep = Vec::new();
        for &(seq, maxt) in &self.segment_maxt {
            if seq != current && maxt < t {
                match std::fs::remove_file(segment_path(&self.dir, seq)) {
                    Ok(()) => deleted += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            } else {
                keep.push((seq, maxt));
            }
        }
        self.segment_maxt = keep;
        Ok(deleted)
    }
}

/// Writes the checkpoint (series definitions of the live head) atomically.
pub fn write_checkpoint(dir: &Path, payloads: &[Vec<u8>]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{CHECKPOINT}.tmp"));
    {
        let mut f = BufWriter::new(File::create(&tmp)?);
        for p in payloads {
            frame(&mut f, p)?;
        }
        f.flush()?;
        f.get_ref().sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(CHECKPOINT))?;
    sync_dir(dir)
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_xor_round_trip() {
        let mut b = Vec::new();
        for v in [0i64, 1, -1, 63, -64, i64::MAX, i64::MIN, 5000] {
            put_varint(&mut b, v);
        }
        let prevs = [0u64, 1.0f64.to_bits(), 0x7ff0_0000_0000_0002, u64::MAX];
        for &p in &prevs {
            for &v in &prevs {
                put_xor_value(&mut b, p, v);
            }
        }
        let mut c = Cursor::new(&b);
        for v in [0i64, 1, -1, 63, -64, i64::MAX, i64::MIN, 5000] {
            assert_eq!(c.varint(), Some(v));
        }
        for &p in &prevs {
            for &v in &prevs {
                assert_eq!(get_xor_value(&mut c, p), Some(v));
            }
        }
        assert!(c.at_end());
    }

    #[test]
    fn standalone_values_round_trip_every_bit_pattern() {
        let values = [
            0.0,
            -0.0,
            1.0,
            -1.5,
            0.1,
            0.123,
            12.5,
            123456789.0,
            1e15,
            9007199254740993.0,
            1e300,
            f64::MIN_POSITIVE,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            f64::from_bits(0x7ff0_0000_0000_0002),
            std::f64::consts::PI,
        ];
        let mut b = Vec::new();
        for v in values {
            put_standalone_value(&mut b, v);
        }
        let mut c = Cursor::new(&b);
        for v in values {
            assert_eq!(get_standalone_value(&mut c), Some(v.to_bits()), "{v}");
        }
        assert!(c.at_end());
        // Counters and short decimals stay small.
        for (v, most) in [(0.0, 1), (1.0, 1), (0.123, 2), (123456789.0, 5)] {
            let mut b = Vec::new();
            put_standalone_value(&mut b, v);
            assert!(b.len() <= most, "{v}: {} bytes", b.len());
        }
    }

    fn records(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let mut p = vec![REC_SAMPLES];
                p.extend(std::iter::repeat_n(i as u8, 20 + i % 7));
                p
            })
            .collect()
    }

    fn read_all(data: &[u8]) -> (Vec<Vec<u8>>, Vec<Damage>) {
        let mut seen = Vec::new();
        let damage = read_records(data, |p, _| seen.push(p.to_vec()));
        (seen, damage)
    }

    #[test]
    fn damaged_frames_cost_only_themselves() {
        let recs = records(30);
        let mut data = Vec::new();
        let mut starts = Vec::new();
        for r in &recs {
            starts.push(data.len());
            frame(&mut data, r).unwrap();
        }
        // Ten flipped bytes in record 10 (payload), a broken length in record 20.
        for k in 0..10 {
            data[starts[10] + FRAME_HEADER + 2 + k] ^= 0x5a;
        }
        data[starts[20]..starts[20] + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let (seen, damage) = read_all(&data);
        let expected: Vec<Vec<u8>> = recs
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 10 && *i != 20)
            .map(|(_, r)| r.clone())
            .collect();
        assert_eq!(seen, expected);
        assert_eq!(
            damage,
            vec![
                Damage {
                    offset: starts[10],
                    len: starts[11] - starts[10],
                    reason: "checksum mismatch"
                },
                Damage {
                    offset: starts[20],
                    len: starts[21] - starts[20],
                    reason: "invalid record length"
                },
            ]
        );
        // A torn last record and a zero-filled tail reach the end.
        let torn = &data[..starts[29] + 5];
        let (seen, damage) = read_all(torn);
        assert_eq!(seen.len(), 27);
        assert!(damage[2].reaches_end(torn.len()), "{damage:?}");
        let mut zeros = data[..starts[29]].to_vec();
        zeros.resize(zeros.len() + 4096, 0);
        let (_, damage) = read_all(&zeros);
        assert_eq!(damage[2].reason, "zero-filled tail");
        assert!(read_all(&data[..starts[10]]).1.is_empty());
    }

    /// A segment file that accepts `budget` more bytes, writes a prefix of the
    /// write that passes it and fails with "no space" (as a full disk does), and
    /// accepts writes again once the test raises the budget.
    struct FillingFile {
        file: File,
        budget: std::sync::Arc<std::sync::atomic::AtomicU64>,
    }

    impl SegmentFile for FillingFile {
        fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
            use std::sync::atomic::Ordering;
            let room = self.budget.load(Ordering::SeqCst) as usize;
            let n = buf.len().min(room);
            std::os::unix::fs::FileExt::write_all_at(&self.file, &buf[..n], offset)?;
            self.budget.fetch_sub(n as u64, Ordering::SeqCst);
            if n < buf.len() {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            Ok(())
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.file.set_len(len)
        }
        fn sync_handle(&self) -> std::io::Result<File> {
            self.file.try_clone()
        }
    }

    fn filling_writer(
        dir: &Path,
        budget: &std::sync::Arc<std::sync::atomic::AtomicU64>,
        truncate_fails: bool,
    ) -> WalWriter {
        let budget = budget.clone();
        let open: std::sync::Arc<SegmentOpener> = std::sync::Arc::new(move |path: &Path| {
            let file = open_segment_file_plain(path)?;
            let f = FillingFile {
                file,
                budget: budget.clone(),
            };
            if truncate_fails {
                Ok(Box::new(NoTruncate(f)) as Box<dyn SegmentFile>)
            } else {
                Ok(Box::new(f) as Box<dyn SegmentFile>)
            }
        });
        WalWriter::create_with(dir, 1, 64 << 20, open).unwrap()
    }

    fn open_segment_file_plain(path: &Path) -> std::io::Result<File> {
        OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)
    }

    /// A file whose truncation fails too.
    struct NoTruncate(FillingFile);

    impl SegmentFile for NoTruncate {
        fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
            self.0.write_all_at(buf, offset)
        }
        fn set_len(&self, _: u64) -> std::io::Result<()> {
            Err(std::io::Error::from_raw_os_error(5))
        }
        fn sync_handle(&self) -> std::io::Result<File> {
            self.0.sync_handle()
        }
    }

    /// Writes `recs` through a disk that fills after `room` bytes and gets room
    /// again halfway; returns every segment's records in order.
    fn write_through_full_disk(room: u64, truncate_fails: bool) -> (Vec<Vec<u8>>, Vec<Damage>) {
        use std::sync::atomic::{AtomicU64, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let budget = std::sync::Arc::new(AtomicU64::new(room));
        let mut w = filling_writer(dir.path(), &budget, truncate_fails);
        let recs = records(60);
        let mut failures = 0;
        for (i, r) in recs.iter().enumerate() {
            w.write(r, Some(i as i64)).unwrap();
            if w.flush().is_err() {
                failures += 1;
            }
            if i == 30 {
                budget.store(u64::MAX / 2, Ordering::SeqCst);
            }
        }
        w.flush().unwrap();
        assert!(failures > 0, "the disk never filled");
        let mut seen = Vec::new();
        let mut damage = Vec::new();
        for seq in list_segments(dir.path()).unwrap() {
            let data = std::fs::read(segment_path(dir.path(), seq)).unwrap();
            damage.extend(read_records(&data, |p, _| seen.push(p.to_vec())));
        }
        assert_eq!(seen, recs, "records lost or reordered");
        (seen, damage)
    }

    #[test]
    fn a_full_disk_loses_no_record_and_leaves_no_torn_frame() {
        for room in [0, 5, 100, 301, 777] {
            let (_, damage) = write_through_full_disk(room, false);
            assert!(damage.is_empty(), "room {room}: {damage:?}");
        }
    }

    #[test]
    fn a_torn_frame_that_cannot_be_cut_ends_its_segment() {
        for room in [5, 100, 301] {
            let (_, damage) = write_through_full_disk(room, true);
            // The torn frame stays at the end of its segment, readable around.
            assert_eq!(damage.len(), 1, "room {room}: {damage:?}");
        }
    }

    #[test]
    fn waiting_samples_past_the_limit_are_dropped_and_series_kept() {
        use std::sync::atomic::AtomicU64;
        let dir = tempfile::tempdir().unwrap();
        let budget = std::sync::Arc::new(AtomicU64::new(0));
        let mut w = filling_writer(dir.path(), &budget, false);
        let series = [REC_SERIES, 1, 1, b'a'];
        let samples = vec![REC_SAMPLES; 1 << 20];
        let mut writes = 0;
        while w.lost_records == 0 {
            let _ = w.write(&series, None);
            let _ = w.write(&samples, Some(1));
            writes += 1;
            assert!(writes < 1000, "never dropped");
        }
        budget.store(u64::MAX / 2, std::sync::atomic::Ordering::SeqCst);
        w.flush().unwrap();
        let data = std::fs::read(segment_path(dir.path(), w.seq())).unwrap();
        let mut kinds = (0, 0);
        assert!(read_records(&data, |p, _| if p[0] == REC_SERIES {
            kinds.0 += 1
        } else {
            kinds.1 += 1
        })
        .is_empty());
        assert_eq!(kinds, (writes, 0));
    }
}
