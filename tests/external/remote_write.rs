//! The differential test of remote write receive: a real `prometheus` (Debian
//! package, 2.42) scrapes a target served by the test every second and remote-writes
//! everything it stores to `gpx_arrowmon serve --enable-remote-write-receiver`;
//! arrowmon must then hold the same series, the same raw samples and the same
//! exemplars as that Prometheus's own TSDB and exemplar storage over the same range,
//! compared through both query APIs (`/api/v1/series`, a raw `{job="rw"}[…]`
//! instant query and `/api/v1/query_exemplars`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use serde_json::Value;

/// The target, in OpenMetrics: a counter that grows at each scrape (one of its
/// series with an exemplar, which takes the scrape's timestamp), a gauge, a
/// histogram, and a series that comes and goes (so Prometheus sends staleness
/// markers for it).
fn exposition(n: u64) -> String {
    let flapping = if (n / 3) % 2 == 0 {
        format!("rw_flapping{{phase=\"even\"}} {n}\n")
    } else {
        String::new()
    };
    format!(
        "# TYPE rw_requests counter\n\
         rw_requests_total{{path=\"/a\"}} {n} # {{trace_id=\"t{n}\"}} {n}\n\
         rw_requests_total{{path=\"/b\"}} {b}\n\
         # TYPE rw_temperature gauge\n\
         rw_temperature {t}\n\
         # TYPE rw_latency_seconds histogram\n\
         rw_latency_seconds_bucket{{le=\"0.1\"}} {n}\n\
         rw_latency_seconds_bucket{{le=\"+Inf\"}} {b}\n\
         rw_latency_seconds_sum {s}\n\
         rw_latency_seconds_count {b}\n\
         {flapping}\
         # EOF\n",
        b = 2 * n,
        t = 20.0 + (n % 7) as f64 * 0.25,
        s = n as f64 * 0.0625,
    )
}

/// `base`'s answer at `path` with `query` (form-encoded pairs), as JSON `data`.
async fn data(client: &reqwest::Client, base: &str, path: &str, query: &[(&str, &str)]) -> Value {
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (k, v) in query {
        form.append_pair(k, v);
    }
    let url = format!("{base}{path}?{}", form.finish());
    let v = http_get_json(client, &url)
        .await
        .unwrap_or_else(|| panic!("no JSON answer from {url}"));
    assert_eq!(v["status"], "success", "{url}: {v}");
    v["data"].clone()
}

/// The elements of a JSON array as sorted compact strings.
fn sorted(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(Value::to_string)
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_receive_holds_what_prometheus_stores() {
    let client = http_client();
    let scrapes = Arc::new(AtomicU64::new(0));
    let counter = scrapes.clone();
    let target = exporter_as(OPENMETRICS, move || {
        exposition(counter.fetch_add(1, Ordering::Relaxed))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let am_listen = format!("127.0.0.1:{}", free_port());
    let prom_listen = format!("127.0.0.1:{}", free_port());

    let am_config = dir.path().join("arrowmon.yml");
    std::fs::write(&am_config, "scrape_configs: []\n").unwrap();
    let mut serve = serve_command(&am_config, &dir.path().join("arrowmon-data"), &am_listen);
    serve.arg("--enable-remote-write-receiver");
    serve.stderr(std::fs::File::create(dir.path().join("arrowmon.log")).unwrap());
    let _am = ChildGuard::spawn("gpx_arrowmon serve", &mut serve);

    let prom_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: rw\n    static_configs:\n      - targets: ['{target}']\n\
             remote_write:\n  - url: http://{am_listen}/api/v1/write\n    send_exemplars: true\n    queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n      max_backoff: 1s\n"
        ),
    )
    .unwrap();
    let _prom = start_prometheus(
        &prom_config,
        &dir.path().join("prometheus-data"),
        &prom_listen,
        &dir.path().join("prometheus.log"),
        &["--enable-feature=exemplar-storage"],
    );
    let prom = format!("http://{prom_listen}");
    let am = format!("http://{am_listen}");

    // Samples arrive at arrowmon once Prometheus has scraped and sent them.
    eventually(
        Duration::from_secs(60),
        "remote-written samples in arrowmon",
        || async {
            let v = http_get_json(
                &client,
                &format!("{am}/api/v1/query?query=up%7Bjob%3D%22rw%22%7D"),
            )
            .await?;
            (v["data"]["result"].as_array()?.len() == 1).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    // The compared range ends a little in the past, half a scrape interval from any
    // scrape's timestamp (so no sample sits on a range boundary, where 2.42's
    // left-closed ranges and arrowmon's left-open ones, as Prometheus 3's, differ).
    let latest = |base: String| {
        let client = client.clone();
        async move {
            let v = http_get_json(
                &client,
                &format!("{base}/api/v1/query?query=timestamp(up%7Bjob%3D%22rw%22%7D)"),
            )
            .await?;
            let t: f64 = v["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
            Some((t * 1000.0).round() as i64)
        }
    };
    let end_ms = latest(prom.clone())
        .await
        .expect("Prometheus's latest scrape")
        - 1500;
    let start_ms = end_ms - 10_000;
    // Then wait until arrowmon has received everything Prometheus stored up to then.
    eventually(
        Duration::from_secs(30),
        "arrowmon to receive samples past the compared range",
        || async { (latest(am.clone()).await? > end_ms + 1000).then_some(()) },
    )
    .await;

    let start = format!("{:.3}", start_ms as f64 / 1000.0);
    let end = format!("{:.3}", end_ms as f64 / 1000.0);
    let series_q = [
        ("match[]", "{job=\"rw\"}"),
        ("start", start.as_str()),
        ("end", end.as_str()),
    ];
    let p = data(&client, &prom, "/api/v1/series", &series_q).await;
    let a = data(&client, &am, "/api/v1/series", &series_q).await;
    assert!(
        sorted(&p).len() >= 11,
        "the target's series and Prometheus's own (up, scrape_*) in Prometheus: {p}"
    );
    assert_eq!(
        sorted(&a),
        sorted(&p),
        "series: arrowmon (left) and prometheus (right) differ"
    );

    // Every raw sample in (start, end]; rw_flapping's gaps end with staleness
    // markers, which range selectors leave out on both sides.
    let raw_q = [("query", "{job=\"rw\"}[10s]"), ("time", end.as_str())];
    let p = data(&client, &prom, "/api/v1/query", &raw_q).await;
    let a = data(&client, &am, "/api/v1/query", &raw_q).await;
    assert_eq!(p["resultType"], "matrix", "{p}");
    let samples: usize = p["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["values"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(
        samples >= 80,
        "ten seconds of 1s scrapes in Prometheus: {p}"
    );
    assert_eq!(
        sorted(&a["result"]),
        sorted(&p["result"]),
        "raw samples: arrowmon (left) and prometheus (right) differ"
    );

    // The exemplars Prometheus kept, one a scrape, came along with the samples.
    let ex_q = [
        ("query", "rw_requests_total"),
        ("start", start.as_str()),
        ("end", end.as_str()),
    ];
    let p = data(&client, &prom, "/api/v1/query_exemplars", &ex_q).await;
    let a = data(&client, &am, "/api/v1/query_exemplars", &ex_q).await;
    let kept = p[0]["exemplars"].as_array().map_or(0, Vec::len);
    assert!(kept >= 8, "ten seconds of exemplars in Prometheus: {p}");
    assert_eq!(
        a, p,
        "exemplars: arrowmon (left) and prometheus (right) differ"
    );

    // Nothing was refused on the way.
    let metrics = http_get(&client, &format!("{am}/metrics")).await.unwrap().1;
    for counter in [
        "arrowmon_remote_write_samples_refused_total{tenant=\"standalone\"}",
        "arrowmon_remote_write_requests_malformed_total{tenant=\"standalone\"}",
    ] {
        assert_eq!(exposition_value(&metrics, counter), Some(0.0), "{counter}");
    }
}
