//! A target exposing a sample far ahead of the scrape time (a host with a wrong
//! clock): the sample is refused as out of bounds, counted, and shown as the
//! target's error, while the rest of the scrape is stored and the target stays up.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use arrowmon::api::{self, Access, ApiRequest};
use arrowmon::config::ScrapeConfig;
use arrowmon::grafana::service::health_message;
use arrowmon::model::labels::Matcher;
use arrowmon::promql::{Engine, EngineOptions};
use arrowmon::scrape::{now_ms, Health};
use arrowmon::store::StoreOptions;
use arrowmon::tenant::{self_metrics_text, SecretMode, Tenant};

const TEN_YEARS_MS: i64 = 10 * 365 * 24 * 3600 * 1000;

#[tokio::test]
async fn a_sample_ten_years_ahead_is_refused_counted_and_shown_as_the_targets_error() {
    let addr = exporter(|| {
        format!(
            "# TYPE good gauge\ngood 1\n# TYPE wrong_clock gauge\nwrong_clock 2 {}\n# TYPE also_good gauge\nalso_good 3\n",
            now_ms() + TEN_YEARS_MS
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let tenant =
        Arc::new(Tenant::open(dir.path(), SecretMode::File, StoreOptions::default()).unwrap());
    let yaml = format!(
        "scrape_configs:\n  - job_name: clock\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['{addr}']\n"
    );
    let cfg = ScrapeConfig::parse(&yaml, &arrowmon::config::SecretSource::File).unwrap();
    tenant.apply_config(Ok(cfg)).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let target = loop {
        let t = tenant.targets().await;
        if t.first().is_some_and(|t| t.last_scrape_ms > 0) {
            break t[0].clone();
        }
        assert!(std::time::Instant::now() < deadline, "never scraped: {t:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // The scrape succeeded and the other samples are stored.
    assert_eq!(target.health, Health::Up, "{target:?}");
    let select = |name: &str| {
        tenant
            .store
            .select(&[Matcher::equal("__name__", name)], i64::MIN, i64::MAX)
            .unwrap()
    };
    assert_eq!(select("good")[0].values[0], 1.0);
    assert_eq!(select("also_good")[0].values[0], 3.0);
    // Refused before the store sees it: no series is created for it, as Prometheus's
    // time limit appender refuses it before the head appender.
    assert!(
        select("wrong_clock").is_empty(),
        "{:?}",
        select("wrong_clock")
    );
    let stored = tenant
        .store
        .select(
            &[arrowmon::model::labels::Matcher::new(
                arrowmon::model::labels::MatchKind::Regex,
                "__name__",
                ".+",
            )
            .unwrap()],
            i64::MIN,
            i64::MAX,
        )
        .unwrap();
    assert_eq!(
        tenant.store.series_count(),
        stored.len(),
        "the head holds a series without samples: {:?}",
        stored.iter().map(|s| &s.labels).collect::<Vec<_>>()
    );
    assert_eq!(select("up")[0].values[0], 1.0);
    // Counted among what relabeling kept, as Prometheus does.
    assert_eq!(
        select("scrape_samples_post_metric_relabeling")[0].values[0],
        3.0
    );

    // The target's error says what was refused, where and why.
    let err = &target.last_error;
    assert!(
        err.contains("out of bounds") && err.contains("line 4") && err.contains("wrong_clock"),
        "{err}"
    );

    // /api/v1/targets shows it as the target's last error.
    let engine = Arc::new(Engine::new(EngineOptions::default()));
    let resp = api::handle(
        &tenant,
        &engine,
        Access::Admin,
        ApiRequest {
            method: "GET",
            path: "/api/v1/targets",
            query: "",
            body: b"",
            content_type: None,
        },
    )
    .await;
    let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    let active = &body["data"]["activeTargets"][0];
    assert_eq!(active["health"], "up", "{body}");
    assert!(
        active["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("out of bounds")),
        "{body}"
    );

    // Grafana's health check names the target and the refusal, and stays OK.
    let (status, message) = health_message(&tenant.health().await);
    assert_eq!(
        status,
        arrowmon::proto::pluginv2::check_health_response::HealthStatus::Ok
    );
    assert!(
        message.contains(&addr) && message.contains("out of bounds"),
        "{message}"
    );

    // And the self-metrics count it.
    let metrics = self_metrics_text(&[("t", &tenant)]).await;
    let counted: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("arrowmon_target_scrapes_sample_out_of_bounds_total{tenant=\"t\"} ")
        })
        .unwrap_or_else(|| panic!("no out-of-bounds counter in:\n{metrics}"))
        .parse()
        .unwrap();
    assert!(counted >= 1.0, "{metrics}");

    // Nothing moved the store's bounds: blocks and retention measure from now.
    tenant.store.maintain().unwrap();
    assert!(tenant.store.blocks().is_empty());
    tenant.shutdown().await;
}
