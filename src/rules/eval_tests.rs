use std::time::Duration;

use super::eval::*;
use super::{parse_rule_file, ParseOptions};
use crate::model::labels::{Labels, Matcher};
use crate::model::value::is_stale_nan;
use crate::model::Storage;
use crate::promql::{Engine, EngineOptions};

type Mem = MemRuleStorage;

/// Test helpers over the shared in-memory rule storage.
trait MemExt {
    fn add(&self, series: &str, samples: &[(i64, f64)]);
    fn samples_of(&self, series: &str) -> Vec<(i64, f64)>;
    fn series_named(&self, name: &str) -> Vec<Labels>;
}

impl MemExt for Mem {
    fn add(&self, series: &str, samples: &[(i64, f64)]) {
        self.add_samples(labels(series), samples);
    }

    /// Every sample of the series with this exact label set.
    fn samples_of(&self, series: &str) -> Vec<(i64, f64)> {
        self.samples(&labels(series))
    }

    fn series_named(&self, name: &str) -> Vec<Labels> {
        self.select(&[Matcher::equal("__name__", name)], i64::MIN, i64::MAX)
            .unwrap()
            .into_iter()
            .map(|s| s.labels)
            .collect()
    }
}

/// `name{a="b",c="d"}` as a label set.
fn labels(series: &str) -> Labels {
    let (name, rest) = series.split_once('{').unwrap_or((series, "}"));
    let mut pairs = vec![("__name__".to_string(), name.to_string())];
    for kv in rest
        .trim_end_matches('}')
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let (k, v) = kv.split_once('=').unwrap();
        pairs.push((k.to_string(), v.trim_matches('"').to_string()));
    }
    Labels::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

fn group(yaml: &str, restore: bool) -> Group {
    let parsed = parse_rule_file(yaml, &ParseOptions::default()).unwrap();
    Group::new(
        "rules.yml",
        &parsed.groups[0],
        Duration::from_secs(60),
        Duration::ZERO,
        restore,
    )
}

fn engine() -> Engine {
    Engine::new(EngineOptions::default())
}

const MIN: i64 = 60_000;

#[test]
fn later_rules_see_earlier_results_at_the_same_evaluation() {
    let s = Mem::default();
    s.add("x{i=\"a\"}", &[(0, 1.0)]);
    s.add("x{i=\"b\"}", &[(0, 2.0)]);
    let mut g = group(
        "groups:\n- name: g\n  rules:\n  - record: job:x:sum\n    expr: sum(x)\n    labels:\n      src: rule\n  - record: job:x:double\n    expr: job:x:sum * 2\n",
        false,
    );
    g.eval(MIN, &engine(), &s, &EvalOptions::default());
    assert_eq!(s.samples_of("job:x:sum{src=\"rule\"}"), vec![(MIN, 3.0)]);
    assert_eq!(s.samples_of("job:x:double{src=\"rule\"}"), vec![(MIN, 6.0)]);
    assert!(g.rules.iter().all(|r| r.health == RuleHealth::Good));
    assert_eq!(g.last_samples, 2);
    assert_eq!(g.counters.evaluations, 2);
    assert_eq!(g.counters.iterations, 1);
}

#[test]
fn a_series_a_rule_stops_producing_goes_stale() {
    let s = Mem::default();
    s.add("x{i=\"a\"}", &[(0, 1.0)]);
    s.add("x{i=\"b\"}", &[(0, 2.0)]);
    let mut g = group(
        "groups:\n- name: g\n  rules:\n  - record: r\n    expr: x > 1\n",
        false,
    );
    g.eval(MIN, &engine(), &s, &EvalOptions::default());
    assert_eq!(s.samples_of("r{i=\"b\"}"), vec![(MIN, 2.0)]);
    s.add("x{i=\"b\"}", &[(MIN + 1, 0.5)]);
    g.eval(2 * MIN, &engine(), &s, &EvalOptions::default());
    let got = s.samples_of("r{i=\"b\"}");
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].0, 2 * MIN);
    assert!(is_stale_nan(got[1].1));
}

#[test]
fn the_query_offset_moves_query_and_output_time() {
    let s = Mem::default();
    s.add("x", &[(0, 1.0), (MIN, 5.0)]);
    let mut g = group(
        "groups:\n- name: g\n  query_offset: 1m\n  rules:\n  - record: r\n    expr: x\n",
        false,
    );
    g.eval(MIN + 30_000, &engine(), &s, &EvalOptions::default());
    assert_eq!(s.samples_of("r"), vec![(30_000, 1.0)]);
}

#[test]
fn scalar_results_are_recorded_and_other_types_fail() {
    let s = Mem::default();
    let mut g = group(
        "groups:\n- name: g\n  rules:\n  - record: answer\n    expr: 42\n  - record: text\n    expr: '\"hello\"'\n",
        false,
    );
    g.eval(MIN, &engine(), &s, &EvalOptions::default());
    assert_eq!(s.samples_of("answer"), vec![(MIN, 42.0)]);
    assert_eq!(g.rules[1].health, RuleHealth::Bad);
    assert_eq!(
        g.rules[1].last_error.as_deref(),
        Some("rule result is not a vector or scalar")
    );
    assert_eq!(g.counters.evaluation_failures, 1);
}

#[test]
fn duplicate_output_and_limits_fail_the_rule() {
    let s = Mem::default();
    s.add("x{i=\"a\"}", &[(0, 1.0)]);
    s.add("x{i=\"b\"}", &[(0, 2.0)]);
    let mut g = group(
        "groups:\n- name: g\n  rules:\n  - record: r\n    expr: x\n    labels:\n      i: same\n",
        false,
    );
    g.eval(MIN, &engine(), &s, &EvalOptions::default());
    assert_eq!(
        g.rules[0].last_error.as_deref(),
        Some("vector contains metrics with the same labelset after applying rule labels")
    );
    assert!(s.series_named("r").is_empty());

    let mut g = group(
        "groups:\n- name: g\n  limit: 1\n  rules:\n  - record: r\n    expr: x\n  - alert: A\n    expr: x\n",
        false,
    );
    g.eval(MIN, &engine(), &s, &EvalOptions::default());
    assert_eq!(
        g.rules[0].last_error.as_deref(),
        Some("exceeded limit of 1 with 2 series")
    );
    assert_eq!(
        g.rules[1].last_error.as_deref(),
        Some("exceeded limit of 1 with 2 alerts")
    );
    assert!(g.rules[1].alerts().is_empty());
}

#[test]
fn an_alert_goes_pending_then_firing_then_resolved() {
    let s = Mem::default();
    let up = "up{instance=\"h:9100\",job=\"node\"}";
    s.add(up, &[(0, 0.0)]);
    let mut g = group(
        "groups:\n- name: g\n  labels:\n    team: infra\n  rules:\n  - alert: HostDown\n    expr: up == 0\n    for: 2m\n    labels:\n      severity: page\n    annotations:\n      summary: down\n",
        false,
    );
    let opts = EvalOptions::default();
    let alert_series = "ALERTS{alertname=\"HostDown\",alertstate=\"pending\",instance=\"h:9100\",job=\"node\",severity=\"page\",team=\"infra\"}";
    let firing_series = alert_series.replace("pending", "firing");
    let for_state = "ALERTS_FOR_STATE{alertname=\"HostDown\",instance=\"h:9100\",job=\"node\",severity=\"page\",team=\"infra\"}";

    g.eval(MIN, &engine(), &s, &opts);
    let a = g.rules[0].alerts()[0].clone();
    assert_eq!(a.state, AlertState::Pending);
    assert_eq!(a.active_at_ms, MIN);
    assert_eq!(a.value, 0.0);
    assert_eq!(a.annotations["summary"], "down");
    assert_eq!(g.rules[0].state(), AlertState::Pending);
    assert_eq!(s.samples_of(alert_series), vec![(MIN, 1.0)]);
    assert_eq!(s.samples_of(for_state), vec![(MIN, 60.0)]);

    for t in [2 * MIN, 3 * MIN] {
        s.add(up, &[(t, 0.0)]);
        g.eval(t, &engine(), &s, &opts);
    }
    let a = g.rules[0].alerts()[0].clone();
    assert_eq!(a.state, AlertState::Firing);
    assert_eq!(a.fired_at_ms, Some(3 * MIN));
    assert!(is_stale_nan(s.samples_of(alert_series).last().unwrap().1));
    assert_eq!(s.samples_of(&firing_series), vec![(3 * MIN, 1.0)]);

    s.add(up, &[(4 * MIN - 1, 1.0)]);
    g.eval(4 * MIN, &engine(), &s, &opts);
    let a = g.rules[0].alerts()[0].clone();
    assert_eq!(a.state, AlertState::Inactive);
    assert_eq!(a.resolved_at_ms, Some(4 * MIN));
    let last = *s.samples_of(&firing_series).last().unwrap();
    assert_eq!(last.0, 4 * MIN);
    assert!(is_stale_nan(last.1));
    // Kept as resolved for 15 minutes, then dropped.
    s.add(up, &[(19 * MIN, 1.0), (20 * MIN - 1, 1.0)]);
    g.eval(19 * MIN, &engine(), &s, &opts);
    assert_eq!(g.rules[0].alerts().len(), 1);
    g.eval(20 * MIN, &engine(), &s, &opts);
    assert!(g.rules[0].alerts().is_empty());
}

#[test]
fn a_pending_alert_whose_condition_clears_is_dropped() {
    let s = Mem::default();
    s.add("up{i=\"a\"}", &[(0, 0.0), (MIN + 1, 1.0)]);
    let mut g = group(
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n    for: 5m\n",
        false,
    );
    g.eval(MIN, &engine(), &s, &EvalOptions::default());
    assert_eq!(g.rules[0].alerts().len(), 1);
    g.eval(2 * MIN, &engine(), &s, &EvalOptions::default());
    assert!(g.rules[0].alerts().is_empty());
}

#[test]
fn keep_firing_for_holds_a_firing_alert_after_the_condition_clears() {
    let s = Mem::default();
    s.add("up{i=\"a\"}", &[(0, 0.0), (MIN + 1, 1.0)]);
    let mut g = group(
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n    keep_firing_for: 2m\n",
        false,
    );
    let opts = EvalOptions::default();
    g.eval(MIN, &engine(), &s, &opts);
    assert_eq!(g.rules[0].alerts()[0].state, AlertState::Firing);
    g.eval(2 * MIN, &engine(), &s, &opts);
    let a = g.rules[0].alerts()[0].clone();
    assert_eq!(a.state, AlertState::Firing);
    assert_eq!(a.keep_firing_since_ms, Some(2 * MIN));
    g.eval(3 * MIN, &engine(), &s, &opts);
    assert_eq!(g.rules[0].alerts()[0].state, AlertState::Firing);
    g.eval(4 * MIN, &engine(), &s, &opts);
    assert_eq!(g.rules[0].alerts()[0].state, AlertState::Inactive);
}

#[test]
fn alerts_with_the_same_labels_after_templating_fail_the_rule() {
    let s = Mem::default();
    s.add("up{i=\"a\"}", &[(0, 0.0)]);
    s.add("up{i=\"b\"}", &[(0, 0.0)]);
    let mut g = group(
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n    labels:\n      i: x\n",
        false,
    );
    g.eval(MIN, &engine(), &s, &EvalOptions::default());
    assert_eq!(
        g.rules[0].last_error.as_deref(),
        Some("vector contains metrics with the same labelset after applying alert labels")
    );
}

#[test]
fn a_starting_group_writes_no_alerts_series_until_restored() {
    let s = Mem::default();
    s.add("up{i=\"a\"}", &[(0, 0.0)]);
    let mut g = group(
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n",
        true,
    );
    let opts = EvalOptions::default();
    g.eval(MIN, &engine(), &s, &opts);
    assert!(s.series_named("ALERTS").is_empty());
    assert_eq!(g.rules[0].alerts()[0].state, AlertState::Firing);
    g.restore_for_state(MIN, &s, &opts);
    assert!(!g.should_restore);
    g.eval(2 * MIN, &engine(), &s, &opts);
    assert_eq!(
        s.samples_of("ALERTS{alertname=\"A\",alertstate=\"firing\",i=\"a\"}"),
        vec![(2 * MIN, 1.0)]
    );
}

/// Prometheus's restore: pending time already spent counts, shifted by the
/// downtime; an alert close to firing waits at least the grace period.
#[test]
fn alert_state_is_restored_from_alerts_for_state() {
    let hour = 60 * MIN;
    let opts = EvalOptions::default();
    let rules = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n    for: 30m\n";
    // (became active, went down, restart at): expected active_at after restore.
    let cases = [
        // 10m of 30m spent, down for 5m: 20m remain, pushed back by the downtime.
        (hour, hour + 10 * MIN, hour + 15 * MIN, hour + 5 * MIN),
        // 25m spent: 5m remain, less than the 10m grace: fires 10m after restart.
        (
            hour,
            hour + 25 * MIN,
            hour + 30 * MIN,
            hour + 30 * MIN + 10 * MIN - 30 * MIN,
        ),
        // Already past `for`: unchanged, fires at the next evaluation.
        (hour, hour + 40 * MIN, hour + 45 * MIN, hour),
    ];
    for (active, down, restart, want) in cases {
        let s = Mem::default();
        s.add("up{i=\"a\"}", &[(active - MIN, 0.0), (restart, 0.0)]);
        s.add(
            "ALERTS_FOR_STATE{alertname=\"A\",i=\"a\"}",
            &[
                (active, (active / 1000) as f64),
                (down, (active / 1000) as f64),
            ],
        );
        let mut g = group(rules, true);
        g.eval(restart, &engine(), &s, &opts);
        g.restore_for_state(restart, &s, &opts);
        let a = g.rules[0].alerts()[0].clone();
        assert_eq!(a.active_at_ms, want, "case {active} {down} {restart}");
    }
}

#[test]
fn a_reload_keeps_the_state_of_rules_that_stay_and_stales_the_rest() {
    let s = Mem::default();
    s.add("up{i=\"a\"}", &[(0, 0.0)]);
    let opts = EvalOptions::default();
    let mut old = group(
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n    for: 5m\n  - record: gone\n    expr: up\n",
        false,
    );
    old.eval(MIN, &engine(), &s, &opts);
    let mut new = group(
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n    for: 5m\n",
        false,
    );
    assert!(!new.same_definition(&old));
    new.take_state_from(old);
    assert_eq!(new.rules[0].alerts()[0].active_at_ms, MIN);
    s.add("up{i=\"a\"}", &[(2 * MIN - 1, 0.0)]);
    new.eval(2 * MIN, &engine(), &s, &opts);
    let gone = s.samples_of("gone{i=\"a\"}");
    assert_eq!(gone.len(), 2);
    assert!(is_stale_nan(gone[1].1));
}

#[test]
fn evaluation_slots_are_stable_and_spread() {
    let iv = Duration::from_secs(60);
    let now = 1_700_000_123_456;
    let a = eval_timestamp(now, iv, "f.yml", "a");
    assert!(a <= now && now - a < 60_000);
    assert_eq!(
        a.rem_euclid(60_000),
        eval_timestamp(now + 3_600_000, iv, "f.yml", "a").rem_euclid(60_000)
    );
    let slots: std::collections::HashSet<i64> = (0..20)
        .map(|i| eval_timestamp(now, iv, "f.yml", &format!("g{i}")).rem_euclid(60_000))
        .collect();
    assert!(slots.len() > 10);
}

#[test]
fn firing_alerts_are_sent_again_after_the_resend_delay_and_once_resolved() {
    let s = Mem::default();
    s.add("up{i=\"a\"}", &[(0, 0.0)]);
    let mut g = group(
        "groups:\n- name: g\n  interval: 15s\n  rules:\n  - alert: A\n    expr: up == 0\n    for: 1m\n",
        false,
    );
    let opts = EvalOptions {
        external_url: "http://am.example:9090".into(),
        ..EvalOptions::default()
    };
    // Pending: nothing to send.
    assert!(g.eval(MIN, &engine(), &s, &opts).is_empty());
    s.add("up{i=\"a\"}", &[(2 * MIN, 0.0)]);
    let sent = g.eval(2 * MIN, &engine(), &s, &opts);
    assert_eq!(sent.len(), 1);
    let n = &sent[0];
    assert_eq!(
        n.labels,
        labels("x{alertname=\"A\",i=\"a\"}").without_metric_name()
    );
    assert_eq!(n.starts_at_ms, 2 * MIN);
    // Valid for four times the larger of the interval (15s) and the resend delay (1m).
    assert_eq!(n.ends_at_ms, 2 * MIN + 4 * MIN);
    assert_eq!(
        n.generator_url,
        "http://am.example:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1"
    );
    // Within the resend delay: not again; after it: again.
    s.add(
        "up{i=\"a\"}",
        &[(2 * MIN + 30_000, 0.0), (3 * MIN + 1, 0.0)],
    );
    assert!(g.eval(2 * MIN + 30_000, &engine(), &s, &opts).is_empty());
    assert_eq!(g.eval(3 * MIN + 1, &engine(), &s, &opts).len(), 1);
    // Resolved: sent at once, ending when it resolved.
    s.add("up{i=\"a\"}", &[(3 * MIN + 2, 1.0)]);
    let sent = g.eval(3 * MIN + 10, &engine(), &s, &opts);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].ends_at_ms, 3 * MIN + 10);
    assert_eq!(sent[0].starts_at_ms, 2 * MIN);
    // And again every resend delay while it is kept as resolved.
    assert!(g.eval(3 * MIN + 20, &engine(), &s, &opts).is_empty());
    assert_eq!(g.eval(4 * MIN + 20, &engine(), &s, &opts).len(), 1);
}

#[test]
fn alert_labels_and_annotations_are_expanded_per_alert() {
    let s = Mem::default();
    s.add("disk_free{mount=\"/\"}", &[(0, 1234567.0)]);
    s.add("disk_size{mount=\"/\"}", &[(0, 1e7)]);
    let mut g = group(
        concat!(
            "groups:\n- name: g\n  rules:\n  - alert: DiskLow\n    expr: disk_free < 2e6\n",
            "    labels:\n      where: 'mount {{ $labels.mount }}'\n",
            "    annotations:\n",
            "      free: '{{ $value | humanize1024 }}B on {{ $externalLabels.site }} ({{ $externalURL }})'\n",
            "      size: '{{ with query \"disk_size\" }}{{ . | first | value | humanize }}{{ end }}'\n",
            "      broken: '{{ index $labels 1 }}'\n",
        ),
        false,
    );
    let opts = EvalOptions {
        external_labels: [("site".to_string(), "ams".to_string())].into(),
        external_url: "http://arrowmon:9090".into(),
        ..EvalOptions::default()
    };
    g.eval(MIN, &engine(), &s, &opts);
    assert_eq!(
        g.rules[0].health,
        RuleHealth::Good,
        "{:?}",
        g.rules[0].last_error
    );
    let a = g.rules[0].alerts()[0].clone();
    assert_eq!(a.labels.get("where"), Some("mount /"));
    assert_eq!(
        a.annotations["free"],
        "1.177MiB on ams (http://arrowmon:9090)"
    );
    assert_eq!(a.annotations["size"], "10M");
    // A template that fails leaves Prometheus's error text, the alert still fires.
    assert!(
        a.annotations["broken"]
            .starts_with("<error expanding template: error executing template __alert_DiskLow: "),
        "{}",
        a.annotations["broken"]
    );
}
