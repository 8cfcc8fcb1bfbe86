//! Greedy decoding with the key/value cache: at every step each unfinished sentence takes its
//! most probable next token.

use candle_core::{Tensor, D};

use crate::error::Result;
use crate::transformer::Seq2Seq;

/// Limits of a greedy search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GreedyOptions {
    /// Output length limit per source token (fairseq's `--max-len-a`).
    pub max_len_a: f64,
    /// Constant part of the output length limit (fairseq's `--max-len-b`): a sentence stops
    /// after `floor(max_len_a * source_len + max_len_b)` tokens if it has not produced EOS.
    pub max_len_b: usize,
}

impl Default for GreedyOptions {
    fn default() -> Self {
        Self { max_len_a: 1.5, max_len_b: 10 }
    }
}

impl GreedyOptions {
    /// Longest output allowed for a source of `source_len` tokens (EOS excluded).
    pub fn max_len(&self, source_len: usize) -> usize {
        (self.max_len_a * source_len as f64 + self.max_len_b as f64).floor() as usize
    }
}

/// Greedily decodes a batch of right-padded sources; returns each sentence's output tokens
/// (without BOS and EOS).
///
/// # Shapes
/// `src`: `(b_sz, src_len)` `u32` ids, each row ending in EOS before its padding;
/// `source_lens[i]`: the number of real tokens of row `i`, EOS excluded.
pub fn greedy_decode(
    model: &Seq2Seq,
    src: &Tensor,
    source_lens: &[usize],
    opts: &GreedyOptions,
) -> Result<Vec<Vec<u32>>> {
    let b_sz = src.dim(0)?;
    let tokens = model.tokens();
    let limits: Vec<usize> = source_lens.iter().map(|&len| opts.max_len(len)).collect();
    let longest = limits.iter().copied().max().unwrap_or(0);
    let memory = model.encode(src, None)?;
    let mut cache = model.new_cache();
    let mut outputs: Vec<Vec<u32>> = vec![Vec::new(); b_sz];
    let mut finished: Vec<bool> = limits.iter().map(|&limit| limit == 0).collect();
    let mut step_input = Tensor::full(tokens.bos, (b_sz, 1), src.device())?;
    for _ in 0..longest {
        if finished.iter().all(|&done| done) {
            break;
        }
        let logits = model.decode_step(&step_input, &memory, &mut cache)?;
        let next = logits.argmax(D::Minus1)?;
        for (i, &token) in next.to_vec1::<u32>()?.iter().enumerate() {
            if finished[i] {
                continue;
            }
            if token == tokens.eos {
                finished[i] = true;
            } else {
                outputs[i].push(token);
                finished[i] = outputs[i].len() >= limits[i];
            }
        }
        step_input = next.unsqueeze(1)?;
    }
    Ok(outputs)
}
