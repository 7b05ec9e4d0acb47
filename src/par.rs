//! Splitting one query's per-series work across the machine's cores.
//!
//! A heavy dashboard query decodes and evaluates hundreds of thousands of series that
//! are independent of each other; on a 2-core machine the second core halves its
//! time. Small queries stay on the calling thread, where a thread start would cost
//! more than it saves.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// Below this many samples touched, work stays on the calling thread.
const MIN_PARALLEL_WORK: usize = 200_000;

/// Most items handed to a thread at a time: small enough to even out a thread that
/// is descheduled on a busy machine, large enough that taking a chunk costs nothing.
const CHUNK_ITEMS: usize = 64;

/// The cores work is spread over.
pub fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `items.into_iter().map(f).collect()`, in order, on all cores when `work` (roughly
/// the samples the whole map touches) is large enough. Items are taken by value, so
/// `f` can drop what it no longer needs while others are still being mapped. The
/// first error stops every thread at its next item and is returned; a panic in `f`
/// is resumed on the caller.
pub fn map<T, R, E, F>(items: Vec<T>, work: usize, f: F) -> Result<Vec<R>, E>
where
    T: Send,
    R: Send,
    E: Send,
    F: Fn(T) -> Result<R, E> + Sync,
{
    let len = items.len();
    // A few large items (say, ranges of groups) go one at a time.
    let chunk_items = (len / (cores() * 8)).clamp(1, CHUNK_ITEMS);
    let threads = cores().min(len.div_ceil(chunk_items));
    if work < MIN_PARALLEL_WORK || threads <= 1 {
        return items.into_iter().map(f).collect();
    }
    let mut chunks: Vec<Mutex<Vec<T>>> = Vec::with_capacity(len.div_ceil(chunk_items));
    let mut items = items.into_iter();
    loop {
        let chunk: Vec<T> = items.by_ref().take(chunk_items).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(Mutex::new(chunk));
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let worker = || -> Result<Vec<(usize, Vec<R>)>, E> {
        let mut done = Vec::new();
        loop {
            let c = next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = chunks.get(c) else {
                return Ok(done);
            };
            // Each chunk is taken by exactly one thread: the lock is never contended.
            let chunk = std::mem::take(&mut *slot.lock().unwrap_or_else(|e| e.into_inner()));
            let mut out = Vec::with_capacity(chunk.len());
            for it in chunk {
                if failed.load(Ordering::Relaxed) {
                    return Ok(done);
                }
                match f(it) {
                    Ok(r) => out.push(r),
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            done.push((c, out));
        }
    };
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads).map(|_| s.spawn(worker)).collect();
        let mine = worker();
        let mut all = vec![mine];
        for h in handles {
            match h.join() {
                Ok(r) => all.push(r),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    });
    let mut done = Vec::with_capacity(chunks.len());
    for r in results {
        done.extend(r?);
    }
    done.sort_unstable_by_key(|(c, _)| *c);
    let mut out = Vec::with_capacity(len);
    for (_, part) in done {
        out.extend(part);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_order_and_stops_at_an_error() {
        let items: Vec<u64> = (0..10_000).collect();
        let doubled = super::map(items.clone(), usize::MAX, |x| Ok::<_, String>(x * 2)).unwrap();
        assert_eq!(doubled, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        let small = super::map(items[..3].to_vec(), 0, |x| Ok::<_, String>(x + 1)).unwrap();
        assert_eq!(small, vec![1, 2, 3]);
        let err = super::map(items, usize::MAX, |x| {
            if x == 7_000 {
                Err(format!("bad item {x}"))
            } else {
                Ok(x)
            }
        });
        assert_eq!(err, Err("bad item 7000".to_string()));
    }
}
