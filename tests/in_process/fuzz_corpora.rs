//! Replays every committed fuzz input (fuzz/corpus/<target>/ and the inputs that
//! once crashed, fuzz/regressions/<target>/) through the fuzz targets' bodies, so
//! the normal suite keeps every bug the fuzzer found fixed. The coverage-guided
//! runs themselves are `scripts/fuzz.sh`.

use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/targets.rs"]
mod targets;

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for kind in ["corpus", "regressions"] {
        let dir = root.join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// The stack libFuzzer's inputs run on (the main thread's 8 MiB). The corpora hold
/// regexes nested up to the regex crate's limit (250), whose compiler recurses a few
/// frames a level: under 300 KiB optimised, but more than a test thread's 2 MiB in
/// an unoptimised `cargo test`.
const FUZZ_STACK_BYTES: usize = 8 << 20;

fn replay(target: &str, body: fn(&[u8])) {
    let files = inputs(target);
    assert!(
        !files.is_empty(),
        "fuzz/corpus/{target} holds no inputs: the fuzz target would be untested"
    );
    let target = target.to_string();
    std::thread::Builder::new()
        .stack_size(FUZZ_STACK_BYTES)
        .spawn(move || {
            for f in &files {
                let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                let outcome = std::panic::catch_unwind(|| body(&data));
                assert!(outcome.is_ok(), "{} fails target {target}", f.display());
            }
        })
        .expect("start the replay thread")
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
}

macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name), targets::$name);
            }
        )*
    };
}

replay_tests!(
    exposition_text,
    exposition_openmetrics,
    promql,
    scrape_config,
    rule_eval,
    rule_file,
    rule_test_file,
    datasource_settings,
    wal_replay,
    block_open,
    grafana_query,
    api_request,
    remote_write_body,
);
