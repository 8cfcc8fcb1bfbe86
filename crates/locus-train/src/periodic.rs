//! The trainer's periodic decisions, as pure functions of the update count: after an update,
//! whether to log and validate ([`Cadence::measure`]); after the validation, whether to save a
//! checkpoint, under which links, and whether to stop, and why ([`Cadence::conclude`]).

use serde::{Deserialize, Serialize};

use crate::checkpoint::{BEST, LAST};

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `train.max_steps` updates were applied.
    MaxSteps,
    /// `train.max_epochs` passes over the data were made.
    MaxEpochs,
    /// `train.patience` validations in a row did not improve on the best.
    EarlyStopping,
    /// [`crate::TrainOptions::should_stop`] asked to stop.
    Interrupted,
}

impl StopReason {
    /// A short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::MaxSteps => "max_steps",
            Self::MaxEpochs => "max_epochs",
            Self::EarlyStopping => "early_stopping",
            Self::Interrupted => "interrupted",
        }
    }
}

/// When a run logs, validates, saves and stops, in updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    /// Updates between two `train` records (`train.log_interval`).
    pub log_interval: usize,
    /// Updates between two validations (`train.valid_interval`).
    pub valid_interval: usize,
    /// Updates between two checkpoints (`train.save_interval`).
    pub save_interval: usize,
    /// The last update: `train.max_steps` or `train.max_epochs` worth of updates, the smaller.
    pub total_steps: usize,
    /// `train.max_steps`, which names the reason when both limits fall on `total_steps`.
    pub max_steps: Option<usize>,
}

/// What to measure after an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measure {
    /// Write a `train` record (the window's averages).
    pub log: bool,
    /// Validate.
    pub validate: bool,
}

/// What happened at an update, beyond its number, that the end of the update depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// This update's validation was the best so far.
    pub improved: bool,
    /// `train.patience` validations in a row have not improved.
    pub early_stop: bool,
    /// The caller asked the run to stop (SIGINT, SIGTERM).
    pub interrupted: bool,
}

/// How an update ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conclusion {
    /// Save a checkpoint, pointed to by these links (`last`, and `best` when it improved).
    pub save: Option<&'static [&'static str]>,
    /// Stop after it, for this reason.
    pub stop: Option<StopReason>,
}

impl Cadence {
    /// Why no update may follow update `step`, if none may: the step limit is reached.
    pub fn limit(&self, step: usize) -> Option<StopReason> {
        if step < self.total_steps {
            return None;
        }
        let by_steps = self.max_steps.is_some_and(|max| step >= max);
        Some(if by_steps { StopReason::MaxSteps } else { StopReason::MaxEpochs })
    }

    /// After update `step`: log every `log_interval` updates, validate every `valid_interval`,
    /// and both after the last update.
    pub fn measure(&self, step: usize) -> Measure {
        let last = step == self.total_steps;
        Measure {
            log: step.is_multiple_of(self.log_interval) || last,
            validate: step.is_multiple_of(self.valid_interval) || last,
        }
    }

    /// After update `step` and its validation, if any: a checkpoint every `save_interval`
    /// updates, after the last, after a validation that improved (also linked as `best`) and
    /// before an early or interrupted stop. Early stopping wins over an interruption, which
    /// wins over the step limit.
    pub fn conclude(&self, step: usize, outcome: Outcome) -> Conclusion {
        let stop = if outcome.early_stop {
            Some(StopReason::EarlyStopping)
        } else if outcome.interrupted {
            Some(StopReason::Interrupted)
        } else {
            self.limit(step)
        };
        let due = step.is_multiple_of(self.save_interval) || step == self.total_steps;
        let save: Option<&'static [&'static str]> = if outcome.improved {
            Some(&[LAST, BEST])
        } else if due || stop.is_some() {
            Some(&[LAST])
        } else {
            None
        };
        Conclusion { save, stop }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CADENCE: Cadence = Cadence {
        log_interval: 5,
        valid_interval: 10,
        save_interval: 15,
        total_steps: 20,
        max_steps: Some(20),
    };

    const LAST_ONLY: Option<&[&str]> = Some(&[LAST]);
    const LAST_AND_BEST: Option<&[&str]> = Some(&[LAST, BEST]);

    #[test]
    fn logs_and_validates_on_their_intervals_and_after_the_last_update() {
        // log 5, valid 10, total 20: logs at 5, 10, 15, 20; validates at 10, 20.
        for step in 1..=20 {
            let expected = match step {
                5 | 15 => Measure { log: true, validate: false },
                10 | 20 => Measure { log: true, validate: true },
                _ => Measure { log: false, validate: false },
            };
            assert_eq!(CADENCE.measure(step), expected, "step {step}");
        }
        // A last update off every interval still logs and validates.
        let odd = Cadence { total_steps: 17, max_steps: Some(17), ..CADENCE };
        assert_eq!(odd.measure(17), Measure { log: true, validate: true });
        assert_eq!(odd.measure(16), Measure { log: false, validate: false });
    }

    #[test]
    fn saves_on_its_interval_and_after_the_last_update() {
        // save 15, total 20, nothing improving: saves at 15 and 20, stops after 20.
        for step in 1..=20 {
            let expected = match step {
                15 => Conclusion { save: LAST_ONLY, stop: None },
                20 => Conclusion { save: LAST_ONLY, stop: Some(StopReason::MaxSteps) },
                _ => Conclusion { save: None, stop: None },
            };
            assert_eq!(CADENCE.conclude(step, Outcome::default()), expected, "step {step}");
        }
    }

    #[test]
    fn an_improvement_saves_as_last_and_best() {
        let improved = Outcome { improved: true, ..Outcome::default() };
        assert_eq!(CADENCE.conclude(10, improved), Conclusion { save: LAST_AND_BEST, stop: None });
        assert_eq!(
            CADENCE.conclude(20, improved),
            Conclusion { save: LAST_AND_BEST, stop: Some(StopReason::MaxSteps) }
        );
    }

    #[test]
    fn an_interruption_saves_and_stops_at_any_update() {
        let interrupted = Outcome { interrupted: true, ..Outcome::default() };
        for step in [1, 7, 15, 20] {
            let expected = Conclusion { save: LAST_ONLY, stop: Some(StopReason::Interrupted) };
            assert_eq!(CADENCE.conclude(step, interrupted), expected, "step {step}");
        }
    }

    #[test]
    fn early_stopping_wins_over_an_interruption_and_the_limit() {
        let early = Outcome { early_stop: true, interrupted: true, improved: false };
        for step in [10, 20] {
            let expected = Conclusion { save: LAST_ONLY, stop: Some(StopReason::EarlyStopping) };
            assert_eq!(CADENCE.conclude(step, early), expected, "step {step}");
        }
    }

    #[test]
    fn the_limit_names_max_steps_or_max_epochs() {
        assert_eq!(CADENCE.limit(19), None);
        assert_eq!(CADENCE.limit(20), Some(StopReason::MaxSteps));
        // A resumed run past its (lowered) limit stops before any update.
        assert_eq!(CADENCE.limit(25), Some(StopReason::MaxSteps));
        // max_epochs gives 20 updates, max_steps 100 or none.
        let by_epochs = Cadence { max_steps: Some(100), ..CADENCE };
        assert_eq!(by_epochs.limit(20), Some(StopReason::MaxEpochs));
        assert_eq!(Cadence { max_steps: None, ..CADENCE }.limit(20), Some(StopReason::MaxEpochs));
        assert_eq!(
            by_epochs.conclude(20, Outcome::default()),
            Conclusion { save: LAST_ONLY, stop: Some(StopReason::MaxEpochs) }
        );
    }
}
