//! Rules evaluated by `gpx_arrowmon serve` as a Prometheus server evaluates
//! them: recording rules in order, alerts through pending to firing, `ALERTS`,
//! the rules and alerts APIs, the rule metrics, rule files re-read on change
//! (refused when invalid, the rules in force staying), and alert states
//! restored after a restart.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const RULES: &str = r#"groups:
  - name: demo
    interval: 1s
    rules:
      - record: job:x:double
        expr: x * 2
      - record: job:x:quad
        expr: job:x:double * 2
      - alert: XHigh
        expr: job:x:double > 1
        for: 2s
        labels:
          severity: page
        annotations:
          summary: "x is {{ $value }}"
"#;

fn config(dir: &Path, target: &str) -> std::path::PathBuf {
    let cfg = dir.join("arrowmon.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - rules.yml\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    cfg
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, Value) {
    // Not listening yet (or restarting): status 0.
    match http_get(client, url).await {
        Some((status, body)) => (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        ),
        None => (0, Value::Null),
    }
}

/// The instant vector of `expr` now, as (labels, value) pairs.
async fn query(client: &reqwest::Client, base: &str, expr: &str) -> Vec<(Value, String)> {
    let url = format!("{base}/api/v1/query?query={}", urlencode(expr));
    let (_, v) = get(client, &url).await;
    v["data"]["result"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["metric"].clone(),
                        s["value"][1].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn metric(client: &reqwest::Client, base: &str, series: &str) -> Option<f64> {
    exposition_value(
        &http_get(client, &format!("{base}/metrics")).await?.1,
        series,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_evaluates_rules_and_rereads_them() {
    let target = serve_metrics("x{path=\"/a\"} 3\n").await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let cfg = config(dir.path(), &target);
    let listen = format!("127.0.0.1:{}", free_port());
    let _serve = spawn_serve(&cfg, &dir.path().join("data"), &listen);
    let base = format!("http://{listen}");
    let client = http_client();

    // The second rule reads the first one's output of the same evaluation.
    let quad = eventually(Duration::from_secs(20), "job:x:quad", || {
        let (c, b) = (client.clone(), base.clone());
        async move {
            let v = query(&c, &b, "job:x:quad").await;
            (!v.is_empty()).then_some(v)
        }
    })
    .await;
    assert_eq!(quad[0].1, "12");
    assert_eq!(quad[0].0["__name__"], "job:x:quad");
    assert_eq!(quad[0].0["job"], "app");
    assert_eq!(quad[0].0["path"], "/a");

    // Pending first, firing once `for` has passed.
    let alert = eventually(Duration::from_secs(20), "XHigh firing", || {
        let (c, b) = (client.clone(), base.clone());
        async move {
            let (_, v) = get(&c, &format!("{b}/api/v1/alerts")).await;
            let a = v["data"]["alerts"].get(0)?.clone();
            (a["state"] == "firing").then_some(a)
        }
    })
    .await;
    assert_eq!(alert["labels"]["alertname"], "XHigh");
    assert_eq!(alert["labels"]["severity"], "page");
    assert_eq!(alert["labels"]["path"], "/a");
    assert_eq!(alert["annotations"]["summary"], "x is 6");
    assert_eq!(alert["value"], "6e+00");
    let active_at = arrowmon::model::time::parse_rfc3339_ms(alert["activeAt"].as_str().unwrap())
        .expect("activeAt is RFC 3339");
    assert!(active_at <= now_ms(), "{alert}");
    let firing = eventually(Duration::from_secs(10), "ALERTS firing", || {
        let (c, b) = (client.clone(), base.clone());
        async move {
            let v = query(&c, &b, "ALERTS{alertstate=\"firing\"}").await;
            (!v.is_empty()).then_some(v)
        }
    })
    .await;
    assert_eq!(firing[0].0["alertname"], "XHigh");
    assert_eq!(firing[0].1, "1");
    let for_state = query(&client, &base, "ALERTS_FOR_STATE").await;
    assert_eq!(for_state[0].1, (active_at / 1000).to_string());

    // The rules API, with Prometheus's shapes and filters.
    let (status, v) = get(&client, &format!("{base}/api/v1/rules")).await;
    assert_eq!(status, 200);
    let group = &v["data"]["groups"][0];
    assert_eq!(group["name"], "demo");
    assert_eq!(group["file"], rules.display().to_string());
    assert_eq!(group["interval"], 1.0);
    assert_eq!(group["limit"], 0);
    let r = &group["rules"];
    assert_eq!(r.as_array().unwrap().len(), 3);
    assert_eq!(r[0]["type"], "recording");
    assert_eq!(r[0]["name"], "job:x:double");
    assert_eq!(r[0]["query"], "x * 2");
    assert_eq!(r[0]["health"], "ok");
    assert!(r[0].get("lastError").is_none(), "{}", r[0]);
    assert_eq!(r[2]["type"], "alerting");
    assert_eq!(r[2]["state"], "firing");
    assert_eq!(r[2]["duration"], 2.0);
    assert_eq!(r[2]["keepFiringFor"], 0.0);
    assert_eq!(r[2]["labels"]["severity"], "page");
    assert_eq!(r[2]["annotations"]["summary"], "x is {{ $value }}");
    assert_eq!(r[2]["alerts"][0]["state"], "firing");
    let count = |v: &Value| -> usize {
        v["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["rules"].as_array().unwrap().len())
            .sum()
    };
    let (_, v) = get(&client, &format!("{base}/api/v1/rules?type=record")).await;
    assert_eq!(count(&v), 2);
    let (_, v) = get(
        &client,
        &format!("{base}/api/v1/rules?type=alert&exclude_alerts=true"),
    )
    .await;
    assert_eq!(count(&v), 1);
    assert!(v["data"]["groups"][0]["rules"][0]["alerts"].is_null());
    let (_, v) = get(
        &client,
        &format!("{base}/api/v1/rules?rule_name[]=job:x:quad"),
    )
    .await;
    assert_eq!(count(&v), 1);
    let (_, v) = get(&client, &format!("{base}/api/v1/rules?file[]=other.yml")).await;
    assert_eq!(v["data"]["groups"], serde_json::json!([]));
    let (_, v) = get(
        &client,
        &format!(
            "{base}/api/v1/rules?match[]={}",
            urlencode("{severity=\"page\"}")
        ),
    )
    .await;
    assert_eq!(count(&v), 1);
    let (status, v) = get(&client, &format!("{base}/api/v1/rules?type=bogus")).await;
    assert_eq!(status, 400);
    assert_eq!(
        v["error"],
        "invalid parameter \"type\": not supported value \"bogus\""
    );

    // Rule metrics with Prometheus's names.
    let key = format!(
        "{{rule_group=\"{};demo\",tenant=\"standalone\"}}",
        rules.display()
    );
    let evaluations = metric(
        &client,
        &base,
        &format!("prometheus_rule_evaluations_total{key}"),
    )
    .await
    .expect("prometheus_rule_evaluations_total");
    assert!(evaluations >= 6.0, "{evaluations}");
    assert_eq!(
        metric(&client, &base, &format!("prometheus_rule_group_rules{key}")).await,
        Some(3.0)
    );
    assert_eq!(
        metric(
            &client,
            &base,
            &format!("prometheus_rule_evaluation_failures_total{key}")
        )
        .await,
        Some(0.0)
    );

    // A changed file is picked up: the renamed rule's old series and the removed
    // alert's series go stale.
    std::fs::write(
        &rules,
        "groups:\n  - name: demo\n    interval: 1s\n    rules:\n      - record: job:x:double\n        expr: x * 2\n      - record: job:x:times4\n        expr: job:x:double * 2\n",
    )
    .unwrap();
    eventually(Duration::from_secs(20), "the renamed rule", || {
        let (c, b) = (client.clone(), base.clone());
        async move {
            let renamed = !query(&c, &b, "job:x:times4").await.is_empty();
            let old_gone = query(&c, &b, "job:x:quad").await.is_empty();
            let alerts_gone = query(&c, &b, "ALERTS").await.is_empty();
            (renamed && old_gone && alerts_gone).then_some(())
        }
    })
    .await;
    let (_, v) = get(&client, &format!("{base}/api/v1/alerts")).await;
    assert_eq!(v["data"]["alerts"], serde_json::json!([]));

    // An invalid file is refused; the rules in force keep running.
    std::fs::write(
        &rules,
        "groups:\n  - name: demo\n    rules:\n      - record: r\n        expr: x +\n",
    )
    .unwrap();
    eventually(
        Duration::from_secs(20),
        "the refused reload in the metrics",
        || {
            let (c, b) = (client.clone(), base.clone());
            async move {
                let ok = metric(
                    &c,
                    &b,
                    "arrowmon_rule_files_last_reload_successful{tenant=\"standalone\"}",
                )
                .await?;
                (ok == 0.0).then_some(())
            }
        },
    )
    .await;
    let before = query(&client, &base, "timestamp(job:x:times4)").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = query(&client, &base, "timestamp(job:x:times4)").await;
    assert!(after[0].1.parse::<f64>().unwrap() > before[0].1.parse::<f64>().unwrap());
}

/// A pending alert keeps the time it became active across a restart, shifted
/// by the downtime as Prometheus shifts it, instead of starting its wait over.
#[tokio::test(flavor = "multi_thread")]
async fn alert_state_is_restored_after_a_restart() {
    let target = serve_metrics("x 3\n").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: slow\n    interval: 1s\n    rules:\n      - alert: XSlow\n        expr: x > 1\n        for: 1h\n",
    )
    .unwrap();
    let cfg = config(dir.path(), &target);
    let data = dir.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let client = http_client();
    let serve = |data: &Path| {
        let mut cmd = serve_command(&cfg, data, &listen);
        cmd.args([
            "--rules.alert.for-grace-period",
            "1s",
            "--wal-sync-interval",
            "100ms",
        ]);
        ChildGuard::spawn("gpx_arrowmon serve", &mut cmd)
    };
    let active_at = |v: &Value| -> Option<i64> {
        arrowmon::model::time::parse_rfc3339_ms(v["data"]["alerts"].get(0)?["activeAt"].as_str()?)
    };
    let first = serve(&data);
    let before = eventually(Duration::from_secs(20), "ALERTS_FOR_STATE written", || {
        let (c, b) = (client.clone(), base.clone());
        async move {
            let (_, v) = get(&c, &format!("{b}/api/v1/alerts")).await;
            let written = !query(&c, &b, "ALERTS_FOR_STATE").await.is_empty();
            active_at(&v).filter(|_| written)
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    drop(first);
    let down = Duration::from_secs(3);
    tokio::time::sleep(down).await;
    let restarted_ms = now_ms();
    let _second = serve(&data);
    // Restored after the second evaluation; the first one had set it anew.
    let after = eventually(Duration::from_secs(20), "the restored alert", || {
        let (c, b) = (client.clone(), base.clone());
        async move {
            let (_, v) = get(&c, &format!("{b}/api/v1/alerts")).await;
            let a = active_at(&v)?;
            (a < restarted_ms).then_some(a)
        }
    })
    .await;
    let shift = after - before;
    assert!(
        shift >= down.as_millis() as i64 && shift < 12_000,
        "active at {before} before, {after} after the restart"
    );
    let (_, v) = get(&client, &format!("{base}/api/v1/alerts")).await;
    assert_eq!(v["data"]["alerts"][0]["state"], "pending");
}

/// The shipped rules are valid and pass their unit tests under the real promtool.
#[test]
fn shipped_rules_pass_promtool() {
    let dir = repo_root().join("rules");
    for args in [
        ["check", "rules", "arrowmon.rules.yml"],
        ["test", "rules", "arrowmon.rules.test.yml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool (scripts/install-deps.sh installs the prometheus package)");
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
