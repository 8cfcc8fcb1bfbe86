//! How `locus prepare`, `locus train` and `locus lab` show their progress on stderr: indicatif
//! bars on a terminal (one for preparing the data, one for training), with lines (data sizes,
//! validations) printed above them; when stderr is not a terminal (a log file, a pipe), where no
//! bar is drawn, plain lines: the same lines, plus one per log window of training, one per
//! finished lab cell, and one every ten seconds while the data is encoded.

use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use locus_data::PrepareProgress;
use locus_train::log::{TrainRecord, ValidRecord};
use locus_train::Progress;

/// How often a plain line reports the encoding of the data.
const PLAIN_PREPARE_EVERY: Duration = Duration::from_secs(10);

/// The bars of a run (or of a lab), drawn once the run reports its start.
pub struct ProgressDisplay {
    bar: OnceLock<ProgressBar>,
    /// The bar of the data being encoded (`locus prepare`, or a run's first start).
    prepare_bar: OnceLock<ProgressBar>,
    /// When the last plain line about the encoding was printed.
    last_prepare_line: Mutex<Option<Instant>>,
    /// Whether stderr is a terminal: the bars are drawn there, and only there.
    terminal: bool,
}

impl ProgressDisplay {
    /// A display on stderr.
    pub fn new() -> Self {
        Self {
            bar: OnceLock::new(),
            prepare_bar: OnceLock::new(),
            last_prepare_line: Mutex::new(None),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Shows the preparation of the data.
    fn show_prepare(&self, event: PrepareProgress) {
        match event {
            PrepareProgress::Scanning { corpus } => self.say(&format!(
                "checking and counting {} and {}",
                corpus.src.display(),
                corpus.tgt.display()
            )),
            PrepareProgress::Tokenizer { vocab_size, trained } => {
                let how = if trained { "trained on the sample" } else { "given" };
                self.say(&format!("tokenizer ({how}): {vocab_size} entries; encoding the corpora"));
            }
            PrepareProgress::Encoded { done, total } => {
                if self.terminal {
                    let template = "[{elapsed_precise}] {bar:30.green/blue} {human_pos}/{human_len} pairs | {per_sec} | ETA {eta}";
                    let bar = self.prepare_bar.get_or_init(|| {
                        ProgressBar::new(total as u64).with_style(style(template).progress_chars("=> "))
                    });
                    bar.set_position(done as u64);
                    if done >= total {
                        bar.finish_and_clear();
                    }
                } else {
                    let Ok(mut last) = self.last_prepare_line.lock() else { return };
                    let due = last.is_none_or(|at| at.elapsed() >= PLAIN_PREPARE_EVERY);
                    if due || done >= total {
                        *last = Some(Instant::now());
                        let percent = 100.0 * done as f64 / total.max(1) as f64;
                        eprintln!("encoded {done}/{total} pairs ({percent:.0}%)");
                    }
                }
            }
        }
    }

    /// Shows one report; the [`locus_train::Observer`] of a run.
    pub fn show(&self, event: Progress) {
        match event {
            Progress::Prepare(event) => self.show_prepare(event),
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

    /// Prints `line` on stderr, above the bar if one is drawn.
    fn say(&self, line: &str) {
        let drawn = self.bar.get().or(self.prepare_bar.get().filter(|bar| !bar.is_finished()));
        match drawn {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

impl Drop for ProgressDisplay {
    /// Clears the bar, also when the run failed, so that what follows starts on a clean line.
    fn drop(&mut self) {
        for bar in [self.prepare_bar.get(), self.bar.get()].into_iter().flatten() {
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
