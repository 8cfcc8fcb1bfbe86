//! The run config: one TOML file with `[data]`, `[model]` and `[train]`, plus command-line
//! overrides (`--set train.max_steps=100`). Unknown keys are errors, and loading parses and
//! validates in one step, so a run never starts on a config it would reject later.

use std::path::{Path, PathBuf};

use locus_data::DataConfig;
use locus_model::{ModelConfig, PositionalConfig};
use serde::{Deserialize, Serialize};

use crate::config_file::{load_config, parse_config, ConfigFile};
use crate::early_stopping::BestMetric;
use crate::error::{Result, TrainError};
use crate::loss_scale::LossScaler;
use crate::optim::OptimizerKind;
use crate::precision::Precision;
use crate::schedule::ScheduleKind;

/// The `[train]` section: optimisation, validation, checkpoints and output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Directory for `config.toml`, `tokenizer.json`, `metrics.jsonl`, the checkpoints under
    /// `checkpoints/` and the links `last` and `best`.
    pub out_dir: PathBuf,
    /// Seed of weight initialisation, dropout and batch order.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Stop after this many optimizer updates (or `max_epochs`, whichever comes first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<usize>,
    /// Stop after this many passes over the training data (or `max_steps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_epochs: Option<usize>,
    /// Batches of `data.max_tokens` whose gradients are summed into one update.
    #[serde(default = "default_one")]
    pub update_freq: usize,
    /// `adamw` (decoupled weight decay) or `adam` (L2 weight decay).
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// Peak learning rate (for the `noam` schedule, its scale factor).
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// `inverse_sqrt`, `noam`, `cosine`, `linear` or `constant`, each after `warmup_steps`.
    #[serde(default)]
    pub schedule: ScheduleKind,
    /// Updates of linear warmup from 0 to `lr`.
    #[serde(default = "default_warmup")]
    pub warmup_steps: usize,
    /// The learning rate `cosine` and `linear` reach at the last update.
    #[serde(default)]
    pub min_lr: f64,
    /// Adam's `(beta1, beta2)`.
    #[serde(default = "default_betas")]
    pub adam_betas: [f64; 2],
    /// Adam's epsilon.
    #[serde(default = "default_adam_eps")]
    pub adam_eps: f64,
    /// Weight decay (decoupled for `adamw`, an L2 term for `adam`).
    #[serde(default)]
    pub weight_decay: f64,
    /// Clip gradients to this global L2 norm (0 disables clipping).
    #[serde(default = "default_clip")]
    pub clip_norm: f64,
    /// Label smoothing of the training loss.
    #[serde(default = "default_label_smoothing")]
    pub label_smoothing: f64,
    /// The dtype of the forward and backward passes: `f32`, or `bf16` / `f16` on f32 master
    /// weights (mixed precision; `f16` with dynamic loss scaling).
    #[serde(default)]
    pub precision: Precision,
    /// f16 only: the dynamic loss scale's first value, a power of two.
    #[serde(default = "default_loss_scale_init")]
    pub loss_scale_init: f64,
    /// Updates between two training log lines in `metrics.jsonl`.
    #[serde(default = "default_log_interval")]
    pub log_interval: usize,
    /// Updates between two validations.
    #[serde(default = "default_interval")]
    pub valid_interval: usize,
    /// Translate the validation set greedily at each validation and score BLEU and chrF.
    #[serde(default = "default_true")]
    pub valid_bleu: bool,
    /// The validation score that chooses `best`: `nll`, `loss`, `bleu` or `chrf`.
    #[serde(default)]
    pub best_metric: BestMetric,
    /// Stop after this many validations in a row without a new best (unset: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
    /// Updates between two checkpoints (a new best and the end of training are saved too).
    #[serde(default = "default_interval")]
    pub save_interval: usize,
    /// Checkpoints kept besides those `last` and `best` point to.
    #[serde(default = "default_keep_last")]
    pub keep_last: usize,
}

fn default_seed() -> u64 {
    1
}
fn default_one() -> usize {
    1
}
fn default_lr() -> f64 {
    5e-4
}
fn default_warmup() -> usize {
    4000
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.98]
}
fn default_adam_eps() -> f64 {
    1e-8
}
fn default_clip() -> f64 {
    1.0
}
fn default_loss_scale_init() -> f64 {
    LossScaler::DEFAULT_INITIAL_SCALE
}
fn default_label_smoothing() -> f64 {
    0.1
}
fn default_log_interval() -> usize {
    50
}
fn default_interval() -> usize {
    500
}
fn default_true() -> bool {
    true
}
fn default_keep_last() -> usize {
    5
}

impl TrainConfig {
    /// A config with every default, writing to `out_dir` and stopping after `max_steps`.
    pub fn new(out_dir: PathBuf, max_steps: usize) -> Self {
        Self {
            out_dir,
            seed: default_seed(),
            max_steps: Some(max_steps),
            max_epochs: None,
            update_freq: 1,
            optimizer: OptimizerKind::default(),
            lr: default_lr(),
            schedule: ScheduleKind::default(),
            warmup_steps: default_warmup(),
            min_lr: 0.0,
            adam_betas: default_betas(),
            adam_eps: default_adam_eps(),
            weight_decay: 0.0,
            clip_norm: default_clip(),
            label_smoothing: default_label_smoothing(),
            loss_scale_init: default_loss_scale_init(),
            precision: Precision::F32,
            log_interval: default_log_interval(),
            valid_interval: default_interval(),
            valid_bleu: true,
            best_metric: BestMetric::default(),
            patience: None,
            save_interval: default_interval(),
            keep_last: default_keep_last(),
        }
    }

    /// Checks every rule, naming the field, the value and the rule.
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(TrainError::Config(msg));
        if self.max_steps.is_none() && self.max_epochs.is_none() {
            return fail(
                "train.max_steps or train.max_epochs must be set (training stops at the first)".into(),
            );
        }
        for (field, value) in [
            ("max_steps", self.max_steps),
            ("max_epochs", self.max_epochs),
            ("patience", self.patience),
            ("update_freq", Some(self.update_freq)),
            ("log_interval", Some(self.log_interval)),
            ("valid_interval", Some(self.valid_interval)),
            ("save_interval", Some(self.save_interval)),
            ("keep_last", Some(self.keep_last)),
        ] {
            if value == Some(0) {
                return fail(format!("train.{field} (0) must be at least 1"));
            }
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return fail(format!("train.lr ({}) must be positive", self.lr));
        }
        if !(0.0..=self.lr).contains(&self.min_lr) {
            return fail(format!("train.min_lr ({}) must be in [0, train.lr ({})]", self.min_lr, self.lr));
        }
        if self.schedule == ScheduleKind::Noam && self.warmup_steps == 0 {
            return fail("train.warmup_steps (0) must be at least 1 with train.schedule = \"noam\"".into());
        }
        for (i, beta) in self.adam_betas.iter().enumerate() {
            if !(0.0..1.0).contains(beta) {
                return fail(format!("train.adam_betas[{i}] ({beta}) must be in [0, 1)"));
            }
        }
        if self.adam_eps <= 0.0 || self.weight_decay < 0.0 || self.clip_norm < 0.0 {
            return fail(format!(
                "train.adam_eps ({}) must be positive; train.weight_decay ({}) and train.clip_norm ({}) non-negative",
                self.adam_eps, self.weight_decay, self.clip_norm
            ));
        }
        let scale = self.loss_scale_init;
        if !(scale > 0.0 && scale.is_finite() && scale.log2().fract() == 0.0) {
            return fail(format!("train.loss_scale_init ({scale}) must be a power of two, e.g. 128"));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return fail(format!("train.label_smoothing ({}) must be in [0, 1)", self.label_smoothing));
        }
        if self.best_metric.higher_is_better() && !self.valid_bleu {
            return fail(format!(
                "train.best_metric (\"{}\") needs train.valid_bleu = true (it is measured on translations)",
                self.best_metric.name()
            ));
        }
        Ok(())
    }
}

/// A whole run: data, model and training sections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Corpora, tokenizer and batching.
    pub data: DataConfig,
    /// Architecture.
    pub model: ModelConfig,
    /// Optimisation and output.
    pub train: TrainConfig,
}

impl RunConfig {
    /// Loads `path`, applies `overrides` (`section.key=value`, the value in TOML syntax or a
    /// bare string) and validates the result: [`load_config`].
    ///
    /// # Errors
    /// Unreadable files, TOML syntax errors and unknown keys (named with file and line),
    /// malformed overrides, and every rule of [`RunConfig::validate`].
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        load_config(path, overrides)
    }

    /// Parses a config from TOML text (no overrides) and validates it.
    pub fn from_toml(text: &str) -> Result<Self> {
        parse_config(text)
    }

    /// The resolved config as TOML, every default written out.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| TrainError::Config(format!("serialising config: {e}")))
    }
}

impl ConfigFile for RunConfig {
    const MIN_OVERRIDE_DEPTH: usize = 2;

    /// Checks every section, and the rules that span sections.
    fn validate(&self) -> Result<()> {
        self.data.validate()?;
        self.model.validate()?;
        self.train.validate()?;
        // Training sequences carry one special token (EOS on the source, BOS on the target).
        let stacks = [
            ("model.encoder.positional", self.model.encoder_positional()),
            ("model.decoder.positional", self.model.decoder_positional()),
        ];
        for (field, positional) in stacks {
            let range = positional.random_positions();
            if range > 0 && range < self.data.max_len + 1 {
                return Err(TrainError::Config(format!(
                    "{field}.random_positions ({range}) must be at least data.max_len + 1 ({}): a \
                     training sentence of data.max_len tokens plus EOS/BOS takes that many distinct positions",
                    self.data.max_len + 1
                )));
            }
            if let PositionalConfig::Learned { max_len, position_shift, .. } = *positional {
                let needed = self.data.max_len + 1 + position_shift;
                if max_len < needed {
                    return Err(TrainError::Config(format!(
                        "{field}.max_len ({max_len}) must be at least data.max_len + 1 + position_shift \
                         ({needed}): training sentences of data.max_len tokens plus EOS/BOS, shifted by up \
                         to position_shift, need that many positions"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_run_config_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut loaded = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            // Lab configs (a `[run.*]` template inside) are loaded by the lab's own tests.
            let lab = text.parse::<toml::Table>().is_ok_and(|t| t.contains_key("run"));
            if path.extension().is_some_and(|e| e == "toml") && !lab {
                RunConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                loaded.push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
        assert!(loaded.iter().any(|name| name == "wmt14-en-de-base.toml"), "{loaded:?}");
        // The WMT14 config: Transformer-base on three corpora, about 25,000 target tokens an update.
        let wmt = RunConfig::load(&dir.join("wmt14-en-de-base.toml"), &[]).unwrap();
        assert_eq!(wmt.data.train_corpora().len(), 3);
        assert_eq!((wmt.model.d_model, wmt.model.encoder_layers, wmt.model.decoder_layers), (512, 6, 6));
        assert_eq!(wmt.data.max_tokens * wmt.train.update_freq, 25_000);
    }

    const MINIMAL: &str = r#"
[data]
train_src = "a.de"
train_tgt = "a.en"
valid_src = "b.de"
valid_tgt = "b.en"

[model]
d_model = 32
n_heads = 4

[train]
out_dir = "runs/x"
max_steps = 10
"#;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn overrides_replace_values_and_add_sections() {
        let (_dir, path) = write(MINIMAL);
        let overrides = [
            "train.max_steps=25",
            "model.norm=pre",
            "model.positional.kind=learned",
            "model.positional.max_len=200",
        ]
        .map(String::from);
        let cfg = RunConfig::load(&path, &overrides).unwrap();
        assert_eq!(cfg.train.max_steps, Some(25));
        assert_eq!(cfg.model.norm, locus_model::NormPosition::Pre);
        assert!(matches!(cfg.model.positional, PositionalConfig::Learned { max_len: 200, .. }));
    }

    #[test]
    fn unknown_key_in_the_file_names_file_line_and_key() {
        let (_dir, path) = write(&MINIMAL.replace("n_heads = 4", "n_heads = 4\nn_haeds = 8"));
        let err = RunConfig::load(&path, &[]).unwrap_err().to_string();
        assert!(err.contains("run.toml"), "{err}");
        assert!(err.contains("line 11"), "{err}");
        assert!(err.contains("unknown field `n_haeds`"), "{err}");
    }

    #[test]
    fn unknown_key_in_an_override_is_named() {
        let (_dir, path) = write(MINIMAL);
        let err = RunConfig::load(&path, &["train.max_stepz=3".into()]).unwrap_err().to_string();
        assert!(err.contains("max_stepz"), "{err}");
    }

    #[test]
    fn impossible_shapes_are_rejected_at_load() {
        let (_dir, path) = write(&MINIMAL.replace("d_model = 32", "d_model = 30"));
        let err = RunConfig::load(&path, &[]).unwrap_err().to_string();
        assert!(err.contains("model.d_model (30) must be divisible by model.n_heads (4)"), "{err}");
    }

    #[test]
    fn learned_table_shorter_than_training_sentences_is_rejected() {
        let text =
            MINIMAL.replace("n_heads = 4", "n_heads = 4\npositional = { kind = \"learned\", max_len = 100 }");
        let err = RunConfig::from_toml(&text).unwrap_err().to_string();
        assert!(
            err.contains("model.encoder.positional.max_len (100) must be at least data.max_len + 1 + position_shift (129)"),
            "{err}"
        );
        assert!(RunConfig::from_toml(&text.replace("max_len = 100", "max_len = 129")).is_ok());
        // SHAPE: shifted positions need the table to reach position_shift further.
        let shifted = text
            .replace("max_len = 129", "max_len = 129, position_shift = 8")
            .replace("max_len = 100", "max_len = 129, position_shift = 8");
        let err = RunConfig::from_toml(&shifted).unwrap_err().to_string();
        assert!(
            err.contains("max_len (129) must be at least data.max_len + 1 + position_shift (137)"),
            "{err}"
        );
        assert!(RunConfig::from_toml(&shifted.replace("max_len = 129", "max_len = 137")).is_ok());
    }

    #[test]
    fn random_positions_must_cover_the_longest_training_sentence() {
        let text = MINIMAL
            .replace("n_heads = 4", "n_heads = 4\npositional = { kind = \"rope\", random_positions = 100 }");
        let err = RunConfig::from_toml(&text).unwrap_err().to_string();
        assert!(
            err.contains(
                "model.encoder.positional.random_positions (100) must be at least data.max_len + 1 (129)"
            ),
            "{err}"
        );
        assert!(
            RunConfig::from_toml(&text.replace("random_positions = 100", "random_positions = 129")).is_ok()
        );
    }

    #[test]
    fn a_run_needs_a_stopping_rule() {
        let err = RunConfig::from_toml(&MINIMAL.replace("max_steps = 10", "")).unwrap_err().to_string();
        assert!(err.contains("train.max_steps or train.max_epochs must be set"), "{err}");
        assert!(RunConfig::from_toml(&MINIMAL.replace("max_steps = 10", "max_epochs = 3")).is_ok());
    }

    #[test]
    fn choices_are_checked_by_name() {
        let err =
            RunConfig::from_toml(&MINIMAL.replace("max_steps = 10", "max_steps = 10\nschedule = \"cosin\""))
                .unwrap_err()
                .to_string();
        assert!(err.contains("unknown variant `cosin`"), "{err}");
        assert!(err.contains("`inverse_sqrt`, `noam`, `cosine`, `linear`, `constant`"), "{err}");
        let text =
            MINIMAL.replace("max_steps = 10", "max_steps = 10\nbest_metric = \"bleu\"\nvalid_bleu = false");
        let err = RunConfig::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("train.best_metric (\"bleu\") needs train.valid_bleu = true"), "{err}");
        let err = RunConfig::from_toml(&MINIMAL.replace("max_steps = 10", "max_steps = 10\nupdate_freq = 0"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("train.update_freq (0) must be at least 1"), "{err}");
    }

    #[test]
    fn precision_defaults_to_f32_is_saved_and_a_bad_value_names_the_key() {
        assert_eq!(RunConfig::from_toml(MINIMAL).unwrap().train.precision, Precision::F32);
        let with =
            |value: &str| MINIMAL.replace("max_steps = 10", &format!("max_steps = 10\nprecision = {value}"));
        let cfg = RunConfig::from_toml(&with("\"bf16\"")).unwrap();
        assert_eq!(cfg.train.precision, Precision::Bf16);
        assert!(cfg.to_toml().unwrap().contains("precision = \"bf16\""));
        let err = RunConfig::from_toml(&with("\"fp16\"")).unwrap_err().to_string();
        assert!(err.contains("train.precision (\"fp16\") must be \"f32\", \"bf16\" or \"f16\""), "{err}");
        let (_dir, path) = write(MINIMAL);
        let cfg = RunConfig::load(&path, &["train.precision=f16".into()]).unwrap();
        assert_eq!(cfg.train.precision, Precision::F16);
        let err = RunConfig::load(&path, &["train.precision=half".into()]).unwrap_err().to_string();
        assert!(err.contains("train.precision (\"half\") must be"), "{err}");
    }

    #[test]
    fn loss_scale_init_defaults_to_2_pow_7_and_must_be_a_power_of_two() {
        assert_eq!(RunConfig::from_toml(MINIMAL).unwrap().train.loss_scale_init, 128.0);
        let with = |value: &str| {
            RunConfig::from_toml(
                &MINIMAL.replace("max_steps = 10", &format!("max_steps = 10\nloss_scale_init = {value}")),
            )
        };
        assert_eq!(with("32768.0").unwrap().train.loss_scale_init, 32768.0);
        assert_eq!(with("0.5").unwrap().train.loss_scale_init, 0.5);
        for bad in ["100.0", "0.0", "-128.0"] {
            let err = with(bad).unwrap_err().to_string();
            assert!(err.contains("train.loss_scale_init") && err.contains("must be a power of two"), "{err}");
        }
    }

    #[test]
    fn resolved_config_round_trips() {
        let cfg = RunConfig::from_toml(MINIMAL).unwrap();
        assert_eq!(RunConfig::from_toml(&cfg.to_toml().unwrap()).unwrap(), cfg);
    }
}
