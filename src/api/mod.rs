//! The Prometheus-compatible HTTP API. The same handlers answer standalone mode's
//! HTTP listener and Grafana's CallResource, so both speak exactly the Prometheus
//! HTTP API's JSON.

pub mod http;
pub mod panic;
pub mod remote_write;
mod rules;
pub mod time;
pub mod webconfig;

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::config::{ScrapeConfig, SecretSource};
use crate::model::exemplar::ExemplarSeries;
use crate::model::labels::{Labels, MatchKind, Matcher};
use crate::model::number::write_go_float_f;
use crate::promql::{self, Engine, QueryError};
use crate::scrape::{now_ms, Health};
use crate::tenant::{RunError, Tenant};

/// A request, stripped of transport: path without the leading slash.
pub struct ApiRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The raw query string (without `?`).
    pub query: &'a str,
    pub body: &'a [u8],
    pub content_type: Option<&'a str>,
}

pub struct ApiResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl ApiResponse {
    fn json(status: u16, v: Value) -> ApiResponse {
        ApiResponse {
            status,
            content_type: "application/json",
            body: v.to_string().into_bytes(),
        }
    }

    pub fn json_value(status: u16, v: Value) -> ApiResponse {
        ApiResponse::json(status, v)
    }

    fn success(data: Value) -> ApiResponse {
        ApiResponse::json(200, json!({"status": "success", "data": data}))
    }

    /// An error in the Prometheus API's shape.
    pub fn error(status: u16, error_type: &str, message: &str) -> ApiResponse {
        ApiResponse::json(
            status,
            json!({"status": "error", "errorType": error_type, "error": message}),
        )
    }

    fn text(status: u16, body: &str) -> ApiResponse {
        ApiResponse {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
        }
    }
}

/// How a query error maps onto the Prometheus API: (HTTP status, errorType).
pub fn query_error_status(e: &QueryError) -> (u16, &'static str) {
    match e {
        QueryError::Parse { .. }
        | QueryError::InvalidRangeQueryType { .. }
        | QueryError::TooDeep { .. } => (400, "bad_data"),
        QueryError::Timeout(_) | QueryError::QueueTimeout(_) => (503, "timeout"),
        QueryError::Storage(_) => (500, "internal"),
        _ => (422, "execution"),
    }
}

/// Request parameters from the query string and, for POST, a form body.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn from_request(req: &ApiRequest<'_>) -> Params {
        let mut v: Vec<(String, String)> = form_urlencoded::parse(req.query.as_bytes())
            .into_owned()
            .collect();
        let is_form = req
            .content_type
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        if req.method.eq_ignore_ascii_case("POST") && (is_form || req.content_type.is_none()) {
            v.extend(form_urlencoded::parse(req.body).into_owned());
        }
        Params(v)
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// What a caller may do. Reading series follows the datasource's query
/// permission; what reveals or changes configuration needs an Editor or Admin of
/// the org (Grafana roles), deleting a tenant an Admin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Read,
    Edit,
    Admin,
}

impl Access {
    /// From the Grafana role of the request's user; requests without a user
    /// (alerting and other backend callers) may read.
    pub fn from_grafana_role(role: Option<&str>) -> Access {
        match role {
            Some("Admin") => Access::Admin,
            Some("Editor") => Access::Edit,
            _ => Access::Read,
        }
    }
}

fn require(have: Access, need: Access) -> Result<(), ApiResponse> {
    if have >= need {
        Ok(())
    } else {
        let who = if need == Access::Admin {
            "an Admin"
        } else {
            "an Editor or Admin"
        };
        Err(ApiResponse::error(
            403,
            "forbidden",
            &format!("this resource requires {who} of the organization"),
        ))
    }
}

/// Answers one API request for a tenant. A panic while answering is that
/// request's 500, never a lost connection.
pub async fn handle(
    tenant: &Arc<Tenant>,
    engine: &Arc<Engine>,
    access: Access,
    req: ApiRequest<'_>,
) -> ApiResponse {
    let path = req.path.trim_start_matches('/').to_string();
    panic::catch_panic(answer(tenant, engine, access, req))
        .await
        .unwrap_or_else(|msg| {
            tracing::error!(path = %path, "internal error while answering: {msg}");
            ApiResponse::error(
                500,
                "internal",
                &format!("internal error while answering /{path}: {msg}"),
            )
        })
}

async fn answer(
    tenant: &Arc<Tenant>,
    engine: &Arc<Engine>,
    access: Access,
    req: ApiRequest<'_>,
) -> ApiResponse {
    let params = Params::from_request(&req);
    let path = req.path.trim_start_matches('/');
    let result = match path {
        "api/v1/query" => query(tenant, engine, &params).await,
        "api/v1/query_range" => query_range(tenant, engine, &params).await,
        "api/v1/labels" => labels(tenant, &params),
        "api/v1/series" => series(tenant, &params),
        "api/v1/metadata" => metadata(tenant, &params).await,
        "api/v1/query_exemplars" => query_exemplars(tenant, &params).await,
        "api/v1/rules" => rules::rules(tenant, &params).await,
        "api/v1/alerts" => Ok(rules::alerts(tenant).await),
        "api/v1/targets" => match require(access, Access::Edit) {
            Ok(()) => Ok(targets(tenant).await),
            Err(e) => Err(e),
        },
        "validate" => match require(access, Access::Edit) {
            Ok(()) => validate(tenant, req.body).await,
            Err(e) => Err(e),
        },
        // Grafana's Prometheus datasource answers `version-detect` with buildinfo.
        "api/v1/status/buildinfo" | "version-detect" => Ok(buildinfo()),
        "api/v1/format_query" => format_query(&params),
        "suggestions" => suggestions(tenant, &req),
        "federate" => federate(tenant, engine, &params).await,
        "-/healthy" => Ok(ApiResponse::text(200, "arrowmon is Healthy.\n")),
        "-/ready" => Ok(ApiResponse::text(200, "arrowmon is Ready.\n")),
        p => match p
            .strip_prefix("api/v1/label/")
            .and_then(|r| r.strip_suffix("/values"))
        {
            Some(name) => label_values(tenant, name, &params),
            None if p.starts_with("api/v1/search/") => Err(ApiResponse::error(
                404,
                "not_found",
                &format!("/{p} (the experimental search API of newer Prometheus versions) is not supported by arrowmon; use api/v1/labels, api/v1/label/<name>/values and api/v1/series"),
            )),
            None => Err(ApiResponse::error(
                404,
                "not_found",
                &format!("unknown API path /{p}"),
            )),
        },
    };
    result.unwrap_or_else(|e| e)
}

/// The Prometheus version arrowmon's API answers as, in buildinfo's `version`:
/// Grafana's Prometheus datasource reads it as a Prometheus version to choose
/// features (the labels API with `match[]` from 2.24 on, …), and the paths
/// arrowmon serves are those of Prometheus 2.42 (`format_query` prints as 2.42
/// does). arrowmon's own version is in `revision`.
pub const PROMETHEUS_API_VERSION: &str = "2.42.0";

fn buildinfo() -> ApiResponse {
    ApiResponse::success(json!({
        "version": PROMETHEUS_API_VERSION,
        "revision": concat!("arrowmon ", env!("CARGO_PKG_VERSION")),
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
}

/// `api/v1/format_query`: the expression as Prometheus 2.42's prettifier writes
/// it; a parse error is a 400 `bad_data`, as for `query`.
fn format_query(p: &Params) -> Result<ApiResponse, ApiResponse> {
    let text = p.get("query").unwrap_or("");
    let expr =
        promql::parse_expr(text).map_err(|e| bad(format!("invalid parameter \"query\": {e}")))?;
    Ok(ApiResponse::success(Value::String(
        promql::pretty::prettify(&expr),
    )))
}

/// `suggestions` (POST, JSON), which Grafana's Prometheus datasource answers in
/// its backend (promlib `resource.GetSuggestions`): label names, or the values of
/// `labelName`, of the series whose metric names the `queries` select, narrowed
/// by the `scopes` and `adhocFilters`, in `start`..`end`, at most `limit`.
fn suggestions(tenant: &Tenant, req: &ApiRequest<'_>) -> Result<ApiResponse, ApiResponse> {
    #[derive(serde::Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    struct Filter {
        key: String,
        operator: String,
        value: String,
        values: Vec<String>,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    struct Body {
        label_name: String,
        queries: Vec<String>,
        scopes: Vec<Filter>,
        adhoc_filters: Vec<Filter>,
        start: String,
        end: String,
        limit: i64,
    }
    let is_json = req
        .content_type
        .is_some_and(|c| c.starts_with("application/json"))
        || req.body.trim_ascii_start().starts_with(b"{");
    let body: Body = if is_json {
        serde_json::from_slice(req.body)
            .map_err(|e| bad(format!("suggestions: the request body is not JSON: {e}")))?
    } else {
        // A form body or query string (the frontend's request helper may encode
        // it so): the plain fields only.
        let p = Params::from_request(req);
        Body {
            label_name: p.get("labelName").unwrap_or("").to_string(),
            queries: p.all("queries").into_iter().map(str::to_string).collect(),
            start: p.get("start").unwrap_or("").to_string(),
            end: p.get("end").unwrap_or("").to_string(),
            limit: p.get("limit").and_then(|l| l.parse().ok()).unwrap_or(0),
            ..Body::default()
        }
    };
    // Metric names of the queries' selectors; a query that does not parse is
    // skipped, as Grafana skips it.
    let mut names: Vec<String> = Vec::new();
    for q in &body.queries {
        let Ok(expr) = promql::parse_expr(&dummy_grafana_variables(q)) else {
            continue;
        };
        for set in promql::extract_selectors(&expr).unwrap_or_default() {
            names.extend(
                set.iter()
                    .filter(|m| m.name == crate::model::labels::METRIC_NAME)
                    .map(|m| m.value.clone()),
            );
        }
    }
    names.sort();
    names.dedup();
    let mut matchers = Vec::new();
    for f in body.scopes.iter().chain(&body.adhoc_filters) {
        let quote = crate::promql::pretty::go_quote;
        let any_of = |vals: &[String]| {
            vals.iter()
                .map(|v| regex::escape(v))
                .collect::<Vec<_>>()
                .join("|")
        };
        let m = match f.operator.as_str() {
            "equals" => format!("{}={}", f.key, quote(&f.value)),
            "not-equals" => format!("{}!={}", f.key, quote(&f.value)),
            "regex-match" => format!("{}=~{}", f.key, quote(&f.value)),
            "regex-not-match" => format!("{}!~{}", f.key, quote(&f.value)),
            "one-of" => format!("{}=~{}", f.key, quote(&any_of(&f.values))),
            "not-one-of" => format!("{}!~{}", f.key, quote(&any_of(&f.values))),
            op => return Err(bad(format!("suggestions: unknown filter operator {op:?}"))),
        };
        matchers.push(m);
    }
    matchers.sort();
    let mut params = Vec::new();
    for n in &names {
        params.push((
            "match[]".to_string(),
            format!(
                "{{__name__={},{}}}",
                crate::promql::pretty::go_quote(n),
                matchers.join(",")
            ),
        ));
    }
    if names.is_empty() && !matchers.is_empty() {
        params.push(("match[]".to_string(), format!("{{{}}}", matchers.join(","))));
    }
    for (k, v) in [("start", &body.start), ("end", &body.end)] {
        if !v.is_empty() {
            params.push((k.to_string(), v.clone()));
        }
    }
    if body.limit > 0 {
        params.push(("limit".to_string(), body.limit.to_string()));
    }
    let params = Params(params);
    if body.label_name.is_empty() {
        labels(tenant, &params)
    } else {
        label_values(tenant, &body.label_name, &params)
    }
}

/// Grafana's interval and range variables replaced by placeholders, so that a
/// query from the editor parses (only its selectors are read).
fn dummy_grafana_variables(q: &str) -> String {
    let mut out = q.to_string();
    for (var, value) in [
        ("__rate_interval_ms", "60000"),
        ("__interval_ms", "60000"),
        ("__range_ms", "60000"),
        ("__range_s", "60"),
        ("__rate_interval", "1m"),
        ("__interval", "1m"),
        ("__range", "1m"),
    ] {
        out = out
            .replace(&format!("${{{var}}}"), value)
            .replace(&format!("${var}"), value);
    }
    out
}

/// `federate`: the newest sample within the lookback of every series the
/// `match[]` selectors select, in the text format, as Prometheus's federation
/// endpoint serves them to a central Prometheus: families by metric name, all
/// `untyped`; staleness markers left out (the format cannot carry them); the
/// external labels a series lacks added, `instance=""` among them when they
/// have no `instance`.
async fn federate(
    tenant: &Tenant,
    engine: &Engine,
    p: &Params,
) -> Result<ApiResponse, ApiResponse> {
    // Prometheus answers its federation errors as plain text.
    let plain = |status: u16, msg: String| ApiResponse {
        status,
        content_type: "text/plain; charset=utf-8",
        body: format!("{msg}\n").into_bytes(),
    };
    let mut sets = Vec::new();
    for m in p.all("match[]") {
        sets.push(selector_matchers(m).map_err(|e| plain(400, e))?);
    }
    let maxt = crate::scrape::now_ms();
    let lookback = i64::try_from(engine.options().lookback_delta.as_millis()).unwrap_or(i64::MAX);
    let mint = maxt.saturating_sub(lookback);
    let mut latest: std::collections::BTreeMap<Labels, (i64, f64)> = Default::default();
    for set in &sets {
        let series = tenant
            .store
            .select(set, mint, maxt)
            .map_err(|e| plain(500, e.to_string()))?;
        for s in series {
            let (Some(&t), Some(&v)) = (s.timestamps.last(), s.values.last()) else {
                continue;
            };
            if !crate::model::is_stale_nan(v) {
                latest.insert(s.labels, (t, v));
            }
        }
    }
    let mut external: Vec<(String, String)> = tenant
        .external_labels()
        .await
        .iter()
        .map(|l| (l.name.to_string(), l.value.to_string()))
        .collect();
    if !external.iter().any(|(n, _)| n == "instance") {
        external.push(("instance".into(), String::new()));
        external.sort();
    }
    // By metric name; the selection is in label order within a name.
    let mut samples: Vec<(&Labels, &(i64, f64))> = latest.iter().collect();
    samples.sort_by(|a, b| a.0.metric_name().cmp(&b.0.metric_name()));
    let mut out = String::new();
    let mut family: Option<&str> = None;
    for (labels, &(t, v)) in samples {
        let Some(name) = labels.metric_name().filter(|n| !n.is_empty()) else {
            continue;
        };
        if family != Some(name) {
            out.push_str("# TYPE ");
            out.push_str(name);
            out.push_str(" untyped\n");
            family = Some(name);
        }
        out.push_str(name);
        let mut pairs: Vec<(&str, &str)> = labels
            .iter()
            .filter(|l| &*l.name != crate::model::labels::METRIC_NAME && !l.value.is_empty())
            .map(|l| (&*l.name, &*l.value))
            .collect();
        let own = pairs.len();
        for (n, v) in &external {
            if !pairs[..own].iter().any(|(have, _)| *have == n.as_str()) {
                pairs.push((n, v));
            }
        }
        crate::model::labels::write_text_label_set(&mut out, &pairs);
        out.push(' ');
        write_exposition_float(&mut out, v);
        out.push(' ');
        out.push_str(&t.to_string());
        out.push('\n');
    }
    Ok(ApiResponse {
        status: 200,
        content_type: "text/plain; version=0.0.4; charset=utf-8",
        body: out.into_bytes(),
    })
}

/// A value as the text format writes it (Go's `expfmt`): Go's `%g` (`+Inf`, `-Inf`
/// and `NaN` included), but `0` for either zero.
fn write_exposition_float(out: &mut String, v: f64) {
    if v == 0.0 {
        out.push('0');
    } else {
        let _ = crate::model::number::write_go_float_g(out, v);
    }
}

/// Metric metadata (HELP, TYPE, UNIT) from the last scrape of every target.
async fn metadata(tenant: &Tenant, p: &Params) -> Result<ApiResponse, ApiResponse> {
    let limit = limit(p)?;
    let only = p.get("metric").filter(|m| !m.is_empty());
    let mut out: std::collections::BTreeMap<String, Vec<Value>> = std::collections::BTreeMap::new();
    for t in tenant.targets().await {
        for m in t.metadata.iter() {
            if only.is_some_and(|o| o != m.family) {
                continue;
            }
            let entry = json!({"type": m.kind.as_str(), "help": m.help, "unit": m.unit});
            let list = out.entry(m.family.clone()).or_default();
            if !list.contains(&entry) {
                list.push(entry);
            }
        }
    }
    let data: Map<String, Value> = out
        .into_iter()
        .take(limit)
        .map(|(k, v)| (k, Value::Array(v)))
        .collect();
    Ok(ApiResponse::success(Value::Object(data)))
}

/// Validates a scrape config without applying it: `{"scrapeConfig": "..."}` in,
/// `{"valid": true, "targets": N}` or the error with its line and column out.
/// `{"ruleConfig": "..."}` validates rules the same way (`"groups"` and `"rules"`
/// counted when valid).
async fn validate(tenant: &Tenant, body: &[u8]) -> Result<ApiResponse, ApiResponse> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("request body is not JSON: {e}")))?;
    if let Some(text) = v.get("ruleConfig").and_then(Value::as_str) {
        return Ok(validate_rules(text));
    }
    let yaml = v.get("scrapeConfig").and_then(Value::as_str).unwrap_or("");
    let secure = tenant
        .settings()
        .await
        .map(|s| s.secure_json_data)
        .unwrap_or_default();
    let result = match tenant.secret_source() {
        crate::tenant::SecretMode::Grafana => {
            ScrapeConfig::parse(yaml, &SecretSource::Grafana(&secure))
        }
        crate::tenant::SecretMode::File => ScrapeConfig::parse(yaml, &SecretSource::File),
    };
    Ok(match result {
        Ok(cfg) => ApiResponse::json(
            200,
            json!({"valid": true, "targets": cfg.targets().count()}),
        ),
        Err(e) => {
            let msg = e.to_string();
            let (line, column) = error_position(&msg);
            ApiResponse::json(
                200,
                json!({"valid": false, "error": msg, "line": line, "column": column}),
            )
        }
    })
}

fn validate_rules(text: &str) -> ApiResponse {
    match crate::rules::RuleSource::Text(text.to_string()).load() {
        Ok(files) => {
            let groups: usize = files.iter().map(|(_, g)| g.groups.len()).sum();
            let rules: usize = files.iter().map(|(_, g)| g.rule_count()).sum();
            ApiResponse::json(
                200,
                json!({"valid": true, "groups": groups, "rules": rules}),
            )
        }
        Err(msg) => {
            // `ruleConfig: LINE:COLUMN: …` as promtool writes positions, else libyaml's words.
            let first = msg.lines().next().unwrap_or("");
            let mut nums = first
                .strip_prefix(crate::rules::RULE_CONFIG_NAME)
                .and_then(|r| r.strip_prefix(": "))
                .unwrap_or("")
                .splitn(3, ':')
                .map(|n| n.parse::<u64>().ok());
            let (line, column) = match (nums.next().flatten(), nums.next().flatten()) {
                (Some(l), Some(c)) => (Some(l), Some(c)),
                _ => error_position(first),
            };
            ApiResponse::json(
                200,
                json!({"valid": false, "error": msg, "line": line, "column": column}),
            )
        }
    }
}

/// `line N column M` from a YAML error message.
fn error_position(msg: &str) -> (Option<u64>, Option<u64>) {
    let after = |key: &str| -> Option<u64> {
        let i = msg.find(key)? + key.len();
        msg[i..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    (after("line "), after("column "))
}

fn bad(msg: impl AsRef<str>) -> ApiResponse {
    ApiResponse::error(400, "bad_data", msg.as_ref())
}

async fn run_query<F>(
    engine: &Arc<Engine>,
    tenant: &Arc<Tenant>,
    f: F,
) -> Result<promql::QueryResult, ApiResponse>
where
    F: FnOnce(&Engine, &dyn crate::model::Storage) -> Result<promql::QueryResult, QueryError>
        + Send
        + 'static,
{
    tenant.run_query(engine, f).await.map_err(|e| {
        let e = match e {
            RunError::Query(e) => e,
            task => return ApiResponse::error(500, "internal", &task.to_string()),
        };
        let (status, kind) = query_error_status(&e);
        // Prometheus refuses these before evaluation, as a bad `query` parameter.
        let message = match e {
            QueryError::Parse { .. }
            | QueryError::InvalidRangeQueryType { .. }
            | QueryError::TooDeep { .. } => {
                format!("invalid parameter \"query\": {e}")
            }
            _ => e.to_string(),
        };
        ApiResponse::error(status, kind, &message)
    })
}

/// The `query` parameter, which every query endpoint requires.
fn query_param(p: &Params) -> Result<String, ApiResponse> {
    p.get("query")
        .map(str::to_string)
        .ok_or_else(|| bad("invalid parameter \"query\": query is required"))
}

async fn query(
    tenant: &Arc<Tenant>,
    engine: &Arc<Engine>,
    p: &Params,
) -> Result<ApiResponse, ApiResponse> {
    let expr = query_param(p)?;
    let t = match p.get("time") {
        Some(s) => {
            time::parse_time(s).map_err(|e| bad(format!("invalid parameter \"time\": {e}")))?
        }
        None => now_ms(),
    };
    let r = run_query(engine, tenant, move |e, s| e.instant_query(s, &expr, t)).await?;
    Ok(query_success(&r.value, &r.warnings, &r.infos))
}

async fn query_range(
    tenant: &Arc<Tenant>,
    engine: &Arc<Engine>,
    p: &Params,
) -> Result<ApiResponse, ApiResponse> {
    let expr = query_param(p)?;
    let start = time::parse_time(p.get("start").unwrap_or(""))
        .map_err(|e| bad(format!("invalid parameter \"start\": {e}")))?;
    let end = time::parse_time(p.get("end").unwrap_or(""))
        .map_err(|e| bad(format!("invalid parameter \"end\": {e}")))?;
    if end < start {
        return Err(bad(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    let step = time::parse_step(p.get("step").unwrap_or(""))
        .map_err(|e| bad(format!("invalid parameter \"step\": {e}")))?;
    if step <= 0 {
        return Err(bad("invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer"));
    }
    // Prometheus refuses more than 11,000 points per series.
    if time::points_per_series(start, end, step) > 11_000 {
        return Err(bad("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"));
    }
    let r = run_query(engine, tenant, move |e, s| {
        e.range_query(s, &expr, start, end, step)
    })
    .await?;
    Ok(query_success(&r.value, &r.warnings, &r.infos))
}

/// How a timestamp's milliseconds are written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Millis {
    /// Up to three decimals, trailing zeros dropped (`1435781451.781`,
    /// `1435781451.4`, `1435781451`), as query results are written.
    Trimmed,
    /// Three decimals whenever there are any (`1600096945.400`), as Prometheus's
    /// `jsonutil.MarshalTimestamp` writes exemplars'.
    ThreeDigits,
}

/// A timestamp as Prometheus writes it: seconds, then the milliseconds as
/// `millis` says, none when they are zero.
fn write_timestamp(out: &mut String, t: i64, millis: Millis) {
    if t < 0 {
        out.push('-');
    }
    let t = t.unsigned_abs();
    out.push_str(itoa::Buffer::new().format(t / 1000));
    let ms = t % 1000;
    if ms != 0 {
        let digits = [ms / 100, ms / 10 % 10, ms % 10].map(|d| char::from(b'0' + d as u8));
        let zeros = match millis {
            Millis::Trimmed => digits.iter().rev().take_while(|&&d| d == '0').count(),
            Millis::ThreeDigits => 0,
        };
        out.push('.');
        out.extend(&digits[..3 - zeros]);
    }
}

/// Writes `items` as a JSON array, each with `item`.
fn write_array<T>(
    out: &mut String,
    items: impl IntoIterator<Item = T>,
    mut item: impl FnMut(&mut String, T),
) {
    out.push('[');
    for (i, x) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        item(out, x);
    }
    out.push(']');
}

fn write_json_str(out: &mut String, s: &str) {
    // Serializing a str into a String cannot fail.
    if let Ok(quoted) = serde_json::to_string(s) {
        out.push_str(&quoted);
    }
}

fn write_labels(out: &mut String, l: &Labels) {
    out.push('{');
    for (i, l) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_str(out, &l.name);
        out.push(':');
        write_json_str(out, &l.value);
    }
    out.push('}');
}

fn write_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    write_timestamp(out, t, Millis::Trimmed);
    out.push_str(",\"");
    write_go_float_f(out, v);
    out.push_str("\"]");
}

pub fn labels_json(l: &Labels) -> Value {
    Value::Object(
        l.iter()
            .map(|l| (l.name.to_string(), Value::String(l.value.to_string())))
            .collect(),
    )
}

/// A query's success response, written straight out: a wide range result has
/// millions of points, too many to build as a JSON tree first.
fn query_success(v: &promql::Value, warnings: &[String], infos: &[String]) -> ApiResponse {
    let mut out = String::with_capacity(256);
    out.push_str("{\"status\":\"success\",\"data\":{\"resultType\":\"");
    out.push_str(v.type_name());
    out.push_str("\",\"result\":");
    match v {
        promql::Value::Scalar { t, v } => write_point(&mut out, *t, *v),
        promql::Value::String { t, v } => {
            out.push('[');
            write_timestamp(&mut out, *t, Millis::Trimmed);
            out.push(',');
            write_json_str(&mut out, v);
            out.push(']');
        }
        promql::Value::Vector(samples) => write_array(&mut out, samples, |out, s| {
            out.push_str("{\"metric\":");
            write_labels(out, &s.labels);
            out.push_str(",\"value\":");
            write_point(out, s.t, s.v);
            out.push('}');
        }),
        promql::Value::Matrix(series) => {
            let points: usize = series.iter().map(|s| s.timestamps.len()).sum();
            out.reserve(points * 36 + series.len() * 128);
            write_array(&mut out, series, |out, s| {
                out.push_str("{\"metric\":");
                write_labels(out, &s.labels);
                out.push_str(",\"values\":");
                write_array(out, s.timestamps.iter().zip(&s.values), |out, (t, v)| {
                    write_point(out, *t, *v)
                });
                out.push('}');
            });
        }
    }
    out.push('}');
    for (key, list) in [("warnings", warnings), ("infos", infos)] {
        if !list.is_empty() {
            out.push_str(",\"");
            out.push_str(key);
            out.push_str("\":");
            write_array(&mut out, list, |out, w| write_json_str(out, w));
        }
    }
    out.push('}');
    ApiResponse {
        status: 200,
        content_type: "application/json",
        body: out.into_bytes(),
    }
}

/// `api/v1/query_exemplars`: the exemplars of the series the `query`'s selectors
/// select in `[start, end]` (default: all time), with Prometheus's parameters,
/// errors and JSON (web/api/v1 `queryExemplars`).
async fn query_exemplars(tenant: &Tenant, p: &Params) -> Result<ApiResponse, ApiResponse> {
    // An empty parameter takes the default, as Go's FormValue gives "" for both.
    let time_param = |name: &str, default: i64| -> Result<i64, ApiResponse> {
        match p.get(name) {
            None | Some("") => Ok(default),
            Some(s) => time::parse_time(s).map_err(|e| {
                bad(format!(
                    "invalid parameter \"{name}\": Invalid time value for '{name}': {e}"
                ))
            }),
        }
    };
    let start = time_param("start", time::MIN_TIME_MS)?;
    let end = time_param("end", time::MAX_TIME_MS)?;
    if end < start {
        return Err(bad("end timestamp must not be before start timestamp"));
    }
    let expr = p.get("query").unwrap_or("");
    let selectors = crate::tenant::exemplar_selectors(expr).map_err(bad)?;
    if selectors.is_empty() {
        // Prometheus answers an expression without selectors with no data: 204 and
        // an empty body.
        return Ok(ApiResponse {
            status: 204,
            content_type: "application/json",
            body: Vec::new(),
        });
    }
    let series = tenant
        .query_exemplars(expr, start, end)
        .await
        .map_err(bad)?;
    Ok(exemplars_success(&series))
}

/// Prometheus's answer to `query_exemplars`: per series `seriesLabels` and
/// `exemplars`, each exemplar's `labels`, `value` (a string) and `timestamp`
/// (seconds).
fn exemplars_success(series: &[ExemplarSeries]) -> ApiResponse {
    let mut out = String::with_capacity(64 + series.len() * 256);
    out.push_str("{\"status\":\"success\",\"data\":");
    write_array(&mut out, series, |out, s| {
        out.push_str("{\"seriesLabels\":");
        write_labels(out, &s.series_labels);
        out.push_str(",\"exemplars\":");
        write_array(out, &s.exemplars, |out, e| {
            out.push_str("{\"labels\":");
            write_labels(out, &e.labels);
            out.push_str(",\"value\":\"");
            write_exemplar_value(out, e.value);
            out.push_str("\",\"timestamp\":");
            write_timestamp(out, e.timestamp_ms, Millis::ThreeDigits);
            out.push('}');
        });
        out.push('}');
    });
    out.push('}');
    ApiResponse {
        status: 200,
        content_type: "application/json",
        body: out.into_bytes(),
    }
}

/// An exemplar's value as Prometheus's `jsonutil.MarshalValue` writes it: Go's
/// shortest `'f'` form, or `'e'` below 1e-6 and from 1e21 on.
fn write_exemplar_value(out: &mut String, v: f64) {
    let abs = v.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) && abs.is_finite() {
        // Writing into a String cannot fail.
        let _ = crate::model::number::write_go_float_e(out, v);
    } else {
        write_go_float_f(out, v);
    }
}

/// `match[]` selectors (each a series selector), `start` and `end` (default: all time).
fn selection(p: &Params) -> Result<(Vec<Vec<Matcher>>, i64, i64), ApiResponse> {
    let mut sets = Vec::new();
    for m in p.all("match[]") {
        sets.push(
            selector_matchers(m).map_err(|e| bad(format!("invalid parameter \"match[]\": {e}")))?,
        );
    }
    let start = match p.get("start") {
        Some(s) => {
            time::parse_time(s).map_err(|e| bad(format!("invalid parameter \"start\": {e}")))?
        }
        None => time::MIN_TIME_MS,
    };
    let end = match p.get("end") {
        Some(s) => {
            time::parse_time(s).map_err(|e| bad(format!("invalid parameter \"end\": {e}")))?
        }
        None => time::MAX_TIME_MS,
    };
    Ok((sets, start, end))
}

/// Parses a `match[]` series selector into matchers (one `or` branch only).
fn selector_matchers(text: &str) -> Result<Vec<Matcher>, String> {
    use promql_parser::label::MatchOp;
    use promql_parser::parser::Expr;
    // Through the engine's parse, which bounds the nesting promql-parser recurses over.
    let expr = promql::parse_expr(text).map_err(|e| e.to_string())?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(format!("{text:?} is not a series selector"));
    };
    if !vs.matchers.or_matchers.is_empty() {
        return Err(format!(
            "{text:?}: `or` in series selectors is not supported here"
        ));
    }
    let mut out = Vec::new();
    if let Some(name) = &vs.name {
        out.push(Matcher::equal(crate::model::labels::METRIC_NAME, name));
    }
    for m in &vs.matchers.matchers {
        let kind = match m.op {
            MatchOp::Equal => MatchKind::Equal,
            MatchOp::NotEqual => MatchKind::NotEqual,
            MatchOp::Re(_) => MatchKind::Regex,
            MatchOp::NotRe(_) => MatchKind::NotRegex,
        };
        out.push(Matcher::new(kind, &m.name, &m.value).map_err(|e| e.to_string())?);
    }
    if out.iter().all(|m| m.matches_empty()) {
        return Err("match[] must contain at least one non-empty matcher".into());
    }
    Ok(out)
}

fn limit(p: &Params) -> Result<usize, ApiResponse> {
    match p.get("limit") {
        None | Some("") | Some("0") => Ok(usize::MAX),
        Some(s) => s.parse::<usize>().map_err(|_| {
            bad(format!(
                "invalid parameter \"limit\": cannot parse {s:?} to a valid limit"
            ))
        }),
    }
}

fn matching_series(tenant: &Tenant, sets: &[Vec<Matcher>], start: i64, end: i64) -> Vec<Labels> {
    let mut all: Vec<Labels> = if sets.is_empty() {
        tenant.store.series(&[], start, end)
    } else {
        sets.iter()
            .flat_map(|m| tenant.store.series(m, start, end))
            .collect()
    };
    all.sort();
    all.dedup();
    all
}

fn labels(tenant: &Tenant, p: &Params) -> Result<ApiResponse, ApiResponse> {
    let (sets, start, end) = selection(p)?;
    let limit = limit(p)?;
    let mut names: Vec<String> = matching_series(tenant, &sets, start, end)
        .iter()
        .flat_map(|l| l.iter().map(|l| l.name.to_string()).collect::<Vec<_>>())
        .collect();
    names.sort();
    names.dedup();
    names.truncate(limit);
    Ok(ApiResponse::success(json!(names)))
}

fn label_values(tenant: &Tenant, name: &str, p: &Params) -> Result<ApiResponse, ApiResponse> {
    let (sets, start, end) = selection(p)?;
    let limit = limit(p)?;
    let mut values: Vec<String> = matching_series(tenant, &sets, start, end)
        .iter()
        .filter_map(|l| l.get(name).map(str::to_string))
        .collect();
    values.sort();
    values.dedup();
    values.truncate(limit);
    Ok(ApiResponse::success(json!(values)))
}

fn series(tenant: &Tenant, p: &Params) -> Result<ApiResponse, ApiResponse> {
    let (sets, start, end) = selection(p)?;
    if sets.is_empty() {
        return Err(bad("no match[] parameter provided"));
    }
    let limit = limit(p)?;
    let mut all = matching_series(tenant, &sets, start, end);
    all.truncate(limit);
    Ok(ApiResponse::success(Value::Array(
        all.iter().map(labels_json).collect(),
    )))
}

async fn targets(tenant: &Tenant) -> ApiResponse {
    let active: Vec<Value> = tenant
        .targets()
        .await
        .iter()
        .map(|t| {
            json!({
                "discoveredLabels": labels_json(&t.discovered_labels),
                "labels": labels_json(&t.labels),
                "scrapePool": t.job,
                "scrapeUrl": t.url,
                "globalUrl": t.url,
                "lastError": t.last_error,
                "lastScrape": if t.last_scrape_ms > 0 { crate::model::time::format_rfc3339_ms(t.last_scrape_ms) } else { "0001-01-01T00:00:00Z".to_string() },
                "lastScrapeDuration": t.last_duration.as_secs_f64(),
                "health": match t.health { Health::Up => "up", Health::Down => "down", Health::Unknown => "unknown" },
                "scrapeInterval": crate::model::duration::format_duration(t.interval),
                "scrapeTimeout": crate::model::duration::format_duration(t.timeout),
            })
        })
        .collect();
    let dropped: Vec<Value> = tenant
        .dropped_targets()
        .await
        .iter()
        .map(
            |d| json!({"discoveredLabels": labels_json(&d.discovered_labels), "scrapePool": d.job}),
        )
        .collect();
    ApiResponse::success(json!({"activeTargets": active, "droppedTargets": dropped}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_results_are_written_as_prometheus_writes_them() {
        use crate::model::Series;
        use crate::promql::Sample;
        let labels = Labels::from_pairs([("__name__", "m"), ("path", "a\"b\\c\n")]);
        let matrix = promql::Value::Matrix(vec![Series {
            labels: labels.clone(),
            timestamps: vec![1_435_781_451_781, 1_435_781_452_000, -1_500, 10],
            values: vec![1.5, f64::NAN, f64::NEG_INFINITY, 1e21],
        }]);
        let r = query_success(&matrix, &["w \"1\"".to_string()], &[]);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            v,
            json!({"status": "success", "data": {"resultType": "matrix", "result": [{
                "metric": {"__name__": "m", "path": "a\"b\\c\n"},
                "values": [[1435781451.781, "1.5"], [1435781452, "NaN"], [-1.5, "-Inf"],
                           [0.01, "1000000000000000000000"]],
            }]}, "warnings": ["w \"1\""]})
        );
        // Whole seconds without a fraction, as Prometheus writes them.
        assert!(std::str::from_utf8(&r.body)
            .unwrap()
            .contains("[1435781452,\"NaN\"]"));
        let vector = promql::Value::Vector(vec![Sample {
            labels,
            t: 2_000,
            v: 0.25,
        }]);
        let v: Value =
            serde_json::from_slice(&query_success(&vector, &[], &["i".into()]).body).unwrap();
        assert_eq!(v["data"]["result"][0]["value"], json!([2, "0.25"]));
        assert_eq!(v["infos"], json!(["i"]));
        let scalar = promql::Value::Scalar { t: 1_001, v: 2.0 };
        let v: Value = serde_json::from_slice(&query_success(&scalar, &[], &[]).body).unwrap();
        assert_eq!(
            v["data"],
            json!({"resultType": "scalar", "result": [1.001, "2"]})
        );
        let string = promql::Value::String {
            t: 0,
            v: "x\"".into(),
        };
        let v: Value = serde_json::from_slice(&query_success(&string, &[], &[]).body).unwrap();
        assert_eq!(
            v["data"],
            json!({"resultType": "string", "result": [0, "x\""]})
        );
    }

    #[test]
    fn post_form_parameters_are_read() {
        let req = ApiRequest {
            method: "POST",
            path: "api/v1/query",
            query: "time=10",
            body: b"query=up%7Bjob%3D%22a%22%7D",
            content_type: Some("application/x-www-form-urlencoded"),
        };
        let p = Params::from_request(&req);
        assert_eq!(p.get("query"), Some("up{job=\"a\"}"));
        assert_eq!(p.get("time"), Some("10"));
    }

    #[test]
    fn yaml_error_positions_are_found() {
        assert_eq!(
            error_position("x: unknown field at line 3 column 5"),
            (Some(3), Some(5))
        );
        assert_eq!(error_position("no position"), (None, None));
    }

    #[test]
    fn roles_map_to_access() {
        assert_eq!(Access::from_grafana_role(Some("Admin")), Access::Admin);
        assert_eq!(Access::from_grafana_role(Some("Editor")), Access::Edit);
        assert_eq!(Access::from_grafana_role(Some("Viewer")), Access::Read);
        assert_eq!(Access::from_grafana_role(None), Access::Read);
        assert!(require(Access::Read, Access::Edit).is_err());
        assert!(require(Access::Admin, Access::Edit).is_ok());
    }

    #[test]
    fn error_statuses_follow_the_prometheus_api() {
        assert_eq!(
            query_error_status(&QueryError::Parse {
                message: "x".into(),
                position: None
            })
            .0,
            400
        );
        assert_eq!(
            query_error_status(&QueryError::InvalidRangeQueryType {
                found: "range vector"
            }),
            (400, "bad_data")
        );
        assert_eq!(
            query_error_status(&QueryError::Execution("many-to-many".into())).0,
            422
        );
        assert_eq!(
            query_error_status(&QueryError::Timeout(std::time::Duration::from_secs(1))).0,
            503
        );
    }

    #[test]
    fn exemplar_values_and_timestamps_are_written_as_prometheus_writes_them() {
        let mut out = String::new();
        write_timestamp(&mut out, -1_005, Millis::ThreeDigits);
        out.push(' ');
        write_timestamp(&mut out, 50, Millis::ThreeDigits);
        out.push(' ');
        write_timestamp(&mut out, 1_400, Millis::ThreeDigits);
        out.push(' ');
        write_timestamp(&mut out, 1_400, Millis::Trimmed);
        out.push(' ');
        write_exemplar_value(&mut out, 2e21);
        out.push(' ');
        write_exemplar_value(&mut out, f64::NEG_INFINITY);
        out.push(' ');
        write_exemplar_value(&mut out, 123456.5);
        assert_eq!(out, "-1.005 0.050 1.400 1.4 2e+21 -Inf 123456.5");
    }
}
