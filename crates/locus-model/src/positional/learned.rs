//! Trained absolute position vectors (Gehring et al. 2017, <https://arxiv.org/abs/1705.03122>;
//! BERT; GPT): a `(max_len, width)` table, added to or concatenated with the embeddings
//! ([`absolute`](super::absolute)). It cannot extrapolate: positions at or past `max_len` are
//! an error. The table is a weight, gathered from at every forward pass so gradients reach it.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder};

use super::absolute::{Absolute, Embedding};
use super::cache::Span;
use super::{cosine_similarity, Hooks, PositionTable, Relative, Rotation, Weights};
use crate::dropout::DropoutRng;
use crate::error::{ModelError, Result};

/// The rule `max_len` and `position_shift` break, if any.
pub(super) fn validate(field: &str, max_len: usize, position_shift: usize) -> Option<String> {
    if max_len == 0 {
        return Some(format!("{field}.max_len (0) must be at least 1"));
    }
    (position_shift >= max_len).then(|| {
        format!(
            "{field}.position_shift ({position_shift}) must be less than {field}.max_len \
             ({max_len}): a training sequence of n positions may start at position_shift \
             and needs max_len >= n + position_shift"
        )
    })
}

/// A built learned encoding.
#[derive(Debug, Clone)]
pub struct Learned {
    table: Tensor,
    absolute: Absolute,
}

impl Learned {
    /// A table of `max_len` positions created under `vb` as `weight`, initialised from
    /// N(0, width^-1/2) like the token embeddings.
    pub fn new(max_len: usize, absolute: Absolute, vb: VarBuilder) -> Result<Self> {
        let init = Init::Randn { mean: 0.0, stdev: (absolute.width as f64).powf(-0.5) };
        let table = vb.get_with_hints((max_len, absolute.width), "weight", init)?;
        Ok(Self { table, absolute })
    }

    /// The position vectors of positions `offset..offset + len`: `(len, width)`.
    ///
    /// # Errors
    /// [`ModelError::PositionOutOfRange`] past the end of the table.
    pub fn vectors(&self, offset: usize, len: usize) -> Result<Tensor> {
        let max_len = self.table.dim(0)?;
        if offset + len > max_len {
            return Err(ModelError::PositionOutOfRange { position: offset + len - 1, max_len });
        }
        Ok(self.table.narrow(0, offset, len)?)
    }

    /// The table must hold `len` positions from `offset` shifted by the largest shift.
    fn check_shift_fits(&self, offset: usize, len: usize) -> Result<()> {
        let (max_len, shift) = (self.table.dim(0)?, self.absolute.position_shift);
        let needed = offset + len + shift;
        if needed > max_len {
            return Err(ModelError::Config(format!(
                "positional.position_shift ({shift}) needs positional.max_len of at least {needed} to \
                 train on {len} positions from position {offset}, but max_len is {max_len}; raise \
                 max_len to the longest training sequence + position_shift, or lower position_shift"
            )));
        }
        Ok(())
    }
}

impl Hooks for Learned {
    fn add_layer(&mut self, _: VarBuilder) -> Result<()> {
        Ok(())
    }

    /// # Errors
    /// [`ModelError::PositionOutOfRange`] past the end of the table; while training with a
    /// shift, [`ModelError::Config`] naming `position_shift` and `max_len` as soon as the
    /// positions shifted by `position_shift` could leave the table, whatever is drawn.
    fn embed(
        &self,
        b_sz: usize,
        span: Span,
        rng: Option<&mut DropoutRng>,
        _: DType,
        _: &Device,
    ) -> Result<Option<Embedding>> {
        if rng.is_some() && self.absolute.position_shift > 0 {
            self.check_shift_fits(span.q_offset, span.q_len)?;
        }
        let vectors = self
            .absolute
            .positions(b_sz, span.q_len, span.q_offset, rng, |first, len| self.vectors(first, len))?;
        Ok(Some(self.absolute.embedding(vectors)))
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

    fn tables(&self, len: usize, weights: Weights) -> Result<Vec<PositionTable>> {
        let vectors = self.vectors(0, len)?.to_dtype(DType::F32)?;
        let title = match weights {
            Weights::Trained => "learned table",
            Weights::Untrained => "learned table (untrained)",
        };
        Ok(vec![
            PositionTable::new(title, "dimension", "position", vectors.clone()),
            PositionTable::new(
                "cosine similarity of positions",
                "position",
                "position",
                cosine_similarity(&vectors)?,
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::positional::absolute::Combine;
    use candle_nn::VarMap;

    fn learned(max_len: usize, width: usize, position_shift: usize) -> Learned {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        Learned::new(max_len, Absolute::new(width, Combine::Add, None, false, position_shift), vb).unwrap()
    }

    fn embed(
        pe: &Learned,
        b_sz: usize,
        span: Span,
        rng: Option<&mut DropoutRng>,
    ) -> Result<Option<Embedding>> {
        pe.embed(b_sz, span, rng, DType::F32, &Device::Cpu)
    }

    /// max_len 8 and position_shift 3: 5 positions fit (5 + 3 = 8), 6 need 9 while training,
    /// whatever is drawn, but fit at inference.
    #[test]
    fn a_learned_table_must_hold_the_largest_shift_while_training() {
        let pe = learned(8, 4, 3);
        let mut rng = DropoutRng::new(0);
        assert!(embed(&pe, 4, Span::same(5, 0), Some(&mut rng)).is_ok());
        let err = embed(&pe, 4, Span::same(6, 0), Some(&mut rng)).unwrap_err().to_string();
        assert!(err.contains("position_shift (3) needs positional.max_len of at least 9"), "{err}");
        assert!(embed(&pe, 4, Span::same(6, 0), None).is_ok());
    }

    #[test]
    fn learned_table_rejects_positions_past_max_len() {
        let pe = learned(4, 8, 0);
        assert!(embed(&pe, 1, Span::same(3, 1), None).is_ok());
        let err = embed(&pe, 1, Span::same(3, 2), None).unwrap_err().to_string();
        assert!(err.contains("position 4") && err.contains("holds max_len 4"), "{err}");
    }
}
