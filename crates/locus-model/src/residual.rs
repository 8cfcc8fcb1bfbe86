//! Residual blocks around a sub-layer, in the post-norm or pre-norm arrangement.

use candle_core::Tensor;

use crate::config::{ModelConfig, NormPosition};
use crate::dropout::{Dropout, DropoutRng};
use crate::norm::LayerNorm;

/// How a layer wraps each sub-layer in a residual block: `norm(xs + dropout(block(xs)))`
/// (post-norm) or `xs + dropout(block(norm(xs)))` (pre-norm).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Residual {
    position: NormPosition,
    dropout: Dropout,
}

impl Residual {
    /// The arrangement and dropout of `cfg`.
    pub(crate) fn new(cfg: &ModelConfig) -> Self {
        Self { position: cfg.norm, dropout: Dropout::new(cfg.dropout) }
    }

    /// The block around `block` with its own `norm`.
    pub(crate) fn apply(
        &self,
        norm: &LayerNorm,
        xs: &Tensor,
        mut rng: Option<&mut DropoutRng>,
        block: impl FnOnce(&Tensor, Option<&mut DropoutRng>) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<Tensor> {
        match self.position {
            NormPosition::Post => {
                let ys = block(xs, rng.as_deref_mut())?;
                let dropout = self.dropout.mask(ys.elem_count(), ys.device(), rng)?;
                norm.forward_residual(xs, &ys, dropout.as_ref())
            }
            NormPosition::Pre => {
                let ys = block(&norm.forward(xs)?, rng.as_deref_mut())?;
                xs + self.dropout.forward(&ys, rng)?
            }
        }
    }
}
