//! Greedy decoding with the key/value cache: at every step each unfinished sentence takes its
//! most probable next token. The argmax runs on the model's device; only the chosen tokens and
//! their log-probabilities come back.

use candle_core::{Tensor, D};

use crate::ops::log_softmax_last_dim;

use super::{Hypothesis, LengthLimits};
use crate::error::Result;
use crate::transformer::Seq2Seq;

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
    let b_sz = src.dim(0)?;
    let tokens = model.tokens();
    let max_lens: Vec<usize> = source_lens.iter().map(|&len| limits.max_len(len)).collect();
    let longest = max_lens.iter().copied().max().unwrap_or(0);
    let memory = model.encode(src, None)?.detach();
    let mut cache = model.new_cache();
    let mut outputs: Vec<Hypothesis> =
        vec![Hypothesis { tokens: Vec::new(), log_prob: 0.0, score: 0.0 }; b_sz];
    let mut finished: Vec<bool> = max_lens.iter().map(|&limit| limit == 0).collect();
    // Before `min_len` tokens, EOS is masked out.
    let mut no_eos = vec![0f32; model.vocab_size()];
    no_eos[tokens.eos as usize] = f32::NEG_INFINITY;
    let no_eos = Tensor::new(no_eos, src.device())?.to_dtype(model.dtype())?;
    let mut step_input = Tensor::full(tokens.bos, (b_sz, 1), src.device())?;
    for step in 0..longest {
        if finished.iter().all(|&done| done) {
            break;
        }
        let logits = model.decode_step(&step_input, &memory, &mut cache)?;
        let mut log_probs = log_softmax_last_dim(&logits)?;
        if step < limits.min_len {
            log_probs = log_probs.broadcast_add(&no_eos)?;
        }
        let next = log_probs.argmax(D::Minus1)?;
        let chosen = log_probs.gather(&next.unsqueeze(1)?, 1)?.to_dtype(candle_core::DType::F64)?;
        let chosen = chosen.flatten_all()?.to_vec1::<f64>()?;
        for (i, &token) in next.to_vec1::<u32>()?.iter().enumerate() {
            if finished[i] {
                continue;
            }
            outputs[i].log_prob += chosen[i];
            if token == tokens.eos {
                finished[i] = true;
            } else {
                outputs[i].tokens.push(token);
                finished[i] = outputs[i].tokens.len() >= max_lens[i];
            }
        }
        step_input = next.unsqueeze(1)?;
    }
    for hypothesis in &mut outputs {
        hypothesis.score = hypothesis.log_prob;
    }
    Ok(outputs)
}
