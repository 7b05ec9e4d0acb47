//! `/api/v1/query_exemplars` over exemplars put straight into a tenant's store:
//! Prometheus's JSON, byte for byte, its parameters and its errors. (Exemplars
//! from a real scrape are in scrape_exemplars.rs; how values and timestamps are
//! written, in the api module's unit tests.)

use std::sync::Arc;

use crate::support::*;
use arrowmon::model::exemplar::Exemplar;
use arrowmon::model::labels::Labels;
use arrowmon::store::StoreOptions;
use arrowmon::tenant::{SecretMode, Tenant};
use serde_json::{json, Value};

/// A tenant in a fresh folder, with exemplars added straight to its store.
fn tenant_with_exemplars() -> (tempfile::TempDir, Arc<Tenant>) {
    let dir = tempfile::tempdir().unwrap();
    let tenant =
        Arc::new(Tenant::open(dir.path(), SecretMode::File, StoreOptions::default()).unwrap());
    let ex = |trace: &str, value: f64, t: i64| Exemplar {
        labels: Labels::from_pairs([("trace_id", trace)]),
        value,
        timestamp_ms: t,
    };
    let a = Labels::from_pairs([("__name__", "req_total"), ("path", "/a")]);
    let b = Labels::from_pairs([("__name__", "req_total"), ("path", "/b")]);
    let h = Labels::from_pairs([("__name__", "lat_bucket"), ("le", "0.5")]);
    let store = tenant.store.exemplars();
    store
        .add(&b, ex("b1", 6.0, 1_600_096_945_479), true)
        .unwrap();
    store
        .add(&a, ex("a1", 1e-7, 1_600_096_945_400), true)
        .unwrap();
    store
        .add(&a, ex("a2", 0.25, 1_600_096_946_000), true)
        .unwrap();
    store
        .add(&h, ex("h1", 2e21, 1_600_096_946_005), true)
        .unwrap();
    (dir, tenant)
}

/// The status and JSON body (null when empty) of a `query_exemplars` request.
async fn get(tenant: &Arc<Tenant>, query: &str) -> (u16, Value) {
    api_get(tenant, "/api/v1/query_exemplars", query).await
}

#[tokio::test]
async fn query_exemplars_answers_with_prometheus_json() {
    let (_dir, tenant) = tenant_with_exemplars();
    let (status, body) = api_get_raw(&tenant, "/api/v1/query_exemplars", "query=req_total").await;
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        concat!(
            r#"{"status":"success","data":["#,
            r#"{"seriesLabels":{"__name__":"req_total","path":"/a"},"exemplars":["#,
            r#"{"labels":{"trace_id":"a1"},"value":"1e-07","timestamp":1600096945.400},"#,
            r#"{"labels":{"trace_id":"a2"},"value":"0.25","timestamp":1600096946}]},"#,
            r#"{"seriesLabels":{"__name__":"req_total","path":"/b"},"exemplars":["#,
            r#"{"labels":{"trace_id":"b1"},"value":"6","timestamp":1600096945.479}]}]}"#
        )
    );
    // Through the API: the range is inclusive and any selector may match.
    let (status, v) = get(
        &tenant,
        "query=histogram_quantile(0.9,rate(lat_bucket[1m]))%2Breq_total{path=%22/b%22}&start=1600096945.479&end=1600096946.005",
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let series: Vec<&Value> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["seriesLabels"])
        .collect();
    assert_eq!(
        series,
        [
            &json!({"__name__": "lat_bucket", "le": "0.5"}),
            &json!({"__name__": "req_total", "path": "/b"})
        ]
    );
    // RFC 3339 and an empty parameter (the default) are taken too.
    let (_, v) = get(&tenant, "query=req_total&start=2020-09-14T15:22:26Z&end=").await;
    assert_eq!(
        v["data"][0]["exemplars"].as_array().unwrap().len(),
        1,
        "{v}"
    );
    let (_, v) = get(&tenant, "query=nothing").await;
    assert_eq!(v, json!({"status": "success", "data": []}));
}

#[tokio::test]
async fn query_exemplars_refuses_bad_parameters_as_prometheus_does() {
    let (_dir, tenant) = tenant_with_exemplars();
    // No selector: no content, as Prometheus answers.
    assert_eq!(get(&tenant, "query=1%2B1").await, (204, Value::Null));
    let (status, v) = get(&tenant, "query=rate(").await;
    assert_eq!((status, &v["errorType"]), (400, &json!("bad_data")), "{v}");
    let (status, v) = get(&tenant, "query=up&start=2&end=1").await;
    assert_eq!(status, 400);
    assert_eq!(
        v["error"],
        "end timestamp must not be before start timestamp"
    );
    let (status, v) = get(&tenant, "query=up&start=x").await;
    assert_eq!(status, 400);
    assert_eq!(
        v["error"],
        "invalid parameter \"start\": Invalid time value for 'start': cannot parse \"x\" to a valid timestamp"
    );
    assert!(tenant.query_exemplars("sum(", 0, 1).await.is_err());
    assert_eq!(tenant.query_exemplars("1", 0, 1).await, Ok(vec![]));
}
