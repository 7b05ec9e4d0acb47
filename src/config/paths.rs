//! Where the plugin keeps its data and finds Grafana's provisioning files.
//!
//! Grafana passes `[plugin.arrowmon-metrics-datasource]` settings of grafana.ini to
//! the plugin as `GF_PLUGIN_<KEY>` variables, and the plugin inherits Grafana's own
//! environment (`GF_PATHS_*`, set in Grafana's Docker image). The order is: the
//! plugin section, then Grafana's paths, then the Debian/RPM package defaults.

use super::StoreSettings;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginFolders {
    /// Root of all tenants' data.
    pub data_dir: PathBuf,
    /// Grafana's provisioning folder (holding `datasources/`).
    pub provisioning_dir: PathBuf,
}

pub const PACKAGE_DATA_DIR: &str = "/var/lib/grafana";
pub const PACKAGE_PROVISIONING_DIR: &str = "/etc/grafana/provisioning";

impl PluginFolders {
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> PluginFolders {
        let set = |k: &str| get(k).filter(|v| !v.is_empty());
        let data_dir = match set("GF_PLUGIN_DATA_DIR") {
            Some(d) => PathBuf::from(d),
            // Inside Grafana's own data folder, our files get a folder of their own.
            None => PathBuf::from(set("GF_PATHS_DATA").unwrap_or_else(|| PACKAGE_DATA_DIR.into()))
                .join("arrowmon"),
        };
        let provisioning_dir = PathBuf::from(
            set("GF_PLUGIN_PROVISIONING_DIR")
                .or_else(|| set("GF_PATHS_PROVISIONING"))
                .unwrap_or_else(|| PACKAGE_PROVISIONING_DIR.into()),
        );
        PluginFolders {
            data_dir,
            provisioning_dir,
        }
    }

    /// Process-wide store settings from grafana.ini's plugin section:
    /// `wal_sync_interval` and `block_range` (`GF_PLUGIN_WAL_SYNC_INTERVAL`,
    /// `GF_PLUGIN_BLOCK_RANGE`), as durations.
    pub fn store_settings(get: impl Fn(&str) -> Option<String>) -> Result<StoreSettings, String> {
        let duration = |var: &str, name: &str| {
            get(var)
                .filter(|v| !v.is_empty())
                .map(|v| super::parse_duration(&v).map_err(|e| format!("{name}: {e}")))
                .transpose()
        };
        Ok(StoreSettings {
            wal_sync_interval: duration("GF_PLUGIN_WAL_SYNC_INTERVAL", "wal_sync_interval")?,
            block_range: duration("GF_PLUGIN_BLOCK_RANGE", "block_range")?,
            ..StoreSettings::default()
        })
    }

    pub fn from_process_env() -> PluginFolders {
        PluginFolders::from_env(|k| std::env::var(k).ok())
    }
}

/// The files a pattern names now, sorted: the last path element may hold `*`
/// and `?` (file_sd files and rule files are matched so). A pattern without
/// them names the file if it exists.
pub fn expand_glob(pattern: &Path) -> Vec<PathBuf> {
    let Some(name) = pattern.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    if !name.contains(['*', '?']) {
        return if pattern.is_file() {
            vec![pattern.to_path_buf()]
        } else {
            Vec::new()
        };
    }
    let dir = match pattern.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| wildcard_match(name.as_bytes(), n.as_bytes()))
        })
        .map(|e| dir.join(e.file_name()))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// `*` and `?` matching over a single path element.
pub fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn folders(vars: &[(&str, &str)]) -> PluginFolders {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PluginFolders::from_env(|k| env.get(k).cloned())
    }

    #[test]
    fn plugin_section_wins_over_grafana_paths() {
        let f = folders(&[
            ("GF_PLUGIN_DATA_DIR", "/srv/am"),
            ("GF_PLUGIN_PROVISIONING_DIR", "/srv/prov"),
            ("GF_PATHS_DATA", "/var/lib/g"),
            ("GF_PATHS_PROVISIONING", "/etc/g/prov"),
        ]);
        assert_eq!(f.data_dir, PathBuf::from("/srv/am"));
        assert_eq!(f.provisioning_dir, PathBuf::from("/srv/prov"));
    }

    #[test]
    fn grafana_paths_then_package_defaults() {
        let f = folders(&[
            ("GF_PATHS_DATA", "/var/lib/g"),
            ("GF_PATHS_PROVISIONING", "/etc/g/prov"),
        ]);
        assert_eq!(f.data_dir, PathBuf::from("/var/lib/g/arrowmon"));
        assert_eq!(f.provisioning_dir, PathBuf::from("/etc/g/prov"));
        let f = folders(&[("GF_PATHS_DATA", "")]);
        assert_eq!(f.data_dir, PathBuf::from("/var/lib/grafana/arrowmon"));
        assert_eq!(
            f.provisioning_dir,
            PathBuf::from("/etc/grafana/provisioning")
        );
    }
}
