//! A stand-in for Grafana's plugin host: it starts the built plugin binary with the
//! environment Grafana gives a plugin, reads the go-plugin handshake and speaks
//! pluginv2 gRPC with a realistic PluginContext.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrowmon::proto::goplugin::grpc_controller_client::GrpcControllerClient;
use arrowmon::proto::health::health_client::HealthClient;
use arrowmon::proto::pluginv2 as pb;
use serde_json::Value;
use tonic::transport::Channel;

use super::{binary, ChildGuard};

pub const PLUGIN_ID: &str = "arrowmon-metrics-datasource";

/// The environment Grafana's plugin manager and go-plugin set for a backend plugin.
pub fn grafana_env(data: &Path, provisioning: &Path) -> Vec<(String, String)> {
    [
        ("grafana_plugin_type", "datasource"),
        ("PLUGIN_PROTOCOL_VERSIONS", "2"),
        ("PLUGIN_MIN_PORT", "10000"),
        ("PLUGIN_MAX_PORT", "25000"),
        ("GF_VERSION", "12.3.0"),
        ("GF_EDITION", "Open Source"),
        ("GF_APP_URL", "http://localhost:3000/"),
        ("GF_PLUGIN_APP_CLIENT_ID", ""),
        ("GF_INSTANCE_FEATURE_TOGGLES_ENABLE", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([
        ("GF_PATHS_DATA".to_string(), data.display().to_string()),
        (
            "GF_PATHS_PROVISIONING".to_string(),
            provisioning.display().to_string(),
        ),
    ])
    .collect()
}

/// [`grafana_env`] with Grafana's data and provisioning folders created under `dir`.
pub fn grafana_env_in(dir: &Path) -> Vec<(String, String)> {
    let data = dir.join("grafana-data");
    let prov = dir.join("provisioning");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&prov).unwrap();
    grafana_env(&data, &prov)
}

/// A running plugin process as Grafana holds it.
pub struct PluginProcess {
    child: ChildGuard,
    pub addr: String,
    pub channel: Channel,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl PluginProcess {
    /// Starts the plugin with exactly `env` (plus PATH), reads the handshake line.
    pub async fn start(env: &[(String, String)]) -> PluginProcess {
        PluginProcess::start_exe(&binary(), env).await
    }

    /// Starts a given executable (the dist folder's copy, say) as Grafana would.
    pub async fn start_exe(exe: &Path, env: &[(String, String)]) -> PluginProcess {
        let mut cmd = Command::new(exe);
        cmd.env_clear();
        cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Killed at once when dropped, as Grafana kills a plugin it gives up on.
        let mut child = ChildGuard::new("the plugin", cmd.spawn().expect("start plugin binary"))
            .stop_signal("KILL");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the plugin never blocks on a full pipe.
            let mut sink = String::new();
            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| {
                panic!(
                    "no handshake within 20 s; stderr: {:?}",
                    lines.lock().unwrap()
                )
            });
        let addr = parse_handshake(line.trim()).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .expect("connect to plugin");
        PluginProcess {
            child,
            addr,
            channel,
            stderr: lines,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    pub async fn health_serving(&self) -> bool {
        let mut c = HealthClient::new(self.channel.clone());
        let r = c
            .check(arrowmon::proto::health::HealthCheckRequest {
                service: "plugin".into(),
            })
            .await
            .expect("health check");
        r.into_inner().status
            == arrowmon::proto::health::health_check_response::ServingStatus::Serving as i32
    }

    pub async fn check_health(&self, ctx: pb::PluginContext) -> pb::CheckHealthResponse {
        let mut c = pb::diagnostics_client::DiagnosticsClient::new(self.channel.clone());
        c.check_health(pb::CheckHealthRequest {
            plugin_context: Some(ctx),
            headers: HashMap::new(),
        })
        .await
        .expect("CheckHealth")
        .into_inner()
    }

    /// The plugin's own metrics in Prometheus text, as Grafana collects them.
    pub async fn collect_metrics(&self) -> String {
        let mut c = pb::diagnostics_client::DiagnosticsClient::new(self.channel.clone());
        let r = c
            .collect_metrics(pb::CollectMetricsRequest::default())
            .await
            .expect("CollectMetrics")
            .into_inner();
        String::from_utf8(r.metrics.expect("a metrics payload").prometheus)
            .expect("metrics are text")
    }

    pub async fn query_data(
        &self,
        ctx: pb::PluginContext,
        queries: Vec<pb::DataQuery>,
    ) -> pb::QueryDataResponse {
        self.query_data_with_headers(ctx, HashMap::new(), queries)
            .await
    }

    /// QueryData with request headers, as Grafana's alerting sends
    /// (`FromAlert: true`).
    pub async fn query_data_with_headers(
        &self,
        ctx: pb::PluginContext,
        headers: HashMap<String, String>,
        queries: Vec<pb::DataQuery>,
    ) -> pb::QueryDataResponse {
        let mut c = pb::data_client::DataClient::new(self.channel.clone());
        c.query_data(pb::QueryDataRequest {
            plugin_context: Some(ctx),
            headers,
            queries,
            ..Default::default()
        })
        .await
        .expect("QueryData")
        .into_inner()
    }

    pub async fn call_resource(
        &self,
        ctx: pb::PluginContext,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> (i32, Value) {
        let (code, _, v) = self
            .call_resource_with(ctx, method, path_and_query, body, &[])
            .await;
        (code, v)
    }

    /// [`Self::call_resource`] with request headers (a form body's Content-Type is
    /// added unless given), answering the response headers too.
    pub async fn call_resource_with(
        &self,
        ctx: pb::PluginContext,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        request_headers: &[(&str, &str)],
    ) -> (i32, HashMap<String, Vec<String>>, Value) {
        let mut c = pb::resource_client::ResourceClient::new(self.channel.clone());
        let path = path_and_query.split('?').next().unwrap_or("").to_string();
        let mut headers = HashMap::new();
        if !body.is_empty() {
            headers.insert(
                "Content-Type".to_string(),
                pb::StringList {
                    values: vec!["application/x-www-form-urlencoded".into()],
                },
            );
        }
        for (k, v) in request_headers {
            headers.insert(
                k.to_string(),
                pb::StringList {
                    values: vec![v.to_string()],
                },
            );
        }
        let mut stream = c
            .call_resource(pb::CallResourceRequest {
                plugin_context: Some(ctx),
                path,
                method: method.into(),
                url: format!("/api/datasources/uid/x/resources/{path_and_query}"),
                headers,
                body: body.to_vec(),
            })
            .await
            .expect("CallResource")
            .into_inner();
        let mut code = 0;
        let mut bytes = Vec::new();
        let mut response_headers = HashMap::new();
        while let Some(chunk) = stream.message().await.expect("resource stream") {
            if chunk.code != 0 {
                code = chunk.code;
            }
            for (k, v) in chunk.headers {
                response_headers.insert(k, v.values);
            }
            bytes.extend(chunk.body);
        }
        let v = serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
        (code, response_headers, v)
    }

    /// go-plugin's stop: GRPCController/Shutdown, then a kill after 2 s. Returns the
    /// exit status and how long the process took to exit.
    pub async fn shutdown(mut self) -> (Option<ExitStatus>, Duration) {
        let start = Instant::now();
        let mut c = GrpcControllerClient::new(self.channel.clone());
        let _ = c.shutdown(arrowmon::proto::goplugin::Empty {}).await;
        let status = self.wait_exit(Duration::from_secs(2));
        let took = start.elapsed();
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        (status, took)
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status();
    }

    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// Parses go-plugin's handshake `CORE|APP|NETWORK|ADDR|PROTOCOL`.
pub fn parse_handshake(line: &str) -> Result<String, String> {
    let parts: Vec<&str> = line.split('|').collect();
    if parts.len() < 5 {
        return Err("handshake has fewer than 5 parts".into());
    }
    if parts[0] != "1" || parts[1] != "2" || parts[2] != "tcp" || parts[4] != "grpc" {
        return Err("unexpected handshake".into());
    }
    if !parts[3].starts_with("127.0.0.1:") {
        return Err("plugin must listen on loopback".into());
    }
    Ok(parts[3].to_string())
}

/// A PluginContext as Grafana builds it for a datasource request.
pub struct Datasource {
    pub org_id: i64,
    pub uid: String,
    pub json_data: Value,
    pub secure: HashMap<String, String>,
    pub last_updated_ms: i64,
}

impl Datasource {
    pub fn new(org_id: i64, uid: &str, json_data: Value) -> Datasource {
        Datasource {
            org_id,
            uid: uid.into(),
            json_data,
            secure: HashMap::new(),
            last_updated_ms: 1_700_000_000_000,
        }
    }

    pub fn context(&self, role: Option<&str>) -> pb::PluginContext {
        pb::PluginContext {
            org_id: self.org_id,
            plugin_id: PLUGIN_ID.into(),
            user: role.map(|r| pb::User {
                login: "alice".into(),
                name: "Alice".into(),
                email: "alice@example.org".into(),
                role: r.into(),
            }),
            app_instance_settings: None,
            data_source_instance_settings: Some(pb::DataSourceInstanceSettings {
                id: 7,
                name: "arrowmon".into(),
                url: String::new(),
                user: String::new(),
                database: String::new(),
                basic_auth_enabled: false,
                basic_auth_user: String::new(),
                json_data: self.json_data.to_string().into_bytes(),
                decrypted_secure_json_data: self.secure.clone(),
                last_updated_ms: self.last_updated_ms,
                uid: self.uid.clone(),
                api_version: String::new(),
            }),
            grafana_config: HashMap::from([
                (
                    "GF_APP_URL".to_string(),
                    "http://localhost:3000/".to_string(),
                ),
                (
                    "GF_SQL_MAX_OPEN_CONNS_DEFAULT".to_string(),
                    "100".to_string(),
                ),
                ("GF_CONCURRENT_QUERY_COUNT".to_string(), "4".to_string()),
            ]),
            plugin_version: "0.1.0".into(),
            user_agent: "Grafana/12.3.0 (linux; amd64)".into(),
            api_version: String::new(),
        }
    }
}

/// A DataQuery as Grafana sends it for a panel.
pub fn data_query(
    ref_id: &str,
    model: Value,
    from_ms: i64,
    to_ms: i64,
    interval_ms: i64,
) -> pb::DataQuery {
    pb::DataQuery {
        ref_id: ref_id.into(),
        max_data_points: 1000,
        interval_ms,
        time_range: Some(pb::TimeRange {
            from_epoch_ms: from_ms,
            to_epoch_ms: to_ms,
        }),
        json: model.to_string().into_bytes(),
        query_type: String::new(),
    }
}

/// `jsonData` with a scrape config of one job scraping `targets` every second.
pub fn json_data_scraping(targets: &[&str]) -> Value {
    let list = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    serde_json::json!({
        "timeInterval": "1s",
        "scrapeConfig": format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: test\n    static_configs:\n      - targets: [{list}]\n"
        ),
    })
}
