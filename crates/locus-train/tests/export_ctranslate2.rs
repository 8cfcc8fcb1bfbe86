//! `locus export ctranslate2` against CTranslate2's own converter: every case of
//! `tests/fixtures/ct2-tiny/` holds a tiny Locus model (`locus/`) and what CTranslate2 4.8's
//! Python spec API (`TransformerSpec`, `optimize`, `save`) made of the same weights (`ct2/`), both
//! written by `scripts/make-ct2-fixture.py`. The Rust export must give the same bytes: `model.bin`
//! (variables, attributes, aliases and, for `sinusoidal-int8`, int8 weights and scales),
//! `config.json` and `shared_vocabulary.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use locus_model::positional::PositionalConfig;
use locus_model::ModelConfig;
use locus_train::export::ctranslate2::python_json;
use locus_train::export::{convert, ExportOptions, Quantization};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    model: ModelConfig,
    vocabulary: Vec<String>,
    positions: usize,
    quantization: Option<String>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ct2-tiny")
}

fn export_case(dir: &Path) -> locus_train::Result<(locus_train::export::Ct2Model, Case)> {
    let case: Case =
        serde_json::from_str(&std::fs::read_to_string(dir.join("locus/model.json")).unwrap()).unwrap();
    let weights: HashMap<String, Tensor> =
        candle_core::safetensors::load(dir.join("locus/model.safetensors"), &Device::Cpu).unwrap();
    let quantization = match case.quantization.as_deref() {
        Some(q) => q.parse().unwrap(),
        None => Quantization::Float32,
    };
    let options = ExportOptions { quantization, max_positions: case.positions };
    let model = convert(&case.model, &weights, &case.vocabulary, &options)?;
    Ok((model, case))
}

#[test]
fn every_fixture_exports_to_the_bytes_ctranslate2_writes() {
    let mut names: Vec<PathBuf> = std::fs::read_dir(fixtures()).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    assert!(names.len() >= 8, "fixtures missing: {names:?}");
    for dir in names {
        let (model, _) = export_case(&dir).unwrap();
        let expected = std::fs::read(dir.join("ct2/model.bin")).unwrap();
        let got = model.model_bin.to_bytes();
        assert!(
            got == expected,
            "{}: model.bin differs ({} bytes, CTranslate2 wrote {})",
            dir.display(),
            got.len(),
            expected.len()
        );
        let config = std::fs::read_to_string(dir.join("ct2/config.json")).unwrap();
        assert_eq!(python_json(&model.config_json), config, "{}", dir.display());
        let vocab = std::fs::read_to_string(dir.join("ct2/shared_vocabulary.json")).unwrap();
        assert_eq!(python_json(&serde_json::json!(model.vocabulary)), vocab, "{}", dir.display());
    }
}

#[test]
fn written_directory_holds_the_three_files() {
    let (model, _) = export_case(&fixtures().join("sinusoidal")).unwrap();
    let out = tempfile::tempdir().unwrap();
    model.write(out.path()).unwrap();
    for name in ["model.bin", "config.json", "shared_vocabulary.json"] {
        let expected = std::fs::read(fixtures().join("sinusoidal/ct2").join(name)).unwrap();
        assert_eq!(std::fs::read(out.path().join(name)).unwrap(), expected, "{name}");
    }
}

#[test]
fn position_caps_follow_the_tables() {
    let (model, _) = export_case(&fixtures().join("sinusoidal")).unwrap();
    assert_eq!((model.max_source_tokens(), model.max_output_tokens()), (Some(15), Some(16)));
    let (model, _) = export_case(&fixtures().join("learned-prenorm-gelu-untied")).unwrap();
    assert_eq!((model.max_source_tokens(), model.max_output_tokens()), (Some(11), Some(12)));
    let (model, _) = export_case(&fixtures().join("rope")).unwrap();
    assert_eq!((model.max_source_tokens(), model.max_output_tokens()), (None, None));
    let (model, _) = export_case(&fixtures().join("none-alibi")).unwrap();
    assert_eq!((model.max_source_tokens(), model.max_output_tokens()), (Some(15), None));
}

fn refusal(encoder: PositionalConfig, decoder: PositionalConfig, tie: bool) -> String {
    let mut cfg = ModelConfig::tiny();
    cfg.tie_embeddings = tie;
    cfg.encoder.positional = Some(encoder);
    cfg.decoder.positional = Some(decoder);
    let vocab: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    convert(&cfg, &HashMap::new(), &vocab, &ExportOptions::default()).unwrap_err().to_string()
}

#[test]
fn what_ctranslate2_cannot_represent_is_refused_by_name() {
    let sinusoidal = PositionalConfig::default();
    let msg = refusal(PositionalConfig::Alibi {}, sinusoidal.clone(), true);
    assert!(
        msg.contains("model.encoder.positional: kind = \"alibi\" in the encoder cannot be exported"),
        "{msg}"
    );
    let toml = |text: &str| -> PositionalConfig { toml::from_str(text).unwrap() };
    let concat = toml("kind = \"learned\"\nmax_len = 8\ncombine = \"concat\"\nd_pos = 8");
    let msg = refusal(sinusoidal.clone(), concat, false);
    assert!(msg.contains("model.decoder.positional: kind = \"learned\" with combine = \"concat\""), "{msg}");
    let every_layer = toml("kind = \"sinusoidal\"\nevery_layer = true");
    let msg = refusal(every_layer, sinusoidal.clone(), true);
    assert!(msg.contains("model.encoder.positional: kind = \"sinusoidal\" with every_layer = true"), "{msg}");
    for kind in ["fire", "kerple", "xpos"] {
        let msg = refusal(sinusoidal.clone(), toml(&format!("kind = \"{kind}\"")), true);
        let want = format!(
            "model.decoder.positional: kind = \"{kind}\" cannot be exported: CTranslate2 has no such"
        );
        assert!(msg.contains(&want), "{msg}");
    }
}

#[test]
fn every_supported_kind_passes_the_checks_and_then_needs_its_weights() {
    // With no weights, a supported encoding gets past the refusals and stops at the first
    // missing variable.
    use locus_model::positional::PositionalKind;
    let unsupported = [PositionalKind::Fire, PositionalKind::Kerple, PositionalKind::Xpos];
    for kind in PositionalKind::all().filter(|kind| !unsupported.contains(kind)) {
        let positional = PositionalConfig::default_for(kind, 16);
        let msg = refusal(PositionalConfig::default(), positional, true);
        assert!(msg.contains("the model has no variable embed.weight"), "{kind}: {msg}");
    }
}
