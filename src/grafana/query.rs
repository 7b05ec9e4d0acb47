//! The query model (the JSON Grafana's Prometheus datasource sends) and the frames
//! a result becomes.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::json;

use super::frames::{Column, Field, Frame};
use crate::config::format_duration;
use crate::labels::Labels;
use crate::promql::{QueryResult, Value};

/// The panel query, as Grafana's Prometheus datasource writes it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueryModel {
    pub expr: String,
    pub legend_format: String,
    /// The panel's "Min step".
    pub interval: String,
    pub interval_ms: Option<f64>,
    pub interval_factor: Option<f64>,
    pub instant: bool,
    pub range: Option<bool>,
    pub format: String,
    pub utc_offset_sec: i64,
    pub exemplar: bool,
}

impl QueryModel {
    pub fn parse(json: &[u8]) -> Result<QueryModel, String> {
        serde_json::from_slice(json).map_err(|e| format!("invalid query JSON: {e}"))
    }

    /// Range unless only `instant` was asked for.
    pub fn is_range(&self) -> bool {
        self.range.unwrap_or(!self.instant)
    }
}

/// The evaluation plan for one query: expression, step and aligned range (ms).
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub expr: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub step_ms: i64,
    pub range: bool,
}

/// The step: at least the minimum interval (the query's min step, else the
/// datasource's scrape interval, else 15 s), Grafana's computed interval, and
/// range/11000 so no series exceeds Prometheus's point limit.
pub fn plan(
    q: &QueryModel,
    from_ms: i64,
    to_ms: i64,
    interval_ms: i64,
    time_interval: Option<std::time::Duration>,
) -> Result<Plan, String> {
    if q.expr.trim().is_empty() {
        return Err("query expression is empty".into());
    }
    let min_interval = if !q.interval.is_empty() && !q.interval.starts_with('$') {
        crate::config::parse_duration(&q.interval)
            .map_err(|e| format!("invalid min step {:?}: {e}", q.interval))?
            .as_millis() as i64
    } else {
        time_interval
            .map(|d| d.as_millis() as i64)
            .unwrap_or(15_000)
    };
    let safe = ((to_ms - from_ms) as f64 / 11_000.0).ceil() as i64;
    let factor = q.interval_factor.filter(|f| *f >= 1.0).unwrap_or(1.0);
    let step = ((interval_ms.max(min_interval).max(safe).max(1) as f64) * factor) as i64;
    let (start, end) = if q.is_range() {
        (
            from_ms - from_ms.rem_euclid(step),
            to_ms - to_ms.rem_euclid(step),
        )
    } else {
        (to_ms, to_ms)
    };
    Ok(Plan {
        expr: q.expr.clone(),
        start_ms: start,
        end_ms: end,
        step_ms: step,
        range: q.is_range(),
    })
}

/// The display name Grafana's Prometheus datasource gives a series.
pub fn display_name(labels: &Labels, legend: &str, expr: &str) -> String {
    if legend == "__auto" {
        return if labels.is_empty() {
            expr.to_string()
        } else {
            String::new()
        };
    }
    if !legend.is_empty() {
        return render_legend(legend, labels);
    }
    if labels.is_empty() {
        return expr.to_string();
    }
    labels.to_string()
}

/// Replaces each `{{ label }}` with the label's value (empty when absent).
fn render_legend(legend: &str, labels: &Labels) -> String {
    let mut out = String::new();
    let mut rest = legend;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        match rest[i + 2..].find("}}") {
            Some(end) => {
                let name = rest[i + 2..i + 2 + end].trim();
                out.push_str(labels.get(name).unwrap_or(""));
                rest = &rest[i + 2 + end + 2..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn label_map(l: &Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|l| (l.name.to_string(), l.value.to_string()))
        .collect()
}

/// Turns a result into frames: one `timeseries-multi` frame per series for range
/// queries, `numeric-multi` for instant ones; an empty result is one empty frame.
pub fn frames(ref_id: &str, q: &QueryModel, plan: &Plan, result: &QueryResult) -> Vec<Frame> {
    let (frame_type, result_type) = match (&result.value, plan.range) {
        (Value::Matrix(_), true) => ("timeseries-multi", "matrix"),
        (Value::Matrix(_), false) => ("timeseries-multi", "matrix"),
        (Value::Scalar { .. }, _) => ("numeric-multi", "scalar"),
        (Value::String { .. }, _) => ("numeric-multi", "string"),
        (Value::Vector(_), _) => ("numeric-multi", "vector"),
    };
    let executed = format!(
        "Expr: {}\nStep: {}",
        plan.expr,
        format_duration(std::time::Duration::from_millis(plan.step_ms as u64))
    );
    let meta = |first: bool| {
        let mut m = json!({
            "type": frame_type,
            "typeVersion": [0, 1],
            "custom": {"resultType": result_type},
        });
        if first {
            m["executedQueryString"] = json!(executed);
        }
        let notices: Vec<_> = result
            .warnings
            .iter()
            .map(|w| json!({"severity": "warning", "text": w}))
            .chain(
                result
                    .infos
                    .iter()
                    .map(|i| json!({"severity": "info", "text": i})),
            )
            .collect();
        if !notices.is_empty() {
            m["notices"] = json!(notices);
        }
        m
    };
    let series_frame = |labels: &Labels, times: Vec<i64>, values: Vec<f64>, first: bool| {
        let name = display_name(labels, &q.legend_format, &plan.expr);
        let mut value_config = json!({});
        if !name.is_empty() {
            value_config["displayNameFromDS"] = json!(name);
        }
        Frame {
            name: name.clone(),
            ref_id: ref_id.to_string(),
            meta: Some(meta(first)),
            fields: vec![
                Field {
                    name: "Time".into(),
                    labels: None,
                    config: Some(json!({"interval": plan.step_ms})),
                    values: Column::Time(times),
                },
                Field {
                    name: labels.metric_name().unwrap_or("Value").to_string(),
                    labels: Some(label_map(labels)),
                    config: Some(value_config),
                    values: Column::Float(values),
                },
            ],
        }
    };
    let mut out = Vec::new();
    match &result.value {
        Value::Matrix(series) => {
            for (i, s) in series.iter().enumerate() {
                out.push(series_frame(
                    &s.labels,
                    s.timestamps.clone(),
                    s.values.clone(),
                    i == 0,
                ));
            }
        }
        Value::Vector(samples) => {
            for (i, s) in samples.iter().enumerate() {
                out.push(series_frame(&s.labels, vec![s.t], vec![s.v], i == 0));
            }
        }
        Value::Scalar { t, v } => {
            out.push(series_frame(&Labels::empty(), vec![*t], vec![*v], true))
        }
        Value::String { t, v } => out.push(Frame {
            name: String::new(),
            ref_id: ref_id.to_string(),
            meta: Some(meta(true)),
            fields: vec![
                Field {
                    name: "Time".into(),
                    labels: None,
                    config: None,
                    values: Column::Time(vec![*t]),
                },
                Field {
                    name: "Value".into(),
                    labels: None,
                    config: None,
                    values: Column::String(vec![v.clone()]),
                },
            ],
        }),
    }
    if out.is_empty() {
        out.push(Frame {
            name: String::new(),
            ref_id: ref_id.to_string(),
            meta: Some(meta(true)),
            fields: Vec::new(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legend_rules() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "node"), ("instance", "h:1")]);
        assert_eq!(
            display_name(&l, "", "up"),
            r#"up{instance="h:1", job="node"}"#
        );
        assert_eq!(
            display_name(&l, "{{job}} on {{ instance }}", "up"),
            "node on h:1"
        );
        assert_eq!(display_name(&l, "{{missing}}x", "up"), "x");
        assert_eq!(display_name(&l, "__auto", "up"), "");
        assert_eq!(display_name(&Labels::empty(), "", "1+1"), "1+1");
        assert_eq!(
            display_name(&Labels::from_pairs([("__name__", "up")]), "", "up"),
            "up"
        );
    }

    #[test]
    fn step_is_bounded_and_range_aligned() {
        let q = QueryModel {
            expr: "up".into(),
            ..Default::default()
        };
        let p = plan(&q, 1_000_003, 1_600_007, 1000, None).unwrap();
        assert_eq!(p.step_ms, 15_000);
        assert_eq!(p.start_ms % 15_000, 0);
        assert_eq!(p.end_ms, 1_590_000);
        let q = QueryModel {
            expr: "up".into(),
            interval: "1m".into(),
            ..Default::default()
        };
        assert_eq!(plan(&q, 0, 3_600_000, 1000, None).unwrap().step_ms, 60_000);
        let day = 86_400_000 * 30;
        let p = plan(
            &QueryModel {
                expr: "up".into(),
                ..Default::default()
            },
            0,
            day,
            1,
            None,
        )
        .unwrap();
        assert!((day / p.step_ms) <= 11_000);
        assert!(plan(&QueryModel::default(), 0, 1, 1, None).is_err());
    }
}
