//! Exposition-format parsing: Prometheus text format 0.0.4 (and 1.0.0, its UTF-8
//! name extension) and OpenMetrics 1.0, as Prometheus 3 parses them.
//!
//! The parser is a hand-written, zero-copy lexer over the response body (`&[u8]`):
//! a sample borrows its metric name and raw label set from the body, and a label
//! value is only copied when it holds an escape sequence or is an `le`/`quantile`
//! value that Prometheus rewrites. Upstream references (prometheus/prometheus):
//! `model/textparse/{promlex.l,promparse.go,openmetricslex.l,openmetricsparse.go,
//! interface.go}`, `config/config.go` (scrape protocols) and `scrape/scrape.go`
//! (`acceptHeader`, `OpenMetricsSkipSTSeries`).
//!
//! Deliberate differences from upstream, all on malformed or exotic input:
//! - an unquoted name followed by `,` or `}` inside braces is an error (upstream takes
//!   it as the metric name with its first and last characters cut off);
//! - quoted family names in HELP/TYPE/UNIT and exemplar label values are unescaped
//!   (upstream hands both on with their escapes);
//! - `le`/`quantile` values written as Go hex floats or with `_` separators are not
//!   normalised (upstream's `strconv.ParseFloat` would accept them);
//! - of upstream's NUL-byte quirks only "a NUL where a text-format line starts ends
//!   the body" is reproduced;
//! - an empty quoted metric or label name, and a label name given twice
//!   ([`Sample::to_labels`]), fail here; upstream fails the same scrape a step later
//!   (label-set validation, append);
//! - the protobuf format is not implemented (and not requested).
//!
//! Typical use:
//!
//! ```
//! use arrowmon::scrape::exposition::{Entry, Format, Parser, ParserOptions};
//! let body = b"# TYPE up gauge\nup{job=\"node\"} 1\n";
//! let format = Format::from_content_type(Some("text/plain; version=0.0.4"), None).unwrap().format;
//! let mut parser = Parser::new(body, format, ParserOptions::default());
//! while let Some(entry) = parser.next().unwrap() {
//!     if let Entry::Sample(s) = entry {
//!         assert_eq!(s.to_labels().unwrap().to_string(), r#"up{job="node"}"#);
//!     }
//! }
//! ```

mod body;
mod float;
mod metadata;
mod parser;

#[cfg(test)]
mod tests;

pub use body::{decode_body, BodyError};
pub use float::{format_openmetrics_float, parse_value};
pub use metadata::{MetadataCollector, MetricMetadata};
pub use parser::{Entry, Exemplar, LabelIter, ParseError, Parser, ParserOptions, Sample};

use std::fmt;

/// The `Accept` header Prometheus 3 sends for classic (non-protobuf) scraping: the
/// default `scrape_protocols` order OpenMetricsText1.0.0, OpenMetricsText0.0.1,
/// PrometheusText1.0.0, PrometheusText0.0.4, weighted from q=0.6 down (5 known
/// protocols + 1), with `escaping=allow-utf-8` on the 1.0.0 versions (the default
/// `metric_name_escaping_scheme` under UTF-8 validation), then `*/*`.
/// Built as `acceptHeader()` in scrape/scrape.go builds it.
pub const ACCEPT_HEADER: &str =
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
application/openmetrics-text;version=0.0.1;q=0.5,\
text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,\
text/plain;version=0.0.4;q=0.3,\
*/*;q=0.2";

/// The `Accept-Encoding` Prometheus sends with `enable_compression: true` (default).
pub const ACCEPT_ENCODING_HEADER: &str = "gzip";

/// A text exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `text/plain` (versions 0.0.4 and 1.0.0).
    PrometheusText,
    /// `application/openmetrics-text` (versions 0.0.1 and 1.0.0).
    OpenMetrics,
}

/// The outcome of choosing a parser from a response's Content-Type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub format: Format,
    /// Set when the fallback protocol was used; Prometheus logs it at debug level
    /// and scrapes on.
    pub fallback_reason: Option<String>,
}

/// Why no parser could be chosen; the scrape fails with this message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ContentTypeError(pub String);

impl Format {
    /// Chooses the parser as Prometheus 3's `textparse.New`/`extractMediaType` do.
    ///
    /// A recognised media type (`text/plain`, `application/openmetrics-text`, any
    /// parameters) picks its parser. A missing, blank, unparsable or unknown
    /// Content-Type uses `fallback` (the job's `fallback_scrape_protocol`) if one is
    /// set, and otherwise fails the scrape: Prometheus 3 has no implicit fallback
    /// (Prometheus 2 parsed such bodies as text 0.0.4). `application/vnd.google.protobuf`
    /// is recognised upstream but not implemented here, so it is an error; it is
    /// never requested by [`ACCEPT_HEADER`].
    pub fn from_content_type(
        content_type: Option<&str>,
        fallback: Option<Format>,
    ) -> Result<Negotiated, ContentTypeError> {
        let ct = content_type.unwrap_or("");
        let with_fallback = |reason: String| match fallback {
            Some(format) => Ok(Negotiated {
                format,
                fallback_reason: Some(format!(
                    "{reason}, using fallback_scrape_protocol {:?}",
                    format.scrape_protocol()
                )),
            }),
            None => Err(ContentTypeError(format!(
                "{reason} and no fallback_scrape_protocol specified for target"
            ))),
        };
        if ct.is_empty() {
            return with_fallback("non-compliant scrape target sending blank Content-Type".into());
        }
        let media_type = match parse_media_type(ct) {
            Ok(m) => m,
            Err(e) => return with_fallback(format!("cannot parse Content-Type {ct:?} ({e})")),
        };
        match media_type.as_str() {
            "text/plain" => Ok(Negotiated {
                format: Format::PrometheusText,
                fallback_reason: None,
            }),
            "application/openmetrics-text" => Ok(Negotiated {
                format: Format::OpenMetrics,
                fallback_reason: None,
            }),
            "application/vnd.google.protobuf" => Err(ContentTypeError(format!(
                "received Content-Type {ct:?}: the protobuf exposition format is not supported"
            ))),
            _ => with_fallback(format!("received unsupported Content-Type {ct:?}")),
        }
    }

    /// The format of a `fallback_scrape_protocol` / `scrape_protocols` value.
    /// `PrometheusProto` is valid upstream but not supported here (None).
    pub fn from_scrape_protocol(protocol: &str) -> Option<Format> {
        match protocol {
            "PrometheusText0.0.4" | "PrometheusText1.0.0" => Some(Format::PrometheusText),
            "OpenMetricsText0.0.1" | "OpenMetricsText1.0.0" => Some(Format::OpenMetrics),
            _ => None,
        }
    }

    /// The scrape protocol name of the newest version of this format.
    pub fn scrape_protocol(self) -> &'static str {
        match self {
            Format::PrometheusText => "PrometheusText0.0.4",
            Format::OpenMetrics => "OpenMetricsText1.0.0",
        }
    }
}

/// An RFC 2045 token character.
fn is_token_char(c: char) -> bool {
    c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c)
}

/// Go's `mime.ParseMediaType`, reduced to what `extractMediaType` needs: the
/// lower-cased `type/subtype`, and an error for malformed input.
fn parse_media_type(v: &str) -> Result<String, &'static str> {
    let (base, mut params) = match v.find(';') {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, ""),
    };
    let media = base.trim().to_ascii_lowercase();
    let is_token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|c| c > b' ' && c < 0x7f && !b"()<>@,;:\\\"/[]?=".contains(&c))
    };
    match media.split_once('/') {
        None if is_token(&media) => {}
        None if media.is_empty() => return Err("no media type"),
        None => return Err("expected token after media type"),
        Some((t, s)) => {
            if !is_token(t) {
                return Err("expected token before slash");
            }
            if !is_token(s) {
                return Err("expected token after slash");
            }
        }
    }
    let mut seen: Vec<String> = Vec::new();
    loop {
        params = params.trim_start();
        if params.is_empty() {
            break;
        }
        let Some(rest) = params.strip_prefix(';') else {
            return Err("invalid media parameter");
        };
        let rest = rest.trim_start();
        if rest.is_empty() {
            break; // a trailing semicolon is ignored
        }
        let key_end = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
        let key = &rest[..key_end];
        let Some(after) = rest[key_end..].trim_start().strip_prefix('=') else {
            return Err("invalid media parameter");
        };
        if key.is_empty() {
            return Err("invalid media parameter");
        }
        let after = after.trim_start();
        let consumed = if let Some(q) = after.strip_prefix('"') {
            let mut end = None;
            let mut escaped = false;
            for (i, c) in q.char_indices() {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            match end {
                Some(i) => i + 2,
                None => return Err("invalid media parameter"),
            }
        } else {
            let n = after
                .find(|c: char| !is_token_char(c))
                .unwrap_or(after.len());
            if n == 0 {
                return Err("invalid media parameter");
            }
            n
        };
        let key = key.to_ascii_lowercase();
        if seen.contains(&key) {
            return Err("duplicate parameter name");
        }
        seen.push(key);
        params = &after[consumed..];
    }
    Ok(media)
}

/// The metric type of a family, as Prometheus's `model.MetricType` names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    Stateset,
    /// Text format `untyped`, OpenMetrics `unknown`, or no TYPE line.
    #[default]
    Unknown,
}

impl MetricType {
    /// The name Prometheus uses in its metadata API.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::Stateset => "stateset",
            MetricType::Unknown => "unknown",
        }
    }

    /// Families whose OpenMetrics `_created` series carry a created timestamp.
    pub fn has_created_series(self) -> bool {
        matches!(
            self,
            MetricType::Counter | MetricType::Summary | MetricType::Histogram
        )
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
