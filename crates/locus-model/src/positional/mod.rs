//! How the model learns position: a closed set of encodings, chosen per stack by
//! `[model.positional]` (both stacks) or `[model.encoder.positional]` /
//! `[model.decoder.positional]`, tagged by `kind`.
//!
//! Encodings act at one of three seams, each a hook of [`PositionalEncoding`]:
//!
//! | kind | paper | seam |
//! | --- | --- | --- |
//! | `none` | — | nothing (the decoder still has its causal mask) |
//! | `sinusoidal` | Vaswani et al. 2017 | [`PositionalEncoding::embed`]: added to (or concatenated with) the embeddings |
//! | `learned` | BERT, GPT | [`PositionalEncoding::embed`], up to `max_len` positions |
//! | `relative` | Shaw et al. 2018 | inside every self-attention layer: learned key (and value) vectors per clipped distance ([`relative`]) |
//! | `t5` | Raffel et al. 2020 | [`PositionalEncoding::attention_bias`]: a learned bias per head and distance bucket, one table per stack |
//! | `rope` | Su et al. 2021 | [`PositionalEncoding::rotary`]: queries and keys rotated by their positions |
//! | `alibi` | Press et al. 2022 | [`PositionalEncoding::attention_bias`]: `-slope_h · |i - j|` |
//!
//! Cross-attention carries no positional signal. The absolute kinds can be trained with
//! randomly shifted positions, `position_shift = K` (SHAPE, Kiyono et al. 2021; see
//! [`absolute`]).

pub mod absolute;
pub mod alibi;
pub mod relative;
pub mod rope;
pub mod t5;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::dropout::DropoutRng;
use crate::error::{ModelError, Result};
pub use absolute::{AbsoluteEncoding, Combine, SinusoidalLayout};
pub use relative::RelativePositions;
pub use rope::Rotary;
pub use t5::T5Bias;

fn default_relative_distance() -> usize {
    16
}
fn default_true() -> bool {
    true
}
fn default_t5_buckets() -> usize {
    32
}
fn default_t5_distance() -> usize {
    128
}
fn default_theta() -> f64 {
    10000.0
}

/// Which positional encoding a stack uses, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PositionalConfig {
    /// No position signal.
    None {},
    /// Fixed sinusoids (Vaswani et al. 2017), added to or concatenated with the embeddings.
    Sinusoidal {
        /// `interleaved` (Vaswani et al.) or `halves` (tensor2tensor, fairseq).
        #[serde(default)]
        layout: SinusoidalLayout,
        /// `add` (default) or `concat`.
        #[serde(default)]
        combine: Combine,
        /// Width of the position vector with `combine = "concat"`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        d_pos: Option<usize>,
        /// Add the encoding again at the input of every layer.
        #[serde(default)]
        every_layer: bool,
        /// SHAPE: while training, each sequence's positions start at a random offset in
        /// `0..=position_shift`; 0 (the default) turns it off.
        #[serde(default)]
        position_shift: usize,
    },
    /// Trained absolute position vectors.
    Learned {
        /// Number of positions; longer inputs are an error.
        max_len: usize,
        /// `add` (default) or `concat`.
        #[serde(default)]
        combine: Combine,
        /// Width of the position vector with `combine = "concat"`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        d_pos: Option<usize>,
        /// Add the encoding again at the input of every layer.
        #[serde(default)]
        every_layer: bool,
        /// SHAPE: while training, each sequence's positions start at a random offset in
        /// `0..=position_shift`; 0 (the default) turns it off. Must be below `max_len`, and a
        /// training sequence of `n` positions needs `max_len >= n + position_shift` (an error
        /// naming both otherwise).
        #[serde(default)]
        position_shift: usize,
    },
    /// Relative position representations (Shaw et al. 2018) in every self-attention layer.
    Relative {
        /// Distances are clipped to `[-max_distance, max_distance]`.
        #[serde(default = "default_relative_distance")]
        max_distance: usize,
        /// Also add relative vectors to the values (eq. 3 of the paper), not only the keys.
        #[serde(default = "default_true")]
        values: bool,
    },
    /// T5's bucketed relative attention bias (Raffel et al. 2020), one table per stack.
    T5 {
        /// Number of distance buckets.
        #[serde(default = "default_t5_buckets")]
        num_buckets: usize,
        /// Distances at or beyond this share the last bucket.
        #[serde(default = "default_t5_distance")]
        max_distance: usize,
    },
    /// Rotary position embedding (Su et al. 2021) of queries and keys.
    Rope {
        /// Base of the rotation frequencies.
        #[serde(default = "default_theta")]
        theta: f64,
    },
    /// Attention with linear biases (Press et al. 2022).
    Alibi {},
}

impl Default for PositionalConfig {
    /// Sinusoids added to the embeddings, as in Vaswani et al. 2017.
    fn default() -> Self {
        Self::Sinusoidal {
            layout: SinusoidalLayout::Interleaved,
            combine: Combine::Add,
            d_pos: None,
            every_layer: false,
            position_shift: 0,
        }
    }
}

/// The absolute-encoding options shared by `sinusoidal` and `learned`.
struct AbsoluteOptions {
    combine: Combine,
    d_pos: Option<usize>,
    every_layer: bool,
}

impl PositionalConfig {
    fn absolute_options(&self) -> Option<AbsoluteOptions> {
        match *self {
            Self::Sinusoidal { combine, d_pos, every_layer, .. }
            | Self::Learned { combine, d_pos, every_layer, .. } => {
                Some(AbsoluteOptions { combine, d_pos, every_layer })
            }
            _ => None,
        }
    }

    /// Width of the position vector of an absolute encoding in a model of width `d_model`.
    fn position_width(&self, d_model: usize) -> usize {
        match self.absolute_options() {
            Some(AbsoluteOptions { combine: Combine::Concat, d_pos: Some(d_pos), .. }) => d_pos,
            _ => d_model,
        }
    }

    /// Width of the token embeddings of a stack of width `d_model` using this encoding.
    pub fn token_width(&self, d_model: usize) -> usize {
        match self.absolute_options() {
            Some(AbsoluteOptions { combine: Combine::Concat, d_pos: Some(d_pos), .. }) => d_model - d_pos,
            _ => d_model,
        }
    }

    /// Checks the encoding's rules; `field` names it in messages (e.g. `model.encoder.positional`).
    ///
    /// # Errors
    /// [`ModelError::Config`] naming the field, the value and the rule.
    pub fn validate(&self, field: &str, d_model: usize, n_heads: usize, tie_embeddings: bool) -> Result<()> {
        let fail = |msg: String| Err(ModelError::Config(msg));
        if let Some(options) = self.absolute_options() {
            match (options.combine, options.d_pos) {
                (Combine::Add, Some(d_pos)) => {
                    return fail(format!(
                        "{field}.d_pos ({d_pos}) is only used with {field}.combine = \"concat\""
                    ))
                }
                (Combine::Concat, None) => {
                    return fail(format!("{field}.combine = \"concat\" needs {field}.d_pos"))
                }
                (Combine::Concat, Some(d_pos)) if d_pos == 0 || d_pos >= d_model => {
                    return fail(format!(
                        "{field}.d_pos ({d_pos}) must be between 1 and model.d_model - 1 ({})",
                        d_model - 1
                    ))
                }
                (Combine::Concat, Some(_)) if tie_embeddings => {
                    return fail(format!(
                        "{field}.combine = \"concat\" needs model.tie_embeddings = false \
                         (token embeddings are d_model - d_pos wide, the output projection d_model)"
                    ))
                }
                (Combine::Concat, Some(_)) if options.every_layer => {
                    return fail(format!("{field}.every_layer = true needs {field}.combine = \"add\""))
                }
                _ => {}
            }
        }
        match *self {
            Self::Sinusoidal { layout, .. } => {
                let width = self.position_width(d_model);
                let min = if layout == SinusoidalLayout::Halves { 4 } else { 2 };
                if !width.is_multiple_of(2) || width < min {
                    return fail(format!(
                        "{field}: the sinusoidal width ({width}) must be even and at least {min} \
                         (sin and cos come in pairs)"
                    ));
                }
            }
            Self::Learned { max_len: 0, .. } => {
                return fail(format!("{field}.max_len (0) must be at least 1"))
            }
            Self::Learned { max_len, position_shift, .. } if position_shift >= max_len => {
                return fail(format!(
                    "{field}.position_shift ({position_shift}) must be less than {field}.max_len \
                     ({max_len}): a training sequence of n positions may start at position_shift \
                     and needs max_len >= n + position_shift"
                ))
            }
            Self::Relative { max_distance: 0, .. } => {
                return fail(format!("{field}.max_distance (0) must be at least 1"))
            }
            Self::T5 { num_buckets, max_distance } if num_buckets < 4 || max_distance < num_buckets / 2 => {
                return fail(format!(
                    "{field}: num_buckets ({num_buckets}) must be at least 4 and max_distance \
                     ({max_distance}) at least num_buckets / 2"
                ))
            }
            Self::Rope { theta } if !(theta > 1.0 && theta.is_finite()) => {
                return fail(format!("{field}.theta ({theta}) must be greater than 1"))
            }
            Self::Rope { .. } if !(d_model / n_heads).is_multiple_of(2) => {
                return fail(format!(
                    "{field}: rope rotates pairs of dimensions, so the head width d_model / n_heads \
                     ({}) must be even",
                    d_model / n_heads
                ))
            }
            _ => {}
        }
        Ok(())
    }
}

/// The settings of Shaw et al.'s relative positions, built inside each self-attention layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelativeSpec {
    /// Clipping distance.
    pub max_distance: usize,
    /// Whether values get relative vectors too.
    pub values: bool,
}

/// A built positional encoding of one stack, with its weights where it has any.
#[derive(Debug, Clone)]
pub enum PositionalEncoding {
    /// No position signal.
    None,
    /// Sinusoidal or learned vectors at the embeddings.
    Absolute(AbsoluteEncoding),
    /// Relative vectors inside self-attention; the layers hold the weights.
    Relative(RelativeSpec),
    /// A learned bias per head and distance bucket.
    T5(T5Bias),
    /// Rotation of queries and keys.
    Rope(Rotary),
    /// Fixed linear biases, one slope per head.
    Alibi(Vec<f64>),
}

impl PositionalEncoding {
    /// Builds the encoding of a stack; `causal` is true for the decoder (T5's buckets then
    /// only look back). Weights are created under `vb`.
    pub fn new(
        cfg: &PositionalConfig,
        d_model: usize,
        n_heads: usize,
        causal: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let width = cfg.position_width(d_model);
        Ok(match *cfg {
            PositionalConfig::None {} => Self::None,
            PositionalConfig::Sinusoidal { layout, combine, every_layer, position_shift, .. } => {
                Self::Absolute(
                    AbsoluteEncoding::sinusoidal(layout, width, combine, every_layer)
                        .with_position_shift(position_shift),
                )
            }
            PositionalConfig::Learned { max_len, combine, every_layer, position_shift, .. } => {
                Self::Absolute(
                    AbsoluteEncoding::learned(max_len, width, combine, every_layer, vb)?
                        .with_position_shift(position_shift),
                )
            }
            PositionalConfig::Relative { max_distance, values } => {
                Self::Relative(RelativeSpec { max_distance, values })
            }
            PositionalConfig::T5 { num_buckets, max_distance } => {
                Self::T5(T5Bias::new(num_buckets, max_distance, n_heads, !causal, vb)?)
            }
            PositionalConfig::Rope { theta } => Self::Rope(Rotary::new(theta, d_model / n_heads)?),
            PositionalConfig::Alibi {} => Self::Alibi(alibi::alibi_slopes(n_heads)),
        })
    }

    /// The position vectors of a batch of `b_sz` sequences of `len` tokens starting at
    /// `offset`, made once per forward pass for [`PositionalEncoding::embed`] and
    /// [`PositionalEncoding::layer_input`]. While training (`rng` is `Some`), an absolute
    /// encoding with `position_shift` draws one shift per sequence (SHAPE, see
    /// [`AbsoluteEncoding::positions`]); `None`, drawing nothing, for encodings that act
    /// inside attention.
    ///
    /// # Shapes
    /// Returns `(b_sz, len, width)` when shifted, `(1, len, width)` otherwise.
    ///
    /// # Errors
    /// [`ModelError::PositionOutOfRange`] past the end of a learned table, or
    /// [`ModelError::Config`] when it cannot hold the largest shift while training.
    pub fn positions(
        &self,
        b_sz: usize,
        len: usize,
        offset: usize,
        rng: Option<&mut DropoutRng>,
        dtype: DType,
        device: &Device,
    ) -> Result<Option<Tensor>> {
        match self {
            Self::Absolute(absolute) => Ok(Some(absolute.positions(b_sz, len, offset, rng, dtype, device)?)),
            _ => Ok(None),
        }
    }

    /// Puts `positions` (from [`PositionalEncoding::positions`]) into the (scaled) token
    /// embeddings `xs`; the identity for encodings that act inside attention.
    ///
    /// # Shapes
    /// `xs`: `(b_sz, seq_len, token_width)`; returns `(b_sz, seq_len, d_model)`.
    pub fn embed(&self, xs: &Tensor, positions: Option<&Tensor>) -> Result<Tensor> {
        match (self, positions) {
            (Self::Absolute(absolute), Some(positions)) => absolute.embed(xs, positions),
            _ => Ok(xs.clone()),
        }
    }

    /// The input of a layer after the first: with `every_layer`, the same `positions` are
    /// added again; otherwise `xs` unchanged.
    pub fn layer_input(&self, xs: &Tensor, positions: Option<&Tensor>) -> Result<Tensor> {
        match (self, positions) {
            (Self::Absolute(absolute), Some(positions)) if absolute.every_layer() => {
                absolute.embed(xs, positions)
            }
            _ => Ok(xs.clone()),
        }
    }

    /// The position bias added to every self-attention score of the stack (T5, ALiBi), for
    /// queries at `q_offset..q_offset + q_len` and keys at `k_offset..k_offset + k_len`.
    ///
    /// # Shapes
    /// Returns `(1, n_heads, q_len, k_len)`, or `None` for other encodings.
    pub fn attention_bias(
        &self,
        q_len: usize,
        k_len: usize,
        q_offset: usize,
        k_offset: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Option<Tensor>> {
        Ok(match self {
            Self::T5(t5) => Some(t5.bias(q_len, k_len, q_offset, k_offset)?.to_dtype(dtype)?),
            Self::Alibi(slopes) => {
                Some(alibi::alibi_bias(slopes, q_len, k_len, q_offset, k_offset, dtype, device)?)
            }
            _ => None,
        })
    }

    /// The rotation applied to queries and keys (RoPE).
    pub fn rotary(&self) -> Option<&Rotary> {
        match self {
            Self::Rope(rotary) => Some(rotary),
            _ => None,
        }
    }

    /// Settings for the relative vectors each self-attention layer builds (Shaw et al.).
    pub fn relative(&self) -> Option<RelativeSpec> {
        match self {
            Self::Relative(spec) => Some(*spec),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> PositionalConfig {
        #[derive(Deserialize)]
        struct Wrapper {
            positional: PositionalConfig,
        }
        toml::from_str::<Wrapper>(text).unwrap().positional
    }

    #[test]
    fn every_kind_parses_with_its_defaults() {
        assert_eq!(parse("positional = { kind = \"none\" }"), PositionalConfig::None {});
        assert_eq!(parse("positional = { kind = \"sinusoidal\" }"), PositionalConfig::default());
        assert_eq!(
            parse("positional = { kind = \"relative\" }"),
            PositionalConfig::Relative { max_distance: 16, values: true }
        );
        assert_eq!(
            parse("positional = { kind = \"t5\" }"),
            PositionalConfig::T5 { num_buckets: 32, max_distance: 128 }
        );
        assert_eq!(parse("positional = { kind = \"rope\" }"), PositionalConfig::Rope { theta: 10000.0 });
        assert_eq!(parse("positional = { kind = \"alibi\" }"), PositionalConfig::Alibi {});
        assert_eq!(
            parse("positional = { kind = \"learned\", max_len = 9, combine = \"concat\", d_pos = 4 }"),
            PositionalConfig::Learned {
                max_len: 9,
                combine: Combine::Concat,
                d_pos: Some(4),
                every_layer: false,
                position_shift: 0
            }
        );
    }

    #[test]
    fn unknown_keys_of_a_kind_are_rejected() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Wrapper {
            positional: PositionalConfig,
        }
        let err = toml::from_str::<Wrapper>("positional = { kind = \"alibi\", slope = 2 }").unwrap_err();
        assert!(err.to_string().contains("slope"), "{err}");
    }

    #[test]
    fn rules_name_the_field() {
        let check = |cfg: PositionalConfig, tie: bool| {
            cfg.validate("model.encoder.positional", 32, 4, tie).unwrap_err().to_string()
        };
        let concat = |d_pos| PositionalConfig::Sinusoidal {
            layout: SinusoidalLayout::Interleaved,
            combine: Combine::Concat,
            d_pos,
            every_layer: false,
            position_shift: 0,
        };
        assert!(check(concat(None), false).contains("model.encoder.positional.combine = \"concat\" needs"));
        assert!(check(concat(Some(32)), false).contains("d_pos (32) must be between 1 and"));
        assert!(check(concat(Some(8)), true).contains("needs model.tie_embeddings = false"));
        assert!(check(PositionalConfig::Rope { theta: 0.5 }, true).contains("theta (0.5)"));
        assert!(check(PositionalConfig::Relative { max_distance: 0, values: true }, true)
            .contains("max_distance (0)"));
        assert!(concat(Some(8)).validate("p", 32, 4, false).is_ok());
        let odd_heads = PositionalConfig::Rope { theta: 10000.0 }.validate("p", 36, 4, true).unwrap_err();
        assert!(odd_heads.to_string().contains("head width d_model / n_heads (9) must be even"));
    }
}
