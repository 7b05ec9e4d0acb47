//! The real exporters (node_exporter, mysqld_exporter over MariaDB) on loopback.

use std::collections::HashMap;
use std::process::Command;

use super::repo_root;

/// Real exporters on loopback, started by the project's topology script.
pub struct Topology {
    pub dir: tempfile::TempDir,
    pub env: HashMap<String, String>,
}

impl Topology {
    pub fn start(only_node: bool) -> Topology {
        let dir = tempfile::Builder::new()
            .prefix("amtopo")
            .tempdir_in("/tmp")
            .unwrap();
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join("scripts/topology-start.sh"));
        if only_node {
            cmd.args(["--only", "node"]);
        }
        let out = cmd.arg(dir.path()).output().expect("run topology-start.sh");
        assert!(
            out.status.success(),
            "topology-start.sh failed (run scripts/install-deps.sh first):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let env_text = std::fs::read_to_string(dir.path().join("topology.env")).unwrap();
        let env = env_text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        Topology { dir, env }
    }

    pub fn get(&self, k: &str) -> &str {
        self.env
            .get(k)
            .unwrap_or_else(|| panic!("topology.env has no {k}"))
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("scripts/topology-stop.sh"))
            .arg(self.dir.path())
            .env("STOP_REAP_WAIT", "0")
            .output();
    }
}
