//! Exemplars from a real scrape: an OpenMetrics target whose samples carry
//! exemplars, scraped by a tenant's scrape loop into its store, read back through
//! `/api/v1/query_exemplars` and the self-metrics. Only the exemplars of samples
//! the store took are kept; repeats, out-of-order and over-long exemplars are not,
//! and none of them fails the scrape.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use arrowmon::config::ScrapeConfig;
use arrowmon::model::labels::Matcher;
use arrowmon::scrape::{now_ms, Health};
use arrowmon::store::StoreOptions;
use arrowmon::tenant::{self_metrics_text, SecretMode, Tenant};
use serde_json::{json, Value};

/// Seconds with three decimals, as OpenMetrics writes timestamps.
fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

async fn exemplars(tenant: &Arc<Tenant>, query: &str) -> Value {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", query)
        .finish();
    let (status, v) = api_get(tenant, "/api/v1/query_exemplars", &q).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// The trace ids of the exemplars of the one series `query` selects.
fn traces(v: &Value) -> Vec<String> {
    let data = v["data"].as_array().expect("data");
    assert_eq!(data.len(), 1, "{v}");
    data[0]["exemplars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["labels"]["trace_id"].as_str().unwrap().to_string())
        .collect()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}{{tenant=\"t\"}} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_exemplars_are_kept_for_appended_samples_only() {
    let base = now_ms() - 60_000;
    let n = Arc::new(AtomicI64::new(0));
    let counter = n.clone();
    let long = "x".repeat(130);
    let addr = exporter_as(OPENMETRICS, move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        format!(
            "# TYPE req counter\n\
             req_total{{path=\"/a\"}} {n} # {{trace_id=\"a{n}\"}} {n} {a_ts}\n\
             req_total{{path=\"/drop\"}} 1 # {{trace_id=\"dropped\"}} 1 {a_ts}\n\
             # TYPE jobs counter\n\
             jobs_total 3 # {{trace_id=\"nots\"}} 7\n\
             # TYPE old counter\n\
             old_total 1 # {{trace_id=\"old\"}} 1 {old_ts}\n\
             # TYPE back counter\n\
             back_total 1 # {{trace_id=\"back{n}\"}} 1 {back_ts}\n\
             # TYPE long counter\n\
             long_total 1 # {{trace_id=\"{long}\"}} 1 {a_ts}\n\
             # TYPE past counter\n\
             past_total 1 {past_ts} # {{trace_id=\"p{n}\"}} 1 {a_ts}\n\
             # EOF\n",
            a_ts = secs(base + n * 1000),
            old_ts = secs(base),
            back_ts = secs(base - n * 1000),
            // A sample stamped further back at each scrape: refused as out of
            // order from the second scrape on, and its exemplar with it.
            past_ts = secs(base + 30_000 - n * 1000),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let tenant =
        Arc::new(Tenant::open(dir.path(), SecretMode::File, StoreOptions::default()).unwrap());
    let yaml = format!(
        "scrape_configs:\n  - job_name: ex\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['{addr}']\n    metric_relabel_configs:\n      - source_labels: [path]\n        regex: /drop\n        action: drop\n"
    );
    let cfg = ScrapeConfig::parse(&yaml, &arrowmon::config::SecretSource::File).unwrap();
    tenant.apply_config(Ok(cfg)).await;

    // Three scrapes at least (the exporter counts the requests).
    eventually(Duration::from_secs(20), "three scrapes", || async {
        let t = tenant.targets().await;
        (n.load(Ordering::SeqCst) >= 3 && t.first().is_some_and(|t| t.last_scrape_ms > 0))
            .then_some(())
    })
    .await;
    // Stop scraping, so what is compared below no longer moves.
    tenant.stop_scraping().await;
    let scrapes = n.load(Ordering::SeqCst);
    let target = tenant.targets().await;
    assert!(
        target.iter().all(|t| t.health != Health::Down),
        "{target:?}"
    );

    // One exemplar per scrape, oldest first, with the series' full labels.
    let v = exemplars(&tenant, "rate(req_total[1m])").await;
    let a = traces(&v);
    assert!(a.len() as i64 >= 3 && a.len() as i64 <= scrapes, "{v}");
    assert!(
        a.iter()
            .enumerate()
            .all(|(i, t)| *t == format!("a{}", i + 1)),
        "{v}"
    );
    let series = &v["data"][0]["seriesLabels"];
    assert_eq!(series["path"], "/a");
    assert_eq!(series["job"], "ex");
    assert_eq!(series["instance"], addr.as_str());
    let first = &v["data"][0]["exemplars"][0];
    assert_eq!(first["value"], "1");
    assert_eq!(
        first["timestamp"].as_f64(),
        Some((base + 1000) as f64 / 1000.0)
    );
    // The sample metric relabeling dropped took its exemplar with it.
    let v = exemplars(&tenant, "{path=\"/drop\"} or {trace_id=\"dropped\"}").await;
    assert_eq!(v["data"], json!([]), "{v}");

    // Without a timestamp, an exemplar takes its sample's; shown again at the next
    // scrapes it repeats (Prometheus compares such exemplars without their times).
    let v = exemplars(&tenant, "jobs_total").await;
    let stamps: Vec<i64> = v["data"][0]["exemplars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["timestamp"].as_f64().unwrap() * 1000.0).round() as i64)
        .collect();
    let samples = tenant
        .store
        .select(
            &[Matcher::equal("__name__", "jobs_total")],
            i64::MIN,
            i64::MAX,
        )
        .unwrap();
    let sample_times: Vec<i64> = samples[0]
        .timestamps
        .iter()
        .zip(&samples[0].values)
        .filter(|(_, v)| !arrowmon::model::is_stale_nan(**v))
        .map(|(t, _)| *t)
        .collect();
    assert!(sample_times.len() >= 3, "{sample_times:?}");
    assert_eq!(stamps, sample_times[..1], "{v}");

    // The same exemplar at every scrape is kept once.
    assert_eq!(traces(&exemplars(&tenant, "old_total").await), ["old"]);
    // Exemplars going back in time: only the first is kept, the rest counted.
    assert_eq!(traces(&exemplars(&tenant, "back_total").await), ["back1"]);
    // The out-of-order samples' exemplars are not kept.
    assert_eq!(traces(&exemplars(&tenant, "past_total").await), ["p1"]);
    // Too long a label set: refused and counted, the scrape goes on.
    assert_eq!(exemplars(&tenant, "long_total").await["data"], json!([]));

    let m = self_metrics_text(&[("t", &tenant)]).await;
    let in_storage = metric(&m, "prometheus_tsdb_exemplar_exemplars_in_storage");
    assert_eq!(
        in_storage,
        metric(&m, "prometheus_tsdb_exemplar_exemplars_appended_total")
    );
    // a1…, the first jobs_total exemplar, old, back1, p1.
    assert_eq!(in_storage as usize, a.len() + 4);
    assert_eq!(
        metric(
            &m,
            "prometheus_tsdb_exemplar_series_with_exemplars_in_storage"
        ),
        5.0
    );
    assert_eq!(
        metric(&m, "prometheus_tsdb_exemplar_max_exemplars"),
        100_000.0
    );
    assert!(metric(&m, "prometheus_tsdb_exemplar_out_of_order_exemplars_total") >= 2.0);
    assert!(metric(&m, "arrowmon_exemplar_label_set_too_long_total") >= 3.0);
}
