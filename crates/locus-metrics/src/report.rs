//! The reports the `sacrebleu` command prints for one system: `--format text` (score lines
//! aligned on their `=`) and `--format json` (sacreBLEU's default).
//!
//! Mirrors sacreBLEU 2.6.0's `Score.format` (`metrics/base.py`) and
//! `utils.print_single_results`
//! (<https://github.com/mjpost/sacrebleu/blob/master/sacrebleu/metrics/base.py>): a score is
//! shown with `--width` decimals (`f"{score:.{width}f}"`, default 1); the text line is
//! `NAME|SIGNATURE = SCORE[ VERBOSE]`; the JSON document is
//! `json.dumps({"name", "score", "signature"[, "verbose_score"], one key per signature
//! field}, indent=1, ensure_ascii=False)`, its score the rounded one read back as a float;
//! several documents are joined into a list by `"[\n" + ",\n".join(docs) + "\n]"`.

use std::fmt::Write;

use crate::bleu::{BleuParams, BleuScore};
use crate::chrf::{ChrfParams, ChrfScore};
use crate::ter::{TerParams, TerScore};

/// One metric's result as the `sacrebleu` command reports it.
///
/// ```
/// use locus_metrics::{corpus_ter, ScoreReport, TerParams};
///
/// let score = corpus_ter(&["a b x d"], &[["a b c d"]])?;
/// let report = ScoreReport::ter(&score, &TerParams::default(), 1);
/// assert_eq!(
///     report.text_line(1),
///     "TER|nrefs:1|case:lc|tok:tercom|norm:no|punct:yes|asian:no|version:2.6.0 = 25.0"
/// );
/// # Ok::<(), locus_metrics::MetricError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreReport {
    /// The metric's name: `BLEU`, `chrF2` (`chrF2++` with word bigrams) or `TER`.
    pub name: String,
    /// The score at full precision.
    pub score: f64,
    /// The metric's signature, e.g. `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0`.
    pub signature: String,
    /// What the text line shows after the score (BLEU's precisions, brevity penalty and
    /// lengths); empty for chrF and TER.
    pub verbose: String,
}

impl ScoreReport {
    /// The report of a BLEU score computed with `params` against `nrefs` reference streams.
    #[must_use]
    pub fn bleu(score: &BleuScore, params: &BleuParams, nrefs: usize) -> Self {
        Self {
            name: "BLEU".into(),
            score: score.score,
            signature: params.signature(nrefs),
            verbose: score.verbose(),
        }
    }

    /// The report of a chrF score computed with `params` against `nrefs` reference streams.
    #[must_use]
    pub fn chrf(score: &ChrfScore, params: &ChrfParams, nrefs: usize) -> Self {
        Self {
            name: score.name(),
            score: score.score,
            signature: params.signature(nrefs),
            verbose: String::new(),
        }
    }

    /// The report of a TER score computed with `params` against `nrefs` reference streams.
    #[must_use]
    pub fn ter(score: &TerScore, params: &TerParams, nrefs: usize) -> Self {
        Self {
            name: "TER".into(),
            score: score.score,
            signature: params.signature(nrefs),
            verbose: String::new(),
        }
    }

    /// sacreBLEU's text line with `width` decimals, e.g.
    /// `BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 48.9 85.7/66.7/40.0/25.0 (BP = ...)`.
    #[must_use]
    pub fn text_line(&self, width: usize) -> String {
        let mut line = format!("{}|{} = {:.width$}", self.name, self.signature, self.score);
        if !self.verbose.is_empty() {
            line.push(' ');
            line.push_str(&self.verbose);
        }
        line
    }

    /// sacreBLEU's JSON document with the score rounded to `width` decimals.
    #[must_use]
    pub fn json(&self, width: usize) -> String {
        let rounded: f64 = format!("{:.width$}", self.score).parse().unwrap_or(self.score);
        let mut fields = vec![
            ("name", json_string(&self.name)),
            ("score", py_float_repr(rounded)),
            ("signature", json_string(&self.signature)),
        ];
        if !self.verbose.is_empty() {
            fields.push(("verbose_score", json_string(&self.verbose)));
        }
        for field in self.signature.split('|') {
            let (key, value) = field.split_once(':').unwrap_or((field, ""));
            fields.push((key, json_string(value)));
        }
        let mut doc = String::from("{\n");
        for (i, (key, value)) in fields.iter().enumerate() {
            let separator = if i + 1 < fields.len() { "," } else { "" };
            // Writing to a String cannot fail.
            let _ = writeln!(doc, " {}: {value}{separator}", json_string(key));
        }
        doc.push('}');
        doc
    }
}

/// What `sacrebleu --format text --width WIDTH` prints for `reports` (one line each, the
/// parts before the ` = ` right-aligned when there are several).
#[must_use]
pub fn text_report(reports: &[ScoreReport], width: usize) -> String {
    let lines: Vec<String> = reports.iter().map(|report| report.text_line(width)).collect();
    // sacreBLEU aligns on `line.index('=') - 1`, counted in characters.
    let left_len = |line: &str| line.chars().take_while(|&c| c != '=').count().saturating_sub(1);
    let align = lines.len() > 1;
    let column = lines.iter().map(|line| left_len(line)).max().unwrap_or(0);
    let mut out = String::new();
    for line in &lines {
        if align {
            let pad = column - left_len(line);
            out.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// What `sacrebleu --format json --width WIDTH` prints for `reports`: one document, or a
/// list of them when there are several.
#[must_use]
pub fn json_report(reports: &[ScoreReport], width: usize) -> String {
    let docs: Vec<String> = reports.iter().map(|report| report.json(width)).collect();
    match docs.as_slice() {
        [doc] => format!("{doc}\n"),
        _ => format!("[\n{}\n]\n", docs.join(",\n")),
    }
}

/// Python's `json.dumps(s, ensure_ascii=False)` of a string, which serde_json writes alike:
/// `\b`, `\f`, `\n`, `\r`, `\t`, other control characters as `\u00xx`, the rest as it is.
fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Python's `repr(x)` of a float, as `json.dumps` writes it: the shortest digits that
/// read back as `x`, with `.0` on whole numbers and an exponent of at least two digits
/// below 1e-4 and from 1e16 on.
fn py_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if x != 0.0 && (x.abs() < 1e-4 || x.abs() >= 1e16) {
        // Rust writes `1e-5` and `1.5e16`, Python `1e-05` and `1.5e+16`.
        let scientific = format!("{x:e}");
        if let Some((mantissa, exponent)) = scientific.split_once('e') {
            if let Ok(exponent) = exponent.parse::<i32>() {
                let sign = if exponent < 0 { '-' } else { '+' };
                return format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs());
            }
        }
        return scientific;
    }
    let fixed = x.to_string();
    if fixed.contains('.') {
        fixed
    } else {
        fixed + ".0"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(name: &str, score: f64, signature: &str, verbose: &str) -> ScoreReport {
        ScoreReport { name: name.into(), score, signature: signature.into(), verbose: verbose.into() }
    }

    #[test]
    fn floats_are_written_like_python_repr() {
        // Values from Python 3.11: repr(float(x))
        for (x, repr) in [
            (100.0, "100.0"),
            (0.0, "0.0"),
            (48.9, "48.9"),
            (12.25, "12.25"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (0.000012, "1.2e-05"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (9999999999999998.0, "9999999999999998.0"),
        ] {
            assert_eq!(py_float_repr(x), repr, "{x}");
        }
    }

    #[test]
    fn strings_are_escaped_like_json_dumps() {
        // Values from Python 3.11: json.dumps(s, ensure_ascii=False)
        assert_eq!(json_string("a\"b\\c\n\t\u{1}é"), "\"a\\\"b\\\\c\\n\\t\\u0001é\"");
    }

    #[test]
    fn json_rounds_to_width_and_lists_the_signature_fields() {
        let bleu = report("BLEU", 78.64, "nrefs:2|case:mixed|eff:no", "100.0/66.7 (BP = 1.000)");
        let ter = report("TER", 12.5, "nrefs:2|case:lc", "");
        // sacreBLEU rounds half to even on the exact binary value: 12.5 -> "12", 78.64 -> 78.6
        assert_eq!(
            json_report(&[bleu.clone(), ter.clone()], 1),
            "[\n{\n \"name\": \"BLEU\",\n \"score\": 78.6,\n \"signature\": \"nrefs:2|case:mixed|eff:no\",\n \
             \"verbose_score\": \"100.0/66.7 (BP = 1.000)\",\n \"nrefs\": \"2\",\n \"case\": \"mixed\",\n \
             \"eff\": \"no\"\n},\n{\n \"name\": \"TER\",\n \"score\": 12.5,\n \"signature\": \"nrefs:2|case:lc\",\n \
             \"nrefs\": \"2\",\n \"case\": \"lc\"\n}\n]\n"
        );
        assert_eq!(
            json_report(&[ter], 0),
            "{\n \"name\": \"TER\",\n \"score\": 12.0,\n \"signature\": \"nrefs:2|case:lc\",\n \
             \"nrefs\": \"2\",\n \"case\": \"lc\"\n}\n"
        );
    }

    #[test]
    fn text_lines_align_on_the_equals_sign() {
        let reports = [
            report("BLEU", 78.64, "nrefs:2|tok:13a", "100.0/66.7"),
            report("chrF2", 75.66, "nrefs:2|nc:6|version:2.6.0", ""),
        ];
        assert_eq!(
            text_report(&reports, 1),
            "            BLEU|nrefs:2|tok:13a = 78.6 100.0/66.7\nchrF2|nrefs:2|nc:6|version:2.6.0 = 75.7\n"
        );
        assert_eq!(text_report(&reports[..1], 2), "BLEU|nrefs:2|tok:13a = 78.64 100.0/66.7\n");
    }
}
