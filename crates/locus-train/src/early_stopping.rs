//! Which validation is the best so far (`train.best_metric`), and when to stop because none
//! has improved for `train.patience` validations. Pure decisions, saved with checkpoints.

use serde::{Deserialize, Serialize};

/// The validation score that chooses the `best` checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BestMetric {
    /// Negative log-likelihood per token (lower is better); the same order as perplexity.
    #[default]
    Nll,
    /// Label-smoothed loss per token (lower is better), fairseq's default.
    Loss,
    /// Corpus BLEU of greedy translations (higher is better).
    Bleu,
    /// Corpus chrF2 of greedy translations (higher is better).
    Chrf,
}

impl BestMetric {
    /// Whether a larger score is an improvement.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Self::Bleu | Self::Chrf)
    }

    /// The name used in configs and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Nll => "nll",
            Self::Loss => "loss",
            Self::Bleu => "bleu",
            Self::Chrf => "chrf",
        }
    }
}

/// The best validation so far and the validations since it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BestTracker {
    /// The best score seen, if any validation ran.
    pub best: Option<f64>,
    /// The update at which it was seen.
    pub best_step: Option<usize>,
    /// Validations since the best one that did not improve on it.
    pub stale_validations: usize,
}

impl BestTracker {
    /// Records the score of the validation at `step`; returns whether it is a new best.
    /// Ties do not improve: the earlier checkpoint stays the best.
    pub fn observe(&mut self, metric: BestMetric, step: usize, score: f64) -> bool {
        let improved = match self.best {
            None => true,
            Some(best) if metric.higher_is_better() => score > best,
            Some(best) => score < best,
        };
        if improved {
            self.best = Some(score);
            self.best_step = Some(step);
            self.stale_validations = 0;
        } else {
            self.stale_validations += 1;
        }
        improved
    }

    /// Whether training should stop: `patience` validations in a row without improvement
    /// (never when `patience` is `None`).
    pub fn should_stop(&self, patience: Option<usize>) -> bool {
        patience.is_some_and(|patience| self.stale_validations >= patience)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_is_better_for_losses_and_ties_do_not_improve() {
        let mut tracker = BestTracker::default();
        let improvements: Vec<bool> = [(100, 3.0), (200, 2.5), (300, 2.5), (400, 2.7), (500, 2.4)]
            .iter()
            .map(|&(step, nll)| tracker.observe(BestMetric::Nll, step, nll))
            .collect();
        assert_eq!(improvements, [true, true, false, false, true]);
        assert_eq!((tracker.best, tracker.best_step, tracker.stale_validations), (Some(2.4), Some(500), 0));
    }

    #[test]
    fn higher_is_better_for_bleu() {
        let mut tracker = BestTracker::default();
        assert!(tracker.observe(BestMetric::Bleu, 1, 10.0));
        assert!(!tracker.observe(BestMetric::Bleu, 2, 9.0));
        assert!(tracker.observe(BestMetric::Bleu, 3, 11.0));
        assert_eq!(tracker.best_step, Some(3));
    }

    #[test]
    fn stops_after_patience_validations_without_improvement() {
        // Patience 2: the best at the 2nd validation, then two worse ones stop the run at the 4th.
        let mut tracker = BestTracker::default();
        let stops: Vec<bool> = [5.0, 4.0, 4.5, 4.1, 3.0]
            .iter()
            .enumerate()
            .map(|(i, &loss)| {
                tracker.observe(BestMetric::Loss, i, loss);
                tracker.should_stop(Some(2))
            })
            .collect();
        assert_eq!(stops, [false, false, false, true, false]);
        // Without patience a run never stops early.
        tracker.stale_validations = 1000;
        assert!(!tracker.should_stop(None));
    }
}
