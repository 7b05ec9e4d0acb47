//! The query model (the JSON Grafana's Prometheus datasource sends) and the frames
//! a result becomes.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::json;

use super::frames::{Column, Field, Frame};
use super::interval;
use crate::model::labels::Labels;
use crate::promql::{QueryResult, Value};

/// The panel query, as Grafana's Prometheus datasource writes it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueryModel {
    pub expr: String,
    pub legend_format: String,
    /// The panel's "Min step" (may be a variable such as `$__rate_interval`).
    pub interval: String,
    pub interval_ms: f64,
    pub interval_factor: i64,
    pub instant: bool,
    pub range: bool,
    pub format: String,
    pub utc_offset_sec: i64,
    pub exemplar: bool,
}

impl QueryModel {
    pub fn parse(json: &[u8]) -> Result<QueryModel, String> {
        serde_json::from_slice(json).map_err(|e| format!("invalid query JSON: {e}"))
    }

    /// Older dashboards set neither; Grafana runs those as range queries.
    pub fn is_range(&self) -> bool {
        self.range || !self.instant
    }
}

/// What Grafana's DataQuery carries besides the query JSON.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueryTiming {
    pub from_ms: i64,
    pub to_ms: i64,
    pub interval_ms: i64,
    pub max_data_points: i64,
}

/// The evaluation plan for one query: expanded expression, step and range (ms).
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub expr: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub step_ms: i64,
    /// The step as Go prints a duration (`1m0s`), for `executedQueryString`.
    pub step_text: String,
    pub range: bool,
    /// The time range aligned to the step, as Grafana sends it with range and
    /// exemplar queries (an instant-only query's exemplars are over it too).
    pub aligned_ms: (i64, i64),
}

impl Plan {
    /// The instant query of a query that asks for both ("Both" in the editor):
    /// the same expression and step, at the range's unaligned end.
    pub fn instant_at(&self, to_ms: i64) -> Plan {
        Plan {
            start_ms: to_ms,
            end_ms: to_ms,
            range: false,
            ..self.clone()
        }
    }

    /// `executedQueryString` of the first frame, as Grafana writes it.
    pub fn executed_query_string(&self) -> String {
        format!("Expr: {}\nStep: {}", self.expr, self.step_text)
    }
}

/// Plans a query with Grafana's own rules (see [`interval`]): the step, the
/// built-in variables, and the range aligned to the step (range queries; an
/// instant query is evaluated at the range's end, unaligned, as Grafana does).
pub fn plan(q: &QueryModel, t: QueryTiming, time_interval: &str) -> Result<Plan, String> {
    if q.expr.trim().is_empty() {
        return Err("query expression is empty".into());
    }
    let input = interval::IntervalInput {
        from_ms: t.from_ms,
        to_ms: t.to_ms,
        max_data_points: t.max_data_points,
        interval_ms: t.interval_ms,
        query_interval: &q.interval,
        query_interval_ms: q.interval_ms as i64,
        interval_factor: q.interval_factor,
        utc_offset_sec: q.utc_offset_sec,
        time_interval,
    };
    let step_ns = interval::calculate_step(&input)?;
    if step_ns <= 0 {
        return Err(format!(
            "invalid step {}",
            interval::go_duration_string(step_ns)
        ));
    }
    let expr = interval::interpolate(&q.expr, &input, step_ns);
    let range = q.is_range();
    let aligned_ms = (
        interval::align_ms(t.from_ms, step_ns, q.utc_offset_sec),
        interval::align_ms(t.to_ms, step_ns, q.utc_offset_sec),
    );
    let (start_ms, end_ms) = if range {
        aligned_ms
    } else {
        (t.to_ms, t.to_ms)
    };
    Ok(Plan {
        expr,
        start_ms,
        end_ms,
        step_ms: (step_ns / 1_000_000).max(1),
        step_text: interval::go_duration_string(step_ns),
        range,
        aligned_ms,
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

/// The frame shapes Grafana's Prometheus backend answers in. `Dataplane` is its
/// default and the only shape its current version knows: an instant vector is
/// `numeric-multi`, frames carry `typeVersion` 0.1, the value field is named by
/// `__name__`, frames have no name. `BeforeDataplane` is what a Grafana with the
/// `prometheusDataplane` toggle switched off gets: every series `timeseries-multi`
/// without a type version, the value field `Value`, the frame named by the
/// series' display name (dashboards whose overrides match the field `Value` need it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameShape {
    Dataplane,
    BeforeDataplane,
}

/// Turns a result into frames as Grafana's Prometheus backend does: one frame per
/// series; the first frame carries `executedQueryString` and `calculatedMinStep`;
/// an empty result is one empty frame carrying them (named `Warnings` when the
/// result has notices), or none for a query with exemplars (`q.exemplar` is
/// cleared for alerting, which never runs them).
pub fn frames(
    ref_id: &str,
    q: &QueryModel,
    plan: &Plan,
    result: &QueryResult,
    shape: FrameShape,
) -> Vec<Frame> {
    match q.format.as_str() {
        "table" => return vec![table_frame(ref_id, plan, result)],
        "heatmap" => {
            if let Value::Matrix(series) = &result.value {
                return heatmap_frames(ref_id, plan, series);
            }
        }
        _ => {}
    }
    let dataplane = shape == FrameShape::Dataplane;
    let (frame_type, result_type) = match &result.value {
        Value::Matrix(_) => ("timeseries-multi", "matrix"),
        Value::Vector(_) if dataplane => ("numeric-multi", "vector"),
        Value::Vector(_) => ("timeseries-multi", "vector"),
        Value::Scalar { .. } => ("numeric-multi", "scalar"),
        Value::String { .. } => ("timeseries-multi", "string"),
    };
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
    // Meta every frame of the result has; the first frame's is completed below.
    let meta = || {
        let mut m = json!({
            "type": frame_type,
            "custom": {"resultType": result_type},
        });
        // The converter never versions string frames.
        if dataplane && result_type != "string" {
            m["typeVersion"] = json!([0, 1]);
        }
        if !notices.is_empty() {
            m["notices"] = json!(notices);
        }
        m
    };
    let series_frame = |labels: &Labels, times: Vec<i64>, values: Column| {
        let name = display_name(labels, &q.legend_format, &plan.expr);
        let mut value_config = json!({});
        if !name.is_empty() {
            value_config["displayNameFromDS"] = json!(name);
        }
        let value_name = match labels.metric_name() {
            Some(n) if dataplane => n,
            _ => "Value",
        };
        Frame {
            name: if dataplane { String::new() } else { name },
            ref_id: ref_id.to_string(),
            meta: Some(meta()),
            fields: vec![
                Field {
                    name: "Time".into(),
                    labels: None,
                    config: Some(json!({"interval": plan.step_ms})),
                    values: Column::Time(times),
                },
                Field {
                    name: value_name.to_string(),
                    labels: Some(label_map(labels)),
                    config: Some(value_config),
                    values,
                },
            ],
        }
    };
    let mut out = Vec::new();
    match &result.value {
        Value::Matrix(series) => {
            for s in series {
                out.push(series_frame(
                    &s.labels,
                    s.timestamps.clone(),
                    Column::Float(s.values.clone()),
                ));
            }
        }
        Value::Vector(samples) => {
            for s in samples {
                out.push(series_frame(&s.labels, vec![s.t], Column::Float(vec![s.v])));
            }
        }
        Value::Scalar { t, v } => out.push(series_frame(
            &Labels::empty(),
            vec![*t],
            Column::Float(vec![*v]),
        )),
        Value::String { t, v } => out.push(series_frame(
            &Labels::empty(),
            vec![*t],
            Column::String(vec![v.clone()]),
        )),
    }
    // Grafana adds its own empty frame, that carries only the metadata, to a
    // query without exemplars.
    if out.is_empty() && notices.is_empty() && q.exemplar {
        return out;
    }
    if out.is_empty() {
        // The converter's frame for notices of an empty result, or Grafana's own
        // empty frame.
        let mut meta = json!({});
        if !notices.is_empty() {
            meta["notices"] = json!(notices);
        }
        out.push(Frame {
            name: if notices.is_empty() { "" } else { "Warnings" }.to_string(),
            ref_id: ref_id.to_string(),
            meta: Some(meta),
            fields: Vec::new(),
        });
    }
    let first = out[0].meta.get_or_insert_with(|| json!({}));
    first["executedQueryString"] = json!(plan.executed_query_string());
    // Grafana's frontend needs the step to merge incrementally queried frames.
    first["custom"]["calculatedMinStep"] = json!(plan.step_ms);
    out
}

/// Every sample of the result as rows: Time, one column per label, Value.
fn table_frame(ref_id: &str, plan: &Plan, result: &QueryResult) -> Frame {
    let rows: Vec<(&Labels, i64, f64)> = match &result.value {
        Value::Matrix(series) => series
            .iter()
            .flat_map(|s| {
                s.timestamps
                    .iter()
                    .zip(&s.values)
                    .map(move |(t, v)| (&s.labels, *t, *v))
            })
            .collect(),
        Value::Vector(samples) => samples.iter().map(|s| (&s.labels, s.t, s.v)).collect(),
        Value::Scalar { t, v } => vec![(&EMPTY_LABELS, *t, *v)],
        Value::String { .. } => Vec::new(),
    };
    let mut names: Vec<String> = rows
        .iter()
        .flat_map(|(l, _, _)| l.iter().map(|l| l.name.to_string()))
        .collect();
    names.sort();
    names.dedup();
    let mut fields = vec![Field {
        name: "Time".into(),
        labels: None,
        config: None,
        values: Column::Time(rows.iter().map(|r| r.1).collect()),
    }];
    for n in &names {
        fields.push(Field {
            name: n.clone(),
            labels: None,
            config: None,
            values: Column::String(
                rows.iter()
                    .map(|r| r.0.get(n).unwrap_or("").to_string())
                    .collect(),
            ),
        });
    }
    fields.push(Field {
        name: "Value".into(),
        labels: None,
        config: None,
        values: Column::Float(rows.iter().map(|r| r.2).collect()),
    });
    Frame {
        name: String::new(),
        ref_id: ref_id.to_string(),
        meta: Some(json!({
            "type": "table",
            "custom": {"resultType": result.value.type_name()},
            "executedQueryString": plan.executed_query_string(),
        })),
        fields,
    }
}

static EMPTY_LABELS: Labels = Labels::empty_const();

/// Classic histogram buckets as Grafana's heatmap expects them: per histogram
/// (labels without `le`), one frame with Time and one field per bucket, ordered by
/// `le`, each holding that bucket's own count (the cumulative count minus the
/// bucket below it).
fn heatmap_frames(ref_id: &str, plan: &Plan, series: &[crate::model::Series]) -> Vec<Frame> {
    use std::collections::BTreeMap;
    let mut groups: BTreeMap<Labels, Vec<(f64, &crate::model::Series)>> = BTreeMap::new();
    for s in series {
        let Some(le) = s
            .labels
            .get("le")
            .and_then(|le| crate::model::number::parse_go_float(le.as_bytes()))
        else {
            continue;
        };
        let key = Labels::new(
            s.labels
                .iter()
                .filter(|l| &*l.name != "le" && &*l.name != crate::model::labels::METRIC_NAME)
                .cloned()
                .collect(),
        );
        groups.entry(key).or_default().push((le, s));
    }
    let mut out = Vec::new();
    for (key, mut buckets) in groups {
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut times: Vec<i64> = buckets
            .iter()
            .flat_map(|(_, s)| s.timestamps.iter().copied())
            .collect();
        times.sort_unstable();
        times.dedup();
        let at = |s: &crate::model::Series, t: i64| {
            s.timestamps.binary_search(&t).ok().map(|i| s.values[i])
        };
        let mut fields = vec![Field {
            name: "Time".into(),
            labels: None,
            config: Some(json!({"interval": plan.step_ms})),
            values: Column::Time(times.clone()),
        }];
        let mut below: Vec<Option<f64>> = vec![None; times.len()];
        for (_, s) in &buckets {
            let mut col = Vec::with_capacity(times.len());
            for (i, t) in times.iter().enumerate() {
                let v = at(s, *t);
                col.push(match (v, below[i]) {
                    (Some(v), Some(b)) => Some((v - b).max(0.0)),
                    (v, _) => v,
                });
                if v.is_some() {
                    below[i] = v;
                }
            }
            let le = s.labels.get("le").unwrap_or("").to_string();
            let mut labels: BTreeMap<String, String> = key
                .iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect();
            labels.insert("le".into(), le.clone());
            fields.push(Field {
                name: le.clone(),
                labels: Some(labels),
                config: Some(json!({"displayNameFromDS": le})),
                values: Column::NullableFloat(col),
            });
        }
        out.push(Frame {
            name: String::new(),
            ref_id: ref_id.to_string(),
            meta: Some(json!({
                "type": "heatmap-rows",
                "typeVersion": [0, 1],
                "custom": {"resultType": "matrix"},
                "executedQueryString": plan.executed_query_string(),
            })),
            fields,
        });
    }
    if out.is_empty() {
        out.push(Frame {
            ref_id: ref_id.to_string(),
            meta: Some(json!({"type": "heatmap-rows", "custom": {"resultType": "matrix"}, "executedQueryString": plan.executed_query_string()})),
            ..Default::default()
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(pairs: &[(&str, &str)], values: &[f64]) -> crate::model::Series {
        crate::model::Series {
            labels: Labels::from_pairs(pairs.iter().copied()),
            timestamps: (0..values.len() as i64).map(|i| i * 1000).collect(),
            values: values.to_vec(),
        }
    }

    fn plan_for_tests() -> Plan {
        Plan {
            expr: "x".into(),
            start_ms: 0,
            end_ms: 1000,
            step_ms: 1000,
            step_text: "1s".into(),
            range: true,
            aligned_ms: (0, 1000),
        }
    }

    #[test]
    fn heatmap_buckets_are_ordered_by_le_and_de_accumulated() {
        let s = vec![
            series(&[("__name__", "h_bucket"), ("le", "+Inf")], &[10.0, 12.0]),
            series(&[("__name__", "h_bucket"), ("le", "0.5")], &[4.0, 5.0]),
            series(&[("__name__", "h_bucket"), ("le", "0.1")], &[1.0, 1.0]),
        ];
        let frames = heatmap_frames("A", &plan_for_tests(), &s);
        assert_eq!(frames.len(), 1);
        let names: Vec<&str> = frames[0].fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, vec!["Time", "0.1", "0.5", "+Inf"]);
        assert_eq!(
            frames[0].fields[2].values,
            Column::NullableFloat(vec![Some(3.0), Some(4.0)])
        );
        assert_eq!(
            frames[0].fields[3].values,
            Column::NullableFloat(vec![Some(6.0), Some(7.0)])
        );
    }

    #[test]
    fn table_has_a_column_per_label() {
        let r = QueryResult {
            value: Value::Matrix(vec![
                series(&[("__name__", "up"), ("job", "a")], &[1.0]),
                series(&[("__name__", "up"), ("instance", "i")], &[0.0]),
            ]),
            warnings: vec![],
            infos: vec![],
        };
        let f = table_frame("A", &plan_for_tests(), &r);
        let names: Vec<&str> = f.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, vec!["Time", "__name__", "instance", "job", "Value"]);
        assert_eq!(
            f.fields[3].values,
            Column::String(vec!["a".into(), "".into()])
        );
    }

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
        let t = QueryTiming {
            from_ms: 1_000_003,
            to_ms: 1_600_007,
            interval_ms: 1000,
            max_data_points: 1000,
        };
        let p = plan(&q, t, "").unwrap();
        assert_eq!(p.step_ms, 15_000);
        assert_eq!(p.start_ms % 15_000, 0);
        assert_eq!(p.end_ms, 1_590_000);
        assert_eq!(p.executed_query_string(), "Expr: up\nStep: 15s");
        let q = QueryModel {
            expr: "up".into(),
            interval: "1m".into(),
            ..Default::default()
        };
        assert_eq!(
            plan(
                &q,
                QueryTiming {
                    to_ms: 3_600_000,
                    ..t
                },
                ""
            )
            .unwrap()
            .step_ms,
            60_000
        );
        let month = 86_400_000 * 30;
        let p = plan(
            &QueryModel {
                expr: "up".into(),
                ..Default::default()
            },
            QueryTiming {
                from_ms: 0,
                to_ms: month,
                interval_ms: 1,
                max_data_points: 100_000,
            },
            "",
        )
        .unwrap();
        assert!((month / p.step_ms) <= 11_000);
        assert!(plan(&QueryModel::default(), t, "").is_err());
    }
}
