//! The pull scraper: one [`ScrapeLoop`] per target fetches `/metrics` at the job's
//! interval, parses the exposition, attaches the target labels, appends to the
//! store with the synthetic `up`/`scrape_*` series, and writes staleness markers
//! for series that disappear, as Prometheus does.

pub mod exposition;

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Auth, ScrapeConfig, ScrapeJob, Target};
use crate::labels::{Label, Labels, METRIC_NAME};
use crate::promql::stale_nan;
use crate::store::{AppendSample, Store};
use exposition::{Entry, Format, MetadataCollector, MetricMetadata, Parser, ParserOptions};

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Unknown,
    Up,
    Down,
}

/// What the health check and `api/v1/targets` report of one target.
#[derive(Clone, Debug)]
pub struct TargetStatus {
    pub job: String,
    pub url: String,
    pub labels: Labels,
    pub interval: Duration,
    pub timeout: Duration,
    pub health: Health,
    pub last_error: String,
    pub last_scrape_ms: i64,
    pub last_duration: Duration,
    pub series: usize,
    pub metadata: Arc<Vec<MetricMetadata>>,
}

/// Runs every target's scrape loop of one scrape config.
pub struct ScrapeManager {
    statuses: Vec<Arc<RwLock<TargetStatus>>>,
    stop: watch::Sender<bool>,
    loops: Vec<JoinHandle<()>>,
}

impl ScrapeManager {
    /// Starts a loop per target. Must be called inside a tokio runtime.
    pub fn start(config: &ScrapeConfig, store: Arc<Store>) -> ScrapeManager {
        let (stop, stop_rx) = watch::channel(false);
        let client = reqwest::Client::builder()
            .user_agent(concat!("arrowmon/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .build()
            .unwrap_or_default();
        let mut statuses = Vec::new();
        let mut loops = Vec::new();
        for (job, target) in config.targets() {
            let status = Arc::new(RwLock::new(TargetStatus {
                job: job.name.clone(),
                url: target.url.clone(),
                labels: target.labels.clone(),
                interval: job.interval,
                timeout: job.timeout,
                health: Health::Unknown,
                last_error: String::new(),
                last_scrape_ms: 0,
                last_duration: Duration::ZERO,
                series: 0,
                metadata: Arc::new(Vec::new()),
            }));
            statuses.push(status.clone());
            let scrape_loop = ScrapeLoop {
                job: job.clone(),
                target: target.clone(),
                client: client.clone(),
                store: store.clone(),
                status,
                previous: HashSet::new(),
            };
            loops.push(tokio::spawn(scrape_loop.run(stop_rx.clone())));
        }
        ScrapeManager {
            statuses,
            stop,
            loops,
        }
    }

    pub fn targets(&self) -> Vec<TargetStatus> {
        self.statuses
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }

    /// Stops every loop; each writes staleness markers for its series first.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for l in self.loops {
            let _ = l.await;
        }
    }
}

struct ScrapeLoop {
    job: ScrapeJob,
    target: Target,
    client: reqwest::Client,
    store: Arc<Store>,
    status: Arc<RwLock<TargetStatus>>,
    /// Series of the last successful scrape, for staleness markers.
    previous: HashSet<Labels>,
}

/// A failed scrape: why, in words fit for the health check.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ScrapeError(pub String);

struct Scraped {
    samples: Vec<AppendSample>,
    metadata: Vec<MetricMetadata>,
}

impl ScrapeLoop {
    /// A stable offset within the interval, so one target's scrapes are evenly
    /// spaced and targets of a job do not all fire at once.
    fn offset(&self) -> Duration {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.target.url.hash(&mut h);
        self.target.labels.hash(&mut h);
        let interval_ms = self.job.interval.as_millis().max(1) as u64;
        Duration::from_millis(h.finish() % interval_ms)
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let interval_ms = self.job.interval.as_millis().max(1) as i64;
        let offset_ms = self.offset().as_millis() as i64;
        loop {
            let now = now_ms();
            let next =
                (now - offset_ms).div_euclid(interval_ms) * interval_ms + interval_ms + offset_ms;
            let wait = Duration::from_millis((next - now).max(0) as u64);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
            self.scrape_once().await;
        }
        // The target went away: its series end here.
        let stale: Vec<AppendSample> = self
            .previous
            .drain()
            .map(|labels| AppendSample {
                labels,
                timestamp_ms: now_ms(),
                value: stale_nan(),
            })
            .collect();
        self.store.append(&stale);
    }

    async fn scrape_once(&mut self) {
        let start = Instant::now();
        let ts = now_ms();
        let result = tokio::time::timeout(self.job.timeout, self.fetch_and_parse(ts)).await;
        let duration = start.elapsed();
        let result = match result {
            Ok(r) => r,
            Err(_) => Err(ScrapeError(format!(
                "scrape of {} timed out after {}",
                self.target.url,
                crate::config::format_duration(self.job.timeout)
            ))),
        };
        let mut batch = Vec::new();
        let (up, scraped_count, error) = match result {
            Ok(scraped) => {
                let count = scraped.samples.len();
                let current: HashSet<Labels> =
                    scraped.samples.iter().map(|s| s.labels.clone()).collect();
                for gone in self.previous.difference(&current) {
                    batch.push(AppendSample {
                        labels: gone.clone(),
                        timestamp_ms: ts,
                        value: stale_nan(),
                    });
                }
                self.previous = current;
                batch.extend(scraped.samples);
                self.status
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .metadata = Arc::new(scraped.metadata);
                (1.0, count, String::new())
            }
            Err(e) => {
                // A failed scrape ends every series the target had, as in Prometheus.
                for gone in self.previous.drain() {
                    batch.push(AppendSample {
                        labels: gone,
                        timestamp_ms: ts,
                        value: stale_nan(),
                    });
                }
                tracing::warn!(target_url = %self.target.url, error = %e, "scrape failed");
                (0.0, 0, e.0)
            }
        };
        let outcome = self.store.append(&batch);
        let report = |name: &str, value: f64| AppendSample {
            labels: with_name(&self.target.labels, name),
            timestamp_ms: ts,
            value,
        };
        self.store.append(&[
            report("up", up),
            report("scrape_duration_seconds", duration.as_secs_f64()),
            report("scrape_samples_scraped", scraped_count as f64),
            report(
                "scrape_samples_post_metric_relabeling",
                scraped_count as f64,
            ),
            report("scrape_series_added", outcome.series_created as f64),
        ]);
        let mut status = self.status.write().unwrap_or_else(|e| e.into_inner());
        status.health = if up == 1.0 { Health::Up } else { Health::Down };
        status.last_error = error;
        status.last_scrape_ms = ts;
        status.last_duration = duration;
        status.series = self.previous.len();
    }

    async fn fetch_and_parse(&self, ts: i64) -> Result<Scraped, ScrapeError> {
        let url = &self.target.url;
        let fail = |what: String| ScrapeError(format!("{url}: {what}"));
        let mut req = self
            .client
            .get(url)
            .header("Accept", exposition::ACCEPT_HEADER)
            .header("Accept-Encoding", exposition::ACCEPT_ENCODING_HEADER)
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                format!("{}", self.job.timeout.as_secs_f64()),
            );
        match &self.job.auth {
            Auth::None => {}
            Auth::Basic { username, password } => {
                let pw = match password {
                    Some(p) => Some(p.read().map_err(fail)?),
                    None => None,
                };
                req = req.basic_auth(username, pw);
            }
            Auth::Header {
                scheme,
                credentials,
            } => {
                let c = credentials.read().map_err(fail)?;
                req = req.header("Authorization", format!("{scheme} {c}"));
            }
        }
        let mut resp = req.send().await.map_err(|e| fail(error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(fail(format!(
                "server returned HTTP status {}",
                resp.status()
            )));
        }
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header("content-type");
        let content_encoding = header("content-encoding");
        let limit = self.job.limits.body_size_limit;
        let mut raw = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fail(error_chain(&e)))? {
            // Stop receiving as soon as the raw body alone reaches the limit.
            if limit > 0 && (raw.len() + chunk.len()) as u64 >= limit {
                return Err(fail(format!("body size limit exceeded ({limit} bytes)")));
            }
            raw.extend_from_slice(&chunk);
        }
        let body = exposition::decode_body(&raw, content_encoding.as_deref(), limit)
            .map_err(|e| fail(e.to_string()))?;
        let format = Format::from_content_type(content_type.as_deref(), None)
            .map_err(|e| fail(e.to_string()))?
            .format;
        self.parse(&body, format, ts).map_err(fail)
    }

    fn parse(&self, body: &[u8], format: Format, ts: i64) -> Result<Scraped, String> {
        let mut parser = Parser::new(body, format, ParserOptions::default());
        let mut metadata = MetadataCollector::new();
        let mut samples = Vec::new();
        let limits = &self.job.limits;
        loop {
            let entry = match parser.next() {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(e) => return Err(e.to_string()),
            };
            metadata.observe(&entry);
            let Entry::Sample(sample) = entry else {
                continue;
            };
            if limits.sample_limit > 0 && samples.len() as u64 >= limits.sample_limit {
                return Err(format!(
                    "sample limit exceeded (sample_limit: {})",
                    limits.sample_limit
                ));
            }
            let scraped = sample.to_labels().map_err(|e| e.to_string())?;
            let labels = merge_target_labels(&self.target.labels, scraped, self.job.honor_labels);
            check_label_limits(&labels, limits)
                .map_err(|e| format!("line {}: {e}", sample.line))?;
            let timestamp_ms = match (self.job.honor_timestamps, sample.timestamp_ms) {
                (true, Some(t)) => t,
                _ => ts,
            };
            samples.push(AppendSample {
                labels,
                timestamp_ms,
                value: sample.value,
            });
        }
        Ok(Scraped {
            samples,
            metadata: metadata.finish(),
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

fn with_name(target: &Labels, name: &str) -> Labels {
    let mut v: Vec<Label> = target.iter().cloned().collect();
    v.push(Label::new(METRIC_NAME, name));
    Labels::new(v)
}

/// Attaches target labels to a scraped series. Without `honor_labels` the target's
/// labels win and a clashing scraped label is kept as `exported_<name>`; with it,
/// the scraped labels win.
fn merge_target_labels(target: &Labels, scraped: Labels, honor_labels: bool) -> Labels {
    let mut out: Vec<Label> = Vec::with_capacity(scraped.len() + target.len());
    for l in scraped.iter() {
        match target.get(&l.name) {
            Some(_) if !honor_labels => {
                let mut name = format!("exported_{}", l.name);
                while target.get(&name).is_some() || scraped.get(&name).is_some() {
                    name = format!("exported_{name}");
                }
                out.push(Label::new(name, l.value.clone()));
            }
            _ => out.push(l.clone()),
        }
    }
    for l in target.iter() {
        if honor_labels && scraped.get(&l.name).is_some() {
            continue;
        }
        out.push(l.clone());
    }
    Labels::new(out)
}

fn check_label_limits(labels: &Labels, limits: &crate::config::ScrapeLimits) -> Result<(), String> {
    if limits.label_limit > 0 && labels.len() as u64 > limits.label_limit {
        return Err(format!(
            "label_limit exceeded (metric: {}, number of labels: {}, limit: {})",
            labels.metric_name().unwrap_or(""),
            labels.len(),
            limits.label_limit
        ));
    }
    for l in labels.iter() {
        if limits.label_name_length_limit > 0
            && l.name.len() as u64 > limits.label_name_length_limit
        {
            return Err(format!(
                "label_name_length_limit exceeded (metric: {}, label name: {}, length: {}, limit: {})",
                labels.metric_name().unwrap_or(""),
                l.name,
                l.name.len(),
                limits.label_name_length_limit
            ));
        }
        if limits.label_value_length_limit > 0
            && l.value.len() as u64 > limits.label_value_length_limit
        {
            return Err(format!(
                "label_value_length_limit exceeded (metric: {}, label name: {}, length: {}, limit: {})",
                labels.metric_name().unwrap_or(""),
                l.name,
                l.value.len(),
                limits.label_value_length_limit
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_labels_win_unless_honor_labels() {
        let target = Labels::from_pairs([("job", "node"), ("instance", "h:1")]);
        let scraped = Labels::from_pairs([("__name__", "x"), ("job", "inner"), ("a", "b")]);
        let merged = merge_target_labels(&target, scraped.clone(), false);
        assert_eq!(
            merged,
            Labels::from_pairs([
                ("__name__", "x"),
                ("a", "b"),
                ("exported_job", "inner"),
                ("instance", "h:1"),
                ("job", "node")
            ])
        );
        let honored = merge_target_labels(&target, scraped, true);
        assert_eq!(honored.get("job"), Some("inner"));
        assert_eq!(honored.get("instance"), Some("h:1"));
    }

    #[test]
    fn label_limits_name_the_metric() {
        let limits = crate::config::ScrapeLimits {
            label_value_length_limit: 3,
            ..Default::default()
        };
        let l = Labels::from_pairs([("__name__", "m"), ("a", "toolong")]);
        let err = check_label_limits(&l, &limits).unwrap_err();
        assert!(
            err.contains("label_value_length_limit") && err.contains("m"),
            "{err}"
        );
    }
}
