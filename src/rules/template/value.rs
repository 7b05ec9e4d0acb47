//! The values a template works with, standing for the Go types Prometheus
//! hands to `text/template` (their names appear in error messages).

use std::collections::BTreeMap;
use std::rc::Rc;

use super::QuerySample;

/// The struct an alert template's dot is (`template.AlertTemplateData`).
#[derive(Debug)]
pub(super) struct AlertFields {
    pub labels: Rc<BTreeMap<String, String>>,
    pub external_labels: Rc<BTreeMap<String, String>>,
    pub external_url: Rc<str>,
    pub value: f64,
}

#[derive(Clone, Debug)]
pub(super) enum Value {
    /// No value (Go's invalid `reflect.Value`, or a nil interface).
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    /// `html/template.HTML`, what `safeHtml` returns.
    Html(Rc<str>),
    StrMap(Rc<BTreeMap<String, String>>),
    AnyMap(Rc<BTreeMap<String, Value>>),
    /// A slice; the element type's Go name. Only tests make one: alert data has none.
    #[cfg_attr(not(test), allow(dead_code))]
    List(Rc<Vec<Value>>, &'static str),
    /// `template.queryResult`.
    Samples(Rc<Vec<Rc<QuerySample>>>),
    /// `*template.sample`.
    Sample(Rc<QuerySample>),
    Alert(Rc<AlertFields>),
    /// `*time.Time` (or `time.Time`), nanoseconds since 1970 in UTC.
    Time(i128),
    /// `*time.Duration` (or `time.Duration`), nanoseconds.
    Duration(i64),
}

pub(super) const ALERT_TYPE: &str = "struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value interface {} }";

impl Value {
    pub fn str(s: impl Into<Rc<str>>) -> Value {
        Value::Str(s.into())
    }

    /// The Go type's name as `%T` and reflect print it.
    pub fn type_name(&self) -> String {
        match self {
            Value::Nil => "<nil>".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Float(_) => "float64".into(),
            Value::Str(_) => "string".into(),
            Value::Html(_) => "template.HTML".into(),
            Value::StrMap(_) => "map[string]string".into(),
            Value::AnyMap(_) => "map[string]interface {}".into(),
            Value::List(_, elem) => format!("[]{elem}"),
            Value::Samples(_) => "template.queryResult".into(),
            Value::Sample(_) => "*template.sample".into(),
            Value::Alert(_) => ALERT_TYPE.into(),
            Value::Time(_) => "*time.Time".into(),
            Value::Duration(_) => "*time.Duration".into(),
        }
    }

    /// Go's truth (`if`, `with`, `and`, `or`, `not`): zero values are false.
    pub fn truth(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) | Value::Html(s) => !s.is_empty(),
            Value::StrMap(m) => !m.is_empty(),
            Value::AnyMap(m) => !m.is_empty(),
            Value::List(l, _) => !l.is_empty(),
            Value::Samples(s) => !s.is_empty(),
            Value::Sample(_) | Value::Alert(_) | Value::Time(_) | Value::Duration(_) => true,
        }
    }
}
