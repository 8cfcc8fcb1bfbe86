//! Independent jobs spread over worker threads, each running its own parallel operations in a
//! rayon pool of its own: the cells of a lab grid, the batches of a translation, the batch
//! loops of `locus serve`.
//!
//! Small models use many threads poorly: a decoding step of a few sentences is many small
//! operations, and splitting each over the cores costs more in hand-offs than it gains. Two
//! workers of one thread each, each on its own batches, finish sooner than the two threads
//! together on one batch after another (CTranslate2's `inter_threads`, Marian's CPU workers).
//! Each worker's pool is as large as the pool of the thread that starts the workers (rayon's
//! global pool, outside any other): the caller sets the thread count to one worker's share
//! before any pool starts, which candle's matrix products also follow
//! ([`candle_core::utils::get_num_threads`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::error::{Result, TrainError};

/// `work(i)` for every `i` in `0..count`, in index order.
///
/// With `workers` above 1, that many threads (at most `count`) take the indices in increasing
/// order, each running `work` in a rayon pool of its own, of [`rayon::current_num_threads`]
/// threads; otherwise the calling thread does them all in order. The first error stops the
/// handing out of indices and is returned once the jobs in progress end. A panic in `work` is
/// re-raised as it was.
pub fn map_on_workers<T: Send>(
    count: usize,
    workers: usize,
    work: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    if workers <= 1 || count <= 1 {
        return (0..count).map(&work).collect();
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let worker = || -> Result<Vec<(usize, T)>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(rayon::current_num_threads())
            .build()
            .map_err(|e| TrainError::Config(format!("cannot start a thread pool: {e}")))?;
        let mut done = Vec::new();
        while !failed.load(Ordering::Relaxed) {
            let index = next.fetch_add(1, Ordering::Relaxed);
            if index >= count {
                break;
            }
            match pool.install(|| work(index)) {
                Ok(value) => done.push((index, value)),
                Err(err) => {
                    failed.store(true, Ordering::Relaxed);
                    return Err(err);
                }
            }
        }
        Ok(done)
    };
    let outcomes: Vec<Result<Vec<(usize, T)>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.min(count)).map(|_| scope.spawn(worker)).collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    let mut done = Vec::with_capacity(count);
    for outcome in outcomes {
        done.extend(outcome?);
    }
    // No worker failed, so each took indices until none was left: every index is here once.
    done.sort_unstable_by_key(|&(index, _)| index);
    Ok(done.into_iter().map(|(_, value)| value).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Mutex;
    use std::thread::ThreadId;

    #[test]
    fn results_come_in_index_order_from_several_threads() {
        let threads = Mutex::new(HashSet::<ThreadId>::new());
        let squares = map_on_workers(40, 3, |i| {
            threads.lock().unwrap().insert(std::thread::current().id());
            // Long enough for every worker to take some indices.
            std::thread::sleep(std::time::Duration::from_millis(2));
            Ok(i * i)
        })
        .unwrap();
        assert_eq!(squares, (0..40).map(|i| i * i).collect::<Vec<_>>());
        let threads = threads.into_inner().unwrap();
        assert!(threads.len() > 1 && !threads.contains(&std::thread::current().id()), "{threads:?}");
    }

    #[test]
    fn one_worker_runs_on_the_calling_thread() {
        let caller = std::thread::current().id();
        let ids = map_on_workers(3, 1, |_| Ok(std::thread::current().id())).unwrap();
        assert_eq!(ids, [caller; 3]);
        assert!(map_on_workers(0, 4, Ok).unwrap().is_empty());
    }

    #[test]
    fn the_first_error_stops_the_rest() {
        let done = AtomicUsize::new(0);
        let result = map_on_workers(1000, 2, |i| {
            if i == 5 {
                return Err(TrainError::Config("job 5 fails".into()));
            }
            done.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(std::time::Duration::from_millis(1));
            Ok(i)
        });
        assert!(matches!(result, Err(TrainError::Config(message)) if message == "job 5 fails"));
        assert!(
            done.load(Ordering::Relaxed) < 100,
            "{} jobs ran after the failure",
            done.load(Ordering::Relaxed)
        );
    }
}
