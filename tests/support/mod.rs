//! What the integration tests share: the built binary and its subcommands, loopback
//! ports, child processes stopped on drop, a stand-in for Grafana's plugin host, Arrow
//! frame decoding, small exporters, the scraper over a real store, and the real
//! exporter topology.

// Each test crate uses its own part of this module.
#![allow(dead_code)]

mod api;
mod cli;
mod exporters;
mod frames;
mod grafana_host;
mod ports;
mod process;
mod prometheus;
mod scrape;
mod topology;

#[allow(unused_imports)]
pub use self::{
    api::*, cli::*, exporters::*, frames::*, grafana_host::*, ports::*, process::*, prometheus::*,
    scrape::*, topology::*,
};

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Reference data kept beside the repository (`../shared/<folder>`, or where the
/// environment variable `var` points), which the suite needs: when `must_hold` is
/// not in it, the test fails with a message naming the path and the variable.
pub fn shared_reference(var: &str, folder: &str, must_hold: &str) -> PathBuf {
    let dir = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared").join(folder));
    let probe = dir.join(must_hold);
    assert!(
        probe.exists(),
        "reference data is missing: {} not found (set {var})",
        probe.display()
    );
    dir
}

/// Polls `f` until it returns Some, or panics after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// An HTTP client for loopback servers (reqwest is built without a default rustls
/// provider: the crate installs ring).
pub fn http_client() -> reqwest::Client {
    arrowmon::scrape::tls::install_default_provider();
    reqwest::Client::new()
}

/// GET `url`: its status and body, or None while nothing answers there.
pub async fn http_get(client: &reqwest::Client, url: &str) -> Option<(u16, String)> {
    let r = client.get(url).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

/// GET `url` as JSON, or None while nothing answers there (or it is not JSON).
pub async fn http_get_json(client: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&http_get(client, url).await?.1).ok()
}

/// The value of the sample `series` (name and labels exactly as written) in a
/// Prometheus text exposition.
pub fn exposition_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}
