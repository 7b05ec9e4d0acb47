//! The pull scraper: one [`ScrapeLoop`] per target fetches `/metrics` at the job's
//! interval, parses the exposition, attaches the target labels, appends to the
//! store with the synthetic `up`/`scrape_*` series, and writes staleness markers
//! for series that disappear, as Prometheus does. A job with `mysql:` collects
//! over SQL instead of fetching (`collect/`); the rest of its loop is the same.

pub mod check;
pub mod discovery;
pub mod exposition;
pub mod tls;

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::collect::MysqlTarget;
use crate::config::relabel;
use crate::config::targets::resolve_groups;
use crate::config::{DroppedTarget, ScrapeConfig, ScrapeJob, Target};
use crate::model::exemplar::Exemplar;
use crate::model::labels::{Label, Labels, METRIC_NAME};
use crate::model::stale_nan;
use crate::store::{AppendSample, RefSample, SeriesId, SeriesRef, Store, MAX_AHEAD_MS};
use exposition::{Entry, Format, MetadataCollector, MetricMetadata, Parser, ParserOptions};

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The most a scrape body may be, inflated, when the job sets no
/// `body_size_limit` (Prometheus has no ceiling there; one unbounded response
/// must not take the process's memory, so arrowmon has one).
pub const MAX_BODY_SIZE: u64 = 512 << 20;

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
    /// The target's labels before relabeling.
    pub discovered_labels: Labels,
    pub interval: Duration,
    pub timeout: Duration,
    pub health: Health,
    pub last_error: String,
    pub last_scrape_ms: i64,
    pub last_duration: Duration,
    pub series: usize,
    pub metadata: Arc<Vec<MetricMetadata>>,
}

/// A target relabeling dropped, with its job.
#[derive(Clone, Debug)]
pub struct DroppedTargetStatus {
    pub job: String,
    pub discovered_labels: Labels,
}

struct RunningLoop {
    status: Arc<RwLock<TargetStatus>>,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// One job's targets as they are now (they change with file_sd).
#[derive(Default)]
struct JobTargets {
    active: Vec<Arc<RwLock<TargetStatus>>>,
    dropped: Vec<DroppedTarget>,
    /// Discovery problems: unreadable files, targets that could not be built.
    errors: Vec<String>,
}

/// Counts of every scrape loop of a tenant, kept across config reloads.
#[derive(Debug, Default)]
pub struct ScrapeCounters {
    /// Scraped samples refused as out of bounds: more than [`MAX_AHEAD_MS`] after
    /// the scrape, or below the head's lower bound (Prometheus's
    /// `prometheus_target_scrapes_sample_out_of_bounds_total`).
    pub samples_out_of_bounds: AtomicU64,
}

/// Runs every target's scrape loop of one scrape config.
pub struct ScrapeManager {
    jobs: Vec<(String, Arc<RwLock<JobTargets>>)>,
    stop: watch::Sender<bool>,
    runners: Vec<JoinHandle<()>>,
    counters: Arc<ScrapeCounters>,
}

/// The identity of a running target: a change of its labels (`__` ones included)
/// or URL replaces its loop; anything else leaves it running.
fn loop_key(t: &Target) -> (Labels, String) {
    (t.internal_labels.clone(), t.url.clone())
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    l.read().unwrap_or_else(|e| e.into_inner()).clone()
}

impl ScrapeManager {
    /// Starts a loop per static target and a discovery task per job with
    /// `file_sd_configs`, with counters of its own. Must be called inside a tokio
    /// runtime.
    pub fn start(config: &ScrapeConfig, store: Arc<Store>) -> ScrapeManager {
        ScrapeManager::start_counting(config, store, Arc::default())
    }

    /// [`start`](Self::start), counting into `counters` (a tenant's, which outlive
    /// one config).
    pub fn start_counting(
        config: &ScrapeConfig,
        store: Arc<Store>,
        counters: Arc<ScrapeCounters>,
    ) -> ScrapeManager {
        tls::install_default_provider();
        let (stop, stop_rx) = watch::channel(false);
        let mut jobs = Vec::new();
        let mut runners = Vec::new();
        for job in &config.jobs {
            let job = Arc::new(job.clone());
            let job_tls = Arc::new(tls::JobTls::new(job.tls.clone()));
            // Built now so a bad tls_config is logged at start; scrapes build again
            // once the files change.
            if let Err(e) = job_tls.current() {
                tracing::warn!(job = %job.name, error = %e, "cannot build the scrape client; scrapes of this job fail until the TLS files are fixed");
            }
            let mut runner = JobRunner {
                job: job.clone(),
                job_tls,
                store: store.clone(),
                counters: counters.clone(),
                loops: HashMap::new(),
                shared: Arc::new(RwLock::new(JobTargets::default())),
            };
            // Static targets start now, so they are listed from the first moment.
            runner.sync(job.targets.clone(), job.dropped.clone(), Vec::new());
            jobs.push((job.name.clone(), runner.shared.clone()));
            runners.push(tokio::spawn(runner.run(stop_rx.clone())));
        }
        ScrapeManager {
            jobs,
            stop,
            runners,
            counters,
        }
    }

    pub fn counters(&self) -> &ScrapeCounters {
        &self.counters
    }

    pub fn targets(&self) -> Vec<TargetStatus> {
        self.jobs
            .iter()
            .flat_map(|(_, j)| {
                let j = j.read().unwrap_or_else(|e| e.into_inner());
                j.active.iter().map(|s| read(s)).collect::<Vec<_>>()
            })
            .collect()
    }

    pub fn dropped_targets(&self) -> Vec<DroppedTargetStatus> {
        self.jobs
            .iter()
            .flat_map(|(name, j)| {
                let j = j.read().unwrap_or_else(|e| e.into_inner());
                j.dropped
                    .iter()
                    .map(|d| DroppedTargetStatus {
                        job: name.clone(),
                        discovered_labels: d.discovered_labels.clone(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// A handle that lists the metric families every target exposes (each family
    /// once, the first target's metadata winning), for remote write's metadata.
    pub fn metadata_source(&self) -> impl Fn() -> Vec<MetricMetadata> + Send + Sync + 'static {
        let jobs: Vec<Arc<RwLock<JobTargets>>> = self.jobs.iter().map(|(_, j)| j.clone()).collect();
        move || {
            let mut seen = std::collections::HashSet::new();
            let mut out = Vec::new();
            for j in &jobs {
                let j = j.read().unwrap_or_else(|e| e.into_inner());
                for t in &j.active {
                    let t = t.read().unwrap_or_else(|e| e.into_inner());
                    for m in t.metadata.iter() {
                        if seen.insert(m.family.clone()) {
                            out.push(m.clone());
                        }
                    }
                }
            }
            out
        }
    }

    /// Discovery problems of every job, prefixed with the job.
    pub fn discovery_errors(&self) -> Vec<String> {
        self.jobs
            .iter()
            .flat_map(|(name, j)| {
                let j = j.read().unwrap_or_else(|e| e.into_inner());
                j.errors
                    .iter()
                    .map(|e| format!("job {name:?}: {e}"))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Stops every loop; each writes staleness markers for its series first.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for r in self.runners {
            let _ = r.await;
        }
    }
}

/// Owns one job's loops: starts and stops them as its targets change.
struct JobRunner {
    job: Arc<ScrapeJob>,
    job_tls: Arc<tls::JobTls>,
    store: Arc<Store>,
    counters: Arc<ScrapeCounters>,
    loops: HashMap<(Labels, String), RunningLoop>,
    shared: Arc<RwLock<JobTargets>>,
}

impl JobRunner {
    /// Makes the running loops those of `active`: loops of targets that went away
    /// are told to stop (they write their staleness markers), new ones start,
    /// unchanged ones keep running undisturbed.
    fn sync(
        &mut self,
        active: Vec<Target>,
        dropped: Vec<DroppedTarget>,
        errors: Vec<String>,
    ) -> Vec<JoinHandle<()>> {
        let mut wanted: HashMap<(Labels, String), Target> = HashMap::new();
        for t in active {
            // Two discovered targets with the same labels and URL are one target.
            wanted.entry(loop_key(&t)).or_insert(t);
        }
        let mut stopped = Vec::new();
        let gone: Vec<(Labels, String)> = self
            .loops
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(l) = self.loops.remove(&k) {
                let _ = l.stop.send(true);
                stopped.push(l.handle);
            }
        }
        for (k, target) in wanted {
            if self.loops.contains_key(&k) {
                continue;
            }
            let status = Arc::new(RwLock::new(TargetStatus {
                job: self.job.name.clone(),
                url: target.url.clone(),
                labels: target.labels.clone(),
                discovered_labels: target.discovered_labels.clone(),
                interval: target.interval,
                timeout: target.timeout,
                health: Health::Unknown,
                last_error: String::new(),
                last_scrape_ms: 0,
                last_duration: Duration::ZERO,
                series: 0,
                metadata: Arc::new(Vec::new()),
            }));
            let (stop, stop_rx) = watch::channel(false);
            let scrape_loop = ScrapeLoop {
                job: self.job.clone(),
                source: match &self.job.mysql {
                    Some(m) => Source::Mysql(MysqlTarget::new(
                        m.clone(),
                        target.internal_labels.get("__address__").unwrap_or(""),
                        target.timeout,
                    )),
                    None => Source::Http(tls::TargetClient::new(self.job_tls.clone(), &target.url)),
                },
                target,
                store: self.store.clone(),
                counters: self.counters.clone(),
                status: status.clone(),
                cache: ScrapeCache::default(),
            };
            let handle = tokio::spawn(scrape_loop.run(stop_rx));
            self.loops.insert(
                k,
                RunningLoop {
                    status,
                    stop,
                    handle,
                },
            );
        }
        let mut active: Vec<Arc<RwLock<TargetStatus>>> =
            self.loops.values().map(|l| l.status.clone()).collect();
        active.sort_by_key(|s| {
            let s = s.read().unwrap_or_else(|e| e.into_inner());
            (s.url.clone(), s.labels.clone())
        });
        *self.shared.write().unwrap_or_else(|e| e.into_inner()) = JobTargets {
            active,
            dropped,
            errors,
        };
        stopped
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        if !self.job.file_sd.is_empty() {
            let mut sd = discovery::FileDiscovery::new(&self.job.file_sd);
            let mut resolve_errors: Vec<String> = Vec::new();
            loop {
                if *stop.borrow() {
                    break;
                }
                if sd.poll(Instant::now()) {
                    let mut groups = self.job.static_groups.clone();
                    groups.extend(sd.groups());
                    let resolved = resolve_groups(&self.job, &groups);
                    let mut errors = sd.errors();
                    for e in &resolved.errors {
                        tracing::warn!(job = %self.job.name, error = %e, "creating target failed");
                    }
                    let resolve_errors_now = resolved.errors.clone();
                    errors.extend(resolved.errors);
                    for h in self.sync(resolved.active, resolved.dropped, errors) {
                        let _ = h.await;
                    }
                    resolve_errors = resolve_errors_now;
                } else {
                    let mut errors = sd.errors();
                    errors.extend(resolve_errors.iter().cloned());
                    self.shared
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .errors = errors;
                }
                tokio::select! {
                    _ = tokio::time::sleep(discovery::POLL_INTERVAL) => {}
                    _ = stop.changed() => break,
                }
            }
        } else {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
        }
        for (_, l) in self.loops.drain() {
            let _ = l.stop.send(true);
            let _ = l.handle.await;
        }
    }
}

/// Where a target's exposition comes from.
enum Source {
    /// Fetched over HTTP. The client checks the TLS files before each scrape and
    /// is made again when they changed.
    Http(tls::TargetClient),
    /// Collected from a MySQL server over SQL (a job with `mysql:`); `Err` when
    /// the target's address cannot be one.
    Mysql(Result<MysqlTarget, String>),
}

struct ScrapeLoop {
    job: Arc<ScrapeJob>,
    target: Target,
    source: Source,
    store: Arc<Store>,
    counters: Arc<ScrapeCounters>,
    status: Arc<RwLock<TargetStatus>>,
    /// Series of the recent scrapes: labels per raw series text, and which were
    /// in the last successful scrape (for staleness markers).
    cache: ScrapeCache,
}

/// The series every scrape reports about itself.
const REPORT_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// A failed scrape: why, in words fit for the health check.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ScrapeError(pub String);

pub struct Scraped {
    pub samples: Vec<RefSample>,
    /// The exemplars of `samples`, each with its sample's position there and
    /// whether it came with its own timestamp.
    pub exemplars: Vec<(usize, Exemplar, bool)>,
    /// Samples in the body, before metric relabeling.
    pub scraped: usize,
    /// Samples that metric relabeling kept but whose timestamp lies more than
    /// [`MAX_AHEAD_MS`] after the scrape: refused, as Prometheus refuses them.
    pub too_far_ahead: TooFarAhead,
    /// Series this scrape created in the store.
    pub series_added: u64,
    /// Series of the previous successful scrape that this one no longer has.
    pub stale: Vec<SeriesRef>,
    pub metadata: Vec<MetricMetadata>,
    /// What went wrong in a scrape that still gave samples (a MySQL collector the
    /// server refused, or the server itself), for the target's last error; empty
    /// when nothing did.
    pub partial_error: String,
    /// The MySQL server could not be reached or refused the login: the target is
    /// down (`up` 0), yet the samples (the exporter's `mysql_up` 0 and its
    /// counters, as mysqld_exporter serves them then) are stored.
    pub server_down: bool,
}

/// Samples a scrape refused for a timestamp too far after the scrape time.
#[derive(Debug, Default)]
pub struct TooFarAhead {
    pub count: u64,
    /// The first of them: its line in the body, its series and its timestamp.
    pub first: Option<(u32, Labels, i64)>,
}

/// When the scrape after `now` is due: the next instant `offset_ms` past a
/// multiple of `interval_ms`.
/// Saturates: an interval of millions of years must wait, not wrap to a past time
/// and scrape in a busy loop.
fn next_scrape_ms(now: i64, interval_ms: i64, offset_ms: i64) -> i64 {
    let interval_ms = interval_ms.max(1);
    now.saturating_sub(offset_ms)
        .div_euclid(interval_ms)
        .saturating_mul(interval_ms)
        .saturating_add(interval_ms)
        .saturating_add(offset_ms)
}

/// Why some samples of a scrape that succeeded were not stored, for the target's
/// last error; empty when all were.
fn out_of_bounds_error(url: &str, ahead: &TooFarAhead, too_old: u64) -> String {
    let mut parts = Vec::new();
    if let Some((line, labels, t)) = &ahead.first {
        parts.push(format!(
            "{url}: {} sample(s) out of bounds: timestamp more than {} after the scrape time (first: line {line}, {labels} at {})",
            ahead.count,
            crate::model::duration::format_duration(Duration::from_millis(MAX_AHEAD_MS as u64)),
            crate::model::time::format_rfc3339_ms(*t),
        ));
    }
    if too_old > 0 {
        parts.push(format!(
            "{url}: {too_old} sample(s) out of bounds: older than the head's lower bound (that time range is already cut into a block)"
        ));
    }
    parts.join("; ")
}

impl ScrapeLoop {
    /// A stable offset within the interval, so one target's scrapes are evenly
    /// spaced and targets of a job do not all fire at once.
    fn offset(&self) -> Duration {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.target.url.hash(&mut h);
        self.target.labels.hash(&mut h);
        let interval_ms = self.target.interval.as_millis().max(1) as u64;
        Duration::from_millis(h.finish() % interval_ms)
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let interval_ms = i64::try_from(self.target.interval.as_millis()).unwrap_or(i64::MAX);
        let offset_ms = i64::try_from(self.offset().as_millis()).unwrap_or(0);
        loop {
            let now = now_ms();
            let next = next_scrape_ms(now, interval_ms, offset_ms);
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
        // The target went away: its series end here, its up and scrape_* series
        // too (Prometheus's reportStale).
        let ts = now_ms();
        let gone: Vec<RefSample> = self
            .cache
            .fail()
            .into_iter()
            .map(|series| stale_marker(series, ts))
            .collect();
        self.store.append_refs(&gone);
        let scraped_before = self
            .status
            .read()
            .map(|s| s.last_scrape_ms > 0)
            .unwrap_or(true);
        if scraped_before {
            let reports: Vec<AppendSample> = REPORT_SERIES
                .iter()
                .map(|name| AppendSample {
                    labels: with_name(&self.target.labels, name),
                    timestamp_ms: ts,
                    value: stale_nan(),
                })
                .collect();
            self.store.append(&reports);
        }
        if let Source::Mysql(Ok(server)) = &mut self.source {
            server.close().await;
        }
    }

    async fn scrape_once(&mut self) {
        let start = Instant::now();
        let ts = now_ms();
        let result = tokio::time::timeout(self.target.timeout, self.fetch_and_parse(ts)).await;
        let duration = start.elapsed();
        let result = match result {
            Ok(r) => r,
            Err(_) => Err(ScrapeError(format!(
                "scrape of {} timed out after {}",
                self.target.url,
                crate::model::duration::format_duration(self.target.timeout)
            ))),
        };
        let mut batch = Vec::new();
        // Exemplars with their samples' positions in `batch`.
        let mut exemplars: Vec<(usize, Exemplar, bool)> = Vec::new();
        let mut series_added = 0;
        let mut too_far_ahead = TooFarAhead::default();
        let (up, scraped_count, post_relabel, mut error) = match result {
            Ok(scraped) => {
                let count = scraped.scraped;
                // Refused samples still count as kept by relabeling, as in Prometheus.
                let post = scraped.samples.len() + scraped.too_far_ahead.count as usize;
                too_far_ahead = scraped.too_far_ahead;
                series_added = scraped.series_added;
                batch.extend(scraped.stale.into_iter().map(|s| stale_marker(s, ts)));
                let first = batch.len();
                batch.extend(scraped.samples);
                exemplars = scraped.exemplars;
                for (i, _, _) in &mut exemplars {
                    *i += first;
                }
                self.status
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .metadata = Arc::new(scraped.metadata);
                let up = if scraped.server_down {
                    tracing::warn!(target_url = %self.target.url, error = %scraped.partial_error, "scrape failed");
                    0.0
                } else {
                    if !scraped.partial_error.is_empty() {
                        tracing::warn!(target_url = %self.target.url, error = %scraped.partial_error, "collection incomplete");
                    }
                    1.0
                };
                (up, count, post, scraped.partial_error)
            }
            Err(e) => {
                // A failed scrape ends every series the target had, as in Prometheus.
                batch.extend(self.cache.fail().into_iter().map(|s| stale_marker(s, ts)));
                tracing::warn!(target_url = %self.target.url, error = %e, "scrape failed");
                (0.0, 0, 0, e.0)
            }
        };
        let outcome = if exemplars.is_empty() {
            self.store.append_refs(&batch)
        } else {
            let mut refused = Vec::new();
            let outcome = self.store.append_refs_reporting(&batch, &mut refused);
            self.add_exemplars(&batch, exemplars, &refused);
            outcome
        };
        let out_of_bounds = too_far_ahead.count + outcome.out_of_bounds;
        if out_of_bounds > 0 {
            self.counters
                .samples_out_of_bounds
                .fetch_add(out_of_bounds, Ordering::Relaxed);
            // The scrape itself succeeded: the target stays up, and says what it lost.
            let lost = out_of_bounds_error(&self.target.url, &too_far_ahead, outcome.out_of_bounds);
            error = if error.is_empty() {
                lost
            } else {
                format!("{error}; {lost}")
            };
            tracing::warn!(target_url = %self.target.url, num_dropped = out_of_bounds, error = %error, "error on ingesting samples that are too old or are too far into the future");
        }
        let report = |name: &str, value: f64| AppendSample {
            labels: with_name(&self.target.labels, name),
            timestamp_ms: ts,
            value,
        };
        self.store.append(&[
            report("up", up),
            report("scrape_duration_seconds", duration.as_secs_f64()),
            report("scrape_samples_scraped", scraped_count as f64),
            report("scrape_samples_post_metric_relabeling", post_relabel as f64),
            report(
                "scrape_series_added",
                (series_added + outcome.series_created) as f64,
            ),
        ]);
        let mut status = self.status.write().unwrap_or_else(|e| e.into_inner());
        status.health = if up == 1.0 { Health::Up } else { Health::Down };
        status.last_error = error;
        status.last_scrape_ms = ts;
        status.last_duration = duration;
        status.series = self.cache.live_series();
    }

    /// Keeps the exemplars of the samples the store took (`refused` holds the
    /// positions in `batch` of those it did not). A refused exemplar is counted by
    /// the exemplar storage and never fails the scrape, as in Prometheus.
    fn add_exemplars(
        &self,
        batch: &[RefSample],
        exemplars: Vec<(usize, Exemplar, bool)>,
        refused: &[usize],
    ) {
        let refused: HashSet<usize> = refused.iter().copied().collect();
        let storage = self.store.exemplars();
        for (i, e, has_timestamp) in exemplars {
            if refused.contains(&i) {
                continue;
            }
            let Some(sample) = batch.get(i) else {
                continue;
            };
            if let Err(err) = storage.add(&sample.series.labels(), e, has_timestamp) {
                tracing::debug!(target_url = %self.target.url, series = %sample.series.labels(), error = %err, "exemplar not stored");
            }
        }
    }

    async fn fetch_and_parse(&mut self, ts: i64) -> Result<Scraped, ScrapeError> {
        let url = &self.target.url;
        let fail = |what: String| ScrapeError(format!("{url}: {what}"));
        let client = match &mut self.source {
            Source::Http(client) => client,
            Source::Mysql(server) => {
                // The body mysqld_exporter would have served, parsed as if fetched.
                let collected = match server {
                    Ok(server) => server.collect().await,
                    Err(e) => return Err(fail(e.clone())),
                };
                let mut scraped = parse_body(
                    collected.body.as_bytes(),
                    Format::PrometheusText,
                    ts,
                    &self.target.labels,
                    &self.job,
                    &mut self.cache,
                    &self.store,
                )
                .map_err(fail)?;
                scraped.partial_error = collected
                    .errors
                    .iter()
                    .map(|e| format!("{url}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                scraped.server_down = collected.down;
                return Ok(scraped);
            }
        };
        let mut req = client
            .get()
            .map_err(fail)?
            .header("Accept", exposition::ACCEPT_HEADER)
            .header("Accept-Encoding", exposition::ACCEPT_ENCODING_HEADER)
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                format!("{}", self.target.timeout.as_secs_f64()),
            );
        req = tls::with_auth(req, &self.job.auth).map_err(fail)?;
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
        let limits = &self.job.limits;
        let limit = match limits.body_size_limit {
            0 => MAX_BODY_SIZE,
            n => n,
        };
        let format = Format::from_content_type(content_type.as_deref(), None)
            .map_err(|e| fail(e.to_string()))?
            .format;
        // Without metric relabeling every text-format sample line is one sample, so
        // a target sending millions of series is cut off once the lines exceed
        // sample_limit, before the rest of its body is received.
        let mut line_counter = (limits.sample_limit > 0
            && self.job.metric_relabel_configs.is_empty()
            && format == Format::PrometheusText
            && content_encoding.as_deref() != Some("gzip"))
        .then(SampleLineCounter::default);
        let mut raw = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fail(error_chain(&e)))? {
            // Stop receiving as soon as the raw body alone reaches the limit.
            if (raw.len() + chunk.len()) as u64 >= limit {
                return Err(fail(format!(
                    "body size limit exceeded: the body reached {limit} bytes"
                )));
            }
            if let Some(c) = &mut line_counter {
                c.feed(&chunk);
                if c.samples > limits.sample_limit {
                    return Err(fail(sample_limit_error(limits.sample_limit)));
                }
            }
            raw.extend_from_slice(&chunk);
        }
        let body = exposition::decode_body(&raw, content_encoding.as_deref(), limit)
            .map_err(|e| fail(e.to_string()))?;
        parse_body(
            &body,
            format,
            ts,
            &self.target.labels,
            &self.job,
            &mut self.cache,
            &self.store,
        )
        .map_err(fail)
    }
}

/// Counts the sample lines of a text-format body as it arrives in chunks: lines
/// that are neither empty nor comments.
#[derive(Default)]
struct SampleLineCounter {
    samples: u64,
    /// Inside a line whose first byte was already seen.
    in_line: bool,
}

impl SampleLineCounter {
    fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while !rest.is_empty() {
            if !self.in_line {
                match rest[0] {
                    b'\n' => {
                        rest = &rest[1..];
                        continue;
                    }
                    b'#' => {}
                    _ => self.samples += 1,
                }
                self.in_line = true;
            }
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.in_line = false;
                    rest = &rest[i + 1..];
                }
                None => break,
            }
        }
    }
}

fn sample_limit_error(limit: u64) -> String {
    format!("sample limit exceeded (sample_limit: {limit})")
}

/// What one raw series (metric name and label text as written in the body)
/// becomes: the store series of its labels after target labels and metric
/// relabeling, or `None` when relabeling drops it. 24 bytes.
struct CacheEntry {
    /// The key's fingerprint: the high 64 bits of its 128-bit hash (also the
    /// table's hash) and 31 more bits, below the `LIVE` flag in `check_live`.
    hash: u64,
    check_live: u32,
    /// The scrape that last saw it (wrapping: only compared with the current one,
    /// and entries not seen by a scrape are dropped at its end).
    seen: u32,
    series: Option<SeriesRef>,
}

/// In `CacheEntry::check_live`: the series was stored by the last successful scrape.
const LIVE: u32 = 1 << 31;

impl CacheEntry {
    fn live(&self) -> bool {
        self.check_live & LIVE != 0
    }
}

/// Prometheus's scrape cache: a series seen before skips label building,
/// relabeling and limit checks; and the cache knows which series the last
/// successful scrape had, for staleness markers.
///
/// It holds an entry for every series of the target, so it is kept small: an
/// entry keeps a 95-bit fingerprint of its key (a seeded XXH3-128) instead of the
/// key's text (about 60 bytes of exposition a series, the most of what the cache
/// held). Two distinct keys of one target share a fingerprint with a chance of
/// about n²/2⁹⁶ (below 10⁻¹⁶ for a million series); the seed is random per cache,
/// so no body can be made to collide on purpose across processes, and a collision
/// could only mix two series of the same target, which that exporter could
/// write anyway.
pub struct ScrapeCache {
    entries: hashbrown::HashTable<CacheEntry>,
    seed: u64,
    iteration: u32,
    key: Vec<u8>,
}

impl Default for ScrapeCache {
    fn default() -> Self {
        use std::hash::BuildHasher;
        ScrapeCache {
            entries: hashbrown::HashTable::new(),
            seed: std::collections::hash_map::RandomState::new().hash_one(0u8),
            iteration: 0,
            key: Vec::new(),
        }
    }
}

impl ScrapeCache {
    /// Series stored by the last successful scrape.
    pub fn live_series(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.live() && e.series.is_some())
            .count()
    }

    /// The table hash and the 31 check bits of `key`.
    fn fingerprint(&self, key: &[u8]) -> (u64, u32) {
        let h = twox_hash::XxHash3_128::oneshot_with_seed(self.seed, key);
        ((h >> 64) as u64, h as u32 & !LIVE)
    }

    /// The entry of `key`, marked seen by this scrape.
    fn seen(&mut self, key: &[u8]) -> Option<&CacheEntry> {
        let (hash, check) = self.fingerprint(key);
        let it = self.iteration;
        let e = self
            .entries
            .find_mut(hash, |e| e.hash == hash && e.check_live & !LIVE == check)?;
        e.seen = it;
        Some(e)
    }

    fn insert(&mut self, key: &[u8], series: Option<SeriesRef>) {
        let (hash, check) = self.fingerprint(key);
        let entry = CacheEntry {
            hash,
            check_live: check,
            seen: self.iteration,
            series,
        };
        self.entries.insert_unique(hash, entry, |e| e.hash);
    }

    /// A scrape failed (or the target went away): every series of the last
    /// successful scrape ends. Returns them and forgets everything.
    pub fn fail(&mut self) -> Vec<SeriesRef> {
        let mut out: Vec<SeriesRef> = self
            .entries
            .drain()
            .filter(|e| e.live())
            .filter_map(|e| e.series)
            .collect();
        self.entries.shrink_to_fit(|e| e.hash);
        out.sort_by_key(SeriesRef::id);
        out.dedup_by_key(|s| s.id());
        out
    }

    /// A scrape succeeded: marks what it saw as live, drops the rest, and returns
    /// the series that were live and are gone now.
    fn finish(&mut self) -> Vec<SeriesRef> {
        let it = self.iteration;
        let mut gone = Vec::new();
        self.entries.retain(|e| {
            if e.seen == it {
                e.check_live |= LIVE;
                true
            } else {
                if e.live() {
                    if let Some(s) = e.series.take() {
                        gone.push(s);
                    }
                }
                false
            }
        });
        // Most of the spare room the table grew with (growth by doubling leaves up
        // to half of it unused).
        if self.entries.capacity() > self.entries.len() * 2 + 64 {
            self.entries.shrink_to_fit(|e| e.hash);
        }
        if !gone.is_empty() {
            // Another spelling of the same series may still be there.
            let current: HashSet<SeriesId> = self
                .entries
                .iter()
                .filter_map(|e| e.series.as_ref().map(SeriesRef::id))
                .collect();
            gone.retain(|s| !current.contains(&s.id()));
            gone.sort_by_key(SeriesRef::id);
            gone.dedup_by_key(|s| s.id());
        }
        gone
    }
}

/// Parses a body into the samples to append: target labels attached
/// (`honor_labels`), `metric_relabel_configs` applied, then the label limits and
/// `sample_limit` checked on what is left, as Prometheus's scrape loop does. The
/// cache carries what earlier scrapes of the same target learnt, down to the store
/// series (a new series is created in `store` when first seen); on an error the
/// caller ends the target's series with [`ScrapeCache::fail`].
pub fn parse_body(
    body: &[u8],
    format: Format,
    ts: i64,
    target_labels: &Labels,
    job: &ScrapeJob,
    cache: &mut ScrapeCache,
    store: &Store,
) -> Result<Scraped, String> {
    cache.iteration = cache.iteration.wrapping_add(1);
    let mut parser = Parser::new(body, format, ParserOptions::default());
    let mut metadata = MetadataCollector::new();
    let mut samples = Vec::new();
    let mut exemplars = Vec::new();
    let mut scraped = 0usize;
    let mut series_added = 0u64;
    let mut too_far_ahead = TooFarAhead::default();
    let max_t = ts.saturating_add(MAX_AHEAD_MS);
    let limits = &job.limits;
    let mut key = std::mem::take(&mut cache.key);
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
        scraped += 1;
        key.clear();
        key.extend_from_slice(sample.name().as_bytes());
        // 0xff never occurs in UTF-8 text, so the parts cannot run together. The
        // family type is part of the key: it decides le/quantile normalisation.
        key.push(0xff);
        key.push(sample.metric_type() as u8);
        key.extend_from_slice(sample.raw_label_set().as_bytes());
        let timestamp_ms = match (job.honor_timestamps, sample.timestamp_ms) {
            (true, Some(t)) => t,
            _ => ts,
        };
        let series = match cache.seen(&key) {
            Some(e) => e.series.clone(),
            // Refused before the store sees it, so no series is created for it (as
            // Prometheus's time limit appender refuses it before the head does).
            None if timestamp_ms > max_t => {
                if let Some(labels) = series_labels(&sample, target_labels, job)? {
                    if limits.sample_limit > 0
                        && samples.len() as u64 + too_far_ahead.count >= limits.sample_limit
                    {
                        return Err(sample_limit_error(limits.sample_limit));
                    }
                    too_far_ahead.count += 1;
                    if too_far_ahead.first.is_none() {
                        too_far_ahead.first = Some((sample.line, labels, timestamp_ms));
                    }
                }
                continue;
            }
            None => {
                let series = series_labels(&sample, target_labels, job)?.map(|labels| {
                    let (series, created) = store.series_ref(&labels);
                    series_added += created as u64;
                    series
                });
                cache.insert(&key, series.clone());
                series
            }
        };
        let Some(series) = series else {
            continue;
        };
        // Refused samples count towards the limit, as Prometheus's limit appender
        // sees them before its time limit appender does.
        if limits.sample_limit > 0
            && samples.len() as u64 + too_far_ahead.count >= limits.sample_limit
        {
            return Err(sample_limit_error(limits.sample_limit));
        }
        if timestamp_ms > max_t {
            too_far_ahead.count += 1;
            if too_far_ahead.first.is_none() {
                too_far_ahead.first = Some((sample.line, series.labels(), timestamp_ms));
            }
            continue;
        }
        if let Some(e) = &sample.exemplar {
            // A malformed exemplar (a label name given twice) is dropped, never the
            // scrape: Prometheus does not fail a scrape for its exemplars either.
            if let Ok(labels) = e.to_labels(sample.line) {
                exemplars.push((
                    samples.len(),
                    Exemplar {
                        labels,
                        value: e.value,
                        // Prometheus gives an exemplar without a timestamp its
                        // sample's.
                        timestamp_ms: e.timestamp_ms.unwrap_or(timestamp_ms),
                    },
                    e.timestamp_ms.is_some(),
                ));
            }
        }
        samples.push(RefSample {
            series,
            timestamp_ms,
            value: sample.value,
        });
    }
    cache.key = key;
    let stale = cache.finish();
    Ok(Scraped {
        samples,
        exemplars,
        scraped,
        too_far_ahead,
        series_added,
        stale,
        metadata: metadata.finish(),
        partial_error: String::new(),
        server_down: false,
    })
}

/// The labels a newly seen series is stored with, `None` when metric relabeling
/// drops it.
fn series_labels(
    sample: &exposition::Sample<'_>,
    target_labels: &Labels,
    job: &ScrapeJob,
) -> Result<Option<Labels>, String> {
    let parsed = sample.to_labels().map_err(|e| e.to_string())?;
    let merged = merge_target_labels(target_labels, parsed, job.honor_labels);
    let labels = if job.metric_relabel_configs.is_empty() {
        merged
    } else {
        match relabel::process(&merged, &job.metric_relabel_configs) {
            Some(l) => l,
            None => return Ok(None),
        }
    };
    if labels.metric_name().is_none() {
        return Err(format!(
            "line {}: missing metric name (__name__ label) after metric relabeling: {labels}",
            sample.line
        ));
    }
    check_label_limits(&labels, &job.limits).map_err(|e| format!("line {}: {e}", sample.line))?;
    Ok(Some(labels))
}

fn stale_marker(series: SeriesRef, ts: i64) -> RefSample {
    RefSample {
        series,
        timestamp_ms: ts,
        value: stale_nan(),
    }
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
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
    fn the_next_scrape_is_in_the_future_for_any_interval() {
        let now = 1_700_000_000_123;
        assert_eq!(next_scrape_ms(now, 15_000, 2_000), 1_700_000_012_000);
        // An interval near the largest duration a config may give ("292277024y"
        // plus some weeks), with offsets below and above now.
        let huge = i64::MAX - 1000;
        for offset in [0, 1_000_000, huge - 1] {
            assert!(next_scrape_ms(now, huge, offset) > now, "offset {offset}");
        }
    }

    #[test]
    fn sample_lines_are_counted_across_chunks() {
        let body = b"# HELP a x\n# TYPE a gauge\na 1\n\nb{x=\"#\"} 2\n# EOF\nc 3";
        for split in 0..body.len() {
            let mut c = SampleLineCounter::default();
            c.feed(&body[..split]);
            c.feed(&body[split..]);
            assert_eq!(c.samples, 3, "split at {split}");
        }
    }

    /// A scrape config of one target, an empty scrape cache and a store in a fresh
    /// directory (kept alive by the returned guard).
    fn one_target_setup(yaml: &str) -> (ScrapeConfig, ScrapeCache, tempfile::TempDir, Store) {
        let cfg = ScrapeConfig::parse(yaml, &crate::config::SecretSource::File).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (cfg, ScrapeCache::default(), dir, store)
    }

    #[test]
    fn cache_drops_the_entries_of_gone_series() {
        let (cfg, mut cache, _dir, store) = one_target_setup(
            "scrape_configs:\n  - job_name: j\n    static_configs:\n      - targets: ['h:1']\n",
        );
        let job = &cfg.jobs[0];
        let t = &job.targets[0].labels;
        let body = |set: &str| -> Vec<u8> {
            (0..200)
                .map(|i| format!("some_fairly_long_metric_name{{set=\"{set}\",i=\"{i}\"}} 1\n"))
                .collect::<String>()
                .into_bytes()
        };
        let (a, b) = (body("a"), body("b"));
        let mut ids = Vec::new();
        for (ts, (body, stale)) in [(&a, 0), (&b, 200), (&a, 200), (&a, 0)]
            .into_iter()
            .enumerate()
        {
            let s = parse_body(
                body,
                Format::PrometheusText,
                ts as i64,
                t,
                job,
                &mut cache,
                &store,
            )
            .unwrap();
            assert_eq!((s.samples.len(), s.stale.len()), (200, stale));
            // The gone series' entries are dropped, the live ones still found.
            assert_eq!(cache.entries.len(), 200);
            ids.push(s.samples.iter().map(|r| r.series.id()).collect::<Vec<_>>());
        }
        // Each sample line finds its own series again, not another one's.
        assert_eq!(ids[2], ids[3]);
        let distinct: HashSet<SeriesId> = ids[3].iter().copied().collect();
        assert_eq!(distinct.len(), 200);
        assert!(ids[0].iter().all(|id| distinct.contains(id)));
        assert_eq!(cache.live_series(), 200);
        assert_eq!(cache.fail().len(), 200);
        assert!(cache.entries.is_empty());
        assert_eq!(std::mem::size_of::<CacheEntry>(), 24);
    }

    #[test]
    fn parse_body_relabels_and_counts() {
        let (cfg, mut cache, _dir, store) = one_target_setup(
            "scrape_configs:\n  - job_name: j\n    metric_relabel_configs:\n      - source_labels: [__name__]\n        regex: drop.*\n        action: drop\n      - target_label: __name__\n        source_labels: [kill]\n        regex: 'yes'\n        replacement: ''\n    static_configs:\n      - targets: ['h:1']\n",
        );
        let job = &cfg.jobs[0];
        let t = &job.targets[0].labels;
        let s = parse_body(
            b"keep 1\ndrop_me 2\n",
            Format::PrometheusText,
            5,
            t,
            job,
            &mut cache,
            &store,
        )
        .unwrap();
        assert_eq!((s.scraped, s.samples.len()), (2, 1));
        assert_eq!(
            s.samples[0].series.labels(),
            Labels::from_pairs([("__name__", "keep"), ("instance", "h:1"), ("job", "j")])
        );
        assert_eq!(s.series_added, 1);
        // Cached: the same answer again, nothing stale; then a series goes away.
        let s = parse_body(
            b"keep 1\ndrop_me 2\nnew 3\n",
            Format::PrometheusText,
            6,
            t,
            job,
            &mut cache,
            &store,
        )
        .unwrap();
        assert_eq!((s.scraped, s.samples.len(), s.stale.len()), (3, 2, 0));
        assert_eq!(s.series_added, 1);
        let s = parse_body(
            b"new 3\n",
            Format::PrometheusText,
            7,
            t,
            job,
            &mut cache,
            &store,
        )
        .unwrap();
        assert_eq!(s.stale.len(), 1);
        assert_eq!(s.stale[0].labels().metric_name(), Some("keep"));
        // Two spellings of one series: the one that stays keeps it alive.
        let s = parse_body(
            b"m{a=\"1\",b=\"2\"} 1\nm{b=\"2\",a=\"1\"} 1\n",
            Format::PrometheusText,
            8,
            t,
            job,
            &mut cache,
            &store,
        )
        .unwrap();
        assert_eq!(s.stale.len(), 1); // "new"
        let s = parse_body(
            b"m{b=\"2\",a=\"1\"} 1\n",
            Format::PrometheusText,
            9,
            t,
            job,
            &mut cache,
            &store,
        )
        .unwrap();
        assert!(s.stale.is_empty(), "{:?}", s.stale);
        assert_eq!(cache.live_series(), 1);
        assert_eq!(cache.fail().len(), 1);
        // Relabeling away __name__ fails the scrape, naming the line.
        let err = parse_body(
            b"keep 1\nx{kill=\"yes\"} 1\n",
            Format::PrometheusText,
            5,
            t,
            job,
            &mut ScrapeCache::default(),
            &store,
        )
        .err()
        .unwrap();
        assert!(
            err.contains("line 2") && err.contains("missing metric name"),
            "{err}"
        );
    }

    #[test]
    fn parse_body_keeps_the_exemplars_of_kept_samples() {
        let (cfg, mut cache, _dir, store) = one_target_setup(
            "scrape_configs:\n  - job_name: j\n    metric_relabel_configs:\n      - source_labels: [__name__]\n        regex: drop.*\n        action: drop\n    static_configs:\n      - targets: ['h:1']\n",
        );
        let job = &cfg.jobs[0];
        let t = &job.targets[0].labels;
        let body = b"# TYPE drop_me counter\ndrop_me_total 1 # {trace_id=\"d\"} 1 5\n# TYPE c counter\nc_total 1 # {trace_id=\"x\"} 0.5 7.25\n# TYPE g gauge\ng 2\n# TYPE n counter\nn_total{a=\"b\"} 3 # {trace_id=\"y\",span=\"z\"} 4\n# TYPE bad counter\nbad_total 3 # {k=\"1\",k=\"2\"} 4\n# EOF\n";
        let s = parse_body(body, Format::OpenMetrics, 9_000, t, job, &mut cache, &store).unwrap();
        let got: Vec<(String, String, f64, i64)> = s
            .exemplars
            .iter()
            .map(|(i, e, _)| {
                (
                    s.samples[*i]
                        .series
                        .labels()
                        .metric_name()
                        .unwrap()
                        .to_string(),
                    e.labels.to_string(),
                    e.value,
                    e.timestamp_ms,
                )
            })
            .collect();
        // The dropped sample's exemplar goes with it; without a timestamp, the
        // sample's; a label given twice drops the exemplar, not the scrape.
        assert_eq!(
            got,
            vec![
                ("c_total".into(), "{trace_id=\"x\"}".into(), 0.5, 7_250),
                (
                    "n_total".into(),
                    "{span=\"z\", trace_id=\"y\"}".into(),
                    4.0,
                    9_000
                ),
            ]
        );
        assert_eq!(s.samples.len(), 4);
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
