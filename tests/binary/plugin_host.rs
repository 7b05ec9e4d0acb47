//! Grafana's side of the plugin protocol, end to end over gRPC against the built
//! binary (see tests/support), with exporters served by the test itself; the same
//! against a real node_exporter is in tests/external/plugin_host.rs.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::*;
use serde_json::{json, Value};

#[test]
fn started_by_hand_it_explains_itself_and_fails() {
    let out = std::process::Command::new(binary())
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Grafana") && err.contains("serve --config"),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "no handshake without the magic cookie"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_names_failing_targets_and_refuses_plain_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = PluginProcess::start(&grafana_env_in(dir.path())).await;

    let down = Datasource::new(1, "down", json_data_scraping(&["127.0.0.1:1"]));
    let msg = eventually(Duration::from_secs(15), "failed scrape", || async {
        let h = plugin.check_health(down.context(Some("Admin"))).await;
        (h.status == 2).then_some(h.message)
    })
    .await;
    assert!(
        msg.contains("0 of 1 targets up") && msg.contains("127.0.0.1:1"),
        "{msg}"
    );

    let plain = Datasource::new(
        1,
        "plain",
        json!({"scrapeConfig": "scrape_configs:\n  - job_name: x\n    basic_auth: {username: u, password: hunter2}\n"}),
    );
    let h = plugin.check_health(plain.context(Some("Admin"))).await;
    assert_eq!(h.status, 2);
    assert!(h.message.contains("secureJsonData"), "{}", h.message);
    assert!(!h.message.contains("hunter2"));

    let mut referenced = Datasource::new(
        1,
        "secret",
        json!({"scrapeConfig": "scrape_configs:\n  - job_name: x\n    basic_auth: {username: u, password: '${secure.pw}'}\n"}),
    );
    referenced.secure.insert("pw".into(), "hunter2".into());
    let h = plugin.check_health(referenced.context(Some("Admin"))).await;
    assert_eq!(h.status, 1, "{}", h.message);

    let bad = Datasource::new(
        1,
        "bad",
        json!({"scrapeConfig": "scrape_configs:\n  - job_name: x\n    scrape_intervall: 5s\n"}),
    );
    let h = plugin.check_health(bad.context(Some("Admin"))).await;
    assert_eq!(h.status, 2);
    assert!(
        h.message.contains("scrape_intervall") && h.message.contains("line 3"),
        "{}",
        h.message
    );

    let lines = plugin.stderr_lines().join("\n");
    assert!(!lines.contains("hunter2"), "a secret reached the logs");
    let (status, _) = plugin.shutdown().await;
    assert!(status.is_some_and(|s| s.success()));
}

#[tokio::test(flavor = "multi_thread")]
async fn datasources_in_different_orgs_never_share_data() {
    let a = serve_metrics("a_metric 1\n").await;
    let b = serve_metrics("b_metric 2\n").await;
    let dir = tempfile::tempdir().unwrap();
    let plugin = PluginProcess::start(&grafana_env_in(dir.path())).await;
    // Same uid, different orgs: two tenants.
    let ds1 = Datasource::new(1, "same", json_data_scraping(&[&a]));
    let ds2 = Datasource::new(2, "same", json_data_scraping(&[&b]));
    for ds in [&ds1, &ds2] {
        eventually(Duration::from_secs(15), "target up", || async {
            let h = plugin.check_health(ds.context(Some("Editor"))).await;
            h.message.starts_with("1 of 1 targets up").then_some(())
        })
        .await;
    }
    let names = |v: &Value| -> Vec<String> {
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["metric"]["__name__"].as_str().unwrap().to_string())
            .collect()
    };
    let q = "api/v1/query?query=%7B__name__%3D~%22.%2B_metric%22%7D";
    let (_, r1) = plugin
        .call_resource(ds1.context(Some("Viewer")), "GET", q, b"")
        .await;
    let (_, r2) = plugin
        .call_resource(ds2.context(Some("Viewer")), "GET", q, b"")
        .await;
    assert_eq!(names(&r1), vec!["a_metric"]);
    assert_eq!(names(&r2), vec!["b_metric"]);
    let root = dir.path().join("grafana-data/arrowmon");
    assert!(root.join("org-1/same/settings.json").exists());
    assert!(root.join("org-2/same/settings.json").exists());
    let (status, _) = plugin.shutdown().await;
    assert!(status.is_some_and(|s| s.success()));
}

#[tokio::test(flavor = "multi_thread")]
async fn provisioned_datasource_scrapes_before_the_first_request() {
    let addr = serve_metrics("prov_metric 3\n").await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = grafana_env_in(dir.path());
    std::fs::create_dir_all(dir.path().join("provisioning/datasources")).unwrap();
    std::fs::write(
        dir.path().join("provisioning/datasources/arrowmon.yaml"),
        "apiVersion: 1\ndatasources:\n  - name: arrowmon\n    type: arrowmon-metrics-datasource\n    uid: prov\n    orgId: 1\n    jsonData:\n      timeInterval: 1s\n      scrapeConfig: |\n        global: {scrape_interval: 1s}\n        scrape_configs:\n          - job_name: prov\n            static_configs: [{targets: ['${EXPORTER_ADDR}']}]\n",
    )
    .unwrap();
    env.push(("EXPORTER_ADDR".into(), addr.clone()));
    let started = now_ms();
    let plugin = PluginProcess::start(&env).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let first_request = now_ms();
    // Grafana sends the provisioned settings with an older lastUpdatedMS than the file.
    let mut ds = Datasource::new(1, "prov", json!({}));
    ds.last_updated_ms = 1;
    let (code, v) = plugin
        .call_resource(
            ds.context(Some("Viewer")),
            "GET",
            &format!(
                "api/v1/query_range?query=prov_metric&start={}&end={}&step=1",
                started / 1000,
                first_request / 1000 + 1
            ),
            b"",
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let series = v["data"]["result"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{v}");
    assert_eq!(series[0]["metric"]["instance"], addr);
    let first_point = series[0]["values"][0][0].as_f64().unwrap() * 1000.0;
    assert!(
        (first_point as i64) < first_request,
        "scraping began before any request"
    );
    let (status, _) = plugin.shutdown().await;
    assert!(status.is_some_and(|s| s.success()));
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_persist_and_scraping_resumes_after_restart() {
    let addr = serve_metrics("kept_metric 4\n").await;
    let dir = tempfile::tempdir().unwrap();
    let env = grafana_env_in(dir.path());
    let ds = Datasource::new(1, "kept", json_data_scraping(&[&addr]));
    {
        let plugin = PluginProcess::start(&env).await;
        let h = plugin.check_health(ds.context(Some("Admin"))).await;
        assert_eq!(h.status, 1, "{}", h.message);
        let (status, _) = plugin.shutdown().await;
        assert!(status.is_some_and(|s| s.success()));
    }
    let plugin = PluginProcess::start(&env).await;
    let restarted = now_ms();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // An older request (same settings) does not replace the persisted ones.
    let (code, v) = plugin
        .call_resource(ds.context(Some("Editor")), "GET", "api/v1/targets", b"")
        .await;
    assert_eq!(code, 200);
    let t = &v["data"]["activeTargets"][0];
    assert_eq!(t["health"], "up", "{v}");
    let (_, q) = plugin
        .call_resource(
            ds.context(Some("Viewer")),
            "GET",
            &format!(
                "api/v1/query_range?query=kept_metric&start={}&end={}&step=1",
                restarted / 1000,
                now_ms() / 1000
            ),
            b"",
        )
        .await;
    assert!(!q["data"]["result"].as_array().unwrap().is_empty(), "{q}");
    let (status, _) = plugin.shutdown().await;
    assert!(status.is_some_and(|s| s.success()));
}

#[tokio::test(flavor = "multi_thread")]
async fn stops_cleanly_on_sigterm_and_when_grafana_disconnects() {
    let dir = tempfile::tempdir().unwrap();
    let env = grafana_env_in(dir.path());
    let mut plugin = PluginProcess::start(&env).await;
    plugin.signal("TERM");
    let status = plugin
        .wait_exit(Duration::from_secs(2))
        .expect("exit on SIGTERM within 2 s");
    assert!(status.success());

    let mut plugin = PluginProcess::start(&env).await;
    assert!(plugin.health_serving().await);
    // Grafana's side of the connection goes away.
    plugin.channel = tonic::transport::Channel::from_static("http://127.0.0.1:1").connect_lazy();
    let status = plugin
        .wait_exit(Duration::from_secs(5))
        .expect("exit when the connection closes");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn folders_follow_grafana_ini_then_grafana_paths() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = grafana_env_in(dir.path());
    let plugin_data = dir.path().join("plugin-data");
    let plugin_prov = dir.path().join("plugin-prov");
    std::fs::create_dir_all(plugin_prov.join("datasources")).unwrap();
    std::fs::write(
        plugin_prov.join("datasources/a.yaml"),
        "datasources:\n  - name: p\n    type: arrowmon-metrics-datasource\n    uid: fromini\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("provisioning/datasources")).unwrap();
    std::fs::write(
        dir.path().join("provisioning/datasources/a.yaml"),
        "datasources:\n  - name: p\n    type: arrowmon-metrics-datasource\n    uid: frompaths\n",
    )
    .unwrap();
    // [plugin.arrowmon-metrics-datasource] data_dir / provisioning_dir.
    env.push((
        "GF_PLUGIN_DATA_DIR".into(),
        plugin_data.display().to_string(),
    ));
    env.push((
        "GF_PLUGIN_PROVISIONING_DIR".into(),
        plugin_prov.display().to_string(),
    ));
    let plugin = PluginProcess::start(&env).await;
    let (status, _) = plugin.shutdown().await;
    assert!(status.is_some_and(|s| s.success()));
    assert!(plugin_data.join("org-1/fromini/settings.json").exists());
    assert!(!plugin_data.join("org-1/frompaths").exists());

    // Without the plugin section: Grafana's paths.
    let env = grafana_env_in(dir.path());
    let plugin = PluginProcess::start(&env).await;
    let (status, _) = plugin.shutdown().await;
    assert!(status.is_some_and(|s| s.success()));
    assert!(dir
        .path()
        .join("grafana-data/arrowmon/org-1/frompaths/settings.json")
        .exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn resources_follow_grafana_roles_and_an_admin_can_delete_a_tenant() {
    let addr = serve_metrics("# HELP roles_metric A metric for the roles test.\n# TYPE roles_metric gauge\nroles_metric 5\n").await;
    let dir = tempfile::tempdir().unwrap();
    let plugin = PluginProcess::start(&grafana_env_in(dir.path())).await;
    let mut ds = Datasource::new(
        1,
        "roles",
        json!({
            "timeInterval": "1s",
            "scrapeConfig": format!("global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: r\n    basic_auth: {{username: u, password: '${{secure.pw}}'}}\n    static_configs: [{{targets: ['{addr}']}}]\n"),
        }),
    );
    ds.secure.insert("pw".into(), "s3cr3t-value".into());
    eventually(Duration::from_secs(15), "target up", || async {
        let h = plugin.check_health(ds.context(Some("Viewer"))).await;
        h.message.starts_with("1 of 1 targets up").then_some(())
    })
    .await;

    // Target URLs and config validation are for Editors and Admins.
    let (code, v) = plugin
        .call_resource(ds.context(Some("Viewer")), "GET", "api/v1/targets", b"")
        .await;
    assert_eq!(code, 403, "{v}");
    let (code, v) = plugin
        .call_resource(ds.context(Some("Editor")), "GET", "api/v1/targets", b"")
        .await;
    assert_eq!(code, 200);
    assert_eq!(v["data"]["activeTargets"][0]["health"], "up");
    let (code, _) = plugin
        .call_resource(ds.context(None), "GET", "api/v1/targets", b"")
        .await;
    assert_eq!(
        code, 403,
        "backend callers without a user may only read series"
    );

    // Series reads follow the query permission: a Viewer and a backend caller may.
    for role in [Some("Viewer"), None] {
        let (code, v) = plugin
            .call_resource(ds.context(role), "GET", "api/v1/label/__name__/values", b"")
            .await;
        assert_eq!(code, 200);
        assert!(v["data"]
            .as_array()
            .unwrap()
            .contains(&json!("roles_metric")));
    }
    let (code, v) = plugin
        .call_resource(
            ds.context(Some("Viewer")),
            "GET",
            "api/v1/metadata?metric=roles_metric",
            b"",
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(v["data"]["roles_metric"][0]["type"], "gauge");
    assert_eq!(
        v["data"]["roles_metric"][0]["help"],
        "A metric for the roles test."
    );

    // validate answers with the error's line.
    let body =
        json!({"scrapeConfig": "scrape_configs:\n  - job_name: x\n    scrape_intervall: 1s\n"})
            .to_string();
    let mut c = pb_validate(&plugin, ds.context(Some("Viewer")), &body).await;
    assert_eq!(c.0, 403);
    c = pb_validate(&plugin, ds.context(Some("Editor")), &body).await;
    assert_eq!(c.0, 200);
    assert_eq!(c.1["valid"], false);
    assert_eq!(c.1["line"], 3);
    let good = json!({"scrapeConfig": "scrape_configs:\n  - job_name: x\n    basic_auth: {username: u, password: '${secure.pw}'}\n    static_configs: [{targets: ['a:1', 'b:2']}]\n"}).to_string();
    let c = pb_validate(&plugin, ds.context(Some("Admin")), &good).await;
    assert_eq!(c.1, json!({"valid": true, "targets": 2}));

    // Deleting a tenant: Admin only; scraping stops and the data goes.
    let tenant_dir = dir.path().join("grafana-data/arrowmon/org-1/roles");
    assert!(tenant_dir.exists());
    let (code, _) = plugin
        .call_resource(ds.context(Some("Editor")), "DELETE", "tenant", b"")
        .await;
    assert_eq!(code, 403);
    let (code, v) = plugin
        .call_resource(ds.context(Some("Admin")), "DELETE", "tenant", b"")
        .await;
    assert_eq!(code, 200, "{v}");
    assert!(!tenant_dir.exists(), "tenant data must be deleted");

    // The secret never appears in a log line.
    let lines = plugin.stderr_lines().join("\n");
    assert!(!lines.contains("s3cr3t-value"));
    let (status, _) = plugin.shutdown().await;
    assert!(status.is_some_and(|s| s.success()));
}

async fn pb_validate(
    plugin: &PluginProcess,
    ctx: arrowmon::proto::pluginv2::PluginContext,
    body: &str,
) -> (i32, Value) {
    plugin
        .call_resource(ctx, "POST", "validate", body.as_bytes())
        .await
}

/// The exporter of the panels test at its `n`th scrape: counters that grow by a
/// fixed amount each scrape, and histogram buckets in fixed proportion (2 : 8 : 10),
/// so that rates follow from the samples stored and the 0.5-quantile of the summed
/// bucket rates is 0.1 + 0.9 × (5 − 2) / (8 − 2) = 0.55 whatever the scrape times.
fn panels_exposition(n: u64) -> String {
    let n = n as f64;
    format!(
        "# TYPE req_total counter\nreq_total{{code=\"200\"}} {}\nreq_total{{code=\"500\"}} {}\n\
         # TYPE lat histogram\nlat_bucket{{le=\"0.1\"}} {}\nlat_bucket{{le=\"1\"}} {}\n\
         lat_bucket{{le=\"+Inf\"}} {}\nlat_sum {}\nlat_count {}\n",
        100.0 + 7.0 * n,
        3.0 + 2.0 * n,
        2.0 * n,
        8.0 * n,
        10.0 * n,
        3.0 * n,
        10.0 * n,
    )
}

const PANELS_QUANTILE: f64 = 0.55;
const LOOKBACK_MS: i64 = 300_000;

type Points = Vec<(i64, f64)>;
type SeriesByLabels = BTreeMap<BTreeMap<String, String>, Points>;

/// Raw samples of `selector` over the last 10 minutes, through the plugin's API.
async fn raw_samples(plugin: &PluginProcess, ds: &Datasource, selector: &str) -> SeriesByLabels {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", &format!("{selector}[10m]"))
        .append_pair("time", &format!("{:.3}", now_ms() as f64 / 1000.0))
        .finish();
    let (code, v) = plugin
        .call_resource(
            ds.context(Some("Viewer")),
            "GET",
            &format!("api/v1/query?{q}"),
            b"",
        )
        .await;
    assert_eq!(code, 200, "{selector}: {v}");
    let mut out = SeriesByLabels::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let labels = serde_json::from_value(s["metric"].clone()).unwrap();
        let points = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                (t, p[1].as_str().unwrap().parse::<f64>().unwrap())
            })
            .collect();
        out.insert(labels, points);
    }
    assert!(!out.is_empty(), "no samples of {selector}");
    out
}

/// Prometheus's `rate` at `t` over `range_ms` (promql/functions.go,
/// extrapolatedRate): the increase between the first and last sample of the
/// left-open window, extrapolated towards the window's edges.
fn prometheus_rate(points: &[(i64, f64)], t: i64, range_ms: i64) -> Option<f64> {
    let w: Vec<(i64, f64)> = points
        .iter()
        .copied()
        .filter(|&(ts, _)| ts > t - range_ms && ts <= t)
        .collect();
    if w.len() < 2 {
        return None;
    }
    let (first, last) = (w[0], w[w.len() - 1]);
    let mut increase = last.1 - first.1;
    for pair in w.windows(2) {
        if pair[1].1 < pair[0].1 {
            increase += pair[0].1;
        }
    }
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let mut to_start = (first.0 - (t - range_ms)) as f64 / 1000.0;
    let mut to_end = (t - last.0) as f64 / 1000.0;
    let average = sampled / (w.len() - 1) as f64;
    let threshold = average * 1.1;
    if to_start >= threshold {
        to_start = average / 2.0;
    }
    if increase > 0.0 && first.1 >= 0.0 {
        to_start = to_start.min(sampled * (first.1 / increase));
    }
    if to_end >= threshold {
        to_end = average / 2.0;
    }
    let factor = (sampled + to_start + to_end) / sampled / (range_ms as f64 / 1000.0);
    Some(increase * factor)
}

/// The newest sample at or before `t` within the lookback, as an instant selector sees it.
fn instant_value(points: &[(i64, f64)], t: i64) -> Option<f64> {
    points
        .iter()
        .rev()
        .find(|&&(ts, _)| ts <= t && ts > t - LOOKBACK_MS)
        .map(|&(_, v)| v)
}

/// A range query's answer as Grafana receives it: exactly one response, no error,
/// one frame per series; returns the series by label set, the step and the
/// expression the plugin ran.
fn panel_series(
    ref_id: &str,
    r: &arrowmon::proto::pluginv2::QueryDataResponse,
) -> (SeriesByLabels, i64, String) {
    let keys: Vec<&String> = r.responses.keys().collect();
    assert_eq!(keys, [ref_id], "responses");
    let resp = &r.responses[ref_id];
    assert!(resp.error.is_empty(), "{ref_id}: {}", resp.error);
    let frames: Vec<DecodedFrame> = resp.frames.iter().map(|f| decode_frame(f)).collect();
    let executed = frames
        .first()
        .and_then(|f| f.meta["executedQueryString"].as_str())
        .and_then(|s| s.strip_prefix("Expr: "))
        .and_then(|s| s.split("\nStep: ").next())
        .unwrap_or_else(|| panic!("{ref_id}: no executedQueryString in {frames:?}"))
        .to_string();
    let mut out = SeriesByLabels::new();
    let mut step = None;
    for f in &frames {
        assert_eq!(f.ref_id, ref_id);
        assert_eq!(
            f.fields.len(),
            2,
            "{ref_id}: a time and a value field: {f:?}"
        );
        let (time, value) = (&f.fields[0], &f.fields[1]);
        step = time.config["interval"].as_i64();
        let points = time
            .numbers
            .iter()
            .map(|&t| t as i64)
            .zip(value.numbers.iter().copied())
            .collect();
        let mut labels = value.labels.clone();
        if value.name != "Value" {
            labels.insert("__name__".into(), value.name.clone());
        }
        assert!(
            out.insert(labels, points).is_none(),
            "{ref_id}: a series twice"
        );
    }
    let step = step.unwrap_or_else(|| panic!("{ref_id}: no step in {frames:?}"));
    (out, step, executed)
}

/// The range in `rate(x[4s])`, in ms.
fn range_ms_of(expr: &str) -> i64 {
    let inner = expr
        .split_once('[')
        .and_then(|(_, r)| r.split_once(']'))
        .unwrap_or_else(|| panic!("no range in {expr}"))
        .0;
    let (num, unit_ms) = if let Some(n) = inner.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = inner.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = inner.strip_suffix('m') {
        (n, 60_000)
    } else {
        panic!("range {inner} in {expr}")
    };
    num.parse::<i64>().unwrap() * unit_ms
}

#[tokio::test(flavor = "multi_thread")]
async fn many_panels_query_concurrently_with_bounded_latency() {
    let scrapes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let addr = {
        let scrapes = scrapes.clone();
        exporter(move || {
            panels_exposition(scrapes.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
        })
        .await
    };
    let dir = tempfile::tempdir().unwrap();
    let plugin = std::sync::Arc::new(PluginProcess::start(&grafana_env_in(dir.path())).await);
    let ds = std::sync::Arc::new(Datasource::new(1, "panels", json_data_scraping(&[&addr])));
    eventually(Duration::from_secs(15), "target up", || async {
        let h = plugin.check_health(ds.context(Some("Viewer"))).await;
        h.message.starts_with("1 of 1 targets up").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let exprs = [
        "sum by (code) (rate(req_total[$__rate_interval]))",
        "histogram_quantile(0.5, sum by (le) (rate(lat_bucket[$__rate_interval])))",
        "up",
        "count(up)",
        "topk(1, req_total)",
        "scrape_duration_seconds",
    ];
    let mut worst = Duration::ZERO;
    let mut answers = Vec::new();
    // A bounded refresh loop: every round, all panels at once.
    for _round in 0..5 {
        let mut handles = Vec::new();
        for (i, e) in exprs.iter().enumerate() {
            for copy in 0..4 {
                let plugin = plugin.clone();
                let ds = ds.clone();
                let e = e.to_string();
                handles.push(tokio::spawn(async move {
                    let to = now_ms();
                    let ref_id = format!("P{i}_{copy}");
                    let started = std::time::Instant::now();
                    let r = plugin
                        .query_data(
                            ds.context(Some("Viewer")),
                            vec![data_query(
                                &ref_id,
                                json!({"expr": e, "range": true}),
                                to - 300_000,
                                to,
                                1000,
                            )],
                        )
                        .await;
                    (started.elapsed(), i, ref_id, to, r)
                }));
            }
        }
        for h in handles {
            let (took, i, ref_id, to, r) = h.await.unwrap();
            worst = worst.max(took);
            let series = panel_series(&ref_id, &r);
            answers.push((i, ref_id, to, series));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("slowest panel: {worst:?}");
    // Each answer against what Prometheus computes from the samples stored. A scrape
    // still being appended when a panel ran can miss from its last step, so steps
    // within two seconds of the panel's end are left out.
    let up = raw_samples(&plugin, &ds, "up").await;
    assert!(
        up.values().flatten().all(|&(_, v)| v == 1.0),
        "a scrape failed, so staleness markers hide samples: {up:?}"
    );
    let req = raw_samples(&plugin, &ds, "req_total").await;
    let durations = raw_samples(&plugin, &ds, "scrape_duration_seconds").await;
    assert_eq!(req.len(), 2, "{req:?}");
    let req_200 = req
        .iter()
        .find(|(l, _)| l["code"] == "200")
        .map(|(l, p)| (l.clone(), p.clone()))
        .unwrap();
    let mut compared_points = [0; 6];
    for (i, ref_id, to, (got, step, executed)) in &answers {
        let end = to - to.rem_euclid(*step);
        let start = to - 300_000 - (to - 300_000).rem_euclid(*step);
        let settled = to - 2000;
        let steps = || (start..=end.min(settled)).step_by(*step as usize);
        let want: SeriesByLabels = match i {
            0 => {
                let range = range_ms_of(executed);
                req.iter()
                    .map(|(l, p)| {
                        let code = BTreeMap::from([("code".to_string(), l["code"].clone())]);
                        let pts = steps()
                            .filter_map(|t| prometheus_rate(p, t, range).map(|v| (t, v)))
                            .collect();
                        (code, pts)
                    })
                    .collect()
            }
            1 => {
                let range = range_ms_of(executed);
                let p = &req_200.1;
                let pts = steps()
                    .filter(|&t| prometheus_rate(p, t, range).is_some())
                    .map(|t| (t, PANELS_QUANTILE))
                    .collect();
                BTreeMap::from([(BTreeMap::new(), pts)])
            }
            2 | 3 | 5 => {
                let (labels, p) = match i {
                    2 => up.iter().next().unwrap(),
                    3 => (&BTreeMap::new(), up.values().next().unwrap()),
                    _ => durations.iter().next().unwrap(),
                };
                let pts = steps()
                    .filter_map(|t| instant_value(p, t).map(|v| (t, if *i == 3 { 1.0 } else { v })))
                    .collect();
                BTreeMap::from([(labels.clone(), pts)])
            }
            _ => {
                let pts = steps()
                    .filter_map(|t| instant_value(&req_200.1, t).map(|v| (t, v)))
                    .collect();
                BTreeMap::from([(req_200.0.clone(), pts)])
            }
        };
        let got: SeriesByLabels = got
            .iter()
            .map(|(l, p)| {
                (
                    l.clone(),
                    p.iter().copied().filter(|&(t, _)| t <= settled).collect(),
                )
            })
            .collect();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{ref_id} {executed}: series"
        );
        for (labels, want_points) in &want {
            let got_points = &got[labels];
            let times = |p: &Points| p.iter().map(|x| x.0).collect::<Vec<_>>();
            assert_eq!(
                times(got_points),
                times(want_points),
                "{ref_id} {executed} {labels:?}: steps"
            );
            for (&(t, g), &(_, w)) in got_points.iter().zip(want_points) {
                assert!(
                    (g - w).abs() <= 1e-9 * w.abs().max(1.0),
                    "{ref_id} {executed} {labels:?} at {t}: {g}, Prometheus's rule gives {w}"
                );
                compared_points[*i] += 1;
            }
        }
    }
    eprintln!(
        "{} panel answers, points compared per panel: {compared_points:?}",
        answers.len()
    );
    for (e, n) in exprs.iter().zip(compared_points) {
        assert!(n > 0, "{e}: no settled step had data in any round");
    }
    // A panel of this size answers in milliseconds; a second is a stall, even for 24
    // at once on a busy 2-core machine.
    assert!(
        worst < Duration::from_secs(1),
        "slowest panel took {worst:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_panel_queries_get_errors_and_the_plugin_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = PluginProcess::start(&grafana_env_in(dir.path())).await;
    let ds = Datasource::new(1, "hostile", json_data_scraping(&[]));
    let mut plus = "1".to_string();
    for _ in 1..1_500 {
        plus.push_str("+1");
    }
    let to = now_ms();
    let panel = |ref_id: &str, model: Value| data_query(ref_id, model, to - 300_000, to, 1000);
    let queries = vec![
        panel("plus", json!({"expr": plus, "range": true})),
        panel(
            "parens",
            json!({"expr": format!("{}1{}", "(".repeat(2_500), ")".repeat(2_500)), "range": true}),
        ),
        panel(
            "sum",
            json!({"expr": format!("{}vector(1){}", "sum(".repeat(1_000), ")".repeat(1_000)), "instant": true}),
        ),
        panel(
            "abs",
            json!({"expr": format!("{}vector(1){}", "abs(".repeat(1_000), ")".repeat(1_000)), "range": true}),
        ),
        // A min step that once was sliced in the middle of a character.
        panel(
            "interval",
            json!({"expr": "1", "interval": "éé", "range": true}),
        ),
    ];
    let r = plugin.query_data(ds.context(Some("Viewer")), queries).await;
    for ref_id in ["plus", "parens", "sum", "abs"] {
        let resp = &r.responses[ref_id];
        assert_eq!(resp.status, 400, "{ref_id}: {}", resp.error);
        assert_eq!(resp.error_source, "downstream", "{ref_id}");
        assert!(
            resp.error.contains("nested too deeply"),
            "{ref_id}: {}",
            resp.error
        );
    }
    let resp = &r.responses["interval"];
    assert_eq!(resp.status, 400, "{}", resp.error);
    assert!(
        resp.error.contains("invalid interval \"éé\""),
        "{}",
        resp.error
    );
    // The same process still answers, for this org and through the API too.
    let r = plugin
        .query_data(
            ds.context(Some("Viewer")),
            vec![panel("ok", json!({"expr": "1+1", "range": true}))],
        )
        .await;
    assert_eq!(r.responses["ok"].status, 200, "{}", r.responses["ok"].error);
    let (code, v) = plugin
        .call_resource(
            ds.context(Some("Viewer")),
            "GET",
            "api/v1/query?query=1&time=2024-01-01T00:00:00%2Ba%C3%A900",
            b"",
        )
        .await;
    assert_eq!(code, 400, "{v}");
    let (status, _) = plugin.shutdown().await;
    assert!(status.is_some_and(|s| s.success()));
}

/// A metric's value for one tenant in the plugin's self-metrics text.
fn tenant_metric(text: &str, name: &str, tenant: &str) -> Option<f64> {
    let prefix = format!("{name}{{tenant=\"{tenant}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dashboard_of_thirty_panels_queues_and_every_panel_answers_correctly() {
    let addr = serve_metrics(
        "# TYPE req_total counter\nreq_total{code=\"200\"} 100\nreq_total{code=\"500\"} 3\n# TYPE temp gauge\ntemp{room=\"a\"} 21.5\ntemp{room=\"b\"} 19\n# TYPE lat histogram\nlat_bucket{le=\"0.1\"} 5\nlat_bucket{le=\"1\"} 9\nlat_bucket{le=\"+Inf\"} 10\nlat_sum 3.2\nlat_count 10\n",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let plugin = std::sync::Arc::new(PluginProcess::start(&grafana_env_in(dir.path())).await);
    let mut json_data = json_data_scraping(&[&addr]);
    // Fewer slots than panels, so a refresh queues.
    json_data["maxConcurrentQueries"] = json!(8);
    json_data["maxQueryMemory"] = json!("256MB");
    let ds = std::sync::Arc::new(Datasource::new(1, "dash", json_data));
    eventually(Duration::from_secs(15), "target up", || async {
        let h = plugin.check_health(ds.context(Some("Viewer"))).await;
        h.message.starts_with("1 of 1 targets up").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Each panel and the value of each of its series (by the label that tells
    // them apart), all constant since the exposition is.
    let panels: [(&str, &[(&str, f64)]); 10] = [
        ("sum(req_total)", &[("", 103.0)]),
        ("sum by (code) (req_total)", &[("200", 100.0), ("500", 3.0)]),
        ("req_total{code=\"500\"}", &[("500", 3.0)]),
        ("count(req_total)", &[("", 2.0)]),
        ("sum(rate(req_total[$__rate_interval]))", &[("", 0.0)]),
        ("max(temp)", &[("", 21.5)]),
        ("temp{room=\"b\"} * 2", &[("b", 38.0)]),
        ("histogram_quantile(0.5, lat_bucket)", &[("", 0.1)]),
        ("lat_sum / lat_count", &[("", 3.2 / 10.0)]),
        ("sum(up)", &[("", 1.0)]),
    ];
    let mut worst = Duration::ZERO;
    for round in 0..4 {
        if round > 0 {
            // The dashboard's refresh interval.
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let mut handles = Vec::new();
        for (i, (expr, _)) in panels.iter().enumerate() {
            for copy in 0..3 {
                let plugin = plugin.clone();
                let ds = ds.clone();
                let expr = expr.to_string();
                handles.push(tokio::spawn(async move {
                    let to = now_ms();
                    let started = std::time::Instant::now();
                    let r = plugin
                        .query_data(
                            ds.context(Some("Viewer")),
                            vec![data_query(
                                &format!("P{i}_{copy}"),
                                json!({"expr": expr, "range": true}),
                                to - 60_000,
                                to,
                                1000,
                            )],
                        )
                        .await;
                    (i, started.elapsed(), r)
                }));
            }
        }
        assert_eq!(handles.len(), 30);
        for h in handles {
            let (i, took, r) = h.await.unwrap();
            worst = worst.max(took);
            let (expr, want) = panels[i];
            for (ref_id, resp) in &r.responses {
                assert!(resp.error.is_empty(), "{ref_id} {expr}: {}", resp.error);
                let frames: Vec<DecodedFrame> =
                    resp.frames.iter().map(|f| decode_frame(f)).collect();
                assert_eq!(frames.len(), want.len(), "{ref_id} {expr}: {frames:?}");
                for f in &frames {
                    let field = &f.fields[1];
                    let which = field
                        .labels
                        .get("code")
                        .or(field.labels.get("room"))
                        .map_or("", String::as_str);
                    let value = want
                        .iter()
                        .find(|(w, _)| *w == which)
                        .map(|(_, v)| *v)
                        .unwrap_or_else(|| {
                            panic!("{ref_id} {expr}: unexpected series {:?}", field.labels)
                        });
                    // Later rounds see the samples of the refresh interval too.
                    let min_rows = if round == 0 { 1 } else { 5 };
                    assert!(f.rows >= min_rows, "{ref_id} {expr}: {} points", f.rows);
                    assert!(
                        field.numbers.iter().all(|v| *v == value),
                        "{ref_id} {expr}: want {value}, got {:?}",
                        field.numbers
                    );
                }
            }
        }
    }
    assert!(
        worst < Duration::from_secs(5),
        "slowest panel took {worst:?}"
    );
    let metrics = plugin.collect_metrics().await;
    assert_eq!(
        tenant_metric(
            &metrics,
            "prometheus_engine_queries_concurrent_max",
            "1/dash"
        ),
        Some(8.0),
        "{metrics}"
    );
    assert_eq!(
        tenant_metric(&metrics, "arrowmon_query_memory_limit_bytes", "1/dash"),
        Some(256.0 * 1024.0 * 1024.0),
        "{metrics}"
    );
    // Every query has ended and given its memory back.
    assert_eq!(
        tenant_metric(&metrics, "prometheus_engine_queries", "1/dash"),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        tenant_metric(&metrics, "arrowmon_query_memory_bytes", "1/dash"),
        Some(0.0),
        "{metrics}"
    );
    // Every query's wait for a slot is in the queue histogram, as every evaluation
    // is in the duration histogram.
    let queued = tenant_metric(&metrics, "arrowmon_query_queue_seconds_count", "1/dash");
    assert!(queued.is_some_and(|n| n >= 30.0), "{metrics}");
    assert_eq!(
        queued,
        tenant_metric(&metrics, "arrowmon_query_duration_seconds_count", "1/dash"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn query_limits_that_are_not_numbers_are_the_datasources_error() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = PluginProcess::start(&grafana_env_in(dir.path())).await;
    let mut json_data = json_data_scraping(&[]);
    json_data["maxConcurrentQueries"] = json!("many");
    let ds = Datasource::new(1, "badlimits", json_data);
    let h = plugin.check_health(ds.context(Some("Viewer"))).await;
    assert!(
        h.message.contains(
            "jsonData.maxConcurrentQueries: \"many\" is not a number of queries from 1 to 10000"
        ),
        "{}",
        h.message
    );
    // A query timeout that is not a duration is as much the datasource's error as a
    // bad limit, not a setting silently left out.
    let mut json_data = json_data_scraping(&[]);
    json_data["queryTimeout"] = json!("soon");
    let ds = Datasource::new(1, "badtimeout", json_data);
    let h = plugin.check_health(ds.context(Some("Viewer"))).await;
    assert!(
        h.message.contains("jsonData.queryTimeout: ") && h.message.contains("soon"),
        "{}",
        h.message
    );
    let (status, _) = plugin.shutdown().await;
    assert!(status.is_some_and(|s| s.success()));
}

/// "Both" in the query editor (`range` and `instant`): the instant frames first,
/// then the range frames, as Grafana's Prometheus backend appends them; an error
/// of each is merged into one message.
#[tokio::test(flavor = "multi_thread")]
async fn both_runs_the_instant_then_the_range_query() {
    let target = serve_metrics("x{k=\"a\"} 1\nx{k=\"b\"} 2\n").await;
    let dir = tempfile::tempdir().unwrap();
    let plugin = PluginProcess::start(&grafana_env_in(dir.path())).await;
    let ds = Datasource::new(1, "both-ds", json_data_scraping(&[&target]));
    let resp = eventually(Duration::from_secs(20), "x scraped twice", || async {
        let to = now_ms();
        let q = |ref_id: &str, expr: &str| {
            data_query(
                ref_id,
                json!({"expr": expr, "range": true, "instant": true}),
                to - 60_000,
                to,
                1000,
            )
        };
        let resp = plugin
            .query_data(
                ds.context(Some("Viewer")),
                vec![q("A", "x"), q("B", "sum(")],
            )
            .await;
        let frames: Vec<DecodedFrame> = resp.responses["A"]
            .frames
            .iter()
            .map(|f| decode_frame(f))
            .collect();
        (frames.len() == 4 && frames[2].rows >= 2).then_some(resp)
    })
    .await;
    let a = &resp.responses["A"];
    assert!(a.error.is_empty(), "{}", a.error);
    let frames: Vec<DecodedFrame> = a.frames.iter().map(|f| decode_frame(f)).collect();
    let kinds: Vec<&str> = frames
        .iter()
        .map(|f| f.meta["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "numeric-multi",
            "numeric-multi",
            "timeseries-multi",
            "timeseries-multi"
        ]
    );
    assert_eq!(frames[0].rows, 1);
    assert_eq!(frames[0].fields[1].labels["k"], "a");
    assert_eq!(frames[1].fields[1].numbers, [2.0]);
    assert_eq!(frames[3].fields[1].labels["k"], "b");
    assert!(frames.iter().all(|f| f.ref_id == "A"));
    cross_check_with_pyarrow(&a.frames, &frames);
    // Each of the two queries failed: both messages, the status of the last.
    let b = &resp.responses["B"];
    assert_eq!(b.status, 400);
    assert!(b.frames.is_empty());
    let half = b.error.len() / 2;
    assert_eq!(&b.error[..half], &b.error[half + 1..], "{}", b.error);
    let (status, _) = plugin.shutdown().await;
    assert!(status.is_some_and(|s| s.success()));
}

/// "Exemplars" switched on: after the query's own frames, one frame named
/// `exemplar` of the expression's series' exemplars over the aligned range, sampled
/// and laid out as Grafana's Prometheus backend does (Time, Value, a string field
/// per label name, sorted); none for alerting, none when nothing has exemplars, and
/// no empty placeholder frame for an empty result.
#[tokio::test(flavor = "multi_thread")]
async fn exemplars_come_as_grafanas_exemplar_frame() {
    let start = now_ms();
    let base = (start / 1000 - 60) * 1000;
    let secs = |ms: i64| format!("{}.{:03}", ms / 1000, ms % 1000);
    let body = format!(
        "# TYPE requests counter\n\
         requests_total{{path=\"/a\"}} 10 # {{trace_id=\"t1\"}} 1 {t1}\n\
         # TYPE latency_seconds histogram\n\
         latency_seconds_bucket{{le=\"0.1\"}} 3 # {{trace_id=\"t2\",span_id=\"s2\"}} 0.05 {t2}\n\
         latency_seconds_bucket{{le=\"0.5\"}} 3\n\
         latency_seconds_bucket{{le=\"1\"}} 4 # {{trace_id=\"t3\"}} 0.7 {t3}\n\
         latency_seconds_bucket{{le=\"+Inf\"}} 5 # {{trace_id=\"t4\"}} 2.5\n\
         latency_seconds_sum 4.1\n\
         latency_seconds_count 5\n\
         # EOF\n",
        t1 = secs(base + 1234),
        t2 = secs(base + 2500),
        t3 = secs(base + 31_000),
    );
    let target = exporter_as(OPENMETRICS, move || body.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let plugin = PluginProcess::start(&grafana_env_in(dir.path())).await;
    let ds = Datasource::new(1, "exemplar-ds", json_data_scraping(&[&target]));
    let q = |ref_id: &str, expr: &str, exemplar: bool| {
        data_query(
            ref_id,
            json!({"expr": expr, "range": true, "exemplar": exemplar}),
            start - 120_000,
            now_ms(),
            1000,
        )
    };
    let hist = "histogram_quantile(0.9, sum by (le) (rate(latency_seconds_bucket[1m])))";
    // Grafana reads Prometheus's seconds as a float and truncates ms * 1000.
    let grafana_ms = |ms: i64| ((ms as f64 / 1000.0) * 1000.0) as i64;
    let resp = eventually(Duration::from_secs(20), "the exemplars scraped", || async {
        let resp = plugin
            .query_data(
                ds.context(Some("Viewer")),
                vec![q("A", "rate(requests_total[1m])", true), q("B", hist, true)],
            )
            .await;
        // Two scrapes for the rate, then its frame and the exemplar frame.
        let b = resp.responses["B"].frames.last().map(|f| decode_frame(f))?;
        let a = resp.responses["A"].frames.len();
        (b.name == "exemplar" && b.rows >= 3 && a == 2).then_some(resp)
    })
    .await;

    let a = &resp.responses["A"];
    assert!(a.error.is_empty(), "{}", a.error);
    let frames: Vec<DecodedFrame> = a.frames.iter().map(|f| decode_frame(f)).collect();
    assert_eq!(frames.len(), 2, "the rate series, then the exemplar frame");
    assert_eq!(frames[0].meta["type"], "timeseries-multi");
    let ex = &frames[1];
    assert_eq!(ex.name, "exemplar");
    assert_eq!(ex.ref_id, "A");
    // One series had exemplars: its meta, with the query string of the first frame.
    assert_eq!(
        ex.meta,
        json!({"custom": {"resultType": "exemplar"},
               "executedQueryString": "Expr: rate(requests_total[1m])\nStep: 1s"})
    );
    let names: Vec<&str> = ex.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["Time", "Value", "__name__", "instance", "job", "path", "trace_id"]
    );
    assert_eq!(ex.rows, 1);
    assert_eq!(ex.fields[0].numbers, [grafana_ms(base + 1234) as f64]);
    assert_eq!(ex.fields[1].numbers, [1.0]);
    assert!(ex.fields[1].labels.is_empty() && ex.fields[1].config.is_null());
    assert_eq!(ex.fields[2].strings, ["requests_total"]);
    assert_eq!(ex.fields[4].strings, ["test"]);
    assert_eq!(ex.fields[5].strings, ["/a"]);
    assert_eq!(ex.fields[6].strings, ["t1"]);
    cross_check_with_pyarrow(&a.frames, &frames);

    let b = &resp.responses["B"];
    assert!(b.error.is_empty(), "{}", b.error);
    let frames: Vec<DecodedFrame> = b.frames.iter().map(|f| decode_frame(f)).collect();
    let ex = frames.last().unwrap();
    // Three bucket series had exemplars: the last one's meta, no query string.
    assert_eq!(ex.meta, json!({"custom": {"resultType": "exemplar"}}));
    let names: Vec<&str> = ex.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["Time", "Value", "__name__", "instance", "job", "le", "span_id", "trace_id"]
    );
    let col = |name: &str| &ex.fields.iter().find(|f| f.name == name).unwrap().strings;
    // Oldest first: t2 and t3 from before the first scrape, then t4, which has no
    // timestamp and so is stored once, at the first scrape's time (each in its own
    // 1 s bucket: all kept).
    assert_eq!(ex.rows, 3);
    assert_eq!(col("trace_id"), &["t2", "t3", "t4"]);
    // OpenMetrics `le` values are normalized as Prometheus does ("1" is "1.0").
    assert_eq!(col("le"), &["0.1", "1.0", "+Inf"]);
    assert_eq!(col("span_id"), &["s2", "", ""]);
    assert!(col("__name__")
        .iter()
        .all(|n| n == "latency_seconds_bucket"));
    assert_eq!(
        &ex.fields[0].numbers[..2],
        [
            grafana_ms(base + 2500) as f64,
            grafana_ms(base + 31_000) as f64
        ]
    );
    assert_eq!(ex.fields[1].numbers, [0.05, 0.7, 2.5]);
    assert!(ex.fields[0].numbers[2] >= start as f64 - 1000.0);
    cross_check_with_pyarrow(&b.frames, &frames);

    // Alerting never gets exemplars; nor does a query without the switch.
    let alert = plugin
        .query_data_with_headers(
            ds.context(Some("Viewer")),
            std::collections::HashMap::from([("FromAlert".to_string(), "true".to_string())]),
            vec![q("A", "rate(requests_total[1m])", true)],
        )
        .await;
    let plain = plugin
        .query_data(
            ds.context(Some("Viewer")),
            vec![
                q("A", "rate(requests_total[1m])", false),
                q("B", "up", true),
                q("C", "nothing_here", true),
                q("D", "nothing_here", false),
            ],
        )
        .await;
    for (what, r) in [
        ("alert", &alert.responses["A"]),
        ("plain", &plain.responses["A"]),
    ] {
        let frames: Vec<DecodedFrame> = r.frames.iter().map(|f| decode_frame(f)).collect();
        assert_eq!(frames.len(), 1, "{what}");
        assert_ne!(frames[0].name, "exemplar", "{what}");
    }
    // `up` has no exemplars: its frame alone, no error.
    let up = &plain.responses["B"];
    assert!(up.error.is_empty(), "{}", up.error);
    assert_eq!(up.frames.len(), 1);
    // An empty result: no frame at all with exemplars on, the empty frame without.
    assert!(plain.responses["C"].frames.is_empty());
    assert_eq!(plain.responses["D"].frames.len(), 1);
    let (status, _) = plugin.shutdown().await;
    assert!(status.is_some_and(|s| s.success()));
}

/// Every resource path Grafana's Prometheus frontend calls (docs/grafana-queries.md,
/// "Resources"), called as it calls them: the method and parameters it sends (a
/// form body for POST, Grafana's default `httpMethod`), the `X-Grafana-Cache`
/// header of its metadata calls, `suggestions` as JSON.
#[tokio::test(flavor = "multi_thread")]
async fn grafanas_prometheus_frontend_resource_calls_are_answered() {
    let addr = serve_metrics(
        "# HELP res_requests_total Requests.\n# TYPE res_requests_total counter\nres_requests_total{path=\"/a\"} 5\n",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let plugin = PluginProcess::start(&grafana_env_in(dir.path())).await;
    let ds = Datasource::new(1, "resources", json_data_scraping(&[&addr]));
    let ctx = || ds.context(Some("Viewer"));
    let (start, end) = ((now_ms() - 3_600_000) / 1000, now_ms() / 1000 + 60);
    let range = format!("start={start}&end={end}");
    eventually(Duration::from_secs(20), "the target scraped", || async {
        let (_, v) = plugin
            .call_resource(ctx(), "GET", "api/v1/label/__name__/values", b"")
            .await;
        v["data"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("res_requests_total")))
            .then_some(())
    })
    .await;
    let cache = [("X-Grafana-Cache", "private, max-age=60")];
    let json_body = [("Content-Type", "application/json")];

    // The config editor's version detection, and buildinfo itself.
    for path in ["version-detect", "api/v1/status/buildinfo"] {
        let (code, _, v) = res(&plugin, &ds, "GET", path, "", &[]).await;
        assert_eq!(code, 200, "{path}: {v}");
        assert_eq!(v["data"]["version"], "2.42.0", "{path}: {v}");
    }

    // Metadata calls, with the cache header carried back.
    let (code, h, v) = res(
        &plugin,
        &ds,
        "POST",
        "api/v1/labels",
        &format!("{range}&limit=40000"),
        &cache,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert!(
        v["data"].as_array().unwrap().contains(&json!("path")),
        "{v}"
    );
    assert_eq!(h.get("X-Grafana-Cache"), Some(&vec!["y".to_string()]));
    assert_eq!(
        h.get("Cache-Control"),
        Some(&vec!["private, max-age=60".to_string()])
    );
    let (code, h, v) = res(
        &plugin,
        &ds,
        "GET",
        &format!("api/v1/label/path/values?{range}&limit=40000&match%5B%5D=res_requests_total"),
        "",
        &cache,
    )
    .await;
    assert_eq!((code, &v["data"]), (200, &json!(["/a"])), "{v}");
    assert!(h.contains_key("Cache-Control"));
    let (_, h, _) = res(&plugin, &ds, "GET", "api/v1/labels", "", &[]).await;
    assert!(
        !h.contains_key("Cache-Control") && !h.contains_key("X-Grafana-Cache"),
        "no cache headers unless asked: {h:?}"
    );
    let (code, _, v) = res(
        &plugin,
        &ds,
        "POST",
        "api/v1/series",
        &format!("{range}&match%5B%5D=%7B__name__%3D~%22res_.%2A%22%7D&limit=40000"),
        &cache,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"][0]["__name__"], "res_requests_total", "{v}");
    let (code, _, v) = res(
        &plugin,
        &ds,
        "GET",
        "api/v1/metadata?limit=40000",
        "",
        &cache,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["res_requests_total"][0]["type"], "counter", "{v}");

    // query_result() variables: an instant query.
    let (code, _, v) = res(
        &plugin,
        &ds,
        "POST",
        "api/v1/query",
        &format!("query=sum(res_requests_total)&time={end}"),
        &[],
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "vector", "{v}");
    // The exemplar probe sends milliseconds where seconds are expected; it only
    // looks for "success".
    let ms = now_ms();
    let (code, _, v) = res(
        &plugin,
        &ds,
        "GET",
        &format!(
            "api/v1/query_exemplars?query=test&start={}&end={ms}",
            ms - 1_800_000
        ),
        "",
        &[],
    )
    .await;
    assert_eq!((code, &v["status"]), (200, &json!("success")), "{v}");
    let (code, _, v) = res(&plugin, &ds, "GET", "api/v1/rules", "", &[]).await;
    assert_eq!((code, &v["status"]), (200, &json!("success")), "{v}");

    // suggestions: label names, then a label's values, of the queries' metrics.
    let sugg = |extra: Value| {
        let mut b = json!({
            "queries": ["sum(rate(res_requests_total[$__rate_interval]))", "broken("],
            "start": start.to_string(), "end": end.to_string(), "limit": 100,
        });
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b.to_string()
    };
    let (code, _, v) = res(
        &plugin,
        &ds,
        "POST",
        "suggestions",
        &sugg(json!({})),
        &json_body,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert!(
        v["data"].as_array().unwrap().contains(&json!("path")),
        "{v}"
    );
    let (code, _, v) = res(&plugin, &ds,
        "POST",
        "suggestions",
        &sugg(json!({"labelName": "path", "adhocFilters": [{"key": "path", "operator": "regex-match", "value": "/.*"}]})),
        &json_body,
    )
    .await;
    assert_eq!((code, &v["data"]), (200, &json!(["/a"])), "{v}");
    let (code, _, v) = res(&plugin, &ds,
        "POST",
        "suggestions",
        &sugg(json!({"labelName": "path", "scopes": [{"key": "path", "operator": "equals", "value": "/b"}]})),
        &json_body,
    )
    .await;
    assert_eq!((code, &v["data"]), (200, &json!([])), "{v}");
    // The same fields as a form body are read too.
    let (code, _, v) = res(
        &plugin,
        &ds,
        "POST",
        "suggestions",
        "labelName=path&queries=res_requests_total&limit=100",
        &[],
    )
    .await;
    assert_eq!((code, &v["data"]), (200, &json!(["/a"])), "{v}");

    // format_query, as Prometheus 2.42 answers it.
    let (code, _, v) = res(
        &plugin,
        &ds,
        "POST",
        "api/v1/format_query",
        "query=sum%20by(path)(rate(res_requests_total%5B5m%5D))",
        &[],
    )
    .await;
    assert_eq!(
        (code, &v["data"]),
        (200, &json!("sum by (path) (rate(res_requests_total[5m]))")),
        "{v}"
    );
    let (code, _, v) = res(
        &plugin,
        &ds,
        "GET",
        "api/v1/format_query?query=sum(",
        "",
        &[],
    )
    .await;
    assert_eq!((code, &v["errorType"]), (400, &json!("bad_data")), "{v}");

    // Newer Prometheus's search API: a clear not-supported error.
    let (code, _, v) = res(&plugin, &ds, "GET", "api/v1/search/metric_names", "", &[]).await;
    assert_eq!((code, &v["errorType"]), (404, &json!("not_found")), "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("not supported"),
        "{v}"
    );
}

/// One resource call as a Viewer of `ds`: status, response headers, JSON body.
async fn res(
    plugin: &PluginProcess,
    ds: &Datasource,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (i32, std::collections::HashMap<String, Vec<String>>, Value) {
    plugin
        .call_resource_with(
            ds.context(Some("Viewer")),
            method,
            path,
            body.as_bytes(),
            headers,
        )
        .await
}
