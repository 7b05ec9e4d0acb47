//! Relabeling and file_sd end to end: targets found in files, relabeled, scraped;
//! a file change restarts only the loops of targets that changed; metric
//! relabeling shapes the stored series; `check-config` prints the relabeled
//! targets and the dropped ones.

mod support;

use std::time::Duration;

use arrowmon::labels::{Labels, Matcher};
use support::*;

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

#[test]
fn check_config_prints_relabeled_and_dropped_targets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sd.json"),
        r#"[{"targets": ["fromfile:9100"]}]"#,
    )
    .unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        r#"
scrape_configs:
  - job_name: blackbox
    metrics_path: /probe
    params: {module: [http_2xx]}
    static_configs:
      - targets: ['https://example.org', 'https://skip.example.org']
    relabel_configs:
      - source_labels: [__address__]
        regex: '.*skip.*'
        action: drop
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: 127.0.0.1:9115
  - job_name: files
    file_sd_configs:
      - files: [sd.json]
"#,
    )
    .unwrap();
    let out = check_config(&cfg);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "target  http://127.0.0.1:9115/probe?module=http_2xx&target=https%3A%2F%2Fexample.org  {instance=\"https://example.org\", job=\"blackbox\"}"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("dropped by relabeling") && stdout.contains("skip.example.org"),
        "{stdout}"
    );
    // file_sd paths are relative to the config file.
    assert!(
        stdout.contains("target  http://fromfile:9100/metrics"),
        "{stdout}"
    );

    // A bad relabel rule names the job, the rule and what is wrong.
    std::fs::write(
        &cfg,
        "scrape_configs:\n  - job_name: j\n    relabel_configs:\n      - action: hashmod\n        target_label: x\n",
    )
    .unwrap();
    let out = check_config(&cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("\"j\"")
            && stderr.contains("relabel_configs[0]")
            && stderr.contains("requires non-zero modulus"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_targets_reports_discovered_and_dropped_targets() {
    arrowmon::scrape::tls::install_default_provider();
    let addr = exporter(|| "x 1\n".into()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("scrape.yml");
    std::fs::write(
        &cfg,
        format!(
            "scrape_configs:\n  - job_name: app\n    scrape_interval: 1s\n    relabel_configs:\n      - source_labels: [__address__]\n        regex: 'gone:.*'\n        action: drop\n      - target_label: team\n        replacement: core\n    static_configs:\n      - targets: ['{addr}', 'gone:1']\n        labels: {{__meta_zone: eu}}\n"
        ),
    )
    .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut child = spawn_serve(&cfg, &dir.path().join("data"), &listen);
    let url = format!("http://{listen}/api/v1/targets");
    let mut body = serde_json::Value::Null;
    for _ in 0..100 {
        if let Ok(r) = reqwest::get(&url).await {
            if let Ok(v) =
                serde_json::from_str::<serde_json::Value>(&r.text().await.unwrap_or_default())
            {
                if v["data"]["activeTargets"][0]["health"] == "up" {
                    body = v;
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let active = &body["data"]["activeTargets"][0];
    assert_eq!(active["labels"]["team"], "core", "{body}");
    assert!(active["labels"].get("__meta_zone").is_none(), "{body}");
    assert_eq!(active["discoveredLabels"]["__meta_zone"], "eu", "{body}");
    assert_eq!(active["discoveredLabels"]["__address__"], addr.as_str());
    assert!(active["discoveredLabels"].get("team").is_none(), "{body}");
    let dropped = &body["data"]["droppedTargets"];
    assert_eq!(dropped.as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(dropped[0]["discoveredLabels"]["__address__"], "gone:1");
    assert_eq!(dropped[0]["scrapePool"], "app");
}
