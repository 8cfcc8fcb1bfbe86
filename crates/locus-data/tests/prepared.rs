//! `prepare` and `PreparedDataset` end to end, on small corpora written here:
//! - the pairs read back are exactly the tokenizer's encoding of the lines the filters keep,
//!   corpus after corpus, across shard boundaries, with per-corpus counts of what was dropped;
//! - the tokenizer is trained on a bounded, seeded sample, or a given one is used as it is;
//! - damaged shards, another layout version, misaligned or invalid input and missing files are
//!   clear errors naming the file (and line), and leave nothing half-written.

use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use locus_data::prepared::manifest::{DropCounts, TokenizerOrigin};
use locus_data::{
    prepare, DataConfig, DataError, PrepareOptions, PrepareProgress, PreparedDataset, SubwordTokenizer,
};

const WORDS: [&str; 10] =
    ["ein", "Hund", "läuft", "über", "die", "Wiese", "zwei", "Kinder", "spielen", "Ball"];

/// Sentences of varied length from a small vocabulary; `i` picks one.
fn sentence(i: usize) -> String {
    (0..1 + i % 7).map(|j| WORDS[(i * 3 + j * 7) % WORDS.len()]).collect::<Vec<_>>().join(" ")
}

/// Its translation: the same words, backwards.
fn translation(i: usize) -> String {
    sentence(i).split(' ').rev().collect::<Vec<_>>().join(" ")
}

fn write(path: &Path, text: &str) -> PathBuf {
    if path.extension().is_some_and(|e| e == "gz") {
        let mut gz = GzEncoder::new(std::fs::File::create(path).unwrap(), Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap();
    } else {
        std::fs::write(path, text).unwrap();
    }
    path.to_path_buf()
}

/// Two training corpora (the second gzip) and a validation pair in `dir`. The first corpus has
/// an empty line and a pair of very unequal lengths; the second a very long sentence.
fn corpora(dir: &Path) -> DataConfig {
    let first_src: String = (0..60)
        .map(|i| match i {
            10 => "\n".to_owned(),
            20 => "Hund\n".to_owned(),
            _ => sentence(i) + "\n",
        })
        .collect();
    let first_tgt: String = (0..60)
        .map(|i| match i {
            20 => "ein Hund läuft über die Wiese zwei Kinder spielen Ball\n".to_owned(),
            _ => translation(i) + "\n",
        })
        .collect();
    let second_src: String = (0..40)
        .map(|i| if i == 5 { format!("{}\n", vec!["Ball"; 200].join(" ")) } else { sentence(i + 2) + "\n" })
        .collect();
    let second_tgt: String = (0..40).map(|i| translation(i + 2) + "\n").collect();
    let valid: String = (0..9).map(|i| sentence(i + 4) + "\n").collect();
    let mut config = DataConfig::with_paths(
        write(&dir.join("a.de"), &first_src),
        write(&dir.join("a.en"), &first_tgt),
        write(&dir.join("valid.de"), &valid),
        write(&dir.join("valid.en"), &valid),
    );
    config.corpora.push(locus_data::CorpusPaths {
        src: write(&dir.join("b.de.gz"), &second_src),
        tgt: write(&dir.join("b.en.gz"), &second_tgt),
    });
    config.vocab_size = 60;
    config.max_len = 40;
    config.max_len_ratio = 4.0;
    config
}

fn quiet() -> PrepareOptions<'static> {
    PrepareOptions { tokenizer: None, progress: &|_| {} }
}

/// Every entry of `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn prepared_pairs_are_the_kept_lines_encoded_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = corpora(dir.path());
    config.shard_pairs = 16;
    let out = dir.path().join("prepared");
    let manifest = prepare(&config, &out, quiet()).unwrap();
    let data = PreparedDataset::open(&out).unwrap();
    assert_eq!(data.manifest, manifest);
    assert_eq!(manifest.token_bytes, 2);

    // What the filters should keep, computed here line by line.
    let tokenizer = &data.tokenizer;
    let mut expected = Vec::new();
    let mut dropped = [DropCounts::default(), DropCounts::default()];
    for (c, corpus) in config.train_corpora().iter().enumerate() {
        let src = locus_data::read_lines_allow_empty(&corpus.src).unwrap();
        let tgt = locus_data::read_lines_allow_empty(&corpus.tgt).unwrap();
        for (s, t) in src.iter().zip(&tgt) {
            if s.trim().is_empty() || t.trim().is_empty() {
                dropped[c].empty += 1;
                continue;
            }
            let (s, t) = (tokenizer.encode(s).unwrap(), tokenizer.encode(t).unwrap());
            match config.train_drop(s.len(), t.len()) {
                Some(reason) => dropped[c].count(reason),
                None => expected.push(locus_data::TokenizedPair { src: s, tgt: t }),
            }
        }
    }
    // Each rule was met where the corpora were built to meet it.
    assert_eq!(dropped[0].empty, 1);
    assert_eq!(dropped[0].bad_ratio, 1);
    assert_eq!(dropped[1].too_long, 1);
    assert_eq!([manifest.corpora[0].dropped, manifest.corpora[1].dropped], dropped);
    assert_eq!((manifest.corpora[0].lines, manifest.corpora[1].lines), (60, 40));
    assert_eq!(manifest.corpora[0].pairs + manifest.corpora[1].pairs, expected.len());

    // Read back across the shard boundaries (16 pairs a shard).
    assert_eq!(manifest.train.shards.len(), expected.len().div_ceil(16));
    assert_eq!(data.train.pairs().unwrap(), expected);
    let lengths: Vec<(usize, usize)> = data.train.lengths().iter().map(|l| l.get()).collect();
    assert_eq!(lengths, expected.iter().map(|p| p.lengths()).collect::<Vec<_>>());
    assert!(data.train.pair(expected.len()).is_err());

    // The validation set: every line as text, the pairs the length filter keeps encoded.
    let valid_lines = locus_data::read_lines(&dir.path().join("valid.de")).unwrap();
    assert_eq!(data.valid_sources, valid_lines);
    assert_eq!(data.valid_references, valid_lines);
    assert_eq!(data.valid.len(), 9);
    assert_eq!(data.valid.pair(3).unwrap().src, tokenizer.encode(&valid_lines[3]).unwrap());

    // Under 128 pairs, the tokenizer saw every line: the one training on all of them is the same.
    let texts = expected_training_texts(&config);
    let all = SubwordTokenizer::train(config.tokenizer, config.vocab_size, texts).unwrap();
    assert_eq!(all.fingerprint(), manifest.tokenizer_fingerprint);
    assert!(matches!(manifest.tokenizer_origin, TokenizerOrigin::Trained { sample_lines: 198, .. }));
}

/// The non-empty pairs of every corpus, sources then targets: what the tokenizer trains on
/// when the sample holds them all.
fn expected_training_texts(config: &DataConfig) -> Vec<String> {
    let mut pairs = Vec::new();
    for corpus in config.train_corpora() {
        let src = locus_data::read_lines_allow_empty(&corpus.src).unwrap();
        let tgt = locus_data::read_lines_allow_empty(&corpus.tgt).unwrap();
        pairs.extend(src.into_iter().zip(tgt).filter(|(s, t)| !s.trim().is_empty() && !t.trim().is_empty()));
    }
    let (src, tgt): (Vec<String>, Vec<String>) = pairs.into_iter().unzip();
    src.into_iter().chain(tgt).collect()
}

#[test]
fn the_tokenizer_sample_is_bounded_and_seeded_or_the_tokenizer_given() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = corpora(dir.path());
    config.tokenizer_sample = 40;
    let first = prepare(&config, &dir.path().join("one"), quiet()).unwrap();
    let again = prepare(&config, &dir.path().join("two"), quiet()).unwrap();
    assert!(matches!(
        first.tokenizer_origin,
        TokenizerOrigin::Trained { sample_lines: 40, sample_seed: 1, .. }
    ));
    assert_eq!(first.tokenizer_fingerprint, again.tokenizer_fingerprint);

    // A given tokenizer.json is used as it is.
    let tokenizer =
        SubwordTokenizer::train(config.tokenizer, 30, ["ein Hund", "zwei Kinder spielen"]).unwrap();
    let path = dir.path().join("given.json");
    tokenizer.save(&path).unwrap();
    config.tokenizer_file = Some(path.clone());
    let given = prepare(&config, &dir.path().join("given"), quiet()).unwrap();
    assert_eq!(given.tokenizer_fingerprint, tokenizer.fingerprint());
    assert_eq!(given.tokenizer_origin, TokenizerOrigin::Given { path: Some(path) });
}

#[test]
fn a_damaged_shard_or_another_version_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = corpora(dir.path());
    let out = dir.path().join("prepared");
    prepare(&config, &out, quiet()).unwrap();
    let bin = out.join("train-00000.bin");
    let pristine = std::fs::read(&bin).unwrap();

    // One flipped bit: the checksum.
    let mut flipped = pristine.clone();
    flipped[7] ^= 1;
    std::fs::write(&bin, &flipped).unwrap();
    let err = PreparedDataset::open(&out).err().unwrap().to_string();
    assert!(err.starts_with(&format!("{}: XXH3 checksum", bin.display())), "{err}");

    // A truncated file: its length.
    std::fs::write(&bin, &pristine[..pristine.len() - 2]).unwrap();
    let err = PreparedDataset::open(&out).err().unwrap().to_string();
    assert!(
        err.contains(&bin.display().to_string()) && err.contains("bytes, but the manifest says"),
        "{err}"
    );

    // A missing file.
    std::fs::remove_file(&bin).unwrap();
    let err = PreparedDataset::open(&out).err().unwrap().to_string();
    assert!(err.contains(&bin.display().to_string()) && err.contains("incomplete"), "{err}");
    std::fs::write(&bin, &pristine).unwrap();
    assert!(PreparedDataset::open(&out).is_ok());

    // Another layout version, even one whose other fields no longer parse.
    let manifest_path = out.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    std::fs::write(&manifest_path, text.replace("\"format_version\": 1", "\"format_version\": 2")).unwrap();
    let err = PreparedDataset::open(&out).err().unwrap().to_string();
    assert!(
        err.contains("manifest.json: layout version 2, but this build of locus reads version 1"),
        "{err}"
    );
    std::fs::write(&manifest_path, r#"{"format": "locus-prepared", "format_version": 0, "shards": []}"#)
        .unwrap();
    let err = PreparedDataset::open(&out).err().unwrap().to_string();
    assert!(err.contains("layout version 0"), "{err}");
    // Not a prepared dataset at all.
    let err = PreparedDataset::open(dir.path()).err().unwrap().to_string();
    assert!(err.contains("manifest.json: cannot read it") && err.contains("locus prepare"), "{err}");
}

/// Runs a preparation of `config` into `out` that must fail; checks that it left nothing in
/// `out`'s parent, and returns the error and how many progress events it reported.
fn prepare_fails(config: &DataConfig, out: &Path) -> (DataError, usize) {
    let parent = out.parent().unwrap();
    let before = entries(parent);
    let events = RefCell::new(0);
    let progress = |_: PrepareProgress| *events.borrow_mut() += 1;
    let err = prepare(config, out, PrepareOptions { tokenizer: None, progress: &progress }).unwrap_err();
    assert_eq!(entries(parent), before, "{err}: something was left behind");
    (err, events.into_inner())
}

#[test]
fn bad_input_is_named_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let config = corpora(dir.path());
    let out = dir.path().join("prepared");

    // The second corpus's target has a line fewer (both counts named).
    let mut short = config.clone();
    let lines: String = (0..39).map(|i| sentence(i) + "\n").collect();
    short.corpora[0].tgt = write(&dir.path().join("short.en.gz"), &lines);
    let (err, _) = prepare_fails(&short, &out);
    assert!(matches!(err, DataError::LineCountMismatch { src_lines: 40, tgt_lines: 39, .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("b.de.gz has 40 lines but") && message.contains("short.en.gz has 39"),
        "{message}"
    );

    // Invalid UTF-8 on line 3 of the first corpus's target side.
    let mut invalid = config.clone();
    let mut bytes = std::fs::read(dir.path().join("a.en")).unwrap();
    let third = bytes.iter().enumerate().filter(|(_, &b)| b == b'\n').nth(1).unwrap().0 + 1;
    bytes.insert(third, 0xff);
    let path = dir.path().join("bad.en");
    std::fs::write(&path, bytes).unwrap();
    invalid.train_tgt = Some(path.clone());
    let (err, _) = prepare_fails(&invalid, &out);
    assert_eq!(err.to_string(), format!("{}:3: invalid UTF-8", path.display()));

    // A corpus list with a missing file: refused before any work (no progress at all).
    let mut missing = config.clone();
    missing
        .corpora
        .push(locus_data::CorpusPaths { src: dir.path().join("c.de"), tgt: dir.path().join("b.en.gz") });
    let (err, events) = prepare_fails(&missing, &out);
    assert_eq!(events, 0, "work started before the missing file was found");
    assert_eq!(err.to_string(), format!("reading {}", dir.path().join("c.de").display()));

    // An existing output directory is not overwritten.
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep"), "mine").unwrap();
    assert!(prepare(&config, &out, quiet()).is_err());
    assert_eq!(entries(&out), ["keep"]);
}
