//! The differential test of `/api/v1/format_query`: `gpx_arrowmon serve` and a real
//! `prometheus` (Debian package, 2.42) format the same expressions; the answers
//! must be the same JSON, byte for byte in `data`, for expressions short and long
//! (binary chains, aggregations with `by`/`without` and parameters, calls with many
//! arguments, subqueries, `offset` and `@`, nested parentheses, string and number
//! literals, comments), and for a parse error the same status and `errorType`.
//!
//! Left out, a difference of the parser rather than of the printer: a backslash in
//! a backtick string (`` `a\ b` ``), which Prometheus keeps as it is and
//! promql-parser reads as an escape (refusing `\ `).

use std::time::Duration;

use crate::support::*;
use serde_json::Value;

const LONG_SELECTOR: &str = r#"node_filesystem_avail_bytes{job="node",instance=~"db[0-9]+:9100",fstype!~"tmpfs|overlay",mountpoint="/"}"#;

fn expressions() -> Vec<String> {
    let mut v: Vec<String> = [
        "up",
        "  up  ",
        r#"up{job="a",instance=~"x.*",b!="c",a!~"d"}"#,
        r#"{__name__="up",job="a"}"#,
        r#"{__name__=~"node_.+"}"#,
        "rate(http_requests_total[5m])",
        "rate(http_requests_total[90m] offset 1w)",
        "http_requests_total offset -5m",
        "http_requests_total @ 1609746000",
        "http_requests_total @ start() offset 1h",
        "rate(http_requests_total[5m] @ end())",
        "max_over_time(rate(x[1m])[1h:])",
        "max_over_time(rate(x[1m])[1h:30s] offset 10m)",
        "max_over_time((a + b)[30m:1m] @ 100)",
        "sum by (job, instance) (rate(x[5m]))",
        "sum(rate(x[5m])) by (job)",
        "sum without (cpu) (x)",
        "sum by () (x)",
        "sum without () (x)",
        "topk(5, x)",
        "quantile(0.99, rate(x[5m]))",
        r#"count_values("version", build_info)"#,
        "a + b * c - d / e % f ^ g",
        "(a + b) * (c - d)",
        "((((a))))",
        "a > bool 1",
        "a == bool on (x) b",
        "a * on (instance) group_left (version) b",
        "a * ignoring (x) group_right () b",
        "a / ignoring () b",
        "a and on () b or c unless d",
        "-a",
        "-(a + b)",
        "- - a",
        "1 + 2",
        "-1",
        "1e6",
        "1e-7 * 0.0001",
        "123456 + 1234567",
        "0x1f + 017",
        "Inf",
        "-Inf",
        "NaN",
        r#""a\tb\n\"c\"""#,
        "'single \\'q\\''",
        "`raw string`",
        r#""üñí\u00e9 \u00a0""#,
        "label_replace(up, \"dst\", \"$1\", \"src\", \"(.*)\")",
        "time()",
        "vector(1)",
        "scalar(sum(x))",
        "histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))",
        "absent(nonexistent{job=\"a\"})",
        "bottomk(3, x) + stddev without (a) (x) + group(x)",
        "a ^ b ^ c",
        "a - (b - c)",
        "a atan2 b",
        "rate(x[1500ms]) + rate(x[1h30m]) + rate(x[1d12h])",
        "x offset 1y + x offset 2w + x offset 9d",
        "x @ -100 + x @ 1.5",
        "0.1 + 1e21 + 1e-5 + 123456789 + .5 + 5. + -0",
        r#""\u200b\x01\U0001F600""#,
        r#"{b="2",a="1",__name__="up"}"#,
        r#"up{job="b",job="a"}"#,
        "count by (a) (x) > bool 5",
        "sum by (a, b) (x) / on (a) group_left () sum by (a) (x)",
        "up # a comment",
        "sum(# comment\n  rate(x[5m]) # another\n)",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Long ones, which split.
    v.push(format!("sum by (instance) ({LONG_SELECTOR}) / sum by (instance) (node_filesystem_size_bytes{{job=\"node\",fstype!~\"tmpfs|overlay\"}})"));
    v.push(format!(
        "{LONG_SELECTOR} + {LONG_SELECTOR} - {LONG_SELECTOR} * 2"
    ));
    v.push(format!(
        "(({LONG_SELECTOR} + 1) > bool on (instance) group_left (version) mysql_version_info)"
    ));
    v.push(format!(
        "topk by (job) (10, sum without (cpu, mode) (rate({LONG_SELECTOR}[5m])))"
    ));
    v.push(format!(
        "count_values without (mode) (\"value\", {LONG_SELECTOR})"
    ));
    v.push(format!("label_replace(label_replace({LONG_SELECTOR}, \"a\", \"$1\", \"instance\", \"(.*):.*\"), \"b\", \"$1\", \"job\", \"(.*)\")"));
    v.push(format!(
        "max_over_time(rate({LONG_SELECTOR}[5m])[1h:1m] offset 1d)"
    ));
    v.push(format!(
        "max_over_time(sum by (instance) (rate({LONG_SELECTOR}[5m]))[1h:1m] @ 1700000000)"
    ));
    v.push(format!("-(sum by (instance) (rate({LONG_SELECTOR}[5m])))"));
    v.push(format!("-sum by (instance) (rate({LONG_SELECTOR}[5m]))"));
    v.push(r#"histogram_quantile(0.99, sum by (le, instance) (rate(http_request_duration_seconds_bucket{job="api",handler=~"/api/v1/.*",code!~"5.."}[5m])))"#.to_string());
    v.push(format!(
        "clamp_max(clamp_min({LONG_SELECTOR}, 0), 100) / 1024 / 1024 / 1024 > 1.5e+09 or vector(0)"
    ));
    v.push(format!("(((sum({LONG_SELECTOR}))))"));
    v.push(format!("label_replace({LONG_SELECTOR}, \"destination_label_with_a_long_name\", \"$1-$2-$3\", \"source\", \"^(very|long|alternatives|to|pass|the|limit)-([a-z]+)-(.*)$\")"));
    v.push(format!(
        "sum(rate({LONG_SELECTOR}[5m])) by (instance) > bool 0"
    ));
    v.push(format!("max_over_time({LONG_SELECTOR}[1h:])"));
    v.push(format!("rate({LONG_SELECTOR}[5m] offset 1h) * on (instance) group_right (job, env) sum by (instance) (up{{job=\"node\",instance=~\"db.*\"}})"));
    v.push(format!("quantile_over_time(0.95, rate({LONG_SELECTOR}[5m])[30m:1m]) - ignoring (le) avg_over_time({LONG_SELECTOR}[30m])"));
    v.push(format!("abs({LONG_SELECTOR} offset 5m) and on (instance) (up == 1) unless ignoring (job) {LONG_SELECTOR}"));
    v
}

/// `format_query` on `base` with a form body: status and JSON.
async fn format(client: &reqwest::Client, base: &str, query: &str) -> (u16, Value) {
    let r = client
        .post(format!("{base}/api/v1/format_query"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .append_pair("query", query)
                .finish(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("{base}: {e}"));
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{base}: {e}: {body}"));
    (status, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_query_equals_prometheus() {
    let client = http_client();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        "global:\n  scrape_interval: 1m\nscrape_configs: []\n",
    )
    .unwrap();
    let side = SideBySide::start(dir.path(), &config, &[]);
    let (prom, am) = (side.prometheus.clone(), side.arrowmon.clone());
    for base in [&prom, &am] {
        let url = format!("{base}/api/v1/format_query?query=up");
        eventually(Duration::from_secs(60), base, || async {
            http_get(&client, &url).await.filter(|(s, _)| *s == 200)
        })
        .await;
    }

    let mut differences = Vec::new();
    for q in expressions() {
        let (ps, pv) = format(&client, &prom, &q).await;
        let (ash, av) = format(&client, &am, &q).await;
        assert_eq!(ps, 200, "prometheus refuses {q:?}: {pv}");
        if (ash, &av) != (ps, &pv) {
            differences.push(format!(
                "{q:?}\n  prometheus: {}\n  arrowmon:   {}",
                pv["data"], av
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} differ:\n{}",
        differences.len(),
        expressions().len(),
        differences.join("\n")
    );

    // A parse error: the same status and type (the messages are each parser's own).
    for q in [
        "sum(",
        "rate(x[5m]",
        "a +",
        "up{job=}",
        "x[5m] + 1",
        r#"up{__name__="up"}"#,
        "{}",
        "rate(x)",
        "sum by (a) (x, y)",
    ] {
        let (ps, pv) = format(&client, &prom, q).await;
        let (ash, av) = format(&client, &am, q).await;
        assert_eq!(
            (ps, &pv["errorType"]),
            (400, &Value::from("bad_data")),
            "{q}: {pv}"
        );
        assert_eq!(
            (ash, &av["status"], &av["errorType"]),
            (ps, &pv["status"], &pv["errorType"]),
            "{q}: {av}"
        );
        assert!(
            av["error"]
                .as_str()
                .unwrap()
                .starts_with("invalid parameter \"query\": "),
            "{av}"
        );
    }
}
