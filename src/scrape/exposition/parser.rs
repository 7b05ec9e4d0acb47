//! The streaming parser. One pass over the body validates each line completely
//! (so a malformed line fails the scrape before anything of it is appended); the
//! labels of a sample are kept as the raw bytes between its braces and re-read
//! lazily by [`LabelIter`], which is what makes the parser allocation-free per sample.

use std::borrow::Cow;

use super::float::{normalize_float_label, parse_i64_digits, parse_value};
use super::{Format, MetricType};
use crate::model::labels::{Label, Labels, METRIC_NAME};
use crate::model::normal_nan;

/// A malformed exposition: 1-based line and column (in characters) and what was
/// expected there. The scrape loop prefixes the target URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// Parser switches. The default is what Prometheus 3 does by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParserOptions {
    /// Drop OpenMetrics `_created` series of counter, summary and histogram
    /// families instead of returning them as samples. Prometheus sets this only when
    /// created-timestamp zero ingestion is enabled (`OpenMetricsSkipSTSeries:
    /// sl.enableSTZeroIngestion` in scrape/scrape.go), so by default `_created`
    /// lines are ingested as ordinary float series, and so they are here.
    pub skip_created_series: bool,
}

/// One parsed line.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry<'a> {
    Sample(Sample<'a>),
    /// `# HELP family text`, text unescaped.
    Help {
        family: Cow<'a, str>,
        help: Cow<'a, str>,
    },
    /// `# TYPE family type`; it also sets the type used for the samples that follow.
    Type {
        family: Cow<'a, str>,
        kind: MetricType,
    },
    /// `# UNIT family unit` (OpenMetrics only).
    Unit {
        family: Cow<'a, str>,
        unit: &'a str,
    },
}

/// A sample: metric name, labels (read lazily from the body), value, optional
/// timestamp in milliseconds and optional OpenMetrics exemplar.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<'a> {
    name: Cow<'a, str>,
    label_set: &'a str,
    kind: MetricType,
    pub value: f64,
    /// Milliseconds since the epoch: as written in text format, converted from
    /// (float) seconds in OpenMetrics (truncated toward zero, as Prometheus does).
    pub timestamp_ms: Option<i64>,
    pub exemplar: Option<Exemplar<'a>>,
    /// The 1-based line the sample starts on.
    pub line: u32,
}

/// An OpenMetrics exemplar (`# {labels} value [timestamp]`), kept on its sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar<'a> {
    label_set: &'a str,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

impl<'a> Sample<'a> {
    /// The metric name (`__name__`), unescaped if it was quoted.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The type of the family in effect for this sample: the last `# TYPE` line seen,
    /// as upstream keeps it (it is not reset when the family changes).
    pub fn metric_type(&self) -> MetricType {
        self.kind
    }

    /// The labels as written (without `__name__`), values unescaped, with
    /// Prometheus 3's normalisation of `le` (histogram) and `quantile` (summary).
    pub fn labels(&self) -> LabelIter<'a> {
        LabelIter {
            rest: self.label_set,
            normalize: match self.kind {
                MetricType::Histogram => Some("le"),
                MetricType::Summary => Some("quantile"),
                _ => None,
            },
        }
    }

    /// The label set as written between the braces (empty when there were none).
    pub fn raw_label_set(&self) -> &'a str {
        self.label_set
    }

    /// The full label set, `__name__` included, as the store keys a series.
    /// A label name given twice fails, as it fails the scrape in Prometheus.
    pub fn to_labels(&self) -> Result<Labels, ParseError> {
        let mut out = Vec::with_capacity(8);
        out.push(Label::new(METRIC_NAME, &*self.name));
        for (n, v) in self.labels() {
            out.push(Label::new(&*n, &*v));
        }
        build_labels(out, self.line)
    }
}

impl<'a> Exemplar<'a> {
    /// The exemplar's labels, unescaped.
    pub fn labels(&self) -> LabelIter<'a> {
        LabelIter {
            rest: self.label_set,
            normalize: None,
        }
    }

    pub fn to_labels(&self, line: u32) -> Result<Labels, ParseError> {
        let out = self
            .labels()
            .map(|(n, v)| Label::new(&*n, &*v))
            .collect::<Vec<_>>();
        build_labels(out, line)
    }
}

fn build_labels(mut out: Vec<Label>, line: u32) -> Result<Labels, ParseError> {
    out.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(w) = out.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(ParseError {
            line,
            column: 1,
            message: format!("label name {:?} is not unique", &*w[0].name),
        });
    }
    Ok(Labels::new(out))
}

/// Iterates over a validated label set: `(name, value)`, both unescaped.
#[derive(Clone, Debug)]
pub struct LabelIter<'a> {
    rest: &'a str,
    normalize: Option<&'static str>,
}

impl<'a> Iterator for LabelIter<'a> {
    type Item = (Cow<'a, str>, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let s = self.rest;
            let b = s.as_bytes();
            let mut i = skip_blanks(b, 0);
            if i >= b.len() {
                self.rest = "";
                return None;
            }
            // Anything unexpected ends the iteration (the parser validated the set,
            // so this only guards against panics).
            self.rest = "";
            let name: Cow<'a, str>;
            if b[i] == b'"' {
                let (end, escaped) = quoted_end(b, i)?;
                name = content(s, i, end, escaped)?;
                i = end;
            } else {
                let start = i;
                while i < b.len() && is_label_char(b[i]) {
                    i += 1;
                }
                name = Cow::Borrowed(s.get(start..i)?);
            }
            i = skip_blanks(b, i);
            match b.get(i) {
                Some(b'=') => {}
                // A quoted metric name inside the braces, not a label.
                Some(b',') => {
                    self.rest = s.get(i + 1..)?;
                    continue;
                }
                None => continue,
                _ => return None,
            }
            i = skip_blanks(b, i + 1);
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let (end, escaped) = quoted_end(b, i)?;
            let mut value = content(s, i, end, escaped)?;
            i = skip_blanks(b, end);
            if b.get(i) == Some(&b',') {
                i += 1;
            }
            self.rest = s.get(i..)?;
            if self.normalize == Some(&*name) {
                value = normalize_float_label(value);
            }
            return Some((name, value));
        }
    }
}

#[inline]
fn skip_blanks(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    i
}

/// End (exclusive, after the closing quote) of the validated quoted string at `i`,
/// and whether it holds an escape.
#[inline]
fn quoted_end(b: &[u8], i: usize) -> Option<(usize, bool)> {
    let mut j = i + 1;
    let mut escaped = false;
    loop {
        while j < b.len() && CLASS[b[j] as usize] & QUOTED_STOP == 0 {
            j += 1;
        }
        match b.get(j)? {
            b'"' => return Some((j + 1, escaped)),
            b'\\' => {
                escaped = true;
                j += 2;
            }
            _ => j += 1,
        }
    }
}

/// The content of the quoted string `s[open..end]`, unescaped if needed.
#[inline]
fn content(s: &str, open: usize, end: usize, escaped: bool) -> Option<Cow<'_, str>> {
    let raw = s.get(open + 1..end - 1)?;
    Some(if escaped {
        unescape(raw, false)
    } else {
        Cow::Borrowed(raw)
    })
}

/// Unescapes as Prometheus's `lvalReplacer` (`\"`, `\\`, `\n`; any other escape is
/// kept as written) or, for text-format HELP, `helpReplacer` (`\\`, `\n` only).
fn unescape(raw: &str, help: bool) -> Cow<'_, str> {
    if !raw.as_bytes().contains(&b'\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if !help => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// Byte classes, one table lookup per byte in the hot loops.
const NAME: u8 = 1; // [a-zA-Z0-9_:]
const LABEL: u8 = 2; // [a-zA-Z0-9_]
const ALPHA: u8 = 4; // [a-zA-Z_:] (with LABEL: [a-zA-Z_])
const QUOTED_STOP: u8 = 8; // '"', '\\', '\n'
const TEXT_VALUE_STOP: u8 = 16; // ' ', '\t', '\n', '{'
const OM_VALUE_STOP: u8 = 32; // ' ', '\n'

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let alpha = b.is_ascii_alphabetic() || b == b'_';
        if alpha || b.is_ascii_digit() || b == b':' {
            t[c] |= NAME;
        }
        if alpha || b.is_ascii_digit() {
            t[c] |= LABEL;
        }
        if alpha || b == b':' {
            t[c] |= ALPHA;
        }
        if b == b'"' || b == b'\\' || b == b'\n' {
            t[c] |= QUOTED_STOP;
        }
        if b == b' ' || b == b'\t' || b == b'\n' || b == b'{' {
            t[c] |= TEXT_VALUE_STOP;
        }
        if b == b' ' || b == b'\n' {
            t[c] |= OM_VALUE_STOP;
        }
        c += 1;
    }
    t
};

#[inline]
fn is_name_start(c: u8) -> bool {
    CLASS[c as usize] & ALPHA != 0
}

#[inline]
fn is_name_char(c: u8) -> bool {
    CLASS[c as usize] & NAME != 0
}

#[inline]
fn is_label_start(c: u8) -> bool {
    CLASS[c as usize] & (ALPHA | LABEL) == (ALPHA | LABEL)
}

#[inline]
fn is_label_char(c: u8) -> bool {
    CLASS[c as usize] & LABEL != 0
}

/// Streaming parser over one response body.
pub struct Parser<'a> {
    buf: &'a [u8],
    /// The body as text when all of it is valid UTF-8 (the normal case): slices at
    /// ASCII delimiters are then valid `str`s without re-validation.
    text: Option<&'a str>,
    pos: usize,
    line: u32,
    line_start: usize,
    format: Format,
    opts: ParserOptions,
    kind: MetricType,
    finished: bool,
}

/// Where a quoted string may end up, which decides what it may contain.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quoted {
    /// Text-format strings and OpenMetrics quoted names: raw line breaks allowed.
    MultiLine,
    /// OpenMetrics label values: no raw line break.
    SingleLine,
}

impl<'a> Parser<'a> {
    pub fn new(body: &'a [u8], format: Format, opts: ParserOptions) -> Parser<'a> {
        Parser {
            buf: body,
            text: std::str::from_utf8(body).ok(),
            pos: 0,
            line: 1,
            line_start: 0,
            format,
            opts,
            kind: MetricType::Unknown,
            finished: false,
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The next entry, `Ok(None)` at the end of the body. An empty body is valid in
    /// both formats (Prometheus treats an empty scrape as a successful one without
    /// samples before it reaches the parser). After an error the parser is finished.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        if self.finished {
            return Ok(None);
        }
        let r = match self.format {
            Format::PrometheusText => self.next_text(),
            Format::OpenMetrics => self.next_openmetrics(),
        };
        match r {
            Ok(None) | Err(_) => self.finished = true,
            Ok(Some(_)) => {}
        }
        r
    }

    // ---- errors and positions ----

    fn error_at(&self, at: usize, message: impl Into<String>) -> ParseError {
        let at = at.min(self.buf.len());
        let newlines = |seg: &[u8]| seg.iter().filter(|&&c| c == b'\n').count() as u32;
        let line = if at >= self.line_start {
            self.line + newlines(&self.buf[self.line_start..at])
        } else {
            self.line
                .saturating_sub(newlines(&self.buf[at..self.line_start]))
                .max(1)
        };
        let line_start = self.buf[..at]
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |p| p + 1);
        let column = self.buf[line_start..at]
            .iter()
            .filter(|&&c| (c & 0xC0) != 0x80)
            .count() as u32
            + 1;
        ParseError {
            line,
            column,
            message: message.into(),
        }
    }

    fn found(&self, at: usize) -> String {
        match self.buf.get(at) {
            None => "end of input".to_string(),
            Some(b'\n') => "end of line".to_string(),
            Some(b'\t') => "tab".to_string(),
            Some(b'\r') => "carriage return".to_string(),
            Some(&c) if (0x20..0x7f).contains(&c) => format!("'{}'", c as char),
            Some(&c) if c < 0x80 => format!("byte 0x{c:02x}"),
            Some(&c) => {
                let end = (at + 4).min(self.buf.len());
                match String::from_utf8_lossy(&self.buf[at..end]).chars().next() {
                    Some(ch) if ch != char::REPLACEMENT_CHARACTER => format!("'{ch}'"),
                    _ => format!("byte 0x{c:02x}"),
                }
            }
        }
    }

    fn expected(&self, at: usize, what: &str) -> ParseError {
        self.error_at(at, format!("expected {what}, found {}", self.found(at)))
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    #[inline]
    fn skip_ws(&mut self) {
        self.pos = skip_blanks(self.buf, self.pos);
    }

    /// Consumes the line break at `pos` (or accepts the end of the body).
    #[inline]
    fn end_line(&mut self) {
        if self.pos < self.buf.len() {
            self.pos += 1;
        }
        self.line += 1;
        self.line_start = self.pos;
    }

    /// The body between two offsets as text. Callers pass ranges that start and end
    /// next to ASCII delimiters and whose content was validated as UTF-8, so this
    /// only fails (returning "") on a bug, never on input.
    #[inline]
    fn str_at(&self, start: usize, end: usize) -> &'a str {
        match self.text {
            Some(t) => t.get(start..end),
            None => self
                .buf
                .get(start..end)
                .and_then(|b| std::str::from_utf8(b).ok()),
        }
        .unwrap_or("")
    }

    #[inline]
    fn scan_name(&mut self) -> &'a str {
        let start = self.pos;
        let b = self.buf;
        let mut i = start;
        while i < b.len() && is_name_char(b[i]) {
            i += 1;
        }
        self.pos = i;
        self.str_at(start, i)
    }

    /// Scans a quoted string starting at `pos` (which holds `"`); returns its raw
    /// content. Validates escapes, line breaks and UTF-8.
    fn scan_quoted(&mut self, mode: Quoted, what: &str) -> Result<&'a str, ParseError> {
        let b = self.buf;
        let open = self.pos;
        let mut i = open + 1;
        loop {
            while i < b.len() && CLASS[b[i] as usize] & QUOTED_STOP == 0 {
                i += 1;
            }
            let Some(&c) = b.get(i) else {
                return Err(self.error_at(open, format!("unterminated {what}: no closing '\"'")));
            };
            match c {
                b'"' => break,
                b'\\' => match b.get(i + 1) {
                    None | Some(b'\n') => {
                        return Err(self.error_at(
                            i,
                            format!(
                                "invalid escape in {what}: '\\' before {}",
                                self.found(i + 1)
                            ),
                        ))
                    }
                    Some(_) => i += 2,
                },
                _ => {
                    // A raw line break.
                    if mode == Quoted::SingleLine {
                        return Err(self.error_at(i, format!("line break in {what}")));
                    }
                    // Keep line numbers right for errors after a multi-line value.
                    self.line += 1;
                    self.line_start = i + 1;
                    i += 1;
                }
            }
        }
        let raw = match self.text {
            Some(t) => t.get(open + 1..i),
            None => std::str::from_utf8(&b[open + 1..i]).ok(),
        };
        let Some(raw) = raw else {
            return Err(self.error_at(open + 1, format!("invalid UTF-8 in {what}")));
        };
        self.pos = i + 1;
        Ok(raw)
    }

    /// A quoted name (metric or label) must be a non-empty UTF-8 string.
    fn quoted_name(&mut self, what: &str) -> Result<(usize, Cow<'a, str>), ParseError> {
        let start = self.pos;
        let raw = self.scan_quoted(Quoted::MultiLine, what)?;
        let name = unescape(raw, false);
        if name.is_empty() {
            return Err(self.error_at(start, format!("empty {what}")));
        }
        Ok((start, name))
    }

    fn value_token(&mut self, stop_at_brace: bool) -> &'a [u8] {
        let b = self.buf;
        let start = self.pos;
        let stop = if stop_at_brace {
            TEXT_VALUE_STOP
        } else {
            OM_VALUE_STOP
        };
        let mut i = start;
        while i < b.len() && CLASS[b[i] as usize] & stop == 0 {
            i += 1;
        }
        self.pos = i;
        &b[start..i]
    }

    fn parse_value_at(&self, start: usize, tok: &[u8], what: &str) -> Result<f64, ParseError> {
        match parse_value(tok) {
            Some(v) if v.is_nan() => Ok(normal_nan()),
            Some(v) => Ok(v),
            None => Err(self.error_at(
                start,
                format!(
                    "invalid {what} {:?}: expected a float such as 1, -2.5e3, NaN or +Inf",
                    String::from_utf8_lossy(tok)
                ),
            )),
        }
    }

    /// OpenMetrics: one space, then `what` (a sample's or an exemplar's value; `a_what`
    /// names it in the error when it is missing).
    fn om_spaced_value(&mut self, what: &str, a_what: &str) -> Result<f64, ParseError> {
        if self.peek() != Some(b' ') {
            return Err(self.expected(self.pos, &format!("' ' before the {what}")));
        }
        self.pos += 1;
        let start = self.pos;
        let tok = self.value_token(false);
        if tok.is_empty() {
            return Err(self.expected(start, a_what));
        }
        self.parse_value_at(start, tok, what)
    }

    // ---- Prometheus text format ----

    fn next_text(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        loop {
            self.skip_ws();
            let Some(c) = self.peek() else {
                return Ok(None);
            };
            match c {
                b'\n' => self.end_line(),
                // promlex: a NUL where a line starts is the end of input.
                0 => return Ok(None),
                b'#' => {
                    if let Some(e) = self.text_comment()? {
                        return Ok(Some(e));
                    }
                }
                b'{' => return self.text_sample().map(Some),
                c if is_name_start(c) => return self.text_sample().map(Some),
                _ => {
                    return Err(
                        self.expected(self.pos, "a metric name, '{' or '#' at start of line")
                    )
                }
            }
        }
    }

    fn skip_to_line_end(&mut self) {
        let b = self.buf;
        let mut i = self.pos;
        while i < b.len() && b[i] != b'\n' {
            i += 1;
        }
        self.pos = i;
        self.end_line();
    }

    /// `#` starts a comment; `# HELP ` and `# TYPE ` (any blanks) start metadata.
    fn text_comment(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        self.pos += 1;
        let after_hash = self.pos;
        self.skip_ws();
        let rest = &self.buf[self.pos..];
        let is_help = rest.starts_with(b"HELP");
        let is_type = rest.starts_with(b"TYPE");
        if self.pos == after_hash
            || !(is_help || is_type)
            || !matches!(rest.get(4), Some(b' ' | b'\t'))
        {
            self.skip_to_line_end();
            return Ok(None);
        }
        let keyword = if is_help { "HELP" } else { "TYPE" };
        self.pos += 4;
        self.skip_ws();
        let family = match self.peek() {
            Some(b'"') => self.quoted_name("metric name")?.1,
            Some(c) if is_name_start(c) => Cow::Borrowed(self.scan_name()),
            _ => return Err(self.expected(self.pos, &format!("a metric name after {keyword}"))),
        };
        let b = self.buf;
        let start = self.pos;
        let mut end = start;
        while end < b.len() && b[end] != b'\n' {
            end += 1;
        }
        let rest = &b[start..end];
        // promlex takes the rest of the line and drops its first byte (the blank
        // that separated it from the name); a rest of only blanks is empty text.
        let text = if rest.iter().all(|&c| c == b' ' || c == b'\t') {
            &rest[..0]
        } else {
            &rest[1..]
        };
        let text_at = if rest.is_empty() { start } else { start + 1 };
        self.pos = end;
        let entry = if is_help {
            let Ok(help) = std::str::from_utf8(text) else {
                return Err(self.error_at(text_at, "help text is not valid UTF-8"));
            };
            Entry::Help {
                family,
                help: unescape(help, true),
            }
        } else {
            let kind = match text {
                b"counter" => MetricType::Counter,
                b"gauge" => MetricType::Gauge,
                b"histogram" => MetricType::Histogram,
                b"summary" => MetricType::Summary,
                b"untyped" => MetricType::Unknown,
                _ => {
                    return Err(self.error_at(
                        text_at,
                        format!(
                            "invalid metric type {:?}: expected counter, gauge, histogram, summary or untyped",
                            String::from_utf8_lossy(text)
                        ),
                    ))
                }
            };
            self.kind = kind;
            Entry::Type { family, kind }
        };
        self.end_line();
        Ok(Some(entry))
    }

    fn text_sample(&mut self) -> Result<Entry<'a>, ParseError> {
        let line = self.line;
        let line_pos = self.pos;
        let mut name: Option<Cow<'a, str>> = None;
        if self.peek() != Some(b'{') {
            name = Some(Cow::Borrowed(self.scan_name()));
            self.skip_ws();
        }
        let mut label_set: &'a str = "";
        if self.peek() == Some(b'{') {
            self.pos += 1;
            let ls_start = self.pos;
            self.label_list(&mut name, false)?;
            label_set = self.str_at(ls_start, self.pos - 1);
            self.skip_ws();
        }
        let Some(name) = name else {
            return Err(self.error_at(
                line_pos,
                "metric name not set: expected a quoted name inside the braces",
            ));
        };
        let vstart = self.pos;
        let tok = self.value_token(true);
        if tok.is_empty() {
            return Err(self.expected(vstart, "a value after the metric name and labels"));
        }
        let value = self.parse_value_at(vstart, tok, "value")?;
        self.skip_ws();
        let mut timestamp_ms = None;
        match self.peek() {
            None | Some(b'\n') => {}
            Some(c) if c.is_ascii_digit() => {
                let tstart = self.pos;
                let b = self.buf;
                let mut i = tstart;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                self.pos = i;
                match parse_i64_digits(&b[tstart..i]) {
                    Some(ts) => timestamp_ms = Some(ts),
                    None => {
                        return Err(
                            self.error_at(tstart, "timestamp out of range for int64 milliseconds")
                        )
                    }
                }
                self.skip_ws();
                if !matches!(self.peek(), None | Some(b'\n')) {
                    return Err(self.expected(self.pos, "end of line after timestamp"));
                }
            }
            _ => {
                return Err(self.expected(
                    self.pos,
                    "a timestamp (integer milliseconds) or end of line after value",
                ))
            }
        }
        self.end_line();
        Ok(Entry::Sample(Sample {
            name,
            label_set,
            kind: self.kind,
            value,
            timestamp_ms,
            exemplar: None,
            line,
        }))
    }

    /// Parses the inside of `{...}` (after the `{`), consuming the `}`. A quoted
    /// string followed by `,` or `}` is the metric name (UTF-8 names, text 1.0.0 and
    /// OpenMetrics with `escaping=allow-utf-8`); not allowed in exemplars.
    fn label_list(
        &mut self,
        name: &mut Option<Cow<'a, str>>,
        exemplar: bool,
    ) -> Result<(), ParseError> {
        let text = self.format == Format::PrometheusText;
        loop {
            if text {
                self.skip_ws();
            }
            let lstart = self.pos;
            let quoted = match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'"') => {
                    let (_, n) = self.quoted_name("name")?;
                    Some(n)
                }
                Some(c) if is_label_start(c) => {
                    let b = self.buf;
                    let mut i = self.pos + 1;
                    while i < b.len() && is_label_char(b[i]) {
                        i += 1;
                    }
                    self.pos = i;
                    None
                }
                _ => return Err(self.expected(lstart, "a label name or '}'")),
            };
            if text {
                self.skip_ws();
            }
            match (self.peek(), quoted) {
                (Some(b',' | b'}'), Some(metric)) if !exemplar => {
                    if name.is_some() {
                        return Err(self.error_at(lstart, "metric name already set"));
                    }
                    *name = Some(metric);
                    if self.peek() == Some(b',') {
                        self.pos += 1;
                    }
                    continue;
                }
                (Some(b'='), _) => self.pos += 1,
                _ => return Err(self.expected(self.pos, "'=' after label name")),
            }
            if text {
                self.skip_ws();
            }
            if self.peek() != Some(b'"') {
                return Err(self.expected(self.pos, "'\"' to start the label value"));
            }
            let mode = if text {
                Quoted::MultiLine
            } else {
                Quoted::SingleLine
            };
            self.scan_quoted(mode, "label value")?;
            if text {
                // Upstream skips an optional comma; a missing one is tolerated
                // (`{a="1" b="2"}` parses), so no check here.
                self.skip_ws();
                if self.peek() == Some(b',') {
                    self.pos += 1;
                }
            } else {
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => {}
                    _ => return Err(self.expected(self.pos, "',' or '}' after label value")),
                }
            }
        }
    }

    // ---- OpenMetrics ----

    fn next_openmetrics(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        loop {
            let Some(c) = self.peek() else {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(self.error_at(
                    self.pos,
                    "expected \"# EOF\" at the end of OpenMetrics data, found end of input",
                ));
            };
            let entry = match c {
                b'#' => return self.om_comment(),
                b'{' => self.om_sample()?,
                c if is_name_start(c) => self.om_sample()?,
                _ => {
                    return Err(
                        self.expected(self.pos, "a metric name, '{' or '#' at start of line")
                    )
                }
            };
            if let Entry::Sample(s) = &entry {
                if self.opts.skip_created_series
                    && s.kind.has_created_series()
                    && s.name.ends_with("_created")
                {
                    continue;
                }
            }
            return Ok(Some(entry));
        }
    }

    fn om_comment(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        let hash = self.pos;
        if self.buf.get(hash + 1) != Some(&b' ') {
            return Err(self.expected(hash + 1, "' ' after '#'"));
        }
        self.pos += 2;
        let rest = &self.buf[self.pos..];
        let keyword = if rest.starts_with(b"HELP ") {
            "HELP"
        } else if rest.starts_with(b"TYPE ") {
            "TYPE"
        } else if rest.starts_with(b"UNIT ") {
            "UNIT"
        } else if rest.starts_with(b"EOF") {
            let mut end = self.pos + 3;
            if self.buf.get(end) == Some(&b'\n') {
                end += 1;
            }
            if end < self.buf.len() {
                return Err(self.error_at(end, "unexpected data after \"# EOF\""));
            }
            self.pos = end;
            return Ok(None);
        } else {
            return Err(self.expected(
                self.pos,
                "HELP, TYPE, UNIT or EOF after '# ' (OpenMetrics allows no other comments)",
            ));
        };
        self.pos += 5;
        let family = match self.peek() {
            Some(b'"') => self.quoted_name("metric name")?.1,
            Some(c) if is_name_start(c) => Cow::Borrowed(self.scan_name()),
            _ => return Err(self.expected(self.pos, &format!("a metric name after {keyword}"))),
        };
        if self.peek() != Some(b' ') {
            return Err(self.expected(
                self.pos,
                &format!("' ' and text after the metric name in {keyword}"),
            ));
        }
        self.pos += 1;
        let b = self.buf;
        let start = self.pos;
        let mut end = start;
        while end < b.len() && b[end] != b'\n' {
            end += 1;
        }
        if end == b.len() {
            return Err(self.expected(end, &format!("a line break after the {keyword} text")));
        }
        let text = &b[start..end];
        self.pos = end;
        let entry = match keyword {
            "HELP" => {
                let Ok(help) = std::str::from_utf8(text) else {
                    return Err(self.error_at(start, "help text is not valid UTF-8"));
                };
                Entry::Help {
                    family,
                    help: unescape(help, false),
                }
            }
            "TYPE" => {
                let kind = match text {
                    b"counter" => MetricType::Counter,
                    b"gauge" => MetricType::Gauge,
                    b"histogram" => MetricType::Histogram,
                    b"gaugehistogram" => MetricType::GaugeHistogram,
                    b"summary" => MetricType::Summary,
                    b"info" => MetricType::Info,
                    b"stateset" => MetricType::Stateset,
                    b"unknown" => MetricType::Unknown,
                    _ => return Err(self.error_at(start, format!(
                        "invalid metric type {:?}: expected counter, gauge, histogram, gaugehistogram, summary, info, stateset or unknown",
                        String::from_utf8_lossy(text)
                    ))),
                };
                self.kind = kind;
                Entry::Type { family, kind }
            }
            _ => {
                let unit = match std::str::from_utf8(text) {
                    Ok(u) => u,
                    Err(_) => return Err(self.error_at(start, "unit is not valid UTF-8")),
                };
                if !unit.is_empty() {
                    let ok = family.len() > unit.len()
                        && family.ends_with(unit)
                        && family.as_bytes()[family.len() - unit.len() - 1] == b'_';
                    if !ok {
                        return Err(self.error_at(
                            start,
                            format!("unit {unit:?} is not a suffix of metric {family:?} (expected \"<name>_{unit}\")"),
                        ));
                    }
                }
                Entry::Unit { family, unit }
            }
        };
        self.end_line();
        Ok(Some(entry))
    }

    /// Requires a line break at `pos` (OpenMetrics data always ends with `# EOF\n`-ish).
    fn om_expect_line_end(&self, what: &str) -> Result<(), ParseError> {
        match self.peek() {
            Some(b'\n') => Ok(()),
            None => Err(self.error_at(
                self.pos,
                format!("expected a line break {what}, found end of input (OpenMetrics data must end with \"# EOF\")"),
            )),
            _ => Err(self.expected(self.pos, &format!("a line break {what}"))),
        }
    }

    fn om_float_seconds_to_ms(
        &self,
        start: usize,
        tok: &[u8],
        what: &str,
    ) -> Result<i64, ParseError> {
        let ts = match parse_value(tok) {
            Some(v) if v.is_finite() => v,
            _ => {
                return Err(self.error_at(
                    start,
                    format!(
                        "invalid {what} {:?}: expected seconds since the epoch as a finite float",
                        String::from_utf8_lossy(tok)
                    ),
                ))
            }
        };
        Ok((ts * 1000.0) as i64)
    }

    fn om_sample(&mut self) -> Result<Entry<'a>, ParseError> {
        let line = self.line;
        let line_pos = self.pos;
        let mut name: Option<Cow<'a, str>> = None;
        if self.peek() != Some(b'{') {
            name = Some(Cow::Borrowed(self.scan_name()));
        }
        let mut label_set: &'a str = "";
        if self.peek() == Some(b'{') {
            self.pos += 1;
            let ls_start = self.pos;
            self.label_list(&mut name, false)?;
            label_set = self.str_at(ls_start, self.pos - 1);
        }
        let Some(name) = name else {
            return Err(self.error_at(
                line_pos,
                "metric name not set: expected a quoted name inside the braces",
            ));
        };
        let value = self.om_spaced_value("value", "a value")?;
        let mut timestamp_ms = None;
        let mut exemplar = None;
        if self.peek() == Some(b' ') {
            if self.buf[self.pos..].starts_with(b" # {") {
                exemplar = Some(self.om_exemplar()?);
            } else {
                self.pos += 1;
                let tstart = self.pos;
                let tok = self.value_token(false);
                if tok.is_empty() {
                    return Err(
                        self.expected(tstart, "a timestamp or \"# {\" (exemplar) after ' '")
                    );
                }
                timestamp_ms = Some(self.om_float_seconds_to_ms(tstart, tok, "timestamp")?);
                if self.peek() == Some(b' ') {
                    if self.buf[self.pos..].starts_with(b" # {") {
                        exemplar = Some(self.om_exemplar()?);
                    } else {
                        return Err(self.expected(
                            self.pos + 1,
                            "\"# {\" (exemplar) or a line break after the timestamp",
                        ));
                    }
                }
            }
        }
        self.om_expect_line_end("after the sample")?;
        self.end_line();
        Ok(Entry::Sample(Sample {
            name,
            label_set,
            kind: self.kind,
            value,
            timestamp_ms,
            exemplar,
            line,
        }))
    }

    /// ` # {labels} value [timestamp]`, starting at the blank before `#`.
    fn om_exemplar(&mut self) -> Result<Exemplar<'a>, ParseError> {
        self.pos += 4;
        let ls_start = self.pos;
        let mut none = None;
        self.label_list(&mut none, true)?;
        let label_set = self.str_at(ls_start, self.pos - 1);
        let value = self.om_spaced_value("exemplar value", "an exemplar value")?;
        let mut timestamp_ms = None;
        if self.peek() == Some(b' ') {
            self.pos += 1;
            let tstart = self.pos;
            let tok = self.value_token(false);
            if tok.is_empty() {
                return Err(self.expected(tstart, "an exemplar timestamp"));
            }
            timestamp_ms = Some(self.om_float_seconds_to_ms(tstart, tok, "exemplar timestamp")?);
        }
        Ok(Exemplar {
            label_set,
            value,
            timestamp_ms,
        })
    }
}
