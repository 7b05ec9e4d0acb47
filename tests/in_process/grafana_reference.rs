//! Grafana's own query rules (../shared/grafana-reference/intervals.json): every
//! case runs through the plugin's real query planning and must match Grafana's
//! step, expanded expression, aligned range and executedQueryString.

use crate::support::shared_reference;

use arrowmon::grafana::query::{plan, QueryModel, QueryTiming};
use serde_json::Value;

#[test]
fn every_grafana_reference_case_matches() {
    let dir = shared_reference("GRAFANA_REFERENCE", "grafana-reference", "intervals.json");
    let text = std::fs::read_to_string(dir.join("intervals.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 143, "the reference has 143 cases");
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let input = &c["input"];
        let exp = &c["expected"];
        let model: QueryModel = serde_json::from_value(input["query"].clone()).unwrap();
        let timing = QueryTiming {
            from_ms: input["timeRange"]["fromEpochMS"].as_i64().unwrap(),
            to_ms: input["timeRange"]["toEpochMS"].as_i64().unwrap(),
            interval_ms: input["intervalMS"].as_i64().unwrap(),
            max_data_points: input["maxDataPoints"].as_i64().unwrap(),
        };
        let time_interval = input["jsonData.timeInterval"].as_str().unwrap();
        // The reference cases are range queries.
        let model = QueryModel {
            range: true,
            ..model
        };
        match plan(&model, timing, time_interval) {
            Err(e) => failures.push(format!("case {i}: error {e}")),
            Ok(p) => {
                let got = (
                    p.step_text.as_str(),
                    p.step_ms,
                    p.expr.as_str(),
                    p.start_ms,
                    p.end_ms,
                    p.executed_query_string(),
                );
                let want = (
                    exp["step"].as_str().unwrap(),
                    exp["stepMs"].as_i64().unwrap(),
                    exp["expr"].as_str().unwrap(),
                    exp["alignedStartMs"].as_i64().unwrap(),
                    exp["alignedEndMs"].as_i64().unwrap(),
                    exp["executedQueryString"].as_str().unwrap().to_string(),
                );
                if got != want {
                    failures.push(format!(
                        "case {i}: input {input}\n  got  {got:?}\n  want {want:?}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
