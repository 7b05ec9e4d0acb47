//! Rule groups evaluated with Prometheus's semantics (rules/group.go,
//! recording.go, alerting.go): the rules of a group run in order at one
//! timestamp, each rule's output is appended before the next rule queries (so a
//! later rule sees an earlier one's result), series a rule stops producing get a
//! staleness marker, and alerting rules keep their alerts' states
//! (pending, firing, kept firing, resolved) from one evaluation to the next,
//! written out as `ALERTS` and `ALERTS_FOR_STATE`.
//!
//! This module holds the state and the evaluation of one group at a given time;
//! scheduling (when to evaluate, missed iterations, reloads) belongs to the caller.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use crate::model::labels::{Label, Labels, MatchKind, Matcher, METRIC_NAME};
use crate::model::value::{is_stale_nan, stale_nan};
use crate::model::{MemStorage, Series, Storage, StorageError};
use crate::promql::{Engine, Value};

use super::file::{Rule, RuleGroup, RuleKind};
use super::template::{AlertTemplate, AlertTemplateData, QuerySample};

/// The series an alerting rule writes for each pending or firing alert.
pub const ALERTS: &str = "ALERTS";
/// The series that keeps when each alert became active, read back after a restart.
pub const ALERTS_FOR_STATE: &str = "ALERTS_FOR_STATE";
const ALERT_NAME: &str = "alertname";
const ALERT_STATE: &str = "alertstate";
/// How long a resolved alert is kept (and reported as resolved) before it is dropped.
const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// Where rule results are written, and read back by later rules.
pub trait RuleStorage: Storage {
    /// Appends samples in order; returns how many were refused (out of order,
    /// duplicate timestamp, too old), which Prometheus also drops without failing
    /// the rule.
    fn append_rule_samples(&self, samples: Vec<(Labels, i64, f64)>) -> u64;
}

/// Rule storage in memory, for unit tests of rules (`test-rules`) and of the
/// evaluator. Rule output is refused as the store refuses it: at or before the
/// series' newest timestamp.
#[derive(Debug, Default)]
pub struct MemRuleStorage(RwLock<MemStorage>);

impl MemRuleStorage {
    pub fn new() -> MemRuleStorage {
        MemRuleStorage::default()
    }

    /// Adds input samples as they are, with no order check.
    pub fn add_samples(&self, labels: Labels, samples: &[(i64, f64)]) {
        self.write().add_samples(labels, samples);
    }

    /// Every sample of the series with exactly these labels, oldest first.
    pub fn samples(&self, labels: &Labels) -> Vec<(i64, f64)> {
        self.read().samples_of(labels)
    }

    // A panic while the lock is held leaves plain data behind: keep using it.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, MemStorage> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, MemStorage> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Storage for MemRuleStorage {
    fn select(
        &self,
        matchers: &[Matcher],
        mint_ms: i64,
        maxt_ms: i64,
    ) -> Result<Vec<Series>, StorageError> {
        self.read().select(matchers, mint_ms, maxt_ms)
    }
}

impl RuleStorage for MemRuleStorage {
    fn append_rule_samples(&self, samples: Vec<(Labels, i64, f64)>) -> u64 {
        let mut refused = 0;
        let mut s = self.write();
        for (labels, t, v) in samples {
            if s.last_timestamp(&labels).is_some_and(|newest| newest >= t) {
                refused += 1;
                continue;
            }
            s.add_samples(labels, &[(t, v)]);
        }
        refused
    }
}

/// What every group of a rule manager shares.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalOptions {
    /// `global.external_labels`: `$externalLabels` in templates.
    pub external_labels: BTreeMap<String, String>,
    /// `$externalURL` in templates.
    pub external_url: String,
    /// How long an outage may last for alert states to be restored after it
    /// (Prometheus's `--rules.alert.for-outage-tolerance`, 1h).
    pub outage_tolerance: Duration,
    /// The least time an alert restored as pending waits before it fires
    /// (`--rules.alert.for-grace-period`, 10m).
    pub for_grace_period: Duration,
    /// How often a firing alert is sent again (`--rules.alert.resend-delay`, 1m).
    pub resend_delay: Duration,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            external_labels: BTreeMap::new(),
            external_url: String::new(),
            outage_tolerance: Duration::from_secs(3600),
            for_grace_period: Duration::from_secs(600),
            resend_delay: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of an alerting rule: a label set its expression returned.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    /// The value of the sample that produced it, at the last evaluation.
    pub value: f64,
    /// When the alert became active (ms); it fires once `for` has passed since.
    pub active_at_ms: i64,
    pub fired_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    /// Since when the condition is gone while `keep_firing_for` holds it firing.
    pub keep_firing_since_ms: Option<i64>,
    /// When it was last sent to Alertmanager, and until when that send holds it
    /// active there without another.
    pub last_sent_at_ms: Option<i64>,
    pub valid_until_ms: i64,
}

impl Alert {
    /// Whether the alert is due to be sent again, as Prometheus decides it:
    /// never while pending, at once after it resolved, otherwise every resend delay.
    fn needs_sending(&self, ts_ms: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        let last = self.last_sent_at_ms;
        if self
            .resolved_at_ms
            .is_some_and(|r| last.is_none_or(|l| r > l))
        {
            return true;
        }
        last.is_none_or(|l| l.saturating_add(resend_delay_ms) < ts_ms)
    }
}

/// An alert as an Alertmanager receives it, before external labels and
/// `alert_relabel_configs` are applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub starts_at_ms: i64,
    /// When it resolved, or until when it is active unless sent again.
    pub ends_at_ms: i64,
    pub generator_url: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleHealth {
    Unknown,
    Good,
    Bad,
}

impl RuleHealth {
    /// As the rules API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleHealth::Unknown => "unknown",
            RuleHealth::Good => "ok",
            RuleHealth::Bad => "err",
        }
    }
}

/// A rule and what its evaluations left behind.
#[derive(Clone, Debug)]
pub struct RuleState {
    /// The rule, its labels merged over the group's.
    pub rule: Rule,
    pub health: RuleHealth,
    pub last_error: Option<String>,
    /// Wall-clock start of the last evaluation (ms), and how long it took.
    pub last_evaluation_ms: Option<i64>,
    pub evaluation_time: Duration,
    /// The series the last successful evaluation wrote.
    series_in_previous_eval: HashSet<Labels>,
    /// Alerting rules: the alerts pending, firing or recently resolved.
    alerts: HashMap<Labels, Alert>,
    /// Alerting rules: whether `ALERTS` may be written (after the restore).
    restored: bool,
}

impl RuleState {
    fn new(rule: Rule, restored: bool) -> RuleState {
        RuleState {
            rule,
            health: RuleHealth::Unknown,
            last_error: None,
            last_evaluation_ms: None,
            evaluation_time: Duration::ZERO,
            series_in_previous_eval: HashSet::new(),
            alerts: HashMap::new(),
            restored,
        }
    }

    /// The alerts in label order.
    pub fn alerts(&self) -> Vec<&Alert> {
        let mut v: Vec<&Alert> = self.alerts.values().collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }

    /// The rule's state as the rules API reports it: the most severe of its
    /// alerts (inactive when it has none).
    pub fn state(&self) -> AlertState {
        self.alerts
            .values()
            .map(|a| a.state)
            .max()
            .unwrap_or(AlertState::Inactive)
    }

    /// Name and labels: how a reload matches a rule with its earlier self.
    fn identity(&self) -> (String, BTreeMap<String, String>) {
        (self.rule.name.clone(), self.rule.labels.clone())
    }
}

/// What the APIs and metrics show of a rule: its state after the last evaluation.
#[derive(Clone, Debug)]
pub struct RuleStatus {
    pub rule: Rule,
    pub health: RuleHealth,
    pub last_error: Option<String>,
    pub last_evaluation_ms: Option<i64>,
    pub evaluation_time: Duration,
    /// In label order.
    pub alerts: Vec<Alert>,
}

impl RuleStatus {
    /// The rule's state as the rules API reports it: the most severe of its
    /// alerts (inactive when it has none).
    pub fn state(&self) -> AlertState {
        self.alerts
            .iter()
            .map(|a| a.state)
            .max()
            .unwrap_or(AlertState::Inactive)
    }
}

/// What the APIs and metrics show of a group, taken after each evaluation so
/// that reading it never waits for one.
#[derive(Clone, Debug)]
pub struct GroupStatus {
    pub file: String,
    pub name: String,
    pub interval: Duration,
    pub limit: i64,
    pub rules: Vec<RuleStatus>,
    pub last_evaluation_ms: Option<i64>,
    pub evaluation_time: Duration,
    pub rule_duration_sum: Duration,
    pub last_samples: u64,
    pub last_restore_duration: Duration,
    pub counters: GroupCounters,
}

impl GroupStatus {
    /// `file;name`, the `rule_group` label of the rule metrics.
    pub fn key(&self) -> String {
        format!("{};{}", self.file, self.name)
    }
}

/// Counters of one group, as Prometheus's `prometheus_rule_*` metrics count them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupCounters {
    pub evaluations: u64,
    pub evaluation_failures: u64,
    /// Scheduled iterations, run or missed.
    pub iterations: u64,
    pub iterations_missed: u64,
}

/// One group's rules and state.
#[derive(Clone, Debug)]
pub struct Group {
    pub file: String,
    pub name: String,
    pub interval: Duration,
    pub query_offset: Duration,
    pub limit: i64,
    pub rules: Vec<RuleState>,
    /// Wall-clock start of the last evaluation (ms), its evaluation timestamp, how
    /// long it took, the rules' durations summed, and the samples it produced.
    pub last_evaluation_ms: Option<i64>,
    pub last_eval_timestamp_ms: Option<i64>,
    pub evaluation_time: Duration,
    pub rule_duration_sum: Duration,
    pub last_samples: u64,
    pub last_restore_duration: Duration,
    pub counters: GroupCounters,
    /// Whether alert states are still to be restored from `ALERTS_FOR_STATE`.
    pub should_restore: bool,
    /// Series of rules that a reload removed, marked stale at the next evaluation.
    stale_series: Vec<Labels>,
}

impl Group {
    /// A group from a checked rule file. `restore`: whether alert states are to
    /// be restored from storage (a server starting; not a reload adding a group).
    pub fn new(
        file: &str,
        group: &RuleGroup,
        default_interval: Duration,
        default_query_offset: Duration,
        restore: bool,
    ) -> Group {
        let rules = group
            .rules
            .iter()
            .map(|r| {
                let mut rule = r.clone();
                let mut labels = group.labels.clone();
                labels.extend(r.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                rule.labels = labels;
                RuleState::new(rule, !restore)
            })
            .collect();
        Group {
            file: file.to_string(),
            name: group.name.clone(),
            interval: group
                .interval
                .filter(|d| !d.is_zero())
                .unwrap_or(default_interval),
            query_offset: group.query_offset.unwrap_or(default_query_offset),
            limit: group.limit,
            rules,
            last_evaluation_ms: None,
            last_eval_timestamp_ms: None,
            evaluation_time: Duration::ZERO,
            rule_duration_sum: Duration::ZERO,
            last_samples: 0,
            last_restore_duration: Duration::ZERO,
            counters: GroupCounters::default(),
            should_restore: restore,
            stale_series: Vec::new(),
        }
    }

    /// `file;name`: what identifies a group across reloads.
    pub fn key(&self) -> String {
        format!("{};{}", self.file, self.name)
    }

    pub fn status(&self) -> GroupStatus {
        GroupStatus {
            file: self.file.clone(),
            name: self.name.clone(),
            interval: self.interval,
            limit: self.limit,
            rules: self
                .rules
                .iter()
                .map(|r| RuleStatus {
                    rule: r.rule.clone(),
                    health: r.health,
                    last_error: r.last_error.clone(),
                    last_evaluation_ms: r.last_evaluation_ms,
                    evaluation_time: r.evaluation_time,
                    alerts: r.alerts().into_iter().cloned().collect(),
                })
                .collect(),
            last_evaluation_ms: self.last_evaluation_ms,
            evaluation_time: self.evaluation_time,
            rule_duration_sum: self.rule_duration_sum,
            last_samples: self.last_samples,
            last_restore_duration: self.last_restore_duration,
            counters: self.counters,
        }
    }

    /// Whether `other` has the same definition (a reload leaves such a group running).
    pub fn same_definition(&self, other: &Group) -> bool {
        self.file == other.file
            && self.name == other.name
            && self.interval == other.interval
            && self.query_offset == other.query_offset
            && self.limit == other.limit
            && self.rules.len() == other.rules.len()
            && self
                .rules
                .iter()
                .zip(&other.rules)
                .all(|(a, b)| same_rule(&a.rule, &b.rule))
    }

    /// Takes over what a reload must keep from the group this one replaces: the
    /// written series of rules that stay (so they can go stale later), the alerts
    /// of alerting rules that stay, and the series of rules that are gone, which
    /// the next evaluation marks stale.
    pub fn take_state_from(&mut self, mut old: Group) {
        self.last_evaluation_ms = old.last_evaluation_ms;
        self.last_eval_timestamp_ms = old.last_eval_timestamp_ms;
        self.evaluation_time = old.evaluation_time;
        self.counters = old.counters;
        let mut by_identity: HashMap<(String, BTreeMap<String, String>), Vec<usize>> =
            HashMap::new();
        for (i, r) in old.rules.iter().enumerate() {
            by_identity.entry(r.identity()).or_default().push(i);
        }
        let mut taken = vec![false; old.rules.len()];
        for rule in &mut self.rules {
            let Some(list) = by_identity.get_mut(&rule.identity()) else {
                continue;
            };
            if list.is_empty() {
                continue;
            }
            let i = list.remove(0);
            taken[i] = true;
            let from = &mut old.rules[i];
            rule.series_in_previous_eval = std::mem::take(&mut from.series_in_previous_eval);
            let both_alerting = matches!(rule.rule.kind, RuleKind::Alerting { .. })
                && matches!(from.rule.kind, RuleKind::Alerting { .. });
            if both_alerting {
                rule.alerts = std::mem::take(&mut from.alerts);
            }
        }
        self.stale_series = std::mem::take(&mut old.stale_series);
        for (i, r) in old.rules.into_iter().enumerate() {
            if !taken[i] {
                self.stale_series.extend(r.series_in_previous_eval);
            }
        }
    }

    /// Every series the group's rules last wrote, for staleness markers once the
    /// group itself is removed.
    pub fn into_written_series(self) -> Vec<Labels> {
        let mut out = self.stale_series;
        for r in self.rules {
            out.extend(r.series_in_previous_eval);
        }
        out
    }

    /// Evaluates every rule in order at `ts_ms`, appending each rule's output
    /// before the next rule runs. Returns the alerts due to be sent.
    pub fn eval(
        &mut self,
        ts_ms: i64,
        engine: &Engine,
        storage: &dyn RuleStorage,
        opts: &EvalOptions,
    ) -> Vec<Notification> {
        let mut notifications = Vec::new();
        let started = Instant::now();
        let wall_ms = now_ms();
        let offset_ms = duration_ms(self.query_offset);
        let query_ts = ts_ms.saturating_sub(offset_ms);
        let mut samples = 0u64;
        let mut rule_duration_sum = Duration::ZERO;
        for i in 0..self.rules.len() {
            let rule_started = Instant::now();
            self.counters.evaluations += 1;
            let result = self.eval_rule(i, ts_ms, engine, storage, opts);
            let rule = &mut self.rules[i];
            match result {
                Err(e) => {
                    tracing::warn!(
                        group = %self.name, file = %self.file, rule = %rule.rule.name,
                        index = i, error = %e, "evaluating rule failed"
                    );
                    rule.health = RuleHealth::Bad;
                    rule.last_error = Some(e);
                    self.counters.evaluation_failures += 1;
                }
                Ok(vector) => {
                    rule.health = RuleHealth::Good;
                    rule.last_error = None;
                    if matches!(rule.rule.kind, RuleKind::Alerting { .. }) {
                        notifications.extend(due_notifications(rule, ts_ms, self.interval, opts));
                    }
                    samples += vector.len() as u64;
                    let returned: HashSet<Labels> =
                        vector.iter().map(|(l, _, _)| l.clone()).collect();
                    let mut batch = vector;
                    // Series no longer produced end with a staleness marker.
                    for gone in rule.series_in_previous_eval.difference(&returned) {
                        batch.push((gone.clone(), query_ts, stale_nan()));
                    }
                    let refused = storage.append_rule_samples(batch);
                    if refused > 0 {
                        tracing::debug!(
                            group = %self.name, rule = %rule.rule.name, refused,
                            "rule results refused by the store (out of order, duplicate or too old)"
                        );
                    }
                    rule.series_in_previous_eval = returned;
                }
            }
            rule.last_evaluation_ms = Some(wall_ms);
            rule.evaluation_time = rule_started.elapsed();
            rule_duration_sum += rule.evaluation_time;
        }
        if !self.stale_series.is_empty() {
            let batch = std::mem::take(&mut self.stale_series)
                .into_iter()
                .map(|l| (l, query_ts, stale_nan()))
                .collect();
            storage.append_rule_samples(batch);
        }
        self.counters.iterations += 1;
        self.last_samples = samples;
        self.rule_duration_sum = rule_duration_sum;
        self.evaluation_time = started.elapsed();
        self.last_evaluation_ms = Some(wall_ms);
        self.last_eval_timestamp_ms = Some(ts_ms);
        notifications
    }

    /// Counts iterations that were due but not run (the previous one ran late).
    pub fn record_missed(&mut self, missed: u64) {
        self.counters.iterations_missed += missed;
        self.counters.iterations += missed;
    }

    fn eval_rule(
        &mut self,
        i: usize,
        ts_ms: i64,
        engine: &Engine,
        storage: &dyn RuleStorage,
        opts: &EvalOptions,
    ) -> Result<Vec<(Labels, i64, f64)>, String> {
        let query_ts = ts_ms.saturating_sub(duration_ms(self.query_offset));
        let limit = usize::try_from(self.limit).ok().filter(|l| *l > 0);
        let rule = &mut self.rules[i];
        let vector = query_vector(engine, storage, &rule.rule.expr, query_ts)?;
        match rule.rule.kind.clone() {
            RuleKind::Recording => {
                let mut out = Vec::with_capacity(vector.len());
                for (labels, t, v) in vector {
                    let mut ls: Vec<Label> = labels.iter().cloned().collect();
                    ls.push(Label::new(METRIC_NAME, rule.rule.name.as_str()));
                    ls.extend(
                        rule.rule
                            .labels
                            .iter()
                            .map(|(k, v)| Label::new(k.as_str(), v.as_str())),
                    );
                    out.push((Labels::new(ls), t, v));
                }
                if has_same_labels(&out) {
                    return Err(
                        "vector contains metrics with the same labelset after applying rule labels"
                            .into(),
                    );
                }
                if let Some(limit) = limit {
                    if out.len() > limit {
                        return Err(format!(
                            "exceeded limit of {limit} with {} series",
                            out.len()
                        ));
                    }
                }
                Ok(out)
            }
            RuleKind::Alerting {
                for_duration,
                keep_firing_for,
                annotations,
            } => {
                let query = |q: &str| -> Result<Vec<QuerySample>, String> {
                    Ok(query_vector(engine, storage, q, ts_ms)?
                        .into_iter()
                        .map(|(labels, _, value)| QuerySample {
                            labels: label_map(&labels),
                            value,
                        })
                        .collect())
                };
                let hold_ms = duration_ms(for_duration);
                let keep_ms = duration_ms(keep_firing_for);
                // Parsed once for all the alerts of this evaluation.
                let parse =
                    |m: &BTreeMap<String, String>| -> Vec<(String, Result<AlertTemplate, String>)> {
                        m.iter()
                            .map(|(k, v)| (k.clone(), AlertTemplate::new(&rule.rule.name, v)))
                            .collect()
                    };
                let label_templates = parse(&rule.rule.labels);
                let annotation_templates = parse(&annotations);
                let mut fresh: HashMap<Labels, Alert> = HashMap::with_capacity(vector.len());
                for (labels, _, value) in vector {
                    let sample_labels = label_map(&labels);
                    let data = AlertTemplateData {
                        labels: &sample_labels,
                        external_labels: &opts.external_labels,
                        external_url: &opts.external_url,
                        value,
                        timestamp_ms: ts_ms,
                        query: &query,
                    };
                    let expand = |t: &Result<AlertTemplate, String>| -> String {
                        t.as_ref()
                            .map_err(String::clone)
                            .and_then(|t| t.expand(&data))
                            .unwrap_or_else(|e| {
                                tracing::warn!(alert = %rule.rule.name, error = %e, "expanding alert template failed");
                                format!("<error expanding template: {e}>")
                            })
                    };
                    let mut ls: Vec<Label> = labels
                        .iter()
                        .filter(|l| &*l.name != METRIC_NAME)
                        .cloned()
                        .collect();
                    for (k, t) in &label_templates {
                        ls.push(Label::new(k.as_str(), expand(t)));
                    }
                    ls.push(Label::new(ALERT_NAME, rule.rule.name.as_str()));
                    let alert_labels = Labels::new(ls);
                    let alert_annotations = annotation_templates
                        .iter()
                        .map(|(k, t)| (k.clone(), expand(t)))
                        .collect();
                    if fresh.contains_key(&alert_labels) {
                        return Err("vector contains metrics with the same labelset after applying alert labels".into());
                    }
                    fresh.insert(
                        alert_labels.clone(),
                        Alert {
                            labels: alert_labels,
                            annotations: alert_annotations,
                            state: AlertState::Pending,
                            value,
                            active_at_ms: ts_ms,
                            fired_at_ms: None,
                            resolved_at_ms: None,
                            keep_firing_since_ms: None,
                            last_sent_at_ms: None,
                            valid_until_ms: 0,
                        },
                    );
                }
                let in_result: HashSet<Labels> = fresh.keys().cloned().collect();
                for (key, a) in fresh {
                    match rule.alerts.get_mut(&key) {
                        Some(cur) if cur.state != AlertState::Inactive => {
                            cur.value = a.value;
                            cur.annotations = a.annotations;
                        }
                        _ => {
                            rule.alerts.insert(key, a);
                        }
                    }
                }
                let mut out = Vec::new();
                let mut active = 0usize;
                let mut drop = Vec::new();
                for (key, a) in rule.alerts.iter_mut() {
                    if !in_result.contains(key) {
                        let mut keep_firing = false;
                        if a.state == AlertState::Firing && keep_ms > 0 {
                            let since = *a.keep_firing_since_ms.get_or_insert(ts_ms);
                            keep_firing = ts_ms.saturating_sub(since) < keep_ms;
                        }
                        let retention_over = a
                            .resolved_at_ms
                            .is_some_and(|r| ts_ms.saturating_sub(r) > RESOLVED_RETENTION_MS);
                        if a.state == AlertState::Pending || retention_over {
                            drop.push(key.clone());
                        }
                        if !keep_firing {
                            if a.state != AlertState::Inactive {
                                a.state = AlertState::Inactive;
                                a.resolved_at_ms = Some(ts_ms);
                            }
                            continue;
                        }
                    } else {
                        a.keep_firing_since_ms = None;
                    }
                    active += 1;
                    let held = ts_ms.saturating_sub(a.active_at_ms);
                    if a.state == AlertState::Pending && held >= hold_ms {
                        a.state = AlertState::Firing;
                        a.fired_at_ms = Some(ts_ms);
                    }
                    // A `for` made longer by a reload sends a firing alert back to pending.
                    if a.state == AlertState::Firing && held < hold_ms {
                        a.state = AlertState::Pending;
                        a.fired_at_ms = None;
                        a.keep_firing_since_ms = None;
                    }
                    if rule.restored {
                        out.push((alert_series(ALERTS, a, true), query_ts, 1.0));
                        out.push((
                            alert_series(ALERTS_FOR_STATE, a, false),
                            query_ts,
                            (a.active_at_ms.div_euclid(1000)) as f64,
                        ));
                    }
                }
                for key in drop {
                    rule.alerts.remove(&key);
                }
                if let Some(limit) = limit {
                    if active > limit {
                        rule.alerts.clear();
                        return Err(format!("exceeded limit of {limit} with {active} alerts"));
                    }
                }
                Ok(out)
            }
        }
    }

    /// Restores when each alert became active from the `ALERTS_FOR_STATE` series
    /// written before a restart, as Prometheus does after the second evaluation
    /// of a starting server: an alert that was pending resumes its wait, shifted by
    /// how long the server was down (and never fires sooner than the grace period).
    pub fn restore_for_state(&mut self, now_ms: i64, storage: &dyn Storage, opts: &EvalOptions) {
        let started = Instant::now();
        let mint = now_ms.saturating_sub(duration_ms(opts.outage_tolerance));
        let grace_ms = duration_ms(opts.for_grace_period);
        for rule in &mut self.rules {
            let RuleKind::Alerting { for_duration, .. } = &rule.rule.kind else {
                continue;
            };
            let hold_ms = duration_ms(*for_duration);
            if hold_ms < grace_ms {
                rule.restored = true;
                continue;
            }
            let mut matchers = vec![
                Matcher::equal(METRIC_NAME, ALERTS_FOR_STATE),
                Matcher::equal(ALERT_NAME, &rule.rule.name),
            ];
            for (k, v) in &rule.rule.labels {
                // Templated values differ per alert: they cannot select.
                if !v.contains("{{") {
                    if let Ok(m) = Matcher::new(MatchKind::Equal, k, v) {
                        matchers.push(m);
                    }
                }
            }
            let series = match storage.select(&matchers, mint, now_ms) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(alert = %rule.rule.name, error = %e, "restoring the 'for' state failed");
                    rule.restored = true;
                    continue;
                }
            };
            let last: HashMap<Labels, (i64, f64)> = series
                .into_iter()
                .filter_map(|s| {
                    let t = *s.timestamps.last()?;
                    let v = *s.values.last()?;
                    Some((s.labels.without_metric_name(), (t, v)))
                })
                .collect();
            for a in rule.alerts.values_mut() {
                let Some(&(t, v)) = last.get(&a.labels) else {
                    continue;
                };
                if is_stale_nan(v) || !v.is_finite() {
                    continue;
                }
                let down_at = t.div_euclid(1000).saturating_mul(1000);
                let mut active_at = (v as i64).saturating_mul(1000);
                let remaining = hold_ms.saturating_sub(down_at.saturating_sub(active_at));
                if remaining <= 0 {
                    // It was firing: the next evaluation finds it firing again.
                } else if remaining < grace_ms {
                    active_at = now_ms.saturating_add(grace_ms).saturating_sub(hold_ms);
                } else {
                    active_at = active_at.saturating_add(now_ms.saturating_sub(down_at));
                }
                a.active_at_ms = active_at;
            }
            rule.restored = true;
        }
        self.should_restore = false;
        self.last_restore_duration = started.elapsed();
    }
}

/// The alerts of an alerting rule due to be sent, marked as sent, as
/// Prometheus's `sendAlerts` picks them: they start when they fired and end
/// when they resolved, or after four times the larger of the group interval and
/// the resend delay (two missed evaluations or sends are tolerated).
fn due_notifications(
    rule: &mut RuleState,
    ts_ms: i64,
    interval: Duration,
    opts: &EvalOptions,
) -> Vec<Notification> {
    let resend_ms = duration_ms(opts.resend_delay);
    let valid_for = duration_ms(interval).max(resend_ms).saturating_mul(4);
    let generator_url = format!(
        "{}/graph?g0.expr={}&g0.tab=1",
        opts.external_url,
        crate::config::form_encode(&rule.rule.parsed.to_string())
    );
    let mut out = Vec::new();
    for a in rule.alerts.values_mut() {
        if !a.needs_sending(ts_ms, resend_ms) {
            continue;
        }
        a.last_sent_at_ms = Some(ts_ms);
        a.valid_until_ms = ts_ms.saturating_add(valid_for);
        out.push(Notification {
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            starts_at_ms: a.fired_at_ms.unwrap_or(0),
            ends_at_ms: a.resolved_at_ms.unwrap_or(a.valid_until_ms),
            generator_url: generator_url.clone(),
        });
    }
    out
}

fn same_rule(a: &Rule, b: &Rule) -> bool {
    a.name == b.name && a.expr == b.expr && a.labels == b.labels && a.kind == b.kind
}

/// An alert's `ALERTS` (with its state) or `ALERTS_FOR_STATE` series.
fn alert_series(name: &str, a: &Alert, with_state: bool) -> Labels {
    let mut ls: Vec<Label> = a.labels.iter().cloned().collect();
    ls.push(Label::new(METRIC_NAME, name));
    if with_state {
        ls.push(Label::new(ALERT_STATE, a.state.as_str()));
    }
    Labels::new(ls)
}

/// Runs an instant query for a rule: a vector, or a scalar as one sample without
/// labels; anything else is an error, as in Prometheus.
fn query_vector(
    engine: &Engine,
    storage: &dyn RuleStorage,
    expr: &str,
    ts_ms: i64,
) -> Result<Vec<(Labels, i64, f64)>, String> {
    let result = engine
        .instant_query(storage, expr, ts_ms)
        .map_err(|e| e.to_string())?;
    match result.value {
        Value::Vector(v) => Ok(v.into_iter().map(|s| (s.labels, s.t, s.v)).collect()),
        Value::Scalar { t, v } => Ok(vec![(Labels::empty(), t, v)]),
        _ => Err("rule result is not a vector or scalar".into()),
    }
}

fn has_same_labels(v: &[(Labels, i64, f64)]) -> bool {
    let mut seen = HashSet::with_capacity(v.len());
    v.iter().any(|(l, _, _)| !seen.insert(l))
}

fn label_map(labels: &Labels) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|l| (l.name.to_string(), l.value.to_string()))
        .collect()
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The first evaluation time of a group on its stable offset: groups spread
/// over their interval by a hash of file and name, so restarts keep their slots.
pub fn eval_timestamp(now_ms: i64, interval: Duration, file: &str, name: &str) -> i64 {
    let interval = duration_ms(interval).max(1);
    let offset = (fnv1a(&[file.as_bytes(), &[0xff], name.as_bytes()]) % interval as u64) as i64;
    let adj = now_ms.saturating_sub(offset);
    adj - adj.rem_euclid(interval) + offset
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}
