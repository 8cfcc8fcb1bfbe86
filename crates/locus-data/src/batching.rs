//! Token-budget batching with length bucketing, in the style of fairseq.
//!
//! [`BatchPlanner::plan`] groups example indices into batches so that each
//! batch, once padded, holds at most `max_tokens` tokens:
//!
//! 1. Examples are ordered by `(source length, target length)` (by
//!    `(target length, source length)` under a target budget); ties are
//!    broken by a random key drawn from the `(seed, epoch)` generator, so
//!    equal-length examples land in different batches from epoch to epoch.
//! 2. The ordered examples are cut greedily into batches such that
//!    `batch_len * max(longest source + 1, longest target + 1) <= max_tokens`
//!    (or `batch_len * (longest target + 1)` with [`TokenBudget::Target`];
//!    and `batch_len <= max_sentences` when set). The `+ 1` is the EOS the
//!    model appends to the source and the BOS/EOS it adds to the target
//!    input/output. The budget therefore counts padding: it bounds the size
//!    of the padded `batch_len x seq_len` tensors, which is what determines
//!    memory use.
//! 3. The order of the batches is shuffled with the same generator.
//!
//! Because neighbours in the ordering have similar lengths, batches are
//! length-homogeneous and waste little compute on padding.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// Which sequence lengths `max_tokens` counts (`data.token_budget`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenBudget {
    /// The longer of source and target, as fairseq's `--max-tokens`.
    #[default]
    Longer,
    /// The target alone: batch size × (longest target + 1).
    Target,
}

impl TokenBudget {
    /// The per-example length the budget counts, plus one for the EOS/BOS the model adds.
    fn padded_len(self, src_len: usize, tgt_len: usize) -> usize {
        match self {
            Self::Longer => src_len.max(tgt_len),
            Self::Target => tgt_len,
        }
        .saturating_add(1)
    }
}

/// A tokenized sentence pair, without BOS/EOS (the model adds those).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenizedPair {
    /// Source subword ids.
    pub src: Vec<u32>,
    /// Target subword ids.
    pub tgt: Vec<u32>,
}

impl TokenizedPair {
    /// `(source length, target length)` in subword tokens.
    pub fn lengths(&self) -> (usize, usize) {
        (self.src.len(), self.tgt.len())
    }
}

/// Plans token-budget batches; see the [module documentation](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPlanner {
    /// Upper bound on `batch_len * (longest sequence + 1)`, padding included.
    pub max_tokens: usize,
    /// Optional upper bound on the number of examples in a batch.
    pub max_sentences: Option<usize>,
    /// Which lengths `max_tokens` counts.
    pub budget: TokenBudget,
}

impl BatchPlanner {
    /// Splits the examples, given by their `(source, target)` lengths without
    /// specials, into batches of example indices.
    ///
    /// Every index appears in exactly one batch. The result depends only on
    /// `lengths`, the planner's limits, `seed` and `epoch`.
    ///
    /// # Errors
    ///
    /// [`DataError::Config`] if `max_tokens` or `max_sentences` is zero, and
    /// [`DataError::ExampleTooLong`] naming the first example that alone
    /// needs more than `max_tokens` tokens.
    pub fn plan(&self, lengths: &[(usize, usize)], seed: u64, epoch: u64) -> Result<Vec<Vec<usize>>> {
        self.check_limits()?;
        self.check_examples_fit(lengths)?;
        let mut rng = epoch_rng(seed, epoch);
        let order = length_order(lengths, self.budget, &mut rng);
        let mut batches = self.cut(lengths, &order);
        batches.shuffle(&mut rng);
        Ok(batches)
    }

    /// Rejects limits under which no example could ever be batched.
    fn check_limits(&self) -> Result<()> {
        if self.max_tokens == 0 {
            return Err(DataError::config("data.max_tokens", "(0) must be positive"));
        }
        if self.max_sentences == Some(0) {
            return Err(DataError::config(
                "data.max_sentences",
                "(0) must be positive (leave it out for no limit)",
            ));
        }
        Ok(())
    }

    /// Fails on the first example that does not fit into a batch on its own.
    fn check_examples_fit(&self, lengths: &[(usize, usize)]) -> Result<()> {
        match lengths.iter().position(|&(s, t)| self.budget.padded_len(s, t) > self.max_tokens) {
            Some(index) => {
                let (src_len, tgt_len) = lengths[index];
                Err(DataError::ExampleTooLong {
                    index,
                    src_len,
                    tgt_len,
                    needed: self.budget.padded_len(src_len, tgt_len),
                    max_tokens: self.max_tokens,
                })
            }
            None => Ok(()),
        }
    }

    /// Cuts `order` greedily into batches that respect both limits.
    ///
    /// Assumes every example fits on its own (checked beforehand), so every
    /// batch is non-empty.
    fn cut(&self, lengths: &[(usize, usize)], order: &[usize]) -> Vec<Vec<usize>> {
        let max_sentences = self.max_sentences.unwrap_or(usize::MAX);
        let mut batches = Vec::new();
        let mut batch: Vec<usize> = Vec::new();
        let mut longest = 0;
        for &index in order {
            let (s, t) = lengths[index];
            let candidate_longest = longest.max(self.budget.padded_len(s, t));
            let too_many = batch.len() + 1 > max_sentences;
            let too_big = (batch.len() + 1).saturating_mul(candidate_longest) > self.max_tokens;
            if !batch.is_empty() && (too_many || too_big) {
                batches.push(std::mem::take(&mut batch));
                longest = self.budget.padded_len(s, t);
            } else {
                longest = candidate_longest;
            }
            batch.push(index);
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        batches
    }
}

impl BatchPlanner {
    /// The number of tokens `batch` occupies once padded, as the budget counts it, e.g.
    /// `batch.len() * max(longest source + 1, longest target + 1)`.
    ///
    /// Indices must be valid for `lengths`; invalid ones are ignored.
    pub fn padded_tokens(&self, lengths: &[(usize, usize)], batch: &[usize]) -> usize {
        let longest = batch
            .iter()
            .filter_map(|&i| lengths.get(i))
            .map(|&(s, t)| self.budget.padded_len(s, t))
            .max()
            .unwrap_or(0);
        batch.len() * longest
    }
}

/// The generator for one epoch: seeded from `seed` and `epoch` without
/// collisions (each fills its own eight bytes of the 32-byte ChaCha seed).
fn epoch_rng(seed: u64, epoch: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&epoch.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

/// Example indices ordered by `(source length, target length, random key)`, or target length
/// first under a target budget.
fn length_order(lengths: &[(usize, usize)], budget: TokenBudget, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let key = |s: usize, t: usize| match budget {
        TokenBudget::Longer => (s, t),
        TokenBudget::Target => (t, s),
    };
    let mut keyed: Vec<(usize, usize, u64, usize)> = lengths
        .iter()
        .enumerate()
        .map(|(i, &(s, t))| {
            let (first, second) = key(s, t);
            (first, second, rng.random::<u64>(), i)
        })
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, _, _, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lengths resembling a real corpus: 2000 examples, sources 1..=60
    /// tokens, targets within a few tokens of their source.
    fn corpus_lengths() -> Vec<(usize, usize)> {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        (0..2000)
            .map(|_| {
                let s = rng.random_range(1..=60usize);
                let t = (s as i64 + rng.random_range(-3..=3i64)).max(1) as usize;
                (s, t)
            })
            .collect()
    }

    fn planner() -> BatchPlanner {
        BatchPlanner { max_tokens: 512, max_sentences: None, budget: TokenBudget::Longer }
    }

    #[test]
    fn every_index_appears_exactly_once() {
        let lengths = corpus_lengths();
        let batches = planner().plan(&lengths, 1, 0).unwrap();
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        assert!(batches.iter().all(|b| !b.is_empty()));
    }

    #[test]
    fn budget_and_sentence_limit_hold() {
        let lengths = corpus_lengths();
        let planner = BatchPlanner { max_tokens: 512, max_sentences: Some(12), budget: TokenBudget::Longer };
        let batches = planner.plan(&lengths, 3, 5).unwrap();
        for batch in &batches {
            assert!(planner.padded_tokens(&lengths, batch) <= 512, "{batch:?}");
            assert!(batch.len() <= 12);
        }
        // Short sentences (up to 10 tokens) alone would allow 46 per batch:
        // the sentence limit must actually bind somewhere.
        assert!(batches.iter().any(|b| b.len() == 12));
    }

    #[test]
    fn batches_are_reasonably_full() {
        // Greedy cutting only closes a batch when the next example does not
        // fit, so batches use most of the budget on average.
        let lengths = corpus_lengths();
        let batches = planner().plan(&lengths, 1, 0).unwrap();
        let used: usize = batches.iter().map(|b| planner().padded_tokens(&lengths, b)).sum();
        let fill = used as f64 / (batches.len() * 512) as f64;
        assert!(fill > 0.85, "average fill {fill}");
    }

    #[test]
    fn deterministic_per_epoch_and_different_across_epochs() {
        let lengths = corpus_lengths();
        let p = planner();
        let a = p.plan(&lengths, 42, 3).unwrap();
        let b = p.plan(&lengths, 42, 3).unwrap();
        let c = p.plan(&lengths, 42, 4).unwrap();
        let d = p.plan(&lengths, 43, 3).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn equal_length_examples_mix_across_epochs() {
        // All examples have the same lengths, so only the random tie-break
        // decides who shares a batch.
        let lengths = vec![(10, 10); 100];
        let p = BatchPlanner {
            max_tokens: 110, // 10 examples of 11 tokens per batch
            max_sentences: None,
            budget: TokenBudget::Longer,
        };
        let grouping = |epoch| {
            let batches = p.plan(&lengths, 9, epoch).unwrap();
            assert_eq!(batches.len(), 10);
            let mut groups: Vec<Vec<usize>> = batches
                .into_iter()
                .map(|mut b| {
                    b.sort_unstable();
                    b
                })
                .collect();
            groups.sort();
            groups
        };
        assert_ne!(grouping(0), grouping(1));
    }

    #[test]
    fn padding_is_much_lower_than_with_random_batches() {
        let lengths = corpus_lengths();
        let batches = planner().plan(&lengths, 1, 0).unwrap();
        let real: usize = lengths.iter().map(|&(s, t)| TokenBudget::Longer.padded_len(s, t)).sum();
        let bucketed_padding: usize =
            batches.iter().map(|b| planner().padded_tokens(&lengths, b)).sum::<usize>() - real;

        // Same batch sizes, but examples assigned at random.
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut shuffled: Vec<usize> = (0..lengths.len()).collect();
        shuffled.shuffle(&mut rng);
        let mut random_padding = 0;
        let mut rest = shuffled.as_slice();
        for b in &batches {
            let (batch, tail) = rest.split_at(b.len());
            random_padding += planner().padded_tokens(&lengths, batch);
            rest = tail;
        }
        random_padding -= real;
        assert!(
            bucketed_padding * 10 < random_padding,
            "bucketed {bucketed_padding}, random {random_padding}"
        );
    }

    #[test]
    fn oversized_example_is_an_error_naming_it() {
        let lengths = vec![(5, 5), (3, 4), (40, 70), (80, 2)];
        let p = BatchPlanner { max_tokens: 64, max_sentences: None, budget: TokenBudget::Longer };
        let err = p.plan(&lengths, 0, 0).unwrap_err();
        match &err {
            DataError::ExampleTooLong { index, src_len, tgt_len, needed, max_tokens } => {
                assert_eq!((*index, *src_len, *tgt_len), (2, 40, 70));
                assert_eq!((*needed, *max_tokens), (71, 64));
            }
            other => panic!("expected ExampleTooLong, got {other:?}"),
        }
        assert!(err.to_string().starts_with("example 2 (source 40 tokens, target 70 tokens)"));
    }

    #[test]
    fn a_target_budget_counts_targets_only() {
        // Long sources, short targets: under a target budget of 64, 8 examples of
        // target 7 (+1) fit per batch, whatever their 40-token sources.
        let lengths = vec![(40, 7); 20];
        let p = BatchPlanner { max_tokens: 64, max_sentences: None, budget: TokenBudget::Target };
        let batches = p.plan(&lengths, 1, 0).unwrap();
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>().iter().max(), Some(&8));
        assert!(batches.iter().all(|b| p.padded_tokens(&lengths, b) <= 64));
        // The same data under the longer-side budget: 64 / 41 = 1 example per batch.
        let longer = BatchPlanner { budget: TokenBudget::Longer, ..p };
        assert_eq!(longer.plan(&lengths, 1, 0).unwrap().len(), 20);
    }

    #[test]
    fn example_exactly_at_the_budget_fits() {
        // max(63, 10) + 1 = 64 tokens: allowed, alone in its batch.
        let lengths = vec![(63, 10), (1, 1)];
        let p = BatchPlanner { max_tokens: 64, max_sentences: None, budget: TokenBudget::Longer };
        let mut batches = p.plan(&lengths, 0, 0).unwrap();
        batches.sort();
        assert_eq!(batches, vec![vec![0], vec![1]]);
    }

    #[test]
    fn zero_limits_and_empty_input() {
        let zero = BatchPlanner { max_tokens: 0, max_sentences: None, budget: TokenBudget::Longer };
        assert!(matches!(zero.plan(&[(1, 1)], 0, 0), Err(DataError::Config { .. })));
        let zero_sent = BatchPlanner { max_tokens: 10, max_sentences: Some(0), budget: TokenBudget::Longer };
        assert!(matches!(zero_sent.plan(&[(1, 1)], 0, 0), Err(DataError::Config { .. })));
        assert!(planner().plan(&[], 0, 0).unwrap().is_empty());
    }

    #[test]
    fn tokenized_pair_lengths() {
        let pair = TokenizedPair { src: vec![5, 6, 7], tgt: vec![8] };
        assert_eq!(pair.lengths(), (3, 1));
    }
}
