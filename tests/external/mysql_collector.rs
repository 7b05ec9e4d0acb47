//! The SQL collector (`mysql:` jobs, src/collect/) against a real
//! prometheus-mysqld-exporter 0.14.0 on the same MariaDB 10.11 servers of the
//! topology, under its load generator: the same series (names, label sets,
//! TYPE, HELP) but for the differences the README lists, variables equal,
//! counters between the exporter's reads before and after, query analytics
//! (`perf_schema.eventsstatements`) included, with the exporter's defaults and
//! with its limits set; the same for a user
//! without grants, a wrong password and a server that is down, each against an
//! exporter of the test's own in the same state. Then the collector as a
//! job of `gpx_arrowmon serve`: up, the targets API's health and errors for a
//! server that is down, a wrong password and a missing grant, metric
//! relabeling, and no password anywhere in what it says.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use arrowmon::collect::MysqlTarget;
use arrowmon::config::{MysqlCollector, MysqlConfig, SecretValue};

use crate::support::*;

/// Families of the exporter that the collector does not give, with the reason
/// (the README's list).
const NOT_COLLECTED: [(&str, &str); 4] = [
    ("go_", "the exporter's Go runtime"),
    ("process_", "the exporter's process"),
    ("promhttp_", "the exporter's HTTP handler"),
    ("mysqld_exporter_build_info", "the exporter's build"),
];

/// Values that differ by what they count, not by the server: each reader's own
/// collections and timings.
const OWN_VALUES: [&str; 2] = [
    "mysql_exporter_scrapes_total",
    "mysql_exporter_collector_duration_seconds",
];

/// Untyped status values that only grow, checked between the exporter's reads.
const GROWING_STATUS: [&str; 5] = [
    "mysql_global_status_uptime",
    "mysql_global_status_queries",
    "mysql_global_status_questions",
    "mysql_global_status_bytes_received",
    "mysql_global_status_connections",
];

#[derive(Debug, Default)]
struct Exposition {
    /// Family name → (HELP, TYPE).
    families: BTreeMap<String, (String, String)>,
    /// (sample name, sorted label pairs) → value.
    samples: BTreeMap<(String, Vec<(String, String)>), f64>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut e = Exposition::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                e.families.entry(name.into()).or_default().0 = help.into();
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                e.families.entry(name.into()).or_default().1 = kind.into();
            } else if !line.is_empty() && !line.starts_with('#') {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let (name, labels) = match series.split_once('{') {
                    Some((n, l)) => (n, parse_labels(l.strip_suffix('}').unwrap())),
                    None => (series, Vec::new()),
                };
                let v = match value {
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    v => v.parse().unwrap_or_else(|_| panic!("value of {line}")),
                };
                e.samples.insert((name.into(), labels), v);
            }
        }
        e
    }

    /// The family a sample belongs to (histogram suffixes stripped).
    fn family_of(&self, sample: &str) -> String {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = sample.strip_suffix(suffix) {
                if self.families.get(base).is_some_and(|f| f.1 == "histogram") {
                    return base.into();
                }
            }
        }
        sample.into()
    }
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|&c| c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "label {name} in {text}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.push((name.trim_start_matches(',').to_string(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out.sort();
    out
}

fn not_collected(family: &str) -> bool {
    NOT_COLLECTED.iter().any(|(p, _)| family.starts_with(p))
}

/// Runs SQL as root over the server's socket.
fn root_sql(socket: &str, sql: &str) -> String {
    let out = Command::new("mariadb")
        .args(["--no-defaults", "-uroot", "-Nse"])
        .arg(sql)
        .arg(format!("--socket={socket}"))
        .output()
        .expect("run mariadb");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn fetch(client: &reqwest::Client, addr: &str) -> String {
    let resp = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{addr}: {}", resp.status());
    resp.text().await.unwrap()
}

/// mysqld_exporter's defaults and `perf_schema.eventsstatements`, as the
/// topology's exporters run.
fn with_query_analytics(mut config: MysqlConfig) -> MysqlConfig {
    config
        .collectors
        .push(MysqlCollector::PerfSchemaEventsStatements);
    config
}

/// The statement digests of a reading: (schema, digest, digest_text) of
/// `mysql_perf_schema_events_statements_total`.
fn digests(e: &Exposition) -> BTreeSet<Vec<(String, String)>> {
    e.samples
        .keys()
        .filter(|(name, _)| name == "mysql_perf_schema_events_statements_total")
        .map(|(_, labels)| labels.clone())
        .collect()
}

fn sql_config(user: &str, password: &str) -> MysqlConfig {
    MysqlConfig {
        user: user.into(),
        password: Some(SecretValue::Inline(password.into())),
        tls: None,
        collectors: MysqlCollector::DEFAULTS.to_vec(),
        events_statements: Default::default(),
    }
}

/// Compares one server: the exporter read before (`a`) and after (`c`) the
/// collector's read (`b`). Returns the number of series compared.
fn compare(server: &str, a: &Exposition, b: &Exposition, c: &Exposition) -> usize {
    let mut problems = Vec::new();
    for (name, (help, kind)) in &a.families {
        if not_collected(name) {
            continue;
        }
        match b.families.get(name) {
            None => problems.push(format!("family {name} missing")),
            Some((h, k)) if h != help || k != kind => problems.push(format!(
                "family {name}: HELP/TYPE {h:?}/{k} where the exporter has {help:?}/{kind}"
            )),
            Some(_) => {}
        }
    }
    for name in b.families.keys() {
        if !a.families.contains_key(name) {
            problems.push(format!("family {name} is not the exporter's"));
        }
    }
    let mut compared = 0;
    for ((name, labels), &va) in &a.samples {
        let family = a.family_of(name);
        if not_collected(&family) {
            continue;
        }
        let Some(&vb) = b.samples.get(&(name.clone(), labels.clone())) else {
            problems.push(format!("series {name}{labels:?} missing"));
            continue;
        };
        compared += 1;
        let vc = c
            .samples
            .get(&(name.clone(), labels.clone()))
            .copied()
            .unwrap_or(va);
        let kind = a.families.get(&family).map(|f| f.1.as_str()).unwrap_or("");
        if OWN_VALUES.contains(&family.as_str()) {
            continue;
        }
        let counter_like =
            kind == "counter" || kind == "histogram" || GROWING_STATUS.contains(&family.as_str());
        let exact = family.starts_with("mysql_global_variables_")
            || family.starts_with("mysql_slave_status_")
            || family.ends_with("_info")
            || family == "mysql_transaction_isolation"
            || family == "mysql_up"
            || family == "mysql_exporter_last_scrape_error";
        if counter_like {
            if !(va <= vb && vb <= vc) {
                problems.push(format!(
                    "counter {name}{labels:?}: {vb} not between the exporter's {va} and {vc}"
                ));
            }
        } else if exact && va == vc && vb != va {
            problems.push(format!(
                "{name}{labels:?}: {vb} where the exporter has {va}"
            ));
        }
    }
    for (name, labels) in b.samples.keys() {
        if !a.samples.contains_key(&(name.clone(), labels.clone())) {
            problems.push(format!("series {name}{labels:?} is not the exporter's"));
        }
    }
    assert!(
        problems.is_empty(),
        "{server}: {} difference(s) from mysqld_exporter:\n{}",
        problems.len(),
        problems.join("\n")
    );
    compared
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_collector_series_equal_mysqld_exporter() {
    let started = Instant::now();
    let topo = Topology::start(false);
    let client = http_client();
    let user = topo.get("MYSQL_USER").to_string();
    let password = topo.get("MYSQL_PASSWORD").to_string();
    // Server 1 collects query response times; server 2 is set up as a replica
    // (not started), so both have the optional collectors' series.
    let s1 = topo.get("MYSQL_1_SOCKET").to_string();
    root_sql(&s1, "INSTALL SONAME 'query_response_time'");
    root_sql(&s1, "SET GLOBAL query_response_time_stats = ON");
    // The general log shows what the collector's session sets.
    root_sql(&s1, "SET GLOBAL log_output = 'TABLE', general_log = ON");
    let s2 = topo.get("MYSQL_2_SOCKET").to_string();
    root_sql(
        &s2,
        &format!(
            "CHANGE MASTER 'upstream' TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {}, MASTER_USER = 'repl', MASTER_PASSWORD = 'repl-pw'",
            topo.get("MYSQL_1_PORT")
        ),
    );
    // Some load first, so the counters move between reads.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut total = 0;
    for n in ["1", "2"] {
        let exporter = topo.get(&format!("MYSQLD_EXPORTER_{n}")).to_string();
        let address = format!("127.0.0.1:{}", topo.get(&format!("MYSQL_{n}_PORT")));
        let mut target = MysqlTarget::new(
            with_query_analytics(sql_config(&user, &password)),
            &address,
            Duration::from_secs(10),
        )
        .unwrap();
        // A first collection, so `mysql_exporter_*` counts are not the first.
        assert!(!target.collect().await.down, "server {n} collected");
        let a = Exposition::parse(&fetch(&client, &exporter).await);
        let collected = target.collect().await;
        let c = Exposition::parse(&fetch(&client, &exporter).await);
        assert!(
            collected.errors.is_empty(),
            "server {n}: {:?}",
            collected.errors
        );
        let b = Exposition::parse(&collected.body);
        // The load's statements, in its database, as digests.
        let seen = digests(&b);
        assert!(
            seen.len() >= 5
                && seen
                    .iter()
                    .all(|l| l.contains(&("schema".into(), "loadtest".into()))),
            "server {n}: digests {seen:?}"
        );
        if n == "1" {
            assert!(
                b.families
                    .contains_key("mysql_info_schema_query_response_time_seconds"),
                "query response times are collected"
            );
        } else {
            assert!(
                b.samples
                    .keys()
                    .any(|(name, labels)| name == "mysql_slave_status_master_port"
                        && labels.contains(&("connection_name".into(), "upstream".into()))),
                "the replica's status is collected"
            );
        }
        total += compare(&format!("server {n}"), &a, &b, &c);
    }
    assert!(total > 1500, "only {total} series compared");
    // Server 1's collector connected once (both collections on one connection) and
    // set its session's lock waits and statement time limit (2 s and the 9.75 s
    // budget of a 10 s timeout).
    let logged = root_sql(
        &s1,
        "SELECT thread_id, argument FROM mysql.general_log WHERE command_type = 'Query' AND argument LIKE 'SET SESSION %' ORDER BY event_time",
    );
    let statements: Vec<&str> = logged
        .lines()
        .map(|l| l.split_once('\t').map_or(l, |(_, s)| s))
        .collect();
    assert_eq!(
        statements,
        [
            "SET SESSION lock_wait_timeout=2",
            "SET SESSION innodb_lock_wait_timeout=2",
            "SET SESSION max_statement_time=9.750",
        ],
        "{logged}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

async fn api(client: &reqwest::Client, addr: &str, path: &str) -> serde_json::Value {
    client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap()
}

async fn instant(client: &reqwest::Client, addr: &str, query: &str) -> Vec<serde_json::Value> {
    let q: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
    let v = api(client, addr, &format!("/api/v1/query?query={q}")).await;
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mysql_job_of_serve_keeps_what_a_scrape_job_has() {
    let topo = Topology::start(false);
    let client = http_client();
    let port = topo.get("MYSQL_1_PORT").to_string();
    let socket = topo.get("MYSQL_1_SOCKET").to_string();
    let exporter = topo.get("MYSQLD_EXPORTER_1").to_string();
    // A user that may log in and nothing else.
    root_sql(
        &socket,
        "CREATE USER 'nogrant'@'127.0.0.1' IDENTIFIED BY 'nogrant-pw-123'",
    );
    let closed = free_port();
    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("exporter.pw");
    std::fs::write(&pw_file, format!("{}\n", topo.get("MYSQL_PASSWORD"))).unwrap();
    let user = topo.get("MYSQL_USER");
    let wrong = "wrong-pw-4711";
    let config = dir.path().join("arrowmon.yml");
    std::fs::write(
        &config,
        format!(
            r#"global:
  scrape_interval: 1s
scrape_configs:
  - job_name: exporter
    static_configs:
      - targets: ['{exporter}']
  - job_name: sql
    mysql:
      user: {user}
      password_file: exporter.pw
      collectors: [global_status, global_variables, slave_status, info_schema.innodb_cmp, info_schema.innodb_cmpmem, info_schema.query_response_time, perf_schema.eventsstatements]
    static_configs:
      - targets: ['127.0.0.1:{port}']
  - job_name: sql-limited
    sample_limit: 10
    mysql:
      user: {user}
      password_file: exporter.pw
    static_configs:
      - targets: ['127.0.0.1:{port}']
  - job_name: sql-wrong-password
    mysql: {{user: {user}, password: {wrong}}}
    static_configs:
      - targets: ['127.0.0.1:{port}']
  - job_name: sql-down
    mysql: {{user: {user}, password: {wrong}}}
    static_configs:
      - targets: ['127.0.0.1:{closed}']
  - job_name: sql-nogrant
    mysql: {{user: nogrant, password: nogrant-pw-123, collectors: [global_status, global_variables, slave_status, info_schema.innodb_cmp, perf_schema.eventsstatements]}}
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: 'mysql_global_variables_.*'
        action: drop
    static_configs:
      - targets: ['127.0.0.1:{port}']
"#
        ),
    )
    .unwrap();

    let check = check_config(&config);
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        stdout.contains(&format!("target  mysql://127.0.0.1:{port}"))
            && stdout.contains("mysql as user \"nogrant\"")
            && stdout.contains("perf_schema.eventsstatements: top 250 digests by total time, last seen within 86400s, text cut to 120 characters"),
        "{stdout}"
    );

    let addr = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("serve.log");
    let _serve = ChildGuard::new(
        "gpx_arrowmon serve",
        serve_command(&config, &dir.path().join("data"), &addr)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start gpx_arrowmon serve"),
    );
    let targets = eventually(Duration::from_secs(30), "every target scraped", || {
        let client = client.clone();
        let addr = addr.clone();
        async move {
            let v = client
                .get(format!("http://{addr}/api/v1/targets"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let v: serde_json::Value = serde_json::from_str(&v).ok()?;
            let active = v["data"]["activeTargets"].as_array()?.clone();
            (active.len() == 6 && active.iter().all(|t| t["health"] != "unknown")).then_some(active)
        }
    })
    .await;
    let by_job: BTreeMap<String, serde_json::Value> = targets
        .iter()
        .map(|t| (t["labels"]["job"].as_str().unwrap().to_string(), t.clone()))
        .collect();
    let sql = &by_job["sql"];
    assert_eq!(sql["health"], "up", "{sql}");
    assert_eq!(sql["lastError"], "", "{sql}");
    assert_eq!(sql["scrapeUrl"], format!("mysql://127.0.0.1:{port}"));
    assert_eq!(sql["labels"]["instance"], format!("127.0.0.1:{port}"));

    let limited = &by_job["sql-limited"];
    assert_eq!(limited["health"], "down", "{limited}");
    assert!(
        limited["lastError"]
            .as_str()
            .unwrap()
            .contains("sample limit exceeded (sample_limit: 10)"),
        "{limited}"
    );

    let wrong_pw = &by_job["sql-wrong-password"];
    let e = wrong_pw["lastError"].as_str().unwrap();
    assert_eq!(wrong_pw["health"], "down", "{wrong_pw}");
    assert!(
        e.contains(&format!("mysql://127.0.0.1:{port}")) && e.contains("Access denied for user"),
        "{e}"
    );
    let down = &by_job["sql-down"];
    let e = down["lastError"].as_str().unwrap();
    assert_eq!(down["health"], "down", "{down}");
    assert!(
        e.contains(&format!("mysql://127.0.0.1:{closed}")) && e.contains("refused"),
        "{e}"
    );
    let nogrant = &by_job["sql-nogrant"];
    let e = nogrant["lastError"].as_str().unwrap();
    assert_eq!(nogrant["health"], "up", "{nogrant}");
    assert!(
        e.contains("collect.info_schema.innodb_cmp")
            && e.contains("PROCESS")
            && e.contains("collect.slave_status")
            && e.contains("SLAVE MONITOR")
            && e.contains("collect.perf_schema.eventsstatements")
            && e.contains("SELECT on performance_schema")
            && e.contains("\"nogrant\""),
        "{e}"
    );

    // Series: up and the exporter's own, for each job as it fared.
    let value = |r: &[serde_json::Value]| -> Vec<String> {
        r.iter()
            .map(|s| s["value"][1].as_str().unwrap().to_string())
            .collect()
    };
    let q = |query: &'static str| {
        let client = client.clone();
        let addr = addr.clone();
        async move { instant(&client, &addr, query).await }
    };
    assert_eq!(value(&q(r#"up{job="sql"}"#).await), ["1"]);
    assert_eq!(value(&q(r#"mysql_up{job="sql"}"#).await), ["1"]);
    // A server that is down, or refuses the login: the target is down, and the
    // exporter's series say so as the exporter's would.
    assert_eq!(value(&q(r#"up{job="sql-down"}"#).await), ["0"]);
    assert_eq!(value(&q(r#"up{job="sql-wrong-password"}"#).await), ["0"]);
    assert_eq!(value(&q(r#"mysql_up{job="sql-down"}"#).await), ["0"]);
    assert_eq!(
        value(&q(r#"mysql_up{job="sql-wrong-password"}"#).await),
        ["0"]
    );
    assert_eq!(
        value(&q(r#"mysql_exporter_last_scrape_error{job="sql-down"}"#).await),
        ["1"]
    );
    assert!(q(r#"{job="sql-down",__name__=~"mysql_global_.*"}"#)
        .await
        .is_empty());
    assert_eq!(
        value(&q(r#"mysql_exporter_last_scrape_error{job="sql-nogrant"}"#).await),
        ["1"]
    );
    assert_eq!(
        value(&q(r#"mysql_exporter_scrape_errors_total{job="sql-nogrant",collector="collect.slave_status"} > 0"#).await).len(),
        1
    );
    assert!(
        q(r#"{job="sql-nogrant",__name__=~"mysql_global_variables_.*"}"#)
            .await
            .is_empty()
    );
    assert!(!q(r#"mysql_global_status_uptime{job="sql-nogrant"}"#)
        .await
        .is_empty());
    // The same families as the exporter's job, but for the listed differences.
    let names = |job: &'static str| {
        let client = client.clone();
        let addr = addr.clone();
        async move {
            let v = api(
                &client,
                &addr,
                &format!("/api/v1/label/__name__/values?match[]=%7Bjob%3D%22{job}%22%7D"),
            )
            .await;
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_string())
                .filter(|n| !n.starts_with("scrape_") && n != "up" && !not_collected(n))
                .collect::<BTreeSet<String>>()
        }
    };
    assert_eq!(names("sql").await, names("exporter").await);
    let scraped = value(&q(r#"scrape_samples_scraped{job="sql"}"#).await);
    assert!(scraped[0].parse::<f64>().unwrap() > 700.0, "{scraped:?}");

    // No password in what serve logged or answered.
    let logged = std::fs::read_to_string(&log).unwrap();
    let answered = serde_json::to_string(&targets).unwrap();
    for secret in [wrong, "nogrant-pw-123", topo.get("MYSQL_PASSWORD")] {
        assert!(!logged.contains(secret), "password in the log:\n{logged}");
        assert!(!answered.contains(secret), "password in the targets API");
    }
}

/// A mysqld_exporter of the test's own on `user`@`port`, and its address once it
/// listens (its first scrape is the test's).
async fn own_exporter(
    dir: &std::path::Path,
    name: &str,
    user: &str,
    password: &str,
    port: &str,
    flags: &[&str],
) -> (ChildGuard, String) {
    let cnf = dir.join(format!("{name}.cnf"));
    std::fs::write(
        &cnf,
        format!("[client]\nuser={user}\npassword={password}\nhost=127.0.0.1\nport={port}\n"),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let guard = ChildGuard::new(
        format!("mysqld_exporter {name}"),
        Command::new("prometheus-mysqld-exporter")
            .arg(format!("--config.my-cnf={}", cnf.display()))
            .arg(format!("--web.listen-address={addr}"))
            .args(flags)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
            .spawn()
            .expect("start prometheus-mysqld-exporter"),
    );
    let client = http_client();
    // The landing page answers once it listens, without a scrape.
    eventually(Duration::from_secs(10), "mysqld_exporter listening", || {
        let client = client.clone();
        let addr = addr.clone();
        async move {
            let r = client.get(format!("http://{addr}/")).send().await.ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
    (guard, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_series_equal_mysqld_exporter() {
    let topo = Topology::start(false);
    let client = http_client();
    let port = topo.get("MYSQL_1_PORT").to_string();
    root_sql(
        topo.get("MYSQL_1_SOCKET"),
        "CREATE USER 'nogrant'@'127.0.0.1' IDENTIFIED BY 'nogrant-pw-123'",
    );
    let dir = tempfile::tempdir().unwrap();
    let closed = free_port().to_string();
    for (name, user, password, port) in [
        ("missing-grants", "nogrant", "nogrant-pw-123", port.as_str()),
        ("wrong-password", "exporter", "wrong-pw-4711", port.as_str()),
        ("server-down", "exporter", "wrong-pw-4711", closed.as_str()),
    ] {
        let (_exporter, addr) = own_exporter(
            dir.path(),
            name,
            user,
            password,
            port,
            &["--collect.perf_schema.eventsstatements"],
        )
        .await;
        let mut target = MysqlTarget::new(
            with_query_analytics(sql_config(user, password)),
            &format!("127.0.0.1:{port}"),
            Duration::from_secs(10),
        )
        .unwrap();
        // Both at their first collection, so their error counts are comparable.
        let a = Exposition::parse(&fetch(&client, &addr).await);
        let collected = target.collect().await;
        let c = Exposition::parse(&fetch(&client, &addr).await);
        let b = Exposition::parse(&collected.body);
        assert_eq!(collected.down, name != "missing-grants", "{name}");
        assert!(!collected.errors.is_empty(), "{name}");
        compare(name, &a, &b, &c);
        if name == "missing-grants" {
            let errors = collected.errors.join("; ");
            assert!(
                errors.contains("collect.perf_schema.eventsstatements")
                    && errors.contains("needs SELECT on performance_schema"),
                "{errors}"
            );
            assert_eq!(
                b.samples[&(
                    "mysql_exporter_scrape_errors_total".to_string(),
                    vec![(
                        "collector".to_string(),
                        "collect.perf_schema.eventsstatements".to_string()
                    )]
                )],
                1.0
            );
        }
        let up = if name == "missing-grants" { 1.0 } else { 0.0 };
        assert_eq!(b.samples[&("mysql_up".to_string(), vec![])], up, "{name}");
        assert_eq!(
            b.samples[&("mysql_exporter_last_scrape_error".to_string(), vec![])],
            1.0,
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_analytics_limits_cut_as_mysqld_exporter() {
    let started = Instant::now();
    let topo = Topology::start(false);
    let client = http_client();
    let user = topo.get("MYSQL_USER").to_string();
    let password = topo.get("MYSQL_PASSWORD").to_string();
    let port = topo.get("MYSQL_1_PORT").to_string();
    let dir = tempfile::tempdir().unwrap();
    let (_exporter, addr) = own_exporter(
        dir.path(),
        "limited",
        &user,
        &password,
        &port,
        &[
            "--collect.perf_schema.eventsstatements",
            "--collect.perf_schema.eventsstatements.limit=3",
            "--collect.perf_schema.eventsstatements.timelimit=600",
            "--collect.perf_schema.eventsstatements.digest_text_limit=20",
        ],
    )
    .await;
    let yaml = format!(
        "scrape_configs:\n  - job_name: m\n    mysql:\n      user: {user}\n      password: {password}\n      collectors: [global_status, global_variables, slave_status, info_schema.innodb_cmp, info_schema.innodb_cmpmem, info_schema.query_response_time, perf_schema.eventsstatements]\n      perf_schema.eventsstatements: {{limit: 3, timelimit: 600, digest_text_limit: 20}}\n"
    );
    let config =
        arrowmon::config::ScrapeConfig::parse(&yaml, &arrowmon::config::SecretSource::File)
            .unwrap()
            .jobs
            .remove(0)
            .mysql
            .unwrap();
    let mut target = MysqlTarget::new(
        config,
        &format!("127.0.0.1:{port}"),
        Duration::from_secs(10),
    )
    .unwrap();
    // Some rounds of load, so every load statement has its digest.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!target.collect().await.down);
    let _ = fetch(&client, &addr).await;
    // The top three by total time can change places under load: read until the
    // exporter's two reads around the collector's agree on which three.
    let mut attempts = 0;
    let (a, b, c) = loop {
        attempts += 1;
        let a = Exposition::parse(&fetch(&client, &addr).await);
        let collected = target.collect().await;
        let c = Exposition::parse(&fetch(&client, &addr).await);
        assert!(collected.errors.is_empty(), "{:?}", collected.errors);
        if digests(&a) == digests(&c) || attempts == 5 {
            break (a, Exposition::parse(&collected.body), c);
        }
    };
    compare("limited", &a, &b, &c);
    let seen = digests(&b);
    assert_eq!(seen.len(), 3, "{seen:?}");
    for labels in &seen {
        let get = |k: &str| {
            labels
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert_eq!(get("schema"), "loadtest", "{labels:?}");
        assert_eq!(get("digest").len(), 32, "{labels:?}");
        let text = get("digest_text");
        assert!(
            !text.is_empty() && text.chars().count() <= 20,
            "digest_text {text:?} is not cut to 20 characters"
        );
    }
    // Every family of the collector, as the exporter types them.
    let families: Vec<&String> = b
        .families
        .keys()
        .filter(|f| f.starts_with("mysql_perf_schema_events_statements"))
        .collect();
    assert_eq!(families.len(), 12, "{families:?}");
    for f in families {
        assert_eq!(b.families[f].1, "counter", "{f}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "took {:?}",
        started.elapsed()
    );
}
