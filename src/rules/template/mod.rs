//! Alert label and annotation templates: Go's `text/template` language with
//! Prometheus's template functions (template/template.go), parsed and executed
//! as Prometheus expands them for an alert (rules/alerting.go).
//!
//! * [`expand_alert_template`] expands one template for one alert; an error
//!   carries the message Prometheus's expander returns (`error executing
//!   template __alert_A: template: __alert_A:1:115: executing "__alert_A" at
//!   <query "x">: error calling query: …`; the column counts the declarations
//!   Prometheus puts in front of the text).
//! * [`AlertTemplate`] is a template parsed once and expanded for each alert.
//! * [`check`] is the parse check `promtool check rules` runs on each template.
//!
//! Differences from Go and Prometheus:
//! * Execution is bounded where Go's is not: a template fails with an error
//!   when it runs more than a million steps (nodes, commands, range
//!   iterations; a query or a regex compile counts a thousand, a long string
//!   one per 64 bytes, a variable declared long before one per 64 others),
//!   writes more than 1 MiB or has a function return a longer string, or nests
//!   template calls, blocks and parenthesised pipelines more than 200 deep
//!   (Go stops template calls at 100000). The parser refuses blocks and
//!   parentheses nested more than 100 deep (Go limits parentheses only).
//! * Values are those alert templates meet: strings, float64 and int, bool,
//!   maps of labels, `args` maps, query results and samples (float only: no
//!   native histograms), `*time.Time` and `*time.Duration`. A query result
//!   printed whole shows each sample as `&{map[…] value}` where Go prints
//!   pointer addresses.
//! * `time.Time` has the methods `Format`, `String`, `Add`, `Sub`, `UTC`,
//!   `Local` (UTC), `Unix`, `UnixMilli`, `UnixMicro`, `UnixNano`, `Year`,
//!   `YearDay`, `Month` and `Weekday` (their names, as strings), `Day`,
//!   `Hour`, `Minute`, `Second`, `Nanosecond`, `IsZero`, `Before`, `After`,
//!   `Equal`; `time.Duration` has `String`, `Seconds`, `Minutes`, `Hours`,
//!   `Milliseconds`, `Microseconds`, `Nanoseconds`, `Abs`.
//! * `printf` knows flags, widths, precisions, `*` and argument indexes; `%#v`
//!   quotes strings but prints other values as `%v`; `%p` and `%x` of floats
//!   are bad verbs here.
//! * Complex constants (`1i`) fail to execute (Go prints `(0+1i)`).
//! * Strings are UTF-8: a byte escape above `\x7f` in a string literal
//!   stands for U+FFFD, where Go keeps the byte.
//! * `reReplaceAll` and `match` run Rust's regex engine on Go's syntax (with
//!   `\d`, `\w`, `\s` kept ASCII as in Go); after `error parsing regexp:` the
//!   reason is in Go's words for unbalanced groups, classes and repetitions,
//!   in the regex crate's for the rest.
//! * `title` upper-cases the first letter after any character that is not a
//!   letter, digit or `_`, close to x/text's word breaking.
//! * `call` always fails: a template has no function values to call.

mod exec;
mod funcs;
mod gofmt;
mod parse;
mod value;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use value::{AlertFields, Value};

/// One sample a template's `query` function returns (Prometheus's `queryResult`
/// element: `.Labels` map and `.Value` float).
#[derive(Clone, Debug, PartialEq)]
pub struct QuerySample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// What an alert template sees.
pub struct AlertTemplateData<'a> {
    /// `$labels` / `.Labels`.
    pub labels: &'a BTreeMap<String, String>,
    /// `$externalLabels` / `.ExternalLabels`.
    pub external_labels: &'a BTreeMap<String, String>,
    /// `$externalURL` / `.ExternalURL`, and what `externalURL` and `pathPrefix` read.
    pub external_url: &'a str,
    /// `$value` / `.Value`.
    pub value: f64,
    /// Evaluation time in milliseconds: `now`, and the time queries run at.
    pub timestamp_ms: i64,
    /// Runs an instant PromQL query at the evaluation time (the `query` function).
    pub query: &'a dyn Fn(&str) -> Result<Vec<QuerySample>, String>,
}

/// The variables Prometheus declares in front of every alert template.
const ALERT_PREFIX: &str = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

/// Expands one template as Prometheus's rules/alerting.go does: the text is
/// prefixed with the declarations of `$labels`, `$externalLabels`,
/// `$externalURL` and `$value`, named `__alert_<alert name>`, executed with
/// `missingkey=zero` and no HTML escaping. The error is the one Prometheus's
/// `Expander.Expand` returns (`error executing template __alert_A: template:
/// __alert_A:1:…`), which Prometheus shows as `<error expanding template: …>`.
pub fn expand_alert_template(
    alert_name: &str,
    text: &str,
    data: &AlertTemplateData,
) -> Result<String, String> {
    AlertTemplate::new(alert_name, text)?.expand(data)
}

/// An alert template parsed once, to expand for each alert of each evaluation.
#[derive(Debug)]
pub struct AlertTemplate {
    parsed: parse::Templates,
}

impl AlertTemplate {
    /// Parses `text` as [`expand_alert_template`] does; the error is
    /// Prometheus's (`error parsing template __alert_A: template: …`).
    pub fn new(alert_name: &str, text: &str) -> Result<AlertTemplate, String> {
        let name = format!("__alert_{alert_name}");
        parse::parse(&name, &format!("{ALERT_PREFIX}{text}"), &funcs::is_function)
            .map(|parsed| AlertTemplate { parsed })
            .map_err(|e| format!("error parsing template {name}: {e}"))
    }

    /// Executes the template for one alert, as [`expand_alert_template`] does.
    pub fn expand(&self, data: &AlertTemplateData) -> Result<String, String> {
        let dot = Value::Alert(Rc::new(AlertFields {
            labels: Rc::new(data.labels.clone()),
            external_labels: Rc::new(data.external_labels.clone()),
            external_url: data.external_url.into(),
            value: data.value,
        }));
        let env = funcs::Env {
            query: data.query,
            timestamp_ms: data.timestamp_ms,
            external_url: data.external_url,
            regexes: RefCell::new(HashMap::new()),
            cost: Default::default(),
        };
        let name = &self.parsed.name;
        exec::execute(&self.parsed, &env, dot)
            .map_err(|e| format!("error executing template {name}: {e}"))
    }
}

/// Parses and executes `text` as the template `name` with `dot` as its data,
/// with Prometheus's `Expand` wording for errors.
#[cfg(test)]
fn expand(name: &str, text: &str, dot: Value, env: &funcs::Env) -> Result<String, String> {
    let t = parse::parse(name, text, &funcs::is_function)
        .map_err(|e| format!("error parsing template {name}: {e}"))?;
    exec::execute(&t, env, dot).map_err(|e| format!("error executing template {name}: {e}"))
}

/// Parses `text` as the alert template named `name` (`__alert_<alert name>`),
/// as Prometheus checks rule files: the error is Go's parse error
/// (`template: __alert_A:1: unexpected "}" in operand`).
pub fn check(name: &str, text: &str) -> Result<(), String> {
    parse::parse(name, &format!("{ALERT_PREFIX}{text}"), &funcs::is_function).map(|_| ())
}
