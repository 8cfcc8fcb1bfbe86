//! Dynamic batching: a bounded queue of requests and the worker thread that translates them.
//!
//! Handlers [`Queue::push`] an [`Entry`] (a request's sentences, their source tokens, the search
//! and a reply channel) and await the reply. The worker, which alone holds the model, takes the
//! waiting entries as one batch when they hold `max_tokens` source tokens or `max_sentences`
//! sentences, or when the oldest has waited `max_wait` ([`Queue::next_batch`]); it translates
//! together the sentences of the entries whose search options are equal ([`group_by_search`]),
//! sorted by length inside [`Translator::translate_lines`], and answers each entry with its own
//! sentences' translations, in its order. A sampling request is translated alone, so that its
//! samples are those `locus translate --sample` draws for the same lines and seed.
//!
//! A request whose client stopped waiting (a timeout) is dropped from the queue unanswered; a
//! batch that fails is retried one request at a time, so that one bad request fails alone.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use locus_train::translate::LineTranslation;
use locus_train::Translator;
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
        let mut batch: Vec<Entry> = Vec::new();
        let (mut sentences, mut tokens) = (0, 0);
        while let Some(next) = state.entries.front() {
            let fits = sentences + next.sentences.len() <= limits.max_sentences.min(share)
                && tokens + next.tokens <= limits.max_tokens;
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
        Some(batch)
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

/// Splits a batch into groups translated together: entries with equal search options, in order
/// of their first entry; a sampling entry is a group of its own.
pub fn group_by_search(batch: Vec<Entry>) -> Vec<Vec<Entry>> {
    let mut groups: Vec<Vec<Entry>> = Vec::new();
    for entry in batch {
        let joins = |group: &&mut Vec<Entry>| !entry.search.samples() && group[0].search == entry.search;
        match groups.iter_mut().find(joins) {
            Some(group) => group.push(entry),
            None => groups.push(vec![entry]),
        }
    }
    groups
}

/// The worker's loop: translates the queue's batches until it is closed and empty.
/// `translator`'s batch size and token budget split each group into model batches.
pub fn run_worker(queue: &Queue, translator: &mut Translator, limits: &BatchLimits, metrics: &Metrics) {
    while let Some(batch) = queue.next_batch(limits) {
        let started = Instant::now();
        let sentences: usize = batch.iter().map(|entry| entry.sentences.len()).sum();
        metrics.batch_sentences.observe(sentences as f64);
        metrics.batch_tokens.observe(batch.iter().map(|entry| entry.tokens).sum::<usize>() as f64);
        for group in group_by_search(batch) {
            translate_group(translator, group, metrics);
        }
        metrics.sentences.inc_by(sentences as u64);
        metrics.busy_seconds.inc_by(started.elapsed().as_secs_f64());
    }
}

/// Translates the sentences of `group` together and answers each entry; if that fails, each
/// entry on its own, so that the failure stays with the request that causes it.
fn translate_group(translator: &mut Translator, group: Vec<Entry>, metrics: &Metrics) {
    let lines: Vec<&str> = group.iter().flat_map(|e| e.sentences.iter().map(String::as_str)).collect();
    match translate(translator, &group[0].search, &lines) {
        Ok(mut translated) => {
            for entry in group.into_iter().rev() {
                let own = translated.split_off(translated.len() - entry.sentences.len());
                // The client may have stopped waiting; nothing else to do then.
                let _ = entry.reply.send(Ok(own));
            }
        }
        Err(_) if group.len() > 1 => {
            for entry in group {
                translate_group(translator, vec![entry], metrics);
            }
        }
        Err(message) => {
            metrics.worker_failures.inc();
            for entry in group {
                let _ = entry.reply.send(Err(message.clone()));
            }
        }
    }
}

/// `lines` translated with `search`; a panic in the model is an error too, so that the worker
/// lives on.
fn translate(
    translator: &mut Translator,
    search: &SearchArgs,
    lines: &[&str],
) -> Result<Vec<LineTranslation>, String> {
    search.configure(translator).map_err(|e| format!("{e:#}"))?;
    match catch_unwind(AssertUnwindSafe(|| translator.translate_lines(lines, 0))) {
        Ok(Ok(translated)) => Ok(translated),
        Ok(Err(e)) => Err(format!("translation failed: {e}")),
        Err(_) => Err("translation failed: the model panicked".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search_args::parse_search_args;

    fn entry(sentences: usize, tokens: usize, args: &[&str]) -> (Entry, oneshot::Receiver<Reply>) {
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

    #[test]
    fn equal_searches_share_a_group_and_samples_go_alone() {
        let specs: [&[&str]; 6] =
            [&[], &["--beam", "4"], &[], &["--sample"], &["--sample"], &["--beam", "4"]];
        let batch: Vec<Entry> = specs.iter().map(|args| entry(1, 1, args).0).collect();
        let sizes: Vec<(usize, usize)> =
            group_by_search(batch).iter().map(|group| (group.len(), group[0].search.nbest())).collect();
        assert_eq!(sizes, [(2, 1), (2, 1), (1, 1), (1, 1)]);
    }
}
