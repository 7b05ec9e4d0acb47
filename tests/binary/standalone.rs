//! Standalone mode: `gpx_arrowmon serve` scrapes and answers the Prometheus HTTP API
//! without Grafana; `check-config` validates a scrape config. Prometheus's promtool
//! against it is in tests/external/standalone.rs.

use std::process::Command;
use std::time::Duration;

use crate::support::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn serve_scrapes_and_answers_the_prometheus_api() {
    let target = serve_metrics(
        "# TYPE requests_total counter\nrequests_total{path=\"/\"} 10\ntemperature 21.5\n",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("scrape.yml");
    std::fs::write(
        &cfg,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{target}']\n"),
    )
    .unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = spawn_serve(&cfg, &dir.path().join("data"), &listen);
    let base = format!("http://{listen}");
    arrowmon::scrape::tls::install_default_provider();
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        let url = format!("{base}{path}");
        async move {
            let r = client.get(&url).send().await.ok()?;
            let status = r.status().as_u16();
            Some((status, r.text().await.ok()?))
        }
    };
    let start = now_ms();
    eventually(Duration::from_secs(15), "first scrape", || {
        let get = &get;
        async move {
            let (_, body) = get("/api/v1/query?query=up".into()).await?;
            let v: Value = serde_json::from_str(&body).ok()?;
            (v["data"]["result"][0]["value"][1] == "1").then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let end = now_ms();

    let (status, body) = get(format!(
        "/api/v1/query_range?query=requests_total&start={}&end={}&step=1",
        start as f64 / 1000.0,
        end as f64 / 1000.0
    ))
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "matrix");
    let s = &v["data"]["result"][0];
    assert_eq!(s["metric"]["__name__"], "requests_total");
    assert_eq!(s["metric"]["path"], "/");
    assert_eq!(s["metric"]["job"], "app");
    assert_eq!(s["metric"]["instance"], target.as_str());
    let values = s["values"].as_array().unwrap();
    assert!(values.len() >= 2);
    assert!(values.iter().all(|p| p[1] == "10"));

    // POST form body, as Grafana's Prometheus datasource sends it.
    let r = client
        .post(format!("{base}/api/v1/query"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("query=temperature")
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "21.5");

    // A malformed query: 400 with the Prometheus error shape.
    let (status, body) = get("/api/v1/query?query=sum(".into()).await.unwrap();
    assert_eq!(status, 400);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "error");
    assert_eq!(v["errorType"], "bad_data");

    let (status, body) = get("/metrics".into()).await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("arrowmon_samples_appended_total"), "{body}");
    let (_, body) = get("/api/v1/label/__name__/values".into()).await.unwrap();
    assert!(
        body.contains("requests_total") && body.contains("scrape_duration_seconds"),
        "{body}"
    );

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            assert!(s.success(), "{s:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Without `--listen`, serve binds loopback only; `--web.listen-address` is
/// Prometheus's name for the same flag.
#[tokio::test(flavor = "multi_thread")]
async fn serve_listens_on_loopback_unless_told_otherwise() {
    let out = Command::new(binary())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let listen = help
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("--listen"))
        .take_while(|l| !l.trim_start().starts_with("--web.config.file"))
        .collect::<String>();
    assert!(
        listen.contains("[default: 127.0.0.1:9090]") && listen.contains("web.listen-address"),
        "{help}"
    );

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("scrape.yml");
    std::fs::write(&cfg, "scrape_configs: []\n").unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let _child = ChildGuard::spawn(
        "gpx_arrowmon serve --web.listen-address",
        Command::new(binary())
            .arg("serve")
            .arg("--config")
            .arg(&cfg)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--web.listen-address", &listen])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    arrowmon::scrape::tls::install_default_provider();
    let url = format!("http://{listen}/-/healthy");
    eventually(
        Duration::from_secs(15),
        "serve on --web.listen-address",
        || {
            let url = url.clone();
            async move {
                let r = reqwest::get(&url).await.ok()?;
                (r.status() == 200).then_some(())
            }
        },
    )
    .await;
}

#[test]
fn check_config_lists_targets_and_rejects_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    std::fs::write(&good, "scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:9100']\n").unwrap();
    let out = check_config(&good);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("http://127.0.0.1:9100/metrics"), "{text}");

    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "scrape_configs:\n  - job_name: node\n    metric_path: /x\n",
    )
    .unwrap();
    let out = check_config(&bad);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("metric_path") && err.contains("node") && err.contains("line 3"),
        "{err}"
    );
}

#[test]
fn check_config_checks_remote_write() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("rw.yml");
    std::fs::write(
        &good,
        "remote_write:\n  - url: http://127.0.0.1:9/api/v1/write\n    name: central\n    queue_config: {max_shards: 4}\n",
    )
    .unwrap();
    let out = check_config(&good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("remote_write \"central\" to http://127.0.0.1:9/api/v1/write (timeout 30s, shards 1-4, 500 samples a batch)"),
        "{text}"
    );
    // A secret file that is not there is found now, not at the first send.
    let missing = dir.path().join("missing.yml");
    std::fs::write(
        &missing,
        "remote_write:\n  - url: http://127.0.0.1:9/api/v1/write\n    bearer_token_file: no-such-token\n",
    )
    .unwrap();
    let out = check_config(&missing);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("error  reading") && text.contains("no-such-token"),
        "{text}"
    );
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "scrape_configs: []\nremote_write:\n  - url: http://127.0.0.1:9/w\n    queue_config:\n      max_shard: 4\n",
    )
    .unwrap();
    let out = check_config(&bad);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_shard") && err.contains("line 5"), "{err}");
}

/// Runs `gpx_arrowmon import openmetrics FILE --data-dir DIR`; its stdout.
fn import_openmetrics(file: &std::path::Path, data: &std::path::Path) -> String {
    let out = Command::new(binary())
        .args(["import", "openmetrics"])
        .arg(file)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn import_refuses_a_far_future_sample_unless_the_flag_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    let om = dir.path().join("wrong-clock.om");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ten_years = 10 * 365 * 24 * 3600;
    std::fs::write(
        &om,
        format!(
            "m 1 {}
m 2 {}
# EOF
",
            now - 60,
            now + ten_years
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let out = Command::new(binary())
        .args(["import", "openmetrics"])
        .arg(&om)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("wrong-clock.om")
            && err.contains("line 2")
            && err.contains("--allow-future-samples"),
        "{err}"
    );
    let out = Command::new(binary())
        .args(["import", "openmetrics", "--allow-future-samples"])
        .arg(&om)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("imported 2 samples"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn imported_history_is_served_after_restart() {
    arrowmon::scrape::tls::install_default_provider();
    let dir = tempfile::tempdir().unwrap();
    let om = dir.path().join("history.om");
    // 20 minutes of a counter at 15 s, offset 3 s from the minute grid.
    let mut body = String::from("# TYPE requests counter\n");
    let t0 = 1_700_000_003i64;
    for i in 0..80 {
        body.push_str(&format!(
            "requests_total{{job=\"app\"}} {} {}\n",
            i * 30,
            t0 + i * 15
        ));
    }
    body.push_str("# EOF\n");
    std::fs::write(&om, body).unwrap();
    let data = dir.path().join("data");
    let stdout = import_openmetrics(&om, &data);
    assert!(stdout.contains("imported 80 samples"), "{stdout}");
    // History from 2023 is written as a block, not left in the WAL.
    let blocks: Vec<_> = std::fs::read_dir(arrowmon::tenant::store_dir(&data).join("blocks"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('b'))
        .collect();
    assert_eq!(blocks.len(), 1, "{blocks:?}");

    let cfg = dir.path().join("empty.yml");
    std::fs::write(&cfg, "scrape_configs: []\n").unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut child = spawn_serve(&cfg, &data, &listen);
    let url = format!(
        "http://{listen}/api/v1/query?query=rate(requests_total[5m])&time={}",
        t0 + 600
    );
    let v: Value = eventually(Duration::from_secs(10), "serve answers", || {
        let url = url.clone();
        async move {
            let r = reqwest::get(&url).await.ok()?;
            serde_json::from_str(&r.text().await.ok()?).ok()
        }
    })
    .await;
    // A backfill while serve runs: its block is picked up at a maintenance pass.
    let om2 = dir.path().join("more.om");
    std::fs::write(
        &om2,
        format!("backfilled{{job=\"app\"}} 7 {}\n# EOF\n", t0 + 600),
    )
    .unwrap();
    import_openmetrics(&om2, &data);
    let url2 = format!(
        "http://{listen}/api/v1/query?query=backfilled&time={}",
        t0 + 600
    );
    let picked: Value = eventually(Duration::from_secs(30), "the new block is served", || {
        let url = url2.clone();
        async move {
            let r = reqwest::get(&url).await.ok()?;
            let v: Value = serde_json::from_str(&r.text().await.ok()?).ok()?;
            (v["data"]["result"][0]["value"][1] == "7").then_some(v)
        }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(picked["data"]["result"][0]["metric"]["job"], "app");
    assert_eq!(v["status"], "success", "{v}");
    let rate: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((rate - 2.0).abs() < 1e-9, "rate {rate}");
}

/// Queries nested deep enough to overflow a recursive evaluator's stack, as the
/// form-encoded body of a POST.
fn too_deep_query_bodies() -> Vec<String> {
    let mut plus = "1".to_string();
    for _ in 1..1_500 {
        plus.push_str("+1");
    }
    [
        plus,
        format!("{}1{}", "(".repeat(2_500), ")".repeat(2_500)),
        format!("{}vector(1){}", "sum(".repeat(1_000), ")".repeat(1_000)),
        format!("{}vector(1){}", "abs(".repeat(1_000), ")".repeat(1_000)),
    ]
    .into_iter()
    .map(|q| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("query", &q)
            .append_pair("time", "1000")
            .finish()
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_queries_get_errors_and_the_server_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("scrape.yml");
    std::fs::write(&cfg, "scrape_configs: []\n").unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let _child = spawn_serve(&cfg, &dir.path().join("data"), &listen);
    let base = format!("http://{listen}");
    arrowmon::scrape::tls::install_default_provider();
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(15), "server up", || {
        let url = format!("{base}/-/ready");
        let client = client.clone();
        async move { client.get(&url).send().await.ok().map(|_| ()) }
    })
    .await;
    let post = |body: String| {
        let client = client.clone();
        let url = format!("{base}/api/v1/query");
        async move {
            let r = client
                .post(&url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .expect("the server answers");
            let status = r.status().as_u16();
            let text = r.text().await.expect("a body");
            (status, serde_json::from_str::<Value>(&text).expect(&text))
        }
    };
    for body in too_deep_query_bodies() {
        let (status, v) = post(body).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["errorType"], "bad_data", "{v}");
        assert!(
            v["error"].as_str().unwrap().contains("nested too deeply"),
            "{v}"
        );
    }
    let get = |path: &str| {
        let client = client.clone();
        let url = format!("{base}{path}");
        async move {
            let r = client.get(&url).send().await.expect("the server answers");
            let status = r.status().as_u16();
            let text = r.text().await.expect("a body");
            (status, serde_json::from_str::<Value>(&text).expect(&text))
        }
    };
    // A non-ASCII time zone offset, once sliced mid-character.
    let (status, v) = get("/api/v1/query?query=1&time=2024-01-01T00:00:00%2Ba%C3%A900").await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        v["error"],
        "invalid parameter \"time\": cannot parse \"2024-01-01T00:00:00+aé00\" to a valid timestamp"
    );
    // A range whose width overflowed and wrapped to one point.
    let (status, v) = get("/api/v1/query_range?query=1&start=-1e300&end=1e300&step=15").await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        v["error"],
        "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
    );
    let (status, v) = get("/api/v1/query_range?query=1&start=0&end=60&step=1e300").await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        v["error"],
        "invalid parameter \"step\": cannot parse \"1e300\" to a valid duration. It overflows int64"
    );
    // Series selectors are parsed too: nesting past the limit is refused unparsed.
    let deep_selector = format!("{}x{}", "sum(".repeat(3_000), ")".repeat(3_000));
    let (status, v) = get(&format!("/api/v1/series?match[]={deep_selector}")).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("nested too deeply"),
        "{v}"
    );
    // Still serving.
    let (status, v) = get("/api/v1/query?query=1%2B1&time=1000").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["result"], serde_json::json!([1000, "2"]));
}

/// The peak resident memory of a process (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn heavy_queries_at_once_share_the_memory_limit_and_light_ones_still_answer() {
    const MB: u64 = 1 << 20;
    const LIMIT: u64 = 200 * MB;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("scrape.yml");
    std::fs::write(&cfg, "scrape_configs: []\n").unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let child = ChildGuard::spawn(
        "gpx_arrowmon serve",
        serve_command(&cfg, &dir.path().join("data"), &listen).args([
            "--query.max-memory",
            "200MB",
            "--query.max-concurrency",
            "20",
        ]),
    );
    let base = format!("http://{listen}");
    arrowmon::scrape::tls::install_default_provider();
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(15), "server up", || {
        let url = format!("{base}/-/ready");
        let client = client.clone();
        async move { client.get(&url).send().await.ok().map(|_| ()) }
    })
    .await;
    let query = |q: &'static str| {
        let client = client.clone();
        let url = format!("{base}/api/v1/query");
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", q)
            .append_pair("time", "1700000000")
            .finish();
        async move {
            let r = client
                .post(&url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .expect("the server answers");
            let status = r.status().as_u16();
            let text = r.text().await.expect("a body");
            (status, serde_json::from_str::<Value>(&text).expect(&text))
        }
    };
    let idle_rss = peak_rss(child.id());
    // Each holds a 2.6M-step subquery: about 80MB counted (60MB allocated) at its peak.
    let heavy = "max_over_time(vector(1)[30d:1s])";
    let handles: Vec<_> = (0..8).map(|_| tokio::spawn(query(heavy))).collect();
    // A light query answers while they run.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, v) = query("1+1").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["result"], serde_json::json!([1700000000, "2"]));
    let (mut answered, mut refused) = (0, 0);
    for h in handles {
        let (status, v) = h.await.unwrap();
        if status == 200 {
            assert_eq!(v["data"]["result"][0]["value"][1], "1", "{v}");
            answered += 1;
        } else {
            assert_eq!(status, 422, "{v}");
            assert_eq!(v["errorType"], "execution", "{v}");
            let e = v["error"].as_str().unwrap();
            assert!(
                e.contains("max_memory=200MB") && e.contains("raise it with --query.max-memory"),
                "{e}"
            );
            refused += 1;
        }
    }
    assert!(answered >= 1, "no heavy query answered");
    assert!(refused >= 1, "every heavy query answered within 200MB");
    let peak = peak_rss(child.id());
    assert!(
        peak < idle_rss + LIMIT + 60 * MB,
        "peak RSS {}MB (idle {}MB) with a 200MB query limit",
        peak / MB,
        idle_rss / MB
    );
    // One query may hold half the limit: this one needs more and fails alone.
    let (status, v) = query("max_over_time(vector(1)[90d:1s])").await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("one query's share"),
        "{v}"
    );
    // Still serving, and every query has given its memory back.
    let (status, v) = query("1+1").await;
    assert_eq!(status, 200, "{v}");
    let r = client.get(format!("{base}/metrics")).send().await.unwrap();
    let metrics = r.text().await.unwrap();
    for (name, want) in [
        ("arrowmon_query_memory_bytes", 0.0),
        ("arrowmon_query_memory_limit_bytes", LIMIT as f64),
        ("arrowmon_query_memory_refused_total", (refused + 1) as f64),
        ("prometheus_engine_queries_concurrent_max", 20.0),
    ] {
        let line = format!("{name}{{tenant=\"standalone\"}} ");
        let got: Option<f64> = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|v| v.parse().ok());
        assert_eq!(got, Some(want), "{name}\n{metrics}");
    }
}
