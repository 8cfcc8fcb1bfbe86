//! Batched beam search in the manner of fairseq's `SequenceGenerator`, with a stopping rule that
//! keeps searching while a live hypothesis can still beat the returned ones.
//!
//! Every sentence keeps `beam` live hypotheses. At each step its candidates are all one-token
//! extensions of them, scored by their summed log-probability; the best `2 × beam` are taken in
//! order. EOS candidates among the first `beam` finish a hypothesis, scored by
//! `log_prob / lp(length)` with GNMT's length penalty `lp(n) = ((5 + n) / 6)^alpha` (`n` counts
//! EOS); the best `beam` others live on. At its length limit a sentence may only take EOS.
//! Done sentences leave the batch (their rows are dropped from the model's cache), so the work
//! shrinks as sentences finish. Ties are broken by lower beam, then lower token id, and among
//! finished hypotheses by the earlier finished.
//!
//! # When a sentence is done
//!
//! A sentence is done when no live hypothesis can still beat the `nbest`-th best finished one,
//! so that its n-best list can no longer change; or at its length limit; or when it has no
//! live hypothesis left. Log-probabilities are at most 0, so a live hypothesis of `t` tokens
//! and summed log-probability `L` can at best finish with the score `L / lp(n)` for some
//! length `n` it can still reach, from `max(t, min_len) + 1` to `max_len + 1`. `L / lp(n)` is
//! monotone in `n`, so that best is at one end: the longest output for `alpha > 0`, the
//! shortest for `alpha < 0`, either for `alpha = 0` (where it is `L`). The sentence is done
//! once it has `nbest` finished hypotheses and no live hypothesis's best exceeds the `nbest`-th
//! best score (one that can only equal it does not displace it, since ties go to the earlier
//! finished). The search then returns the best `nbest` outputs of all that it would ever
//! finish: only its pruning to `beam` candidates can hide better ones, and a beam that holds
//! every candidate at every step makes it exhaustive search.
//!
//! This is the rule of fairseq's old `--no-early-stop` ("continue searching even after
//! finalizing k=beam hypotheses; this is more correct", dropped from later versions) and of
//! Hugging Face transformers' `early_stopping="never"`. Both wait for `beam` finished
//! hypotheses and compare the worst of them with the best live summed log-probability divided
//! by the penalty of the maximum length (Hugging Face: of the current length when `alpha <=
//! 0`), with `length^alpha` as the penalty rather than GNMT's. Here the comparison is with the
//! `nbest`-th best, which is all the returned list needs. Today's fairseq (and Hugging Face's
//! `early_stopping=True`) instead stops as soon as `beam` hypotheses have finished, which can
//! miss a longer output that scores better, with a length penalty or without one; Hugging
//! Face's default (`early_stopping=False`) divides by the penalty of the current length,
//! which is not a bound when `alpha > 0`.
//!
//! With [`BeamOptions::early_stop`], a sentence is done instead as soon as `beam` hypotheses
//! have finished (or at its length limit): today's fairseq rule, and CTranslate2's with its
//! default patience of 1. It decodes fewer steps and returns what those tools return, but it
//! may miss the better-scoring longer output that the default rule would find.
//!
//! The cost: with `alpha > 0` the bound divides by the penalty of the longest reachable
//! output, so a sentence often runs many steps past its best output's EOS, until its live
//! hypotheses' log-probabilities have fallen far enough (fairseq's help put `--no-early-stop`
//! at 50% more generation time). With `alpha = 0` the bound is `L` itself, and beam size 1 is
//! greedy search (the first EOS it takes ends it); with `alpha != 0` beam size 1 may go on past
//! that EOS to a better-scoring output.
//!
//! The logits stay where the model computed them: each step brings back only every
//! hypothesis's best `2 × beam + 1` tokens with their log-probabilities ([`super::top_k`]),
//! which hold its best `2 × beam` other than EOS; a sentence at its length limit reads EOS's
//! logits instead, normalised by its row's log-sum-exp.

use candle_core::DType;

use super::top_k::row_top_k_log_probs;
use super::{Hypothesis, LengthLimits, Scorer};
use crate::error::{ModelError, Result};

/// Beam search settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BeamOptions {
    /// Live hypotheses per sentence.
    pub beam: usize,
    /// Hypotheses returned per sentence (at most `beam`).
    pub nbest: usize,
    /// GNMT's alpha: 0 ranks by summed log-probability, larger values favour longer outputs.
    pub length_penalty: f64,
    /// Stop a sentence as soon as `beam` hypotheses have finished (fairseq's and CTranslate2's
    /// rule), rather than when no live hypothesis can beat the n-best list any more (see the
    /// [module documentation](self)).
    pub early_stop: bool,
}

impl Default for BeamOptions {
    fn default() -> Self {
        Self { beam: 4, nbest: 1, length_penalty: 1.0, early_stop: false }
    }
}

/// GNMT's length penalty for an output of `len` tokens (EOS included).
fn length_penalty(len: usize, alpha: f64) -> f64 {
    ((5.0 + len as f64) / 6.0).powf(alpha)
}

/// The best score a live hypothesis of `len` tokens and summed log-probability `log_prob` can
/// still finish with, given that later tokens' log-probabilities are at most 0: `log_prob /
/// lp(n)` at the better end of its reachable lengths `n` (EOS included), from `max(len,
/// min_len) + 1` to `max_len + 1` (`lp` is monotone in `n`).
fn best_final_score(log_prob: f64, len: usize, min_len: usize, max_len: usize, alpha: f64) -> f64 {
    let shortest = len.max(min_len).min(max_len) + 1;
    let longest = max_len + 1;
    (log_prob / length_penalty(shortest, alpha)).max(log_prob / length_penalty(longest, alpha))
}

/// A hypothesis still being extended.
#[derive(Debug, Clone)]
struct Live {
    tokens: Vec<u32>,
    log_prob: f64,
}

/// One sentence's search.
struct Sentence {
    live: Vec<Live>,
    /// The best `nbest` finished hypotheses so far, best first; ties in finishing order.
    finished: Vec<Hypothesis>,
    /// How many hypotheses have finished, kept or not.
    finished_count: usize,
    max_len: usize,
}

impl Sentence {
    /// Adds a finished hypothesis to the n-best list (of at most `nbest`), after those that
    /// score as well.
    fn finish(&mut self, hypothesis: Hypothesis, nbest: usize) {
        self.finished_count += 1;
        let at = self.finished.partition_point(|kept| kept.score.total_cmp(&hypothesis.score).is_ge());
        if at < nbest {
            self.finished.insert(at, hypothesis);
            self.finished.truncate(nbest);
        }
    }

    /// Whether the n-best list is full and none of `live` (hypotheses of `len` tokens) can
    /// still finish with a better score than its last.
    fn settled(&self, live: &[Live], len: usize, nbest: usize, min_len: usize, alpha: f64) -> bool {
        let Some(last) = self.finished.get(nbest - 1) else {
            return false;
        };
        live.iter().all(|hyp| best_final_score(hyp.log_prob, len, min_len, self.max_len, alpha) <= last.score)
    }
}

/// A scored one-token extension: `(summed log-prob, beam, token)`.
type Candidate = (f64, usize, u32);

/// The best `n` candidates of one sentence, best first; ties go to the lower beam and token.
/// `options(b)` gives the tokens hypothesis `b` may take next, with their log-probabilities;
/// each hypothesis's best `n` are among them.
fn best_candidates(live: &[Live], options: impl Fn(usize) -> Vec<(u32, f32)>, n: usize) -> Vec<Candidate> {
    let order = |a: &Candidate, b: &Candidate| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2));
    let mut best: Vec<Candidate> = Vec::with_capacity(n + 1);
    for (b, hyp) in live.iter().enumerate() {
        for (token, lp) in options(b) {
            if lp == f32::NEG_INFINITY {
                continue;
            }
            let candidate = (hyp.log_prob + lp as f64, b, token);
            if best.len() == n && best.last().is_none_or(|worst| order(&candidate, worst).is_ge()) {
                continue;
            }
            let at = best.partition_point(|kept| order(kept, &candidate).is_lt());
            best.insert(at, candidate);
            best.truncate(n);
        }
    }
    best
}

/// Beam search from `scorer`, whose rows start as one per sentence; `max_lens[i]` is sentence
/// `i`'s length limit. Returns up to `nbest` hypotheses per sentence, best first. A sentence
/// searches until no live hypothesis can beat its `nbest`-th best finished one (see the
/// [module documentation](self)); the scorer's log-probabilities must be at most 0.
///
/// # Errors
/// `beam` or `nbest` of 0, `nbest > beam`, and errors of the scorer.
pub fn beam_search(
    scorer: &mut dyn Scorer,
    max_lens: &[usize],
    eos: u32,
    bos: u32,
    limits: &LengthLimits,
    options: &BeamOptions,
) -> Result<Vec<Vec<Hypothesis>>> {
    let BeamOptions { beam, nbest, length_penalty: alpha, early_stop } = *options;
    if beam == 0 || nbest == 0 || nbest > beam {
        return Err(ModelError::Search(format!("beam search needs 1 <= nbest ({nbest}) <= beam ({beam})")));
    }
    let mut sentences: Vec<Sentence> = max_lens
        .iter()
        .map(|&max_len| Sentence {
            live: vec![Live { tokens: Vec::new(), log_prob: 0.0 }],
            finished: Vec::new(),
            finished_count: 0,
            max_len,
        })
        .collect();
    // Sentences still searching, in row order; each owns `live.len()` consecutive rows.
    let mut active: Vec<usize> = (0..sentences.len()).collect();
    let mut step_tokens: Vec<u32> = vec![bos; sentences.len()];
    let mut step = 0;
    while !active.is_empty() {
        let logits = scorer.step(&step_tokens)?;
        // Each row's best `2 × beam` tokens other than EOS are among its best `2 × beam + 1`;
        // sentences at their length limit take EOS's log-probabilities instead.
        let top = row_top_k_log_probs(&logits, 2 * beam + 1)?;
        let eos_log_probs: Vec<f32> = if active.iter().any(|&s| step >= sentences[s].max_len) {
            let eos_logits: Vec<f32> =
                logits.narrow(1, eos as usize, 1)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
            eos_logits
                .iter()
                .zip(&top.log_normalizers)
                .map(|(logit, log_normalizer)| logit - log_normalizer)
                .collect()
        } else {
            Vec::new()
        };
        let mut row_start = 0;
        let mut next_rows: Vec<u32> = Vec::new();
        let mut next_tokens: Vec<u32> = Vec::new();
        let mut still_active = Vec::with_capacity(active.len());
        for &s in &active {
            let sentence = &mut sentences[s];
            let rows = sentence.live.len();
            let at_limit = step >= sentence.max_len;
            let options = |b: usize| -> Vec<(u32, f32)> {
                let row = row_start + b;
                if at_limit {
                    vec![(eos, eos_log_probs[row])]
                } else {
                    top.row(row).filter(|&(token, _)| token != eos || step >= limits.min_len).collect()
                }
            };
            let mut next_live = Vec::with_capacity(beam);
            for (rank, (log_prob, b, token)) in
                best_candidates(&sentence.live, options, 2 * beam).into_iter().enumerate()
            {
                if token == eos {
                    if rank < beam {
                        let tokens = sentence.live[b].tokens.clone();
                        let score = log_prob / length_penalty(tokens.len() + 1, alpha);
                        sentence.finish(Hypothesis { tokens, log_prob, score }, nbest);
                    }
                } else if next_live.len() < beam {
                    let mut tokens = sentence.live[b].tokens.clone();
                    tokens.push(token);
                    next_rows.push((row_start + b) as u32);
                    next_tokens.push(token);
                    next_live.push(Live { tokens, log_prob });
                }
            }
            row_start += rows;
            let settled = if early_stop {
                sentence.finished_count >= beam
            } else {
                sentence.settled(&next_live, step + 1, nbest, limits.min_len, alpha)
            };
            if at_limit || next_live.is_empty() || settled {
                // Done: its rows do not continue.
                next_rows.truncate(next_rows.len() - next_live.len());
                next_tokens.truncate(next_tokens.len() - next_live.len());
                sentence.live.clear();
            } else {
                sentence.live = next_live;
                still_active.push(s);
            }
        }
        active = still_active;
        if !active.is_empty() {
            scorer.select_rows(&next_rows)?;
        }
        step_tokens = next_tokens;
        step += 1;
    }
    Ok(sentences.into_iter().map(|sentence| sentence.finished).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::collections::HashMap;

    /// A toy "model" over the vocabulary {EOS = 0, BOS = 1, a = 2, b = 3} whose next-token
    /// distribution depends only on the prefix, given as a table.
    struct Toy {
        /// The prefix (tokens after BOS) of each row.
        rows: Vec<Vec<u32>>,
        table: fn(&[u32]) -> [f32; 4],
    }

    impl Scorer for Toy {
        fn vocab_size(&self) -> usize {
            4
        }
        fn step(&mut self, tokens: &[u32]) -> Result<Tensor> {
            let mut out = Vec::new();
            for (row, &token) in self.rows.iter_mut().zip(tokens) {
                if token != 1 {
                    row.push(token);
                }
                out.extend((self.table)(row).map(f32::ln));
            }
            Ok(Tensor::from_vec(out, (tokens.len(), 4), &Device::Cpu)?)
        }
        fn select_rows(&mut self, rows: &[u32]) -> Result<()> {
            self.rows = rows.iter().map(|&r| self.rows[r as usize].clone()).collect();
            Ok(())
        }
    }

    /// After BOS: a 0.6, b 0.4. After "a": a, b and EOS equally likely (1/3 each), and so on
    /// uniformly. After "b": EOS 0.9. Greedy takes "a" (0.6), then EOS at best 1/3: "a"
    /// scores 0.2. Beam 2 also keeps "b" and finds "b" EOS: 0.4 × 0.9 = 0.36, the known best.
    fn table(prefix: &[u32]) -> [f32; 4] {
        match prefix {
            [] => [1e-9, 1e-9, 0.6, 0.4],
            [3] => [0.9, 1e-9, 0.05, 0.05],
            _ => [1.0 / 3.0, 1e-9, 1.0 / 3.0, 1.0 / 3.0],
        }
    }

    fn search(beam: usize, nbest: usize) -> Vec<Hypothesis> {
        let mut toy = Toy { rows: vec![Vec::new()], table };
        let limits = LengthLimits { max_len_a: 0.0, max_len_b: 5, min_len: 0 };
        let options = BeamOptions { beam, nbest, length_penalty: 0.0, early_stop: false };
        beam_search(&mut toy, &[5], 0, 1, &limits, &options).unwrap().remove(0)
    }

    #[test]
    fn beam_finds_the_better_sequence_greedy_misses() {
        let greedy = search(1, 1);
        assert_eq!(greedy[0].tokens, [2]);
        assert!((greedy[0].log_prob - (0.6f64 * (1.0 / 3.0)).ln()).abs() < 1e-6);
        let beam = search(2, 1);
        assert_eq!(beam[0].tokens, [3]);
        assert!((beam[0].log_prob - (0.4f64 * 0.9).ln()).abs() < 1e-6);
    }

    #[test]
    fn nbest_lists_are_sorted_and_distinct() {
        let nbest = search(4, 4);
        assert_eq!(nbest.len(), 4);
        assert!(nbest.windows(2).all(|w| w[0].score >= w[1].score), "{nbest:?}");
        for (i, a) in nbest.iter().enumerate() {
            assert!(nbest[i + 1..].iter().all(|b| b.tokens != a.tokens), "{nbest:?}");
        }
        assert_eq!(nbest[0].tokens, [3]);
    }

    #[test]
    fn the_length_limit_forces_eos_and_min_len_forbids_it() {
        let mut toy = Toy { rows: vec![Vec::new()], table };
        let limits = LengthLimits { max_len_a: 0.0, max_len_b: 3, min_len: 2 };
        let options = BeamOptions { beam: 2, nbest: 2, length_penalty: 0.0, early_stop: false };
        let hyps = beam_search(&mut toy, &[3], 0, 1, &limits, &options).unwrap().remove(0);
        assert!(hyps.iter().all(|h| (2..=3).contains(&h.tokens.len())), "{hyps:?}");
    }

    /// A more probable output that finishes after `beam` others: after BOS, a 0.5, b 0.3 and
    /// EOS 0.2 (outside a beam of 2); then "b" EOS 0.27 and "a a" 0.45; then "b a" EOS 0.03
    /// and "a a a" 0.4275, which can only end: "a a a" EOS 0.4275 is the best output. Stopping
    /// once 2 hypotheses have finished ("b" and "b a", at the third step) returns "b", even
    /// without a length penalty.
    fn late_best(prefix: &[u32]) -> [f32; 4] {
        match prefix {
            [] => [0.2, 1e-9, 0.5, 0.3],
            [2] => [0.1, 1e-9, 0.9, 1e-9],
            [3] => [0.9, 1e-9, 0.1, 1e-9],
            [2, 2] => [0.05, 1e-9, 0.95, 1e-9],
            _ => [1.0, 1e-9, 1e-9, 1e-9],
        }
    }

    #[test]
    fn search_goes_on_while_a_live_hypothesis_can_beat_the_finished_ones() {
        for alpha in [0.0, 1.0] {
            let mut toy = Toy { rows: vec![Vec::new()], table: late_best };
            let limits = LengthLimits { max_len_a: 0.0, max_len_b: 3, min_len: 0 };
            let options = BeamOptions { beam: 2, nbest: 1, length_penalty: alpha, early_stop: false };
            let best = beam_search(&mut toy, &[3], 0, 1, &limits, &options).unwrap().remove(0);
            assert_eq!(best[0].tokens, [2, 2, 2], "alpha {alpha}: {best:?}");
            assert!((best[0].log_prob - (0.5f64 * 0.9 * 0.95).ln()).abs() < 1e-6, "alpha {alpha}");
        }
    }

    /// fairseq's and CTranslate2's rule stops at the third step, when "b" and "b a" have
    /// finished, and so returns "b" (0.3 × 0.9), not the better "a a a".
    #[test]
    fn early_stop_ends_a_sentence_when_beam_hypotheses_have_finished() {
        let mut toy = Toy { rows: vec![Vec::new()], table: late_best };
        let limits = LengthLimits { max_len_a: 0.0, max_len_b: 3, min_len: 0 };
        let options = BeamOptions { beam: 2, nbest: 2, length_penalty: 0.0, early_stop: true };
        let found = beam_search(&mut toy, &[3], 0, 1, &limits, &options).unwrap().remove(0);
        let tokens: Vec<&[u32]> = found.iter().map(|hyp| hyp.tokens.as_slice()).collect();
        assert_eq!(tokens, [&[3][..], &[3, 2]]);
        assert!((found[0].log_prob - (0.3f64 * 0.9).ln()).abs() < 1e-6);
        // The third step read each row's second token; a fourth would have read a third.
        assert_eq!(toy.rows[0].len(), 2, "the search stops after its third step");
    }

    #[test]
    fn the_bound_is_the_best_reachable_score_for_every_sign_of_alpha() {
        let l = -2.0;
        // Alpha > 0: the longest output (max_len 6 tokens and EOS) divides most.
        assert_eq!(best_final_score(l, 2, 0, 6, 1.0), l / length_penalty(7, 1.0));
        // Alpha < 0: the shortest, here the min_len of 4 tokens and EOS.
        assert_eq!(best_final_score(l, 2, 4, 6, -1.0), l / length_penalty(5, -1.0));
        assert_eq!(best_final_score(l, 2, 0, 6, 0.0), l);
        // The bound is never below what any reachable length gives.
        for alpha in [-1.0, -0.3, 0.0, 0.6, 2.0] {
            let bound = best_final_score(l, 1, 2, 5, alpha);
            assert!((3..=6).all(|n| l / length_penalty(n, alpha) <= bound), "alpha {alpha}");
        }
    }

    #[test]
    fn length_penalty_matches_gnmt() {
        // ((5 + 7) / 6)^0.6 = 2^0.6.
        assert!((length_penalty(7, 0.6) - 2f64.powf(0.6)).abs() < 1e-12);
        assert_eq!(length_penalty(3, 0.0), 1.0);
    }

    /// A seeded random "model" over {EOS = 0, BOS = 1, a = 2, b = 3, c = 4}: each prefix of
    /// at most `max_len` tokens has its own next-token log-probabilities. EOS is always
    /// possible; each of a, b and c is, at random, impossible (`-inf`) or given a random
    /// weight, so that the tree of possible outputs is sparse and small.
    struct RandomTree {
        log_probs: HashMap<Vec<u32>, [f32; 5]>,
        max_len: usize,
    }

    const TREE_VOCAB: usize = 5;
    const TREE_EOS: u32 = 0;
    const TREE_BOS: u32 = 1;

    impl RandomTree {
        fn new(seed: u64, max_len: usize) -> Self {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut log_probs = HashMap::new();
            let mut prefixes = vec![Vec::new()];
            while let Some(prefix) = prefixes.pop() {
                let mut weights = [0f32; TREE_VOCAB];
                weights[TREE_EOS as usize] = rng.random_range(0.05..1.0);
                // a, b and c; BOS stays impossible.
                for (token, weight) in weights.iter_mut().enumerate().skip(2) {
                    if rng.random_bool(0.45) {
                        *weight = rng.random_range(0.05..1.0);
                        if prefix.len() < max_len {
                            prefixes.push([prefix.as_slice(), &[token as u32]].concat());
                        }
                    }
                }
                let total: f32 = weights.iter().sum();
                log_probs.insert(prefix, weights.map(|w| (w / total).ln()));
            }
            Self { log_probs, max_len }
        }

        /// Every output the tree allows under `min_len` and its `max_len`, with its summed
        /// log-probability (EOS included), added in the order beam search adds them.
        fn outputs(&self, min_len: usize) -> Vec<(Vec<u32>, f64)> {
            let mut outputs = Vec::new();
            let mut stack = vec![(Vec::new(), 0f64)];
            while let Some((prefix, log_prob)) = stack.pop() {
                let next = &self.log_probs[&prefix];
                if prefix.len() >= min_len || prefix.len() == self.max_len {
                    outputs.push((prefix.clone(), log_prob + next[TREE_EOS as usize] as f64));
                }
                if prefix.len() < self.max_len {
                    for token in 2..TREE_VOCAB as u32 {
                        if next[token as usize] > f32::NEG_INFINITY {
                            let tokens = [prefix.as_slice(), &[token]].concat();
                            stack.push((tokens, log_prob + next[token as usize] as f64));
                        }
                    }
                }
            }
            outputs
        }

        /// Whether a beam of `beam` holds every candidate at every step: then beam search
        /// prunes nothing and explores the whole tree, and only its stopping rule can make it
        /// miss the best outputs.
        fn fits(&self, beam: usize, min_len: usize) -> bool {
            let mut live: Vec<Vec<u32>> = vec![Vec::new()];
            for step in 0..=self.max_len {
                let mut candidates = 0;
                let mut next_live = Vec::new();
                for prefix in &live {
                    let next = &self.log_probs[prefix];
                    if step >= min_len || step == self.max_len {
                        candidates += 1;
                    }
                    if step < self.max_len {
                        for token in 2..TREE_VOCAB as u32 {
                            if next[token as usize] > f32::NEG_INFINITY {
                                candidates += 1;
                                next_live.push([prefix.as_slice(), &[token]].concat());
                            }
                        }
                    }
                }
                if candidates > beam {
                    return false;
                }
                live = next_live;
            }
            true
        }
    }

    /// Rows decoding prefixes of a [`RandomTree`].
    struct TreeScorer<'a> {
        tree: &'a RandomTree,
        rows: Vec<Vec<u32>>,
    }

    impl Scorer for TreeScorer<'_> {
        fn vocab_size(&self) -> usize {
            TREE_VOCAB
        }
        fn step(&mut self, tokens: &[u32]) -> Result<Tensor> {
            let mut out = Vec::new();
            for (row, &token) in self.rows.iter_mut().zip(tokens) {
                if token != TREE_BOS {
                    row.push(token);
                }
                out.extend(self.tree.log_probs[row.as_slice()]);
            }
            Ok(Tensor::from_vec(out, (tokens.len(), TREE_VOCAB), &Device::Cpu)?)
        }
        fn select_rows(&mut self, rows: &[u32]) -> Result<()> {
            self.rows = rows.iter().map(|&r| self.rows[r as usize].clone()).collect();
            Ok(())
        }
    }

    /// The issue 19 test: with a beam as wide as the vocabulary, on trees whose every step
    /// fits in it, beam search explores every output, so it must return exactly the best ones
    /// that exhaustive search finds, under every length penalty (negative ones too) and with
    /// or without a minimum length. (A beam as wide as the vocabulary alone does not make beam
    /// search exhaustive: past the first step the candidates outnumber it and are pruned; the
    /// trees here are those that keep them within it.) Stopping once `beam` hypotheses have
    /// finished, as fairseq does, misses outputs that finish later and score better.
    #[test]
    fn beam_search_equals_exhaustive_search_when_the_beam_holds_every_candidate() {
        let (beam, max_len) = (TREE_VOCAB, 4);
        let mut checked = 0;
        let mut failures = Vec::new();
        for seed in 0..200 {
            let tree = RandomTree::new(seed, max_len);
            for min_len in [0, 2] {
                if !tree.fits(beam, min_len) {
                    continue;
                }
                checked += 1;
                for alpha in [0.0, 0.6, 1.0, 2.0, -0.5] {
                    let mut exhaustive: Vec<(Vec<u32>, f64)> = tree
                        .outputs(min_len)
                        .into_iter()
                        .map(|(tokens, log_prob)| {
                            let score = log_prob / length_penalty(tokens.len() + 1, alpha);
                            (tokens, score)
                        })
                        .collect();
                    exhaustive.sort_by(|a, b| b.1.total_cmp(&a.1));
                    for nbest in [1, 3] {
                        let mut scorer = TreeScorer { tree: &tree, rows: vec![Vec::new()] };
                        let limits = LengthLimits { max_len_a: 0.0, max_len_b: max_len, min_len };
                        let options = BeamOptions { beam, nbest, length_penalty: alpha, early_stop: false };
                        let found =
                            beam_search(&mut scorer, &[max_len], TREE_EOS, TREE_BOS, &limits, &options)
                                .unwrap();
                        let found: Vec<(Vec<u32>, f64)> =
                            found[0].iter().map(|h| (h.tokens.clone(), h.score)).collect();
                        let expected = &exhaustive[..nbest.min(exhaustive.len())];
                        // The search renormalises the scorer's log-probabilities (a shift of
                        // about 1e-7 per step here): the outputs must agree, the scores to 1e-6.
                        let agree = found.len() == expected.len()
                            && found.iter().zip(expected).all(
                                |((found, found_score), (want, want_score))| {
                                    found == want && (found_score - want_score).abs() < 1e-6
                                },
                            );
                        if !agree {
                            failures.push(format!(
                                "seed {seed}, min_len {min_len}, alpha {alpha}, nbest {nbest}: \
                                 beam {found:?}, exhaustive {expected:?}"
                            ));
                        }
                    }
                }
            }
        }
        assert!(checked >= 30, "only {checked} trees fit the beam");
        assert!(
            failures.is_empty(),
            "{} of {} searches missed:\n{}",
            failures.len(),
            checked * 10,
            failures.join("\n")
        );
    }
}
