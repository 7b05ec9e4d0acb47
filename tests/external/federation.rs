//! Federation: `gpx_arrowmon serve` and a real `prometheus` (Debian package, 2.42)
//! scrape the same target with the same config (external labels included); their
//! `/federate` answers must hold the same families, series and values (the
//! timestamps are each system's own scrape times). Then a second, central
//! Prometheus scrapes arrowmon's `/federate` as a federation job and must hold the
//! latest values arrowmon has.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::*;

/// The target: a gauge family with labels that need escaping, special values, a
/// counter and a series whose `instance` label the relabeling removes (so the
/// external `instance=""` shows), and one that goes stale.
const BODY: &str = "# TYPE fed_gauge gauge\n\
fed_gauge{kind=\"plain\"} 1.5\n\
fed_gauge{kind=\"quote\\\"back\\\\slash\"} -2e-07\n\
fed_gauge{kind=\"inf\"} +Inf\n\
fed_gauge{kind=\"nan\"} NaN\n\
fed_gauge{kind=\"zero\"} -0\n\
fed_gauge{kind=\"big\"} 123456789012\n\
# TYPE fed_requests_total counter\n\
fed_requests_total{code=\"200\",cluster=\"own\"} 42\n\
fed_requests_total{code=\"500\"} 1\n";

/// Series whose values are each system's own measurement.
const OWN_MEASUREMENTS: [&str; 1] = ["scrape_duration_seconds"];

/// The samples of a `/federate` body without their timestamps, and its `# TYPE`
/// lines, in order.
fn without_timestamps(body: &str) -> (Vec<String>, BTreeSet<String>) {
    let mut types = Vec::new();
    let mut samples = BTreeSet::new();
    for line in body.lines() {
        let name = line.trim_start_matches("# TYPE ");
        if OWN_MEASUREMENTS
            .iter()
            .any(|m| name.starts_with(&format!("{m} ")) || name.starts_with(&format!("{m}{{")))
        {
            continue;
        }
        if line.starts_with("# TYPE ") {
            types.push(line.to_string());
        } else if !line.is_empty() && !line.starts_with('#') {
            let (sample, ts) = line.rsplit_once(' ').expect("a timestamp");
            assert!(ts.parse::<i64>().is_ok(), "{line}");
            samples.insert(sample.to_string());
        }
    }
    (types, samples)
}

async fn try_federate(
    client: &reqwest::Client,
    base: &str,
    selectors: &[&str],
) -> Option<(u16, String)> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    for s in selectors {
        form.append_pair("match[]", s);
    }
    http_get(client, &format!("{base}/federate?{}", form.finish())).await
}

async fn federate(client: &reqwest::Client, base: &str, selectors: &[&str]) -> (u16, String) {
    try_federate(client, base, selectors)
        .await
        .unwrap_or_else(|| panic!("no answer from {base}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federate_equals_prometheus_and_a_central_prometheus_scrapes_it() {
    let client = http_client();
    let target = serve_metrics(BODY).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    // `instance` is taken off the 500s, so that the external `instance=""` shows.
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  external_labels:\n    cluster: edge\n    region: eu\n\
             scrape_configs:\n  - job_name: fed\n    static_configs:\n      - targets: ['{target}']\n\
             \x20   metric_relabel_configs:\n      - source_labels: [code]\n        regex: '500'\n        target_label: instance\n        replacement: ''\n"
        ),
    )
    .unwrap();
    let side = SideBySide::start(dir.path(), &config, &[]);
    let (prom, am) = (side.prometheus.clone(), side.arrowmon.clone());
    let am_addr = side.arrowmon_addr.clone();
    for base in [&prom, &am] {
        eventually(
            Duration::from_secs(30),
            &format!("the target scraped on {base}"),
            || async {
                let (_, body) = try_federate(&client, base, &["{job=\"fed\"}"]).await?;
                body.contains("fed_requests_total").then_some(())
            },
        )
        .await;
    }
    // Past the first scrape of both, whose scrape_series_added counts every series.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let selections: [&[&str]; 4] = [
        &["{job=\"fed\"}"],
        &["fed_gauge{kind=~\"p.*|inf\"}", "fed_requests_total"],
        &["{__name__=~\"fed_.+\", kind!=\"nan\"}", "{code=\"500\"}"],
        &["nothing_here"],
    ];
    for sel in selections {
        let (ps, p) = federate(&client, &prom, sel).await;
        let (s, a) = federate(&client, &am, sel).await;
        assert_eq!((s, ps), (200, 200), "{sel:?}");
        assert_eq!(
            without_timestamps(&a),
            without_timestamps(&p),
            "{sel:?}: arrowmon (left) and prometheus (right) differ\n{a}\n{p}"
        );
    }
    let (_, all) = federate(&client, &am, &["{job=\"fed\"}"]).await;
    let (types, samples) = without_timestamps(&all);
    assert!(
        types.contains(&"# TYPE fed_gauge untyped".to_string()),
        "{all}"
    );
    assert!(
        samples.contains("fed_requests_total{code=\"500\",job=\"fed\",cluster=\"edge\",instance=\"\",region=\"eu\"} 1"),
        "{all}"
    );
    // No selector: nothing, as Prometheus answers; a bad one: 400 in plain text.
    for sel in [&[][..], &["up{"][..]] {
        let (ps, p) = federate(&client, &prom, sel).await;
        let (s, a) = federate(&client, &am, sel).await;
        assert_eq!(s, ps, "{sel:?}: {a} / {p}");
        if s == 200 {
            assert_eq!(a, p);
        }
    }

    // A central Prometheus federating arrowmon holds arrowmon's latest values.
    let central_config = dir.path().join("central.yml");
    std::fs::write(
        &central_config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: federate\n    honor_labels: true\n    metrics_path: /federate\n    params:\n      'match[]': ['{{job=\"fed\"}}']\n    static_configs:\n      - targets: ['{am_addr}']\n"
        ),
    )
    .unwrap();
    let central_listen = format!("127.0.0.1:{}", free_port());
    let _central = start_prometheus(
        &central_config,
        &dir.path().join("central-data"),
        &central_listen,
        &dir.path().join("central.log"),
        &[],
    );
    let central = format!("http://{central_listen}");
    let query = "fed_gauge{kind=\"plain\"} or fed_requests_total";
    let got = eventually(
        Duration::from_secs(30),
        "the central Prometheus federated",
        || async {
            let url = format!(
                "{central}/api/v1/query?query={}",
                form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
            );
            let v = http_get_json(&client, &url).await?;
            let result = v["data"]["result"].as_array()?;
            (result.len() == 3).then(|| v["data"]["result"].clone())
        },
    )
    .await;
    let mut seen: Vec<(String, String, String)> = got
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["__name__"].as_str().unwrap().to_string(),
                r["metric"]["cluster"].as_str().unwrap().to_string(),
                r["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("fed_gauge".into(), "edge".into(), "1.5".into()),
            ("fed_requests_total".into(), "edge".into(), "1".into()),
            ("fed_requests_total".into(), "own".into(), "42".into()),
        ]
    );
}
