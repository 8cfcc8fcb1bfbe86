//! No position signal. The encoder is then permutation-equivariant, and the decoder sees order
//! only through its causal mask (Haviv et al. 2022, <https://arxiv.org/abs/2203.16634>).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::absolute::Embedding;
use super::cache::Span;
use super::{Hooks, PositionTable, Relative, Rotation, Weights};
use crate::dropout::DropoutRng;
use crate::error::Result;

/// `none` has no settings to check.
pub(super) fn validate() -> Option<String> {
    None
}

/// The encoding that adds nothing anywhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPositions;

impl Hooks for NoPositions {
    fn add_layer(&mut self, _: VarBuilder) -> Result<()> {
        Ok(())
    }

    fn embed(
        &self,
        _: usize,
        _: Span,
        _: Option<&mut DropoutRng>,
        _: DType,
        _: &Device,
    ) -> Result<Option<Embedding>> {
        Ok(None)
    }

    fn rotate(&self, _: Span, _: DType, _: &Device) -> Result<Option<Rotation>> {
        Ok(None)
    }

    fn score_bias(&self, _: Span, _: Option<&[usize]>, _: DType, _: &Device) -> Result<Option<Tensor>> {
        Ok(None)
    }

    fn relative(&self, _: Span, _: &Device) -> Result<Option<Relative<'_>>> {
        Ok(None)
    }

    /// Nothing to draw.
    fn tables(&self, _: usize, _: Weights) -> Result<Vec<PositionTable>> {
        Ok(Vec::new())
    }
}
