//! `locus plot` draws a run's loss, scores and learning rate from a hand-written `metrics.jsonl`.

use std::path::Path;
use std::process::{Command, Output};

/// The series colours of `commands/plot.rs`, as SVG writes them, and as RGB.
const SERIES: [(&str, &str, [u8; 3]); 7] = [
    ("train loss", "#1F77B4", [31, 119, 180]),
    ("train nll", "#17BECF", [23, 190, 207]),
    ("valid loss", "#D62728", [214, 39, 40]),
    ("valid nll", "#FF7F0E", [255, 127, 14]),
    ("BLEU", "#2CA02C", [44, 160, 44]),
    ("chrF", "#9467BD", [148, 103, 189]),
    ("learning rate", "#8C564B", [140, 86, 75]),
];

const TITLES: [&str; 3] =
    ["Loss (label-smoothed) and negative log-likelihood", "Validation BLEU and chrF", "Learning rate"];

fn locus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_locus")).args(args).output().expect("running locus")
}

/// Runs `locus plot --run dir --out dir/name` and returns the output path and the result.
fn plot(dir: &Path, name: &str) -> (std::path::PathBuf, Output) {
    let out = dir.join(name);
    let result = locus(&["plot", "--run", &dir.display().to_string(), "--out", &out.display().to_string()]);
    (out, result)
}

fn stderr(result: &Output) -> String {
    String::from_utf8_lossy(&result.stderr).into_owned()
}

/// A run of 1,000 steps: training records every 50 steps, validation every 200, lines far apart
/// (train loss 9.75 -> 5, each other loss curve 1.5 lower than the one before; BLEU 14 -> 30,
/// chrF 44 -> 60), with the data, model and stop records the trainer also writes.
fn write_run(dir: &Path) {
    let mut text =
        String::from("{\"event\":\"data\",\"vocab_size\":8000}\n{\"event\":\"model\",\"parameters\":1000}\n");
    for step in (50..=1000).step_by(50) {
        let loss = 10.0 - step as f64 / 200.0;
        let lr = 1e-3 * (step as f64 / 1000.0);
        text += &format!(
            "{{\"event\":\"train\",\"step\":{step},\"epoch\":1,\"loss\":{loss},\"nll\":{},\"ppl\":1.0,\
             \"lr\":{lr},\"grad_norm\":1.0,\"tokens_per_s\":2800.0,\"wall_s\":1.0}}\n",
            loss - 1.5
        );
        if step % 200 == 0 {
            let bleu = 10.0 + step as f64 / 50.0;
            text += &format!(
                "{{\"event\":\"valid\",\"step\":{step},\"loss\":{},\"nll\":{},\"bleu\":{bleu},\"chrf\":{}}}\n",
                loss - 3.0,
                loss - 4.5,
                bleu + 30.0
            );
        }
    }
    text += "{\"event\":\"stop\",\"step\":1000,\"reason\":\"max_steps\"}\n";
    std::fs::write(dir.join("metrics.jsonl"), text).unwrap();
}

/// The number of points of each `<polyline>` drawn in `color`.
fn polylines(svg: &str, color: &str) -> Vec<usize> {
    svg.lines()
        .filter(|l| l.starts_with("<polyline") && l.contains(&format!("stroke=\"{color}\"")))
        .filter_map(|l| l.split("points=\"").nth(1)?.split('"').next())
        .map(|points| points.split_whitespace().count())
        .collect()
}

#[test]
fn svg_has_the_panel_titles_and_a_line_per_series() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path());
    let (out, result) = plot(dir.path(), "run.svg");
    assert!(result.status.success(), "{}", stderr(&result));
    assert!(stderr(&result).contains("20 training and 5 validation records"), "{}", stderr(&result));
    let svg = std::fs::read_to_string(out).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{}", &svg[..100]);
    assert!(svg.contains(r#"width="800" height="780""#));
    for title in TITLES {
        assert!(svg.contains(title), "no panel titled {title:?}");
    }
    // A line through every point of each series, and a legend swatch (a two-point line).
    for (name, color, _) in SERIES {
        let expected = match name {
            "train loss" | "train nll" | "learning rate" => 20,
            _ => 5,
        };
        let mut lines = polylines(&svg, color);
        lines.sort_unstable();
        assert_eq!(lines, [2, expected], "{name} ({color})");
        assert!(svg.contains(&format!("\n{name}\n")), "no legend entry {name:?}");
    }
    // Validation points are marked.
    assert_eq!(svg.matches("<circle").count(), 4 * 5 + 4);
    // Learning-rate ticks in scientific notation.
    assert!(svg.contains("\n2e-4\n") && svg.contains("\n1e-3\n"), "no 2e-4 / 1e-3 tick labels");
    assert!(!svg.contains("no data"));
}

#[test]
fn png_has_the_expected_size_and_every_series_colour() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path());
    let (out, result) = plot(dir.path(), "run.PNG");
    assert!(result.status.success(), "{}", stderr(&result));
    let bytes = std::fs::read(out).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG signature");
    let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (800, 780));
    let first = *img.get_pixel(0, 0);
    assert!(img.pixels().any(|p| *p != first), "the image is a single colour");
    // Each line covers hundreds of pixels in its colour; its legend swatch fewer than 100.
    for (name, _, rgb) in SERIES {
        let count = img.pixels().filter(|p| p.0 == rgb).count();
        assert!(count > 300, "{name}: {count} pixels of {rgb:?}");
    }
}

#[test]
fn a_resumed_run_plots_only_the_timeline_that_continued() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    // The first attempt got to step 800, with validation at 400 and 800 ...
    for step in (100..=800).step_by(100) {
        text += &format!("{{\"event\":\"train\",\"step\":{step},\"loss\":5.0,\"lr\":0.001}}\n");
    }
    text +=
        "{\"event\":\"valid\",\"step\":400,\"loss\":4.0}\n{\"event\":\"valid\",\"step\":800,\"loss\":3.0}\n";
    // ... but was resumed from its checkpoint at step 400 and stopped at 500.
    text += "{\"event\":\"resume\",\"step\":400,\"wall_s\":0.5}\n";
    text += "{\"event\":\"train\",\"step\":500,\"loss\":4.5,\"lr\":0.001}\n";
    std::fs::write(dir.path().join("metrics.jsonl"), text).unwrap();
    let (out, result) = plot(dir.path(), "resumed.svg");
    assert!(result.status.success(), "{}", stderr(&result));
    assert!(stderr(&result).contains("5 training and 1 validation records"), "{}", stderr(&result));
    let svg = std::fs::read_to_string(out).unwrap();
    let mut lines = polylines(&svg, "#1F77B4");
    lines.sort_unstable();
    assert_eq!(lines, [2, 5]);
    // The step axis ends at 500; a single validation point is a marker without a line.
    assert!(svg.contains("\n500\n") && !svg.contains("\n800\n"));
    assert_eq!(polylines(&svg, "#D62728"), [2]);
    // No BLEU or chrF, no nll: that panel says so, and nll has no legend entry.
    assert!(svg.contains("no data"));
    assert!(!svg.contains("\ntrain nll\n"));
}

#[test]
fn unusable_input_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path());

    let (out, result) = plot(dir.path(), "run.jpg");
    assert!(!result.status.success());
    let err = stderr(&result);
    assert!(err.contains("run.jpg") && err.contains("expected .svg or .png"), "{err}");
    assert!(!out.exists());

    let missing = dir.path().join("no-such-run");
    let (_, result) = plot(&missing, "run.svg");
    assert!(!result.status.success());
    let err = stderr(&result);
    let expected = format!(
        "{} does not exist; is {} a run directory (train.out_dir)?",
        missing.join("metrics.jsonl").display(),
        missing.display()
    );
    assert!(err.contains(&expected), "{err}");

    let metrics = dir.path().join("metrics.jsonl");
    let mut text = std::fs::read_to_string(&metrics).unwrap();
    text += "{\"event\":\"train\",\"step\":1050,\"loss\":\n{\"event\":\"stop\"}\n";
    std::fs::write(&metrics, text).unwrap();
    let (_, result) = plot(dir.path(), "run.svg");
    assert!(!result.status.success());
    let err = stderr(&result);
    // 2 + 20 + 5 records and the stop record come first.
    assert!(err.contains("metrics.jsonl line 29: invalid JSON"), "{err}");

    std::fs::write(&metrics, "{\"event\":\"data\"}\n{\"event\":\"train\",\"loss\":1.0}\n").unwrap();
    let (_, result) = plot(dir.path(), "run.svg");
    let err = stderr(&result);
    assert!(err.contains("metrics.jsonl line 2: the train record has no \"step\""), "{err}");

    std::fs::write(&metrics, "{\"event\":\"data\"}\n").unwrap();
    let (_, result) = plot(dir.path(), "run.svg");
    assert!(stderr(&result).contains("has no train or valid records"), "{}", stderr(&result));
}
