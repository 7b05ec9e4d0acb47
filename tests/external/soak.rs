//! A soak run: `gpx_arrowmon serve` and the plugin under the Grafana harness, side by
//! side, scrape the real topology (node_exporter, two MariaDB servers with their
//! mysqld_exporters, under load) and hostile targets while dashboards query them,
//! and the run kills each process with SIGKILL, fills their disk and damages a block.
//!
//! At the end it checks what a team trusting its monitoring would check: every
//! sample the sequence target served is stored, unless a kill came within the WAL
//! sync interval after it or it lay in the block the run damaged; each process's
//! RSS stayed under the bound; every probe and dashboard query outside a restart
//! answered; no process died on its own; each damaged block was moved aside.
//!
//! The suite runs it for `ARROWMON_SOAK_SECONDS` (default 60 s: one of each event);
//! `scripts/soak.sh` runs it for as long as asked and keeps the report.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrowmon::proto::pluginv2 as pb;
use serde_json::{json, Value};

use crate::support::*;

const SCRAPE_MS: i64 = 2_000;
const WAL_SYNC_MS: i64 = 1_000;
/// Queries refresh like a dashboard set to 5 s.
const REFRESH: Duration = Duration::from_secs(5);
/// A probe or query that takes longer than this has not answered.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// One cycle of events (kill serve, kill the plugin, full disk, damaged block) in a
/// long run; a shorter run fits one cycle into its length.
const CYCLE_S: u64 = 300;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
        == 0
}

// ---------------------------------------------------------------------------------
// What the run records

/// Times (ms since the epoch) when a process could not answer: from the kill to the
/// first answer after the restart. An open window ends at `i64::MAX`.
#[derive(Default)]
struct Downtime {
    windows: Mutex<Vec<(i64, i64)>>,
}

impl Downtime {
    fn begin(&self) -> usize {
        let mut w = self.windows.lock().unwrap();
        w.push((now_ms(), i64::MAX));
        w.len() - 1
    }

    fn end(&self, i: usize) {
        self.windows.lock().unwrap()[i].1 = now_ms();
    }

    fn overlaps(&self, from: i64, to: i64) -> bool {
        self.windows
            .lock()
            .unwrap()
            .iter()
            .any(|&(a, b)| a <= to && from <= b)
    }
}

/// Failures and latencies of one kind of request, outside the downtime windows.
#[derive(Default)]
struct Answers {
    ok: AtomicU64,
    excused: AtomicU64,
    failures: Mutex<Vec<String>>,
    slowest_ms: AtomicU64,
}

impl Answers {
    fn record(&self, down: &Downtime, started: i64, result: Result<(), String>) {
        let ended = now_ms();
        match result {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                self.slowest_ms
                    .fetch_max((ended - started) as u64, Ordering::Relaxed);
            }
            Err(_) if down.overlaps(started, ended) => {
                self.excused.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                let mut f = self.failures.lock().unwrap();
                if f.len() < 20 {
                    f.push(format!("(after {} ms): {e}", ended - started));
                } else if f.len() == 20 {
                    f.push("(more failures left out)".into());
                }
            }
        }
    }

    fn summary(&self) -> String {
        format!(
            "{} answered (slowest {} ms), {} failed during restarts, {} failed otherwise",
            self.ok.load(Ordering::Relaxed),
            self.slowest_ms.load(Ordering::Relaxed),
            self.excused.load(Ordering::Relaxed),
            self.failures.lock().unwrap().len()
        )
    }
}

/// One process under test, as the run sees it.
#[derive(Default)]
struct Watched {
    down: Downtime,
    probes: Answers,
    queries: Answers,
    /// Kill times, for the sequence check.
    kills: Mutex<Vec<i64>>,
    /// Sample time ranges lost with a damaged block (inclusive ms).
    damaged_ranges: Mutex<Vec<(i64, i64)>>,
    damage_notes: Mutex<Vec<String>>,
    max_rss_kb: AtomicU64,
    /// Exits the run did not cause.
    crashes: Mutex<Vec<String>>,
}

/// The sequence target: `soak_sequence N`, N one more on every scrape, each served
/// value kept with the time it was served.
#[derive(Default)]
struct Sequence {
    next: AtomicU64,
    served: Mutex<Vec<(u64, i64)>>,
}

impl Sequence {
    fn body(&self) -> String {
        let mut served = self.served.lock().unwrap();
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        served.push((n, now_ms()));
        format!("# TYPE soak_sequence gauge\nsoak_sequence {n}\n")
    }
}

// ---------------------------------------------------------------------------------
// Hostile targets

/// One server, one misbehaviour per path: far-future and i64::MAX timestamps,
/// garbage, a body over the limit, a stall past the timeout, series churn, a gzip
/// bomb, a connection cut mid-body, and odd values and labels.
async fn hostile_targets() -> String {
    use axum::body::{Body, Bytes};
    use axum::routing::get;

    let huge = Bytes::from(
        (0..400_000)
            .map(|i| format!("hostile_huge{{i=\"{i}\",pad=\"{:040}\"}} 1\n", i))
            .collect::<String>(),
    );
    let bomb = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![b'0'; 1 << 20];
        for _ in 0..512 {
            e.write_all(&zeros).unwrap();
        }
        Bytes::from(e.finish().unwrap())
    };
    let churn_round = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new()
        .route(
            "/future",
            get(|| async {
                let ten_years = 10 * 365 * 24 * 3_600_000;
                format!(
                    "hostile_future_ts 1 {}\nhostile_max_ts 1 {}\nhostile_fine 1\n",
                    now_ms() + ten_years,
                    i64::MAX
                )
            }),
        )
        .route(
            "/garbage",
            get(|| async {
                let mut x = now_ms() as u64 | 1;
                let garbage = (0..8192)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect::<Vec<u8>>();
                ([("content-type", TEXT_FORMAT)], garbage)
            }),
        )
        .route(
            "/huge",
            get(move || async move { ([("content-type", TEXT_FORMAT)], huge.clone()) }),
        )
        .route(
            "/stall",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "hostile_stalled 1\n"
            }),
        )
        .route(
            "/churn",
            get(move || {
                let round = churn_round.fetch_add(1, Ordering::Relaxed) / 10;
                async move {
                    (0..200)
                        .map(|i| format!("hostile_churn{{gen=\"{round}\",i=\"{i}\"}} {i}\n"))
                        .collect::<String>()
                }
            }),
        )
        .route(
            "/gzip",
            get(move || async move {
                (
                    [("content-type", TEXT_FORMAT), ("content-encoding", "gzip")],
                    bomb.clone(),
                )
            }),
        )
        .route(
            "/cut",
            get(|| async {
                let parts: Vec<Result<Bytes, std::io::Error>> = vec![
                    Ok(Bytes::from_static(b"hostile_cut 1\nhostile_cut_two{a=\"")),
                    Err(std::io::Error::other("cut")),
                ];
                Body::from_stream(tokio_stream::iter(parts))
            }),
        )
        .route(
            "/odd",
            get(|| async {
                let long = "x".repeat(100_000);
                let mut b = String::from(
                    "# TYPE hostile_odd counter\n# TYPE hostile_odd gauge\n\
                     hostile_odd{v=\"nan\"} NaN\nhostile_odd{v=\"inf\"} +Inf\n\
                     hostile_odd{v=\"-inf\"} -Inf\nhostile_odd{v=\"dup\"} 1\n\
                     hostile_odd{v=\"dup\"} 2\nhostile_odd{v=\"big\"} 1e308\n",
                );
                b.push_str(&format!("hostile_odd{{v=\"long\",l=\"{long}\"}} 1\n"));
                let mut bytes = b.into_bytes();
                bytes.extend_from_slice(b"hostile_odd{v=\"\xff\xfe\"} 1\n");
                ([("content-type", TEXT_FORMAT)], bytes)
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

const HOSTILE_PATHS: &[&str] = &[
    "future", "garbage", "huge", "stall", "churn", "gzip", "cut", "odd",
];

fn scrape_config(node: &str, mysql: &[&str], sequence: &str, hostile: &str) -> String {
    let mut y = format!(
        "global:\n  scrape_interval: {}ms\n  scrape_timeout: {}ms\nscrape_configs:\n\
         \x20 - job_name: node\n    static_configs:\n      - targets: ['{node}']\n\
         \x20 - job_name: mysql\n    static_configs:\n      - targets: [{}]\n\
         \x20 - job_name: sequence\n    static_configs:\n      - targets: ['{sequence}']\n",
        SCRAPE_MS,
        SCRAPE_MS,
        mysql
            .iter()
            .map(|m| format!("'{m}'"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    for p in HOSTILE_PATHS {
        y.push_str(&format!(
            "  - job_name: hostile_{p}\n    metrics_path: /{p}\n    body_size_limit: 4MB\n\
             \x20   static_configs:\n      - targets: ['{hostile}']\n"
        ));
    }
    y
}

// ---------------------------------------------------------------------------------
// Dashboard queries

/// Every panel expression of the provisioned dashboards with the dashboard variables
/// filled in as Grafana's frontend does before a query leaves the browser (Grafana's
/// own `$__` variables are left to the datasource).
fn dashboard_queries(node: &str) -> Vec<(String, String)> {
    let dir = repo_root().join("provisioning/dashboards");
    let mut out = Vec::new();
    for (file, vars) in [
        ("node.json", vec![("$job", "node"), ("$instance", node)]),
        ("mysql.json", vec![("$job", "mysql"), ("$instance", ".+")]),
        ("arrowmon.json", vec![("$job", ".+")]),
    ] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let dash: Value = serde_json::from_str(&text).unwrap();
        let mut panels: Vec<&Value> = Vec::new();
        for p in dash["panels"].as_array().into_iter().flatten() {
            panels.push(p);
            panels.extend(p["panels"].as_array().into_iter().flatten());
        }
        for p in panels {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    let e = vars
                        .iter()
                        .fold(expr.to_string(), |e, (k, v)| e.replace(k, v));
                    out.push((t["refId"].as_str().unwrap_or("A").to_string(), e));
                }
            }
        }
    }
    assert!(out.len() > 50, "the dashboards hold {} queries", out.len());
    out
}

/// The expression as the HTTP API takes it: Grafana's interval variables filled in
/// with what Grafana would send for a 15-minute range.
fn for_http(expr: &str) -> String {
    [
        ("$__rate_interval_ms", "60000"),
        ("$__rate_interval", "1m"),
        ("$__interval_ms", "15000"),
        ("$__interval", "15s"),
        ("$__range_ms", "900000"),
        ("$__range_s", "900"),
        ("$__range", "15m"),
    ]
    .iter()
    .fold(expr.to_string(), |e, (k, v)| e.replace(k, v))
}

// ---------------------------------------------------------------------------------
// The processes

/// `gpx_arrowmon serve`, restartable, its log appended to one file.
struct Serve {
    config: PathBuf,
    data: PathBuf,
    listen: String,
    log: PathBuf,
    child: Option<ChildGuard>,
}

impl Serve {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = serve_command(&self.config, &self.data, &self.listen);
        cmd.args(["--block-range", "20s", "--wal-sync-interval"])
            .arg(format!("{WAL_SYNC_MS}ms"))
            .stderr(Stdio::from(log));
        self.child = Some(ChildGuard::spawn("gpx_arrowmon serve", &mut cmd).stop_signal("KILL"));
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Some(status) when the process ended without being told to.
    fn exited(&mut self) -> Option<String> {
        let c = self.child.as_mut()?;
        match c.try_wait() {
            Ok(Some(s)) => Some(s.to_string()),
            _ => None,
        }
    }
}

async fn serve_answers(client: &reqwest::Client, base: &str) -> Result<(), String> {
    let r = client
        .get(format!("{base}/api/v1/query?query=up"))
        .timeout(ANSWER_WITHIN)
        .send()
        .await
        .map_err(|e| format!("query up: {e}"))?;
    let code = r.status();
    let text = r.text().await.map_err(|e| format!("query up: {e}"))?;
    if code != 200 {
        return Err(format!("query up: {code}: {text}"));
    }
    Ok(())
}

async fn plugin_answers(
    channel: tonic::transport::Channel,
    ctx: pb::PluginContext,
) -> Result<(), String> {
    let mut c = pb::diagnostics_client::DiagnosticsClient::new(channel);
    let r = tokio::time::timeout(
        ANSWER_WITHIN,
        c.check_health(pb::CheckHealthRequest {
            plugin_context: Some(ctx),
            headers: HashMap::new(),
        }),
    )
    .await
    .map_err(|_| "CheckHealth timed out".to_string())?
    .map_err(|e| format!("CheckHealth: {e}"))?
    .into_inner();
    // A datasource whose store cannot write says so (status 2); that is an answer.
    if r.status == 0 {
        return Err(format!("CheckHealth status UNKNOWN: {}", r.message));
    }
    Ok(())
}

/// Resident memory of a process in KiB.
fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The newest block under `data` (any tenant): its directory and sample time range.
fn newest_block(data: &Path) -> Option<(PathBuf, i64, i64)> {
    let mut found = Vec::new();
    let mut stack = vec![data.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            if p.parent()
                .and_then(|q| q.file_name())
                .is_some_and(|n| n == "blocks")
            {
                if let Ok(text) = std::fs::read_to_string(p.join("meta.json")) {
                    if let Ok(m) = serde_json::from_str::<Value>(&text) {
                        if let (Some(a), Some(b)) = (m["mint"].as_i64(), m["maxt"].as_i64()) {
                            found.push((p.clone(), a, b));
                        }
                    }
                }
            } else {
                stack.push(p);
            }
        }
    }
    found.into_iter().max_by_key(|b| b.2)
}

/// Flips ten bytes in the middle of the block's largest data file.
fn damage_block(block: &Path) -> String {
    let file = std::fs::read_dir(block)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "arrow"))
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a block holds .arrow files");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    for b in bytes.iter_mut().skip(mid).take(10) {
        *b ^= 0x5a;
    }
    std::fs::write(&file, bytes).unwrap();
    file.display().to_string()
}

/// A size-limited tmpfs for both data directories, unmounted when dropped; the
/// disk-full event fills it with a file and frees it again.
struct Disk {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl Disk {
    fn new() -> Disk {
        let dir = tempfile::Builder::new()
            .prefix("amsoak")
            .tempdir_in("/tmp")
            .unwrap();
        let mounted = is_root()
            && Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=2g", "tmpfs"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
        Disk { dir, mounted }
    }

    fn fill(&self) -> u64 {
        use std::io::Write;
        let mut f = std::fs::File::create(self.dir.path().join("filler")).unwrap();
        let block = vec![0x5au8; 1 << 20];
        let mut written = 0;
        while f.write_all(&block).is_ok() {
            written += block.len() as u64;
        }
        // The last partial megabyte, so that not even a small write fits.
        let small = vec![0x5au8; 4096];
        while f.write_all(&small).is_ok() {
            written += small.len() as u64;
        }
        written
    }

    fn free(&self) {
        let _ = std::fs::remove_file(self.dir.path().join("filler"));
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(self.dir.path()).status();
        }
    }
}

// ---------------------------------------------------------------------------------
// The run

struct Run {
    serve: Watched,
    plugin: Watched,
    stop: AtomicBool,
}

type PluginSlot = Arc<tokio::sync::RwLock<Option<Arc<PluginProcess>>>>;

async fn current_plugin(slot: &PluginSlot) -> Option<Arc<PluginProcess>> {
    slot.read().await.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_serve_and_plugin_under_kills_full_disks_and_damage() {
    arrowmon::scrape::tls::install_default_provider();
    let seconds = env_u64("ARROWMON_SOAK_SECONDS", 60);
    let rss_bound_kb = env_u64("ARROWMON_SOAK_RSS_MB", 1024) * 1024;
    let cycle_s = CYCLE_S.min(seconds);
    let started = now_ms();

    let topo = Topology::start(false);
    let node = topo.get("NODE_EXPORTER").to_string();
    let mysql = [
        topo.get("MYSQLD_EXPORTER_1").to_string(),
        topo.get("MYSQLD_EXPORTER_2").to_string(),
    ];
    let mysql_refs: Vec<&str> = mysql.iter().map(String::as_str).collect();
    let hostile = hostile_targets().await;
    let seq_serve = Arc::new(Sequence::default());
    let seq_plugin = Arc::new(Sequence::default());
    let serve_target = {
        let s = seq_serve.clone();
        exporter(move || s.body()).await
    };
    let plugin_target = {
        let s = seq_plugin.clone();
        exporter(move || s.body()).await
    };

    let disk = Disk::new();
    if !disk.mounted {
        assert!(
            std::env::var_os("ARROWMON_REQUIRE_ROOT_TESTS").is_none(),
            "ARROWMON_REQUIRE_ROOT_TESTS is set but the soak cannot mount its tmpfs"
        );
        eprintln!("\n!!!!! soak: not root, so no tmpfs: the full-disk events are left out !!!!!\n");
    }
    let work = disk.dir.path();
    let logs = std::env::var_os("ARROWMON_SOAK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("arrowmon-soak-{started}")));
    std::fs::create_dir_all(&logs).unwrap();
    let config = logs.join("serve.yml");
    std::fs::write(
        &config,
        scrape_config(&node, &mysql_refs, &serve_target, &hostile),
    )
    .unwrap();
    let mut serve = Serve {
        config,
        data: work.join("serve"),
        listen: format!("127.0.0.1:{}", free_port()),
        log: logs.join("serve.log"),
        child: None,
    };
    let base = format!("http://{}", serve.listen);
    let client = reqwest::Client::new();
    serve.start();

    let plugin_env = grafana_env(&work.join("grafana-data"), &logs.join("provisioning"));
    std::fs::create_dir_all(work.join("grafana-data")).unwrap();
    std::fs::create_dir_all(logs.join("provisioning")).unwrap();
    let ds = Arc::new(Datasource::new(
        1,
        "soak",
        json!({
            "timeInterval": "2s",
            "scrapeConfig": scrape_config(&node, &mysql_refs, &plugin_target, &hostile),
        }),
    ));
    let slot: PluginSlot = Arc::new(tokio::sync::RwLock::new(Some(Arc::new(
        PluginProcess::start(&plugin_env).await,
    ))));

    let run = Arc::new(Run {
        serve: Watched::default(),
        plugin: Watched::default(),
        stop: AtomicBool::new(false),
    });
    eventually(Duration::from_secs(30), "serve answering", || {
        let (c, b) = (client.clone(), base.clone());
        async move { serve_answers(&c, &b).await.ok() }
    })
    .await;

    let queries = Arc::new(dashboard_queries(&node));
    let mut tasks = Vec::new();

    // Probes, once a second.
    {
        let (run, client, base, slot, ds) = (
            run.clone(),
            client.clone(),
            base.clone(),
            slot.clone(),
            ds.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !run.stop.load(Ordering::Relaxed) {
                let t = now_ms();
                let r = serve_answers(&client, &base).await;
                run.serve.probes.record(&run.serve.down, t, r);
                let t = now_ms();
                let r = match current_plugin(&slot).await {
                    Some(p) => plugin_answers(p.channel.clone(), ds.context(Some("Viewer"))).await,
                    None => Err("no plugin process".into()),
                };
                run.plugin.probes.record(&run.plugin.down, t, r);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    // Dashboard load on serve: every panel's range query, refreshed every 5 s.
    {
        let (run, client, base, queries) =
            (run.clone(), client.clone(), base.clone(), queries.clone());
        tasks.push(tokio::spawn(async move {
            while !run.stop.load(Ordering::Relaxed) {
                let round = Instant::now();
                let end = now_ms() / 1000;
                for (_, q) in queries.iter() {
                    let t = now_ms();
                    let r = client
                        .get(format!(
                            "{base}/api/v1/query_range?{}",
                            form_urlencoded::Serializer::new(String::new())
                                .append_pair("query", &for_http(q))
                                .append_pair("start", &(end - 900).to_string())
                                .append_pair("end", &end.to_string())
                                .append_pair("step", "15")
                                .finish()
                        ))
                        .timeout(ANSWER_WITHIN)
                        .send()
                        .await;
                    let r = match r {
                        Ok(r) if r.status() == 200 => Ok(()),
                        Ok(r) => {
                            let code = r.status();
                            Err(format!(
                                "{q}: {code}: {}",
                                r.text().await.unwrap_or_default()
                            ))
                        }
                        Err(e) => Err(format!("{q}: {e}")),
                    };
                    run.serve.queries.record(&run.serve.down, t, r);
                }
                tokio::time::sleep(REFRESH.saturating_sub(round.elapsed())).await;
            }
        }));
    }
    // Dashboard load on the plugin: one QueryData per panel, as Grafana sends them.
    {
        let (run, slot, ds, queries) = (run.clone(), slot.clone(), ds.clone(), queries.clone());
        tasks.push(tokio::spawn(async move {
            while !run.stop.load(Ordering::Relaxed) {
                let round = Instant::now();
                let to = now_ms();
                for (ref_id, q) in queries.iter() {
                    let t = now_ms();
                    let r = match current_plugin(&slot).await {
                        None => Err("no plugin process".to_string()),
                        Some(p) => {
                            let mut c = pb::data_client::DataClient::new(p.channel.clone());
                            let req = pb::QueryDataRequest {
                                plugin_context: Some(ds.context(Some("Viewer"))),
                                headers: HashMap::new(),
                                queries: vec![data_query(
                                    ref_id,
                                    json!({"expr": q, "refId": ref_id, "range": true}),
                                    to - 900_000,
                                    to,
                                    15_000,
                                )],
                                ..Default::default()
                            };
                            match tokio::time::timeout(ANSWER_WITHIN, c.query_data(req)).await {
                                Err(_) => Err(format!("{q}: timed out")),
                                Ok(Err(e)) => Err(format!("{q}: {e}")),
                                Ok(Ok(resp)) => match resp.into_inner().responses.get(ref_id) {
                                    Some(r) if r.error.is_empty() => Ok(()),
                                    Some(r) => Err(format!("{q}: {}", r.error)),
                                    None => Err(format!("{q}: no response for {ref_id}")),
                                },
                            }
                        }
                    };
                    run.plugin.queries.record(&run.plugin.down, t, r);
                }
                tokio::time::sleep(REFRESH.saturating_sub(round.elapsed())).await;
            }
        }));
    }

    // The events, and memory and unexpected exits watched every second.
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut next_event = 0usize;
    let events = [
        (0.15, "kill serve"),
        (0.30, "kill plugin"),
        (0.45, "disk full"),
        (0.60, "disk free"),
        (0.80, "damage serve"),
    ];
    let mut disk_fills = Vec::new();
    let mut cycle_start = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(pid) = serve.pid() {
            if let Some(kb) = rss_kb(pid) {
                run.serve.max_rss_kb.fetch_max(kb, Ordering::Relaxed);
            }
        }
        if let Some(p) = current_plugin(&slot).await {
            if let Some(kb) = rss_kb(p.pid()) {
                run.plugin.max_rss_kb.fetch_max(kb, Ordering::Relaxed);
            }
        }
        if let Some(status) = serve.exited() {
            run.serve.crashes.lock().unwrap().push(format!(
                "serve exited on its own ({status}) at +{} s",
                (now_ms() - started) / 1000
            ));
            let w = run.serve.down.begin();
            serve.start();
            wait_serve(&client, &base).await;
            run.serve.down.end(w);
        }
        let in_cycle = cycle_start.elapsed().as_secs_f64() / cycle_s as f64;
        if in_cycle >= 1.0 {
            cycle_start = Instant::now();
            next_event = 0;
            continue;
        }
        let Some(&(at, what)) = events.get(next_event) else {
            continue;
        };
        if in_cycle < at {
            continue;
        }
        next_event += 1;
        let t = now_ms();
        eprintln!("soak +{} s: {what}", (t - started) / 1000);
        match what {
            "kill serve" => {
                let w = run.serve.down.begin();
                run.serve.kills.lock().unwrap().push(now_ms());
                serve.kill9();
                serve.start();
                wait_serve(&client, &base).await;
                run.serve.down.end(w);
            }
            "kill plugin" => {
                let w = run.plugin.down.begin();
                run.plugin.kills.lock().unwrap().push(now_ms());
                if let Some(p) = slot.write().await.take() {
                    p.signal("KILL");
                }
                // Grafana starts a plugin again when it has exited.
                let fresh = Arc::new(PluginProcess::start(&plugin_env).await);
                *slot.write().await = Some(fresh.clone());
                let ctx = ds.context(Some("Viewer"));
                eventually(ANSWER_WITHIN * 3, "the restarted plugin answering", || {
                    let (ch, ctx) = (fresh.channel.clone(), ctx.clone());
                    async move { plugin_answers(ch, ctx).await.ok() }
                })
                .await;
                run.plugin.down.end(w);
            }
            "disk full" if disk.mounted => disk_fills.push((now_ms(), disk.fill())),
            "disk free" if disk.mounted => disk.free(),
            "damage serve" => {
                let w = run.serve.down.begin();
                run.serve.kills.lock().unwrap().push(now_ms());
                serve.kill9();
                match newest_block(&serve.data) {
                    Some((dir, mint, maxt)) => {
                        let file = damage_block(&dir);
                        run.serve.damaged_ranges.lock().unwrap().push((mint, maxt));
                        serve.start();
                        wait_serve(&client, &base).await;
                        let name = dir.file_name().unwrap().to_string_lossy().to_string();
                        let moved = dir
                            .parent()
                            .and_then(Path::parent)
                            .map(|store| store.join("damaged"))
                            .and_then(|d| std::fs::read_dir(d).ok())
                            .into_iter()
                            .flatten()
                            .flatten()
                            .any(|e| e.file_name().to_string_lossy().starts_with(&name));
                        run.serve.damage_notes.lock().unwrap().push(format!(
                            "flipped 10 bytes of {file} (samples {mint}..{maxt}); moved aside: {moved}"
                        ));
                    }
                    None => {
                        run.serve
                            .damage_notes
                            .lock()
                            .unwrap()
                            .push("no block to damage yet".into());
                        serve.start();
                        wait_serve(&client, &base).await;
                    }
                }
                run.serve.down.end(w);
            }
            _ => {}
        }
    }
    disk.free();
    // Two more scrapes, so the last served values are in.
    tokio::time::sleep(Duration::from_millis(2 * SCRAPE_MS as u64 + 500)).await;
    run.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(60), t).await;
    }

    // What each store holds of the sequence.
    let range_s = (now_ms() - started) / 1000 + 60;
    let q = format!("soak_sequence[{range_s}s]");
    let serve_stored = {
        let r = client
            .get(format!(
                "{base}/api/v1/query?{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("query", &q)
                    .finish()
            ))
            .send()
            .await
            .unwrap();
        stored_values(&serde_json::from_str(&r.text().await.unwrap()).unwrap())
    };
    let plugin_stored = {
        let p = current_plugin(&slot).await.expect("plugin");
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", &q)
            .finish();
        let (code, v) = p
            .call_resource(
                ds.context(Some("Viewer")),
                "POST",
                "api/v1/query",
                body.as_bytes(),
            )
            .await;
        assert_eq!(code, 200, "{v}");
        stored_values(&v)
    };
    // No far-future or i64::MAX sample got into a store, not even as a series, while
    // the rest of that target's scrape did.
    let future_match = "match[]=%7B__name__%3D~%22hostile_%28future%7Cmax%29_ts%22%7D";
    let fine_query = "query=hostile_fine";
    let serve_get = |path: String| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let r = client.get(format!("{base}/{path}")).send().await.unwrap();
            let code = r.status().as_u16() as i32;
            (
                code,
                serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap(),
            )
        }
    };
    let plugin = current_plugin(&slot).await.expect("plugin");
    let outcome = [
        (
            "serve",
            serve_get(format!("api/v1/series?{future_match}")).await,
            serve_get(format!("api/v1/query?{fine_query}")).await,
        ),
        (
            "plugin",
            plugin
                .call_resource(
                    ds.context(Some("Viewer")),
                    "GET",
                    &format!("api/v1/series?{future_match}"),
                    b"",
                )
                .await,
            plugin
                .call_resource(
                    ds.context(Some("Viewer")),
                    "GET",
                    &format!("api/v1/query?{fine_query}"),
                    b"",
                )
                .await,
        ),
    ];
    drop(plugin);
    let mut report = String::new();
    let mut failures = Vec::new();
    report.push_str(&format!(
        "soak of {seconds} s ({} s wall), cycle {cycle_s} s, scrape every {SCRAPE_MS} ms, \
         WAL sync every {WAL_SYNC_MS} ms, {} dashboard queries per refresh, RSS bound {} MiB\n",
        (now_ms() - started) / 1000,
        queries.len(),
        rss_bound_kb / 1024
    ));
    report.push_str(&format!(
        "disk: {}\n",
        if disk.mounted {
            format!(
                "2 GiB tmpfs, filled {} time(s) ({} MiB each)",
                disk_fills.len(),
                disk_fills.first().map(|f| f.1 >> 20).unwrap_or(0)
            )
        } else {
            "not a tmpfs (not root): no full-disk events".into()
        }
    ));
    for (name, w, seq, stored) in [
        ("serve", &run.serve, &seq_serve, &serve_stored),
        ("plugin", &run.plugin, &seq_plugin, &plugin_stored),
    ] {
        let served = seq.served.lock().unwrap().clone();
        let kills = w.kills.lock().unwrap().clone();
        let damaged = w.damaged_ranges.lock().unwrap().clone();
        let (mut kept, mut by_kill, mut by_damage, mut missing) = (0, 0, 0, Vec::new());
        for &(n, t) in &served {
            if stored.contains_key(&n) {
                kept += 1;
            } else if kills
                .iter()
                .any(|&k| t >= k - WAL_SYNC_MS - SCRAPE_MS && t <= k + 1_000)
            {
                by_kill += 1;
            } else if damaged
                .iter()
                .any(|&(a, b)| t >= a - SCRAPE_MS && t <= b + SCRAPE_MS)
            {
                by_damage += 1;
            } else {
                missing.push(n);
            }
        }
        let unknown: Vec<u64> = stored
            .keys()
            .filter(|n| **n >= seq.next.load(Ordering::SeqCst))
            .copied()
            .collect();
        let rss = w.max_rss_kb.load(Ordering::Relaxed);
        report.push_str(&format!(
            "{name}: {} kills; sequence served {}, stored {kept}, lost within the WAL sync \
             interval of a kill {by_kill}, lost with a damaged block {by_damage}, missing {}; \
             max RSS {} MiB\n  probes: {}\n  dashboard queries: {}\n",
            kills.len(),
            served.len(),
            missing.len(),
            rss / 1024,
            w.probes.summary(),
            w.queries.summary(),
        ));
        for n in w.damage_notes.lock().unwrap().iter() {
            report.push_str(&format!("  damage: {n}\n"));
            if !n.ends_with("moved aside: true") {
                failures.push(format!("{name}: damaged block not moved aside: {n}"));
            }
        }
        if !missing.is_empty() {
            failures.push(format!(
                "{name}: {} served samples missing, first values {:?}",
                missing.len(),
                &missing[..missing.len().min(10)]
            ));
        }
        if !unknown.is_empty() {
            failures.push(format!("{name}: stored values never served: {unknown:?}"));
        }
        if served.len() < (seconds as usize * 1000 / SCRAPE_MS as usize) / 2 {
            failures.push(format!(
                "{name}: only {} scrapes of the sequence target",
                served.len()
            ));
        }
        if rss > rss_bound_kb {
            failures.push(format!("{name}: RSS reached {} MiB", rss / 1024));
        }
        for (kind, a) in [("probe", &w.probes), ("dashboard query", &w.queries)] {
            for f in a.failures.lock().unwrap().iter() {
                failures.push(format!("{name}: {kind} failed outside a restart {f}"));
            }
        }
        for c in w.crashes.lock().unwrap().iter() {
            failures.push(format!("{name}: {c}"));
        }
    }
    // The log is a file here, as under systemd: plain text, no terminal colours.
    let serve_log = std::fs::read_to_string(&serve.log).unwrap_or_default();
    if serve_log.contains('\x1b') {
        failures.push("serve's log to a file holds terminal escape codes".into());
    }
    let damage_events = run.serve.damage_notes.lock().unwrap().len();
    if damage_events == 0 || run.serve.damaged_ranges.lock().unwrap().is_empty() {
        failures.push("no block was damaged: the run was too short for a block".into());
    }
    for (name, (code, series), (fine_code, fine)) in &outcome {
        if *code != 200 || series["data"].as_array().is_none_or(|r| !r.is_empty()) {
            failures.push(format!(
                "{name}: a far-future series exists: {code} {series}"
            ));
        }
        if *fine_code != 200
            || fine["data"]["result"]
                .as_array()
                .is_none_or(|r| r.is_empty())
        {
            failures.push(format!(
                "{name}: the far-future target's other samples are not stored: {fine_code} {fine}"
            ));
        }
    }
    report.push_str(&format!(
        "result: {}\n",
        if failures.is_empty() {
            "pass".to_string()
        } else {
            failures.join("\n  ")
        }
    ));
    eprintln!("\n{report}");
    std::fs::write(logs.join("report.txt"), &report).unwrap();

    if let Some(p) = slot.write().await.take() {
        if let Ok(p) = Arc::try_unwrap(p) {
            let _ = p.shutdown().await;
        }
    }
    serve.kill9();
    drop(topo);
    assert!(
        failures.is_empty(),
        "soak failed:\n{report}\nlogs in {}",
        logs.display()
    );
}

async fn wait_serve(client: &reqwest::Client, base: &str) {
    eventually(
        ANSWER_WITHIN * 3,
        "serve answering after a restart",
        || async { serve_answers(client, base).await.ok() },
    )
    .await;
}

/// The values of a raw range query's one series, each with its sample time.
fn stored_values(v: &Value) -> BTreeMap<u64, i64> {
    let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
    assert!(result.len() <= 1, "one sequence series: {v}");
    result
        .first()
        .and_then(|s| s["values"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            let t = (p[0].as_f64()? * 1000.0).round() as i64;
            let n = p[1].as_str()?.parse::<f64>().ok()? as u64;
            Some((n, t))
        })
        .collect()
}
