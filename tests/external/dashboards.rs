//! The provisioned dashboards (`provisioning/dashboards/*.json`): static validity
//! (Grafana dashboard JSON, ids, datasource references, variables, every expression
//! parses), the provider file and `plugin.json` `includes`; and the live check: every
//! panel query, with its variables expanded to real values, runs through the
//! Grafana-host harness against the real topology and returns data and the same
//! series (label sets) as a real `prometheus` scraping the same targets at the same
//! time, and the same points (steps and values within 1e-9) as a second `prometheus`
//! that holds arrowmon's own raw samples, backfilled with promtool: the two scrape at
//! different instants, so values can only be compared over the same samples.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{json, Value};

const DS_TYPE: &str = PLUGIN_ID;

/// Queries that return no series by design, with the reason. Each must stay empty
/// in both arrowmon and Prometheus (if one starts returning data, drop it from here).
/// Keyed by (dashboard uid, panel title, refId).
const EMPTY_BY_DESIGN: &[(&str, &str, &str, &str)] = &[
    (
        "arrowmon-mysql",
        "Replication lag",
        "A",
        "the test servers are not replicas: mysqld_exporter exports no mysql_slave_status_* series",
    ),
    (
        "arrowmon-mysql",
        "Replica threads running",
        "A",
        "the test servers are not replicas",
    ),
    (
        "arrowmon-mysql",
        "Replica threads running",
        "B",
        "the test servers are not replicas",
    ),
    (
        "arrowmon-self",
        "Alerts firing",
        "A",
        "the test's datasource has no rules of its own (the compose demo's has the shipped rules), \
         and the ALERTS of the scraped arrowmon are in its own store, not in its /metrics",
    ),
    (
        "arrowmon-mysql",
        "Row operations",
        "A",
        "MariaDB 10.11 has no Innodb_rows_* status variables, so mysqld_exporter 0.14 exports no \
         mysql_global_status_innodb_row_ops_total (MySQL servers do); query B covers MariaDB",
    ),
];

/// Queries on plugin metrics that are not exposed yet, with the metric. While a
/// metric is missing the query must be empty in both; once the plugin exposes it, the
/// query is compared like any other (label sets; NaN values allowed, e.g. a latency
/// quantile when no query ran), and the test reports that the entry can go.
const NOT_YET_EXPOSED: &[(&str, &str, &str, &str)] = &[];

/// Queries that fail only because the PromQL engine lacks a feature they use, with
/// the feature. They are run and reported, not failed; once one passes, drop it here.
const ENGINE_GAPS: &[(&str, &str, &str, &str)] = &[];

// ---------------------------------------------------------------------------------
// Reading the files

fn dashboards_dir() -> PathBuf {
    repo_root().join("provisioning/dashboards")
}

fn dashboard_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dashboards_dir())
        .expect("provisioning/dashboards exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no dashboards in provisioning/dashboards"
    );
    files
}

fn load_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn load_yaml(path: &Path) -> serde_norway::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

/// The provisioned arrowmon datasource: (uid, the whole YAML entry).
fn provisioned_datasource() -> (String, serde_norway::Value) {
    let y = load_yaml(&repo_root().join("provisioning/datasources/arrowmon.yaml"));
    let list = y["datasources"].as_sequence().expect("datasources list");
    let ds = list
        .iter()
        .find(|d| d["type"].as_str() == Some(DS_TYPE))
        .expect("an arrowmon datasource in provisioning/datasources/arrowmon.yaml");
    (
        ds["uid"].as_str().expect("fixed uid").to_string(),
        ds.clone(),
    )
}

/// Every panel, rows' nested panels included (a collapsed row keeps its panels inside).
fn all_panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().into_iter().flatten() {
        out.push(p);
        for q in p["panels"].as_array().into_iter().flatten() {
            out.push(q);
        }
    }
    out
}

fn query_panels(dash: &Value) -> Vec<&Value> {
    all_panels(dash)
        .into_iter()
        .filter(|p| p["type"] != "row" && p["type"] != "text")
        .collect()
}

#[derive(Clone, Debug)]
struct Variable {
    name: String,
    query: String,
    multi: bool,
    include_all: bool,
}

fn variables(dash: &Value) -> Vec<Variable> {
    dash["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| Variable {
            name: v["name"].as_str().unwrap_or_default().to_string(),
            query: match &v["query"] {
                Value::String(s) => s.clone(),
                q => q["query"].as_str().unwrap_or_default().to_string(),
            },
            multi: v["multi"].as_bool().unwrap_or(false),
            include_all: v["includeAll"].as_bool().unwrap_or(false),
        })
        .collect()
}

/// `label_values(SELECTOR, LABEL)` or `label_values(LABEL)`.
fn parse_label_values(q: &str) -> Option<(Option<String>, String)> {
    let inner = q.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    match inner.rfind(',') {
        Some(i) => Some((
            Some(inner[..i].trim().to_string()),
            inner[i + 1..].trim().to_string(),
        )),
        None => Some((None, inner.trim().to_string())),
    }
}

// ---------------------------------------------------------------------------------
// Variable expansion, as Grafana's frontend does it before the query reaches the plugin

/// RE2 metacharacters escaped for a PromQL double-quoted string, as Grafana's
/// Prometheus datasource does (`prometheusSpecialRegexEscape`): the backslash is
/// doubled so that the string literal yields `\.` to the regex engine.
fn regex_escape_in_string(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\\\\\"),
            '$' | '^' | '*' | '{' | '}' | '[' | ']' | '\'' | '+' | '?' | '.' | '(' | ')' | '|' => {
                out.push_str("\\\\");
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

fn format_value(var: &Variable, values: &[String]) -> String {
    if !var.multi && !var.include_all {
        return values.join("|");
    }
    let escaped: Vec<String> = values.iter().map(|v| regex_escape_in_string(v)).collect();
    if escaped.len() == 1 {
        escaped[0].clone()
    } else {
        format!("({})", escaped.join("|"))
    }
}

/// Replaces `$name`, `${name}` and `[[name]]` of the dashboard's variables.
fn expand_vars(text: &str, vars: &[Variable], values: &HashMap<String, Vec<String>>) -> String {
    let mut out = text.to_string();
    // Longer names first, so `$job` does not eat the start of `$jobname`.
    let mut sorted: Vec<&Variable> = vars.iter().collect();
    sorted.sort_by_key(|v| std::cmp::Reverse(v.name.len()));
    for var in sorted {
        let Some(vals) = values.get(&var.name) else {
            continue;
        };
        let f = format_value(var, vals);
        out = out
            .replace(&format!("${{{}}}", var.name), &f)
            .replace(&format!("[[{}]]", var.name), &f);
        let pat = format!("${}", var.name);
        let mut res = String::new();
        let mut rest = out.as_str();
        while let Some(i) = rest.find(&pat) {
            let after = &rest[i + pat.len()..];
            let boundary = !after.starts_with(|c: char| c.is_alphanumeric() || c == '_');
            res.push_str(&rest[..i]);
            res.push_str(if boundary { &f } else { &pat });
            rest = after;
        }
        res.push_str(rest);
        out = res;
    }
    out
}

/// Grafana's built-in interval variables, with plausible values (for parsing only).
fn expand_builtins(expr: &str) -> String {
    [
        ("$__rate_interval_ms", "60000"),
        ("${__rate_interval_ms}", "60000"),
        ("$__rate_interval", "1m"),
        ("${__rate_interval}", "1m"),
        ("$__interval_ms", "15000"),
        ("${__interval_ms}", "15000"),
        ("$__interval", "15s"),
        ("${__interval}", "15s"),
        ("$__range_ms", "3600000"),
        ("$__range_s", "3600"),
        ("$__range", "1h"),
    ]
    .iter()
    .fold(expr.to_string(), |e, (k, v)| e.replace(k, v))
}

// ---------------------------------------------------------------------------------
// Static checks

#[test]
fn dashboards_are_valid_grafana_dashboards() {
    let (uid, _) = provisioned_datasource();
    let want_ds = json!({"type": DS_TYPE, "uid": uid});
    let mut errors = Vec::new();
    let mut uids = BTreeSet::new();
    for file in dashboard_files() {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let d = load_json(&file);
        let mut err = |m: String| errors.push(format!("{name}: {m}"));
        let schema = d["schemaVersion"].as_i64().unwrap_or(0);
        if schema < 39 {
            err(format!("schemaVersion {schema} < 39"));
        }
        match d["uid"].as_str() {
            Some(u) if !u.is_empty() && u.len() <= 40 => {
                if !uids.insert(u.to_string()) {
                    err(format!("dashboard uid {u} used twice"));
                }
            }
            _ => err("missing or over-long dashboard uid".into()),
        }
        if d["title"].as_str().unwrap_or("").is_empty() {
            err("missing title".into());
        }
        if !d["id"].is_null() {
            err("a provisioned dashboard must have id null".into());
        }
        if !d["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "arrowmon"))
        {
            err("tag arrowmon missing (the dashboard links use it)".into());
        }

        // Panels: unique ids, layout, datasource on the panel and on every target.
        let mut ids = BTreeSet::new();
        for p in all_panels(&d) {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            match p["id"].as_i64() {
                Some(id) if ids.insert(id) => {}
                Some(id) => err(format!("panel id {id} ({title}) is not unique")),
                None => err(format!("panel {title} has no id")),
            }
            let g = &p["gridPos"];
            let (x, w, h) = (g["x"].as_i64(), g["w"].as_i64(), g["h"].as_i64());
            match (x, w, h, g["y"].as_i64()) {
                (Some(x), Some(w), Some(h), Some(_)) if x >= 0 && w > 0 && h > 0 && x + w <= 24 => {
                }
                _ => err(format!("panel {title}: bad gridPos {g}")),
            }
            if p["type"] == "row" {
                continue;
            }
            if p["datasource"] != want_ds {
                err(format!(
                    "panel {title}: datasource {} is not {want_ds}",
                    p["datasource"]
                ));
            }
            let defaults = &p["fieldConfig"]["defaults"];
            if defaults["unit"].as_str().unwrap_or("").is_empty() {
                err(format!("panel {title}: no unit"));
            }
            if defaults["thresholds"]["steps"]
                .as_array()
                .is_none_or(|s| s.is_empty() || !s[0]["value"].is_null())
            {
                err(format!(
                    "panel {title}: thresholds missing or without a base step"
                ));
            }
            if matches!(p["type"].as_str(), Some("timeseries" | "state-timeline"))
                && p["options"]["legend"]["showLegend"] != true
            {
                err(format!("panel {title}: legend hidden"));
            }
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                err(format!("panel {title}: no targets"));
            }
            let mut refs = BTreeSet::new();
            for t in &targets {
                let r = t["refId"].as_str().unwrap_or("").to_string();
                if r.is_empty() || !refs.insert(r.clone()) {
                    err(format!("panel {title}: refId {r:?} missing or repeated"));
                }
                if t["datasource"] != want_ds {
                    err(format!(
                        "panel {title} {r}: datasource {} is not {want_ds}",
                        t["datasource"]
                    ));
                }
                let expr = t["expr"].as_str().unwrap_or("");
                if expr.trim().is_empty() {
                    err(format!("panel {title} {r}: empty expr"));
                }
                if expr.contains("rate(") && !expr.contains("$__rate_interval") {
                    err(format!(
                        "panel {title} {r}: rate() without $__rate_interval"
                    ));
                }
                if t["legendFormat"].as_str().unwrap_or("").is_empty() {
                    err(format!("panel {title} {r}: no legendFormat"));
                }
            }
        }

        // Variables: query variables on the arrowmon datasource, label_values(...),
        // referring only to variables defined before them; job and instance present
        // where the queries use them.
        let vars = variables(&d);
        let mut defined: Vec<String> = Vec::new();
        for (v, raw) in vars.iter().zip(d["templating"]["list"].as_array().unwrap()) {
            if raw["type"] != "query" {
                err(format!(
                    "variable {}: type {} is not query",
                    v.name, raw["type"]
                ));
            }
            if raw["datasource"] != want_ds {
                err(format!(
                    "variable {}: datasource {} is not {want_ds}",
                    v.name, raw["datasource"]
                ));
            }
            if !matches!(raw["refresh"].as_i64(), Some(1 | 2)) {
                err(format!("variable {}: refresh must be 1 or 2", v.name));
            }
            match parse_label_values(&v.query) {
                Some((sel, label)) => {
                    if label.is_empty() || !label.chars().all(|c| c.is_alphanumeric() || c == '_') {
                        err(format!("variable {}: bad label {label:?}", v.name));
                    }
                    if let Some(sel) = sel {
                        for other in ["job", "instance"] {
                            if sel.contains(&format!("${other}"))
                                && !defined.contains(&other.to_string())
                            {
                                err(format!(
                                    "variable {} uses ${other} before it is defined",
                                    v.name
                                ));
                            }
                        }
                        let values = HashMap::from([
                            ("job".to_string(), vec!["node".to_string()]),
                            ("instance".to_string(), vec!["a:1".to_string()]),
                        ]);
                        let e = expand_vars(&sel, &vars, &values);
                        if let Err(e) = arrowmon::promql::parse_expr(&e) {
                            err(format!(
                                "variable {}: selector {e:?} does not parse",
                                v.name
                            ));
                        }
                    }
                }
                None => err(format!(
                    "variable {}: query {:?} is not label_values(...)",
                    v.name, v.query
                )),
            }
            if raw["definition"].as_str() != Some(v.query.as_str()) {
                err(format!(
                    "variable {}: definition differs from query",
                    v.name
                ));
            }
            defined.push(v.name.clone());
        }
        for p in query_panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().unwrap_or("");
                for used in ["$job", "$instance"] {
                    if expr.contains(used) && !defined.iter().any(|n| format!("${n}") == used) {
                        err(format!(
                            "panel {}: uses {used}, which is not a variable",
                            p["title"]
                        ));
                    }
                }
            }
        }
    }
    assert!(
        errors.is_empty(),
        "dashboard problems:\n  {}",
        errors.join("\n  ")
    );
}

#[test]
fn every_panel_expression_parses() {
    let mut errors = Vec::new();
    let mut count = 0;
    for file in dashboard_files() {
        let d = load_json(&file);
        let vars = variables(&d);
        // Two value shapes: one value, and several (a regex alternation).
        for vals in [
            vec!["node".to_string()],
            vec!["127.0.0.1:9100".to_string(), "db-2:9104".to_string()],
        ] {
            let values: HashMap<String, Vec<String>> = vars
                .iter()
                .map(|v| (v.name.clone(), vals.clone()))
                .collect();
            for p in query_panels(&d) {
                for t in p["targets"].as_array().into_iter().flatten() {
                    let raw = t["expr"].as_str().unwrap_or("");
                    let expr = expand_builtins(&expand_vars(raw, &vars, &values));
                    count += 1;
                    if expr.contains('$') {
                        errors.push(format!("{}: {expr}: unexpanded variable", p["title"]));
                    }
                    if let Err(e) = arrowmon::promql::parse_expr(&expr) {
                        errors.push(format!("{} {}: {expr}: {e}", p["title"], t["refId"]));
                    }
                }
            }
        }
    }
    assert!(count > 0);
    assert!(
        errors.is_empty(),
        "expressions that do not parse:\n  {}",
        errors.join("\n  ")
    );
}

#[test]
fn provider_and_plugin_json_list_every_dashboard() {
    // The provider: one file provider into the arrowmon folder, reading the folder the
    // docker compose demo mounts ./provisioning/dashboards at.
    let prov = load_yaml(&dashboards_dir().join("arrowmon.yaml"));
    assert_eq!(prov["apiVersion"].as_i64(), Some(1));
    let providers = prov["providers"].as_sequence().expect("providers");
    assert_eq!(providers.len(), 1);
    let p = &providers[0];
    assert_eq!(p["folder"].as_str(), Some("arrowmon"));
    assert_eq!(p["type"].as_str(), Some("file"));
    let path = p["options"]["path"].as_str().expect("options.path");
    let compose = load_yaml(&repo_root().join("docker-compose.yml"));
    let mounts: Vec<(String, String)> = compose["services"]["grafana"]["volumes"]
        .as_sequence()
        .expect("grafana volumes")
        .iter()
        .filter_map(|v| v.as_str())
        .filter_map(|v| {
            let mut it = v.split(':');
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect();
    let host = mounts
        .iter()
        .find_map(|(h, c)| {
            path.strip_prefix(c.as_str())
                .map(|rest| format!("{}{rest}", h.trim_end_matches('/')))
        })
        .unwrap_or_else(|| panic!("no grafana mount holds the provider path {path}: {mounts:?}"));
    assert_eq!(
        repo_root()
            .join(host.trim_start_matches("./"))
            .canonicalize()
            .unwrap(),
        dashboards_dir().canonicalize().unwrap(),
        "the provider path {path} must be ./provisioning/dashboards inside the container"
    );

    // plugin.json includes: exactly the dashboard files, as dist.sh lays them out.
    let plugin = load_json(&repo_root().join("plugin.json"));
    let includes: BTreeMap<String, String> = plugin["includes"]
        .as_array()
        .expect("includes")
        .iter()
        .filter(|i| i["type"] == "dashboard")
        .map(|i| {
            (
                i["path"].as_str().unwrap().to_string(),
                i["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let files: BTreeMap<String, String> = dashboard_files()
        .iter()
        .map(|f| {
            let d = load_json(f);
            (
                format!("dashboards/{}", f.file_name().unwrap().to_string_lossy()),
                d["title"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        includes, files,
        "plugin.json includes (path → name) vs dashboard files (path → title)"
    );
    let dist = std::fs::read_to_string(repo_root().join("scripts/dist.sh")).unwrap();
    assert!(
        dist.contains("cp provisioning/dashboards/*.json \"$out/dashboards/\""),
        "scripts/dist.sh must copy the dashboards to dist/dashboards/"
    );
}

// ---------------------------------------------------------------------------------
// The live comparison

const SCRAPE_S: u64 = 2;

fn scrape_config(node: &str, mysql: &[&str], self_target: &str) -> String {
    let list = |t: &[&str]| {
        t.iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "global:\n  scrape_interval: {SCRAPE_S}s\n  scrape_timeout: {SCRAPE_S}s\nscrape_configs:\n\
         \x20 - job_name: node\n    static_configs:\n      - targets: [{}]\n\
         \x20 - job_name: mysql\n    static_configs:\n      - targets: [{}]\n\
         \x20 - job_name: arrowmon\n    static_configs:\n      - targets: [{}]\n",
        list(&[node]),
        list(mysql),
        list(&[self_target]),
    )
}

async fn http_json(client: &reqwest::Client, url: &str) -> Option<Value> {
    let r = client.get(url).send().await.ok()?;
    serde_json::from_str(&r.text().await.ok()?).ok()
}

fn qs(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

type LabelSet = BTreeMap<String, String>;

/// Label sets of a Prometheus API answer (matrix or vector); Err for an API error.
fn prom_label_sets(v: &Value) -> Result<(BTreeSet<LabelSet>, bool), String> {
    if v["status"] != "success" {
        return Err(format!("{}: {}", v["errorType"], v["error"]));
    }
    let mut sets = BTreeSet::new();
    let mut finite = false;
    for s in v["data"]["result"].as_array().into_iter().flatten() {
        let m: LabelSet = serde_json::from_value(s["metric"].clone()).unwrap_or_default();
        sets.insert(m);
        let pts: Vec<&Value> = match s["values"].as_array() {
            Some(vs) => vs.iter().collect(),
            None => vec![&s["value"]],
        };
        finite |= pts.iter().any(|p| {
            p[1].as_str()
                .and_then(|x| x.parse::<f64>().ok())
                .is_some_and(f64::is_finite)
        });
    }
    Ok((sets, finite))
}

/// The rows of a frame in table format (a query with `"format": "table"`): a
/// `Time` field, one string field per label and a `Value` field, as label sets
/// with their time (ms) and value; `None` for a frame in time series shape.
fn table_rows(f: &DecodedFrame) -> Option<Vec<(LabelSet, i64, f64)>> {
    let is_text = |x: &DecodedField| x.arrow_type.contains("Utf8");
    if !f.fields.iter().any(is_text) {
        return None;
    }
    let time = f
        .fields
        .iter()
        .find(|x| x.arrow_type.starts_with("Timestamp"))?;
    let value = f.fields.iter().find(|x| x.name == "Value")?;
    let rows = (0..f.rows)
        .map(|i| {
            let labels = f
                .fields
                .iter()
                .filter(|x| is_text(x))
                .map(|x| {
                    (
                        x.name.clone(),
                        x.strings.get(i).cloned().unwrap_or_default(),
                    )
                })
                .collect();
            let t = time.numbers.get(i).copied().unwrap_or(f64::NAN) as i64;
            (labels, t, value.numbers.get(i).copied().unwrap_or(f64::NAN))
        })
        .collect();
    Some(rows)
}

/// Label sets of the plugin's frames: each value field's labels; the metric name,
/// when the field carries it only as its name, is put back as `__name__`. A table
/// frame gives one label set per row.
fn frame_label_sets(frames: &[DecodedFrame]) -> (BTreeSet<LabelSet>, bool) {
    let mut sets = BTreeSet::new();
    let mut finite = false;
    for f in frames {
        if let Some(rows) = table_rows(f) {
            for (labels, _, v) in rows {
                sets.insert(labels);
                finite |= v.is_finite();
            }
            continue;
        }
        for field in f
            .fields
            .iter()
            .filter(|x| !x.arrow_type.starts_with("Timestamp"))
        {
            let mut l = field.labels.clone();
            if !l.contains_key("__name__") && field.name != "Value" && !field.name.is_empty() {
                l.insert("__name__".into(), field.name.clone());
            }
            sets.insert(l);
            finite |= field.numbers.iter().any(|v| v.is_finite());
        }
    }
    (sets, finite)
}

type Points = Vec<(i64, f64)>;

/// Series and their points of a Prometheus API answer (matrix or vector), times in ms.
fn prom_series(v: &Value) -> BTreeMap<LabelSet, Points> {
    let mut out = BTreeMap::new();
    for s in v["data"]["result"].as_array().into_iter().flatten() {
        let m: LabelSet = serde_json::from_value(s["metric"].clone()).unwrap_or_default();
        let pts: Vec<&Value> = match s["values"].as_array() {
            Some(vs) => vs.iter().collect(),
            None => vec![&s["value"]],
        };
        let pts = pts
            .iter()
            .map(|p| {
                let t = (p[0].as_f64().unwrap_or(f64::NAN) * 1000.0).round() as i64;
                let v = p[1]
                    .as_str()
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(f64::NAN);
                (t, v)
            })
            .collect();
        out.insert(m, pts);
    }
    out
}

/// Series and their points of the plugin's frames, labelled as [`frame_label_sets`] does.
fn frame_series(frames: &[DecodedFrame]) -> BTreeMap<LabelSet, Points> {
    let mut out = BTreeMap::new();
    for f in frames {
        if let Some(rows) = table_rows(f) {
            for (labels, t, v) in rows {
                out.entry(labels).or_insert_with(Vec::new).push((t, v));
            }
            continue;
        }
        let Some(time) = f
            .fields
            .iter()
            .find(|x| x.arrow_type.starts_with("Timestamp"))
        else {
            continue;
        };
        for field in f
            .fields
            .iter()
            .filter(|x| !x.arrow_type.starts_with("Timestamp"))
        {
            let mut l = field.labels.clone();
            if !l.contains_key("__name__") && field.name != "Value" && !field.name.is_empty() {
                l.insert("__name__".into(), field.name.clone());
            }
            let pts = time
                .numbers
                .iter()
                .map(|&t| t as i64)
                .zip(field.numbers.iter().copied())
                .collect();
            out.insert(l, pts);
        }
    }
    out
}

/// Where arrowmon's points differ from Prometheus's on the same samples: a series
/// only one has, a step only one has, or a value apart by more than the rounding of
/// a different summation order (relative 1e-9), except at the steps `exempt` names.
fn point_differences(
    got: &BTreeMap<LabelSet, Points>,
    want: &BTreeMap<LabelSet, Points>,
    exempt: impl Fn(i64) -> bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for l in got.keys().filter(|l| !want.contains_key(*l)) {
        out.push(format!("series only in arrowmon: {l:?}"));
    }
    for (l, w) in want {
        let Some(g) = got.get(l) else {
            out.push(format!("series only in Prometheus: {l:?}"));
            continue;
        };
        let times = |p: &Points| p.iter().map(|x| x.0).collect::<Vec<_>>();
        if times(g) != times(w) {
            out.push(format!(
                "{l:?}: steps differ: arrowmon {} points {:?}..{:?}, Prometheus {} points {:?}..{:?}",
                g.len(),
                g.first().map(|x| x.0),
                g.last().map(|x| x.0),
                w.len(),
                w.first().map(|x| x.0),
                w.last().map(|x| x.0)
            ));
            continue;
        }
        let same = |a: f64, b: f64| {
            (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
        };
        if let Some((&(t, a), &(_, b))) = g
            .iter()
            .zip(w)
            .find(|(x, y)| !same(x.1, y.1) && !exempt(x.0))
        {
            out.push(format!("{l:?} at {t}: arrowmon {a}, Prometheus {b}"));
        }
    }
    out
}

/// Every raw sample arrowmon holds up to `to`, as OpenMetrics with timestamps for
/// `promtool tsdb create-blocks-from openmetrics`; returns the text, the count and
/// the time of each series' first sample by metric name.
async fn export_openmetrics(
    plugin: &PluginProcess,
    ctx: arrowmon::proto::pluginv2::PluginContext,
    to: i64,
) -> (String, usize, BTreeMap<String, Vec<i64>>) {
    let q = qs(&[
        ("query", "{__name__=~\".+\"}[30m]"),
        ("time", &format!("{:.3}", to as f64 / 1000.0)),
    ]);
    let (code, v) = plugin
        .call_resource(ctx, "GET", &format!("api/v1/query?{q}"), b"")
        .await;
    assert_eq!(code, 200, "export of the raw samples: {v}");
    let escape = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    let mut series = prom_series(&v).into_iter().collect::<Vec<_>>();
    series.sort_by(|a, b| {
        a.0.get("__name__")
            .cmp(&b.0.get("__name__"))
            .then(a.0.cmp(&b.0))
    });
    let mut text = String::new();
    let mut samples = 0;
    let mut starts: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (labels, points) in series {
        let name = &labels["__name__"];
        if let Some(&(t, _)) = points.first() {
            starts.entry(name.clone()).or_default().push(t);
        }
        let rest = labels
            .iter()
            .filter(|(k, _)| *k != "__name__")
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect::<Vec<_>>()
            .join(",");
        for (t, v) in points {
            let v = if v.is_nan() {
                "NaN".to_string()
            } else if v.is_infinite() {
                if v > 0.0 {
                    "+Inf".into()
                } else {
                    "-Inf".into()
                }
            } else {
                format!("{v:?}")
            };
            text.push_str(&format!(
                "{name}{{{rest}}} {v} {}.{:03}\n",
                t.div_euclid(1000),
                t.rem_euclid(1000)
            ));
            samples += 1;
        }
    }
    text.push_str("# EOF\n");
    (text, samples, starts)
}

fn listed<'a>(
    list: &'a [(&str, &str, &str, &str)],
    uid: &str,
    title: &str,
    r: &str,
) -> Option<&'a str> {
    list.iter()
        .find(|(u, t, q, _)| *u == uid && *t == title && *q == r)
        .map(|x| x.3)
}

/// A remote write receiver that takes every request (the test looks at the
/// sender's metrics, not at what arrives). Returns its address.
async fn remote_write_sink() -> String {
    let app = axum::Router::new().route(
        "/api/v1/write",
        axum::routing::post(|| async { axum::http::StatusCode::NO_CONTENT }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn every_panel_query_matches_prometheus_on_the_live_topology() {
    let t_start = Instant::now();
    let topo = Topology::start(false);
    let node = topo.get("NODE_EXPORTER").to_string();
    let m1 = topo.get("MYSQLD_EXPORTER_1").to_string();
    let m2 = topo.get("MYSQLD_EXPORTER_2").to_string();
    let work = tempfile::tempdir().unwrap();
    // reqwest is built without a default rustls provider: the crate installs ring.
    arrowmon::scrape::tls::install_default_provider();
    let client = reqwest::Client::new();

    // The self-monitoring target: a standalone arrowmon, whose /metrics carries the
    // same arrowmon_* families the plugin reports to Grafana.
    let serve_addr = format!("127.0.0.1:{}", free_port());
    let serve_cfg = work.path().join("serve.yml");
    let sink = remote_write_sink().await;
    std::fs::write(
        &serve_cfg,
        // The shipped rules, so the rule panels have the rule metrics to show; a
        // remote_write entry, so the remote write panels have the queue's.
        format!(
            "global:\n  scrape_interval: {SCRAPE_S}s\n  evaluation_interval: {SCRAPE_S}s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['{node}']\nremote_write:\n  - url: http://{sink}/api/v1/write\n    name: sink\n    queue_config: {{batch_send_deadline: 1s}}\n",
            repo_root().join("rules/arrowmon.rules.yml").display()
        ),
    )
    .unwrap();
    let _serve = ChildGuard::new(
        "gpx_arrowmon serve",
        serve_command(&serve_cfg, &work.path().join("serve-data"), &serve_addr)
            .stderr(std::fs::File::create(work.path().join("serve.log")).unwrap())
            .spawn()
            .expect("start gpx_arrowmon serve"),
    );

    let scrape = scrape_config(&node, &[&m1, &m2], &serve_addr);

    // Prometheus on loopback, its own data dir, the same scrape config.
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let prom_cfg = work.path().join("prometheus.yml");
    std::fs::write(&prom_cfg, &scrape).unwrap();
    let _prom = ChildGuard::new(
        "prometheus",
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                work.path().join("prom-data").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("start prometheus (Debian package; scripts/install-deps.sh installs it)"),
    );

    // The plugin, as Grafana starts it, with the provisioned datasource file of the
    // repository (uid, type, org) and the test topology's targets in its jsonData.
    let (uid, ds_yaml) = provisioned_datasource();
    let json_data = json!({"timeInterval": format!("{SCRAPE_S}s"), "scrapeConfig": scrape});
    let mut ds_entry = serde_json::to_value(&ds_yaml).unwrap();
    ds_entry["jsonData"] = json_data.clone();
    let org = ds_entry["orgId"].as_i64().unwrap_or(1);
    let prov = work.path().join("provisioning");
    std::fs::create_dir_all(prov.join("datasources")).unwrap();
    std::fs::write(
        prov.join("datasources/arrowmon.yaml"),
        serde_norway::to_string(&json!({"apiVersion": 1, "datasources": [ds_entry]})).unwrap(),
    )
    .unwrap();
    let plugin = PluginProcess::start(&grafana_env(&work.path().join("grafana-data"), &prov)).await;
    let ds = Datasource::new(org, &uid, json_data.clone());
    let ctx = || ds.context(Some("Viewer"));

    // Both scrape all four targets.
    let prom_base = format!("http://{prom_addr}");
    eventually(
        Duration::from_secs(60),
        "all 4 targets up in arrowmon and Prometheus",
        || {
            let (client, prom_base, plugin) = (&client, &prom_base, &plugin);
            let ctx = ctx();
            async move {
                let q = qs(&[("query", "sum(up)")]);
                let p = http_json(client, &format!("{prom_base}/api/v1/query?{q}")).await?;
                let (_, a) = plugin
                    .call_resource(ctx, "GET", &format!("api/v1/query?{q}"), b"")
                    .await;
                let four = |v: &Value| v["data"]["result"][0]["value"][1] == "4";
                (four(&p) && four(&a)).then_some(())
            }
        },
    )
    .await;
    // A dashboard's worth of queries on the self-monitoring target, so that its
    // query latency histogram moves (the Query latency panel then has values).
    let load = {
        let (client, url) = (
            client.clone(),
            format!("http://{serve_addr}/api/v1/query?query=up"),
        );
        tokio::spawn(async move {
            loop {
                let _ = client.get(&url).send().await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let up_at = Instant::now();
    // Enough scrapes that every $__rate_interval window (4 scrape intervals) is full.
    tokio::time::sleep(Duration::from_secs(8 * SCRAPE_S)).await;
    // Three seconds back, so that every sample up to `to` is stored before the
    // first panel runs (a scrape times out after two).
    let to = now_ms() - 3000;
    let from = to - 10 * 60_000;

    // The same expressions over the same samples: arrowmon's raw samples up to `to`,
    // backfilled into a second Prometheus that scrapes nothing. The live Prometheus
    // scraped at other instants, so only its series can be compared; this one's
    // values must be arrowmon's.
    let (om, exported, series_starts) = export_openmetrics(&plugin, ctx(), to).await;
    let om_path = work.path().join("arrowmon-samples.om");
    std::fs::write(&om_path, om).unwrap();
    let replay_dir = work.path().join("replay-data");
    let promtool = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
        .arg(&om_path)
        .arg(&replay_dir)
        .output()
        .expect("run promtool (Debian package prometheus)");
    assert!(
        promtool.status.success(),
        "promtool create-blocks-from openmetrics: {}",
        String::from_utf8_lossy(&promtool.stderr)
    );
    let replay_addr = format!("127.0.0.1:{}", free_port());
    let replay_cfg = work.path().join("replay.yml");
    std::fs::write(&replay_cfg, "scrape_configs: []\n").unwrap();
    let _replay = ChildGuard::new(
        "prometheus (replay)",
        Command::new("prometheus")
            .arg(format!("--config.file={}", replay_cfg.display()))
            .arg(format!("--storage.tsdb.path={}", replay_dir.display()))
            .arg(format!("--web.listen-address={replay_addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.path().join("replay.log")).unwrap())
            .spawn()
            .expect("start prometheus"),
    );
    let replay_base = format!("http://{replay_addr}");
    eventually(Duration::from_secs(60), "replay Prometheus ready", || {
        let (client, url) = (&client, format!("{replay_base}/-/ready"));
        async move {
            let r = client.get(&url).send().await.ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
    eprintln!("{exported} raw samples of arrowmon backfilled into the replay Prometheus");
    eprintln!(
        "topology, Prometheus and plugin up after {:.1} s; warm-up {:.1} s",
        (up_at - t_start).as_secs_f64(),
        up_at.elapsed().as_secs_f64()
    );

    let mut failures: Vec<String> = Vec::new();
    let mut report: Vec<String> = Vec::new();
    let mut checked = 0;
    for file in dashboard_files() {
        let d = load_json(&file);
        let duid = d["uid"].as_str().unwrap().to_string();
        let vars = variables(&d);

        // Variables: label_values through the plugin's resource API (what the query
        // editor's variable support calls) and through Prometheus; the same values.
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        for v in &vars {
            let (sel, label) = parse_label_values(&v.query).unwrap();
            let mut params = vec![
                ("start".to_string(), (from / 1000).to_string()),
                ("end".to_string(), (to / 1000).to_string()),
            ];
            if let Some(sel) = sel {
                params.push(("match[]".into(), expand_vars(&sel, &vars, &values)));
            }
            let pairs: Vec<(&str, &str)> = params
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            let path = format!("api/v1/label/{label}/values?{}", qs(&pairs));
            let (code, a) = plugin.call_resource(ctx(), "GET", &path, b"").await;
            assert_eq!(code, 200, "{duid} variable {}: {path}: {a}", v.name);
            let p = http_json(&client, &format!("{prom_base}/{path}"))
                .await
                .unwrap();
            let mut got: Vec<String> = serde_json::from_value(a["data"].clone()).unwrap();
            let mut want: Vec<String> = serde_json::from_value(p["data"].clone()).unwrap();
            got.sort();
            want.sort();
            assert_eq!(
                got, want,
                "{duid} variable {}: values differ from Prometheus",
                v.name
            );
            assert!(!got.is_empty(), "{duid} variable {}: no values", v.name);
            // A single-value variable takes the first value, a multi-value one "All".
            let chosen = if v.multi || v.include_all {
                got
            } else {
                vec![got[0].clone()]
            };
            report.push(format!("{duid}: ${} = {chosen:?}", v.name));
            values.insert(v.name.clone(), chosen);
        }

        for p in query_panels(&d) {
            let title = p["title"].as_str().unwrap().to_string();
            let targets: Vec<Value> = p["targets"].as_array().cloned().unwrap_or_default();
            // One QueryData per panel, as Grafana sends it.
            let queries = targets
                .iter()
                .map(|t| {
                    let mut model = t.clone();
                    let expr = expand_vars(t["expr"].as_str().unwrap(), &vars, &values);
                    model["expr"] = json!(expr);
                    model["legendFormat"] = json!(expand_vars(
                        t["legendFormat"].as_str().unwrap_or(""),
                        &vars,
                        &values
                    ));
                    data_query(
                        t["refId"].as_str().unwrap(),
                        model,
                        from,
                        to,
                        1000 * SCRAPE_S as i64,
                    )
                })
                .collect();
            let resp = plugin.query_data(ctx(), queries).await;

            for t in &targets {
                checked += 1;
                let r = t["refId"].as_str().unwrap();
                let id = format!("{duid} / {title} / {r}");
                let res = &resp.responses[r];
                let frames: Vec<DecodedFrame> =
                    res.frames.iter().map(|f| decode_frame(f)).collect();
                let gap = listed(ENGINE_GAPS, &duid, &title, r);
                if !res.error.is_empty() {
                    match gap {
                        Some(why) => {
                            report.push(format!("{id}: engine gap ({why}): {}", res.error))
                        }
                        None => failures.push(format!("{id}: plugin error: {}", res.error)),
                    }
                    continue;
                }
                // The expression the plugin ran, built-in variables expanded.
                let executed = frames
                    .iter()
                    .find_map(|f| f.meta["executedQueryString"].as_str())
                    .and_then(|s| s.strip_prefix("Expr: "))
                    .and_then(|s| s.split("\nStep: ").next())
                    .map(str::to_string);
                let expr = match executed {
                    Some(e) if !e.contains('$') => e,
                    _ => {
                        let rate = format!("{}s", 4 * SCRAPE_S);
                        expand_vars(t["expr"].as_str().unwrap(), &vars, &values)
                            .replace("$__rate_interval_ms", &(4000 * SCRAPE_S).to_string())
                            .replace("$__rate_interval", &rate)
                    }
                };
                let step = frames
                    .iter()
                    .find_map(|f| f.fields.first().and_then(|x| x.config["interval"].as_i64()))
                    .unwrap_or(1000 * SCRAPE_S as i64);
                let instant = t["instant"].as_bool().unwrap_or(false)
                    && !t["range"].as_bool().unwrap_or(false);
                let url = if instant {
                    format!(
                        "{prom_base}/api/v1/query?{}",
                        qs(&[
                            ("query", &expr),
                            ("time", &format!("{:.3}", to as f64 / 1000.0))
                        ])
                    )
                } else {
                    format!(
                        "{prom_base}/api/v1/query_range?{}",
                        qs(&[
                            ("query", &expr),
                            (
                                "start",
                                &format!("{:.3}", (from - from.rem_euclid(step)) as f64 / 1000.0)
                            ),
                            (
                                "end",
                                &format!("{:.3}", (to - to.rem_euclid(step)) as f64 / 1000.0)
                            ),
                            ("step", &format!("{:.3}", step as f64 / 1000.0)),
                        ])
                    )
                };
                let prom = http_json(&client, &url).await.unwrap_or(Value::Null);
                let (want, want_data) = match prom_label_sets(&prom) {
                    Ok(x) => x,
                    Err(e) => {
                        failures.push(format!("{id}: Prometheus rejected {expr:?}: {e}"));
                        continue;
                    }
                };
                let (got, got_data) = frame_label_sets(&frames);
                let replay_url = url.replacen(&prom_base, &replay_base, 1);
                let replay = http_json(&client, &replay_url).await.unwrap_or(Value::Null);
                // Prometheus 2.42 and 3 extrapolate a rate differently when a counter's
                // first sample is in the window (the replay is 2.42, arrowmon follows
                // 3; see "rate extrapolation limited at the zero point" in
                // promql_differential.rs): values at such steps are not compared.
                let range = expr
                    .split_once('[')
                    .and_then(|(_, r)| r.split_once("s]"))
                    .and_then(|(n, _)| n.parse::<i64>().ok())
                    .map_or(0, |s| s * 1000);
                let extrapolating = expr.contains("rate(") && !expr.contains("irate(")
                    || expr.contains("increase(");
                let starts: Vec<i64> = series_starts
                    .iter()
                    .filter(|(name, _)| extrapolating && expr.contains(name.as_str()))
                    .flat_map(|(_, t)| t.iter().copied())
                    .collect();
                let near_a_start = |t: i64| starts.iter().any(|&s| s > t - range && s <= t);
                let value_differences = if replay["status"] == "success" {
                    point_differences(&frame_series(&frames), &prom_series(&replay), near_a_start)
                } else {
                    vec![format!("the replay Prometheus answered {replay}")]
                };
                if let Some(why) = listed(NOT_YET_EXPOSED, &duid, &title, r) {
                    if got.is_empty() && want.is_empty() {
                        report.push(format!("{id}: empty, not exposed yet ({why})"));
                    } else if got == want {
                        report.push(format!(
                            "{id}: {} series: exposed now; remove it from NOT_YET_EXPOSED",
                            got.len()
                        ));
                    } else {
                        failures.push(format!(
                            "{id}: {expr}: arrowmon {got:?} vs Prometheus {want:?}"
                        ));
                    }
                    continue;
                }
                if let Some(why) = listed(EMPTY_BY_DESIGN, &duid, &title, r) {
                    if got.is_empty() && want.is_empty() {
                        report.push(format!("{id}: empty by design ({why})"));
                    } else {
                        failures.push(format!(
                            "{id}: listed as empty by design ({why}) but arrowmon returned {} and Prometheus {} series; remove it from EMPTY_BY_DESIGN",
                            got.len(),
                            want.len()
                        ));
                    }
                    continue;
                }
                let ok = got == want
                    && !got.is_empty()
                    && got_data
                    && want_data
                    && value_differences.is_empty();
                match (ok, gap) {
                    (true, Some(_)) => {
                        report.push(format!("{id}: passes now; remove it from ENGINE_GAPS"))
                    }
                    (true, None) => report.push(format!("{id}: {} series", got.len())),
                    (false, Some(why)) => report.push(format!("{id}: engine gap ({why})")),
                    (false, None) => {
                        let only_a: Vec<_> = got.difference(&want).take(3).collect();
                        let only_p: Vec<_> = want.difference(&got).take(3).collect();
                        failures.push(format!(
                            "{id}: {expr}\n      arrowmon {} series (data: {got_data}), Prometheus {} (data: {want_data})\n      only in arrowmon: {only_a:?}\n      only in Prometheus: {only_p:?}\n      against Prometheus on arrowmon's samples: {:?}",
                            got.len(),
                            want.len(),
                            value_differences.iter().take(3).collect::<Vec<_>>()
                        ));
                    }
                }
            }
        }
    }
    load.abort();
    eprintln!("{}", report.join("\n"));
    eprintln!(
        "{checked} panel queries checked in {:.1} s in all",
        t_start.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        let logs = ["serve.log", "prometheus.log"]
            .iter()
            .map(|f| {
                let t = std::fs::read_to_string(work.path().join(f)).unwrap_or_default();
                let tail: Vec<&str> = t.lines().rev().take(10).collect();
                format!(
                    "--- {f} (last lines)\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        panic!(
            "{} of {checked} panel queries differ from Prometheus:\n  {}\n{logs}\nplugin stderr tail: {:?}",
            failures.len(),
            failures.join("\n  "),
            plugin.stderr_lines().iter().rev().take(5).collect::<Vec<_>>()
        );
    }
    drop(plugin);
}
