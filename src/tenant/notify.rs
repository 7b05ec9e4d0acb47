//! Alerts sent to Alertmanagers as Prometheus's notifier sends them
//! (notifier/manager.go): the external labels are added (a label the alert has
//! wins), `alerting.alert_relabel_configs` applied, and the alerts queued (at
//! most 10,000; the oldest are dropped beyond that). A sender takes batches of
//! up to 256 and posts each batch to every Alertmanager at once, as JSON to its
//! API v2 (`POST …/api/v2/alerts`), each set first applying its own
//! `alert_relabel_configs`. A batch that no Alertmanager took is counted as
//! dropped; Prometheus does not retry it either: a firing alert is sent again
//! after the resend delay anyway.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::config::relabel;
use crate::config::{AlertingConfig, AlertmanagerConfig};
use crate::model::labels::{Label, Labels};
use crate::rules::eval::Notification;
use crate::scrape::tls::{with_auth, JobTls, TargetClient};

/// Prometheus's `--alertmanager.notification-queue-capacity`.
pub const QUEUE_CAPACITY: usize = 10_000;
/// The most alerts in one request.
const MAX_BATCH: usize = 256;
/// How long a stopping notifier may take to send what is queued.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What one Alertmanager took and refused.
#[derive(Default)]
struct AlertmanagerCounters {
    sent: AtomicU64,
    errors: AtomicU64,
    /// Sum of request durations in microseconds, and their count.
    latency_micros: AtomicU64,
    requests: AtomicU64,
}

/// The notifier's numbers for the self-metrics.
#[derive(Clone, Debug, Default)]
pub struct NotifierStats {
    pub queue_length: u64,
    pub dropped: u64,
    /// (alerts URL, alerts sent, alerts that failed, request seconds summed, requests).
    pub alertmanagers: Vec<(String, u64, u64, f64, u64)>,
}

struct Shared {
    config: AlertingConfig,
    external_labels: Labels,
    queue: Mutex<VecDeque<Notification>>,
    more: Notify,
    dropped: AtomicU64,
    /// Per alerts URL, in config order.
    counters: Vec<(usize, String, AlertmanagerCounters)>,
}

pub struct Notifier {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Notifier {
    pub fn start(config: AlertingConfig, external_labels: Labels) -> Notifier {
        let counters = config
            .alertmanagers
            .iter()
            .enumerate()
            .flat_map(|(i, am)| {
                am.urls
                    .iter()
                    .map(move |u| (i, u.clone(), AlertmanagerCounters::default()))
            })
            .collect();
        let shared = Arc::new(Shared {
            config,
            external_labels,
            queue: Mutex::new(VecDeque::new()),
            more: Notify::new(),
            dropped: AtomicU64::new(0),
            counters,
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(shared.clone(), stop_rx));
        Notifier { shared, stop, task }
    }

    /// Queues alerts for sending, with the external labels and the relabeling
    /// of `alerting.alert_relabel_configs` applied.
    pub fn send(&self, alerts: Vec<Notification>) {
        let mut queued = 0;
        {
            let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            for mut a in alerts {
                let mut ls: Vec<Label> = self
                    .shared
                    .external_labels
                    .iter()
                    .filter(|l| a.labels.get(&l.name).is_none())
                    .cloned()
                    .collect();
                ls.extend(a.labels.iter().cloned());
                let Some(labels) =
                    relabel::process(&Labels::new(ls), &self.shared.config.alert_relabel_configs)
                else {
                    continue;
                };
                a.labels = labels;
                q.push_back(a);
                queued += 1;
            }
            let over = q.len().saturating_sub(QUEUE_CAPACITY);
            if over > 0 {
                q.drain(..over);
                self.shared
                    .dropped
                    .fetch_add(over as u64, Ordering::Relaxed);
                tracing::warn!(
                    dropped = over,
                    "alert notification queue full, oldest alerts dropped"
                );
            }
        }
        if queued > 0 {
            self.shared.more.notify_one();
        }
    }

    pub fn stats(&self) -> NotifierStats {
        NotifierStats {
            queue_length: self
                .shared
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len() as u64,
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            alertmanagers: self
                .shared
                .counters
                .iter()
                .map(|(_, url, c)| {
                    (
                        url.clone(),
                        c.sent.load(Ordering::Relaxed),
                        c.errors.load(Ordering::Relaxed),
                        c.latency_micros.load(Ordering::Relaxed) as f64 / 1e6,
                        c.requests.load(Ordering::Relaxed),
                    )
                })
                .collect(),
        }
    }

    /// Stops after sending what is queued (as Prometheus drains on shutdown),
    /// waiting at most `DRAIN_TIMEOUT`.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.shared.more.notify_one();
        let mut task = self.task;
        if tokio::time::timeout(DRAIN_TIMEOUT, &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// One Alertmanager URL with its client.
struct Endpoint {
    set: usize,
    counters: usize,
    client: TargetClient,
}

async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut endpoints: Vec<Endpoint> = Vec::new();
    for (i, (set, url, _)) in shared.counters.iter().enumerate() {
        let am = &shared.config.alertmanagers[*set];
        endpoints.push(Endpoint {
            set: *set,
            counters: i,
            client: TargetClient::new(Arc::new(JobTls::new(am.tls.clone())), url),
        });
    }
    loop {
        let stopping = *stop.borrow();
        loop {
            let batch: Vec<Notification> = {
                let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
                let n = q.len().min(MAX_BATCH);
                q.drain(..n).collect()
            };
            if batch.is_empty() {
                break;
            }
            send_batch(&shared, &mut endpoints, &batch).await;
        }
        if stopping {
            return;
        }
        tokio::select! {
            _ = shared.more.notified() => {}
            _ = stop.changed() => {}
        }
    }
}

/// Posts one batch to every Alertmanager at once; counts it dropped if none took it.
async fn send_batch(shared: &Shared, endpoints: &mut [Endpoint], batch: &[Notification]) {
    let mut requests = Vec::new();
    for ep in endpoints.iter_mut() {
        let am = &shared.config.alertmanagers[ep.set];
        let body = payload(batch, am);
        if body.is_empty() {
            continue;
        }
        let n = body.len() as u64;
        let req = ep
            .client
            .request(reqwest::Method::POST)
            .and_then(|r| with_auth(r, &am.auth))
            .map(|r| {
                r.timeout(am.timeout)
                    .header("Content-Type", "application/json")
                    .body(Value::Array(body).to_string())
            });
        requests.push((ep.counters, n, req));
    }
    let mut sends = tokio::task::JoinSet::new();
    for (c, n, req) in requests {
        sends.spawn(async move {
            let started = Instant::now();
            let outcome = match req {
                Ok(r) => match r.send().await {
                    Ok(resp) if resp.status().is_success() => Ok(()),
                    Ok(resp) => Err(format!("bad response status {}", resp.status())),
                    Err(e) => Err(crate::scrape::error_chain(&e)),
                },
                Err(e) => Err(e),
            };
            (c, n, started.elapsed(), outcome)
        });
    }
    let results = sends.join_all().await;
    let mut any_ok = false;
    for (c, n, took, outcome) in results {
        let (_, url, counters) = &shared.counters[c];
        counters.requests.fetch_add(1, Ordering::Relaxed);
        counters.latency_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        match outcome {
            Ok(()) => {
                any_ok = true;
                counters.sent.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                counters.errors.fetch_add(n, Ordering::Relaxed);
                tracing::error!(alertmanager = %url, count = n, error = %e, "error sending alerts");
            }
        }
    }
    if !any_ok && !shared.counters.is_empty() {
        shared
            .dropped
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
    }
}

/// The API v2 body for one Alertmanager set: its `alert_relabel_configs`
/// applied, alerts relabeled away left out.
fn payload(batch: &[Notification], am: &AlertmanagerConfig) -> Vec<Value> {
    batch
        .iter()
        .filter_map(|a| {
            let labels: serde_json::Map<String, Value> =
                relabel::process(&a.labels, &am.alert_relabel_configs)?
                    .iter()
                    .map(|l| (l.name.to_string(), Value::String(l.value.to_string())))
                    .collect();
            Some(json!({
                "labels": labels,
                "annotations": a.annotations,
                "startsAt": go_time(a.starts_at_ms),
                "endsAt": go_time(a.ends_at_ms),
                "generatorURL": a.generator_url,
            }))
        })
        .collect()
}

fn go_time(ms: i64) -> String {
    if ms == 0 {
        crate::model::time::GO_ZERO_TIME.to_string()
    } else {
        crate::model::time::format_go_time_ms(ms)
    }
}
