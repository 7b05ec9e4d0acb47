//! One MySQL or MariaDB server of a `mysql:` job: its connection, kept open
//! between collections, and one collection: the configured collectors in turn on
//! that connection, within a time budget below the scrape timeout.
//!
//! The connection is sqlx's (MySQL driver, rustls with ring). Each new
//! connection sets `lock_wait_timeout`, `innodb_lock_wait_timeout` and a
//! statement time limit (MariaDB's `max_statement_time`, MySQL's
//! `max_execution_time`) for its session, so a monitoring query never waits on
//! or holds a lock for long on a busy server. All queries go over the text
//! protocol (no prepared statements), as values are read as text the way the
//! exporter reads them.
//!
//! A server that cannot be reached, or refuses the user, fails the collection
//! (the target's `up` is 0); a collector the server refuses (a missing grant)
//! leaves the others' series and says which grant is missing. No message
//! carries the password.

use std::time::{Duration, Instant};

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlSslMode};
use sqlx::{Column, ConnectOptions, Connection, Executor, Row};

use super::exposition::Families;
use super::mysqld_exporter::{self as exporter, CollectionReport, ResultSet};
use crate::config::{EventsStatementsOptions, MysqlCollector, MysqlConfig, SecretValue};

/// The time a collection may take under a scrape timeout: the timeout less a
/// tenth of it, at most 250 ms (mysqld_exporter's default `--timeout-offset`),
/// so the collection ends with its own error before the scrape times out.
pub fn collection_budget(scrape_timeout: Duration) -> Duration {
    scrape_timeout.saturating_sub((scrape_timeout / 10).min(Duration::from_millis(250)))
}

/// What one collection read: the exposition body, and what failed: the
/// connection (then `down`, and the body holds only the exporter's series for a
/// server it cannot reach: `mysql_up` 0 and its scrape counters), or collectors
/// (their series are missing from the body).
#[derive(Debug)]
pub struct Collected {
    pub body: String,
    pub errors: Vec<String>,
    pub down: bool,
}

/// One server, collected at each scrape of its target.
pub struct MysqlTarget {
    config: MysqlConfig,
    host: String,
    port: u16,
    budget: Duration,
    /// The open connection, when the last collection left it usable.
    conn: Option<Server>,
    scrapes: u64,
    errors_by_collector: Vec<(&'static str, u64)>,
}

struct Server {
    conn: MySqlConnection,
    /// `major.minor` of `@@version`, as the exporter reads it to skip collectors
    /// older servers lack (999 when unreadable).
    version: f64,
}

/// Splits `host:port`, `[v6]:port` or a bare host (port 3306).
fn split_address(address: &str) -> Result<(String, u16), String> {
    let bad = || format!("address {address:?} is not host:port");
    if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => 3306,
            None => return Err(bad()),
        };
        return Ok((host.to_string(), port));
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && !host.is_empty() => {
            Ok((host.to_string(), port.parse().map_err(|_| bad())?))
        }
        None if !address.is_empty() => Ok((address.to_string(), 3306)),
        _ => Err(bad()),
    }
}

/// What `check-config` can check without connecting: the password file and the
/// TLS files can be read.
pub fn check_config(m: &MysqlConfig) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(SecretValue::File(_)) = &m.password {
        if let Some(Err(e)) = m.password.as_ref().map(SecretValue::read) {
            problems.push(format!("mysql.password_file: {e}"));
        }
    }
    if let Some(tls) = &m.tls {
        for (key, file) in [
            ("ca_file", &tls.ca_file),
            ("cert_file", &tls.cert_file),
            ("key_file", &tls.key_file),
        ] {
            if let Some(f) = file {
                if let Err(e) = std::fs::metadata(f) {
                    problems.push(format!("mysql.tls_config.{key}: {}: {e}", f.display()));
                }
            }
        }
    }
    problems
}

/// The grant a collector needs beyond a plain login, for error messages.
fn needed_grant(c: MysqlCollector) -> &'static str {
    match c {
        MysqlCollector::GlobalStatus | MysqlCollector::GlobalVariables => "no grant beyond USAGE",
        MysqlCollector::SlaveStatus => {
            "REPLICATION CLIENT (MySQL, MariaDB before 10.5) or SLAVE MONITOR (MariaDB 10.5 and later)"
        }
        MysqlCollector::InnodbCmp
        | MysqlCollector::InnodbCmpMem
        | MysqlCollector::QueryResponseTime => "PROCESS",
        MysqlCollector::PerfSchemaEventsStatements => {
            "SELECT on performance_schema.events_statements_summary_by_digest"
        }
    }
}

/// The oldest server version a collector runs on (the exporter's `Version()`).
fn min_version(c: MysqlCollector) -> f64 {
    match c {
        MysqlCollector::GlobalStatus
        | MysqlCollector::GlobalVariables
        | MysqlCollector::SlaveStatus => 5.1,
        MysqlCollector::InnodbCmp
        | MysqlCollector::InnodbCmpMem
        | MysqlCollector::QueryResponseTime => 5.5,
        MysqlCollector::PerfSchemaEventsStatements => 5.6,
    }
}

/// `major.minor` at the start of a version text, as a number.
fn version_number(text: &str) -> f64 {
    let major = text.bytes().take_while(u8::is_ascii_digit).count();
    let minor = text
        .get(major + 1..)
        .map(|r| r.bytes().take_while(u8::is_ascii_digit).count())
        .unwrap_or(0);
    if major == 0 || minor == 0 || text.as_bytes().get(major) != Some(&b'.') {
        return 999.0;
    }
    text[..major + 1 + minor].parse().unwrap_or(999.0)
}

/// A failed collector: the error, and whether the connection is still usable.
struct Failure {
    message: String,
    connection_lost: bool,
    /// The server refused for want of a privilege.
    access_denied: bool,
}

/// MySQL's error numbers for a missing privilege: a global one
/// (`ER_SPECIFIC_ACCESS_DENIED_ERROR`), on a database, a table or a column.
const ACCESS_DENIED: [u16; 4] = [1227, 1044, 1142, 1143];

fn is_access_denied(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.try_downcast_ref::<MySqlDatabaseError>())
        .is_some_and(|d| ACCESS_DENIED.contains(&d.number()))
}

impl Failure {
    fn sql(e: sqlx::Error) -> Failure {
        let connection_lost = !matches!(
            e,
            sqlx::Error::Database(_) | sqlx::Error::ColumnDecode { .. }
        );
        Failure {
            access_denied: is_access_denied(&e),
            message: e.to_string(),
            connection_lost,
        }
    }

    /// A failure reading rows the server sent (the connection is fine).
    fn rows(message: String) -> Failure {
        Failure {
            message,
            connection_lost: false,
            access_denied: false,
        }
    }

    /// The collection's time ran out, or an earlier collector lost the connection.
    fn gone(message: String) -> Failure {
        Failure {
            message,
            connection_lost: true,
            access_denied: false,
        }
    }
}

/// `message` without `password` in it (passwords shorter than 3 characters would
/// blank out ordinary words, and are left).
fn scrub(message: String, password: &str) -> String {
    if password.len() >= 3 && message.contains(password) {
        message.replace(password, "<secret>")
    } else {
        message
    }
}

/// Runs `sql` over the text protocol and reads every value as text.
async fn query(conn: &mut MySqlConnection, sql: &str) -> Result<ResultSet, sqlx::Error> {
    let rows = conn.fetch_all(sql).await?;
    let columns = rows
        .first()
        .map(|r| r.columns().iter().map(|c| c.name().to_string()).collect())
        .unwrap_or_default();
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let mut values = Vec::with_capacity(r.len());
        for i in 0..r.len() {
            let v: Option<&[u8]> = r.try_get_unchecked(i)?;
            values.push(v.map(<[u8]>::to_vec));
        }
        out.push(values);
    }
    Ok(ResultSet { columns, rows: out })
}

impl MysqlTarget {
    /// The server at `address` (`host:port`), collected within
    /// [`collection_budget`] of `scrape_timeout`. Connects at the first collection.
    pub fn new(
        config: MysqlConfig,
        address: &str,
        scrape_timeout: Duration,
    ) -> Result<MysqlTarget, String> {
        let (host, port) = split_address(address)?;
        Ok(MysqlTarget {
            config,
            host,
            port,
            budget: collection_budget(scrape_timeout),
            conn: None,
            scrapes: 0,
            errors_by_collector: Vec::new(),
        })
    }

    /// Removes the configured password from a message, should a driver ever echo it.
    fn scrub(&self, message: String) -> String {
        match &self.config.password {
            Some(SecretValue::Inline(p)) => scrub(message, p),
            _ => message,
        }
    }

    async fn connect(&self) -> Result<Server, String> {
        let mut options = MySqlConnectOptions::new()
            .host(&self.host)
            .port(self.port)
            .username(&self.config.user)
            // The server's own SQL mode and time zone, as the exporter leaves them.
            .pipes_as_concat(false)
            .no_engine_substitution(false)
            .timezone(None);
        let mut password = String::new();
        if let Some(secret) = &self.config.password {
            password = secret
                .read()
                .map_err(|e| format!("mysql.password_file: {e}"))?;
            options = options.password(&password);
        }
        options = match &self.config.tls {
            None => options.ssl_mode(MySqlSslMode::Preferred),
            Some(tls) => {
                let mut o = options.ssl_mode(if tls.insecure_skip_verify {
                    MySqlSslMode::Required
                } else {
                    MySqlSslMode::VerifyIdentity
                });
                if let Some(ca) = &tls.ca_file {
                    o = o.ssl_ca(ca);
                }
                if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                    o = o.ssl_client_cert(cert).ssl_client_key(key);
                }
                o
            }
        };
        let user = &self.config.user;
        let mut conn = options
            .connect()
            .await
            .map_err(|e| scrub(format!("cannot connect as user {user:?}: {e}"), &password))?;
        let version_text = query(&mut conn, "SELECT @@version")
            .await
            .ok()
            .and_then(|rs| rs.rows.into_iter().next())
            .and_then(|r| r.into_iter().next().flatten())
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        let budget = self.budget;
        let lock_wait = budget.as_secs().clamp(1, 2);
        conn.execute(format!("SET SESSION lock_wait_timeout={lock_wait}").as_str())
            .await
            .map_err(|e| format!("setting lock_wait_timeout: {e}"))?;
        let limits = [
            format!("SET SESSION innodb_lock_wait_timeout={lock_wait}"),
            if version_text.contains("MariaDB") {
                format!("SET SESSION max_statement_time={:.3}", budget.as_secs_f64())
            } else {
                format!(
                    "SET SESSION max_execution_time={}",
                    budget.as_millis().max(1)
                )
            },
        ];
        for sql in &limits {
            // Servers without InnoDB or without a statement time limit still collect.
            if let Err(e) = conn.execute(sql.as_str()).await {
                tracing::debug!(server = %self.host, statement = %sql, error = %e, "session limit not set");
            }
        }
        Ok(Server {
            conn,
            version: version_number(&version_text),
        })
    }

    /// A usable connection: the kept one if it still answers, else a new one.
    async fn connection(&mut self) -> Result<Server, String> {
        if let Some(mut server) = self.conn.take() {
            if server.conn.ping().await.is_ok() {
                return Ok(server);
            }
        }
        self.connect().await
    }

    /// Ends the kept connection politely (COM_QUIT), so the server does not count
    /// an aborted client when a target goes away.
    pub async fn close(&mut self) {
        if let Some(server) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), server.conn.close()).await;
        }
    }

    /// Collects every configured collector and renders the exporter's exposition.
    pub async fn collect(&mut self) -> Collected {
        self.scrapes += 1;
        let start = Instant::now();
        let deadline = tokio::time::Instant::from_std(start + self.budget);
        let budget_text = crate::model::duration::format_duration(self.budget);
        let mut server = match tokio::time::timeout_at(deadline, self.connection()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return self.down(self.scrub(e)),
            Err(_) => {
                return self.down(format!(
                    "no connection within the collection's {budget_text}"
                ))
            }
        };
        let connection_seconds = start.elapsed().as_secs_f64();
        let mut families = Families::default();
        let mut durations = Vec::new();
        let mut errors = Vec::new();
        let mut usable = true;
        let options = self.config.events_statements;
        for &c in &self.config.collectors {
            if server.version < min_version(c) {
                continue;
            }
            let started = Instant::now();
            let outcome = if usable {
                tokio::time::timeout_at(deadline, run(c, &options, &mut server.conn, &mut families))
                    .await
                    .unwrap_or_else(|_| {
                        Err(Failure::gone(format!(
                            "not finished within the collection's {budget_text}"
                        )))
                    })
            } else {
                Err(Failure::gone("not run: the connection was lost".into()))
            };
            durations.push((c.name(), started.elapsed().as_secs_f64()));
            if let Err(f) = outcome {
                usable &= !f.connection_lost;
                let mut message = format!("collect.{}: {}", c.name(), f.message);
                if f.access_denied {
                    message.push_str(&format!(
                        "; the user {:?} needs {}",
                        self.config.user,
                        needed_grant(c)
                    ));
                }
                errors.push(self.scrub(message));
                match self
                    .errors_by_collector
                    .iter_mut()
                    .find(|(n, _)| *n == c.name())
                {
                    Some((_, n)) => *n += 1,
                    None => self.errors_by_collector.push((c.name(), 1)),
                }
            }
        }
        exporter::report(
            &CollectionReport {
                connection_seconds: Some(connection_seconds),
                durations: &durations,
                scrapes: self.scrapes,
                errors_by_collector: &self.errors_by_collector,
                failed: !errors.is_empty(),
            },
            &mut families,
        );
        if usable {
            self.conn = Some(server);
        }
        Collected {
            body: families.render(),
            errors,
            down: false,
        }
    }

    /// The collection of a server that cannot be reached or refused the login.
    fn down(&self, error: String) -> Collected {
        let mut families = Families::default();
        exporter::report(
            &CollectionReport {
                connection_seconds: None,
                durations: &[],
                scrapes: self.scrapes,
                errors_by_collector: &self.errors_by_collector,
                failed: true,
            },
            &mut families,
        );
        Collected {
            body: families.render(),
            errors: vec![error],
            down: true,
        }
    }
}

/// One collector's queries on `conn`, its series into `out`.
async fn run(
    c: MysqlCollector,
    options: &EventsStatementsOptions,
    conn: &mut MySqlConnection,
    out: &mut Families,
) -> Result<(), Failure> {
    let decoded = |r: Result<(), String>| r.map_err(Failure::rows);
    match c {
        MysqlCollector::GlobalStatus => {
            let rs = query(conn, exporter::GLOBAL_STATUS_QUERY)
                .await
                .map_err(Failure::sql)?;
            exporter::global_status(&rs, out);
        }
        MysqlCollector::GlobalVariables => {
            let rs = query(conn, exporter::GLOBAL_VARIABLES_QUERY)
                .await
                .map_err(Failure::sql)?;
            exporter::global_variables(&rs, out);
        }
        MysqlCollector::SlaveStatus => {
            // When every form fails, the error told is a missing privilege if one
            // said so (the others are then forms this server does not know),
            // else the first.
            let mut told: Option<sqlx::Error> = None;
            for sql in exporter::SLAVE_STATUS_QUERIES {
                match query(conn, sql).await {
                    Ok(rs) => {
                        exporter::slave_status(&rs, out);
                        return Ok(());
                    }
                    Err(e @ sqlx::Error::Database(_)) => {
                        if told
                            .as_ref()
                            .is_none_or(|t| !is_access_denied(t) && is_access_denied(&e))
                        {
                            told = Some(e);
                        }
                    }
                    Err(e) => return Err(Failure::sql(e)),
                }
            }
            if let Some(e) = told {
                return Err(Failure::sql(e));
            }
        }
        MysqlCollector::InnodbCmp => {
            let rs = query(conn, exporter::INNODB_CMP_QUERY)
                .await
                .map_err(Failure::sql)?;
            decoded(exporter::innodb_cmp(&rs, out))?;
        }
        MysqlCollector::InnodbCmpMem => {
            let rs = query(conn, exporter::INNODB_CMPMEM_QUERY)
                .await
                .map_err(Failure::sql)?;
            decoded(exporter::innodb_cmpmem(&rs, out))?;
        }
        MysqlCollector::QueryResponseTime => {
            // As the exporter: no plugin, or the plugin off, is no error and no series.
            let enabled = match query(conn, exporter::QUERY_RESPONSE_TIME_CHECK).await {
                Ok(rs) => exporter::query_response_time_enabled(&rs),
                Err(e @ sqlx::Error::Database(_)) => {
                    tracing::debug!(error = %e, "query response time distribution not available");
                    false
                }
                Err(e) => return Err(Failure::sql(e)),
            };
            if !enabled {
                return Ok(());
            }
            for (i, (sql, family, help)) in exporter::QUERY_RESPONSE_TIME_TABLES.iter().enumerate()
            {
                match query(conn, sql).await {
                    Ok(rs) => {
                        let r = exporter::query_response_time(&rs, family, help, out);
                        if i == 0 {
                            decoded(r)?;
                        }
                    }
                    // Only the first (all queries) table is required, as in the exporter.
                    Err(e @ sqlx::Error::Database(_)) if i > 0 => {
                        tracing::debug!(error = %e, table = %sql, "query response time table not available");
                    }
                    Err(e) => return Err(Failure::sql(e)),
                }
            }
        }
        MysqlCollector::PerfSchemaEventsStatements => {
            let sql = exporter::events_statements_query(
                options.limit,
                options.timelimit,
                options.digest_text_limit,
            );
            let rs = query(conn, &sql).await.map_err(Failure::sql)?;
            decoded(exporter::events_statements(&rs, out))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(split_address("db:3307").unwrap(), ("db".into(), 3307));
        assert_eq!(split_address("db").unwrap(), ("db".into(), 3306));
        assert_eq!(split_address("[::1]:3308").unwrap(), ("::1".into(), 3308));
        assert_eq!(split_address("[::1]").unwrap(), ("::1".into(), 3306));
        for bad in ["", "db:x", "db:70000", "[::1", "a:b:c", ":3306"] {
            assert!(split_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions_and_budgets() {
        assert_eq!(version_number("10.11.14-MariaDB-0+deb12u2"), 10.11);
        assert_eq!(version_number("8.0.32"), 8.0);
        assert_eq!(version_number("garbage"), 999.0);
        assert_eq!(
            collection_budget(Duration::from_secs(10)),
            Duration::from_millis(9750)
        );
        assert_eq!(
            collection_budget(Duration::from_secs(1)),
            Duration::from_millis(900)
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_fails_without_the_password() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let config = MysqlConfig {
            user: "monitor".into(),
            password: Some(SecretValue::Inline("pw-very-secret".into())),
            tls: None,
            collectors: MysqlCollector::DEFAULTS.to_vec(),
            events_statements: Default::default(),
        };
        let mut t = MysqlTarget::new(config, &addr, Duration::from_secs(2)).unwrap();
        let c = t.collect().await;
        assert!(c.down);
        let err = c.errors.join("; ");
        assert!(err.contains("cannot connect as user \"monitor\""), "{err}");
        assert!(!err.contains("pw-very-secret"), "{err}");
        // What the exporter serves for a server it cannot reach.
        let c = t.collect().await;
        assert_eq!(
            c.body,
            "# HELP mysql_exporter_last_scrape_error Whether the last scrape of metrics from MySQL resulted in an error (1 for error, 0 for success).\n\
             # TYPE mysql_exporter_last_scrape_error gauge\nmysql_exporter_last_scrape_error 1\n\
             # HELP mysql_exporter_scrapes_total Total number of times MySQL was scraped for metrics.\n\
             # TYPE mysql_exporter_scrapes_total counter\nmysql_exporter_scrapes_total 2\n\
             # HELP mysql_up Whether the MySQL server is up.\n# TYPE mysql_up gauge\nmysql_up 0\n"
        );
    }

    #[tokio::test]
    async fn a_server_that_never_answers_fails_within_the_budget() {
        // Accepts the connection (the kernel's backlog) but never greets.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let config = MysqlConfig {
            user: "monitor".into(),
            password: None,
            tls: None,
            collectors: MysqlCollector::DEFAULTS.to_vec(),
            events_statements: Default::default(),
        };
        let mut t = MysqlTarget::new(config, &addr, Duration::from_millis(500)).unwrap();
        let started = Instant::now();
        let c = t.collect().await;
        assert!(c.down);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(c.errors, ["no connection within the collection's 450ms"]);
        drop(listener);
    }
}
