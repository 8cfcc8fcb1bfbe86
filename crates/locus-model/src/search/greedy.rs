//! Greedy decoding with the key/value cache: at every step each unfinished sentence takes its
//! most probable next token.
//!
//! The whole loop stays on the model's device: the chosen tokens feed the next step directly,
//! and which sentences are still going is tracked there too (on the CPU, each choice reads the
//! logits in place: [`Choice`]). The host looks only every
//! [`stop_check_interval`] steps, to stop once every sentence has ended and to drop ended
//! sentences from the batch; it reads the steps' tokens and log-probabilities in one copy each
//! time it drops some, and at the end.

use candle_core::{DType, Device, Tensor, D};

use crate::ops::log_softmax_last_dim;

use super::top_k::most_probable;
use super::{eos_ban, phases, Hypothesis, LengthLimits};
use crate::error::Result;
use crate::transformer::Seq2Seq;

/// Steps between two looks at whether every sentence has ended: every step on the CPU, where
/// looking is free; every 8th elsewhere, where it waits for the device (a batch then runs at
/// most 7 steps past its last sentence's end).
fn stop_check_interval(device: &Device) -> usize {
    if device.is_cpu() {
        1
    } else {
        8
    }
}

/// Greedily decodes a batch of right-padded sources; returns one hypothesis per sentence.
///
/// # Shapes
/// `src`: `(b_sz, src_len)` `u32` ids, each row ending in EOS before its padding;
/// `source_lens[i]`: the number of real tokens of row `i`, EOS excluded.
pub fn greedy_decode(
    model: &Seq2Seq,
    src: &Tensor,
    source_lens: &[usize],
    limits: &LengthLimits,
) -> Result<Vec<Hypothesis>> {
    let max_lens: Vec<usize> = source_lens.iter().map(|&len| limits.max_len(len)).collect();
    greedy_decode_to(model, src, &max_lens, limits.min_len)
}

/// [`greedy_decode`] with each sentence's output length limit given: row `i` stops after
/// `max_lens[i]` tokens (EOS excluded) if it has not ended; EOS is not allowed before `min_len`
/// tokens. For limits that are not only [`LengthLimits`]' (a fixed cap, the decoder's position
/// table).
///
/// # Shapes
/// `src`: `(b_sz, src_len)` `u32` ids, each row ending in EOS before its padding;
/// `max_lens`: `b_sz` limits.
pub fn greedy_decode_to(
    model: &Seq2Seq,
    src: &Tensor,
    max_lens: &[usize],
    min_len: usize,
) -> Result<Vec<Hypothesis>> {
    let choice = Choice::for_device(model)?;
    decode_checking_every(model, src, max_lens, min_len, stop_check_interval(src.device()), &choice)
}

/// How a step's tokens are chosen from its logits.
enum Choice {
    /// On the host, from the logits in place ([`most_probable`]): on the CPU, where they are
    /// host memory, this writes no `rows × vocab` log-probabilities.
    InPlace,
    /// `log_softmax`, the EOS ban (`no_eos`, `-inf` at EOS), arg-max and gather, all on the
    /// device: nothing waits for it, and the host reads the choices only when it looks.
    OnDevice { no_eos: Tensor },
}

impl Choice {
    /// In place on the CPU, on the device elsewhere.
    fn for_device(model: &Seq2Seq) -> Result<Self> {
        Ok(if model.device().is_cpu() {
            Choice::InPlace
        } else {
            Choice::OnDevice { no_eos: eos_ban(model)? }
        })
    }

    /// Each row's most probable token, `(rows, 1)` `u32`, and its log-probability, `(rows, 1)`
    /// f32, on the logits' device; EOS is not chosen while `eos_banned`.
    fn choose(&self, logits: &Tensor, eos: u32, eos_banned: bool) -> Result<(Tensor, Tensor)> {
        match self {
            Choice::InPlace => {
                let (tokens, log_probs) = most_probable(logits, eos, |_| eos_banned)?;
                let (n, device) = (tokens.len(), logits.device());
                Ok((Tensor::from_vec(tokens, (n, 1), device)?, Tensor::from_vec(log_probs, (n, 1), device)?))
            }
            Choice::OnDevice { no_eos } => {
                let mut log_probs = log_softmax_last_dim(logits)?;
                if eos_banned {
                    log_probs = log_probs.broadcast_add(no_eos)?;
                }
                let next = log_probs.argmax_keepdim(D::Minus1)?;
                let chosen = log_probs.gather(&next, 1)?.to_dtype(DType::F32)?;
                Ok((next, chosen))
            }
        }
    }
}

/// [`greedy_decode_to`], looking whether every sentence has ended every `check_every` steps.
///
/// Each look also drops the sentences that have ended from the batch once they are at least a
/// quarter of the rows still decoded (so a batch is narrowed a few times, not at every end):
/// their steps' tokens are read out then, and the encoder memory, the cache and the per-row
/// state keep the other rows only. A batch of mixed lengths (a server's, not sorted by length)
/// then stops paying for sentences that have ended. Rows do not interact, so which rows share a
/// step changes nothing but the float rounding of batched products.
fn decode_checking_every(
    model: &Seq2Seq,
    src: &Tensor,
    max_lens: &[usize],
    min_len: usize,
    check_every: usize,
    choice: &Choice,
) -> Result<Vec<Hypothesis>> {
    let device = src.device();
    let eos = model.tokens().eos;
    let longest = max_lens.iter().copied().max().unwrap_or(0);
    let mut memory = phases::encoding(|| model.encode(src, None))?.detach();
    let mut cache = model.new_cache();
    // On the device: each row's length limit, and 1 while it is still going.
    let mut max_lens_on_device =
        Tensor::new(max_lens.iter().map(|&len| len as u32).collect::<Vec<_>>(), device)?;
    let mut going = max_lens_on_device.gt(0u32)?;
    let mut step_input = Tensor::full(model.tokens().bos, (src.dim(0)?, 1), device)?;
    // The sentence each row decodes, and every sentence's tokens and log-probabilities so far.
    let mut rows: Vec<usize> = (0..max_lens.len()).collect();
    let mut outputs = vec![(Vec::new(), Vec::new()); max_lens.len()];
    // The steps since the batch was last narrowed, on the device.
    let mut pending = PendingSteps::default();
    for step in 0..longest {
        if step % check_every == 0 {
            let going_rows = going.to_vec1::<u8>()?;
            let still_going: Vec<u32> =
                (0..rows.len() as u32).filter(|&r| going_rows[r as usize] != 0).collect();
            if still_going.is_empty() {
                break;
            }
            if 4 * (rows.len() - still_going.len()) >= rows.len() {
                pending.read_into(&rows, &mut outputs)?;
                let keep = Tensor::new(still_going.as_slice(), device)?;
                model.select_rows(&mut memory, &mut cache, &still_going)?;
                max_lens_on_device = max_lens_on_device.index_select(&keep, 0)?;
                going = going.index_select(&keep, 0)?;
                step_input = step_input.index_select(&keep, 0)?;
                rows = still_going.iter().map(|&r| rows[r as usize]).collect();
            }
        }
        let logits = phases::decoder_step(|| model.decode_step(&step_input, &memory, &mut cache))?;
        // Before `min_len` tokens, EOS is not allowed.
        let (next, chosen) = choice.choose(&logits, eos, step < min_len)?;
        // Detached: kept until read, it must not keep the step's graph alive with it.
        pending.log_probs.push(chosen.detach());
        // A sentence goes on unless it chose EOS or has reached its limit with this token.
        let within_limit = max_lens_on_device.gt((step + 1) as f64)?;
        going = going.mul(&next.squeeze(1)?.ne(eos)?)?.mul(&within_limit)?;
        pending.tokens.push(next.clone());
        step_input = next;
    }
    pending.read_into(&rows, &mut outputs)?;
    Ok(outputs
        .iter()
        .zip(max_lens)
        .map(|((tokens, log_probs), &max_len)| read_out(tokens, log_probs, eos, max_len))
        .collect())
}

/// The chosen tokens and their log-probabilities of the steps not yet read, each `(rows, 1)`.
#[derive(Default)]
struct PendingSteps {
    tokens: Vec<Tensor>,
    log_probs: Vec<Tensor>,
}

impl PendingSteps {
    /// Appends the steps to the outputs of the sentences `rows` decode (in one copy from the
    /// device) and forgets them.
    fn read_into(&mut self, rows: &[usize], outputs: &mut [(Vec<u32>, Vec<f32>)]) -> Result<()> {
        if self.tokens.is_empty() {
            return Ok(());
        }
        let tokens = Tensor::cat(&self.tokens, 1)?.to_vec2::<u32>()?;
        let log_probs = Tensor::cat(&self.log_probs, 1)?.to_vec2::<f32>()?;
        for ((&sentence, tokens), log_probs) in rows.iter().zip(tokens).zip(log_probs) {
            outputs[sentence].0.extend(tokens);
            outputs[sentence].1.extend(log_probs);
        }
        self.tokens.clear();
        self.log_probs.clear();
        Ok(())
    }
}

/// One sentence's hypothesis from its token and log-probability at every step: the tokens up
/// to EOS or the length limit; the log-probability sums the chosen tokens', EOS's included.
fn read_out(tokens: &[u32], log_probs: &[f32], eos: u32, max_len: usize) -> Hypothesis {
    let mut hypothesis = Hypothesis { tokens: Vec::new(), log_prob: 0.0, score: 0.0 };
    for (&token, &log_prob) in tokens.iter().zip(log_probs).take(max_len) {
        hypothesis.log_prob += log_prob as f64;
        if token == eos {
            break;
        }
        hypothesis.tokens.push(token);
    }
    hypothesis.score = hypothesis.log_prob;
    hypothesis
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ModelConfig, SeededVarMap, TokenIds};
    use candle_nn::VarMap;

    /// Sentences that end leave the batch (here two of four at the first look, by their length
    /// limits of 1 and 2 tokens, and others when they choose EOS); every sentence must still
    /// get the hypothesis it gets decoded alone (its log-probability up to rounding).
    #[test]
    fn dropping_ended_sentences_from_the_batch_changes_no_hypothesis() {
        let tokens = TokenIds { pad: 0, bos: 1, eos: 2 };
        let rows = [[3u32, 4, 5, 3, 4, 2], [5, 5, 2, 0, 0, 0], [4, 2, 0, 0, 0, 0], [3, 3, 3, 5, 2, 0]];
        let src = Tensor::new(&rows, &Device::Cpu).unwrap();
        let max_lens = [13, 1, 2, 9];
        for seed in 0..12 {
            let varmap = VarMap::new();
            let vb = SeededVarMap::var_builder(&varmap, seed, DType::F32, &Device::Cpu);
            let model = Seq2Seq::new(&ModelConfig::tiny(), 6, tokens, vb).unwrap();
            for check_every in [1, 3] {
                let batched =
                    decode_checking_every(&model, &src, &max_lens, 0, check_every, &Choice::InPlace).unwrap();
                for (row, hypothesis) in batched.iter().enumerate() {
                    let alone = Tensor::new(&[rows[row]], &Device::Cpu).unwrap();
                    let expected = decode_checking_every(
                        &model,
                        &alone,
                        &max_lens[row..row + 1],
                        0,
                        1,
                        &Choice::InPlace,
                    )
                    .unwrap();
                    let case = format!("seed {seed}, row {row}, checking every {check_every}");
                    assert_eq!(hypothesis.tokens, expected[0].tokens, "{case}");
                    // Batched products round differently from a row's alone.
                    assert!((hypothesis.log_prob - expected[0].log_prob).abs() < 1e-4, "{case}");
                }
            }
        }
    }

    /// The device's way of choosing (what a GPU runs; here on the CPU) chooses the tokens the
    /// in-place way does, with the same log-probabilities up to rounding, with and without a
    /// minimum length. Seeds are tried until the EOS ban has changed some output (a sentence
    /// that ends before `min_len` without it) at least three times.
    #[test]
    fn choosing_on_the_device_gives_what_choosing_in_place_gives() {
        let tokens = TokenIds { pad: 0, bos: 1, eos: 2 };
        let src = Tensor::new(&[[3u32, 4, 5, 3, 4, 2], [5, 5, 2, 0, 0, 0], [4, 2, 0, 0, 0, 0]], &Device::Cpu)
            .unwrap();
        let (max_lens, min_len) = ([9, 8, 7], 5);
        let mut ban_mattered = 0;
        for seed in 0..64 {
            let varmap = VarMap::new();
            let vb = SeededVarMap::var_builder(&varmap, seed, DType::F32, &Device::Cpu);
            let model = Seq2Seq::new(&ModelConfig::tiny(), 6, tokens, vb).unwrap();
            let on_device = Choice::OnDevice { no_eos: eos_ban(&model).unwrap() };
            for min_len in [0, min_len] {
                let in_place =
                    decode_checking_every(&model, &src, &max_lens, min_len, 1, &Choice::InPlace).unwrap();
                let device = decode_checking_every(&model, &src, &max_lens, min_len, 1, &on_device).unwrap();
                for (row, (a, b)) in in_place.iter().zip(&device).enumerate() {
                    let case = format!("seed {seed}, min_len {min_len}, row {row}");
                    assert_eq!(a.tokens, b.tokens, "{case}");
                    assert!(a.tokens.len() >= min_len, "{case}");
                    assert!((a.log_prob - b.log_prob).abs() < 1e-5, "{case}");
                    ban_mattered += usize::from(min_len == 0 && a.tokens.len() < 5);
                }
            }
            if ban_mattered >= 3 {
                break;
            }
        }
        assert!(ban_mattered >= 3, "the EOS ban changed only {ban_mattered} outputs");
    }

    /// A greedy search counts its encoder pass and each of its decoder steps: with EOS masked
    /// until the limit, a sentence of 5 tokens takes exactly 5 steps. (Other tests decoding at
    /// the same time add to the counts, so these are lower bounds.)
    #[test]
    fn phases_count_the_encoder_and_every_step() {
        let tokens = TokenIds { pad: 0, bos: 1, eos: 2 };
        let varmap = VarMap::new();
        let vb = SeededVarMap::var_builder(&varmap, 0, DType::F32, &Device::Cpu);
        let model = Seq2Seq::new(&ModelConfig::tiny(), 6, tokens, vb).unwrap();
        let src = Tensor::new(&[[3u32, 4, 2]], &Device::Cpu).unwrap();
        let before = phases::read();
        let hypotheses = greedy_decode_to(&model, &src, &[5], 5).unwrap();
        let after = phases::read();
        assert_eq!(hypotheses[0].tokens.len(), 5);
        assert!(after.steps - before.steps >= 5, "{before:?} → {after:?}");
        assert!(after.encoder > before.encoder && after.decoder_steps > before.decoder_steps);
    }

    /// Looking for the end only every few steps, as on a GPU, decodes steps past some
    /// sentences' ends (and past all of them before the next look) but reads out the same
    /// hypotheses. A vocabulary of 6 makes untrained models choose EOS early now and then: seeds
    /// are tried until four hypotheses have ended before their limit (8 of the first 64 do).
    #[test]
    fn checking_for_the_end_every_few_steps_gives_the_same_hypotheses() {
        let tokens = TokenIds { pad: 0, bos: 1, eos: 2 };
        let src = Tensor::new(&[[3u32, 4, 5, 3, 4, 2], [5, 5, 2, 0, 0, 0], [4, 2, 0, 0, 0, 0]], &Device::Cpu)
            .unwrap();
        let limits = LengthLimits { max_len_a: 2.0, max_len_b: 3, min_len: 0 };
        let max_lens: Vec<usize> = [5, 2, 1].iter().map(|&len| limits.max_len(len)).collect();
        let mut ended_early = 0;
        for seed in 0..64 {
            let varmap = VarMap::new();
            let vb = SeededVarMap::var_builder(&varmap, seed, DType::F32, &Device::Cpu);
            let model = Seq2Seq::new(&ModelConfig::tiny(), 6, tokens, vb).unwrap();
            let every_step = decode_checking_every(&model, &src, &max_lens, 0, 1, &Choice::InPlace).unwrap();
            for check_every in [3, 8] {
                let sparse =
                    decode_checking_every(&model, &src, &max_lens, 0, check_every, &Choice::InPlace).unwrap();
                assert_eq!(sparse, every_step, "seed {seed}, checking every {check_every} steps");
            }
            ended_early +=
                every_step.iter().zip([13, 7, 5]).filter(|(hyp, limit)| hyp.tokens.len() < *limit).count();
            if ended_early > 3 {
                break;
            }
        }
        assert!(ended_early > 3, "only {ended_early} hypotheses ended before their limit");
    }
}
