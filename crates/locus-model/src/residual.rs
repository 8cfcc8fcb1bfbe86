//! Residual blocks around a sub-layer, in the post-norm or pre-norm arrangement.

use candle_core::Tensor;

use crate::config::NormPosition;
use crate::dropout::{Dropout, DropoutRng};
use crate::norm::LayerNorm;

/// One residual block: `norm(xs + dropout(block(xs)))` (post-norm) or
/// `xs + dropout(block(norm(xs)))` (pre-norm).
pub(crate) struct Residual<'a> {
    pub norm: &'a LayerNorm,
    pub position: NormPosition,
    pub dropout: Dropout,
}

impl Residual<'_> {
    pub(crate) fn apply(
        &self,
        xs: &Tensor,
        mut rng: Option<&mut DropoutRng>,
        block: impl FnOnce(&Tensor, Option<&mut DropoutRng>) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<Tensor> {
        match self.position {
            NormPosition::Post => {
                let ys = block(xs, rng.as_deref_mut())?;
                let dropout = self.dropout.mask(ys.elem_count(), ys.device(), rng)?;
                self.norm.forward_residual(xs, &ys, dropout.as_ref())
            }
            NormPosition::Pre => {
                let ys = block(&self.norm.forward(xs)?, rng.as_deref_mut())?;
                xs + self.dropout.forward(&ys, rng)?
            }
        }
    }
}
