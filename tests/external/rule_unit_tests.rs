//! Rule unit-test files run by the real `promtool test rules` (Debian's 2.42)
//! and by `gpx_arrowmon test-rules`. The files in `tests/data/rule-tests/` must
//! pass under both, or (`fail_*.yml`) fail under both, and both must print the
//! same: the same `Unit Testing:` lines and the same failures, word for word.
//! The unit tests of the shipped rules (`rules/`) are compared the same way.
//! Files in `arrowmon-only/` use what 2.42 does not know; the places where
//! arrowmon differs from 2.42 on purpose are pinned below.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::binary;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rule-tests")
}

/// Runs a test file, named relative to `dir` and run from there, as promtool
/// prints the name it was given.
fn promtool(dir: &Path, file: &str) -> Output {
    Command::new("promtool")
        .args(["test", "rules", file])
        .current_dir(dir)
        .output()
        .expect("promtool runs (scripts/install-deps.sh installs it)")
}

fn arrowmon(dir: &Path, file: &str) -> Output {
    Command::new(binary())
        .args(["test-rules", file])
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The unit-test files of a folder (every YAML file with `tests:`), sorted.
fn test_files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yml"))
        .filter(|n| {
            std::fs::read_to_string(dir.join(n))
                .unwrap()
                .lines()
                .any(|l| l.starts_with("tests:"))
        })
        .collect();
    out.sort();
    out
}

/// Runs a test file under both; None when they agree, else both outputs.
fn disagreement(dir: &Path, file: &str, expect_pass: bool) -> Option<String> {
    let p = promtool(dir, file);
    let a = arrowmon(dir, file);
    // The file itself must be right about promtool, the reference.
    assert_eq!(
        p.status.success(),
        expect_pass,
        "promtool on {file}:\n{}{}",
        text(&p.stdout),
        text(&p.stderr)
    );
    if a.status.code() == p.status.code() && a.stdout == p.stdout && a.stderr == p.stderr {
        return None;
    }
    Some(format!(
        "{file}: promtool exit {:?}, arrowmon exit {:?}\n--- promtool stdout\n{}--- arrowmon stdout\n{}--- promtool stderr\n{}--- arrowmon stderr\n{}",
        p.status.code(),
        a.status.code(),
        text(&p.stdout),
        text(&a.stdout),
        text(&p.stderr),
        text(&a.stderr)
    ))
}

#[test]
fn promtool_and_arrowmon_agree_on_every_test_file() {
    let dir = data_dir();
    let files = test_files(&dir);
    assert!(
        files.len() >= 7,
        "test files in {}: {files:?}",
        dir.display()
    );
    let mismatches: Vec<String> = files
        .iter()
        .filter_map(|f| disagreement(&dir, f, !f.starts_with("fail_")))
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}

/// The unit tests of the shipped rules (`rules/`) give the same output too.
#[test]
fn shipped_rules_tests_agree() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    if let Some(m) = disagreement(&dir, "arrowmon.rules.test.yml", true) {
        panic!("{m}");
    }
}

/// All files in one run: each gets its block, and one failure fails the run.
#[test]
fn several_files_in_one_run() {
    let dir = data_dir();
    let args = ["limit.yml", "fail_limit.yml", "recording.yml"];
    let p = Command::new("promtool")
        .args(["test", "rules"])
        .args(args)
        .current_dir(&dir)
        .output()
        .unwrap();
    let a = Command::new(binary())
        .arg("test-rules")
        .args(args)
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(p.status.code(), Some(1));
    assert_eq!(a.status.code(), Some(1));
    assert_eq!(text(&a.stdout), text(&p.stdout));
    assert_eq!(text(&a.stderr), text(&p.stderr));
}

/// Files using what Prometheus added after 2.42 pass under arrowmon; promtool
/// 2.42 refuses them.
#[test]
fn arrowmon_only_files() {
    let dir = data_dir().join("arrowmon-only");
    let files = test_files(&dir);
    assert!(!files.is_empty());
    for f in &files {
        let a = arrowmon(&dir, f);
        assert!(
            a.status.success(),
            "{f}:\n{}{}",
            text(&a.stdout),
            text(&a.stderr)
        );
        let p = promtool(&dir, f);
        assert!(!p.status.success(), "promtool 2.42 now accepts {f}");
    }
    let p = promtool(&dir, "query_offset.yml");
    assert!(
        text(&p.stderr).contains("field query_offset not found"),
        "{}",
        text(&p.stderr)
    );
}

/// Where arrowmon differs from promtool 2.42 on purpose: each difference is
/// pinned so that a change on either side shows up here.
#[test]
fn known_differences_from_promtool_2_42() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |name: &str, yaml: &str| {
        std::fs::write(d.join(name), yaml).unwrap();
        (promtool(d, name), arrowmon(d, name))
    };

    // A test without `interval`: 2.42 loads every value at time 0 (the first
    // one stays); current promtool and arrowmon space them by
    // `evaluation_interval`.
    let (p, a) = run(
        "no_interval.yml",
        "rule_files: []\ntests:\n  - input_series:\n      - series: x\n        values: 1 2 3\n    promql_expr_test:\n      - expr: x\n        eval_time: 2m\n        exp_samples:\n          - labels: x\n            value: 3\n",
    );
    assert!(
        text(&p.stderr).contains("got: {__name__=\"x\"} 1E+00"),
        "{}",
        text(&p.stderr)
    );
    assert!(a.status.success(), "{}", text(&a.stderr));

    // Prometheus 3's range selectors leave out the sample at the range's
    // start: with samples 1m apart, `[1m]` holds one sample and `rate` has
    // nothing, where 2.42 had two.
    let (p, a) = run(
        "left_open_range.yml",
        "rule_files: []\ntests:\n  - interval: 1m\n    input_series:\n      - series: c\n        values: 0+60x5\n    promql_expr_test:\n      - expr: rate(c[1m])\n        eval_time: 3m\n        exp_samples:\n          - labels: '{}'\n            value: 1\n",
    );
    assert!(p.status.success(), "{}", text(&p.stderr));
    assert!(text(&a.stderr).contains("got: nil"), "{}", text(&a.stderr));

    // A bad duration is listed among the YAML errors with its line; yaml.v2
    // stops at it and prints it alone.
    let (p, a) = run(
        "bad_duration.yml",
        "rule_files: []\nevaluation_interval: soon\ntests: []\n",
    );
    assert_eq!(
        text(&p.stderr),
        "  FAILED:\nnot a valid duration string: \"soon\"\n"
    );
    assert_eq!(
        text(&a.stderr),
        "  FAILED:\nyaml: unmarshal errors:\n  line 2: not a valid duration string: \"soon\"\n"
    );

    // A malformed input series: arrowmon names its line in the test file;
    // promtool passes the error of its load command on, positioned in that
    // command.
    let (p, a) = run(
        "bad_series.yml",
        "rule_files: []\ntests:\n  - interval: 1m\n    input_series:\n      - series: 'x{a=\"b\"'\n        values: 1\n",
    );
    assert!(
        text(&p.stderr).contains("parse error"),
        "{}",
        text(&p.stderr)
    );
    assert!(
        text(&a.stderr).contains("line 5: input series \"x{a=\\\"b\\\"\""),
        "{}",
        text(&a.stderr)
    );

    // `fuzzy_compare` (Prometheus 3.5 and later) is known to arrowmon only.
    let (p, a) = run(
        "fuzzy.yml",
        "rule_files: []\nfuzzy_compare: true\ntests:\n  - promql_expr_test:\n      - expr: vector(0.1 + 0.2)\n        exp_samples:\n          - labels: '{}'\n            value: 0.3\n",
    );
    assert!(text(&p.stderr).contains("field fuzzy_compare not found"));
    assert!(a.status.success(), "{}", text(&a.stderr));
}
