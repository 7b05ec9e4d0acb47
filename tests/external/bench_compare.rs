//! The side-by-side benchmark (`bench/compare`) runs end to end in its `--quick`
//! size and reports every figure for every system, each within sane bounds. The
//! figures' values are not checked: they depend on the machine; only their
//! presence and plausibility are (issue 7).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

const SYSTEMS: [&str; 3] = ["prometheus", "victoriametrics", "arrowmon"];
const MIB: f64 = 1024.0 * 1024.0;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn num(v: &Value, path: &str) -> f64 {
    let mut cur = v;
    for k in path.split('.') {
        cur = &cur[k];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path}: expected a number, got {cur}"))
}

fn within(what: &str, v: f64, lo: f64, hi: f64) {
    assert!(
        v.is_finite() && v >= lo && v <= hi,
        "{what} = {v}, expected within [{lo}, {hi}]"
    );
}

/// Every query of every window: latencies present and ordered, no error, data found.
fn check_queries(what: &str, q: &Value, windows: usize, per_window: usize) {
    let q = q
        .as_object()
        .unwrap_or_else(|| panic!("{what}: no queries"));
    assert_eq!(q.len(), windows, "{what}: windows {:?}", q.keys());
    for (w, queries) in q {
        let queries = queries.as_object().unwrap();
        assert_eq!(
            queries.len(),
            per_window,
            "{what} {w}: {:?}",
            queries.keys()
        );
        for (name, r) in queries {
            let at = format!("{what} {w} {name}");
            assert!(r["error"].is_null(), "{at}: {}", r["error"]);
            let p50 = num(r, "p50_s");
            let p90 = num(r, "p90_s");
            within(&format!("{at} p50_s"), p50, 1e-6, 120.0);
            assert!(p90 >= p50, "{at}: p90 {p90} < p50 {p50}");
            assert!(num(r, "n") >= 1.0, "{at}: no runs");
            assert!(
                num(r, "series") >= 1.0,
                "{at}: empty result for {}",
                r["expr"]
            );
        }
    }
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        // A zombie waiting for init to reap it has stopped.
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn mem_total() -> f64 {
    let s = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024.0
}

#[test]
fn bench_compare_quick_reports_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results.json");
    let started = Instant::now();
    let run = Command::new(repo().join("bench/compare"))
        .args(["--quick", "--out"])
        .arg(&out)
        .env("ARROWMON_BIN", env!("CARGO_BIN_EXE_gpx_arrowmon"))
        .current_dir(repo())
        .output()
        .expect("run bench/compare");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "bench/compare --quick failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        run.status
    );
    eprintln!("bench/compare --quick took {took:?}\n{stdout}");
    assert!(
        took < Duration::from_secs(180),
        "--quick must finish within 3 minutes, took {took:?}"
    );
    check_results(&out, &stdout);
}

fn check_results(out: &Path, stdout: &str) {
    let r: Value = serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap();
    let mem = mem_total();

    // The table: one column per system and the two ratios.
    let header = stdout
        .lines()
        .find(|l| l.starts_with("| figure"))
        .expect("table header on stdout");
    for col in [
        "Prometheus",
        "VictoriaMetrics",
        "arrowmon",
        "arrowmon/Prom",
        "arrowmon/VM",
    ] {
        assert!(header.contains(col), "table header lacks {col}: {header}");
    }

    let expected_rate = num(&r, "workload.expected_samples_per_s");
    let expected_series = num(&r, "workload.expected_samples_per_scrape_round");
    let synthetic = num(&r, "workload.synthetic_series");
    let interval = num(&r, "params.interval_s");
    // The workload itself: the synthetic series plus node_exporter and two mysqld_exporters.
    within("synthetic series", synthetic, 19_000.0, 21_000.0);
    within(
        "expected samples/s",
        expected_rate,
        synthetic / interval,
        2.0 * synthetic / interval,
    );
    let not_available = &r["not_available"];
    let caps = &r["arrowmon_capabilities"];

    for sys in SYSTEMS {
        let s = &r["systems"][sys];
        let at = |f: &str| format!("{sys}.{f}");
        within(
            &at("active_series"),
            num(s, "active_series"),
            0.75 * expected_series,
            1.25 * expected_series,
        );
        within(
            &at("samples_ingested_per_s"),
            num(s, "samples_ingested_per_s"),
            0.75 * expected_rate,
            1.25 * expected_rate,
        );
        within(
            &at("cpu_s_per_1m_samples"),
            num(s, "cpu_s_per_1m_samples"),
            1e-3,
            1e4,
        );
        within(&at("rss_bytes"), num(s, "rss_bytes"), 10.0 * MIB, mem);
        within(
            &at("rss_bytes_per_active_series"),
            num(s, "rss_bytes_per_active_series"),
            1.0,
            mem / expected_series,
        );
        within(
            &at("measure_window_s"),
            num(s, "measure_window_s"),
            0.9 * num(&r, "params.duration_s"),
            1e4,
        );
        // Bytes on disk per sample: a figure, unless the build keeps nothing on disk.
        if sys == "arrowmon" && s["disk_bytes_per_sample"].is_null() {
            assert!(
                not_available["arrowmon.disk_bytes_per_sample"].is_string(),
                "arrowmon disk figure missing without a reason"
            );
            assert!(num(s, "disk_bytes") < 64.0 * 1024.0, "{s}");
        } else {
            within(
                &at("disk_bytes_per_sample"),
                num(s, "disk_bytes_per_sample"),
                0.05,
                50.0,
            );
        }
        check_queries(&at("queries_live"), &s["queries_live"], 2, 10);

        // Phase 2: imported history. arrowmon may lack `import` (then it says so).
        let h = &s["history"];
        if sys == "arrowmon" && h.is_null() {
            assert_eq!(
                caps["import"], false,
                "arrowmon can import but has no history figures"
            );
            assert!(not_available["arrowmon.history"].is_string());
            continue;
        }
        within(&at("history.import_s"), num(h, "import_s"), 1e-3, 600.0);
        within(
            &at("history.import_cpu_s"),
            num(h, "import_cpu_s"),
            0.0,
            600.0,
        );
        within(
            &at("history.disk_bytes_per_sample"),
            num(h, "disk_bytes_per_sample"),
            0.05,
            50.0,
        );
        check_queries(&at("history.queries"), &h["queries"], 3, 7);
    }

    // Ratios for every headline figure that arrowmon has.
    for fig in [
        "cpu_s_per_1m_samples",
        "rss_bytes_per_active_series",
        "samples_ingested_per_s",
    ] {
        for peer in ["arrowmon/prometheus", "arrowmon/victoriametrics"] {
            within(
                &format!("ratio {fig} {peer}"),
                num(&r["ratios"][fig], peer),
                1e-4,
                1e4,
            );
        }
    }

    // Everything it started is stopped.
    for sys in SYSTEMS {
        let pid = r["systems"][sys]["pid"].as_u64().unwrap();
        assert!(
            !alive(pid),
            "{sys} (pid {pid}) still runs after bench/compare exited"
        );
    }
    let pid = r["workload"]["synthetic_exporter_pid"].as_u64().unwrap();
    assert!(!alive(pid), "synthetic exporter (pid {pid}) still runs");
}
