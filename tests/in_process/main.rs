//! Tests that run the library in this process: the store (concurrency, durability,
//! damage), the scraper over a real store against servers the test runs itself, and
//! Grafana's query rules. They start neither the plugin binary nor anything
//! installed on the machine (store_durability re-runs this test binary as its child).

#[path = "../support/mod.rs"]
mod support;

mod api_exemplars;
mod fuzz_corpora;
mod grafana_reference;
mod scrape_discovery;
mod scrape_exemplars;
mod scrape_future;
mod scrape_hostile;
mod scrape_tls;
mod store_concurrency;
mod store_durability;
