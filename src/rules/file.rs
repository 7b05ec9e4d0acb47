//! Reading a rule file into typed groups, with Prometheus's checks
//! (model/rulefmt upstream) and its messages.
//!
//! Reading has two stages, as in Prometheus. First the YAML is turned into
//! groups and rules; what does not fit (an unknown field, a list where a string
//! belongs, a bad duration) is collected as yaml.v3's "unmarshal errors", each
//! with its line, and stops the file there. Then the groups and rules are
//! checked; each problem names the node's line and column, the group, the rule's
//! number (from 1) and name, as `promtool check rules` prints them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::model::duration::parse_duration;
use crate::model::labels::go_quote;

use super::yaml::{self, Kind, Node, Position};

/// How metric and label names are checked. Prometheus 3 checks them as UTF-8
/// (any non-empty name), which is the default; Prometheus 2 and
/// `--validation-scheme legacy` check them against the classic character sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NameValidation {
    #[default]
    Utf8,
    Legacy,
}

impl NameValidation {
    pub fn parse(text: &str) -> Result<NameValidation, String> {
        match text {
            "utf8" => Ok(NameValidation::Utf8),
            "legacy" => Ok(NameValidation::Legacy),
            _ => Err(format!(
                "unknown name validation scheme {text:?} (utf8 or legacy)"
            )),
        }
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*` in the legacy scheme.
    pub fn is_valid_metric_name(self, name: &str) -> bool {
        match self {
            NameValidation::Utf8 => !name.is_empty(),
            NameValidation::Legacy => legacy_name(name, true),
        }
    }

    /// `[a-zA-Z_][a-zA-Z0-9_]*` in the legacy scheme.
    pub fn is_valid_label_name(self, name: &str) -> bool {
        match self {
            NameValidation::Utf8 => !name.is_empty(),
            NameValidation::Legacy => legacy_name(name, false),
        }
    }
}

fn legacy_name(name: &str, colons: bool) -> bool {
    let ok = |b: u8, first: bool| {
        b.is_ascii_alphabetic()
            || b == b'_'
            || (colons && b == b':')
            || (!first && b.is_ascii_digit())
    };
    !name.is_empty() && name.bytes().enumerate().all(|(i, b)| ok(b, i == 0))
}

#[derive(Clone, Copy, Debug, Default)]
pub struct ParseOptions {
    pub names: NameValidation,
    /// Fields Prometheus does not know are skipped instead of refused
    /// (promtool's `--ignore-unknown-fields`).
    pub ignore_unknown_fields: bool,
}

/// The groups of one rule file, checked.
#[derive(Clone, Debug)]
pub struct RuleGroups {
    pub groups: Vec<RuleGroup>,
}

impl RuleGroups {
    pub fn rule_count(&self) -> usize {
        self.groups.iter().map(|g| g.rules.len()).sum()
    }
}

/// A group of rules evaluated one after the other at the group's interval.
#[derive(Clone, Debug)]
pub struct RuleGroup {
    pub name: String,
    /// None: the global `evaluation_interval` (a written `0` means the same).
    pub interval: Option<Duration>,
    /// None: the global `rule_query_offset`.
    pub query_offset: Option<Duration>,
    /// Most series (recording) or alerts (alerting) one evaluation of a rule may
    /// produce; 0 or less is no limit, as in Prometheus.
    pub limit: i64,
    /// Added to every rule's output (Prometheus 3's group labels).
    pub labels: BTreeMap<String, String>,
    pub rules: Vec<Rule>,
    /// Where the group's mapping starts.
    pub position: Position,
}

#[derive(Clone, Debug)]
pub struct Rule {
    /// The recorded metric name or the alert's name.
    pub name: String,
    pub kind: RuleKind,
    /// The expression as written, and as parsed.
    pub expr: String,
    pub parsed: promql_parser::parser::Expr,
    pub labels: BTreeMap<String, String>,
    /// Where the `record` or `alert` value is.
    pub position: Position,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RuleKind {
    Recording,
    Alerting {
        /// How long the condition must hold before the alert fires.
        for_duration: Duration,
        /// How long the alert keeps firing after the condition clears.
        keep_firing_for: Duration,
        annotations: BTreeMap<String, String>,
    },
}

/// One problem in a rule file. Shown as Prometheus shows it; the caller puts the
/// file name in front.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleError {
    /// The YAML itself is malformed (libyaml's message, with its positions).
    Syntax(String),
    /// Values that do not fit their fields, each with its line (yaml.v3's
    /// "unmarshal errors"). A file with these is not checked further.
    Unmarshal(Vec<(usize, String)>),
    /// A problem with a group as a whole.
    Group {
        position: Option<Position>,
        message: String,
    },
    /// A problem with one rule: the `record`/`alert`/`expr` nodes it is about
    /// (none, one or two), the group, the rule's number from 1 and its name.
    Rule {
        positions: Vec<Position>,
        group: String,
        rule: usize,
        name: String,
        message: String,
    },
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleError::Syntax(m) => write!(f, "yaml: {m}"),
            RuleError::Unmarshal(list) => {
                f.write_str("yaml: unmarshal errors:")?;
                for (line, m) in list {
                    write!(f, "\n  line {line}: {m}")?;
                }
                Ok(())
            }
            RuleError::Group { position, message } => match position {
                Some(p) => write!(f, "{p}: {message}"),
                None => f.write_str(message),
            },
            RuleError::Rule {
                positions,
                group,
                rule,
                name,
                message,
            } => {
                for p in positions {
                    write!(f, "{p}: ")?;
                }
                write!(
                    f,
                    "group {}, rule {rule}, {}: {message}",
                    go_quote(group),
                    go_quote(name)
                )
            }
        }
    }
}

/// Reads and checks a rule file's text. All problems are returned, in the order
/// Prometheus reports them.
pub fn parse_rule_file(text: &str, opts: &ParseOptions) -> Result<RuleGroups, Vec<RuleError>> {
    let root = yaml::parse(text).map_err(|e| vec![RuleError::Syntax(e.to_string())])?;
    let mut r = Reader {
        errors: Vec::new(),
        ignore_unknown: opts.ignore_unknown_fields,
    };
    let raw = r.groups(&root);
    if !r.errors.is_empty() {
        r.errors.sort_by_key(|(line, _)| *line);
        return Err(vec![RuleError::Unmarshal(r.errors)]);
    }
    validate(raw, opts.names)
}

// ---- stage 1: YAML nodes to raw groups ----

#[derive(Default)]
struct RawGroup {
    pos: Position,
    name: String,
    interval: Option<Duration>,
    query_offset: Option<Duration>,
    limit: i64,
    labels: BTreeMap<String, String>,
    rules: Vec<RawRule>,
}

#[derive(Default)]
struct RawRule {
    record: Option<(String, Position)>,
    alert: Option<(String, Position)>,
    expr: Option<(String, Position)>,
    for_duration: Duration,
    keep_firing_for: Duration,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

struct Reader {
    errors: Vec<(usize, String)>,
    ignore_unknown: bool,
}

impl Reader {
    fn error(&mut self, node: &Node, message: String) {
        self.errors.push((node.pos.line, message));
    }

    /// The entries of a mapping with string keys; a key given twice is an error
    /// (yaml.v3: `mapping key "x" already defined at line N`).
    /// Each entry comes with its key's line, which yaml.v3 names for an unknown field.
    fn mapping<'n>(&mut self, node: &'n Node, into: &str) -> Vec<(String, usize, &'n Node)> {
        match &node.kind {
            Kind::Map(entries) => {
                let mut out: Vec<(String, usize, &Node)> = Vec::with_capacity(entries.len());
                let mut seen: BTreeMap<String, usize> = BTreeMap::new();
                for (k, v) in entries {
                    let Some(key) = k.scalar_text() else {
                        let m = k.cannot_unmarshal("string");
                        self.error(k, m);
                        continue;
                    };
                    if let Some(first) = seen.get(&key) {
                        let m = format!(
                            "mapping key {} already defined at line {first}",
                            go_quote(&key)
                        );
                        self.error(k, m);
                        continue;
                    }
                    seen.insert(key.clone(), k.pos.line);
                    out.push((key, k.pos.line, v));
                }
                out
            }
            Kind::Scalar(yaml::Scalar::Null) => Vec::new(),
            _ => {
                let m = node.cannot_unmarshal(into);
                self.error(node, m);
                Vec::new()
            }
        }
    }

    fn unknown_field(&mut self, key: &str, line: usize, ty: &str) {
        if !self.ignore_unknown {
            self.errors
                .push((line, format!("field {key} not found in type {ty}")));
        }
    }

    fn groups(&mut self, root: &Node) -> Vec<RawGroup> {
        let mut out = Vec::new();
        let entries = self.mapping(root, "rulefmt.RuleGroups");
        for (key, line, value) in entries {
            match key.as_str() {
                "groups" => match &value.kind {
                    Kind::Seq(items) => {
                        for g in items {
                            out.push(self.group(g));
                        }
                    }
                    Kind::Scalar(yaml::Scalar::Null) => {}
                    _ => {
                        let m = value.cannot_unmarshal("[]rulefmt.RuleGroup");
                        self.error(value, m);
                    }
                },
                _ => self.unknown_field(&key, line, "rulefmt.RuleGroups"),
            }
        }
        out
    }

    fn group(&mut self, node: &Node) -> RawGroup {
        let mut g = RawGroup {
            pos: node.pos,
            ..RawGroup::default()
        };
        for (key, line, value) in self.mapping(node, "rulefmt.RuleGroup") {
            match key.as_str() {
                "name" => g.name = self.string(value),
                "interval" => g.interval = self.duration(value).filter(|d| !d.is_zero()),
                "query_offset" => g.query_offset = self.duration(value),
                "limit" => g.limit = self.int(value),
                "labels" => g.labels = self.string_map(value),
                "rules" => match &value.kind {
                    Kind::Seq(items) => {
                        for r in items {
                            g.rules.push(self.rule(r));
                        }
                    }
                    Kind::Scalar(yaml::Scalar::Null) => {}
                    _ => {
                        let m = value.cannot_unmarshal("[]rulefmt.Rule");
                        self.error(value, m);
                    }
                },
                _ => self.unknown_field(&key, line, "rulefmt.RuleGroup"),
            }
        }
        g
    }

    fn rule(&mut self, node: &Node) -> RawRule {
        let mut r = RawRule::default();
        for (key, line, value) in self.mapping(node, "rulefmt.Rule") {
            match key.as_str() {
                "record" => r.record = Some((self.string(value), value.pos)),
                "alert" => r.alert = Some((self.string(value), value.pos)),
                "expr" => r.expr = Some((self.string(value), value.pos)),
                "for" => r.for_duration = self.duration(value).unwrap_or_default(),
                "keep_firing_for" => r.keep_firing_for = self.duration(value).unwrap_or_default(),
                "labels" => r.labels = self.string_map(value),
                "annotations" => r.annotations = self.string_map(value),
                _ => self.unknown_field(&key, line, "rulefmt.Rule"),
            }
        }
        r
    }

    fn string(&mut self, node: &Node) -> String {
        match node.scalar_text() {
            Some(s) => s,
            None => {
                let m = node.cannot_unmarshal("string");
                self.error(node, m);
                String::new()
            }
        }
    }

    /// Prometheus's `model.Duration`: any scalar read as text; null is unset.
    fn duration(&mut self, node: &Node) -> Option<Duration> {
        if node.is_null() {
            return None;
        }
        let Some(text) = node.scalar_text() else {
            let m = node.cannot_unmarshal("string");
            self.error(node, m);
            return None;
        };
        match parse_duration(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(node, e);
                None
            }
        }
    }

    fn int(&mut self, node: &Node) -> i64 {
        match &node.kind {
            Kind::Scalar(yaml::Scalar::Null) => 0,
            Kind::Scalar(yaml::Scalar::Int(s)) => match s.parse() {
                Ok(n) => n,
                Err(_) => {
                    let m = node.cannot_unmarshal("int");
                    self.error(node, m);
                    0
                }
            },
            _ => {
                let m = node.cannot_unmarshal("int");
                self.error(node, m);
                0
            }
        }
    }

    fn string_map(&mut self, node: &Node) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (k, _, v) in self.mapping(node, "map[string]string") {
            let v = self.string(v);
            out.insert(k, v);
        }
        out
    }
}

// ---- stage 2: checks ----

fn validate(raw: Vec<RawGroup>, names: NameValidation) -> Result<RuleGroups, Vec<RuleError>> {
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut groups = Vec::with_capacity(raw.len());
    for g in raw {
        if g.name.is_empty() {
            errors.push(RuleError::Group {
                position: Some(g.pos),
                message: "Groupname must not be empty".into(),
            });
        }
        if !seen.insert(g.name.clone()) {
            errors.push(RuleError::Group {
                position: Some(g.pos),
                message: format!("groupname: \"{}\" is repeated in the same file", g.name),
            });
        }
        for k in g.labels.keys() {
            if !names.is_valid_label_name(k) || k == "__name__" {
                errors.push(RuleError::Group {
                    position: None,
                    message: format!("invalid label name: {k}"),
                });
            }
        }
        let mut rules = Vec::with_capacity(g.rules.len());
        for (i, r) in g.rules.into_iter().enumerate() {
            match validate_rule(r, names) {
                Ok(rule) => rules.push(rule),
                Err((name, problems)) => {
                    errors.extend(problems.into_iter().map(|(positions, message)| {
                        RuleError::Rule {
                            positions,
                            group: g.name.clone(),
                            rule: i + 1,
                            name: name.clone(),
                            message,
                        }
                    }))
                }
            }
        }
        groups.push(RuleGroup {
            name: g.name,
            interval: g.interval,
            query_offset: g.query_offset,
            limit: g.limit,
            labels: g.labels,
            rules,
            position: g.pos,
        });
    }
    if errors.is_empty() {
        Ok(RuleGroups { groups })
    } else {
        Err(errors)
    }
}

type Problems = Vec<(Vec<Position>, String)>;

/// Checks one rule as `rulefmt.Rule.Validate` does, in its order. On failure,
/// the name Prometheus shows for the rule (the alert's, else the record's) and
/// the problems.
fn validate_rule(r: RawRule, names: NameValidation) -> Result<Rule, (String, Problems)> {
    let text =
        |v: &Option<(String, Position)>| v.as_ref().map(|(s, _)| s.clone()).unwrap_or_default();
    let pos = |v: &Option<(String, Position)>| v.as_ref().map(|(_, p)| *p).unwrap_or_default();
    let (record, alert, expr) = (text(&r.record), text(&r.alert), text(&r.expr));
    let (record_at, alert_at, expr_at) = (pos(&r.record), pos(&r.alert), pos(&r.expr));
    let mut problems: Problems = Vec::new();
    let mut problem = |at: &[Position], m: String| problems.push((at.to_vec(), m));

    if !record.is_empty() && !alert.is_empty() {
        problem(
            &[record_at, alert_at],
            "only one of 'record' and 'alert' must be set".into(),
        );
    }
    if record.is_empty() && alert.is_empty() {
        problem(
            &[record_at, alert_at],
            "one of 'record' or 'alert' must be set".into(),
        );
    }
    let mut parsed = None;
    if expr.is_empty() {
        problem(&[expr_at], "field 'expr' must be set in rule".into());
    } else {
        match crate::promql::parse_expr(&expr) {
            Ok(e) => parsed = Some(e),
            Err(e) => problem(&[expr_at], format!("could not parse expression: {e}")),
        }
    }
    if !record.is_empty() {
        if !r.annotations.is_empty() {
            problem(
                &[record_at],
                "invalid field 'annotations' in recording rule".into(),
            );
        }
        if !r.for_duration.is_zero() {
            problem(&[record_at], "invalid field 'for' in recording rule".into());
        }
        if !r.keep_firing_for.is_zero() {
            problem(
                &[record_at],
                "invalid field 'keep_firing_for' in recording rule".into(),
            );
        }
        if !names.is_valid_metric_name(&record) {
            problem(
                &[record_at],
                format!("invalid recording rule name: {record}"),
            );
        }
        if record.contains('{') || record.contains('}') {
            problem(
                &[record_at],
                format!(
                    "braces present in the recording rule name; should it be in expr?: {record}"
                ),
            );
        }
    }
    for k in r.labels.keys() {
        if !names.is_valid_label_name(k) || k == "__name__" {
            problem(&[], format!("invalid label name: {k}"));
        }
    }
    for k in r.annotations.keys() {
        if !names.is_valid_label_name(k) {
            problem(&[], format!("invalid annotation name: {k}"));
        }
    }

    // Templates are parsed for alerting rules only (Prometheus's testTemplateParsing).
    if !alert.is_empty() {
        let template = format!("__alert_{alert}");
        for (what, map) in [("label", &r.labels), ("annotation", &r.annotations)] {
            for (k, v) in map {
                if let Err(e) = super::template::check(&template, v) {
                    problem(&[], format!("{what} {}: {e}", go_quote(k)));
                }
            }
        }
    }
    let alerting = !alert.is_empty();
    let name = if alerting { alert } else { record };
    match parsed {
        Some(parsed) if problems.is_empty() => Ok(Rule {
            kind: if alerting {
                RuleKind::Alerting {
                    for_duration: r.for_duration,
                    keep_firing_for: r.keep_firing_for,
                    annotations: r.annotations,
                }
            } else {
                RuleKind::Recording
            },
            position: if alerting { alert_at } else { record_at },
            name,
            expr,
            parsed,
            labels: r.labels,
        }),
        _ => Err((name, problems)),
    }
}

/// Rules that would write the same series: the same metric (record or alert
/// name) with the same labels. promtool reports them as a lint warning.
pub fn duplicate_rules(groups: &RuleGroups) -> Vec<(String, BTreeMap<String, String>)> {
    let mut all: Vec<(&str, &BTreeMap<String, String>)> = groups
        .groups
        .iter()
        .flat_map(|g| g.rules.iter().map(|r| (r.name.as_str(), &r.labels)))
        .collect();
    all.sort();
    let mut out: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for pair in all.windows(2) {
        if pair[0] == pair[1] && out.last().is_none_or(|(m, l)| (m.as_str(), l) != pair[1]) {
            out.push((pair[1].0.to_string(), pair[1].1.clone()));
        }
    }
    out
}

/// promtool's text for [`duplicate_rules`].
pub fn duplicate_rules_message(dups: &[(String, BTreeMap<String, String>)]) -> String {
    let mut m = format!("lint error {} duplicate rule(s) found.\n", dups.len());
    for (metric, labels) in dups {
        m.push_str(&format!("Metric: {metric}\nLabel(s):\n"));
        for (k, v) in labels {
            m.push_str(&format!("\t{k}: {v}\n"));
        }
    }
    m.push_str("Might cause inconsistency while recording expressions");
    m
}
