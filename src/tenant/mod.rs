//! Tenants: one per Grafana datasource instance (org id, uid), each with its own
//! data folder, store and scrapers, so datasources never see each other's data.
//! Standalone mode runs a single tenant from a config file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::config::settings::{self, DatasourceSettings, TenantKey};
use crate::config::{ScrapeConfig, StoreSettings};
use crate::model::exemplar::ExemplarSeries;
use crate::model::labels::{Labels, Matcher};
use crate::scrape::{DroppedTargetStatus, ScrapeCounters, ScrapeManager, TargetStatus};
use crate::store::{Store, StoreOptions};

mod metrics;
pub mod notify;
mod query;
pub mod remote_write;
pub mod rules;

pub use metrics::self_metrics_text;
pub use query::{LimitSource, QueryLimits, QueryStats, RunError, DEFAULT_MAX_CONCURRENT_QUERIES};
pub use rules::{ReloadStatus, RuleManager, RuleSettings};

use crate::rules::RuleSource;

/// Where a tenant folder keeps its store (beside its `settings.json`); standalone
/// `serve` and `import` use the same layout in their `--data-dir`.
pub fn store_dir(tenant_dir: &Path) -> PathBuf {
    tenant_dir.join("data")
}

/// One tenant's running state.
pub struct Tenant {
    pub store: Arc<Store>,
    dir: PathBuf,
    secrets: SecretMode,
    state: Mutex<TenantState>,
    /// When a request or provisioning last named this tenant (ms since epoch).
    last_seen_ms: std::sync::atomic::AtomicI64,
    pub query_latency: LatencyHistogram,
    /// Time queries waited for a slot.
    pub query_queue_latency: LatencyHistogram,
    /// The query slots and memory budget of the limits in force.
    gate: std::sync::RwLock<Arc<query::QueryGate>>,
    query_counters: Arc<query::QueryCounters>,
    /// Counts of the scrape loops, kept when a new config replaces them.
    pub scrape_counters: Arc<ScrapeCounters>,
    /// Counts of `serve`'s remote write receiver.
    pub remote_write_counters: remote_write::RemoteWriteCounters,
}

/// Query latency, as a Prometheus histogram (seconds).
pub struct LatencyHistogram {
    counts: [std::sync::atomic::AtomicU64; LatencyHistogram::BOUNDS.len() + 1],
    sum_micros: std::sync::atomic::AtomicU64,
}

impl LatencyHistogram {
    pub const BOUNDS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

    fn new() -> LatencyHistogram {
        LatencyHistogram {
            counts: Default::default(),
            sum_micros: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = Self::BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(Self::BOUNDS.len());
        self.counts[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Cumulative counts per bound (the last is +Inf), and the sum in seconds.
    pub fn snapshot(&self) -> (Vec<u64>, f64) {
        let mut acc = 0;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                acc += c.load(std::sync::atomic::Ordering::Relaxed);
                acc
            })
            .collect();
        (
            cumulative,
            self.sum_micros.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6,
        )
    }
}

/// Where the tenant's scrape config takes secrets from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretMode {
    /// A Grafana datasource: `${secure.NAME}` references, no literals.
    Grafana,
    /// Standalone mode's own config file.
    File,
}

struct TenantState {
    settings: Option<DatasourceSettings>,
    /// The scrape config in force, or why the latest settings were refused.
    config: Result<ScrapeConfig, String>,
    scrape: Option<ScrapeManager>,
    rules: Option<RuleManager>,
    /// The `remote_write` queues, restarted with each config.
    remote: Option<crate::remote::RemoteWriters>,
    /// How rules are evaluated, but for the external labels, which come with
    /// the config.
    rule_options: crate::rules::eval::EvalOptions,
}

/// What CheckHealth needs from a tenant.
pub struct TenantHealth {
    pub config_error: Option<String>,
    /// Why the rules in force were refused (none start then).
    pub rules_error: Option<String>,
    pub store_error: Option<String>,
    pub targets: Vec<TargetStatus>,
}

impl Tenant {
    pub fn open(dir: &Path, secrets: SecretMode, opts: StoreOptions) -> Result<Tenant, String> {
        let store = Store::open_with(&store_dir(dir), opts).map_err(|e| e.to_string())?;
        Ok(Tenant {
            store: Arc::new(store),
            dir: dir.to_path_buf(),
            secrets,
            last_seen_ms: std::sync::atomic::AtomicI64::new(crate::scrape::now_ms()),
            query_latency: LatencyHistogram::new(),
            query_queue_latency: LatencyHistogram::new(),
            gate: std::sync::RwLock::new(Arc::new(query::QueryGate::new(
                QueryLimits::from_settings(
                    Default::default(),
                    match secrets {
                        SecretMode::File => LimitSource::Flags,
                        SecretMode::Grafana => LimitSource::Datasource,
                    },
                ),
            ))),
            query_counters: Arc::default(),
            scrape_counters: Arc::default(),
            remote_write_counters: Default::default(),
            state: Mutex::new(TenantState {
                settings: None,
                config: Ok(ScrapeConfig::default()),
                scrape: None,
                rules: None,
                remote: None,
                rule_options: Default::default(),
            }),
        })
    }

    /// Replaces the scrape config: stops the old scrapers, starts the new ones.
    pub async fn apply_config(&self, config: Result<ScrapeConfig, String>) {
        let mut st = self.state.lock().await;
        if let Some(old) = st.scrape.take() {
            old.stop().await;
        }
        // After the scrapers, so that their last staleness markers are sent too.
        if let Some(old) = st.remote.take() {
            old.stop().await;
        }
        if let Ok(cfg) = &config {
            let scrape = ScrapeManager::start_counting(
                cfg,
                self.store.clone(),
                self.scrape_counters.clone(),
            );
            if !cfg.remote_write.is_empty() {
                st.remote = Some(crate::remote::RemoteWriters::start(
                    &cfg.remote_write,
                    &cfg.external_labels,
                    self.store.clone(),
                    Arc::new(scrape.metadata_source()),
                ));
            }
            st.scrape = Some(scrape);
        }
        let rule_settings = match &config {
            Ok(cfg) if !cfg.rule_files.is_empty() => Some(RuleSettings::new(
                RuleSource::Files(cfg.rule_files.clone()),
                cfg,
                &st.rule_options,
            )),
            Ok(cfg) => st
                .settings
                .as_ref()
                .map(|s| s.rule_config_text())
                .filter(|t| !t.trim().is_empty())
                .map(|t| RuleSettings::new(RuleSource::Text(t.to_string()), cfg, &st.rule_options)),
            _ => None,
        };
        // Unchanged rule settings keep their groups (and alert states) running.
        let keep = st.rules.as_ref().map(|r| r.settings()) == rule_settings.as_ref();
        if !keep {
            if let Some(old) = st.rules.take() {
                old.stop().await;
            }
            st.rules = rule_settings.map(|s| RuleManager::start(self.store.clone(), s));
        }
        st.config = config;
    }

    /// Sets how the rules of the next config applied are evaluated.
    pub async fn set_rule_options(&self, opts: crate::rules::eval::EvalOptions) {
        self.state.lock().await.rule_options = opts;
    }

    /// The remote write queues' numbers (none without `remote_write`).
    pub async fn remote_write_stats(&self) -> Vec<crate::remote::QueueStats> {
        let st = self.state.lock().await;
        st.remote.as_ref().map(|r| r.stats()).unwrap_or_default()
    }

    /// The alert notifier's numbers, when Alertmanagers are configured.
    pub async fn notifier_stats(&self) -> Option<notify::NotifierStats> {
        let st = self.state.lock().await;
        st.rules.as_ref().and_then(|r| r.notifier_stats())
    }

    /// The rule groups in force (none when no rule files are configured), and
    /// the outcome of the latest reading of the rule files.
    pub async fn rule_groups(
        &self,
    ) -> (
        Vec<Arc<crate::rules::eval::GroupStatus>>,
        Option<ReloadStatus>,
    ) {
        let st = self.state.lock().await;
        match &st.rules {
            Some(r) => (r.groups().await, Some(r.status())),
            None => (Vec::new(), None),
        }
    }

    /// Applies datasource settings if they are newer than the ones in force
    /// (Grafana's `lastUpdatedMS`), persisting them. Returns whether they were applied.
    pub async fn apply_settings(&self, new: DatasourceSettings) -> bool {
        {
            let st = self.state.lock().await;
            if let Some(cur) = &st.settings {
                if new.last_updated_ms <= cur.last_updated_ms {
                    return false;
                }
            }
        }
        let config = new.scrape_config().map_err(|e| e.to_string());
        if let Err(e) = &config {
            tracing::warn!(datasource = %new.uid, org = new.org_id, error = %e, "datasource scrape config refused");
        }
        if let Err(e) = new.persist(&self.dir) {
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot persist datasource settings");
        }
        // The rules come with the settings: they are in place before the config applies.
        self.state.lock().await.settings = Some(new);
        self.apply_config(config).await;
        true
    }

    pub fn secret_source(&self) -> SecretMode {
        self.secrets
    }

    pub fn touch(&self) {
        self.last_seen_ms.store(
            crate::scrape::now_ms(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    pub fn last_seen_ms(&self) -> i64 {
        self.last_seen_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops scraping and rule evaluation but keeps the data (an idle tenant).
    pub async fn stop_scraping(&self) {
        let (scrape, rules, remote) = {
            let mut st = self.state.lock().await;
            (st.scrape.take(), st.rules.take(), st.remote.take())
        };
        if let Some(s) = scrape {
            s.stop().await;
        }
        if let Some(r) = rules {
            r.stop().await;
        }
        if let Some(r) = remote {
            r.stop().await;
        }
    }

    pub async fn is_scraping(&self) -> bool {
        self.state.lock().await.scrape.is_some()
    }

    pub async fn settings(&self) -> Option<DatasourceSettings> {
        self.state.lock().await.settings.clone()
    }

    pub async fn health(&self) -> TenantHealth {
        let st = self.state.lock().await;
        TenantHealth {
            config_error: st.config.as_ref().err().cloned(),
            rules_error: st.rules.as_ref().and_then(|r| r.status().error),
            // A write that fails now (the probe) or kept failing in the background.
            store_error: self
                .store
                .check_writable()
                .err()
                .map(|e| e.to_string())
                .or_else(|| self.store.write_error()),
            targets: st.scrape.as_ref().map(|s| s.targets()).unwrap_or_default(),
        }
    }

    /// The config's `global.external_labels` (none while the config is refused).
    pub async fn external_labels(&self) -> Labels {
        let st = self.state.lock().await;
        st.config
            .as_ref()
            .map(|c| c.external_labels.clone())
            .unwrap_or_else(|_| Labels::empty())
    }

    pub async fn targets(&self) -> Vec<TargetStatus> {
        let st = self.state.lock().await;
        st.scrape.as_ref().map(|s| s.targets()).unwrap_or_default()
    }

    pub async fn dropped_targets(&self) -> Vec<DroppedTargetStatus> {
        let st = self.state.lock().await;
        st.scrape
            .as_ref()
            .map(|s| s.dropped_targets())
            .unwrap_or_default()
    }

    /// The exemplars of the series `expr` selects, in `[start_ms, end_ms]`, as
    /// Prometheus's `/api/v1/query_exemplars` answers: every series with an
    /// exemplar in the range whose labels satisfy all matchers of at least one of
    /// the expression's series selectors, sorted by labels, each one's exemplars
    /// oldest first. An expression without selectors selects nothing; one that does
    /// not parse is an error with the parser's message (a `bad_data` error in the
    /// API).
    pub async fn query_exemplars(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<ExemplarSeries>, String> {
        let sets = exemplar_selectors(expr)?;
        Ok(self.store.exemplars().select(start_ms, end_ms, &sets))
    }

    /// Stops scraping and rule evaluation and makes the data durable.
    pub async fn shutdown(&self) {
        self.stop_scraping().await;
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "flushing the store failed");
        }
    }
}

/// The matcher sets of every series selector in `expr` (Prometheus's
/// `parser.ExtractSelectors`), or the parse error's message.
pub fn exemplar_selectors(expr: &str) -> Result<Vec<Vec<Matcher>>, String> {
    let parsed = crate::promql::parse_expr(expr).map_err(|e| e.to_string())?;
    crate::promql::extract_selectors(&parsed).map_err(|e| e.to_string())
}

/// The store's options for these settings; what they leave unset keeps the
/// store's default.
pub fn store_options(settings: &StoreSettings) -> StoreOptions {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let default = StoreOptions::default();
    StoreOptions {
        wal_sync_interval: settings
            .wal_sync_interval
            .unwrap_or(default.wal_sync_interval),
        block_range_ms: settings.block_range.map_or(default.block_range_ms, ms),
        retention_ms: settings.retention_time.map_or(default.retention_ms, ms),
        retention_bytes: settings
            .retention_size_bytes
            .unwrap_or(default.retention_bytes),
        out_of_order_window_ms: settings
            .out_of_order_window
            .map_or(default.out_of_order_window_ms, ms),
        ..default
    }
}

/// All tenants of the plugin process.
pub struct Tenants {
    root: PathBuf,
    /// Process-wide store settings; each tenant adds its own retention.
    store_settings: StoreSettings,
    map: Mutex<HashMap<TenantKey, Arc<Tenant>>>,
}

impl Tenants {
    pub fn new(root: &Path, store_settings: StoreSettings) -> Tenants {
        Tenants {
            root: root.to_path_buf(),
            store_settings,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The tenant for these settings, created on first sight; newer settings are
    /// applied. Query limits the settings get wrong are this call's error, after
    /// the tenant has started, so its scraping does not depend on them.
    pub async fn get(&self, settings: DatasourceSettings) -> Result<Arc<Tenant>, String> {
        let key = settings.key()?;
        // Bad limits fail the request, not the scraping: the tenant still starts.
        let limits = settings
            .query_limits()
            .and_then(|l| settings.query_timeout().map(|_| l))
            .map(|l| QueryLimits::from_settings(l, LimitSource::Datasource));
        let tenant = {
            let mut map = self.map.lock().await;
            match map.get(&key) {
                Some(t) => t.clone(),
                None => {
                    let opts = store_options(&settings.store_settings()?.or(&self.store_settings));
                    let t = Arc::new(Tenant::open(
                        &key.dir(&self.root),
                        SecretMode::Grafana,
                        opts,
                    )?);
                    map.insert(key.clone(), t.clone());
                    t
                }
            }
        };
        tenant.touch();
        // An idle tenant that is named again resumes scraping.
        if !tenant.apply_settings(settings.clone()).await && !tenant.is_scraping().await {
            if let Ok(cfg) = settings.scrape_config() {
                tracing::info!(tenant = %key, "tenant active again, scraping resumes");
                tenant.apply_config(Ok(cfg)).await;
            }
        }
        tenant.set_query_limits(limits?);
        Ok(tenant)
    }

    /// Stops a tenant's scraping and deletes its data folder (an Admin's request:
    /// Grafana never tells a plugin that a datasource was deleted).
    pub async fn delete(&self, key: &TenantKey) -> Result<(), String> {
        let tenant = self.map.lock().await.remove(key);
        if let Some(t) = tenant {
            t.shutdown().await;
        }
        let dir = key.dir(&self.root);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("deleting {}: {e}", dir.display())),
        }
        tracing::info!(tenant = %key, "tenant deleted with its data");
        Ok(())
    }

    /// Stops scraping for tenants not named by any request or provisioning file for
    /// `idle_ms`; their data stays.
    pub async fn stop_idle(&self, idle_ms: i64) {
        let now = crate::scrape::now_ms();
        for (key, t) in self.all().await {
            let idle_for = now - t.last_seen_ms();
            if idle_for > idle_ms && t.is_scraping().await {
                tracing::warn!(
                    tenant = %key,
                    idle_days = idle_for / 86_400_000,
                    "datasource not seen in any request or provisioning file for longer than tenant_idle_days; scraping stopped, data kept"
                );
                t.stop_scraping().await;
            }
        }
    }

    /// At plugin start: resumes every persisted tenant and every provisioned
    /// datasource of this plugin, the newer settings of the two winning.
    pub async fn start_known(&self, provisioning_dir: &Path, env: &dyn Fn(&str) -> Option<String>) {
        let (persisted, errs1) = settings::load_persisted(&self.root);
        let (provisioned, errs2) = settings::load_provisioned(provisioning_dir, env);
        for e in errs1.iter().chain(errs2.iter()) {
            tracing::warn!(error = %e, "skipping datasource settings");
        }
        let mut newest: HashMap<(i64, String), DatasourceSettings> = HashMap::new();
        for s in persisted.into_iter().chain(provisioned) {
            let k = (s.org_id, s.uid.clone());
            match newest.get(&k) {
                Some(cur) if cur.last_updated_ms >= s.last_updated_ms => {}
                _ => {
                    newest.insert(k, s);
                }
            }
        }
        for (_, s) in newest {
            let who = format!("org {} datasource {}", s.org_id, s.uid);
            match self.get(s).await {
                Ok(_) => tracing::info!(tenant = %who, "tenant started"),
                Err(e) => tracing::warn!(tenant = %who, error = %e, "tenant not started"),
            }
        }
    }

    /// Marks the tenants named in provisioning files as seen.
    pub async fn touch_provisioned(
        &self,
        provisioning_dir: &Path,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
    ) {
        let (provisioned, _) = settings::load_provisioned(provisioning_dir, env);
        let map = self.map.lock().await;
        for s in provisioned {
            if let Some(t) = s.key().ok().and_then(|k| map.get(&k)) {
                t.touch();
            }
        }
    }

    pub async fn shutdown(&self) {
        let tenants: Vec<Arc<Tenant>> = self.map.lock().await.values().cloned().collect();
        for t in tenants {
            t.shutdown().await;
        }
    }
}

impl Tenants {
    /// Every running tenant.
    pub async fn all(&self) -> Vec<(TenantKey, Arc<Tenant>)> {
        let map = self.map.lock().await;
        let mut v: Vec<_> = map.iter().map(|(k, t)| (k.clone(), t.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}
