//! The demo: `docker-compose.yml` and the `Dockerfile` checked statically (no Docker
//! engine runs here), and the no-Docker demo `scripts/demo.sh` run for a bounded time.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::Value;
use serde_norway::Value as Yaml;

fn compose() -> Yaml {
    let text = std::fs::read_to_string(repo_root().join("docker-compose.yml")).unwrap();
    serde_norway::from_str(&text).expect("docker-compose.yml is YAML")
}

fn dockerfile() -> String {
    std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap()
}

fn plugin_id() -> String {
    let p: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("plugin.json")).unwrap())
            .unwrap();
    p["id"].as_str().unwrap().to_string()
}

fn services(c: &Yaml) -> &serde_norway::Mapping {
    c["services"].as_mapping().expect("services")
}

fn str_list(v: &Yaml) -> Vec<String> {
    v.as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

/// `depends_on` as a list of names (short list or long map form).
fn depends_on(s: &Yaml) -> Vec<String> {
    match &s["depends_on"] {
        Yaml::Sequence(_) => str_list(&s["depends_on"]),
        Yaml::Mapping(m) => m
            .keys()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

/// The installed Debian package's upstream version ("1.5.0" of "1.5.0-1+b5").
fn deb_version(pkg: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", pkg])
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() || v.is_empty() {
        return None;
    }
    let v = v.split_once(':').map_or(v.as_str(), |(_, r)| r).to_string();
    Some(v.split(['-', '+', '~']).next().unwrap().to_string())
}

#[test]
fn compose_services_images_ports_and_mounts() {
    let c = compose();
    let svcs = services(&c);
    let names: BTreeSet<String> = svcs
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    for want in [
        "grafana",
        "mariadb-1",
        "mariadb-2",
        "mysqld-exporter-1",
        "mysqld-exporter-2",
        "node-exporter-1",
        "node-exporter-2",
        "loadgen",
    ] {
        assert!(names.contains(want), "service {want} missing: {names:?}");
    }

    // Images: every service but grafana (built) uses an image pinned by version tag,
    // at the versions the test suite runs (Debian packages).
    let mut pinned = Vec::new();
    for (name, s) in svcs {
        let name = name.as_str().unwrap();
        if name == "grafana" {
            assert_eq!(
                s["build"].as_str(),
                Some("."),
                "grafana is built by ./Dockerfile"
            );
            continue;
        }
        let image = s["image"]
            .as_str()
            .unwrap_or_else(|| panic!("service {name} has no image"));
        let (repo, tag) = image
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{name}: image {image} has no tag"));
        assert!(
            tag != "latest"
                && tag
                    .trim_start_matches('v')
                    .starts_with(|c: char| c.is_ascii_digit()),
            "{name}: image {image} is not pinned to a version"
        );
        pinned.push((repo.to_string(), tag.to_string()));
    }
    let tag_of = |repo: &str| {
        pinned
            .iter()
            .filter(|(r, _)| r == repo)
            .map(|(_, t)| t.clone())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        tag_of("prom/node-exporter"),
        BTreeSet::from(["v1.5.0".to_string()])
    );
    assert_eq!(
        tag_of("prom/mysqld-exporter"),
        BTreeSet::from(["v0.14.0".to_string()])
    );
    assert_eq!(tag_of("mariadb"), BTreeSet::from(["10.11".to_string()]));
    for (pkg, tag) in [
        ("prometheus-node-exporter", "1.5.0"),
        ("prometheus-mysqld-exporter", "0.14.0"),
    ] {
        if let Some(v) = deb_version(pkg) {
            assert_eq!(v, tag, "the tests run {pkg} {v}; the demo pins {tag}");
        }
    }
    if let Some(v) = deb_version("mariadb-server") {
        assert!(
            v.starts_with("10.11."),
            "the tests run MariaDB {v}; the demo pins 10.11"
        );
    }

    // Grafana: port 3000, the unsigned plugin allowed for this id only, anonymous
    // Viewer, the documented admin login, provisioning mounted, a named data volume.
    let g = &c["services"]["grafana"];
    assert_eq!(str_list(&g["ports"]), vec!["3000:3000".to_string()]);
    let env = &g["environment"];
    assert_eq!(
        env["GF_PLUGINS_ALLOW_LOADING_UNSIGNED_PLUGINS"].as_str(),
        Some(plugin_id().as_str())
    );
    assert_eq!(env["GF_AUTH_ANONYMOUS_ENABLED"].as_str(), Some("true"));
    assert_eq!(env["GF_AUTH_ANONYMOUS_ORG_ROLE"].as_str(), Some("Viewer"));
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let (user, pass) = (
        env["GF_SECURITY_ADMIN_USER"].as_str().unwrap(),
        env["GF_SECURITY_ADMIN_PASSWORD"].as_str().unwrap(),
    );
    assert!(
        readme.contains(&format!("{user} / {pass}")),
        "README must document the admin login {user} / {pass}"
    );
    if let Some(home) = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].as_str() {
        let rel = home
            .strip_prefix("/etc/grafana/provisioning/")
            .expect("home dashboard under the mounted provisioning");
        assert!(
            repo_root().join("provisioning").join(rel).is_file(),
            "{home}"
        );
    }

    // Mounts: bind sources exist in the repository; named volumes are declared;
    // no exporter publishes a port (only Grafana is reachable from the host).
    let declared: BTreeSet<String> = c["volumes"]
        .as_mapping()
        .map(|m| m.keys().map(|k| k.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    let mut used_named = BTreeSet::new();
    for (name, s) in svcs {
        let name = name.as_str().unwrap();
        for v in str_list(&s["volumes"]) {
            let parts: Vec<&str> = v.split(':').collect();
            assert!(parts.len() >= 2, "{name}: volume {v} has no target");
            let src = parts[0];
            if src.starts_with("./") || src.starts_with('/') {
                assert!(src.starts_with("./"), "{name}: {v}: absolute host path");
                assert!(
                    repo_root().join(&src[2..]).exists(),
                    "{name}: mount source {src} does not exist"
                );
                if parts.get(2).is_none_or(|o| !o.contains("ro")) {
                    panic!("{name}: bind mount {v} should be read-only");
                }
            } else {
                assert!(
                    declared.contains(src),
                    "{name}: volume {src} is not declared"
                );
                used_named.insert(src.to_string());
            }
        }
        if name != "grafana" {
            assert!(s["ports"].is_null(), "{name} publishes ports");
        }
        for dep in depends_on(s) {
            assert!(
                names.contains(&dep),
                "{name} depends on unknown service {dep}"
            );
        }
    }
    assert_eq!(used_named, declared, "declared volumes vs the ones used");
    for db in ["mariadb-1", "mariadb-2"] {
        assert!(
            str_list(&c["services"][db]["volumes"])
                .iter()
                .any(|v| v.ends_with(":/var/lib/mysql")),
            "{db}: data must be on a named volume"
        );
    }
    assert!(
        str_list(&g["volumes"])
            .iter()
            .any(|v| v.ends_with(":/var/lib/grafana")),
        "Grafana (and the plugin's store under it) must keep its data on a named volume"
    );
}

/// The provisioned datasource evaluates the shipped rules, exactly as the file
/// `serve` reads them holds them.
#[test]
fn provisioned_rules_are_the_shipped_rules() {
    let ds: Yaml = serde_norway::from_str(
        &std::fs::read_to_string(repo_root().join("provisioning/datasources/arrowmon.yaml"))
            .unwrap(),
    )
    .unwrap();
    let provisioned = ds["datasources"][0]["jsonData"]["ruleConfig"]
        .as_str()
        .expect("jsonData.ruleConfig in the provisioned datasource");
    let shipped = std::fs::read_to_string(repo_root().join("rules/arrowmon.rules.yml")).unwrap();
    assert!(
        provisioned == shipped,
        "provisioning/datasources/arrowmon.yaml's ruleConfig differs from rules/arrowmon.rules.yml"
    );
    let groups = arrowmon::rules::parse_rule_file(&shipped, &Default::default())
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(groups.rule_count() >= 10);
}

/// The provisioned datasource scrapes the compose services on their exporter ports,
/// and the exporters log in with the user demo/mariadb-init.sql creates.
#[test]
fn provisioned_scrape_targets_are_compose_services() {
    let c = compose();
    let ds: Yaml = serde_norway::from_str(
        &std::fs::read_to_string(repo_root().join("provisioning/datasources/arrowmon.yaml"))
            .unwrap(),
    )
    .unwrap();
    let entry = &ds["datasources"][0];
    assert_eq!(entry["type"].as_str(), Some(plugin_id().as_str()));
    let scrape: Yaml =
        serde_norway::from_str(entry["jsonData"]["scrapeConfig"].as_str().unwrap()).unwrap();
    let mut by_job = std::collections::BTreeMap::new();
    for job in scrape["scrape_configs"].as_sequence().unwrap() {
        let targets: Vec<String> = job["static_configs"]
            .as_sequence()
            .into_iter()
            .flatten()
            .flat_map(|sc| str_list(&sc["targets"]))
            .collect();
        by_job.insert(job["job_name"].as_str().unwrap().to_string(), targets);
    }
    let expect_port = |job: &str, image: &str, port: &str| {
        let targets = by_job
            .get(job)
            .unwrap_or_else(|| panic!("no job {job} in {by_job:?}"));
        assert!(!targets.is_empty());
        let mut hosts = BTreeSet::new();
        for t in targets {
            let (host, p) = t.rsplit_once(':').unwrap();
            assert_eq!(p, port, "{t}");
            let s = &c["services"][host];
            assert!(
                s["image"].as_str().is_some_and(|i| i.starts_with(image)),
                "target {t}: service {host} is not a {image} container"
            );
            hosts.insert(host.to_string());
        }
        hosts
    };
    assert_eq!(expect_port("node", "prom/node-exporter:", "9100").len(), 2);
    assert_eq!(
        expect_port("mysql", "prom/mysqld-exporter:", "9104").len(),
        2
    );
    // The same servers without an exporter, over SQL, as the monitoring user the
    // servers' init script creates, its password from the secure fields.
    assert_eq!(expect_port("mysql-sql", "mariadb:", "3306").len(), 2);
    let sql_job = scrape["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|j| j["job_name"].as_str() == Some("mysql-sql"))
        .unwrap();
    assert_eq!(
        sql_job["mysql"]["password"].as_str(),
        Some("${secure.mysqlPassword}")
    );
    let password = entry["secureJsonData"]["mysqlPassword"].as_str().unwrap();
    let user = sql_job["mysql"]["user"].as_str().unwrap();
    let init = std::fs::read_to_string(repo_root().join("demo/mariadb-init.sql")).unwrap();
    assert!(
        init.contains(&format!("'{user}'@'%' IDENTIFIED BY '{password}'")),
        "demo/mariadb-init.sql creates {user} with the provisioned password"
    );
    // The plugin's own metrics, as Grafana serves them, for the arrowmon dashboard.
    let own = by_job
        .get("arrowmon")
        .expect("a job scraping the plugin's own metrics");
    assert_eq!(own, &vec!["localhost:3000".to_string()]);

    // mysqld_exporter 0.14 reads DATA_SOURCE_NAME; user and password must be the
    // ones demo/mariadb-init.sql creates, and the host one of the database services.
    let init = std::fs::read_to_string(repo_root().join("demo/mariadb-init.sql")).unwrap();
    for n in ["1", "2"] {
        let dsn = c["services"][format!("mysqld-exporter-{n}").as_str()]["environment"]
            ["DATA_SOURCE_NAME"]
            .as_str()
            .expect("DATA_SOURCE_NAME");
        let (cred, rest) = dsn.split_once("@(").expect("user:pass@(host:port)/");
        let (user, pass) = cred.split_once(':').unwrap();
        assert!(
            init.contains(&format!("'{user}'@'%' IDENTIFIED BY '{pass}'")),
            "{dsn}: demo/mariadb-init.sql does not create {user} with that password"
        );
        let host = rest.split(':').next().unwrap();
        assert_eq!(host, format!("mariadb-{n}"));
        assert!(c["services"][host]["image"]
            .as_str()
            .unwrap()
            .starts_with("mariadb:"));
    }
}

#[test]
fn dockerfile_builds_the_plugin_as_the_test_suite_does() {
    let df = dockerfile();
    let id = plugin_id();
    // The final stage: the Ubuntu variant of the official Grafana 13 image, pinned.
    let froms: Vec<&str> = df
        .lines()
        .filter_map(|l| l.trim().strip_prefix("FROM "))
        .collect();
    let last = froms
        .last()
        .expect("a FROM line")
        .split_whitespace()
        .next()
        .unwrap();
    let tag = last
        .strip_prefix("grafana/grafana:")
        .unwrap_or_else(|| panic!("final image {last} is not grafana/grafana"));
    let version = tag
        .strip_suffix("-ubuntu")
        .unwrap_or_else(|| panic!("{last}: not the Ubuntu variant (the plugin links glibc)"));
    let parts: Vec<&str> = version.split('.').collect();
    assert!(
        parts.len() == 3 && parts[0] == "13" && parts.iter().all(|p| p.parse::<u32>().is_ok()),
        "{last}: Grafana must be pinned to a 13.x.y release"
    );
    for f in &froms {
        let image = f.split_whitespace().next().unwrap();
        assert!(
            image.contains(':') && !image.ends_with(":latest"),
            "base image {image} is not pinned"
        );
    }
    // The Rust toolchain image is at least the crate's rust-version.
    let cargo = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let msrv = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap();
    let rust = froms
        .iter()
        .find_map(|f| f.strip_prefix("rust:"))
        .expect("a rust: build stage");
    let rust_ver: Vec<u32> = rust
        .split(['-', ' '])
        .next()
        .unwrap()
        .split('.')
        .map(|p| p.parse().unwrap())
        .collect();
    let msrv: Vec<u32> = msrv.split('.').map(|p| p.parse().unwrap()).collect();
    assert!(
        rust_ver >= msrv,
        "rust image {rust_ver:?} older than rust-version {msrv:?}"
    );

    // The plugin lands in Grafana's plugins folder (GF_PATHS_PLUGINS) under its id,
    // and no volume of the grafana service covers that folder: a volume would keep
    // the plugin of the first `docker compose up` and hide every rebuilt one.
    let plugins = df
        .lines()
        .find_map(|l| l.trim().strip_prefix("ENV GF_PATHS_PLUGINS="))
        .expect("the Dockerfile sets GF_PATHS_PLUGINS")
        .trim()
        .to_string();
    assert!(
        df.lines().any(|l| l.starts_with("COPY --from=dist ")
            && l.trim_end().ends_with(&format!("{plugins}/{id}"))),
        "the Dockerfile must install the plugin as {plugins}/{id}"
    );
    let compose: serde_norway::Value = serde_norway::from_str(
        &std::fs::read_to_string(repo_root().join("docker-compose.yml")).unwrap(),
    )
    .unwrap();
    for v in compose["services"]["grafana"]["volumes"]
        .as_sequence()
        .expect("grafana's volumes")
    {
        let target = v.as_str().unwrap().split(':').nth(1).unwrap_or("");
        let target = target.trim_end_matches('/');
        assert!(
            !(plugins == target || plugins.starts_with(&format!("{target}/"))),
            "the volume {v:?} covers the plugins folder {plugins}"
        );
    }

    // Every RUN command is one the test suite's build runs (scripts/test.sh and
    // scripts/dist.sh), so the image holds what the tests tested.
    let suite = format!(
        "{}\n{}",
        std::fs::read_to_string(repo_root().join("scripts/test.sh")).unwrap(),
        std::fs::read_to_string(repo_root().join("scripts/dist.sh")).unwrap()
    );
    let mut runs = Vec::new();
    for l in df.lines() {
        if let Some(cmd) = l.trim().strip_prefix("RUN ") {
            for part in cmd.split("&&") {
                runs.push(part.split_whitespace().collect::<Vec<_>>().join(" "));
            }
        }
    }
    assert!(runs.iter().any(|r| r.starts_with("cargo build --release")));
    assert!(runs.iter().any(|r| r == "npm run build"));
    for r in &runs {
        // The output folder of dist.sh --layout-only is the one argument that differs.
        let cmp = match r.strip_prefix("bash scripts/dist.sh --layout-only ") {
            Some(_) => "bash scripts/dist.sh --layout-only".to_string(),
            None => r.clone(),
        };
        assert!(
            suite.contains(&cmp),
            "Dockerfile runs `{r}`, which scripts/test.sh and scripts/dist.sh never run"
        );
    }

    // COPY sources exist, and the backend stage copies everything Cargo.toml needs.
    for l in df.lines() {
        let Some(rest) = l.trim().strip_prefix("COPY ") else {
            continue;
        };
        if rest.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        for src in &words[..words.len() - 1] {
            assert!(
                repo_root().join(src).exists(),
                "COPY source {src} does not exist"
            );
        }
    }
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "proto",
        "src",
        "benches",
    ] {
        assert!(
            df.lines().any(|l| l.trim().starts_with("COPY ")
                && l.split_whitespace()
                    .any(|w| w == needed || w == format!("{needed}/"))),
            "the backend stage does not copy {needed}"
        );
    }
    // Node of the frontend stage satisfies frontend/package.json engines.
    let pkg: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("frontend/package.json")).unwrap(),
    )
    .unwrap();
    if let Some(engine) = pkg["engines"]["node"].as_str() {
        let major: u32 = engine
            .trim_start_matches(">=")
            .split('.')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let node = froms
            .iter()
            .find_map(|f| f.strip_prefix("node:"))
            .expect("a node: build stage");
        let node_major: u32 = node.split(['.', '-']).next().unwrap().parse().unwrap();
        assert!(node_major >= major, "node:{node} vs engines {engine}");
    }
}

// ---------------------------------------------------------------------------------
// The no-Docker demo

fn proc_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(") ").next().unwrap_or("").chars().next();
            state != Some('Z')
        })
        .unwrap_or(false)
}

/// Field 22 of /proc/PID/stat, as scripts/topology-lib.sh records it.
fn proc_starttime(pid: u32) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit(") ")
        .next()?
        .split_whitespace()
        .nth(19)
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_script_runs_bounded_and_answers_the_prometheus_api() {
    let t0 = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("amdemo")
        .tempdir_in("/tmp")
        .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    // Stopped with SIGINT if the test fails midway (the script stops its own children).
    let mut child = ChildGuard::new(
        "scripts/demo.sh",
        Command::new("bash")
            .arg(repo_root().join("scripts/demo.sh"))
            .args(["--duration", "20", "--listen", &listen, "--dir"])
            .arg(dir.path())
            .env("ARROWMON_BIN", binary())
            .env("SCRAPE_INTERVAL", "2s")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run scripts/demo.sh"),
    )
    .stop_signal("INT")
    .grace(Duration::from_secs(60));

    // reqwest is built without a default rustls provider: the crate installs ring.
    arrowmon::scrape::tls::install_default_provider();
    let client = reqwest::Client::new();
    let base = format!("http://{listen}");
    let up = eventually(Duration::from_secs(60), "the demo's targets up", || {
        let (client, base) = (&client, &base);
        async move {
            let r = client
                .get(format!("{base}/api/v1/query?query=up"))
                .send()
                .await
                .ok()?;
            let v: Value = serde_json::from_str(&r.text().await.ok()?).ok()?;
            let res = v["data"]["result"].as_array()?.clone();
            (res.len() == 6 && res.iter().all(|s| s["value"][1] == "1")).then_some(res)
        }
    })
    .await;
    let jobs: BTreeSet<String> = up
        .iter()
        .map(|s| s["metric"]["job"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        jobs,
        BTreeSet::from([
            "arrowmon".into(),
            "mysql".into(),
            "mysql-sql".into(),
            "node".into()
        ])
    );
    // Both MySQL jobs give the exporter's series: the dashboard's job variable
    // (label_values(mysql_up, job)) offers either.
    let q = "count by (job) (mysql_global_status_uptime)";
    let url = format!(
        "{base}/api/v1/query?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("query", q)
            .finish()
    );
    let v: Value =
        serde_json::from_str(&client.get(url).send().await.unwrap().text().await.unwrap()).unwrap();
    let counts: BTreeSet<(String, String)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["metric"]["job"].as_str().unwrap().to_string(),
                s["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        BTreeSet::from([
            ("mysql".into(), "2".into()),
            ("mysql-sql".into(), "2".into())
        ])
    );
    // A MySQL metric through the API, with a rate once there are a few scrapes.
    let rate = eventually(Duration::from_secs(20), "a MySQL query rate", || {
        let (client, base) = (&client, &base);
        async move {
            let q = "sum(rate(mysql_global_status_queries[10s]))";
            let url = format!(
                "{base}/api/v1/query?{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("query", q)
                    .finish()
            );
            let v: Value =
                serde_json::from_str(&client.get(url).send().await.ok()?.text().await.ok()?)
                    .ok()?;
            let x: f64 = v["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
            (x > 0.0).then_some(x)
        }
    })
    .await;
    assert!(rate > 0.0);

    // It stops by itself after --duration, and stops everything it started.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "demo.sh did not stop after --duration 20"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "demo.sh failed: {status:?}\n{out}\n{err}");
    assert!(
        out.contains(&format!("http://{listen}")),
        "prints the API address:\n{out}"
    );
    assert!(
        out.contains("promtool"),
        "prints how to use promtool:\n{out}"
    );
    assert!(
        client.get(format!("{base}/-/ready")).send().await.is_err(),
        "arrowmon still answers after the demo stopped"
    );
    let stopped = std::fs::read_to_string(dir.path().join("topology/pids.stopped"))
        .expect("the topology was stopped (pids.stopped)");
    for line in stopped.lines() {
        // "PID STARTTIME NAME": the same process only if the start time matches too.
        let mut f = line.split_whitespace();
        let pid: u32 = f.next().unwrap().parse().unwrap();
        let start = f.next().unwrap();
        assert!(
            !(proc_alive(pid) && proc_starttime(pid).as_deref() == Some(start)),
            "topology process {line} still runs"
        );
    }
    assert!(Path::new(&dir.path().join("scrape.yml")).is_file());
    eprintln!("demo test took {:.1} s", t0.elapsed().as_secs_f64());
}
