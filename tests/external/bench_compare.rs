//! The side-by-side benchmark (`bench/compare`) runs end to end in its `--quick`
//! size and reports every figure for every system. arrowmon's figures are checked
//! against its two peers measured in the same run, so that the machine's speed
//! cancels out: equal workload and series counts, and each cost figure within a
//! bound that a real regression crosses (the measured ratios are in
//! docs/performance.md). arrowmon must import the history and keep its samples on
//! disk; a build that cannot is a failure, not a figure left out.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

const SYSTEMS: [&str; 3] = ["prometheus", "victoriametrics", "arrowmon"];
const PEERS: [&str; 2] = ["prometheus", "victoriametrics"];
const MIB: f64 = 1024.0 * 1024.0;

/// Bounds on arrowmon ÷ VictoriaMetrics (or ÷ the faster peer for queries) in the
/// same run. The suite runs the release build; an unoptimized build (a plain
/// `cargo test`) spends several times the CPU per sample and per query, so it gets
/// its own bounds. Each is about twice what was measured, so that a neighbour on
/// the shared machine stays inside and a real regression does not.
struct Bounds {
    /// CPU s per 1M samples. Measured 0.50–0.84 (release, --quick), 5.1 (debug).
    cpu_per_sample: f64,
    /// RSS per active series. Measured 0.31–0.35 (release), 0.50 (debug).
    rss_per_series: f64,
    /// Disk bytes per sample of the live run. Measured 0.91–1.75 (both builds).
    live_disk_per_sample: f64,
    /// Disk bytes per sample of the imported history. Measured 0.44.
    history_disk_per_sample: f64,
    /// History import wall time; plus one second, as VictoriaMetrics takes half a
    /// second. Measured 2.8 (release, default size), 4.5 (debug, --quick).
    import_time: f64,
    /// Each query's median over the faster peer's, plus `query_slack_s` for the
    /// millisecond panels that a busy neighbour stalls (at a load average of 10 a
    /// debug build's 3 ms panel once took 39 ms). Measured 0.12–0.84
    /// (release, default size); debug, --quick: up to 3.8 for light panels and 8.6
    /// for `rate` over all history series on a loaded machine.
    query_p50: f64,
    query_slack_s: f64,
    /// Geometric mean over all queries of arrowmon's median ÷ the faster peer's:
    /// a slowdown of every query that each single bound would let through.
    /// Measured 1.3–1.9 live, 1.8–3.5 history (debug, --quick).
    query_geomean: f64,
    /// Rule evaluation CPU per round over Prometheus's. Measured 0.29 (release,
    /// --quick).
    rule_cpu_per_round: f64,
    /// Remote write CPU per sample sent over Prometheus's (the target is 0.5).
    remote_write_cpu: f64,
    /// SQL collector CPU per collection over mysqld_exporter + scraping it (the
    /// target is 0.5). Measured 0.21 (release, --quick).
    sql_collector_cpu: f64,
}

const BOUNDS: Bounds = if cfg!(debug_assertions) {
    Bounds {
        cpu_per_sample: 12.0,
        rss_per_series: 1.0,
        live_disk_per_sample: 3.5,
        history_disk_per_sample: 1.0,
        import_time: 10.0,
        query_p50: 16.0,
        query_slack_s: 0.05,
        query_geomean: 7.0,
        rule_cpu_per_round: 6.0,
        remote_write_cpu: 8.0,
        sql_collector_cpu: 4.0,
    }
} else {
    Bounds {
        cpu_per_sample: 2.0,
        rss_per_series: 1.0,
        live_disk_per_sample: 3.5,
        history_disk_per_sample: 1.0,
        import_time: 6.0,
        query_p50: 4.0,
        query_slack_s: 0.02,
        query_geomean: 1.5,
        rule_cpu_per_round: 0.6,
        remote_write_cpu: 1.0,
        sql_collector_cpu: 0.6,
    }
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Collects every failed check, so that one run of the slow benchmark reports all.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.0.push(msg());
        }
    }

    fn num(&mut self, v: &Value, path: &str) -> f64 {
        let mut cur = v;
        for k in path.split('.') {
            cur = &cur[k];
        }
        match cur.as_f64() {
            Some(x) => x,
            None => {
                self.0.push(format!("{path}: expected a number, got {cur}"));
                f64::NAN
            }
        }
    }

    fn within(&mut self, what: &str, v: f64, lo: f64, hi: f64) {
        self.check(v.is_finite() && v >= lo && v <= hi, || {
            format!("{what} = {v}, expected within [{lo}, {hi}]")
        });
    }
}

/// `{window: {query: result}}` of one system and phase.
fn query_cells(q: &Value) -> Vec<(String, String, &Value)> {
    q.as_object()
        .into_iter()
        .flatten()
        .flat_map(|(w, qs)| {
            qs.as_object()
                .into_iter()
                .flatten()
                .map(move |(name, r)| (w.clone(), name.clone(), r))
        })
        .collect()
}

/// Every query of every window in every system: no error, runs, data; arrowmon's
/// series as many as Prometheus's (the same data in the history phase, the same
/// targets in the live one), and arrowmon's median within its bounds against the
/// faster peer.
fn check_queries(
    f: &mut Failures,
    phase: &str,
    per_system: [&Value; 3],
    windows: usize,
    per_window: usize,
) {
    let [prom, vm, am] = per_system;
    let mut log_ratios = Vec::new();
    for (sys, q) in SYSTEMS.iter().zip(per_system) {
        let cells = query_cells(q);
        f.check(cells.len() == windows * per_window, || {
            format!(
                "{sys} {phase}: {} query cells, expected {windows} windows × {per_window}",
                cells.len()
            )
        });
        for (w, name, r) in cells {
            let at = format!("{sys} {phase} {w} {name}");
            f.check(r["error"].is_null(), || format!("{at}: {}", r["error"]));
            let p50 = f.num(r, "p50_s");
            let p90 = f.num(r, "p90_s");
            f.within(&format!("{at} p50_s"), p50, 1e-6, 60.0);
            f.check(p90 >= p50, || format!("{at}: p90 {p90} < p50 {p50}"));
            let n = f.num(r, "n");
            f.check(n >= 1.0, || format!("{at}: no runs"));
            let series = f.num(r, "series");
            f.check(series >= 1.0, || {
                format!("{at}: empty result for {}", r["expr"])
            });
            // VictoriaMetrics has semantics of its own (its topk over a range keeps
            // different series); arrowmon has Prometheus's. Live, each system
            // scraped at its own instants, so which gauges are the top 5 at a step
            // differs between them, and topk is left out there.
            let comparable = *sys == "arrowmon" && !(phase == "live" && name == "topk_gauge");
            let want = prom[&w][&name]["series"].as_f64();
            f.check(!comparable || want == Some(series), || {
                format!(
                    "{at}: {series} series, Prometheus {want:?} for {}",
                    r["expr"]
                )
            });
        }
    }
    for (w, name, r) in query_cells(am) {
        let at = format!("arrowmon {phase} {w} {name}");
        let p50 = r["p50_s"].as_f64().unwrap_or(f64::NAN);
        let peer = [prom, vm]
            .iter()
            .filter_map(|q| q[&w][&name]["p50_s"].as_f64())
            .fold(f64::INFINITY, f64::min);
        let bound = BOUNDS.query_p50 * peer + BOUNDS.query_slack_s;
        f.check(p50 <= bound, || {
            format!(
                "{at}: median {:.1} ms, faster peer {:.1} ms, bound {:.1} ms",
                p50 * 1e3,
                peer * 1e3,
                bound * 1e3
            )
        });
        log_ratios.push((p50 / peer).ln());
    }
    let geomean = (log_ratios.iter().sum::<f64>() / log_ratios.len() as f64).exp();
    eprintln!("{phase}: arrowmon's query medians ÷ the faster peer's, geometric mean {geomean:.2}");
    f.within(
        &format!("{phase}: geometric mean of arrowmon ÷ faster peer query medians"),
        geomean,
        0.0,
        BOUNDS.query_geomean,
    );
}

/// The rule phase: Prometheus and arrowmon loaded every group of the shipped rules
/// and the synthetic ones, evaluated them without an error, agree on the alerts, and
/// arrowmon's CPU per round stays within its bound of Prometheus's.
fn check_rules(f: &mut Failures, r: &Value) {
    let shipped = std::fs::read_to_string(repo().join("rules/arrowmon.rules.yml")).unwrap();
    let shipped_groups = shipped
        .lines()
        .filter(|l| l.starts_with("  - name:"))
        .count();
    let mut alerts = Vec::new();
    for sys in ["prometheus", "arrowmon"] {
        let rules = &r["systems"][sys]["rules"];
        let at = |x: &str| format!("{sys}.rules.{x}");
        // Two synthetic groups beside the shipped ones.
        let groups = f.num(rules, "groups");
        f.within(
            &at("groups"),
            groups,
            (shipped_groups + 2) as f64,
            (shipped_groups + 2) as f64,
        );
        f.check(
            rules["rules_not_ok"]
                .as_array()
                .is_some_and(|a| a.is_empty()),
            || format!("{sys}: rules not ok: {}", rules["rules_not_ok"]),
        );
        // Every second for two windows of 15 s.
        let rounds = f.num(rules, "rounds");
        f.within(&at("rounds"), rounds, 5.0, 40.0);
        let cpu = f.num(rules, "cpu_s_per_round");
        f.within(&at("cpu_s_per_round"), cpu, 1e-4, 10.0);
        // 20k series: 8,400 gauges, of which about 1.7% are above 1000.
        alerts.push(f.num(rules, "active_alerts"));
    }
    for a in &alerts {
        f.within("active alerts", *a, 50.0, 400.0);
    }
    // Evaluated a few milliseconds apart, a gauge near the threshold can differ.
    f.within(
        "arrowmon/prometheus active alerts",
        alerts[1] / alerts[0],
        0.9,
        1.1,
    );
    let ratio = f.num(&r["systems"]["arrowmon"]["rules"], "cpu_s_per_round")
        / f.num(&r["systems"]["prometheus"]["rules"], "cpu_s_per_round");
    f.within(
        "arrowmon/prometheus rule CPU per round",
        ratio,
        0.0,
        BOUNDS.rule_cpu_per_round,
    );
}

/// The remote write phase: both senders sent, nothing failed, was dropped or is
/// missing at the receiver, and arrowmon's CPU per sample sent stays within its
/// bound of Prometheus's.
fn check_remote_write(f: &mut Failures, r: &Value) {
    for sys in ["prometheus", "arrowmon"] {
        let rw = &r["systems"][sys]["remote_write"];
        let at = |x: &str| format!("{sys}.remote_write.{x}");
        // 20k series and more at 5 s for two windows of 20 s and a warm-up.
        for (key, lo, hi) in [
            ("samples_sent", 100_000.0, 1e9),
            ("samples_failed", 0.0, 0.0),
            ("samples_dropped", 0.0, 0.0),
            ("missing_at_receiver", 0.0, 0.0),
            ("stored_in_windows", 100_000.0, 1e9),
            ("peak_rss_bytes", MIB, 64.0 * 1024.0 * MIB),
        ] {
            let v = f.num(rw, key);
            f.within(&at(key), v, lo, hi);
        }
    }
    let ratio = f.num(
        &r["systems"]["arrowmon"]["remote_write"],
        "cpu_s_per_1m_samples_sent",
    ) / f.num(
        &r["systems"]["prometheus"]["remote_write"],
        "cpu_s_per_1m_samples_sent",
    );
    // Each is a difference of two processes' CPU: noisy, and negative is possible
    // for a cheap sender on a busy machine; an expensive one is the regression.
    f.within(
        "arrowmon/prometheus remote write CPU per sample sent",
        ratio,
        -BOUNDS.remote_write_cpu,
        BOUNDS.remote_write_cpu,
    );
}

/// The SQL collector phase: both routes collected the same servers as often, gave
/// about the same number of mysql_* series, and the SQL collector's CPU per collection
/// stays within its bound of the exporter route's.
fn check_sql_collector(f: &mut Failures, r: &Value) {
    let sc = &r["sql_collector"];
    let (e, q) = (&sc["exporter_route"], &sc["sql_route"]);
    // Two servers every second for 30 s.
    for (route, v) in [("exporter_route", e), ("sql_route", q)] {
        let n = f.num(v, "collections");
        f.within(&format!("sql_collector.{route}.collections"), n, 40.0, 80.0);
        let series = f.num(v, "mysql_series");
        f.within(
            &format!("sql_collector.{route}.mysql_series"),
            series,
            500.0,
            1e6,
        );
    }
    // The same series (statement digests may come and go between two reads).
    let (se, sq) = (f.num(e, "mysql_series"), f.num(q, "mysql_series"));
    f.within(
        "mysql_* series over SQL / from the exporters",
        sq / se,
        0.95,
        1.05,
    );
    let ratio = f.num(sc, "ratio");
    f.within(
        "SQL collector / exporter + scrape CPU per collection",
        ratio,
        0.0,
        BOUNDS.sql_collector_cpu,
    );
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
    // Kept where cargo keeps test files, to read every figure after a failure.
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench_compare_results.json");
    std::fs::copy(&out, &kept).unwrap();
    eprintln!("figures: {}", kept.display());
    check_results(&out, &stdout, took);
}

fn check_results(out: &Path, stdout: &str, took: Duration) {
    let r: Value = serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap();
    let mem = mem_total();
    let mut f = Failures::default();
    // About 230 s are fixed waits (warm-up, the 50 s window, the rule phase's minute
    // of data and 75 s of windows, history generation); runs took 224 s on a quiet
    // machine, and 75 s more at a load average of 11 before the rule phase existed.
    f.check(took < Duration::from_secs(360), || {
        format!("--quick must finish within 6 minutes, took {took:?}")
    });

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
        f.check(header.contains(col), || {
            format!("table header lacks {col}: {header}")
        });
    }

    // Nothing of arrowmon may be missing: no import, no block cuts or an empty data
    // dir are what a broken build looks like, not a figure to leave out.
    f.check(r["arrowmon_capabilities"]["import"] == true, || {
        format!("arrowmon cannot import: {}", r["arrowmon_capabilities"])
    });
    f.check(
        r["not_available"].as_object().is_some_and(|m| m.is_empty()),
        || format!("figures not available: {}", r["not_available"]),
    );

    let expected_rate = f.num(&r, "workload.expected_samples_per_s");
    let expected_series = f.num(&r, "workload.expected_samples_per_scrape_round");
    let synthetic = f.num(&r, "workload.synthetic_series");
    let interval = f.num(&r, "params.interval_s");
    // The workload itself: the synthetic series plus node_exporter and two mysqld_exporters.
    f.within("synthetic series", synthetic, 19_000.0, 21_000.0);
    f.within(
        "expected samples/s",
        expected_rate,
        synthetic / interval,
        2.0 * synthetic / interval,
    );

    for sys in SYSTEMS {
        let s = &r["systems"][sys];
        let at = |x: &str| format!("{sys}.{x}");
        let active = f.num(s, "active_series");
        f.within(
            &at("active_series"),
            active,
            0.75 * expected_series,
            1.25 * expected_series,
        );
        let rate = f.num(s, "samples_ingested_per_s");
        f.within(
            &at("samples_ingested_per_s"),
            rate,
            0.75 * expected_rate,
            1.25 * expected_rate,
        );
        let cpu = f.num(s, "cpu_s_per_1m_samples");
        f.within(&at("cpu_s_per_1m_samples"), cpu, 1e-3, 1e3);
        let rss = f.num(s, "rss_bytes");
        f.within(&at("rss_bytes"), rss, 10.0 * MIB, mem);
        let window = f.num(s, "measure_window_s");
        let duration = f.num(&r, "params.duration_s");
        f.within(
            &at("measure_window_s"),
            window,
            0.9 * duration,
            3.0 * duration,
        );
        let disk = f.num(s, "disk_bytes_per_sample");
        f.within(&at("disk_bytes_per_sample"), disk, 0.5, 100.0);
        let h = &s["history"];
        let import = f.num(h, "import_s");
        f.within(&at("history.import_s"), import, 1e-3, 600.0);
        let import_cpu = f.num(h, "import_cpu_s");
        f.within(&at("history.import_cpu_s"), import_cpu, 0.0, 600.0);
        let disk = f.num(h, "disk_bytes_per_sample");
        f.within(&at("history.disk_bytes_per_sample"), disk, 0.1, 50.0);
    }

    // The same targets: the same series and the same ingestion rate everywhere.
    let am = &r["systems"]["arrowmon"];
    for peer in PEERS {
        let p = &r["systems"][peer];
        let ratio = f.num(am, "active_series") / f.num(p, "active_series");
        f.within(&format!("arrowmon/{peer} active series"), ratio, 0.99, 1.01);
        let ratio = f.num(am, "samples_ingested_per_s") / f.num(p, "samples_ingested_per_s");
        f.within(
            &format!("arrowmon/{peer} samples ingested per s"),
            ratio,
            0.97,
            1.03,
        );
    }

    // Costs against VictoriaMetrics in the same run.
    let vm = &r["systems"]["victoriametrics"];
    for (what, path, bound) in [
        (
            "CPU per 1M samples",
            "cpu_s_per_1m_samples",
            BOUNDS.cpu_per_sample,
        ),
        (
            "RSS per active series",
            "rss_bytes_per_active_series",
            BOUNDS.rss_per_series,
        ),
        (
            "live disk bytes per sample",
            "disk_bytes_per_sample",
            BOUNDS.live_disk_per_sample,
        ),
        (
            "history disk bytes per sample",
            "history.disk_bytes_per_sample",
            BOUNDS.history_disk_per_sample,
        ),
    ] {
        let ratio = f.num(am, path) / f.num(vm, path);
        f.within(
            &format!("arrowmon/victoriametrics {what}"),
            ratio,
            0.0,
            bound,
        );
    }
    let (am_import, vm_import) = (f.num(am, "history.import_s"), f.num(vm, "history.import_s"));
    f.within(
        "arrowmon history import seconds",
        am_import,
        0.0,
        BOUNDS.import_time * vm_import + 1.0,
    );
    // The table's ratios are the figures' quotients.
    for fig in [
        "cpu_s_per_1m_samples",
        "rss_bytes_per_active_series",
        "samples_ingested_per_s",
    ] {
        for peer in PEERS {
            let want = f.num(am, fig) / f.num(&r["systems"][peer], fig);
            let got = f.num(&r["ratios"][fig], &format!("arrowmon/{peer}"));
            f.check((got - want).abs() <= 1e-9 * want.abs(), || {
                format!("ratio {fig} arrowmon/{peer} = {got}, figures give {want}")
            });
        }
    }

    check_rules(&mut f, &r);
    check_remote_write(&mut f, &r);
    check_sql_collector(&mut f, &r);

    let live = SYSTEMS.map(|sys| &r["systems"][sys]["queries_live"]);
    check_queries(&mut f, "live", live, 2, 10);
    let history = SYSTEMS.map(|sys| &r["systems"][sys]["history"]["queries"]);
    check_queries(&mut f, "history", history, 3, 7);

    // Everything it started is stopped.
    for sys in SYSTEMS {
        let pid = r["systems"][sys]["pid"].as_u64().unwrap();
        f.check(!alive(pid), || {
            format!("{sys} (pid {pid}) still runs after bench/compare exited")
        });
    }
    let pid = r["workload"]["synthetic_exporter_pid"].as_u64().unwrap();
    f.check(!alive(pid), || {
        format!("synthetic exporter (pid {pid}) still runs")
    });
    assert!(
        f.0.is_empty(),
        "{} checks failed:\n  {}",
        f.0.len(),
        f.0.join("\n  ")
    );
}
