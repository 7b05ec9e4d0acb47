//! PromQL evaluation with Prometheus 3.x semantics over a [`Storage`](crate::model::Storage), plus the
//! runner for Prometheus's PromQL test-script language ([`testscript`]).
//!
//! * Parsing is done by the `promql-parser` crate ([`parse_expr`]); evaluation is our
//!   own. Every node is evaluated over the whole query range at once on per-series
//!   columns: a selector fetches its series once for `[start - range - lookback, end]`
//!   and range functions slide windows over the sample slices (two pointers);
//!   aggregations accumulate whole columns; vector matching joins series pairs on
//!   their timestamps when the pairing is static, and falls back to Prometheus's
//!   step-by-step algorithm (with its exact errors) otherwise.
//! * Semantics follow Prometheus 3.x: 5m lookback (configurable), staleness markers,
//!   left-open range selectors `(t-range, t]`, `offset`, `@` with `start()`/`end()`,
//!   subqueries aligned to absolute multiples of their step, `__name__` dropping
//!   (immediately, or delayed to the end with [`EngineOptions::delayed_name_removal`]),
//!   Kahan summation where Prometheus uses it, and its error/annotation messages.
//! * Not supported: native histograms (no such samples in [`Storage`](crate::model::Storage); functions that
//!   only read them return [`QueryError::Unsupported`]), start timestamps, and syntax
//!   promql-parser does not parse (duration arithmetic, `anchored`/`smoothed`,
//!   `fill()` is parsed and supported). `limit_ratio` only validates its parameter.
//! * Limits: `max_samples` (samples held at once, Prometheus's accounting per node),
//!   `timeout`, `max_result_series`; each fails the query with a [`QueryError`] that
//!   names the limit.
//!
//! ```
//! use arrowmon::model::{Labels, MemStorage};
//! use arrowmon::promql::{Engine, EngineOptions, Value};
//!
//! let mut s = MemStorage::new();
//! s.add_samples(
//!     Labels::from_pairs([("__name__", "up"), ("job", "node")]),
//!     &[(0, 1.0), (15_000, 1.0)],
//! );
//! let engine = Engine::new(EngineOptions::default());
//! let r = engine.instant_query(&s, "sum by (job) (up)", 30_000).unwrap();
//! let Value::Vector(v) = r.value else { panic!() };
//! assert_eq!(v[0].v, 1.0);
//! ```

pub mod aggregate;
pub mod binary;
pub mod engine;
mod evaluator;
pub mod functions;
pub mod info;
pub mod parse_error;
pub mod pretty;
pub mod testscript;
pub mod value;

pub use engine::{extract_selectors, parse_expr, Engine};
pub use value::{EngineOptions, QueryError, QueryResult, Sample, Value};
