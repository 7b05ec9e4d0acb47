//! `/api/v1/rules` and `/api/v1/alerts` with Prometheus's response shapes
//! (web/api/v1/api.go), so Grafana's rule views and alert lists read them.

use serde_json::{json, Map, Value};

use super::{bad, labels_json, selector_matchers, ApiResponse, Params};
use crate::model::labels::Matcher;
use crate::rules::eval::{Alert, AlertState, GroupStatus, RuleStatus};
use crate::rules::RuleKind;
use crate::tenant::Tenant;

pub(super) async fn rules(tenant: &Tenant, p: &Params) -> Result<ApiResponse, ApiResponse> {
    let kind = p.get("type").unwrap_or("").to_ascii_lowercase();
    if !kind.is_empty() && kind != "alert" && kind != "record" {
        return Err(bad(format!(
            "invalid parameter \"type\": not supported value {}",
            crate::model::labels::go_quote(&kind)
        )));
    }
    let exclude_alerts = match p.get("exclude_alerts").unwrap_or("").to_ascii_lowercase().as_str() {
        "" => false,
        v => parse_go_bool(v).ok_or_else(|| {
            bad(format!(
                "invalid parameter \"exclude_alerts\": error converting exclude_alerts: strconv.ParseBool: parsing {}: invalid syntax",
                crate::model::labels::go_quote(v)
            ))
        })?,
    };
    let mut matcher_sets: Vec<Vec<Matcher>> = Vec::new();
    for m in p.all("match[]") {
        let set =
            selector_matchers(m).map_err(|e| bad(format!("invalid parameter \"match[]\": {e}")))?;
        if set.iter().all(|m| m.matches_empty()) {
            return Err(bad("match[] must contain at least one non-empty matcher"));
        }
        matcher_sets.push(set);
    }
    let names = p.all("rule_name[]");
    let group_names = p.all("rule_group[]");
    let files = p.all("file[]");
    let (groups, _) = tenant.rule_groups().await;
    let mut out = Vec::new();
    for g in groups {
        if (!group_names.is_empty() && !group_names.contains(&g.name.as_str()))
            || (!files.is_empty() && !files.contains(&g.file.as_str()))
        {
            continue;
        }
        let rules: Vec<Value> = g
            .rules
            .iter()
            .filter(|r| names.is_empty() || names.contains(&r.rule.name.as_str()))
            .filter(|r| {
                matcher_sets.is_empty()
                    || matcher_sets.iter().any(|set| {
                        let labels = rule_labels(r);
                        set.iter().all(|m| m.matches_labels(&labels))
                    })
            })
            .filter_map(|r| match &r.rule.kind {
                RuleKind::Recording if kind != "alert" => Some(recording_json(r)),
                RuleKind::Alerting { .. } if kind != "record" => {
                    Some(alerting_json(r, exclude_alerts))
                }
                _ => None,
            })
            .collect();
        // Groups whose rules were all filtered out are left out.
        if !rules.is_empty() {
            out.push(group_json(&g, rules));
        }
    }
    Ok(ApiResponse::success(json!({ "groups": out })))
}

pub(super) async fn alerts(tenant: &Tenant) -> ApiResponse {
    let (groups, _) = tenant.rule_groups().await;
    let mut out = Vec::new();
    for g in groups {
        for r in &g.rules {
            out.extend(active_alerts(r).into_iter().map(alert_json));
        }
    }
    ApiResponse::success(json!({ "alerts": out }))
}

fn group_json(g: &GroupStatus, rules: Vec<Value>) -> Value {
    json!({
        "name": g.name,
        "file": g.file,
        "rules": rules,
        "interval": g.interval.as_secs_f64(),
        "limit": g.limit,
        "evaluationTime": g.evaluation_time.as_secs_f64(),
        "lastEvaluation": go_time(g.last_evaluation_ms),
    })
}

fn recording_json(r: &RuleStatus) -> Value {
    let mut v = json!({
        "name": r.rule.name,
        "query": r.rule.parsed.to_string(),
        "labels": string_map(&r.rule.labels),
        "health": r.health.as_str(),
        "evaluationTime": r.evaluation_time.as_secs_f64(),
        "lastEvaluation": go_time(r.last_evaluation_ms),
        "type": "recording",
    });
    add_last_error(&mut v, r);
    v
}

fn alerting_json(r: &RuleStatus, exclude_alerts: bool) -> Value {
    let RuleKind::Alerting {
        for_duration,
        keep_firing_for,
        annotations,
    } = &r.rule.kind
    else {
        return Value::Null;
    };
    let alerts: Value = if exclude_alerts {
        Value::Null
    } else {
        active_alerts(r).into_iter().map(alert_json).collect()
    };
    let mut v = json!({
        "state": r.state().as_str(),
        "name": r.rule.name,
        "query": r.rule.parsed.to_string(),
        "duration": for_duration.as_secs_f64(),
        "keepFiringFor": keep_firing_for.as_secs_f64(),
        "labels": string_map(&r.rule.labels),
        "annotations": string_map(annotations),
        "alerts": alerts,
        "health": r.health.as_str(),
        "evaluationTime": r.evaluation_time.as_secs_f64(),
        "lastEvaluation": go_time(r.last_evaluation_ms),
        "type": "alerting",
    });
    add_last_error(&mut v, r);
    v
}

/// `lastError` is left out when empty, as Prometheus's `omitempty` does.
fn add_last_error(v: &mut Value, r: &RuleStatus) {
    if let (Some(e), Some(obj)) = (&r.last_error, v.as_object_mut()) {
        obj.insert("lastError".into(), Value::String(e.clone()));
    }
}

/// The alerts that are pending or firing (resolved ones are kept only to
/// report them resolved).
fn active_alerts(r: &RuleStatus) -> Vec<&Alert> {
    r.alerts
        .iter()
        .filter(|a| a.state != AlertState::Inactive)
        .collect()
}

fn alert_json(a: &Alert) -> Value {
    let mut v = json!({
        "labels": labels_json(&a.labels),
        "annotations": string_map(&a.annotations),
        "state": a.state.as_str(),
        "activeAt": go_time(Some(a.active_at_ms)),
        "value": crate::model::number::format_go_float_e(a.value),
    });
    if let (Some(since), Some(obj)) = (a.keep_firing_since_ms, v.as_object_mut()) {
        obj.insert(
            "keepFiringSince".into(),
            Value::String(go_time(Some(since))),
        );
    }
    v
}

/// A rule's labels for `match[]`: its own labels and, as Prometheus's
/// `Rule.Labels()` gives them, no `__name__`.
fn rule_labels(r: &RuleStatus) -> crate::model::Labels {
    crate::model::Labels::from_pairs(r.rule.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

fn string_map(m: &std::collections::BTreeMap<String, String>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<String, Value>>(),
    )
}

fn go_time(ms: Option<i64>) -> String {
    ms.map_or_else(
        || crate::model::time::GO_ZERO_TIME.to_string(),
        crate::model::time::format_go_time_ms,
    )
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}
