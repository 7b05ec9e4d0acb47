//! The PromQL engine's public face: parsing (with a cache of recent parses),
//! instant and range queries over a [`Storage`], result limits, and the guard
//! that turns a panic during evaluation into the query's error. The evaluation
//! itself is the [`Evaluator`]'s.

use std::collections::HashMap;

use promql_parser::parser::{self, Expr};

use super::evaluator::{exec_err, EvalSeries, EvalValue, Evaluator};
use super::value::{EngineOptions, QueryError, QueryResult, Sample, TextPosition, Value};
use crate::model::labels::Labels;
use crate::model::Series;
use crate::model::Storage;

/// The PromQL engine.
#[derive(Clone, Debug, Default)]
pub struct Engine {
    opts: EngineOptions,
}

/// Parses a query with promql-parser, mapping its error to [`QueryError::Parse`].
/// Recent parses are kept: a dashboard sends the same queries on every refresh, and
/// parsing is a noticeable share of a light panel's time (docs/performance.md).
///
/// The query's nesting is bounded: text nested deeper than [`MAX_QUERY_DEPTH`]
/// brackets is refused before parsing, and a parse whose nesting the text does
/// not bound cheaply runs on a thread with a large stack, since promql-parser
/// recurses once per level (see [`text_depth_bound`]).
pub fn parse_expr(query: &str) -> Result<Expr, QueryError> {
    /// Distinct queries kept; when full, the map starts over.
    const KEPT: usize = 512;
    static PARSED: std::sync::Mutex<Option<HashMap<String, Expr>>> = std::sync::Mutex::new(None);
    let parsed = || PARSED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = parsed().as_ref().and_then(|m| m.get(query)) {
        return Ok(e.clone());
    }
    let bound = text_depth_bound(query)?;
    let e = if bound <= MAX_QUERY_DEPTH {
        parse_uncached(query)?
    } else {
        on_deep_stack(|| parse_uncached(query).and_then(|e| check_depth(&e).map(|_| e)))??
    };
    check_depth(&e)?;
    let mut m = parsed();
    let m = m.get_or_insert_with(HashMap::new);
    if m.len() >= KEPT {
        m.clear();
    }
    m.insert(query.to_string(), e.clone());
    Ok(e)
}

/// The deepest query the engine evaluates: nesting of operators, parentheses,
/// function calls, aggregations and subqueries, counted as AST levels (`a + b`
/// is 2, `sum(rate(x[5m]))` is 4, a chain `1 + 1 + … + 1` of n terms is n).
/// Evaluation recurses once per level, so deeper queries are refused before
/// they run; Prometheus has no such limit, but no real query comes near it.
pub const MAX_QUERY_DEPTH: usize = 512;

/// Queries up to this depth evaluate on the caller's thread: at most a few
/// hundred KiB of stack even in an unoptimised build, well inside the 2 MiB of
/// Rust's and tokio's threads. Deeper ones run on a thread of [`DEEP_STACK_BYTES`].
const INLINE_DEPTH: usize = 32;

/// The stack of the thread a deep query is parsed and evaluated on. At
/// [`MAX_QUERY_DEPTH`] evaluation takes under 10 MiB in an unoptimised build
/// (the costliest levels, function calls and subqueries, take about 15 KiB each);
/// the rest is margin. Only the pages touched are ever backed by memory.
const DEEP_STACK_BYTES: usize = 64 << 20;

/// More operators, brackets and words than this in one query is refused without
/// parsing: even on the deep stack, promql-parser's recursion over a chain of
/// that many operators would be near its end.
const MAX_QUERY_TOKENS: usize = 64 * 1024;

/// Runs `f` on a fresh thread with [`DEEP_STACK_BYTES`] of stack.
fn on_deep_stack<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T, QueryError> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("promql-deep".into())
            .stack_size(DEEP_STACK_BYTES)
            .spawn_scoped(scope, f)
            .map_err(|e| {
                QueryError::Execution(format!(
                    "cannot start a thread for a deeply nested query: {e}"
                ))
            })?;
        handle.join().map_err(|p| {
            QueryError::Execution(format!(
                "internal error while evaluating the query: {}",
                panic_message(p.as_ref())
            ))
        })
    })
}

/// An upper bound of the AST depth `query` can parse to, from its text alone:
/// every level of the AST needs an opening bracket, an operator character or a
/// word (`and`, `or`, `unless`, `atan2`), outside string literals and comments.
/// Fails when the brackets alone nest deeper than [`MAX_QUERY_DEPTH`], or the
/// text holds more than [`MAX_QUERY_TOKENS`] of them.
pub fn text_depth_bound(query: &str) -> Result<usize, QueryError> {
    let mut bound = 1usize;
    let mut nesting = 0usize;
    let mut strings = StringLiterals::default();
    let mut in_comment = false;
    let mut in_word = false;
    for c in query.chars() {
        if in_comment {
            in_comment = c != '\n';
            continue;
        }
        if strings.inside(c) {
            continue;
        }
        let word_char = c.is_alphanumeric() || c == '_' || c == ':';
        if word_char && !in_word {
            bound += 1;
        }
        in_word = word_char;
        match c {
            '"' | '\'' | '`' => strings.open(c),
            '#' => in_comment = true,
            '(' | '[' | '{' => {
                bound += 1;
                nesting += 1;
                if nesting > MAX_QUERY_DEPTH {
                    return Err(QueryError::TooDeep {
                        depth: nesting,
                        limit: MAX_QUERY_DEPTH,
                    });
                }
            }
            ')' | ']' | '}' => nesting = nesting.saturating_sub(1),
            '+' | '-' | '*' | '/' | '%' | '^' | '=' | '!' | '<' | '>' => bound += 1,
            _ => {}
        }
        if bound > MAX_QUERY_TOKENS {
            return Err(QueryError::TooDeep {
                depth: bound,
                limit: MAX_QUERY_DEPTH,
            });
        }
    }
    Ok(bound)
}

/// The sub-expressions of `e`, in the order they are written (an aggregation's
/// parameter before its expression: `topk(5, x)`).
fn children(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Aggregate(a) => a.param.iter().map(|p| &**p).chain([&*a.expr]).collect(),
        Expr::Unary(u) => vec![&*u.expr],
        Expr::Binary(b) => vec![&*b.lhs, &*b.rhs],
        Expr::Paren(p) => vec![&*p.expr],
        Expr::Subquery(s) => vec![&*s.expr],
        Expr::Call(c) => c.args.args.iter().map(|a| &**a).collect(),
        Expr::MatrixSelector(_)
        | Expr::VectorSelector(_)
        | Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::Extension(_) => Vec::new(),
    }
}

/// Visits `e` and every sub-expression, each before its children and in written
/// order, with its depth (1 for `e`); stops at the first error. Walked without
/// recursion, so any tree promql-parser returns can be walked.
pub fn walk<E>(e: &Expr, mut visit: impl FnMut(&Expr, usize) -> Result<(), E>) -> Result<(), E> {
    let mut pending: Vec<(&Expr, usize)> = vec![(e, 1)];
    while let Some((e, depth)) = pending.pop() {
        visit(e, depth)?;
        // Pushed last-first, so they are visited in written order.
        pending.extend(children(e).into_iter().rev().map(|c| (c, depth + 1)));
    }
    Ok(())
}

/// The depth of `e` in AST levels.
pub fn expr_depth(e: &Expr) -> usize {
    let mut deepest = 0;
    let _ = walk(e, |e, depth| {
        // A matrix selector holds its vector selector: one level more.
        let own = match e {
            Expr::MatrixSelector(_) => depth + 1,
            _ => depth,
        };
        deepest = deepest.max(own);
        Ok::<(), std::convert::Infallible>(())
    });
    deepest
}

/// The matchers of every series selector in `e` (those inside range selectors
/// too), one set per selector and per `or` alternative of its braces, in the
/// order they are written: Prometheus's `parser.ExtractSelectors`, which
/// `/api/v1/query_exemplars` selects with.
pub fn extract_selectors(e: &Expr) -> Result<Vec<Vec<crate::model::Matcher>>, QueryError> {
    let mut out = Vec::new();
    walk(e, |e, _| -> Result<(), QueryError> {
        match e {
            Expr::MatrixSelector(m) => out.extend(Evaluator::selector_matchers(&m.vs)?),
            Expr::VectorSelector(vs) => out.extend(Evaluator::selector_matchers(vs)?),
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

/// Refuses a query deeper than [`MAX_QUERY_DEPTH`]; returns its depth.
fn check_depth(e: &Expr) -> Result<usize, QueryError> {
    let depth = expr_depth(e);
    if depth > MAX_QUERY_DEPTH {
        return Err(QueryError::TooDeep {
            depth,
            limit: MAX_QUERY_DEPTH,
        });
    }
    Ok(depth)
}

fn parse_uncached(query: &str) -> Result<Expr, QueryError> {
    // A panic inside the parser must not take the process down.
    let parsed = check_number_durations(query).and_then(|()| {
        std::panic::catch_unwind(|| parser::parse(query)).unwrap_or_else(|_| {
            Err("internal parser error (the query could not be parsed)".to_string())
        })
    });
    parsed.map_err(|m| {
        // The rewording must not turn a bad query into a failed request: it
        // parses parts of the query again and recurses over its operator chain,
        // so a query nested deeper than real ones keeps promql-parser's words.
        let unchanged = || super::parse_error::PrometheusParseError {
            message: m.clone(),
            offset: None,
        };
        let e = if text_depth_bound(query).is_ok_and(|d| d <= REWORDED_DEPTH) {
            std::panic::catch_unwind(|| super::parse_error::prometheus_parse_error(query, &m))
                .unwrap_or_else(|_| unchanged())
        } else {
            unchanged()
        };
        // A message no rule places keeps the old guess of its position.
        let offset = e.offset.or_else(|| parse_position(query, &m));
        QueryError::Parse {
            message: e.message,
            position: offset.map(|o| {
                let (line, column) = super::parse_error::line_column(query, o);
                TextPosition { line, column }
            }),
        }
    })
}

/// The deepest query whose parse error is reworded as Prometheus words it.
const REWORDED_DEPTH: usize = 64;

/// promql-parser turns a number in a duration's place (`x[90]`, `x[1h:30]`,
/// `offset 60`) into a `Duration` with `Duration::from_secs_f64`, which panics on
/// NaN, infinities and values past 2^64 seconds; such a number is refused here first,
/// as a parse error naming it.
fn check_number_durations(query: &str) -> Result<(), String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Before {
        Other,
        Duration,
        Offset,
    }
    let mut before = Before::Other;
    let mut strings = StringLiterals::default();
    let mut square_depth = 0usize;
    let mut in_comment = false;
    let mut chars = query.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if in_comment {
            in_comment = c != '\n';
            continue;
        }
        if strings.inside(c) {
            continue;
        }
        if c.is_whitespace() {
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            let numeric = c.is_ascii_digit() || c == '.';
            let mut end = i + c.len_utf8();
            let mut last = c;
            while let Some(&(j, d)) = chars.peek() {
                let exponent_sign = numeric && (d == '+' || d == '-') && matches!(last, 'e' | 'E');
                if !(d.is_ascii_alphanumeric() || d == '_' || d == '.' || exponent_sign) {
                    break;
                }
                last = d;
                end = j + d.len_utf8();
                chars.next();
            }
            let word = &query[i..end];
            if before != Before::Other {
                let value = word.parse::<f64>().ok().or_else(|| {
                    let hex = word
                        .strip_prefix("0x")
                        .or_else(|| word.strip_prefix("0X"))?;
                    u64::from_str_radix(hex, 16).ok().map(|v| v as f64)
                });
                if let Some(v) = value {
                    if !(0.0..18_446_744_073_709_551_616.0).contains(&v) {
                        return Err(format!(
                            "invalid duration {word:?}: a duration given as a number of seconds must be finite, not negative and below 2^64"
                        ));
                    }
                }
            }
            before = if word.eq_ignore_ascii_case("offset") {
                Before::Offset
            } else {
                Before::Other
            };
            continue;
        }
        before = match c {
            '[' => {
                square_depth += 1;
                Before::Duration
            }
            ']' => {
                square_depth = square_depth.saturating_sub(1);
                Before::Other
            }
            ':' if square_depth > 0 => Before::Duration,
            '+' | '-' if before == Before::Offset => Before::Offset,
            '"' | '\'' | '`' => {
                strings.open(c);
                Before::Other
            }
            '#' => {
                in_comment = true;
                Before::Other
            }
            _ => Before::Other,
        };
    }
    Ok(())
}

/// Where a scan of query text stands in its string literals, so that brackets
/// and words inside them are not counted.
#[derive(Default)]
struct StringLiterals {
    /// The quote of the literal being scanned, if one is open.
    open: Option<char>,
    /// The previous character was a backslash escape (not in raw `` ` `` strings).
    escaped: bool,
}

impl StringLiterals {
    /// Starts a literal at its opening quote.
    fn open(&mut self, quote: char) {
        self.open = Some(quote);
    }

    /// Whether `c` lies inside an open literal (its closing quote included).
    fn inside(&mut self, c: char) -> bool {
        let Some(quote) = self.open else {
            return false;
        };
        if self.escaped {
            self.escaped = false;
        } else if c == '\\' && quote != '`' {
            self.escaped = true;
        } else if c == quote {
            self.open = None;
        }
        true
    }
}

/// The byte offset of the first unmatched closing bracket, or of the first opening
/// bracket left unclosed.
fn unbalanced_bracket(query: &str) -> Option<usize> {
    let mut stack: Vec<(usize, char)> = Vec::new();
    let mut strings = StringLiterals::default();
    for (i, c) in query.char_indices() {
        if strings.inside(c) {
            continue;
        }
        match c {
            '"' | '\'' | '`' => strings.open(c),
            '(' | '[' | '{' => stack.push((i, c)),
            ')' | ']' | '}' => {
                let want = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                match stack.pop() {
                    Some((_, o)) if o == want => {}
                    _ => return Some(i),
                }
            }
            '#' => break,
            _ => {}
        }
    }
    stack.first().map(|&(i, _)| i)
}

/// promql-parser's errors carry no position; recover one where the message lets us:
/// the named function/aggregation, an unclosed parenthesis, or a quoted token.
fn parse_position(query: &str, msg: &str) -> Option<usize> {
    if msg.contains("unclosed left parenthesis") {
        let mut stack = Vec::new();
        let mut in_str: Option<char> = None;
        let mut prev = ' ';
        for (i, c) in query.char_indices() {
            if let Some(q) = in_str {
                if c == q && prev != '\\' {
                    in_str = None;
                }
                prev = c;
                continue;
            }
            match c {
                '"' | '\'' | '`' => in_str = Some(c),
                '(' => stack.push(i),
                ')' => {
                    stack.pop();
                }
                _ => {}
            }
            prev = c;
        }
        return stack.first().copied();
    }
    // Any unbalanced bracket is the likeliest culprit of a generic grammar error.
    if let Some(p) = unbalanced_bracket(query) {
        return Some(p);
    }
    // A quoted name in the message ('rate', "foo"): its first occurrence.
    for q in ['\'', '"'] {
        if let Some(i) = msg.find(q) {
            if let Some(j) = msg[i + 1..].find(q) {
                let name = &msg[i + 1..i + 1 + j];
                if !name.is_empty() {
                    if let Some(p) = query.find(name) {
                        return Some(p);
                    }
                }
            }
        }
    }
    None
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Engine {
        Engine { opts }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    pub fn instant_query(
        &self,
        storage: &dyn Storage,
        expr: &str,
        time_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        let e = parse_expr(expr)?;
        self.exec_instant(storage, &e, Some(expr), time_ms)
    }

    pub fn range_query(
        &self,
        storage: &dyn Storage,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        let e = parse_expr(expr)?;
        self.exec_range(storage, &e, Some(expr), start_ms, end_ms, step_ms)
    }

    /// Evaluates an already parsed query (annotation positions refer to its
    /// re-rendered text).
    pub fn instant_query_expr(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        time_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        self.exec_instant(storage, expr, None, time_ms)
    }

    pub fn range_query_expr(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        self.exec_range(storage, expr, None, start_ms, end_ms, step_ms)
    }

    fn exec_instant(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        text: Option<&str>,
        time_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        self.bounded(expr, || {
            let text = text.map_or_else(|| expr.to_string(), str::to_string);
            self.exec_instant_inner(storage, expr, &text, time_ms)
        })
    }

    /// Runs an evaluation of `expr` under the panic guard, refusing it when it
    /// is deeper than [`MAX_QUERY_DEPTH`] and moving it to a thread with a large
    /// stack when it is deeper than the caller's thread is sure to hold.
    fn bounded(
        &self,
        expr: &Expr,
        run: impl FnOnce() -> Result<QueryResult, QueryError> + Send,
    ) -> Result<QueryResult, QueryError> {
        if check_depth(expr)? <= INLINE_DEPTH {
            guard(run)
        } else {
            on_deep_stack(|| guard(run))?
        }
    }

    fn exec_instant_inner(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        text: &str,
        time_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        check_supported(expr)?;
        check_time_bounds(expr, time_ms, time_ms)?;
        let mut ev = Evaluator::new(storage, &self.opts, time_ms, time_ms, 1);
        ev.query = text.to_string();
        let val = ev.eval(expr)?;
        let val = ev.finish(val)?;
        let value = match val {
            EvalValue::Vector(v) => Value::Vector(
                v.into_iter()
                    .filter_map(|p| {
                        p.vs.first().map(|&v| Sample {
                            labels: p.labels,
                            t: time_ms,
                            v,
                        })
                    })
                    .collect(),
            ),
            EvalValue::Scalar(s) => Value::Scalar {
                t: time_ms,
                v: s.first().copied().unwrap_or(f64::NAN),
            },
            EvalValue::Str(s) => Value::String { t: time_ms, v: s },
            EvalValue::Range(r) => Value::Matrix(sorted_matrix(r)),
        };
        self.check_result_series(&value)?;
        Ok(QueryResult {
            value,
            warnings: dedup(ev.warnings),
            infos: dedup(ev.infos),
        })
    }

    fn exec_range(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        text: Option<&str>,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        self.bounded(expr, || {
            let text = text.map_or_else(|| expr.to_string(), str::to_string);
            self.exec_range_inner(storage, expr, &text, start_ms, end_ms, step_ms)
        })
    }

    fn exec_range_inner(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        text: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        check_supported(expr)?;
        if step_ms <= 0 {
            return exec_err("zero or negative query resolution step widths are not accepted. Try a positive integer");
        }
        if end_ms < start_ms {
            return exec_err("end timestamp must not be before start time");
        }
        // Bounded times keep the step grid's arithmetic (`end - start`, `start + i * step`) in range.
        check_time_bounds(expr, start_ms, end_ms)?;
        match expr.value_type() {
            parser::value::ValueType::Vector | parser::value::ValueType::Scalar => {}
            parser::value::ValueType::Matrix => {
                return Err(QueryError::InvalidRangeQueryType {
                    found: "range vector",
                })
            }
            _ => return Err(QueryError::InvalidRangeQueryType { found: "string" }),
        }
        let mut ev = Evaluator::new(storage, &self.opts, start_ms, end_ms, step_ms);
        ev.query = text.to_string();
        let val = ev.eval(expr)?;
        let val = ev.finish(val)?;
        let series = match val {
            EvalValue::Vector(v) => v,
            EvalValue::Scalar(s) => {
                ev.reserve_memory(s.len())?;
                let mut p = EvalSeries::new(Labels::empty(), false);
                p.ts.reserve_exact(s.len());
                p.vs.reserve_exact(s.len());
                for (i, v) in s.into_iter().enumerate() {
                    p.ts.push(start_ms + i as i64 * step_ms);
                    p.vs.push(v);
                }
                vec![p]
            }
            other => {
                return Err(QueryError::InvalidRangeQueryType {
                    found: other.type_name(),
                })
            }
        };
        let value = Value::Matrix(sorted_matrix(series));
        self.check_result_series(&value)?;
        Ok(QueryResult {
            value,
            warnings: dedup(ev.warnings),
            infos: dedup(ev.infos),
        })
    }

    fn check_result_series(&self, v: &Value) -> Result<(), QueryError> {
        let limit = self.opts.max_result_series;
        if limit == 0 {
            return Ok(());
        }
        let n = match v {
            Value::Vector(v) => v.len(),
            Value::Matrix(m) => m.len(),
            _ => 0,
        };
        if n > limit {
            return Err(QueryError::TooManySeries { limit });
        }
        Ok(())
    }
}

/// Turns a panic during evaluation into an error: a bad query must never take the
/// process down.
fn guard(f: impl FnOnce() -> Result<QueryResult, QueryError>) -> Result<QueryResult, QueryError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(QueryError::Execution(format!(
            "internal error while evaluating the query: {}",
            panic_message(p.as_ref())
        )))
    })
}

/// The text a panic was raised with, when it is text.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.into_iter().filter(|s| seen.insert(s.clone())).collect()
}

fn sorted_matrix(v: Vec<EvalSeries>) -> Vec<Series> {
    let mut out: Vec<Series> = v
        .into_iter()
        .filter(|p| !p.ts.is_empty())
        .map(|p| Series {
            labels: p.labels,
            timestamps: p.ts,
            values: p.vs,
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

/// The furthest from the epoch a query's times (`start`, `end`, `@`) may lie, in
/// ms: about 73 million years, where Prometheus's API stops at 292 million.
/// With every duration under [`DURATION_BOUND_MS`] and at most
/// [`MAX_QUERY_DEPTH`] of them stacked, no sum or difference of times the
/// evaluator forms can overflow an i64.
const TIME_BOUND_MS: i64 = 1 << 61;
/// The longest offset, range or subquery step, in ms (about 35,000 years).
const DURATION_BOUND_MS: u128 = 1 << 50;

/// Refuses times and durations whose arithmetic could overflow during evaluation.
fn check_time_bounds(e: &Expr, start_ms: i64, end_ms: i64) -> Result<(), QueryError> {
    use promql_parser::parser::{AtModifier, Offset};
    for t in [start_ms, end_ms] {
        if !(-TIME_BOUND_MS..=TIME_BOUND_MS).contains(&t) {
            return exec_err(format!(
                "query time {t} ms is out of range: times must lie within {TIME_BOUND_MS} ms of 1970"
            ));
        }
    }
    let duration = |d: &std::time::Duration, what: &str| -> Result<(), QueryError> {
        if d.as_millis() > DURATION_BOUND_MS {
            return exec_err(format!(
                "{what} of {}s is out of range: at most {} ms",
                d.as_secs(),
                DURATION_BOUND_MS
            ));
        }
        Ok(())
    };
    let modifiers = |offset: &Option<Offset>, at: &Option<AtModifier>| -> Result<(), QueryError> {
        if let Some(Offset::Pos(d) | Offset::Neg(d)) = offset {
            duration(d, "offset")?;
        }
        if let Some(AtModifier::At(t)) = at {
            let ms = match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => d.as_millis(),
                Err(e) => e.duration().as_millis(),
            };
            if ms > TIME_BOUND_MS as u128 {
                return exec_err(format!(
                    "timestamp out of bounds for @ modifier: times must lie within {TIME_BOUND_MS} ms of 1970"
                ));
            }
        }
        Ok(())
    };
    walk(e, |e, _| match e {
        Expr::VectorSelector(vs) => modifiers(&vs.offset, &vs.at),
        Expr::MatrixSelector(ms) => {
            modifiers(&ms.vs.offset, &ms.vs.at)?;
            duration(&ms.range, "range")
        }
        Expr::Subquery(sq) => {
            modifiers(&sq.offset, &sq.at)?;
            duration(&sq.range, "subquery range")?;
            match &sq.step {
                Some(step) => duration(step, "subquery step"),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    })
}

/// Rejects syntax this engine does not evaluate before running anything.
fn check_supported(e: &Expr) -> Result<(), QueryError> {
    walk(e, |e, _| match e {
        Expr::Extension(_) => Err(QueryError::Unsupported(
            "extension expressions are not supported".into(),
        )),
        _ => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MemStorage;

    fn store() -> MemStorage {
        let mut s = MemStorage::new();
        for (job, step) in [("a", 1.0), ("b", 2.0)] {
            let samples: Vec<(i64, f64)> =
                (0..=20).map(|i| (i * 15_000, i as f64 * step)).collect();
            s.add_samples(
                Labels::from_pairs([("__name__", "c_total"), ("job", job)]),
                &samples,
            );
        }
        s
    }

    #[test]
    fn extract_selectors_finds_every_selector_for_exemplars() {
        let sets = |q: &str| -> Vec<String> {
            extract_selectors(&parse_expr(q).unwrap())
                .unwrap()
                .iter()
                .map(|set| {
                    set.iter()
                        .map(|m| m.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .collect()
        };
        assert_eq!(sets("up"), ["__name__=\"up\""]);
        assert_eq!(
            sets("histogram_quantile(0.9, sum by (le) (rate(x_bucket{a=~\"b.*\"}[1m])))"),
            ["__name__=\"x_bucket\",a=~\"b.*\""]
        );
        assert_eq!(
            sets("topk(1, a) / on() group_left max_over_time((-b)[5m:1m] offset 1m) or {c=\"d\"}"),
            ["__name__=\"a\"", "__name__=\"b\"", "c=\"d\""]
        );
        assert!(sets("1 + scalar(vector(2))").is_empty());
        assert!(sets("\"text\"").is_empty());
    }

    #[test]
    fn kept_parses_are_the_parser_s_and_errors_are_not_kept() {
        for q in [
            "sum by (job) (rate(c_total{job!=\"a\"}[1m] offset 5m))",
            "histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))",
        ] {
            let fresh = parse_uncached(q).unwrap();
            assert_eq!(parse_expr(q).unwrap(), fresh);
            assert_eq!(parse_expr(q).unwrap(), fresh, "from the kept parses");
        }
        for _ in 0..2 {
            let err = parse_expr("sum(rate(x[5m])").unwrap_err().to_string();
            assert!(err.contains("unclosed"), "{err}");
        }
        // More distinct queries than are kept: each still parses to itself.
        for i in 0..1100 {
            let q = format!("up{{job=\"j{i}\"}}");
            assert_eq!(parse_expr(&q).unwrap(), parse_uncached(&q).unwrap());
        }
    }

    #[test]
    fn instant_rate_and_sum() {
        let e = Engine::new(EngineOptions::default());
        let r = e
            .instant_query(&store(), "sum by (job) (rate(c_total[1m]))", 300_000)
            .unwrap();
        let Value::Vector(v) = r.value else { panic!() };
        assert_eq!(v.len(), 2);
        let a = v.iter().find(|s| s.labels.get("job") == Some("a")).unwrap();
        assert!((a.v - 1.0 / 15.0).abs() < 1e-12);
    }

    #[test]
    fn range_query_steps_and_lookback() {
        let e = Engine::new(EngineOptions::default());
        let r = e
            .range_query(&store(), "c_total{job=\"a\"}", 0, 600_000, 60_000)
            .unwrap();
        let Value::Matrix(m) = r.value else { panic!() };
        assert_eq!(m.len(), 1);
        // Samples end at 300s; the 5m lookback keeps the last one until 599.999s.
        assert_eq!(m[0].timestamps.len(), 10);
        assert_eq!(*m[0].values.last().unwrap(), 20.0);
    }

    /// Enough series and samples that selectors and range functions run on every
    /// core: each series' result must equal the one it gets when queried alone
    /// (which stays on one thread), and the sample limit must still stop it.
    #[test]
    fn work_spread_over_cores_gives_single_series_answers() {
        let mut st = MemStorage::new();
        for i in 0..1500 {
            let mut v = i as f64 * 10.0;
            let samples: Vec<(i64, f64)> = (0..240)
                .map(|k| {
                    // A reset in every 7th series, so both rate paths run.
                    v = if i % 7 == 0 && k == 120 {
                        3.0
                    } else {
                        v + (i % 13) as f64
                    };
                    (k * 15_000 + 1_000, v)
                })
                .collect();
            st.add_samples(
                Labels::from_pairs([
                    ("__name__", "c_total"),
                    ("i", &i.to_string()),
                    ("g", &(i % 5).to_string()),
                ]),
                &samples,
            );
        }
        let e = Engine::new(EngineOptions::default());
        let (start, end) = (300_000, 3_600_000);
        for q in [
            "rate(c_total[5m])",
            "increase(c_total[2m])",
            "c_total",
            "max_over_time(c_total[1m])",
        ] {
            let Value::Matrix(all) = e.range_query(&st, q, start, end, 15_000).unwrap().value
            else {
                panic!("{q}: not a matrix")
            };
            assert_eq!(all.len(), 1500, "{q}");
            for i in [0, 1, 7, 700, 1499] {
                let one = q.replace("c_total", &format!("c_total{{i=\"{i}\"}}"));
                let Value::Matrix(m) = e.range_query(&st, &one, start, end, 15_000).unwrap().value
                else {
                    panic!("{one}: not a matrix")
                };
                let got = all
                    .iter()
                    .find(|s| s.labels.get("i") == Some(&i.to_string()));
                assert_eq!(Some(&m[0]), got, "{q} for series {i}");
            }
        }
        // Aggregations split by group across cores add each cell's series in the
        // same order as the one-step-at-a-time path (forced here) does.
        for q in [
            "sum by (g) (rate(c_total[5m]))",
            "avg by (g) (c_total)",
            "count by (g) (c_total)",
            "stddev by (g) (c_total)",
        ] {
            let spread = e.range_query(&st, q, start, end, 15_000).unwrap().value;
            crate::promql::aggregate::FORCE_STEP_MAJOR.with(|c| c.set(true));
            let one = e.range_query(&st, q, start, end, 15_000).unwrap().value;
            crate::promql::aggregate::FORCE_STEP_MAJOR.with(|c| c.set(false));
            let (Value::Matrix(a), Value::Matrix(b)) = (spread, one) else {
                panic!("{q}: not matrices")
            };
            assert_eq!(a.len(), 5, "{q}");
            assert_eq!(a, b, "{q}");
        }
        let limited = Engine::new(EngineOptions {
            max_samples: 100_000,
            ..EngineOptions::default()
        });
        for q in ["rate(c_total[5m])", "c_total"] {
            assert!(
                matches!(
                    limited.range_query(&st, q, start, end, 15_000),
                    Err(QueryError::TooManySamples { limit: 100_000 })
                ),
                "{q}"
            );
        }
    }

    #[test]
    fn errors_are_classified() {
        let e = Engine::new(EngineOptions {
            max_samples: 5,
            ..EngineOptions::default()
        });
        assert!(matches!(
            e.instant_query(&store(), "sum(", 0),
            Err(QueryError::Parse { .. })
        ));
        assert!(matches!(
            e.instant_query(&store(), "rate(x[5m]))", 0),
            Err(QueryError::Parse {
                position: Some(TextPosition {
                    line: 1,
                    column: 13
                }),
                ..
            })
        ));
        assert!(matches!(
            e.range_query(&store(), "c_total", 0, 600_000, 15_000),
            Err(QueryError::TooManySamples { limit: 5 })
        ));
        let e = Engine::new(EngineOptions::default());
        let err = e
            .instant_query(&store(), "c_total + on() c_total", 60_000)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("many-to-many matching not allowed"),
            "{err}"
        );
        assert!(matches!(
            e.range_query(&store(), "c_total[5m]", 0, 60_000, 15_000),
            Err(QueryError::InvalidRangeQueryType {
                found: "range vector"
            })
        ));
    }
}

#[cfg(test)]
mod operator_tests {
    use super::*;
    use crate::model::MemStorage;

    fn store() -> MemStorage {
        let mut s = MemStorage::new();
        let add = |s: &mut MemStorage, pairs: &[(&str, &str)], v: f64| {
            s.add_samples(
                Labels::from_pairs(pairs.iter().copied()),
                &[(0, v), (60_000, v)],
            );
        };
        add(
            &mut s,
            &[("__name__", "req"), ("job", "a"), ("inst", "1")],
            10.0,
        );
        add(
            &mut s,
            &[("__name__", "req"), ("job", "a"), ("inst", "2")],
            30.0,
        );
        add(
            &mut s,
            &[("__name__", "req"), ("job", "b"), ("inst", "3")],
            20.0,
        );
        add(
            &mut s,
            &[("__name__", "info"), ("job", "a"), ("team", "x")],
            1.0,
        );
        s
    }

    fn vector(q: &str) -> Vec<Sample> {
        let e = Engine::new(EngineOptions::default());
        match e.instant_query(&store(), q, 60_000).unwrap().value {
            Value::Vector(v) => v,
            other => panic!("{other:?}"),
        }
    }

    /// Series for aggregations over counters, histograms and gauges, 10 minutes at
    /// 15 s, a counter reset in each counter.
    fn grouping_store() -> MemStorage {
        let mut s = MemStorage::new();
        let mut add = |pairs: &[(&str, &str)], f: &dyn Fn(i64) -> f64| {
            let samples: Vec<(i64, f64)> = (0..40).map(|k| (k * 15_000 + 1_000, f(k))).collect();
            s.add_samples(Labels::from_pairs(pairs.iter().copied()), &samples);
        };
        for (inst, scale) in [("1", 1.0), ("2", 3.0)] {
            for (le, share) in [("0.1", 0.25), ("1", 0.75), ("+Inf", 1.0)] {
                add(
                    &[("__name__", "h_bucket"), ("inst", inst), ("le", le)],
                    &|k| ((k % 25) as f64) * scale * share * 7.0,
                );
            }
            // Same labels but the name: a name-dropping function of both collides.
            for name in ["c_total", "d_total"] {
                add(&[("__name__", name), ("inst", inst), ("job", "j")], &|k| {
                    ((k % 30) as f64) * scale + 0.1
                });
            }
            add(
                &[
                    ("__name__", "g"),
                    ("inst", inst),
                    ("job", "j"),
                    ("mode", "m"),
                ],
                &|k| (k as f64 * 0.37 * scale).sin() * 1e3,
            );
        }
        s
    }

    #[test]
    fn aggregations_of_selectors_keep_only_grouping_labels_with_the_same_results() {
        // `or` with a metric that does not exist changes nothing but takes the
        // argument off the grouped selection path.
        let general = |q: &str, arg: &str| q.replace("ARG", &format!("({arg} or nothing)"));
        let engine = Engine::new(EngineOptions::default());
        let store = grouping_store();
        let cases = [
            ("sum by (le) (ARG)", "rate(h_bucket[1m])"),
            (
                "histogram_quantile(0.9, sum by (le) (ARG))",
                "rate(h_bucket[1m])",
            ),
            ("count(ARG)", "{__name__=~\"h_bucket|g\"}"),
            ("count by (__name__) (ARG)", "{__name__=~\"h_bucket|g\"}"),
            ("sum by (__name__) (ARG)", "rate(c_total[1m])"),
            (
                "sum by (__name__, inst) (ARG)",
                "last_over_time(c_total[1m])",
            ),
            ("max without (inst) (ARG)", "g"),
            ("min by (job) (ARG)", "g{inst=\"1\" or inst=\"2\"}"),
            ("avg by (mode) (ARG)", "irate(c_total[1m])"),
            ("stddev(ARG)", "increase(c_total{job=\"j\"}[2m])"),
            ("stdvar by (inst) (ARG)", "deriv(g[2m])"),
            ("group by (inst) (ARG)", "changes(g[5m])"),
            ("sum(ARG)", "rate({__name__=~\"c_total|d_total\"}[1m])"),
            (
                "sum by (job) (ARG)",
                "rate({__name__=\"c_total\" or __name__=\"d_total\"}[1m])",
            ),
        ];
        for (q, arg) in cases {
            let direct = q.replace("ARG", arg);
            let a = engine.range_query(&store, &direct, 60_000, 600_000, 15_000);
            let b = engine.range_query(&store, &general(q, arg), 60_000, 600_000, 15_000);
            match (a, b) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.value, b.value, "{direct}");
                    assert_eq!(a.infos, b.infos, "{direct}");
                    assert!(
                        !matches!(&a.value, Value::Matrix(m) if m.is_empty()),
                        "{direct}"
                    );
                }
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{direct}"),
                (a, b) => panic!("{direct}: {a:?} against {b:?}"),
            }
        }
    }

    #[test]
    fn group_left_copies_labels_from_one_side() {
        let v = vector("req * on(job) group_left(team) info");
        assert_eq!(v.len(), 2);
        assert!(v.iter().all(|s| s.labels.get("team") == Some("x")));
        assert!(v.iter().all(|s| s.labels.metric_name().is_none()));
    }

    #[test]
    fn topk_is_ordered_and_keeps_names() {
        let v = vector("topk(2, req)");
        let vals: Vec<f64> = v.iter().map(|s| s.v).collect();
        assert_eq!(vals, vec![30.0, 20.0]);
        assert_eq!(v[0].labels.metric_name(), Some("req"));
    }

    #[test]
    fn count_values_and_absent() {
        let v = vector("count_values(\"val\", req)");
        assert_eq!(v.len(), 3);
        let v = vector("absent(nope{job=\"z\"})");
        assert_eq!(v[0].labels, Labels::from_pairs([("job", "z")]));
    }

    #[test]
    fn comparison_filters_and_bool_keeps() {
        assert_eq!(vector("req > 15").len(), 2);
        let v = vector("req > bool 15");
        assert_eq!(v.len(), 3);
        assert!(v.iter().all(|s| s.labels.metric_name().is_none()));
    }

    #[test]
    fn huge_step_grids_are_refused() {
        let e = Engine::new(EngineOptions {
            max_samples: 1000,
            ..EngineOptions::default()
        });
        assert!(matches!(
            e.instant_query(&store(), "max_over_time(req[1d:1s])", 60_000),
            Err(QueryError::TooManySamples { .. })
        ));
    }
}

#[cfg(test)]
mod robustness_tests {
    use super::*;
    use crate::model::MemStorage;

    /// An answer rendered as [`render`] does, or an error saying this.
    type Expected = Result<&'static str, &'static str>;

    #[test]
    fn odd_queries_give_results_or_clean_errors() {
        let mut s = MemStorage::new();
        s.add_samples(
            Labels::from_pairs([("__name__", "x"), ("a", "1")]),
            &[
                (0, 1.0),
                (10_000, f64::NAN),
                (20_000, crate::model::stale_nan()),
                (30_000, 4.0),
            ],
        );
        s.add_samples(Labels::from_pairs([("__name__", "y")]), &[(0, -1.0)]);
        let e = Engine::new(EngineOptions {
            max_samples: 100_000,
            ..EngineOptions::default()
        });
        // Each query's answer at 30 s and over 0–60 s at a 7 s step, as Prometheus 3
        // gives it on these samples (x: 1, NaN, a staleness marker, 4; y: -1). An
        // error is matched by what it says is wrong, not its exact wording.
        #[rustfmt::skip]
        let cases: &[(&str, Expected, Expected)] = &[
            ("topk(1e30, x)", Err("Scalar value 1e+30 overflows int64"), Err("Scalar value 1e+30 overflows int64")),
            ("bottomk(-1, x)", Ok(""), Ok("")),
            ("quantile(2, x)", Ok("{} +Inf@30000"), Ok("{} [+Inf@0 +Inf@7000 +Inf@14000 +Inf@35000 +Inf@42000 +Inf@49000 +Inf@56000]")),
            ("x offset -1h", Ok(""), Ok("")),
            ("x @ -100", Ok(""), Ok("")),
            ("rate(x[1ms])", Ok(""), Ok("")),
            // Stricter than Prometheus, which holds the 20,001 points: a subquery
            // grid of more steps than the sample limit is refused before evaluation.
            ("x[5m:1ms]", Err("query processing would load too many samples into memory in query execution (limit: max_samples=100000)"), Err("invalid expression type \"range vector\" for range query, must be Scalar or instant Vector")),
            ("max_over_time(x[1h:7s] offset 3s)", Ok("{a=\"1\"} 1@30000"), Ok("{a=\"1\"} [1@7000 1@14000 1@21000 1@28000 1@35000 4@42000 4@49000 4@56000]")),
            ("histogram_quantile(0.5, x)", Ok(""), Ok("")),
            ("label_replace(x, \"b\", \"$9\", \"a\", \"(.*)\")", Ok("x{a=\"1\"} 4@30000"), Ok("x{a=\"1\"} [1@0 1@7000 NaN@14000 4@35000 4@42000 4@49000 4@56000]")),
            ("label_join(x, \"c\", \"\", \"a\", \"missing\")", Ok("x{a=\"1\", c=\"1\"} 4@30000"), Ok("x{a=\"1\", c=\"1\"} [1@0 1@7000 NaN@14000 4@35000 4@42000 4@49000 4@56000]")),
            ("count_values(\"a\", x)", Ok("{a=\"4\"} 1@30000"), Ok("{a=\"1\"} [1@0 1@7000]; {a=\"4\"} [1@35000 1@42000 1@49000 1@56000]; {a=\"NaN\"} [1@14000]")),
            ("x / on() y", Ok("{} -4@30000"), Ok("{} [-1@0 -1@7000 NaN@14000 -4@35000 -4@42000 -4@49000 -4@56000]")),
            ("x and on(a) y", Ok(""), Ok("")),
            ("x unless y", Ok("x{a=\"1\"} 4@30000"), Ok("x{a=\"1\"} [1@0 1@7000 NaN@14000 4@35000 4@42000 4@49000 4@56000]")),
            ("-x", Ok("{a=\"1\"} -4@30000"), Ok("{a=\"1\"} [-1@0 -1@7000 NaN@14000 -4@35000 -4@42000 -4@49000 -4@56000]")),
            ("scalar(x) * vector(2)", Ok("{} 8@30000"), Ok("{} [2@0 2@7000 NaN@14000 NaN@21000 NaN@28000 8@35000 8@42000 8@49000 8@56000]")),
            ("absent_over_time(nope[1m])", Ok("{} 1@30000"), Ok("{} [1@0 1@7000 1@14000 1@21000 1@28000 1@35000 1@42000 1@49000 1@56000]")),
            ("predict_linear(x[1m], -3600)", Ok("{a=\"1\"} NaN@30000"), Ok("{a=\"1\"} [NaN@14000 NaN@21000 NaN@28000 NaN@35000 NaN@42000 NaN@49000 NaN@56000]")),
            ("deriv(y[1m])", Ok(""), Ok("")),
            ("sort_desc(x or y)", Ok("x{a=\"1\"} 4@30000; y -1@30000"), Ok("x{a=\"1\"} [1@0 1@7000 NaN@14000 4@35000 4@42000 4@49000 4@56000]; y [-1@0 -1@7000 -1@14000 -1@21000 -1@28000 -1@35000 -1@42000 -1@49000 -1@56000]")),
            ("round(x, 0)", Ok("{a=\"1\"} NaN@30000"), Ok("{a=\"1\"} [NaN@0 NaN@7000 NaN@14000 NaN@35000 NaN@42000 NaN@49000 NaN@56000]")),
            ("clamp(x, 5, 1)", Ok(""), Ok("")),
            ("day_of_week(vector(-1e300))", Ok("{} 0@30000"), Ok("{} [0@0 0@7000 0@14000 0@21000 0@28000 0@35000 0@42000 0@49000 0@56000]")),
            ("timestamp(x @ end())", Ok("{a=\"1\"} 30@30000"), Ok("{a=\"1\"} [30@0 30@7000 30@14000 30@21000 30@28000 30@35000 30@42000 30@49000 30@56000]")),
            ("time() - 1e308", Ok("scalar -1e+308@30000"), Ok("{} [-1e+308@0 -1e+308@7000 -1e+308@14000 -1e+308@21000 -1e+308@28000 -1e+308@35000 -1e+308@42000 -1e+308@49000 -1e+308@56000]")),
            ("quantile_over_time(NaN, x[1m])", Ok("{a=\"1\"} NaN@30000"), Ok("{a=\"1\"} [NaN@0 NaN@7000 NaN@14000 NaN@21000 NaN@28000 NaN@35000 NaN@42000 NaN@49000 NaN@56000]")),
            ("avg(x) by (nope)", Ok("{} 4@30000"), Ok("{} [1@0 1@7000 NaN@14000 4@35000 4@42000 4@49000 4@56000]")),
            ("stddev without (a) (x)", Ok("{} 0@30000"), Ok("{} [0@0 0@7000 NaN@14000 0@35000 0@42000 0@49000 0@56000]")),
            ("x{a=~\"(\"}", Err("parse error"), Err("parse error")),
            ("sum(", Err("parse error"), Err("parse error")),
            ("1 +", Err("parse error"), Err("parse error")),
            ("{__name__=~\".*\"}", Err("parse error: vector selector must contain at least one non-empty matcher"), Err("parse error: vector selector must contain at least one non-empty matcher")),
            ("x[1m]", Ok("x{a=\"1\"} [1@0 NaN@10000 4@30000]"), Err("invalid expression type \"range vector\" for range query, must be Scalar or instant Vector")),
            ("info(x)", Ok("x{a=\"1\"} 4@30000"), Ok("x{a=\"1\"} [1@0 1@7000 NaN@14000 4@35000 4@42000 4@49000 4@56000]")),
            ("limitk(1, x)", Ok("x{a=\"1\"} 4@30000"), Ok("x{a=\"1\"} [1@0 1@7000 NaN@14000 4@35000 4@42000 4@49000 4@56000]")),
            // A NaN in the window makes the median undefined: Prometheus returns NaN.
            ("mad_over_time(x[1m])", Ok("{a=\"1\"} NaN@30000"), Ok("{a=\"1\"} [0@0 0@7000 NaN@14000 NaN@21000 NaN@28000 NaN@35000 NaN@42000 NaN@49000 NaN@56000]")),
            ("double_exponential_smoothing(x[1m], 0.5, 0.5)", Ok("{a=\"1\"} NaN@30000"), Ok("{a=\"1\"} [NaN@14000 NaN@21000 NaN@28000 NaN@35000 NaN@42000 NaN@49000 NaN@56000]")),
            ("sort_by_label(x, \"a\")", Ok("x{a=\"1\"} 4@30000"), Ok("x{a=\"1\"} [1@0 1@7000 NaN@14000 4@35000 4@42000 4@49000 4@56000]")),
            ("min_of(1, 2)", Ok("scalar 1@30000"), Ok("{} [1@0 1@7000 1@14000 1@21000 1@28000 1@35000 1@42000 1@49000 1@56000]")),
            // Native histograms are not supported (known_differences.txt).
            ("histogram_count(x)", Err("native histograms are not supported (histogram_count() reads native histograms)"), Err("native histograms are not supported (histogram_count() reads native histograms)")),
            ("x offset 292y", Ok(""), Ok("")),
            ("x offset -292y", Ok(""), Ok("")),
            ("x @ 9223372036854775", Err("timestamp out of bounds for @ modifier"), Err("timestamp out of bounds for @ modifier")),
            ("x @ -9223372036854775", Err("timestamp out of bounds for @ modifier"), Err("timestamp out of bounds for @ modifier")),
            ("x @ 1e300", Err("timestamp out of bounds for @ modifier"), Err("timestamp out of bounds for @ modifier")),
            // 3 × (30 s + 7.5 s extrapolated) / 30 s / 292y, and so on per step.
            ("rate(x[292y])", Ok("{a=\"1\"} 4.0723191759971643e-10@30000"), Ok("{a=\"1\"} [NaN@14000 NaN@21000 NaN@28000 4.61529506613012e-10@35000 5.375461312316256e-10@42000 4.886783011196597e-10@49000 4.886783011196597e-10@56000]")),
            ("max_over_time(x[292y:1ms])", Err("query processing would load too many samples into memory in query execution (limit: max_samples=100000)"), Err("query processing would load too many samples into memory in query execution (limit: max_samples=100000)")),
            ("max_over_time(x[1m:292y])", Ok("{a=\"1\"} 1@30000"), Ok("{a=\"1\"} [1@0 1@7000 1@14000 1@21000 1@28000 1@35000 1@42000 1@49000 1@56000]")),
            ("x offset 100y @ 9e15", Err("timestamp out of bounds for @ modifier"), Err("timestamp out of bounds for @ modifier")),
            ("timestamp(x offset 290y)", Ok(""), Ok("")),
            ("predict_linear(x[1m], 1e300)", Ok("{a=\"1\"} NaN@30000"), Ok("{a=\"1\"} [NaN@14000 NaN@21000 NaN@28000 NaN@35000 NaN@42000 NaN@49000 NaN@56000]")),
            // Renamed double_exponential_smoothing in Prometheus 3.0.
            ("holt_winters(x[1m], 0.5, 0.5)", Err("parse error: unknown function with name \"holt_winters\""), Err("parse error: unknown function with name \"holt_winters\"")),
        ];
        let mut wrong = Vec::new();
        for (q, instant, range) in cases {
            let answers = [
                ("instant", e.instant_query(&s, q, 30_000), instant),
                ("range", e.range_query(&s, q, 0, 60_000, 7_000), range),
            ];
            for (kind, got, want) in answers {
                let got = render(&got);
                let ok = match want {
                    Ok(text) => got == *text,
                    Err(what) => got.starts_with("error: ") && got.contains(what),
                };
                if !ok {
                    wrong.push(format!("{q} ({kind}): got {got:?}, want {want:?}"));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// An answer in one line: each series with its points as value@ms, or the error.
    fn render(r: &Result<QueryResult, QueryError>) -> String {
        let point = |t: i64, v: f64| format!("{}@{t}", crate::model::number::format_go_float_g(v));
        match r {
            Err(e) => format!("error: {e}"),
            Ok(r) => match &r.value {
                Value::Scalar { t, v } => format!("scalar {}", point(*t, *v)),
                Value::String { t, v } => format!("string {v:?}@{t}"),
                Value::Vector(v) => v
                    .iter()
                    .map(|s| format!("{} {}", s.labels, point(s.t, s.v)))
                    .collect::<Vec<_>>()
                    .join("; "),
                Value::Matrix(m) => m
                    .iter()
                    .map(|s| {
                        let pts: Vec<String> = s
                            .timestamps
                            .iter()
                            .zip(&s.values)
                            .map(|(t, v)| point(*t, *v))
                            .collect();
                        if pts.len() <= 10 {
                            format!("{} [{}]", s.labels, pts.join(" "))
                        } else {
                            format!(
                                "{} [{} points {} .. {}]",
                                s.labels,
                                pts.len(),
                                pts[0],
                                pts[pts.len() - 1]
                            )
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            },
        }
    }
}

#[cfg(test)]
mod name_dropping_tests {
    use super::*;
    use crate::model::MemStorage;
    use crate::promql::evaluator::DUPLICATE_LABELSET;

    fn store() -> MemStorage {
        let mut s = MemStorage::new();
        for name in ["a_total", "b_total"] {
            s.add_samples(
                Labels::from_pairs([("__name__", name), ("job", "x")]),
                &[(0, 0.0), (30_000, 30.0), (60_000, 60.0)],
            );
        }
        s
    }

    #[test]
    fn immediate_name_removal_reports_collisions() {
        let e = Engine::new(EngineOptions::default());
        let err = e
            .instant_query(
                &store(),
                "rate({__name__=~\"a_total|b_total\"}[1m])",
                60_000,
            )
            .unwrap_err();
        assert_eq!(err.to_string(), DUPLICATE_LABELSET);
    }

    #[test]
    fn delayed_name_removal_allows_relabelling_first() {
        let e = Engine::new(EngineOptions {
            delayed_name_removal: true,
            ..EngineOptions::default()
        });
        let r = e
            .instant_query(
                &store(),
                "label_replace(rate({__name__=~\"a_total|b_total\"}[1m]), \"n\", \"$1\", \"__name__\", \"(.*)\")",
                60_000,
            )
            .unwrap();
        let Value::Vector(v) = r.value else { panic!() };
        assert_eq!(v.len(), 2);
        assert!(v.iter().all(|s| s.labels.metric_name().is_none()));
    }
}

#[cfg(test)]
mod number_duration_tests {
    use super::*;
    use crate::model::labels::Labels;
    use crate::model::MemStorage;

    /// A number in a duration's place that no Duration holds is a parse error that
    /// names it, not a panic inside the parser; numbers that fit still work.
    #[test]
    fn numbers_no_duration_holds_are_parse_errors_naming_them() {
        let mut storage = MemStorage::new();
        storage.add_samples(
            Labels::from_pairs([("__name__", "x")]),
            &[(0, 1.0), (30_000, 2.0), (60_000, 3.0)],
        );
        let engine = Engine::new(EngineOptions::default());
        for (q, word) in [
            ("x[Inf]", "Inf"),
            ("x[NaN]", "NaN"),
            ("x[1e30]", "1e30"),
            ("max_over_time(x[1:1e300])", "1e300"),
            ("x offset 1e30", "1e30"),
            ("x offset -Inf", "Inf"),
            (
                "rate(http_requests_total[7777777777777777777777777777777777770000000001700000307.7777777790:7m] @  of-es ft1m)",
                "7777777777777777777777777777777777770000000001700000307.7777777790",
            ),
        ] {
            match engine.instant_query(&storage, q, 60_000) {
                Err(QueryError::Parse { message, .. }) => assert_eq!(
                    message,
                    format!("invalid duration {word:?}: a duration given as a number of seconds must be finite, not negative and below 2^64"),
                    "{q}"
                ),
                other => panic!("{q}: {other:?}"),
            }
        }
        for q in [
            "sum_over_time(x[60])",
            "x offset 30",
            "max_over_time(x[60:30])",
            "1e300 * x",
            "x{a=\"[1e30]\"}",
            "x # offset Inf",
            "sum_over_time(x[0x3c])",
        ] {
            assert!(engine.instant_query(&storage, q, 60_000).is_ok(), "{q}");
        }
    }
}

#[cfg(test)]
mod annotation_position_tests {
    use super::*;
    use crate::model::labels::Labels;
    use crate::model::MemStorage;

    /// An annotation's position is found by scanning the query text, which may hold
    /// the function's name again where it is not code: in a comment that ends the
    /// query with an unclosed clause, or in a string.
    #[test]
    fn the_name_again_in_a_comment_or_string_does_not_break_the_position() {
        let mut storage = MemStorage::new();
        storage.add_samples(
            Labels::from_pairs([("__name__", "x"), ("a", "1")]),
            &[(0, 1.0), (30_000, 2.0)],
        );
        let engine = Engine::new(EngineOptions::default());
        let q_warning = |pos: &str| {
            format!("PromQL warning: quantile value should be between 0 and 1, got 2 ({pos})")
        };
        let le_warning = "PromQL warning: bucket label \"le\" is missing or has a malformed \
                          value of \"\" for metric name \"\" (1:23)";
        for (q, want) in [
            ("quantile(2, x) # quantile by (", vec![q_warning("1:10")]),
            (
                "quantile(2, x) # quantile without (a",
                vec![q_warning("1:10")],
            ),
            ("quantile(2, x) # quantile by", vec![q_warning("1:10")]),
            (
                "histogram_quantile(2, x) # histogram_quantile(",
                vec![le_warning.to_string(), q_warning("1:20")],
            ),
            (
                "label_replace(quantile(2, x), \"b\", \"quantile by (\", \"a\", \"\")",
                vec![q_warning("1:24")],
            ),
        ] {
            let r = engine
                .instant_query(&storage, q, 60_000)
                .unwrap_or_else(|e| panic!("{q}: {e}"));
            assert_eq!(r.warnings, want, "{q}");
            assert!(r.infos.is_empty(), "{q}: {:?}", r.infos);
        }
    }
}

#[cfg(test)]
mod depth_tests {
    use super::*;
    use crate::model::MemStorage;

    /// The query shapes that once overflowed the evaluator's stack, each far past
    /// the limit: a long chain of binary operators, nested parentheses, and
    /// nested aggregations, functions and subqueries.
    fn too_deep_queries() -> Vec<String> {
        let mut plus = "1".to_string();
        for _ in 1..1_500 {
            plus.push_str("+1");
        }
        vec![
            plus,
            format!("{}1{}", "(".repeat(2_500), ")".repeat(2_500)),
            format!("{}vector(1){}", "sum(".repeat(1_000), ")".repeat(1_000)),
            format!("{}vector(1){}", "abs(".repeat(1_000), ")".repeat(1_000)),
            format!(
                "{}x{}",
                "max_over_time((".repeat(300),
                ")[1m:])".repeat(300)
            ),
        ]
    }

    /// Runs `f` on a thread with the stack tokio's blocking pool gives a query.
    fn on_pool_sized_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn_scoped(s, f)
                .expect("spawn")
                .join()
                .expect("no panic")
        })
    }

    #[test]
    fn queries_past_the_depth_limit_are_refused_not_overflowed() {
        let e = Engine::new(EngineOptions::default());
        let s = MemStorage::new();
        on_pool_sized_thread(|| {
            for q in too_deep_queries() {
                for r in [
                    e.instant_query(&s, &q, 60_000),
                    e.range_query(&s, &q, 0, 60_000, 15_000),
                ] {
                    let err = r.expect_err(&q[..40]);
                    assert!(
                        matches!(
                            err,
                            QueryError::TooDeep {
                                limit: MAX_QUERY_DEPTH,
                                ..
                            }
                        ),
                        "{}: {err}",
                        &q[..40]
                    );
                }
            }
            // The engine still answers.
            assert!(e.instant_query(&s, "1 + 1", 0).is_ok());
        });
    }

    #[test]
    fn queries_at_the_depth_limit_evaluate() {
        let e = Engine::new(EngineOptions::default());
        let mut s = MemStorage::new();
        s.add_samples(
            Labels::from_pairs([("__name__", "x")]),
            &[(0, 1.0), (30_000, 2.0), (60_000, 3.0)],
        );
        let mut plus = "x".to_string();
        for _ in 1..MAX_QUERY_DEPTH {
            plus.push_str(" + 1");
        }
        let n = (MAX_QUERY_DEPTH - 1) / 3;
        let cases = [
            (plus, MAX_QUERY_DEPTH),
            (
                format!(
                    "{}x{}",
                    "sum(".repeat(MAX_QUERY_DEPTH - 1),
                    ")".repeat(MAX_QUERY_DEPTH - 1)
                ),
                MAX_QUERY_DEPTH,
            ),
            (
                format!(
                    "{}x{}",
                    "abs(".repeat(MAX_QUERY_DEPTH - 1),
                    ")".repeat(MAX_QUERY_DEPTH - 1)
                ),
                MAX_QUERY_DEPTH,
            ),
            (
                format!("{}x{}", "max_over_time((".repeat(n), ")[1m:])".repeat(n)),
                3 * n + 1,
            ),
        ];
        on_pool_sized_thread(|| {
            for (q, depth) in &cases {
                assert_eq!(expr_depth(&parse_expr(q).unwrap()), *depth, "{}", &q[..40]);
                e.instant_query(&s, q, 60_000).unwrap();
                e.range_query(&s, q, 0, 60_000, 15_000).unwrap();
                let expr = parse_expr(q).unwrap();
                e.range_query_expr(&s, &expr, 0, 60_000, 15_000).unwrap();
            }
        });
    }

    #[test]
    fn shallow_queries_with_long_text_parse_and_huge_chains_are_refused_unparsed() {
        // 600 matchers: the text bound is past the limit, the depth is 1, so it
        // parses on the deep stack and evaluates.
        let matchers: Vec<String> = (0..600).map(|i| format!("l{i}!=\"v\"")).collect();
        let wide = format!("x{{{}}}", matchers.join(","));
        assert!(text_depth_bound(&wide).unwrap() > MAX_QUERY_DEPTH);
        let e = Engine::new(EngineOptions::default());
        on_pool_sized_thread(|| {
            assert_eq!(expr_depth(&parse_expr(&wide).unwrap()), 1);
            e.instant_query(&MemStorage::new(), &wide, 0).unwrap();
            // A chain past the token bound is refused without being parsed.
            let huge = "1+".repeat(MAX_QUERY_TOKENS) + "1";
            assert!(matches!(parse_expr(&huge), Err(QueryError::TooDeep { .. })));
        });
    }

    #[test]
    fn text_bound_is_never_below_the_parsed_depth() {
        for q in [
            "sum by (job) (rate(c_total{job!=\"a\"}[1m] offset 5m))",
            "-x",
            "a or b and c unless d",
            "x atan2 y + max_over_time(x[5m:1m] @ end())",
            "{__name__=~\"x\"}",
            "x # comment ((((",
            "count_values(\"v\", x)",
            "1e-3 * - - 2",
        ] {
            let e = parse_expr(q).expect(q);
            assert!(text_depth_bound(q).unwrap() >= expr_depth(&e), "{q}");
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Fragments of PromQL, so generated text often parses.
    const NEAR_PROMQL: &str = "([a-zé_]{1,4}|[0-9.]{1,3}|[-+*/%^]|==|!=|>=|and|or|unless|sum|rate|\\(|\\)|\\[5m\\]|\\[1m:\\]|\\{a=\"é\"\\}|offset 1m|@ 10| by \\(a\\)| ){0,24}";

    proptest! {
        #[test]
        fn any_text_parses_or_fails_without_panicking(s in any::<String>()) {
            let _ = text_depth_bound(&s);
            let _ = parse_expr(&s);
        }

        #[test]
        fn the_text_bound_is_never_below_the_depth(s in NEAR_PROMQL) {
            if let Ok(e) = parse_expr(&s) {
                prop_assert!(text_depth_bound(&s).unwrap() >= expr_depth(&e), "{}", s);
                let engine = Engine::new(EngineOptions::default());
                let _ = engine.instant_query(&crate::model::MemStorage::new(), &s, 60_000);
            }
        }
    }
}
