//! What the integration tests share: the built binary and its subcommands, loopback
//! ports, child processes stopped on drop, a stand-in for Grafana's plugin host, Arrow
//! frame decoding, small exporters, the scraper over a real store, and the real
//! exporter topology.

// Each test crate uses its own part of this module.
#![allow(dead_code)]

mod cli;
mod exporters;
mod frames;
mod grafana_host;
mod ports;
mod process;
mod scrape;
mod topology;

#[allow(unused_imports)]
pub use self::{
    cli::*, exporters::*, frames::*, grafana_host::*, ports::*, process::*, scrape::*, topology::*,
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
