//! `locus lab` on a 2-cell grid with tiny settings: it writes the tables and the plot, a re-run
//! skips the finished cells, and config mistakes are named.

mod common;

use std::path::Path;

use common::{locus, stderr};
use serde_json::Value;

/// Two encodings × copy × one seed, a model of a few thousand parameters, 20 updates.
fn write_config(dir: &Path, encodings: &str) -> String {
    let path = dir.join("lab.toml");
    let text = format!(
        r#"
out_dir = "{out}"
seeds = [1]
tasks = ["copy"]
symbols = 4
train_lengths = [3, 6]
test_lengths = [[3, 6], [7, 10]]
train_examples = 300
valid_examples = 20
test_examples = 10
encodings = {encodings}

[positional.halves]
kind = "sinusoidal"
layout = "halves"

[run.data]
vocab_size = 16
max_tokens = 256

[run.model]
d_model = 16
n_heads = 2
d_ff = 32
encoder_layers = 1
decoder_layers = 1

[run.train]
max_steps = 20
warmup_steps = 5
valid_interval = 20
save_interval = 20
valid_bleu = false
"#,
        out = dir.join("lab").display()
    );
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn a_two_cell_grid_writes_tables_and_plot_and_skips_finished_cells() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), r#"["rope", "halves"]"#);
    let out = locus(&["lab", "--config", &config, "--device", "cpu"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("2 cells (2 trained now)"), "{stdout}");

    let lab = dir.path().join("lab");
    let table = std::fs::read_to_string(lab.join("results.md")).unwrap();
    assert!(table.contains("| encoding | len 3–6 | len 7–10 |"), "{table}");
    for encoding in ["rope", "halves"] {
        assert_eq!(table.matches(&format!("| {encoding} | ")).count(), 2, "{table}");
        assert!(lab.join(format!("cells/{encoding}-copy-seed1/result.json")).exists());
    }
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(lab.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["cells"].as_array().unwrap().len(), 2);
    assert_eq!(json["rows"].as_array().unwrap().len(), 4);
    for row in json["rows"].as_array().unwrap() {
        let exact = row["exact_match"][0].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&exact), "{row}");
    }
    let svg = std::fs::read_to_string(lab.join("results.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("copy: exact match"), "no panel title in the plot");
    // Every test file has the bucket's lengths.
    let test = std::fs::read_to_string(lab.join("data/copy-seed1/test-7-10.src")).unwrap();
    assert_eq!(test.lines().count(), 10);
    assert!(test.lines().all(|line| (7..=10).contains(&line.split(' ').count())), "{test}");

    let again = locus(&["lab", "--config", &config, "--device", "cpu"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("2 cells (0 trained now)"));
}

#[test]
fn config_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), r#"["rope", "sinusoidl"]"#);
    let out = locus(&["lab", "--config", &config]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("encoding `sinusoidl` is neither"), "{}", stderr(&out));

    let config = write_config(dir.path(), r#"["rope"]"#);
    let out = locus(&["lab", "--config", &config, "--set", "seed=[1]"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unknown field `seed`"), "{}", stderr(&out));
}

/// The scores of every cell in `lab/results.json`, in grid order.
fn cell_scores(lab: &Path) -> Vec<Value> {
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(lab.join("results.json")).unwrap()).unwrap();
    json["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|cell| serde_json::json!([cell["encoding"], cell["seed"], cell["buckets"]]))
        .collect()
}

#[test]
fn cells_trained_at_once_score_as_cells_trained_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), r#"["rope", "halves", "alibi"]"#);
    let seeds = "seeds=[1, 2]";
    // One thread a cell both times: `jobs = 2` shares out `--threads 2`.
    let one_by_one = locus(&["--threads", "1", "lab", "--config", &config, "--set", seeds]);
    assert!(one_by_one.status.success(), "{}", stderr(&one_by_one));
    let sequential = cell_scores(&dir.path().join("lab"));

    let out_dir = format!("out_dir=\"{}\"", dir.path().join("lab-jobs").display());
    let jobs = ["--set", "jobs=2", "--set", &out_dir];
    let at_once =
        locus(&[&["--threads", "2", "lab", "--config", &config, "--set", seeds][..], &jobs].concat());
    assert!(at_once.status.success(), "{}", stderr(&at_once));
    assert!(String::from_utf8_lossy(&at_once.stdout).contains("6 cells (6 trained now)"));
    assert_eq!(cell_scores(&dir.path().join("lab-jobs")), sequential);
}
