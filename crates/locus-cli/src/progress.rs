//! How `locus train` and `locus lab` show their progress on stderr: an indicatif bar on a
//! terminal, with lines (data sizes, validations) printed above it; when stderr is not a
//! terminal (a log file, a pipe), where no bar is drawn, plain lines: the same lines, plus one
//! per log window of training and one per finished lab cell.

use std::io::IsTerminal;
use std::sync::OnceLock;

use indicatif::{ProgressBar, ProgressStyle};
use locus_train::log::{TrainRecord, ValidRecord};
use locus_train::Progress;

/// The bar of a run (or of a lab), drawn once the run reports its start.
pub struct ProgressDisplay {
    bar: OnceLock<ProgressBar>,
    /// Whether stderr is a terminal: the bar is drawn there, and only there.
    terminal: bool,
}

impl ProgressDisplay {
    /// A display on stderr.
    pub fn new() -> Self {
        Self { bar: OnceLock::new(), terminal: std::io::stderr().is_terminal() }
    }

    /// Shows one report; the [`locus_train::Observer`] of a run.
    pub fn show(&self, event: Progress) {
        match event {
            Progress::Started { step, total_steps } => {
                let template =
                    "[{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} steps | {msg} | {per_sec} | ETA {eta}";
                let bar = self.start(total_steps, style(template).progress_chars("=> "));
                bar.set_position(step as u64);
                bar.reset_eta();
            }
            Progress::Updated { step } => {
                if let Some(bar) = self.bar.get() {
                    bar.set_position(step as u64);
                }
            }
            Progress::Logged(record) => {
                let message = describe_window(record);
                if self.terminal {
                    if let Some(bar) = self.bar.get() {
                        bar.set_message(message);
                    }
                } else {
                    let total = self.bar.get().and_then(ProgressBar::length).unwrap_or_default();
                    self.say(&format!("step {}/{total} | {message}", record.step));
                }
            }
            Progress::Validated(record) => self.say(&describe_validation(record)),
            Progress::Info(line) => self.say(line),
            Progress::LabStarted { cells, finished } => {
                let template =
                    "{bar:30} {pos}/{len} cells  {elapsed_precise} elapsed, ETA {eta_precise}  {msg}";
                let bar = self.start(cells, style(template));
                bar.inc(finished as u64);
                bar.reset_eta();
            }
            Progress::CellStarted(name) => {
                if let Some(bar) = self.bar.get() {
                    bar.set_message(name.to_string());
                }
            }
            Progress::CellFinished(name) => {
                if let Some(bar) = self.bar.get() {
                    bar.inc(1);
                    if !self.terminal {
                        let (done, cells) = (bar.position(), bar.length().unwrap_or_default());
                        self.say(&format!("cell {name} done ({done}/{cells} cells)"));
                    }
                }
            }
        }
    }

    /// The bar, made now with `len` steps in `style`.
    fn start(&self, len: usize, style: ProgressStyle) -> &ProgressBar {
        self.bar.get_or_init(|| ProgressBar::new(len as u64).with_style(style))
    }

    /// Prints `line` on stderr, above the bar if there is one.
    fn say(&self, line: &str) {
        match self.bar.get() {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

impl Drop for ProgressDisplay {
    /// Clears the bar, also when the run failed, so that what follows starts on a clean line.
    fn drop(&mut self) {
        if let Some(bar) = self.bar.get() {
            bar.finish_and_clear();
        }
    }
}

/// A bar drawn as `template` says.
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// The averages of a log window, as the bar's message.
fn describe_window(record: &TrainRecord) -> String {
    format!(
        "epoch {} | loss {:.3} | lr {:.2e} | {:.0} tok/s",
        record.epoch, record.loss, record.lr, record.tokens_per_s
    )
}

/// One line about a validation.
fn describe_validation(record: &ValidRecord) -> String {
    let mut line = format!(
        "step {}: valid loss {:.3}, nll {:.3}, ppl {:.2}",
        record.step, record.loss, record.nll, record.ppl
    );
    if let (Some(bleu), Some(chrf)) = (record.bleu, record.chrf) {
        line += &format!(", BLEU {bleu:.2}, chrF {chrf:.2}");
    }
    if record.best {
        line += " (best)";
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_and_window_lines_read_as_before() {
        let record = ValidRecord {
            step: 10,
            epoch: 1,
            loss: 5.649660410036836,
            nll: 5.593349248885983,
            ppl: 5.593349248885983f64.exp(),
            bleu: Some(0.003543729297499738),
            chrf: Some(1.5461175724009235),
            best: true,
            wall_s: 5.0,
        };
        // As `locus train` printed them before (configs/tiny.toml).
        let expected = "step 10: valid loss 5.650, nll 5.593, ppl 268.63, BLEU 0.00, chrF 1.55 (best)";
        assert_eq!(describe_validation(&record), expected);
        let record = ValidRecord { bleu: None, best: false, ..record };
        assert_eq!(describe_validation(&record), "step 10: valid loss 5.650, nll 5.593, ppl 268.63");
        let window = TrainRecord {
            step: 20,
            epoch: 1,
            loss: 5.365653262273902,
            nll: 5.280224804366338,
            ppl: 196.41402511953893,
            lr: 0.002121320343559643,
            grad_norm: 0.48722716867301646,
            tokens_per_s: 48653.01501619864,
            wall_s: 5.475626569,
            loss_scale: None,
            skipped: None,
            skipped_updates: None,
        };
        assert_eq!(describe_window(&window), "epoch 1 | loss 5.366 | lr 2.12e-3 | 48653 tok/s");
    }
}
