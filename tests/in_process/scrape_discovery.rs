//! Relabeling and file_sd end to end in process: targets found in files, relabeled,
//! scraped; a file change restarts only the loops of targets that changed; metric
//! relabeling shapes the stored series. What the binary prints and serves about
//! them is in tests/binary/scrape_discovery.rs.

use std::time::Duration;

use crate::support::*;
use arrowmon::model::labels::{Labels, Matcher};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sd_targets_are_relabeled_and_follow_file_changes() {
    let a = exporter(|| "# TYPE a_metric gauge\na_metric{exported=\"x\"} 1\n".into()).await;
    let b = exporter(|| "b_metric 2\n".into()).await;
    let c = exporter(|| "c_metric 3\n".into()).await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("targets.json");
    let yaml = dir.path().join("more.yml");
    std::fs::write(
        &json,
        format!(r#"[{{"targets": ["{a}", "{b}"], "labels": {{"team": "db", "__meta_role": "primary"}}}}]"#),
    )
    .unwrap();
    std::fs::write(
        &yaml,
        "- targets: ['dropped.invalid:1']\n  labels: {skip: 'yes'}\n",
    )
    .unwrap();
    let cfg = format!(
        r#"
scrape_configs:
  - job_name: sd
    scrape_interval: 1s
    file_sd_configs:
      - files: ['{dir}/*.json', '{dir}/*.yml']
        refresh_interval: 1m
    relabel_configs:
      - source_labels: [skip]
        regex: 'yes'
        action: drop
      - source_labels: [__meta_role]
        target_label: role
      - source_labels: [__meta_filepath]
        regex: '.*/([^/]+)'
        target_label: source_file
      - source_labels: [__address__]
        regex: '127\.0\.0\.1:(\d+)'
        target_label: __tmp_port
      - source_labels: [__tmp_port]
        target_label: port
    metric_relabel_configs:
      - source_labels: [exported]
        target_label: renamed
      - regex: exported
        action: labeldrop
"#,
        dir = dir.path().display()
    );
    let h = Harness::start(&cfg);
    let targets = h
        .wait_until(Duration::from_secs(10), "two targets scraped", |t| {
            t.len() == 2 && t.iter().all(|t| t.last_scrape_ms > 0)
        })
        .await;
    let ta = targets.iter().find(|t| t.url.contains(&a)).unwrap();
    let port_a = a.rsplit(':').next().unwrap();
    assert_eq!(
        ta.labels,
        Labels::from_pairs([
            ("instance", a.as_str()),
            ("job", "sd"),
            ("port", port_a),
            ("role", "primary"),
            ("source_file", "targets.json"),
            ("team", "db"),
        ])
    );
    assert_eq!(
        ta.discovered_labels.get("__meta_filepath"),
        Some(json.display().to_string().as_str())
    );
    assert_eq!(h.manager.dropped_targets().len(), 1);
    let a_series = h.series_named("a_metric");
    assert_eq!(a_series.len(), 1);
    assert_eq!(a_series[0].labels.get("renamed"), Some("x"));
    assert_eq!(a_series[0].labels.get("exported"), None);
    assert_eq!(a_series[0].labels.get("port"), Some(port_a));

    // Replace b by c: a keeps running untouched, b ends with staleness markers.
    h.wait_more_scrapes(1, Duration::from_secs(5)).await;
    std::fs::write(
        &json,
        format!(r#"[{{"targets": ["{a}", "{c}"], "labels": {{"team": "db", "__meta_role": "primary"}}}}]"#),
    )
    .unwrap();
    h.wait_until(Duration::from_secs(10), "c scraped", |t| {
        t.iter().any(|t| t.url.contains(&c) && t.last_scrape_ms > 0)
            && !t.iter().any(|t| t.url.contains(&b))
    })
    .await;
    let b_vals = &h.series_named("b_metric")[0].values;
    assert!(is_stale(*b_vals.last().unwrap()), "{b_vals:?}");
    // The target's own up series ends too.
    let b_up = h.select(&[
        Matcher::equal("__name__", "up"),
        Matcher::equal("instance", &b),
    ]);
    assert!(
        is_stale(*b_up[0].values.last().unwrap()),
        "{:?}",
        b_up[0].values
    );
    let a_vals = &h.series_named("a_metric")[0].values;
    assert!(
        a_vals.iter().all(|v| !is_stale(*v)),
        "a was restarted: {a_vals:?}"
    );
    // A broken file keeps its targets and reports why.
    std::fs::write(&json, "[{\"targets\": [").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(h.targets().len(), 2);
    let errs = h.manager.discovery_errors();
    assert!(errs.iter().any(|e| e.contains("targets.json")), "{errs:?}");
    // Removing the file removes its targets.
    std::fs::remove_file(&json).unwrap();
    h.wait_until(Duration::from_secs(10), "targets gone", |t| t.is_empty())
        .await;
    let c_vals = &h.series_named("c_metric")[0].values;
    assert!(is_stale(*c_vals.last().unwrap()));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honor_labels_and_metric_relabeling_of_target_labels() {
    let addr = exporter(|| "m{job=\"inner\",instance=\"i\"} 1\nn 2\n".into()).await;
    let cfg = format!(
        "scrape_configs:\n  - job_name: outer\n    scrape_interval: 1s\n    metric_relabel_configs:\n      - source_labels: [__name__, exported_job]\n        separator: '@'\n        regex: 'm@(.*)'\n        target_label: origin\n        replacement: 'from-$1'\n      - source_labels: [__name__]\n        regex: n\n        target_label: __name__\n        replacement: n_renamed\n    static_configs:\n      - targets: ['{addr}']\n"
    );
    let h = Harness::start(&cfg);
    h.wait_scraped(Duration::from_secs(10)).await;
    let m = &h.series_named("m")[0].labels;
    assert_eq!(m.get("job"), Some("outer"));
    assert_eq!(m.get("exported_job"), Some("inner"));
    assert_eq!(m.get("exported_instance"), Some("i"));
    assert_eq!(m.get("origin"), Some("from-inner"));
    assert_eq!(h.series_named("n_renamed").len(), 1);
    assert!(h.series_named("n").is_empty());
    // up and scrape_* carry the target labels only, never metric relabeling.
    let up = h.select(&[Matcher::equal("__name__", "up")]);
    assert_eq!(
        up[0].labels,
        Labels::from_pairs([
            ("__name__", "up"),
            ("instance", addr.as_str()),
            ("job", "outer")
        ])
    );
    h.stop().await;
}
