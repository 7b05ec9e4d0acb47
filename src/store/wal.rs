//! The write-ahead log: numbered segment files of framed records.
//!
//! Frame: `len: u32 LE | crc32(payload): u32 LE | payload` where `payload[0]` is the
//! record type. A frame that is short or fails its CRC ends the readable part of a
//! segment: replay keeps everything before it, logs the file and offset, and cuts the
//! file there so new segments never follow garbage.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::model::labels::{Label, Labels};

pub const REC_SERIES: u8 = 1;
pub const REC_SAMPLES: u8 = 2;

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

/// Where a segment stopped being readable.
pub struct Damage {
    pub offset: usize,
    pub reason: &'static str,
}

/// Calls `f` with each intact record payload; returns where the segment is damaged,
/// if it is. Stops at the first bad frame.
pub fn read_records(data: &[u8], mut f: impl FnMut(&[u8])) -> Option<Damage> {
    let mut pos = 0;
    while pos < data.len() {
        let Some(header) = data.get(pos..pos + FRAME_HEADER) else {
            return Some(Damage {
                offset: pos,
                reason: "truncated frame header",
            });
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len == 0 && crc == 0 && data[pos..].iter().all(|&b| b == 0) {
            // Zero fill after a crash on a filesystem that extended the file first.
            return Some(Damage {
                offset: pos,
                reason: "zero-filled tail",
            });
        }
        if len == 0 || len > MAX_RECORD {
            return Some(Damage {
                offset: pos,
                reason: "invalid record length",
            });
        }
        let Some(payload) = data.get(pos + FRAME_HEADER..pos + FRAME_HEADER + len) else {
            return Some(Damage {
                offset: pos,
                reason: "truncated record",
            });
        };
        if crc32fast::hash(payload) != crc {
            return Some(Damage {
                offset: pos,
                reason: "checksum mismatch",
            });
        }
        f(payload);
        pos += FRAME_HEADER + len;
    }
    None
}

pub fn frame(out: &mut impl Write, payload: &[u8]) -> std::io::Result<()> {
    out.write_all(&(payload.len() as u32).to_le_bytes())?;
    out.write_all(&crc32fast::hash(payload).to_le_bytes())?;
    out.write_all(payload)
}

/// The open segment being appended to.
pub struct WalWriter {
    dir: PathBuf,
    seq: u64,
    file: BufWriter<File>,
    size: u64,
    segment_max: u64,
    /// Per closed or open segment: the newest sample timestamp in it.
    pub segment_maxt: Vec<(u64, i64)>,
}

impl WalWriter {
    /// Starts a new segment numbered `seq` (never appends to an old one).
    pub fn create(dir: &Path, seq: u64, segment_max: u64) -> std::io::Result<WalWriter> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(segment_path(dir, seq))?;
        sync_dir(dir)?;
        Ok(WalWriter {
            dir: dir.to_path_buf(),
            seq,
            file: BufWriter::with_capacity(1 << 20, file),
            size: 0,
            segment_max,
            segment_maxt: vec![(seq, i64::MIN)],
        })
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes one record. `maxt` is the newest sample timestamp in it, if any.
    pub fn write(&mut self, payload: &[u8], maxt: Option<i64>) -> std::io::Result<()> {
        frame(&mut self.file, payload)?;
        self.size += (FRAME_HEADER + payload.len()) as u64;
        if let (Some(t), Some(last)) = (maxt, self.segment_maxt.last_mut()) {
            last.1 = last.1.max(t);
        }
        Ok(())
    }

    /// Whether the segment is full and the caller should [`rotate`](Self::rotate)
    /// at the next record boundary.
    pub fn is_full(&self) -> bool {
        self.size >= self.segment_max
    }

    /// Pushes buffered records to the kernel and returns a handle to fsync them
    /// outside any lock.
    pub fn flush(&mut self) -> std::io::Result<File> {
        self.file.flush()?;
        self.file.get_ref().try_clone()
    }

    /// Closes the segment (fsynced) and starts the next one.
    pub fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()?;
        let next = self.seq + 1;
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(segment_path(&self.dir, next))?;
        sync_dir(&self.dir)?;
        self.file = BufWriter::with_capacity(1 << 20, file);
        self.seq = next;
        self.size = 0;
        self.segment_maxt.push((next, i64::MIN));
        Ok(())
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
    fn damaged_frames_stop_reading() {
        let mut data = Vec::new();
        frame(&mut data, b"\x01abc").unwrap();
        frame(&mut data, b"\x02defg").unwrap();
        let good = data.len();
        frame(&mut data, b"\x02hijk").unwrap();
        // Flip a payload byte of the third record.
        let n = data.len();
        data[n - 1] ^= 0xff;
        let mut seen = Vec::new();
        let d = read_records(&data, |p| seen.push(p.to_vec())).unwrap();
        assert_eq!(
            (seen.len(), d.offset, d.reason),
            (2, good, "checksum mismatch")
        );
        let d = read_records(&data[..good + 5], |_| {}).unwrap();
        assert_eq!(d.reason, "truncated frame header");
        assert!(read_records(&data[..good], |_| {}).is_none());
    }
}
