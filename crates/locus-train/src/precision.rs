//! Mixed-precision training (`train.precision`), as PyTorch's automatic mixed precision and
//! fairseq's `--bf16` / `--fp16` do it (Micikevicius et al. 2018,
//! <https://arxiv.org/abs/1710.03740>).
//!
//! The master weights and Adam's moments stay in f32: the `VarMap` the optimiser updates and
//! checkpoints save never changes dtype. In `bf16` or `f16`, each update builds a second
//! [`Seq2Seq`] whose weights are the f32 variables cast to that dtype ([`cast_model`]), runs the
//! forward and backward passes on it, and the gradients flow back through the casts into the
//! f32 variables. The loss itself is computed in f32 from the logits
//! ([`label_smoothed_cross_entropy`](crate::loss::label_smoothed_cross_entropy)). `f16`'s
//! narrow range needs dynamic loss scaling ([`LossScaler`]); `bf16` has f32's range and does not.
//! Validation, translation and checkpoints use the f32 weights.

use std::borrow::Cow;

use candle_core::DType;
use candle_nn::VarMap;
use locus_model::Seq2Seq;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::loss_scale::LossScaler;
use crate::modeling::cast_model;

/// The dtype of the training forward and backward passes (`train.precision`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Forward and backward in bfloat16 (f32's range, 8 bits of mantissa); no loss scaling.
    Bf16,
    /// Forward and backward in IEEE half precision (largest value 65504), with dynamic loss
    /// scaling.
    F16,
}

impl Precision {
    /// Every precision, in the order the config documents them.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::F16];

    /// The config spelling: `f32`, `bf16` or `f16`.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        }
    }

    /// The dtype the forward and backward passes run in.
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
            Self::F16 => DType::F16,
        }
    }

    /// A fresh dynamic loss scaler starting at `initial_scale` if this precision needs one
    /// (`f16`), else `None`.
    pub fn loss_scaler(self, initial_scale: f64) -> Option<LossScaler> {
        (self == Self::F16).then(|| LossScaler::with_scale(initial_scale))
    }

    /// The model one update's forward and backward passes run on: `model` itself in f32; in
    /// `bf16` or `f16`, a copy whose weights are `varmap`'s f32 variables cast to that dtype,
    /// so that gradients reach the variables. The copy holds the weights of the moment it was
    /// built: build it anew for every update.
    pub fn step_model<'a>(self, model: &'a Seq2Seq, varmap: &VarMap) -> Result<Cow<'a, Seq2Seq>> {
        Ok(match self {
            Self::F32 => Cow::Borrowed(model),
            low => Cow::Owned(cast_model(model, varmap, low.dtype())?),
        })
    }
}

impl TryFrom<String> for Precision {
    type Error = String;

    fn try_from(value: String) -> std::result::Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == value)
            .ok_or_else(|| format!("train.precision (\"{value}\") must be \"f32\", \"bf16\" or \"f16\""))
    }
}

impl From<Precision> for String {
    fn from(precision: Precision) -> String {
        precision.name().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_rejected_by_field() {
        for precision in Precision::ALL {
            assert_eq!(Precision::try_from(String::from(precision)), Ok(precision));
        }
        let err = Precision::try_from("fp16".to_string()).unwrap_err();
        assert_eq!(err, "train.precision (\"fp16\") must be \"f32\", \"bf16\" or \"f16\"");
    }

    #[test]
    fn only_f16_scales_the_loss() {
        assert_eq!(Precision::F16.loss_scaler(8.0).map(|scaler| scaler.scale), Some(8.0));
        assert!(Precision::Bf16.loss_scaler(8.0).is_none() && Precision::F32.loss_scaler(8.0).is_none());
        assert_eq!(Precision::Bf16.dtype(), DType::BF16);
    }
}
