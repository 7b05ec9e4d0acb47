//! A real `prometheus` (the Debian package, 2.42) for differential tests.

use std::path::Path;
use std::process::{Command, Stdio};

use super::ChildGuard;

/// Starts `prometheus` with `config`, its TSDB in `data`, listening on `listen`,
/// its log in `log`, and `extra` flags (e.g. `--enable-feature=exemplar-storage`).
/// Stopped when the guard drops. The caller waits for it to be ready.
pub fn start_prometheus(
    config: &Path,
    data: &Path,
    listen: &str,
    log: &Path,
    extra: &[&str],
) -> ChildGuard {
    let log = std::fs::File::create(log).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address={listen}"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus (run scripts/install-deps.sh)");
    ChildGuard::new("prometheus", child)
}

/// A real `prometheus` and `gpx_arrowmon serve` started on the same config, each
/// with its own data folder and log under `dir`, on free loopback ports: the two
/// sides of a differential test. Both stop when this drops; the caller waits for
/// them to be ready.
pub struct SideBySide {
    _prometheus: ChildGuard,
    _arrowmon: ChildGuard,
    /// `http://host:port` of Prometheus.
    pub prometheus: String,
    /// `http://host:port` of arrowmon.
    pub arrowmon: String,
    /// arrowmon's `host:port`, as a scrape target.
    pub arrowmon_addr: String,
}

impl SideBySide {
    /// `prometheus_flags`: extra flags for Prometheus only.
    pub fn start(dir: &Path, config: &Path, prometheus_flags: &[&str]) -> SideBySide {
        let prometheus_addr = format!("127.0.0.1:{}", super::free_port());
        let arrowmon_addr = format!("127.0.0.1:{}", super::free_port());
        let prometheus = start_prometheus(
            config,
            &dir.join("prometheus-data"),
            &prometheus_addr,
            &dir.join("prometheus.log"),
            prometheus_flags,
        );
        let arrowmon = super::spawn_serve(config, &dir.join("arrowmon-data"), &arrowmon_addr);
        SideBySide {
            _prometheus: prometheus,
            _arrowmon: arrowmon,
            prometheus: format!("http://{prometheus_addr}"),
            arrowmon: format!("http://{arrowmon_addr}"),
            arrowmon_addr,
        }
    }
}
