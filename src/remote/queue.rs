//! One remote write queue (one `remote_write` entry): a thread that follows the
//! store's WAL from a saved position, the series map, the shards, how many of
//! them run, and the position saved as batches are taken.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::encode::SentSeries;
use super::shard::{Queued, Shards};
use super::MetadataSource;
use crate::config::{relabel, RemoteWriteConfig};
use crate::model::labels::{Label, Labels};
use crate::scrape::tls::JobTls;
use crate::store::{Store, WalPosition, WalRecord, WalTail};

/// How often the shard count is reconsidered (Prometheus's `shardUpdateDuration`).
const SHARD_UPDATE: Duration = Duration::from_secs(10);
/// How often the sending position is saved.
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// The wait before looking at the WAL again when nothing new was there.
const POLL: Duration = Duration::from_millis(100);
/// Buckets of `prometheus_remote_storage_sent_batch_duration_seconds` (Prometheus's).
pub const BATCH_DURATION_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0, 120.0, 300.0,
];

/// What the self-metrics show of a queue.
#[derive(Default)]
pub struct Counters {
    pub samples_in: AtomicU64,
    pub samples_sent: AtomicU64,
    pub samples_failed: AtomicU64,
    pub samples_retried: AtomicU64,
    pub samples_dropped: AtomicU64,
    pub samples_pending: AtomicI64,
    pub bytes_sent: AtomicU64,
    pub highest_sent_ms: AtomicI64,
    pub last_send_ok_ms: AtomicI64,
    pub shards: AtomicU64,
    pub shards_desired: AtomicU64,
    pub enqueue_retries: AtomicU64,
    pub metadata_sent: AtomicU64,
    pub metadata_failed: AtomicU64,
    pub metadata_retried: AtomicU64,
    pub metadata_bytes: AtomicU64,
    /// Samples known lost: in WAL segments deleted before they were read.
    pub segments_skipped: AtomicU64,
    /// Nanoseconds spent in sends, for the shard count.
    pub send_nanos: AtomicU64,
    batch_counts: [AtomicU64; BATCH_DURATION_BUCKETS.len() + 1],
    batch_sum_micros: AtomicU64,
}

/// The state a queue's reader thread, shards and metadata task share.
pub struct Queue {
    pub config: RemoteWriteConfig,
    pub external_labels: Labels,
    pub store: Arc<Store>,
    pub tls: Arc<JobTls>,
    pub rt: tokio::runtime::Handle,
    pub counters: Counters,
    progress: Mutex<Progress>,
    stop: AtomicBool,
    position_file: PathBuf,
    /// The position last written to `position_file` (its lock also keeps two
    /// writers from sharing the temporary file).
    position_written: Mutex<Option<WalPosition>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Queue {
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Marks a batch's samples done (taken or refused), moving the saved position
    /// past every record whose samples are all done, and saves it: a restart
    /// sends again at most the batches in flight when it stopped.
    pub fn complete(&self, batch: &[Queued]) {
        self.counters
            .samples_pending
            .fetch_sub(batch.len() as i64, Ordering::Relaxed);
        let moved = {
            let mut p = lock(&self.progress);
            let before = p.saved;
            let mut i = 0;
            while i < batch.len() {
                let record = batch[i].record;
                let run = batch[i..].iter().take_while(|s| s.record == record).count();
                p.done(record, run as u32);
                i += run;
            }
            p.saved != before
        };
        if moved {
            self.save_position(false);
        }
    }

    pub fn observe_send(&self, d: Duration) {
        let c = &self.counters;
        c.send_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        let secs = d.as_secs_f64();
        let i = BATCH_DURATION_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BATCH_DURATION_BUCKETS.len());
        c.batch_counts[i].fetch_add(1, Ordering::Relaxed);
        c.batch_sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket (the last is +Inf) and the sum in seconds.
    pub fn batch_durations(&self) -> (Vec<u64>, f64) {
        let mut acc = 0;
        let counts = self
            .counters
            .batch_counts
            .iter()
            .map(|c| {
                acc += c.load(Ordering::Relaxed);
                acc
            })
            .collect();
        (
            counts,
            self.counters.batch_sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }

    /// Writes the saved position if it moved since it was last written.
    fn save_position(&self, sync: bool) {
        let mut written = lock(&self.position_written);
        let pos = lock(&self.progress).saved;
        if *written == Some(pos) && !sync {
            return;
        }
        *written = Some(pos);
        if let Err(e) = write_position(&self.position_file, pos, sync) {
            tracing::error!(file = %self.position_file.display(), error = %e, "cannot save the remote write position; a restart may send some samples again");
        }
    }
}

/// The WAL records whose samples are still queued or being sent, in WAL order.
/// `saved` is the position after the last record with nothing left: what a restart
/// reads from.
struct Progress {
    /// Per record from `first`: the position after it and its samples not yet done.
    records: VecDeque<(WalPosition, u32)>,
    first: u64,
    saved: WalPosition,
}

impl Progress {
    /// Adds the next record (numbered `first + records.len()`); returns its number.
    fn add(&mut self, after: WalPosition, samples: u32) -> u64 {
        let n = self.first + self.records.len() as u64;
        self.records.push_back((after, samples));
        self.advance();
        n
    }

    fn done(&mut self, record: u64, samples: u32) {
        if let Some(r) = record
            .checked_sub(self.first)
            .and_then(|i| self.records.get_mut(i as usize))
        {
            r.1 = r.1.saturating_sub(samples);
        }
        self.advance();
    }

    fn advance(&mut self) {
        while let Some(&(after, 0)) = self.records.front() {
            self.saved = after;
            self.records.pop_front();
            self.first += 1;
        }
    }
}

/// The saved position: `<segment> <offset>` on one line.
fn read_position(path: &std::path::Path) -> Option<WalPosition> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut parts = text.split_whitespace();
    let segment = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    Some(WalPosition { segment, offset })
}

fn write_position(path: &std::path::Path, pos: WalPosition, sync: bool) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{} {}", pos.segment, pos.offset)?;
        if sync {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)
}

/// A series id's sending form: `None` when write relabeling drops it.
struct SeriesEntry {
    sent: Option<Arc<SentSeries>>,
    /// The segment it was last seen in, to forget it once that is gone.
    last_segment: u64,
}

/// A running queue.
pub struct QueueManager {
    pub queue: Arc<Queue>,
    reader: Option<std::thread::JoinHandle<()>>,
    metadata: Option<tokio::task::JoinHandle<()>>,
}

impl QueueManager {
    /// Starts following the WAL from the saved position (from the WAL's end when
    /// nothing is saved: a new remote write sends what comes from now on).
    /// Must be called inside a tokio runtime.
    pub fn start(
        config: RemoteWriteConfig,
        external_labels: Labels,
        store: Arc<Store>,
        metadata: MetadataSource,
    ) -> QueueManager {
        let dir = store.dir().join("remote_write");
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::error!(dir = %dir.display(), error = %e, "cannot create the remote write folder; the sending position is not saved");
        }
        let position_file = dir.join(format!("{}.position", file_name(&config.name)));
        let saved = read_position(&position_file);
        let start = saved.unwrap_or_else(|| store.wal_end());
        let queue = Arc::new(Queue {
            tls: Arc::new(JobTls::new(config.tls.clone())),
            config,
            external_labels,
            store,
            rt: tokio::runtime::Handle::current(),
            counters: Counters::default(),
            progress: Mutex::new(Progress {
                records: VecDeque::new(),
                first: 0,
                saved: start,
            }),
            stop: AtomicBool::new(false),
            position_file,
            position_written: Mutex::new(saved),
        });
        if let Err(e) = queue.tls.current() {
            tracing::warn!(remote_name = %queue.config.name, error = %e, "cannot build the remote write client; sends fail until the TLS files are fixed");
        }
        tracing::info!(remote_name = %queue.config.name, url = %queue.config.url, segment = start.segment, offset = start.offset, resumed = saved.is_some(), "remote write starts");
        let q = queue.clone();
        let reader = std::thread::Builder::new()
            .name(format!("remote-write-{}", queue.config.name))
            .spawn(move || Reader::new(q, start).run())
            .map_err(|e| tracing::error!(error = %e, "cannot start the remote write reader"))
            .ok();
        let metadata = queue
            .config
            .metadata
            .send
            .then(|| tokio::spawn(super::metadata::run(queue.clone(), metadata)));
        QueueManager {
            queue,
            reader,
            metadata,
        }
    }

    /// Stops reading, lets the shards send what they hold (briefly), saves the position.
    pub async fn stop(self) {
        self.queue.stop.store(true, Ordering::Release);
        if let Some(m) = self.metadata {
            m.abort();
            let _ = m.await;
        }
        if let Some(r) = self.reader {
            let _ = tokio::task::spawn_blocking(move || r.join()).await;
        }
    }
}

/// A name safe as a file name: kept when it is plain, else hex of its bytes.
fn file_name(name: &str) -> String {
    if !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        name.to_string()
    } else {
        name.bytes().take(64).map(|b| format!("{b:02x}")).collect()
    }
}

/// Exponentially weighted moving rate, ticked every [`SHARD_UPDATE`] (Prometheus's
/// `ewmaRate`, weight 0.2).
#[derive(Default)]
struct Ewma {
    last_total: u64,
    rate: f64,
    init: bool,
}

impl Ewma {
    fn tick(&mut self, total: u64, secs: f64) -> f64 {
        let instant = total.saturating_sub(self.last_total) as f64 / secs;
        self.last_total = total;
        if self.init {
            self.rate += 0.2 * (instant - self.rate);
        } else {
            self.rate = instant;
            self.init = true;
        }
        self.rate
    }
}

/// What the shard count follows, per second over the last ticks.
struct Rates {
    data_in: f64,
    data_out: f64,
    dropped: f64,
    /// Seconds spent sending, per second.
    out_secs: f64,
    /// How far the newest sample sent is behind the newest stored.
    delay_s: f64,
}

/// Prometheus's shard calculation (`calculateDesiredShards`): enough shards to send
/// what comes in, plus 5% of the backlog a second, at the measured time per sample
/// sent; changes within 30% are not worth a reshard, and there is no shrinking
/// while more than 10 s behind. Returns the raw estimate and the shard count to
/// run; `None` before anything was sent.
fn desired_shards(
    r: &Rates,
    current: usize,
    cfg: &crate::config::QueueConfig,
) -> Option<(f64, usize)> {
    if r.data_out <= 0.0 {
        return None;
    }
    let kept_ratio = r.data_out / (r.dropped + r.data_out);
    let pending = r.delay_s * r.data_in * kept_ratio;
    let time_per_sample = r.out_secs / r.data_out;
    let desired = time_per_sample * (r.data_in * kept_ratio + 0.05 * pending);
    let (lower, upper) = (current as f64 * 0.7, current as f64 * 1.3);
    let rounded = desired.ceil();
    if (lower..=upper).contains(&rounded) || (rounded < current as f64 && r.delay_s > 10.0) {
        return Some((desired, current));
    }
    let n = (rounded.max(0.0) as usize).clamp(cfg.min_shards, cfg.max_shards);
    Some((desired, n))
}

/// The reader thread: WAL records to shards.
struct Reader {
    q: Arc<Queue>,
    tail: WalTail,
    series: HashMap<u32, SeriesEntry, foldhash::fast::RandomState>,
    shards: Option<Shards>,
    data_in: Ewma,
    data_out: Ewma,
    data_dropped: Ewma,
    out_nanos: Ewma,
    /// The oldest WAL segment when the series map was last pruned.
    pruned_at: u64,
    /// When a sample of an unknown series was last logged.
    unknown_logged: Option<Instant>,
    /// After segments were skipped: the newest sample sent before the gap, until
    /// the first sample after it says where the gap ends.
    gap_from_ms: Option<i64>,
}

impl Reader {
    fn new(q: Arc<Queue>, start: WalPosition) -> Reader {
        let shards = Shards::start(&q, q.config.queue.min_shards);
        Reader {
            tail: WalTail::new(q.store.wal_dir(), start),
            q,
            series: HashMap::default(),
            shards: Some(shards),
            data_in: Ewma::default(),
            data_out: Ewma::default(),
            data_dropped: Ewma::default(),
            out_nanos: Ewma::default(),
            pruned_at: 0,
            unknown_logged: None,
            gap_from_ms: None,
        }
    }

    fn run(mut self) {
        let mut saved = Instant::now();
        let mut resharded = Instant::now();
        let mut read_error_logged = false;
        while !self.q.stopping() {
            let end = self.q.store.wal_end();
            let mut records = Vec::new();
            let read = self.tail.read(end, |rec, after| records.push((rec, after)));
            let mut idle = true;
            match read {
                Ok(r) => {
                    read_error_logged = false;
                    idle = r.bytes == 0;
                    if let Some((first, last)) = r.skipped_segments {
                        self.q
                            .counters
                            .segments_skipped
                            .fetch_add(last - first + 1, Ordering::Relaxed);
                        let sent = self.q.counters.highest_sent_ms.load(Ordering::Relaxed);
                        tracing::error!(
                            remote_name = %self.q.config.name, url = %self.q.config.url,
                            first_segment = first, last_segment = last,
                            last_sent_ms = sent,
                            "WAL segments were cut into blocks and deleted before they were sent: their samples never reach the receiver (it was unreachable for longer than the WAL keeps data)"
                        );
                        self.gap_from_ms = Some(sent);
                    }
                    if r.damaged_bytes > 0 || r.undecodable_records > 0 {
                        tracing::error!(remote_name = %self.q.config.name, damaged_bytes = r.damaged_bytes, records = r.undecodable_records, "damaged or old-format WAL records skipped; their samples are not sent");
                    }
                }
                Err(e) => {
                    if !read_error_logged {
                        tracing::error!(remote_name = %self.q.config.name, error = %e, "cannot read the WAL for remote write; retrying");
                        read_error_logged = true;
                    }
                }
            }
            for (rec, after) in records {
                if !self.route(rec, after) {
                    break;
                }
            }
            if saved.elapsed() >= SAVE_EVERY {
                self.q.save_position(false);
                saved = Instant::now();
            }
            if resharded.elapsed() >= SHARD_UPDATE {
                let secs = resharded.elapsed().as_secs_f64();
                resharded = Instant::now();
                self.reshard(secs);
                self.prune();
            }
            if idle {
                std::thread::sleep(POLL);
            }
        }
        if let Some(shards) = self.shards.take() {
            shards.stop(&self.q, Some(super::shard::FLUSH_AFTER_STOP));
        }
        self.q.save_position(true);
        tracing::info!(remote_name = %self.q.config.name, "remote write stopped");
    }

    /// Queues one record's samples. False when the queue is stopping.
    fn route(&mut self, rec: WalRecord, after: WalPosition) -> bool {
        let samples = match rec {
            WalRecord::Series(list) => {
                for (id, labels) in list {
                    let sent = self.sent_form(&labels);
                    self.series.insert(
                        id,
                        SeriesEntry {
                            sent,
                            last_segment: after.segment,
                        },
                    );
                }
                lock(&self.q.progress).add(after, 0);
                return true;
            }
            WalRecord::Samples(s) => s,
        };
        let q = self.q.clone();
        let c = &q.counters;
        c.samples_in
            .fetch_add(samples.len() as u64, Ordering::Relaxed);
        // Count first: the record is registered before its samples can complete.
        let mut kept = Vec::with_capacity(samples.len());
        let mut dropped = 0u64;
        let mut unknown = 0u64;
        for s in &samples {
            match self.series_of(s.id, after.segment) {
                Some(Some(series)) => kept.push((s, series)),
                Some(None) => dropped += 1,
                None => unknown += 1,
            }
        }
        if dropped + unknown > 0 {
            c.samples_dropped
                .fetch_add(dropped + unknown, Ordering::Relaxed);
        }
        if unknown > 0
            && self
                .unknown_logged
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            self.unknown_logged = Some(Instant::now());
            tracing::warn!(remote_name = %self.q.config.name, samples = unknown, "WAL samples of series no longer known (their definition was truncated away); dropped");
        }
        if let (Some(from), Some(to)) = (
            self.gap_from_ms,
            samples.iter().map(|s| s.timestamp_ms).min(),
        ) {
            self.gap_from_ms = None;
            tracing::error!(
                remote_name = %self.q.config.name, url = %self.q.config.url,
                from_ms = from, to_ms = to, seconds = to.saturating_sub(from) / 1000,
                "remote write resumes after the deleted WAL segments: the receiver lacks the samples between these times"
            );
        }
        // Everything before where reading started was sent, by the saved position's
        // definition: the lag counts from there until this run sends something.
        if let Some(first) = kept.iter().map(|(s, _)| s.timestamp_ms).min() {
            let _ = c.highest_sent_ms.compare_exchange(
                0,
                first.saturating_sub(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        c.samples_pending
            .fetch_add(kept.len() as i64, Ordering::Relaxed);
        let record = lock(&self.q.progress).add(after, kept.len() as u32);
        let Some(shards) = &self.shards else {
            return false;
        };
        for (s, series) in kept {
            let sample = Queued {
                series,
                timestamp_ms: s.timestamp_ms,
                value: s.value,
                record,
            };
            if !shards.enqueue(&self.q, s.id, sample) {
                return false;
            }
        }
        true
    }

    /// The sending form of a series: `Some(None)` dropped by relabeling, `None`
    /// unknown (defined in a segment gone before it was read).
    fn series_of(&mut self, id: u32, segment: u64) -> Option<Option<Arc<SentSeries>>> {
        if let Some(e) = self.series.get_mut(&id) {
            e.last_segment = segment;
            return Some(e.sent.clone());
        }
        // Defined before the position reading started from: the head knows it.
        let labels = self.q.store.series_labels_by_id(id)?;
        let sent = self.sent_form(&labels);
        self.series.insert(
            id,
            SeriesEntry {
                sent: sent.clone(),
                last_segment: segment,
            },
        );
        Some(sent)
    }

    /// External labels added (a label the series has wins), then
    /// `write_relabel_configs`, as Prometheus does.
    fn sent_form(&self, labels: &Labels) -> Option<Arc<SentSeries>> {
        let with_external = if self.q.external_labels.is_empty() {
            labels.clone()
        } else {
            let mut all: Vec<Label> = labels.iter().cloned().collect();
            for l in &self.q.external_labels {
                if labels.get(&l.name).is_none() {
                    all.push(l.clone());
                }
            }
            Labels::new(all)
        };
        let out = relabel::process(&with_external, &self.q.config.write_relabel_configs)?;
        (!out.is_empty()).then(|| Arc::new(SentSeries::new(&out)))
    }

    /// Reconsiders the shard count (every [`SHARD_UPDATE`]); a change lets the old
    /// shards send everything first, so a series' samples stay in order.
    fn reshard(&mut self, secs: f64) {
        let c = &self.q.counters;
        let rates = Rates {
            data_in: self
                .data_in
                .tick(c.samples_in.load(Ordering::Relaxed), secs),
            data_out: self
                .data_out
                .tick(c.samples_sent.load(Ordering::Relaxed), secs),
            dropped: self
                .data_dropped
                .tick(c.samples_dropped.load(Ordering::Relaxed), secs),
            out_secs: self
                .out_nanos
                .tick(c.send_nanos.load(Ordering::Relaxed), secs)
                / 1e9,
            delay_s: (self.q.store.newest_sample_ms() as f64
                - c.highest_sent_ms.load(Ordering::Relaxed) as f64)
                .max(0.0)
                / 1e3,
        };
        let Some(current) = self.shards.as_ref().map(Shards::len) else {
            return;
        };
        let Some((desired, n)) = desired_shards(&rates, current, &self.q.config.queue) else {
            return;
        };
        c.shards_desired.store(desired.to_bits(), Ordering::Relaxed);
        let last_ok = c.last_send_ok_ms.load(Ordering::Relaxed);
        let threshold = 2 * self.q.config.queue.batch_send_deadline.as_millis() as i64;
        // Not while sends fail: more shards would only retry more.
        if n == current || crate::scrape::now_ms() - last_ok > threshold {
            return;
        }
        tracing::info!(remote_name = %self.q.config.name, from = current, to = n, "remote storage resharding");
        if let Some(old) = self.shards.take() {
            old.stop(&self.q, None);
        }
        self.shards = Some(Shards::start(&self.q, n));
    }

    /// Forgets series that can appear no more: gone from the head, and last seen
    /// in a segment older than every segment left.
    fn prune(&mut self) {
        let Ok(segments) = self.q.store.wal_segments() else {
            return;
        };
        let Some(&oldest) = segments.first() else {
            return;
        };
        if oldest == self.pruned_at {
            return;
        }
        self.pruned_at = oldest;
        let store = &self.q.store;
        self.series
            .retain(|&id, e| e.last_segment >= oldest || store.series_labels_by_id(id).is_some());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(offset: u64) -> WalPosition {
        WalPosition { segment: 1, offset }
    }

    #[test]
    fn the_saved_position_waits_for_the_oldest_record() {
        let mut p = Progress {
            records: VecDeque::new(),
            first: 0,
            saved: pos(0),
        };
        let a = p.add(pos(10), 2);
        let b = p.add(pos(20), 1);
        p.add(pos(30), 0);
        assert_eq!(p.saved, pos(0));
        p.done(b, 1);
        assert_eq!(p.saved, pos(0), "a later record done first moves nothing");
        p.done(a, 1);
        assert_eq!(p.saved, pos(0));
        p.done(a, 1);
        assert_eq!(
            p.saved,
            pos(30),
            "everything up to the first unfinished record"
        );
        let c = p.add(pos(40), 0);
        assert_eq!(p.saved, pos(40));
        p.done(c, 5);
        assert_eq!(p.saved, pos(40));
    }

    #[test]
    fn shards_grow_with_the_backlog_and_shrink_when_it_drains() {
        let cfg = crate::config::QueueConfig {
            max_shards: 50,
            ..Default::default()
        };
        // 10k samples/s in and out, each send taking 0.1 ms a sample: one shard
        // is busy a whole second per second.
        let steady = Rates {
            data_in: 10_000.0,
            data_out: 10_000.0,
            dropped: 0.0,
            out_secs: 1.0,
            delay_s: 1.0,
        };
        assert_eq!(desired_shards(&steady, 1, &cfg).map(|d| d.1), Some(2));
        // Two minutes behind: 5% of 1.2M samples a second more.
        let behind = Rates {
            delay_s: 120.0,
            ..steady
        };
        let (raw, n) = desired_shards(&behind, 2, &cfg).unwrap();
        assert!((raw - 7.0).abs() < 1e-9, "{raw}");
        assert_eq!(n, 7);
        // Still behind: no shrinking, even if the estimate says so.
        let slow_in = Rates {
            data_in: 100.0,
            ..behind
        };
        assert_eq!(desired_shards(&slow_in, 7, &cfg).map(|d| d.1), Some(7));
        // Caught up: back down, not below min_shards.
        let drained = Rates {
            data_in: 100.0,
            delay_s: 1.0,
            ..steady
        };
        assert_eq!(desired_shards(&drained, 7, &cfg).map(|d| d.1), Some(1));
        // Within 30%: left alone; capped at max_shards; nothing sent: no opinion.
        assert_eq!(desired_shards(&steady, 2, &cfg).map(|d| d.1), Some(2));
        let flood = Rates {
            data_in: 1e7,
            ..steady
        };
        assert_eq!(desired_shards(&flood, 2, &cfg).map(|d| d.1), Some(50));
        let idle = Rates {
            data_out: 0.0,
            ..steady
        };
        assert_eq!(desired_shards(&idle, 3, &cfg), None);
    }

    #[test]
    fn positions_round_trip_and_names_become_file_names() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.position");
        assert_eq!(read_position(&f), None);
        write_position(
            &f,
            WalPosition {
                segment: 7,
                offset: 99,
            },
            true,
        )
        .unwrap();
        assert_eq!(
            read_position(&f),
            Some(WalPosition {
                segment: 7,
                offset: 99
            })
        );
        std::fs::write(&f, "garbage").unwrap();
        assert_eq!(read_position(&f), None);
        assert_eq!(file_name("mimir-1"), "mimir-1");
        assert_eq!(file_name("a/b"), "612f62");
    }
}
