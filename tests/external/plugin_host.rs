//! Grafana's side of the plugin protocol, end to end over gRPC against the built
//! binary scraping a real node_exporter, its frames decoded by arrow-rs and pyarrow.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn end_to_end_against_node_exporter() {
    let topo = Topology::start(true);
    let node = topo.get("NODE_EXPORTER").to_string();
    let dir = tempfile::tempdir().unwrap();
    let plugin = PluginProcess::start(&grafana_env_in(dir.path())).await;
    assert!(
        plugin.health_serving().await,
        "grpc health must report SERVING for 'plugin'"
    );

    let ds = Datasource::new(1, "node-ds", json_data_scraping(&[&node]));
    let msg = eventually(Duration::from_secs(20), "target up", || async {
        let h = plugin.check_health(ds.context(Some("Viewer"))).await;
        (h.status == 1 && h.message.starts_with("1 of 1 targets up")).then_some(h.message)
    })
    .await;
    assert!(!msg.contains("failed"), "{msg}");
    // A few scrapes, so the range has points.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let to = now_ms();
    let from = to - 60_000;
    let resp = plugin
        .query_data(
            ds.context(Some("Viewer")),
            vec![
                data_query("A", json!({"expr": "up", "refId": "A", "range": true}), from, to, 1000),
                data_query("B", json!({"expr": "node_load1", "legendFormat": "load {{instance}}", "refId": "B", "instant": true, "range": false}), from, to, 1000),
                data_query("C", json!({"expr": "sum(", "refId": "C"}), from, to, 1000),
            ],
        )
        .await;

    // A: one timeseries-multi frame per series, Time(ns) + Value with labels.
    let a = &resp.responses["A"];
    assert!(a.error.is_empty(), "{}", a.error);
    let frames: Vec<DecodedFrame> = a.frames.iter().map(|f| decode_frame(f)).collect();
    assert_eq!(frames.len(), 1, "one series: up of the node target");
    let f = &frames[0];
    assert_eq!(f.ref_id, "A");
    assert_eq!(f.meta["type"], "timeseries-multi");
    assert_eq!(f.meta["custom"]["resultType"], "matrix");
    assert!(f.meta["executedQueryString"]
        .as_str()
        .unwrap()
        .starts_with("Expr: up\nStep: "));
    assert_eq!(f.fields.len(), 2);
    assert_eq!(f.fields[0].name, "Time");
    assert_eq!(f.fields[0].arrow_type, "Timestamp(Nanosecond, None)");
    let step = f.fields[0].config["interval"].as_i64().unwrap();
    assert!(step >= 1000, "step {step}");
    assert_eq!(f.fields[1].name, "up");
    assert_eq!(f.fields[1].labels["job"], "test");
    assert_eq!(f.fields[1].labels["instance"], node);
    assert!(f.rows >= 2, "rows {}", f.rows);
    assert!(f.fields[1].numbers.iter().all(|v| *v == 1.0));
    let times = &f.fields[0].numbers;
    assert!(
        times.windows(2).all(|w| w[1] - w[0] == step as f64),
        "times on the step grid"
    );
    assert!(times
        .iter()
        .all(|t| (*t as i64) >= from - step && (*t as i64) <= to));
    cross_check_with_pyarrow(&a.frames, &frames);

    // B: instant, legend applied.
    let b = &resp.responses["B"];
    assert!(b.error.is_empty(), "{}", b.error);
    let bf = decode_frame(&b.frames[0]);
    assert_eq!(bf.meta["type"], "numeric-multi");
    assert_eq!(bf.name, "", "dataplane frames have no name");
    assert_eq!(
        bf.fields[1].config["displayNameFromDS"],
        format!("load {node}")
    );
    cross_check_with_pyarrow(&b.frames, &[bf]);

    // C: its own error, with the Prometheus API's status, while A and B answered.
    let c = &resp.responses["C"];
    assert!(!c.error.is_empty());
    assert_eq!(c.status, 400);
    assert_eq!(c.error_source, "downstream");

    // Resources answer in the Prometheus API's shape.
    let (code, labels) = plugin
        .call_resource(ds.context(Some("Viewer")), "GET", "api/v1/labels", b"")
        .await;
    assert_eq!(code, 200);
    assert!(labels["data"]
        .as_array()
        .unwrap()
        .contains(&json!("instance")));
    let (code, v) = plugin
        .call_resource(
            ds.context(Some("Viewer")),
            "POST",
            "api/v1/query",
            b"query=count(node_cpu_seconds_total)%20%3E%200",
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "vector");

    let lines = plugin.stderr_lines();
    let (status, took) = plugin.shutdown().await;
    let status = status.expect("plugin must exit within 2 s of Shutdown");
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // Logs are hclog JSON lines.
    assert!(!lines.is_empty());
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        for key in ["@level", "@message", "@timestamp", "@module"] {
            assert!(v.get(key).is_some(), "{key} missing in {l}");
        }
    }
}
