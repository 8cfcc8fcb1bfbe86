//! Dropout (Srivastava et al. 2014) driven by a seeded RNG.
//!
//! candle's own dropout draws from an unseeded thread RNG on the CPU; Locus draws masks from a
//! [`DropoutRng`] so that a seeded training run repeats exactly.

use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The random stream behind every dropout mask of a training run.
#[derive(Debug, Clone)]
pub struct DropoutRng(ChaCha8Rng);

impl DropoutRng {
    /// A stream seeded by `seed`.
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Where the stream stands, to be saved with a checkpoint.
    pub fn state(&self) -> DropoutRngState {
        DropoutRngState {
            seed: self.0.get_seed(),
            stream: self.0.get_stream(),
            word_pos: self.0.get_word_pos(),
        }
    }

    /// The stream at a saved position: it continues exactly where [`DropoutRng::state`] was
    /// taken.
    pub fn from_state(state: &DropoutRngState) -> Self {
        let mut rng = ChaCha8Rng::from_seed(state.seed);
        rng.set_stream(state.stream);
        rng.set_word_pos(state.word_pos);
        Self(rng)
    }
}

/// A [`DropoutRng`]'s position: its ChaCha8 key, stream and word position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropoutRngState {
    /// The 256-bit key.
    pub seed: [u8; 32],
    /// The stream number.
    pub stream: u64,
    /// The number of 32-bit words drawn so far.
    pub word_pos: u128,
}

/// Zeroes each element with probability `p` and scales the rest by `1 / (1 - p)`.
#[derive(Debug, Clone, Copy)]
pub struct Dropout {
    p: f32,
}

impl Dropout {
    /// Dropout with drop probability `p` in `[0, 1)`.
    pub fn new(p: f32) -> Self {
        Self { p }
    }

    /// Applies dropout when `rng` is `Some` (training) and `p > 0`; identity otherwise.
    pub fn forward(&self, xs: &Tensor, rng: Option<&mut DropoutRng>) -> candle_core::Result<Tensor> {
        let Some(rng) = rng else { return Ok(xs.clone()) };
        if self.p == 0.0 {
            return Ok(xs.clone());
        }
        let scale = 1.0 / (1.0 - self.p);
        let mask: Vec<f32> =
            (0..xs.elem_count()).map(|_| if rng.0.random::<f32>() < self.p { 0.0 } else { scale }).collect();
        let mask = Tensor::from_vec(mask, xs.shape(), xs.device())?.to_dtype(xs.dtype())?;
        xs.mul(&mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn dropout_keeps_the_expectation_and_is_seeded() {
        let xs = Tensor::ones(10_000, DType::F32, &Device::Cpu).unwrap();
        let drop = Dropout::new(0.25);
        let a = drop.forward(&xs, Some(&mut DropoutRng::new(3))).unwrap().to_vec1::<f32>().unwrap();
        let b = drop.forward(&xs, Some(&mut DropoutRng::new(3))).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, b);
        let zeros = a.iter().filter(|&&x| x == 0.0).count() as f64 / a.len() as f64;
        assert!((zeros - 0.25).abs() < 0.02, "dropped fraction {zeros}");
        assert!(a.iter().all(|&x| x == 0.0 || (x - 4.0 / 3.0).abs() < 1e-6));
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        assert!((mean - 1.0).abs() < 0.03, "mean {mean}");
    }

    #[test]
    fn a_restored_stream_continues_where_it_was_saved() {
        let xs = Tensor::ones(1000, DType::F32, &Device::Cpu).unwrap();
        let drop = Dropout::new(0.5);
        let mut rng = DropoutRng::new(9);
        drop.forward(&xs, Some(&mut rng)).unwrap();
        let mut restored = DropoutRng::from_state(&rng.state());
        let want = drop.forward(&xs, Some(&mut rng)).unwrap().to_vec1::<f32>().unwrap();
        let got = drop.forward(&xs, Some(&mut restored)).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn inference_is_the_identity() {
        let xs = Tensor::arange(0f32, 5.0, &Device::Cpu).unwrap();
        let ys = Dropout::new(0.5).forward(&xs, None).unwrap();
        assert_eq!(ys.to_vec1::<f32>().unwrap(), xs.to_vec1::<f32>().unwrap());
    }
}
