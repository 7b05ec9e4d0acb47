//! The memory that queries in flight may hold together: a budget in bytes that
//! every query's evaluator charges as what it holds grows and gives back as it
//! shrinks, and that is released in full when the query ends, fails or panics.
//!
//! One query may hold at most half the budget, so one heavy query never takes all
//! of it. Each query's first few hundred KiB (its floor) come from a part of the
//! budget set aside for them, one floor per query that may run at once, so light
//! queries (a dashboard's panels) still answer while heavy ones hold the rest.
//! The total held never passes the budget.
//!
//! A query that does not fit fails at once, except the oldest query in flight:
//! it waits (within its deadline) for younger queries to finish or fail. So when
//! several heavy queries grow at once, the oldest always completes, instead of
//! each holding part of the budget and all failing for want of the rest.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// Bytes counted for one sample a query holds: a timestamp and a value, as
/// Prometheus's `FPoint`.
pub const BYTES_PER_SAMPLE: u64 = 16;

/// The most a query holds without drawing on the shared part of the budget.
const MAX_FLOOR: u64 = 1 << 20;

/// Charges move the shared counters in steps of this many bytes, so a query that
/// grows one series at a time does not touch them for every series.
const STEP: u64 = 64 << 10;

/// Why a query may not hold more.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// The query alone would hold more than one query may.
    #[error(
        "query processing would hold more than one query's share of the query memory limit in query execution (share: {}, half of max_memory={}; {})",
        fmt_bytes(*.share), fmt_bytes(*.limit), .setting
    )]
    OverShare {
        share: u64,
        limit: u64,
        setting: String,
    },
    /// The queries in flight together would hold more than the budget.
    #[error(
        "query processing would take the memory of queries in flight past its limit in query execution (limit: max_memory={}, held by queries in flight: {}); retry when fewer queries run, or {}",
        fmt_bytes(*.limit), fmt_bytes(*.held), .setting
    )]
    OverLimit {
        limit: u64,
        held: u64,
        setting: String,
    },
}

/// A budget shared by the queries of one tenant.
#[derive(Debug)]
pub struct QueryMemoryBudget {
    /// 0: unlimited (still counted).
    limit: u64,
    share: u64,
    floor: u64,
    /// What the queries hold above their floors together may reach this.
    pool: u64,
    pooled: AtomicU64,
    held: AtomicU64,
    /// The charges in flight by age; the first is the oldest query's.
    queries: Mutex<BTreeSet<u64>>,
    next_query: AtomicU64,
    /// The oldest query waits on this for memory that others give back.
    released: Condvar,
    waiting: AtomicUsize,
    /// How to raise the limit, for the error (a flag, a datasource setting).
    setting: String,
}

impl QueryMemoryBudget {
    /// A budget of `limit` bytes (0: unlimited) for at most `slots` queries running at
    /// once; `setting` tells the user how to raise it.
    pub fn new(limit: u64, slots: usize, setting: impl Into<String>) -> QueryMemoryBudget {
        let slots = slots.max(1) as u64;
        let floor = MAX_FLOOR.min(limit / 4 / slots);
        QueryMemoryBudget {
            limit,
            share: limit / 2,
            floor,
            pool: limit - floor * slots,
            pooled: AtomicU64::new(0),
            held: AtomicU64::new(0),
            queries: Mutex::new(BTreeSet::new()),
            next_query: AtomicU64::new(0),
            released: Condvar::new(),
            waiting: AtomicUsize::new(0),
            setting: setting.into(),
        }
    }

    /// The budget in bytes (0: unlimited).
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes the queries in flight hold now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// A new query's charge, holding nothing yet. If it becomes the oldest query in
    /// flight, it waits for memory until `deadline` (none: it never waits).
    pub fn charge(self: &Arc<Self>, deadline: Option<Instant>) -> MemoryCharge {
        let seq = self.next_query.fetch_add(1, Ordering::Relaxed);
        self.lock_queries().insert(seq);
        MemoryCharge {
            budget: self.clone(),
            seq,
            deadline,
            held: Mutex::new(0),
        }
    }

    fn lock_queries(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.queries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `more` bytes of the shared pool if they fit.
    fn take(&self, more: u64) -> bool {
        self.pooled
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| {
                (p + more <= self.pool).then_some(p + more)
            })
            .is_ok()
    }

    /// As [`take`](Self::take), but the oldest query waits for memory that others
    /// give back, until `deadline`.
    fn take_or_wait(&self, seq: u64, more: u64, deadline: Option<Instant>) -> bool {
        if self.take(more) {
            return true;
        }
        let Some(deadline) = deadline else {
            return false;
        };
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut queries = self.lock_queries();
        let taken = loop {
            if queries.first() != Some(&seq) {
                break false;
            }
            // Tried under the lock, which releases take before they notify.
            if self.take(more) {
                break true;
            }
            let now = Instant::now();
            if now >= deadline {
                break false;
            }
            queries = match self.released.wait_timeout(queries, deadline - now) {
                Ok((q, _)) => q,
                Err(p) => p.into_inner().0,
            };
        };
        drop(queries);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        taken
    }

    fn above_floor(&self, bytes: u64) -> u64 {
        bytes.saturating_sub(self.floor)
    }

    /// Moves a query from holding `from` to `to` bytes (both multiples of `STEP`
    /// or 0), or refuses when it would pass its share or the budget.
    fn resize(
        &self,
        seq: u64,
        from: u64,
        to: u64,
        deadline: Option<Instant>,
    ) -> Result<(), BudgetError> {
        if to <= from {
            let freed = self.above_floor(from) - self.above_floor(to);
            self.pooled.fetch_sub(freed, Ordering::SeqCst);
            self.held.fetch_sub(from - to, Ordering::Relaxed);
            if freed > 0 && self.waiting.load(Ordering::SeqCst) > 0 {
                let _queries = self.lock_queries();
                self.released.notify_all();
            }
            return Ok(());
        }
        let more = self.above_floor(to) - self.above_floor(from);
        if self.limit == 0 {
            self.pooled.fetch_add(more, Ordering::SeqCst);
        } else {
            if to > self.share {
                return Err(BudgetError::OverShare {
                    share: self.share,
                    limit: self.limit,
                    setting: self.setting.clone(),
                });
            }
            if !self.take_or_wait(seq, more, deadline) {
                return Err(BudgetError::OverLimit {
                    limit: self.limit,
                    held: self.held(),
                    setting: self.setting.clone(),
                });
            }
        }
        self.held.fetch_add(to - from, Ordering::Relaxed);
        Ok(())
    }
}

/// What one query holds of a budget; dropping it (the query ended, failed or
/// unwound from a panic) gives all of it back.
#[derive(Debug)]
pub struct MemoryCharge {
    budget: Arc<QueryMemoryBudget>,
    /// The query's age: lower is older.
    seq: u64,
    deadline: Option<Instant>,
    /// Bytes charged, a multiple of `STEP`. A lock, not an atomic: the budget's
    /// counters must move together with it.
    held: Mutex<u64>,
}

impl MemoryCharge {
    /// The query now holds `bytes` (more or less than before).
    pub fn hold(&self, bytes: u64) -> Result<(), BudgetError> {
        self.update(bytes, false)
    }

    /// The query holds at least `bytes`: for parallel work, whose running totals
    /// may arrive out of order.
    pub fn hold_at_least(&self, bytes: u64) -> Result<(), BudgetError> {
        self.update(bytes, true)
    }

    /// Bytes charged now (rounded up to the charging step).
    pub fn held(&self) -> u64 {
        *self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, bytes: u64, grow_only: bool) -> Result<(), BudgetError> {
        let to = bytes.div_ceil(STEP).saturating_mul(STEP);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if to == *held || (grow_only && to < *held) {
            return Ok(());
        }
        self.budget.resize(self.seq, *held, to, self.deadline)?;
        *held = to;
        Ok(())
    }
}

impl Drop for MemoryCharge {
    fn drop(&mut self) {
        let held = self.held.get_mut().unwrap_or_else(|p| p.into_inner());
        // Shrinking never fails.
        let _ = self.budget.resize(self.seq, *held, 0, None);
        *held = 0;
        self.budget.lock_queries().remove(&self.seq);
    }
}

/// A size as the limit flags take it (`1GB`, `512MB`, `64KB`, powers of 1024).
pub fn fmt_bytes(b: u64) -> String {
    const KB: u64 = 1 << 10;
    const MB: u64 = 1 << 20;
    const GB: u64 = 1 << 30;
    match b {
        0 => "0B".into(),
        b if b % GB == 0 => format!("{}GB", b / GB),
        b if b >= GB => format!("{:.1}GB", b as f64 / GB as f64),
        b if b % MB == 0 => format!("{}MB", b / MB),
        b if b >= MB => format!("{:.1}MB", b as f64 / MB as f64),
        b if b % KB == 0 => format!("{}KB", b / KB),
        b => format!("{b}B"),
    }
}

/// The default budget for the queries of one tenant: a quarter of the memory the
/// process may use (the machine's, or its cgroup's limit when lower), or 1GB
/// where neither can be read.
pub fn default_query_memory() -> u64 {
    let machine = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| mem_total(&t));
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok());
    match (machine, cgroup) {
        (Some(m), Some(c)) => m.min(c) / 4,
        (Some(m), None) => m / 4,
        (None, Some(c)) => c / 4,
        (None, None) => 1 << 30,
    }
}

/// `MemTotal` of /proc/meminfo, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    fn budget(limit: u64, slots: usize) -> Arc<QueryMemoryBudget> {
        Arc::new(QueryMemoryBudget::new(
            limit,
            slots,
            "raise it with --query.max-memory",
        ))
    }

    #[test]
    fn charges_grow_shrink_and_are_released_on_drop() {
        let b = budget(64 * MB, 4);
        let q = b.charge(None);
        q.hold(10 * MB).unwrap();
        assert_eq!(b.held(), 10 * MB);
        q.hold(3 * MB).unwrap();
        assert_eq!(b.held(), 3 * MB);
        // Rounded up to the charging step.
        q.hold(1).unwrap();
        assert_eq!(b.held(), STEP);
        q.hold_at_least(5 * MB).unwrap();
        q.hold_at_least(2 * MB).unwrap();
        assert_eq!(q.held(), 5 * MB);
        drop(q);
        assert_eq!(b.held(), 0);
        assert_eq!(b.pooled.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn one_query_may_hold_at_most_half_the_budget() {
        let b = budget(64 * MB, 4);
        let q = b.charge(None);
        q.hold(32 * MB).unwrap();
        let e = q.hold(32 * MB + 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "query processing would hold more than one query's share of the query memory limit in query execution (share: 32MB, half of max_memory=64MB; raise it with --query.max-memory)"
        );
        // A refused charge keeps what the query held until it ends.
        assert_eq!(b.held(), 32 * MB);
        drop(q);
        assert_eq!(b.held(), 0);
    }

    #[test]
    fn queries_together_stay_under_the_budget_and_light_ones_still_fit() {
        // Floors: 1MB for each of 4 slots, so 60MB are shared above them.
        let b = budget(64 * MB, 4);
        let heavy: Vec<MemoryCharge> = (0..2).map(|_| b.charge(None)).collect();
        heavy[0].hold(31 * MB).unwrap();
        heavy[1].hold(31 * MB).unwrap();
        let third = b.charge(None);
        let e = third.hold(2 * MB).unwrap_err();
        assert!(
            matches!(e, BudgetError::OverLimit { limit, held, .. } if limit == 64 * MB && held == 62 * MB),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "query processing would take the memory of queries in flight past its limit in query execution (limit: max_memory=64MB, held by queries in flight: 62MB); retry when fewer queries run, or raise it with --query.max-memory"
        );
        // A light query fits in its floor while the heavy ones hold the rest.
        third.hold(MB).unwrap();
        let fourth = b.charge(None);
        fourth.hold(MB).unwrap();
        assert_eq!(b.held(), 64 * MB);
        drop(heavy);
        third.hold(20 * MB).unwrap();
        drop(third);
        drop(fourth);
        assert_eq!(b.held(), 0);
    }

    #[test]
    fn a_panicking_query_gives_its_memory_back() {
        let b = budget(64 * MB, 4);
        let inner = b.clone();
        let r = std::panic::catch_unwind(move || {
            let q = inner.charge(None);
            q.hold(20 * MB).unwrap();
            assert_eq!(inner.held(), 20 * MB);
            panic!("evaluation bug");
        });
        assert!(r.is_err());
        assert_eq!(b.held(), 0);
        let q = b.charge(None);
        q.hold(32 * MB).unwrap();
    }

    #[test]
    fn charges_from_many_threads_add_up_and_never_pass_the_budget() {
        let b = budget(64 * MB, 8);
        let peak = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for i in 0..200u64 {
                        let q = b.charge(None);
                        for step in 1..=10 {
                            if q.hold(step * (i % 7 + 1) * MB / 2).is_err() {
                                break;
                            }
                            peak.fetch_max(b.held(), Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert!(peak.load(Ordering::Relaxed) <= 64 * MB);
        assert_eq!(b.held(), 0);
        assert_eq!(b.pooled.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_oldest_query_waits_for_younger_ones_instead_of_failing() {
        let b = budget(64 * MB, 4);
        let deadline = Some(Instant::now() + std::time::Duration::from_secs(10));
        let oldest = b.charge(deadline);
        let younger = b.charge(deadline);
        oldest.hold(20 * MB).unwrap();
        younger.hold(30 * MB).unwrap();
        // The younger one does not fit and fails at once.
        assert!(matches!(
            younger.hold(32 * MB + 1),
            Err(BudgetError::OverShare { .. })
        ));
        assert!(matches!(
            younger.hold(31 * MB),
            Ok(()) | Err(BudgetError::OverLimit { .. })
        ));
        std::thread::scope(|s| {
            let waiter = s.spawn(|| oldest.hold(32 * MB));
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert!(
                !waiter.is_finished(),
                "the oldest query failed instead of waiting"
            );
            drop(younger);
            assert_eq!(waiter.join().unwrap(), Ok(()));
        });
        assert_eq!(b.held(), 32 * MB);
        // Waiting ends at the deadline.
        let blocker = b.charge(None);
        let late = b.charge(Some(Instant::now() + std::time::Duration::from_millis(100)));
        drop(oldest);
        blocker.hold(32 * MB).unwrap();
        let waited = Instant::now();
        // `late` is younger than `blocker`: it fails at once, without waiting.
        assert!(late.hold(32 * MB).is_err());
        assert!(waited.elapsed() < std::time::Duration::from_millis(100));
        drop(blocker);
        let b2 = budget(64 * MB, 4);
        let first = b2.charge(Some(Instant::now() + std::time::Duration::from_millis(100)));
        let second = b2.charge(None);
        second.hold(32 * MB).unwrap();
        let waited = Instant::now();
        assert!(matches!(
            first.hold(32 * MB),
            Err(BudgetError::OverLimit { .. })
        ));
        assert!(waited.elapsed() >= std::time::Duration::from_millis(100));
    }

    #[test]
    fn an_unlimited_budget_counts_but_never_refuses() {
        let b = budget(0, 4);
        let q = b.charge(None);
        q.hold(1 << 40).unwrap();
        assert_eq!(b.held(), 1 << 40);
        drop(q);
        assert_eq!(b.held(), 0);
    }

    #[test]
    fn sizes_are_written_as_the_flags_take_them() {
        assert_eq!(fmt_bytes(1 << 30), "1GB");
        assert_eq!(fmt_bytes(512 * MB), "512MB");
        assert_eq!(fmt_bytes(6026 * MB), "5.9GB");
        assert_eq!(fmt_bytes(MB + MB / 2), "1.5MB");
        assert_eq!(fmt_bytes(64 << 10), "64KB");
        assert_eq!(fmt_bytes(100), "100B");
    }

    #[test]
    fn the_default_follows_the_machine() {
        assert_eq!(
            mem_total("MemTotal:       24684000 kB\nMemFree: 1 kB\n"),
            Some(24684000 * 1024)
        );
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
        assert!(default_query_memory() > 0);
    }
}
