//! Query results, options and errors: the engine's public vocabulary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::{Labels, SelectError, Series, StorageError};
use crate::runtime::query_budget::{BudgetError, QueryMemoryBudget};

/// One sample of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
}

/// A query result value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar {
        t: i64,
        v: f64,
    },
    String {
        t: i64,
        v: String,
    },
    Vector(Vec<Sample>),
    /// Range vector or range-query result; series sorted by labels, points by time.
    Matrix(Vec<Series>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    pub value: Value,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (Prometheus: 5m).
    pub lookback_delta: Duration,
    /// Maximum number of samples held in memory at once by one query.
    pub max_samples: usize,
    /// Wall-clock budget for one query.
    pub timeout: Duration,
    /// Step of subqueries written without one (`x[5m:]`).
    pub default_subquery_step: Duration,
    /// Keep `__name__` until the end of evaluation (Prometheus's
    /// `promql-delayed-name-removal`); the test-script runner turns it on, the
    /// product leaves it off (Prometheus's default).
    pub delayed_name_removal: bool,
    /// Maximum number of series in a result (0 = unlimited).
    pub max_result_series: usize,
    /// The memory budget the query's samples are charged to, shared with the
    /// other queries in flight (none: only `max_samples` bounds it).
    pub memory: Option<Arc<QueryMemoryBudget>>,
    /// When the query arrived: its timeout counts from then, time waiting in the
    /// query queue included, as in Prometheus (none: from the start of evaluation).
    pub arrived: Option<Instant>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta: Duration::from_secs(300),
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            default_subquery_step: Duration::from_secs(60),
            delayed_name_removal: false,
            max_result_series: 0,
            memory: None,
            arrived: None,
        }
    }
}

/// Why a query failed. The HTTP/Grafana layer maps `Parse` and `Execution` to 400/422,
/// `TooManySamples`/`TooManySeries`/`Memory` to 422, `Timeout`/`QueueTimeout` to 503
/// and `Storage` to 500.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum QueryError {
    /// The query text is not valid PromQL. `position` is where Prometheus
    /// reports the error, when it can be recovered (shown as `LINE:COLUMN:`).
    #[error("{}", parse_message(.message, .position))]
    Parse {
        message: String,
        position: Option<TextPosition>,
    },
    /// A range query over an expression that is not a scalar or an instant vector.
    /// Prometheus refuses it before evaluation, as a bad `query` parameter.
    #[error(
        "invalid expression type \"{found}\" for range query, must be Scalar or instant Vector"
    )]
    InvalidRangeQueryType { found: &'static str },
    /// The query is valid but its data makes it fail (many-to-many matching,
    /// duplicate series, invalid function arguments...).
    #[error("{0}")]
    Execution(String),
    /// The query would hold more than `limit` samples in memory.
    #[error("query processing would load too many samples into memory in query execution (limit: max_samples={limit})")]
    TooManySamples { limit: usize },
    /// The result would have more than `limit` series.
    #[error("query result would contain too many series (limit: max_result_series={limit})")]
    TooManySeries { limit: usize },
    #[error("query timed out in expression evaluation (timeout: {0:?})")]
    Timeout(Duration),
    /// The query waited for a free slot (`max_concurrent_queries`) until its timeout.
    #[error("query timed out in query queue (timeout: {0:?})")]
    QueueTimeout(Duration),
    /// The query would hold more memory than the budget of queries in flight allows.
    #[error(transparent)]
    Memory(#[from] BudgetError),
    #[error("{0}")]
    Storage(String),
    /// Valid PromQL this engine does not implement (native histograms...).
    #[error("{0}")]
    Unsupported(String),
    /// The query nests deeper than the engine evaluates (see
    /// [`MAX_QUERY_DEPTH`](crate::promql::engine::MAX_QUERY_DEPTH)); `depth` is
    /// the nesting found, or a lower bound of it when the text was refused before
    /// parsing.
    #[error("query is nested too deeply: {depth} levels of operators, brackets and function calls, the limit is {limit}")]
    TooDeep { depth: usize, limit: usize },
}

/// A line and column in a query, both from 1, as Prometheus counts them (the
/// column in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextPosition {
    pub line: usize,
    pub column: usize,
}

fn parse_message(message: &str, position: &Option<TextPosition>) -> String {
    match position {
        Some(p) => format!("{}:{}: parse error: {}", p.line, p.column, message),
        None => format!("parse error: {message}"),
    }
}

impl From<StorageError> for QueryError {
    fn from(e: StorageError) -> Self {
        QueryError::Storage(e.to_string())
    }
}

/// A selection stopped by the engine's own function gives back the engine's error.
impl From<SelectError> for QueryError {
    fn from(e: SelectError) -> Self {
        match e {
            SelectError::Storage(e) => e.into(),
            SelectError::Stopped(e) => match e.downcast::<QueryError>() {
                Ok(q) => *q,
                Err(other) => QueryError::Execution(other.to_string()),
            },
        }
    }
}

impl From<QueryError> for SelectError {
    fn from(e: QueryError) -> Self {
        SelectError::Stopped(Box::new(e))
    }
}
