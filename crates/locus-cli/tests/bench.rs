//! `locus bench train` and `locus bench translate` run on the tiny config and report their
//! figures, the JSON object last. (What the figures are worth is measured, not asserted.)

mod common;

use common::{data_overrides, locus, stderr, tiny_config, train_args, write_corpus};
use serde_json::Value;

fn last_json(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

#[test]
fn bench_train_and_translate_report_their_figures() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let config = tiny_config().display().to_string();
    let overrides = data_overrides(dir.path());
    let mut args = vec![
        "--threads",
        "1",
        "bench",
        "train",
        "--config",
        &config,
        "--device",
        "cpu",
        "--steps",
        "3",
        "--warmup",
        "1",
    ];
    for item in &overrides {
        args.extend(["--set", item.as_str()]);
    }
    args.push("--json");
    let out = locus(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let record = last_json(&out.stdout);
    assert_eq!(record["steps"], 3);
    for key in [
        "median_step_s",
        "tokens_per_s",
        "target_tokens_per_s",
        "model_flops_per_s",
        "matmul_flops_per_s",
        "mfu",
    ] {
        assert!(record[key].as_f64().unwrap() > 0.0, "{key}: {record}");
    }
    assert!(record["flops_formula"].as_str().unwrap().contains("3 x forward"));
    let prepare = record["batch_prepare_fraction"].as_f64().unwrap();
    assert!(prepare > 0.0 && prepare < 1.0, "{record}");

    let out = locus(&train_args(&config, &overrides));
    assert!(out.status.success(), "{}", stderr(&out));
    let checkpoint = dir.path().join("run/best").display().to_string();
    let input = dir.path().join("valid.de").display().to_string();
    let out = locus(&[
        "bench",
        "translate",
        "--checkpoint",
        &checkpoint,
        "--input",
        &input,
        "--beam",
        "2",
        "--json",
        "--device",
        "cpu",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let record = last_json(&out.stdout);
    assert_eq!(record["sentences"], 200);
    assert!(record["latency_p95_s"].as_f64().unwrap() >= record["latency_p50_s"].as_f64().unwrap());
    assert!(record["generated_tokens_per_s"].as_f64().unwrap() > 0.0);
}
