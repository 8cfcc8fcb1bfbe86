//! Where decoding's time goes: the time searches spend encoding their sources and running decoder
//! steps, summed over every thread since the last [`reset`]. The rest of a search's time is its
//! own bookkeeping (log-softmax, choosing tokens, reordering caches, reading outputs out).
//! `locus bench translate` reports it.
//!
//! Wall-clock time around each call: exact on the CPU, where an operation has finished when it
//! returns; on a GPU, operations are queued and a phase's time is mostly that of queueing them.
//! Two clock readings per step cost nothing measurable next to a step.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static ENCODER_NANOS: AtomicU64 = AtomicU64::new(0);
static DECODER_STEP_NANOS: AtomicU64 = AtomicU64::new(0);
static DECODER_STEPS: AtomicU64 = AtomicU64::new(0);

/// Time spent in each phase of decoding, summed over threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PhaseTimes {
    /// Encoding the sources of every batch.
    pub encoder: Duration,
    /// Decoder steps: every layer over the new tokens and the output projection.
    pub decoder_steps: Duration,
    /// How many decoder steps ran (one per batch and output position).
    pub steps: u64,
}

/// Sets every phase's time to zero.
pub fn reset() {
    for counter in [&ENCODER_NANOS, &DECODER_STEP_NANOS, &DECODER_STEPS] {
        counter.store(0, Ordering::Relaxed);
    }
}

/// The time spent in each phase since the last [`reset`] (or the start).
pub fn read() -> PhaseTimes {
    PhaseTimes {
        encoder: Duration::from_nanos(ENCODER_NANOS.load(Ordering::Relaxed)),
        decoder_steps: Duration::from_nanos(DECODER_STEP_NANOS.load(Ordering::Relaxed)),
        steps: DECODER_STEPS.load(Ordering::Relaxed),
    }
}

/// Runs `work`, an encoder pass, adding its time to the encoder's.
pub(crate) fn encoding<T>(work: impl FnOnce() -> T) -> T {
    timed(&ENCODER_NANOS, work)
}

/// Runs `work`, one decoder step, adding its time to the decoder steps'.
pub(crate) fn decoder_step<T>(work: impl FnOnce() -> T) -> T {
    DECODER_STEPS.fetch_add(1, Ordering::Relaxed);
    timed(&DECODER_STEP_NANOS, work)
}

fn timed<T>(counter: &AtomicU64, work: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = work();
    let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    counter.fetch_add(nanos, Ordering::Relaxed);
    result
}
