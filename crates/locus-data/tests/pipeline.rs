//! End-to-end tests of the data pipeline through the public API: read a
//! gzip parallel corpus, train a joint tokenizer, encode, filter and batch.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;
use locus_data::{filter_pairs, pair_lengths, DataConfig, ParallelCorpus, SubwordTokenizer, UNK_ID};

fn write_gz(path: &Path, lines: &[String]) {
    let mut enc = GzEncoder::new(File::create(path).unwrap(), Compression::fast());
    for line in lines {
        writeln!(enc, "{line}").unwrap();
    }
    enc.finish().unwrap();
}

/// 400 German/English caption pairs built from templates.
fn synthetic_corpus() -> (Vec<String>, Vec<String>) {
    let subjects = [
        ("Ein Mann", "A man"),
        ("Eine Frau", "A woman"),
        ("Ein kleines Mädchen", "A little girl"),
        ("Zwei Jungen", "Two boys"),
        ("Ein älterer Herr mit Hut", "An older gentleman with a hat"),
    ];
    let verbs = [
        ("läuft", "runs"),
        ("spielt Fußball", "plays soccer"),
        ("steht", "stands"),
        ("wartet geduldig", "waits patiently"),
    ];
    let places = [
        ("auf der Straße.", "on the street."),
        ("im Park.", "in the park."),
        ("vor einem großen Gebäude.", "in front of a large building."),
        ("am Strand neben dem Wasser.", "on the beach next to the water."),
        ("in der Küche.", "in the kitchen."),
    ];
    let mut src = Vec::new();
    let mut tgt = Vec::new();
    for round in 0..4 {
        for (sd, se) in subjects {
            for (vd, ve) in verbs {
                for (pd, pe) in places {
                    src.push(format!("{sd} {vd} {pd}"));
                    // Every fourth round adds a long English continuation,
                    // so that some pairs fail the length ratio.
                    if round == 3 && vd == "läuft" {
                        tgt.push(format!(
                            "{se} {ve} {pe} It is a sunny day, and many people are out \
                             walking, talking and laughing together."
                        ));
                    } else {
                        tgt.push(format!("{se} {ve} {pe}"));
                    }
                }
            }
        }
    }
    (src, tgt)
}

#[test]
fn read_train_encode_filter_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (src, tgt) = synthetic_corpus();
    let src_path = dir.path().join("train.de.gz");
    let tgt_path = dir.path().join("train.en.gz");
    write_gz(&src_path, &src);
    write_gz(&tgt_path, &tgt);

    let config: DataConfig = toml::from_str(&format!(
        "train_src = {src_path:?}\ntrain_tgt = {tgt_path:?}\n\
         valid_src = {src_path:?}\nvalid_tgt = {tgt_path:?}\n\
         vocab_size = 200\nmax_len_ratio = 2.0\nmax_tokens = 256\n"
    ))
    .unwrap();
    config.validate().unwrap();

    let corpus = ParallelCorpus::read(&src_path, &tgt_path).unwrap();
    assert_eq!(corpus.len(), 400);

    let texts = corpus.src.iter().chain(&corpus.tgt);
    let tok = SubwordTokenizer::train(config.tokenizer, config.vocab_size, texts).unwrap();
    assert!(tok.vocab_size() <= 200);

    let pairs = tok.encode_corpus(&corpus).unwrap();
    for (pair, (s, t)) in pairs.iter().zip(corpus.pairs()).take(50) {
        assert!(!pair.src.contains(&UNK_ID));
        assert_eq!(tok.decode(&pair.src).unwrap(), s);
        assert_eq!(tok.decode(&pair.tgt).unwrap(), t);
    }

    let (kept, report) = filter_pairs(pairs, &config.length_filter());
    // The 25 long-continuation pairs (round 3, verb "läuft") have English
    // sides far more than twice as long as the German ones.
    assert_eq!(report.bad_ratio, 25, "{report}");
    assert_eq!(report.kept, 375, "{report}");
    assert_eq!(kept.len(), 375);

    let lengths = pair_lengths(&kept).unwrap();
    let planner = config.batch_planner();
    let batches = planner.plan(&lengths, 1234, 0).unwrap();
    let mut seen: Vec<u32> = batches.iter().flatten().copied().collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..kept.len() as u32).collect::<Vec<_>>());
    assert!(batches.iter().all(|b| planner.padded_tokens(&lengths, b) <= 256));
}
