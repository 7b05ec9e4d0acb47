//! The series mysqld_exporter 0.14.0's default collectors, and its
//! `perf_schema.eventsstatements` collector, make of a server's answers: names,
//! HELP, types and labels as the exporter gives them, so that
//! dashboards written for the exporter read a `mysql:` job unchanged. Each
//! function turns one query's rows into families; the SQL is in `mysql.rs`.

use super::exposition::{valid_name, Families, MetricType};
use super::status::parse_status;
use crate::model::number::parse_go_float;

/// The rows of one query, as text (MySQL's text protocol); `None` is NULL.
#[derive(Clone, Debug, Default)]
pub struct ResultSet {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<Vec<u8>>>>,
}

impl ResultSet {
    fn text<'a>(&self, row: &'a [Option<Vec<u8>>], column: &str) -> &'a [u8] {
        self.columns
            .iter()
            .position(|c| c == column)
            .and_then(|i| row.get(i))
            .and_then(|v| v.as_deref())
            .unwrap_or(b"")
    }
}

pub const GLOBAL_STATUS_QUERY: &str = "SHOW GLOBAL STATUS";
pub const GLOBAL_VARIABLES_QUERY: &str = "SHOW GLOBAL VARIABLES";
/// Tried in order until one is allowed: MariaDB's multi-source form first.
pub const SLAVE_STATUS_QUERIES: [&str; 4] = [
    "SHOW ALL SLAVES STATUS",
    "SHOW SLAVE STATUS",
    "SHOW SLAVE STATUS NONBLOCKING",
    "SHOW SLAVE STATUS NOLOCK",
];
pub const INNODB_CMP_QUERY: &str = "SELECT page_size, compress_ops, compress_ops_ok, compress_time, uncompress_ops, uncompress_time FROM information_schema.innodb_cmp";
pub const INNODB_CMPMEM_QUERY: &str = "SELECT page_size, buffer_pool_instance, pages_used, pages_free, relocation_ops, relocation_time FROM information_schema.innodb_cmpmem";
pub const QUERY_RESPONSE_TIME_CHECK: &str = "SELECT @@query_response_time_stats";
/// The all, read and write distributions, with their family and HELP.
pub const QUERY_RESPONSE_TIME_TABLES: [(&str, &str, &str); 3] = [
    (
        "SELECT TIME, COUNT, TOTAL FROM INFORMATION_SCHEMA.QUERY_RESPONSE_TIME",
        "mysql_info_schema_query_response_time_seconds",
        "The number of all queries by duration they took to execute.",
    ),
    (
        "SELECT TIME, COUNT, TOTAL FROM INFORMATION_SCHEMA.QUERY_RESPONSE_TIME_READ",
        "mysql_info_schema_read_query_response_time_seconds",
        "The number of read queries by duration they took to execute.",
    ),
    (
        "SELECT TIME, COUNT, TOTAL FROM INFORMATION_SCHEMA.QUERY_RESPONSE_TIME_WRITE",
        "mysql_info_schema_write_query_response_time_seconds",
        "The number of write queries by duration they took to execute.",
    ),
];

/// `perf_schema.eventsstatements`: the statement digests of
/// `performance_schema.events_statements_summary_by_digest` with the most total
/// time, last seen within `timelimit` seconds, at most `limit` of them, the
/// digest text cut to `digest_text_limit` characters by the server (`LEFT`).
/// mysqld_exporter 0.14.0's query, word for word in what it asks: the system
/// schemas are left out, and so are statements run without a default schema
/// (`SCHEMA_NAME` NULL fails `NOT IN`, so its `IFNULL` never applies).
pub fn events_statements_query(limit: u32, timelimit: u32, digest_text_limit: u32) -> String {
    format!(
        "SELECT ifnull(SCHEMA_NAME, 'NONE') as SCHEMA_NAME, DIGEST, LEFT(DIGEST_TEXT, {digest_text_limit}) as DIGEST_TEXT, \
         COUNT_STAR, SUM_TIMER_WAIT, SUM_ERRORS, SUM_WARNINGS, SUM_ROWS_AFFECTED, SUM_ROWS_SENT, SUM_ROWS_EXAMINED, \
         SUM_CREATED_TMP_DISK_TABLES, SUM_CREATED_TMP_TABLES, SUM_SORT_MERGE_PASSES, SUM_SORT_ROWS, SUM_NO_INDEX_USED \
         FROM (SELECT * FROM performance_schema.events_statements_summary_by_digest \
         WHERE SCHEMA_NAME NOT IN ('mysql', 'performance_schema', 'information_schema') \
         AND LAST_SEEN > DATE_SUB(NOW(), INTERVAL {timelimit} SECOND) ORDER BY LAST_SEEN DESC)Q \
         GROUP BY Q.SCHEMA_NAME, Q.DIGEST, Q.DIGEST_TEXT, Q.COUNT_STAR, Q.SUM_TIMER_WAIT, Q.SUM_ERRORS, Q.SUM_WARNINGS, \
         Q.SUM_ROWS_AFFECTED, Q.SUM_ROWS_SENT, Q.SUM_ROWS_EXAMINED, Q.SUM_CREATED_TMP_DISK_TABLES, Q.SUM_CREATED_TMP_TABLES, \
         Q.SUM_SORT_MERGE_PASSES, Q.SUM_SORT_ROWS, Q.SUM_NO_INDEX_USED \
         ORDER BY SUM_TIMER_WAIT DESC LIMIT {limit}"
    )
}

/// The families of `perf_schema.eventsstatements`, in the order of the numeric
/// columns of [`events_statements_query`] as the exporter reads them (after
/// `mysql_perf_schema_`), with their HELP.
///
/// mysqld_exporter 0.14.0 reads `SUM_CREATED_TMP_DISK_TABLES` into its tmp
/// tables series and `SUM_CREATED_TMP_TABLES` into its tmp disk tables series
/// (the two are swapped in its scan); the order here keeps that, so a dashboard
/// reads the same numbers from either.
const EVENTS_STATEMENTS_FAMILIES: [(&str, &str); 12] = [
    (
        "events_statements_total",
        "The total count of events statements by digest.",
    ),
    (
        "events_statements_seconds_total",
        "The total time of events statements by digest.",
    ),
    (
        "events_statements_errors_total",
        "The errors of events statements by digest.",
    ),
    (
        "events_statements_warnings_total",
        "The warnings of events statements by digest.",
    ),
    (
        "events_statements_rows_affected_total",
        "The total rows affected of events statements by digest.",
    ),
    (
        "events_statements_rows_sent_total",
        "The total rows sent of events statements by digest.",
    ),
    (
        "events_statements_rows_examined_total",
        "The total rows examined of events statements by digest.",
    ),
    (
        "events_statements_tmp_tables_total",
        "The total tmp tables of events statements by digest.",
    ),
    (
        "events_statements_tmp_disk_tables_total",
        "The total tmp disk tables of events statements by digest.",
    ),
    (
        "events_statements_sort_merge_passes_total",
        "The total number of merge passes by the sort algorithm performed by digest.",
    ),
    (
        "events_statements_sort_rows_total",
        "The total number of sorted rows by digest.",
    ),
    (
        "events_statements_no_index_used_total",
        "The total number of statements that used full table scans by digest.",
    ),
];

/// The rows of [`events_statements_query`] as the exporter's counters: labels
/// `schema`, `digest`, `digest_text`; the timer (picoseconds) in seconds. A NULL
/// or a count that is not an unsigned 64-bit integer fails the collector, as it
/// fails the exporter's scan.
pub fn events_statements(rs: &ResultSet, out: &mut Families) -> Result<(), String> {
    for (r, row) in rs.rows.iter().enumerate() {
        let column = |i: usize| rs.columns.get(i).map(String::as_str).unwrap_or("?");
        let mut labels = [String::new(), String::new(), String::new()];
        for (i, label) in labels.iter_mut().enumerate() {
            match row.get(i) {
                Some(Some(v)) => *label = String::from_utf8_lossy(v).into_owned(),
                _ => return Err(format!("row {}: column {} is NULL", r + 1, column(i))),
            }
        }
        let mut values = [0.0; 12];
        for (i, v) in values.iter_mut().enumerate() {
            let text = match row.get(i + 3) {
                Some(Some(t)) => t,
                _ => return Err(format!("row {}: column {} is NULL", r + 1, column(i + 3))),
            };
            let n: u64 = std::str::from_utf8(text)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| {
                    format!(
                        "row {}: column {}: {:?} is not an unsigned integer",
                        r + 1,
                        column(i + 3),
                        String::from_utf8_lossy(text)
                    )
                })?;
            *v = n as f64;
        }
        // SUM_TIMER_WAIT is in picoseconds.
        values[1] /= 1e12;
        let pairs = [
            ("schema", labels[0].as_str()),
            ("digest", labels[1].as_str()),
            ("digest_text", labels[2].as_str()),
        ];
        for ((name, help), v) in EVENTS_STATEMENTS_FAMILIES.iter().zip(values) {
            out.add(
                &format!("mysql_perf_schema_{name}"),
                help,
                MetricType::Counter,
                &pairs,
                v,
            );
        }
    }
    Ok(())
}

/// The exporter's name for a status or variable: characters other than ASCII
/// letters, digits and `_` become `_`, then lower case.
fn prometheus_name(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// `SHOW GLOBAL STATUS` (`collect.global_status`).
pub fn global_status(rs: &ResultSet, out: &mut Families) {
    use MetricType::{Counter, Gauge, Untyped};
    // Text values kept for the Galera series.
    let mut local_state_uuid = String::new();
    let mut cluster_state_uuid = String::new();
    let mut provider_version = String::new();
    let mut evs_repl_latency = String::new();
    for row in &rs.rows {
        let (Some(Some(key)), value) = (row.first(), row.get(1)) else {
            continue;
        };
        let key = String::from_utf8_lossy(key);
        let value = value.and_then(|v| v.as_deref()).unwrap_or(b"");
        let Some(v) = parse_status(value) else {
            let text = String::from_utf8_lossy(value).into_owned();
            match key.as_ref() {
                "wsrep_local_state_uuid" => local_state_uuid = text,
                "wsrep_cluster_state_uuid" => cluster_state_uuid = text,
                "wsrep_provider_version" => provider_version = text,
                "wsrep_evs_repl_latency" => evs_repl_latency = text,
                _ => {}
            }
            continue;
        };
        let key = prometheus_name(&key);
        let grouped = [
            "com",
            "handler",
            "connection_errors",
            "innodb_buffer_pool_pages",
            "innodb_rows",
            "performance_schema",
        ]
        .into_iter()
        .find_map(|p| Some((p, key.strip_prefix(p)?.strip_prefix('_')?)));
        let Some((group, rest)) = grouped else {
            let name = format!("mysql_global_status_{key}");
            if valid_name(&name) {
                out.add(
                    &name,
                    "Generic metric from SHOW GLOBAL STATUS.",
                    Untyped,
                    &[],
                    v,
                );
            }
            continue;
        };
        match group {
            "com" => out.add(
                "mysql_global_status_commands_total",
                "Total number of executed MySQL commands.",
                Counter,
                &[("command", rest)],
                v,
            ),
            "handler" => out.add(
                "mysql_global_status_handlers_total",
                "Total number of executed MySQL handlers.",
                Counter,
                &[("handler", rest)],
                v,
            ),
            "connection_errors" => out.add(
                "mysql_global_status_connection_errors_total",
                "Total number of MySQL connection errors.",
                Counter,
                &[("error", rest)],
                v,
            ),
            "innodb_buffer_pool_pages" => match rest {
                "data" | "free" | "misc" | "old" => out.add(
                    "mysql_global_status_buffer_pool_pages",
                    "Innodb buffer pool pages by state.",
                    Gauge,
                    &[("state", rest)],
                    v,
                ),
                "dirty" => out.add(
                    "mysql_global_status_buffer_pool_dirty_pages",
                    "Innodb buffer pool dirty pages.",
                    Gauge,
                    &[],
                    v,
                ),
                "total" => {}
                _ => out.add(
                    "mysql_global_status_buffer_pool_page_changes_total",
                    "Innodb buffer pool page state changes.",
                    Counter,
                    &[("operation", rest)],
                    v,
                ),
            },
            "innodb_rows" => out.add(
                "mysql_global_status_innodb_row_ops_total",
                "Total number of MySQL InnoDB row operations.",
                Counter,
                &[("operation", rest)],
                v,
            ),
            _ => out.add(
                "mysql_global_status_performance_schema_lost_total",
                "Total number of MySQL instrumentations that could not be loaded or created due to memory constraints.",
                Counter,
                &[("instrumentation", rest)],
                v,
            ),
        }
    }
    if !local_state_uuid.is_empty() {
        out.add(
            "mysql_galera_status_info",
            "PXC/Galera status information.",
            Gauge,
            &[
                ("wsrep_local_state_uuid", &local_state_uuid),
                ("wsrep_cluster_state_uuid", &cluster_state_uuid),
                ("wsrep_provider_version", &provider_version),
            ],
            1.0,
        );
    }
    if !evs_repl_latency.is_empty() {
        let parts: Vec<Option<f64>> = evs_repl_latency
            .split('/')
            .map(|p| parse_go_float(p.as_bytes()))
            .collect();
        let names = [
            (
                "min_seconds",
                "PXC/Galera group communication latency. Min value.",
            ),
            (
                "avg_seconds",
                "PXC/Galera group communication latency. Avg value.",
            ),
            (
                "max_seconds",
                "PXC/Galera group communication latency. Max value.",
            ),
            (
                "stdev",
                "PXC/Galera group communication latency. Standard Deviation.",
            ),
            (
                "sample_size",
                "PXC/Galera group communication latency. Sample Size.",
            ),
        ];
        if parts.len() == names.len() && parts.iter().all(Option::is_some) {
            for ((name, help), v) in names.iter().zip(parts.into_iter().flatten()) {
                out.add(
                    &format!("mysql_galera_evs_repl_latency_{name}"),
                    help,
                    Gauge,
                    &[],
                    v,
                );
            }
        }
    }
}

/// `SHOW GLOBAL VARIABLES` (`collect.global_variables`). Also gives
/// `mysql_version_info`, whose `version` is the server's version text.
pub fn global_variables(rs: &ResultSet, out: &mut Families) {
    use MetricType::Gauge;
    let mut innodb_version = String::new();
    let mut version = String::new();
    let mut version_comment = String::new();
    let mut cluster_name = String::new();
    let mut provider_options = String::new();
    let mut tx_isolation = String::new();
    let mut transaction_isolation = String::new();
    for row in &rs.rows {
        let (Some(Some(key)), value) = (row.first(), row.get(1)) else {
            continue;
        };
        let key = prometheus_name(&String::from_utf8_lossy(key));
        let value = value.and_then(|v| v.as_deref()).unwrap_or(b"");
        if let Some(v) = parse_status(value) {
            let name = format!("mysql_global_variables_{key}");
            if valid_name(&name) {
                out.add(
                    &name,
                    "Generic gauge metric from SHOW GLOBAL VARIABLES.",
                    Gauge,
                    &[],
                    v,
                );
            }
            continue;
        }
        let text = String::from_utf8_lossy(value).into_owned();
        match key.as_str() {
            "innodb_version" => innodb_version = text,
            "version" => version = text,
            "version_comment" => version_comment = text,
            "wsrep_cluster_name" => cluster_name = text,
            "wsrep_provider_options" => provider_options = text,
            "tx_isolation" => tx_isolation = text,
            "transaction_isolation" => transaction_isolation = text,
            _ => {}
        }
    }
    out.add(
        "mysql_version_info",
        "MySQL version and distribution.",
        Gauge,
        &[
            ("innodb_version", &innodb_version),
            ("version", &version),
            ("version_comment", &version_comment),
        ],
        1.0,
    );
    if !cluster_name.is_empty() {
        out.add(
            "mysql_galera_variables_info",
            "PXC/Galera variables information.",
            Gauge,
            &[("wsrep_cluster_name", &cluster_name)],
            1.0,
        );
    }
    if !provider_options.is_empty() {
        out.add(
            "mysql_galera_gcache_size_bytes",
            "PXC/Galera gcache size.",
            Gauge,
            &[],
            gcache_size(&provider_options),
        );
    }
    let level = if transaction_isolation.is_empty() {
        tx_isolation
    } else {
        transaction_isolation
    };
    if !level.is_empty() {
        out.add(
            "mysql_transaction_isolation",
            "MySQL transaction isolation.",
            Gauge,
            &[("level", &level)],
            1.0,
        );
    }
}

/// `gcache.size = <digits>[M|G];` in `wsrep_provider_options`, in bytes; 0 when
/// absent.
fn gcache_size(options: &str) -> f64 {
    const KEY: &str = "gcache.size = ";
    let mut rest = options;
    while let Some(at) = rest.find(KEY) {
        let after = &rest[at + KEY.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let tail = &after[digits..];
        let (unit, tail) = match tail.as_bytes().first() {
            Some(b'M') => (1024.0 * 1024.0, &tail[1..]),
            Some(b'G') => (1024.0 * 1024.0 * 1024.0, &tail[1..]),
            _ => (1.0, tail),
        };
        if digits > 0 && tail.starts_with(';') {
            let n = parse_go_float(&after.as_bytes()[..digits]).unwrap_or(0.0);
            return n * unit;
        }
        rest = &rest[at + 1..];
    }
    0.0
}

/// `SHOW [ALL] SLAVE[S] STATUS` (`collect.slave_status`): every numeric column of
/// every replication channel.
pub fn slave_status(rs: &ResultSet, out: &mut Families) {
    for row in &rs.rows {
        let label = |c: &str| String::from_utf8_lossy(rs.text(row, c)).into_owned();
        let master_host = label("Master_Host");
        let master_uuid = label("Master_UUID");
        let channel_name = label("Channel_Name");
        let connection_name = label("Connection_name");
        let labels = [
            ("master_host", master_host.as_str()),
            ("master_uuid", master_uuid.as_str()),
            ("channel_name", channel_name.as_str()),
            ("connection_name", connection_name.as_str()),
        ];
        for (column, value) in rs.columns.iter().zip(row) {
            let Some(v) = parse_status(value.as_deref().unwrap_or(b"")) else {
                continue;
            };
            let name = format!("mysql_slave_status_{}", column.to_lowercase());
            if valid_name(&name) {
                out.add(
                    &name,
                    "Generic metric from SHOW SLAVE STATUS.",
                    MetricType::Untyped,
                    &labels,
                    v,
                );
            }
        }
    }
}

/// A number column as Go's `database/sql` scans it into a float64.
fn float_column(rs: &ResultSet, row: &[Option<Vec<u8>>], i: usize) -> Result<f64, String> {
    let column = rs.columns.get(i).map(String::as_str).unwrap_or("?");
    match row.get(i) {
        Some(Some(v)) => parse_go_float(v).ok_or_else(|| {
            format!(
                "column {column}: {:?} is not a number",
                String::from_utf8_lossy(v)
            )
        }),
        _ => Err(format!("column {column} is NULL")),
    }
}

fn text_column(row: &[Option<Vec<u8>>], i: usize) -> String {
    row.get(i)
        .and_then(|v| v.as_deref())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// `information_schema.innodb_cmp` (`collect.info_schema.innodb_cmp`).
pub fn innodb_cmp(rs: &ResultSet, out: &mut Families) -> Result<(), String> {
    let families = [
        (
            "compress_ops_total",
            "Number of times a B-tree page of the size PAGE_SIZE has been compressed.",
        ),
        (
            "compress_ops_ok_total",
            "Number of times a B-tree page of the size PAGE_SIZE has been successfully compressed.",
        ),
        (
            "compress_time_seconds_total",
            "Total time in seconds spent in attempts to compress B-tree pages.",
        ),
        (
            "uncompress_ops_total",
            "Number of times a B-tree page of the size PAGE_SIZE has been uncompressed.",
        ),
        (
            "uncompress_time_seconds_total",
            "Total time in seconds spent in uncompressing B-tree pages.",
        ),
    ];
    for row in &rs.rows {
        let page_size = text_column(row, 0);
        let mut values = [0.0; 5];
        for (i, v) in values.iter_mut().enumerate() {
            *v = float_column(rs, row, i + 1)?;
        }
        for ((name, help), v) in families.iter().zip(values) {
            out.add(
                &format!("mysql_info_schema_innodb_cmp_{name}"),
                help,
                MetricType::Counter,
                &[("page_size", &page_size)],
                v,
            );
        }
    }
    Ok(())
}

/// `information_schema.innodb_cmpmem` (`collect.info_schema.innodb_cmpmem`); the
/// relocation time comes in microseconds and is divided by 1000, as the exporter
/// does.
pub fn innodb_cmpmem(rs: &ResultSet, out: &mut Families) -> Result<(), String> {
    let families = [
        (
            "pages_used_total",
            "Number of blocks of the size PAGE_SIZE that are currently in use.",
        ),
        (
            "pages_free_total",
            "Number of blocks of the size PAGE_SIZE that are currently available for allocation.",
        ),
        (
            "relocation_ops_total",
            "Number of times a block of the size PAGE_SIZE has been relocated.",
        ),
        (
            "relocation_time_seconds_total",
            "Total time in seconds spent in relocating blocks.",
        ),
    ];
    for row in &rs.rows {
        let page_size = text_column(row, 0);
        let buffer_pool = text_column(row, 1);
        let mut values = [0.0; 4];
        for (i, v) in values.iter_mut().enumerate() {
            *v = float_column(rs, row, i + 2)?;
        }
        values[3] /= 1000.0;
        for ((name, help), v) in families.iter().zip(values) {
            out.add(
                &format!("mysql_info_schema_innodb_cmpmem_{name}"),
                help,
                MetricType::Counter,
                &[("page_size", &page_size), ("buffer_pool", &buffer_pool)],
                v,
            );
        }
    }
    Ok(())
}

/// Whether `SELECT @@query_response_time_stats` says the plugin collects: the
/// exporter reads it into an unsigned byte.
pub fn query_response_time_enabled(rs: &ResultSet) -> bool {
    rs.rows
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse::<u8>().ok())
        .is_some_and(|n| n != 0)
}

/// One of the `QUERY_RESPONSE_TIME` tables as a histogram: rows are (upper bound,
/// count, total time) as text; a bound that is not a positive number (`TOO LONG`)
/// adds only to the count and sum.
pub fn query_response_time(
    rs: &ResultSet,
    family: &str,
    help: &str,
    out: &mut Families,
) -> Result<(), String> {
    let trimmed = |row: &[Option<Vec<u8>>], i: usize| text_column(row, i).trim().to_string();
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    let mut count: u64 = 0;
    let mut sum = 0.0;
    for row in &rs.rows {
        let n_text = text_column(row, 1);
        let n: u64 = n_text
            .parse()
            .map_err(|_| format!("column COUNT: {n_text:?} is not an unsigned integer"))?;
        let bound = parse_go_float(trimmed(row, 0).as_bytes()).unwrap_or(0.0);
        let total = parse_go_float(trimmed(row, 2).as_bytes()).unwrap_or(0.0);
        count = count.wrapping_add(n);
        sum += total;
        if bound == 0.0 {
            continue;
        }
        match buckets.iter_mut().find(|(b, _)| *b == bound) {
            Some(b) => b.1 = count,
            None => buckets.push((bound, count)),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    out.add_histogram(family, help, buckets, sum, count);
    Ok(())
}

/// The exporter's own series about one collection (`mysql_up` and the
/// `mysql_exporter_*` families).
pub struct CollectionReport<'a> {
    /// Seconds to get a working connection; `None`: the server could not be
    /// reached or refused the login (`mysql_up` 0, and no durations, as the
    /// exporter gives it).
    pub connection_seconds: Option<f64>,
    /// Each collector run: its name and seconds.
    pub durations: &'a [(&'static str, f64)],
    /// Collections of this target so far, this one included.
    pub scrapes: u64,
    /// Failed runs of each collector so far (only those that failed at least once).
    pub errors_by_collector: &'a [(&'static str, u64)],
    pub failed: bool,
}

pub fn report(r: &CollectionReport<'_>, out: &mut Families) {
    use MetricType::{Counter, Gauge};
    let duration = |out: &mut Families, label: &str, v: f64| {
        out.add(
            "mysql_exporter_collector_duration_seconds",
            "Collector time duration.",
            Gauge,
            &[("collector", label)],
            v,
        )
    };
    if let Some(secs) = r.connection_seconds {
        duration(out, "connection", secs);
    }
    for (name, secs) in r.durations {
        duration(out, &format!("collect.{name}"), *secs);
    }
    out.add(
        "mysql_exporter_scrapes_total",
        "Total number of times MySQL was scraped for metrics.",
        Counter,
        &[],
        r.scrapes as f64,
    );
    out.add(
        "mysql_exporter_last_scrape_error",
        "Whether the last scrape of metrics from MySQL resulted in an error (1 for error, 0 for success).",
        Gauge,
        &[],
        if r.failed { 1.0 } else { 0.0 },
    );
    for (name, n) in r.errors_by_collector {
        out.add(
            "mysql_exporter_scrape_errors_total",
            "Total number of times an error occurred scraping a MySQL.",
            Counter,
            &[("collector", &format!("collect.{name}"))],
            *n as f64,
        );
    }
    let up = if r.connection_seconds.is_some() {
        1.0
    } else {
        0.0
    };
    out.add(
        "mysql_up",
        "Whether the MySQL server is up.",
        Gauge,
        &[],
        up,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(columns: &[&str], rows: &[&[Option<&str>]]) -> ResultSet {
        ResultSet {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: rows
                .iter()
                .map(|r| r.iter().map(|v| v.map(|s| s.as_bytes().to_vec())).collect())
                .collect(),
        }
    }

    fn kv(pairs: &[(&str, &str)]) -> ResultSet {
        let rows: Vec<Vec<Option<&str>>> = pairs
            .iter()
            .map(|(k, v)| vec![Some(*k), Some(*v)])
            .collect();
        let rows: Vec<&[Option<&str>]> = rows.iter().map(Vec::as_slice).collect();
        rs(&["Variable_name", "Value"], &rows)
    }

    #[test]
    fn global_status_groups_as_the_exporter_does() {
        let mut f = Families::default();
        global_status(
            &kv(&[
                ("Aborted_clients", "3"),
                ("Com_select", "10"),
                ("Compression", "OFF"),
                ("Handler_read_first", "4"),
                ("Connection_errors_accept", "0"),
                ("Innodb_buffer_pool_pages_data", "100"),
                ("Innodb_buffer_pool_pages_dirty", "2"),
                ("Innodb_buffer_pool_pages_total", "8191"),
                ("Innodb_buffer_pool_pages_made_young", "7"),
                ("Innodb_rows_read", "55"),
                ("Performance_schema_accounts_lost", "0"),
                ("Rpl_status", "AUTH_MASTER"),
                ("wsrep_local_state_uuid", "u-1"),
                ("wsrep_evs_repl_latency", "0.1/0.2/0.3/0.01/5"),
            ]),
            &mut f,
        );
        let text = f.render();
        for line in [
            "# TYPE mysql_global_status_aborted_clients untyped",
            "mysql_global_status_aborted_clients 3",
            "# HELP mysql_global_status_commands_total Total number of executed MySQL commands.",
            "mysql_global_status_commands_total{command=\"select\"} 10",
            "mysql_global_status_compression 0",
            "mysql_global_status_handlers_total{handler=\"read_first\"} 4",
            "mysql_global_status_connection_errors_total{error=\"accept\"} 0",
            "# TYPE mysql_global_status_buffer_pool_pages gauge",
            "mysql_global_status_buffer_pool_pages{state=\"data\"} 100",
            "mysql_global_status_buffer_pool_dirty_pages 2",
            "mysql_global_status_buffer_pool_page_changes_total{operation=\"made_young\"} 7",
            "mysql_global_status_innodb_row_ops_total{operation=\"read\"} 55",
            "mysql_global_status_performance_schema_lost_total{instrumentation=\"accounts_lost\"} 0",
            "mysql_galera_status_info{wsrep_cluster_state_uuid=\"\",wsrep_local_state_uuid=\"u-1\",wsrep_provider_version=\"\"} 1",
            "mysql_galera_evs_repl_latency_sample_size 5",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(
            !text.contains("pages_total") && !text.contains("rpl_status"),
            "{text}"
        );
    }

    #[test]
    fn global_variables_give_gauges_and_info_series() {
        let mut f = Families::default();
        global_variables(
            &kv(&[
                ("max_connections", "151"),
                ("innodb_buffer_pool_size", "33554432"),
                ("version", "10.11.14-MariaDB-0+deb12u2"),
                ("version_comment", "Debian 12"),
                ("tx_isolation", "REPEATABLE-READ"),
                ("log_bin", "OFF"),
                (
                    "wsrep_provider_options",
                    "base_dir = /x; gcache.size = 128M; gcache.page_size = 1G;",
                ),
            ]),
            &mut f,
        );
        let text = f.render();
        for line in [
            "# HELP mysql_global_variables_max_connections Generic gauge metric from SHOW GLOBAL VARIABLES.",
            "# TYPE mysql_global_variables_max_connections gauge",
            "mysql_global_variables_max_connections 151",
            "mysql_global_variables_log_bin 0",
            "mysql_version_info{innodb_version=\"\",version=\"10.11.14-MariaDB-0+deb12u2\",version_comment=\"Debian 12\"} 1",
            "mysql_transaction_isolation{level=\"REPEATABLE-READ\"} 1",
            "mysql_galera_gcache_size_bytes 1.34217728e+08",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn slave_status_labels_every_numeric_column() {
        let mut f = Families::default();
        slave_status(
            &rs(
                &[
                    "Connection_name",
                    "Master_Host",
                    "Slave_IO_Running",
                    "Seconds_Behind_Master",
                    "Master_Log_File",
                ],
                &[&[
                    Some("a"),
                    Some("10.0.0.1"),
                    Some("Yes"),
                    None,
                    Some("bin.000002"),
                ]],
            ),
            &mut f,
        );
        let text = f.render();
        assert!(
            text.contains("# TYPE mysql_slave_status_slave_io_running untyped\n"),
            "{text}"
        );
        assert!(text.contains("mysql_slave_status_slave_io_running{channel_name=\"\",connection_name=\"a\",master_host=\"10.0.0.1\",master_uuid=\"\"} 1\n"), "{text}");
        assert!(
            !text.contains("seconds_behind_master") && !text.contains("master_log_file"),
            "{text}"
        );
    }

    #[test]
    fn innodb_tables_and_response_times() {
        let mut f = Families::default();
        innodb_cmp(
            &rs(
                &["page_size", "a", "b", "c", "d", "e"],
                &[&[
                    Some("1024"),
                    Some("1"),
                    Some("2"),
                    Some("3"),
                    Some("4"),
                    Some("5"),
                ]],
            ),
            &mut f,
        )
        .unwrap();
        innodb_cmpmem(
            &rs(
                &["page_size", "bp", "a", "b", "c", "d"],
                &[&[
                    Some("1024"),
                    Some("0"),
                    Some("1"),
                    Some("2"),
                    Some("3"),
                    Some("4500"),
                ]],
            ),
            &mut f,
        )
        .unwrap();
        let (_, family, help) = QUERY_RESPONSE_TIME_TABLES[0];
        query_response_time(
            &rs(
                &["TIME", "COUNT", "TOTAL"],
                &[
                    &[Some("  0.000001"), Some("2"), Some("  0.000001")],
                    &[Some("  0.000010"), Some("3"), Some("  0.000020")],
                    &[Some("TOO LONG"), Some("1"), Some("TOO LONG")],
                ],
            ),
            family,
            help,
            &mut f,
        )
        .unwrap();
        let text = f.render();
        for line in [
            "mysql_info_schema_innodb_cmp_uncompress_time_seconds_total{page_size=\"1024\"} 5",
            "mysql_info_schema_innodb_cmpmem_relocation_time_seconds_total{buffer_pool=\"0\",page_size=\"1024\"} 4.5",
            "# TYPE mysql_info_schema_query_response_time_seconds histogram",
            "mysql_info_schema_query_response_time_seconds_bucket{le=\"1e-06\"} 2",
            "mysql_info_schema_query_response_time_seconds_bucket{le=\"1e-05\"} 5",
            "mysql_info_schema_query_response_time_seconds_bucket{le=\"+Inf\"} 6",
            "mysql_info_schema_query_response_time_seconds_count 6",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        let null = rs(
            &["page_size", "a", "b", "c", "d", "e"],
            &[&[
                Some("1024"),
                None,
                Some("2"),
                Some("3"),
                Some("4"),
                Some("5"),
            ]],
        );
        let err = innodb_cmp(&null, &mut Families::default()).unwrap_err();
        assert!(err.contains("column a is NULL"), "{err}");
        assert!(query_response_time_enabled(&rs(&["x"], &[&[Some("1")]])));
        assert!(!query_response_time_enabled(&rs(&["x"], &[&[Some("0")]])));
        assert!(!query_response_time_enabled(&rs(&["x"], &[])));
    }

    fn digest_row<'a>(schema: Option<&'a str>, counts: [&'a str; 12]) -> Vec<Option<&'a str>> {
        let mut row = vec![
            schema,
            Some("3f2a"),
            Some("SELECT `v` FROM `events` WHERE `k` = ?"),
        ];
        row.extend(counts.iter().map(|c| Some(*c)));
        row
    }

    const DIGEST_COLUMNS: [&str; 15] = [
        "SCHEMA_NAME",
        "DIGEST",
        "DIGEST_TEXT",
        "COUNT_STAR",
        "SUM_TIMER_WAIT",
        "SUM_ERRORS",
        "SUM_WARNINGS",
        "SUM_ROWS_AFFECTED",
        "SUM_ROWS_SENT",
        "SUM_ROWS_EXAMINED",
        "SUM_CREATED_TMP_DISK_TABLES",
        "SUM_CREATED_TMP_TABLES",
        "SUM_SORT_MERGE_PASSES",
        "SUM_SORT_ROWS",
        "SUM_NO_INDEX_USED",
    ];

    #[test]
    fn statement_digests_become_the_exporters_counters() {
        let row = digest_row(
            Some("loadtest"),
            [
                "42",
                "1500000000000",
                "1",
                "2",
                "3",
                "4",
                "18446744073709551615",
                "5",
                "6",
                "7",
                "8",
                "9",
            ],
        );
        let mut f = Families::default();
        events_statements(&rs(&DIGEST_COLUMNS, &[row.as_slice()]), &mut f).unwrap();
        let text = f.render();
        let labels = "{digest=\"3f2a\",digest_text=\"SELECT `v` FROM `events` WHERE `k` = ?\",schema=\"loadtest\"}";
        for (name, value) in [
            ("events_statements_total", "42"),
            ("events_statements_seconds_total", "1.5"),
            ("events_statements_errors_total", "1"),
            ("events_statements_warnings_total", "2"),
            ("events_statements_rows_affected_total", "3"),
            ("events_statements_rows_sent_total", "4"),
            (
                "events_statements_rows_examined_total",
                "1.8446744073709552e+19",
            ),
            // The exporter's swap: disk tmp tables in the tmp tables series.
            ("events_statements_tmp_tables_total", "5"),
            ("events_statements_tmp_disk_tables_total", "6"),
            ("events_statements_sort_merge_passes_total", "7"),
            ("events_statements_sort_rows_total", "8"),
            ("events_statements_no_index_used_total", "9"),
        ] {
            let line = format!("mysql_perf_schema_{name}{labels} {value}");
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
            let kind = format!("# TYPE mysql_perf_schema_{name} counter");
            assert!(text.lines().any(|l| l == kind), "missing {kind:?}");
        }
        assert!(text.contains(
            "# HELP mysql_perf_schema_events_statements_no_index_used_total The total number of statements that used full table scans by digest.\n"
        ));
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 12);
    }

    #[test]
    fn bad_digest_rows_fail_naming_the_column() {
        let counts = ["1"; 12];
        let null = digest_row(None, counts);
        let err = events_statements(
            &rs(&DIGEST_COLUMNS, &[null.as_slice()]),
            &mut Families::default(),
        )
        .unwrap_err();
        assert_eq!(err, "row 1: column SCHEMA_NAME is NULL");
        let mut counts = counts;
        counts[4] = "-3";
        let negative = digest_row(Some("db"), counts);
        let err = events_statements(
            &rs(&DIGEST_COLUMNS, &[negative.as_slice()]),
            &mut Families::default(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            "row 1: column SUM_ROWS_AFFECTED: \"-3\" is not an unsigned integer"
        );
    }

    #[test]
    fn the_digest_query_carries_the_options() {
        let q = events_statements_query(7, 600, 33);
        assert!(q.contains("LEFT(DIGEST_TEXT, 33) as DIGEST_TEXT"), "{q}");
        assert!(q.contains("INTERVAL 600 SECOND"), "{q}");
        assert!(q.ends_with("ORDER BY SUM_TIMER_WAIT DESC LIMIT 7"), "{q}");
    }
}
