//! Learning-rate schedules: pure functions of the update number.
//!
//! Every schedule starts with a linear warmup from 0 to its peak over `warmup` updates (none
//! when `warmup` is 0), then follows its own shape. Updates count from 1.

use serde::{Deserialize, Serialize};

/// The shape of the learning rate after warmup (`train.schedule`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// `lr * sqrt(warmup / step)`: fairseq's `inverse_sqrt`.
    #[default]
    InverseSqrt,
    /// Vaswani et al. 2017, eq. 3, as OpenNMT's `noam`: `lr * d_model^-0.5 *
    /// min(step^-0.5, step * warmup^-1.5)`, so `lr` is a scale factor (OpenNMT uses 2).
    Noam,
    /// Half a cosine from `lr` down to `min_lr` at the last update (Loshchilov and Hutter 2017).
    Cosine,
    /// A straight line from `lr` down to `min_lr` at the last update.
    Linear,
    /// `lr` throughout.
    Constant,
}

/// A schedule with its parameters, ready to be evaluated at any update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    /// The shape after warmup.
    pub kind: ScheduleKind,
    /// Peak learning rate (for `noam`, the scale factor).
    pub lr: f64,
    /// Updates of linear warmup.
    pub warmup: usize,
    /// Where `cosine` and `linear` end.
    pub min_lr: f64,
    /// The last update of the run (`cosine` and `linear` reach `min_lr` there).
    pub total_steps: usize,
    /// Model width (`noam` scales by `d_model^-0.5`).
    pub d_model: usize,
}

impl LrSchedule {
    /// The learning rate of update `step` (counted from 1).
    pub fn at(&self, step: usize) -> f64 {
        let step = step.max(1);
        if self.kind == ScheduleKind::Noam {
            // Noam's warmup is built into its formula.
            let (s, w) = (step as f64, self.warmup.max(1) as f64);
            return self.lr * (self.d_model as f64).powf(-0.5) * s.powf(-0.5).min(s * w.powf(-1.5));
        }
        if step < self.warmup {
            return self.lr * step as f64 / self.warmup as f64;
        }
        let decay_span = self.total_steps.saturating_sub(self.warmup).max(1) as f64;
        let progress = ((step - self.warmup) as f64 / decay_span).min(1.0);
        match self.kind {
            ScheduleKind::InverseSqrt => self.lr * (self.warmup.max(1) as f64 / step as f64).sqrt(),
            ScheduleKind::Cosine => {
                self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            ScheduleKind::Linear => self.lr - (self.lr - self.min_lr) * progress,
            ScheduleKind::Constant | ScheduleKind::Noam => self.lr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: ScheduleKind, lr: f64, warmup: usize) -> LrSchedule {
        LrSchedule { kind, lr, warmup, min_lr: 1e-5, total_steps: 1100, d_model: 512 }
    }

    fn close(got: f64, want: f64) {
        assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "got {got}, want {want}");
    }

    #[test]
    fn inverse_sqrt_at_chosen_steps() {
        // Warmup 4000, peak 5e-4: step 1000 is a quarter of the way up; step 4000 is the peak;
        // 16000 = 4 × warmup gives peak / 2; 64000 gives peak / 4.
        let s = schedule(ScheduleKind::InverseSqrt, 5e-4, 4000);
        close(s.at(1000), 1.25e-4);
        close(s.at(4000), 5e-4);
        close(s.at(16000), 2.5e-4);
        close(s.at(64000), 1.25e-4);
        // Without warmup it decays from the first update: 1, 1/2 at step 4.
        let s = schedule(ScheduleKind::InverseSqrt, 1.0, 0);
        close(s.at(1), 1.0);
        close(s.at(4), 0.5);
    }

    #[test]
    fn noam_at_chosen_steps() {
        // factor 2, d_model 512, warmup 4000 (OpenNMT's base recipe).
        // step 4000 (the peak): 2 / sqrt(512) / sqrt(4000) = 1.3975424859373686e-3.
        // step 1000: 2 / sqrt(512) * 1000 / 4000^1.5 = a quarter of the peak.
        // step 16000: 2 / sqrt(512) / sqrt(16000) = half the peak.
        let s = schedule(ScheduleKind::Noam, 2.0, 4000);
        let peak = 2.0 / 512f64.sqrt() / 4000f64.sqrt();
        close(peak, 1.3975424859373686e-3);
        close(s.at(4000), peak);
        close(s.at(1000), peak / 4.0);
        close(s.at(16000), peak / 2.0);
    }

    #[test]
    fn cosine_at_chosen_steps() {
        // Warmup 100, then half a cosine over the 1000 updates from 100 to 1100:
        // a quarter of the way (step 350) cos(pi/4): min + (peak - min) (1 + 0.7071) / 2;
        // half-way (step 600) the mean of peak and min; the end (1100 and after) min.
        let s = schedule(ScheduleKind::Cosine, 1e-3, 100);
        close(s.at(50), 5e-4);
        close(s.at(100), 1e-3);
        close(s.at(350), 1e-5 + 0.99e-3 * (1.0 + 0.5f64.sqrt()) / 2.0);
        close(s.at(600), (1e-3 + 1e-5) / 2.0);
        close(s.at(1100), 1e-5);
        close(s.at(2000), 1e-5);
    }

    #[test]
    fn linear_and_constant_at_chosen_steps() {
        let s = schedule(ScheduleKind::Linear, 1e-3, 100);
        close(s.at(25), 2.5e-4);
        close(s.at(100), 1e-3);
        // 10% of the way down from 1e-3 to 1e-5: 1e-3 - 0.1 * 0.99e-3.
        close(s.at(200), 1e-3 - 0.99e-4);
        close(s.at(1100), 1e-5);
        let s = schedule(ScheduleKind::Constant, 1e-3, 100);
        close(s.at(10), 1e-4);
        close(s.at(100), 1e-3);
        close(s.at(100_000), 1e-3);
    }
}
