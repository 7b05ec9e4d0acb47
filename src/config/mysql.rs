//! `mysql:` in a scrape job: collect from a MySQL or MariaDB server over SQL (see
//! `collect/`) instead of fetching an exporter's `/metrics`. The job keeps
//! everything else a scrape job has (targets, relabeling, interval and timeout,
//! limits); its targets are `host:port` of the servers.
//!
//! ```yaml
//! - job_name: mysql
//!   mysql:
//!     user: monitor
//!     password: ${secure.mysqlPassword}   # or password_file
//!     tls_config: {ca_file: ca.pem}       # optional
//!     collectors: [global_status, global_variables]  # optional
//!     perf_schema.eventsstatements: {limit: 250}     # optional, with that collector
//!   static_configs:
//!     - targets: ['db1:3306']
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{resolve_secret, tls_settings, ConfigError, ErrAt, RawJob, RawTlsConfig};
use super::{SecretSource, SecretValue, TlsConfig};

/// What `mysql:` holds, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMysql {
    user: Option<String>,
    password: Option<String>,
    password_file: Option<String>,
    tls_config: Option<RawTlsConfig>,
    collectors: Option<Vec<MysqlCollector>>,
    #[serde(rename = "perf_schema.eventsstatements")]
    events_statements: Option<RawEventsStatements>,
}

/// The options of `perf_schema.eventsstatements`, as written: mysqld_exporter's
/// `--collect.perf_schema.eventsstatements.*` flags.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEventsStatements {
    limit: Option<u32>,
    timelimit: Option<u32>,
    digest_text_limit: Option<u32>,
}

/// One of mysqld_exporter's collectors, by its `--collect.*` name: those that
/// mysqld_exporter 0.14.0 runs by default, and `perf_schema.eventsstatements`
/// (query analytics), which it, and a job, runs only when named.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
pub enum MysqlCollector {
    #[serde(rename = "global_status")]
    GlobalStatus,
    #[serde(rename = "global_variables")]
    GlobalVariables,
    #[serde(rename = "slave_status")]
    SlaveStatus,
    #[serde(rename = "info_schema.innodb_cmp")]
    InnodbCmp,
    #[serde(rename = "info_schema.innodb_cmpmem")]
    InnodbCmpMem,
    #[serde(rename = "info_schema.query_response_time")]
    QueryResponseTime,
    #[serde(rename = "perf_schema.eventsstatements")]
    PerfSchemaEventsStatements,
}

impl MysqlCollector {
    /// mysqld_exporter 0.14.0's defaults: every collector it enables without flags.
    pub const DEFAULTS: [MysqlCollector; 6] = [
        MysqlCollector::GlobalStatus,
        MysqlCollector::GlobalVariables,
        MysqlCollector::SlaveStatus,
        MysqlCollector::InnodbCmp,
        MysqlCollector::InnodbCmpMem,
        MysqlCollector::QueryResponseTime,
    ];

    /// The exporter's name of the collector (`collect[]`, and after `collect.` in
    /// `mysql_exporter_collector_duration_seconds`).
    pub fn name(self) -> &'static str {
        match self {
            MysqlCollector::GlobalStatus => "global_status",
            MysqlCollector::GlobalVariables => "global_variables",
            MysqlCollector::SlaveStatus => "slave_status",
            MysqlCollector::InnodbCmp => "info_schema.innodb_cmp",
            MysqlCollector::InnodbCmpMem => "info_schema.innodb_cmpmem",
            MysqlCollector::QueryResponseTime => "info_schema.query_response_time",
            MysqlCollector::PerfSchemaEventsStatements => "perf_schema.eventsstatements",
        }
    }
}

/// A validated `mysql:` block.
#[derive(Clone, Debug, PartialEq)]
pub struct MysqlConfig {
    pub user: String,
    /// `None`: no password is sent.
    pub password: Option<SecretValue>,
    /// `None`: TLS when the server offers it, without verifying its certificate
    /// (the MySQL client's `--ssl-mode=PREFERRED`).
    pub tls: Option<TlsConfig>,
    /// In the order the exporter's output is built; no repeats.
    pub collectors: Vec<MysqlCollector>,
    /// The options of `perf_schema.eventsstatements` (its defaults when the
    /// block does not set them).
    pub events_statements: EventsStatementsOptions,
}

/// How much of `performance_schema.events_statements_summary_by_digest` the
/// `perf_schema.eventsstatements` collector reads, with mysqld_exporter 0.14.0's
/// flags' names and defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventsStatementsOptions {
    /// The most digests kept, those with the most total time
    /// (`--collect.perf_schema.eventsstatements.limit`, 250).
    pub limit: u32,
    /// Only digests last seen within this many seconds
    /// (`--collect.perf_schema.eventsstatements.timelimit`, 86400).
    pub timelimit: u32,
    /// The characters of the normalized statement kept in `digest_text`
    /// (`--collect.perf_schema.eventsstatements.digest_text_limit`, 120).
    pub digest_text_limit: u32,
}

impl Default for EventsStatementsOptions {
    fn default() -> Self {
        EventsStatementsOptions {
            limit: 250,
            timelimit: 86400,
            digest_text_limit: 120,
        }
    }
}

impl MysqlConfig {
    pub(super) fn resolve_paths(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        if let Some(tls) = &mut self.tls {
            for p in [&mut tls.ca_file, &mut tls.cert_file, &mut tls.key_file]
                .into_iter()
                .flatten()
            {
                fix(p);
            }
        }
        if let Some(SecretValue::File(f)) = &mut self.password {
            if Path::new(f.as_str()).is_relative() {
                *f = dir.join(f.as_str()).display().to_string();
            }
        }
    }
}

/// The keys of a scrape job that only mean something for an HTTP scrape, when
/// the job has them set.
fn http_only_keys(rj: &RawJob) -> Vec<(&'static str, &'static str)> {
    let mut keys = Vec::new();
    let mut note = |set: bool, key: &'static str, why: &'static str| {
        if set {
            keys.push((key, why));
        }
    };
    note(
        rj.metrics_path.is_some(),
        "metrics_path",
        "there is no HTTP path",
    );
    note(
        rj.scheme.is_some(),
        "scheme",
        "the connection is MySQL's protocol; TLS is set in mysql.tls_config",
    );
    note(
        !rj.params.is_empty(),
        "params",
        "there is no HTTP query; choose collectors with mysql.collectors",
    );
    note(
        rj.basic_auth.is_some(),
        "basic_auth",
        "the server's user and password are mysql.user and mysql.password",
    );
    note(
        rj.authorization.is_some(),
        "authorization",
        "the server's user and password are mysql.user and mysql.password",
    );
    note(
        rj.bearer_token.is_some(),
        "bearer_token",
        "the server's user and password are mysql.user and mysql.password",
    );
    note(
        rj.bearer_token_file.is_some(),
        "bearer_token_file",
        "the server's user and password are mysql.user and mysql.password",
    );
    note(
        rj.tls_config.is_some(),
        "tls_config",
        "TLS to the server is set in mysql.tls_config",
    );
    note(
        rj.body_size_limit.is_some(),
        "body_size_limit",
        "there is no HTTP body; sample_limit bounds what a collection stores",
    );
    keys
}

/// Refuses a job with `mysql:` that also sets HTTP-only keys, naming the key and
/// its line in `yaml`.
pub(super) fn check_job_keys(yaml: &str, rj: &RawJob) -> Result<(), ConfigError> {
    if rj.mysql.is_none() {
        return Ok(());
    }
    if let Some((key, why)) = http_only_keys(rj).into_iter().next() {
        let at = key_line(yaml, &rj.job_name, key)
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default();
        return Err(ConfigError::Job {
            job: rj.job_name.clone(),
            message: format!(
                "{key}{at} cannot be used with mysql: the job collects over SQL, not HTTP ({why})"
            ),
        });
    }
    Ok(())
}

/// Adds the line of the job's `mysql:` key to an error about that block.
pub(super) fn locate(yaml: &str, e: ConfigError) -> ConfigError {
    match e {
        ConfigError::Job { job, message } if message.contains("mysql.") => {
            let message = match key_line(yaml, &job, "mysql") {
                Some(l) => format!("{message} (in mysql: at line {l})"),
                None => message,
            };
            ConfigError::Job { job, message }
        }
        e => e,
    }
}

/// The 1-based line of `key` directly inside the job named `job` of
/// `scrape_configs`, found in the text (the YAML reader keeps no positions).
fn key_line(yaml: &str, job: &str, key: &str) -> Option<usize> {
    let indent = |l: &str| l.len() - l.trim_start_matches([' ', '-']).len();
    let mut job_indent = None;
    for (i, line) in yaml.lines().enumerate() {
        let body = line.trim_start_matches([' ', '-']);
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        if let Some(v) = body.strip_prefix("job_name:") {
            let v = v
                .split(" #")
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches(['"', '\'']);
            job_indent = (v == job).then(|| indent(line));
            continue;
        }
        let Some(at) = job_indent else { continue };
        let here = indent(line);
        if here < at || (here == at && line.trim_start().starts_with('-')) {
            job_indent = None;
            continue;
        }
        if here == at
            && body
                .strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with(':'))
        {
            return Some(i + 1);
        }
    }
    None
}

/// Builds `mysql:` of a job; `err` names the job.
pub(super) fn build(
    raw: Option<RawMysql>,
    secrets: &SecretSource<'_>,
    err: ErrAt<'_>,
) -> Result<Option<MysqlConfig>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let user = raw.user.unwrap_or_default();
    if user.is_empty() {
        return Err(err(
            "mysql.user is missing: name the server's monitoring user".into(),
        ));
    }
    let password = resolve_secret(
        err,
        "mysql.password",
        raw.password,
        raw.password_file,
        secrets,
    )?;
    let tls = match raw.tls_config {
        None => None,
        Some(t) => {
            let t = tls_settings(Some(t), &|m| err(format!("mysql.{m}")))?;
            if t.server_name.is_some() {
                return Err(err(
                    "mysql.tls_config.server_name is not supported: the server certificate is checked against the target's host".into(),
                ));
            }
            Some(t)
        }
    };
    let collectors = match raw.collectors {
        None => MysqlCollector::DEFAULTS.to_vec(),
        Some(list) => {
            if list.is_empty() {
                return Err(err(
                    "mysql.collectors is empty: leave it out for mysqld_exporter's defaults".into(),
                ));
            }
            let mut seen = Vec::new();
            for c in list {
                if seen.contains(&c) {
                    return Err(err(format!("mysql.collectors names {} twice", c.name())));
                }
                seen.push(c);
            }
            seen
        }
    };
    let mut events_statements = EventsStatementsOptions::default();
    if let Some(raw) = raw.events_statements {
        if !collectors.contains(&MysqlCollector::PerfSchemaEventsStatements) {
            return Err(err(
                "mysql.perf_schema.eventsstatements is set but mysql.collectors does not name perf_schema.eventsstatements: add it there, or leave the options out".into(),
            ));
        }
        for (key, value, slot) in [
            ("limit", raw.limit, &mut events_statements.limit),
            ("timelimit", raw.timelimit, &mut events_statements.timelimit),
            (
                "digest_text_limit",
                raw.digest_text_limit,
                &mut events_statements.digest_text_limit,
            ),
        ] {
            match value {
                Some(0) => {
                    return Err(err(format!(
                        "mysql.perf_schema.eventsstatements.{key} is 0: it must be at least 1"
                    )))
                }
                Some(v) => *slot = v,
                None => {}
            }
        }
    }
    Ok(Some(MysqlConfig {
        user,
        password,
        tls,
        collectors,
        events_statements,
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use crate::config::{ScrapeConfig, SecretSource, SecretValue};

    use super::*;

    const JOB: &str = r#"
scrape_configs:
  - job_name: mysql-sql
    scrape_interval: 15s
    mysql:
      user: monitor
      password: ${secure.mysqlPassword}
      collectors: [global_status, info_schema.innodb_cmp]
    static_configs:
      - targets: ['127.0.0.1:3306', 'db2:3307']
"#;

    fn secrets() -> HashMap<String, String> {
        HashMap::from([("mysqlPassword".to_string(), "pw-xyz".to_string())])
    }

    #[test]
    fn a_mysql_job_has_mysql_targets() {
        let s = secrets();
        let c = ScrapeConfig::parse(JOB, &SecretSource::Grafana(&s)).unwrap();
        let job = &c.jobs[0];
        assert_eq!(job.interval, Duration::from_secs(15));
        let m = job.mysql.as_ref().unwrap();
        assert_eq!(m.user, "monitor");
        assert_eq!(m.password, Some(SecretValue::Inline("pw-xyz".into())));
        assert_eq!(
            m.collectors,
            [MysqlCollector::GlobalStatus, MysqlCollector::InnodbCmp]
        );
        assert_eq!(m.tls, None);
        assert_eq!(job.targets[0].url, "mysql://127.0.0.1:3306");
        assert_eq!(job.targets[1].labels.get("instance"), Some("db2:3307"));
        assert_eq!(job.targets[1].labels.get("job"), Some("mysql-sql"));
        assert!(!format!("{job:?}").contains("pw-xyz"));
    }

    #[test]
    fn collectors_default_to_the_exporters_defaults() {
        let c = ScrapeConfig::parse(
            "scrape_configs:\n  - job_name: m\n    mysql: {user: u, password_file: pw}\n",
            &SecretSource::File,
        )
        .unwrap();
        let m = c.jobs[0].mysql.as_ref().unwrap();
        assert_eq!(m.collectors, MysqlCollector::DEFAULTS);
        assert!(!m
            .collectors
            .contains(&MysqlCollector::PerfSchemaEventsStatements));
        assert_eq!(m.password, Some(SecretValue::File("pw".into())));
    }

    #[test]
    fn events_statements_is_named_and_takes_the_exporters_options() {
        let yaml = "scrape_configs:\n  - job_name: m\n    mysql:\n      user: u\n      collectors: [global_status, perf_schema.eventsstatements]\n";
        let c = ScrapeConfig::parse(yaml, &SecretSource::File).unwrap();
        let m = c.jobs[0].mysql.as_ref().unwrap();
        assert_eq!(
            m.collectors,
            [
                MysqlCollector::GlobalStatus,
                MysqlCollector::PerfSchemaEventsStatements
            ]
        );
        assert_eq!(
            m.events_statements,
            EventsStatementsOptions {
                limit: 250,
                timelimit: 86400,
                digest_text_limit: 120
            }
        );
        let yaml = format!(
            "{yaml}      perf_schema.eventsstatements: {{limit: 20, digest_text_limit: 60}}\n"
        );
        let c = ScrapeConfig::parse(&yaml, &SecretSource::File).unwrap();
        let m = c.jobs[0].mysql.as_ref().unwrap();
        assert_eq!(
            m.events_statements,
            EventsStatementsOptions {
                limit: 20,
                timelimit: 86400,
                digest_text_limit: 60
            }
        );
    }

    #[test]
    fn bad_events_statements_options_name_what_is_wrong() {
        let with = "collectors: [perf_schema.eventsstatements]";
        for (block, want) in [
            (
                "mysql: {user: u, perf_schema.eventsstatements: {limit: 5}}".to_string(),
                "does not name perf_schema.eventsstatements",
            ),
            (
                format!(
                    "mysql: {{user: u, {with}, perf_schema.eventsstatements: {{timelimit: 0}}}}"
                ),
                "mysql.perf_schema.eventsstatements.timelimit is 0",
            ),
        ] {
            let yaml = format!("scrape_configs:\n  - job_name: m\n    {block}\n");
            let err = ScrapeConfig::parse(&yaml, &SecretSource::File)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{block}: {err}");
            assert!(err.contains("(in mysql: at line 3)"), "{block}: {err}");
        }
        for block in [
            "mysql: {user: u, perf_schema.eventsstatements: {limit: -1}}",
            "mysql: {user: u, perf_schema.eventsstatements: {digest_limit: 5}}",
        ] {
            let yaml = format!("scrape_configs:\n  - job_name: m\n    {block}\n");
            assert!(
                ScrapeConfig::parse(&yaml, &SecretSource::File).is_err(),
                "{block}"
            );
        }
    }

    #[test]
    fn a_plain_password_is_refused_in_datasource_settings() {
        let yaml = JOB.replace("${secure.mysqlPassword}", "hunter2");
        let err = ScrapeConfig::parse(&yaml, &SecretSource::Grafana(&secrets()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mysql.password") && err.contains("secureJsonData"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        assert!(ScrapeConfig::parse(&yaml, &SecretSource::File).is_ok());
    }

    #[test]
    fn http_keys_are_refused_with_their_line() {
        for (key, line) in [
            ("metrics_path: /metrics", 5),
            ("scheme: https", 5),
            ("params: {target: [x]}", 5),
            ("basic_auth: {username: u}", 5),
            ("tls_config: {insecure_skip_verify: true}", 5),
            ("body_size_limit: 1MB", 5),
        ] {
            let yaml = format!(
                "scrape_configs:\n  - job_name: other\n    metrics_path: /x\n  - job_name: m\n    {key}\n    mysql: {{user: u}}\n"
            );
            let err = ScrapeConfig::parse(&yaml, &SecretSource::File)
                .unwrap_err()
                .to_string();
            let name = key.split(':').next().unwrap();
            assert!(
                err.contains(&format!("{name} (line {line}) cannot be used with mysql")),
                "{err}"
            );
            assert!(err.contains("job \"m\""), "{err}");
        }
    }

    #[test]
    fn bad_mysql_blocks_name_what_is_wrong() {
        let cases = [
            ("mysql: {password: x}", "mysql.user is missing"),
            (
                "mysql: {user: u, collectors: []}",
                "mysql.collectors is empty",
            ),
            (
                "mysql: {user: u, collectors: [global_status, global_status]}",
                "global_status twice",
            ),
            (
                "mysql: {user: u, password: a, password_file: b}",
                "at most one of mysql.password",
            ),
            (
                "mysql: {user: u, tls_config: {cert_file: c}}",
                "mysql.tls_config: client cert file",
            ),
            (
                "mysql: {user: u, tls_config: {server_name: x}}",
                "server_name is not supported",
            ),
        ];
        for (block, want) in cases {
            let yaml =
                format!("scrape_configs:\n  - job_name: m\n    scrape_interval: 5s\n    {block}\n");
            let err = ScrapeConfig::parse(&yaml, &SecretSource::File)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{block}: {err}");
            assert!(err.contains("(in mysql: at line 4)"), "{block}: {err}");
        }
    }

    #[test]
    fn unknown_collectors_and_keys_are_refused_with_the_line() {
        let yaml = "scrape_configs:\n  - job_name: m\n    mysql:\n      user: u\n      collectors: [global_status, perf_schema.eventswaits]\n";
        let err = ScrapeConfig::parse(yaml, &SecretSource::File)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("perf_schema.eventswaits") && err.contains("line 5"),
            "{err}"
        );
        let yaml = "scrape_configs:\n  - job_name: m\n    mysql:\n      user: u\n      passwd: x\n";
        let err = ScrapeConfig::parse(yaml, &SecretSource::File)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("passwd") && err.contains("line 5") && err.contains("\"m\""),
            "{err}"
        );
    }

    #[test]
    fn relative_files_follow_the_config_file() {
        let mut c = ScrapeConfig::parse(
            "scrape_configs:\n  - job_name: m\n    mysql: {user: u, password_file: pw, tls_config: {ca_file: ca.pem}}\n",
            &SecretSource::File,
        )
        .unwrap();
        c.resolve_paths(Path::new("/etc/am"));
        let m = c.jobs[0].mysql.as_ref().unwrap();
        assert_eq!(m.password, Some(SecretValue::File("/etc/am/pw".into())));
        assert_eq!(
            m.tls.as_ref().unwrap().ca_file.as_deref(),
            Some(Path::new("/etc/am/ca.pem"))
        );
    }
}
