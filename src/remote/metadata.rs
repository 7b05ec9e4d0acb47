//! Metric metadata (type, help, unit of each family the targets expose) sent
//! every `metadata_config.send_interval`, as Prometheus's metadata watcher does.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::encode;
use super::queue::Queue;
use super::MetadataSource;
use crate::scrape::tls::TargetClient;

/// The most attempts at one metadata request before it is counted as failed:
/// metadata is sent again at the next interval anyway.
const MAX_ATTEMPTS: u32 = 5;

pub async fn run(q: Arc<Queue>, source: MetadataSource) {
    let cfg = q.config.metadata.clone();
    let mut client = TargetClient::new(q.tls.clone(), &q.config.url);
    let mut tick = tokio::time::interval(cfg.send_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is now: wait one interval for the targets to be scraped.
    tick.tick().await;
    loop {
        tick.tick().await;
        let all = source();
        for chunk in all.chunks(cfg.max_samples_per_send) {
            let mut request = Vec::new();
            for m in chunk {
                encode::put_metadata(m, &mut request);
            }
            let body = match encode::compress(&request) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(remote_name = %q.config.name, error = %e, "cannot compress remote write metadata");
                    continue;
                }
            };
            let n = chunk.len() as u64;
            let mut backoff = q.config.queue.min_backoff;
            let mut attempt = 0;
            loop {
                attempt += 1;
                match super::shard::post(&q, &mut client, &body).await {
                    Ok(()) => {
                        q.counters.metadata_sent.fetch_add(n, Ordering::Relaxed);
                        q.counters
                            .metadata_bytes
                            .fetch_add(body.len() as u64, Ordering::Relaxed);
                        break;
                    }
                    Err(e) if e.recoverable && attempt < MAX_ATTEMPTS => {
                        q.counters.metadata_retried.fetch_add(n, Ordering::Relaxed);
                        tokio::time::sleep(e.retry_after.unwrap_or(backoff)).await;
                        backoff = (backoff * 2).min(q.config.queue.max_backoff);
                    }
                    Err(e) => {
                        q.counters.metadata_failed.fetch_add(n, Ordering::Relaxed);
                        tracing::warn!(remote_name = %q.config.name, url = %q.config.url, error = %e.message, "cannot send remote write metadata; sent again at the next interval");
                        break;
                    }
                }
            }
        }
        if q.stopping() {
            return;
        }
    }
}
