//! The one way a query runs, for the HTTP API and Grafana's QueryData alike: on
//! the blocking pool (evaluation is CPU work that must not hold an async worker),
//! counted as running (free memory goes back to the system once queries stop), and
//! timed into the tenant's latency histogram.

use std::time::Instant;

use super::Tenant;
use crate::model::Storage;
use crate::promql::{Engine, QueryError, QueryResult};
use crate::runtime::memory::RunningQuery;

/// Why a query gave no result.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The query's own error: the caller maps it to a status.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The task running it did not finish (a bug, never the query's fault).
    #[error("query task failed: {0}")]
    Task(String),
}

impl Tenant {
    /// Runs `query` against this tenant's store.
    pub async fn run_query<F>(&self, engine: &Engine, query: F) -> Result<QueryResult, RunError>
    where
        F: FnOnce(&Engine, &dyn Storage) -> Result<QueryResult, QueryError> + Send + 'static,
    {
        let engine = engine.clone();
        let store = self.store.clone();
        let started = Instant::now();
        let _running = RunningQuery::begin();
        let result = tokio::task::spawn_blocking(move || query(&engine, &*store)).await;
        self.query_latency.observe(started.elapsed());
        let result = result.map_err(|e| match e.try_into_panic() {
            Ok(payload) => RunError::Task(format!(
                "internal error while running the query: {}",
                crate::promql::engine::panic_message(payload.as_ref())
            )),
            Err(e) => RunError::Task(e.to_string()),
        })?;
        Ok(result?)
    }
}
