//! Remote write, the sending side: every sample the store takes is sent on to
//! Prometheus-compatible receivers (Mimir, Thanos Receive, VictoriaMetrics, a
//! Prometheus with its receiver on) as Prometheus 2.42 sends it, one queue per
//! `remote_write` entry.
//!
//! A queue follows the store's WAL (`store::WalTail`) rather than keeping a copy
//! of what is appended: a receiver that is down costs nothing for as long as the
//! WAL keeps the data (until a cut truncates it, about one block range), and the
//! position of the first sample not yet taken is saved in
//! `<store>/remote_write/<name>.position`, so a restart, `kill -9` included,
//! resumes there. The protocol (`encode.rs`), the shards and retries (`shard.rs`)
//! and the metadata sender (`metadata.rs`) are Prometheus's.

mod encode;
mod metadata;
mod queue;
mod shard;

use std::sync::atomic::Ordering;
use std::sync::Arc;

pub use queue::BATCH_DURATION_BUCKETS;

use crate::config::RemoteWriteConfig;
use crate::model::labels::Labels;
use crate::scrape::exposition::MetricMetadata;
use crate::store::Store;

/// Where the metadata sender finds the families the targets expose.
pub type MetadataSource = Arc<dyn Fn() -> Vec<MetricMetadata> + Send + Sync>;

/// The queues of one config's `remote_write` entries.
pub struct RemoteWriters {
    queues: Vec<queue::QueueManager>,
}

/// One queue's numbers, for the self-metrics (Prometheus's names in the comments).
#[derive(Clone, Debug, Default)]
pub struct QueueStats {
    pub name: String,
    pub url: String,
    /// `samples_total`
    pub samples_sent: u64,
    /// `samples_failed_total`
    pub samples_failed: u64,
    /// `samples_retried_total`
    pub samples_retried: u64,
    /// `samples_dropped_total`
    pub samples_dropped: u64,
    /// `samples_pending`
    pub samples_pending: i64,
    /// Samples read from the WAL.
    pub samples_in: u64,
    /// `bytes_total`
    pub bytes_sent: u64,
    /// `queue_highest_sent_timestamp_seconds`, in ms (0: nothing sent yet).
    pub highest_sent_ms: i64,
    pub shards: u64,
    pub shards_desired: f64,
    pub shards_min: u64,
    pub shards_max: u64,
    pub shard_capacity: u64,
    pub max_samples_per_send: u64,
    pub enqueue_retries: u64,
    pub metadata_sent: u64,
    pub metadata_failed: u64,
    pub metadata_retried: u64,
    pub metadata_bytes: u64,
    /// WAL segments deleted before they were read.
    pub segments_skipped: u64,
    /// `sent_batch_duration_seconds`: cumulative bucket counts and the sum.
    pub batch_durations: (Vec<u64>, f64),
}

impl RemoteWriters {
    /// Starts a queue per entry. Must be called inside a tokio runtime.
    pub fn start(
        configs: &[RemoteWriteConfig],
        external_labels: &Labels,
        store: Arc<Store>,
        metadata: MetadataSource,
    ) -> RemoteWriters {
        crate::scrape::tls::install_default_provider();
        RemoteWriters {
            queues: configs
                .iter()
                .map(|c| {
                    queue::QueueManager::start(
                        c.clone(),
                        external_labels.clone(),
                        store.clone(),
                        metadata.clone(),
                    )
                })
                .collect(),
        }
    }

    pub fn stats(&self) -> Vec<QueueStats> {
        self.queues
            .iter()
            .map(|m| {
                let q = &m.queue;
                let c = &q.counters;
                let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                QueueStats {
                    name: q.config.name.clone(),
                    url: q.config.url.clone(),
                    samples_sent: get(&c.samples_sent),
                    samples_failed: get(&c.samples_failed),
                    samples_retried: get(&c.samples_retried),
                    samples_dropped: get(&c.samples_dropped),
                    samples_pending: c.samples_pending.load(Ordering::Relaxed),
                    samples_in: get(&c.samples_in),
                    bytes_sent: get(&c.bytes_sent),
                    highest_sent_ms: c.highest_sent_ms.load(Ordering::Relaxed),
                    shards: get(&c.shards),
                    shards_desired: f64::from_bits(get(&c.shards_desired)),
                    shards_min: q.config.queue.min_shards as u64,
                    shards_max: q.config.queue.max_shards as u64,
                    shard_capacity: q.config.queue.capacity as u64,
                    max_samples_per_send: q.config.queue.max_samples_per_send as u64,
                    enqueue_retries: get(&c.enqueue_retries),
                    metadata_sent: get(&c.metadata_sent),
                    metadata_failed: get(&c.metadata_failed),
                    metadata_retried: get(&c.metadata_retried),
                    metadata_bytes: get(&c.metadata_bytes),
                    segments_skipped: get(&c.segments_skipped),
                    batch_durations: q.batch_durations(),
                }
            })
            .collect()
    }

    /// Stops every queue; each saves how far it got.
    pub async fn stop(self) {
        for q in self.queues {
            q.stop().await;
        }
    }
}
