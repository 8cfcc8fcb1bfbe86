//! Rotary position embedding, RoPE (Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary
//! Position Embedding", <https://arxiv.org/abs/2104.09864>, section 3.4.2, eq. 34).
//!
//! Queries and keys are rotated, pair by pair, by an angle proportional to their position: at
//! position `m`, the pair `(x_2i, x_2i+1)` of a `d`-wide head turns by `m · θ_i` with
//! `θ_i = theta^(-2i/d)` (`theta = 10000` in the paper):
//!
//! `x'_2i   = x_2i · cos(m θ_i) - x_2i+1 · sin(m θ_i)`
//! `x'_2i+1 = x_2i · sin(m θ_i) + x_2i+1 · cos(m θ_i)`
//!
//! so that `⟨R_m q, R_n k⟩` depends on `m - n` alone. Pairs are adjacent elements as in the paper
//! (candle's `rope_i`), not the two halves of the head (GPT-NeoX, candle's `rope`). Built from
//! differentiable tensor ops, since candle's fused rotary kernels have no backward pass.

use candle_core::{bail, Device, Result, Tensor};

/// The paper's base of the rotation frequencies.
pub const DEFAULT_THETA: f64 = 10_000.0;

/// Rotary embedding for heads of width `head_dim`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rotary {
    theta: f64,
    head_dim: usize,
}

impl Rotary {
    /// Rotations with base `theta` (see [`DEFAULT_THETA`]) for heads of width `head_dim`.
    ///
    /// # Errors
    /// When `head_dim` is zero or odd (elements rotate in pairs), or `theta` is not a positive
    /// finite number.
    pub fn new(theta: f64, head_dim: usize) -> Result<Self> {
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            bail!("rotary embedding needs an even, positive head_dim, got {head_dim}");
        }
        if !(theta.is_finite() && theta > 0.0) {
            bail!("rotary embedding needs a positive, finite theta, got {theta}");
        }
        Ok(Self { theta, head_dim })
    }

    /// Width of the vectors it rotates.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// The angle `position · theta^(-2 · pair / head_dim)` by which pair `pair` (elements
    /// `2 · pair` and `2 · pair + 1`) turns at `position`, in radians.
    pub fn angle(&self, position: usize, pair: usize) -> f64 {
        position as f64 * self.theta.powf(-2.0 * pair as f64 / self.head_dim as f64)
    }

    /// Rotates each vector of `xs` by its position, `offset + t` for sequence index `t`.
    ///
    /// Angles, cosines and sines are computed in `f64` on the host, then converted to `xs`'s dtype.
    ///
    /// # Shapes
    /// `xs`: `(b_sz, n_heads, seq_len, head_dim)`; returns the same shape.
    pub fn rotate(&self, xs: &Tensor, offset: usize) -> Result<Tensor> {
        let (b_sz, n_heads, seq_len, head_dim) = xs.dims4()?;
        if head_dim != self.head_dim {
            bail!("rotary embedding built for head_dim {}, got {:?}", self.head_dim, xs.shape());
        }
        let half = head_dim / 2;
        let angles: Vec<f64> = (offset..offset + seq_len)
            .flat_map(|position| (0..half).map(move |pair| self.angle(position, pair)))
            .collect();
        let table = |f: fn(f64) -> f64| {
            let values: Vec<f64> = angles.iter().map(|&angle| f(angle)).collect();
            Tensor::from_vec(values, (seq_len, half, 1), &Device::Cpu)?
                .to_dtype(xs.dtype())?
                .to_device(xs.device())
        };
        let (cos, sin) = (table(f64::cos)?, table(f64::sin)?);
        let pairs = xs.reshape((b_sz, n_heads, seq_len, half, 2))?;
        let (even, odd) = (pairs.narrow(4, 0, 1)?, pairs.narrow(4, 1, 1)?);
        let new_even = (even.broadcast_mul(&cos)? - odd.broadcast_mul(&sin)?)?;
        let new_odd = (even.broadcast_mul(&sin)? + odd.broadcast_mul(&cos)?)?;
        Tensor::cat(&[new_even, new_odd], 4)?.reshape((b_sz, n_heads, seq_len, head_dim))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_gradients, max_diff, random};
    use candle_core::{DType, Var};

    /// Eq. 14-15 read literally: a 2×2 rotation of each pair by `m · 10000^(-2(i-1)/d)`,
    /// `i = 1..=d/2`, one element at a time.
    fn rotate_by_loops(xs: &Tensor, offset: usize) -> Result<Tensor> {
        let data = xs.to_vec3::<f64>()?;
        let d = data[0][0].len();
        let mut out = data.clone();
        for (b, rows) in data.iter().enumerate() {
            for (t, x) in rows.iter().enumerate() {
                let m = (offset + t) as f64;
                for i in 1..=d / 2 {
                    let angle = m * 10000f64.powf(-2.0 * (i - 1) as f64 / d as f64);
                    let (x1, x2) = (x[2 * i - 2], x[2 * i - 1]);
                    out[b][t][2 * i - 2] = angle.cos() * x1 - angle.sin() * x2;
                    out[b][t][2 * i - 1] = angle.sin() * x1 + angle.cos() * x2;
                }
            }
        }
        Tensor::new(out, &Device::Cpu)
    }

    #[test]
    fn agrees_with_an_explicit_pairwise_rotation() -> Result<()> {
        let rotary = Rotary::new(DEFAULT_THETA, 8)?;
        let xs = random((2, 3, 5, 8), 1)?;
        let got = rotary.rotate(&xs, 7)?;
        let want = rotate_by_loops(&xs.reshape((6, 5, 8))?, 7)?.reshape((2, 3, 5, 8))?;
        assert!(max_diff(&got, &want)? < 1e-6);
        Ok(())
    }

    /// Forward agreement with candle's fused kernel for interleaved pairs (which has no backward).
    #[test]
    fn agrees_with_candles_fused_interleaved_rope() -> Result<()> {
        let rotary = Rotary::new(500.0, 6)?;
        let xs = random((1, 2, 4, 6), 2)?;
        let angles: Vec<f64> = (3..7).flat_map(|m| (0..3).map(move |i| rotary.angle(m, i))).collect();
        let angles = Tensor::from_vec(angles, (4, 3), &Device::Cpu)?;
        let want = candle_nn::rotary_emb::rope_i(&xs, &angles.cos()?, &angles.sin()?)?;
        assert!(max_diff(&rotary.rotate(&xs, 3)?, &want)? < 1e-12);
        Ok(())
    }

    /// At d = 8 and theta = 10^4, pair 2 turns by 10^(4 · -4/8) = 0.01 rad per position.
    #[test]
    fn angles_at_chosen_positions() -> Result<()> {
        let rotary = Rotary::new(DEFAULT_THETA, 8)?;
        assert_eq!(rotary.angle(3, 0), 3.0);
        assert!((rotary.angle(100, 2) - 1.0).abs() < 1e-12);
        assert_eq!(rotary.angle(0, 3), 0.0);
        Ok(())
    }

    #[test]
    fn rotation_keeps_every_vectors_norm() -> Result<()> {
        let xs = random((2, 2, 6, 16), 3)?;
        let rotated = Rotary::new(DEFAULT_THETA, 16)?.rotate(&xs, 11)?;
        let norms = |t: &Tensor| t.sqr()?.sum(3)?.sqrt();
        assert!(max_diff(&norms(&xs)?, &norms(&rotated)?)? < 1e-12);
        Ok(())
    }

    #[test]
    fn dot_products_depend_only_on_the_relative_position() -> Result<()> {
        let rotary = Rotary::new(DEFAULT_THETA, 8)?;
        let (q, k) = (random((1, 1, 1, 8), 4)?, random((1, 1, 1, 8), 5)?);
        let dot = |m: usize, n: usize| -> Result<f64> {
            (rotary.rotate(&q, m)? * rotary.rotate(&k, n)?)?.sum_all()?.to_scalar::<f64>()
        };
        let at_two = dot(2, 0)?;
        for (m, n) in [(3, 1), (12, 10), (1002, 1000)] {
            assert!((dot(m, n)? - at_two).abs() < 1e-10, "({m}, {n})");
        }
        for (m, n) in [(3, 0), (0, 2), (10, 10)] {
            assert!((dot(m, n)? - at_two).abs() > 1e-3, "({m}, {n})");
        }
        Ok(())
    }

    #[test]
    fn rotating_at_an_offset_matches_the_same_rows_of_a_longer_sequence() -> Result<()> {
        let rotary = Rotary::new(DEFAULT_THETA, 4)?;
        let xs = random((2, 2, 9, 4), 6)?;
        let whole = rotary.rotate(&xs, 0)?;
        for t in [0, 4, 8] {
            let alone = rotary.rotate(&xs.narrow(2, t, 1)?, t)?;
            assert!(max_diff(&alone, &whole.narrow(2, t, 1)?)? < 1e-12, "row {t}");
        }
        Ok(())
    }

    /// Angles are taken in f64 before conversion, so f32 stays accurate at large positions
    /// (an f32 angle near 10^5 would be off by about 4e-3 rad).
    #[test]
    fn f32_input_is_rotated_accurately_far_from_the_origin() -> Result<()> {
        let rotary = Rotary::new(DEFAULT_THETA, 8)?;
        let xs = random((1, 1, 3, 8), 7)?;
        let got = rotary.rotate(&xs.to_dtype(DType::F32)?, 100_000)?;
        assert_eq!(got.dtype(), DType::F32);
        assert!(max_diff(&got.to_dtype(DType::F64)?, &rotary.rotate(&xs, 100_000)?)? < 1e-6);
        Ok(())
    }

    #[test]
    fn odd_widths_bad_bases_and_mismatched_inputs_are_rejected() -> Result<()> {
        assert!(Rotary::new(DEFAULT_THETA, 7).is_err());
        assert!(Rotary::new(DEFAULT_THETA, 0).is_err());
        assert!(Rotary::new(0.0, 8).is_err());
        assert!(Rotary::new(f64::NAN, 8).is_err());
        let xs = Tensor::zeros((1, 1, 2, 6), DType::F32, &Device::Cpu)?;
        assert!(Rotary::new(DEFAULT_THETA, 4)?.rotate(&xs, 0).is_err());
        Ok(())
    }

    /// Central differences (h = 1e-5) of `sum(rotate(x) · w)` for a fixed random `w`.
    #[test]
    fn input_gradient_matches_finite_differences() -> Result<()> {
        let rotary = Rotary::new(DEFAULT_THETA, 6)?;
        let x = Var::from_tensor(&random((1, 2, 3, 6), 8)?)?;
        let w = random((1, 2, 3, 6), 9)?;
        check_gradients(&[&x], || (rotary.rotate(x.as_tensor(), 5)? * &w)?.sum_all())?;
        Ok(())
    }
}
