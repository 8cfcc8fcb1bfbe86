//! Learning-rate schedules: pure functions of the update number.

/// The inverse-square-root schedule with linear warmup (Vaswani et al. 2017, eq. 3, in
/// fairseq's form): the rate rises linearly from 0 to `peak` over `warmup` updates, then decays
/// as `peak * sqrt(warmup / step)`. `step` counts updates from 1.
pub fn inverse_sqrt(step: usize, peak: f64, warmup: usize) -> f64 {
    let step = step.max(1) as f64;
    if warmup == 0 {
        return peak / step.sqrt();
    }
    let warmup = warmup as f64;
    if step < warmup {
        peak * step / warmup
    } else {
        peak * (warmup / step).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_sqrt_at_chosen_steps() {
        // Warmup 4000, peak 5e-4: step 1000 is a quarter of the way up; step 4000 is the peak;
        // step 16000 = 4 × warmup gives peak / 2; step 64000 gives peak / 4.
        let lr = |step| inverse_sqrt(step, 5e-4, 4000);
        assert!((lr(1000) - 1.25e-4).abs() < 1e-12);
        assert!((lr(4000) - 5e-4).abs() < 1e-12);
        assert!((lr(16000) - 2.5e-4).abs() < 1e-12);
        assert!((lr(64000) - 1.25e-4).abs() < 1e-12);
        assert!(lr(1) > 0.0);
    }

    #[test]
    fn no_warmup_decays_from_the_first_step() {
        assert_eq!(inverse_sqrt(1, 1.0, 0), 1.0);
        assert_eq!(inverse_sqrt(4, 1.0, 0), 0.5);
    }
}
