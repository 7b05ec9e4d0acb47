//! The variants of Grafana's QueryData request that change what its Prometheus
//! backend (`pkg/promlib`) answers, each checked frame by frame against the built
//! plugin. The expected frames restate promlib's own goldens
//! (`testdata/range_simple.result.golden.jsonc`,
//! `converter/testdata/prom-vector-frame.jsonc`) and its code: `querydata/request.go`
//! (`Execute`, `fetch`), `querydata/response.go` (`parseResponse`,
//! `addMetadataToMultiFrame`, `getName`), `converter/prom.go` (frame types and
//! versions per result type) and `models/query.go` with `intervalv2` (the step).

use std::collections::HashMap;
use std::time::Duration;

use crate::support::*;
use arrowmon::proto::pluginv2 as pb;
use serde_json::{json, Value};

/// Grafana's config with these toggles enabled and this query concurrency.
fn with_config(
    mut ctx: pb::PluginContext,
    toggles: Option<&str>,
    count: &str,
) -> pb::PluginContext {
    match toggles {
        Some(t) => ctx
            .grafana_config
            .insert("GF_INSTANCE_FEATURE_TOGGLES_ENABLE".into(), t.into()),
        None => ctx
            .grafana_config
            .remove("GF_INSTANCE_FEATURE_TOGGLES_ENABLE"),
    };
    ctx.grafana_config
        .insert("GF_CONCURRENT_QUERY_COUNT".into(), count.into());
    ctx
}

fn decoded(resp: &pb::QueryDataResponse, ref_id: &str) -> Vec<DecodedFrame> {
    let r = &resp.responses[ref_id];
    assert!(r.error.is_empty(), "{ref_id}: {}", r.error);
    let frames: Vec<DecodedFrame> = r.frames.iter().map(|f| decode_frame(f)).collect();
    cross_check_with_pyarrow(&r.frames, &frames);
    frames
}

const TOGGLES_DATAPLANE: &str = "publicDashboards,prometheusDataplane,lokiQuerySplitting";
const TOGGLES_WITHOUT_DATAPLANE: &str = "publicDashboards,lokiQuerySplitting";

#[tokio::test(flavor = "multi_thread")]
async fn request_variants_answer_as_grafanas_prometheus_backend() {
    let target = serve_metrics("x{k=\"a\"} 1\nx{k=\"b\"} 2\n").await;
    let dir = tempfile::tempdir().unwrap();
    let plugin = PluginProcess::start(&grafana_env_in(dir.path())).await;
    let ds = Datasource::new(1, "variants", json_data_scraping(&[&target]));
    let viewer = ds.context(Some("Viewer"));
    // A fixed range that ends in the past once x has been scraped a few times, so
    // that two requests over it see the same samples.
    let to = eventually(Duration::from_secs(20), "x scraped", || async {
        let now = now_ms();
        let resp = plugin
            .query_data(
                viewer.clone(),
                vec![data_query(
                    "A",
                    json!({"expr": "x", "range": true}),
                    now - 60_000,
                    now,
                    1000,
                )],
            )
            .await;
        let frames = decoded(&resp, "A");
        (frames.len() == 2 && frames[0].rows >= 3).then_some(now - 1500)
    })
    .await;
    let from = to - 600_000;
    let display = |k: &str| format!("x{{instance=\"{target}\", job=\"test\", k=\"{k}\"}}");
    let query = |ref_id: &str, model: Value| data_query(ref_id, model, from, to, 1000);
    let run = |ctx: pb::PluginContext, queries: Vec<pb::DataQuery>| plugin.query_data(ctx, queries);

    // Dataplane (Grafana's default, and all its current backend knows): matrix and
    // vector frames versioned 0.1, the vector numeric-multi, the value field named
    // by __name__, no frame name; the first frame alone carries the query string
    // and calculatedMinStep.
    let dataplane = with_config(viewer.clone(), Some(TOGGLES_DATAPLANE), "10");
    let resp = run(
        dataplane.clone(),
        vec![
            query("R", json!({"expr": "x", "range": true})),
            query(
                "I",
                json!({"expr": "x", "instant": true, "legendFormat": "{{k}}"}),
            ),
            query("S", json!({"expr": "scalar(sum(x))", "instant": true})),
            query("T", json!({"expr": "\"hello\"", "instant": true})),
            query("E", json!({"expr": "nothing_here", "range": true})),
        ],
    )
    .await;
    let r = decoded(&resp, "R");
    assert_eq!(r.len(), 2);
    assert_eq!(
        r[0].meta,
        json!({"type": "timeseries-multi", "typeVersion": [0, 1],
               "custom": {"resultType": "matrix", "calculatedMinStep": 1000},
               "executedQueryString": "Expr: x\nStep: 1s"})
    );
    assert_eq!(
        r[1].meta,
        json!({"type": "timeseries-multi", "typeVersion": [0, 1], "custom": {"resultType": "matrix"}})
    );
    for (f, k) in r.iter().zip(["a", "b"]) {
        assert_eq!(f.name, "");
        assert_eq!(f.fields[0].name, "Time");
        assert_eq!(f.fields[0].config, json!({"interval": 1000}));
        assert_eq!(f.fields[1].name, "x");
        assert_eq!(f.fields[1].labels["k"], k);
        assert_eq!(f.fields[1].config, json!({"displayNameFromDS": display(k)}));
    }
    let i = decoded(&resp, "I");
    assert_eq!(i.len(), 2);
    assert_eq!(i[0].meta["type"], "numeric-multi");
    assert_eq!(i[0].meta["typeVersion"], json!([0, 1]));
    assert_eq!(i[0].meta["custom"]["resultType"], "vector");
    assert_eq!(
        (i[0].name.as_str(), i[0].fields[1].name.as_str()),
        ("", "x")
    );
    assert_eq!(i[1].fields[1].config["displayNameFromDS"], "b");
    let s = decoded(&resp, "S");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].meta["type"], "numeric-multi");
    assert_eq!(s[0].meta["typeVersion"], json!([0, 1]));
    assert_eq!(s[0].fields[1].name, "Value");
    assert_eq!(s[0].fields[1].numbers, [3.0]);
    // A series without labels is named by the expression.
    assert_eq!(s[0].fields[1].config["displayNameFromDS"], "scalar(sum(x))");
    let t = decoded(&resp, "T");
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].meta["type"], "timeseries-multi");
    assert!(t[0].meta.get("typeVersion").is_none(), "{}", t[0].meta);
    assert_eq!(t[0].meta["custom"]["resultType"], "string");
    assert_eq!(t[0].fields[1].strings, ["hello"]);
    assert_eq!(t[0].fields[1].config["displayNameFromDS"], "\"hello\"");
    // An empty result: Grafana's own empty frame, carrying only the metadata.
    let e = decoded(&resp, "E");
    assert_eq!(e.len(), 1);
    assert!(e[0].fields.is_empty());
    assert_eq!(
        e[0].meta,
        json!({"custom": {"calculatedMinStep": 1000},
               "executedQueryString": "Expr: nothing_here\nStep: 1s"})
    );

    // Without a toggle list Grafana's defaults hold: the same frames.
    let no_list = run(
        with_config(viewer.clone(), None, "10"),
        vec![query("R", json!({"expr": "x", "range": true}))],
    )
    .await;
    assert_eq!(decoded(&no_list, "R"), r);

    // `prometheusDataplane` switched off: every series timeseries-multi without a
    // version, the value field `Value`, the frame named by the display name.
    let before = with_config(viewer.clone(), Some(TOGGLES_WITHOUT_DATAPLANE), "10");
    let resp = run(
        before.clone(),
        vec![
            query("R", json!({"expr": "x", "range": true})),
            query(
                "I",
                json!({"expr": "x", "instant": true, "legendFormat": "{{k}}"}),
            ),
            query("S", json!({"expr": "scalar(sum(x))", "instant": true})),
        ],
    )
    .await;
    let r = decoded(&resp, "R");
    assert_eq!(
        r[0].meta,
        json!({"type": "timeseries-multi",
               "custom": {"resultType": "matrix", "calculatedMinStep": 1000},
               "executedQueryString": "Expr: x\nStep: 1s"})
    );
    assert_eq!(r[1].name, display("b"));
    assert_eq!(r[1].fields[1].name, "Value");
    assert_eq!(r[1].fields[1].config["displayNameFromDS"], display("b"));
    let i = decoded(&resp, "I");
    assert_eq!(i[0].meta["type"], "timeseries-multi");
    assert!(i[0].meta.get("typeVersion").is_none());
    assert_eq!(
        (i[0].name.as_str(), i[0].fields[1].name.as_str()),
        ("a", "Value")
    );
    let s = decoded(&resp, "S");
    assert_eq!(s[0].meta["type"], "numeric-multi");
    assert!(s[0].meta.get("typeVersion").is_none());
    assert_eq!(s[0].name, "scalar(sum(x))");

    // `prometheusRunQueriesInParallel`: at most GF_CONCURRENT_QUERY_COUNT queries at
    // once, the parts of each at once; the answers are those of the same request
    // run one query after another (frames in the same order).
    let mixed = vec![
        query("A", json!({"expr": "x", "range": true, "instant": true})),
        query(
            "B",
            json!({"expr": "sum(x)", "range": true, "exemplar": true}),
        ),
        query("C", json!({"expr": "sum(", "range": true, "instant": true})),
        query("D", json!({"expr": "x{k=\"a\"} * 2", "instant": true})),
        query(
            "F",
            json!({"expr": "rate(x[$__rate_interval])", "range": true}),
        ),
        query("G", json!({"expr": "count(x)"})),
    ];
    let sequential = run(dataplane.clone(), mixed.clone()).await;
    for (toggles, count) in [
        ("prometheusDataplane,prometheusRunQueriesInParallel", "2"),
        ("prometheusDataplane,prometheusRunQueriesInParallel", "1"),
        // Unreadable: Grafana's default of 10.
        ("prometheusDataplane,prometheusRunQueriesInParallel", "many"),
    ] {
        let parallel = run(
            with_config(viewer.clone(), Some(toggles), count),
            mixed.clone(),
        )
        .await;
        assert_eq!(parallel.responses.len(), mixed.len());
        for q in &mixed {
            let (a, b) = (
                &sequential.responses[&q.ref_id],
                &parallel.responses[&q.ref_id],
            );
            assert_eq!(
                (a.status, &a.error),
                (b.status, &b.error),
                "{} {count}",
                q.ref_id
            );
            let frames = |r: &pb::DataResponse| -> Vec<DecodedFrame> {
                r.frames.iter().map(|f| decode_frame(f)).collect()
            };
            assert_eq!(frames(a), frames(b), "{} with {count}", q.ref_id);
        }
    }
    assert_eq!(sequential.responses["C"].status, 400);

    // Newer editors send fields arrowmon does not know: ignored, never an error.
    let resp = run(
        dataplane.clone(),
        vec![
            query("R", json!({"expr": "x", "range": true})),
            query(
                "U",
                json!({"expr": "x", "range": true, "editorMode": "builder", "hide": false,
                       "datasource": {"type": "prometheus", "uid": "variants"},
                       "adhocFilters": [], "scopes": [{"name": "s"}],
                       "aNewerField": {"nested": [1, 2, {"deep": null}]}}),
            ),
        ],
    )
    .await;
    let (r, u) = (decoded(&resp, "R"), decoded(&resp, "U"));
    assert_eq!(u.len(), r.len());
    for (a, b) in r.iter().zip(&u) {
        assert_eq!((&a.meta, &a.fields), (&b.meta, &b.fields));
    }

    // maxDataPoints and intervalMs at their extremes (Grafana's step rules: the
    // step is range / maxDataPoints rounded, at least the datasource's 1 s scrape
    // interval and range / 11000; $__rate_interval = max(intervalMs + 1 s, 4 s)).
    let extreme = |ref_id: &str, expr: &str, max_data_points: i64, interval_ms: i64| {
        let mut q = query(ref_id, json!({"expr": expr, "range": true}));
        q.max_data_points = max_data_points;
        q.interval_ms = interval_ms;
        q
    };
    let resp = run(
        dataplane.clone(),
        vec![
            // One point over ten minutes: the step is the range.
            extreme("ONE", "x", 1, 1000),
            // Grafana's alerting: 43200 points, below the scrape interval.
            extreme("ALERT", "x", 43_200, 1000),
            extreme("HUGE", "x", i64::MAX, 1000),
            extreme("NEGATIVE", "x", -5, 1000),
            extreme("DAY", "rate(x[$__rate_interval])", 1000, 86_400_000),
            extreme("ZERO", "rate(x[$__rate_interval])", 1000, 0),
        ],
    )
    .await;
    for (ref_id, executed) in [
        ("ONE", "Expr: x\nStep: 10m0s"),
        ("ALERT", "Expr: x\nStep: 1s"),
        ("HUGE", "Expr: x\nStep: 1s"),
        ("NEGATIVE", "Expr: x\nStep: 1s"),
        ("DAY", "Expr: rate(x[24h0m1s])\nStep: 1s"),
        ("ZERO", "Expr: rate(x[4s])\nStep: 1s"),
    ] {
        let f = decoded(&resp, ref_id);
        assert_eq!(f[0].meta["executedQueryString"], executed, "{ref_id}");
    }
    // Past what Go's durations hold: an answer or a query error, never a crash.
    let resp = run(
        dataplane.clone(),
        vec![
            extreme("MAXMS", "rate(x[$__rate_interval])", 1000, i64::MAX),
            extreme("MINMS", "rate(x[$__rate_interval])", i64::MIN, i64::MIN),
        ],
    )
    .await;
    assert_eq!(resp.responses.len(), 2);
    assert!(plugin.health_serving().await);

    // Grafana's alerting (`FromAlert: true`, its own interval and 43200 points):
    // never an exemplar query (models.Parse clears it), so an empty result keeps
    // Grafana's empty frame; the same panel query from a dashboard has neither.
    let alert_query = |ref_id: &str, expr: &str, range: bool| {
        let mut q = query(
            ref_id,
            json!({"expr": expr, "range": range, "instant": !range, "exemplar": true}),
        );
        q.max_data_points = 43_200;
        q.interval_ms = 60_000;
        q
    };
    let queries = vec![
        alert_query("AR", "x", true),
        alert_query("AI", "x", false),
        alert_query("AE", "nothing_here", true),
    ];
    let alerting = plugin
        .query_data_with_headers(
            dataplane.clone(),
            HashMap::from([("FromAlert".to_string(), "true".to_string())]),
            queries.clone(),
        )
        .await;
    let ar = decoded(&alerting, "AR");
    assert_eq!(ar.len(), 2, "two series, no exemplar frame");
    assert_eq!(ar[0].meta["executedQueryString"], "Expr: x\nStep: 1s");
    let ai = decoded(&alerting, "AI");
    assert_eq!(ai.len(), 2);
    assert_eq!(ai[0].meta["type"], "numeric-multi");
    assert_eq!(ai[0].fields[0].numbers, [to as f64]);
    let ae = decoded(&alerting, "AE");
    assert_eq!(ae.len(), 1);
    assert!(ae[0].fields.is_empty());
    let panel = run(dataplane.clone(), queries).await;
    assert!(
        decoded(&panel, "AE").is_empty(),
        "exemplars on: no empty frame"
    );

    // A request without queries is an error, as Grafana's backend makes it.
    let mut client = pb::data_client::DataClient::new(plugin.channel.clone());
    let err = client
        .query_data(pb::QueryDataRequest {
            plugin_context: Some(dataplane),
            headers: HashMap::new(),
            queries: Vec::new(),
            ..Default::default()
        })
        .await
        .expect_err("no queries");
    assert_eq!(err.message(), "query contains no queries");

    let (status, _) = plugin.shutdown().await;
    assert!(status.is_some_and(|s| s.success()));
}
