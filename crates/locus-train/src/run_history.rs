//! A training run's history, read from its `metrics.jsonl`: the training and validation records of
//! the timeline that ends the file, one per step, in step order.
//!
//! Each line is an [`Event`], the type the trainer writes. A resumed run appends a
//! `resume` record with the step of the checkpoint it restarted from; the records that the
//! interrupted run logged after that checkpoint (earlier in the file, with a larger step) belong to
//! an abandoned timeline and are dropped. When two records of one kind share a step, the later one
//! wins. Other events (`data`, `model`, `stop`, and kinds this version does not know) and unknown keys
//! are ignored, and a missing or
//! `null` value (how serde_json writes NaN and infinities) counts as missing.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Result, TrainError};
use crate::log::{Event, TrainRecord, ValidRecord};
use serde_json::error::Category;
use serde_json::Value;

/// What a plot draws of a `train` record: averages over a log window, and the learning
/// rate at its end.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainPoint {
    /// The update count.
    pub step: u64,
    /// The label-smoothed training loss (nats per token).
    pub loss: Option<f64>,
    /// The training negative log-likelihood (nats per token).
    pub nll: Option<f64>,
    /// The learning rate.
    pub lr: Option<f64>,
}

/// What a plot draws of a `valid` record: scores on the validation set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ValidPoint {
    /// The update count.
    pub step: u64,
    /// The label-smoothed validation loss (nats per token).
    pub loss: Option<f64>,
    /// The validation negative log-likelihood (nats per token).
    pub nll: Option<f64>,
    /// Corpus BLEU, when the trainer computed it.
    pub bleu: Option<f64>,
    /// Corpus chrF, when the trainer computed it.
    pub chrf: Option<f64>,
}

/// A value read from a record, unless it was missing or `null` (read as NaN).
fn present(value: f64) -> Option<f64> {
    (!value.is_nan()).then_some(value)
}

impl From<&TrainRecord> for TrainPoint {
    fn from(record: &TrainRecord) -> Self {
        Self {
            step: record.step as u64,
            loss: present(record.loss),
            nll: present(record.nll),
            lr: present(record.lr),
        }
    }
}

impl From<&ValidRecord> for ValidPoint {
    fn from(record: &ValidRecord) -> Self {
        Self {
            step: record.step as u64,
            loss: present(record.loss),
            nll: present(record.nll),
            bleu: record.bleu,
            chrf: record.chrf,
        }
    }
}

/// The training and validation records of a run, each in ascending step order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunHistory {
    /// The `train` records.
    pub train: Vec<TrainPoint>,
    /// The `valid` records.
    pub valid: Vec<ValidPoint>,
}

impl RunHistory {
    /// Reads `dir/metrics.jsonl`.
    ///
    /// # Errors
    /// When the file does not exist or cannot be read, when a line is not a JSON object with a
    /// string `"event"`, when a record is not what its event says (e.g. a `train`, `valid` or
    /// `resume` record without a whole `"step"`, a value that is not a number), or when there are
    /// no `train` or `valid` records. Errors name the file and the line.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("metrics.jsonl");
        if !path.is_file() {
            return Err(TrainError::Metrics(format!(
                "{} does not exist; is {} a run directory (train.out_dir)?",
                path.display(),
                dir.display()
            )));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses the contents of a metrics file; `name` names it in errors. A last line cut short
    /// (no newline, incomplete JSON: the trainer may be writing it) is skipped.
    ///
    /// # Errors
    /// As [`RunHistory::read`], for everything but the file itself.
    pub fn parse(text: &str, name: &str) -> Result<Self> {
        let mut train = BTreeMap::new();
        let mut valid = BTreeMap::new();
        let last = text.lines().count();
        for (n, line) in (1..).zip(text.lines()) {
            if line.trim().is_empty() {
                continue;
            }
            let value: Value = match serde_json::from_str(line) {
                Ok(value) => value,
                Err(e) if n == last && !text.ends_with('\n') && e.classify() == Category::Eof => break,
                Err(e) => return Err(TrainError::Metrics(format!("{name} line {n}: {}", json_error(&e)))),
            };
            let event = event(value).map_err(|msg| TrainError::Metrics(format!("{name} line {n}: {msg}")))?;
            match event {
                Event::Train(record) => {
                    train.insert(record.step, TrainPoint::from(&record));
                }
                Event::Valid(record) => {
                    valid.insert(record.step, ValidPoint::from(&record));
                }
                Event::Resume(record) => {
                    train.retain(|&s, _| s <= record.step);
                    valid.retain(|&s, _| s <= record.step);
                }
                Event::Data(_) | Event::Model(_) | Event::Stop(_) | Event::Unknown => {}
            }
        }
        if train.is_empty() && valid.is_empty() {
            return Err(TrainError::Metrics(format!(
                "{name} has no train or valid records (has the run logged its first step yet?)"
            )));
        }
        Ok(RunHistory { train: train.into_values().collect(), valid: valid.into_values().collect() })
    }
}

/// A serde_json error without its "at line 1 column N" (every record is on line 1 of itself).
fn json_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.strip_suffix(&format!(" at line {} column {}", e.line(), e.column())) {
        Some(msg) => format!("invalid JSON at column {}: {msg}", e.column()),
        None => format!("invalid JSON: {msg}"),
    }
}

/// The event a line holds, or what is wrong with it: not an object, no string `"event"` (checked
/// first, so that a tag of another type never passes for a variant's index), or a record that
/// is not what its event says.
fn event(value: Value) -> std::result::Result<Event, String> {
    let Some(obj) = value.as_object() else {
        return Err("expected a JSON object (one record per line)".to_string());
    };
    let kind = match obj.get("event") {
        Some(Value::String(kind)) => kind.clone(),
        Some(other) => return Err(format!("\"event\" must be a string, got {other}")),
        None => return Err("the record has no \"event\"".to_string()),
    };
    serde_json::from_value(value).map_err(|e| {
        let msg = e.to_string();
        match msg.strip_prefix("missing field `").and_then(|field| field.strip_suffix('`')) {
            Some(field) => format!("the {kind} record has no \"{field}\""),
            None => format!("the {kind} record: {msg}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> RunHistory {
        RunHistory::parse(text, "metrics.jsonl").unwrap()
    }

    fn error(text: &str) -> String {
        format!("{:#}", RunHistory::parse(text, "run/metrics.jsonl").unwrap_err())
    }

    fn steps(history: &RunHistory) -> (Vec<u64>, Vec<u64>) {
        (history.train.iter().map(|p| p.step).collect(), history.valid.iter().map(|p| p.step).collect())
    }

    #[test]
    fn records_are_read_in_step_order_and_other_events_ignored() {
        let history = parse(concat!(
            r#"{"event":"data","train_pairs":100}"#,
            "\n",
            r#"{"event":"model","parameters":1234}"#,
            "\n\n",
            r#"{"event":"train","step":50,"epoch":1,"loss":6.5,"nll":6.4,"lr":0.0002,"extra":[1]}"#,
            "\n",
            r#"{"event":"train","step":25,"epoch":1,"loss":7.1,"nll":7.0,"ppl":1096.6,"lr":0.0001}"#,
            "\n",
            r#"{"event":"valid","step":50,"loss":3.1,"nll":2.9,"bleu":12.3,"chrf":40.1}"#,
            "\n",
            r#"{"event":"stop","step":50,"reason":"max_steps"}"#,
            "\n",
            r#"{"event":"from_a_newer_locus","step":50,"loss":1.0}"#,
            "\n",
        ));
        assert_eq!(
            history.train,
            [
                TrainPoint { step: 25, loss: Some(7.1), nll: Some(7.0), lr: Some(0.0001) },
                TrainPoint { step: 50, loss: Some(6.5), nll: Some(6.4), lr: Some(0.0002) },
            ]
        );
        let valid =
            ValidPoint { step: 50, loss: Some(3.1), nll: Some(2.9), bleu: Some(12.3), chrf: Some(40.1) };
        assert_eq!(history.valid, [valid]);
    }

    #[test]
    fn missing_and_null_values_are_absent() {
        let history = parse(concat!(
            r#"{"event":"train","step":10,"loss":null}"#,
            "\n",
            r#"{"event":"valid","step":10,"loss":3.0,"nll":2.5}"#,
        ));
        assert_eq!(history.train, [TrainPoint { step: 10, ..Default::default() }]);
        assert_eq!(history.valid[0].bleu, None);
        assert_eq!(history.valid[0].chrf, None);
        // Validation records alone are a history too.
        assert_eq!(steps(&parse(r#"{"event":"valid","step":5}"#)), (vec![], vec![5]));
    }

    #[test]
    fn a_resume_drops_the_abandoned_timeline() {
        let mut text = String::new();
        for step in [100, 200, 300, 400, 500] {
            text += &format!("{{\"event\":\"train\",\"step\":{step},\"loss\":{}}}\n", step / 100);
        }
        for step in [200, 400] {
            text += &format!("{{\"event\":\"valid\",\"step\":{step},\"loss\":1.0}}\n");
        }
        // Resumed from the checkpoint at step 200: steps 300-500 and the valid at 400 are redone.
        text += "{\"event\":\"resume\",\"step\":200,\"wall_s\":1.0}\n";
        text += "{\"event\":\"train\",\"step\":300,\"loss\":30.0}\n";
        let history = parse(&text);
        assert_eq!(steps(&history), (vec![100, 200, 300], vec![200]));
        assert_eq!(history.train[2].loss, Some(30.0));
        // A record at the resume step itself stays (the checkpoint was written after it).
        assert_eq!(history.train[1].loss, Some(2.0));
    }

    #[test]
    fn the_later_record_of_a_step_wins() {
        let history = parse(concat!(
            r#"{"event":"valid","step":200,"loss":3.0,"bleu":10.0}"#,
            "\n",
            r#"{"event":"train","step":200,"loss":4.0}"#,
            "\n",
            r#"{"event":"valid","step":200,"loss":2.5}"#,
            "\n",
        ));
        assert_eq!(history.valid, [ValidPoint { step: 200, loss: Some(2.5), ..Default::default() }]);
        assert_eq!(history.train[0].loss, Some(4.0));
    }

    #[test]
    fn a_last_line_cut_short_is_skipped() {
        let text = "{\"event\":\"train\",\"step\":1,\"loss\":2.0}\n{\"event\":\"train\",\"step\":2,\"lo";
        assert_eq!(steps(&parse(text)), (vec![1], vec![]));
        // With its newline, or in the middle of the file, it is an error.
        let err = error(&format!("{text}\n"));
        assert!(err.contains("run/metrics.jsonl line 2: invalid JSON at column"), "{err}");
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line() {
        let good = "{\"event\":\"train\",\"step\":1,\"loss\":2.0}\n";
        let cases = [
            ("not json\n", "line 2: invalid JSON at column 2: expected ident"),
            ("[1, 2]\n", "line 2: expected a JSON object"),
            ("{\"step\":3}\n", "line 2: the record has no \"event\""),
            ("{\"event\":7}\n", "line 2: \"event\" must be a string, got 7"),
            ("{\"event\":\"train\",\"loss\":2.0}\n", "line 2: the train record has no \"step\""),
            ("{\"event\":\"valid\",\"step\":-4}\n", "line 2: the valid record: invalid value: integer `-4`"),
            ("{\"event\":\"resume\"}\n", "line 2: the resume record has no \"step\""),
            (
                "{\"event\":\"valid\",\"step\":4,\"bleu\":\"high\"}\n",
                "the valid record: invalid type: string \"high\", expected f64",
            ),
        ];
        for (line, expected) in cases {
            let err = error(&format!("{good}{line}"));
            assert!(err.starts_with("run/metrics.jsonl line 2: "), "{err}");
            assert!(err.contains(expected), "{err}");
        }
        let err = error("{\"event\":\"data\"}\n{\"event\":\"stop\",\"step\":0,\"reason\":\"max_steps\"}\n");
        assert!(err.contains("run/metrics.jsonl has no train or valid records"), "{err}");
        assert!(error("").contains("no train or valid records"));
    }

    #[test]
    fn a_missing_run_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("runs/none");
        let err = format!("{:#}", RunHistory::read(&run).unwrap_err());
        let expected = format!(
            "{} does not exist; is {} a run directory (train.out_dir)?",
            run.join("metrics.jsonl").display(),
            run.display()
        );
        assert_eq!(err, expected);
    }
}
