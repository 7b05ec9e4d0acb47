//! Tests that start the built `gpx_arrowmon`: as Grafana's plugin host does, as a
//! standalone server (`serve`, `check-config`, `import openmetrics`), laid out by
//! scripts/dist.sh, and its `promql-test` runner over Prometheus's test scripts.
//! Whatever they scrape is served by the test itself: nothing installed is needed.

#[path = "../support/mod.rs"]
mod support;

mod datasource_rules;
mod dist_layout;
mod plugin_host;
mod promql_corpus;
mod remote_write;
mod request_variants;
mod scrape_discovery;
mod standalone;
