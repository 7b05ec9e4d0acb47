//! `scripts/dist.sh` lays out the plugin folder as Grafana loads it, and the
//! executable Grafana derives from plugin.json starts and speaks the protocol.

use std::process::Command;

use crate::support::*;
use serde_json::Value;

/// The checks of Grafana's plugin.json schema that matter for loading the plugin.
fn check_plugin_json(p: &Value) {
    let id = p["id"].as_str().expect("id");
    let re = regex::Regex::new(r"^[0-9a-z]+-([0-9a-z]+-)?(app|panel|datasource|secretsmanager)$")
        .unwrap();
    assert!(
        re.is_match(id),
        "plugin id {id:?} does not match Grafana's id pattern"
    );
    assert_eq!(id, PLUGIN_ID);
    assert_eq!(p["type"], "datasource");
    assert!(!p["name"].as_str().unwrap_or("").is_empty());
    assert_eq!(p["backend"], true);
    assert_eq!(p["alerting"], true);
    assert_eq!(p["metrics"], true);
    assert_eq!(p["executable"], "gpx_arrowmon");
    assert_eq!(p["category"], "tsdb");
    let info = &p["info"];
    assert!(!info["keywords"].as_array().expect("keywords").is_empty());
    for logo in ["small", "large"] {
        assert!(info["logos"][logo].as_str().is_some(), "info.logos.{logo}");
    }
    assert_eq!(
        info["version"],
        env!("CARGO_PKG_VERSION"),
        "plugin.json version follows Cargo.toml"
    );
    assert!(info["updated"].as_str().is_some_and(|d| d.len() == 10));
    assert!(info["author"]["name"].as_str().is_some());
    assert_eq!(p["dependencies"]["grafanaDependency"], ">=11.0.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn dist_folder_is_a_loadable_plugin() {
    let root = repo_root();
    assert!(
        root.join("frontend/dist/module.js").exists(),
        "frontend/dist/module.js is missing: build the frontend first (cd frontend && npm ci && npm run build)"
    );
    let out = tempfile::tempdir().unwrap();
    let dist = out.path().join("arrowmon-metrics-datasource");
    let status = Command::new("bash")
        .arg(root.join("scripts/dist.sh"))
        .arg("--layout-only")
        .arg(&dist)
        .env("ARROWMON_BIN", binary())
        .status()
        .unwrap();
    assert!(status.success());

    let plugin: Value =
        serde_json::from_slice(&std::fs::read(dist.join("plugin.json")).unwrap()).unwrap();
    check_plugin_json(&plugin);
    for f in [
        "module.js",
        "README.md",
        "LICENSE",
        "img/logo.svg",
        "dashboards",
    ] {
        assert!(dist.join(f).exists(), "{f} missing from dist");
    }
    let module = std::fs::read_to_string(dist.join("module.js")).unwrap();
    assert!(
        module.starts_with("define("),
        "module.js must be an AMD module"
    );
    for logo in ["small", "large"] {
        let path = plugin["info"]["logos"][logo].as_str().unwrap();
        assert!(dist.join(path).exists(), "logo {path} missing");
    }

    // Grafana runs <executable>_<os>_<arch>.
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let exe = dist.join(format!(
        "{}_linux_{arch}",
        plugin["executable"].as_str().unwrap()
    ));
    assert!(exe.exists(), "{} missing", exe.display());
    let data = out.path().join("data");
    let prov = out.path().join("prov");
    std::fs::create_dir_all(&prov).unwrap();
    let cmd_env = grafana_env(&data, &prov);
    let plugin_proc = PluginProcess::start_exe(&exe, &cmd_env).await;
    assert!(plugin_proc.health_serving().await);
    let (status, _) = plugin_proc.shutdown().await;
    assert!(status.is_some_and(|s| s.success()));
}
