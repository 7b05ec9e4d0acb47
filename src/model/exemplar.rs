//! Exemplars: a sample's pointer to one event behind it (usually a trace), as
//! OpenMetrics exposes them (`# {trace_id="…"} value timestamp`) and Prometheus's
//! `/api/v1/query_exemplars` returns them.

use super::labels::Labels;

/// One exemplar: its own labels (e.g. trace_id), value and time.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    pub labels: Labels,
    pub value: f64,
    pub timestamp_ms: i64,
}

/// The exemplars of one series in a time range, oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct ExemplarSeries {
    pub series_labels: Labels,
    pub exemplars: Vec<Exemplar>,
}
