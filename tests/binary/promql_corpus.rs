//! Prometheus's own PromQL test scripts (../shared/promql-testdata), run through
//! `gpx_arrowmon promql-test` against the checked-in known differences.

use std::path::PathBuf;
use std::process::Command;

use crate::support::shared_reference;

#[test]
fn prometheus_promql_test_corpus() {
    // Prometheus's PromQL test scripts.
    let dir = shared_reference("PROMQL_TESTDATA", "promql-testdata", "functions.test");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "corpus has {} files", files.len());
    let out = Command::new(env!("CARGO_BIN_EXE_gpx_arrowmon"))
        .arg("promql-test")
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "promql-test failed:\n{stderr}\n{stdout}"
    );
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let re = regex::Regex::new(r"^(\d+) passed, (\d+) failed$").unwrap();
    let caps = re
        .captures(last)
        .unwrap_or_else(|| panic!("last line {last:?} is not `N passed, N failed`"));
    let passed: usize = caps[1].parse().unwrap();
    // The plain float PromQL of the corpus (about 900 cases) must pass at least.
    assert!(passed >= 1100, "only {passed} cases passed");
}
