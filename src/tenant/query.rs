//! The one way a query runs, for the HTTP API and Grafana's QueryData alike: it
//! waits for one of the tenant's query slots (at most `max_concurrent` queries
//! evaluate at once, as Prometheus's `--query.max-concurrency`; the others wait in
//! order, within their own timeout), then runs on the blocking pool (evaluation is
//! CPU work that must not hold an async worker) with its samples charged to the
//! tenant's memory budget, counted as running (free memory goes back to the system
//! once queries stop), and timed into the tenant's latency histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;

use super::Tenant;
use crate::config::settings::QueryLimitSettings;
use crate::model::Storage;
use crate::promql::{Engine, EngineOptions, QueryError, QueryResult};
use crate::runtime::memory::RunningQuery;
use crate::runtime::query_budget::{default_query_memory, QueryMemoryBudget};

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

/// Prometheus's default `--query.max-concurrency`.
pub const DEFAULT_MAX_CONCURRENT_QUERIES: usize = 20;

/// How a user raises the memory limit, named in the error that refuses a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitSource {
    /// `serve`'s flags.
    Flags,
    /// The datasource's settings in Grafana.
    Datasource,
}

impl LimitSource {
    fn raise_memory_with(self) -> &'static str {
        match self {
            LimitSource::Flags => "raise it with --query.max-memory",
            LimitSource::Datasource => {
                "raise Max query memory (jsonData.maxQueryMemory) in the datasource's settings"
            }
        }
    }
}

/// A tenant's query limits in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryLimits {
    pub max_concurrent: usize,
    /// Bytes the queries in flight may hold together (0: no limit).
    pub max_memory: u64,
    pub source: LimitSource,
}

impl QueryLimits {
    /// The limits `settings` sets, the defaults for what it leaves unset: 20 queries
    /// at once, and a quarter of the machine's memory.
    pub fn from_settings(settings: QueryLimitSettings, source: LimitSource) -> QueryLimits {
        QueryLimits {
            max_concurrent: settings
                .max_concurrent
                .unwrap_or(DEFAULT_MAX_CONCURRENT_QUERIES)
                .max(1),
            max_memory: settings.max_memory.unwrap_or_else(default_query_memory),
            source,
        }
    }
}

/// The slots and the memory budget of one set of limits. New limits get a new
/// gate; queries already admitted finish on the old one.
pub(super) struct QueryGate {
    limits: QueryLimits,
    slots: Arc<Semaphore>,
    budget: Arc<QueryMemoryBudget>,
}

impl QueryGate {
    pub(super) fn new(limits: QueryLimits) -> QueryGate {
        QueryGate {
            limits,
            slots: Arc::new(Semaphore::new(limits.max_concurrent)),
            budget: Arc::new(QueryMemoryBudget::new(
                limits.max_memory,
                limits.max_concurrent,
                limits.source.raise_memory_with(),
            )),
        }
    }
}

/// The queries of a tenant that wait or run, and those refused for memory.
#[derive(Default)]
pub(super) struct QueryCounters {
    in_flight: AtomicU64,
    memory_refused: AtomicU64,
}

/// A query counted in `prometheus_engine_queries` until dropped.
struct InFlight(Arc<QueryCounters>);

impl InFlight {
    fn enter(c: &Arc<QueryCounters>) -> InFlight {
        c.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(c.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the self-metrics show of a tenant's queries.
pub struct QueryStats {
    /// Queries evaluating or waiting for a slot (`prometheus_engine_queries`).
    pub in_flight: u64,
    pub max_concurrent: u64,
    pub memory_held: u64,
    pub memory_limit: u64,
    pub memory_refused: u64,
}

impl Tenant {
    /// Sets the query limits; the same limits again change nothing.
    pub fn set_query_limits(&self, limits: QueryLimits) {
        let mut gate = self.gate.write().unwrap_or_else(|p| p.into_inner());
        if gate.limits != limits {
            *gate = Arc::new(QueryGate::new(limits));
        }
    }

    pub fn query_limits(&self) -> QueryLimits {
        self.gate().limits
    }

    fn gate(&self) -> Arc<QueryGate> {
        self.gate.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn query_stats(&self) -> QueryStats {
        let gate = self.gate();
        QueryStats {
            in_flight: self.query_counters.in_flight.load(Ordering::Relaxed),
            max_concurrent: gate.limits.max_concurrent as u64,
            memory_held: gate.budget.held(),
            memory_limit: gate.budget.limit(),
            memory_refused: self.query_counters.memory_refused.load(Ordering::Relaxed),
        }
    }

    /// Runs `query` against this tenant's store once a slot is free. The engine's
    /// timeout covers the wait and the evaluation together.
    pub async fn run_query<F>(&self, engine: &Engine, query: F) -> Result<QueryResult, RunError>
    where
        F: FnOnce(&Engine, &dyn Storage) -> Result<QueryResult, QueryError> + Send + 'static,
    {
        let arrived = Instant::now();
        let in_flight = InFlight::enter(&self.query_counters);
        let gate = self.gate();
        let timeout = engine.options().timeout;
        let waited = tokio::time::timeout(timeout, gate.slots.clone().acquire_owned()).await;
        self.query_queue_latency.observe(arrived.elapsed());
        let slot = match waited {
            Ok(Ok(slot)) => slot,
            Ok(Err(closed)) => return Err(RunError::Task(closed.to_string())),
            Err(_) => return Err(QueryError::QueueTimeout(timeout).into()),
        };
        let engine = Engine::new(EngineOptions {
            memory: Some(gate.budget.clone()),
            arrived: Some(arrived),
            ..engine.options().clone()
        });
        let store = self.store.clone();
        let started = Instant::now();
        let running = RunningQuery::begin();
        // The slot and the counts go with the evaluation, which goes on when the
        // caller stops waiting for it (a client that hung up).
        let result = tokio::task::spawn_blocking(move || {
            let _admitted = (slot, running, in_flight);
            query(&engine, &*store)
        })
        .await;
        self.query_latency.observe(started.elapsed());
        let result = result.map_err(|e| match e.try_into_panic() {
            Ok(payload) => RunError::Task(format!(
                "internal error while running the query: {}",
                crate::promql::engine::panic_message(payload.as_ref())
            )),
            Err(e) => RunError::Task(e.to_string()),
        })?;
        if let Err(QueryError::Memory(_)) = &result {
            self.query_counters
                .memory_refused
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(result?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::Value;
    use std::time::Duration;

    fn tenant(max_concurrent: usize, max_memory: u64) -> (tempfile::TempDir, Arc<Tenant>) {
        let dir = tempfile::tempdir().unwrap();
        let t = Tenant::open(
            dir.path(),
            super::super::SecretMode::File,
            crate::store::StoreOptions::default(),
        )
        .unwrap();
        t.set_query_limits(QueryLimits {
            max_concurrent,
            max_memory,
            source: LimitSource::Flags,
        });
        (dir, Arc::new(t))
    }

    fn engine(timeout: Duration) -> Engine {
        Engine::new(EngineOptions {
            timeout,
            ..EngineOptions::default()
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queries_past_the_concurrency_limit_wait_for_a_slot() {
        let (_dir, t) = tenant(2, 1 << 30);
        let running = Arc::new(AtomicU64::new(0));
        let most = Arc::new(AtomicU64::new(0));
        let e = engine(Duration::from_secs(30));
        let queries = (0..6).map(|_| {
            let (t, e, running, most) = (t.clone(), e.clone(), running.clone(), most.clone());
            tokio::spawn(async move {
                t.run_query(&e, move |engine, store| {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(100));
                    running.fetch_sub(1, Ordering::SeqCst);
                    engine.instant_query(store, "1+1", 0)
                })
                .await
            })
        });
        let queries: Vec<_> = queries.collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(t.query_stats().in_flight, 6);
        for q in queries {
            let r = q.await.unwrap().unwrap();
            assert_eq!(r.value, Value::Scalar { t: 0, v: 2.0 });
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(t.query_stats().in_flight, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_query_that_waits_past_its_timeout_fails_in_the_queue() {
        let (_dir, t) = tenant(1, 1 << 30);
        let slow = {
            let t = t.clone();
            tokio::spawn(async move {
                t.run_query(&engine(Duration::from_secs(30)), |engine, store| {
                    std::thread::sleep(Duration::from_millis(600));
                    engine.instant_query(store, "1", 0)
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let e = t
            .run_query(&engine(Duration::from_millis(200)), |engine, store| {
                engine.instant_query(store, "1", 0)
            })
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "query timed out in query queue (timeout: 200ms)"
        );
        assert!(slow.await.unwrap().is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_query_past_its_memory_share_fails_and_gives_the_memory_back() {
        let (_dir, t) = tenant(4, 8 << 20);
        let e = engine(Duration::from_secs(30));
        // 259200 steps of 16 bytes: more than half of 8MB.
        let err = t
            .run_query(&e, |engine, store| {
                engine.instant_query(store, "max_over_time(vector(1)[3d:1s])", 259_200_000)
            })
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "query processing would hold more than one query's share of the query memory limit in query execution (share: 4MB, half of max_memory=8MB; raise it with --query.max-memory)"
        );
        let stats = t.query_stats();
        assert_eq!((stats.memory_held, stats.memory_refused), (0, 1));
        let r = t
            .run_query(&e, |engine, store| {
                engine.instant_query(store, "max_over_time(vector(1)[1h:1s])", 3_600_000)
            })
            .await
            .unwrap();
        assert!(matches!(&r.value, Value::Vector(v) if v.len() == 1 && v[0].v == 1.0));
        assert_eq!(t.query_stats().memory_held, 0);
    }
}
