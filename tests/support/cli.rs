//! The built binary's own subcommands, as the tests run them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::ChildGuard;

/// The plugin binary cargo built for this test run.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gpx_arrowmon"))
}

/// `gpx_arrowmon serve --config CONFIG --data-dir DATA --listen ADDR` with its output
/// discarded; callers add arguments or redirect the output before spawning.
pub fn serve_command(config: &Path, data_dir: &Path, listen: &str) -> Command {
    let mut cmd = Command::new(binary());
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", listen])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// [`serve_command`] started, and stopped when the guard drops.
pub fn spawn_serve(config: &Path, data_dir: &Path, listen: &str) -> ChildGuard {
    ChildGuard::spawn(
        "gpx_arrowmon serve",
        &mut serve_command(config, data_dir, listen),
    )
}

/// `gpx_arrowmon check-config CONFIG`, run to completion.
pub fn check_config(config: &Path) -> Output {
    Command::new(binary())
        .arg("check-config")
        .arg(config)
        .output()
        .expect("run gpx_arrowmon check-config")
}
