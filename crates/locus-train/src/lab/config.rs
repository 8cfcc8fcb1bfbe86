//! The lab's config file: the grid (encodings × tasks × seeds), the synthetic data, and a run
//! template that every cell's training config is made from.
//!
//! ```toml
//! out_dir = "runs/lab/length-extrapolation"
//! seeds = [1, 2, 3]
//! tasks = ["copy", "reverse"]
//! symbols = 10
//! train_lengths = [5, 20]
//! test_lengths = [[5, 20], [21, 40], [41, 80]]
//! train_examples = 4000
//! valid_examples = 200
//! test_examples = 100
//! jobs = 2                      # cells trained at once (default 1)
//! encodings = ["sinusoidal", "rope", "shape"]
//!
//! [positional.shape]            # a named variant; a bare kind name uses that kind's defaults
//! kind = "sinusoidal"
//! position_shift = 40
//!
//! [positional.rope_yarn]        # `rope_scaling`: trained as plain RoPE, tested stretched
//! kind = "rope"
//! rope_scaling = "yarn:4:21"
//!
//! [run.data]                    # a run config without corpus paths, out_dir and seed
//! vocab_size = 64
//! [run.model]
//! d_model = 64
//! [run.train]
//! max_steps = 1000
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use locus_data::synthetic::Task;
use locus_model::positional::RopeScaling;
use serde::Deserialize;

use crate::config::RunConfig;
use crate::config_file::{load_config, ConfigFile};
use crate::error::{Result, TrainError};

/// Positions a learned table gets beyond the longest sequence: outputs may run a few tokens
/// past their source (see the lab's output limits) and decoding adds BOS.
pub const OUTPUT_MARGIN: usize = 8;

/// A parsed and checked lab config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabConfig {
    /// Where data, cells, results and the plot go.
    pub out_dir: PathBuf,
    /// One trained model per seed, task and encoding; the seed also draws the data.
    pub seeds: Vec<u64>,
    /// The synthetic tasks.
    pub tasks: Vec<Task>,
    /// Alphabet size of the symbol tasks (copy, reverse, sort).
    pub symbols: usize,
    /// Lengths of the training (and validation) examples, inclusive.
    pub train_lengths: (usize, usize),
    /// The test buckets: one test set per inclusive length range.
    pub test_lengths: Vec<(usize, usize)>,
    /// Training examples per task and seed.
    pub train_examples: usize,
    /// Validation examples per task and seed (training lengths).
    pub valid_examples: usize,
    /// Test examples per bucket, task and seed.
    pub test_examples: usize,
    /// Cells trained at once, each on its own thread pool (see [`super::run_lab`]); 1 by default.
    #[serde(default = "one_job")]
    pub jobs: usize,
    /// The encodings compared: a `positional` table name, or a positional kind with its defaults.
    pub encodings: Vec<String>,
    /// Named positional configs (`[positional.NAME]`, as `[model.positional]`, plus an optional
    /// `rope_scaling = "linear:S" | "ntk:S" | "yarn:S:L"` applied when testing, see
    /// [`RopeScaling`]).
    #[serde(default)]
    pub positional: BTreeMap<String, toml::Table>,
    /// The run template: `[run.data]`, `[run.model]`, `[run.train]` of a run config, without
    /// the corpus paths, `train.out_dir` and `train.seed`, which each cell sets.
    pub run: toml::Table,
}

/// The default of [`LabConfig::jobs`]: one cell at a time.
fn one_job() -> usize {
    1
}

/// The key of a `[positional.NAME]` table that the lab applies at test time.
const ROPE_SCALING: &str = "rope_scaling";

/// One cell of the grid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cell {
    /// The encoding's name in the config.
    pub encoding: String,
    /// The task.
    pub task: Task,
    /// The seed of the data and the model.
    pub seed: u64,
}

impl Cell {
    /// The cell's directory name: `<encoding>-<task>-seed<seed>`.
    pub fn name(&self) -> String {
        format!("{}-{}-seed{}", self.encoding, self.task, self.seed)
    }
}

/// Where a (task, seed) pair's data lives inside the lab directory.
#[derive(Debug, Clone, PartialEq)]
pub struct DataFiles {
    /// The directory holding the files.
    pub dir: PathBuf,
}

impl DataFiles {
    /// `<out_dir>/data/<task>-seed<seed>`.
    pub fn new(out_dir: &Path, task: Task, seed: u64) -> Self {
        Self { dir: out_dir.join("data").join(format!("{task}-seed{seed}")) }
    }

    /// `train.src`, `train.tgt`, `valid.src`, `valid.tgt`, or `test-<lo>-<hi>.src` / `.tgt`.
    pub fn file(&self, split: &str, side: &str) -> PathBuf {
        self.dir.join(format!("{split}.{side}"))
    }

    /// The split name of the test bucket `(lo, hi)`.
    pub fn test_split((lo, hi): (usize, usize)) -> String {
        format!("test-{lo}-{hi}")
    }
}

impl LabConfig {
    /// Loads and checks `path`; `overrides` (`key=value`, TOML values) apply to the top level
    /// or, with a dotted key such as `run.train.max_steps=50`, inside it.
    ///
    /// # Errors
    /// Unreadable files, TOML errors and unknown keys (naming the file), and [`Self::validate`].
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        load_config(path, overrides)
    }

    /// The RoPE scaling encoding `name` is tested with (its table's `rope_scaling`), if any.
    ///
    /// # Errors
    /// A `rope_scaling` that is not a string of the form [`RopeScaling`] parses.
    pub fn rope_scaling(&self, name: &str) -> Result<Option<RopeScaling>> {
        let Some(value) = self.positional.get(name).and_then(|table| table.get(ROPE_SCALING)) else {
            return Ok(None);
        };
        let bad = |why: String| TrainError::Config(format!("lab: positional.{name}.{ROPE_SCALING}: {why}"));
        let text = value.as_str().ok_or_else(|| bad(format!("expected a string, got {value}")))?;
        text.parse().map(Some).map_err(bad)
    }

    /// The `[model.positional]` table of encoding `name` (without the lab's `rope_scaling`).
    fn positional_table(&self, name: &str) -> Result<toml::Table> {
        if let Some(table) = self.positional.get(name) {
            let mut table = table.clone();
            table.remove(ROPE_SCALING);
            return Ok(table);
        }
        use locus_model::positional::PositionalKind;
        let Ok(kind) = name.parse::<PositionalKind>() else {
            let kinds: Vec<&str> = PositionalKind::all().map(PositionalKind::name).collect();
            return Err(TrainError::Config(format!(
                "lab: encoding `{name}` is neither a [positional.{name}] table nor a kind ({})",
                kinds.join(", ")
            )));
        };
        let mut table = toml::Table::new();
        table.insert("kind".into(), name.into());
        if kind == PositionalKind::Learned {
            table.insert("max_len".into(), ((self.max_sequence_len() + OUTPUT_MARGIN) as i64).into());
        }
        Ok(table)
    }

    /// The longest sequence a cell meets, in tokens, over both sides and every task: copy,
    /// reverse and sort have `n` tokens a side; addition's source has `2n + 1` and its target
    /// up to `n + 1`.
    pub fn max_sequence_len(&self) -> usize {
        let longest =
            self.test_lengths.iter().chain([&self.train_lengths]).map(|&(_, hi)| hi).max().unwrap_or(0);
        if self.tasks.contains(&Task::Addition) {
            2 * longest + 1
        } else {
            longest
        }
    }

    /// The cells, in the order they run: seeds outermost, then tasks, then encodings.
    pub fn cells(&self) -> Vec<Cell> {
        let mut cells = Vec::new();
        for &seed in &self.seeds {
            for &task in &self.tasks {
                for encoding in &self.encodings {
                    cells.push(Cell { encoding: encoding.clone(), task, seed });
                }
            }
        }
        cells
    }

    /// The directory of `cell`: `<out_dir>/cells/<name>`.
    pub fn cell_dir(&self, cell: &Cell) -> PathBuf {
        self.out_dir.join("cells").join(cell.name())
    }

    /// The run config of `cell`: the template with its data files, its encoding (both stacks),
    /// `train.out_dir` = the cell's `run` directory, `train.seed` = the cell's seed, and
    /// `data.max_len` long enough for every test bucket.
    pub fn run_config(&self, cell: &Cell) -> Result<RunConfig> {
        let mut table = self.run.clone();
        let files = DataFiles::new(&self.out_dir, cell.task, cell.seed);
        let section = |table: &mut toml::Table, name: &str| -> Result<toml::Table> {
            match table.remove(name) {
                None => Ok(toml::Table::new()),
                Some(toml::Value::Table(t)) => Ok(t),
                Some(_) => Err(TrainError::Config(format!("lab: `run.{name}` must be a table"))),
            }
        };
        let mut data = section(&mut table, "data")?;
        for (key, split, side) in [
            ("train_src", "train", "src"),
            ("train_tgt", "train", "tgt"),
            ("valid_src", "valid", "src"),
            ("valid_tgt", "valid", "tgt"),
        ] {
            data.insert(key.into(), files.file(split, side).display().to_string().into());
        }
        data.insert("max_len".into(), (self.max_sequence_len() as i64).into());
        let mut model = section(&mut table, "model")?;
        model.insert("positional".into(), toml::Value::Table(self.positional_table(&cell.encoding)?));
        let mut train = section(&mut table, "train")?;
        train.insert("out_dir".into(), self.cell_dir(cell).join("run").display().to_string().into());
        train.insert("seed".into(), (cell.seed as i64).into());
        for (name, value) in [("data", data), ("model", model), ("train", train)] {
            table.insert(name.into(), toml::Value::Table(value));
        }
        let config = RunConfig::deserialize(toml::Value::Table(table))
            .map_err(|e| TrainError::Config(format!("lab: run template for cell {}: {e}", cell.name())))?;
        ConfigFile::validate(&config)?;
        Ok(config)
    }
}

impl ConfigFile for LabConfig {
    const MIN_OVERRIDE_DEPTH: usize = 1;

    /// Checks the grid and data settings, and builds one cell's run config to check the template.
    fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(TrainError::Config(msg));
        for (field, empty) in [
            ("seeds", self.seeds.is_empty()),
            ("tasks", self.tasks.is_empty()),
            ("encodings", self.encodings.is_empty()),
            ("test_lengths", self.test_lengths.is_empty()),
        ] {
            if empty {
                return fail(format!("lab: `{field}` must list at least one entry"));
            }
        }
        for (field, (lo, hi)) in std::iter::once(("train_lengths", self.train_lengths))
            .chain(self.test_lengths.iter().map(|&r| ("test_lengths", r)))
        {
            if lo == 0 || lo > hi {
                return fail(format!("lab: `{field}` range [{lo}, {hi}] must have 1 <= min <= max"));
            }
        }
        for (field, count) in [
            ("train_examples", self.train_examples),
            ("valid_examples", self.valid_examples),
            ("test_examples", self.test_examples),
            ("jobs", self.jobs),
        ] {
            if count == 0 {
                return fail(format!("lab: `{field}` must be at least 1"));
            }
        }
        for name in &self.encodings {
            self.positional_table(name)?;
            self.rope_scaling(name)?;
        }
        let probe = Cell { encoding: self.encodings[0].clone(), task: self.tasks[0], seed: self.seeds[0] };
        self.run_config(&probe).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use locus_model::PositionalConfig;

    fn shipped() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/lab/length-extrapolation.toml")
    }

    #[test]
    fn the_shipped_config_loads_and_makes_every_cell() {
        let cfg = LabConfig::load(&shipped(), &[]).unwrap();
        let cells = cfg.cells();
        assert_eq!(cells.len(), cfg.encodings.len() * cfg.tasks.len() * cfg.seeds.len());
        let learned = Cell { encoding: "learned".into(), task: Task::Reverse, seed: 2 };
        let run = cfg.run_config(&learned).unwrap();
        assert_eq!(run.train.seed, 2);
        assert_eq!(run.train.out_dir, cfg.out_dir.join("cells/learned-reverse-seed2/run"));
        assert_eq!(run.data.train_src, Some(cfg.out_dir.join("data/reverse-seed2/train.src")));
        // The longest test sequence (80) plus the output margin.
        assert!(matches!(run.model.encoder_positional(), PositionalConfig::Learned { max_len: 88, .. }));
        let shape = Cell { encoding: "sinusoidal_shape".into(), task: Task::Copy, seed: 1 };
        let run = cfg.run_config(&shape).unwrap();
        assert!(matches!(
            run.model.decoder_positional(),
            PositionalConfig::Sinusoidal { position_shift: 40, .. }
        ));
    }

    /// The frontier grid: randomized positions reach the model, and `rope_scaling` is kept
    /// for testing, out of the model's config.
    #[test]
    fn the_frontier_config_trains_random_positions_and_tests_with_rope_scaling() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/lab/length-frontier.toml");
        let cfg = LabConfig::load(&path, &[]).unwrap();
        let cell = |encoding: &str| Cell { encoding: encoding.into(), task: Task::Copy, seed: 1 };
        let run = cfg.run_config(&cell("rope_random")).unwrap();
        assert_eq!(
            run.model.encoder_positional(),
            &PositionalConfig::Rope { theta: 10000.0, random_positions: 128 }
        );
        let run = cfg.run_config(&cell("rope_yarn")).unwrap();
        assert_eq!(
            run.model.decoder_positional(),
            &PositionalConfig::Rope { theta: 10000.0, random_positions: 0 }
        );
        assert_eq!(
            cfg.rope_scaling("rope_yarn").unwrap(),
            Some(RopeScaling::Yarn { factor: 4.0, original_len: 21 })
        );
        assert_eq!(cfg.rope_scaling("rope").unwrap(), None);
        let bad = ["positional.rope_yarn.rope_scaling=\"yarn:4\"".to_string()];
        let err = LabConfig::load(&path, &bad).unwrap_err().to_string();
        assert!(
            err.contains("lab: positional.rope_yarn.rope_scaling: unknown rope scaling \"yarn:4\""),
            "{err}"
        );
    }

    #[test]
    fn overrides_reach_top_level_and_template_keys() {
        let overrides = ["seeds=[7]".to_string(), "run.train.max_steps=5".to_string()];
        let cfg = LabConfig::load(&shipped(), &overrides).unwrap();
        assert_eq!(cfg.seeds, [7]);
        let cell = &cfg.cells()[0];
        assert_eq!(cfg.run_config(cell).unwrap().train.max_steps, Some(5));
    }

    /// Addition's source is two operands and a plus sign: 2n + 1 tokens.
    #[test]
    fn addition_doubles_the_longest_sequence() {
        let mut cfg = LabConfig::load(&shipped(), &[]).unwrap();
        assert_eq!(cfg.max_sequence_len(), 80);
        cfg.tasks.push(Task::Addition);
        assert_eq!(cfg.max_sequence_len(), 161);
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("seeds=[]", "`seeds` must list at least one entry"),
            ("test_lengths=[[5, 4]]", "`test_lengths` range [5, 4] must have 1 <= min <= max"),
            ("train_lengths=[0, 3]", "`train_lengths` range [0, 3]"),
            ("test_examples=0", "`test_examples` must be at least 1"),
            ("jobs=0", "`jobs` must be at least 1"),
            ("encodings=[\"rotary\"]", "encoding `rotary` is neither a [positional.rotary] table nor a kind"),
            ("run.model.d_model=30", "model.d_model (30) must be divisible"),
        ];
        for (item, want) in cases {
            let err = LabConfig::load(&shipped(), &[item.to_string()]).unwrap_err().to_string();
            assert!(err.contains(want), "{item}: {err}");
        }
    }
}
