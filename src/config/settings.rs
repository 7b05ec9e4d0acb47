//! A tenant's settings: one Grafana datasource instance, keyed by (org id, uid).
//!
//! They arrive with every request, are persisted in the tenant's folder so
//! scraping resumes at plugin start, and can be provisioned from Grafana's
//! `provisioning/datasources/*.yaml` files, which the plugin reads itself at start
//! so a fresh Grafana scrapes from its first second.

use super::StoreSettings;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{ConfigError, ScrapeConfig, SecretSource};

pub const PLUGIN_ID: &str = "arrowmon-metrics-datasource";

/// Identifies a tenant. Datasource uids are unique only within an org.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantKey {
    pub org_id: i64,
    pub uid: String,
}

impl TenantKey {
    /// Validates the key, since it names a folder on disk.
    pub fn new(org_id: i64, uid: &str) -> Result<TenantKey, String> {
        let ok = !uid.is_empty()
            && uid.len() <= 40
            && uid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && uid != "."
            && uid != "..";
        if !ok {
            return Err(format!("datasource uid {uid:?} is not a valid Grafana uid"));
        }
        if org_id < 0 {
            return Err(format!("org id {org_id} is negative"));
        }
        Ok(TenantKey {
            org_id,
            uid: uid.to_string(),
        })
    }

    /// The tenant's folder below the data root.
    pub fn dir(&self, root: &Path) -> PathBuf {
        root.join(format!("org-{}", self.org_id)).join(&self.uid)
    }
}

impl std::fmt::Display for TenantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "org {} datasource {}", self.org_id, self.uid)
    }
}

/// The most queries a tenant may be told to run at once.
pub const MAX_CONCURRENT_QUERIES: u64 = 10_000;

/// Query limits as a datasource or the command line sets them; `None` keeps the
/// default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryLimitSettings {
    /// Queries evaluated at once; more wait in a queue.
    pub max_concurrent: Option<usize>,
    /// Bytes the queries in flight may hold together (0: no limit).
    pub max_memory: Option<u64>,
}

/// The datasource settings as Grafana sends them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasourceSettings {
    pub org_id: i64,
    pub uid: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub json_data: Map<String, Value>,
    /// Decrypted secrets. Persisted only in the tenant's own folder, mode 0600.
    #[serde(default)]
    pub secure_json_data: HashMap<String, String>,
    #[serde(default, rename = "lastUpdatedMS")]
    pub last_updated_ms: i64,
}

impl DatasourceSettings {
    pub fn key(&self) -> Result<TenantKey, String> {
        TenantKey::new(self.org_id, &self.uid)
    }

    fn json_str(&self, key: &str) -> Option<&str> {
        self.json_data
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// `jsonData.scrapeConfig`: Prometheus `scrape_configs` YAML.
    pub fn scrape_config_text(&self) -> &str {
        self.json_str("scrapeConfig").unwrap_or("")
    }

    /// `jsonData.ruleConfig`: recording and alerting rules, a rule file's YAML.
    pub fn rule_config_text(&self) -> &str {
        self.json_str("ruleConfig").unwrap_or("")
    }

    pub fn scrape_config(&self) -> Result<ScrapeConfig, ConfigError> {
        ScrapeConfig::parse(
            self.scrape_config_text(),
            &SecretSource::Grafana(&self.secure_json_data),
        )
    }

    /// The store settings that belong to this datasource (`jsonData.retentionTime`,
    /// `retentionSize`, `outOfOrderWindow`).
    pub fn store_settings(&self) -> Result<StoreSettings, String> {
        let duration = |key: &str| {
            self.json_str(key)
                .map(|t| super::parse_duration(t).map_err(|e| format!("jsonData.{key}: {e}")))
                .transpose()
        };
        Ok(StoreSettings {
            retention_time: duration("retentionTime")?,
            retention_size_bytes: self
                .json_str("retentionSize")
                .map(|sz| {
                    super::parse_bytes(sz).map_err(|e| format!("jsonData.retentionSize: {e}"))
                })
                .transpose()?,
            out_of_order_window: duration("outOfOrderWindow")?,
            ..StoreSettings::default()
        })
    }

    /// `jsonData.queryTimeout` (a duration such as `60s`): the longest a query may run.
    pub fn query_timeout(&self) -> Result<Option<Duration>, String> {
        let Some(text) = self.json_str("queryTimeout") else {
            return Ok(None);
        };
        match super::parse_duration(text) {
            Ok(d) if d.is_zero() => Err(format!(
                "jsonData.queryTimeout: {text:?} must be longer than zero"
            )),
            Ok(d) => Ok(Some(d)),
            Err(e) => Err(format!("jsonData.queryTimeout: {e}")),
        }
    }

    /// The query limits this datasource sets (`jsonData.maxConcurrentQueries`, a
    /// number of queries, and `jsonData.maxQueryMemory`, a size such as `2GB`, 0
    /// for no limit); what it leaves unset keeps the default.
    pub fn query_limits(&self) -> Result<QueryLimitSettings, String> {
        let max_concurrent = match self.json_data.get("maxConcurrentQueries") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(v) => {
                let n = match v {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.trim().parse::<u64>().ok(),
                    _ => None,
                };
                match n {
                    Some(n @ 1..=MAX_CONCURRENT_QUERIES) => Some(n as usize),
                    _ => {
                        return Err(format!(
                            "jsonData.maxConcurrentQueries: {v} is not a number of queries from 1 to {MAX_CONCURRENT_QUERIES}"
                        ))
                    }
                }
            }
        };
        let max_memory =
            match self.json_data.get("maxQueryMemory") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.trim().is_empty() => None,
                Some(Value::String(s)) => Some(
                    super::parse_bytes(s).map_err(|e| format!("jsonData.maxQueryMemory: {e}"))?,
                ),
                Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(|| {
                    format!("jsonData.maxQueryMemory: {n} is not a size in bytes")
                })?),
                Some(v) => {
                    return Err(format!(
                        "jsonData.maxQueryMemory: {v} is not a size such as \"2GB\""
                    ))
                }
            };
        Ok(QueryLimitSettings {
            max_concurrent,
            max_memory,
        })
    }

    /// `jsonData.timeInterval` as written ("" when unset), as Grafana's query rules use it.
    pub fn time_interval_text(&self) -> &str {
        self.json_str("timeInterval").unwrap_or("")
    }

    /// `jsonData.timeInterval`: the scrape interval Grafana uses for `$__rate_interval`.
    pub fn time_interval(&self) -> Option<Duration> {
        self.json_str("timeInterval")
            .and_then(|s| super::parse_duration(s).ok())
    }

    /// Parses the settings from the pluginv2 message's fields.
    pub fn from_grafana(
        org_id: i64,
        uid: &str,
        name: &str,
        json_data: &[u8],
        secure: &HashMap<String, String>,
        last_updated_ms: i64,
    ) -> Result<DatasourceSettings, String> {
        let json_data = if json_data.iter().all(u8::is_ascii_whitespace) {
            Map::new()
        } else {
            match serde_json::from_slice::<Value>(json_data) {
                Ok(Value::Object(m)) => m,
                Ok(Value::Null) => Map::new(),
                Ok(_) => return Err("datasource jsonData is not a JSON object".into()),
                Err(e) => return Err(format!("datasource jsonData is not valid JSON: {e}")),
            }
        };
        Ok(DatasourceSettings {
            org_id,
            uid: uid.to_string(),
            name: name.to_string(),
            json_data,
            secure_json_data: secure.clone(),
            last_updated_ms,
        })
    }

    /// Writes the settings to `dir/settings.json` (atomically, owner-only).
    pub fn persist(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join("settings.json.tmp");
        let body = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, dir.join("settings.json"))
    }

    pub fn load(dir: &Path) -> Result<Option<DatasourceSettings>, String> {
        let path = dir.join("settings.json");
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }
}

/// Every persisted tenant below the data root.
pub fn load_persisted(root: &Path) -> (Vec<DatasourceSettings>, Vec<String>) {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    let Ok(orgs) = std::fs::read_dir(root) else {
        return (found, errors);
    };
    for org in orgs.flatten() {
        let Ok(tenants) = std::fs::read_dir(org.path()) else {
            continue;
        };
        for t in tenants.flatten() {
            match DatasourceSettings::load(&t.path()) {
                Ok(Some(s)) => found.push(s),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
    }
    (found, errors)
}

#[derive(Deserialize)]
struct ProvisioningFile {
    #[serde(default)]
    datasources: Vec<ProvisionedDatasource>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProvisionedDatasource {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    uid: Option<String>,
    org_id: Option<i64>,
    #[serde(default)]
    json_data: Option<serde_norway::Value>,
    #[serde(default)]
    secure_json_data: Option<HashMap<String, String>>,
}

/// The datasources of this plugin in `provisioning/datasources/*.y*ml`, with
/// Grafana's `$VAR`/`${VAR}` expansion applied to values (`$$` is a literal `$`).
/// A provisioned datasource counts as last updated when its file was modified.
pub fn load_provisioned(
    provisioning_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Vec<DatasourceSettings>, Vec<String>) {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    let dir = provisioning_dir.join("datasources");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return (found, errors);
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    paths.sort();
    for path in paths {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let modified_ms = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let file: ProvisioningFile = match serde_norway::from_str(&text) {
            Ok(f) => f,
            Err(e) => {
                errors.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        for ds in file.datasources {
            if ds.kind.as_deref() != Some(PLUGIN_ID) {
                continue;
            }
            let Some(uid) = ds.uid.map(|u| expand_env(&u, env)) else {
                errors.push(format!(
                    "{}: datasource {:?} has no uid; it will start scraping on its first request",
                    path.display(),
                    ds.name.unwrap_or_default()
                ));
                continue;
            };
            let json_data = match ds.json_data.map(|v| yaml_to_json(v, env)) {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            let secure = ds
                .secure_json_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, expand_env(&v, env)))
                .collect();
            found.push(DatasourceSettings {
                org_id: ds.org_id.unwrap_or(1),
                uid,
                name: ds.name.map(|n| expand_env(&n, env)).unwrap_or_default(),
                json_data,
                secure_json_data: secure,
                last_updated_ms: modified_ms,
            });
        }
    }
    (found, errors)
}

fn yaml_to_json(v: serde_norway::Value, env: &dyn Fn(&str) -> Option<String>) -> Value {
    use serde_norway::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n).unwrap_or(Value::Null),
        Y::String(s) => Value::String(expand_env(&s, env)),
        Y::Sequence(seq) => Value::Array(seq.into_iter().map(|x| yaml_to_json(x, env)).collect()),
        Y::Mapping(m) => Value::Object(
            m.into_iter()
                .filter_map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        Y::Number(n) => n.to_string(),
                        Y::Bool(b) => b.to_string(),
                        _ => return None,
                    };
                    Some((key, yaml_to_json(v, env)))
                })
                .collect(),
        ),
        Y::Tagged(t) => yaml_to_json(t.value, env),
    }
}

/// Grafana's provisioning expansion: `$NAME` and `${NAME}` become the variable's
/// value (empty when unset); `$$` is a literal `$`.
pub fn expand_env(s: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            match r.find('}') {
                Some(end) => {
                    out.push_str(&env(&r[..end]).unwrap_or_default());
                    rest = &r[end + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            let n = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if n == 0 {
                out.push('$');
            } else {
                out.push_str(&env(&after[..n]).unwrap_or_default());
            }
            rest = &after[n..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "HOST" => Some("db1".into()),
            "PW" => Some("p$w".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_like_grafana_provisioning() {
        assert_eq!(expand_env("$HOST:9104", &env), "db1:9104");
        assert_eq!(expand_env("${HOST}x", &env), "db1x");
        assert_eq!(expand_env("$$HOST", &env), "$HOST");
        assert_eq!(expand_env("a $UNSET b", &env), "a  b");
        assert_eq!(expand_env("cost $5", &env), "cost ");
        assert_eq!(expand_env("${secure.x}", &env), "");
        assert_eq!(expand_env("$$${PW}", &env), "$p$w");
    }

    #[test]
    fn a_query_timeout_that_is_not_a_duration_is_an_error_naming_the_key() {
        let with = |json: &str| {
            DatasourceSettings::from_grafana(1, "ds", "n", json.as_bytes(), &HashMap::new(), 0)
                .unwrap()
                .query_timeout()
        };
        assert_eq!(with("{}"), Ok(None));
        assert_eq!(
            with(r#"{"queryTimeout": "2m"}"#),
            Ok(Some(Duration::from_secs(120)))
        );
        let err = with(r#"{"queryTimeout": "soon"}"#).unwrap_err();
        assert!(err.starts_with("jsonData.queryTimeout: "), "{err}");
        assert!(err.contains("soon"), "{err}");
        assert_eq!(
            with(r#"{"queryTimeout": "0s"}"#),
            Err("jsonData.queryTimeout: \"0s\" must be longer than zero".to_string())
        );
    }

    #[test]
    fn query_limits_are_read_from_json_data_and_bad_ones_refused() {
        let with = |json: &str| {
            DatasourceSettings::from_grafana(1, "ds", "n", json.as_bytes(), &HashMap::new(), 0)
                .unwrap()
                .query_limits()
        };
        assert_eq!(with("{}"), Ok(QueryLimitSettings::default()));
        assert_eq!(
            with(r#"{"maxConcurrentQueries": 8, "maxQueryMemory": "2GB"}"#),
            Ok(QueryLimitSettings {
                max_concurrent: Some(8),
                max_memory: Some(2 << 30),
            })
        );
        assert_eq!(
            with(r#"{"maxConcurrentQueries": "4", "maxQueryMemory": 1048576}"#),
            Ok(QueryLimitSettings {
                max_concurrent: Some(4),
                max_memory: Some(1 << 20),
            })
        );
        assert_eq!(
            with(r#"{"maxConcurrentQueries": "", "maxQueryMemory": "0"}"#),
            Ok(QueryLimitSettings {
                max_concurrent: None,
                max_memory: Some(0),
            })
        );
        assert_eq!(
            with(r#"{"maxConcurrentQueries": 0}"#),
            Err(
                "jsonData.maxConcurrentQueries: 0 is not a number of queries from 1 to 10000"
                    .into()
            )
        );
        assert_eq!(
            with(r#"{"maxConcurrentQueries": 2.5}"#),
            Err(
                "jsonData.maxConcurrentQueries: 2.5 is not a number of queries from 1 to 10000"
                    .into()
            )
        );
        assert_eq!(
            with(r#"{"maxQueryMemory": "2 bananas"}"#),
            Err("jsonData.maxQueryMemory: invalid size \"2 bananas\": unknown unit".into())
        );
        assert_eq!(
            with(r#"{"maxQueryMemory": -1}"#),
            Err("jsonData.maxQueryMemory: -1 is not a size in bytes".into())
        );
    }

    #[test]
    fn tenant_keys_are_safe_folder_names() {
        assert!(TenantKey::new(1, "arrowmon").is_ok());
        for bad in ["", "..", "a/b", "x y", &"a".repeat(41)] {
            assert!(TenantKey::new(1, bad).is_err(), "{bad}");
        }
        let root = Path::new("/d");
        assert_eq!(
            TenantKey::new(2, "u").unwrap().dir(root),
            PathBuf::from("/d/org-2/u")
        );
    }

    #[test]
    fn provisioned_datasources_of_this_plugin_are_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("datasources")).unwrap();
        std::fs::write(
            dir.path().join("datasources/a.yaml"),
            r#"apiVersion: 1
datasources:
  - name: Prom
    type: prometheus
    uid: prom
  - name: arrowmon
    type: arrowmon-metrics-datasource
    uid: am
    orgId: 3
    jsonData:
      timeInterval: 15s
      scrapeConfig: |
        scrape_configs:
          - job_name: node
            static_configs: [{targets: ['$HOST:9100']}]
    secureJsonData:
      pw: ${PW}
"#,
        )
        .unwrap();
        let (found, errors) = load_provisioned(dir.path(), &env);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(found.len(), 1);
        let s = &found[0];
        assert_eq!((s.org_id, s.uid.as_str()), (3, "am"));
        assert!(s.scrape_config_text().contains("db1:9100"));
        assert_eq!(s.secure_json_data["pw"], "p$w");
        assert_eq!(s.time_interval(), Some(Duration::from_secs(15)));
        assert!(s.last_updated_ms > 0);
    }

    #[test]
    fn settings_round_trip_through_the_tenant_folder() {
        let dir = tempfile::tempdir().unwrap();
        let s = DatasourceSettings::from_grafana(
            1,
            "u",
            "n",
            br#"{"timeInterval":"5s"}"#,
            &HashMap::new(),
            42,
        )
        .unwrap();
        let tdir = s.key().unwrap().dir(dir.path());
        s.persist(&tdir).unwrap();
        let (found, errors) = load_persisted(dir.path());
        assert!(errors.is_empty());
        assert_eq!(found, vec![s]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(tdir.join("settings.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
