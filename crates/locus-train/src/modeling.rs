//! Building a [`Seq2Seq`] for a run: the special-token ids of Locus's tokenizers and seeded
//! weights in a [`VarMap`] the optimiser and checkpoints can see.

use candle_core::{DType, Device};
use candle_nn::VarMap;
use locus_data::{BOS_ID, EOS_ID, PAD_ID};
use locus_model::{ModelConfig, SeededVarMap, Seq2Seq, TokenIds};

use crate::error::Result;

/// The special tokens every Locus tokenizer reserves.
pub const TOKEN_IDS: TokenIds = TokenIds { pad: PAD_ID, bos: BOS_ID, eos: EOS_ID };

/// A model with weights initialised from `seed`, stored in the returned [`VarMap`].
pub fn build_model(
    cfg: &ModelConfig,
    vocab_size: usize,
    seed: u64,
    device: &Device,
) -> Result<(Seq2Seq, VarMap)> {
    let varmap = VarMap::new();
    let vb = SeededVarMap::var_builder(&varmap, seed, DType::F32, device);
    let model = Seq2Seq::new(cfg, vocab_size, TOKEN_IDS, vb)?;
    Ok((model, varmap))
}
