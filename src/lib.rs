//! arrowmon: a Grafana datasource plugin that is its own monitoring server. It
//! scrapes exporters like Prometheus, stores samples in an Arrow-based columnar
//! store, evaluates PromQL, and answers Grafana with Arrow data frames.
//!
//! The path of a sample: `scrape` → `store` → `promql` → `grafana`/`api`.

pub mod api;
pub mod collect;
pub mod config;
pub mod grafana;
pub mod import;
pub mod logging;
pub mod model;
pub mod par;
pub mod promql;
pub mod proto;
pub mod remote;
pub mod rules;
pub mod runtime;
pub mod scrape;
pub mod store;
pub mod tenant;
