//! Synthetic sequence-to-sequence tasks for probing length generalisation.
//!
//! Positional encodings differ most in how they behave on sequences longer
//! than any seen in training, and algorithmic tasks make that measurable:
//! train on lengths 1..=20, test on 21..=40, and exact-match accuracy says
//! how well the learned algorithm carries over (Kazemnejad et al., 2023,
//! "The Impact of Positional Encoding on Length Generalization in
//! Transformers", <https://arxiv.org/abs/2305.19466>).
//!
//! Four [`Task`]s are offered. Tokens are separated by single spaces, so
//! the examples can be written with [`write_examples`] and then read,
//! tokenized and batched like any parallel corpus.
//!
//! | task       | source          | target    |
//! |------------|-----------------|-----------|
//! | `copy`     | `c a b`         | `c a b`   |
//! | `reverse`  | `c a b`         | `b a c`   |
//! | `sort`     | `c a b`         | `a b c`   |
//! | `addition` | `1 2 + 4 9`     | `5 1 1`   |
//!
//! Copy, reverse and sort draw each source symbol uniformly from the first
//! [`TaskSpec::symbols`] letters of `a`..`z`; sort orders them
//! alphabetically. Addition always uses the digits 0-9.
//!
//! # Length convention
//!
//! [`Example::length`] is the number of source symbols for copy, reverse and
//! sort, and the number of digits of each operand for addition (whose source
//! then has `2 * length + 1` tokens and whose target has `length` or
//! `length + 1`). Both operands of an addition have exactly `length` digits,
//! with a non-zero leading digit unless `length` is 1.
//!
//! # Why addition is written least significant digit first
//!
//! A decoder writes its answer left to right. Written most significant digit
//! first, the first output digit already depends on every carry, so on
//! every digit of both operands: the model must look arbitrarily far ahead.
//! Written least significant digit first (operands and sum alike), output
//! digit `i` depends only on operand digits `i` and on the carry out of
//! position `i - 1`, which is the schoolbook algorithm run one position per
//! step. That local rule is the same at every length, so a model that learns
//! it can generalise to longer numbers; the reversed format is standard in
//! length-generalisation studies (Lee et al., 2023, "Teaching Arithmetic to
//! Small Transformers", <https://arxiv.org/abs/2307.03381>).

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::RangeInclusive;
use std::path::Path;
use std::str::FromStr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// The alphabet symbols are drawn from; a [`TaskSpec`] uses a prefix of it.
const LETTERS: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";

/// The smallest alphabet for copy, reverse and sort.
const MIN_SYMBOLS: usize = 2;

/// The token between the two operands of an addition.
const PLUS: &str = "+";

/// A synthetic task; see the [module documentation](self).
///
/// Written in configuration files and on the command line by its
/// snake_case name: `copy`, `reverse`, `sort` or `addition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// The target repeats the source.
    Copy,
    /// The target is the source backwards.
    Reverse,
    /// The target is the source's symbols in alphabetical order.
    Sort,
    /// The source is two numbers, the target their sum, all least
    /// significant digit first.
    Addition,
}

impl Task {
    /// Every task, in declaration order.
    pub const ALL: [Task; 4] = [Task::Copy, Task::Reverse, Task::Sort, Task::Addition];

    /// The task's name, as written in configuration files (`"copy"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Task::Copy => "copy",
            Task::Reverse => "reverse",
            Task::Sort => "sort",
            Task::Addition => "addition",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Task {
    type Err = DataError;

    /// Parses a task name, exactly as [`Task::name`] writes it.
    ///
    /// # Errors
    ///
    /// [`DataError::Config`] for field `task`, listing the valid names.
    fn from_str(s: &str) -> Result<Self> {
        Task::ALL.into_iter().find(|task| task.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Task::ALL.iter().map(|task| task.name()).collect();
            DataError::config("task", format!("({s:?}) must be one of {}", names.join(", ")))
        })
    }
}

/// A task together with its alphabet size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// The task to generate.
    pub task: Task,
    /// Alphabet size for copy, reverse and sort: the first `symbols` letters
    /// of `a`..`z`, so 2..=26. Ignored by addition, which uses the digits 0-9.
    pub symbols: usize,
}

impl TaskSpec {
    /// Checks that `symbols` is in 2..=26 for the tasks that use it.
    ///
    /// # Errors
    ///
    /// [`DataError::Config`] for field `symbols`, with its value and the rule.
    pub fn validate(&self) -> Result<()> {
        let range = MIN_SYMBOLS..=LETTERS.len();
        if self.task == Task::Addition || range.contains(&self.symbols) {
            return Ok(());
        }
        Err(DataError::config(
            "symbols",
            format!(
                "({}) must be between {} and {} (the letters a to z) for task {}",
                self.symbols,
                range.start(),
                range.end(),
                self.task
            ),
        ))
    }
}

/// One generated source/target pair; tokens are separated by single spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The input sequence, e.g. `1 2 + 4 9`.
    pub source: String,
    /// The expected output sequence, e.g. `5 1 1`.
    pub target: String,
    /// Source symbols (copy, reverse, sort) or digits per operand (addition).
    pub length: usize,
}

/// Generates `count` examples of `spec`, each length drawn uniformly from
/// `lengths`.
///
/// The result depends only on the arguments: the same `(spec, lengths,
/// count, seed)` always gives the same examples (ChaCha8 seeded from `seed`),
/// and the first `k` examples do not depend on `count`.
///
/// ```
/// use locus_data::synthetic::generate;
/// use locus_data::{Task, TaskSpec};
///
/// let spec = TaskSpec { task: Task::Reverse, symbols: 4 };
/// let examples = generate(&spec, 3..=3, 2, 7).unwrap();
/// assert_eq!(examples.len(), 2);
/// let reversed: Vec<&str> = examples[0].source.split(' ').rev().collect();
/// assert_eq!(examples[0].target, reversed.join(" "));
/// assert_eq!(examples[0].length, 3);
/// ```
///
/// # Errors
///
/// [`DataError::Config`] for field `symbols` if [`TaskSpec::validate`]
/// fails, or for field `lengths` if the range is empty or includes 0.
pub fn generate(
    spec: &TaskSpec,
    lengths: RangeInclusive<usize>,
    count: usize,
    seed: u64,
) -> Result<Vec<Example>> {
    spec.validate()?;
    check_lengths(&lengths)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let examples = (0..count)
        .map(|_| {
            let length = rng.random_range(lengths.clone());
            draw_example(spec, length, &mut rng)
        })
        .collect();
    Ok(examples)
}

/// Writes one example per line: sources to `source`, targets to `target`.
///
/// Line `i` of both files belongs to example `i`, so the pair can be read
/// back with [`ParallelCorpus::read`](crate::ParallelCorpus::read). Existing
/// files are overwritten. The examples must not contain newlines (generated
/// ones never do).
///
/// # Errors
///
/// [`DataError::Write`] naming the file that could not be created or written.
pub fn write_examples(examples: &[Example], source: &Path, target: &Path) -> Result<()> {
    write_lines(source, examples.iter().map(|example| example.source.as_str()))?;
    write_lines(target, examples.iter().map(|example| example.target.as_str()))
}

/// Rejects an empty range of lengths and one that includes 0.
fn check_lengths(lengths: &RangeInclusive<usize>) -> Result<()> {
    let shown = format!("({}..={})", lengths.start(), lengths.end());
    if lengths.is_empty() {
        return Err(DataError::config("lengths", format!("{shown} is empty")));
    }
    if *lengths.start() == 0 {
        return Err(DataError::config(
            "lengths",
            format!("{shown} must not include 0 (every example needs at least one token)"),
        ));
    }
    Ok(())
}

/// Draws one example of length `length` (validated spec, `length >= 1`).
fn draw_example(spec: &TaskSpec, length: usize, rng: &mut ChaCha8Rng) -> Example {
    match spec.task {
        Task::Addition => {
            let a = draw_operand(length, rng);
            let b = draw_operand(length, rng);
            addition_example(&a, &b)
        }
        task => symbol_example(task, &draw_symbols(spec.symbols, length, rng)),
    }
}

/// `length` letters drawn uniformly from the first `symbols` of `a`..`z`.
fn draw_symbols(symbols: usize, length: usize, rng: &mut ChaCha8Rng) -> Vec<char> {
    (0..length).map(|_| char::from(LETTERS[rng.random_range(0..symbols)])).collect()
}

/// The digits of a uniformly drawn `length`-digit number, least significant
/// first; the leading digit is non-zero unless `length` is 1.
fn draw_operand(length: usize, rng: &mut ChaCha8Rng) -> Vec<u8> {
    (0..length)
        .map(|i| {
            let lowest = if i + 1 == length && length > 1 { 1 } else { 0 };
            rng.random_range(lowest..=9)
        })
        .collect()
}

/// The copy, reverse or sort example whose source is `source`.
fn symbol_example(task: Task, source: &[char]) -> Example {
    let mut target = source.to_vec();
    match task {
        Task::Copy => {}
        Task::Reverse => target.reverse(),
        Task::Sort => target.sort_unstable(),
        Task::Addition => unreachable!("addition operands are digits, not symbols"),
    }
    Example { source: spaced(source), target: spaced(&target), length: source.len() }
}

/// The addition example for two operands of equal length, given as digits
/// least significant first.
fn addition_example(a: &[u8], b: &[u8]) -> Example {
    assert_eq!(a.len(), b.len(), "addition operands must have the same number of digits");
    Example {
        source: format!("{} {PLUS} {}", spaced(a), spaced(b)),
        target: spaced(&add_digits(a, b)),
        length: a.len(),
    }
}

/// Schoolbook addition of two equally long digit sequences, least
/// significant digit first; a final carry becomes one more digit.
fn add_digits(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut sum = Vec::with_capacity(a.len() + 1);
    let mut carry = 0;
    for (x, y) in a.iter().zip(b) {
        let digit = x + y + carry;
        sum.push(digit % 10);
        carry = digit / 10;
    }
    if carry > 0 {
        sum.push(carry);
    }
    sum
}

/// The tokens joined by single spaces.
fn spaced<T: ToString>(tokens: &[T]) -> String {
    tokens.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}

/// Writes each line followed by `'\n'` to `path`, replacing the file.
fn write_lines<'a>(path: &Path, lines: impl Iterator<Item = &'a str>) -> Result<()> {
    let to_error = |source| DataError::Write { path: path.to_path_buf(), source };
    let mut out = BufWriter::new(File::create(path).map_err(to_error)?);
    for line in lines {
        writeln!(out, "{line}").map_err(to_error)?;
    }
    out.flush().map_err(to_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::read_lines;

    /// A spec per task; addition ignores `symbols`.
    fn specs(symbols: usize) -> Vec<TaskSpec> {
        Task::ALL.into_iter().map(|task| TaskSpec { task, symbols }).collect()
    }

    fn tokens(text: &str) -> Vec<&str> {
        text.split(' ').collect()
    }

    /// Parses a least-significant-digit-first number such as `5 1 1` (115).
    fn parse_lsd_first(digits: &[&str]) -> u128 {
        digits.iter().rev().fold(0, |acc, d| acc * 10 + d.parse::<u128>().unwrap())
    }

    #[test]
    fn same_seed_same_examples_other_seed_different() {
        for spec in specs(5) {
            let a = generate(&spec, 1..=8, 50, 42).unwrap();
            assert_eq!(a, generate(&spec, 1..=8, 50, 42).unwrap(), "{spec:?}");
            assert_ne!(a, generate(&spec, 1..=8, 50, 43).unwrap(), "{spec:?}");
            // A longer run starts with the same examples.
            assert_eq!(a[..10], generate(&spec, 1..=8, 10, 42).unwrap()[..], "{spec:?}");
        }
    }

    #[test]
    fn lengths_stay_in_range_and_cover_it() {
        for spec in specs(5) {
            let examples = generate(&spec, 2..=6, 300, 1).unwrap();
            let mut seen = [false; 7];
            for example in &examples {
                assert!((2..=6).contains(&example.length), "{example:?}");
                let expected_tokens =
                    if spec.task == Task::Addition { 2 * example.length + 1 } else { example.length };
                assert_eq!(tokens(&example.source).len(), expected_tokens, "{example:?}");
                seen[example.length] = true;
            }
            assert_eq!(seen[2..], [true; 5], "{spec:?}: every length of 2..=6 should occur in 300 draws");
        }
    }

    #[test]
    fn a_single_length_range_gives_that_length() {
        let spec = TaskSpec { task: Task::Copy, symbols: 2 };
        let examples = generate(&spec, 4..=4, 20, 3).unwrap();
        assert!(examples.iter().all(|example| example.length == 4));
    }

    #[test]
    fn copy_repeats_the_source_over_exactly_the_alphabet() {
        let spec = TaskSpec { task: Task::Copy, symbols: 3 };
        let mut seen = std::collections::BTreeSet::new();
        for example in generate(&spec, 1..=10, 100, 9).unwrap() {
            assert_eq!(example.target, example.source);
            seen.extend(tokens(&example.source).into_iter().map(str::to_owned));
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn reverse_target_is_the_source_backwards() {
        let spec = TaskSpec { task: Task::Reverse, symbols: 26 };
        for example in generate(&spec, 1..=12, 100, 5).unwrap() {
            let mut source = tokens(&example.source);
            source.reverse();
            assert_eq!(tokens(&example.target), source, "{example:?}");
        }
    }

    #[test]
    fn sort_target_is_a_sorted_permutation_of_the_source() {
        let spec = TaskSpec { task: Task::Sort, symbols: 10 };
        for example in generate(&spec, 1..=12, 100, 6).unwrap() {
            let target = tokens(&example.target);
            assert!(target.windows(2).all(|pair| pair[0] <= pair[1]), "{example:?}");
            let mut source = tokens(&example.source);
            source.sort_unstable();
            assert_eq!(target, source, "{example:?}");
        }
    }

    #[test]
    fn symbol_tasks_on_a_hand_written_source() {
        let source = ['c', 'a', 'b', 'a'];
        let expected = [(Task::Copy, "c a b a"), (Task::Reverse, "a b a c"), (Task::Sort, "a a b c")];
        for (task, target) in expected {
            let example = symbol_example(task, &source);
            assert_eq!(example, Example { source: "c a b a".into(), target: target.into(), length: 4 });
        }
    }

    #[test]
    fn addition_sums_check_out_with_integer_arithmetic() {
        let spec = TaskSpec { task: Task::Addition, symbols: 0 };
        let (mut carried_into_new_digit, mut stayed_within) = (false, false);
        for example in generate(&spec, 1..=18, 300, 11).unwrap() {
            let source = tokens(&example.source);
            let n = example.length;
            assert_eq!(source[n], PLUS, "{example:?}");
            let (a, b) = (&source[..n], &source[n + 1..]);
            assert_eq!(b.len(), n, "{example:?}");
            if n > 1 {
                assert!(a[n - 1] != "0" && b[n - 1] != "0", "leading zero in {example:?}");
            }
            let target = tokens(&example.target);
            assert_eq!(parse_lsd_first(&target), parse_lsd_first(a) + parse_lsd_first(b), "{example:?}");
            assert!(target.len() == 1 || target[target.len() - 1] != "0", "leading zero in {example:?}");
            match target.len() - n {
                0 => stayed_within = true,
                1 => carried_into_new_digit = true,
                _ => panic!("sum of two {n}-digit numbers has {} digits: {example:?}", target.len()),
            }
        }
        assert!(carried_into_new_digit && stayed_within);
    }

    #[test]
    fn addition_on_hand_written_operands() {
        // 21 + 94 = 115, everything least significant digit first.
        let example = addition_example(&[1, 2], &[4, 9]);
        assert_eq!(example, Example { source: "1 2 + 4 9".into(), target: "5 1 1".into(), length: 2 });
        // 500 + 500 = 1000: carries ripple into a fourth digit.
        let example = addition_example(&[0, 0, 5], &[0, 0, 5]);
        assert_eq!((example.source.as_str(), example.target.as_str()), ("0 0 5 + 0 0 5", "0 0 0 1"));
        // 5 + 7 = 12 and 0 + 0 = 0 for single digits.
        assert_eq!(addition_example(&[5], &[7]).target, "2 1");
        assert_eq!(addition_example(&[0], &[0]).target, "0");
    }

    #[test]
    fn symbols_outside_two_to_twenty_six_are_rejected() {
        for symbols in [0, 1, 27] {
            let spec = TaskSpec { task: Task::Sort, symbols };
            let err = generate(&spec, 1..=3, 1, 0).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("symbols ({symbols}) must be between 2 and 26 (the letters a to z) for task sort")
            );
        }
        for symbols in [2, 26] {
            assert!(TaskSpec { task: Task::Copy, symbols }.validate().is_ok());
        }
        // Addition ignores the alphabet size.
        assert!(TaskSpec { task: Task::Addition, symbols: 1 }.validate().is_ok());
    }

    #[test]
    fn empty_or_zero_length_ranges_are_rejected() {
        let spec = TaskSpec { task: Task::Copy, symbols: 4 };
        // Built with `new` because clippy rejects a literal reversed range.
        let err = generate(&spec, RangeInclusive::new(5, 3), 1, 0).unwrap_err();
        assert_eq!(err.to_string(), "lengths (5..=3) is empty");
        let err = generate(&spec, 0..=3, 1, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "lengths (0..=3) must not include 0 (every example needs at least one token)"
        );
        assert_eq!(generate(&spec, 1..=3, 0, 0).unwrap(), []);
    }

    #[test]
    fn task_names_round_trip_and_unknown_names_list_the_valid_ones() {
        for task in Task::ALL {
            assert_eq!(task.to_string().parse::<Task>().unwrap(), task);
        }
        assert_eq!("reverse".parse::<Task>().unwrap(), Task::Reverse);
        let err = "Copy".parse::<Task>().unwrap_err();
        assert_eq!(err.to_string(), r#"task ("Copy") must be one of copy, reverse, sort, addition"#);
    }

    #[test]
    fn tasks_deserialize_from_snake_case_names() {
        #[derive(Deserialize)]
        struct Lab {
            tasks: Vec<Task>,
        }
        let lab: Lab = toml::from_str(r#"tasks = ["copy", "reverse", "sort", "addition"]"#).unwrap();
        assert_eq!(lab.tasks, Task::ALL);
        let err = toml::from_str::<Lab>(r#"tasks = ["shuffle"]"#).err().unwrap();
        assert!(err.to_string().contains("expected one of `copy`, `reverse`, `sort`, `addition`"), "{err}");

        let spec: TaskSpec = toml::from_str("task = \"sort\"\nsymbols = 5").unwrap();
        assert_eq!(spec, TaskSpec { task: Task::Sort, symbols: 5 });
    }

    #[test]
    fn written_examples_read_back_line_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let (src, tgt) = (dir.path().join("train.src"), dir.path().join("train.tgt"));
        let examples = generate(&TaskSpec { task: Task::Addition, symbols: 0 }, 1..=4, 20, 2).unwrap();
        write_examples(&examples, &src, &tgt).unwrap();
        let sources: Vec<String> = examples.iter().map(|example| example.source.clone()).collect();
        let targets: Vec<String> = examples.iter().map(|example| example.target.clone()).collect();
        assert_eq!(read_lines(&src).unwrap(), sources);
        assert_eq!(read_lines(&tgt).unwrap(), targets);
    }

    #[test]
    fn write_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir/train.src");
        let examples = [Example { source: "a".into(), target: "a".into(), length: 1 }];
        let err = write_examples(&examples, &missing, &dir.path().join("train.tgt")).unwrap_err();
        assert!(matches!(err, DataError::Write { .. }), "{err:?}");
        assert_eq!(err.to_string(), format!("writing {}", missing.display()));
    }
}
