//! The length-generalisation lab through the binary: `data.max_train_len` drops long pairs from
//! training only, and `locus evaluate --by-length` scores each source-length bucket alone.

mod common;

use std::path::Path;

use common::{data_overrides, locus, stderr, tiny_config, train_args, write_corpus};
use locus_data::SubwordTokenizer;
use serde_json::Value;

const WORDS: [&str; 10] =
    ["ein", "hund", "läuft", "über", "die", "wiese", "zwei", "kinder", "spielen", "ball"];

/// Trains the tiny config on the corpus in `dir` with `extra` overrides; returns the run dir.
fn train(dir: &Path, extra: &[&str]) -> std::path::PathBuf {
    write_corpus(dir);
    let config = tiny_config().display().to_string();
    let mut overrides = data_overrides(dir);
    overrides.extend(extra.iter().map(ToString::to_string));
    let out = locus(&train_args(&config, &overrides));
    assert!(out.status.success(), "train failed: {}", stderr(&out));
    dir.join("run")
}

/// Token counts (no EOS) of each line of `path` under the run's tokenizer.
fn token_lengths(run: &Path, path: &Path) -> Vec<usize> {
    let tokenizer = SubwordTokenizer::load(&run.join("tokenizer.json")).unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().map(|line| tokenizer.encode(line).unwrap().len()).collect()
}

/// Test sentences of 1 to 14 words, two of each length; targets are the sources upper-cased.
fn write_test_set(dir: &Path) {
    let (mut src, mut tgt) = (String::new(), String::new());
    for n in 1..=14 {
        for k in 0..2 {
            let sentence: Vec<&str> = (0..n).map(|j| WORDS[(n * 3 + k * 5 + j * 7) % WORDS.len()]).collect();
            src += &(sentence.join(" ") + "\n");
            tgt += &(sentence.join(" ").to_uppercase() + "\n");
        }
    }
    std::fs::write(dir.join("test.de"), src).unwrap();
    std::fs::write(dir.join("test.en"), tgt).unwrap();
}

/// `locus evaluate` of the run's best checkpoint on the test set, with `extra` flags.
fn evaluate(dir: &Path, extra: &[&str]) -> String {
    let (src, reference) =
        (dir.join("test.de").display().to_string(), dir.join("test.en").display().to_string());
    let checkpoint = dir.join("run/best").display().to_string();
    let mut args = vec!["evaluate", "--checkpoint", &checkpoint, "--src", &src, "--ref", &reference];
    args.extend(["--device", "cpu"]);
    args.extend(extra);
    let out = locus(&args);
    assert!(out.status.success(), "evaluate failed: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The `data` event of the run's metrics log.
fn data_event(run: &Path) -> Value {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|record| record["event"] == "data")
        .expect("a data event")
}

#[test]
fn max_train_len_drops_long_pairs_from_training_only() {
    let dir = tempfile::tempdir().unwrap();
    let run = train(dir.path(), &["data.max_train_len=4", "train.max_steps=2"]);
    let src = token_lengths(&run, &dir.path().join("train.de"));
    let tgt = token_lengths(&run, &dir.path().join("train.en"));
    // Every pair passes the tiny config's shared filter (1 to 64 tokens, ratio at most 3)...
    assert!(src.iter().zip(&tgt).all(|(&s, &t)| s.min(t) >= 1 && s.max(t) <= 64 && s.max(t) <= 3 * s.min(t)));
    // ...so training keeps exactly the pairs with both sides within 4 tokens.
    let short = src.iter().zip(&tgt).filter(|&(&s, &t)| s <= 4 && t <= 4).count();
    assert!(0 < short && short < src.len(), "{short} of {} pairs are short", src.len());
    let data = data_event(&run);
    assert_eq!(data["train_pairs"], short as u64);
    assert_eq!(data["train_dropped"], (src.len() - short) as u64);
    // The validation corpus is the same text, and keeps every pair.
    assert_eq!((data["valid_pairs"].as_u64(), data["valid_dropped"].as_u64()), (Some(200), Some(0)));
}

#[test]
fn evaluate_by_length_counts_each_bucket_and_scores_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = train(dir.path(), &[]);
    write_test_set(dir.path());
    let lengths = token_lengths(&run, &dir.path().join("test.de"));
    let count =
        |range: std::ops::RangeInclusive<usize>| lengths.iter().filter(|len| range.contains(len)).count();

    // Explicit buckets with a gap (13 to 999) and an open bucket nothing reaches.
    let out = evaluate(dir.path(), &["--json", "--by-length", "1-4,5-8,9-12,1000-"]);
    let record: Value = serde_json::from_str(&out).unwrap();
    let rows = record["by_length"].as_array().expect("a by_length list");
    let labels: Vec<&str> = rows.iter().map(|row| row["bucket"].as_str().unwrap()).collect();
    assert_eq!(labels, ["1-4", "5-8", "9-12", "1000+"]);
    let want = [count(1..=4), count(5..=8), count(9..=12), 0];
    assert!(want[..3].iter().all(|&n| n > 0), "{want:?} from lengths {lengths:?}");
    for (row, &sentences) in rows.iter().zip(&want) {
        assert_eq!(row["sentences"], sentences as u64, "{row}");
        for metric in ["bleu", "chrf"] {
            if sentences == 0 {
                assert!(row[metric].is_null(), "{row}");
            } else {
                let score = row[metric].as_f64().unwrap();
                assert!((0.0..=100.0).contains(&score), "{row}");
            }
        }
    }

    // Without a value (and before another flag), the default buckets.
    let out = evaluate(dir.path(), &["--by-length", "--json"]);
    let record: Value = serde_json::from_str(&out).unwrap();
    let rows = record["by_length"].as_array().unwrap();
    let labels: Vec<&str> = rows.iter().map(|row| row["bucket"].as_str().unwrap()).collect();
    assert_eq!(labels, ["1-10", "11-20", "21-30", "31-40", "41+"]);
    let counts: Vec<u64> = rows.iter().map(|row| row["sentences"].as_u64().unwrap()).collect();
    let want = [count(1..=10), count(11..=20), count(21..=30), count(31..=40), count(41..=usize::MAX)];
    assert_eq!(counts, want.map(|n| n as u64));

    // As text: the usual report, then the bucket table.
    let out = evaluate(dir.path(), &["--by-length", "1-4,5-"]);
    let table = out.split_once("by source length").expect("a by-length table").1;
    assert!(out.contains("BLEU = "), "{out}");
    // Labels are padded to the width of "bucket", then two spaces and the count in 9.
    let first_row = format!("\n1-4     {:>9}  ", count(1..=4));
    assert!(table.contains(&first_row), "{first_row:?} not in {table}");
}
