//! The differential test of the scraper: arrowmon (`gpx_arrowmon serve`) and a real
//! `prometheus` (Debian package, 2.42) scrape the full test topology (node_exporter,
//! two mysqld_exporters over MariaDB) at the same time with the same prometheus.yml,
//! relabeling included; the series sets they report through `/api/v1/series` must
//! be equal label for label, apart from the known 2.42-vs-3 differences listed in
//! [`KNOWN_DIFFERENCES`], each normalised away with its reason.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::*;
use serde_json::Value;

/// Differences between Prometheus 2.42 and Prometheus 3 (whose semantics arrowmon
/// follows) that show in these exporters' series, and how each is normalised.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[(
    "le/quantile normalisation",
    "Prometheus 3 rewrites the `le` of classic histogram buckets and the `quantile` \
         of summaries to their canonical float text (le=\"1\" becomes le=\"1.0\"); 2.42 \
         stores them as the exporter wrote them. Both sides are compared with the value \
         parsed as a float and printed in one canonical form.",
)];

fn canonical_float(v: &str) -> String {
    match v.parse::<f64>() {
        Ok(f) if f.is_infinite() => if f > 0.0 { "+Inf" } else { "-Inf" }.to_string(),
        Ok(f) => format!("{f:?}"),
        Err(_) => v.to_string(),
    }
}

fn normalise(series: &Value, canonical_le: bool) -> String {
    let obj = series.as_object().expect("series object");
    let mut labels: Vec<(String, String)> = obj
        .iter()
        .map(|(k, v)| {
            let v = v.as_str().unwrap_or_default().to_string();
            if canonical_le && (k == "le" || k == "quantile") {
                (k.clone(), canonical_float(&v))
            } else {
                (k.clone(), v)
            }
        })
        .collect();
    labels.sort();
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(",")
}

async fn series(base: &str, start: f64, end: f64, canonical_le: bool) -> Option<BTreeSet<String>> {
    let url = format!(
        "{base}/api/v1/series?match[]=%7B__name__%3D~%22.%2B%22%7D&start={start}&end={end}"
    );
    let body = reqwest::get(&url).await.ok()?.text().await.ok()?;
    let v: Value = serde_json::from_str(&body).ok()?;
    Some(
        v["data"]
            .as_array()?
            .iter()
            .map(|s| normalise(s, canonical_le))
            .collect(),
    )
}

async fn up_count(base: &str) -> Option<usize> {
    let body = reqwest::get(format!("{base}/api/v1/query?query=up%3D%3D1"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let v: Value = serde_json::from_str(&body).ok()?;
    Some(v["data"]["result"].as_array()?.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_equal_prometheus_on_the_full_topology() {
    arrowmon::scrape::tls::install_default_provider();
    let topo = Topology::start(false);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            r#"
global:
  scrape_interval: 2s
  scrape_timeout: 2s
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ['{node}']
        labels: {{role: host}}
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: 'go_(gc|memstats)_.*'
        action: drop
  - job_name: mysql
    static_configs:
      - targets: ['{m1}', '{m2}']
        labels: {{env: test}}
    relabel_configs:
      - source_labels: [__address__]
        regex: '.*:(\d+)'
        target_label: port
      - source_labels: [env]
        target_label: __tmp_env
      - source_labels: [__tmp_env, port]
        separator: '-'
        target_label: shard
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: 'mysql_global_variables_.*'
        action: drop
      - regex: 'version'
        action: labeldrop
"#,
            node = topo.get("NODE_EXPORTER"),
            m1 = topo.get("MYSQLD_EXPORTER_1"),
            m2 = topo.get("MYSQLD_EXPORTER_2"),
        ),
    )
    .unwrap();

    let side = SideBySide::start(dir.path(), &config, &[]);
    let (prom, am) = (side.prometheus.clone(), side.arrowmon.clone());
    let start = now_ms() as f64 / 1000.0;
    for base in [&prom, &am] {
        eventually(
            Duration::from_secs(60),
            &format!("3 targets up on {base}"),
            || async { (up_count(base).await? == 3).then_some(()) },
        )
        .await;
    }
    // A few more scrapes on both, so every series either side will see is there.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let end = now_ms() as f64 / 1000.0;
    let p = series(&prom, start - 60.0, end, true)
        .await
        .expect("prometheus series");
    let a = series(&am, start - 60.0, end, true)
        .await
        .expect("arrowmon series");
    // The listed difference is real: without the normalisation the sets differ.
    let p_raw = series(&prom, start - 60.0, end, false).await.unwrap();
    let a_raw = series(&am, start - 60.0, end, false).await.unwrap();
    let raw_diff = p_raw.difference(&a_raw).count();
    assert!(
        raw_diff > 0,
        "le/quantile normalisation no longer differs from 2.42"
    );
    println!("{raw_diff} series differ only by le/quantile normalisation");
    assert!(p.len() > 500, "too few series from prometheus: {}", p.len());
    let only_p: Vec<&String> = p.difference(&a).collect();
    let only_a: Vec<&String> = a.difference(&p).collect();
    assert!(
        only_p.is_empty() && only_a.is_empty(),
        "{} series only in prometheus, {} only in arrowmon (known differences normalised: {:?})\nonly prometheus: {:#?}\nonly arrowmon: {:#?}",
        only_p.len(),
        only_a.len(),
        KNOWN_DIFFERENCES.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        only_p.iter().take(40).collect::<Vec<_>>(),
        only_a.iter().take(40).collect::<Vec<_>>()
    );
    // Relabeling took effect on both.
    assert!(
        a.iter().any(|s| s.contains("shard=\"test-")),
        "no shard label"
    );
    assert!(!a.iter().any(|s| s.contains("mysql_global_variables_")));
    println!("{} series equal on both", a.len());
}
