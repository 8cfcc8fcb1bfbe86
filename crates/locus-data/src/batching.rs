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

/// The `(source, target)` lengths of one example in subword tokens, without specials: what the
/// planner batches by. Two bytes a side keep the table of a 20-million-pair corpus at 80 MB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PairLengths {
    /// Source tokens.
    pub src: u16,
    /// Target tokens.
    pub tgt: u16,
}

impl PairLengths {
    /// The lengths `(src, tgt)`, or `None` if a side has more than 65,535 tokens.
    pub fn new(src: usize, tgt: usize) -> Option<Self> {
        Some(Self { src: u16::try_from(src).ok()?, tgt: u16::try_from(tgt).ok()? })
    }

    /// `(source, target)` as `usize`.
    pub fn get(self) -> (usize, usize) {
        (usize::from(self.src), usize::from(self.tgt))
    }

    /// The example's real tokens once collated: both sides, each with its EOS (or BOS).
    pub fn real_tokens(self) -> usize {
        usize::from(self.src) + usize::from(self.tgt) + 2
    }
}

/// The length table of `pairs`.
///
/// # Errors
///
/// [`DataError::ExampleTooLong`] naming the first pair with a side of more than 65,535 tokens.
pub fn pair_lengths(pairs: &[TokenizedPair]) -> Result<Vec<PairLengths>> {
    pairs
        .iter()
        .enumerate()
        .map(|(index, pair)| {
            let (src_len, tgt_len) = pair.lengths();
            PairLengths::new(src_len, tgt_len).ok_or(DataError::ExampleTooLong {
                index,
                src_len,
                tgt_len,
                needed: src_len.max(tgt_len).saturating_add(1),
                max_tokens: usize::from(u16::MAX),
            })
        })
        .collect()
}

/// One epoch's batches: example indices, four bytes each, in one array.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchPlan {
    /// Example indices, batch after batch, in length order.
    order: Vec<u32>,
    /// `(start, end)` of each batch in `order`, in the order the batches are taken.
    bounds: Vec<(u32, u32)>,
}

impl BatchPlan {
    /// The number of batches.
    pub fn len(&self) -> usize {
        self.bounds.len()
    }

    /// Whether there is no batch.
    pub fn is_empty(&self) -> bool {
        self.bounds.is_empty()
    }

    /// The example indices of batch `i`, if there is one.
    pub fn batch(&self, i: usize) -> Option<&[u32]> {
        let &(start, end) = self.bounds.get(i)?;
        self.order.get(start as usize..end as usize)
    }

    /// The batches in the order they are taken.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u32]> + '_ {
        self.bounds.iter().map(|&(start, end)| &self.order[start as usize..end as usize])
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
    /// Splits the examples, given by their lengths, into batches of example indices.
    ///
    /// Every index appears in exactly one batch. The result depends only on
    /// `lengths`, the planner's limits, `seed` and `epoch`.
    ///
    /// # Errors
    ///
    /// [`DataError::Config`] if `max_tokens` or `max_sentences` is zero or there are more than
    /// `u32::MAX` examples, and [`DataError::ExampleTooLong`] naming the first example that
    /// alone needs more than `max_tokens` tokens.
    pub fn plan(&self, lengths: &[PairLengths], seed: u64, epoch: u64) -> Result<BatchPlan> {
        self.check_limits(lengths.len())?;
        self.check_examples_fit(lengths)?;
        let mut rng = epoch_rng(seed, epoch);
        let order = length_order(lengths, self.budget, &mut rng);
        let mut bounds = self.cut(lengths, &order);
        bounds.shuffle(&mut rng);
        Ok(BatchPlan { order, bounds })
    }

    /// Rejects limits under which no example could ever be batched, and more examples than
    /// four-byte indices reach.
    fn check_limits(&self, examples: usize) -> Result<()> {
        if self.max_tokens == 0 {
            return Err(DataError::config("data.max_tokens", "(0) must be positive"));
        }
        if self.max_sentences == Some(0) {
            return Err(DataError::config(
                "data.max_sentences",
                "(0) must be positive (leave it out for no limit)",
            ));
        }
        if u32::try_from(examples).is_err() {
            return Err(DataError::config(
                "data",
                format!("has {examples} training pairs; at most {} can be batched", u32::MAX),
            ));
        }
        Ok(())
    }

    /// Fails on the first example that does not fit into a batch on its own.
    fn check_examples_fit(&self, lengths: &[PairLengths]) -> Result<()> {
        let needed = |l: PairLengths| {
            let (s, t) = l.get();
            self.budget.padded_len(s, t)
        };
        match lengths.iter().position(|&l| needed(l) > self.max_tokens) {
            Some(index) => {
                let (src_len, tgt_len) = lengths[index].get();
                Err(DataError::ExampleTooLong {
                    index,
                    src_len,
                    tgt_len,
                    needed: needed(lengths[index]),
                    max_tokens: self.max_tokens,
                })
            }
            None => Ok(()),
        }
    }

    /// Cuts `order` greedily into batches that respect both limits, as `(start, end)` ranges of
    /// `order`.
    ///
    /// Assumes every example fits on its own (checked beforehand), so every
    /// batch is non-empty, and that `order` has at most `u32::MAX` entries.
    fn cut(&self, lengths: &[PairLengths], order: &[u32]) -> Vec<(u32, u32)> {
        let max_sentences = self.max_sentences.unwrap_or(usize::MAX);
        let mut bounds = Vec::new();
        let (mut start, mut longest) = (0, 0);
        for (position, &index) in order.iter().enumerate() {
            let (s, t) = lengths[index as usize].get();
            let size = position - start;
            let candidate_longest = longest.max(self.budget.padded_len(s, t));
            let too_many = size + 1 > max_sentences;
            let too_big = (size + 1).saturating_mul(candidate_longest) > self.max_tokens;
            if size > 0 && (too_many || too_big) {
                bounds.push((start as u32, position as u32));
                start = position;
                longest = self.budget.padded_len(s, t);
            } else {
                longest = candidate_longest;
            }
        }
        if start < order.len() {
            bounds.push((start as u32, order.len() as u32));
        }
        bounds
    }

    /// The number of tokens `batch` occupies once padded, as the budget counts it, e.g.
    /// `batch.len() * max(longest source + 1, longest target + 1)`.
    ///
    /// Indices must be valid for `lengths`; invalid ones are ignored.
    pub fn padded_tokens(&self, lengths: &[PairLengths], batch: &[u32]) -> usize {
        let longest = batch
            .iter()
            .filter_map(|&i| lengths.get(i as usize))
            .map(|l| {
                let (s, t) = l.get();
                self.budget.padded_len(s, t)
            })
            .max()
            .unwrap_or(0);
        batch.len() * longest
    }
}

/// The contiguous share of `batch` that `part` of `parts` trains on in data-parallel training:
/// the batch cut where its running count of real tokens (source and target, each with its EOS
/// or BOS) crosses each `k / parts` of the total, so that the parts hold about equal tokens.
/// A part may be empty when the batch has fewer examples than there are parts.
///
/// Indices must be valid for `lengths`; invalid ones count no tokens.
pub fn token_share<'b>(lengths: &[PairLengths], batch: &'b [u32], part: usize, parts: usize) -> &'b [u32] {
    let cost = |i: &u32| lengths.get(*i as usize).map_or(0, |l| l.real_tokens());
    let total: usize = batch.iter().map(cost).sum();
    // Cut k falls before the first example at which the running count reaches k / parts of
    // the total; the last cut is the batch's end.
    let cut = |k: usize| {
        if k >= parts {
            return batch.len();
        }
        let mut running = 0;
        batch
            .iter()
            .position(|index| {
                let reached = running * parts >= k * total;
                running += cost(index);
                reached
            })
            .unwrap_or(batch.len())
    };
    &batch[cut(part)..cut(part + 1)]
}

/// The generator for one epoch: seeded from `seed` and `epoch` without
/// collisions (each fills its own eight bytes of the 32-byte ChaCha seed).
fn epoch_rng(seed: u64, epoch: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&epoch.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

/// Example indices ordered by `(source length, target length, random key, index)`, or target
/// length first under a target budget. The random keys are drawn in index order.
///
/// A counting sort on the first length, then a sort of each bucket by the rest: twelve bytes
/// per example (the order and its keys) instead of the thirty-two a sort of whole
/// `(first, second, key, index)` tuples needs, and much faster on millions of examples.
/// Assumes at most `u32::MAX` examples.
fn length_order(lengths: &[PairLengths], budget: TokenBudget, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let key = |l: PairLengths| match budget {
        TokenBudget::Longer => (l.src, l.tgt),
        TokenBudget::Target => (l.tgt, l.src),
    };
    // Where each first length's bucket starts: `starts[f]..starts[f + 1]`.
    let mut starts = vec![0usize; usize::from(u16::MAX) + 2];
    for &l in lengths {
        starts[usize::from(key(l).0) + 1] += 1;
    }
    for f in 1..starts.len() {
        starts[f] += starts[f - 1];
    }
    let mut order = vec![0u32; lengths.len()];
    let mut random_keys = vec![0u64; lengths.len()];
    let mut next = starts.clone();
    for (index, &l) in lengths.iter().enumerate() {
        let slot = &mut next[usize::from(key(l).0)];
        order[*slot] = index as u32;
        random_keys[*slot] = rng.random::<u64>();
        *slot += 1;
    }
    let mut bucket: Vec<(u16, u64, u32)> = Vec::new();
    for window in starts.windows(2) {
        let (start, end) = (window[0], window[1]);
        if end - start < 2 {
            continue;
        }
        bucket.clear();
        bucket.extend(
            (start..end).map(|slot| (key(lengths[order[slot] as usize]).1, random_keys[slot], order[slot])),
        );
        bucket.sort_unstable();
        for (slot, &(_, _, index)) in (start..end).zip(&bucket) {
            order[slot] = index;
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lengths resembling a real corpus: 2000 examples, sources 1..=60
    /// tokens, targets within a few tokens of their source.
    fn corpus_lengths() -> Vec<PairLengths> {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        (0..2000)
            .map(|_| {
                let s = rng.random_range(1..=60usize);
                let t = (s as i64 + rng.random_range(-3..=3i64)).max(1) as usize;
                PairLengths::new(s, t).unwrap()
            })
            .collect()
    }

    /// A length table from `(source, target)` pairs.
    fn lens(pairs: &[(usize, usize)]) -> Vec<PairLengths> {
        pairs.iter().map(|&(s, t)| PairLengths::new(s, t).unwrap()).collect()
    }

    /// The batches of `plan` as vectors, in order.
    fn vecs(plan: &BatchPlan) -> Vec<Vec<u32>> {
        plan.iter().map(<[u32]>::to_vec).collect()
    }

    fn planner() -> BatchPlanner {
        BatchPlanner { max_tokens: 512, max_sentences: None, budget: TokenBudget::Longer }
    }

    #[test]
    fn every_index_appears_exactly_once() {
        let lengths = corpus_lengths();
        let batches = vecs(&planner().plan(&lengths, 1, 0).unwrap());
        let mut seen: Vec<u32> = batches.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..lengths.len() as u32).collect::<Vec<_>>());
        assert!(batches.iter().all(|b| !b.is_empty()));
    }

    #[test]
    fn budget_and_sentence_limit_hold() {
        let lengths = corpus_lengths();
        let planner = BatchPlanner { max_tokens: 512, max_sentences: Some(12), budget: TokenBudget::Longer };
        let batches = vecs(&planner.plan(&lengths, 3, 5).unwrap());
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
        let batches = vecs(&planner().plan(&lengths, 1, 0).unwrap());
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
        let lengths = lens(&[(10, 10); 100]);
        let p = BatchPlanner {
            max_tokens: 110, // 10 examples of 11 tokens per batch
            max_sentences: None,
            budget: TokenBudget::Longer,
        };
        let grouping = |epoch| {
            let batches = vecs(&p.plan(&lengths, 9, epoch).unwrap());
            assert_eq!(batches.len(), 10);
            let mut groups: Vec<Vec<u32>> = batches
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
        let batches = vecs(&planner().plan(&lengths, 1, 0).unwrap());
        let real: usize = lengths
            .iter()
            .map(|l| {
                let (s, t) = l.get();
                TokenBudget::Longer.padded_len(s, t)
            })
            .sum();
        let bucketed_padding: usize =
            batches.iter().map(|b| planner().padded_tokens(&lengths, b)).sum::<usize>() - real;

        // Same batch sizes, but examples assigned at random.
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut shuffled: Vec<u32> = (0..lengths.len() as u32).collect();
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
        let lengths = lens(&[(5, 5), (3, 4), (40, 70), (80, 2)]);
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
        let lengths = lens(&[(40, 7); 20]);
        let p = BatchPlanner { max_tokens: 64, max_sentences: None, budget: TokenBudget::Target };
        let batches = vecs(&p.plan(&lengths, 1, 0).unwrap());
        assert_eq!(batches.iter().map(Vec::len).max(), Some(8));
        assert!(batches.iter().all(|b| p.padded_tokens(&lengths, b) <= 64));
        // The same data under the longer-side budget: 64 / 41 = 1 example per batch.
        let longer = BatchPlanner { budget: TokenBudget::Longer, ..p };
        assert_eq!(longer.plan(&lengths, 1, 0).unwrap().len(), 20);
    }

    #[test]
    fn example_exactly_at_the_budget_fits() {
        // max(63, 10) + 1 = 64 tokens: allowed, alone in its batch.
        let lengths = lens(&[(63, 10), (1, 1)]);
        let p = BatchPlanner { max_tokens: 64, max_sentences: None, budget: TokenBudget::Longer };
        let mut batches = vecs(&p.plan(&lengths, 0, 0).unwrap());
        batches.sort();
        assert_eq!(batches, vec![vec![0], vec![1]]);
    }

    #[test]
    fn zero_limits_and_empty_input() {
        let zero = BatchPlanner { max_tokens: 0, max_sentences: None, budget: TokenBudget::Longer };
        assert!(matches!(zero.plan(&lens(&[(1, 1)]), 0, 0), Err(DataError::Config { .. })));
        let zero_sent = BatchPlanner { max_tokens: 10, max_sentences: Some(0), budget: TokenBudget::Longer };
        assert!(matches!(zero_sent.plan(&lens(&[(1, 1)]), 0, 0), Err(DataError::Config { .. })));
        assert!(planner().plan(&[], 0, 0).unwrap().is_empty());
    }

    #[test]
    fn tokenized_pair_lengths() {
        let pair = TokenizedPair { src: vec![5, 6, 7], tgt: vec![8] };
        assert_eq!(pair.lengths(), (3, 1));
        assert_eq!(pair_lengths(&[pair]).unwrap(), vec![PairLengths { src: 3, tgt: 1 }]);
        let long = TokenizedPair { src: vec![5], tgt: vec![8; 65_536] };
        let err = pair_lengths(&[TokenizedPair::default(), long]).unwrap_err();
        assert!(matches!(err, DataError::ExampleTooLong { index: 1, tgt_len: 65_536, .. }), "{err:?}");
    }

    /// The order a plain sort of whole `(first, second, key, index)` tuples gives, with the
    /// keys drawn in index order: what [`length_order`] must reproduce.
    fn sorted_tuples(lengths: &[PairLengths], budget: TokenBudget, rng: &mut ChaCha8Rng) -> Vec<u32> {
        let mut keyed: Vec<(u16, u16, u64, u32)> = lengths
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let (first, second) = match budget {
                    TokenBudget::Longer => (l.src, l.tgt),
                    TokenBudget::Target => (l.tgt, l.src),
                };
                (first, second, rng.random::<u64>(), i as u32)
            })
            .collect();
        keyed.sort_unstable();
        keyed.into_iter().map(|(_, _, _, i)| i).collect()
    }

    #[test]
    fn bucketed_order_equals_a_sort_of_whole_tuples() {
        let mut lengths = corpus_lengths();
        // Plenty of exact ties, and the extremes of the table.
        lengths.extend(lens(&[(10, 10); 50]));
        lengths.extend(lens(&[(0, 0), (65_535, 1), (1, 65_535), (65_535, 65_535)]));
        for budget in [TokenBudget::Longer, TokenBudget::Target] {
            let (mut a, mut b) = (epoch_rng(5, 2), epoch_rng(5, 2));
            assert_eq!(length_order(&lengths, budget, &mut a), sorted_tuples(&lengths, budget, &mut b));
            // Both leave the generator at the same point, so the batch shuffle that follows agrees.
            assert_eq!(a.random::<u64>(), b.random::<u64>());
        }
    }

    /// Costs 4, 4, 2, 6 (each side's tokens plus 2): a total of 16; the running counts before
    /// each example are 0, 4, 8, 10. Halves cut where 8 is reached, before the third example;
    /// quarters where 4, 8 and 12 are reached: 12 never is before the end, so the last quarter
    /// is empty and the third holds the last two examples.
    #[test]
    fn token_shares_by_hand() {
        let lengths: Vec<PairLengths> =
            [(1, 1), (1, 1), (0, 0), (2, 2)].iter().map(|&(s, t)| PairLengths::new(s, t).unwrap()).collect();
        let batch = [0u32, 1, 2, 3];
        assert_eq!(token_share(&lengths, &batch, 0, 2), [0, 1]);
        assert_eq!(token_share(&lengths, &batch, 1, 2), [2, 3]);
        let quarters: Vec<&[u32]> = (0..4).map(|part| token_share(&lengths, &batch, part, 4)).collect();
        assert_eq!(quarters, [&[0u32][..], &[1], &[2, 3], &[]]);
        assert_eq!(token_share(&lengths, &batch, 0, 1), batch);
        // One example, two parts: the second is empty.
        assert_eq!(token_share(&lengths, &[3], 0, 2), [3]);
        assert!(token_share(&lengths, &[3], 1, 2).is_empty());
    }

    proptest::proptest! {
        /// The shares are consecutive, cover the batch once, and each holds about its part of
        /// the tokens: within one example's cost of total / parts.
        #[test]
        fn token_shares_partition_the_batch(
            sides in proptest::collection::vec((0usize..100, 0usize..100), 0..60),
            parts in 1usize..6,
        ) {
            let lengths: Vec<PairLengths> = sides.iter().map(|&(s, t)| PairLengths::new(s, t).unwrap()).collect();
            let batch: Vec<u32> = (0..lengths.len() as u32).rev().collect();
            let shares: Vec<&[u32]> = (0..parts).map(|part| token_share(&lengths, &batch, part, parts)).collect();
            proptest::prop_assert_eq!(shares.concat(), batch.clone());
            let cost = |i: &u32| sides[*i as usize].0 + sides[*i as usize].1 + 2;
            let total: usize = batch.iter().map(cost).sum();
            let largest = batch.iter().map(cost).max().unwrap_or(0);
            for share in shares {
                let tokens: usize = share.iter().map(cost).sum();
                proptest::prop_assert!(tokens * parts <= total + largest * parts, "{tokens} of {total}");
            }
        }
    }
}
