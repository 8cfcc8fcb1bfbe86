//! How the model learns position.
//!
//! A closed set of encodings, chosen per run by `[model.positional] kind = "..."`:
//!
//! - `none`: no position signal at all (the decoder still sees order through its causal mask);
//! - `sinusoidal`: Vaswani et al. 2017 (<https://arxiv.org/abs/1706.03762>, section 3.5),
//!   `pe[pos, 2i] = sin(pos / 10000^(2i/d))`, `pe[pos, 2i+1] = cos(pos / 10000^(2i/d))`,
//!   added to the (scaled) token embeddings; defined for every position;
//! - `learned`: one trained vector per absolute position up to `max_len` (BERT, GPT), added to
//!   the embeddings; a longer input is an error, since a learned table cannot extrapolate.
//!
//! These are the *additive* encodings: they act once, on the embeddings, through
//! [`PositionalEncoding::embed`]. Encodings that act inside attention (relative positions,
//! T5 bias, ALiBi, rotary) plug in at the other seam the model already has: every attention
//! call takes an additive score bias (today the padding and causal masks, see
//! [`crate::attention::MultiHeadAttention::forward`]) built once per stack.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Which positional encoding a model uses (`[model.positional]`, tagged by `kind`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PositionalConfig {
    /// No position signal.
    None,
    /// Fixed sinusoids of Vaswani et al. 2017, added to the embeddings.
    #[default]
    Sinusoidal,
    /// Trained absolute position embeddings, added to the embeddings.
    Learned {
        /// Number of positions the table holds; longer inputs are rejected.
        max_len: usize,
    },
}

impl PositionalConfig {
    /// Checks the encoding's own rules for a model of width `d_model`.
    ///
    /// # Errors
    /// [`ModelError::Config`] naming the field and the rule.
    pub fn validate(&self, d_model: usize) -> Result<()> {
        match self {
            Self::None => Ok(()),
            Self::Sinusoidal if !d_model.is_multiple_of(2) => Err(ModelError::Config(format!(
                "model.d_model ({d_model}) must be even for model.positional.kind = \"sinusoidal\" \
                 (sin and cos come in pairs)"
            ))),
            Self::Sinusoidal => Ok(()),
            Self::Learned { max_len: 0 } => {
                Err(ModelError::Config("model.positional.max_len (0) must be at least 1".into()))
            }
            Self::Learned { .. } => Ok(()),
        }
    }
}

/// A built positional encoding, holding its weights where it has any.
#[derive(Debug, Clone)]
pub enum PositionalEncoding {
    /// No position signal.
    None,
    /// Fixed sinusoids of width `d_model`.
    Sinusoidal {
        /// Width of the table.
        d_model: usize,
    },
    /// A trained table of shape `(max_len, d_model)`.
    Learned {
        /// The table.
        table: Tensor,
    },
}

impl PositionalEncoding {
    /// Builds the encoding described by `cfg`; weights (if any) are created under `vb`.
    pub fn new(cfg: &PositionalConfig, d_model: usize, vb: VarBuilder) -> Result<Self> {
        Ok(match cfg {
            PositionalConfig::None => Self::None,
            PositionalConfig::Sinusoidal => Self::Sinusoidal { d_model },
            PositionalConfig::Learned { max_len } => {
                let stdev = (d_model as f64).powf(-0.5);
                let init = Init::Randn { mean: 0.0, stdev };
                let table = vb.get_with_hints((*max_len, d_model), "weight", init)?;
                Self::Learned { table }
            }
        })
    }

    /// Adds the encoding of positions `offset..offset + seq_len` to `xs`.
    ///
    /// `offset` is the position of the first element, non-zero when decoding incrementally.
    ///
    /// # Shapes
    /// `xs`: `(b_sz, seq_len, d_model)`; returns the same shape.
    ///
    /// # Errors
    /// [`ModelError::PositionOutOfRange`] when a learned table is too short.
    pub fn embed(&self, xs: &Tensor, offset: usize) -> Result<Tensor> {
        let (_b_sz, seq_len, _d_model) = xs.dims3()?;
        match self {
            Self::None => Ok(xs.clone()),
            Self::Sinusoidal { d_model } => {
                let table = sinusoidal_table(offset, seq_len, *d_model, xs.dtype(), xs.device())?;
                Ok(xs.broadcast_add(&table)?)
            }
            Self::Learned { table } => {
                let max_len = table.dim(0)?;
                if offset + seq_len > max_len {
                    return Err(ModelError::PositionOutOfRange { position: offset + seq_len - 1, max_len });
                }
                Ok(xs.broadcast_add(&table.narrow(0, offset, seq_len)?)?)
            }
        }
    }
}

/// Value of the sinusoidal encoding at position `pos`, dimension `dim`, width `d_model`
/// (Vaswani et al. 2017, section 3.5): even dimensions `2i` hold `sin(pos / 10000^(2i/d))`,
/// odd dimensions `2i + 1` hold `cos` of the same angle.
pub fn sinusoid(pos: usize, dim: usize, d_model: usize) -> f64 {
    let pair = (dim / 2 * 2) as f64;
    let angle = pos as f64 / 10000f64.powf(pair / d_model as f64);
    if dim.is_multiple_of(2) {
        angle.sin()
    } else {
        angle.cos()
    }
}

/// Rows `offset..offset + len` of the sinusoidal table, as a `(len, d_model)` tensor.
pub fn sinusoidal_table(
    offset: usize,
    len: usize,
    d_model: usize,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let values: Vec<f32> = (offset..offset + len)
        .flat_map(|pos| (0..d_model).map(move |dim| sinusoid(pos, dim, d_model) as f32))
        .collect();
    Ok(Tensor::from_vec(values, (len, d_model), device)?.to_dtype(dtype)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    /// Expected values computed by hand from the formula, e.g. at pos 1, d = 4:
    /// dims 0/1: angle 1 → sin 1 = 0.8414710, cos 1 = 0.5403023;
    /// dims 2/3: angle 1 / 10000^(2/4) = 0.01 → sin = 0.0099998, cos = 0.9999500.
    #[test]
    fn sinusoidal_table_matches_the_formula_at_hand_picked_positions() {
        let table = sinusoidal_table(0, 3, 4, DType::F32, &Device::Cpu).unwrap();
        let rows = table.to_vec2::<f32>().unwrap();
        let expected = [
            [0.0, 1.0, 0.0, 1.0],
            [0.841_470_96, 0.540_302_3, 0.009_999_833, 0.999_95],
            [0.909_297_4, -0.416_146_84, 0.019_998_667, 0.999_8],
        ];
        for (row, want) in rows.iter().zip(expected) {
            for (got, want) in row.iter().zip(want) {
                assert!((got - want).abs() < 1e-6, "{row:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn sinusoidal_offset_rows_equal_the_full_table() {
        // Position 100, dim 6 of d = 8: angle 100 / 10000^(6/8) = 0.1 → sin 0.1 = 0.0998334.
        let full = sinusoidal_table(0, 104, 8, DType::F32, &Device::Cpu).unwrap();
        let tail = sinusoidal_table(100, 4, 8, DType::F32, &Device::Cpu).unwrap();
        let want = full.narrow(0, 100, 4).unwrap();
        let diff = (tail - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
        assert!((sinusoid(100, 6, 8) - 0.099_833_4).abs() < 1e-6);
    }

    #[test]
    fn learned_positions_reject_inputs_past_max_len() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let cfg = PositionalConfig::Learned { max_len: 4 };
        let pe = PositionalEncoding::new(&cfg, 8, vb).unwrap();
        let xs = Tensor::zeros((1, 3, 8), DType::F32, &Device::Cpu).unwrap();
        assert!(pe.embed(&xs, 1).is_ok());
        let err = pe.embed(&xs, 2).unwrap_err().to_string();
        assert!(err.contains("position 4") && err.contains("max_len is 4"), "{err}");
    }

    #[test]
    fn odd_width_is_rejected_for_sinusoids() {
        let err = PositionalConfig::Sinusoidal.validate(7).unwrap_err();
        assert!(err.to_string().contains("model.d_model (7) must be even"));
    }
}
