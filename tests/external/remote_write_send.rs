//! Remote write, the sending side, against real receivers on loopback: a real
//! `prometheus` (Debian package, 2.42) with `--web.enable-remote-write-receiver`
//! and a real `victoria-metrics` (`/api/v1/write`). `gpx_arrowmon serve` scrapes a
//! target served by the test every second and sends everything it stores, with
//! external labels, to both; every series and every sample it stored must be
//! found in each receiver. Then the failures: a receiver down for two minutes while
//! arrowmon is killed with SIGKILL and restarted (nothing may be missing
//! afterwards, and the backlog must show in the metrics and drain), and a receiver
//! that refuses every batch with a 400 (dropped, counted, and the queue moves on).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use arrowmon::proto::prometheus::WriteRequest;
use serde_json::Value;

/// The target: a counter, a float gauge, a histogram and a series that comes and
/// goes (so staleness markers are written and sent).
fn exposition(n: u64) -> String {
    let flapping = if (n / 4) % 2 == 0 {
        format!("rws_flapping{{phase=\"even\"}} {n}\n")
    } else {
        String::new()
    };
    format!(
        "# TYPE rws_requests counter\n\
         rws_requests_total{{path=\"/a\"}} {n}\n\
         rws_requests_total{{path=\"/b\"}} {b}\n\
         # TYPE rws_temperature gauge\n\
         rws_temperature {t}\n\
         # TYPE rws_latency_seconds histogram\n\
         rws_latency_seconds_bucket{{le=\"0.1\"}} {n}\n\
         rws_latency_seconds_bucket{{le=\"+Inf\"}} {b}\n\
         rws_latency_seconds_sum {s}\n\
         rws_latency_seconds_count {b}\n\
         {flapping}\
         # EOF\n",
        b = 2 * n,
        t = 20.0 + (n % 7) as f64 * 0.1,
        s = n as f64 * 0.0625,
    )
}

async fn counting_target() -> String {
    let scrapes = Arc::new(AtomicU64::new(0));
    exporter_as(OPENMETRICS, move || {
        exposition(scrapes.fetch_add(1, Ordering::Relaxed))
    })
    .await
}

const EXTERNAL: [(&str, &str); 2] = [("cluster", "lab"), ("__replica__", "a")];

/// arrowmon's config: the target every second, external labels, and a
/// `remote_write` entry per URL with short deadlines and backoffs.
fn arrowmon_config(target: &str, urls: &[String]) -> String {
    let mut yaml = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  external_labels:\n    cluster: lab\n    __replica__: a\n\
         scrape_configs:\n  - job_name: rws\n    static_configs:\n      - targets: ['{target}']\n\
         remote_write:\n"
    );
    for (i, url) in urls.iter().enumerate() {
        yaml.push_str(&format!(
            "  - url: {url}\n    name: receiver-{i}\n    queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n      max_backoff: 2s\n"
        ));
    }
    yaml
}

/// A series' labels as one comparable key.
fn key(metric: &Value) -> String {
    let m: BTreeMap<String, String> = metric
        .as_object()
        .unwrap_or_else(|| panic!("labels: {metric}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    serde_json::to_string(&m).unwrap()
}

/// Every raw sample (not staleness markers) of `{job="rws"}` in `(end − 10m, end]`
/// from a Prometheus-API server, by series, each `(ms, value)`; `external` adds
/// labels the series lacks (what arrowmon sends).
async fn raw_samples(
    client: &reqwest::Client,
    base: &str,
    end_ms: i64,
    external: &[(&str, &str)],
) -> BTreeMap<String, Vec<(i64, f64)>> {
    let url = format!(
        "{base}/api/v1/query?query=%7Bjob%3D%22rws%22%7D%5B10m%5D&time={:.3}",
        end_ms as f64 / 1e3
    );
    let v = http_get_json(client, &url)
        .await
        .unwrap_or_else(|| panic!("no answer from {url}"));
    assert_eq!(v["status"], "success", "{url}: {v}");
    let mut out = BTreeMap::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let mut metric = s["metric"].clone();
        for (k, val) in external {
            if metric.get(*k).is_none() {
                metric[*k] = Value::String(val.to_string());
            }
        }
        let samples: Vec<(i64, f64)> = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let t = (p[0].as_f64().unwrap() * 1e3).round() as i64;
                (t, p[1].as_str().unwrap().parse::<f64>().unwrap())
            })
            .collect();
        out.insert(key(&metric), samples);
    }
    out
}

/// The same from VictoriaMetrics' `/api/v1/export` (raw samples, JSON lines), its
/// NaNs (staleness markers) left out.
async fn vm_raw_samples(
    client: &reqwest::Client,
    base: &str,
    end_ms: i64,
) -> BTreeMap<String, Vec<(i64, f64)>> {
    let _ = client
        .get(format!("{base}/internal/force_flush"))
        .send()
        .await;
    let url = format!(
        "{base}/api/v1/export?match[]=%7Bjob%3D%22rws%22%7D&start={:.3}&end={:.3}",
        (end_ms - 600_000) as f64 / 1e3,
        end_ms as f64 / 1e3
    );
    let (_, text) = http_get(client, &url)
        .await
        .unwrap_or_else(|| panic!("no answer from {url}"));
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let samples: Vec<(i64, f64)> = v["timestamps"]
            .as_array()
            .unwrap()
            .iter()
            .zip(v["values"].as_array().unwrap())
            .filter_map(|(t, val)| {
                let val = match val {
                    Value::Number(n) => n.as_f64()?,
                    Value::String(s) => s.parse::<f64>().ok()?,
                    _ => return None,
                };
                (!val.is_nan()).then_some((t.as_i64()?, val))
            })
            .collect();
        out.insert(key(&v["metric"]), samples);
    }
    out
}

/// The newest sample time arrowmon holds for the target's `up`.
async fn latest_ms(client: &reqwest::Client, base: &str) -> Option<i64> {
    let v = http_get_json(
        client,
        &format!("{base}/api/v1/query?query=timestamp(up%7Bjob%3D%22rws%22%7D)"),
    )
    .await?;
    let t: f64 = v["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
    Some((t * 1e3).round() as i64)
}

/// A value of arrowmon's `/metrics` for the queue named `remote`.
async fn queue_metric(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    remote: &str,
) -> Option<f64> {
    let (_, text) = http_get(client, &format!("{base}/metrics")).await?;
    text.lines()
        .find(|l| {
            l.starts_with(&format!("{name}{{")) && l.contains(&format!("remote_name=\"{remote}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `gpx_arrowmon serve` on `listen` with `yaml` as its config, its data in
/// `dir/arrowmon-data` and its log in `dir/<log>`, and `extra` flags; returned
/// once it has scraped the target.
async fn start_arrowmon(
    client: &reqwest::Client,
    dir: &Path,
    listen: &str,
    yaml: &str,
    log: &str,
    extra: &[&str],
) -> ChildGuard {
    let config = dir.join("arrowmon.yml");
    std::fs::write(&config, yaml).unwrap();
    let mut serve = serve_command(&config, &dir.join("arrowmon-data"), listen);
    serve.args(extra);
    serve.stderr(std::fs::File::create(dir.join(log)).unwrap());
    let guard = ChildGuard::spawn("gpx_arrowmon serve", &mut serve);
    let base = format!("http://{listen}");
    eventually(Duration::from_secs(60), "arrowmon scraping", || {
        latest_ms(client, &base)
    })
    .await;
    guard
}

/// Waits (up to a minute) until queue `receiver-0`'s `name` passes `min`; its value then.
async fn metric_above(client: &reqwest::Client, am: &str, name: &str, min: f64) -> f64 {
    eventually(
        Duration::from_secs(60),
        &format!("{name} above {min}"),
        || async {
            let v = queue_metric(client, am, name, "receiver-0").await?;
            (v > min).then_some(v)
        },
    )
    .await
}

fn start_receiver_prometheus(dir: &Path, listen: &str, tag: &str) -> ChildGuard {
    let config = dir.join("receiver.yml");
    std::fs::write(&config, "scrape_configs: []\n").unwrap();
    start_prometheus(
        &config,
        &dir.join("receiver-data"),
        listen,
        &dir.join(format!("receiver-{tag}.log")),
        &["--web.enable-remote-write-receiver"],
    )
}

fn start_victoria_metrics(dir: &Path, listen: &str) -> ChildGuard {
    let log = std::fs::File::create(dir.join("vm.log")).unwrap();
    ChildGuard::spawn(
        "victoria-metrics",
        std::process::Command::new("victoria-metrics")
            .arg(format!("-httpListenAddr={listen}"))
            .arg(format!(
                "-storageDataPath={}",
                dir.join("vm-data").display()
            ))
            .arg("-retentionPeriod=1y")
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache")
            .stdout(std::process::Stdio::null())
            .stderr(log),
    )
}

async fn ready(client: &reqwest::Client, url: &str, what: &str) {
    eventually(Duration::from_secs(60), what, || async {
        let r = client.get(url).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
}

/// Waits until queue `remote` has sent past `end_ms` and holds nothing.
async fn drained(client: &reqwest::Client, am: &str, remote: &str, end_ms: i64, within: Duration) {
    eventually(
        within,
        &format!("queue {remote} to send past {end_ms}"),
        || async {
            let sent = queue_metric(
                client,
                am,
                "prometheus_remote_storage_queue_highest_sent_timestamp_seconds",
                remote,
            )
            .await?;
            let pending = queue_metric(
                client,
                am,
                "prometheus_remote_storage_samples_pending",
                remote,
            )
            .await?;
            (sent * 1e3 > end_ms as f64 && pending == 0.0).then_some(())
        },
    )
    .await;
}

/// Asserts every series and sample of `stored` is in `got` (values equal, or
/// within `tolerance` relative).
fn assert_holds(
    stored: &BTreeMap<String, Vec<(i64, f64)>>,
    got: &BTreeMap<String, Vec<(i64, f64)>>,
    tolerance: f64,
    receiver: &str,
) {
    assert!(
        stored.len() >= 9,
        "the target's series and up/scrape_*: {stored:?}"
    );
    for (series, samples) in stored {
        let Some(have) = got.get(series) else {
            panic!(
                "{receiver} lacks the series {series}; it has {:?}",
                got.keys().collect::<Vec<_>>()
            );
        };
        let have: BTreeMap<i64, f64> = have.iter().copied().collect();
        for (t, v) in samples {
            let Some(h) = have.get(t) else {
                panic!(
                    "{receiver} lacks {series} at {t} (value {v}); {} of {} samples there",
                    have.len(),
                    samples.len()
                );
            };
            let close = h == v || (h - v).abs() <= tolerance * v.abs().max(1e-300);
            assert!(
                close,
                "{receiver}: {series} at {t}: {h}, arrowmon stored {v}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_reaches_prometheus_and_victoriametrics_with_every_sample() {
    let client = http_client();
    let target = counting_target().await;
    let dir = tempfile::tempdir().unwrap();
    let prom_listen = format!("127.0.0.1:{}", free_port());
    let vm_listen = format!("127.0.0.1:{}", free_port());
    let am_listen = format!("127.0.0.1:{}", free_port());
    let _prom = start_receiver_prometheus(dir.path(), &prom_listen, "1");
    let _vm = start_victoria_metrics(dir.path(), &vm_listen);
    let prom = format!("http://{prom_listen}");
    let vm = format!("http://{vm_listen}");
    ready(
        &client,
        &format!("{prom}/-/ready"),
        "the receiving Prometheus",
    )
    .await;
    ready(&client, &format!("{vm}/health"), "VictoriaMetrics").await;

    let yaml = arrowmon_config(
        &target,
        &[format!("{prom}/api/v1/write"), format!("{vm}/api/v1/write")],
    );
    let _am = start_arrowmon(&client, dir.path(), &am_listen, &yaml, "arrowmon.log", &[]).await;
    let am = format!("http://{am_listen}");

    tokio::time::sleep(Duration::from_secs(40)).await;
    let end_ms = latest_ms(&client, &am).await.unwrap();
    drained(&client, &am, "receiver-0", end_ms, Duration::from_secs(30)).await;
    drained(&client, &am, "receiver-1", end_ms, Duration::from_secs(30)).await;

    let stored = raw_samples(&client, &am, end_ms, &EXTERNAL).await;
    let samples: usize = stored.values().map(Vec::len).sum();
    assert!(samples >= 9 * 35, "40 s of 1 s scrapes stored: {samples}");
    let in_prom = raw_samples(&client, &prom, end_ms, &[]).await;
    assert_holds(&stored, &in_prom, 0.0, "Prometheus");
    assert_eq!(
        in_prom.len(),
        stored.len(),
        "no series but arrowmon's in Prometheus"
    );
    // VictoriaMetrics keeps values as decimals of 12+ significant digits.
    let in_vm = vm_raw_samples(&client, &vm, end_ms).await;
    assert_holds(&stored, &in_vm, 1e-12, "VictoriaMetrics");

    for remote in ["receiver-0", "receiver-1"] {
        for (name, want_zero) in [
            ("prometheus_remote_storage_samples_failed_total", true),
            ("prometheus_remote_storage_samples_dropped_total", true),
            ("prometheus_remote_storage_samples_total", false),
            ("prometheus_remote_storage_bytes_total", false),
            ("prometheus_remote_storage_shards", false),
        ] {
            let v = queue_metric(&client, &am, name, remote)
                .await
                .unwrap_or_else(|| panic!("{name} of {remote}"));
            assert_eq!(v == 0.0, want_zero, "{name}{{remote_name={remote}}} = {v}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_loses_nothing_through_an_outage_and_a_kill_9() {
    let client = http_client();
    let target = counting_target().await;
    let dir = tempfile::tempdir().unwrap();
    let prom_listen = format!("127.0.0.1:{}", free_port());
    let am_listen = format!("127.0.0.1:{}", free_port());
    let prom = format!("http://{prom_listen}");
    let am = format!("http://{am_listen}");
    let receiver = start_receiver_prometheus(dir.path(), &prom_listen, "1");
    ready(
        &client,
        &format!("{prom}/-/ready"),
        "the receiving Prometheus",
    )
    .await;

    let yaml = arrowmon_config(&target, &[format!("{prom}/api/v1/write")]);
    let arrowmon = start_arrowmon(
        &client,
        dir.path(),
        &am_listen,
        &yaml,
        "arrowmon-1.log",
        &[],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(8)).await;

    // The receiver goes away for two minutes.
    drop(receiver);
    let outage = std::time::Instant::now();
    // Retries while the receiver is down.
    metric_above(
        &client,
        &am,
        "prometheus_remote_storage_samples_retried_total",
        0.0,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    // Killed without warning in the middle of it, and started again.
    let mut arrowmon = arrowmon.stop_signal("KILL");
    arrowmon.kill().unwrap();
    let _ = arrowmon.wait();
    drop(arrowmon);
    let _arrowmon = start_arrowmon(
        &client,
        dir.path(),
        &am_listen,
        &yaml,
        "arrowmon-2.log",
        &[],
    )
    .await;
    // The backlog shows: the samples read again from the WAL wait in the shards
    // or are being retried, and the lag grows.
    eventually(
        Duration::from_secs(60),
        "the backlog in the metrics",
        || async {
            let lag = queue_metric(
                &client,
                &am,
                "arrowmon_remote_storage_lag_seconds",
                "receiver-0",
            )
            .await?;
            let pending = queue_metric(
                &client,
                &am,
                "prometheus_remote_storage_samples_pending",
                "receiver-0",
            )
            .await?;
            (pending > 0.0 && lag > 10.0).then_some(())
        },
    )
    .await;
    let rest = Duration::from_secs(120).saturating_sub(outage.elapsed());
    tokio::time::sleep(rest).await;
    let _receiver = start_receiver_prometheus(dir.path(), &prom_listen, "2");
    ready(
        &client,
        &format!("{prom}/-/ready"),
        "the receiving Prometheus again",
    )
    .await;

    tokio::time::sleep(Duration::from_secs(5)).await;
    let end_ms = latest_ms(&client, &am).await.unwrap();
    drained(&client, &am, "receiver-0", end_ms, Duration::from_secs(90)).await;
    let lag = queue_metric(
        &client,
        &am,
        "arrowmon_remote_storage_lag_seconds",
        "receiver-0",
    )
    .await
    .unwrap();
    assert!(lag < 10.0, "the lag drained: {lag}");

    let stored = raw_samples(&client, &am, end_ms, &EXTERNAL).await;
    let samples: usize = stored.values().map(Vec::len).sum();
    assert!(
        samples >= 9 * 130,
        "two and a half minutes of 1 s scrapes stored: {samples}"
    );
    let in_prom = raw_samples(&client, &prom, end_ms, &[]).await;
    assert_holds(&stored, &in_prom, 0.0, "Prometheus after the outage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_refusing_every_batch_has_them_dropped_and_counted() {
    use axum::routing::post;
    let client = http_client();
    let target = counting_target().await;
    let requests = Arc::new(AtomicU64::new(0));
    let seen = requests.clone();
    let app = axum::Router::new().route(
        "/api/v1/write",
        post(move || {
            seen.fetch_add(1, Ordering::Relaxed);
            async {
                (
                    axum::http::StatusCode::BAD_REQUEST,
                    "out of bounds\nsecond line",
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refuser = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let dir = tempfile::tempdir().unwrap();
    let am_listen = format!("127.0.0.1:{}", free_port());
    let am = format!("http://{am_listen}");
    let yaml = arrowmon_config(&target, &[format!("http://{refuser}/api/v1/write")]);
    let _am = start_arrowmon(&client, dir.path(), &am_listen, &yaml, "arrowmon.log", &[]).await;
    let log = dir.path().join("arrowmon.log");

    let failed = "prometheus_remote_storage_samples_failed_total";
    let first = metric_above(&client, &am, failed, 0.0).await;
    let requests_then = requests.load(Ordering::Relaxed);
    // The queue keeps moving: later batches are sent (and refused) too, nothing is
    // retried, and nothing piles up.
    let later = metric_above(&client, &am, failed, first).await;
    assert!(later > first);
    assert!(requests.load(Ordering::Relaxed) > requests_then);
    let retried = queue_metric(
        &client,
        &am,
        "prometheus_remote_storage_samples_retried_total",
        "receiver-0",
    )
    .await
    .unwrap();
    assert_eq!(retried, 0.0, "a 400 is not retried");
    let pending = queue_metric(
        &client,
        &am,
        "prometheus_remote_storage_samples_pending",
        "receiver-0",
    )
    .await
    .unwrap();
    assert!(pending < 100.0, "nothing piles up: {pending}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("400 Bad Request: out of bounds") && !text.contains("second line"),
        "the receiver's answer is logged, its first line: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_past_a_block_cut_has_the_lost_span_logged_and_counted() {
    let client = http_client();
    let target = counting_target().await;
    let dir = tempfile::tempdir().unwrap();
    let prom_listen = format!("127.0.0.1:{}", free_port());
    let am_listen = format!("127.0.0.1:{}", free_port());
    let prom = format!("http://{prom_listen}");
    let am = format!("http://{am_listen}");
    // Nothing listens at the receiver's address for now, and the queue holds only
    // a few samples, so reading the WAL stops while the receiver is away.
    let yaml = arrowmon_config(&target, &[format!("{prom}/api/v1/write")]).replace(
        "      batch_send_deadline: 1s\n",
        "      batch_send_deadline: 1s\n      capacity: 20\n      max_samples_per_send: 10\n",
    );
    assert!(yaml.contains("capacity: 20"));
    // A block cut every 10 s truncates the WAL behind it.
    let extra = ["--block-range", "10s"];
    let _am = start_arrowmon(
        &client,
        dir.path(),
        &am_listen,
        &yaml,
        "arrowmon.log",
        &extra,
    )
    .await;
    let log = dir.path().join("arrowmon.log");
    // Several cuts (and WAL truncations) while the receiver is away.
    tokio::time::sleep(Duration::from_secs(40)).await;
    let _receiver = start_receiver_prometheus(dir.path(), &prom_listen, "1");
    ready(
        &client,
        &format!("{prom}/-/ready"),
        "the receiving Prometheus",
    )
    .await;
    // Reading on, the queue finds the segments it had not read deleted, and says so.
    metric_above(
        &client,
        &am,
        "arrowmon_remote_storage_wal_segments_skipped_total",
        0.0,
    )
    .await;
    let text = eventually(Duration::from_secs(60), "the lost span logged", || async {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("the receiver lacks the samples between these times")
            .then_some(text)
    })
    .await;
    assert!(
        text.contains("deleted before they were sent") && text.contains("first_segment"),
        "the skipped segments are named: {text}"
    );
    // And sending goes on from there.
    let end_ms = latest_ms(&client, &am).await.unwrap();
    drained(&client, &am, "receiver-0", end_ms, Duration::from_secs(60)).await;
}

/// What a recording receiver saw: each request's headers of interest and body.
type Received = Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, WriteRequest)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_carry_remote_write_1_0_headers_sorted_labels_and_metadata() {
    use prost::Message;
    let client = http_client();
    let target = counting_target().await;
    let received: Received = Arc::default();
    let seen = received.clone();
    let app = axum::Router::new().route(
        "/api/v1/write",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let raw = snap::raw::Decoder::new()
                        .decompress_vec(&body)
                        .expect("a snappy block");
                    let req = WriteRequest::decode(raw.as_slice()).expect("a WriteRequest");
                    seen.lock().unwrap().push((headers, req));
                    axum::http::StatusCode::NO_CONTENT
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let dir = tempfile::tempdir().unwrap();
    let am_listen = format!("127.0.0.1:{}", free_port());
    let yaml = arrowmon_config(&target, &[format!("http://{sink}/api/v1/write")])
        + "    metadata_config:\n      send_interval: 2s\n";
    let _am = start_arrowmon(&client, dir.path(), &am_listen, &yaml, "arrowmon.log", &[]).await;

    // Metadata comes every send_interval, in requests of its own.
    let families = eventually(
        Duration::from_secs(30),
        "metadata at the receiver",
        || async {
            let got = received.lock().unwrap();
            let m: BTreeMap<String, i32> = got
                .iter()
                .flat_map(|(_, r)| r.metadata.iter())
                .map(|m| (m.metric_family_name.clone(), m.r#type))
                .collect();
            (m.len() >= 3).then_some(m)
        },
    )
    .await;
    // COUNTER 1, GAUGE 2, HISTOGRAM 3, as remote.proto numbers them.
    assert_eq!(families.get("rws_requests"), Some(&1), "{families:?}");
    assert_eq!(families.get("rws_temperature"), Some(&2), "{families:?}");
    assert_eq!(
        families.get("rws_latency_seconds"),
        Some(&3),
        "{families:?}"
    );

    let got = received.lock().unwrap();
    let samples: Vec<_> = got
        .iter()
        .filter(|(_, r)| !r.timeseries.is_empty())
        .collect();
    assert!(!samples.is_empty(), "sample requests arrived");
    for (headers, req) in &samples {
        for (name, want) in [
            ("content-encoding", "snappy"),
            ("content-type", "application/x-protobuf"),
            ("x-prometheus-remote-write-version", "0.1.0"),
        ] {
            assert_eq!(
                headers.get(name).and_then(|v| v.to_str().ok()),
                Some(want),
                "{name}"
            );
        }
        assert!(req.metadata.is_empty(), "samples and metadata travel apart");
        for ts in &req.timeseries {
            let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            assert_eq!(names, sorted, "labels sorted");
            assert!(
                names.contains(&"__name__") && names.contains(&"cluster"),
                "{names:?}"
            );
            let times: Vec<i64> = ts.samples.iter().map(|s| s.timestamp).collect();
            assert!(
                times.windows(2).all(|w| w[0] < w[1]),
                "a series' samples in order: {times:?}"
            );
        }
    }
}
