//! Tercom's edit distance with block shifts, as sacreBLEU 2.6.0 computes it
//! (`metrics/lib_ter.py`, <https://github.com/mjpost/sacrebleu/blob/master/sacrebleu/metrics/lib_ter.py>,
//! after tercom, <https://github.com/jhclark/tercom>; Snover et al., 2006,
//! <https://aclanthology.org/2006.amta-papers.25>).
//!
//! Greedy: while some shift of a hypothesis phrase lowers the edit distance, the
//! best such shift is applied. A candidate moves a hypothesis phrase of at most
//! `MAX_SHIFT_SIZE` words that equals a reference phrase starting at most
//! `MAX_SHIFT_DIST` positions away, when both phrases hold a word the current
//! alignment does not match and the reference phrase is not aligned into the
//! hypothesis phrase itself; the phrase goes next to the hypothesis words aligned to
//! the reference phrase or the word before it. Candidates rank by edit-distance gain,
//! then phrase length, then earliest hypothesis start, then earliest target. Once
//! `MAX_SHIFT_CANDIDATES` candidates have been evaluated (over all rounds) the search
//! stops *without* applying the shift found in that round.
//!
//! The edit distance is sacreBLEU's beam-limited Levenshtein distance: row `i` of the
//! matrix only fills the columns within `BEAM_WIDTH` of the pseudo-diagonal
//! `floor(i * ref_len / hyp_len)` (the last row is filled completely), and equal-cost
//! operations prefer match/substitution, then deletion, then insertion.
//!
//! sacreBLEU memoizes matrix rows by hypothesis prefix. Every row depends only on the
//! prefix (all hypotheses of one search have the same length), so recomputing just the
//! rows after the prefix a candidate shares with the current hypothesis, as
//! `ShiftSearch` does, gives the same numbers.

use std::cmp::{min, Reverse};
use std::{iter, mem};

/// Longest phrase that may be shifted (tercom's limit).
const MAX_SHIFT_SIZE: usize = 10;
/// Largest distance between a hypothesis phrase and the reference phrase it matches.
const MAX_SHIFT_DIST: usize = 50;
/// Half-width of the band of the edit-distance matrix that is filled.
const BEAM_WIDTH: usize = 25;
/// Shift candidates evaluated per segment (over all rounds) before the search gives up.
const MAX_SHIFT_CANDIDATES: usize = 1000;
/// Cost of the cells outside the band. sacreBLEU uses `int(1e16)`; any value above
/// every real cost behaves the same, since such cells never win a comparison.
const INFINITY: usize = usize::MAX / 2;

/// An edit operation of the hypothesis-to-reference alignment (sacreBLEU's trace letters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `' '`: the words are equal.
    Match,
    /// `'s'`: one word replaces the other.
    Sub,
    /// `'i'`: a reference word is missing from the hypothesis.
    Ins,
    /// `'d'`: a hypothesis word is not in the reference.
    Del,
    /// `'x'`: a cell outside the band.
    Undefined,
}

/// The number of edits (shifts plus beam edit distance) that turn `hypothesis` into
/// `reference`, sacreBLEU's `translation_edit_rate(words_hyp, words_ref)[0]`.
///
/// Words are compared by id. An empty reference costs one edit per hypothesis word.
pub(super) fn translation_edit_rate(hypothesis: &[usize], reference: &[usize]) -> usize {
    if reference.is_empty() {
        return hypothesis.len();
    }
    let mut search = ShiftSearch::new(reference, hypothesis.len());
    let mut words = hypothesis.to_vec();
    let mut shifts = 0;
    loop {
        let round = search.round(&words);
        match round.best {
            Some((gain, shifted)) if search.checked < MAX_SHIFT_CANDIDATES && gain > 0 => {
                shifts += 1;
                words = shifted;
            }
            // `round.distance` is the edit distance of `words`, the final hypothesis.
            _ => return shifts + round.distance,
        }
    }
}

/// sacreBLEU's `BeamEditDistance` for one reference and hypotheses of one length.
struct BeamEditDistance<'r> {
    reference: &'r [usize],
    hyp_len: usize,
    /// `ref_len / hyp_len` (1 for an empty hypothesis): the slope of the pseudo-diagonal.
    ratio: f64,
    /// Half-width of the band, widened when the lengths differ wildly.
    beam: usize,
}

impl<'r> BeamEditDistance<'r> {
    fn new(reference: &'r [usize], hyp_len: usize) -> Self {
        let ratio = if hyp_len == 0 { 1.0 } else { reference.len() as f64 / hyp_len as f64 };
        // "in some crazy sentences ... we may end up with zero overlap with previous row"
        let beam = if (BEAM_WIDTH as f64) < ratio / 2.0 {
            (ratio / 2.0 + BEAM_WIDTH as f64).ceil() as usize
        } else {
            BEAM_WIDTH
        };
        Self { reference, hyp_len, ratio, beam }
    }

    /// Columns per matrix row.
    fn width(&self) -> usize {
        self.reference.len() + 1
    }

    /// The columns `min_j..max_j` of row `i` that are computed.
    fn band(&self, i: usize) -> (usize, usize) {
        let pseudo_diag = (i as f64 * self.ratio).floor() as usize;
        let max_j = if i == self.hyp_len { self.width() } else { min(self.width(), pseudo_diag + self.beam) };
        (pseudo_diag.saturating_sub(self.beam), max_j)
    }

    /// Row 0: the reference typed out word by word.
    fn first_row(&self, cost: &mut [usize], ops: &mut [Op]) {
        for (j, (c, op)) in cost.iter_mut().zip(ops).enumerate() {
            *c = j;
            *op = Op::Ins;
        }
    }

    /// Row `i >= 1`, whose hypothesis word is `word`, from the previous row's costs.
    fn row(&self, i: usize, word: usize, prev: &[usize], cost: &mut [usize], ops: &mut [Op]) {
        cost.fill(INFINITY);
        ops.fill(Op::Undefined);
        let (min_j, max_j) = self.band(i);
        for j in min_j..max_j {
            if j == 0 {
                cost[0] = prev[0] + 1;
                ops[0] = Op::Del;
                continue;
            }
            let (sub_cost, sub_op) =
                if word == self.reference[j - 1] { (0, Op::Match) } else { (1, Op::Sub) };
            // The first of the cheapest wins: match/substitution, deletion, insertion.
            for (c, op) in
                [(prev[j - 1] + sub_cost, sub_op), (prev[j] + 1, Op::Del), (cost[j - 1] + 1, Op::Ins)]
            {
                if cost[j] > c {
                    cost[j] = c;
                    ops[j] = op;
                }
            }
        }
    }
}

/// The full edit-distance matrix of one hypothesis, row-major.
struct Matrix {
    width: usize,
    cost: Vec<usize>,
    ops: Vec<Op>,
}

impl Matrix {
    fn new(rows: usize, width: usize) -> Self {
        Self { width, cost: vec![INFINITY; rows * width], ops: vec![Op::Undefined; rows * width] }
    }

    fn costs(&self, i: usize) -> &[usize] {
        &self.cost[i * self.width..(i + 1) * self.width]
    }

    fn last_cost(&self) -> usize {
        self.cost.last().copied().unwrap_or(INFINITY)
    }

    /// Fills every row for `words`.
    fn fill(&mut self, ed: &BeamEditDistance<'_>, words: &[usize]) {
        let w = self.width;
        ed.first_row(&mut self.cost[..w], &mut self.ops[..w]);
        for (i, &word) in words.iter().enumerate().map(|(k, word)| (k + 1, word)) {
            let (done, rest) = self.cost.split_at_mut(i * w);
            ed.row(i, word, &done[(i - 1) * w..], &mut rest[..w], &mut self.ops[i * w..(i + 1) * w]);
        }
    }

    /// The operations from the top-left to the bottom-right corner, following the
    /// choices stored in the cells (sacreBLEU's trace, before flipping).
    fn trace(&self, hyp_len: usize) -> Vec<Op> {
        let (mut i, mut j) = (hyp_len, self.width - 1);
        let mut trace = Vec::with_capacity(i + j);
        while i > 0 || j > 0 {
            let op = self.ops[i * self.width + j];
            trace.push(op);
            match op {
                Op::Match | Op::Sub => {
                    i -= 1;
                    j -= 1;
                }
                Op::Ins => j -= 1,
                Op::Del => i -= 1,
                // Every cell of a band is finite (the bands of consecutive rows overlap
                // and start at non-decreasing columns), so paths never leave them.
                Op::Undefined => unreachable!("edit-distance trace left the beam at ({i}, {j})"),
            }
        }
        trace.reverse();
        trace
    }
}

/// sacreBLEU's `trace_to_alignment` on the flipped trace.
struct Alignment {
    /// Per reference word: where a phrase shifted next to it goes, i.e. one past the
    /// hypothesis position aligned to it (sacreBLEU's `align[r] + 1`; 0 when no
    /// hypothesis word precedes it).
    insert_at: Vec<usize>,
    /// Per reference word: not matched.
    ref_err: Vec<bool>,
    /// Per hypothesis word: not matched.
    hyp_err: Vec<bool>,
}

impl Alignment {
    fn new(trace: &[Op]) -> Self {
        let mut alignment = Self { insert_at: Vec::new(), ref_err: Vec::new(), hyp_err: Vec::new() };
        // number of hypothesis words consumed so far
        let mut hyp_pos = 0;
        for &op in trace {
            match op {
                Op::Match | Op::Sub => {
                    hyp_pos += 1;
                    alignment.insert_at.push(hyp_pos);
                    alignment.hyp_err.push(op == Op::Sub);
                    alignment.ref_err.push(op == Op::Sub);
                }
                Op::Del => {
                    hyp_pos += 1;
                    alignment.hyp_err.push(true);
                }
                Op::Ins => {
                    alignment.insert_at.push(hyp_pos);
                    alignment.ref_err.push(true);
                }
                // never in a trace: `Matrix::trace` rejects it
                Op::Undefined => {}
            }
        }
        alignment
    }
}

/// What one round of the shift search found.
struct Round {
    /// Edit distance of the hypothesis the round started from.
    distance: usize,
    /// The best candidate: its gain in edit distance and the shifted hypothesis.
    best: Option<(isize, Vec<usize>)>,
}

/// The ranking of a candidate: higher gain, then longer phrase, then earlier phrase
/// start, then earlier target (sacreBLEU's candidate tuple, compared with `>`).
type Rank = (isize, usize, Reverse<usize>, Reverse<usize>);

/// sacreBLEU's `_shift`, with reusable buffers.
struct ShiftSearch<'r> {
    ed: BeamEditDistance<'r>,
    /// Candidates evaluated so far (all rounds).
    checked: usize,
    /// The matrix of the hypothesis of the current round.
    base: Matrix,
    shifted: Vec<usize>,
    prev: Vec<usize>,
    cur: Vec<usize>,
    ops: Vec<Op>,
}

impl<'r> ShiftSearch<'r> {
    fn new(reference: &'r [usize], hyp_len: usize) -> Self {
        let ed = BeamEditDistance::new(reference, hyp_len);
        let width = ed.width();
        Self {
            ed,
            checked: 0,
            base: Matrix::new(hyp_len + 1, width),
            shifted: Vec::with_capacity(hyp_len),
            prev: vec![0; width],
            cur: vec![0; width],
            ops: vec![Op::Undefined; width],
        }
    }

    /// The edit distance of `words` and the best shift of it.
    fn round(&mut self, words: &[usize]) -> Round {
        self.base.fill(&self.ed, words);
        let distance = self.base.last_cost();
        let alignment = Alignment::new(&self.base.trace(words.len()));
        let reference = self.ed.reference;
        let (hyp_len, ref_len) = (words.len(), reference.len());

        let mut best: Option<(Rank, Vec<usize>)> = None;
        'pairs: for start_h in 0..hyp_len {
            for start_r in 0..ref_len {
                if start_r.abs_diff(start_h) > MAX_SHIFT_DIST {
                    continue;
                }
                // every length of the common phrase starting here, up to MAX_SHIFT_SIZE
                let mut length = 0;
                while words[start_h + length] == reference[start_r + length] && length < MAX_SHIFT_SIZE {
                    length += 1;
                    self.try_phrase(words, &alignment, (start_h, start_r, length), distance, &mut best);
                    if self.checked >= MAX_SHIFT_CANDIDATES {
                        break 'pairs;
                    }
                    if start_h + length == hyp_len || start_r + length == ref_len {
                        break;
                    }
                }
            }
        }
        Round { distance, best: best.map(|((gain, ..), shifted)| (gain, shifted)) }
    }

    /// Evaluates the shifts of the hypothesis phrase `words[start_h..start_h + length]`,
    /// equal to `reference[start_r..start_r + length]`, next to that reference phrase.
    fn try_phrase(
        &mut self,
        words: &[usize],
        alignment: &Alignment,
        (start_h, start_r, length): (usize, usize, usize),
        distance: usize,
        best: &mut Option<(Rank, Vec<usize>)>,
    ) {
        // Only shift a misaligned phrase onto unmatched reference words ...
        if !alignment.hyp_err[start_h..start_h + length].contains(&true)
            || !alignment.ref_err[start_r..start_r + length].contains(&true)
        {
            return;
        }
        // ... and not within itself.
        if (start_h + 1..=start_h + length).contains(&alignment.insert_at[start_r]) {
            return;
        }
        // Targets (indices into the hypothesis): after the hypothesis word aligned to the
        // reference word before the phrase (0 when the phrase starts the reference), then
        // after the one aligned to each word of the phrase; repeats in a row are skipped.
        // (sacreBLEU's loop would also stop at an unaligned reference position, but every
        // reference position is aligned.)
        let before = start_r.checked_sub(1).map_or(0, |r| alignment.insert_at[r]);
        let after = alignment.insert_at[start_r..start_r + length].iter().copied();
        let mut prev_target = None;
        for target in iter::once(before).chain(after) {
            if prev_target == Some(target) {
                continue;
            }
            prev_target = Some(target);
            perform_shift(words, start_h, length, target, &mut self.shifted);
            let gain = distance as isize - self.distance_of_shifted(words) as isize;
            self.checked += 1;
            let rank = (gain, length, Reverse(start_h), Reverse(target));
            if best.as_ref().is_none_or(|(best_rank, _)| rank > *best_rank) {
                *best = Some((rank, self.shifted.clone()));
            }
        }
    }

    /// The edit distance of `self.shifted`, reusing the rows of `words` (the
    /// hypothesis in `self.base`) for their common prefix.
    fn distance_of_shifted(&mut self, words: &[usize]) -> usize {
        let common = words.iter().zip(&self.shifted).take_while(|(a, b)| a == b).count();
        if common == words.len() {
            return self.base.last_cost();
        }
        self.prev.copy_from_slice(self.base.costs(common));
        for (i, &word) in self.shifted.iter().enumerate().skip(common).map(|(k, word)| (k + 1, word)) {
            self.ed.row(i, word, &self.prev, &mut self.cur, &mut self.ops);
            mem::swap(&mut self.prev, &mut self.cur);
        }
        self.prev.last().copied().unwrap_or(INFINITY)
    }
}

/// sacreBLEU's `_perform_shift`: `words` with the phrase `start..start + length`
/// moved to before index `target` (Python slice semantics, including its handling
/// of targets inside the phrase), written to `out`.
fn perform_shift(words: &[usize], start: usize, length: usize, target: usize, out: &mut Vec<usize>) {
    let n = words.len();
    // Python's `words[a:b]` for non-negative bounds
    let slice = |a: usize, b: usize| {
        let a = a.min(n);
        &words[a..b.min(n).max(a)]
    };
    out.clear();
    let end = start + length;
    let parts = if target < start {
        [slice(0, target), slice(start, end), slice(target, start), slice(end, n)]
    } else if target > end {
        [slice(0, start), slice(end, target), slice(start, end), slice(target, n)]
    } else {
        [slice(0, start), slice(end, length + target), slice(start, end), slice(length + target, n)]
    };
    for part in parts {
        out.extend_from_slice(part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Textbook Levenshtein distance: the slow, obvious reference.
    fn levenshtein(a: &[usize], b: &[usize]) -> usize {
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, x) in a.iter().enumerate() {
            let mut cur = vec![i + 1; b.len() + 1];
            for (j, y) in b.iter().enumerate() {
                cur[j + 1] = (prev[j] + usize::from(x != y)).min(prev[j + 1] + 1).min(cur[j] + 1);
            }
            prev = cur;
        }
        prev[b.len()]
    }

    /// A tiny deterministic generator (64-bit LCG, Knuth's MMIX constants).
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) as usize % n
        }

        fn words(&mut self, max_len: usize, vocab: usize) -> Vec<usize> {
            let len = self.below(max_len + 1);
            (0..len).map(|_| self.below(vocab)).collect()
        }
    }

    fn beam_distance(hypothesis: &[usize], reference: &[usize]) -> usize {
        let ed = BeamEditDistance::new(reference, hypothesis.len());
        let mut matrix = Matrix::new(hypothesis.len() + 1, ed.width());
        matrix.fill(&ed, hypothesis);
        matrix.last_cost()
    }

    #[test]
    fn perform_shift_matches_python() {
        // sacreBLEU: lib_ter._perform_shift(list(range(8)), start, length, target)
        let cases: [((usize, usize, usize), [usize; 8]); 9] = [
            ((3, 2, 0), [3, 4, 0, 1, 2, 5, 6, 7]),
            ((3, 2, 1), [0, 3, 4, 1, 2, 5, 6, 7]),
            ((1, 2, 5), [0, 3, 4, 1, 2, 5, 6, 7]),
            ((1, 2, 8), [0, 3, 4, 5, 6, 7, 1, 2]),
            ((1, 2, 1), [0, 1, 2, 3, 4, 5, 6, 7]),
            // targets within the phrase move it `target - start` words to the right
            ((1, 2, 2), [0, 3, 1, 2, 4, 5, 6, 7]),
            ((1, 2, 3), [0, 3, 4, 1, 2, 5, 6, 7]),
            ((5, 2, 7), [0, 1, 2, 3, 4, 7, 5, 6]),
            ((6, 2, 8), [0, 1, 2, 3, 4, 5, 6, 7]),
        ];
        let words: Vec<usize> = (0..8).collect();
        let mut out = Vec::new();
        for ((start, length, target), expected) in cases {
            perform_shift(&words, start, length, target, &mut out);
            assert_eq!(out, expected, "start {start} length {length} target {target}");
        }
    }

    #[test]
    fn alignment_follows_the_flipped_trace() {
        // hypothesis a x c, reference a b c d: match, substitution, match, insertion
        let (hyp, reference) = ([0, 9, 2], [0, 1, 2, 3]);
        let ed = BeamEditDistance::new(&reference, hyp.len());
        let mut matrix = Matrix::new(hyp.len() + 1, ed.width());
        matrix.fill(&ed, &hyp);
        let trace = matrix.trace(hyp.len());
        assert_eq!(trace, [Op::Match, Op::Sub, Op::Match, Op::Ins]);
        let alignment = Alignment::new(&trace);
        assert_eq!(alignment.insert_at, [1, 2, 3, 3]);
        assert_eq!(alignment.ref_err, [false, true, false, true]);
        assert_eq!(alignment.hyp_err, [false, true, false]);
    }

    #[test]
    fn beam_distance_is_levenshtein_for_short_sentences() {
        // With at most 20 reference words the band covers every column.
        let mut rng = Lcg(7);
        for _ in 0..500 {
            let (hyp, reference) = (rng.words(20, 6), rng.words(20, 6));
            assert_eq!(
                beam_distance(&hyp, &reference),
                levenshtein(&hyp, &reference),
                "{hyp:?} {reference:?}"
            );
        }
    }

    #[test]
    fn shifts_never_cost_more_than_levenshtein() {
        let mut rng = Lcg(11);
        for _ in 0..300 {
            let (hyp, reference) = (rng.words(20, 5), rng.words(20, 5));
            assert!(translation_edit_rate(&hyp, &reference) <= levenshtein(&hyp, &reference));
        }
        assert_eq!(translation_edit_rate(&[], &[1, 2, 3]), 3);
        assert_eq!(translation_edit_rate(&[1, 2], &[]), 2);
        assert_eq!(translation_edit_rate(&[3, 4, 1, 2], &[1, 2, 3, 4]), 1);
    }

    #[test]
    fn reusing_prefix_rows_changes_nothing() {
        // Long sentences with unequal lengths, so that the band is narrower than a row.
        let mut rng = Lcg(13);
        for _ in 0..200 {
            let hyp = rng.words(90, 8);
            let reference = rng.words(90, 8);
            if hyp.len() < 2 || reference.is_empty() {
                continue;
            }
            let mut search = ShiftSearch::new(&reference, hyp.len());
            search.base.fill(&search.ed, &hyp);
            let start = rng.below(hyp.len() - 1);
            let length = 1 + rng.below((hyp.len() - start).min(MAX_SHIFT_SIZE));
            let target = rng.below(hyp.len() + 1);
            perform_shift(&hyp, start, length, target, &mut search.shifted);
            let shifted = search.shifted.clone();
            assert_eq!(search.distance_of_shifted(&hyp), beam_distance(&shifted, &reference));
        }
    }
}
