//! The scraper in process: a scrape manager over a real store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrowmon::config::{ScrapeConfig, SecretSource};
use arrowmon::model::labels::{Labels, MatchKind, Matcher};
use arrowmon::model::{Series, Storage};
use arrowmon::scrape::{ScrapeManager, TargetStatus};
use arrowmon::store::Store;

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub store: Arc<Store>,
    pub manager: ScrapeManager,
}

impl Harness {
    /// Must be called inside a tokio runtime.
    pub fn start(yaml: &str) -> Harness {
        let cfg = ScrapeConfig::parse(yaml, &SecretSource::File).expect("valid config");
        Harness::start_config(&cfg)
    }

    pub fn start_config(cfg: &ScrapeConfig) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("data")).unwrap());
        let manager = ScrapeManager::start(cfg, store.clone());
        Harness {
            dir,
            store,
            manager,
        }
    }

    pub fn targets(&self) -> Vec<TargetStatus> {
        self.manager.targets()
    }

    /// Waits until `f` holds for the current targets.
    pub async fn wait_until(
        &self,
        within: Duration,
        what: &str,
        f: impl Fn(&[TargetStatus]) -> bool,
    ) -> Vec<TargetStatus> {
        let deadline = Instant::now() + within;
        loop {
            let t = self.targets();
            if f(&t) {
                return t;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; targets: {t:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the first scrape of the (single) target and returns its status.
    pub async fn wait_scraped(&self, within: Duration) -> TargetStatus {
        self.wait_until(within, "a scrape", |t| {
            !t.is_empty() && t.iter().all(|t| t.last_scrape_ms > 0)
        })
        .await
        .remove(0)
    }

    /// Waits until the first target has been scraped `n` more times.
    pub async fn wait_more_scrapes(&self, n: usize, within: Duration) -> TargetStatus {
        let mut last = self.targets()[0].last_scrape_ms;
        for _ in 0..n {
            let t = self
                .wait_until(within, "another scrape", |t| t[0].last_scrape_ms > last)
                .await;
            last = t[0].last_scrape_ms;
        }
        self.targets().remove(0)
    }

    pub fn select(&self, matchers: &[Matcher]) -> Vec<Series> {
        // Through the storage trait PromQL reads with, the store's stable surface.
        Storage::select(self.store.as_ref(), matchers, 0, i64::MAX).expect("select")
    }

    pub fn series_named(&self, name: &str) -> Vec<Series> {
        self.select(&[Matcher::equal("__name__", name)])
    }

    /// The newest sample of the first series called `name`.
    pub fn last_value(&self, name: &str) -> Option<f64> {
        self.series_named(name)
            .first()
            .and_then(|s| s.values.last().copied())
    }

    pub fn all_series(&self) -> Vec<Labels> {
        self.select(&[Matcher::new(MatchKind::Regex, "__name__", ".+").unwrap()])
            .into_iter()
            .map(|s| s.labels)
            .collect()
    }

    pub async fn stop(self) {
        self.manager.stop().await;
    }
}

pub fn is_stale(v: f64) -> bool {
    v.to_bits() == arrowmon::model::stale_nan().to_bits()
}
