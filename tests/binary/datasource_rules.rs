//! A datasource's own rules (`jsonData.ruleConfig`) evaluated by the plugin as
//! Grafana starts it: recorded series and alerts answer QueryData and the rules
//! and alerts resources, the config editor's validation reports problems with
//! their line, invalid rules make CheckHealth fail, and Grafana's alerting
//! (requests with the `FromAlert` header, no user, its own interval and max data
//! points) gets the frames Grafana's server-side expressions reduce.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use crate::support::*;

const RULES: &str = "groups:\n  - name: demo\n    interval: 1s\n    rules:\n      - record: job:x:double\n        expr: x * 2\n      - alert: XHigh\n        expr: job:x:double > 1\n        labels:\n          severity: page\n        annotations:\n          summary: x is high\n";

/// A query as Grafana's alerting sends it: its interval and max data points.
fn alerting_query(
    ref_id: &str,
    model: serde_json::Value,
    interval_ms: i64,
) -> arrowmon::proto::pluginv2::DataQuery {
    let to = now_ms();
    let mut q = data_query(ref_id, model, to - 600_000, to, interval_ms);
    q.max_data_points = 43_200;
    q
}

#[tokio::test(flavor = "multi_thread")]
async fn datasource_rules_are_evaluated_and_served_to_grafana() {
    let target = serve_metrics("x 3\n").await;
    let dir = tempfile::tempdir().unwrap();
    let plugin = PluginProcess::start(&grafana_env_in(dir.path())).await;
    let mut json_data = json_data_scraping(&[&target]);
    json_data["ruleConfig"] = json!(RULES);
    let ds = Datasource::new(1, "rules-ds", json_data);
    let viewer = || ds.context(Some("Viewer"));

    // The recorded series, through QueryData as a panel asks for it.
    let value = eventually(Duration::from_secs(20), "job:x:double recorded", || async {
        let to = now_ms();
        let q = data_query(
            "A",
            json!({"expr": "job:x:double", "instant": true, "range": false}),
            to - 60_000,
            to,
            1000,
        );
        let resp = plugin.query_data(viewer(), vec![q]).await;
        let f = decode_frame(resp.responses["A"].frames.first()?);
        f.fields.get(1)?.numbers.first().copied()
    })
    .await;
    assert_eq!(value, 6.0);

    // The rules and alerts resources, in the Prometheus API's shapes.
    let alert = eventually(Duration::from_secs(20), "XHigh firing", || async {
        let (code, v) = plugin
            .call_resource(viewer(), "GET", "api/v1/alerts", b"")
            .await;
        (code == 200 && v["data"]["alerts"][0]["state"] == "firing")
            .then(|| v["data"]["alerts"][0].clone())
    })
    .await;
    assert_eq!(alert["labels"]["alertname"], "XHigh");
    assert_eq!(alert["labels"]["severity"], "page");
    let (code, v) = plugin
        .call_resource(viewer(), "GET", "api/v1/rules", b"")
        .await;
    assert_eq!(code, 200);
    let group = &v["data"]["groups"][0];
    assert_eq!(group["file"], "ruleConfig");
    assert_eq!(group["rules"][0]["name"], "job:x:double");
    assert_eq!(group["rules"][1]["state"], "firing");

    // Grafana's alerting: FromAlert, no user, a relative range, its interval and
    // max data points. Instant: one numeric frame per series, no exemplar frames;
    // range: time series. `ALERTS` is written from the evaluation after the alert
    // states were restored.
    let resp = eventually(Duration::from_secs(20), "ALERTS for alerting", || async {
        let headers = HashMap::from([("FromAlert".to_string(), "true".to_string())]);
        let instant = alerting_query(
            "A",
            json!({"expr": "ALERTS{alertstate=\"firing\"}", "refId": "A", "instant": true, "range": false, "exemplar": true}),
            15_000,
        );
        // A 1s interval: the series is seconds old, a 15s step could end before it.
        let range = alerting_query("B", json!({"expr": "job:x:double", "refId": "B", "range": true, "instant": false}), 1_000);
        let resp = plugin
            .query_data_with_headers(ds.context(None), headers, vec![instant, range])
            .await;
        let firing = resp.responses["A"].frames.first().is_some_and(|f| decode_frame(f).fields.len() == 2);
        firing.then_some(resp)
    })
    .await;
    let a = &resp.responses["A"];
    assert!(a.error.is_empty(), "{}", a.error);
    assert_eq!(a.frames.len(), 1, "no exemplar frames for alerting");
    let f = decode_frame(&a.frames[0]);
    assert_eq!(f.meta["type"], "numeric-multi");
    assert_eq!(f.fields[1].labels["alertname"], "XHigh");
    assert_eq!(f.fields[1].numbers, [1.0]);
    let b = &resp.responses["B"];
    assert!(b.error.is_empty(), "{}", b.error);
    let f = decode_frame(&b.frames[0]);
    assert_eq!(f.meta["type"], "timeseries-multi");
    assert!(!f.fields[1].numbers.is_empty());
    assert!(f.fields[1].numbers.iter().all(|v| *v == 6.0));
    cross_check_with_pyarrow(&b.frames, &[f]);

    // The config editor's validation of rules, with the line of a problem.
    let editor = ds.context(Some("Editor"));
    let body = json!({"ruleConfig": RULES}).to_string();
    let (code, v) = plugin
        .call_resource(editor.clone(), "POST", "validate", body.as_bytes())
        .await;
    assert_eq!(code, 200);
    assert_eq!(v, json!({"valid": true, "groups": 1, "rules": 2}));
    let bad = "groups:\n  - name: g\n    rules:\n      - record: r\n        expr: sum(\n";
    let body = json!({"ruleConfig": bad}).to_string();
    let (_, v) = plugin
        .call_resource(editor, "POST", "validate", body.as_bytes())
        .await;
    assert_eq!(v["valid"], false);
    assert_eq!(v["line"], 5, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("could not parse expression"),
        "{v}"
    );

    // Invalid rules saved: CheckHealth says so, no rules run.
    let mut broken = ds.json_data.clone();
    broken["ruleConfig"] = json!(bad);
    let mut ds2 = Datasource::new(1, "rules-ds", broken);
    ds2.last_updated_ms = ds.last_updated_ms + 1;
    let h = plugin.check_health(ds2.context(Some("Viewer"))).await;
    assert_eq!(h.status, 2, "{}", h.message);
    assert!(
        h.message.starts_with("Invalid rules: ruleConfig: 5:"),
        "{}",
        h.message
    );
    let (_, v) = plugin
        .call_resource(ds2.context(Some("Viewer")), "GET", "api/v1/rules", b"")
        .await;
    assert_eq!(v["data"]["groups"], json!([]));

    let (status, _) = plugin.shutdown().await;
    assert!(status.is_some_and(|s| s.success()));
}
