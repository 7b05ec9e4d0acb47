//! From discovered target groups to scrape targets, as Prometheus 3's
//! `PopulateDiscoveredLabels`/`PopulateLabels` (scrape/target.go) do it: the job's
//! `__scheme__`, `__metrics_path__`, `__scrape_interval__`, `__scrape_timeout__`,
//! `__param_<name>` and `job` labels are added where discovery did not set them,
//! `relabel_configs` run, `__meta_*` labels are removed, `instance` defaults to
//! `__address__`, and the series labels are the target labels without a `__` prefix.
//! Prometheus 3 no longer appends a default port to an address without one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::model::labels::{Label, Labels};

use super::relabel::{process_builder, LabelBuilder};
use super::{format_duration, parse_duration, ScrapeJob};

pub const ADDRESS_LABEL: &str = "__address__";
pub const SCHEME_LABEL: &str = "__scheme__";
pub const METRICS_PATH_LABEL: &str = "__metrics_path__";
pub const SCRAPE_INTERVAL_LABEL: &str = "__scrape_interval__";
pub const SCRAPE_TIMEOUT_LABEL: &str = "__scrape_timeout__";
pub const PARAM_LABEL_PREFIX: &str = "__param_";
pub const META_LABEL_PREFIX: &str = "__meta_";
pub const RESERVED_LABEL_PREFIX: &str = "__";

/// Prometheus's default `refresh_interval` of `file_sd_configs`.
pub const DEFAULT_FILE_SD_REFRESH: Duration = Duration::from_secs(300);

/// A group of targets sharing labels: one `static_configs` entry, or one entry of a
/// file_sd file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetGroup {
    /// Addresses (`__address__` of each target).
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Where the group came from (static config index, `file:index`).
    pub source: String,
}

/// `file_sd_configs` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSdConfig {
    /// Paths; the last element may hold `*` and `?` patterns.
    pub files: Vec<PathBuf>,
    pub refresh_interval: Duration,
}

/// A target to scrape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub url: String,
    /// The labels every series from the target carries (no `__` labels).
    pub labels: Labels,
    /// The labels before relabeling (what `api/v1/targets` calls discoveredLabels).
    pub discovered_labels: Labels,
    /// All labels after relabeling, `__` ones included (for the target's identity).
    pub internal_labels: Labels,
    pub interval: Duration,
    pub timeout: Duration,
}

/// A target that relabeling dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DroppedTarget {
    pub discovered_labels: Labels,
}

/// The targets of a set of groups.
#[derive(Debug, Default)]
pub struct Resolved {
    pub active: Vec<Target>,
    pub dropped: Vec<DroppedTarget>,
    /// Targets that could not be built, with why ("instance N in group G: ...").
    pub errors: Vec<String>,
}

/// Upstream `config.CheckTargetAddress`.
pub fn check_target_address(addr: &str) -> Result<(), String> {
    if addr.contains('/') {
        return Err(format!(
            "{} is not a valid hostname",
            crate::model::labels::go_quote(addr)
        ));
    }
    Ok(())
}

/// Upstream's `patFileSDName`: `^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$`.
pub fn is_valid_file_sd_name(p: &str) -> bool {
    let ext_ok = [".json", ".yml", ".yaml", ".JSON", ".YML", ".YAML"]
        .iter()
        .any(|e| p.ends_with(e));
    if !ext_ok {
        return false;
    }
    match p.find('*') {
        None => true,
        Some(i) => !p[i..].contains('/'),
    }
}

/// Builds the targets of `groups` for `job`.
pub fn resolve_groups(job: &ScrapeJob, groups: &[TargetGroup]) -> Resolved {
    let mut out = Resolved::default();
    for g in groups {
        for (i, addr) in g.targets.iter().enumerate() {
            match populate_labels(job, addr, &g.labels) {
                Ok(Populated::Active(t)) => out.active.push(t),
                Ok(Populated::Dropped(d)) => out.dropped.push(d),
                Err(e) => out
                    .errors
                    .push(format!("instance {i} in group {}: {e}", g.source)),
            }
        }
    }
    out
}

pub enum Populated {
    Active(Target),
    Dropped(DroppedTarget),
}

/// The discovered labels of one target: its address, the group's labels, then the
/// job's defaults where not set.
pub fn discovered_labels(
    job: &ScrapeJob,
    address: &str,
    group_labels: &BTreeMap<String, String>,
) -> LabelBuilder {
    let mut v: Vec<Label> = group_labels
        .iter()
        .filter(|(k, _)| k.as_str() != ADDRESS_LABEL)
        .map(|(k, val)| Label::new(k.as_str(), val.as_str()))
        .collect();
    v.push(Label::new(ADDRESS_LABEL, address));
    let mut lb = LabelBuilder::from_vec(v);
    let interval = format_duration(job.interval);
    let timeout = format_duration(job.timeout);
    for (name, value) in [
        ("job", job.name.as_str()),
        (SCRAPE_INTERVAL_LABEL, interval.as_str()),
        (SCRAPE_TIMEOUT_LABEL, timeout.as_str()),
        (METRICS_PATH_LABEL, job.metrics_path.as_str()),
        (SCHEME_LABEL, job.scheme.as_str()),
    ] {
        if lb.get(name).is_empty() {
            lb.set(name, value);
        }
    }
    for (k, vs) in &job.params {
        let name = format!("{PARAM_LABEL_PREFIX}{k}");
        if let Some(first) = vs.first() {
            if lb.get(&name).is_empty() {
                lb.set(&name, first);
            }
        }
    }
    lb
}

/// Upstream `PopulateLabels` for one target.
pub fn populate_labels(
    job: &ScrapeJob,
    address: &str,
    group_labels: &BTreeMap<String, String>,
) -> Result<Populated, String> {
    let mut lb = discovered_labels(job, address, group_labels);
    let discovered = lb.labels();
    if !process_builder(&mut lb, &job.relabel_configs) {
        return Ok(Populated::Dropped(DroppedTarget {
            discovered_labels: discovered,
        }));
    }
    let addr = lb.get(ADDRESS_LABEL).to_string();
    if addr.is_empty() {
        return Err("no address".into());
    }
    check_target_address(&addr)?;
    let interval_s = lb.get(SCRAPE_INTERVAL_LABEL).to_string();
    let interval =
        parse_duration(&interval_s).map_err(|e| format!("error parsing scrape interval: {e}"))?;
    if interval.is_zero() {
        return Err("scrape interval cannot be 0".into());
    }
    let timeout_s = lb.get(SCRAPE_TIMEOUT_LABEL).to_string();
    let timeout =
        parse_duration(&timeout_s).map_err(|e| format!("error parsing scrape timeout: {e}"))?;
    if timeout.is_zero() {
        return Err("scrape timeout cannot be 0".into());
    }
    if timeout > interval {
        return Err(format!(
            "scrape timeout cannot be greater than scrape interval ({} > {})",
            crate::model::labels::go_quote(&timeout_s),
            crate::model::labels::go_quote(&interval_s)
        ));
    }
    lb.retain(|l| !l.name.starts_with(META_LABEL_PREFIX));
    if lb.get("instance").is_empty() {
        lb.set("instance", &addr);
    }
    let scheme = lb.get(SCHEME_LABEL);
    if job.mysql.is_some() {
        if scheme != "mysql" {
            return Err(format!(
                "unsupported scheme {} for a mysql: job (mysql)",
                crate::model::labels::go_quote(scheme)
            ));
        }
    } else if scheme != "http" && scheme != "https" {
        // Upstream fails the scrape later with an unsupported-protocol error.
        return Err(format!(
            "unsupported scheme {} (http or https)",
            crate::model::labels::go_quote(scheme)
        ));
    }
    let internal = lb.labels();
    let url = target_url(&internal, &job.params);
    let labels = Labels::new(
        internal
            .iter()
            .filter(|l| !l.name.starts_with(RESERVED_LABEL_PREFIX))
            .cloned()
            .collect(),
    );
    Ok(Populated::Active(Target {
        url,
        labels,
        discovered_labels: discovered,
        internal_labels: internal,
        interval,
        timeout,
    }))
}

/// Upstream `Target.URL()`: scheme, address and path from the labels; the job's
/// params with `__param_<name>` labels replacing the first value of `<name>`;
/// query keys sorted (Go's `url.Values.Encode`).
pub fn target_url(labels: &Labels, job_params: &BTreeMap<String, Vec<String>>) -> String {
    let mut params = job_params.clone();
    for l in labels.iter() {
        if let Some(k) = l.name.strip_prefix(PARAM_LABEL_PREFIX) {
            let e = params.entry(k.to_string()).or_default();
            match e.first_mut() {
                Some(first) => *first = l.value.to_string(),
                None => e.push(l.value.to_string()),
            }
        }
    }
    let scheme = labels.get(SCHEME_LABEL).unwrap_or("http");
    let host = labels.get(ADDRESS_LABEL).unwrap_or("");
    let path = labels.get(METRICS_PATH_LABEL).unwrap_or("");
    let mut url = format!("{scheme}://{host}");
    if !path.is_empty() && !path.starts_with('/') {
        url.push('/');
    }
    url.push_str(&escape_path(path));
    let mut first = true;
    for (k, vs) in &params {
        for v in vs {
            url.push(if first { '?' } else { '&' });
            first = false;
            url.push_str(&super::form_encode(k));
            url.push('=');
            url.push_str(&super::form_encode(v));
        }
    }
    url
}

/// Go's `url.PathEscape` rules for a path (`/` kept).
fn escape_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'$'
            | b'&'
            | b'+'
            | b','
            | b'/'
            | b':'
            | b';'
            | b'='
            | b'@' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ScrapeConfig, SecretSource};

    fn job(yaml: &str) -> ScrapeJob {
        ScrapeConfig::parse(yaml, &SecretSource::File)
            .unwrap()
            .jobs
            .remove(0)
    }

    #[test]
    fn defaults_and_reserved_labels() {
        let j = job("scrape_configs:\n  - job_name: node\n    scrape_interval: 15s\n    params:\n      collect[]: [cpu, meminfo]\n    static_configs:\n      - targets: ['h:9100']\n        labels: {__tmp_x: y, env: prod}\n");
        let t = &j.targets[0];
        assert_eq!(
            t.labels,
            Labels::from_pairs([("env", "prod"), ("instance", "h:9100"), ("job", "node")])
        );
        assert_eq!(
            t.discovered_labels,
            Labels::from_pairs([
                ("__address__", "h:9100"),
                ("__metrics_path__", "/metrics"),
                ("__param_collect[]", "cpu"),
                ("__scheme__", "http"),
                ("__scrape_interval__", "15s"),
                ("__scrape_timeout__", "10s"),
                ("__tmp_x", "y"),
                ("env", "prod"),
                ("job", "node"),
            ])
        );
        assert_eq!(
            t.url,
            "http://h:9100/metrics?collect%5B%5D=cpu&collect%5B%5D=meminfo"
        );
        assert_eq!(t.interval, Duration::from_secs(15));
    }

    #[test]
    fn relabeling_rewrites_address_scheme_path_params_and_drops_targets() {
        let j = job(r#"
scrape_configs:
  - job_name: probe
    metrics_path: /probe
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: 127.0.0.1:9115
      - source_labels: [__meta_skip]
        regex: 'yes'
        action: drop
      - source_labels: [__scrape_interval__]
        regex: .*
        target_label: __scrape_interval__
        replacement: 30s
      - target_label: __scheme__
        replacement: https
    static_configs:
      - targets: ['example.org', 'x.org']
      - targets: ['skipped.org']
        labels: {__meta_skip: 'yes'}
"#);
        assert_eq!(j.targets.len(), 2);
        let t = &j.targets[0];
        assert_eq!(t.url, "https://127.0.0.1:9115/probe?target=example.org");
        assert_eq!(
            t.labels,
            Labels::from_pairs([("instance", "example.org"), ("job", "probe")])
        );
        assert_eq!(t.interval, Duration::from_secs(30));
        assert_eq!(j.dropped.len(), 1);
        assert_eq!(
            j.dropped[0].discovered_labels.get("__address__"),
            Some("skipped.org")
        );
        // __meta_ labels are removed after relabeling, instance kept as set.
        assert!(t.internal_labels.get("__meta_skip").is_none());
    }

    #[test]
    fn target_errors_are_reported() {
        let err = ScrapeConfig::parse(
            "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - target_label: __address__\n        replacement: ''\n    static_configs:\n      - targets: ['h:1']\n",
            &SecretSource::File,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("no address") && err.contains("\"a\""), "{err}");
        let err = ScrapeConfig::parse(
            "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: ['http://h:1']\n",
            &SecretSource::File,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("is not a valid hostname"), "{err}");
        let err = ScrapeConfig::parse(
            "scrape_configs:\n  - job_name: a\n    scrape_interval: 10s\n    relabel_configs:\n      - target_label: __scrape_timeout__\n        replacement: 1m\n    static_configs:\n      - targets: ['h:1']\n",
            &SecretSource::File,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "scrape timeout cannot be greater than scrape interval (\"1m\" > \"10s\")"
            ),
            "{err}"
        );
    }

    #[test]
    fn file_sd_names() {
        assert!(is_valid_file_sd_name("targets/*.json"));
        assert!(is_valid_file_sd_name("a.yml"));
        assert!(!is_valid_file_sd_name("a.txt"));
        assert!(!is_valid_file_sd_name("*/a.json"));
    }
}
