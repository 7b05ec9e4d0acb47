//! The differential test of exemplars: `gpx_arrowmon serve` and a real `prometheus`
//! (Debian package, 2.42, with `--enable-feature=exemplar-storage`) scrape the same
//! OpenMetrics target, whose counter and histogram samples carry exemplars, with the
//! same config; `/api/v1/query_exemplars` must then answer the same JSON on both for
//! plain selectors, functions over them, several selectors, a selector matching
//! nothing, an expression without selectors (204, no body) and a parse error.
//!
//! The target's exemplars change every [`WINDOW_MS`] and carry fixed timestamps
//! derived from the window (ten minutes before it), so both systems, scraping every
//! second, hold exactly the same exemplars for every window they both saw whole;
//! the queries' range covers two such windows. One sample's exemplar has no
//! timestamp and takes its first scrape's, which differs between the two systems,
//! so it is checked on its own.

use std::time::Duration;

use crate::support::*;
use serde_json::{json, Value};

/// How long the target shows one set of exemplars.
const WINDOW_MS: i64 = 4000;
/// How far before its window an exemplar is stamped: far enough that no scrape
/// time (the timestamp of the exemplar without one) falls in the compared range.
const SHIFT_MS: i64 = 10 * 60_000;

/// Seconds with three decimals, as OpenMetrics writes timestamps.
fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// The target's exposition in window `w`.
fn body(w: i64) -> String {
    let ts = |offset_ms: i64| secs(w * WINDOW_MS - SHIFT_MS + offset_ms);
    format!(
        "# TYPE demo_requests counter\n\
         # HELP demo_requests Requests served.\n\
         demo_requests_total{{path=\"/a\"}} {w} # {{trace_id=\"a-{w}\"}} {v} {t0}\n\
         demo_requests_total{{path=\"/b\"}} {w2} # {{trace_id=\"b-{w}\",span_id=\"s{w}\"}} 0.0000001 {t479}\n\
         # TYPE demo_latency_seconds histogram\n\
         demo_latency_seconds_bucket{{le=\"0.1\"}} {w} # {{trace_id=\"h1-{w}\"}} 0.05 {t100}\n\
         demo_latency_seconds_bucket{{le=\"0.5\"}} {w2} # {{trace_id=\"h2-{w}\"}} 0.3 {t5}\n\
         demo_latency_seconds_bucket{{le=\"+Inf\"}} {w3} # {{trace_id=\"h3-{w}\"}} 2.5 {t50}\n\
         demo_latency_seconds_sum {w}.5\n\
         demo_latency_seconds_count {w3}\n\
         # TYPE demo_jobs counter\n\
         demo_jobs_total 4 # {{trace_id=\"no-timestamp\"}} 1\n\
         # EOF\n",
        v = w % 5 + 1,
        w2 = 2 * w,
        w3 = 3 * w,
        t0 = ts(0),
        t479 = ts(479),
        t100 = ts(100),
        t5 = ts(5),
        t50 = ts(50),
    )
}

/// `/api/v1/query_exemplars` on `base`: HTTP status and JSON body.
async fn query_exemplars(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    range: Option<(&str, &str)>,
) -> (u16, Value) {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("query", query);
    if let Some((start, end)) = range {
        form.append_pair("start", start).append_pair("end", end);
    }
    let url = format!("{base}/api/v1/query_exemplars?{}", form.finish());
    let (status, body) = http_get(client, &url)
        .await
        .unwrap_or_else(|| panic!("no answer from {url}"));
    if body.is_empty() {
        return (status, Value::Null);
    }
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"));
    (status, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_exemplars_equals_prometheus() {
    let client = http_client();
    let addr = exporter_as(OPENMETRICS, || body(now_ms().div_euclid(WINDOW_MS))).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: exemplars\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    )
    .unwrap();
    let test_start = now_ms();
    let side = SideBySide::start(dir.path(), &config, &["--enable-feature=exemplar-storage"]);
    let (prom, am) = (side.prometheus.clone(), side.arrowmon.clone());
    for base in [&prom, &am] {
        eventually(
            Duration::from_secs(30),
            &format!("the target up on {base}"),
            || async {
                let v =
                    http_get_json(&client, &format!("{base}/api/v1/query?query=up%3D%3D1")).await?;
                (v["data"]["result"].as_array()?.len() == 1).then_some(())
            },
        )
        .await;
    }
    // Two whole windows that both systems scrape from start to end (a scrape every
    // second, a window of four), then a scrape interval and some margin.
    let first = now_ms().div_euclid(WINDOW_MS) + 1;
    let done = (first + 2) * WINDOW_MS + 1500;
    tokio::time::sleep(Duration::from_millis((done - now_ms()).max(0) as u64)).await;
    let start = secs(first * WINDOW_MS - SHIFT_MS);
    let end = secs((first + 2) * WINDOW_MS - SHIFT_MS - 1);
    let range = Some((start.as_str(), end.as_str()));

    let queries = [
        "demo_requests_total",
        "rate(demo_requests_total[1m])",
        "histogram_quantile(0.9, sum by (le) (rate(demo_latency_seconds_bucket[1m])))",
        "sum(demo_requests_total{path=\"/b\"}) + sum(demo_latency_seconds_bucket{le!=\"0.5\"})",
        "nothing_here_total",
        "demo_jobs_total",
    ];
    for q in queries {
        let (ps, p) = query_exemplars(&client, &prom, q, range).await;
        let (s, a) = query_exemplars(&client, &am, q, range).await;
        assert_eq!(
            (s, &a),
            (ps, &p),
            "{q}: arrowmon (left) and prometheus (right) differ"
        );
        assert_eq!(ps, 200, "{q}: {p}");
    }
    // Every series selected above holds exactly the two windows' exemplars.
    let (_, all) = query_exemplars(&client, &am, "{job=\"exemplars\"}", range).await;
    let series = all["data"].as_array().unwrap();
    assert_eq!(series.len(), 5, "{all}");
    for s in series {
        let traces: Vec<&str> = s["exemplars"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["labels"]["trace_id"].as_str().unwrap())
            .collect();
        assert_eq!(traces.len(), 2, "{s}");
        assert!(traces[0].ends_with(&format!("-{first}")), "{s}");
        assert!(traces[1].ends_with(&format!("-{}", first + 1)), "{s}");
    }
    let (_, nothing) = query_exemplars(&client, &am, "nothing_here_total", range).await;
    assert_eq!(nothing, json!({"status": "success", "data": []}));

    // No selector at all (Prometheus: 204, no body), and a parse error, over the
    // whole time range.
    for q in ["1 + 1", "vector(1)"] {
        let (ps, p) = query_exemplars(&client, &prom, q, None).await;
        let (s, a) = query_exemplars(&client, &am, q, None).await;
        assert_eq!((s, &a), (ps, &p), "{q}");
        assert_eq!(s, 204, "{q}");
    }
    let (ps, p) = query_exemplars(&client, &prom, "rate(", None).await;
    let (s, a) = query_exemplars(&client, &am, "rate(", None).await;
    assert_eq!((s, &a["errorType"]), (ps, &p["errorType"]), "{a} {p}");
    assert_eq!((s, &a["errorType"]), (400, &json!("bad_data")));

    // The exemplar without a timestamp takes its first scrape's on both, and the
    // same exemplar at later scrapes is a repeat (Prometheus compares exemplars
    // without timestamps of their own without their times): one exemplar each, at
    // the time each system first scraped it.
    let now = now_ms();
    for base in [&prom, &am] {
        let (_, v) = query_exemplars(&client, base, "demo_jobs_total", None).await;
        let ex = v["data"][0]["exemplars"]
            .as_array()
            .unwrap_or_else(|| panic!("{base}: {v}"));
        assert_eq!(ex.len(), 1, "{base}: {v}");
        assert_eq!(
            ex[0]["labels"],
            json!({"trace_id": "no-timestamp"}),
            "{base}"
        );
        assert_eq!(ex[0]["value"], "1", "{base}");
        let t = (ex[0]["timestamp"].as_f64().unwrap() * 1000.0).round() as i64;
        assert!(t >= test_start && t <= now, "{base}: {v}");
    }
}
