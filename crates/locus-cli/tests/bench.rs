//! `locus bench train` and `locus bench translate` run on the tiny config and report their
//! figures, the JSON object last. (What the figures are worth is measured, not asserted.)
//! `locus bench parity` of the CPU against itself finds every f32 difference 0.

mod common;

use common::{data_overrides, locus, stderr, tiny_config, train_args, with_sets, write_corpus};
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
    let command = vec![
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
    let mut args = with_sets(command, &overrides);
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
    assert_eq!(record["matmul_dtype"], "f32", "{record}");
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
        "--workers",
        "2",
        "--quantize",
        "int8",
        "--json",
        "--device",
        "cpu",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let record = last_json(&out.stdout);
    assert_eq!(record["sentences"], 200);
    assert_eq!(record["quantize"], "int8");
    assert_eq!(record["workers"], 2);
    assert!(record["latency_p95_s"].as_f64().unwrap() >= record["latency_p50_s"].as_f64().unwrap());
    assert!(record["generated_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(record["peak_rss_gib"].as_f64().unwrap() > 0.0);
    // The phases split the workers' time: each is part of it, and the parts add up to it.
    let seconds = |key: &str| record[key].as_f64().unwrap();
    let busy = seconds("busy_s");
    for phase in ["encoder_s", "decoder_steps_s", "search_s"] {
        assert!(seconds(phase) > 0.0 && seconds(phase) < busy, "{phase}: {record}");
    }
    let parts = seconds("encoder_s") + seconds("decoder_steps_s") + seconds("search_s");
    assert!((parts - busy).abs() < 1e-6 * busy.max(1.0), "{record}");
    // Each of the 4 batches (200 sentences, 64 a batch) takes at least one step.
    assert!(record["decoder_steps"].as_u64().unwrap() >= 4, "{record}");
}

#[test]
fn parity_of_the_cpu_against_itself_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let config = tiny_config().display().to_string();
    let overrides = data_overrides(dir.path());
    let mut args = with_sets(
        vec!["--threads", "1", "bench", "parity", "--config", &config, "--device", "cpu"],
        &overrides,
    );
    // Dropout on, so that the update compares the masks too.
    args.extend(["--set", "model.dropout=0.1", "--json"]);
    let out = locus(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let record = last_json(&out.stdout);
    assert_eq!(record["passed"], true, "{record}");
    for key in ["init_max_abs_diff", "logits_max_abs_diff", "step_max_abs_diff"] {
        assert_eq!(record[key].as_f64(), Some(0.0), "{key}: {record}");
    }
    // bf16 against f32 on the same device: close, not equal.
    let rel = record["loss_rel_diff"].as_f64().unwrap();
    assert!(rel > 0.0 && rel < 1e-2, "{record}");
    assert!(record["loss_f32"].as_f64().unwrap() > 0.0);
    assert!(record["sentences"].as_u64().unwrap() > 0 && record["variables"].as_u64().unwrap() > 0);
    let checks = record["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["init", "logits", "bf16_loss", "step"]);
    assert!(checks.iter().all(|c| c["passed"] == true && c["limit"].as_f64().is_some()), "{record}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().filter(|line| line.starts_with("pass ")).count(), 4, "{text}");
}
