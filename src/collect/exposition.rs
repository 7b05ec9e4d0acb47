//! Metric families gathered by a collector, written in the Prometheus text format
//! (0.0.4) as client_golang writes a registry: families sorted by name, each with
//! its HELP and TYPE, label pairs sorted by name, values in Go's `%g`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::model::number::write_go_float_g;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Untyped,
    Histogram,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Untyped => "untyped",
            MetricType::Histogram => "histogram",
        }
    }
}

/// One series of a family: label pairs (any order) and its value; for a
/// histogram its buckets (upper bound, cumulative count), sum and count.
#[derive(Clone, Debug, PartialEq)]
enum Point {
    Value(f64),
    Histogram {
        buckets: Vec<(f64, u64)>,
        sum: f64,
        count: u64,
    },
}

#[derive(Debug)]
struct Family {
    help: String,
    kind: MetricType,
    /// Keyed by the sorted label pairs, so output is ordered and a repeated series
    /// keeps its first value.
    series: BTreeMap<Vec<(String, String)>, Point>,
}

/// The families of one collection, by name.
#[derive(Debug, Default)]
pub struct Families {
    families: BTreeMap<String, Family>,
}

impl Families {
    /// Adds a sample. A family keeps the HELP and type it was first given: a sample
    /// that disagrees, or repeats a series, is dropped (client_golang refuses them).
    pub fn add(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        self.insert(name, help, kind, labels, Point::Value(value));
    }

    /// Adds a histogram series; `buckets` are (upper bound, cumulative count)
    /// without `+Inf`, which is written with `count`.
    pub fn add_histogram(
        &mut self,
        name: &str,
        help: &str,
        buckets: Vec<(f64, u64)>,
        sum: f64,
        count: u64,
    ) {
        let point = Point::Histogram {
            buckets,
            sum,
            count,
        };
        self.insert(name, help, MetricType::Histogram, &[], point);
    }

    fn insert(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        labels: &[(&str, &str)],
        point: Point,
    ) {
        let family = self
            .families
            .entry(name.to_string())
            .or_insert_with(|| Family {
                help: help.to_string(),
                kind,
                series: BTreeMap::new(),
            });
        if family.help != help || family.kind != kind {
            return;
        }
        let mut key: Vec<(String, String)> = labels
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        key.sort();
        family.series.entry(key).or_insert(point);
    }

    pub fn contains(&self, name: &str) -> bool {
        self.families.contains_key(name)
    }

    /// The text-format exposition of every family.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, f) in &self.families {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&f.help));
            let _ = writeln!(out, "# TYPE {name} {}", f.kind.as_str());
            for (labels, point) in &f.series {
                match point {
                    Point::Value(v) => write_sample(&mut out, name, "", labels, None, *v),
                    Point::Histogram {
                        buckets,
                        sum,
                        count,
                    } => {
                        for (le, n) in buckets {
                            let mut bound = String::new();
                            let _ = write_go_float_g(&mut bound, *le);
                            write_sample(
                                &mut out,
                                name,
                                "_bucket",
                                labels,
                                Some(&bound),
                                *n as f64,
                            );
                        }
                        write_sample(
                            &mut out,
                            name,
                            "_bucket",
                            labels,
                            Some("+Inf"),
                            *count as f64,
                        );
                        write_sample(&mut out, name, "_sum", labels, None, *sum);
                        write_sample(&mut out, name, "_count", labels, None, *count as f64);
                    }
                }
            }
        }
        out
    }
}

fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(String, String)],
    le: Option<&str>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    let mut pairs: Vec<(&str, &str)> = labels
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    if let Some(le) = le {
        pairs.push(("le", le));
    }
    if !pairs.is_empty() {
        crate::model::labels::write_text_label_set(out, &pairs);
    }
    out.push(' ');
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write_go_float_g(out, value);
    }
    out.push('\n');
}

fn escape_help(h: &str) -> String {
    h.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A metric or label name the text format can carry.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_' | b':'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_sorted_escaped_and_once() {
        let mut f = Families::default();
        f.add(
            "b_total",
            "B.",
            MetricType::Counter,
            &[("z", "1"), ("a", "q\"\\\n")],
            1e6,
        );
        f.add(
            "b_total",
            "B.",
            MetricType::Counter,
            &[("a", "q\"\\\n"), ("z", "1")],
            7.0,
        );
        f.add(
            "b_total",
            "other help",
            MetricType::Counter,
            &[("a", "x")],
            2.0,
        );
        f.add("a", "A \\ with\nnewline", MetricType::Untyped, &[], 0.5);
        f.add_histogram("h_seconds", "H.", vec![(1e-6, 1), (0.1, 3)], 0.25, 4);
        assert_eq!(
            f.render(),
            "# HELP a A \\\\ with\\nnewline\n# TYPE a untyped\na 0.5\n\
             # HELP b_total B.\n# TYPE b_total counter\nb_total{a=\"q\\\"\\\\\\n\",z=\"1\"} 1e+06\n\
             # HELP h_seconds H.\n# TYPE h_seconds histogram\n\
             h_seconds_bucket{le=\"1e-06\"} 1\nh_seconds_bucket{le=\"0.1\"} 3\nh_seconds_bucket{le=\"+Inf\"} 4\n\
             h_seconds_sum 0.25\nh_seconds_count 4\n"
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("mysql_global_status_uptime"));
        assert!(!valid_name("1abc"));
        assert!(!valid_name("a-b"));
        assert!(!valid_name(""));
    }
}
