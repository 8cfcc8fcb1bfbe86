//! Dynamic loss scaling for f16 training (Micikevicius et al. 2018,
//! <https://arxiv.org/abs/1710.03740>, section 3.2; PyTorch's `GradScaler`, fairseq's
//! `DynamicLossScaler`).
//!
//! Gradients too small for f16 (below 2^-24) flush to zero. Multiplying the loss by a scale S
//! before the backward pass multiplies every gradient by S and lifts them into range; the
//! optimiser divides by S again. Too large an S overflows some gradient to infinity: that
//! update is skipped and S halved. After [`LossScaler::GROWTH_INTERVAL`] updates in a row
//! without an overflow, S doubles, to find the largest scale that fits. Scales are powers of
//! two, so scaling and unscaling are exact.

use serde::{Deserialize, Serialize};

/// The scale and its growth counter, saved with every checkpoint of an f16 run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// The factor S the loss is multiplied by before the backward pass.
    pub scale: f64,
    /// Updates applied since the last overflow or growth of the scale.
    pub good_updates: usize,
}

impl LossScaler {
    /// The default first scale (`train.loss_scale_init`), 2^7 as fairseq's `--fp16-init-scale`
    /// (Locus, like fairseq, sums the loss over tokens; PyTorch's `GradScaler`, for mean
    /// losses, starts at 2^16).
    pub const DEFAULT_INITIAL_SCALE: f64 = 128.0;
    /// Updates without an overflow after which the scale doubles (PyTorch's `growth_interval`).
    pub const GROWTH_INTERVAL: usize = 2000;
    /// Below this scale (2^-14, about fairseq's `min_loss_scale` of 1e-4) even unscaled
    /// gradients overflow: the run is diverging, not short of range.
    pub const MIN_SCALE: f64 = 1.0 / 16384.0;

    /// A scaler starting at `scale` (a power of two keeps scaling exact).
    pub fn with_scale(scale: f64) -> Self {
        Self { scale, good_updates: 0 }
    }

    /// Records whether one update's gradients were all finite and returns whether the update
    /// may be applied. An overflow halves the scale (the update must be skipped);
    /// [`Self::GROWTH_INTERVAL`] finite updates in a row double it.
    pub fn update(&mut self, finite: bool) -> bool {
        if finite {
            self.good_updates += 1;
            if self.good_updates == Self::GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.good_updates = 0;
            }
        } else {
            self.scale /= 2.0;
            self.good_updates = 0;
        }
        finite
    }

    /// Whether overflows have pushed the scale below [`Self::MIN_SCALE`].
    pub fn exhausted(&self) -> bool {
        self.scale < Self::MIN_SCALE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overflow_halves_the_scale_and_restarts_the_count() {
        let mut scaler = LossScaler::with_scale(32768.0);
        assert!(scaler.update(true));
        assert!(!scaler.update(false));
        assert_eq!(scaler, LossScaler { scale: 16384.0, good_updates: 0 });
    }

    #[test]
    fn the_scale_doubles_after_the_growth_interval_without_overflow() {
        let mut scaler = LossScaler::with_scale(8.0);
        for _ in 0..LossScaler::GROWTH_INTERVAL - 1 {
            scaler.update(true);
        }
        assert_eq!(scaler.scale, 8.0);
        scaler.update(true);
        assert_eq!(scaler, LossScaler { scale: 16.0, good_updates: 0 });
    }

    /// From 2^15, the 30th overflow in a row takes the scale to 2^-15, below 2^-14.
    #[test]
    fn overflows_in_a_row_exhaust_the_scale() {
        let mut scaler = LossScaler::with_scale(32768.0);
        for _ in 0..29 {
            scaler.update(false);
        }
        assert!(!scaler.exhausted(), "{}", scaler.scale);
        scaler.update(false);
        assert!(scaler.exhausted(), "{}", scaler.scale);
    }
}
