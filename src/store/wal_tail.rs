//! Reading the WAL as it is written, for a consumer that follows it (the remote
//! write sender), as Prometheus's WAL watcher does: from a position, up to what
//! the writer has handed to the kernel, segment after segment.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::wal::{self, Cursor, REC_SAMPLES, REC_SERIES};
use crate::model::labels::Labels;

/// A place in the WAL: a segment and the byte offset of a record in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct WalPosition {
    pub segment: u64,
    pub offset: u64,
}

/// One sample of a samples record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WalSample {
    pub id: u32,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// A record as a follower sees it.
#[derive(Debug)]
pub enum WalRecord {
    /// Series definitions: id and labels.
    Series(Vec<(u32, Labels)>),
    Samples(Vec<WalSample>),
}

/// What one [`WalTail::read`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TailRead {
    /// Bytes consumed.
    pub bytes: u64,
    /// Segments that were deleted before they were read: `(first, last)`.
    pub skipped_segments: Option<(u64, u64)>,
    /// Damaged bytes skipped.
    pub damaged_bytes: u64,
    /// Records whose checksum held but which could not be decoded, or of the old
    /// XOR'd sample format, which only a reader of the whole segment can decode.
    pub undecodable_records: u64,
}

/// The most bytes one read takes in, unless one record is larger.
const READ_CHUNK: u64 = 8 << 20;

/// Follows the WAL of a store from a position.
pub struct WalTail {
    dir: PathBuf,
    pos: WalPosition,
    /// The open segment file and its number.
    file: Option<(u64, File)>,
}

impl WalTail {
    pub fn new(wal_dir: &Path, start: WalPosition) -> WalTail {
        WalTail {
            dir: wal_dir.to_path_buf(),
            pos: start,
            file: None,
        }
    }

    pub fn position(&self) -> WalPosition {
        self.pos
    }

    /// Reads the whole records between the position and `end` (the writer's end,
    /// [`Store::wal_end`](super::Store::wal_end)), up to about 8 MiB, calling `f`
    /// with each record and the position after it. Segments before `end`'s are
    /// closed and read to their end; a torn frame at the end of one is skipped.
    pub fn read(
        &mut self,
        end: WalPosition,
        mut f: impl FnMut(WalRecord, WalPosition),
    ) -> std::io::Result<TailRead> {
        let mut out = TailRead::default();
        if self.pos.segment > end.segment {
            // The WAL was replaced (a data directory emptied): start at its end.
            self.pos = end;
            self.file = None;
        }
        if self.pos.segment < end.segment {
            self.skip_deleted(&mut out)?;
        }
        let seg = self.pos.segment;
        let closed = seg < end.segment;
        let file = match &mut self.file {
            Some((s, file)) if *s == seg => file,
            _ => match File::open(wal::segment_path(&self.dir, seg)) {
                Ok(file) => &mut self.file.insert((seg, file)).1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if closed {
                        // Deleted between the listing and the open.
                        self.next_segment();
                    }
                    return Ok(out);
                }
                Err(e) => return Err(e),
            },
        };
        let len = file.metadata()?.len();
        let limit = if closed { len } else { end.offset.min(len) };
        if self.pos.offset >= limit {
            if closed {
                self.next_segment();
            }
            return Ok(out);
        }
        let mut want = (limit - self.pos.offset).min(READ_CHUNK);
        let data = loop {
            let mut data = vec![0u8; want as usize];
            file.seek(SeekFrom::Start(self.pos.offset))?;
            file.read_exact(&mut data)?;
            if wal::whole_frames(&data) > 0 {
                break data;
            }
            let rest = limit - self.pos.offset;
            match wal::first_frame_len(&data) {
                // One record larger than a chunk: read it whole.
                Some(n) if n > want && n <= rest => want = n,
                // Damage: look at everything up to the limit, to skip it.
                _ if want < rest => want = rest,
                _ => break data,
            }
        };
        let whole = wal::whole_frames(&data);
        // Whole frames only; with none (damage, or a torn tail of a closed
        // segment) everything read, which skipping damage ends at an intact frame
        // or the limit.
        let data = if whole > 0 { &data[..whole] } else { &data[..] };
        let base = self.pos.offset;
        let damage = wal::read_records_at(data, |payload, end, _| {
            let after = WalPosition {
                segment: seg,
                offset: base + end as u64,
            };
            match decode(payload) {
                Some(Some(rec)) => f(rec, after),
                Some(None) => {}
                None => out.undecodable_records += 1,
            }
        });
        out.damaged_bytes += damage.iter().map(|d| d.len as u64).sum::<u64>();
        self.pos.offset += data.len() as u64;
        out.bytes += data.len() as u64;
        if closed && self.pos.offset >= limit {
            self.next_segment();
        }
        Ok(out)
    }

    fn next_segment(&mut self) {
        self.pos = WalPosition {
            segment: self.pos.segment + 1,
            offset: 0,
        };
        self.file = None;
    }

    /// When the position's segment is gone (truncated away after a cut), moves to
    /// the first segment after it that is still there.
    fn skip_deleted(&mut self, out: &mut TailRead) -> std::io::Result<()> {
        if wal::segment_path(&self.dir, self.pos.segment).exists() {
            return Ok(());
        }
        let segments = wal::list_segments(&self.dir)?;
        let Some(&next) = segments.iter().find(|&&s| s > self.pos.segment) else {
            return Ok(());
        };
        out.skipped_segments = Some((self.pos.segment, next - 1));
        self.pos = WalPosition {
            segment: next,
            offset: 0,
        };
        self.file = None;
        Ok(())
    }
}

/// `Some(None)`: a record a follower has no use for.
fn decode(payload: &[u8]) -> Option<Option<WalRecord>> {
    let mut c = Cursor::new(&payload[1..]);
    match payload[0] {
        REC_SERIES => {
            let mut series = Vec::new();
            let mut intern = |s: &str| Arc::<str>::from(s);
            while !c.at_end() {
                series.push(wal::decode_series(&mut c, &mut intern)?);
            }
            Some(Some(WalRecord::Series(series)))
        }
        REC_SAMPLES => {
            let base = c.varint()?;
            let mut samples = Vec::new();
            let mut id = 0i64;
            while !c.at_end() {
                id = id.wrapping_add(c.varint()?);
                let t = base.wrapping_add(c.varint()?);
                let bits = wal::get_standalone_value(&mut c)?;
                samples.push(WalSample {
                    id: u32::try_from(id).ok()?,
                    timestamp_ms: t,
                    value: f64::from_bits(bits),
                });
            }
            Some(Some(WalRecord::Samples(samples)))
        }
        wal::REC_SAMPLES_XOR => None,
        _ => Some(None),
    }
}
