//! A tenant's rule groups, each evaluated on its own schedule as Prometheus's
//! rule manager runs them (rules/manager.go, group.go): the first evaluation
//! waits for the group's slot (a stable offset within its interval), later ones
//! follow at the interval, and evaluations that a slow one overran are counted
//! as missed, not run late. The rule files are re-read when they change: groups
//! whose definition is unchanged keep running, changed groups keep the state of
//! their rules that stay, and the series of removed rules and groups go stale.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{AlertingConfig, ScrapeConfig};
use crate::model::Labels;
use crate::promql::{Engine, EngineOptions};
use crate::rules::eval::{eval_timestamp, EvalOptions, Group, GroupStatus, RuleStorage};
use crate::rules::RuleSource;
use crate::store::{AppendSample, Store};

use super::notify::{Notifier, NotifierStats};

/// How often the rule files are checked for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(5);

impl RuleStorage for Store {
    fn append_rule_samples(&self, samples: Vec<(Labels, i64, f64)>) -> u64 {
        let batch: Vec<AppendSample> = samples
            .into_iter()
            .map(|(labels, timestamp_ms, value)| AppendSample {
                labels,
                timestamp_ms,
                value,
            })
            .collect();
        let out = self.append(&batch);
        out.out_of_order + out.duplicates
    }
}

/// Where a tenant's rules come from and how they are evaluated.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSettings {
    pub source: RuleSource,
    /// Where alerts are sent.
    pub alerting: AlertingConfig,
    pub evaluation_interval: Duration,
    pub query_offset: Duration,
    pub eval: EvalOptions,
}

impl RuleSettings {
    /// The rules of `source` with the config's evaluation settings, and `opts`
    /// but for the external labels, which the config sets.
    pub fn new(source: RuleSource, cfg: &ScrapeConfig, opts: &EvalOptions) -> RuleSettings {
        RuleSettings {
            source,
            alerting: cfg.alerting.clone(),
            evaluation_interval: cfg.evaluation_interval,
            query_offset: cfg.rule_query_offset,
            eval: EvalOptions {
                external_labels: cfg
                    .external_labels
                    .iter()
                    .map(|l| (l.name.to_string(), l.value.to_string()))
                    .collect(),
                ..opts.clone()
            },
        }
    }
}

/// The outcome of the latest reading of the rule files.
#[derive(Clone, Debug, Default)]
pub struct ReloadStatus {
    /// Why the latest change was refused (the rules in force stay).
    pub error: Option<String>,
    pub last_success_ms: i64,
}

/// What the evaluation tasks share.
struct Shared {
    store: Arc<Store>,
    engine: Engine,
    settings: RuleSettings,
    /// None without Alertmanagers configured.
    notifier: Option<Notifier>,
}

struct RunningGroup {
    /// The group as defined, before any evaluation: what a reload compares.
    spec: Group,
    group: Arc<Mutex<Group>>,
    /// Taken after each evaluation; readers never wait for one.
    status: Arc<RwLock<Arc<GroupStatus>>>,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl RunningGroup {
    fn start(group: Group, shared: &Arc<Shared>) -> RunningGroup {
        let spec = group.clone();
        let status = Arc::new(RwLock::new(Arc::new(group.status())));
        let group = Arc::new(Mutex::new(group));
        let (stop, stop_rx) = watch::channel(false);
        let handle = tokio::spawn(run_group(
            group.clone(),
            status.clone(),
            shared.clone(),
            stop_rx,
        ));
        RunningGroup {
            spec,
            group,
            status,
            stop,
            handle,
        }
    }

    fn status(&self) -> Arc<GroupStatus> {
        self.status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops the group after its evaluation in progress; returns its state.
    async fn stop(self) -> Group {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
        match Arc::try_unwrap(self.group) {
            Ok(m) => m.into_inner().unwrap_or_else(|e| e.into_inner()),
            Err(shared) => lock(&shared).clone(),
        }
    }
}

/// A tenant's rule groups, running.
pub struct RuleManager {
    shared: Arc<Shared>,
    groups: Arc<tokio::sync::Mutex<Vec<RunningGroup>>>,
    status: Arc<Mutex<ReloadStatus>>,
    stop_watch: watch::Sender<bool>,
    watcher: Option<JoinHandle<()>>,
}

impl RuleManager {
    /// Reads the rule files and starts their groups; alert states are restored
    /// from the store after each group's second evaluation. Files that cannot be
    /// read or are invalid start no rules (the error is in [`Self::status`]) until
    /// a change makes them valid.
    pub fn start(store: Arc<Store>, settings: RuleSettings) -> RuleManager {
        let notifier = (!settings.alerting.alertmanagers.is_empty()).then(|| {
            let external = Labels::from_pairs(
                settings
                    .eval
                    .external_labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            );
            Notifier::start(settings.alerting.clone(), external)
        });
        let shared = Arc::new(Shared {
            store,
            engine: Engine::new(EngineOptions::default()),
            settings,
            notifier,
        });
        let mut status = ReloadStatus::default();
        let mut groups = Vec::new();
        let fingerprint = source_fingerprint(&shared.settings.source);
        match shared.settings.source.load() {
            Ok(files) => {
                for g in build_groups(&files, &shared.settings, true) {
                    groups.push(RunningGroup::start(g, &shared));
                }
                status.last_success_ms = crate::scrape::now_ms();
            }
            Err(e) => {
                tracing::error!(error = %e, "rules refused");
                status.error = Some(e);
            }
        }
        let groups = Arc::new(tokio::sync::Mutex::new(groups));
        let status = Arc::new(Mutex::new(status));
        let (stop_watch, stop_rx) = watch::channel(false);
        // A datasource's rules change with its settings, which start a new manager.
        let watcher = matches!(shared.settings.source, RuleSource::Files(_)).then(|| {
            tokio::spawn(watch_files(
                shared.clone(),
                groups.clone(),
                status.clone(),
                fingerprint,
                stop_rx,
            ))
        });
        RuleManager {
            shared,
            groups,
            status,
            stop_watch,
            watcher,
        }
    }

    /// The groups in file order, as their last evaluation left them.
    pub async fn groups(&self) -> Vec<Arc<GroupStatus>> {
        self.groups
            .lock()
            .await
            .iter()
            .map(RunningGroup::status)
            .collect()
    }

    pub fn status(&self) -> ReloadStatus {
        lock(&self.status).clone()
    }

    pub fn settings(&self) -> &RuleSettings {
        &self.shared.settings
    }

    /// Stops every group after its evaluation in progress. The series the rules
    /// wrote are not marked stale: a restart picks them up again.
    pub async fn stop(self) {
        let _ = self.stop_watch.send(true);
        if let Some(w) = self.watcher {
            let _ = w.await;
        }
        let groups = std::mem::take(&mut *self.groups.lock().await);
        for g in groups {
            g.stop().await;
        }
        // The groups held the last other references.
        if let Ok(shared) = Arc::try_unwrap(self.shared) {
            if let Some(n) = shared.notifier {
                n.stop().await;
            }
        }
    }

    pub fn notifier_stats(&self) -> Option<NotifierStats> {
        self.shared.notifier.as_ref().map(Notifier::stats)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn build_groups(
    files: &[(String, crate::rules::RuleGroups)],
    settings: &RuleSettings,
    restore: bool,
) -> Vec<Group> {
    let mut out = Vec::new();
    for (file, groups) in files {
        for g in &groups.groups {
            out.push(Group::new(
                file,
                g,
                settings.evaluation_interval,
                settings.query_offset,
                restore,
            ));
        }
    }
    out
}

/// A hash of the files the patterns name and their contents (or of the text):
/// what a change is.
fn source_fingerprint(source: &RuleSource) -> u64 {
    let mut h = DefaultHasher::new();
    match source {
        RuleSource::Files(patterns) => match crate::rules::rule_files_named(patterns) {
            Ok(files) => {
                for f in files {
                    f.hash(&mut h);
                    std::fs::read(&f).ok().hash(&mut h);
                }
            }
            Err(e) => e.hash(&mut h),
        },
        RuleSource::Text(t) => t.hash(&mut h),
    }
    h.finish()
}

/// Re-reads the rule files when they change and applies them.
async fn watch_files(
    shared: Arc<Shared>,
    groups: Arc<tokio::sync::Mutex<Vec<RunningGroup>>>,
    status: Arc<Mutex<ReloadStatus>>,
    mut fingerprint: u64,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RELOAD_CHECK) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let source = shared.settings.source.clone();
        let Ok((now, loaded)) =
            tokio::task::spawn_blocking(move || (source_fingerprint(&source), source.load())).await
        else {
            continue;
        };
        if now == fingerprint {
            continue;
        }
        fingerprint = now;
        match loaded {
            Ok(files) => {
                let fresh = build_groups(&files, &shared.settings, false);
                update_groups(&shared, &mut *groups.lock().await, fresh).await;
                let mut st = lock(&status);
                st.error = None;
                st.last_success_ms = crate::scrape::now_ms();
                tracing::info!(files = files.len(), "rule files reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "changed rule files refused; the rules in force stay");
                lock(&status).error = Some(e);
            }
        }
    }
}

/// Replaces the running groups by `fresh`, as Prometheus's `Manager.Update` does.
async fn update_groups(shared: &Arc<Shared>, running: &mut Vec<RunningGroup>, fresh: Vec<Group>) {
    let mut old: HashMap<String, RunningGroup> = HashMap::new();
    for g in running.drain(..) {
        old.insert(g.spec.key(), g);
    }
    for mut g in fresh {
        match old.remove(&g.key()) {
            Some(r) if r.spec.same_definition(&g) => running.push(r),
            Some(r) => {
                g.take_state_from(r.stop().await);
                running.push(RunningGroup::start(g, shared));
            }
            None => running.push(RunningGroup::start(g, shared)),
        }
    }
    for (_, r) in old {
        let gone = r.stop().await;
        let wait = gone.interval.saturating_mul(2);
        let offset = gone.query_offset;
        let series = gone.into_written_series();
        if series.is_empty() {
            continue;
        }
        // Two intervals give a renamed group the time to write its series first.
        let store = shared.store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let t = crate::scrape::now_ms().saturating_sub(ms(offset));
            let stale = crate::model::value::stale_nan();
            store.append_rule_samples(series.into_iter().map(|l| (l, t, stale)).collect());
        });
    }
}

/// Evaluates one group at its interval until stopped.
async fn run_group(
    group: Arc<Mutex<Group>>,
    status: Arc<RwLock<Arc<GroupStatus>>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let (interval_ms, mut ts, restore) = {
        let g = lock(&group);
        let iv = ms(g.interval).max(1);
        let first = eval_timestamp(crate::scrape::now_ms(), g.interval, &g.file, &g.name)
            .saturating_add(iv);
        (iv, first, g.should_restore)
    };
    if !sleep_until(ts, &mut stop).await {
        return;
    }
    let mut evaluations = 0u64;
    loop {
        let (g, s, st) = (group.clone(), shared.clone(), status.clone());
        // After the second evaluation: by then recording rules that alerts depend
        // on have written their latest values.
        let restore_now = restore && evaluations == 1;
        let done = tokio::task::spawn_blocking(move || {
            let mut g = lock(&g);
            let due = g.eval(ts, &s.engine, &*s.store, &s.settings.eval);
            if let (Some(n), false) = (&s.notifier, due.is_empty()) {
                n.send(due);
            }
            if restore_now {
                g.restore_for_state(crate::scrape::now_ms(), &*s.store, &s.settings.eval);
            }
            *st.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(g.status());
        })
        .await;
        if let Err(e) = done {
            tracing::error!(error = %e, "rule group evaluation failed to run");
        }
        evaluations += 1;
        if !sleep_until(ts.saturating_add(interval_ms), &mut stop).await {
            return;
        }
        let missed = (crate::scrape::now_ms().saturating_sub(ts) / interval_ms - 1).max(0);
        if missed > 0 {
            lock(&group).record_missed(missed as u64);
        }
        ts = ts.saturating_add((missed + 1).saturating_mul(interval_ms));
    }
}

/// Sleeps until `t_ms` (wall clock); false when stopped first.
async fn sleep_until(t_ms: i64, stop: &mut watch::Receiver<bool>) -> bool {
    let wait = t_ms.saturating_sub(crate::scrape::now_ms()).max(0) as u64;
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(wait)) => !*stop.borrow(),
        _ = stop.changed() => false,
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
