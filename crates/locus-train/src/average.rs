//! Checkpoint averaging: the arithmetic mean of every weight of several checkpoints of one
//! architecture, written as a new checkpoint.
//!
//! Averaging the last few checkpoints of a run smooths out the noise of the final updates and
//! usually gains a little BLEU for free (Vaswani et al. 2017, §6.1, average the last 5 or 20
//! checkpoints; Popel & Bojar 2018, <https://arxiv.org/abs/1804.00247>). This follows fairseq's
//! `scripts/average_checkpoints.py` and Marian's `scripts/checkpoints/average.py`: every tensor
//! is summed in f64 and divided once, then cast back to its own dtype.
//!
//! The inputs must agree on the `[model]` section of their `config.toml`, on `tokenizer.json`
//! and on the name, shape and dtype of every tensor; each mismatch is an error naming the
//! checkpoint (and the key or tensor). The output is a complete checkpoint directory that
//! [`load_checkpoint`](crate::load_checkpoint) accepts: the mean `model.safetensors`,
//! `config.toml` and `tokenizer.json` of the first input, `state.json` of the newest (by
//! update), `average.json` naming the inputs and the manifest of them all (the inputs are
//! verified against theirs first; see [`crate::checkpoint_format`]). It has no `optimizer.safetensors`: an average
//! is for translating and evaluating, not for resuming. Like a checkpoint, it is written to a
//! temporary sibling directory, synced and renamed into place, and never overwrites anything.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use crate::checkpoint::{
    checkpoint_error, read_config, saved_checkpoints, verify_checkpoint, CheckpointName, CHECKPOINTS, CONFIG,
    STATE, TOKENIZER, WEIGHTS,
};
use crate::checkpoint_format::{read_state, state_json, write_manifest};
use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::state::TrainerState;
use locus_data::atomic_dir::{sync_path, write_dir_atomically, write_synced};

/// The provenance file of an averaged checkpoint.
pub const AVERAGE_JSON: &str = "average.json";

/// One averaged input, as recorded in `average.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AveragedCheckpoint {
    /// The checkpoint directory, links resolved.
    pub path: PathBuf,
    /// The update it was written at (its `state.json`).
    pub step: usize,
}

/// What [`average_checkpoints`] did; also the contents of `average.json` (less `out`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AverageSummary {
    /// The averaged checkpoint's directory.
    #[serde(skip)]
    pub out: PathBuf,
    /// The inputs, in the order given.
    pub checkpoints: Vec<AveragedCheckpoint>,
    /// The input whose `state.json` was copied: the newest by update.
    pub state_from: PathBuf,
    /// Tensors averaged.
    pub tensors: usize,
    /// Parameters (tensor elements) averaged.
    pub parameters: usize,
}

/// The newest `n` of `names` by (update, revision), oldest first; all of them if there are
/// fewer.
pub fn newest_names(names: &[CheckpointName], n: usize) -> Vec<CheckpointName> {
    let mut sorted = names.to_vec();
    sorted.sort();
    sorted.dedup();
    let skip = sorted.len().saturating_sub(n);
    sorted.split_off(skip)
}

/// The directories of the newest `n` checkpoints in `run_dir/checkpoints`, oldest first.
///
/// # Errors
/// `n` is 0, `run_dir` has no `checkpoints` directory, or it holds fewer than `n` checkpoints
/// (the message says how many there are).
pub fn newest_checkpoints(run_dir: &Path, n: usize) -> Result<Vec<PathBuf>> {
    if n == 0 {
        return Err(TrainError::Config("the number of checkpoints to average must be at least 1".into()));
    }
    let versions = run_dir.join(CHECKPOINTS);
    if !versions.is_dir() {
        return Err(TrainError::Config(format!(
            "{} is not a run directory: it has no {CHECKPOINTS}/ directory",
            run_dir.display()
        )));
    }
    let saved = saved_checkpoints(&versions)?;
    let newest = newest_names(&saved, n);
    if newest.len() < n {
        let count = newest.len();
        return Err(TrainError::Config(format!(
            "{} holds {count} checkpoint{}, fewer than the {n} asked to average",
            versions.display(),
            if count == 1 { "" } else { "s" }
        )));
    }
    Ok(newest.iter().map(|name| versions.join(name.dir_name())).collect())
}

/// A running sum of checkpoints' weights, in f64, that checks every checkpoint added has the
/// same tensors (names, shapes, dtypes) as the first.
#[derive(Debug, Default)]
pub struct WeightSum {
    /// The first checkpoint added, which the others are compared with.
    first: Option<PathBuf>,
    /// Per tensor: the f64 sum and the dtype to cast the mean back to.
    sums: BTreeMap<String, (Tensor, DType)>,
    count: usize,
}

impl WeightSum {
    /// An empty sum.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checkpoints added so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Adds the weights of the checkpoint `source`. Nothing is added if it fails.
    ///
    /// # Errors
    /// A tensor the first checkpoint has and `source` lacks, or the other way round, or one
    /// whose shape or dtype differs: each names `source`, the tensor and both shapes.
    pub fn add(&mut self, source: &Path, tensors: HashMap<String, Tensor>) -> Result<()> {
        let Some(first) = &self.first else {
            for (name, tensor) in tensors {
                let dtype = tensor.dtype();
                self.sums.insert(name, (tensor.to_dtype(DType::F64)?, dtype));
            }
            self.first = Some(source.to_path_buf());
            self.count = 1;
            return Ok(());
        };
        let fail = |message: String| Err(checkpoint_error(source, message));
        if let Some(name) = self.sums.keys().find(|name| !tensors.contains_key(*name)) {
            return fail(format!("lacks tensor `{name}`, which {} has", first.display()));
        }
        let mut extra: Vec<&String> = tensors.keys().filter(|name| !self.sums.contains_key(*name)).collect();
        extra.sort();
        if let Some(name) = extra.first() {
            return fail(format!(
                "has tensor `{name}` (shape {:?}), which {} lacks",
                tensors[*name].dims(),
                first.display()
            ));
        }
        for (name, (sum, dtype)) in &self.sums {
            let tensor = &tensors[name];
            if tensor.dims() != sum.dims() {
                return fail(format!(
                    "tensor `{name}` has shape {:?}, but {:?} in {}",
                    tensor.dims(),
                    sum.dims(),
                    first.display()
                ));
            }
            if tensor.dtype() != *dtype {
                return fail(format!(
                    "tensor `{name}` is {:?}, but {dtype:?} in {}",
                    tensor.dtype(),
                    first.display()
                ));
            }
        }
        let mut added = BTreeMap::new();
        for (name, (sum, dtype)) in &self.sums {
            let tensor = tensors[name].to_dtype(DType::F64)?.to_device(sum.device())?;
            added.insert(name.clone(), ((sum + tensor)?, *dtype));
        }
        self.sums = added;
        self.count += 1;
        Ok(())
    }

    /// The element-wise mean of every tensor, each in its original dtype; empty if nothing
    /// was added.
    pub fn mean(&self) -> Result<HashMap<String, Tensor>> {
        let count = self.count.max(1) as f64;
        let mut means = HashMap::with_capacity(self.sums.len());
        for (name, (sum, dtype)) in &self.sums {
            means.insert(name.clone(), (sum / count)?.to_dtype(*dtype)?);
        }
        Ok(means)
    }
}

/// The keys under `prefix` whose values differ between `ours` and `theirs`, each as
/// `key is OURS, not THEIRS`, in key order.
fn differing_keys(prefix: &str, ours: &toml::Value, theirs: &toml::Value) -> Vec<String> {
    match (ours, theirs) {
        (toml::Value::Table(a), toml::Value::Table(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter()
                .flat_map(|key| {
                    let path = format!("{prefix}.{key}");
                    match (a.get(key), b.get(key)) {
                        (Some(x), Some(y)) => differing_keys(&path, x, y),
                        (x, y) => vec![format!("{path} is {}, not {}", show(x), show(y))],
                    }
                })
                .collect()
        }
        _ if ours == theirs => Vec::new(),
        _ => vec![format!("{prefix} is {ours}, not {theirs}")],
    }
}

fn show(value: Option<&toml::Value>) -> String {
    value.map_or_else(|| "unset".to_string(), |v| v.to_string())
}

/// How the tokenizer `ours` differs from `theirs` (both parsed `tokenizer.json`), if it does.
fn tokenizer_difference(ours: &serde_json::Value, theirs: &serde_json::Value) -> Option<String> {
    if ours == theirs {
        return None;
    }
    let vocab = |json: &serde_json::Value| json.pointer("/model/vocab").cloned();
    let size = |vocab: &Option<serde_json::Value>| match vocab {
        Some(serde_json::Value::Object(map)) => map.len(),
        Some(serde_json::Value::Array(items)) => items.len(),
        _ => 0,
    };
    let (a, b) = (vocab(ours), vocab(theirs));
    Some(if a == b {
        "the same vocabulary, but other tokenizer settings or merges".to_string()
    } else if size(&a) != size(&b) {
        format!("a vocabulary of {} entries, not {}", size(&a), size(&b))
    } else {
        format!("a different vocabulary of the same size ({})", size(&a))
    })
}

/// One input's metadata, read and checked before any weights are loaded.
struct Input {
    dir: PathBuf,
    canonical: PathBuf,
    config: RunConfig,
    tokenizer: serde_json::Value,
    state: TrainerState,
}

fn read_input(dir: &Path) -> Result<Input> {
    let version = verify_checkpoint(dir)?;
    let config = read_config(dir)?;
    let tokenizer_path = dir.join(TOKENIZER);
    let tokenizer_text =
        fs::read_to_string(&tokenizer_path).map_err(|e| TrainError::io(&tokenizer_path, e))?;
    let tokenizer = serde_json::from_str(&tokenizer_text)
        .map_err(|e| checkpoint_error(&tokenizer_path, e.to_string()))?;
    let state = read_state(dir, version, config.train.seed)?;
    let canonical = dir.canonicalize().map_err(|e| TrainError::io(dir, e))?;
    Ok(Input { dir: dir.to_path_buf(), canonical, config, tokenizer, state })
}

/// Checks that `input` can be averaged with `first`: the same `[model]` and tokenizer.
fn check_compatible(first: &Input, input: &Input) -> Result<()> {
    let as_toml = |input: &Input| {
        toml::Value::try_from(&input.config.model)
            .map_err(|e| checkpoint_error(&input.dir, format!("serialising [model]: {e}")))
    };
    let differences = differing_keys("model", &as_toml(input)?, &as_toml(first)?);
    if !differences.is_empty() {
        return Err(checkpoint_error(
            &input.dir,
            format!("its [model] differs from that of {}: {}", first.dir.display(), differences.join("; ")),
        ));
    }
    if let Some(difference) = tokenizer_difference(&input.tokenizer, &first.tokenizer) {
        return Err(checkpoint_error(
            &input.dir,
            format!("its {TOKENIZER} differs from that of {}: {difference}", first.dir.display()),
        ));
    }
    Ok(())
}

/// Fails unless `out` is absent or an empty directory.
fn check_output(out: &Path) -> Result<()> {
    let refuse = |why: &str| {
        Err(TrainError::Config(format!(
            "{}: {why}; averaging never overwrites: choose a new directory",
            out.display()
        )))
    };
    match fs::symlink_metadata(out) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(TrainError::io(out, e)),
        Ok(meta) if !meta.is_dir() => refuse("exists and is not a directory"),
        Ok(_) => {
            let mut entries = fs::read_dir(out).map_err(|e| TrainError::io(out, e))?;
            match entries.next() {
                Some(_) => refuse("exists and is not empty"),
                None => Ok(()),
            }
        }
    }
}

/// Averages the weights of the checkpoints `inputs` into a new checkpoint directory `out`.
///
/// One input gives a copy of it (without the optimizer state).
///
/// # Errors
/// No inputs; an input given twice; `out` existing and not an empty directory; an input that
/// is not a complete checkpoint, or whose `[model]`, tokenizer or tensors differ from the
/// first input's (named with the key or tensor); and failures reading or writing files.
pub fn average_checkpoints(inputs: &[PathBuf], out: &Path) -> Result<AverageSummary> {
    if inputs.is_empty() {
        return Err(TrainError::Config("nothing to average: give at least one checkpoint".into()));
    }
    check_output(out)?;
    let mut read = Vec::with_capacity(inputs.len());
    for dir in inputs {
        let input = read_input(dir)?;
        if let Some(earlier) = read.iter().find(|earlier: &&Input| earlier.canonical == input.canonical) {
            return Err(checkpoint_error(
                dir,
                format!("is given twice (also as {}); average each checkpoint once", earlier.dir.display()),
            ));
        }
        if let Some(first) = read.first() {
            check_compatible(first, &input)?;
        }
        read.push(input);
    }

    let mut sum = WeightSum::new();
    for input in &read {
        let path = input.dir.join(WEIGHTS);
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
            .map_err(|e| checkpoint_error(&path, e.to_string()))?;
        sum.add(&input.dir, tensors)?;
    }
    let mean = sum.mean()?;

    let first = &read[0];
    // The newest by update; of equal updates, the later given (`newest_checkpoints` order).
    let newest = read.iter().max_by_key(|input| input.state.step).unwrap_or(first);
    let summary = AverageSummary {
        out: out.to_path_buf(),
        checkpoints: read
            .iter()
            .map(|input| AveragedCheckpoint { path: input.canonical.clone(), step: input.state.step })
            .collect(),
        state_from: newest.canonical.clone(),
        tensors: mean.len(),
        parameters: mean.values().map(Tensor::elem_count).sum(),
    };
    let provenance = serde_json::to_string_pretty(&summary)
        .map_err(|e| TrainError::Config(format!("serialising {AVERAGE_JSON}: {e}")))?;
    write_dir_atomically(
        out,
        || check_output(out),
        |tmp| {
            let weights = tmp.join(WEIGHTS);
            candle_core::safetensors::save(&mean, &weights)?;
            sync_path(&weights)?;
            for (file, from) in [(CONFIG, first), (TOKENIZER, first)] {
                let source = from.dir.join(file);
                let bytes = fs::read(&source).map_err(|e| TrainError::io(&source, e))?;
                write_synced(&tmp.join(file), &bytes)?;
            }
            write_synced(&tmp.join(STATE), state_json(tmp, &newest.state)?.as_bytes())?;
            write_synced(&tmp.join(AVERAGE_JSON), provenance.as_bytes())?;
            write_manifest(tmp)
        },
    )?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(steps: &[(usize, usize)]) -> Vec<CheckpointName> {
        steps.iter().map(|&(step, revision)| CheckpointName { step, revision }).collect()
    }

    fn tensors(items: &[(&str, Tensor)]) -> HashMap<String, Tensor> {
        items.iter().map(|(name, t)| (name.to_string(), t.clone())).collect()
    }

    #[test]
    fn newest_names_by_step_then_revision_oldest_first() {
        let saved = names(&[(300, 0), (100, 0), (300, 1), (200, 0)]);
        assert_eq!(newest_names(&saved, 2), names(&[(300, 0), (300, 1)]));
        assert_eq!(newest_names(&saved, 3), names(&[(200, 0), (300, 0), (300, 1)]));
        // Fewer than asked: all of them, for the caller to refuse.
        assert_eq!(newest_names(&saved, 10).len(), 4);
        assert!(newest_names(&saved, 0).is_empty());
    }

    #[test]
    fn mean_is_element_wise_and_keeps_dtype() -> Result<()> {
        let dev = Device::Cpu;
        let mut sum = WeightSum::new();
        for (w, b) in [([1f32, 2., 3., 4.], [0.1f32]), ([3., 4., 6., -4.], [0.2]), ([2., 0., 0., 3.], [0.3])]
        {
            let b16 = Tensor::new(&b, &dev)?.to_dtype(DType::BF16)?;
            sum.add(Path::new("c"), tensors(&[("w", Tensor::new(&w, &dev)?.reshape((2, 2))?), ("b", b16)]))?;
        }
        assert_eq!(sum.count(), 3);
        let mean = sum.mean()?;
        assert_eq!(mean["w"].dtype(), DType::F32);
        assert_eq!(mean["w"].to_vec2::<f32>()?, [[2., 2.], [3., 1.]]);
        // bf16 in, bf16 out: the mean of bf16(0.1), bf16(0.2), bf16(0.3), rounded once.
        assert_eq!(mean["b"].dtype(), DType::BF16);
        let got = mean["b"].to_dtype(DType::F32)?.to_vec1::<f32>()?[0];
        assert!((got - 0.2).abs() < 1e-3, "{got}");
        Ok(())
    }

    #[test]
    fn mean_accumulates_in_f64() -> Result<()> {
        // Summed in f32, 1e8 + 1 rounds back to 1e8 (f32 steps by 8 there) and the mean comes
        // out 0; summed in f64 it is 1/3.
        let dev = Device::Cpu;
        let mut sum = WeightSum::new();
        for x in [1e8f32, 1., -1e8] {
            sum.add(Path::new("c"), tensors(&[("x", Tensor::new(&[x], &dev)?)]))?;
        }
        let got = sum.mean()?["x"].to_vec1::<f32>()?[0];
        assert!((got - 1. / 3.).abs() < 1e-7, "{got}");
        Ok(())
    }

    #[test]
    fn mismatched_tensors_are_named() -> Result<()> {
        let dev = Device::Cpu;
        let zeros = |shape: &[usize]| Tensor::zeros(shape, DType::F32, &dev);
        let mut sum = WeightSum::new();
        sum.add(Path::new("first"), tensors(&[("a", zeros(&[2, 3])?), ("b", zeros(&[4])?)]))?;
        let cases = [
            (tensors(&[("a", zeros(&[2, 3])?)]), "lacks tensor `b`, which first has"),
            (
                tensors(&[("a", zeros(&[2, 3])?), ("b", zeros(&[4])?), ("c", zeros(&[1])?)]),
                "has tensor `c` (shape [1]), which first lacks",
            ),
            (
                tensors(&[("a", zeros(&[3, 2])?), ("b", zeros(&[4])?)]),
                "tensor `a` has shape [3, 2], but [2, 3] in first",
            ),
            (
                tensors(&[("a", zeros(&[2, 3])?), ("b", Tensor::zeros(4, DType::F16, &dev)?)]),
                "tensor `b` is F16, but F32 in first",
            ),
        ];
        for (bad, expected) in cases {
            let err = sum.add(Path::new("second"), bad).unwrap_err().to_string();
            assert!(err.contains("second") && err.contains(expected), "{err}");
        }
        // Failed additions left the sum as it was.
        assert_eq!(sum.count(), 1);
        Ok(())
    }

    #[test]
    fn differing_model_keys_are_listed() {
        let first: toml::Value =
            toml::from_str("d_ff = 64\nnorm = \"post\"\n[positional]\nkind = \"rope\"").expect("valid TOML");
        let other: toml::Value =
            toml::from_str("d_ff = 128\nnorm = \"post\"\n[positional]\nkind = \"alibi\"\ntheta = 5.0")
                .expect("valid TOML");
        assert!(differing_keys("model", &first, &first).is_empty());
        assert_eq!(
            differing_keys("model", &other, &first),
            [
                "model.d_ff is 128, not 64",
                "model.positional.kind is \"alibi\", not \"rope\"",
                "model.positional.theta is 5.0, not unset",
            ]
        );
    }

    #[test]
    fn tokenizer_differences_are_described() {
        let json =
            |vocab: serde_json::Value| serde_json::json!({ "model": { "type": "BPE", "vocab": vocab } });
        let a = json(serde_json::json!({ "<pad>": 0, "a": 1 }));
        assert_eq!(tokenizer_difference(&a, &a), None);
        let b = json(serde_json::json!({ "<pad>": 0, "a": 1, "b": 2 }));
        assert_eq!(tokenizer_difference(&b, &a).as_deref(), Some("a vocabulary of 3 entries, not 2"));
        let c = json(serde_json::json!({ "<pad>": 0, "c": 1 }));
        assert!(tokenizer_difference(&c, &a).is_some_and(|d| d.contains("different vocabulary")));
    }

    #[test]
    fn output_must_be_new_or_empty() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
        check_output(&dir.path().join("absent"))?;
        check_output(dir.path())?;
        fs::write(dir.path().join("file"), "x").map_err(|e| TrainError::io("file", e))?;
        let err = check_output(dir.path()).unwrap_err().to_string();
        assert!(err.contains("exists and is not empty"), "{err}");
        let err = check_output(&dir.path().join("file")).unwrap_err().to_string();
        assert!(err.contains("is not a directory"), "{err}");
        Ok(())
    }

    #[test]
    fn nothing_to_average_is_an_error() {
        let err = average_checkpoints(&[], Path::new("out")).unwrap_err().to_string();
        assert!(err.contains("at least one checkpoint"), "{err}");
    }
}
