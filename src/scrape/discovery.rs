//! `file_sd_configs`: target groups read from JSON or YAML files, re-read when a
//! file changes (polled by modification time and size, about every second) and at
//! least every `refresh_interval`, as Prometheus's file discovery does with
//! inotify plus its refresh timer. Each group carries `__meta_filepath`. A file
//! that cannot be read or parsed keeps the groups it last had (upstream keeps them
//! too) and its error is reported.
//!
//! Patterns: the last path element may hold `*` (any run of characters) and `?`
//! (one character); `[...]` classes are not supported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use crate::config::paths::expand_glob;
use crate::config::{FileSdConfig, TargetGroup};

pub const META_FILEPATH: &str = "__meta_filepath";

/// How often files are checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Default)]
struct FileState {
    stamp: Option<(SystemTime, u64)>,
    groups: Vec<TargetGroup>,
    error: Option<String>,
}

/// The file discovery of one job.
pub struct FileDiscovery {
    configs: Vec<FileSdConfig>,
    files: BTreeMap<PathBuf, FileState>,
    last_refresh: Option<Instant>,
}

impl FileDiscovery {
    pub fn new(configs: &[FileSdConfig]) -> FileDiscovery {
        FileDiscovery {
            configs: configs.to_vec(),
            files: BTreeMap::new(),
            last_refresh: None,
        }
    }

    fn refresh_interval(&self) -> Duration {
        self.configs
            .iter()
            .map(|c| c.refresh_interval)
            .min()
            .unwrap_or(crate::config::targets::DEFAULT_FILE_SD_REFRESH)
    }

    /// Looks at the files; true when the groups changed since the last call (the
    /// first call always returns true).
    pub fn poll(&mut self, now: Instant) -> bool {
        let first = self.last_refresh.is_none();
        let full = match self.last_refresh {
            None => true,
            Some(t) => now.duration_since(t) >= self.refresh_interval(),
        };
        if full {
            self.last_refresh = Some(now);
        }
        let mut paths = BTreeSet::new();
        for c in &self.configs {
            for pattern in &c.files {
                paths.extend(expand_glob(pattern));
            }
        }
        let mut changed = first;
        let before = self.files.len();
        self.files.retain(|p, _| paths.contains(p));
        changed |= self.files.len() != before;
        for path in paths {
            let stamp = std::fs::metadata(&path)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
            let state = self.files.entry(path.clone()).or_default();
            if !full && state.stamp.is_some() && state.stamp == stamp {
                continue;
            }
            state.stamp = stamp;
            match read_file(&path) {
                Ok(groups) => {
                    state.error = None;
                    if groups != state.groups {
                        state.groups = groups;
                        changed = true;
                    }
                }
                Err(e) => {
                    if state.error.as_ref() != Some(&e) {
                        tracing::warn!(file = %path.display(), error = %e, "file_sd: cannot read targets");
                    }
                    state.error = Some(e);
                }
            }
        }
        changed
    }

    /// All groups of all files, in path order.
    pub fn groups(&self) -> Vec<TargetGroup> {
        self.files
            .values()
            .flat_map(|f| f.groups.iter().cloned())
            .collect()
    }

    /// Why files could not be read (their last good groups stay in force).
    pub fn errors(&self) -> Vec<String> {
        self.files
            .values()
            .filter_map(|f| f.error.clone())
            .collect()
    }
}

/// Reads every file of `configs` once (for `check-config`).
pub fn read_once(configs: &[FileSdConfig]) -> (Vec<TargetGroup>, Vec<String>) {
    let mut d = FileDiscovery::new(configs);
    d.poll(Instant::now());
    (d.groups(), d.errors())
}

/// Reads one file: a list of `{targets: [...], labels: {...}}`, JSON when the name
/// ends in `.json`, YAML otherwise.
pub fn read_file(path: &Path) -> Result<Vec<TargetGroup>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let is_json = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let raw: Vec<RawGroup> = if is_json {
        serde_json::from_slice(&data).map_err(|e| format!("{}: {e}", path.display()))?
    } else if data.iter().all(|b| b.is_ascii_whitespace()) {
        Vec::new()
    } else {
        serde_norway::from_slice(&data).map_err(|e| format!("{}: {e}", path.display()))?
    };
    let file = path.display().to_string();
    Ok(raw
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            let mut labels = g.labels;
            labels.insert(META_FILEPATH.to_string(), file.clone());
            TargetGroup {
                targets: g.targets,
                labels,
                source: format!("{file}:{i}"),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::paths::wildcard_match;

    #[test]
    fn wildcards() {
        assert!(wildcard_match(b"*.json", b"a.json"));
        assert!(wildcard_match(b"t_*.json", b"t_.json"));
        assert!(!wildcard_match(b"t_*.json", b"x_a.json"));
        assert!(wildcard_match(b"a?c.yml", b"abc.yml"));
        assert!(!wildcard_match(b"*.json", b"a.yml"));
        assert!(wildcard_match(b"*a*b", b"xxaxxb"));
    }

    #[test]
    fn reads_json_and_yaml_and_notices_changes() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("a.json");
        let y = dir.path().join("b.yml");
        std::fs::write(&j, r#"[{"targets": ["h1:1"], "labels": {"env": "x"}}]"#).unwrap();
        std::fs::write(&y, "- targets: ['h2:2', 'h3:3']\n").unwrap();
        std::fs::write(dir.path().join("c.txt"), "ignored").unwrap();
        let mut d = FileDiscovery::new(&[FileSdConfig {
            files: vec![dir.path().join("*.json"), dir.path().join("*.yml")],
            refresh_interval: Duration::from_secs(300),
        }]);
        let t0 = Instant::now();
        assert!(d.poll(t0));
        let g = d.groups();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].targets, vec!["h1:1"]);
        assert_eq!(g[0].labels["env"], "x");
        assert_eq!(g[0].labels[META_FILEPATH], j.display().to_string());
        assert_eq!(g[1].targets.len(), 2);
        assert!(!d.poll(t0), "nothing changed");

        // A broken file keeps its last groups and reports why.
        std::fs::write(&j, "[{\"targets\": [").unwrap();
        assert!(!d.poll(t0));
        assert_eq!(d.groups().len(), 2);
        assert!(d.errors()[0].contains("a.json"), "{:?}", d.errors());

        std::fs::write(&j, r#"[{"targets": ["h9:9"]}]"#).unwrap();
        assert!(d.poll(t0));
        assert_eq!(d.groups()[0].targets, vec!["h9:9"]);
        assert!(d.errors().is_empty());

        std::fs::remove_file(&y).unwrap();
        assert!(d.poll(t0));
        assert_eq!(d.groups().len(), 1);
    }
}
