//! Process memory tuning: how glibc's malloc keeps and hands back memory. The
//! store calls it after a cut or compaction, the query runner around each query,
//! `main` once at start; it imports nothing of the crate.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Hands the memory a cut or compaction freed back to the OS. glibc keeps freed heap
/// pages in its arenas for reuse, so without this the process's RSS ratchets up at
/// every cut by the cut's transient buffers, and stays there. (Not after queries: the
/// next heavy query would fault all its pages in again.)
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim takes no pointers; it only returns glibc's free pages.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Caps glibc's malloc at two arenas, unless `MALLOC_ARENA_MAX` says otherwise; call
/// it first thing in `main`. By default glibc gives threads that allocate at the
/// same time arenas of their own (up to 8 per core), and each keeps the free memory
/// of what its threads allocated (scrape bodies, cut and query buffers) apart from
/// the others', which costs RSS per series. One arena is not enough: a heavy query's
/// threads each allocate a buffer a series and the query's thread frees them, and on
/// one arena every such call waits on its lock; two keep most of the memory saving
/// without that wait (figures in docs/performance.md). Small allocations still
/// come from each thread's own cache without an arena's lock. Returns whether the
/// cap was set.
pub fn limit_malloc_arenas() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
            return false;
        }
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        /// glibc's `M_ARENA_MAX` (malloc.h).
        const M_ARENA_MAX: i32 = -8;
        // SAFETY: mallopt takes no pointers; it only sets a limit glibc checks when
        // it would make a new arena (existing arenas stay valid).
        unsafe { mallopt(M_ARENA_MAX, 2) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// A query being evaluated, from `begin` until dropped. glibc returns the top of its
/// main arena by itself but keeps what a heavy query freed in the other, so RSS
/// stays well above its steady value after a heavy query. Once a heavy query
/// (a tenth of a second or more) has ended and no query has run for a second (a
/// dashboard's queries come together), the free memory of every arena is handed
/// back on a thread of its own. Not sooner: that walks the arenas' free lists under
/// their locks, and a query arriving meanwhile would wait on them (figures in
/// docs/performance.md).
pub struct RunningQuery {
    started: std::time::Instant,
}

static QUERIES_RUNNING: AtomicU64 = AtomicU64::new(0);
/// When the last query ended, in ms after the first query began.
static LAST_QUERY_END: AtomicU64 = AtomicU64::new(0);
static RELEASE_SCHEDULED: AtomicBool = AtomicBool::new(false);

fn since_first_query() -> u64 {
    static FIRST: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    FIRST
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

impl RunningQuery {
    pub fn begin() -> RunningQuery {
        QUERIES_RUNNING.fetch_add(1, Ordering::AcqRel);
        RunningQuery {
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for RunningQuery {
    fn drop(&mut self) {
        LAST_QUERY_END.store(since_first_query(), Ordering::Release);
        QUERIES_RUNNING.fetch_sub(1, Ordering::AcqRel);
        if self.started.elapsed() < std::time::Duration::from_millis(100)
            || RELEASE_SCHEDULED.swap(true, Ordering::AcqRel)
        {
            return;
        }
        const IDLE_MS: u64 = 1000;
        let release = || {
            loop {
                std::thread::sleep(std::time::Duration::from_millis(IDLE_MS));
                let idle =
                    since_first_query().saturating_sub(LAST_QUERY_END.load(Ordering::Acquire));
                if QUERIES_RUNNING.load(Ordering::Acquire) == 0 && idle >= IDLE_MS {
                    break;
                }
            }
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            {
                unsafe extern "C" {
                    fn malloc_trim(pad: usize) -> i32;
                }
                // SAFETY: malloc_trim takes no pointers; it only returns unused pages.
                unsafe {
                    malloc_trim(0);
                }
            }
            RELEASE_SCHEDULED.store(false, Ordering::Release);
        };
        if std::thread::Builder::new()
            .name("release-memory".into())
            .spawn(release)
            .is_err()
        {
            RELEASE_SCHEDULED.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_memory_is_released_only_once_queries_have_stopped() {
        let heavy = || {
            let mut q = RunningQuery::begin();
            q.started -= std::time::Duration::from_millis(200);
            q
        };
        let scheduled = || RELEASE_SCHEDULED.load(Ordering::Acquire);
        // A light query schedules nothing.
        drop(RunningQuery::begin());
        assert!(!scheduled());
        // A heavy one does, but the release waits while another query runs.
        let running = RunningQuery::begin();
        drop(heavy());
        assert!(scheduled());
        std::thread::sleep(std::time::Duration::from_millis(2500));
        assert!(scheduled(), "released while a query was running");
        drop(running);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while scheduled() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(!scheduled(), "not released after the queries stopped");
    }

    #[test]
    fn malloc_arenas_are_capped_unless_the_environment_says() {
        let set = limit_malloc_arenas();
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert_eq!(set, std::env::var_os("MALLOC_ARENA_MAX").is_none());
        } else {
            assert!(!set);
        }
        // Allocating from other threads afterwards still works.
        let sums: Vec<usize> = (0..4)
            .map(|i| std::thread::spawn(move || vec![i; 1 << 16].iter().sum::<usize>()))
            .map(|t| t.join().unwrap())
            .collect();
        assert_eq!(sums, vec![0, 1 << 16, 2 << 16, 3 << 16]);
    }
}
