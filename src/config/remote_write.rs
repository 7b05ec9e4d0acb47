//! `remote_write:` as Prometheus 2.42 reads it (config/config.go): where samples
//! are sent, how, and with which queue settings, with Prometheus's defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{
    client_auth, relabel, relabel_list, tls_settings, Auth, ConfigError, RawAuthorization,
    RawBasicAuth, RawTlsConfig, RelabelConfig, SecretSource, TlsConfig,
};
use crate::model::duration::parse_duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRemoteWrite {
    url: Option<String>,
    name: Option<String>,
    remote_timeout: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    write_relabel_configs: Vec<relabel::RawRelabelConfig>,
    #[serde(default)]
    send_exemplars: bool,
    #[serde(default)]
    send_native_histograms: bool,
    basic_auth: Option<RawBasicAuth>,
    authorization: Option<RawAuthorization>,
    bearer_token: Option<String>,
    bearer_token_file: Option<String>,
    tls_config: Option<RawTlsConfig>,
    #[serde(default)]
    queue_config: RawQueueConfig,
    #[serde(default)]
    metadata_config: RawMetadataConfig,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawQueueConfig {
    capacity: Option<usize>,
    max_shards: Option<usize>,
    min_shards: Option<usize>,
    max_samples_per_send: Option<usize>,
    batch_send_deadline: Option<String>,
    min_backoff: Option<String>,
    max_backoff: Option<String>,
    retry_on_http_429: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetadataConfig {
    send: Option<bool>,
    send_interval: Option<String>,
    max_samples_per_send: Option<usize>,
}

/// One `remote_write` entry with Prometheus's defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteWriteConfig {
    pub url: String,
    /// `name`, or when none is given the first six hex digits of a hash of the URL
    /// (Prometheus hashes the whole entry; the URL alone keeps the sending position
    /// across other edits). Labels the self-metrics as `remote_name` and names the
    /// file that remembers how far sending got.
    pub name: String,
    pub remote_timeout: Duration,
    pub headers: Vec<(String, String)>,
    pub auth: Auth,
    pub tls: TlsConfig,
    pub write_relabel_configs: Vec<RelabelConfig>,
    pub queue: QueueConfig,
    pub metadata: MetadataConfig,
}

/// `queue_config`.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueConfig {
    /// Samples buffered per shard before reading the WAL waits.
    pub capacity: usize,
    pub max_shards: usize,
    pub min_shards: usize,
    pub max_samples_per_send: usize,
    /// The longest a sample waits in a shard for its batch to fill.
    pub batch_send_deadline: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub retry_on_http_429: bool,
}

impl Default for QueueConfig {
    /// Prometheus 2.42's `DefaultQueueConfig`.
    fn default() -> QueueConfig {
        QueueConfig {
            capacity: 2500,
            max_shards: 200,
            min_shards: 1,
            max_samples_per_send: 500,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            retry_on_http_429: false,
        }
    }
}

/// `metadata_config`.
#[derive(Clone, Debug, PartialEq)]
pub struct MetadataConfig {
    pub send: bool,
    pub send_interval: Duration,
    pub max_samples_per_send: usize,
}

impl Default for MetadataConfig {
    /// Prometheus 2.42's `DefaultMetadataConfig`.
    fn default() -> MetadataConfig {
        MetadataConfig {
            send: true,
            send_interval: Duration::from_secs(60),
            max_samples_per_send: 500,
        }
    }
}

/// Prometheus's default `remote_timeout`.
pub const DEFAULT_REMOTE_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers the sender sets itself (Prometheus's `reservedHeaders`).
const RESERVED_HEADERS: [&str; 16] = [
    "host",
    "content-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
    "accept-encoding",
    "x-prometheus-remote-write-version",
    "x-prometheus-remote-read-version",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

/// Builds every entry; `yaml` is the config text, for the line an error is at.
pub(super) fn build_remote_writes(
    raw: Vec<RawRemoteWrite>,
    yaml: &str,
    secrets: &SecretSource<'_>,
) -> Result<Vec<RemoteWriteConfig>, ConfigError> {
    let mut out: Vec<RemoteWriteConfig> = Vec::new();
    for (index, rw) in raw.into_iter().enumerate() {
        let line = rw.url.as_deref().and_then(|u| line_of(yaml, u));
        let err = |message: String| ConfigError::RemoteWrite {
            index,
            line: line.map_or(String::new(), |l| format!(" (line {l})")),
            message,
        };
        let built = build_one(rw, secrets, &err)?;
        if let Some(other) = out.iter().find(|o| o.name == built.name) {
            return Err(err(if other.url == built.url {
                format!(
                    "duplicate remote write configs are not allowed, found duplicate for URL: {}",
                    built.url
                )
            } else {
                format!(
                    "found multiple remote write configs with job name {:?}",
                    built.name
                )
            }));
        }
        out.push(built);
    }
    Ok(out)
}

fn build_one(
    rw: RawRemoteWrite,
    secrets: &SecretSource<'_>,
    err: &dyn Fn(String) -> ConfigError,
) -> Result<RemoteWriteConfig, ConfigError> {
    let url = match rw.url {
        Some(u) if !u.is_empty() => u,
        _ => return Err(err("url for remote_write is empty".into())),
    };
    let parsed = reqwest::Url::parse(&url).map_err(|e| err(format!("url {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(err(format!(
            "url {url:?}: an http or https URL with a host is needed"
        )));
    }
    if rw.send_exemplars {
        return Err(err(
            "send_exemplars: exemplars are kept in memory only, not in the WAL the sender reads, so they cannot be sent"
                .into(),
        ));
    }
    if rw.send_native_histograms {
        return Err(err(
            "send_native_histograms: native histograms are not stored yet".into(),
        ));
    }
    let duration = |v: Option<String>, key: &str, default: Duration| match v {
        None => Ok(default),
        Some(t) => parse_duration(&t).map_err(|e| err(format!("{key}: {e}"))),
    };
    let remote_timeout = duration(rw.remote_timeout, "remote_timeout", DEFAULT_REMOTE_TIMEOUT)?;
    if remote_timeout.is_zero() {
        return Err(err("remote_timeout must be greater than 0".into()));
    }
    let mut headers = Vec::new();
    for (name, value) in rw.headers {
        let lower = name.to_ascii_lowercase();
        if lower == "authorization" {
            return Err(err("authorization header must be changed via the basic_auth, authorization, oauth2, or sigv4 parameter".into()));
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(err(format!(
                "{name} is a reserved header. It must not be changed"
            )));
        }
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
            || reqwest::header::HeaderValue::from_str(&value).is_err()
        {
            return Err(err(format!("headers: {name:?} is not a valid HTTP header")));
        }
        headers.push((name, value));
    }
    let auth = client_auth(
        rw.basic_auth,
        rw.authorization,
        (rw.bearer_token, rw.bearer_token_file),
        secrets,
        err,
    )?;
    let tls = tls_settings(rw.tls_config, err)?;
    let write_relabel_configs =
        relabel_list(rw.write_relabel_configs, "write_relabel_configs", err)?;

    let d = QueueConfig::default();
    let q = rw.queue_config;
    let queue = QueueConfig {
        capacity: q.capacity.unwrap_or(d.capacity),
        max_shards: q.max_shards.unwrap_or(d.max_shards),
        min_shards: q.min_shards.unwrap_or(d.min_shards),
        max_samples_per_send: q.max_samples_per_send.unwrap_or(d.max_samples_per_send),
        batch_send_deadline: duration(
            q.batch_send_deadline,
            "queue_config.batch_send_deadline",
            d.batch_send_deadline,
        )?,
        min_backoff: duration(q.min_backoff, "queue_config.min_backoff", d.min_backoff)?,
        max_backoff: duration(q.max_backoff, "queue_config.max_backoff", d.max_backoff)?,
        retry_on_http_429: q.retry_on_http_429.unwrap_or(d.retry_on_http_429),
    };
    for (key, v) in [
        ("capacity", queue.capacity),
        ("max_shards", queue.max_shards),
        ("min_shards", queue.min_shards),
        ("max_samples_per_send", queue.max_samples_per_send),
    ] {
        if v == 0 {
            return Err(err(format!("queue_config.{key} must be greater than 0")));
        }
    }
    if queue.min_shards > queue.max_shards {
        return Err(err(format!(
            "queue_config.min_shards ({}) is greater than max_shards ({})",
            queue.min_shards, queue.max_shards
        )));
    }
    if queue.batch_send_deadline.is_zero() {
        return Err(err(
            "queue_config.batch_send_deadline must be greater than 0".into(),
        ));
    }
    if queue.min_backoff > queue.max_backoff {
        return Err(err(
            "queue_config.min_backoff is greater than max_backoff".into()
        ));
    }
    let dm = MetadataConfig::default();
    let m = rw.metadata_config;
    let metadata = MetadataConfig {
        send: m.send.unwrap_or(dm.send),
        send_interval: duration(
            m.send_interval,
            "metadata_config.send_interval",
            dm.send_interval,
        )?,
        max_samples_per_send: m.max_samples_per_send.unwrap_or(dm.max_samples_per_send),
    };
    if metadata.send && (metadata.send_interval.is_zero() || metadata.max_samples_per_send == 0) {
        return Err(err(
            "metadata_config: send_interval and max_samples_per_send must be greater than 0".into(),
        ));
    }
    let name = match rw.name {
        Some(n) if !n.is_empty() => n,
        _ => url_hash(&url),
    };
    Ok(RemoteWriteConfig {
        url,
        name,
        remote_timeout,
        headers,
        auth,
        tls,
        write_relabel_configs,
        queue,
        metadata,
    })
}

/// Six hex digits of FNV-1a over the URL: stable across releases and machines.
fn url_hash(url: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in url.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:06x}", h >> 40)
}

/// The 1-based line of the first `url:` line holding `url`.
fn line_of(yaml: &str, url: &str) -> Option<usize> {
    yaml.lines()
        .position(|l| l.contains("url") && l.contains(url))
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::{ScrapeConfig, SecretValue};

    fn parse(yaml: &str) -> Result<ScrapeConfig, String> {
        ScrapeConfig::parse(yaml, &SecretSource::File).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_prometheus_defaults() {
        let c = parse("remote_write:\n  - url: http://127.0.0.1:9090/api/v1/write\n").unwrap();
        let rw = &c.remote_write[0];
        assert_eq!(rw.remote_timeout, Duration::from_secs(30));
        assert_eq!(rw.queue, QueueConfig::default());
        assert_eq!(rw.queue.capacity, 2500);
        assert_eq!(rw.queue.max_samples_per_send, 500);
        assert_eq!(rw.metadata, MetadataConfig::default());
        assert_eq!(rw.name.len(), 6);
        assert_eq!(rw.auth, Auth::None);
    }

    #[test]
    fn every_key_is_read() {
        let yaml = r#"
global:
  external_labels: {cluster: a}
remote_write:
  - url: https://mimir.example:8080/api/v1/push
    name: mimir
    remote_timeout: 10s
    headers: {X-Scope-OrgID: team-a}
    basic_auth: {username: u, password: p}
    tls_config: {insecure_skip_verify: true}
    write_relabel_configs:
      - source_labels: [__name__]
        regex: go_.*
        action: drop
    queue_config:
      capacity: 100
      min_shards: 2
      max_shards: 4
      max_samples_per_send: 50
      batch_send_deadline: 1s
      min_backoff: 10ms
      max_backoff: 1s
      retry_on_http_429: true
    metadata_config: {send: false, send_interval: 2m}
"#;
        let c = parse(yaml).unwrap();
        let rw = &c.remote_write[0];
        assert_eq!(rw.name, "mimir");
        assert_eq!(rw.remote_timeout, Duration::from_secs(10));
        assert_eq!(
            rw.headers,
            vec![("X-Scope-OrgID".to_string(), "team-a".to_string())]
        );
        assert_eq!(
            rw.auth,
            Auth::Basic {
                username: "u".into(),
                password: Some(SecretValue::Inline("p".into()))
            }
        );
        assert!(rw.tls.insecure_skip_verify);
        assert_eq!(rw.write_relabel_configs.len(), 1);
        assert_eq!(
            rw.queue,
            QueueConfig {
                capacity: 100,
                max_shards: 4,
                min_shards: 2,
                max_samples_per_send: 50,
                batch_send_deadline: Duration::from_secs(1),
                min_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_secs(1),
                retry_on_http_429: true,
            }
        );
        assert!(!rw.metadata.send);
        assert_eq!(rw.metadata.send_interval, Duration::from_secs(120));
    }

    #[test]
    fn errors_name_the_entry_and_line() {
        let cases = [
            ("remote_write:\n  - name: x\n", "url for remote_write is empty"),
            (
                "remote_write:\n  - url: http://a/w\n    headers: {Authorization: x}\n",
                "authorization header must be changed",
            ),
            (
                "remote_write:\n  - url: http://a/w\n    headers: {Content-Type: x}\n",
                "Content-Type is a reserved header",
            ),
            (
                "remote_write:\n  - url: http://a/w\n  - url: http://a/w\n",
                "duplicate remote write configs are not allowed, found duplicate for URL: http://a/w",
            ),
            (
                "remote_write:\n  - url: http://a/w\n    name: x\n  - url: http://b/w\n    name: x\n",
                "found multiple remote write configs with job name \"x\"",
            ),
            (
                "remote_write:\n  - url: ftp://a/w\n",
                "an http or https URL with a host is needed",
            ),
            (
                "remote_write:\n  - url: http://a/w\n    queue_config: {min_shards: 5, max_shards: 2}\n",
                "min_shards (5) is greater than max_shards (2)",
            ),
            (
                "remote_write:\n  - url: http://a/w\n    queue_config: {max_samples_per_send: 0}\n",
                "max_samples_per_send must be greater than 0",
            ),
            (
                "remote_write:\n  - url: http://a/w\n    send_exemplars: true\n",
                "exemplars are kept in memory only",
            ),
        ];
        for (yaml, want) in cases {
            let e = parse(yaml).unwrap_err();
            assert!(e.contains(want), "{yaml}: {e}");
            if yaml.contains("http://b/w") || yaml.contains("Content-Type") {
                assert!(e.contains("remote_write["), "{e}");
                assert!(e.contains("(line "), "{e}");
            }
        }
        let e = parse("remote_write:\n  - url: http://a/w\n    queue_config: {capacty: 1}\n")
            .unwrap_err();
        assert!(
            e.contains("unknown field `capacty`") && e.contains("line 3"),
            "{e}"
        );
    }

    #[test]
    fn secrets_in_datasource_settings_must_be_references() {
        let yaml = "remote_write:\n  - url: http://a/w\n    bearer_token: abc\n";
        let map = HashMap::from([("tok".to_string(), "abc".to_string())]);
        let e = ScrapeConfig::parse(yaml, &SecretSource::Grafana(&map))
            .unwrap_err()
            .to_string();
        assert!(e.contains("secureJsonData"), "{e}");
        let ok = ScrapeConfig::parse(
            &yaml.replace("abc", "${secure.tok}"),
            &SecretSource::Grafana(&map),
        )
        .unwrap();
        assert_eq!(
            ok.remote_write[0].auth,
            Auth::Header {
                scheme: "Bearer".into(),
                credentials: SecretValue::Inline("abc".into())
            }
        );
    }
}
