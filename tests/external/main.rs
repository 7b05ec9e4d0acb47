//! Tests against real systems installed on the machine by scripts/install-deps.sh:
//! prometheus and promtool, VictoriaMetrics, MariaDB with mysqld_exporter,
//! node_exporter (the topology of scripts/topology-start.sh), pyarrow, and curl,
//! openssl and htpasswd for standalone mode's web config. Some of
//! these files also check statically the files they run (the dashboards, the
//! compose file and Dockerfile) before the live comparison.

#[path = "../support/mod.rs"]
mod support;

mod alertmanager;
mod bench_compare;
mod compose;
mod dashboards;
mod exemplars;
mod federation;
mod format_query;
mod mysql_collector;
mod plugin_host;
mod prometheus_compare;
mod promql_differential;
mod promql_errors;
mod remote_write;
mod remote_write_send;
mod rule_evaluation;
mod rule_files;
mod rule_unit_tests;
mod soak;
mod standalone;
mod web_config;
