//! Alerts from `gpx_arrowmon serve` delivered to a real Alertmanager (Debian's
//! `prometheus-alertmanager` 0.25) on loopback: an alert fires there within
//! `for` plus an evaluation and a scrape, with the external labels and the
//! `alert_relabel_configs` applied, Alertmanager passes it on to its webhook
//! receiver, and it resolves there when the condition clears.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// A webhook receiver: keeps every notification Alertmanager posts.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    use axum::routing::post;
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |body: String| {
            let keep = keep.clone();
            async move {
                if let Ok(v) = serde_json::from_str(&body) {
                    keep.lock().unwrap().push(v);
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), got)
}

fn start_alertmanager(dir: &Path, listen: &str, hook: &str) -> ChildGuard {
    let cfg = dir.join("alertmanager.yml");
    std::fs::write(
        &cfg,
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {hook}\n        send_resolved: true\n"
        ),
    )
    .unwrap();
    ChildGuard::spawn(
        "prometheus-alertmanager",
        std::process::Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address={listen}"))
            .arg("--cluster.listen-address=")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )
}

async fn am_alerts(client: &reqwest::Client, am: &str) -> Vec<Value> {
    http_get_json(client, &format!("{am}/api/v2/alerts"))
        .await
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_fire_and_resolve_in_a_real_alertmanager() {
    let high = Arc::new(AtomicBool::new(false));
    let h = high.clone();
    let target =
        exporter(move || format!("x {}\n", if h.load(Ordering::SeqCst) { 3 } else { 0 })).await;
    let dir = tempfile::tempdir().unwrap();
    let (hook, notified) = webhook().await;
    let am_listen = format!("127.0.0.1:{}", free_port());
    let _am = start_alertmanager(dir.path(), &am_listen, &hook);
    let am = format!("http://{am_listen}");

    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: demo\n    interval: 1s\n    rules:\n      - alert: XHigh\n        expr: x > 1\n        for: 1s\n        labels:\n          severity: page\n        annotations:\n          summary: x is high\n",
    )
    .unwrap();
    let cfg = dir.path().join("arrowmon.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  external_labels:\n    replica: a\nrule_files:\n  - rules.yml\nalerting:\n  alert_relabel_configs:\n    - target_label: via\n      replacement: arrowmon\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am_listen}']\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let _serve = spawn_serve(&cfg, &dir.path().join("data"), &listen);
    let base = format!("http://{listen}");
    let client = http_client();

    // Both up, the rule evaluated at least once with the condition false.
    eventually(
        Duration::from_secs(30),
        "serve and Alertmanager ready",
        || {
            let (c, b, a) = (client.clone(), base.clone(), am.clone());
            async move {
                let rules = c.get(format!("{b}/api/v1/rules")).send().await.ok()?;
                let v: Value = serde_json::from_str(&rules.text().await.ok()?).ok()?;
                let evaluated = v["data"]["groups"][0]["rules"][0]["health"] == "ok";
                let am_up = c
                    .get(format!("{a}/-/ready"))
                    .send()
                    .await
                    .ok()?
                    .status()
                    .is_success();
                (evaluated && am_up).then_some(())
            }
        },
    )
    .await;

    let raised = Instant::now();
    high.store(true, Ordering::SeqCst);
    let alert = eventually(Duration::from_secs(20), "the alert in Alertmanager", || {
        let (c, a) = (client.clone(), am.clone());
        async move {
            am_alerts(&c, &a)
                .await
                .into_iter()
                .find(|x| x["labels"]["alertname"] == "XHigh")
        }
    })
    .await;
    let took = raised.elapsed();
    // for (1s) + an evaluation (1s) + a scrape (1s), with room for a loaded machine.
    assert!(
        took < Duration::from_secs(8),
        "the alert took {took:?} to reach Alertmanager"
    );
    assert_eq!(alert["labels"]["severity"], "page");
    assert_eq!(alert["labels"]["replica"], "a", "external labels are added");
    assert_eq!(
        alert["labels"]["via"], "arrowmon",
        "alert_relabel_configs apply"
    );
    assert_eq!(alert["labels"]["job"], "app");
    assert_eq!(alert["annotations"]["summary"], "x is high");
    assert_eq!(alert["status"]["state"], "active");
    let generator = alert["generatorURL"].as_str().unwrap();
    assert!(
        generator.starts_with(&format!("{base}/graph?g0.expr=x+%3E+1")),
        "{generator}"
    );
    eventually(
        Duration::from_secs(20),
        "the firing notification at the webhook",
        || {
            let n = notified.clone();
            async move {
                let got = n.lock().unwrap();
                got.iter().any(|v| v["status"] == "firing").then_some(())
            }
        },
    )
    .await;

    let cleared = Instant::now();
    high.store(false, Ordering::SeqCst);
    eventually(
        Duration::from_secs(20),
        "the alert resolved in Alertmanager",
        || {
            let (c, a) = (client.clone(), am.clone());
            async move {
                let active = am_alerts(&c, &a).await.into_iter().any(|x| {
                    x["labels"]["alertname"] == "XHigh" && x["status"]["state"] == "active"
                });
                (!active).then_some(())
            }
        },
    )
    .await;
    assert!(
        cleared.elapsed() < Duration::from_secs(8),
        "resolving took {:?}",
        cleared.elapsed()
    );
    eventually(
        Duration::from_secs(20),
        "the resolved notification at the webhook",
        || {
            let n = notified.clone();
            async move {
                let got = n.lock().unwrap();
                got.iter()
                    .any(|v| {
                        v["status"] == "resolved"
                            && v["alerts"][0]["labels"]["alertname"] == "XHigh"
                    })
                    .then_some(())
            }
        },
    )
    .await;

    // The notifier's metrics, with Prometheus's names.
    let (_, metrics) = http_get(&client, &format!("{base}/metrics")).await.unwrap();
    let url = format!("http://{am_listen}/api/v2/alerts");
    let value = |name: &str| -> f64 {
        let series = format!("{name}{{alertmanager=\"{url}\",tenant=\"standalone\"}}");
        exposition_value(&metrics, &series).unwrap_or_else(|| panic!("{series} in\n{metrics}"))
    };
    assert!(value("prometheus_notifications_sent_total") >= 2.0);
    assert_eq!(value("prometheus_notifications_errors_total"), 0.0);
}

/// An Alertmanager that cannot be reached is counted as errors and dropped
/// alerts; rules keep evaluating.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_alertmanager_counts_errors() {
    let target = serve_metrics("x 3\n").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: demo\n    interval: 1s\n    rules:\n      - alert: XHigh\n        expr: x > 1\n",
    )
    .unwrap();
    let dead = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("arrowmon.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - rules.yml\nalerting:\n  alertmanagers:\n    - timeout: 1s\n      static_configs:\n        - targets: ['{dead}']\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let _serve = spawn_serve(&cfg, &dir.path().join("data"), &listen);
    let client = http_client();
    let base = format!("http://{listen}");
    eventually(Duration::from_secs(30), "errors and dropped alerts counted", || {
        let (c, b) = (client.clone(), base.clone());
        let dead = dead.clone();
        async move {
            let (_, text) = http_get(&c, &format!("{b}/metrics")).await?;
            let failed = exposition_value(
                &text,
                &format!("prometheus_notifications_errors_total{{alertmanager=\"http://{dead}/api/v2/alerts\",tenant=\"standalone\"}}"),
            )?;
            let dropped = exposition_value(&text, "prometheus_notifications_dropped_total{tenant=\"standalone\"}")?;
            (failed >= 1.0 && dropped >= 1.0).then_some(())
        }
    })
    .await;
    let v = http_get_json(&client, &format!("{base}/api/v1/alerts"))
        .await
        .unwrap();
    assert_eq!(v["data"]["alerts"][0]["state"], "firing");
}
