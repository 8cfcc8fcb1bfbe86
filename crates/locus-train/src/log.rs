//! `metrics.jsonl`: one JSON object per line, an [`Event`], appended and flushed as it happens.
//!
//! The trainer writes the events and `locus plot` reads them back, both through [`Event`]. A
//! reader takes what older or hand-written logs hold: every number of a record but its `step` may
//! be missing, and then reads as 0 (a count) or NaN (a measurement), as does `null` (how
//! serde_json writes NaN and the infinities); keys a record does not know are ignored.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Result, TrainError};
use crate::periodic::StopReason;

/// One record of `metrics.jsonl`, its kind under `"event"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The data a session trains and validates on, after the length filters.
    Data(DataRecord),
    /// The model's size.
    Model(ModelRecord),
    /// A session continues a run from a checkpoint: the records the run logged after that
    /// checkpoint (earlier in the file, with larger steps) belong to an abandoned timeline.
    Resume(ResumeRecord),
    /// Averages over the updates since the previous `train` record.
    Train(TrainRecord),
    /// Scores of one validation.
    Valid(ValidRecord),
    /// The session ended.
    Stop(StopRecord),
    /// A record of a kind this version does not know (written by a newer Locus): readers skip
    /// it, so that old readers keep working on new files. Never written.
    #[serde(other)]
    Unknown,
}

/// The `data` record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataRecord {
    /// Size of the subword vocabulary.
    pub vocab_size: usize,
    /// Training pairs kept by the length filters.
    pub train_pairs: usize,
    /// Training pairs dropped by them.
    pub train_dropped: usize,
    /// Validation pairs kept.
    pub valid_pairs: usize,
    /// Validation pairs dropped.
    pub valid_dropped: usize,
    /// Updates in one pass over the training pairs.
    pub updates_per_epoch: usize,
    /// Seconds from the session's start to its first update: preparing the data (or opening
    /// the prepared dataset) and setting up the model.
    #[serde(default)]
    pub setup_s: f64,
}

/// The `model` record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelRecord {
    /// Trainable parameters.
    pub parameters: usize,
}

/// The `resume` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeRecord {
    /// The update count of the checkpoint resumed from.
    pub step: usize,
    /// The checkpoint directory.
    #[serde(default)]
    pub from: PathBuf,
    /// Seconds of training before this session.
    #[serde(default = "unknown", deserialize_with = "number")]
    pub wall_s: f64,
}

/// The `train` record: averages over a log window, and the learning rate at its end.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainRecord {
    /// The update count.
    pub step: usize,
    /// The epoch in progress, from 1.
    #[serde(default)]
    pub epoch: usize,
    /// Label-smoothed loss per target token (nats).
    #[serde(default = "unknown", deserialize_with = "number")]
    pub loss: f64,
    /// Negative log-likelihood per target token (nats).
    #[serde(default = "unknown", deserialize_with = "number")]
    pub nll: f64,
    /// Perplexity, `exp(nll)`.
    #[serde(default = "unknown", deserialize_with = "number")]
    pub ppl: f64,
    /// Learning rate of the last update.
    #[serde(default = "unknown", deserialize_with = "number")]
    pub lr: f64,
    /// Mean global gradient norm (before clipping) of the updates applied.
    #[serde(default = "unknown", deserialize_with = "number")]
    pub grad_norm: f64,
    /// Real (non-padding) source and target tokens per second of update time.
    #[serde(default = "unknown", deserialize_with = "number")]
    pub tokens_per_s: f64,
    /// Seconds of training so far, over every session of the run.
    #[serde(default = "unknown", deserialize_with = "number")]
    pub wall_s: f64,
    /// f16's dynamic loss scale (`train.precision = "f16"` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    /// Updates of the window skipped for an f16 overflow (f16 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<usize>,
    /// Updates of the run skipped so far (f16 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_updates: Option<usize>,
}

/// The `valid` record.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValidRecord {
    /// The update count.
    pub step: usize,
    /// The epoch in progress, from 1.
    #[serde(default)]
    pub epoch: usize,
    /// Label-smoothed loss per target token (nats).
    #[serde(default = "unknown", deserialize_with = "number")]
    pub loss: f64,
    /// Negative log-likelihood per target token (nats).
    #[serde(default = "unknown", deserialize_with = "number")]
    pub nll: f64,
    /// Perplexity, `exp(nll)`.
    #[serde(default = "unknown", deserialize_with = "number")]
    pub ppl: f64,
    /// Corpus BLEU of greedy translations, when `train.valid_bleu` is on (`null` otherwise).
    #[serde(default)]
    pub bleu: Option<f64>,
    /// Corpus chrF2 of greedy translations, when `train.valid_bleu` is on (`null` otherwise).
    #[serde(default)]
    pub chrf: Option<f64>,
    /// Whether this validation is the best so far (and was saved as `best`).
    #[serde(default)]
    pub best: bool,
    /// Seconds of training so far, over every session of the run.
    #[serde(default = "unknown", deserialize_with = "number")]
    pub wall_s: f64,
}

/// The `stop` record.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StopRecord {
    /// Updates applied, over every session of the run.
    #[serde(default)]
    pub step: usize,
    /// Why the session ended.
    pub reason: StopReason,
    /// Seconds of training, over every session of the run.
    #[serde(default = "unknown", deserialize_with = "number")]
    pub wall_s: f64,
}

/// A measurement missing from a record.
fn unknown() -> f64 {
    f64::NAN
}

/// A number, or NaN for `null` (what serde_json writes for NaN and the infinities).
fn number<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

/// An append-only JSON-lines log.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens (or creates) `path` for appending; `truncate` empties it first (a new run).
    /// A last line cut short by a crash is dropped, so that the log stays one object per line.
    pub fn open(path: &Path, truncate: bool) -> Result<Self> {
        let io = |e| TrainError::io(path, e);
        if truncate {
            let file = File::create(path).map_err(io)?;
            return Ok(Self { path: path.to_path_buf(), file });
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
        let bytes = fs::read(path).map_err(io)?;
        if bytes.last().is_some_and(|&b| b != b'\n') {
            let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            file.set_len(complete as u64).map_err(io)?;
        }
        Ok(Self { path: path.to_path_buf(), file })
    }

    /// Appends `record` (an [`Event`]) as one line.
    pub fn write(&mut self, record: &impl Serialize) -> Result<()> {
        let io = |e| TrainError::io(&self.path, e);
        let mut line = serde_json::to_string(record).map_err(|e| io(e.into()))?;
        line.push('\n');
        self.file.write_all(line.as_bytes()).and_then(|_| self.file.flush()).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reopening_drops_a_torn_last_line_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        fs::write(&path, "{\"step\":1}\n{\"st").unwrap();
        MetricsLog::open(&path, false).unwrap().write(&json!({ "step": 2 })).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"step\":1}\n{\"step\":2}\n");
        MetricsLog::open(&path, true).unwrap().write(&json!({ "step": 1 })).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"step\":1}\n");
    }

    /// Lines written by `locus train` before [`Event`] existed (configs/tiny.toml, and an f16
    /// run resumed; keys in serde_json's alphabetical order), and what they read as.
    const WRITTEN_BEFORE: [&str; 6] = [
        r#"{"event":"data","train_dropped":646,"train_pairs":28354,"updates_per_epoch":999,"valid_dropped":23,"valid_pairs":991,"vocab_size":300}"#,
        r#"{"event":"model","parameters":30976}"#,
        r#"{"event":"resume","from":"/tmp/base-f16/last","step":5,"wall_s":6.892731796}"#,
        r#"{"epoch":1,"event":"train","grad_norm":0.8536260153701694,"loss":6.169119287391618,"loss_scale":128.0,"lr":0.0015,"nll":6.15956342575867,"ppl":473.22143344267624,"skipped":0,"skipped_updates":0,"step":5,"tokens_per_s":5903.659139080434,"wall_s":4.328418181}"#,
        r#"{"best":true,"bleu":0.003543729297499738,"chrf":1.5461175724009235,"epoch":1,"event":"valid","loss":5.649660410036836,"nll":5.593349248885983,"ppl":268.6338362754778,"step":10,"wall_s":5.076046271}"#,
        r#"{"event":"stop","reason":"max_steps","step":20,"wall_s":7.440564142}"#,
    ];

    fn events_written_before() -> [Event; 6] {
        [
            Event::Data(DataRecord {
                vocab_size: 300,
                train_pairs: 28354,
                train_dropped: 646,
                valid_pairs: 991,
                valid_dropped: 23,
                updates_per_epoch: 999,
                setup_s: 0.0,
            }),
            Event::Model(ModelRecord { parameters: 30976 }),
            Event::Resume(ResumeRecord { step: 5, from: "/tmp/base-f16/last".into(), wall_s: 6.892731796 }),
            Event::Train(TrainRecord {
                step: 5,
                epoch: 1,
                loss: 6.169119287391618,
                nll: 6.15956342575867,
                ppl: 473.22143344267624,
                lr: 0.0015,
                grad_norm: 0.8536260153701694,
                tokens_per_s: 5903.659139080434,
                wall_s: 4.328418181,
                loss_scale: Some(128.0),
                skipped: Some(0),
                skipped_updates: Some(0),
            }),
            Event::Valid(ValidRecord {
                step: 10,
                epoch: 1,
                loss: 5.649660410036836,
                nll: 5.593349248885983,
                ppl: 268.6338362754778,
                bleu: Some(0.003543729297499738),
                chrf: Some(1.5461175724009235),
                best: true,
                wall_s: 5.076046271,
            }),
            Event::Stop(StopRecord { step: 20, reason: StopReason::MaxSteps, wall_s: 7.440564142 }),
        ]
    }

    #[test]
    fn lines_written_before_read_as_events_and_write_back_the_same() {
        for (line, event) in WRITTEN_BEFORE.iter().zip(events_written_before()) {
            assert_eq!(serde_json::from_str::<Event>(line).unwrap(), event, "{line}");
            // The same keys and values; serde_json's `Value` compares objects key by key.
            let mut written: serde_json::Value = serde_json::to_value(&event).unwrap();
            // Except `setup_s`, added since, which old lines read as 0.
            if let Some(fields) = written.as_object_mut() {
                assert!(fields.remove("setup_s").is_none_or(|v| v == 0.0), "{fields:?}");
            }
            assert_eq!(written, serde_json::from_str::<serde_json::Value>(line).unwrap());
            // The event tag comes first, as `grep '"event":"train"'` in scripts/ expects.
            assert!(serde_json::to_string(&event).unwrap().starts_with(r#"{"event":"#));
        }
    }

    #[test]
    fn events_round_trip() {
        let mut f32_run = match &events_written_before()[3] {
            Event::Train(record) => *record,
            other => panic!("not a train record: {other:?}"),
        };
        (f32_run.loss_scale, f32_run.skipped, f32_run.skipped_updates) = (None, None, None);
        let no_bleu = ValidRecord { bleu: None, chrf: None, best: false, ..valid_record(10) };
        let mut events = events_written_before().to_vec();
        events.extend([Event::Train(f32_run), Event::Valid(no_bleu)]);
        for reason in [StopReason::MaxEpochs, StopReason::EarlyStopping, StopReason::Interrupted] {
            events.push(Event::Stop(StopRecord { step: 3, reason, wall_s: 1.5 }));
        }
        for event in events {
            let line = serde_json::to_string(&event).unwrap();
            assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), event, "{line}");
        }
        // Only f16 runs write the loss-scale fields; BLEU and chrF are null when not measured.
        let line = serde_json::to_string(&Event::Valid(no_bleu)).unwrap();
        assert!(line.contains(r#""bleu":null,"chrf":null"#), "{line}");
        let line = serde_json::to_string(&Event::Train(f32_run)).unwrap();
        assert!(!line.contains("loss_scale") && !line.contains("skipped"), "{line}");
    }

    fn valid_record(step: usize) -> ValidRecord {
        match &events_written_before()[4] {
            Event::Valid(record) => ValidRecord { step, ..*record },
            other => panic!("not a valid record: {other:?}"),
        }
    }

    #[test]
    fn non_finite_numbers_are_written_as_null_and_read_back_as_nan() {
        let mut record = valid_record(10);
        (record.loss, record.ppl) = (f64::NAN, f64::INFINITY);
        let line = serde_json::to_string(&Event::Valid(record)).unwrap();
        assert!(line.contains(r#""loss":null"#) && line.contains(r#""ppl":null"#), "{line}");
        let Event::Valid(read) = serde_json::from_str(&line).unwrap() else { panic!("{line}") };
        assert!(read.loss.is_nan() && read.ppl.is_nan());
        assert_eq!(read.nll, record.nll);
    }

    #[test]
    fn missing_numbers_read_as_nan_or_zero_but_the_step_is_required() {
        let Event::Train(read) = serde_json::from_str(r#"{"event":"train","step":7,"extra":1}"#).unwrap()
        else {
            panic!("not a train record")
        };
        assert_eq!((read.step, read.epoch, read.loss_scale), (7, 0, None));
        assert!(read.loss.is_nan() && read.lr.is_nan() && read.wall_s.is_nan());
        let data: Event = serde_json::from_str(r#"{"event":"data"}"#).unwrap();
        assert_eq!(data, Event::Data(DataRecord::default()));
        let err = serde_json::from_str::<Event>(r#"{"event":"valid","loss":1.0}"#).unwrap_err();
        assert!(err.to_string().starts_with("missing field `step`"), "{err}");
    }
}
