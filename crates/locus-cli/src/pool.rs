//! Where decoding runs: on one of rayon's threads.
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
