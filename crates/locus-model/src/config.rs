//! The `[model]` section of a run config: architecture hyper-parameters, validated in one place.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::positional::PositionalConfig;

/// Non-linearity of the position-wise feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `max(0, x)`, as in Vaswani et al. 2017.
    Relu,
    /// Gaussian error linear unit (erf form), as in BERT.
    Gelu,
}

/// Where layer normalisation sits relative to each residual block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormPosition {
    /// `x = norm(x + block(x))`, the original Transformer.
    Post,
    /// `x = x + block(norm(x))`, with a final norm after each stack (Xiong et al. 2020).
    Pre,
}

/// Architecture of the encoder-decoder Transformer (`[model]` in a run config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Width of embeddings and hidden states.
    #[serde(default = "default_d_model")]
    pub d_model: usize,
    /// Number of attention heads; must divide `d_model`.
    #[serde(default = "default_n_heads")]
    pub n_heads: usize,
    /// Inner width of the feed-forward blocks.
    #[serde(default = "default_d_ff")]
    pub d_ff: usize,
    /// Number of encoder layers.
    #[serde(default = "default_layers")]
    pub encoder_layers: usize,
    /// Number of decoder layers.
    #[serde(default = "default_layers")]
    pub decoder_layers: usize,
    /// Dropout on embeddings and on the output of every residual block.
    #[serde(default = "default_dropout")]
    pub dropout: f32,
    /// Dropout on attention weights.
    #[serde(default)]
    pub attention_dropout: f32,
    /// Dropout after the feed-forward non-linearity.
    #[serde(default)]
    pub activation_dropout: f32,
    /// Feed-forward non-linearity.
    #[serde(default = "default_activation")]
    pub activation: Activation,
    /// Post-norm (original) or pre-norm residual blocks.
    #[serde(default = "default_norm")]
    pub norm: NormPosition,
    /// Epsilon of every layer norm.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Multiply token embeddings by `sqrt(d_model)` (Vaswani et al. 2017, section 3.4).
    #[serde(default = "default_true")]
    pub scale_embeddings: bool,
    /// One embedding matrix for source tokens, target tokens and the output projection
    /// (needs the joint vocabulary Locus trains). `false` gives three separate matrices.
    #[serde(default = "default_true")]
    pub tie_embeddings: bool,
    /// How both stacks learn position (`[model.positional]`, tagged by `kind`), unless a stack
    /// sets its own.
    #[serde(default)]
    pub positional: PositionalConfig,
    /// Encoder-only settings (`[model.encoder]`).
    #[serde(default)]
    pub encoder: StackConfig,
    /// Decoder-only settings (`[model.decoder]`).
    #[serde(default)]
    pub decoder: StackConfig,
}

/// Settings of one stack that may differ from the other's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackConfig {
    /// This stack's positional encoding (`[model.encoder.positional]`); default: `model.positional`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positional: Option<PositionalConfig>,
}

fn default_d_model() -> usize {
    512
}
fn default_n_heads() -> usize {
    8
}
fn default_d_ff() -> usize {
    2048
}
fn default_layers() -> usize {
    6
}
fn default_dropout() -> f32 {
    0.1
}
fn default_activation() -> Activation {
    Activation::Relu
}
fn default_norm() -> NormPosition {
    NormPosition::Post
}
fn default_layer_norm_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}

impl Default for ModelConfig {
    /// The "base" Transformer of Vaswani et al. 2017 with sinusoidal positions.
    fn default() -> Self {
        Self {
            d_model: default_d_model(),
            n_heads: default_n_heads(),
            d_ff: default_d_ff(),
            encoder_layers: default_layers(),
            decoder_layers: default_layers(),
            dropout: default_dropout(),
            attention_dropout: 0.0,
            activation_dropout: 0.0,
            activation: default_activation(),
            norm: default_norm(),
            layer_norm_eps: default_layer_norm_eps(),
            scale_embeddings: true,
            tie_embeddings: true,
            positional: PositionalConfig::default(),
            encoder: StackConfig::default(),
            decoder: StackConfig::default(),
        }
    }
}

impl ModelConfig {
    /// A very small model for tests: 2+2 layers of width 32, 4 heads, no dropout.
    pub fn tiny() -> Self {
        Self {
            d_model: 32,
            n_heads: 4,
            d_ff: 64,
            encoder_layers: 2,
            decoder_layers: 2,
            dropout: 0.0,
            ..Self::default()
        }
    }

    /// A tiny model whose two stacks both use `positional`.
    pub fn tiny_with(positional: PositionalConfig) -> Self {
        Self { positional, ..Self::tiny() }
    }

    /// The encoder's positional encoding.
    pub fn encoder_positional(&self) -> &PositionalConfig {
        self.encoder.positional.as_ref().unwrap_or(&self.positional)
    }

    /// The decoder's positional encoding.
    pub fn decoder_positional(&self) -> &PositionalConfig {
        self.decoder.positional.as_ref().unwrap_or(&self.positional)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// Checks every rule a config must satisfy.
    ///
    /// # Errors
    /// [`ModelError::Config`] naming the field, its value and the rule it breaks.
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(ModelError::Config(msg));
        if self.d_model == 0 || self.n_heads == 0 {
            return fail(format!(
                "model.d_model ({}) and model.n_heads ({}) must be positive",
                self.d_model, self.n_heads
            ));
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            return fail(format!(
                "model.d_model ({}) must be divisible by model.n_heads ({})",
                self.d_model, self.n_heads
            ));
        }
        if self.d_ff == 0 {
            return fail("model.d_ff (0) must be positive".into());
        }
        if self.encoder_layers == 0 || self.decoder_layers == 0 {
            return fail(format!(
                "model.encoder_layers ({}) and model.decoder_layers ({}) must be at least 1",
                self.encoder_layers, self.decoder_layers
            ));
        }
        for (name, p) in [
            ("dropout", self.dropout),
            ("attention_dropout", self.attention_dropout),
            ("activation_dropout", self.activation_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return fail(format!("model.{name} ({p}) must be in [0, 1)"));
            }
        }
        if self.layer_norm_eps <= 0.0 {
            return fail(format!("model.layer_norm_eps ({}) must be positive", self.layer_norm_eps));
        }
        for (field, positional) in [
            ("model.encoder.positional", self.encoder_positional()),
            ("model.decoder.positional", self.decoder_positional()),
        ] {
            positional.validate(field, self.d_model, self.n_heads, self.tie_embeddings)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d_model_not_divisible_by_heads_is_named() {
        let cfg = ModelConfig { d_model: 510, n_heads: 8, ..ModelConfig::default() };
        let msg = cfg.validate().unwrap_err().to_string();
        assert!(msg.contains("model.d_model (510) must be divisible by model.n_heads (8)"), "{msg}");
    }

    #[test]
    fn dropout_out_of_range_is_named() {
        let cfg = ModelConfig { attention_dropout: 1.5, ..ModelConfig::tiny() };
        let msg = cfg.validate().unwrap_err().to_string();
        assert!(msg.contains("model.attention_dropout (1.5)"), "{msg}");
    }

    #[test]
    fn defaults_and_tiny_are_valid() {
        ModelConfig::default().validate().unwrap();
        ModelConfig::tiny().validate().unwrap();
    }
}
