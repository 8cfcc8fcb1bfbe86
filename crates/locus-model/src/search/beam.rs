//! Batched beam search in the manner of fairseq's `SequenceGenerator`.
//!
//! Every sentence keeps `beam` live hypotheses. At each step its candidates are all one-token
//! extensions of them, scored by their summed log-probability; the best `2 × beam` are taken in
//! order. EOS candidates among the first `beam` finish a hypothesis, scored by
//! `log_prob / lp(length)` with GNMT's length penalty `lp(n) = ((5 + n) / 6)^alpha` (`n` counts
//! EOS); the best `beam` others live on. A sentence is done once `beam` hypotheses have
//! finished, or at its length limit, where only EOS is allowed. Done sentences leave the batch
//! (their rows are dropped from the model's cache), so the work shrinks as sentences finish.
//! Ties are broken by lower beam, then lower token id, so that beam size 1 is greedy search.
//!
//! The log-probabilities stay where the model computed them: each step brings back only every
//! hypothesis's best `2 × beam + 1` tokens ([`super::top_k`]), which hold its best `2 × beam`
//! other than EOS; a sentence at its length limit reads EOS's log-probabilities instead.

use candle_core::DType;

use super::top_k::row_top_k;
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
}

impl Default for BeamOptions {
    fn default() -> Self {
        Self { beam: 4, nbest: 1, length_penalty: 1.0 }
    }
}

/// GNMT's length penalty for an output of `len` tokens (EOS included).
fn length_penalty(len: usize, alpha: f64) -> f64 {
    ((5.0 + len as f64) / 6.0).powf(alpha)
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
    finished: Vec<Hypothesis>,
    max_len: usize,
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
/// `i`'s length limit. Returns up to `nbest` hypotheses per sentence, best first.
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
    let BeamOptions { beam, nbest, length_penalty: alpha } = *options;
    if beam == 0 || nbest == 0 || nbest > beam {
        return Err(ModelError::Search(format!("beam search needs 1 <= nbest ({nbest}) <= beam ({beam})")));
    }
    let mut sentences: Vec<Sentence> = max_lens
        .iter()
        .map(|&max_len| Sentence {
            live: vec![Live { tokens: Vec::new(), log_prob: 0.0 }],
            finished: Vec::new(),
            max_len,
        })
        .collect();
    // Sentences still searching, in row order; each owns `live.len()` consecutive rows.
    let mut active: Vec<usize> = (0..sentences.len()).collect();
    let mut step_tokens: Vec<u32> = vec![bos; sentences.len()];
    let mut step = 0;
    while !active.is_empty() {
        let log_probs = scorer.step(&step_tokens)?;
        // Each row's best `2 × beam` tokens other than EOS are among its best `2 × beam + 1`;
        // sentences at their length limit take EOS's log-probabilities instead.
        let top = row_top_k(&log_probs, 2 * beam + 1)?;
        let eos_log_probs: Vec<f32> = if active.iter().any(|&s| step >= sentences[s].max_len) {
            log_probs.narrow(1, eos as usize, 1)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?
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
                    if rank < beam && sentence.finished.len() < beam {
                        let tokens = sentence.live[b].tokens.clone();
                        let score = log_prob / length_penalty(tokens.len() + 1, alpha);
                        sentence.finished.push(Hypothesis { tokens, log_prob, score });
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
            if sentence.finished.len() >= beam || at_limit || next_live.is_empty() {
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
    Ok(sentences
        .into_iter()
        .map(|mut sentence| {
            sentence.finished.sort_by(|a, b| b.score.total_cmp(&a.score));
            sentence.finished.truncate(nbest);
            sentence.finished
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

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
        let options = BeamOptions { beam, nbest, length_penalty: 0.0 };
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
        let options = BeamOptions { beam: 2, nbest: 2, length_penalty: 0.0 };
        let hyps = beam_search(&mut toy, &[3], 0, 1, &limits, &options).unwrap().remove(0);
        assert!(hyps.iter().all(|h| (2..=3).contains(&h.tokens.len())), "{hyps:?}");
    }

    #[test]
    fn length_penalty_matches_gnmt() {
        // ((5 + 7) / 6)^0.6 = 2^0.6.
        assert!((length_penalty(7, 0.6) - 2f64.powf(0.6)).abs() < 1e-12);
        assert_eq!(length_penalty(3, 0.0), 1.0);
    }
}
