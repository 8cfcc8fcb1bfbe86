//! Building a [`Seq2Seq`] for a run: the special-token ids of Locus's tokenizers, seeded
//! weights in a [`VarMap`] the optimiser and checkpoints can see, and copies of a model whose
//! weights are those variables cast to another dtype (mixed-precision training).

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
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

/// `model`'s architecture with every weight taken from `varmap` (where `model`'s variables
/// live) and cast to `dtype`. The casts are part of the autograd graph: gradients of the copy's
/// outputs reach the variables, in their own dtype. The copy holds the values the variables
/// had when it was built.
///
/// # Errors
/// A variable the model needs that `varmap` lacks or holds in another shape.
pub fn cast_model(model: &Seq2Seq, varmap: &VarMap, dtype: DType) -> Result<Seq2Seq> {
    let backend = CastVarMap { varmap: varmap.clone() };
    let vb = VarBuilder::from_backend(Box::new(backend), dtype, model.device().clone());
    Ok(Seq2Seq::new(model.config(), model.vocab_size(), model.tokens(), vb)?)
}

/// A `VarBuilder` backend serving the existing variables of a [`VarMap`], cast to the dtype
/// asked for; it never creates one.
struct CastVarMap {
    varmap: VarMap,
}

impl CastVarMap {
    fn cast(&self, name: &str, shape: Option<&Shape>, dtype: DType) -> candle_core::Result<Tensor> {
        let vars = self.varmap.data().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(var) = vars.get(name) else { candle_core::bail!("cast model: no variable {name} to cast") };
        if let Some(shape) = shape.filter(|&shape| shape != var.shape()) {
            candle_core::bail!(
                "cast model: variable {name} has shape {:?}, the model wants {shape:?}",
                var.shape()
            )
        }
        var.as_tensor().to_dtype(dtype)
    }
}

impl SimpleBackend for CastVarMap {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _init: Init,
        dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.cast(name, Some(&shape), dtype)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, _dev: &Device) -> candle_core::Result<Tensor> {
        self.cast(name, None, dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        let vars = self.varmap.data().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        vars.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bf16 copy computes in bf16, and every f32 variable gets an f32 gradient through the
    /// casts; the original model is untouched.
    #[test]
    fn gradients_of_a_bf16_copy_reach_every_f32_variable() {
        let cfg = ModelConfig::tiny();
        let (model, varmap) = build_model(&cfg, 20, 1, &Device::Cpu).unwrap();
        let cast = cast_model(&model, &varmap, DType::BF16).unwrap();
        assert_eq!((cast.dtype(), model.dtype()), (DType::BF16, DType::F32));
        let src = Tensor::new(&[[4u32, 5, 6, 2]], &Device::Cpu).unwrap();
        let tgt = Tensor::new(&[[1u32, 7, 8]], &Device::Cpu).unwrap();
        let logits = cast.forward(&src, &tgt, None).unwrap();
        assert_eq!(logits.dtype(), DType::BF16);
        let loss = logits.to_dtype(DType::F32).unwrap().sqr().unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        for (name, var) in varmap.data().lock().unwrap().iter() {
            let grad = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{name}: no gradient"));
            assert_eq!((var.dtype(), grad.dtype()), (DType::F32, DType::F32), "{name}");
        }
    }

    #[test]
    fn a_missing_variable_is_named() {
        let cfg = ModelConfig::tiny();
        let (model, _) = build_model(&cfg, 20, 1, &Device::Cpu).unwrap();
        let err = cast_model(&model, &VarMap::new(), DType::F16).unwrap_err().to_string();
        assert!(err.contains("no variable embed.weight to cast"), "{err}");
    }
}
