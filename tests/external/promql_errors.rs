//! The differential test of PromQL error messages (issue 23 item 5): every query
//! of `tests/data/promql-errors.txt` is sent to a real `prometheus` (Debian
//! package, 2.42) and to `gpx_arrowmon serve` as an instant query at a fixed time,
//! on empty stores; Prometheus must refuse it (else the corpus is wrong), and
//! the `errorType` and `error` text are compared (a query arrowmon accepts, newer
//! syntax it implements, is a difference). The queries whose messages differ are listed, each with its reason,
//! in `tests/data/promql-errors-differences.txt`: the test fails when a listed
//! query now answers as Prometheus does or an unlisted one differs, so the list
//! stays exact, and the count of identical messages can only go up.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::*;
use serde_json::Value;

/// Identical messages arrowmon gives today: raise it when a fix lands.
const IDENTICAL_AT_LEAST: usize = 315;

/// The evaluation time of every query, so that evaluation errors do not depend
/// on the clock.
const EVALUATION_TIME: &str = "1700000000";

const CORPUS: &str = include_str!("../data/promql-errors.txt");
const DIFFERENCES: &str = include_str!("../data/promql-errors-differences.txt");

/// A corpus line as the query it stands for: `⏎` is a newline, `<empty>` the
/// empty query.
fn query_of_line(line: &str) -> String {
    if line == "<empty>" {
        String::new()
    } else {
        line.replace('⏎', "\n")
    }
}

/// The corpus's queries as written (comments and empty lines left out).
fn corpus_lines() -> Vec<&'static str> {
    CORPUS
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// The listed differences: the corpus line and its reason, tab-separated.
fn listed_differences() -> BTreeMap<&'static str, &'static str> {
    DIFFERENCES
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (query, reason) = l
                .split_once('\t')
                .unwrap_or_else(|| panic!("no tab between query and reason: {l:?}"));
            assert!(!reason.trim().is_empty(), "no reason given for {query:?}");
            (query, reason)
        })
        .collect()
}

/// An instant query on `base`: status and JSON body.
async fn instant_query(client: &reqwest::Client, base: &str, query: &str) -> (u16, Value) {
    let params = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", query)
        .append_pair("time", EVALUATION_TIME)
        .finish();
    let r = client
        .get(format!("{base}/api/v1/query?{params}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{base}: {e}"));
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{base}: {e}: {body}"));
    (status, v)
}

/// `errorType: error`, the part of an error answer compared.
fn error_text(v: &Value) -> String {
    format!(
        "{}: {}",
        v["errorType"].as_str().unwrap_or("?"),
        v["error"].as_str().unwrap_or("?")
    )
}

#[test]
fn corpus_lines_are_distinct_and_many() {
    let lines = corpus_lines();
    assert!(lines.len() >= 200, "{} queries", lines.len());
    let mut seen = std::collections::HashSet::new();
    for l in &lines {
        assert!(seen.insert(l), "{l:?} twice in the corpus");
    }
    for q in listed_differences().keys() {
        assert!(
            seen.contains(q),
            "listed difference {q:?} is not in the corpus"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_errors_equal_prometheus() {
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
        let url = format!("{base}/api/v1/query?query=1");
        eventually(Duration::from_secs(60), base, || async {
            http_get(&client, &url).await.filter(|(s, _)| *s == 200)
        })
        .await;
    }

    let lines = corpus_lines();
    let listed = listed_differences();
    let mut accepted = Vec::new();
    let mut identical = 0;
    let mut unlisted = Vec::new();
    let mut now_identical = Vec::new();
    for line in &lines {
        let q = query_of_line(line);
        let (ps, pv) = instant_query(&client, &prom, &q).await;
        let (ash, av) = instant_query(&client, &am, &q).await;
        if pv["status"] != "error" {
            accepted.push(format!("{line:?}: {pv}"));
            continue;
        }
        // A query arrowmon accepts (newer syntax it implements) is a difference.
        let a = if av["status"] == "error" {
            error_text(&av)
        } else {
            format!("accepted: {av}")
        };
        let p = error_text(&pv);
        let same = (ps, &p) == (ash, &a);
        if same {
            identical += 1;
            if listed.contains_key(line) {
                now_identical.push(*line);
            }
        } else if !listed.contains_key(line) {
            unlisted.push(format!(
                "{line}\n  prometheus: {ps} {p}\n  arrowmon:   {ash} {a}"
            ));
        }
    }
    let total = lines.len();
    println!(
        "identical: {identical}/{total} ({:.1}%)",
        identical as f64 * 100.0 / total as f64
    );
    assert!(
        accepted.is_empty(),
        "queries Prometheus accepts, mistakes in the corpus:\n{}",
        accepted.join("\n")
    );
    assert!(
        unlisted.is_empty(),
        "{} messages differ and are not in promql-errors-differences.txt:\n{}",
        unlisted.len(),
        unlisted.join("\n")
    );
    assert!(
        now_identical.is_empty(),
        "listed in promql-errors-differences.txt but now identical (remove them): {now_identical:?}"
    );
    assert!(
        identical >= IDENTICAL_AT_LEAST,
        "identical: {identical}/{total}, fewer than {IDENTICAL_AT_LEAST}"
    );
}
