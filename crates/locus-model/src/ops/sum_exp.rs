//! `Σ exp(x − shift)` over a row of f32, sixteen lanes at a time: the normaliser of a
//! log-softmax, without writing the log-probabilities.
//!
//! Beam search needs each row's log-sum-exp over the whole vocabulary (6,000 to 50,000 logits)
//! at every step, but the log-probabilities of only a few tokens. libm's `expf` is a call per
//! element; here `exp` is Cephes' single-precision polynomial written lane-wise, which the
//! compiler turns into vector instructions (AVX-512 where the CPU has it, chosen at run time;
//! SSE2 otherwise). Both compile the same IEEE operations in the same order (no fused
//! multiply-add), so they give the same sum, bit for bit.

const LANES: usize = 16;

/// `Σ exp(x − shift)` over `xs`, summed in 16 lanes then across them. Entries more than about
/// 87 below `shift` (including `-inf`) add at most `1.2e-38` each: nothing next to a row whose
/// maximum is `shift`, which adds 1.
pub(crate) fn sum_exp(xs: &[f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512 F.
        return unsafe { sum_exp_avx512(xs, shift) };
    }
    sum_exp_lanes(xs, shift)
}

/// [`sum_exp_lanes`] compiled with AVX-512: one zmm register per 16 lanes.
///
/// # Safety
/// The CPU must have AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sum_exp_avx512(xs: &[f32], shift: f32) -> f32 {
    sum_exp_lanes(xs, shift)
}

#[inline(always)]
fn sum_exp_lanes(xs: &[f32], shift: f32) -> f32 {
    let mut sums = [0f32; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        let mut lanes = [0f32; LANES];
        lanes.iter_mut().zip(chunk).for_each(|(lane, &x)| *lane = x - shift);
        let lanes = exp_lanes(lanes);
        sums.iter_mut().zip(lanes).for_each(|(sum, e)| *sum += e);
    }
    let remainder = chunks.remainder();
    let mut tail = [0f32; LANES];
    tail.iter_mut().zip(remainder).for_each(|(lane, &x)| *lane = x - shift);
    let tail = exp_lanes(tail);
    sums.iter_mut().zip(tail).take(remainder.len()).for_each(|(sum, e)| *sum += e);
    // Pairwise across the lanes.
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for lane in 0..width {
            sums[lane] += sums[lane + width];
        }
    }
    sums[0]
}

/// `exp(x)` of each lane for `x ≤ 0` (Cephes `expf`: `x = n ln 2 + r`, `|r| ≤ ln 2 / 2`,
/// `exp(r)` by a degree-5 minimax polynomial, times `2^n` set in the exponent bits); within
/// 2 ulp of the exact value for `x ≥ −87.3`, and `exp(−87.3)` below that (`-inf` and NaN
/// included: the clamp takes the larger).
#[inline(always)]
fn exp_lanes(xs: [f32; LANES]) -> [f32; LANES] {
    const LOWEST: f32 = -87.336_54; // ln of the smallest normal f32
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HIGH: f32 = 0.693_359_4; // 0.693359375 exactly
    const LN2_LOW: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23
    const P: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5];
    let mut out = [0f32; LANES];
    for (out, x) in out.iter_mut().zip(xs) {
        let x = if x > LOWEST { x } else { LOWEST };
        // Adding 1.5 · 2^23 rounds x·log2(e) to the integer n and leaves n in the low bits of
        // the sum (a bit cast, not a float-to-int conversion, which would not vectorise).
        let biased = x * LOG2_E + ROUND;
        let n = biased - ROUND;
        let r = x - n * LN2_HIGH - n * LN2_LOW;
        let mut p = P[0];
        for c in &P[1..] {
            p = p * r + c;
        }
        let e = p * (r * r) + r + 1.0;
        // n is an integer in [-126, 0]: 2^n is the float with exponent bits n + 127.
        let n_bits = biased.to_bits().wrapping_sub(ROUND.to_bits());
        let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
        *out = e * scale;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sum in f64 with std's exp.
    fn reference(xs: &[f32], shift: f32) -> f64 {
        xs.iter().map(|&x| (x as f64 - shift as f64).exp()).sum()
    }

    #[test]
    fn exp_is_within_two_ulp_on_its_domain() {
        let xs: Vec<f32> = (0..=87_000).map(|i| -(i as f32) * 1e-3).collect();
        for chunk in xs.chunks(LANES) {
            let mut lanes = [0f32; LANES];
            lanes[..chunk.len()].copy_from_slice(chunk);
            for (&x, e) in chunk.iter().zip(exp_lanes(lanes)) {
                let exact = (x as f64).exp();
                let ulp = f64::from(f32::from_bits((exact as f32).to_bits() + 1) - exact as f32);
                assert!((e as f64 - exact).abs() <= 2.0 * ulp, "exp({x}) = {e}, exact {exact}");
            }
        }
    }

    #[test]
    fn sums_match_f64_and_ignore_minus_infinity() {
        // 6,007 logits: whole chunks and a tail; a -inf that must add nothing visible.
        let mut xs: Vec<f32> = (0..6007).map(|i| ((i * 7919) % 1000) as f32 * 0.02 - 12.0).collect();
        xs[4321] = f32::NEG_INFINITY;
        let shift = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let (sum, exact) = (sum_exp(&xs, shift), reference(&xs, shift));
        assert!((sum as f64 - exact).abs() <= 1e-5 * exact, "{sum} against {exact}");
        assert_eq!(sum_exp(&[], 0.0), 0.0);
        assert_eq!(sum_exp(&[3.0], 3.0), 1.0, "the maximum adds exactly 1");
    }

    #[test]
    fn the_avx512_build_sums_bit_for_bit_as_the_portable_one() {
        let xs: Vec<f32> = (0..1003).map(|i| ((i * 104_729) % 977) as f32 * -0.013).collect();
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: checked just above.
            let vector = unsafe { sum_exp_avx512(&xs, 0.5) };
            assert_eq!(vector.to_bits(), sum_exp_lanes(&xs, 0.5).to_bits());
        }
        assert_eq!(sum_exp(&xs, 0.5).to_bits(), sum_exp_lanes(&xs, 0.5).to_bits());
    }
}
