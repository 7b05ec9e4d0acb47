//! Label sets and label matchers: the vocabulary every module shares.
//!
//! A series is identified by its label set, `__name__` included. Label sets are kept
//! sorted by name with no empty values (Prometheus treats an empty value as an absent
//! label), so two equal sets compare and hash equal whatever order they were built in.

use std::fmt;
use std::sync::Arc;

/// The label holding the metric name.
pub const METRIC_NAME: &str = "__name__";

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    pub name: Arc<str>,
    pub value: Arc<str>,
}

impl Label {
    pub fn new(name: impl Into<Arc<str>>, value: impl Into<Arc<str>>) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A sorted label set without empty values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// Builds a label set: sorts by name, drops empty values; of duplicate names the
    /// last one given wins.
    pub fn new(mut labels: Vec<Label>) -> Labels {
        labels.retain(|l| !l.value.is_empty());
        // Stable sort keeps input order among equal names, so "last wins" holds.
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out: Vec<Label> = Vec::with_capacity(labels.len());
        for l in labels {
            match out.last_mut() {
                Some(prev) if prev.name == l.name => *prev = l,
                _ => out.push(l),
            }
        }
        Labels(out)
    }

    /// A label set from labels already sorted by name, with no empty values and no
    /// name twice (as the store keeps them).
    pub fn from_sorted(labels: Vec<Label>) -> Labels {
        debug_assert!(labels.windows(2).all(|w| w[0].name < w[1].name));
        debug_assert!(labels.iter().all(|l| !l.value.is_empty()));
        Labels(labels)
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Labels {
        Labels::new(pairs.into_iter().map(|(n, v)| Label::new(n, v)).collect())
    }

    pub fn empty() -> Labels {
        Labels(Vec::new())
    }

    /// The empty set, usable in statics.
    pub const fn empty_const() -> Labels {
        Labels(Vec::new())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| (*l.name).cmp(name))
            .ok()
            .map(|i| &*self.0[i].value)
    }

    /// The value of `__name__`, if any.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// The same set without `__name__`.
    pub fn without_metric_name(&self) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| &*l.name != METRIC_NAME)
                .cloned()
                .collect(),
        )
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Written as Prometheus writes a series: `name{a="b", c="d"}`, values Go-quoted.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.metric_name();
        if let Some(name) = name {
            f.write_str(name)?;
        }
        let rest: Vec<&Label> = self.0.iter().filter(|l| &*l.name != METRIC_NAME).collect();
        if rest.is_empty() && name.is_some() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, l) in rest.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={}", l.name, go_quote(&l.value))?;
        }
        f.write_str("}")
    }
}

/// Writes a label set as the text exposition format writes it, `{n="v",…}`, the
/// values escaped (backslash, double quote, newline).
pub fn write_text_label_set(out: &mut String, pairs: &[(&str, &str)]) {
    out.push('{');
    for (i, (n, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(n);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

/// Quotes a string as Go's `strconv.Quote` does for printable text.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchKind {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

/// A label matcher with Prometheus semantics: a missing label matches as the empty
/// string, and regexes are fully anchored with `.` matching newlines (`^(?s:re)$`).
#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub value: String,
    pub kind: MatchKind,
    regex: Option<regex::Regex>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid regular expression {pattern:?} for label {name}: {reason}")]
pub struct MatcherError {
    pub name: String,
    pub pattern: String,
    pub reason: String,
}

impl Matcher {
    pub fn new(kind: MatchKind, name: &str, value: &str) -> Result<Matcher, MatcherError> {
        let regex = match kind {
            MatchKind::Regex | MatchKind::NotRegex => Some(
                regex::Regex::new(&format!("^(?s:{value})$")).map_err(|e| MatcherError {
                    name: name.to_string(),
                    pattern: value.to_string(),
                    reason: e.to_string(),
                })?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            value: value.to_string(),
            kind,
            regex,
        })
    }

    pub fn equal(name: &str, value: &str) -> Matcher {
        Matcher {
            name: name.to_string(),
            value: value.to_string(),
            kind: MatchKind::Equal,
            regex: None,
        }
    }

    /// Whether a label value (empty for a missing label) satisfies the matcher.
    pub fn matches(&self, value: &str) -> bool {
        match (&self.kind, &self.regex) {
            (MatchKind::Equal, _) => value == self.value,
            (MatchKind::NotEqual, _) => value != self.value,
            (MatchKind::Regex, Some(re)) => re.is_match(value),
            (MatchKind::NotRegex, Some(re)) => !re.is_match(value),
            _ => false,
        }
    }

    /// Whether the matcher accepts a series that lacks the label.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matches(labels.get(&self.name).unwrap_or(""))
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.kind {
            MatchKind::Equal => "=",
            MatchKind::NotEqual => "!=",
            MatchKind::Regex => "=~",
            MatchKind::NotRegex => "!~",
        };
        write!(f, "{}{}{}", self.name, op, go_quote(&self.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_deduplicated_and_drop_empty_values() {
        let l = Labels::from_pairs([("b", "2"), ("a", "1"), ("c", ""), ("a", "3")]);
        let pairs: Vec<(&str, &str)> = l.iter().map(|l| (&*l.name, &*l.value)).collect();
        assert_eq!(pairs, vec![("a", "3"), ("b", "2")]);
    }

    #[test]
    fn display_follows_prometheus() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "n\"x"), ("a", "b")]);
        assert_eq!(l.to_string(), r#"up{a="b", job="n\"x"}"#);
        assert_eq!(Labels::from_pairs([("__name__", "up")]).to_string(), "up");
        assert_eq!(Labels::empty().to_string(), "{}");
    }

    #[test]
    fn regex_matchers_are_anchored_and_dot_matches_newline() {
        let m = Matcher::new(MatchKind::Regex, "a", "fo.").unwrap();
        assert!(m.matches("foo"));
        assert!(m.matches("fo\n"));
        assert!(!m.matches("xfoo"));
        assert!(!m.matches("food"));
        let alt = Matcher::new(MatchKind::Regex, "a", "x|y").unwrap();
        assert!(alt.matches("x") && !alt.matches("xy"));
    }

    #[test]
    fn missing_label_matches_as_empty() {
        let l = Labels::from_pairs([("__name__", "up")]);
        assert!(Matcher::equal("job", "").matches_labels(&l));
        assert!(Matcher::new(MatchKind::NotEqual, "job", "x")
            .unwrap()
            .matches_labels(&l));
        assert!(!Matcher::new(MatchKind::Regex, "job", ".+")
            .unwrap()
            .matches_labels(&l));
    }

    #[test]
    fn bad_regex_names_label_and_pattern() {
        let err = Matcher::new(MatchKind::Regex, "job", "(").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("job") && msg.contains("\"(\""), "{msg}");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matchers_build_or_fail_and_match_without_panicking(
            name in any::<String>(),
            pattern in prop_oneof![any::<String>(), "[a-zé.*+?|()\\[\\]{}^$\\\\0-9,]{0,16}"],
            value in any::<String>(),
        ) {
            for kind in [MatchKind::Equal, MatchKind::NotEqual, MatchKind::Regex, MatchKind::NotRegex] {
                if let Ok(m) = Matcher::new(kind, &name, &pattern) {
                    let _ = m.matches(&value);
                    let _ = m.matches_empty();
                }
            }
        }
    }
}
