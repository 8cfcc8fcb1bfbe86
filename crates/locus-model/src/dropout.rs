//! Dropout (Srivastava et al. 2014) driven by a seeded RNG.
//!
//! candle's own dropout draws from an unseeded thread RNG on the CPU; Locus draws masks from a
//! [`DropoutRng`] so that a seeded training run repeats exactly. On the CPU every mask comes
//! from the stream itself. On a GPU, masks are drawn on the device by its own generator (a
//! host-drawn mask would be copied over at every dropout site), which each forward pass of
//! [`crate::Seq2Seq`] reseeds from the stream ([`DropoutRng::seed_device`]): a run still
//! repeats, and resumes, exactly on the same device, though its masks differ from the CPU's.

use candle_core::{Device, Tensor};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ops::{apply_dropout, DropoutMask};

/// The random stream behind every dropout mask of a training run.
#[derive(Debug, Clone)]
pub struct DropoutRng(ChaCha8Rng);

impl DropoutRng {
    /// A stream seeded by `seed`.
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Stream number `stream` of the key `seed` gives: stream 0 is [`DropoutRng::new`]'s. Each
    /// rank of a data-parallel job draws from its own (its rank), so that no two ranks drop
    /// the same units.
    pub fn on_stream(seed: u64, stream: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        Self(rng)
    }

    /// Where the stream stands, to be saved with a checkpoint.
    pub fn state(&self) -> DropoutRngState {
        DropoutRngState {
            seed: self.0.get_seed(),
            stream: self.0.get_stream(),
            word_pos: self.0.get_word_pos(),
        }
    }

    /// Reseeds `device`'s own generator, which draws the dropout masks there, with the next
    /// 64-bit word of the stream; the CPU draws from the stream directly and is left alone.
    pub fn seed_device(&mut self, device: &Device) -> candle_core::Result<()> {
        if device.is_cpu() {
            return Ok(());
        }
        device.set_seed(self.0.next_u64())
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
        match self.mask(xs.elem_count(), xs.device(), rng)? {
            Some(mask) => apply_dropout(xs, &mask),
            None => Ok(xs.clone()),
        }
    }

    /// The mask for `n` elements on `device` when training (`rng` is `Some`) with `p > 0`:
    /// drawn from `rng` on the CPU, by the device's generator elsewhere.
    pub fn mask(
        &self,
        n: usize,
        device: &Device,
        rng: Option<&mut DropoutRng>,
    ) -> candle_core::Result<Option<DropoutMask>> {
        let Some(rng) = rng.filter(|_| self.p > 0.0) else { return Ok(None) };
        let mask = if device.is_cpu() {
            DropoutMask::new(rng.keep_decisions(n, self.p), 1.0 / (1.0 - self.p as f64))
        } else {
            DropoutMask::draw_on_device(n, self.p as f64, device)?
        };
        Ok(Some(mask))
    }
}

impl DropoutRng {
    /// `n` dropout decisions, `true` for keep: element `i` is dropped when the `i`-th 32-bit
    /// word `w` of the stream gives `(w >> 8) · 2⁻²⁴ < p` (rand's uniform f32), so the stream
    /// advances by `n` words. ChaCha can start anywhere in its stream, so chunks are drawn in
    /// parallel and the result is the same as drawing the words one by one.
    fn keep_decisions(&mut self, n: usize, p: f32) -> Vec<bool> {
        const CHUNK: usize = 1 << 16;
        let start = self.0.get_word_pos();
        let threshold = p * (1u32 << 24) as f32;
        let mut keep = vec![false; n];
        keep.par_chunks_mut(CHUNK).enumerate().for_each(|(chunk, keep)| {
            let mut rng = self.0.clone();
            rng.set_word_pos(start + (chunk * CHUNK) as u128);
            let mut words = vec![0u32; keep.len()];
            rng.fill(&mut words[..]);
            for (k, w) in keep.iter_mut().zip(words) {
                *k = ((w >> 8) as f32) >= threshold;
            }
        });
        self.0.set_word_pos(start + n as u128);
        keep
    }

    /// SHAPE's position shifts (Kiyono et al. 2021): one offset per sequence of a batch of
    /// `b_sz`, each uniform over `0..=max_shift`. Sequence `b` takes the `b`-th 32-bit word `w`
    /// of the stream as `k = (w · (max_shift + 1)) >> 32` (Lemire's multiply, without his
    /// rejection step, so the bias is at most `(max_shift + 1) / 2³²`): the stream advances by
    /// exactly `b_sz` words, whatever the words are.
    pub fn position_shifts(&mut self, b_sz: usize, max_shift: usize) -> Vec<usize> {
        (0..b_sz).map(|_| self.below(max_shift + 1)).collect()
    }

    /// Randomized positions (Ruoss et al. 2023): for each of `b_sz` sequences, `len` distinct
    /// positions drawn uniformly from `0..range`, in increasing order. Each sample is Floyd's
    /// algorithm (Bentley and Floyd 1987, "A sample of brilliance"), one 32-bit word per
    /// position drawn as [`position_shifts`](Self::position_shifts) draws: the stream advances
    /// by exactly `b_sz · len` words. `len` must not exceed `range`.
    pub fn sorted_positions(&mut self, b_sz: usize, len: usize, range: usize) -> Vec<Vec<usize>> {
        assert!(len <= range, "{len} distinct positions drawn from {range}");
        (0..b_sz)
            .map(|_| {
                let mut chosen = vec![false; range];
                for last in range - len..range {
                    let pick = self.below(last + 1);
                    let taken = if chosen[pick] { last } else { pick };
                    chosen[taken] = true;
                }
                chosen.iter().enumerate().filter(|(_, &taken)| taken).map(|(position, _)| position).collect()
            })
            .collect()
    }

    /// A number in `0..n` from the next 32-bit word `w`: `(w · n) >> 32`.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.0.next_u32()) * n as u128) >> 32) as usize
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

    /// Chunks drawn in parallel give the decisions of one-by-one draws, across chunk
    /// boundaries and from a stream that is not at a block boundary.
    #[test]
    fn parallel_decisions_equal_serial_draws() {
        let mut rng = DropoutRng::new(5);
        rng.0.random::<u32>();
        let mut serial = rng.clone();
        let n = 3 * (1 << 16) + 17;
        let keep = rng.keep_decisions(n, 0.3);
        let want: Vec<bool> = (0..n).map(|_| serial.0.random::<f32>() >= 0.3).collect();
        assert_eq!(keep, want);
        assert_eq!(rng.0.random::<u32>(), serial.0.random::<u32>(), "the stream continues in step");
    }

    /// Word `w` of the stream maps to `(w · (K + 1)) >> 32`, e.g. with K = 4: 0 → 0, 2³¹ → 2,
    /// 2³² - 1 → 4.
    #[test]
    fn position_shifts_take_one_word_per_sequence() {
        let mut rng = DropoutRng::new(11);
        let mut serial = rng.clone();
        let shifts = rng.position_shifts(1000, 4);
        let want: Vec<usize> =
            (0..1000).map(|_| ((serial.0.random::<u32>() as u64 * 5) >> 32) as usize).collect();
        assert_eq!(shifts, want);
        assert_eq!(rng.state(), serial.state(), "exactly one word per sequence");
        assert!(DropoutRng::new(3).position_shifts(50, 0).iter().all(|&k| k == 0));
    }

    #[test]
    fn position_shifts_are_uniform() {
        let shifts = DropoutRng::new(2).position_shifts(40_000, 3);
        for k in 0..4 {
            let share = shifts.iter().filter(|&&s| s == k).count() as f64 / 40_000.0;
            assert!((share - 0.25).abs() < 0.01, "shift {k}: share {share}");
        }
    }

    /// Sorted, distinct, in range, seeded, `b_sz · len` words per call (so a restored stream
    /// draws the same), and uniform: every position is in a sample with probability
    /// `len / range`.
    #[test]
    fn sorted_positions_are_distinct_uniform_and_resumable() {
        let mut rng = DropoutRng::new(5);
        let before = rng.state();
        let samples = rng.sorted_positions(3000, 6, 20);
        assert_eq!(rng.state().word_pos - before.word_pos, 3000 * 6);
        assert_eq!(DropoutRng::from_state(&before).sorted_positions(3000, 6, 20), samples);
        let mut counts = [0usize; 20];
        for sample in &samples {
            assert_eq!(sample.len(), 6);
            assert!(sample.windows(2).all(|w| w[0] < w[1]) && sample[5] < 20, "{sample:?}");
            sample.iter().for_each(|&p| counts[p] += 1);
        }
        for (position, &count) in counts.iter().enumerate() {
            let share = count as f64 / 3000.0;
            assert!((share - 0.3).abs() < 0.03, "position {position}: in {share} of the samples");
        }
        assert_eq!(DropoutRng::new(1).sorted_positions(2, 4, 4), vec![vec![0, 1, 2, 3]; 2]);
        assert_eq!(DropoutRng::new(1).sorted_positions(2, 0, 4), vec![Vec::<usize>::new(); 2]);
    }

    #[test]
    fn inference_is_the_identity() {
        let xs = Tensor::arange(0f32, 5.0, &Device::Cpu).unwrap();
        let ys = Dropout::new(0.5).forward(&xs, None).unwrap();
        assert_eq!(ys.to_vec1::<f32>().unwrap(), xs.to_vec1::<f32>().unwrap());
    }
}
