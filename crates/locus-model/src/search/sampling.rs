//! Ancestral sampling: each next token is drawn from the model's distribution, sharpened or
//! flattened by a temperature and truncated to the `top_k` most probable tokens (Fan et al.
//! 2018) and to the smallest set holding `top_p` of the mass (nucleus sampling, Holtzman et al.
//! 2020, <https://arxiv.org/abs/1904.09751>). Each sentence draws from its own stream, seeded
//! by the seed and its index, so a sample does not depend on how sentences were batched.

use candle_core::DType;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Hypothesis, LengthLimits, Scorer};
use crate::error::{ModelError, Result};

/// Sampling settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingOptions {
    /// Divides the logits: below 1 sharpens, above 1 flattens.
    pub temperature: f64,
    /// Keep only the `top_k` most probable tokens (0: all).
    pub top_k: usize,
    /// Keep the most probable tokens up to this cumulative probability (1: all).
    pub top_p: f64,
    /// Seed of the random streams.
    pub seed: u64,
    /// Samples drawn per sentence.
    pub samples: usize,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        Self { temperature: 1.0, top_k: 0, top_p: 1.0, seed: 1, samples: 1 }
    }
}

impl SamplingOptions {
    fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(ModelError::Search(msg));
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad(format!("temperature ({}) must be positive", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p ({}) must be in (0, 1]", self.top_p));
        }
        if self.samples == 0 {
            return bad("samples (0) must be at least 1".into());
        }
        Ok(())
    }
}

/// The distribution to draw from, given a row's log-probabilities and which tokens are allowed:
/// `(token, probability)` pairs, most probable first, summing to 1.
fn truncated_distribution(
    log_probs: &[f32],
    allowed: impl Fn(u32) -> bool,
    opts: &SamplingOptions,
) -> Vec<(u32, f64)> {
    let mut scaled: Vec<(u32, f64)> = log_probs
        .iter()
        .enumerate()
        .filter(|&(token, &lp)| allowed(token as u32) && lp > f32::NEG_INFINITY)
        .map(|(token, &lp)| (token as u32, lp as f64 / opts.temperature))
        .collect();
    scaled.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if opts.top_k > 0 {
        scaled.truncate(opts.top_k);
    }
    let max = scaled.first().map_or(0.0, |&(_, s)| s);
    let total: f64 = scaled.iter().map(|&(_, s)| (s - max).exp()).sum();
    let mut dist: Vec<(u32, f64)> = scaled.into_iter().map(|(t, s)| (t, (s - max).exp() / total)).collect();
    let mut mass = 0.0;
    let keep = dist.iter().position(|&(_, p)| {
        mass += p;
        mass >= opts.top_p
    });
    if let Some(last) = keep {
        dist.truncate(last + 1);
        let kept: f64 = dist.iter().map(|&(_, p)| p).sum();
        dist.iter_mut().for_each(|(_, p)| *p /= kept);
    }
    dist
}

/// Draws `opts.samples` outputs per sentence from `scorer`, whose rows start as one per
/// sentence; `max_lens[i]` is sentence `i`'s length limit and `sentence_ids[i]` its index in the
/// whole input (it seeds its streams).
pub fn sample(
    scorer: &mut dyn Scorer,
    max_lens: &[usize],
    sentence_ids: &[usize],
    (bos, eos): (u32, u32),
    limits: &LengthLimits,
    opts: &SamplingOptions,
) -> Result<Vec<Vec<Hypothesis>>> {
    opts.validate()?;
    let vocab = scorer.vocab_size();
    let n = opts.samples;
    // Row r is sample r % n of sentence r / n.
    let rows: Vec<u32> = (0..max_lens.len() as u32).flat_map(|s| std::iter::repeat_n(s, n)).collect();
    scorer.select_rows(&rows)?;
    let mut rngs: Vec<ChaCha8Rng> = (0..rows.len())
        .map(|r| {
            let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
            rng.set_stream((sentence_ids[r / n] * n + r % n) as u64);
            rng
        })
        .collect();
    let mut outputs: Vec<Hypothesis> =
        vec![Hypothesis { tokens: Vec::new(), log_prob: 0.0, score: 0.0 }; rows.len()];
    let mut active: Vec<usize> = (0..rows.len()).collect();
    let mut step_tokens = vec![bos; rows.len()];
    let mut step = 0;
    while !active.is_empty() {
        // Sampling reads whole rows: top-p needs each row sorted, and drawing on the host
        // keeps a seed's samples the same on every device.
        let logits = scorer.step(&step_tokens)?;
        let log_probs: Vec<f32> =
            crate::ops::log_softmax_last_dim(&logits)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let (mut keep_rows, mut still_active, mut next_tokens) = (Vec::new(), Vec::new(), Vec::new());
        for (row, &r) in active.iter().enumerate() {
            let row_log_probs = &log_probs[row * vocab..(row + 1) * vocab];
            let at_limit = step >= max_lens[r / n];
            let allowed = |t: u32| if at_limit { t == eos } else { t != eos || step >= limits.min_len };
            let dist = truncated_distribution(row_log_probs, allowed, opts);
            let draw: f64 = rngs[r].random();
            let mut mass = 0.0;
            let token = dist.iter().find(|&&(_, p)| {
                mass += p;
                draw < mass
            });
            let token = token.or(dist.last()).map_or(eos, |&(t, _)| t);
            outputs[r].log_prob += row_log_probs[token as usize] as f64;
            if token != eos {
                outputs[r].tokens.push(token);
                keep_rows.push(row as u32);
                still_active.push(r);
                next_tokens.push(token);
            }
        }
        if !still_active.is_empty() && still_active.len() < active.len() {
            scorer.select_rows(&keep_rows)?;
        }
        active = still_active;
        step_tokens = next_tokens;
        step += 1;
    }
    let mut per_sentence: Vec<Vec<Hypothesis>> = vec![Vec::with_capacity(n); max_lens.len()];
    for (r, mut hyp) in outputs.into_iter().enumerate() {
        hyp.score = hyp.log_prob;
        per_sentence[r / n].push(hyp);
    }
    Ok(per_sentence)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(temperature: f64, top_k: usize, top_p: f64) -> SamplingOptions {
        SamplingOptions { temperature, top_k, top_p, ..SamplingOptions::default() }
    }

    /// Probabilities 0.5, 0.3, 0.2 (tokens 0, 1, 2).
    fn log_probs() -> Vec<f32> {
        [0.5f32, 0.3, 0.2].map(f32::ln).to_vec()
    }

    fn close(dist: &[(u32, f64)], want: &[(u32, f64)]) {
        assert_eq!(dist.len(), want.len(), "{dist:?}");
        for (&(t, p), &(wt, wp)) in dist.iter().zip(want) {
            assert!(t == wt && (p - wp).abs() < 1e-6, "{dist:?} vs {want:?}");
        }
    }

    #[test]
    fn truncation_and_temperature() {
        close(
            &truncated_distribution(&log_probs(), |_| true, &options(1.0, 0, 1.0)),
            &[(0, 0.5), (1, 0.3), (2, 0.2)],
        );
        // top-k 2 renormalises 0.5 and 0.3.
        close(
            &truncated_distribution(&log_probs(), |_| true, &options(1.0, 2, 1.0)),
            &[(0, 0.625), (1, 0.375)],
        );
        // top-p 0.7: 0.5 alone is short of 0.7, 0.5 + 0.3 reaches it.
        close(
            &truncated_distribution(&log_probs(), |_| true, &options(1.0, 0, 0.7)),
            &[(0, 0.625), (1, 0.375)],
        );
        // Temperature 0.5 squares the probabilities: 0.25, 0.09, 0.04 over 0.38.
        close(
            &truncated_distribution(&log_probs(), |_| true, &options(0.5, 0, 1.0)),
            &[(0, 0.25 / 0.38), (1, 0.09 / 0.38), (2, 0.04 / 0.38)],
        );
        // A disallowed token is removed before normalising.
        close(
            &truncated_distribution(&log_probs(), |t| t != 0, &options(1.0, 0, 1.0)),
            &[(1, 0.6), (2, 0.4)],
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let err = options(0.0, 0, 1.0).validate().unwrap_err().to_string();
        assert!(err.contains("temperature (0) must be positive"), "{err}");
        let err = options(1.0, 0, 1.5).validate().unwrap_err().to_string();
        assert!(err.contains("top_p (1.5) must be in (0, 1]"), "{err}");
    }
}
