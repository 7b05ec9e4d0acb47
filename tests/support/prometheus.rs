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
