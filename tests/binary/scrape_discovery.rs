//! Relabeling and discovery as the binary reports them: `check-config` prints the
//! relabeled targets and the dropped ones; `/api/v1/targets` of `gpx_arrowmon serve`
//! lists discovered and dropped targets.

use std::time::Duration;

use crate::support::*;

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
