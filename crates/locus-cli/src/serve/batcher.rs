//! Dynamic batching: the bounded queue of requests the translation workers take from.
//!
//! Handlers [`Queue::push`] an [`Entry`] (a request's sentences, their source tokens, the search
//! and a reply channel) and await the reply. An idle worker takes the waiting entries as one
//! batch when they hold `max_tokens` source tokens or `max_sentences` sentences, or when the
//! oldest has waited `max_wait` ([`Queue::next_batch`]); a worker decoding a batch takes, between
//! two steps, those due to join it ([`Queue::take_joining`]). Idle workers share what waits, so
//! that a few requests at once keep every worker busy.
//!
//! A request whose client stopped waiting (a timeout) is dropped from the queue unanswered.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use locus_train::translate::LineTranslation;
use tokio::sync::oneshot;

use super::metrics::Metrics;
use crate::search_args::SearchArgs;

/// What the worker answers a request with: its translations in order, or why it failed.
pub type Reply = Result<Vec<LineTranslation>, String>;

/// One request waiting for translation.
#[derive(Debug)]
pub struct Entry {
    /// The sentences, in request order.
    pub sentences: Vec<String>,
    /// Their source tokens, each EOS included (as a batch counts them).
    pub tokens: usize,
    /// The search to translate them with.
    pub search: SearchArgs,
    /// Where the translations go.
    pub reply: oneshot::Sender<Reply>,
    /// When it was queued.
    pub queued: Instant,
}

/// When a batch is due and how much it holds.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Most source tokens (EOS included) in a batch; a single request may hold more.
    pub max_tokens: usize,
    /// Most sentences in a batch; a single request may hold more.
    pub max_sentences: usize,
    /// Longest time the oldest request waits for others to fill its batch.
    pub max_wait: Duration,
}

/// Why a request was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The queue holds as many sentences as it may.
    Full,
    /// The server is shutting down.
    Closed,
}

#[derive(Default)]
struct State {
    entries: VecDeque<Entry>,
    sentences: usize,
    tokens: usize,
    closed: bool,
    /// Workers waiting in [`Queue::next_batch`].
    idle_workers: usize,
}

/// The requests waiting for the worker, at most `capacity` sentences in all.
pub struct Queue {
    state: Mutex<State>,
    changed: Condvar,
    capacity: usize,
    metrics: Metrics,
}

impl Queue {
    /// An empty queue of at most `capacity` sentences, reporting its depth to `metrics`.
    pub fn new(capacity: usize, metrics: Metrics) -> Self {
        Self { state: Mutex::new(State::default()), changed: Condvar::new(), capacity, metrics }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every update is a few
        // assignments that cannot fail half way.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `entry`.
    ///
    /// # Errors
    /// [`PushError::Full`] if its sentences do not fit (an entry always fits an empty queue),
    /// [`PushError::Closed`] after [`close`](Self::close).
    pub fn push(&self, entry: Entry) -> Result<(), PushError> {
        let mut state = self.lock();
        if state.closed {
            return Err(PushError::Closed);
        }
        if !state.entries.is_empty() && state.sentences + entry.sentences.len() > self.capacity {
            return Err(PushError::Full);
        }
        state.sentences += entry.sentences.len();
        state.tokens += entry.tokens;
        state.entries.push_back(entry);
        self.metrics.queue_depth.set(state.sentences as i64);
        self.changed.notify_all();
        Ok(())
    }

    /// Takes no more entries; those queued are still handed out by
    /// [`next_batch`](Self::next_batch), without waiting for more.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Waits until a batch is due and takes it: entries from the front (at least one) while
    /// they fit `limits` and this worker's share of the waiting sentences (an equal part for
    /// each idle worker, so that a few requests at once keep every worker busy). Entries whose
    /// client stopped waiting are dropped. `None` once the queue is closed and empty.
    pub fn next_batch(&self, limits: &BatchLimits) -> Option<Vec<Entry>> {
        let mut state = self.lock();
        state.idle_workers += 1;
        loop {
            self.drop_abandoned(&mut state);
            let Some(oldest) = state.entries.front() else {
                if state.closed {
                    state.idle_workers -= 1;
                    return None;
                }
                state = self.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            };
            let waited = oldest.queued.elapsed();
            let full = state.tokens >= limits.max_tokens || state.sentences >= limits.max_sentences;
            if full || state.closed || waited >= limits.max_wait {
                break;
            }
            let timeout = limits.max_wait - waited;
            state = self.changed.wait_timeout(state, timeout).unwrap_or_else(|p| p.into_inner()).0;
        }
        let share = state.sentences.div_ceil(state.idle_workers.max(1));
        state.idle_workers -= 1;
        Some(self.take(&mut state, limits.max_sentences.min(share), limits.max_tokens))
    }

    /// Without waiting: the entries due to join a running batch of `running` sentences, none
    /// if none is due. They are due once their sentences are a quarter of the running ones
    /// (joining copies the batch's cache, so sentences join several at a time), or the oldest
    /// has waited `max_wait`, or the queue is closed. They fill the batch up to `max_sentences`
    /// (an entry that does not fit waits for a batch of its own from
    /// [`next_batch`](Self::next_batch)) and `max_tokens` source tokens, leaving the idle
    /// workers their share.
    pub fn take_joining(&self, limits: &BatchLimits, running: usize) -> Vec<Entry> {
        let mut state = self.lock();
        self.drop_abandoned(&mut state);
        let Some(oldest) = state.entries.front() else {
            return Vec::new();
        };
        let room = limits.max_sentences.saturating_sub(running);
        let due =
            4 * state.sentences >= running || oldest.queued.elapsed() >= limits.max_wait || state.closed;
        if !due || oldest.sentences.len() > room {
            return Vec::new();
        }
        let share = state.sentences.div_ceil(state.idle_workers + 1);
        self.take(&mut state, room.min(share), limits.max_tokens)
    }

    /// Takes entries from the front while they fit `max_sentences` and `max_tokens`, at least
    /// one.
    fn take(&self, state: &mut State, max_sentences: usize, max_tokens: usize) -> Vec<Entry> {
        let mut batch: Vec<Entry> = Vec::new();
        let (mut sentences, mut tokens) = (0, 0);
        while let Some(next) = state.entries.front() {
            let fits =
                sentences + next.sentences.len() <= max_sentences && tokens + next.tokens <= max_tokens;
            if !batch.is_empty() && !fits {
                break;
            }
            sentences += next.sentences.len();
            tokens += next.tokens;
            batch.extend(state.entries.pop_front());
        }
        state.sentences -= sentences;
        state.tokens -= tokens;
        self.metrics.queue_depth.set(state.sentences as i64);
        if !state.entries.is_empty() {
            // The rest is due for the other idle workers now, not at their own timeouts.
            self.changed.notify_all();
        }
        batch
    }

    fn drop_abandoned(&self, state: &mut State) {
        if state.entries.iter().all(|entry| !entry.reply.is_closed()) {
            return;
        }
        state.entries.retain(|entry| !entry.reply.is_closed());
        state.sentences = state.entries.iter().map(|entry| entry.sentences.len()).sum();
        state.tokens = state.entries.iter().map(|entry| entry.tokens).sum();
        self.metrics.queue_depth.set(state.sentences as i64);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::search_args::parse_search_args;

    /// An entry of `sentences` sentences holding `tokens` tokens, searched with `args`.
    pub(in crate::serve) fn entry(
        sentences: usize,
        tokens: usize,
        args: &[&str],
    ) -> (Entry, oneshot::Receiver<Reply>) {
        let (reply, receiver) = oneshot::channel();
        let sentences = (0..sentences).map(|i| format!("s{i}")).collect();
        (
            Entry { sentences, tokens, search: parse_search_args(args), reply, queued: Instant::now() },
            receiver,
        )
    }

    fn limits(max_tokens: usize, max_sentences: usize, max_wait_ms: u64) -> BatchLimits {
        BatchLimits { max_tokens, max_sentences, max_wait: Duration::from_millis(max_wait_ms) }
    }

    #[test]
    fn a_full_queue_refuses_and_a_closed_one_drains() {
        let queue = Queue::new(3, Metrics::new());
        let (a, _ra) = entry(2, 10, &[]);
        let (b, _rb) = entry(2, 10, &[]);
        let (big, _rbig) = entry(5, 10, &[]);
        queue.push(a).unwrap();
        assert_eq!(queue.push(b).unwrap_err(), PushError::Full);
        assert_eq!(queue.metrics.queue_depth.get(), 2);
        queue.close();
        assert_eq!(queue.push(big).unwrap_err(), PushError::Closed);
        // Closed: due at once, although the wait is long.
        let batch = queue.next_batch(&limits(100, 100, 60_000)).unwrap();
        assert_eq!(batch.len(), 1);
        assert!(queue.next_batch(&limits(100, 100, 60_000)).is_none());
        assert_eq!(queue.metrics.queue_depth.get(), 0);
        // An entry larger than the capacity still fits an empty queue.
        let queue = Queue::new(3, Metrics::new());
        let (big, _rbig) = entry(5, 10, &[]);
        queue.push(big).unwrap();
    }

    #[test]
    fn batches_are_due_when_full_or_after_the_wait() {
        let queue = Queue::new(100, Metrics::new());
        let mut receivers = Vec::new();
        for tokens in [4, 4, 4] {
            let (e, r) = entry(1, tokens, &[]);
            queue.push(e).unwrap();
            receivers.push(r);
        }
        // 8 tokens are due at once: two entries fit, the third waits.
        let started = Instant::now();
        let batch = queue.next_batch(&limits(8, 100, 60_000)).unwrap();
        assert_eq!(batch.len(), 2);
        assert!(started.elapsed() < Duration::from_secs(5));
        // One entry of 4 tokens waits the 30 ms for company, then goes alone.
        let batch = queue.next_batch(&limits(8, 100, 30)).unwrap();
        assert_eq!(batch.len(), 1);
        assert!(started.elapsed() >= Duration::from_millis(30));
        // An entry alone over the budget is a batch of its own; so is one over the sentences.
        let (e, _r) = entry(1, 50, &[]);
        queue.push(e).unwrap();
        let (e, _r2) = entry(1, 5, &[]);
        queue.push(e).unwrap();
        assert_eq!(queue.next_batch(&limits(8, 100, 60_000)).unwrap().len(), 1);
        assert_eq!(queue.next_batch(&limits(8, 1, 60_000)).unwrap().len(), 1);
    }

    /// Sixteen one-sentence requests arriving while two workers wait are split eight and
    /// eight, not all taken by the first worker, although a batch may hold 64.
    #[test]
    fn idle_workers_share_the_waiting_requests() {
        let queue = Queue::new(100, Metrics::new());
        // The wait is long enough for all 16 to arrive, even on a busy machine.
        let limits = limits(1000, 64, 300);
        std::thread::scope(|scope| {
            let workers: Vec<_> =
                (0..2).map(|_| scope.spawn(|| queue.next_batch(&limits).unwrap().len())).collect();
            while queue.lock().idle_workers < 2 {
                std::thread::yield_now();
            }
            let receivers: Vec<_> = (0..16)
                .map(|_| {
                    let (e, r) = entry(1, 3, &[]);
                    queue.push(e).unwrap();
                    r
                })
                .collect();
            let sizes: Vec<usize> = workers.into_iter().map(|worker| worker.join().unwrap()).collect();
            assert_eq!(sizes, [8, 8]);
            drop(receivers);
        });
        assert_eq!(queue.lock().idle_workers, 0);
    }

    #[test]
    fn abandoned_entries_are_dropped() {
        let queue = Queue::new(100, Metrics::new());
        let (a, ra) = entry(2, 4, &[]);
        let (b, _rb) = entry(3, 4, &[]);
        queue.push(a).unwrap();
        queue.push(b).unwrap();
        drop(ra);
        let batch = queue.next_batch(&limits(100, 100, 0)).unwrap();
        assert_eq!(batch.iter().map(|e| e.sentences.len()).collect::<Vec<_>>(), [3]);
    }

    /// A batch of 8 running sentences takes nothing until a quarter of 8 waits, or the oldest
    /// has waited `max_wait`, or the queue is closed; joining entries fill it up to 10
    /// sentences, and one that does not fit waits.
    #[test]
    fn entries_join_a_running_batch_once_due_and_while_they_fit() {
        let queue = Queue::new(100, Metrics::new());
        let patient = limits(1000, 10, 60_000);
        let (a, _ra) = entry(1, 3, &[]);
        queue.push(a).unwrap();
        assert!(queue.take_joining(&patient, 8).is_empty());
        let (b, _rb) = entry(1, 3, &[]);
        queue.push(b).unwrap();
        assert_eq!(queue.take_joining(&patient, 8).len(), 2);
        // Three sentences are due for 8 running, but only 2 fit; with 6 running, they join.
        let (c, _rc) = entry(3, 9, &[]);
        queue.push(c).unwrap();
        assert!(queue.take_joining(&patient, 8).is_empty());
        assert_eq!(queue.take_joining(&patient, 6).len(), 1);
        // One sentence is not a quarter of 8, but is due after the wait, or when closed.
        let (d, _rd) = entry(1, 3, &[]);
        queue.push(d).unwrap();
        assert!(queue.take_joining(&patient, 8).is_empty());
        assert_eq!(queue.take_joining(&limits(1000, 10, 0), 8).len(), 1);
        let (e, _re) = entry(1, 3, &[]);
        queue.push(e).unwrap();
        queue.close();
        assert_eq!(queue.take_joining(&patient, 8).len(), 1);
        assert_eq!(queue.metrics.queue_depth.get(), 0);
    }
}
