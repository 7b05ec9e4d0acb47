//! Standalone mode seen by a real Prometheus tool: promtool queries `gpx_arrowmon serve`.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// Prometheus's own client tool talks to standalone arrowmon as to a Prometheus.
#[tokio::test(flavor = "multi_thread")]
async fn promtool_queries_standalone_arrowmon() {
    let target = serve_metrics("# TYPE jobs_total counter\njobs_total{kind=\"a\"} 7\n").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("scrape.yml");
    std::fs::write(&cfg, format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{target}']\n")).unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut child = spawn_serve(&cfg, &dir.path().join("data"), &listen);
    let server = format!("http://{listen}");
    let start = now_ms() / 1000;
    let promtool = |args: Vec<String>| {
        let out = Command::new("promtool")
            .args(&args)
            .output()
            .expect("promtool (scripts/install-deps.sh installs the prometheus package)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, stdout, _) = eventually(Duration::from_secs(15), "promtool instant query", || {
        let r = promtool(vec![
            "query".into(),
            "instant".into(),
            server.clone(),
            "jobs_total".into(),
        ]);
        async move { (r.0 && r.1.contains("jobs_total")).then_some(r) }
    })
    .await;
    assert!(ok);
    assert!(
        stdout.contains("kind=\"a\"") && stdout.contains("=> 7"),
        "{stdout}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let end = now_ms() / 1000;
    let (ok, stdout, stderr) = promtool(vec![
        "query".into(),
        "range".into(),
        format!("--start={start}"),
        format!("--end={end}"),
        "--step=1s".into(),
        server.clone(),
        "jobs_total".into(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("jobs_total") && stdout.contains("7 @["),
        "{stdout}"
    );
    let _ = child.kill();
    let _ = child.wait();
}
