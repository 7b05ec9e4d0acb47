//! Unit tests of rules in promtool's format (`promtool test rules`,
//! cmd/promtool/unittest.go): a YAML file names rule files and holds tests, each
//! with input series, alerts expected at given times and expressions with their
//! expected samples.
//!
//! Semantics as promtool's: the input series (in the PromQL test scripts'
//! expanding notation, [`crate::promql::testscript`]) are loaded into memory up to
//! each evaluation time; every group is evaluated at every `evaluation_interval`
//! from 0 to the largest `eval_time` (in `group_eval_order`); alerts are compared
//! against the evaluation at or just before their `eval_time`, firing ones only;
//! expressions are instant queries at their `eval_time` after the last
//! evaluation. Groups start as restored: nothing is read back from
//! `ALERTS_FOR_STATE`. Failures are worded as promtool words them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::eval::{AlertState, EvalOptions, Group, MemRuleStorage, RuleStorage};
use super::yaml::{self, Kind, Node, Scalar};
use super::{load_rule_file, ParseOptions, RuleKind};
use crate::model::duration::{format_duration, go_duration_string, parse_duration};
use crate::model::labels::{go_quote, Labels};
use crate::model::number::{format_go_float_e, parse_go_float};
use crate::promql::testscript::{parse_series_desc, parse_values, test_engine_options};
use crate::promql::{Engine, Value};

/// What running one test file found: warnings (rule file patterns that match
/// nothing) and the failures, each one block of text as promtool prints it. No
/// failures: the file passed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TestFileOutcome {
    pub warnings: Vec<String>,
    pub failures: Vec<String>,
}

impl TestFileOutcome {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    fn failed(failure: String) -> TestFileOutcome {
        TestFileOutcome {
            warnings: Vec::new(),
            failures: vec![failure],
        }
    }
}

/// Reads and runs one test file.
/// The most evaluation steps one test runs (eval_time / evaluation_interval):
/// a week at one-second steps.
pub const MAX_EVALUATION_STEPS: i64 = 604_800;

pub fn run_test_file(path: &Path) -> TestFileOutcome {
    let text = match std::fs::read(path) {
        Ok(b) => match String::from_utf8(b) {
            Ok(t) => t,
            Err(e) => {
                return TestFileOutcome::failed(format!(
                    "yaml: invalid UTF-8 at byte {}",
                    e.utf8_error().valid_up_to()
                ))
            }
        },
        Err(e) => {
            // Go's wording of the usual cases, as promtool prints them.
            let reason = match e.kind() {
                std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
                std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                _ => e.to_string(),
            };
            return TestFileOutcome::failed(format!("open {}: {reason}", path.display()));
        }
    };
    let base = path.parent().unwrap_or(Path::new(""));
    run_test_text(&text, base)
}

/// Decodes a test file's text without running it, as the runner reads it
/// first: the number of tests, or the error that refuses the file.
pub fn read_test_file(text: &str) -> Result<usize, String> {
    parse_test_file(text).map(|f| f.tests.len())
}

/// Runs a test file given as text; rule files are named relative to `base_dir`.
pub fn run_test_text(text: &str, base_dir: &Path) -> TestFileOutcome {
    let file = match parse_test_file(text) {
        Ok(f) => f,
        Err(e) => return TestFileOutcome::failed(e),
    };
    let mut outcome = TestFileOutcome::default();
    let mut rule_files: Vec<PathBuf> = Vec::new();
    for pattern in &file.rule_files {
        let p = Path::new(pattern);
        // Joined as Go's filepath.Join does: `./x.yml` is `x.yml`.
        let base_dir = base_dir.strip_prefix(".").unwrap_or(base_dir);
        let p = if pattern.is_empty() || p.is_absolute() {
            p.to_path_buf()
        } else {
            base_dir.join(p)
        };
        let found = crate::config::paths::expand_glob(&p);
        if found.is_empty() {
            outcome
                .warnings
                .push(format!("  WARNING: no file match pattern {}", p.display()));
        }
        rule_files.extend(found);
    }
    let mut order: HashMap<&str, usize> = HashMap::new();
    for (i, name) in file.group_eval_order.iter().enumerate() {
        if order.insert(name.as_str(), i).is_some() {
            outcome
                .failures
                .push(format!("group name repeated in evaluation order: {name}"));
            return outcome;
        }
    }
    let eval_interval = file
        .evaluation_interval
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(60));
    let ctx = RunContext {
        rule_files: &rule_files,
        eval_interval,
        order: &order,
        fuzzy_compare: file.fuzzy_compare,
    };
    for test in &file.tests {
        outcome.failures.extend(ctx.run(test));
    }
    outcome
}

struct RunContext<'a> {
    rule_files: &'a [PathBuf],
    eval_interval: Duration,
    order: &'a HashMap<&'a str, usize>,
    fuzzy_compare: bool,
}

impl RunContext<'_> {
    fn run(&self, test: &TestGroup) -> Vec<String> {
        // An unset series interval is the evaluation interval, as in current promtool.
        let series_interval = test
            .interval
            .filter(|d| !d.is_zero())
            .unwrap_or(self.eval_interval);
        let mut input = match InputSeries::load(&test.input_series, series_interval) {
            Ok(i) => i,
            Err(e) => return vec![e],
        };
        let mut groups = Vec::new();
        let mut load_errors = Vec::new();
        for f in self.rule_files {
            match load_rule_file(f, &ParseOptions::default()) {
                Ok(parsed) => {
                    for g in &parsed.groups {
                        groups.push(Group::new(
                            &f.display().to_string(),
                            g,
                            series_interval,
                            Duration::ZERO,
                            false,
                        ));
                    }
                }
                Err(errs) => load_errors.extend(errs),
            }
        }
        if !load_errors.is_empty() {
            return load_errors;
        }
        // Groups the order does not name count as its first; ties keep file order.
        groups.sort_by_key(|g| self.order.get(g.name.as_str()).copied().unwrap_or(0));

        for a in &test.alert_rule_test {
            if a.alertname.is_empty() {
                let in_group = if test.name.is_empty() {
                    String::new()
                } else {
                    format!(" (in TestGroup {})", test.name)
                };
                return vec![format!(
                    "an item under alert_rule_test misses required attribute alertname at eval_time {}{in_group}",
                    model_duration(a.eval_time_ms)
                )];
            }
        }
        let mut alert_times: Vec<i64> = test
            .alert_rule_test
            .iter()
            .map(|a| a.eval_time_ms)
            .collect();
        alert_times.sort_unstable();
        alert_times.dedup();

        let max_t = test
            .alert_rule_test
            .iter()
            .map(|a| a.eval_time_ms)
            .chain(test.promql_expr_test.iter().map(|e| e.eval_time_ms))
            .max()
            .unwrap_or(0);
        let interval_ms = i64::try_from(self.eval_interval.as_millis()).unwrap_or(i64::MAX);
        let mut engine_opts = test_engine_options();
        engine_opts.default_subquery_step = self.eval_interval;
        engine_opts.delayed_name_removal = false;
        let engine = Engine::new(engine_opts);
        let storage = MemRuleStorage::new();
        let opts = EvalOptions {
            external_labels: test.external_labels.clone(),
            external_url: test.external_url.clone(),
            ..EvalOptions::default()
        };

        let mut errors = Vec::new();
        // promtool evaluates every step up to the last eval_time however many
        // there are; a test file is input, so a bound makes a typo an error.
        let steps = max_t / interval_ms.max(1);
        if steps > MAX_EVALUATION_STEPS {
            return vec![format!(
                "    eval_time {} is {steps} evaluations of {} away: more than the {MAX_EVALUATION_STEPS} a test may run",
                go_duration_string(max_t.saturating_mul(1_000_000)),
                go_duration_string(interval_ms.saturating_mul(1_000_000)),
            )];
        }
        let mut next_alert_time = 0;
        let mut ts = 0i64;
        while ts <= max_t {
            input.load_until(ts, &storage);
            let mut eval_errors = Vec::new();
            for g in &mut groups {
                g.eval(ts, &engine, &storage as &dyn RuleStorage, &opts);
                for r in &g.rules {
                    if let Some(e) = &r.last_error {
                        eval_errors.push(format!(
                            "    rule: {}, time: {}, err: {e}",
                            r.rule.name,
                            go_duration_string(ts.saturating_mul(1_000_000))
                        ));
                    }
                }
            }
            // Evaluation errors end the test; failed comparisons do not.
            if !eval_errors.is_empty() {
                errors.extend(eval_errors);
                return errors;
            }
            let next_ts = ts.saturating_add(interval_ms);
            while next_alert_time < alert_times.len()
                && ts <= alert_times[next_alert_time]
                && alert_times[next_alert_time] < next_ts
            {
                let t = alert_times[next_alert_time];
                for case in test.alert_rule_test.iter().filter(|a| a.eval_time_ms == t) {
                    if let Some(e) = compare_alerts(test, case, &groups) {
                        errors.push(e);
                    }
                }
                next_alert_time += 1;
            }
            if next_ts == ts {
                break;
            }
            ts = next_ts;
        }

        for case in &test.promql_expr_test {
            if let Some(e) = check_expr(case, &engine, &storage, self.fuzzy_compare) {
                errors.push(e);
            }
        }
        errors
    }
}

/// Input series, parsed, appended up to each evaluation time.
struct InputSeries {
    series: Vec<(Labels, Vec<(i64, f64)>)>,
    loaded: Vec<usize>,
}

impl InputSeries {
    fn load(series: &[SeriesSpec], interval: Duration) -> Result<InputSeries, String> {
        let step = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        let mut out: Vec<(Labels, Vec<(i64, f64)>)> = Vec::new();
        for s in series {
            let (labels, rest) = parse_series_desc(&s.series)
                .map_err(|e| format!("line {}: input series {:?}: {e}", s.line, s.series))?;
            if !rest.trim().is_empty() {
                return Err(format!(
                    "line {}: input series {:?}: unexpected {:?} after the labels",
                    s.line,
                    s.series,
                    rest.trim()
                ));
            }
            let values = parse_values(&s.values)
                .map_err(|e| format!("line {}: values {:?}: {e}", s.line, s.values))?;
            let samples: Vec<(i64, f64)> = values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| ((i as i64).saturating_mul(step), v)))
                .collect();
            // A series given twice: the later values win, as the test scripts load them.
            out.retain(|(l, _)| *l != labels);
            out.push((labels, samples));
        }
        let loaded = vec![0; out.len()];
        Ok(InputSeries {
            series: out,
            loaded,
        })
    }

    fn load_until(&mut self, ts: i64, storage: &MemRuleStorage) {
        for (i, (labels, samples)) in self.series.iter().enumerate() {
            let from = self.loaded[i];
            let to = from + samples[from..].partition_point(|(t, _)| *t <= ts);
            if to > from {
                storage.add_samples(labels.clone(), &samples[from..to]);
                self.loaded[i] = to;
            }
        }
    }
}

/// A label set (name=value pairs, sorted) and annotations, as promtool compares alerts.
type LabelPairs = Vec<(String, String)>;

fn compare_alerts(test: &TestGroup, case: &AlertTest, groups: &[Group]) -> Option<String> {
    let mut got: Vec<(LabelPairs, LabelPairs)> = Vec::new();
    for g in groups {
        for r in &g.rules {
            if r.rule.name != case.alertname || !matches!(r.rule.kind, RuleKind::Alerting { .. }) {
                continue;
            }
            for a in r.alerts() {
                if a.state == AlertState::Firing {
                    got.push((
                        a.labels
                            .iter()
                            .map(|l| (l.name.to_string(), l.value.to_string()))
                            .collect(),
                        a.annotations
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    ));
                }
            }
        }
    }
    let mut exp: Vec<(LabelPairs, LabelPairs)> = case
        .exp_alerts
        .iter()
        .map(|a| {
            let mut labels = a.exp_labels.clone();
            labels.insert("alertname".into(), case.alertname.clone());
            (
                labels.into_iter().collect(),
                a.exp_annotations.clone().into_iter().collect(),
            )
        })
        .collect();
    got.sort();
    exp.sort();
    if got == exp {
        return None;
    }
    let name = if test.name.is_empty() {
        String::new()
    } else {
        format!("    name: {},\n", test.name)
    };
    let indent = "            ";
    Some(format!(
        "{name}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
        case.alertname,
        model_duration(case.eval_time_ms),
        indent_lines(&alerts_string(&exp), indent),
        indent_lines(&alerts_string(&got), indent)
    ))
}

/// Go's `labels.Labels.String()`: `{a="b", c="d"}`.
fn labels_string<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let inner: Vec<String> = pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

fn pairs_string(p: &LabelPairs) -> String {
    labels_string(p.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// promtool's listing of alerts: `[`, each as `N:` and its labels and
/// annotations on lines of their own, `]`.
fn alerts_string(alerts: &[(LabelPairs, LabelPairs)]) -> String {
    if alerts.is_empty() {
        return "[]".into();
    }
    let mut s = String::from("[\n");
    for (i, (labels, annotations)) in alerts.iter().enumerate() {
        if i > 0 {
            s.push_str(",\n");
        }
        let one = format!(
            "\nLabels:{}\nAnnotations:{}",
            pairs_string(labels),
            pairs_string(annotations)
        );
        s.push_str(&format!("{i}:{}", indent_lines(&one, "  ")));
    }
    s.push_str("\n]");
    s
}

/// Prefixes every line but the first with `indent`.
fn indent_lines(text: &str, indent: &str) -> String {
    text.split('\n')
        .enumerate()
        .map(|(i, l)| {
            if i > 0 {
                format!("{indent}{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn check_expr(
    case: &ExprTest,
    engine: &Engine,
    storage: &MemRuleStorage,
    fuzzy: bool,
) -> Option<String> {
    let head = format!(
        "    expr: {}, time: {}",
        go_quote(&case.expr),
        model_duration(case.eval_time_ms)
    );
    let got = match engine.instant_query(storage, &case.expr, case.eval_time_ms) {
        Err(e) => return Some(format!("{head}, err: {e}")),
        Ok(r) => match r.value {
            Value::Vector(v) => v.into_iter().map(|s| (s.labels, s.v)).collect::<Vec<_>>(),
            Value::Scalar { v, .. } => vec![(Labels::empty(), v)],
            _ => {
                return Some(format!(
                    "{head}, err: rule result is not a vector or scalar"
                ))
            }
        },
    };
    let mut exp = Vec::with_capacity(case.exp_samples.len());
    for s in &case.exp_samples {
        match parse_series_desc(&s.labels).and_then(|(l, rest)| {
            if rest.trim().is_empty() {
                Ok(l)
            } else {
                Err(format!("unexpected {:?} after the labels", rest.trim()))
            }
        }) {
            Ok(l) => exp.push((l, s.value)),
            Err(e) => {
                return Some(format!("{head}, err: labels {}: {e}", go_quote(&s.labels)));
            }
        }
    }
    let mut got = got;
    got.sort_by(|a, b| a.0.cmp(&b.0));
    exp.sort_by(|a, b| a.0.cmp(&b.0));
    let same = got.len() == exp.len()
        && got
            .iter()
            .zip(&exp)
            .all(|(g, e)| g.0 == e.0 && same_float(g.1, e.1, fuzzy));
    if same {
        return None;
    }
    Some(format!(
        "{head},\n        exp: {}\n        got: {}",
        samples_string(&exp),
        samples_string(&got)
    ))
}

/// Values must be equal (NaN never is), as promtool compares them; with
/// `fuzzy_compare`, one unit in the last place apart is equal too.
fn same_float(a: f64, b: f64, fuzzy: bool) -> bool {
    a == b
        || (fuzzy && (next_toward(a, f64::NEG_INFINITY) == b || next_toward(a, f64::INFINITY) == b))
}

/// Go's `math.Nextafter(x, y)` for y = ±Inf.
fn next_toward(x: f64, y: f64) -> f64 {
    if x.is_nan() || x == y {
        return x;
    }
    if x == 0.0 {
        let tiny = f64::from_bits(1);
        return if y > 0.0 { tiny } else { -tiny };
    }
    let bits = x.to_bits();
    if (y > x) == (x > 0.0) {
        f64::from_bits(bits + 1)
    } else {
        f64::from_bits(bits - 1)
    }
}

/// promtool's listing of samples: `{labels} 1E+00, …`, or `nil`.
fn samples_string(samples: &[(Labels, f64)]) -> String {
    if samples.is_empty() {
        return "nil".into();
    }
    samples
        .iter()
        .map(|(l, v)| {
            format!(
                "{} {}",
                labels_string(l.iter().map(|l| (&*l.name, &*l.value))),
                format_go_float_e(*v).replace('e', "E")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prometheus's `model.Duration` as printed: `1m`, `1h30m`, `0s`.
fn model_duration(ms: i64) -> String {
    format_duration(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

// ---- the test file ----

struct TestFile {
    rule_files: Vec<String>,
    evaluation_interval: Option<Duration>,
    group_eval_order: Vec<String>,
    tests: Vec<TestGroup>,
    fuzzy_compare: bool,
}

#[derive(Default)]
struct TestGroup {
    interval: Option<Duration>,
    input_series: Vec<SeriesSpec>,
    alert_rule_test: Vec<AlertTest>,
    promql_expr_test: Vec<ExprTest>,
    external_labels: BTreeMap<String, String>,
    external_url: String,
    name: String,
}

#[derive(Default)]
struct SeriesSpec {
    series: String,
    values: String,
    line: usize,
}

#[derive(Default)]
struct AlertTest {
    eval_time_ms: i64,
    alertname: String,
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Default)]
struct ExpAlert {
    exp_labels: BTreeMap<String, String>,
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Default)]
struct ExprTest {
    expr: String,
    eval_time_ms: i64,
    exp_samples: Vec<ExpSample>,
}

#[derive(Default)]
struct ExpSample {
    labels: String,
    value: f64,
}

/// Reads a test file as yaml.v2's strict decoding reads it into promtool's
/// types: unknown fields, repeated fields and values of the wrong type are
/// errors, all listed with their lines.
fn parse_test_file(text: &str) -> Result<TestFile, String> {
    let root = yaml::parse(text).map_err(|e| format!("yaml: {e}"))?;
    let mut d = Decoder::default();
    let mut file = TestFile {
        rule_files: Vec::new(),
        evaluation_interval: None,
        group_eval_order: Vec::new(),
        tests: Vec::new(),
        fuzzy_compare: false,
    };
    for (key, value) in d.fields(
        &root,
        "unitTestFile",
        &[
            "rule_files",
            "evaluation_interval",
            "group_eval_order",
            "tests",
            "fuzzy_compare",
        ],
    ) {
        match key {
            "rule_files" => file.rule_files = d.strings(value),
            "evaluation_interval" => file.evaluation_interval = d.duration(value),
            "group_eval_order" => file.group_eval_order = d.strings(value),
            "fuzzy_compare" => file.fuzzy_compare = d.boolean(value),
            _ => {
                for t in d.seq(value, "[]main.testGroup") {
                    file.tests.push(d.test_group(t));
                }
            }
        }
    }
    if d.errors.is_empty() {
        return Ok(file);
    }
    d.errors.sort_by_key(|(line, _)| *line);
    let lines: Vec<String> = d
        .errors
        .iter()
        .map(|(line, e)| format!("  line {line}: {e}"))
        .collect();
    Err(format!("yaml: unmarshal errors:\n{}", lines.join("\n")))
}

#[derive(Default)]
struct Decoder {
    errors: Vec<(usize, String)>,
}

impl Decoder {
    fn error(&mut self, n: &Node, e: String) {
        self.errors.push((n.pos.line, e));
    }

    /// The known fields of a mapping, in order; others are errors.
    fn fields<'a>(
        &mut self,
        n: &'a Node,
        ty: &str,
        known: &[&'static str],
    ) -> Vec<(&'static str, &'a Node)> {
        let entries = match &n.kind {
            Kind::Map(entries) => entries,
            Kind::Scalar(Scalar::Null) => return Vec::new(),
            _ => {
                self.error(n, n.cannot_unmarshal(&format!("main.{ty}")));
                return Vec::new();
            }
        };
        let mut out: Vec<(&'static str, &Node)> = Vec::new();
        for (k, v) in entries {
            let name = match &k.kind {
                Kind::Scalar(Scalar::Str(s)) => s.as_str(),
                _ => {
                    self.error(k, k.cannot_unmarshal("string"));
                    continue;
                }
            };
            match known.iter().find(|f| **f == name) {
                None => self.error(k, format!("field {name} not found in type main.{ty}")),
                Some(f) if out.iter().any(|(seen, _)| seen == f) => {
                    self.error(k, format!("field {name} already set in type main.{ty}"))
                }
                Some(f) => out.push((f, v)),
            }
        }
        out
    }

    fn string(&mut self, n: &Node) -> String {
        n.scalar_text().unwrap_or_else(|| {
            self.error(n, n.cannot_unmarshal("string"));
            String::new()
        })
    }

    fn seq<'a>(&mut self, n: &'a Node, into: &str) -> Vec<&'a Node> {
        match &n.kind {
            Kind::Seq(items) => items.iter().collect(),
            Kind::Scalar(Scalar::Null) => Vec::new(),
            _ => {
                self.error(n, n.cannot_unmarshal(into));
                Vec::new()
            }
        }
    }

    fn strings(&mut self, n: &Node) -> Vec<String> {
        self.seq(n, "[]string")
            .into_iter()
            .map(|item| self.string(item))
            .collect()
    }

    fn string_map(&mut self, n: &Node) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match &n.kind {
            Kind::Map(entries) => {
                for (k, v) in entries {
                    let key = self.string(k);
                    let value = self.string(v);
                    if out.insert(key.clone(), value).is_some() {
                        self.error(k, format!("key {} already set in map", go_quote(&key)));
                    }
                }
            }
            Kind::Scalar(Scalar::Null) => {}
            _ => self.error(n, n.cannot_unmarshal("map[string]string")),
        }
        out
    }

    fn duration(&mut self, n: &Node) -> Option<Duration> {
        let text = self.string(n);
        if n.is_null() {
            return None;
        }
        match parse_duration(&text) {
            Ok(d) => Some(d),
            Err(_) => {
                self.error(
                    n,
                    format!("not a valid duration string: {}", go_quote(&text)),
                );
                None
            }
        }
    }

    fn duration_ms(&mut self, n: &Node) -> i64 {
        self.duration(n)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    fn boolean(&mut self, n: &Node) -> bool {
        match &n.kind {
            Kind::Scalar(Scalar::Bool(b)) => *b,
            Kind::Scalar(Scalar::Null) => false,
            _ => {
                self.error(n, n.cannot_unmarshal("bool"));
                false
            }
        }
    }

    fn float(&mut self, n: &Node) -> f64 {
        let parsed = match &n.kind {
            Kind::Scalar(Scalar::Int(s) | Scalar::Float(s)) => match s.as_str() {
                ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Some(f64::INFINITY),
                "-.inf" | "-.Inf" | "-.INF" => Some(f64::NEG_INFINITY),
                ".nan" | ".NaN" | ".NAN" => Some(f64::NAN),
                s => parse_go_float(s.as_bytes()),
            },
            Kind::Scalar(Scalar::Null) => Some(0.0),
            _ => None,
        };
        parsed.unwrap_or_else(|| {
            self.error(n, n.cannot_unmarshal("float64"));
            0.0
        })
    }

    fn test_group(&mut self, n: &Node) -> TestGroup {
        let mut g = TestGroup::default();
        for (key, v) in self.fields(
            n,
            "testGroup",
            &[
                "interval",
                "input_series",
                "alert_rule_test",
                "promql_expr_test",
                "external_labels",
                "external_url",
                "name",
            ],
        ) {
            match key {
                "interval" => g.interval = self.duration(v),
                "input_series" => {
                    for s in self.seq(v, "[]main.series") {
                        let mut spec = SeriesSpec {
                            line: s.pos.line,
                            ..SeriesSpec::default()
                        };
                        for (k, v) in self.fields(s, "series", &["series", "values"]) {
                            match k {
                                "series" => spec.series = self.string(v),
                                _ => spec.values = self.string(v),
                            }
                        }
                        g.input_series.push(spec);
                    }
                }
                "alert_rule_test" => {
                    for a in self.seq(v, "[]main.alertTestCase") {
                        g.alert_rule_test.push(self.alert_test(a));
                    }
                }
                "promql_expr_test" => {
                    for e in self.seq(v, "[]main.promqlTestCase") {
                        g.promql_expr_test.push(self.expr_test(e));
                    }
                }
                "external_labels" => g.external_labels = self.string_map(v),
                "external_url" => g.external_url = self.string(v),
                _ => g.name = self.string(v),
            }
        }
        g
    }

    fn alert_test(&mut self, n: &Node) -> AlertTest {
        let mut a = AlertTest::default();
        for (key, v) in self.fields(
            n,
            "alertTestCase",
            &["eval_time", "alertname", "exp_alerts"],
        ) {
            match key {
                "eval_time" => a.eval_time_ms = self.duration_ms(v),
                "alertname" => a.alertname = self.string(v),
                _ => {
                    for x in self.seq(v, "[]main.alert") {
                        let mut exp = ExpAlert::default();
                        for (k, v) in self.fields(x, "alert", &["exp_labels", "exp_annotations"]) {
                            match k {
                                "exp_labels" => exp.exp_labels = self.string_map(v),
                                _ => exp.exp_annotations = self.string_map(v),
                            }
                        }
                        a.exp_alerts.push(exp);
                    }
                }
            }
        }
        a
    }

    fn expr_test(&mut self, n: &Node) -> ExprTest {
        let mut e = ExprTest::default();
        for (key, v) in self.fields(n, "promqlTestCase", &["expr", "eval_time", "exp_samples"]) {
            match key {
                "expr" => e.expr = self.string(v),
                "eval_time" => e.eval_time_ms = self.duration_ms(v),
                _ => {
                    for s in self.seq(v, "[]main.sample") {
                        let mut sample = ExpSample::default();
                        for (k, v) in self.fields(s, "sample", &["labels", "value"]) {
                            match k {
                                "labels" => sample.labels = self.string(v),
                                _ => sample.value = self.float(v),
                            }
                        }
                        e.exp_samples.push(sample);
                    }
                }
            }
        }
        e
    }
}

#[cfg(test)]
#[path = "unittest_tests.rs"]
mod tests;
