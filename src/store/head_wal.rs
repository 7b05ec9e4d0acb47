//! The head's WAL: each append batch's record, fsyncs, replay into the head at
//! open, and truncation (a checkpoint of the live series) after a cut.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::head::{StoreState, WalState};
use super::head_append::AppendDecision;
use super::wal::{self, Cursor, REC_NEXT_ID, REC_SAMPLES, REC_SAMPLES_XOR, REC_SERIES};
use super::{io_err, lock, read, write, StoreError};

/// How far past the ids known (those replayed, and the checkpoint's next id) a WAL
/// series definition's id may lie: ids are handed out in order, so a good segment
/// never jumps this far (16.7M series created since the checkpoint), while each id
/// of a jump costs 8 bytes of the id table.
const MAX_SERIES_ID_GAP: usize = 1 << 24;

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
        let path = wal::segment_path(writer.dir(), writer.seq());
        self.wal_lost_records
            .store(writer.lost_records, Ordering::Relaxed);
        *lock(&self.wal_end) = writer.end();
        self.note_wal_result(&res.map_err(io_err(&path)));
    }

    /// Keeps the WAL's write failure for the health check and the metrics while it
    /// lasts, logged when it starts and when it ends.
    fn note_wal_result<T>(&self, res: &Result<T, StoreError>) {
        let mut failing = lock(&self.wal_error);
        match res {
            Ok(_) => {
                if failing.take().is_some() {
                    tracing::info!(wal = %self.wal_dir.display(), "WAL writes succeed again; the records kept in memory are written");
                }
            }
            Err(e) => {
                self.write_errors.fetch_add(1, Ordering::Relaxed);
                if failing.is_none() {
                    tracing::error!(error = %e, "cannot write the WAL; records are kept in memory and written when writes succeed again");
                }
                *failing = Some(e.to_string());
            }
        }
    }

    /// The store's current write failure (WAL or head chunk files), if writes fail.
    pub(super) fn write_error(&self) -> Option<String> {
        if let Some(e) = lock(&self.wal_error).clone() {
            return Some(format!("WAL: {e}"));
        }
        self.head_chunks
            .write_error()
            .map(|e| format!("head chunks: {e}"))
    }

    pub(super) fn sync_wal(&self) -> Result<(), StoreError> {
        let (file, seq) = {
            let mut w = lock(&self.wal);
            let seq = w.append_seq;
            let Some(writer) = w.writer.as_mut() else {
                return Ok(());
            };
            let path = wal::segment_path(writer.dir(), writer.seq());
            let flushed = writer.flush().map_err(io_err(&path));
            self.wal_lost_records
                .store(writer.lost_records, Ordering::Relaxed);
            *lock(&self.wal_end) = writer.end();
            self.note_wal_result(&flushed);
            (flushed?, (seq, path))
        };
        let synced = file.sync_data().map_err(io_err(&seq.1));
        self.note_wal_result(&synced);
        synced?;
        self.durable_seq.fetch_max(seq.0, Ordering::AcqRel);
        Ok(())
    }

    pub(super) fn sync_wal_logged(&self) {
        if let Err(e) = self.sync_wal() {
            tracing::debug!(error = %e, "WAL sync failed");
        }
    }

    /// Replays checkpoint and segments; returns the number for the next segment.
    pub(super) fn replay(&self) -> Result<u64, StoreError> {
        let dir = &self.wal_dir;
        let segments = wal::list_segments(dir).map_err(io_err(dir))?;
        let cp = dir.join(wal::CHECKPOINT);
        // The id the next new series would have got when the WAL was written.
        let mut next_id = 0usize;
        if cp.exists() {
            let data = std::fs::read(&cp).map_err(io_err(&cp))?;
            self.replay_data(&cp, &data, 0, &mut next_id);
        }
        let _ = std::fs::remove_file(dir.join(format!("{}.tmp", wal::CHECKPOINT)));
        let mut segment_maxt = Vec::new();
        for &seq in &segments {
            let path = wal::segment_path(dir, seq);
            let data = std::fs::read(&path).map_err(io_err(&path))?;
            let maxt = self.replay_data(&path, &data, seq, &mut next_id);
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

    /// Replays one file (`seg` 0 is the checkpoint). Damaged stretches are skipped
    /// and logged; a damaged tail of a segment is cut off. Returns the newest sample
    /// timestamp seen.
    fn replay_data(&self, path: &Path, data: &[u8], seg: u64, next_id: &mut usize) -> i64 {
        let min_valid = self.min_valid_t.load(Ordering::Acquire);
        let range = self.opts.block_range_ms;
        let mut maxt = i64::MIN;
        let mut bad_records = 0u64;
        let mut unchained = 0u64;
        let mut unknown = 0u64;
        let mut far_ids = 0u64;
        let mut samples = 0u64;
        let damage = wal::read_records(data, |payload, after_damage| {
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
                        // Ids are handed out in order, so a good record's id is near
                        // the ids already known; a damaged one could grow the id table
                        // by gigabytes.
                        if id as usize > idx.series.len().max(*next_id) + MAX_SERIES_ID_GAP {
                            far_ids += 1;
                            continue;
                        }
                        let h = self.hash(&labels);
                        let exists = idx.series.get(id as usize).is_some_and(|s| s.is_some());
                        if !exists && idx.get(h, &labels).is_none() {
                            idx.insert(h, self.intern_labels(&labels), Some(id));
                        }
                    }
                    ok
                }
                REC_NEXT_ID => match c.uvarint() {
                    Some(id) => {
                        *next_id = (*next_id).max(id.min(u64::from(u32::MAX)) as usize);
                        true
                    }
                    None => false,
                },
                // Values chained to a record lost in the damage would come out wrong.
                REC_SAMPLES_XOR if after_damage => {
                    unchained += 1;
                    true
                }
                kind @ (REC_SAMPLES | REC_SAMPLES_XOR) => {
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
                            let skipped = if kind == REC_SAMPLES {
                                wal::get_standalone_value(&mut c)
                            } else {
                                wal::get_xor_value(&mut c, 0)
                            };
                            if skipped.is_none() {
                                ok = false;
                                break;
                            }
                            if t >= min_valid {
                                unknown += 1;
                            }
                            continue;
                        };
                        let mut d = series.lock();
                        let bits = if kind == REC_SAMPLES {
                            wal::get_standalone_value(&mut c)
                        } else {
                            let prev = if d.wal_seg == seg as u32 {
                                d.wal_bits
                            } else {
                                0
                            };
                            wal::get_xor_value(&mut c, prev)
                        };
                        let Some(bits) = bits else {
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
        if unchained > 0 {
            tracing::error!(
                wal = %path.display(), records = unchained,
                "WAL samples records of the old format after a damaged stretch; skipped, since their values depend on lost records"
            );
        }
        if far_ids > 0 {
            tracing::error!(
                wal = %path.display(), series = far_ids, gap = MAX_SERIES_ID_GAP,
                "WAL series definitions whose id is further than the gap ahead of every id known; skipped as damaged, with their samples"
            );
        }
        if unknown > 0 {
            tracing::warn!(wal = %path.display(), samples = unknown, "WAL samples of series whose definition is lost; skipped");
        }
        for d in &damage {
            tracing::error!(
                wal = %path.display(), offset = d.offset, lost_bytes = d.len, reason = d.reason,
                "WAL damaged; skipped these bytes and replayed the records around them"
            );
        }
        // Damage with records after it is corruption worth keeping; a torn or
        // zero-filled tail is what every crash leaves, and is only cut off.
        if damage.iter().any(|d| !d.reaches_end(data.len())) {
            self.quarantine_wal_copy(path, data);
        }
        self.wal_damaged_bytes.fetch_add(
            damage.iter().map(|d| d.len as u64).sum::<u64>(),
            Ordering::Relaxed,
        );
        // A damaged tail is cut so that nothing is ever written after it.
        if let Some(tail) = damage
            .last()
            .filter(|d| seg > 0 && d.reaches_end(data.len()))
        {
            let res = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| f.set_len(tail.offset as u64).and_then(|()| f.sync_all()));
            if let Err(e) = res {
                tracing::error!(wal = %path.display(), error = %e, "cannot cut the damaged tail of the WAL segment");
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
                let rotated = writer.rotate().map_err(io_err(&path));
                *lock(&self.wal_end) = writer.end();
                rotated?;
                let seq = w.append_seq;
                self.durable_seq.fetch_max(seq, Ordering::AcqRel);
            }
        }
        // The next id first, then a record a series: damage to the checkpoint costs
        // only the series it hits.
        let payloads: Vec<Vec<u8>> = {
            let idx = read(&self.index);
            let mut next_id = vec![REC_NEXT_ID];
            wal::put_uvarint(&mut next_id, idx.series.len() as u64);
            std::iter::once(next_id)
                .chain(idx.series.iter().flatten().map(|s| {
                    let mut rec = vec![REC_SERIES];
                    wal::encode_series(&mut rec, s.id, &s.labels());
                    rec
                }))
                .collect()
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
