//! The shards of one remote write queue: each a bounded queue of samples and a
//! task that sends them in batches, retrying what the receiver may take later.
//! A series always goes to the same shard and a shard sends one batch at a time,
//! retried until it is taken or refused, so the samples of a series arrive in order.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use super::encode::{self, SentSeries};
use super::queue::Queue;
use crate::scrape::tls::{with_auth, TargetClient};

/// One sample waiting in a shard, with the WAL record it came from.
pub struct Queued {
    pub series: Arc<SentSeries>,
    pub timestamp_ms: i64,
    pub value: f64,
    pub record: u64,
}

struct ShardState {
    samples: VecDeque<Queued>,
    /// Send what is queued, then end.
    closing: bool,
}

struct ShardQueue {
    state: Mutex<ShardState>,
    not_full: Condvar,
    more: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running shards.
pub struct Shards {
    queues: Vec<Arc<ShardQueue>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Set to end sends in progress (retries included) at once.
    abort: watch::Sender<bool>,
}

impl Shards {
    pub fn start(q: &Arc<Queue>, n: usize) -> Shards {
        let (abort, abort_rx) = watch::channel(false);
        let mut queues = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            let sq = Arc::new(ShardQueue {
                state: Mutex::new(ShardState {
                    samples: VecDeque::new(),
                    closing: false,
                }),
                not_full: Condvar::new(),
                more: Notify::new(),
            });
            queues.push(sq.clone());
            tasks.push(q.rt.spawn(run_shard(q.clone(), sq, abort_rx.clone())));
        }
        q.counters.shards.store(n as u64, Ordering::Relaxed);
        Shards {
            queues,
            tasks,
            abort,
        }
    }

    pub fn len(&self) -> usize {
        self.queues.len()
    }

    /// Queues a sample on the shard of its series id, waiting while that shard is
    /// full. False when the queue is stopping before there was room.
    pub fn enqueue(&self, q: &Queue, id: u32, sample: Queued) -> bool {
        let sq = &self.queues[id as usize % self.queues.len()];
        let mut st = lock(&sq.state);
        let mut waited = false;
        while st.samples.len() >= q.config.queue.capacity {
            if q.stopping() {
                return false;
            }
            if !waited {
                q.counters.enqueue_retries.fetch_add(1, Ordering::Relaxed);
                waited = true;
            }
            st = sq
                .not_full
                .wait_timeout(st, Duration::from_millis(100))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        st.samples.push_back(sample);
        drop(st);
        sq.more.notify_one();
        true
    }

    /// Lets every shard send what it holds, for at most `flush` (`None`: until
    /// done, or until the queue stops and then [`FLUSH_AFTER_STOP`] more); then
    /// ends the sends still going (their samples stay unsent and are read again
    /// from the WAL next time).
    pub fn stop(self, q: &Queue, flush: Option<Duration>) {
        for sq in &self.queues {
            lock(&sq.state).closing = true;
            sq.more.notify_one();
        }
        let Shards {
            mut tasks, abort, ..
        } = self;
        let mut deadline = flush.map(|f| Instant::now() + f);
        q.rt.block_on(async move {
            loop {
                // A task is removed once it ended, so none is awaited twice.
                let step = tokio::time::timeout(Duration::from_millis(100), async {
                    while let Some(t) = tasks.last_mut() {
                        let _ = t.await;
                        tasks.pop();
                    }
                })
                .await;
                if step.is_ok() {
                    return;
                }
                if deadline.is_none() && q.stopping() {
                    deadline = Some(Instant::now() + FLUSH_AFTER_STOP);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    let _ = abort.send(true);
                    for t in tasks {
                        let _ = t.await;
                    }
                    return;
                }
            }
        });
    }
}

/// How long shards that were draining may go on once their queue stops.
pub const FLUSH_AFTER_STOP: Duration = Duration::from_secs(10);

/// Takes batches from its queue and sends them until the queue closes.
async fn run_shard(q: Arc<Queue>, sq: Arc<ShardQueue>, mut abort: watch::Receiver<bool>) {
    let max = q.config.queue.max_samples_per_send;
    let mut client = TargetClient::new(q.tls.clone(), &q.config.url);
    let mut batch: Vec<Queued> = Vec::with_capacity(max);
    let mut deadline = tokio::time::Instant::now() + q.config.queue.batch_send_deadline;
    loop {
        let closing = {
            let mut st = lock(&sq.state);
            let take = (max - batch.len()).min(st.samples.len());
            batch.extend(st.samples.drain(..take));
            st.closing
        };
        sq.not_full.notify_all();
        let due = tokio::time::Instant::now() >= deadline;
        if batch.len() >= max || (!batch.is_empty() && (closing || due)) {
            let sent = send_batch(&q, &mut client, &batch, &mut abort).await;
            if !sent {
                return;
            }
            q.complete(&batch);
            batch.clear();
            deadline = tokio::time::Instant::now() + q.config.queue.batch_send_deadline;
            continue;
        }
        if closing {
            return;
        }
        if due {
            deadline = tokio::time::Instant::now() + q.config.queue.batch_send_deadline;
        }
        let _ = tokio::time::timeout_at(deadline, sq.more.notified()).await;
    }
}

/// Why a send failed.
pub struct SendError {
    pub message: String,
    /// 5xx, 429 when retried, or no answer: the receiver may take it later.
    pub recoverable: bool,
    pub retry_after: Option<Duration>,
}

/// The most of an error answer's body quoted in a log line (Prometheus's `maxErrMsgLen`).
const MAX_ERROR_BODY: usize = 1024;

/// Posts one compressed request.
pub async fn post(q: &Queue, client: &mut TargetClient, body: &[u8]) -> Result<(), SendError> {
    let recoverable = |message: String| SendError {
        message,
        recoverable: true,
        retry_after: None,
    };
    // A TLS file that cannot be read may be fixed: keep the batch.
    let mut req = client
        .request(reqwest::Method::POST)
        .map_err(recoverable)?
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header(
            "User-Agent",
            concat!("arrowmon/", env!("CARGO_PKG_VERSION")),
        )
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .timeout(q.config.remote_timeout)
        .body(body.to_vec());
    for (name, value) in &q.config.headers {
        req = req.header(name.as_str(), value.as_str());
    }
    let req = with_auth(req, &q.config.auth).map_err(recoverable)?;
    let resp = req
        .send()
        .await
        .map_err(|e| recoverable(crate::scrape::error_chain(&e)))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(retry_after_duration);
    let text = resp.bytes().await.unwrap_or_default();
    let first_line = String::from_utf8_lossy(&text[..text.len().min(MAX_ERROR_BODY)])
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let message = format!("server returned HTTP status {status}: {first_line}");
    let retry_429 = q.config.queue.retry_on_http_429 && status.as_u16() == 429;
    Err(SendError {
        message,
        recoverable: status.is_server_error() || retry_429,
        retry_after: if retry_429 { retry_after } else { None },
    })
}

/// `Retry-After` in seconds (an HTTP date is not honoured: the backoff applies).
fn retry_after_duration(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Sends a batch until the receiver takes or refuses it. False when aborted
/// before that (the batch stays unsent).
async fn send_batch(
    q: &Queue,
    client: &mut TargetClient,
    batch: &[Queued],
    abort: &mut watch::Receiver<bool>,
) -> bool {
    let mut request = Vec::with_capacity(batch.len() * 64);
    let mut highest = i64::MIN;
    for (series, samples) in group_by_series(batch) {
        encode::put_series(series, &samples, &mut request);
    }
    for s in batch {
        highest = highest.max(s.timestamp_ms);
    }
    let body = match encode::compress(&request) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(remote_name = %q.config.name, error = %e, "cannot compress a remote write batch; dropped");
            q.counters
                .samples_failed
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            return true;
        }
    };
    let n = batch.len() as u64;
    let mut backoff = q.config.queue.min_backoff;
    loop {
        if *abort.borrow() {
            return false;
        }
        let started = Instant::now();
        let res = tokio::select! {
            r = post(q, client, &body) => r,
            _ = abort.wait_for(|a| *a) => return false,
        };
        q.observe_send(started.elapsed());
        match res {
            Ok(()) => {
                q.counters.samples_sent.fetch_add(n, Ordering::Relaxed);
                q.counters
                    .bytes_sent
                    .fetch_add(body.len() as u64, Ordering::Relaxed);
                q.counters
                    .highest_sent_ms
                    .fetch_max(highest, Ordering::Relaxed);
                q.counters
                    .last_send_ok_ms
                    .store(crate::scrape::now_ms(), Ordering::Relaxed);
                return true;
            }
            Err(e) if !e.recoverable => {
                q.counters.samples_failed.fetch_add(n, Ordering::Relaxed);
                tracing::error!(remote_name = %q.config.name, url = %q.config.url, samples = n, error = %e.message, "non-recoverable error sending a remote write batch; dropped");
                return true;
            }
            Err(e) => {
                q.counters.samples_retried.fetch_add(n, Ordering::Relaxed);
                let wait = e.retry_after.unwrap_or(backoff);
                tracing::warn!(remote_name = %q.config.name, url = %q.config.url, samples = n, retry_in_ms = wait.as_millis() as u64, error = %e.message, "failed to send a remote write batch, retrying");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = abort.wait_for(|a| *a) => return false,
                }
                backoff = (backoff * 2).min(q.config.queue.max_backoff);
            }
        }
    }
}

/// The batch's samples per series, series in order of first appearance and each
/// one's samples in WAL order.
fn group_by_series(batch: &[Queued]) -> Vec<(&SentSeries, Vec<(i64, f64)>)> {
    let mut index: std::collections::HashMap<*const SentSeries, usize> =
        std::collections::HashMap::with_capacity(batch.len());
    let mut out: Vec<(&SentSeries, Vec<(i64, f64)>)> = Vec::new();
    for s in batch {
        let key = Arc::as_ptr(&s.series);
        let i = *index.entry(key).or_insert_with(|| {
            out.push((&s.series, Vec::new()));
            out.len() - 1
        });
        out[i].1.push((s.timestamp_ms, s.value));
    }
    out
}
