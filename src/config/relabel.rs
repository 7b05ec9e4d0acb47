//! Relabeling (`relabel_configs`, `metric_relabel_configs`) with Prometheus 3's
//! semantics and validation messages (model/relabel/relabel.go upstream).
//!
//! Label names are validated as Prometheus 3 does by default (UTF-8 validation: any
//! non-empty name). Regexes are Go RE2 syntax, anchored as `^(?s:re)$`; Go's
//! `\d \w \s` (and negations) are ASCII-only, so they are rewritten into explicit
//! ASCII classes before the Rust regex engine (whose classes are Unicode) sees them.

use std::borrow::Cow;

use md5::{Digest, Md5};
use serde::Deserialize;

use crate::model::labels::{Label, Labels};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelabelAction {
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

impl RelabelAction {
    /// Case-insensitive, as upstream's `Action.UnmarshalYAML`.
    pub fn parse(s: &str) -> Result<RelabelAction, String> {
        Ok(match s.to_lowercase().as_str() {
            "replace" => RelabelAction::Replace,
            "keep" => RelabelAction::Keep,
            "drop" => RelabelAction::Drop,
            "keepequal" => RelabelAction::KeepEqual,
            "dropequal" => RelabelAction::DropEqual,
            "hashmod" => RelabelAction::HashMod,
            "labelmap" => RelabelAction::LabelMap,
            "labeldrop" => RelabelAction::LabelDrop,
            "labelkeep" => RelabelAction::LabelKeep,
            "lowercase" => RelabelAction::Lowercase,
            "uppercase" => RelabelAction::Uppercase,
            _ => return Err(format!("unknown relabel action {}", go_q(s))),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RelabelAction::Replace => "replace",
            RelabelAction::Keep => "keep",
            RelabelAction::Drop => "drop",
            RelabelAction::KeepEqual => "keepequal",
            RelabelAction::DropEqual => "dropequal",
            RelabelAction::HashMod => "hashmod",
            RelabelAction::LabelMap => "labelmap",
            RelabelAction::LabelDrop => "labeldrop",
            RelabelAction::LabelKeep => "labelkeep",
            RelabelAction::Lowercase => "lowercase",
            RelabelAction::Uppercase => "uppercase",
        }
    }
}

/// A regex as written in the config, with its anchored compiled form.
#[derive(Clone, Debug)]
pub struct RelabelRegex {
    pub source: String,
    compiled: regex::Regex,
}

impl PartialEq for RelabelRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl RelabelRegex {
    pub fn new(source: &str) -> Result<RelabelRegex, String> {
        let translated = go_regex_to_rust(source);
        let compiled = regex::Regex::new(&format!("^(?s:{translated})$"))
            .map_err(|e| format!("error parsing regexp {}: {e}", go_q(source)))?;
        Ok(RelabelRegex {
            source: source.to_string(),
            compiled,
        })
    }

    pub fn is_match(&self, s: &str) -> bool {
        self.compiled.is_match(s)
    }
}

/// Rewrites Go's ASCII-only Perl classes into explicit ASCII classes. Rust accepts a
/// bracketed class nested inside another class, so the same rewrite works inside `[...]`.
pub(crate) fn go_regex_to_rust(re: &str) -> Cow<'_, str> {
    if !re.contains('\\') {
        return Cow::Borrowed(re);
    }
    let mut out = String::with_capacity(re.len() + 16);
    let mut chars = re.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str("[0-9]"),
            Some('D') => out.push_str("[^0-9]"),
            Some('w') => out.push_str("[0-9A-Za-z_]"),
            Some('W') => out.push_str("[^0-9A-Za-z_]"),
            Some('s') => out.push_str("[\\t\\n\\f\\r ]"),
            Some('S') => out.push_str("[^\\t\\n\\f\\r ]"),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// One validated relabel rule.
#[derive(Clone, Debug, PartialEq)]
pub struct RelabelConfig {
    pub source_labels: Vec<String>,
    pub separator: String,
    pub regex: RelabelRegex,
    /// Whether `regex` was left at its default `(.*)` (upstream compares the
    /// default regex by identity: an explicit `(.*)` is not "the default").
    pub regex_is_default: bool,
    pub modulus: u64,
    pub target_label: String,
    pub replacement: String,
    pub action: RelabelAction,
}

/// A YAML scalar that upstream reads into a Go string: numbers and booleans too.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Scalar {
    S(String),
    I(i64),
    F(f64),
    B(bool),
}

impl Scalar {
    fn into_string(self) -> String {
        match self {
            Scalar::S(s) => s,
            Scalar::I(i) => i.to_string(),
            Scalar::F(f) => f.to_string(),
            Scalar::B(b) => b.to_string(),
        }
    }
}

/// `relabel_configs` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRelabelConfig {
    source_labels: Option<Vec<String>>,
    separator: Option<Scalar>,
    regex: Option<Scalar>,
    modulus: Option<u64>,
    target_label: Option<String>,
    replacement: Option<Scalar>,
    action: Option<String>,
}

pub const DEFAULT_SEPARATOR: &str = ";";
pub const DEFAULT_REGEX: &str = "(.*)";
pub const DEFAULT_REPLACEMENT: &str = "$1";

/// Go's `%q` for the printable strings that appear in config errors.
fn go_q(s: &str) -> String {
    crate::model::labels::go_quote(s)
}

/// Label names as Prometheus 3 validates them by default (UTF-8 validation).
pub fn is_valid_label_name(name: &str) -> bool {
    !name.is_empty()
}

impl RawRelabelConfig {
    pub(crate) fn build(self) -> Result<RelabelConfig, String> {
        let action = match self.action.as_deref() {
            None => RelabelAction::Replace,
            Some("") => return Err("relabel action cannot be empty".into()),
            Some(a) => RelabelAction::parse(a)?,
        };
        let (regex, regex_is_default) = match self.regex {
            None => (RelabelRegex::new(DEFAULT_REGEX)?, true),
            Some(r) => (RelabelRegex::new(&r.into_string())?, false),
        };
        let had_source_labels = self.source_labels.is_some();
        let source_labels = self.source_labels.unwrap_or_default();
        for l in &source_labels {
            if !is_valid_label_name(l) {
                return Err(format!("{} is not a valid label name", go_q(l)));
            }
        }
        let c = RelabelConfig {
            source_labels,
            separator: self
                .separator
                .map(Scalar::into_string)
                .unwrap_or_else(|| DEFAULT_SEPARATOR.into()),
            regex,
            regex_is_default,
            modulus: self.modulus.unwrap_or(0),
            target_label: self.target_label.unwrap_or_default(),
            replacement: self
                .replacement
                .map(Scalar::into_string)
                .unwrap_or_else(|| DEFAULT_REPLACEMENT.into()),
            action,
        };
        c.validate(had_source_labels)?;
        Ok(c)
    }
}

impl RelabelConfig {
    /// Upstream's `Config.Validate`, message for message.
    fn validate(&self, had_source_labels: bool) -> Result<(), String> {
        use RelabelAction::*;
        let a = self.action;
        let name = a.as_str();
        if self.modulus == 0 && a == HashMod {
            return Err("relabel configuration for hashmod requires non-zero modulus".into());
        }
        if matches!(
            a,
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
        ) && self.target_label.is_empty()
        {
            return Err(format!(
                "relabel configuration for {name} action requires 'target_label' value"
            ));
        }
        let invalid_target = || {
            Err(format!(
                "{} is invalid 'target_label' for {name} action",
                go_q(&self.target_label)
            ))
        };
        if a == Replace && !is_valid_label_name(&self.target_label) {
            return invalid_target();
        }
        if matches!(a, Lowercase | Uppercase | KeepEqual | DropEqual | HashMod)
            && !is_valid_label_name(&self.target_label)
        {
            return invalid_target();
        }
        if matches!(a, Lowercase | Uppercase | KeepEqual | DropEqual)
            && self.replacement != DEFAULT_REPLACEMENT
        {
            return Err(format!("'replacement' can not be set for {name} action"));
        }
        if a == LabelMap && !is_valid_label_name(&self.replacement) {
            return Err(format!(
                "{} is invalid 'replacement' for {name} action",
                go_q(&self.replacement)
            ));
        }
        if matches!(a, DropEqual | KeepEqual)
            && (!self.regex_is_default
                || self.modulus != 0
                || self.separator != DEFAULT_SEPARATOR
                || self.replacement != DEFAULT_REPLACEMENT)
        {
            return Err(format!(
                "{name} action requires only 'source_labels' and `target_label`, and no other fields"
            ));
        }
        if matches!(a, LabelDrop | LabelKeep)
            && (had_source_labels
                || !self.target_label.is_empty()
                || self.modulus != 0
                || self.separator != DEFAULT_SEPARATOR
                || self.replacement != DEFAULT_REPLACEMENT)
        {
            return Err(format!(
                "{name} action requires only 'regex', and no other fields"
            ));
        }
        Ok(())
    }
}

/// A mutable label set: sorted by name, no empty values (setting "" deletes), as
/// upstream's `labels.Builder`.
#[derive(Clone, Debug, Default)]
pub struct LabelBuilder {
    labels: Vec<Label>,
}

impl LabelBuilder {
    pub fn new(labels: &Labels) -> LabelBuilder {
        LabelBuilder {
            labels: labels.as_slice().to_vec(),
        }
    }

    pub fn from_vec(labels: Vec<Label>) -> LabelBuilder {
        LabelBuilder {
            labels: Labels::new(labels).as_slice().to_vec(),
        }
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.labels.binary_search_by(|l| (*l.name).cmp(name))
    }

    pub fn get(&self, name: &str) -> &str {
        match self.find(name) {
            Ok(i) => &self.labels[i].value,
            Err(_) => "",
        }
    }

    pub fn set(&mut self, name: &str, value: &str) {
        if value.is_empty() {
            self.del(name);
            return;
        }
        match self.find(name) {
            Ok(i) => {
                if &*self.labels[i].value != value {
                    self.labels[i].value = value.into();
                }
            }
            Err(i) => self.labels.insert(i, Label::new(name, value)),
        }
    }

    pub fn del(&mut self, name: &str) {
        if let Ok(i) = self.find(name) {
            self.labels.remove(i);
        }
    }

    pub fn retain(&mut self, f: impl FnMut(&Label) -> bool) {
        self.labels.retain(f);
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.labels.iter()
    }

    pub fn labels(&self) -> Labels {
        // Already sorted, unique and without empty values.
        Labels::new(self.labels.clone())
    }

    pub fn into_labels(self) -> Labels {
        Labels::new(self.labels)
    }
}

/// Applies `configs` in order; false when a rule dropped the label set.
pub fn process_builder(lb: &mut LabelBuilder, configs: &[RelabelConfig]) -> bool {
    configs.iter().all(|c| relabel(c, lb))
}

/// Applies `configs` to a label set: `None` when it is dropped.
pub fn process(labels: &Labels, configs: &[RelabelConfig]) -> Option<Labels> {
    if configs.is_empty() {
        return Some(labels.clone());
    }
    let mut lb = LabelBuilder::new(labels);
    process_builder(&mut lb, configs).then(|| lb.into_labels())
}

fn relabel(c: &RelabelConfig, lb: &mut LabelBuilder) -> bool {
    use RelabelAction::*;
    let val: Cow<'_, str> = match c.source_labels.as_slice() {
        [] => Cow::Borrowed(""),
        [one] => Cow::Owned(lb.get(one).to_string()),
        many => Cow::Owned(
            many.iter()
                .map(|n| lb.get(n))
                .collect::<Vec<_>>()
                .join(&c.separator),
        ),
    };
    match c.action {
        Drop => {
            if c.regex.is_match(&val) {
                return false;
            }
        }
        Keep => {
            if !c.regex.is_match(&val) {
                return false;
            }
        }
        DropEqual => {
            if lb.get(&c.target_label) == val {
                return false;
            }
        }
        KeepEqual => {
            if lb.get(&c.target_label) != val {
                return false;
            }
        }
        Replace => {
            // Upstream's fast path to add or delete a label.
            if val.is_empty()
                && c.regex_is_default
                && !c.target_label.contains('$')
                && !c.replacement.contains('$')
            {
                lb.set(&c.target_label, &c.replacement);
                return true;
            }
            let Some(caps) = c.regex.compiled.captures(&val) else {
                return true;
            };
            let mut target = String::new();
            caps.expand(&c.target_label, &mut target);
            if !is_valid_label_name(&target) {
                return true;
            }
            let mut res = String::new();
            caps.expand(&c.replacement, &mut res);
            if res.is_empty() {
                lb.del(&target);
            } else {
                lb.set(&target, &res);
            }
        }
        Lowercase => {
            let v = val.to_lowercase();
            lb.set(&c.target_label, &v);
        }
        Uppercase => {
            let v = val.to_uppercase();
            lb.set(&c.target_label, &v);
        }
        HashMod => {
            let hash = Md5::digest(val.as_bytes());
            let mut last8 = [0u8; 8];
            last8.copy_from_slice(&hash[8..16]);
            let m = u64::from_be_bytes(last8) % c.modulus.max(1);
            lb.set(&c.target_label, &m.to_string());
        }
        LabelMap => {
            // Upstream ranges over a snapshot taken before the first Set.
            let snapshot: Vec<Label> = lb.iter().cloned().collect();
            for l in snapshot {
                if let Some(caps) = c.regex.compiled.captures(&l.name) {
                    let mut res = String::new();
                    caps.expand(&c.replacement, &mut res);
                    if !res.is_empty() {
                        lb.set(&res, &l.value);
                    }
                }
            }
        }
        LabelDrop => lb.retain(|l| !c.regex.is_match(&l.name)),
        LabelKeep => lb.retain(|l| c.regex.is_match(&l.name)),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Vec<RelabelConfig>, String> {
        let raw: Vec<RawRelabelConfig> = serde_norway::from_str(yaml).map_err(|e| e.to_string())?;
        raw.into_iter().map(RawRelabelConfig::build).collect()
    }

    fn run(yaml: &str, labels: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        let cfgs = parse(yaml).unwrap();
        process(&Labels::from_pairs(labels.iter().copied()), &cfgs).map(|l| {
            l.iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect()
        })
    }

    fn pairs(p: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        let mut v: Vec<(String, String)> = p
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        v.sort();
        Some(v)
    }

    #[test]
    fn replace_with_defaults_copies_and_expands_groups() {
        // Upstream relabel_test.go: defaults (regex (.*), replacement $1, separator ;).
        assert_eq!(
            run(
                "- source_labels: [a, b]\n  target_label: c\n",
                &[("a", "foo"), ("b", "bar")]
            ),
            pairs(&[("a", "foo"), ("b", "bar"), ("c", "foo;bar")])
        );
        // Named group, ${1} and a literal after the reference.
        assert_eq!(
            run(
                "- source_labels: [a]\n  regex: '(?P<x>f)(o+)'\n  target_label: c\n  replacement: '${x}-${2}x'\n",
                &[("a", "foo")]
            ),
            pairs(&[("a", "foo"), ("c", "f-oox")])
        );
        // The regex is anchored: no partial match, no replacement.
        assert_eq!(
            run(
                "- source_labels: [a]\n  regex: o+\n  target_label: c\n",
                &[("a", "foo")]
            ),
            pairs(&[("a", "foo")])
        );
        // $1x names group "1x", which does not exist: empty, so the label is deleted.
        assert_eq!(
            run(
                "- source_labels: [a]\n  regex: '(.*)'\n  target_label: a\n  replacement: '$1x'\n",
                &[("a", "foo")]
            ),
            pairs(&[])
        );
        // Target label from the match.
        assert_eq!(
            run(
                "- source_labels: [a]\n  regex: '(\\w+)=(.*)'\n  target_label: 'l_$1'\n  replacement: $2\n",
                &[("a", "k=v")]
            ),
            pairs(&[("a", "k=v"), ("l_k", "v")])
        );
        // Fast path: empty source value with the default regex sets the literal replacement.
        assert_eq!(
            run("- target_label: env\n  replacement: prod\n", &[("a", "1")]),
            pairs(&[("a", "1"), ("env", "prod")])
        );
    }

    #[test]
    fn go_classes_are_ascii_and_dot_matches_newline() {
        let re = RelabelRegex::new(r"\d+").unwrap();
        assert!(re.is_match("123"));
        assert!(!re.is_match("١٢٣"), "Arabic-Indic digits are not Go's \\d");
        let re = RelabelRegex::new(r"[\w.]+").unwrap();
        assert!(re.is_match("a_b.c") && !re.is_match("é"));
        assert!(RelabelRegex::new("a.b").unwrap().is_match("a\nb"));
        assert!(RelabelRegex::new(r"\\d").unwrap().is_match("\\d"));
    }

    #[test]
    fn keep_drop_and_equal_actions() {
        let l = [("__name__", "x"), ("a", "1"), ("b", "1"), ("c", "2")];
        assert!(run("- source_labels: [a]\n  regex: '1'\n  action: keep\n", &l).is_some());
        assert!(run("- source_labels: [a]\n  regex: '2'\n  action: keep\n", &l).is_none());
        assert!(run("- source_labels: [a]\n  regex: '1'\n  action: drop\n", &l).is_none());
        assert!(run("- source_labels: [a]\n  regex: '2'\n  action: DROP\n", &l).is_some());
        assert!(run(
            "- source_labels: [a]\n  target_label: b\n  action: keepequal\n",
            &l
        )
        .is_some());
        assert!(run(
            "- source_labels: [a]\n  target_label: c\n  action: keepequal\n",
            &l
        )
        .is_none());
        assert!(run(
            "- source_labels: [a]\n  target_label: b\n  action: dropequal\n",
            &l
        )
        .is_none());
        assert!(run(
            "- source_labels: [a]\n  target_label: c\n  action: dropequal\n",
            &l
        )
        .is_some());
        // A missing source label is the empty string.
        assert!(run("- source_labels: [zz]\n  regex: ''\n  action: keep\n", &l).is_some());
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // Values from upstream's relabel_test.go ("foo" mod 1000 = 72, "bar" mod 10 = ...).
        let out = run(
            "- source_labels: [c]\n  target_label: d\n  action: hashmod\n  modulus: 1000\n",
            &[("a", "foo"), ("b", "bar"), ("c", "baz")],
        )
        .unwrap();
        assert_eq!(out.iter().find(|(n, _)| n == "d").unwrap().1, "976");
        let out = run(
            "- source_labels: [a]\n  target_label: d\n  action: hashmod\n  modulus: 1000\n",
            &[("a", "foo")],
        )
        .unwrap();
        // md5("foo") = acbd18db4cc2f85cedef654fccc4a4d8; 0xedef654fccc4a4d8 % 1000.
        let want = 0xedef654fccc4a4d8u64 % 1000;
        assert_eq!(
            out.iter().find(|(n, _)| n == "d").unwrap().1,
            want.to_string()
        );
    }

    #[test]
    fn labelmap_labeldrop_labelkeep_case() {
        assert_eq!(
            run(
                "- regex: '__meta_(.+)'\n  action: labelmap\n",
                &[("__meta_my_label", "v"), ("a", "1")]
            ),
            pairs(&[("__meta_my_label", "v"), ("a", "1"), ("my_label", "v")])
        );
        assert_eq!(
            run(
                "- regex: '(b.*)'\n  action: labelmap\n  replacement: 'x_${1}'\n",
                &[("b1", "v"), ("a", "1")]
            ),
            pairs(&[("a", "1"), ("b1", "v"), ("x_b1", "v")])
        );
        assert_eq!(
            run(
                "- regex: 'a|b'\n  action: labeldrop\n",
                &[("a", "1"), ("b", "2"), ("ab", "3")]
            ),
            pairs(&[("ab", "3")])
        );
        assert_eq!(
            run(
                "- regex: 'a|b'\n  action: labelkeep\n",
                &[("a", "1"), ("b", "2"), ("ab", "3")]
            ),
            pairs(&[("a", "1"), ("b", "2")])
        );
        assert_eq!(
            run(
                "- source_labels: [a]\n  target_label: lo\n  action: lowercase\n- source_labels: [a]\n  target_label: up\n  action: uppercase\n",
                &[("a", "AbC")]
            ),
            pairs(&[("a", "AbC"), ("lo", "abc"), ("up", "ABC")])
        );
    }

    #[test]
    fn validation_messages_match_upstream() {
        let cases = [
            ("- action: nope\n", "unknown relabel action \"nope\""),
            ("- action: ''\n", "relabel action cannot be empty"),
            ("- action: hashmod\n  target_label: a\n", "relabel configuration for hashmod requires non-zero modulus"),
            ("- action: replace\n", "relabel configuration for replace action requires 'target_label' value"),
            ("- action: lowercase\n", "relabel configuration for lowercase action requires 'target_label' value"),
            ("- action: uppercase\n  target_label: a\n  replacement: x\n", "'replacement' can not be set for uppercase action"),
            ("- action: keepequal\n  target_label: a\n  regex: x\n", "keepequal action requires only 'source_labels' and `target_label`, and no other fields"),
            ("- action: labeldrop\n  source_labels: [a]\n", "labeldrop action requires only 'regex', and no other fields"),
            ("- action: labelkeep\n  target_label: a\n", "labelkeep action requires only 'regex', and no other fields"),
            ("- action: labelmap\n  replacement: ''\n", "\"\" is invalid 'replacement' for labelmap action"),
            ("- source_labels: [a]\n  regex: '('\n  target_label: b\n", "error parsing regexp \"(\""),
            ("- source_labels: ['']\n  target_label: b\n", "\"\" is not a valid label name"),
        ];
        for (yaml, want) in cases {
            let err = parse(yaml).unwrap_err();
            assert!(err.contains(want), "{yaml}: got {err:?}, want {want:?}");
        }
        // A number as regex or replacement is read as its text, as Go's YAML does.
        assert!(
            parse("- source_labels: [a]\n  regex: 1\n  target_label: b\n  replacement: 2\n")
                .is_ok()
        );
    }
}
