//! The head's WAL: each append batch's record, fsyncs, replay into the head at
//! open, and truncation (a checkpoint of the live series) after a cut.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::head::{StoreState, WalState};
use super::head_append::AppendDecision;
use super::wal::{self, Cursor, REC_SAMPLES, REC_SERIES};
use super::{io_err, lock, read, write, StoreError};

impl StoreState {
    pub(super) fn wal_write(&self, w: &mut WalState, payload: &[u8], maxt: Option<i64>) {
        let Some(writer) = w.writer.as_mut() else {
            return;
        };
        let mut res = writer.write(payload, maxt);
        if res.is_ok() && writer.is_full() {
            res = writer.rotate();
            if res.is_ok() {
                // Everything before the new segment is fsynced.
                self.durable_seq.fetch_max(w.append_seq, Ordering::AcqRel);
            }
        }
        match res {
            Ok(()) => w.error_logged = false,
            Err(e) => {
                if !w.error_logged {
                    tracing::error!(wal = %self.wal_dir.display(), error = %e, "cannot write the WAL; samples stay in memory but are not durable");
                    w.error_logged = true;
                }
            }
        }
    }

    pub(super) fn sync_wal(&self) -> Result<(), StoreError> {
        let (file, seq) = {
            let mut w = lock(&self.wal);
            let seq = w.append_seq;
            let Some(writer) = w.writer.as_mut() else {
                return Ok(());
            };
            let path = wal::segment_path(writer.dir(), writer.seq());
            (writer.flush().map_err(io_err(&path))?, (seq, path))
        };
        file.sync_data().map_err(io_err(&seq.1))?;
        self.durable_seq.fetch_max(seq.0, Ordering::AcqRel);
        Ok(())
    }

    pub(super) fn sync_wal_logged(&self) {
        if let Err(e) = self.sync_wal() {
            tracing::error!(error = %e, "WAL sync failed");
        }
    }

    /// Replays checkpoint and segments; returns the number for the next segment.
    pub(super) fn replay(&self) -> Result<u64, StoreError> {
        let dir = &self.wal_dir;
        let segments = wal::list_segments(dir).map_err(io_err(dir))?;
        let cp = dir.join(wal::CHECKPOINT);
        if cp.exists() {
            let data = std::fs::read(&cp).map_err(io_err(&cp))?;
            self.replay_data(&cp, &data, 0);
        }
        let _ = std::fs::remove_file(dir.join(format!("{}.tmp", wal::CHECKPOINT)));
        let mut segment_maxt = Vec::new();
        for &seq in &segments {
            let path = wal::segment_path(dir, seq);
            let data = std::fs::read(&path).map_err(io_err(&path))?;
            let maxt = self.replay_data(&path, &data, seq);
            segment_maxt.push((seq, maxt));
        }
        let next = segments.last().map_or(1, |s| s + 1);
        // Remember the old segments' newest samples so truncation can delete them.
        self.pending_segments(segment_maxt);
        Ok(next)
    }

    fn pending_segments(&self, segs: Vec<(u64, i64)>) {
        lock(&self.old_segments).extend(segs);
    }

    /// Replays one file; cuts it at the first damaged frame. Returns the newest
    /// sample timestamp seen.
    fn replay_data(&self, path: &Path, data: &[u8], seg: u64) -> i64 {
        let min_valid = self.min_valid_t.load(Ordering::Acquire);
        let range = self.opts.block_range_ms;
        let mut maxt = i64::MIN;
        let mut bad_records = 0u64;
        let mut unknown = 0u64;
        let mut samples = 0u64;
        let damage = wal::read_records(data, |payload| {
            let mut c = Cursor::new(&payload[1..]);
            let ok = match payload[0] {
                REC_SERIES => {
                    let mut idx = write(&self.index);
                    let mut ok = true;
                    while !c.at_end() {
                        let mut intern = |s: &str| self.intern(s);
                        let Some((id, labels)) = wal::decode_series(&mut c, &mut intern) else {
                            ok = false;
                            break;
                        };
                        let h = self.hash(&labels);
                        let exists = idx.series.get(id as usize).is_some_and(|s| s.is_some());
                        if !exists && idx.get(h, &labels).is_none() {
                            idx.insert(h, self.intern_labels(&labels), Some(id));
                        }
                    }
                    ok
                }
                REC_SAMPLES => {
                    let idx = read(&self.index);
                    let mut ok = true;
                    let Some(base) = c.varint() else { return };
                    let mut id = 0i64;
                    while !c.at_end() {
                        let (Some(did), Some(dt)) = (c.varint(), c.varint()) else {
                            ok = false;
                            break;
                        };
                        id = id.wrapping_add(did);
                        let t = base.wrapping_add(dt);
                        let series = u32::try_from(id)
                            .ok()
                            .and_then(|id| idx.series.get(id as usize))
                            .and_then(|s| s.as_ref());
                        let Some(series) = series else {
                            if get_xor_skip(&mut c).is_none() {
                                ok = false;
                                break;
                            }
                            if t >= min_valid {
                                unknown += 1;
                            }
                            continue;
                        };
                        let mut d = series.lock();
                        let prev = if d.wal_seg == seg as u32 {
                            d.wal_bits
                        } else {
                            0
                        };
                        let Some(bits) = wal::get_xor_value(&mut c, prev) else {
                            ok = false;
                            break;
                        };
                        d.wal_seg = seg as u32;
                        d.wal_bits = bits;
                        let decision = d.append(
                            t,
                            f64::from_bits(bits),
                            min_valid,
                            i64::MIN,
                            range,
                            &self.head_chunks,
                        );
                        if decision == AppendDecision::Appended {
                            samples += 1;
                            maxt = maxt.max(t);
                        }
                    }
                    ok
                }
                _ => false,
            };
            if !ok {
                bad_records += 1;
            }
        });
        self.replayed_samples.fetch_add(samples, Ordering::Relaxed);
        self.max_t.fetch_max(maxt, Ordering::AcqRel);
        if bad_records > 0 {
            tracing::error!(wal = %path.display(), records = bad_records, "WAL records with a valid checksum could not be decoded; skipped");
        }
        if unknown > 0 {
            tracing::warn!(wal = %path.display(), samples = unknown, "WAL samples of series whose definition is lost; skipped");
        }
        if let Some(d) = damage {
            tracing::error!(
                wal = %path.display(), offset = d.offset, reason = d.reason,
                "WAL damaged; replayed everything before this point and cut the file there"
            );
            if seg > 0 {
                let res = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.set_len(d.offset as u64).and_then(|()| f.sync_all()));
                if let Err(e) = res {
                    tracing::error!(wal = %path.display(), error = %e, "cannot cut the damaged WAL segment");
                }
            }
        }
        maxt
    }

    pub(super) fn truncate_wal(&self, before: i64) -> Result<(), StoreError> {
        let dir = &self.wal_dir;
        {
            let mut w = lock(&self.wal);
            if let Some(writer) = w.writer.as_mut() {
                let path = wal::segment_path(dir, writer.seq());
                writer.rotate().map_err(io_err(&path))?;
                let seq = w.append_seq;
                self.durable_seq.fetch_max(seq, Ordering::AcqRel);
            }
        }
        let payloads: Vec<Vec<u8>> = {
            let idx = read(&self.index);
            let mut out = Vec::new();
            let mut rec = vec![REC_SERIES];
            for s in idx.series.iter().flatten() {
                wal::encode_series(&mut rec, s.id, &s.labels());
                if rec.len() > 1 << 20 {
                    out.push(std::mem::replace(&mut rec, vec![REC_SERIES]));
                }
            }
            if rec.len() > 1 {
                out.push(rec);
            }
            out
        };
        wal::write_checkpoint(dir, &payloads).map_err(io_err(&dir.join(wal::CHECKPOINT)))?;
        let mut w = lock(&self.wal);
        let old = std::mem::take(&mut *lock(&self.old_segments));
        if let Some(writer) = w.writer.as_mut() {
            // Segments from before this open are known by their replayed max time.
            let mut merged = old;
            merged.append(&mut writer.segment_maxt);
            merged.sort_unstable();
            merged.dedup_by_key(|s| s.0);
            writer.segment_maxt = merged;
            writer.delete_segments_before(before).map_err(io_err(dir))?;
        }
        Ok(())
    }
}

/// Skips an XOR-encoded value whose previous value is unknown.
fn get_xor_skip(c: &mut Cursor) -> Option<()> {
    wal::get_xor_value(c, 0).map(|_| ())
}
