//! Recording and alerting rule files in Prometheus's format: read, checked as
//! `promtool check rules` checks them (model/rulefmt upstream), and turned into
//! typed groups that an evaluator runs.
//!
//! * [`parse_rule_file`] reads one file's text into [`RuleGroups`] or returns
//!   every problem, with Prometheus's messages and the YAML line and column
//!   (`16:15: group "g", rule 1, "x": could not parse expression: …`).
//! * [`expand_alert_template`] expands an alert's label or annotation template
//!   as Prometheus's rules/alerting.go does.
//! * [`load_rule_file`] reads a file and puts its name in front of each problem,
//!   as promtool prints them; [`rule_files_named`] expands `rule_files` patterns.
//! * Names are checked with Prometheus 3's UTF-8 scheme unless
//!   [`NameValidation::Legacy`] is asked for (Prometheus 2's character sets).
//! * [`eval`] evaluates groups; [`unittest`] runs unit tests of rules in
//!   promtool's format (`gpx_arrowmon test-rules`, as `promtool test rules`)
//!   over [`eval::MemRuleStorage`], with promtool's failure texts.
//!
//! Differences from Prometheus, on purpose or not yet done:
//! * The templates of alert labels and annotations are parsed and run by the
//!   project's own Go `text/template` ([`template`]) with Prometheus 3's
//!   functions and the parse errors of the Go release Prometheus 3 is built
//!   with: `check-rules` accepts the functions 2.42's promtool does not know
//!   (`toDuration`, `now`, `parseDuration`, …), and a few messages differ from
//!   2.42's (`{{else with}}` after `{{range}}`: `unexpected <with> in input`,
//!   where 2.42 says `… in else`). [`template`] lists where it differs from Go.
//! * Expressions are parsed by promql-parser (the project's parser): its error
//!   texts differ from Prometheus's after `could not parse expression:`.
//! * A malformed duration is listed among the YAML errors with its line;
//!   Prometheus stops at it and prints it without a line.
//! * Labels and annotations are reported in name order (Prometheus's order is a
//!   Go map's, which varies from run to run).
//! * YAML merge keys (`<<: *defaults`) are not merged: `<<` is an unknown
//!   field. yaml.v3 merges them.
//! * A YAML syntax error carries libyaml's own positions (1-based line and
//!   column), where yaml.v3 prints the line of the enclosing collection.
//!
//! Differences of `test-rules` from `promtool test rules`:
//! * A test without `interval` spaces its input by `evaluation_interval`, as
//!   promtool does since 2.49 (2.42 put every value at time 0).
//! * `fuzzy_compare` (promtool 3.5) is read; `start_timestamp`, `--run`,
//!   `--diff` and JUnit output are not there yet.
//! * A bad duration is listed among the YAML errors with its line (yaml.v2
//!   stops at it and prints it alone); a malformed input series is reported
//!   with its line in the test file, not as a parse error of promtool's
//!   internal `load` command.
//! * Groups that `group_eval_order` does not name run in file order (promtool:
//!   a Go map's order).
//! * A test file that does not exist fails as a test (`open …: no such file or
//!   directory`); promtool refuses the argument before it runs anything.
//! * Expressions and rules are evaluated by the project's engine: Prometheus
//!   3's semantics (left-open range selectors) and its error texts.
//! * A test runs at most 604,800 evaluation steps (`eval_time` over
//!   `evaluation_interval`: a week at one-second steps); beyond that it fails
//!   at once, where promtool evaluates every step.

pub mod eval;
mod file;
pub mod template;
pub mod unittest;
mod yaml;

use std::path::{Path, PathBuf};

pub use file::{
    duplicate_rules, duplicate_rules_message, parse_rule_file, NameValidation, ParseOptions, Rule,
    RuleError, RuleGroup, RuleGroups, RuleKind,
};
pub use template::{expand_alert_template, AlertTemplate, AlertTemplateData, QuerySample};
pub use yaml::Position;

/// Reads and checks one rule file. Each error starts with the file's name, as
/// promtool prints it.
pub fn load_rule_file(path: &Path, opts: &ParseOptions) -> Result<RuleGroups, Vec<String>> {
    let name = path.display();
    let bytes = std::fs::read(path).map_err(|e| vec![format!("{name}: {e}")])?;
    let text = String::from_utf8(bytes).map_err(|e| {
        vec![format!(
            "{name}: yaml: invalid UTF-8 at byte {}",
            e.utf8_error().valid_up_to()
        )]
    })?;
    parse_rule_file(&text, opts)
        .map_err(|errs| errs.iter().map(|e| format!("{name}: {e}")).collect())
}

/// Reads and checks every file the `rule_files` patterns name. As Prometheus
/// does, one invalid file refuses them all; every problem is listed.
pub fn load_rule_files(patterns: &[PathBuf]) -> Result<Vec<(PathBuf, RuleGroups)>, String> {
    let files = rule_files_named(patterns).map_err(|e| format!("rule_files: {e}"))?;
    let opts = ParseOptions::default();
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match load_rule_file(&f, &opts) {
            Ok(groups) => loaded.push((f, groups)),
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(format!("invalid rule files:\n{}", errors.join("\n")));
    }
    Ok(loaded)
}

/// The name a datasource's rules go by (as a file name does for `serve`'s).
pub const RULE_CONFIG_NAME: &str = "ruleConfig";

/// Where a tenant's rules come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleSource {
    /// `rule_files` patterns of `serve`'s config, re-read when the files change.
    Files(Vec<PathBuf>),
    /// A datasource's `jsonData.ruleConfig`, changed with its settings.
    Text(String),
}

impl RuleSource {
    /// Reads and checks the rules: each file (or the text) with its groups.
    pub fn load(&self) -> Result<Vec<(String, RuleGroups)>, String> {
        match self {
            RuleSource::Files(patterns) => Ok(load_rule_files(patterns)?
                .into_iter()
                .map(|(p, g)| (p.display().to_string(), g))
                .collect()),
            RuleSource::Text(text) => parse_rule_file(text, &ParseOptions::default())
                .map(|g| vec![(RULE_CONFIG_NAME.to_string(), g)])
                .map_err(|errs| {
                    errs.iter()
                        .map(|e| format!("{RULE_CONFIG_NAME}: {e}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                }),
        }
    }
}

/// The files `rule_files` patterns name now, in order, each once. As in
/// `promtool check config`, a pattern without `*` must name a file that exists.
pub fn rule_files_named(patterns: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in patterns {
        let found = crate::config::paths::expand_glob(p);
        let has_wildcard = p.to_string_lossy().contains(['*', '?']);
        if !has_wildcard && found.is_empty() {
            return Err(format!(
                "{} does not point to an existing file",
                crate::model::labels::go_quote(&p.display().to_string())
            ));
        }
        for f in found {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_text_is_read_or_refused_without_panicking(
            s in any::<String>(),
            near in "(groups:\n  - name: [a-z\"]{0,3}\n    (interval|limit|labels|query_offset): [-0-9a-z{}\\[\\]:,]{0,6}\n    rules:\n(      - (record|alert|expr|for|labels|annotations|keep_firing_for|x): [ -~]{0,12}\n        (expr|record|for|labels): [ -~]{0,12}\n){0,3}){0,2}",
        ) {
            for opts in [ParseOptions::default(), ParseOptions { names: NameValidation::Legacy, ignore_unknown_fields: true }] {
                let _ = parse_rule_file(&s, &opts).map_err(|e| e.iter().map(|e| e.to_string()).collect::<Vec<_>>());
                let _ = parse_rule_file(&near, &opts).map_err(|e| e.iter().map(|e| e.to_string()).collect::<Vec<_>>());
            }
        }
    }
}

#[cfg(test)]
mod eval_tests;
