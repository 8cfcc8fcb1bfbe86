//! No input makes a reader panic: every reader of user files gets random and damaged inputs, and
//! each must return `Ok` or a typed error (a panic fails the test, with proptest's smallest
//! failing input). The readers, and what they get:
//!
//! - config TOML ([`RunConfig::from_toml`]): documents of random sections, keys (the real ones
//!   and others) and values of every TOML type, and the shipped config with one value replaced;
//! - corpus files ([`ParallelCorpus::read`], [`PairReader`]): random bytes, invalid UTF-8, CR/LF
//!   mixes, byte-order marks, NUL, long lines, gzip magic, in files of unequal line counts;
//! - `tokenizer.json` ([`SubwordTokenizer::load`], then encoding and decoding): a real one with
//!   bytes flipped, spliced or cut, or a JSON value replaced or removed;
//! - checkpoints ([`load_checkpoint`], then translating a sentence): the format-1 fixture, which
//!   has no checksums, so damage reaches the parsers, with one of its files damaged (bit flips,
//!   truncation at every offset class: empty, inside the safetensors length prefix, inside its
//!   header, in the data, the last byte); the same as format 2, where the manifest must catch it;
//! - `state.json`: the fixture's with one JSON value replaced, removed or added;
//! - `metrics.jsonl` ([`RunHistory::read`]): records with random values, random JSON, random bytes;
//! - prepared datasets ([`PreparedDataset::open`], then reading every pair): a small one with a
//!   file damaged or its manifest's JSON edited.
//!
//! Each reader gets `FUZZ_CASES` inputs (256 unless set; `scripts/fuzz.sh` sets 100,000) and
//! prints how many it read and how many it refused.

mod common;

use std::cell::Cell;
use std::fmt::Debug;
use std::path::Path;

use candle_core::Device;
use common::{copy_dir, fixture_checkpoint, save_as_today};
use locus_data::{DataConfig, PairReader, ParallelCorpus, PrepareOptions, PreparedDataset, SubwordTokenizer};
use locus_train::run_history::RunHistory;
use locus_train::{load_checkpoint, RunConfig, Translator};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

/// Inputs per reader.
fn cases() -> u32 {
    std::env::var("FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256)
}

/// Feeds `reader` [`cases`] inputs from `inputs`; a panic fails the test with the smallest
/// input that panics. `reader` says whether it read the input (`true`) or refused it.
fn campaign<S: Strategy>(name: &str, inputs: S, reader: impl Fn(&S::Value) -> bool)
where
    S::Value: Debug,
{
    let config = Config { cases: cases(), failure_persistence: None, ..Config::default() };
    let (read, refused) = (Cell::new(0u64), Cell::new(0u64));
    let outcome = TestRunner::new(config).run(&inputs, |input| {
        let counter = if reader(&input) { &read } else { &refused };
        counter.set(counter.get() + 1);
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{name}: {failure}");
    }
    println!(
        "fuzz {name}: {} inputs, {} read, {} refused with an error, 0 panics",
        read.get() + refused.get(),
        read.get(),
        refused.get()
    );
}

// ---- Damage to bytes ----

/// A way to damage a file.
#[derive(Debug, Clone)]
enum Damage {
    /// Flip bit `bit` of the byte at `at` (a fraction of the length).
    Flip { at: f64, bit: u8 },
    /// Cut the file at an offset of class `class` (see [`cut_offset`]), `jitter` deciding
    /// within the class.
    Truncate { class: usize, jitter: f64 },
    /// Insert `bytes` at `at`.
    Splice { at: f64, bytes: Vec<u8> },
    /// Remove up to `len` bytes from `at`.
    Delete { at: f64, len: usize },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (0.0..1.0, 0u8..8).prop_map(|(at, bit)| Damage::Flip { at, bit }),
        (0usize..8, 0.0..1.0).prop_map(|(class, jitter)| Damage::Truncate { class, jitter }),
        (0.0..1.0, prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Damage::Splice { at, bytes }),
        (0.0..1.0, 1usize..64).prop_map(|(at, len)| Damage::Delete { at, len }),
    ]
}

/// The offset of a cut of class `class` in `len` bytes: nothing left, one byte, inside and just
/// after a safetensors file's 8-byte length prefix, inside its JSON header, in the data, all
/// but the last byte, anywhere.
fn cut_offset(bytes: &[u8], class: usize, jitter: f64) -> usize {
    let len = bytes.len();
    let header_end = bytes
        .get(..8)
        .and_then(|prefix| prefix.try_into().ok())
        .map(|prefix| 8 + u64::from_le_bytes(prefix) as usize)
        .filter(|&end| end <= len)
        .unwrap_or(len / 2);
    let within = |from: usize, to: usize| from + ((to.saturating_sub(from)) as f64 * jitter) as usize;
    let offset = match class {
        0 => 0,
        1 => 1,
        2 => within(1, 8),
        3 => 8,
        4 => within(8, header_end),
        5 => within(header_end, len),
        6 => len.saturating_sub(1),
        _ => within(0, len),
    };
    offset.min(len)
}

fn damaged(bytes: &[u8], damage: &Damage) -> Vec<u8> {
    let at = |fraction: f64| ((bytes.len() as f64 * fraction) as usize).min(bytes.len());
    let mut out = bytes.to_vec();
    match damage {
        Damage::Flip { at: fraction, bit } => {
            if let Some(byte) = out.get_mut(at(*fraction)) {
                *byte ^= 1 << bit;
            }
        }
        Damage::Truncate { class, jitter } => out.truncate(cut_offset(bytes, *class, *jitter)),
        Damage::Splice { at: fraction, bytes } => {
            let i = at(*fraction);
            out.splice(i..i, bytes.iter().copied());
        }
        Damage::Delete { at: fraction, len } => {
            let i = at(*fraction);
            out.drain(i..(i + len).min(bytes.len()));
        }
    }
    out
}

// ---- Edits to JSON ----

/// An edit of a JSON document: the node it applies to is `pick` modulo the number of nodes.
#[derive(Debug, Clone)]
enum JsonEdit {
    Replace { pick: usize, value: Value },
    Remove { pick: usize },
    Insert { pick: usize, key: String, value: Value },
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::num::f64::NORMAL.prop_map(Value::from),
        Just(Value::from(-1)),
        Just(Value::from(0)),
        "[a-z<>/ ]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        (any::<usize>(), json_value()).prop_map(|(pick, value)| JsonEdit::Replace { pick, value }),
        any::<usize>().prop_map(|pick| JsonEdit::Remove { pick }),
        (any::<usize>(), "[a-z_]{1,10}", json_value()).prop_map(|(pick, key, value)| JsonEdit::Insert {
            pick,
            key,
            value
        }),
    ]
}

/// JSON pointers to every node of `value` but the root, in document order.
fn pointers(value: &Value, at: &str, out: &mut Vec<String>) {
    let children: Vec<(String, &Value)> = match value {
        Value::Array(items) => items.iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect(),
        Value::Object(map) => map.iter().map(|(k, v)| (k.replace('~', "~0").replace('/', "~1"), v)).collect(),
        _ => Vec::new(),
    };
    for (key, child) in children {
        let pointer = format!("{at}/{key}");
        out.push(pointer.clone());
        pointers(child, &pointer, out);
    }
}

fn edited(document: &Value, edit: &JsonEdit) -> Value {
    let mut out = document.clone();
    let mut all = Vec::new();
    pointers(document, "", &mut all);
    let pick = |n: usize| all.get(n % all.len().max(1)).cloned().unwrap_or_default();
    match edit {
        JsonEdit::Replace { pick: n, value } => {
            if let Some(node) = out.pointer_mut(&pick(*n)) {
                *node = value.clone();
            }
        }
        JsonEdit::Remove { pick: n } => {
            let pointer = pick(*n);
            let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", ""));
            match out.pointer_mut(parent) {
                Some(Value::Object(map)) => {
                    map.remove(&key.replace("~1", "/").replace("~0", "~"));
                }
                Some(Value::Array(items)) => {
                    if let Ok(i) = key.parse::<usize>() {
                        if i < items.len() {
                            items.remove(i);
                        }
                    }
                }
                _ => {}
            }
        }
        JsonEdit::Insert { pick: n, key, value } => {
            if let Some(Value::Object(map)) = out.pointer_mut(&pick(*n)) {
                map.insert(key.clone(), value.clone());
            }
        }
    }
    out
}

// ---- The readers ----

/// A TOML value of any type, or a malformed one.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        prop::num::f64::ANY.prop_map(|v| match v {
            v if v.is_nan() => "nan".to_string(),
            v if v.is_infinite() => if v > 0.0 { "inf" } else { "-inf" }.to_string(),
            v => format!("{v:?}"),
        }),
        Just("0".to_string()),
        Just("-1".to_string()),
        any::<bool>().prop_map(|v| v.to_string()),
        "\"[a-z_0-9./ ]{0,16}\"",
        "\\[(-?[0-9]{1,3}, ){0,3}\\]",
        "\\{ kind = \"[a-z_]{1,10}\" \\}",
        "[^\n]{0,8}",
    ]
}

/// The shipped config's sections and keys, for inputs that use the real names.
fn known_names() -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(fixture_checkpoint().join("config.toml")).unwrap();
    let table: toml::Table = text.parse().unwrap();
    let mut names = Vec::new();
    fn walk(table: &toml::Table, at: &str, names: &mut Vec<(String, Vec<String>)>) {
        let keys = table.iter().filter(|(_, v)| !v.is_table()).map(|(k, _)| k.clone()).collect();
        names.push((at.to_string(), keys));
        for (key, value) in table {
            if let Some(inner) = value.as_table() {
                let name = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
                walk(inner, &name, names);
            }
        }
    }
    walk(&table, "", &mut names);
    names
}

#[test]
fn config_toml() {
    let names = known_names();
    let key = ("[a-z_.]{1,12}", any::<usize>(), any::<usize>(), any::<bool>());
    let document = prop::collection::vec(
        (any::<usize>(), any::<bool>(), prop::collection::vec((key, toml_value()), 0..8)),
        0..5,
    );
    campaign("config TOML (random documents)", document, |sections| {
        let mut text = String::new();
        for (section, real_section, items) in sections {
            let (name, keys) = &names[section % names.len()];
            if *real_section && !name.is_empty() {
                text += &format!("[{name}]\n");
            } else if !real_section {
                text += &format!("[{}]\n", ["x", "data.extra", "model.positional.x", "train"][section % 4]);
            }
            for ((random_key, pick, _, real), value) in items {
                let key = if *real && !keys.is_empty() { &keys[pick % keys.len()] } else { random_key };
                text += &format!("{key} = {value}\n");
            }
        }
        RunConfig::from_toml(&text).is_ok()
    });

    let shipped = std::fs::read_to_string(fixture_checkpoint().join("config.toml")).unwrap();
    let lines: Vec<&str> = shipped.lines().collect();
    campaign(
        "config TOML (the shipped one, one value replaced)",
        (any::<usize>(), toml_value()),
        |(pick, value)| {
            let assignments: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains(" = ")).collect();
            let at = assignments[pick % assignments.len()];
            let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            let key = lines[at].split(" = ").next().unwrap_or_default();
            edited[at] = format!("{key} = {value}");
            RunConfig::from_toml(&edited.join("\n")).is_ok()
        },
    );
}

/// Pieces of a corpus file.
fn corpus_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        "[a-zäöü ]{0,20}".prop_map(String::into_bytes),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just("\u{feff}".as_bytes().to_vec()),
        Just(vec![0u8]),
        Just(vec![0xff, 0xfe]),
        Just(vec![0xc3]),
        Just(vec![0x1f, 0x8b, 0x08]),
        (1usize..20_000).prop_map(|n| vec![b'x'; n]),
        prop::collection::vec(any::<u8>(), 0..32),
        "[\\PC]{0,8}".prop_map(String::into_bytes),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

#[test]
fn corpus_files() {
    let dir = tempfile::tempdir().unwrap();
    campaign("corpus files", (corpus_bytes(), corpus_bytes(), any::<bool>()), |(src, tgt, gz)| {
        let ext = if *gz { "de.gz" } else { "de" };
        let (src_path, tgt_path) = (dir.path().join(format!("corpus.{ext}")), dir.path().join("corpus.en"));
        std::fs::write(&src_path, src).unwrap();
        std::fs::write(&tgt_path, tgt).unwrap();
        let whole = ParallelCorpus::read(&src_path, &tgt_path).is_ok();
        let mut streamed = match PairReader::open(&src_path, &tgt_path) {
            Ok(reader) => reader,
            Err(_) => return false,
        };
        let streamed_ok = loop {
            match streamed.next_pair() {
                Ok(Some(_)) => {}
                Ok(None) => break true,
                Err(_) => break false,
            }
        };
        whole && streamed_ok
    });
}

/// Loads `path` as a tokenizer and, if it loads, encodes and decodes with it.
fn use_tokenizer(path: &Path) -> bool {
    let Ok(tokenizer) = SubwordTokenizer::load(path) else { return false };
    let encoded = tokenizer.encode("Ein Mann fährt <s> Fahrrad.");
    let batch = tokenizer.encode_batch(&["zwei Hunde", ""]);
    let ids: Vec<u32> = (0..tokenizer.vocab_size() as u32).step_by(7).collect();
    let decoded = tokenizer.decode(&ids);
    // An id beyond the vocabulary is an error, never a panic.
    let beyond = tokenizer.decode(&[tokenizer.vocab_size() as u32, u32::MAX]);
    encoded.is_ok() && batch.is_ok() && decoded.is_ok() && beyond.is_err()
}

#[test]
fn tokenizer_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    let original = std::fs::read(fixture_checkpoint().join("tokenizer.json")).unwrap();
    campaign("tokenizer.json (damaged bytes)", damage(), |damage| {
        std::fs::write(&path, damaged(&original, damage)).unwrap();
        use_tokenizer(&path)
    });
    let document: Value = serde_json::from_slice(&original).unwrap();
    campaign("tokenizer.json (edited JSON)", json_edit(), |edit| {
        std::fs::write(&path, serde_json::to_vec(&edited(&document, edit)).unwrap()).unwrap();
        use_tokenizer(&path)
    });
}

/// Loads the checkpoint in `dir` and, if it loads, translates a sentence with it.
fn use_checkpoint(dir: &Path) -> bool {
    let Ok(checkpoint) = load_checkpoint(dir, &Device::Cpu) else { return false };
    let mut translator = Translator::new(&checkpoint.model, &checkpoint.tokenizer);
    translator.limits.max_len_b = 4;
    translator.translate(&["Ein Mann ."]).is_ok()
}

const CHECKPOINT_FILES: [&str; 5] =
    ["model.safetensors", "config.toml", "tokenizer.json", "state.json", "optimizer.safetensors"];

/// Damages one file of the checkpoint in `dir` (restoring it afterwards) and loads it.
fn damaged_checkpoint(dir: &Path, originals: &[Vec<u8>], (file, damage): &(usize, Damage)) -> bool {
    let (file, original) =
        (CHECKPOINT_FILES[file % CHECKPOINT_FILES.len()], &originals[file % originals.len()]);
    std::fs::write(dir.join(file), damaged(original, damage)).unwrap();
    let read = use_checkpoint(dir);
    std::fs::write(dir.join(file), original).unwrap();
    read
}

#[test]
fn checkpoints() {
    let work = tempfile::tempdir().unwrap();
    let format_1 = work.path().join("format-1");
    copy_dir(&fixture_checkpoint(), &format_1);
    let originals: Vec<Vec<u8>> =
        CHECKPOINT_FILES.iter().map(|f| std::fs::read(format_1.join(f)).unwrap()).collect();
    campaign("checkpoint files (format 1, no checksums)", (0..CHECKPOINT_FILES.len(), damage()), |input| {
        damaged_checkpoint(&format_1, &originals, input)
    });

    let checkpoint = load_checkpoint(&format_1, &Device::Cpu).unwrap();
    let format_2 = save_as_today(&checkpoint, &work.path().join("run"));
    let originals: Vec<Vec<u8>> =
        CHECKPOINT_FILES.iter().map(|f| std::fs::read(format_2.join(f)).unwrap()).collect();
    let refused = Cell::new(true);
    campaign("checkpoint files (format 2, verified)", (0..CHECKPOINT_FILES.len(), damage()), |input| {
        let unchanged = damaged(&originals[input.0], &input.1) == originals[input.0];
        let read = damaged_checkpoint(&format_2, &originals, input);
        // The manifest lets no change through.
        refused.set(refused.get() && (unchanged || !read));
        read
    });
    assert!(refused.get(), "a damaged format-2 checkpoint loaded");
}

#[test]
fn state_json() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("checkpoint");
    copy_dir(&fixture_checkpoint(), &dir);
    let document: Value = serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    campaign("state.json (edited JSON)", json_edit(), |edit| {
        std::fs::write(dir.join("state.json"), serde_json::to_vec(&edited(&document, edit)).unwrap())
            .unwrap();
        use_checkpoint(&dir)
    });
}

/// A `metrics.jsonl` line: a record of a known event with random values, random JSON, or bytes.
fn metrics_line() -> impl Strategy<Value = Vec<u8>> {
    let event =
        prop_oneof![Just("train"), Just("valid"), Just("resume"), Just("stop"), Just("data"), Just("x")];
    let record =
        (event, prop::collection::vec(("[a-z_]{1,6}|step|loss|nll|lr|bleu|chrf", json_value()), 0..6))
            .prop_map(|(event, fields)| {
                let mut object: serde_json::Map<String, Value> = fields.into_iter().collect();
                object.insert("event".into(), event.into());
                serde_json::to_vec(&Value::Object(object)).unwrap()
            });
    prop_oneof![
        4 => record,
        1 => json_value().prop_map(|value| serde_json::to_vec(&value).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..40),
        1 => Just(br#"{"event":"train","step":3,"loss":1.5,"nll":1.4,"lr":0.001}"#.to_vec()),
    ]
}

#[test]
fn metrics_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let lines = (prop::collection::vec(metrics_line(), 0..8), any::<bool>());
    campaign("metrics.jsonl", lines, |(lines, last_newline)| {
        let mut text = lines.join(&b'\n');
        if *last_newline {
            text.push(b'\n');
        }
        std::fs::write(dir.path().join("metrics.jsonl"), text).unwrap();
        RunHistory::read(dir.path()).is_ok()
    });
}

/// Opens the prepared dataset in `dir` and, if it opens, reads every pair of it.
fn use_prepared(dir: &Path) -> bool {
    let Ok(dataset) = PreparedDataset::open(dir) else { return false };
    dataset.train.pairs().is_ok() && dataset.valid.pairs().is_ok()
}

#[test]
fn prepared_datasets() {
    let work = tempfile::tempdir().unwrap();
    let corpus: String = (0..60).map(|i| format!("ein Mann {} sieht {} Hunde\n", i % 7, i % 5)).collect();
    for name in ["train.de", "train.en", "valid.de", "valid.en"] {
        std::fs::write(work.path().join(name), &corpus).unwrap();
    }
    let at = |name: &str| work.path().join(name);
    let mut config = DataConfig::with_paths(at("train.de"), at("train.en"), at("valid.de"), at("valid.en"));
    config.vocab_size = 40;
    let dir = work.path().join("prepared");
    locus_data::prepare(&config, &dir, PrepareOptions { tokenizer: None, progress: &|_| {} }).unwrap();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let originals: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(dir.join(f)).unwrap()).collect();
    campaign("prepared dataset (damaged files)", (0..files.len(), damage()), |(file, damage)| {
        std::fs::write(dir.join(&files[*file]), damaged(&originals[*file], damage)).unwrap();
        let read = use_prepared(&dir);
        std::fs::write(dir.join(&files[*file]), &originals[*file]).unwrap();
        read
    });
    let manifest_path = dir.join("manifest.json");
    let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let original = std::fs::read(&manifest_path).unwrap();
    campaign("prepared dataset (edited manifest.json)", json_edit(), |edit| {
        std::fs::write(&manifest_path, serde_json::to_vec(&edited(&manifest, edit)).unwrap()).unwrap();
        let read = use_prepared(&dir);
        std::fs::write(&manifest_path, &original).unwrap();
        read
    });
}
