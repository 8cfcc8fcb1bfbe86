//! A cell's result on disk, and the grid's summary: mean and spread over seeds, as a Markdown
//! table and as JSON.

use std::fmt::Write as _;

use locus_data::synthetic::Task;
use serde::{Deserialize, Serialize};

use super::score::BucketScore;

/// What one cell measured, saved as `cells/<name>/result.json` (its presence marks the cell done).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    /// The encoding's name in the lab config.
    pub encoding: String,
    /// The task.
    pub task: Task,
    /// The seed.
    pub seed: u64,
    /// Updates trained.
    pub steps: usize,
    /// Wall time of training and testing, in seconds.
    pub seconds: f64,
    /// One score per test bucket, in the config's order: `((min, max), score)`.
    pub buckets: Vec<((usize, usize), BucketScore)>,
}

/// Mean and (population) standard deviation over seeds of one encoding, task and bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// The encoding.
    pub encoding: String,
    /// The task.
    pub task: Task,
    /// The bucket's lengths, inclusive.
    pub bucket: (usize, usize),
    /// Number of seeds averaged.
    pub seeds: usize,
    /// Exact match: mean and standard deviation, in [0, 1].
    pub exact_match: (f64, f64),
    /// Per-token accuracy: mean and standard deviation, in [0, 1].
    pub token_accuracy: (f64, f64),
}

/// Mean and population standard deviation of `xs` (0 and 0 when empty).
fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    (mean, (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt())
}

/// Summarises `results` per encoding, task and bucket, in the order of `encodings`, `tasks`
/// and `buckets`; combinations without any result are left out.
pub fn summarize(
    results: &[CellResult],
    encodings: &[String],
    tasks: &[Task],
    buckets: &[(usize, usize)],
) -> Vec<SummaryRow> {
    let mut rows = Vec::new();
    for &task in tasks {
        for encoding in encodings {
            let cells: Vec<&CellResult> =
                results.iter().filter(|r| r.task == task && &r.encoding == encoding).collect();
            for (index, &bucket) in buckets.iter().enumerate() {
                let scores: Vec<&BucketScore> = cells
                    .iter()
                    .filter_map(|r| r.buckets.get(index))
                    .filter(|(b, _)| *b == bucket)
                    .map(|(_, s)| s)
                    .collect();
                if scores.is_empty() {
                    continue;
                }
                let exact: Vec<f64> = scores.iter().map(|s| s.exact_match).collect();
                let tokens: Vec<f64> = scores.iter().map(|s| s.token_accuracy).collect();
                rows.push(SummaryRow {
                    encoding: encoding.clone(),
                    task,
                    bucket,
                    seeds: scores.len(),
                    exact_match: mean_std(&exact),
                    token_accuracy: mean_std(&tokens),
                });
            }
        }
    }
    rows
}

/// The summary as Markdown: per task, one table of exact match and one of per-token accuracy,
/// an encoding per row and a bucket per column, each cell `mean ± std` in percent.
pub fn markdown(
    rows: &[SummaryRow],
    tasks: &[Task],
    encodings: &[String],
    buckets: &[(usize, usize)],
) -> String {
    let mut out = String::new();
    for &task in tasks {
        for (what, pick) in [
            ("exact match", (|r: &SummaryRow| r.exact_match) as fn(&SummaryRow) -> (f64, f64)),
            ("per-token accuracy", |r: &SummaryRow| r.token_accuracy),
        ] {
            let _ = writeln!(out, "### {task}: {what} (%, mean ± std over seeds)\n");
            let header: Vec<String> = buckets.iter().map(|(lo, hi)| format!("len {lo}–{hi}")).collect();
            let _ = writeln!(out, "| encoding | {} |", header.join(" | "));
            let _ = writeln!(out, "| --- |{}", " ---: |".repeat(buckets.len()));
            for encoding in encodings {
                let cells: Vec<String> = buckets
                    .iter()
                    .map(|&bucket| {
                        rows.iter()
                            .find(|r| r.task == task && &r.encoding == encoding && r.bucket == bucket)
                            .map_or("—".to_string(), |r| {
                                let (mean, std) = pick(r);
                                format!("{:.1} ± {:.1}", 100.0 * mean, 100.0 * std)
                            })
                    })
                    .collect();
                let _ = writeln!(out, "| {encoding} | {} |", cells.join(" | "));
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(encoding: &str, seed: u64, exact: [f64; 2]) -> CellResult {
        let score = |e: f64| BucketScore { examples: 10, exact_match: e, token_accuracy: (1.0 + e) / 2.0 };
        CellResult {
            encoding: encoding.into(),
            task: Task::Copy,
            seed,
            steps: 5,
            seconds: 1.0,
            buckets: vec![((1, 4), score(exact[0])), ((5, 8), score(exact[1]))],
        }
    }

    /// Seeds 0.5 and 1.0 on the first bucket: mean 0.75, population std 0.25.
    #[test]
    fn rows_average_over_seeds() {
        let results =
            [result("rope", 1, [0.5, 0.0]), result("rope", 2, [1.0, 0.2]), result("none", 1, [0.9, 0.1])];
        let encodings = ["rope".to_string(), "none".to_string()];
        let rows = summarize(&results, &encodings, &[Task::Copy], &[(1, 4), (5, 8)]);
        assert_eq!(rows.len(), 4);
        assert_eq!((rows[0].encoding.as_str(), rows[0].bucket, rows[0].seeds), ("rope", (1, 4), 2));
        assert!((rows[0].exact_match.0 - 0.75).abs() < 1e-12 && (rows[0].exact_match.1 - 0.25).abs() < 1e-12);
        assert!((rows[1].exact_match.0 - 0.1).abs() < 1e-12);
        assert_eq!((rows[2].encoding.as_str(), rows[2].seeds), ("none", 1));
        let table = markdown(&rows, &[Task::Copy], &encodings, &[(1, 4), (5, 8)]);
        assert!(table.contains("| rope | 75.0 ± 25.0 | 10.0 ± 10.0 |"), "{table}");
        assert!(table.contains("| none | 90.0 ± 0.0 | 10.0 ± 0.0 |"), "{table}");
    }
}
