//! The plugin's own metrics in Prometheus text format (CollectMetrics and
//! standalone `/metrics`).

use std::fmt::Write;
use std::sync::Arc;

use super::Tenant;
use crate::scrape::Health;

pub async fn self_metrics_text(tenants: &[(&str, &Arc<Tenant>)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP arrowmon_tenants Datasource instances served.\n# TYPE arrowmon_tenants gauge\narrowmon_tenants {}",
        tenants.len()
    );
    // Per tenant: (name, type, help, value).
    let mut rows: Vec<Row> = Vec::new();
    for (tenant_name, t) in tenants {
        let tl = crate::model::labels::go_quote(tenant_name);
        let stats = t.store.stats();
        let queries = t.query_stats();
        let per_tenant: [(&str, &str, &str, u64); 17] = [
            (
                "prometheus_engine_queries",
                "gauge",
                "The current number of queries being executed or waiting.",
                queries.in_flight,
            ),
            (
                "prometheus_engine_queries_concurrent_max",
                "gauge",
                "The max number of concurrent queries.",
                queries.max_concurrent,
            ),
            (
                "arrowmon_query_memory_bytes",
                "gauge",
                "Bytes the queries in flight hold (16 per sample), charged to the query memory limit.",
                queries.memory_held,
            ),
            (
                "arrowmon_query_memory_limit_bytes",
                "gauge",
                "Bytes the queries in flight may hold together (0: no limit).",
                queries.memory_limit,
            ),
            (
                "arrowmon_query_memory_refused_total",
                "counter",
                "Queries failed because they would have passed the query memory limit or one query's share of it.",
                queries.memory_refused,
            ),
            (
                "arrowmon_samples_appended_total",
                "counter",
                "Samples appended to the store.",
                t.store.samples_appended(),
            ),
            (
                "arrowmon_active_series",
                "gauge",
                "Series in the in-memory head.",
                t.store.series_count() as u64,
            ),
            (
                "arrowmon_out_of_order_samples_total",
                "counter",
                "Samples refused as older than their series' newest.",
                stats.out_of_order,
            ),
            (
                "arrowmon_target_scrapes_sample_out_of_bounds_total",
                "counter",
                "Scraped samples refused because their timestamp was more than 10m after the scrape or below the head's lower bound.",
                t.scrape_counters
                    .samples_out_of_bounds
                    .load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                "arrowmon_duplicate_samples_total",
                "counter",
                "Samples refused as another value at an existing timestamp.",
                stats.duplicates,
            ),
            (
                "arrowmon_blocks",
                "gauge",
                "Immutable blocks on disk.",
                stats.blocks,
            ),
            (
                "arrowmon_block_bytes",
                "gauge",
                "Bytes of the blocks on disk.",
                stats.block_bytes,
            ),
            (
                "arrowmon_storage_write_failing",
                "gauge",
                "1 while writes of the WAL or the head chunk files fail (a full disk), else 0.",
                t.store.write_error().is_some() as u64,
            ),
            (
                "arrowmon_wal_write_failures_total",
                "counter",
                "Failed WAL writes and syncs; the records wait in memory until a write succeeds.",
                stats.write_errors,
            ),
            (
                "arrowmon_wal_lost_records_total",
                "counter",
                "WAL samples records dropped because writes failed for too long.",
                stats.wal_lost_records,
            ),
            (
                "arrowmon_wal_damaged_bytes_total",
                "counter",
                "Damaged WAL bytes skipped at replay.",
                stats.wal_damaged_bytes,
            ),
            (
                "arrowmon_storage_bytes",
                "gauge",
                "Bytes the store keeps on disk (WAL and blocks).",
                dir_bytes(t.store.dir()),
            ),
        ];
        let ex = t.store.exemplars().stats();
        let exemplars: [(&str, &str, &str, u64); 6] = [
            (
                "prometheus_tsdb_exemplar_exemplars_appended_total",
                "counter",
                "Total number of appended exemplars.",
                ex.appended,
            ),
            (
                "prometheus_tsdb_exemplar_exemplars_in_storage",
                "gauge",
                "Number of exemplars currently in circular storage.",
                ex.in_storage,
            ),
            (
                "prometheus_tsdb_exemplar_series_with_exemplars_in_storage",
                "gauge",
                "Number of series with exemplars currently in circular storage.",
                ex.series,
            ),
            (
                "prometheus_tsdb_exemplar_max_exemplars",
                "gauge",
                "Total number of exemplars the exemplar storage can store, resizeable.",
                ex.max_exemplars,
            ),
            (
                "prometheus_tsdb_exemplar_out_of_order_exemplars_total",
                "counter",
                "Total number of out of order exemplar ingestion failed attempts.",
                ex.out_of_order,
            ),
            (
                "arrowmon_exemplar_label_set_too_long_total",
                "counter",
                "Exemplars refused because their label names and values passed 128 UTF-8 characters.",
                ex.label_set_too_long,
            ),
        ];
        let rw = &t.remote_write_counters;
        let remote_write: [(&str, &str, &str, u64); 3] = [
            (
                "arrowmon_remote_write_samples_appended_total",
                "counter",
                "Samples received by remote write (serve --enable-remote-write-receiver) and stored.",
                rw.samples_appended.load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                "arrowmon_remote_write_samples_refused_total",
                "counter",
                "Samples received by remote write and refused: out of order, duplicate, out of bounds or more than 10m in the future.",
                rw.samples_refused.load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                "arrowmon_remote_write_requests_malformed_total",
                "counter",
                "Remote write requests refused whole: bad headers, snappy, protobuf or labels.",
                rw.requests_malformed.load(std::sync::atomic::Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, v) in per_tenant.into_iter().chain(exemplars).chain(remote_write) {
            rows.push((name, kind, help, format!("{{tenant={tl}}}"), v.to_string()));
        }
        let targets = t.targets().await;
        for (h, hn) in [
            (Health::Up, "up"),
            (Health::Down, "down"),
            (Health::Unknown, "unknown"),
        ] {
            let n = targets.iter().filter(|x| x.health == h).count();
            rows.push((
                "arrowmon_targets",
                "gauge",
                "Scrape targets by health.",
                format!("{{health=\"{hn}\",tenant={tl}}}"),
                n.to_string(),
            ));
        }
        rule_rows(t, &tl, &mut rows).await;
        remote_write_rows(t, &tl, &mut rows).await;
    }
    // One HELP/TYPE per family, its samples together.
    rows.sort_by(|a, b| a.0.cmp(b.0));
    let mut last = "";
    for (name, kind, help, labels, value) in &rows {
        if *name != last {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            last = name;
        }
        let _ = writeln!(out, "{name}{labels} {value}");
    }
    remote_write_histogram(tenants, &mut out).await;
    /// A histogram's name, help and where a tenant keeps it.
    type Histogram = (
        &'static str,
        &'static str,
        fn(&Tenant) -> &super::LatencyHistogram,
    );
    let histograms: [Histogram; 2] = [
        (
            "arrowmon_query_duration_seconds",
            "Time to evaluate a query.",
            |t| &t.query_latency,
        ),
        (
            "arrowmon_query_queue_seconds",
            "Time a query waited for one of the tenant's query slots.",
            |t| &t.query_queue_latency,
        ),
    ];
    for (name, help, histogram) in histograms {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (tenant_name, t) in tenants {
            let tl = crate::model::labels::go_quote(tenant_name);
            let (cumulative, sum) = histogram(t).snapshot();
            let bounds = super::LatencyHistogram::BOUNDS
                .iter()
                .map(|b| b.to_string())
                .chain(["+Inf".to_string()]);
            for (le, count) in bounds.zip(&cumulative) {
                let _ = writeln!(out, "{name}_bucket{{le=\"{le}\",tenant={tl}}} {count}");
            }
            let _ = writeln!(out, "{name}_sum{{tenant={tl}}} {sum}");
            let _ = writeln!(
                out,
                "{name}_count{{tenant={tl}}} {}",
                cumulative.last().copied().unwrap_or(0)
            );
        }
    }
    out
}

type Row = (&'static str, &'static str, &'static str, String, String);

/// The rule groups' metrics, with Prometheus's names, labelled by `rule_group`
/// (`file;name`), and whether the latest reading of the rule files succeeded.
async fn rule_rows(t: &Tenant, tl: &str, rows: &mut Vec<Row>) {
    let (groups, status) = t.rule_groups().await;
    if let Some(st) = status {
        rows.push((
            "arrowmon_rule_files_last_reload_successful",
            "gauge",
            "Whether the latest reading of the rule files succeeded (1) or was refused (0).",
            format!("{{tenant={tl}}}"),
            u8::from(st.error.is_none()).to_string(),
        ));
        rows.push((
            "arrowmon_rule_files_last_reload_success_timestamp_seconds",
            "gauge",
            "When the rule files were last read successfully.",
            format!("{{tenant={tl}}}"),
            fmt_f64(st.last_success_ms as f64 / 1e3),
        ));
    }
    if let Some(n) = t.notifier_stats().await {
        let plain = format!("{{tenant={tl}}}");
        let gauges: [(&'static str, &'static str, &'static str, u64); 4] = [
            (
                "prometheus_notifications_queue_length",
                "gauge",
                "The number of alert notifications in the queue.",
                n.queue_length,
            ),
            (
                "prometheus_notifications_queue_capacity",
                "gauge",
                "The capacity of the alert notifications queue.",
                super::notify::QUEUE_CAPACITY as u64,
            ),
            (
                "prometheus_notifications_dropped_total",
                "counter",
                "Total number of alerts dropped due to errors when sending to Alertmanager.",
                n.dropped,
            ),
            (
                "prometheus_notifications_alertmanagers_discovered",
                "gauge",
                "The number of alertmanagers discovered and active.",
                n.alertmanagers.len() as u64,
            ),
        ];
        for (name, kind, help, v) in gauges {
            rows.push((name, kind, help, plain.clone(), v.to_string()));
        }
        for (url, sent, errors, seconds, requests) in n.alertmanagers {
            let labels = format!(
                "{{alertmanager={},tenant={tl}}}",
                crate::model::labels::go_quote(&url)
            );
            let per_am: [(&'static str, &'static str, &'static str, String); 4] = [
                (
                    "prometheus_notifications_sent_total",
                    "counter",
                    "Total number of alerts sent.",
                    sent.to_string(),
                ),
                (
                    "prometheus_notifications_errors_total",
                    "counter",
                    "Total number of sent alerts affected by errors.",
                    errors.to_string(),
                ),
                (
                    "arrowmon_notifications_request_seconds_total",
                    "counter",
                    "Time spent sending alerts to this Alertmanager.",
                    fmt_f64(seconds),
                ),
                (
                    "arrowmon_notifications_requests_total",
                    "counter",
                    "Requests sent to this Alertmanager.",
                    requests.to_string(),
                ),
            ];
            for (name, kind, help, v) in per_am {
                rows.push((name, kind, help, labels.clone(), v));
            }
        }
    }
    for g in groups {
        let labels = format!(
            "{{rule_group={},tenant={tl}}}",
            crate::model::labels::go_quote(&g.key())
        );
        let c = g.counters;
        let values: [(&'static str, &'static str, &'static str, f64); 11] = [
            ("prometheus_rule_evaluations_total", "counter", "The total number of rule evaluations.", c.evaluations as f64),
            ("prometheus_rule_evaluation_failures_total", "counter", "The total number of rule evaluation failures.", c.evaluation_failures as f64),
            ("prometheus_rule_group_iterations_total", "counter", "The total number of scheduled rule group evaluations, whether executed or missed.", c.iterations as f64),
            ("prometheus_rule_group_iterations_missed_total", "counter", "The total number of rule group evaluations missed due to slow rule group evaluation.", c.iterations_missed as f64),
            ("prometheus_rule_group_interval_seconds", "gauge", "The interval of a rule group.", g.interval.as_secs_f64()),
            ("prometheus_rule_group_last_evaluation_timestamp_seconds", "gauge", "The timestamp of the last rule group evaluation in seconds.", g.last_evaluation_ms.map_or(0.0, |ms| ms as f64 / 1e3)),
            ("prometheus_rule_group_last_duration_seconds", "gauge", "The duration of the last rule group evaluation.", g.evaluation_time.as_secs_f64()),
            ("prometheus_rule_group_last_rule_duration_sum_seconds", "gauge", "The sum of time in seconds it took to evaluate each rule in the group.", g.rule_duration_sum.as_secs_f64()),
            ("prometheus_rule_group_last_restore_duration_seconds", "gauge", "The duration of the last alert rules alerts restoration using the `ALERTS_FOR_STATE` series.", g.last_restore_duration.as_secs_f64()),
            ("prometheus_rule_group_rules", "gauge", "The number of rules.", g.rules.len() as f64),
            ("prometheus_rule_group_last_evaluation_samples", "gauge", "The number of samples returned during the last rule group evaluation.", g.last_samples as f64),
        ];
        for (name, kind, help, v) in values {
            rows.push((name, kind, help, labels.clone(), fmt_f64(v)));
        }
    }
}

/// The remote write queues' metrics, with Prometheus's names and meanings, labelled
/// by `remote_name` and `url` as Prometheus labels them.
async fn remote_write_rows(t: &Tenant, tl: &str, rows: &mut Vec<Row>) {
    let queues = t.remote_write_stats().await;
    if queues.is_empty() {
        return;
    }
    let plain = format!("{{tenant={tl}}}");
    let newest = t.store.newest_sample_ms();
    rows.push((
        "prometheus_remote_storage_highest_timestamp_in_seconds",
        "gauge",
        "Highest timestamp that has come into the remote storage via the Appender interface, in seconds since epoch.",
        plain.clone(),
        fmt_f64(if newest == i64::MIN { 0.0 } else { newest as f64 / 1e3 }),
    ));
    rows.push((
        "prometheus_remote_storage_samples_in_total",
        "counter",
        "Samples in to remote storage, compare to samples out for queue managers.",
        plain,
        t.store.samples_appended().to_string(),
    ));
    for q in queues {
        let labels = format!(
            "{{remote_name={},tenant={tl},url={}}}",
            crate::model::labels::go_quote(&q.name),
            crate::model::labels::go_quote(&q.url)
        );
        let values: [(&'static str, &'static str, &'static str, String); 21] = [
            ("prometheus_remote_storage_samples_total", "counter", "Total number of samples sent to remote storage.", q.samples_sent.to_string()),
            ("prometheus_remote_storage_samples_failed_total", "counter", "Total number of samples which failed on send to remote storage, non-recoverable errors.", q.samples_failed.to_string()),
            ("prometheus_remote_storage_samples_retried_total", "counter", "Total number of samples which failed on send to remote storage but were retried because the send error was recoverable.", q.samples_retried.to_string()),
            ("prometheus_remote_storage_samples_dropped_total", "counter", "Total number of samples which were dropped after being read from the WAL before being sent via remote write, either via relabelling or unintentionally because of an unknown reference ID.", q.samples_dropped.to_string()),
            ("prometheus_remote_storage_samples_pending", "gauge", "The number of samples pending in the queues shards to be sent to the remote storage.", q.samples_pending.to_string()),
            ("prometheus_remote_storage_bytes_total", "counter", "The total number of bytes of data (not metadata) sent by the queue after compression.", q.bytes_sent.to_string()),
            ("prometheus_remote_storage_queue_highest_sent_timestamp_seconds", "gauge", "Timestamp from a WAL sample, the highest timestamp successfully sent by this queue, in seconds since epoch.", fmt_f64(q.highest_sent_ms as f64 / 1e3)),
            ("prometheus_remote_storage_shards", "gauge", "The number of shards used for parallel sending to the remote storage.", q.shards.to_string()),
            ("prometheus_remote_storage_shards_desired", "gauge", "The number of shards that the queues shard calculation wants to run based on the rate of samples in vs. samples out.", fmt_f64(q.shards_desired)),
            ("prometheus_remote_storage_shards_min", "gauge", "The minimum number of shards that the queue is allowed to run.", q.shards_min.to_string()),
            ("prometheus_remote_storage_shards_max", "gauge", "The maximum number of shards that the queue is allowed to run.", q.shards_max.to_string()),
            ("prometheus_remote_storage_shard_capacity", "gauge", "The capacity of each shard of the queue used for parallel sending to the remote storage.", q.shard_capacity.to_string()),
            ("prometheus_remote_storage_max_samples_per_send", "gauge", "The maximum number of samples to be sent, in a single request, to the remote storage.", q.max_samples_per_send.to_string()),
            ("prometheus_remote_storage_enqueue_retries_total", "counter", "Total number of times enqueue has failed because a shards queue was full.", q.enqueue_retries.to_string()),
            ("prometheus_remote_storage_metadata_total", "counter", "Total number of metadata entries sent to remote storage.", q.metadata_sent.to_string()),
            ("prometheus_remote_storage_metadata_failed_total", "counter", "Total number of metadata entries which failed on send to remote storage, non-recoverable errors.", q.metadata_failed.to_string()),
            ("prometheus_remote_storage_metadata_retried_total", "counter", "Total number of metadata entries which failed on send to remote storage but were retried because the send error was recoverable.", q.metadata_retried.to_string()),
            ("prometheus_remote_storage_metadata_bytes_total", "counter", "The total number of bytes of metadata sent by the queue after compression.", q.metadata_bytes.to_string()),
            ("arrowmon_remote_storage_samples_read_total", "counter", "Samples this queue read from the WAL.", q.samples_in.to_string()),
            ("arrowmon_remote_storage_wal_segments_skipped_total", "counter", "WAL segments deleted (cut into blocks) before this queue read them: their samples were never sent.", q.segments_skipped.to_string()),
            ("arrowmon_remote_storage_lag_seconds", "gauge", "The newest sample stored minus the newest sample this queue sent.", fmt_f64(if newest == i64::MIN || q.highest_sent_ms == 0 { 0.0 } else { (newest - q.highest_sent_ms).max(0) as f64 / 1e3 })),
        ];
        for (name, kind, help, v) in values {
            rows.push((name, kind, help, labels.clone(), v));
        }
    }
}

/// `prometheus_remote_storage_sent_batch_duration_seconds` of every queue.
async fn remote_write_histogram(tenants: &[(&str, &Arc<Tenant>)], out: &mut String) {
    let name = "prometheus_remote_storage_sent_batch_duration_seconds";
    let mut header = false;
    for (tenant_name, t) in tenants {
        let tl = crate::model::labels::go_quote(tenant_name);
        for q in t.remote_write_stats().await {
            if !header {
                let _ = writeln!(out, "# HELP {name} Duration of send calls to the remote storage.\n# TYPE {name} histogram");
                header = true;
            }
            let labels = format!(
                "remote_name={},tenant={tl},url={}",
                crate::model::labels::go_quote(&q.name),
                crate::model::labels::go_quote(&q.url)
            );
            let (cumulative, sum) = &q.batch_durations;
            let bounds = crate::remote::BATCH_DURATION_BUCKETS
                .iter()
                .map(|b| b.to_string())
                .chain(["+Inf".to_string()]);
            for (le, count) in bounds.zip(cumulative) {
                let _ = writeln!(out, "{name}_bucket{{le=\"{le}\",{labels}}} {count}");
            }
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", fmt_f64(*sum));
            let _ = writeln!(
                out,
                "{name}_count{{{labels}}} {}",
                cumulative.last().copied().unwrap_or(0)
            );
        }
    }
}

fn fmt_f64(v: f64) -> String {
    crate::model::number::format_go_float_g(v)
}

/// Bytes of every file below `dir` (0 for what cannot be read).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
