//! Where decoding runs: on one of rayon's threads, and on how many workers ([`WorkerArgs`]:
//! with several, each decodes its own batches in a pool of its own, `locus_train::workers`).
//!
//! Locus's fused ops, candle's CPU ops and `gemm` split their work over rayon's global pool. A
//! thread outside the pool that starts such a loop hands it to the pool and sleeps until it is
//! done; a thread of the pool takes part in it instead. A decoding step is many small
//! operations, and those hand-offs and wake-ups took about a quarter of its time (`perf record`
//! on `bench translate --batch-size 8`). Run on a pool thread, `locus bench translate` on the
//! quickstart model (2 threads, 2026-12-06) went from 75-77 to 116-118 sentences/s at batches
//! of 16 and from 126-129 to 156 at 64. Training stays on the main thread: MPI expects its
//! calls on the thread that initialised it.

/// Runs `work` on one of the threads of rayon's global pool (on this one if it is one of them)
/// and returns what it returns.
pub fn on_a_pool_thread<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    // From outside the pool, `join` runs its closures in the pool and waits for them.
    rayon::join(work, || ()).0
}

/// `--workers`: how many batches decoding works on at once.
#[derive(clap::Args, Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerArgs {
    /// Batches decoded at once, each on a thread of its own with an equal share of the
    /// --threads threads (CTranslate2's inter_threads; see `locus_train::workers`). Default:
    /// one per thread: small batches of small models use one thread best. One on a GPU
    #[arg(long)]
    workers: Option<usize>,
}

impl WorkerArgs {
    /// Settles the number of workers for `threads` threads in all (as asked, or one per
    /// thread) and returns each one's share of the threads, at least 1: the thread count to
    /// set before any pool starts.
    pub fn resolve(&mut self, threads: usize) -> usize {
        let workers = self.workers.unwrap_or(threads).max(1);
        self.workers = Some(workers);
        (threads / workers).max(1)
    }

    /// The number of workers on `device` ([`resolve`](Self::resolve) settles it; 1 before):
    /// one on a GPU, which runs a batch's operations in order on its own.
    pub fn count_on(&self, device: &candle_core::Device) -> usize {
        if device.is_cpu() {
            self.workers.unwrap_or(1).max(1)
        } else {
            1
        }
    }
}
