//! Closed head chunks on disk, so that the head's memory holds only the open chunk
//! of each series and a reference to its newest closed one.
//!
//! Chunks are appended to numbered segment files in `<dir>/chunks_head/` as records:
//!
//! ```text
//! crc32 u32 (of the rest) | count u16 | 0 u16 | first_t i64 | last_t i64
//! | prev: segment u32, offset u32, length u32 (length 0: none) | prev_last_t i64 | payload
//! ```
//!
//! (little-endian). Each record names the series' previous closed chunk, so a series
//! keeps one [`ChunkRef`] in memory however many chunks it has on disk, and a read
//! walks back from the newest chunk until the previous one ends before the range.
//! Records are read with positional reads, never mapped, so they cost page cache, not
//! process memory. Records not yet written to the file wait in the segment's pending
//! buffer, from which readers copy them.
//!
//! The files are not durable on their own: the WAL is, and at open the directory is
//! emptied and the head rebuilt from the WAL. A segment is deleted once every chunk in
//! it ends before the head's lower bound; readers hold a [`Snapshot`] of the open
//! files, so a segment deleted under a running query stays readable for it.

use std::fs::{File, OpenOptions};
use std::num::NonZeroU32;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::chunk::{decode_range, FrozenChunk};

/// The directory of the head chunk files, inside the store's directory.
pub const DIR: &str = "chunks_head";
/// Segments are never larger than this: offsets are `u32`.
const MAX_SEGMENT_BYTES: u64 = u32::MAX as u64;
/// Pending records are written to the file once they reach this size.
const FLUSH_BYTES: usize = 256 << 10;
const HEADER_BYTES: usize = 44;

#[derive(Debug, thiserror::Error)]
pub enum HeadChunkError {
    #[error("head chunk file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("head chunk file {path}, chunk at offset {offset}: {reason}")]
    Damaged {
        path: PathBuf,
        offset: u32,
        reason: &'static str,
    },
    #[error("head chunk file {path} is gone, but the head still refers to a chunk in it at offset {offset}")]
    Missing { path: PathBuf, offset: u32 },
}

/// Where a closed chunk's record lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    segment: u32,
    offset: u32,
    len: NonZeroU32,
}

/// Timestamps and values of one series, in time order.
pub type Samples = (Vec<i64>, Vec<f64>);

/// One series' closed chunks to read: the newest, and the time range wanted.
#[derive(Clone, Copy, Debug)]
pub struct ChainRead {
    pub newest: ChunkRef,
    pub mint: i64,
    pub maxt: i64,
    /// Samples the caller will append after these (the open chunk's), so the
    /// result is allocated once.
    pub room_after: usize,
}

/// The header of a chunk record.
#[derive(Clone, Copy, Debug)]
pub struct ChunkHeader {
    pub count: u16,
    pub first_t: i64,
    pub last_t: i64,
    /// The series' previous closed chunk, and when it ends.
    pub prev: Option<ChunkRef>,
    pub prev_last_t: i64,
}

struct Segment {
    seq: u32,
    path: PathBuf,
    file: File,
    /// Bytes written to the file; records past it are in `pending`.
    flushed: AtomicU64,
    /// Records not yet written to the file (all of them if writing failed).
    pending: Mutex<Vec<u8>>,
    /// The newest `last_t` of any chunk in the segment.
    max_last_t: AtomicI64,
}

/// The segments a reader may touch, kept open for as long as it holds this.
#[derive(Clone)]
pub struct Snapshot(Arc<Vec<Arc<Segment>>>);

struct Writer {
    current: Option<Arc<Segment>>,
    /// Logical size of the current segment (flushed plus pending).
    size: u64,
    next_seq: u32,
}

pub struct HeadChunkFiles {
    dir: PathBuf,
    /// A new segment is started past this size.
    segment_bytes: u64,
    writer: Mutex<Writer>,
    segments: RwLock<Snapshot>,
    /// The write failure while writing fails (logged once per streak, shown by the
    /// health check).
    write_failure: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> HeadChunkError + '_ {
    move |source| HeadChunkError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl HeadChunkFiles {
    /// Empties (creating) `dir`: what an earlier run left there is rebuilt from the WAL.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<HeadChunkFiles, HeadChunkError> {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(dir)(e)),
        }
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        Ok(HeadChunkFiles {
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.min(MAX_SEGMENT_BYTES),
            writer: Mutex::new(Writer {
                current: None,
                size: 0,
                next_seq: 1,
            }),
            segments: RwLock::new(Snapshot(Arc::new(Vec::new()))),
            write_failure: Mutex::new(None),
        })
    }

    /// The segments now; readers take this while the head guard is held.
    pub fn snapshot(&self) -> Snapshot {
        self.segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Appends a closed chunk that follows `prev` (ending at `prev_last_t`) in its series.
    pub fn write(
        &self,
        chunk: &FrozenChunk,
        prev: Option<ChunkRef>,
        prev_last_t: i64,
    ) -> Result<ChunkRef, HeadChunkError> {
        let len = HEADER_BYTES + chunk.bytes.len();
        let Some(len32) = u32::try_from(len).ok().and_then(NonZeroU32::new) else {
            return Err(HeadChunkError::Damaged {
                path: self.dir.clone(),
                offset: 0,
                reason: "chunk too large for a head chunk record",
            });
        };
        let mut w = lock(&self.writer);
        if w.current.is_none() || w.size + len as u64 > self.segment_bytes {
            if let Err(e) = self.rotate(&mut w) {
                if lock(&self.write_failure).replace(e.to_string()).is_none() {
                    tracing::error!(error = %e, "cannot start a head chunk file; closed chunks stay in memory");
                }
                return Err(e);
            }
        }
        let Some(seg) = w.current.clone() else {
            return Err(HeadChunkError::Missing {
                path: self.dir.clone(),
                offset: 0,
            });
        };
        let offset = w.size as u32;
        let mut pending = lock(&seg.pending);
        let start = pending.len();
        pending.extend_from_slice(&[0; 4]);
        pending.extend_from_slice(&chunk.count.to_le_bytes());
        pending.extend_from_slice(&[0; 2]);
        pending.extend_from_slice(&chunk.first_t.to_le_bytes());
        pending.extend_from_slice(&chunk.last_t.to_le_bytes());
        let (ps, po, pl) = prev.map_or((0, 0, 0), |p| (p.segment, p.offset, p.len.get()));
        pending.extend_from_slice(&ps.to_le_bytes());
        pending.extend_from_slice(&po.to_le_bytes());
        pending.extend_from_slice(&pl.to_le_bytes());
        pending.extend_from_slice(&prev_last_t.to_le_bytes());
        pending.extend_from_slice(&chunk.bytes);
        let crc = crc32fast::hash(&pending[start + 4..]);
        pending[start..start + 4].copy_from_slice(&crc.to_le_bytes());
        w.size += len as u64;
        seg.max_last_t.fetch_max(chunk.last_t, Ordering::AcqRel);
        if pending.len() >= FLUSH_BYTES {
            self.flush_pending(&seg, &mut pending);
        }
        Ok(ChunkRef {
            segment: seg.seq,
            offset,
            len: len32,
        })
    }

    /// Ends the current segment (writing out its pending records): the next write
    /// starts a new one.
    fn end_current(&self, w: &mut Writer) {
        if let Some(old) = w.current.take() {
            let mut pending = lock(&old.pending);
            self.flush_pending(&old, &mut pending);
        }
        w.size = 0;
    }

    /// Starts a new segment.
    fn rotate(&self, w: &mut Writer) -> Result<(), HeadChunkError> {
        self.end_current(w);
        let seq = w.next_seq;
        let path = self.dir.join(format!("{seq:08}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&path))?;
        w.next_seq += 1;
        let seg = Arc::new(Segment {
            seq,
            path,
            file,
            flushed: AtomicU64::new(0),
            pending: Mutex::new(Vec::new()),
            max_last_t: AtomicI64::new(i64::MIN),
        });
        let mut segments = self.segments.write().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<Arc<Segment>> = segments.0.iter().cloned().collect();
        list.push(seg.clone());
        *segments = Snapshot(Arc::new(list));
        w.current = Some(seg);
        w.size = 0;
        Ok(())
    }

    /// Writes a segment's pending records; on failure they stay pending (readable)
    /// and the write is tried again later.
    fn flush_pending(&self, seg: &Segment, pending: &mut Vec<u8>) {
        if pending.is_empty() {
            return;
        }
        let at = seg.flushed.load(Ordering::Acquire);
        match seg.file.write_all_at(pending, at) {
            Ok(()) => {
                seg.flushed
                    .store(at + pending.len() as u64, Ordering::Release);
                pending.clear();
                if pending.capacity() > 2 * FLUSH_BYTES {
                    pending.shrink_to(FLUSH_BYTES);
                }
                if lock(&self.write_failure).take().is_some() {
                    tracing::info!(dir = %self.dir.display(), "head chunk writes succeed again");
                }
            }
            Err(e) => {
                let msg = format!("{}: {e}", seg.path.display());
                if lock(&self.write_failure).replace(msg).is_none() {
                    tracing::error!(
                        file = %seg.path.display(), error = %e,
                        "cannot write head chunks; they stay in memory until a write succeeds"
                    );
                }
            }
        }
    }

    /// The current write failure, while writes fail.
    pub fn write_error(&self) -> Option<String> {
        lock(&self.write_failure).clone()
    }

    /// Writes every pending record now (also those whose write failed before).
    pub fn retry_pending(&self) {
        let _w = lock(&self.writer);
        for seg in self.snapshot().0.iter() {
            let mut pending = lock(&seg.pending);
            self.flush_pending(seg, &mut pending);
        }
    }

    /// Deletes the segments whose chunks all end before `t` (now in blocks), and
    /// ends the current one, so that it can go at a later cut: otherwise a file
    /// would live until it reached the segment size, holding chunks of many cuts
    /// ago (all of them, for a small head).
    pub fn delete_before(&self, t: i64) {
        let mut w = lock(&self.writer);
        if w.size > 0 {
            self.end_current(&mut w);
        }
        let current = w.current.as_ref().map(|s| s.seq);
        let mut segments = self.segments.write().unwrap_or_else(|e| e.into_inner());
        let (gone, kept): (Vec<Arc<Segment>>, Vec<Arc<Segment>>) = segments
            .0
            .iter()
            .cloned()
            .partition(|s| Some(s.seq) != current && s.max_last_t.load(Ordering::Acquire) < t);
        if gone.is_empty() {
            return;
        }
        *segments = Snapshot(Arc::new(kept));
        drop(segments);
        drop(w);
        // Readers holding a snapshot keep the file open; unlinking does not disturb them.
        for s in gone {
            if let Err(e) = std::fs::remove_file(&s.path) {
                tracing::warn!(file = %s.path.display(), error = %e, "cannot delete a head chunk file");
            }
        }
    }

    /// Bytes of the segments on disk or pending.
    #[cfg(test)]
    pub fn size_bytes(&self) -> u64 {
        self.snapshot()
            .0
            .iter()
            .map(|s| s.flushed.load(Ordering::Acquire) + lock(&s.pending).len() as u64)
            .sum()
    }

    /// Appends the bytes `[start, end)` of segment `seq` onto `out`: from the file, or
    /// for records not written yet from the pending buffer.
    fn read_range(
        &self,
        snap: &Snapshot,
        seq: u32,
        start: u64,
        end: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), HeadChunkError> {
        let list = &snap.0;
        let Ok(i) = list.binary_search_by_key(&seq, |s| s.seq) else {
            return Err(HeadChunkError::Missing {
                path: self.dir.join(format!("{seq:08}")),
                offset: start as u32,
            });
        };
        let seg = &list[i];
        let base = out.len();
        out.resize(base + (end - start) as usize, 0);
        let mut file_end = end;
        if end > seg.flushed.load(Ordering::Acquire) {
            // What is still pending is copied under its lock; what was written before
            // that moment is in the file for good.
            let pending = lock(&seg.pending);
            let flushed = seg.flushed.load(Ordering::Acquire);
            if end > flushed {
                let from = start.max(flushed);
                let src = pending.get((from - flushed) as usize..(end - flushed) as usize);
                let Some(src) = src else {
                    return Err(HeadChunkError::Damaged {
                        path: seg.path.clone(),
                        offset: start as u32,
                        reason: "chunk lies past the end of the segment",
                    });
                };
                out[base + (from - start) as usize..].copy_from_slice(src);
                file_end = from;
            }
        }
        if file_end > start {
            seg.file
                .read_exact_at(&mut out[base..base + (file_end - start) as usize], start)
                .map_err(io_err(&seg.path))?;
        }
        Ok(())
    }

    /// Checks a record's checksum and returns its header.
    fn parse(&self, seq: u32, offset: u32, rec: &[u8]) -> Result<ChunkHeader, HeadChunkError> {
        let damaged = |reason| HeadChunkError::Damaged {
            path: self.dir.join(format!("{seq:08}")),
            offset,
            reason,
        };
        if rec.len() < HEADER_BYTES {
            return Err(damaged("record shorter than its header"));
        }
        let le32 = |at: usize| u32::from_le_bytes([rec[at], rec[at + 1], rec[at + 2], rec[at + 3]]);
        let le64 = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&rec[at..at + 8]);
            i64::from_le_bytes(b)
        };
        if crc32fast::hash(&rec[4..]) != le32(0) {
            return Err(damaged("checksum mismatch"));
        }
        let prev = NonZeroU32::new(le32(32)).map(|len| ChunkRef {
            segment: le32(24),
            offset: le32(28),
            len,
        });
        Ok(ChunkHeader {
            count: u16::from_le_bytes([rec[4], rec[5]]),
            first_t: le64(8),
            last_t: le64(16),
            prev,
            prev_last_t: le64(36),
        })
    }

    /// Reads the closed chunks of many series at once and returns, for each request,
    /// the samples in its range in time order. Each series' chain is walked back one
    /// chunk per round; in a round the records are read in file order, and records
    /// that lie close together (chunks closed at about the same time) with one
    /// positional read, so a query over many series costs few system calls.
    pub fn read_chains(
        &self,
        snap: &Snapshot,
        reqs: &[ChainRead],
    ) -> Result<Vec<Samples>, HeadChunkError> {
        // Records further apart than this are read separately.
        const GAP: u64 = 4096;
        const MAX_READ: u64 = 1 << 20;
        let mut round: Vec<(u32, ChunkRef)> = reqs
            .iter()
            .enumerate()
            .map(|(i, r)| (i as u32, r.newest))
            .collect();
        // Bytes read per round, and the records found: (request, round, start, len, count).
        let mut arenas: Vec<Vec<u8>> = Vec::new();
        let mut found: Vec<(u32, u32, u32, u32, u16)> = Vec::new();
        while !round.is_empty() {
            round.sort_unstable_by_key(|(_, r)| (r.segment, r.offset));
            let mut arena = Vec::new();
            let mut next = Vec::new();
            let mut i = 0;
            while i < round.len() {
                let seq = round[i].1.segment;
                let start = round[i].1.offset as u64;
                let mut end = start + round[i].1.len.get() as u64;
                let mut j = i + 1;
                while j < round.len() {
                    let r = round[j].1;
                    let r_end = r.offset as u64 + r.len.get() as u64;
                    if r.segment != seq || r.offset as u64 > end + GAP || r_end - start > MAX_READ {
                        break;
                    }
                    end = end.max(r_end);
                    j += 1;
                }
                let base = arena.len();
                self.read_range(snap, seq, start, end, &mut arena)?;
                for &(req, r) in &round[i..j] {
                    let at = base + (r.offset as u64 - start) as usize;
                    let len = r.len.get() as usize;
                    let h = self.parse(seq, r.offset, &arena[at..at + len])?;
                    let want = &reqs[req as usize];
                    if h.first_t <= want.maxt && h.last_t >= want.mint {
                        let at = (at + HEADER_BYTES) as u32;
                        let n = (len - HEADER_BYTES) as u32;
                        found.push((req, arenas.len() as u32, at, n, h.count));
                    }
                    if let Some(p) = h.prev.filter(|_| h.prev_last_t >= want.mint) {
                        next.push((req, p));
                    }
                }
                i = j;
            }
            arenas.push(arena);
            round = next;
        }
        // Per request, older rounds hold older chunks.
        found.sort_unstable_by_key(|&(req, round, ..)| (req, std::cmp::Reverse(round)));
        let mut out: Vec<Samples> = Vec::with_capacity(reqs.len());
        out.resize_with(reqs.len(), Default::default);
        let mut sizes: Vec<usize> = reqs.iter().map(|r| r.room_after).collect();
        for &(req, _, _, _, count) in &found {
            sizes[req as usize] += count as usize;
        }
        for ((ts, vs), n) in out.iter_mut().zip(sizes) {
            ts.reserve_exact(n);
            vs.reserve_exact(n);
        }
        for (req, round, at, n, count) in found {
            let want = &reqs[req as usize];
            let bytes = &arenas[round as usize][at as usize..(at + n) as usize];
            let (ts, vs) = &mut out[req as usize];
            decode_range(bytes, count, want.mint, want.maxt, ts, vs);
        }
        Ok(out)
    }

    /// The samples in `[mint, maxt]` of one chain, in time order.
    pub fn read_chain(
        &self,
        snap: &Snapshot,
        newest: ChunkRef,
        mint: i64,
        maxt: i64,
    ) -> Result<Samples, HeadChunkError> {
        let req = ChainRead {
            newest,
            mint,
            maxt,
            room_after: 0,
        };
        Ok(self.read_chains(snap, &[req])?.pop().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::chunk::OpenChunk;

    fn chunk(t0: i64, n: i64) -> FrozenChunk {
        let mut c = OpenChunk::new();
        for i in 0..n {
            c.append(t0 + i * 10, (t0 + i) as f64);
        }
        c.close()
    }

    #[test]
    fn chains_read_back_across_segments_and_deletion() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(DIR);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("00000001"), b"left by an earlier run").unwrap();
        let files = HeadChunkFiles::open(&dir, 4096).unwrap();
        assert!(!dir.join("00000001").exists());
        let (mut a, mut b) = (None, None);
        let (mut a_last, mut b_last) = (i64::MIN, i64::MIN);
        for k in 0..200 {
            let ca = chunk(k * 1000, 50);
            let cb = chunk(k * 1000 + 5, 20);
            a = Some(files.write(&ca, a, a_last).unwrap());
            a_last = ca.last_t;
            b = Some(files.write(&cb, b, b_last).unwrap());
            b_last = cb.last_t;
        }
        let snap = files.snapshot();
        let (ts, vs) = files.read_chain(&snap, a.unwrap(), 1500, 3200).unwrap();
        let want: Vec<i64> = (1..=3)
            .flat_map(|k| (0..50).map(move |i| k * 1000 + i * 10))
            .filter(|&t| (1500..=3200).contains(&t))
            .collect();
        assert_eq!(ts, want);
        assert_eq!(vs.len(), ts.len());
        // Records pending and written read the same; deleted segments stay readable
        // through an older snapshot.
        files.retry_pending();
        files.delete_before(i64::MAX);
        let (ts, _) = files
            .read_chain(&snap, b.unwrap(), 199_000, i64::MAX)
            .unwrap();
        assert_eq!(ts.len(), 20);
        // Many chains at once read as each alone.
        let reqs = [
            ChainRead {
                newest: a.unwrap(),
                mint: 0,
                maxt: i64::MAX,
                room_after: 0,
            },
            ChainRead {
                newest: b.unwrap(),
                mint: 50_000,
                maxt: 60_010,
                room_after: 0,
            },
            ChainRead {
                newest: a.unwrap(),
                mint: 199_100,
                maxt: 199_200,
                room_after: 0,
            },
        ];
        let got = files.read_chains(&snap, &reqs).unwrap();
        for (r, (ts, vs)) in reqs.iter().zip(&got) {
            let alone = files.read_chain(&snap, r.newest, r.mint, r.maxt).unwrap();
            assert_eq!((ts, vs), (&alone.0, &alone.1));
        }
        assert_eq!(got[0].0.len(), 200 * 50);
        assert_eq!(got[1].0.len(), 201);
        assert_eq!(got[2].0.len(), 11);
    }

    #[test]
    fn each_cut_ends_the_file_so_a_later_cut_deletes_it() {
        let tmp = tempfile::tempdir().unwrap();
        let files = HeadChunkFiles::open(&tmp.path().join(DIR), 1 << 20).unwrap();
        let (mut newest, mut last_t) = (None, i64::MIN);
        let mut write_until = |end: i64| {
            while last_t < end {
                let c = chunk(last_t.max(0) + 10, 10);
                newest = Some(files.write(&c, newest, last_t).unwrap());
                last_t = c.last_t;
            }
            newest.unwrap()
        };
        write_until(10_000);
        // A cut at 5000: no file ends before it, but the current one is ended.
        files.delete_before(5_000);
        let first = files.size_bytes();
        assert!(first > 0);
        write_until(20_000);
        assert_eq!(files.snapshot().0.len(), 2);
        let both = files.size_bytes();
        // The next cut deletes the first file, though far from its size limit.
        files.delete_before(15_000);
        assert_eq!(files.snapshot().0.len(), 1);
        assert_eq!(files.size_bytes(), both - first);
        let newest = write_until(25_000);
        let (ts, _) = files
            .read_chain(&files.snapshot(), newest, 15_000, i64::MAX)
            .unwrap();
        assert_eq!((ts[0], *ts.last().unwrap()), (15_000, last_t));
    }

    #[test]
    fn damage_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let files = HeadChunkFiles::open(&tmp.path().join(DIR), 1 << 20).unwrap();
        let mut last = None;
        let mut last_t = i64::MIN;
        // Enough to be written out to the file.
        for k in 0..2000 {
            let c = chunk(k * 10_000, 100);
            last = Some(files.write(&c, last, last_t).unwrap());
            last_t = c.last_t;
        }
        let first = files.snapshot().0[0].clone();
        assert!(first.flushed.load(Ordering::Acquire) > 0);
        first.file.write_all_at(&[0xff; 64], 100).unwrap();
        let snap = files.snapshot();
        let err = files
            .read_chain(&snap, last.unwrap(), i64::MIN, i64::MAX)
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&first.path.display().to_string()), "{msg}");
        assert!(msg.contains("checksum"), "{msg}");
    }
}
