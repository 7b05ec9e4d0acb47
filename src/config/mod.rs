//! Configuration: the Prometheus `scrape_configs` YAML a tenant scrapes with, the
//! datasource settings Grafana sends, and the process-wide folders.
//!
//! Errors name the key, the job and the line, so a user pasting their
//! prometheus.yml sees exactly what to change.

pub mod mysql;
pub mod paths;
pub mod relabel;
pub mod remote_write;
pub mod settings;
mod store_settings;
pub mod targets;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::model::duration::{format_duration, parse_duration};
use crate::model::labels::Labels;
pub use mysql::{EventsStatementsOptions, MysqlCollector, MysqlConfig};
pub use relabel::{RelabelAction, RelabelConfig};
pub use remote_write::{MetadataConfig, QueueConfig, RemoteWriteConfig};
pub use store_settings::StoreSettings;
pub use targets::{DroppedTarget, FileSdConfig, Target, TargetGroup};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("scrape config: {0}")]
    Yaml(String),
    #[error("scrape config, job {job:?}: {message}")]
    Job { job: String, message: String },
    #[error("scrape config: {0}")]
    Invalid(String),
    #[error("scrape config, alerting.alertmanagers[{index}]: {message}")]
    Alertmanager { index: usize, message: String },
    #[error("scrape config, remote_write[{index}]{line}: {message}")]
    RemoteWrite {
        index: usize,
        /// " (line N)" when the entry's line is known, else empty.
        line: String,
        message: String,
    },
}

/// Where secrets in the scrape config may come from.
pub enum SecretSource<'a> {
    /// Datasource settings: `jsonData` is stored unencrypted by Grafana, so secrets must
    /// be references `${secure.NAME}` into the decrypted `secureJsonData`.
    Grafana(&'a HashMap<String, String>),
    /// A config file of the user's own (standalone mode): literal values are fine.
    File,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    global: RawGlobal,
    #[serde(default)]
    scrape_configs: Vec<RawJob>,
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default)]
    alerting: RawAlerting,
    #[serde(default)]
    remote_write: Vec<remote_write::RawRemoteWrite>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAlerting {
    #[serde(default)]
    alert_relabel_configs: Vec<relabel::RawRelabelConfig>,
    #[serde(default)]
    alertmanagers: Vec<RawAlertmanager>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertmanager {
    #[serde(default)]
    static_configs: Vec<RawStaticConfig>,
    path_prefix: Option<String>,
    scheme: Option<String>,
    timeout: Option<String>,
    api_version: Option<String>,
    basic_auth: Option<RawBasicAuth>,
    authorization: Option<RawAuthorization>,
    bearer_token: Option<String>,
    bearer_token_file: Option<String>,
    tls_config: Option<RawTlsConfig>,
    #[serde(default)]
    relabel_configs: Vec<relabel::RawRelabelConfig>,
    #[serde(default)]
    alert_relabel_configs: Vec<relabel::RawRelabelConfig>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    scrape_interval: Option<String>,
    scrape_timeout: Option<String>,
    evaluation_interval: Option<String>,
    rule_query_offset: Option<String>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    job_name: String,
    scrape_interval: Option<String>,
    scrape_timeout: Option<String>,
    metrics_path: Option<String>,
    scheme: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    honor_labels: bool,
    honor_timestamps: Option<bool>,
    #[serde(default)]
    static_configs: Vec<RawStaticConfig>,
    basic_auth: Option<RawBasicAuth>,
    authorization: Option<RawAuthorization>,
    bearer_token: Option<String>,
    bearer_token_file: Option<String>,
    #[serde(default)]
    sample_limit: u64,
    #[serde(default)]
    label_limit: u64,
    #[serde(default)]
    label_name_length_limit: u64,
    #[serde(default)]
    label_value_length_limit: u64,
    body_size_limit: Option<String>,
    #[serde(default)]
    relabel_configs: Vec<relabel::RawRelabelConfig>,
    #[serde(default)]
    metric_relabel_configs: Vec<relabel::RawRelabelConfig>,
    #[serde(default)]
    file_sd_configs: Vec<RawFileSdConfig>,
    tls_config: Option<RawTlsConfig>,
    /// Collect from a MySQL server over SQL instead of scraping HTTP (`mysql.rs`).
    mysql: Option<mysql::RawMysql>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFileSdConfig {
    #[serde(default)]
    files: Vec<String>,
    refresh_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsConfig {
    ca_file: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    server_name: Option<String>,
    #[serde(default)]
    insecure_skip_verify: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStaticConfig {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasicAuth {
    username: Option<String>,
    username_file: Option<String>,
    password: Option<String>,
    password_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthorization {
    #[serde(rename = "type")]
    kind: Option<String>,
    credentials: Option<String>,
    credentials_file: Option<String>,
}

/// A secret value or the file it is read from at each scrape (as Prometheus does).
#[derive(Clone, PartialEq, Eq)]
pub enum SecretValue {
    Inline(String),
    File(String),
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretValue::Inline(_) => f.write_str("<secret>"),
            SecretValue::File(p) => write!(f, "file {p:?}"),
        }
    }
}

impl SecretValue {
    pub fn read(&self) -> Result<String, String> {
        match self {
            SecretValue::Inline(v) => Ok(v.clone()),
            SecretValue::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("reading {path}: {e}")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    None,
    Basic {
        username: String,
        password: Option<SecretValue>,
    },
    /// `Authorization: <scheme> <credentials>`; `bearer_token` is scheme Bearer.
    Header {
        scheme: String,
        credentials: SecretValue,
    },
}

/// `tls_config` of a job (Prometheus's common TLSConfig, the file-based subset).
/// The files are read when a scrape client is built and again when they change
/// (see `scrape::tls`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The SNI sent and the name the server certificate is verified against,
    /// instead of the target host.
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

/// One scrape job, with Prometheus's defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct ScrapeJob {
    pub name: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub metrics_path: String,
    pub scheme: String,
    pub params: BTreeMap<String, Vec<String>>,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub auth: Auth,
    pub tls: TlsConfig,
    pub limits: ScrapeLimits,
    pub relabel_configs: Vec<RelabelConfig>,
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// `static_configs`, one group per entry.
    pub static_groups: Vec<TargetGroup>,
    pub file_sd: Vec<FileSdConfig>,
    /// The static targets after relabeling (file_sd targets are found at run time).
    pub targets: Vec<Target>,
    /// Static targets that relabeling dropped.
    pub dropped: Vec<DroppedTarget>,
    /// Set: the targets are MySQL servers collected over SQL, not HTTP endpoints.
    pub mysql: Option<MysqlConfig>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrapeLimits {
    /// 0 = unlimited, as in Prometheus.
    pub sample_limit: u64,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    /// Bytes; 0 = unlimited.
    pub body_size_limit: u64,
}

/// `alerting:`: where alerts are sent, and how they are relabeled first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertingConfig {
    pub alert_relabel_configs: Vec<RelabelConfig>,
    pub alertmanagers: Vec<AlertmanagerConfig>,
}

/// One `alertmanagers` entry: its Alertmanagers' alerts URLs, resolved from the
/// static targets as Prometheus resolves them (`__scheme__`, `__address__` and
/// `__alerts_path__` after `relabel_configs`).
#[derive(Clone, Debug, PartialEq)]
pub struct AlertmanagerConfig {
    pub urls: Vec<String>,
    pub timeout: Duration,
    pub auth: Auth,
    pub tls: TlsConfig,
    pub alert_relabel_configs: Vec<RelabelConfig>,
}

/// Prometheus's default `alertmanagers[].timeout`.
pub const DEFAULT_ALERTMANAGER_TIMEOUT: Duration = Duration::from_secs(10);

/// A validated scrape configuration.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ScrapeConfig {
    pub global_interval: Duration,
    /// Kept for remote write and federation; as in Prometheus they are not attached
    /// to stored series.
    pub external_labels: Labels,
    pub jobs: Vec<ScrapeJob>,
    /// `rule_files`: patterns (the last path element may hold `*`), relative to
    /// the config file's folder once [`ScrapeConfig::resolve_paths`] has run.
    /// Only a config file of the user's own (`serve`) names rule files.
    pub rule_files: Vec<PathBuf>,
    /// How often rule groups without an `interval` of their own are evaluated.
    pub evaluation_interval: Duration,
    /// How far back rule groups without a `query_offset` of their own query.
    pub rule_query_offset: Duration,
    pub alerting: AlertingConfig,
    /// `remote_write`: where every stored sample is also sent.
    pub remote_write: Vec<RemoteWriteConfig>,
}

pub const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_EVALUATION_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

impl ScrapeConfig {
    /// Parses and validates a scrape config.
    pub fn parse(yaml: &str, secrets: &SecretSource<'_>) -> Result<ScrapeConfig, ConfigError> {
        if yaml.trim().is_empty() {
            return Ok(ScrapeConfig {
                global_interval: DEFAULT_SCRAPE_INTERVAL,
                external_labels: Labels::empty(),
                jobs: Vec::new(),
                rule_files: Vec::new(),
                evaluation_interval: DEFAULT_EVALUATION_INTERVAL,
                rule_query_offset: Duration::ZERO,
                alerting: AlertingConfig::default(),
                remote_write: Vec::new(),
            });
        }
        let raw: RawFile = serde_norway::from_str(yaml).map_err(|e| yaml_error(yaml, e))?;
        let global_interval = opt_duration(
            raw.global.scrape_interval.as_deref(),
            "global",
            "scrape_interval",
        )?
        .unwrap_or(DEFAULT_SCRAPE_INTERVAL);
        let global_timeout = opt_duration(
            raw.global.scrape_timeout.as_deref(),
            "global",
            "scrape_timeout",
        )?
        .unwrap_or(DEFAULT_SCRAPE_TIMEOUT);
        let evaluation_interval = opt_duration(
            raw.global.evaluation_interval.as_deref(),
            "global",
            "evaluation_interval",
        )?
        .unwrap_or(DEFAULT_EVALUATION_INTERVAL);
        let rule_query_offset = opt_duration(
            raw.global.rule_query_offset.as_deref(),
            "global",
            "rule_query_offset",
        )?
        .unwrap_or(Duration::ZERO);
        let rule_files = rule_file_patterns(raw.rule_files, secrets)?;
        let alerting = build_alerting(raw.alerting, secrets)?;
        let remote_write = remote_write::build_remote_writes(raw.remote_write, yaml, secrets)?;
        let mut jobs: Vec<ScrapeJob> = Vec::new();
        for rj in raw.scrape_configs {
            if jobs.iter().any(|j| j.name == rj.job_name) {
                return Err(ConfigError::Job {
                    job: rj.job_name.clone(),
                    message: "found multiple scrape configs with this job name".into(),
                });
            }
            mysql::check_job_keys(yaml, &rj)?;
            jobs.push(
                build_job(rj, global_interval, global_timeout, secrets)
                    .map_err(|e| mysql::locate(yaml, e))?,
            );
        }
        Ok(ScrapeConfig {
            global_interval,
            external_labels: Labels::from_pairs(
                raw.global
                    .external_labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            ),
            jobs,
            rule_files,
            evaluation_interval,
            rule_query_offset,
            alerting,
            remote_write,
        })
    }

    /// Reads a config file of the user's own; relative paths in it (file_sd files,
    /// TLS and secret files) are resolved against the file's folder, as Prometheus does.
    pub fn load_file(path: &Path) -> Result<ScrapeConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut cfg = ScrapeConfig::parse(&text, &SecretSource::File)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(dir);
        Ok(cfg)
    }

    /// Makes every relative file path in the config relative to `dir`.
    pub fn resolve_paths(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        // The files of an HTTP client: its TLS files and secret files.
        let fix_client = |tls: &mut TlsConfig, auth: &mut Auth| {
            for p in [&mut tls.ca_file, &mut tls.cert_file, &mut tls.key_file]
                .into_iter()
                .flatten()
            {
                fix(p);
            }
            let secret = match auth {
                Auth::Basic {
                    password: Some(p), ..
                } => p,
                Auth::Header { credentials, .. } => credentials,
                _ => return,
            };
            if let SecretValue::File(f) = secret {
                if Path::new(f.as_str()).is_relative() {
                    *f = dir.join(f.as_str()).display().to_string();
                }
            }
        };
        for f in &mut self.rule_files {
            fix(f);
        }
        for am in &mut self.alerting.alertmanagers {
            fix_client(&mut am.tls, &mut am.auth);
        }
        for rw in &mut self.remote_write {
            fix_client(&mut rw.tls, &mut rw.auth);
        }
        for job in &mut self.jobs {
            for sd in &mut job.file_sd {
                for f in &mut sd.files {
                    fix(f);
                }
            }
            fix_client(&mut job.tls, &mut job.auth);
            if let Some(m) = &mut job.mysql {
                m.resolve_paths(dir);
            }
        }
    }

    /// The static targets of every job, after relabeling.
    pub fn targets(&self) -> impl Iterator<Item = (&ScrapeJob, &Target)> {
        self.jobs
            .iter()
            .flat_map(|j| j.targets.iter().map(move |t| (j, t)))
    }
}

/// Checks `rule_files` as Prometheus does: only the last path element may hold
/// `*` (`invalid rule file path`). A datasource's scrape config cannot name
/// files on Grafana's server.
fn rule_file_patterns(
    patterns: Vec<String>,
    secrets: &SecretSource<'_>,
) -> Result<Vec<PathBuf>, ConfigError> {
    if !patterns.is_empty() && matches!(secrets, SecretSource::Grafana(_)) {
        return Err(ConfigError::Invalid(
            "rule_files: a datasource's scrape config cannot name rule files; \
             they belong to the config file of `gpx_arrowmon serve`"
                .into(),
        ));
    }
    patterns
        .into_iter()
        .map(|p| {
            // Prometheus: ^[^*]*(\*[^/]*)?$
            let valid = match p.find('*') {
                None => true,
                Some(i) => !p[i + 1..].contains(['*', '/']),
            };
            if valid {
                Ok(PathBuf::from(p))
            } else {
                Err(ConfigError::Invalid(format!(
                    "invalid rule file path {}",
                    crate::model::labels::go_quote(&p)
                )))
            }
        })
        .collect()
}

fn job_err(job: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Job {
        job: job.to_string(),
        message: message.into(),
    }
}

fn opt_duration(v: Option<&str>, job: &str, key: &str) -> Result<Option<Duration>, ConfigError> {
    match v {
        None => Ok(None),
        Some(s) => parse_duration(s).map(Some).map_err(|e| {
            if job == "global" {
                ConfigError::Invalid(format!("global.{key}: {e}"))
            } else {
                job_err(job, format!("{key}: {e}"))
            }
        }),
    }
}

/// Prometheus's `body_size_limit` units: B, KB, MB, GB, TB, PB, EB (powers of 1024).
/// A fraction is allowed as Prometheus allows it (`1.5GB`); what is left of a byte
/// is dropped.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let end = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let invalid = || format!("invalid size {text:?}");
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') || fraction.len() > 18 {
        return Err(invalid());
    }
    let n: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| invalid())?
    };
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "KiB" => 1 << 10,
        "MB" | "MiB" => 1 << 20,
        "GB" | "GiB" => 1 << 30,
        "TB" | "TiB" => 1 << 40,
        "PB" | "PiB" => 1 << 50,
        "EB" | "EiB" => 1 << 60,
        _ => return Err(format!("invalid size {text:?}: unknown unit")),
    };
    let part = if fraction.is_empty() {
        0
    } else {
        let f: u128 = fraction.parse().map_err(|_| invalid())?;
        f * mult as u128 / 10u128.pow(fraction.len() as u32)
    };
    n.checked_mul(mult)
        .and_then(|b| b.checked_add(u64::try_from(part).ok()?))
        .ok_or_else(|| format!("size {text:?} out of range"))
}

/// Turns a message into the error of the config part it belongs to (a job, an
/// Alertmanager).
type ErrAt<'a> = &'a dyn Fn(String) -> ConfigError;

/// The authentication of an HTTP client (a scrape job, an Alertmanager): at most
/// one of `basic_auth`, `authorization` and `bearer_token(_file)`.
fn client_auth(
    basic_auth: Option<RawBasicAuth>,
    authorization: Option<RawAuthorization>,
    (bearer_token, bearer_token_file): (Option<String>, Option<String>),
    secrets: &SecretSource<'_>,
    err: ErrAt<'_>,
) -> Result<Auth, ConfigError> {
    let bearer = resolve_secret(
        err,
        "bearer_token",
        bearer_token,
        bearer_token_file,
        secrets,
    )?;
    let mut auth = Auth::None;
    if let Some(b) = basic_auth {
        let username = match (b.username, b.username_file) {
            (Some(u), None) => u,
            (None, Some(f)) => SecretValue::File(f)
                .read()
                .map_err(|e| err(format!("basic_auth.username_file: {e}")))?,
            (None, None) => String::new(),
            (Some(_), Some(_)) => {
                return Err(err(
                    "at most one of basic_auth username and username_file may be set".into(),
                ))
            }
        };
        let password = resolve_secret(
            err,
            "basic_auth.password",
            b.password,
            b.password_file,
            secrets,
        )?;
        auth = Auth::Basic { username, password };
    }
    if let Some(a) = authorization {
        if auth != Auth::None {
            return Err(err(
                "at most one of basic_auth and authorization may be set".into(),
            ));
        }
        let scheme = a.kind.unwrap_or_else(|| "Bearer".into());
        if scheme.eq_ignore_ascii_case("basic") {
            return Err(err(
                "authorization type cannot be set to \"basic\", use \"basic_auth\" instead".into(),
            ));
        }
        let credentials = resolve_secret(
            err,
            "authorization.credentials",
            a.credentials,
            a.credentials_file,
            secrets,
        )?
        .unwrap_or(SecretValue::Inline(String::new()));
        auth = Auth::Header {
            scheme,
            credentials,
        };
    }
    if let Some(credentials) = bearer {
        if auth != Auth::None {
            return Err(err(
                "at most one of basic_auth, authorization and bearer_token may be set".into(),
            ));
        }
        auth = Auth::Header {
            scheme: "Bearer".into(),
            credentials,
        };
    }
    Ok(auth)
}

/// `tls_config` of an HTTP client; a client certificate needs its key and the
/// key its certificate.
fn tls_settings(t: Option<RawTlsConfig>, err: ErrAt<'_>) -> Result<TlsConfig, ConfigError> {
    let Some(t) = t else {
        return Ok(TlsConfig::default());
    };
    match (&t.cert_file, &t.key_file) {
        (Some(c), None) => {
            return Err(err(format!(
                "tls_config: client cert file {c:?} specified without client key file"
            )))
        }
        (None, Some(k)) => {
            return Err(err(format!(
                "tls_config: client key file {k:?} specified without client cert file"
            )))
        }
        _ => {}
    }
    Ok(TlsConfig {
        ca_file: t.ca_file.map(PathBuf::from),
        cert_file: t.cert_file.map(PathBuf::from),
        key_file: t.key_file.map(PathBuf::from),
        server_name: t.server_name.filter(|s| !s.is_empty()),
        insecure_skip_verify: t.insecure_skip_verify,
    })
}

fn relabel_list(
    list: Vec<relabel::RawRelabelConfig>,
    key: &str,
    err: ErrAt<'_>,
) -> Result<Vec<RelabelConfig>, ConfigError> {
    list.into_iter()
        .enumerate()
        .map(|(i, r)| r.build().map_err(|e| err(format!("{key}[{i}]: {e}"))))
        .collect()
}

/// `alerting:` as Prometheus reads it: API v2 only, targets from
/// `static_configs` relabeled by `relabel_configs` into alerts URLs.
fn build_alerting(
    raw: RawAlerting,
    secrets: &SecretSource<'_>,
) -> Result<AlertingConfig, ConfigError> {
    let alert_relabel_configs = relabel_list(
        raw.alert_relabel_configs,
        "alerting.alert_relabel_configs",
        &|m| ConfigError::Invalid(m),
    )?;
    let mut alertmanagers = Vec::new();
    for (index, am) in raw.alertmanagers.into_iter().enumerate() {
        let err = |message: String| ConfigError::Alertmanager { index, message };
        match am.api_version.as_deref() {
            None | Some("v2") => {}
            Some(v) => {
                return Err(err(format!(
                    "expected Alertmanager api version to be one of [v2] but got {v:?}"
                )))
            }
        }
        let scheme = am.scheme.unwrap_or_else(|| "http".into());
        if scheme != "http" && scheme != "https" {
            return Err(err(format!(
                "scheme: unsupported scheme {scheme:?} (http or https)"
            )));
        }
        let timeout = match am.timeout.as_deref() {
            None => DEFAULT_ALERTMANAGER_TIMEOUT,
            Some(t) => parse_duration(t).map_err(|e| err(format!("timeout: {e}")))?,
        };
        let auth = client_auth(
            am.basic_auth,
            am.authorization,
            (am.bearer_token, am.bearer_token_file),
            secrets,
            &err,
        )?;
        let tls = tls_settings(am.tls_config, &err)?;
        let relabel_configs = relabel_list(am.relabel_configs, "relabel_configs", &err)?;
        let alert_relabel_configs =
            relabel_list(am.alert_relabel_configs, "alert_relabel_configs", &err)?;
        // Prometheus: path_prefix + "/api/v2/alerts", the prefix without its trailing slash.
        let prefix = am.path_prefix.unwrap_or_default();
        let alerts_path = format!("{}/api/v2/alerts", prefix.trim_end_matches('/'));
        let mut urls = Vec::new();
        for sc in am.static_configs {
            for target in sc.targets {
                let mut pairs: Vec<(String, String)> = sc
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                pairs.push(("__address__".into(), target));
                pairs.push(("__scheme__".into(), scheme.clone()));
                pairs.push(("__alerts_path__".into(), alerts_path.clone()));
                let labels =
                    Labels::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                let Some(labels) = relabel::process(&labels, &relabel_configs) else {
                    continue;
                };
                let (Some(address), Some(scheme), Some(path)) = (
                    labels.get("__address__"),
                    labels.get("__scheme__"),
                    labels.get("__alerts_path__"),
                ) else {
                    continue;
                };
                if address.contains('/') {
                    return Err(err(format!("invalid address {address:?}: it holds a path")));
                }
                urls.push(format!("{scheme}://{address}{path}"));
            }
        }
        alertmanagers.push(AlertmanagerConfig {
            urls,
            timeout,
            auth,
            tls,
            alert_relabel_configs,
        });
    }
    Ok(AlertingConfig {
        alert_relabel_configs,
        alertmanagers,
    })
}

fn resolve_secret(
    err: ErrAt<'_>,
    key: &str,
    inline: Option<String>,
    file: Option<String>,
    secrets: &SecretSource<'_>,
) -> Result<Option<SecretValue>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(err(format!(
            "at most one of {key} and {key}_file may be set"
        ))),
        (None, None) => Ok(None),
        (None, Some(f)) => Ok(Some(SecretValue::File(f))),
        (Some(v), None) => {
            if let Some(name) = v
                .strip_prefix("${secure.")
                .and_then(|r| r.strip_suffix('}'))
            {
                return match secrets {
                    SecretSource::Grafana(map) => map
                        .get(name)
                        .map(|s| Some(SecretValue::Inline(s.clone())))
                        .ok_or_else(|| {
                            err(format!("{key} refers to ${{secure.{name}}}, but the datasource has no secure field {name:?}"))
                        }),
                    SecretSource::File => Err(err(format!(
                        "{key} refers to ${{secure.{name}}}, which only a Grafana datasource can provide"
                    ))),
                };
            }
            match secrets {
                SecretSource::Grafana(_) => Err(err(format!(
                    "{key} is written in plain text in jsonData, which Grafana stores unencrypted; \
                     put it in the datasource's secure fields (secureJsonData) and write ${{secure.NAME}} here"
                ))),
                SecretSource::File => Ok(Some(SecretValue::Inline(v))),
            }
        }
    }
}

fn build_job(
    rj: RawJob,
    global_interval: Duration,
    global_timeout: Duration,
    secrets: &SecretSource<'_>,
) -> Result<ScrapeJob, ConfigError> {
    let name = rj.job_name.clone();
    if name.is_empty() {
        return Err(ConfigError::Invalid("job_name is empty".into()));
    }
    let interval = opt_duration(rj.scrape_interval.as_deref(), &name, "scrape_interval")?
        .unwrap_or(global_interval);
    // Prometheus: a job's timeout defaults to the global one, capped by the interval.
    let timeout = match opt_duration(rj.scrape_timeout.as_deref(), &name, "scrape_timeout")? {
        Some(t) => t,
        None => global_timeout.min(interval),
    };
    if interval.is_zero() {
        return Err(job_err(&name, "scrape_interval must be greater than 0"));
    }
    if timeout > interval {
        return Err(job_err(
            &name,
            format!(
                "scrape_timeout ({}) greater than scrape_interval ({})",
                format_duration(timeout),
                format_duration(interval)
            ),
        ));
    }
    let mysql = mysql::build(rj.mysql, secrets, &|m| job_err(&name, m))?;
    let scheme = rj.scheme.unwrap_or_else(|| match mysql {
        Some(_) => "mysql".into(),
        None => "http".into(),
    });
    match scheme.as_str() {
        "http" | "https" => {}
        "mysql" if mysql.is_some() => {}
        other => {
            return Err(job_err(
                &name,
                format!("scheme: unsupported scheme {other:?} (http or https)"),
            ))
        }
    }
    let metrics_path = rj.metrics_path.unwrap_or_else(|| match mysql {
        Some(_) => String::new(),
        None => "/metrics".into(),
    });
    if mysql.is_none() && !metrics_path.starts_with('/') {
        return Err(job_err(
            &name,
            format!("metrics_path {metrics_path:?} must start with /"),
        ));
    }

    let auth = client_auth(
        rj.basic_auth,
        rj.authorization,
        (rj.bearer_token, rj.bearer_token_file),
        secrets,
        &|m| job_err(&name, m),
    )?;

    let body_size_limit = match rj.body_size_limit.as_deref() {
        None => 0,
        Some(s) => parse_bytes(s).map_err(|e| job_err(&name, format!("body_size_limit: {e}")))?,
    };

    let relabel_configs = relabel_list(rj.relabel_configs, "relabel_configs", &|m| {
        job_err(&name, m)
    })?;
    let metric_relabel_configs =
        relabel_list(rj.metric_relabel_configs, "metric_relabel_configs", &|m| {
            job_err(&name, m)
        })?;

    let tls = tls_settings(rj.tls_config, &|m| job_err(&name, m))?;

    let mut file_sd = Vec::new();
    for (i, f) in rj.file_sd_configs.into_iter().enumerate() {
        let refresh = opt_duration(
            f.refresh_interval.as_deref(),
            &name,
            "file_sd_configs.refresh_interval",
        )?
        .unwrap_or(targets::DEFAULT_FILE_SD_REFRESH);
        if f.files.is_empty() {
            return Err(job_err(
                &name,
                format!("file_sd_configs[{i}]: file service discovery config must contain at least one path name"),
            ));
        }
        for p in &f.files {
            if !targets::is_valid_file_sd_name(p) {
                return Err(job_err(
                    &name,
                    format!(
                        "file_sd_configs[{i}]: path name {p:?} is not valid for file discovery"
                    ),
                ));
            }
        }
        file_sd.push(FileSdConfig {
            files: f.files.into_iter().map(PathBuf::from).collect(),
            refresh_interval: refresh,
        });
    }

    let mut static_groups = Vec::new();
    // Addresses are checked after relabeling (a blackbox target is a URL that
    // relabeling moves into __param_target), as upstream does.
    for (i, sc) in rj.static_configs.into_iter().enumerate() {
        static_groups.push(TargetGroup {
            targets: sc.targets,
            labels: sc.labels,
            source: i.to_string(),
        });
    }

    let mut job = ScrapeJob {
        name,
        interval,
        timeout,
        metrics_path,
        scheme,
        params: rj.params,
        honor_labels: rj.honor_labels,
        honor_timestamps: rj.honor_timestamps.unwrap_or(true),
        auth,
        tls,
        limits: ScrapeLimits {
            sample_limit: rj.sample_limit,
            label_limit: rj.label_limit,
            label_name_length_limit: rj.label_name_length_limit,
            label_value_length_limit: rj.label_value_length_limit,
            body_size_limit,
        },
        relabel_configs,
        metric_relabel_configs,
        static_groups,
        file_sd,
        targets: Vec::new(),
        dropped: Vec::new(),
        mysql,
    };
    let resolved = targets::resolve_groups(&job, &job.static_groups);
    if let Some(e) = resolved.errors.first() {
        return Err(job_err(&job.name, e.clone()));
    }
    job.targets = resolved.active;
    job.dropped = resolved.dropped;
    Ok(job)
}

/// Go's `url.QueryEscape`.
pub(crate) fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Turns a YAML error into one that names the key path, the job (when the path is
/// inside `scrape_configs[N]`) and the line.
fn yaml_error(yaml: &str, e: serde_norway::Error) -> ConfigError {
    let mut msg = e.to_string();
    if let Some(rest) = msg.strip_prefix("scrape_configs[") {
        if let Some(idx) = rest.split(']').next().and_then(|n| n.parse::<usize>().ok()) {
            if let Some(job) = job_name_at(yaml, idx) {
                msg = format!("job {job:?}: {msg}");
            }
        }
    }
    ConfigError::Yaml(msg)
}

fn job_name_at(yaml: &str, idx: usize) -> Option<String> {
    let v: serde_norway::Value = serde_norway::from_str(yaml).ok()?;
    v.get("scrape_configs")?
        .get(idx)?
        .get("job_name")?
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &str = r#"
global:
  scrape_interval: 15s
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ['127.0.0.1:9100']
        labels: {env: demo}
  - job_name: mysql
    scrape_interval: 30s
    scrape_timeout: 5s
    params:
      collect[]: [global_status]
    basic_auth:
      username: u
      password: ${secure.mysqlPassword}
    static_configs:
      - targets: ['127.0.0.1:9104', 'db2:9104']
"#;

    fn grafana_secrets() -> HashMap<String, String> {
        HashMap::from([("mysqlPassword".to_string(), "s3cret".to_string())])
    }

    #[test]
    fn demo_config_parses_with_prometheus_defaults() {
        let s = grafana_secrets();
        let c = ScrapeConfig::parse(DEMO, &SecretSource::Grafana(&s)).unwrap();
        assert_eq!(c.global_interval, Duration::from_secs(15));
        let node = &c.jobs[0];
        assert_eq!(node.interval, Duration::from_secs(15));
        assert_eq!(node.timeout, Duration::from_secs(10));
        assert_eq!(node.targets[0].url, "http://127.0.0.1:9100/metrics");
        assert_eq!(
            node.targets[0].labels,
            Labels::from_pairs([
                ("env", "demo"),
                ("instance", "127.0.0.1:9100"),
                ("job", "node")
            ])
        );
        let mysql = &c.jobs[1];
        assert_eq!(mysql.timeout, Duration::from_secs(5));
        assert_eq!(mysql.targets.len(), 2);
        assert_eq!(
            mysql.targets[1].url,
            "http://db2:9104/metrics?collect%5B%5D=global_status"
        );
        assert_eq!(
            mysql.auth,
            Auth::Basic {
                username: "u".into(),
                password: Some(SecretValue::Inline("s3cret".into()))
            }
        );
    }

    #[test]
    fn literal_password_in_json_data_is_refused() {
        let yaml = DEMO.replace("${secure.mysqlPassword}", "hunter2");
        let s = grafana_secrets();
        let err = ScrapeConfig::parse(&yaml, &SecretSource::Grafana(&s))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("secureJsonData") && err.contains("mysql"),
            "{err}"
        );
        assert!(
            !err.contains("hunter2"),
            "secret leaked into the error: {err}"
        );
        // In a user's own file a literal is fine.
        assert!(ScrapeConfig::parse(&yaml, &SecretSource::File).is_ok());
    }

    #[test]
    fn missing_secure_field_is_named() {
        let empty = HashMap::new();
        let err = ScrapeConfig::parse(DEMO, &SecretSource::Grafana(&empty))
            .unwrap_err()
            .to_string();
        assert!(err.contains("mysqlPassword"), "{err}");
    }

    #[test]
    fn unknown_key_names_key_job_and_line() {
        let yaml = "scrape_configs:\n  - job_name: node\n    scrape_intervall: 5s\n";
        let err = ScrapeConfig::parse(yaml, &SecretSource::File)
            .unwrap_err()
            .to_string();
        assert!(err.contains("scrape_intervall"), "{err}");
        assert!(err.contains("\"node\""), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn invalid_values_are_rejected_with_the_job() {
        let cases = [
            ("scrape_configs:\n  - job_name: a\n    scrape_interval: 5x\n", "scrape_interval"),
            ("scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n    scrape_timeout: 10s\n", "greater than scrape_interval"),
            ("scrape_configs:\n  - job_name: a\n  - job_name: a\n", "multiple"),
            ("scrape_configs:\n  - job_name: a\n    scheme: ftp\n", "ftp"),
            ("scrape_configs:\n  - job_name: a\n    body_size_limit: 10QB\n", "body_size_limit"),
            ("global:\n  scrape_interval: x\n", "global.scrape_interval"),
        ];
        for (yaml, want) in cases {
            let err = ScrapeConfig::parse(yaml, &SecretSource::File)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{yaml}: {err}");
        }
    }

    #[test]
    fn timeout_defaults_to_min_of_global_timeout_and_interval() {
        let c = ScrapeConfig::parse(
            "scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n",
            &SecretSource::File,
        )
        .unwrap();
        assert_eq!(c.jobs[0].timeout, Duration::from_secs(5));
        assert_eq!(parse_bytes("10MB").unwrap(), 10 << 20);
    }

    #[test]
    fn alertmanagers_resolve_to_alerts_urls() {
        let yaml = r#"
alerting:
  alert_relabel_configs:
    - target_label: via
      replacement: arrowmon
  alertmanagers:
    - path_prefix: /am/
      timeout: 5s
      basic_auth: {username: u, password_file: pw}
      tls_config: {ca_file: ca.pem}
      static_configs:
        - targets: ['a:9093', 'b:9093']
      relabel_configs:
        - source_labels: [__address__]
          regex: b:.*
          action: drop
    - scheme: https
      static_configs:
        - targets: ['c:9093']
"#;
        let mut c = ScrapeConfig::parse(yaml, &SecretSource::File).unwrap();
        c.resolve_paths(Path::new("/etc/arrowmon"));
        let am = &c.alerting.alertmanagers;
        assert_eq!(am[0].urls, ["http://a:9093/am/api/v2/alerts"]);
        assert_eq!(am[0].timeout, Duration::from_secs(5));
        assert_eq!(
            am[0].tls.ca_file,
            Some(PathBuf::from("/etc/arrowmon/ca.pem"))
        );
        assert_eq!(
            am[0].auth,
            Auth::Basic {
                username: "u".into(),
                password: Some(SecretValue::File("/etc/arrowmon/pw".into()))
            }
        );
        assert_eq!(am[1].urls, ["https://c:9093/api/v2/alerts"]);
        assert_eq!(am[1].timeout, DEFAULT_ALERTMANAGER_TIMEOUT);
        assert_eq!(c.alerting.alert_relabel_configs.len(), 1);

        for (bad, want) in [
            (
                "alerting:\n  alertmanagers:\n    - api_version: v1\n",
                "alerting.alertmanagers[0]: expected Alertmanager api version to be one of [v2] but got \"v1\"",
            ),
            (
                "alerting:\n  alertmanagers:\n    - {}\n    - scheme: ftp\n",
                "alerting.alertmanagers[1]: scheme: unsupported scheme \"ftp\" (http or https)",
            ),
            (
                "alerting:\n  alertmanagers:\n    - timeout: soon\n",
                "alerting.alertmanagers[0]: timeout:",
            ),
            (
                "alerting:\n  alertmanagers:\n    - basic_auth: {username: u, password: p}\n      bearer_token: t\n",
                "alerting.alertmanagers[0]: at most one of basic_auth, authorization and bearer_token may be set",
            ),
        ] {
            let e = ScrapeConfig::parse(bad, &SecretSource::File)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
        // A datasource's Alertmanager password must come from its secure fields.
        let secure = HashMap::from([("am".to_string(), "s3cret".to_string())]);
        let grafana = SecretSource::Grafana(&secure);
        let plain = "alerting:\n  alertmanagers:\n    - basic_auth: {username: u, password: p}\n";
        assert!(ScrapeConfig::parse(plain, &grafana)
            .unwrap_err()
            .to_string()
            .contains("basic_auth.password is written in plain text"));
        let referenced = "alerting:\n  alertmanagers:\n    - basic_auth: {username: u, password: '${secure.am}'}\n";
        let c = ScrapeConfig::parse(referenced, &grafana).unwrap();
        assert_eq!(
            c.alerting.alertmanagers[0].auth,
            Auth::Basic {
                username: "u".into(),
                password: Some(SecretValue::Inline("s3cret".into()))
            }
        );
    }

    #[test]
    fn rule_files_and_evaluation_settings() {
        let yaml = "global:\n  evaluation_interval: 15s\n  rule_query_offset: 1m\nrule_files:\n  - rules/*.yml\n  - /etc/x.yml\n";
        let mut c = ScrapeConfig::parse(yaml, &SecretSource::File).unwrap();
        assert_eq!(c.evaluation_interval, Duration::from_secs(15));
        assert_eq!(c.rule_query_offset, Duration::from_secs(60));
        c.resolve_paths(Path::new("/srv/prom"));
        assert_eq!(
            c.rule_files,
            [
                PathBuf::from("/srv/prom/rules/*.yml"),
                PathBuf::from("/etc/x.yml")
            ]
        );
        let empty = ScrapeConfig::parse("", &SecretSource::File).unwrap();
        assert_eq!(empty.evaluation_interval, DEFAULT_EVALUATION_INTERVAL);
        for (bad, want) in [
            (
                "rule_files: ['a/*/b.yml']",
                "invalid rule file path \"a/*/b.yml\"",
            ),
            (
                "rule_files: ['*.yml*']",
                "invalid rule file path \"*.yml*\"",
            ),
            (
                "global:\n  evaluation_interval: 1x\n",
                "global.evaluation_interval",
            ),
        ] {
            let err = ScrapeConfig::parse(bad, &SecretSource::File)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{bad}: {err}");
        }
        let s = grafana_secrets();
        let err = ScrapeConfig::parse("rule_files: [a.yml]", &SecretSource::Grafana(&s))
            .unwrap_err()
            .to_string();
        assert!(err.contains("rule_files"), "{err}");
    }

    /// Prometheus reads sizes with fractions (`1.5GB`), and so does the config
    /// editor's check; the fraction of a byte is dropped.
    #[test]
    fn sizes_may_have_a_fraction_as_in_prometheus() {
        assert_eq!(parse_bytes("1.5GB"), Ok(3 << 29));
        assert_eq!(parse_bytes("0.5KB"), Ok(512));
        assert_eq!(parse_bytes(".25MB"), Ok(1 << 18));
        assert_eq!(parse_bytes("1.0001KB"), Ok(1024));
        assert_eq!(parse_bytes("2EB"), Ok(2 << 60));
        assert_eq!(
            parse_bytes("16EB"),
            Err("size \"16EB\" out of range".into())
        );
        assert!(parse_bytes("15.5EB").is_ok() && parse_bytes("16.5EB").is_err());
        for bad in [".", "1.2.3GB", "GB", "1,5GB", "1.5XB", "-1MB"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sizes_parse_or_fail_without_panicking(
            s in any::<String>(),
            near in " ?[0-9]{0,21}(\\.[0-9]{0,21})? ?(B|KB|KiB|MB|GB|TB|PB|EB|EiB|é|µB)? ?",
        ) {
            let _ = parse_bytes(&s);
            let _ = parse_bytes(&near);
        }
    }
}
