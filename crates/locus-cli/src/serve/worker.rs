//! The translation workers' loop: each worker owns a translator over the one loaded model,
//! takes requests from the [`Queue`] and answers them.
//!
//! Greedy requests are decoded by continuous batching ([`RunningBatch`], as Hugging Face
//! text-generation-inference and vLLM schedule generation): between two decoding steps the
//! requests due ([`Queue::take_joining`]) join the sentences being decoded, and each request is
//! answered as soon as its own sentences end, not when the longest sentence of a batch does.
//! Beam search and sampling requests are translated in batches of requests with equal options
//! ([`group_by_search`]) by [`Translator::translate_lines`], sorted by length; while they
//! decode, the worker's running batch waits. A sampling request is translated alone, so that its
//! samples are those `locus translate --sample` draws for the same lines and seed.
//!
//! A failure stays with the requests it can come from: a sentence that fails to tokenize fails
//! its own request; a group that fails is retried one request at a time; a model error or panic
//! in the running batch fails the requests decoding in it (a batched step cannot tell which row
//! caused it), and the worker goes on with an empty batch. A request whose client stopped
//! waiting is decoded to its end and its answer dropped.

use std::collections::{hash_map, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use locus_model::{Admission, Finished, RunningBatch};
use locus_train::translate::LineTranslation;
use locus_train::Translator;

use super::batcher::{BatchLimits, Entry, Queue};
use super::metrics::Metrics;
use crate::search_args::SearchArgs;

/// Translates the queue's requests until it is closed and empty. `translator`'s batch size and
/// token budget split each beam or sampling group into model batches.
pub fn run_worker(queue: &Queue, translator: &mut Translator, limits: &BatchLimits, metrics: &Metrics) {
    let mut greedy = GreedyRequests::new(translator.running_batch());
    loop {
        let taken = if greedy.batch.is_empty() {
            match queue.next_batch(limits) {
                Some(batch) => batch,
                None => return,
            }
        } else {
            queue.take_joining(limits, greedy.batch.len())
        };
        let started = Instant::now();
        if !taken.is_empty() {
            metrics
                .batch_sentences
                .observe(taken.iter().map(|entry| entry.sentences.len()).sum::<usize>() as f64);
            metrics.batch_tokens.observe(taken.iter().map(|entry| entry.tokens).sum::<usize>() as f64);
        }
        let (joining, others): (Vec<Entry>, Vec<Entry>) =
            taken.into_iter().partition(|entry| entry.search.is_greedy());
        for group in group_by_search(others) {
            translate_group(translator, group, metrics);
        }
        greedy.admit(translator, joining, metrics);
        greedy.step(translator, metrics);
        metrics.busy_seconds.inc_by(started.elapsed().as_secs_f64());
    }
}

/// Which sentence of which request a row of the running batch decodes: the request's key and
/// the sentence's index in it.
type SentenceId = (u64, usize);

/// A greedy request being decoded: its translations so far and how many sentences remain.
struct Decoding {
    entry: Entry,
    outputs: Vec<LineTranslation>,
    remaining: usize,
}

/// The greedy requests a worker is decoding, and their sentences' running batch.
struct GreedyRequests<'a> {
    batch: RunningBatch<'a, SentenceId>,
    requests: HashMap<u64, Decoding>,
    next_key: u64,
}

impl<'a> GreedyRequests<'a> {
    fn new(batch: RunningBatch<'a, SentenceId>) -> Self {
        Self { batch, requests: HashMap::new(), next_key: 0 }
    }

    /// Tokenizes the sentences of `entries` and adds them to the running batch; a request
    /// with only blank lines is answered at once.
    fn admit(&mut self, translator: &mut Translator<'a>, entries: Vec<Entry>, metrics: &Metrics) {
        let mut sources = Vec::new();
        for entry in entries {
            let key = self.next_key;
            self.next_key += 1;
            match sources_of(translator, &entry, key) {
                Ok((outputs, own)) => {
                    let decoding = Decoding { entry, outputs, remaining: own.len() };
                    sources.extend(own);
                    if decoding.remaining == 0 {
                        answer(decoding.entry, decoding.outputs, metrics);
                    } else {
                        self.requests.insert(key, decoding);
                    }
                }
                Err(message) => fail(entry, message, metrics),
            }
        }
        if !sources.is_empty() {
            let admitted = guarded(|| translator.admit(&mut self.batch, &sources));
            self.settle(translator, admitted, metrics);
        }
    }

    /// Decodes one step of the running batch and answers the requests it completes.
    fn step(&mut self, translator: &Translator<'a>, metrics: &Metrics) {
        if !self.batch.is_empty() {
            let stepped = guarded(|| Ok(self.batch.step()?));
            self.settle(translator, stepped, metrics);
        }
    }

    /// Records the sentences that ended and answers the requests they complete; after an
    /// error, fails every request in the batch and empties it.
    fn settle(
        &mut self,
        translator: &Translator<'a>,
        finished: Result<Vec<Finished<SentenceId>>, String>,
        metrics: &Metrics,
    ) {
        let finished = match finished {
            Ok(finished) => finished,
            Err(message) => {
                self.batch.clear();
                for (_, decoding) in self.requests.drain() {
                    fail(decoding.entry, message.clone(), metrics);
                }
                return;
            }
        };
        for Finished { id: (key, line), hypothesis } in finished {
            // A request that already failed is gone; its other sentences end unread.
            let hash_map::Entry::Occupied(mut decoding) = self.requests.entry(key) else { continue };
            match translator.to_translation(hypothesis) {
                Ok(translation) => decoding.get_mut().outputs[line].translations = vec![translation],
                Err(e) => {
                    fail(decoding.remove().entry, format!("translation failed: {e}"), metrics);
                    continue;
                }
            }
            decoding.get_mut().remaining -= 1;
            if decoding.get().remaining == 0 {
                let done = decoding.remove();
                answer(done.entry, done.outputs, metrics);
            }
        }
    }
}

/// The sentences of `entry` before decoding (a blank line already translated) and the sources
/// of those to decode, with `entry`'s search options.
#[allow(clippy::type_complexity)]
fn sources_of(
    translator: &mut Translator,
    entry: &Entry,
    key: u64,
) -> Result<(Vec<LineTranslation>, Vec<(Admission<SentenceId>, Vec<u32>)>), String> {
    entry.search.configure(translator).map_err(|e| format!("{e:#}"))?;
    let mut outputs = Vec::with_capacity(entry.sentences.len());
    let mut sources = Vec::new();
    for (line, sentence) in entry.sentences.iter().enumerate() {
        let (tokens, output) = translator.source(sentence).map_err(|e| format!("translation failed: {e}"))?;
        if !tokens.is_empty() {
            sources.push((translator.admission((key, line), &tokens), tokens));
        }
        outputs.push(output);
    }
    Ok((outputs, sources))
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

/// Translates the sentences of `group` together and answers each entry; if that fails, each
/// entry on its own, so that the failure stays with the request that causes it.
fn translate_group(translator: &mut Translator, group: Vec<Entry>, metrics: &Metrics) {
    let lines: Vec<&str> = group.iter().flat_map(|e| e.sentences.iter().map(String::as_str)).collect();
    match translate(translator, &group[0].search, &lines) {
        Ok(mut translated) => {
            for entry in group.into_iter().rev() {
                let own = translated.split_off(translated.len() - entry.sentences.len());
                answer(entry, own, metrics);
            }
        }
        Err(_) if group.len() > 1 => {
            for entry in group {
                translate_group(translator, vec![entry], metrics);
            }
        }
        Err(message) => {
            for entry in group {
                fail(entry, message.clone(), metrics);
            }
        }
    }
}

/// `lines` translated with `search`.
fn translate(
    translator: &mut Translator,
    search: &SearchArgs,
    lines: &[&str],
) -> Result<Vec<LineTranslation>, String> {
    search.configure(translator).map_err(|e| format!("{e:#}"))?;
    guarded(|| translator.translate_lines(lines, 0))
}

/// What `work` returns, with its error, or a panic in the model, as a message, so that the
/// worker lives on.
fn guarded<T>(work: impl FnOnce() -> locus_train::Result<T>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("translation failed: {e}")),
        Err(_) => Err("translation failed: the model panicked".into()),
    }
}

/// Sends `entry` its translations (the client may have stopped waiting; nothing to do then).
fn answer(entry: Entry, translations: Vec<LineTranslation>, metrics: &Metrics) {
    metrics.sentences.inc_by(translations.len() as u64);
    let _ = entry.reply.send(Ok(translations));
}

/// Answers `entry` with an error.
fn fail(entry: Entry, message: String, metrics: &Metrics) {
    metrics.worker_failures.inc();
    let _ = entry.reply.send(Err(message));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::batcher::tests::entry;

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
