//! PromQL evaluation with Prometheus 3.x semantics over a [`Storage`], plus the
//! runner for Prometheus's PromQL test-script language.
//!
//! Parsing is done by the `promql-parser` crate; evaluation is our own and works on
//! columns: every selector fetches its series once for the whole query range and
//! range functions slide windows over the sample slices.

pub mod aggregate;
pub mod binary;
pub mod engine;
pub mod functions;
pub mod storage;
pub mod testscript;
pub mod value;

pub use engine::{parse_expr, Engine};
pub use storage::{is_stale_nan, stale_nan, MemStorage, Series, Storage, StorageError};
pub use value::{EngineOptions, QueryError, QueryResult, Sample, Value};
