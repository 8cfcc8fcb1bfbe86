//! Export to [CTranslate2](https://github.com/OpenNMT/CTranslate2): a Locus model as its
//! `TransformerSpec` (revision 7, checked against CTranslate2 4.8), written as CTranslate2's
//! Python converters write it: `model.bin` ([`super::model_bin`]), `config.json` and
//! `shared_vocabulary.json` (Locus has one joint vocabulary).
//!
//! How each part maps (Locus name → CTranslate2 scope):
//!
//! - embeddings: `embed.weight` (or `encoder.embed`/`decoder.embed`/`output_projection`) →
//!   `encoder/embeddings_0/weight`, `decoder/embeddings/weight`, `decoder/projection/weight`
//!   (tied copies become aliases); `model.scale_embeddings` → `scale_embeddings` (× √d_model);
//! - each self-attention: `q_proj`, `k_proj`, `v_proj` stacked row-wise → `linear_0`, `out_proj`
//!   → `linear_1`; cross-attention: `q_proj` → `linear_0`, `k_proj` + `v_proj` → `linear_1`,
//!   `out_proj` → `linear_2`; feed-forward `fc1`/`fc2` → `ffn/linear_0`/`linear_1`;
//! - norms: the norm of each block → that block's `layer_norm` (CTranslate2 applies it before
//!   or after the block as `pre_norm` says), pre-norm's `final_norm` → the stack's `layer_norm`;
//!   `model.layer_norm_eps` → `layer_norm_epsilon` in `config.json` (CTranslate2's own default
//!   differs);
//! - positions, per stack: `sinusoidal` and `learned` → an explicit `position_encodings/encodings`
//!   table (Locus's own sinusoids; CTranslate2's built-in ones are another formula), `none` → a
//!   table of zeros (no table would mean CTranslate2's sinusoids); a table of `n` rows caps
//!   the source at `n - 1` tokens plus EOS and the output at `n` tokens; `relative` (Shaw) →
//!   `relative_position_keys`/`_values` of each self-attention (zeros without value vectors);
//!   `t5` → the stack's table as every self-attention's `relative_attention_bias` with
//!   `relative_attention_max_distance`; `rope` → `rotary_dim = 0` (whole head),
//!   `rotary_interleave = true` (adjacent pairs, as Locus), `rotary_base = theta`; `alibi` in the
//!   decoder → `alibi` with keys' positions counted back from the query (the same softmax as
//!   Locus's `-slope·|i - j|`). CTranslate2 has no encoder ALiBi, nor `combine = "concat"` or
//!   `every_layer` absolute encodings: those are refused with an error naming them;
//! - `config.json`: `<s>` starts the decoder, `</s>` is appended to every source
//!   (`add_source_eos`), as Locus does.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use locus_model::positional::sinusoidal::sinusoidal_table;
use locus_model::positional::{Combine, PositionalConfig};
use locus_model::{Activation, ModelConfig, NormPosition};

use super::model_bin::{Array, ModelBin};
use crate::error::{Result, TrainError};

/// CTranslate2's name of the encoder-decoder Transformer specification.
pub const SPEC_NAME: &str = "TransformerSpec";
/// Its revision in CTranslate2 4.x.
pub const SPEC_REVISION: u32 = 7;
/// Default rows of the explicit `sinusoidal` and `none` tables: sources of up to 1,023 tokens
/// (plus EOS) and outputs of up to 1,024 tokens.
pub const DEFAULT_MAX_POSITIONS: usize = 1024;

/// How weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quantization {
    /// float32, as trained.
    #[default]
    Float32,
    /// int8 linear and embedding weights with a float32 scale per row (CTranslate2's `int8`).
    Int8,
}

impl std::str::FromStr for Quantization {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "float32" | "none" => Ok(Self::Float32),
            "int8" => Ok(Self::Int8),
            other => Err(TrainError::Export(format!(
                "quantization {other:?} is not supported: use \"int8\" or \"float32\""
            ))),
        }
    }
}

/// Export settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportOptions {
    /// Weight storage.
    pub quantization: Quantization,
    /// Rows of the `sinusoidal` and `none` tables (a `learned` table keeps its own length).
    pub max_positions: usize,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self { quantization: Quantization::Float32, max_positions: DEFAULT_MAX_POSITIONS }
    }
}

/// A converted model: the files of a CTranslate2 model directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Ct2Model {
    /// The variables of `model.bin`.
    pub model_bin: ModelBin,
    /// `config.json`.
    pub config_json: serde_json::Value,
    /// `shared_vocabulary.json`: the tokens, by id.
    pub vocabulary: Vec<String>,
    /// Most positions the encoder's table holds (`None`: any length).
    pub encoder_positions: Option<usize>,
    /// Most positions the decoder's table holds (`None`: any length).
    pub decoder_positions: Option<usize>,
}

impl Ct2Model {
    /// Most source tokens (EOS excluded) CTranslate2 can encode with this model, if limited.
    pub fn max_source_tokens(&self) -> Option<usize> {
        self.encoder_positions.map(|n| n.saturating_sub(1))
    }

    /// Most output tokens CTranslate2 can decode with this model, if limited.
    pub fn max_output_tokens(&self) -> Option<usize> {
        self.decoder_positions
    }

    /// Writes `model.bin`, `config.json` and `shared_vocabulary.json` into `dir` (which must
    /// exist).
    ///
    /// # Errors
    /// Any I/O error, naming the file.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|source| TrainError::Io { path, source })
        };
        write("model.bin", &self.model_bin.to_bytes())?;
        write("config.json", python_json(&self.config_json).as_bytes())?;
        write("shared_vocabulary.json", python_json(&serde_json::json!(self.vocabulary)).as_bytes())?;
        Ok(())
    }
}

/// Converts a Locus model (its `[model]` config, its variables by Locus name, its vocabulary
/// by id) to a CTranslate2 `TransformerSpec`.
///
/// # Errors
/// [`TrainError::Export`] for what CTranslate2 cannot represent (naming the setting: encoder
/// ALiBi, concatenated or per-layer absolute encodings), a missing or misshapen variable, or a
/// vocabulary that does not match the embeddings.
pub fn convert(
    cfg: &ModelConfig,
    weights: &HashMap<String, Tensor>,
    vocabulary: &[String],
    options: &ExportOptions,
) -> Result<Ct2Model> {
    cfg.validate()?;
    check_positional("model.encoder.positional", cfg.encoder_positional(), false)?;
    check_positional("model.decoder.positional", cfg.decoder_positional(), true)?;
    if options.max_positions < 2 {
        return Err(TrainError::Export(format!(
            "the position table needs at least 2 rows, got --max-positions {}",
            options.max_positions
        )));
    }
    let w = Weights { map: weights };
    let mut bin = ModelBin::new(SPEC_NAME, SPEC_REVISION);
    let (src_embed, tgt_embed, output) = if cfg.tie_embeddings {
        ("embed.weight", "embed.weight", "embed.weight")
    } else {
        ("encoder.embed.weight", "decoder.embed.weight", "output_projection.weight")
    };
    let embeddings = w.get(src_embed)?;
    if embeddings.shape != [vocabulary.len(), cfg.d_model] {
        return Err(TrainError::Export(format!(
            "the vocabulary has {} tokens but {src_embed} has shape {:?} (expected [{}, {}])",
            vocabulary.len(),
            embeddings.shape,
            vocabulary.len(),
            cfg.d_model
        )));
    }
    bin.set("encoder/embeddings_0/weight", embeddings);
    bin.set("decoder/embeddings/weight", w.get(tgt_embed)?);
    bin.set("decoder/projection/weight", w.get(output)?);

    let activation = match cfg.activation {
        Activation::Relu => 0,
        Activation::Gelu => 3,
    };
    let pre_norm = cfg.norm == NormPosition::Pre;
    let mut positions = [None, None];
    for (stack, is_decoder) in [("encoder", false), ("decoder", true)] {
        let positional = if is_decoder { cfg.decoder_positional() } else { cfg.encoder_positional() };
        let n_layers = if is_decoder { cfg.decoder_layers } else { cfg.encoder_layers };
        bin.set(format!("{stack}/activation"), Array::int8(activation));
        bin.set(format!("{stack}/num_heads"), Array::int16(to_i16("model.n_heads", cfg.n_heads)?));
        bin.set(format!("{stack}/pre_norm"), Array::flag(pre_norm));
        bin.set(format!("{stack}/scale_embeddings"), Array::flag(cfg.scale_embeddings));
        if is_decoder {
            let alibi = matches!(positional, PositionalConfig::Alibi {});
            bin.set("decoder/alibi", Array::flag(alibi));
            bin.set("decoder/alibi_use_positive_positions", Array::flag(false));
            bin.set("decoder/scale_alibi", Array::flag(false));
            bin.set("decoder/alignment_heads", Array::int16(1));
            bin.set("decoder/alignment_layer", Array::int16(-1));
            bin.set("decoder/start_from_zero_embedding", Array::flag(false));
        } else {
            bin.set("encoder/embeddings_merge", Array::int8(0));
            bin.set("encoder/multi_query_attention", Array::flag(false));
        }
        if pre_norm {
            set_norm(&mut bin, &w, &format!("{stack}/layer_norm"), &format!("{stack}.final_norm"))?;
        }
        if let Some(table) = position_table(cfg, positional, &w, stack, options.max_positions)? {
            positions[usize::from(is_decoder)] = Some(table.shape[0]);
            bin.set(format!("{stack}/position_encodings/encodings"), table);
        }
        for i in 0..n_layers {
            let scope = format!("{stack}/layer_{i}");
            let layer = format!("{stack}.layers.{i}");
            let attn = format!("{scope}/self_attention");
            let q_k_v = ["q_proj", "k_proj", "v_proj"].map(|p| format!("{layer}.self_attn.{p}"));
            set_linear_cat(&mut bin, &w, &format!("{attn}/linear_0"), &q_k_v)?;
            set_linear(&mut bin, &w, &format!("{attn}/linear_1"), &format!("{layer}.self_attn.out_proj"))?;
            set_norm(&mut bin, &w, &format!("{attn}/layer_norm"), &format!("{layer}.self_attn_norm"))?;
            set_attention_positions(&mut bin, &w, positional, &attn, &layer, stack)?;
            if is_decoder {
                let cross = format!("{scope}/attention");
                let q = format!("{layer}.cross_attn.q_proj");
                set_linear(&mut bin, &w, &format!("{cross}/linear_0"), &q)?;
                let k_v = ["k_proj", "v_proj"].map(|p| format!("{layer}.cross_attn.{p}"));
                set_linear_cat(&mut bin, &w, &format!("{cross}/linear_1"), &k_v)?;
                let out = format!("{layer}.cross_attn.out_proj");
                set_linear(&mut bin, &w, &format!("{cross}/linear_2"), &out)?;
                set_norm(&mut bin, &w, &format!("{cross}/layer_norm"), &format!("{layer}.cross_attn_norm"))?;
            }
            set_linear(&mut bin, &w, &format!("{scope}/ffn/linear_0"), &format!("{layer}.ffn.fc1"))?;
            set_linear(&mut bin, &w, &format!("{scope}/ffn/linear_1"), &format!("{layer}.ffn.fc2"))?;
            set_norm(&mut bin, &w, &format!("{scope}/ffn/layer_norm"), &format!("{layer}.ffn_norm"))?;
        }
    }
    bin.alias_duplicates();
    if options.quantization == Quantization::Int8 {
        bin.quantize_int8();
    }
    let config_json = serde_json::json!({
        "add_source_bos": false,
        "add_source_eos": true,
        "bos_token": locus_data::SPECIAL_TOKENS[locus_data::BOS_ID as usize],
        "decoder_start_token": locus_data::SPECIAL_TOKENS[locus_data::BOS_ID as usize],
        "eos_token": locus_data::SPECIAL_TOKENS[locus_data::EOS_ID as usize],
        "layer_norm_epsilon": cfg.layer_norm_eps,
        "multi_query_attention": false,
        "unk_token": locus_data::SPECIAL_TOKENS[locus_data::UNK_ID as usize],
    });
    Ok(Ct2Model {
        model_bin: bin,
        config_json,
        vocabulary: vocabulary.to_vec(),
        encoder_positions: positions[0],
        decoder_positions: positions[1],
    })
}

/// Refuses what CTranslate2's `TransformerSpec` cannot represent.
fn check_positional(field: &str, positional: &PositionalConfig, is_decoder: bool) -> Result<()> {
    let refuse = |why: String| Err(TrainError::Export(format!("{field}: {why}")));
    match *positional {
        PositionalConfig::Alibi {} if !is_decoder => refuse(
            "kind = \"alibi\" in the encoder cannot be exported: CTranslate2 has ALiBi in the \
             decoder only"
                .into(),
        ),
        PositionalConfig::Fire { .. } | PositionalConfig::Kerple {} | PositionalConfig::Xpos { .. } => {
            refuse(format!(
                "kind = \"{}\" cannot be exported: CTranslate2 has no such encoding",
                positional.kind()
            ))
        }
        PositionalConfig::Sinusoidal { combine, every_layer, .. }
        | PositionalConfig::Learned { combine, every_layer, .. } => {
            let kind = positional.kind();
            if combine == Combine::Concat {
                refuse(format!(
                    "kind = \"{kind}\" with combine = \"concat\" cannot be exported: CTranslate2 adds \
                     position vectors to the embeddings"
                ))
            } else if every_layer {
                refuse(format!(
                    "kind = \"{kind}\" with every_layer = true cannot be exported: CTranslate2 adds \
                     position vectors once, to the embeddings"
                ))
            } else {
                Ok(())
            }
        }
        PositionalConfig::None {}
        | PositionalConfig::Relative { .. }
        | PositionalConfig::T5 { .. }
        | PositionalConfig::Rope { .. }
        | PositionalConfig::Alibi {} => Ok(()),
    }
}

/// The explicit table a stack adds to its embeddings, `None` where positions act in attention.
fn position_table(
    cfg: &ModelConfig,
    positional: &PositionalConfig,
    w: &Weights,
    stack: &str,
    rows: usize,
) -> Result<Option<Array>> {
    Ok(match *positional {
        PositionalConfig::Sinusoidal { layout, .. } => {
            let table = sinusoidal_table(0, rows, cfg.d_model, layout, DType::F32, &Device::Cpu)?;
            Some(Array::f32(vec![rows, cfg.d_model], table.flatten_all()?.to_vec1()?))
        }
        PositionalConfig::Learned { .. } => Some(w.get(&format!("{stack}.positional.weight"))?),
        PositionalConfig::None {} => Some(Array::f32(vec![rows, cfg.d_model], vec![0.0; rows * cfg.d_model])),
        PositionalConfig::Relative { .. }
        | PositionalConfig::T5 { .. }
        | PositionalConfig::Rope { .. }
        | PositionalConfig::Alibi {}
        | PositionalConfig::Fire { .. }
        | PositionalConfig::Kerple {}
        | PositionalConfig::Xpos { .. } => None,
    })
}

/// The position variables of one self-attention layer (`attn` scope, Locus `layer` prefix).
fn set_attention_positions(
    bin: &mut ModelBin,
    w: &Weights,
    positional: &PositionalConfig,
    attn: &str,
    layer: &str,
    stack: &str,
) -> Result<()> {
    match *positional {
        PositionalConfig::Relative { .. } => {
            let keys = w.get(&format!("{layer}.self_attn.relative.keys"))?;
            let values_name = format!("{layer}.self_attn.relative.values");
            let values = if w.map.contains_key(&values_name) {
                w.get(&values_name)?
            } else {
                Array::f32(keys.shape.clone(), vec![0.0; keys.shape.iter().product()])
            };
            bin.set(format!("{attn}/relative_position_keys"), keys);
            bin.set(format!("{attn}/relative_position_values"), values);
        }
        PositionalConfig::T5 { max_distance, .. } => {
            bin.set(format!("{attn}/relative_attention_bias"), w.get(&format!("{stack}.positional.weight"))?);
            let max_distance = to_i32("max_distance", max_distance)?;
            bin.set(format!("{attn}/relative_attention_max_distance"), Array::int32(max_distance));
        }
        PositionalConfig::Rope { theta, .. } => {
            bin.set(format!("{attn}/rotary_dim"), Array::int32(0));
            bin.set(format!("{attn}/rotary_interleave"), Array::flag(true));
            bin.set(format!("{attn}/rotary_base"), Array::scalar_f32(theta as f32));
        }
        PositionalConfig::None {}
        | PositionalConfig::Sinusoidal { .. }
        | PositionalConfig::Learned { .. }
        | PositionalConfig::Alibi {}
        | PositionalConfig::Fire { .. }
        | PositionalConfig::Kerple {}
        | PositionalConfig::Xpos { .. } => {}
    }
    Ok(())
}

fn set_linear(bin: &mut ModelBin, w: &Weights, scope: &str, locus: &str) -> Result<()> {
    bin.set(format!("{scope}/weight"), w.get(&format!("{locus}.weight"))?);
    bin.set(format!("{scope}/bias"), w.get(&format!("{locus}.bias"))?);
    Ok(())
}

/// One linear layer made of several stacked row-wise (fused projections).
fn set_linear_cat(bin: &mut ModelBin, w: &Weights, scope: &str, parts: &[String]) -> Result<()> {
    for (suffix, what) in [("weight", "weight"), ("bias", "bias")] {
        let arrays = parts.iter().map(|p| w.get(&format!("{p}.{what}"))).collect::<Result<Vec<_>>>()?;
        let rows: usize = arrays.iter().map(|a| a.shape[0]).sum();
        let mut shape = arrays[0].shape.clone();
        shape[0] = rows;
        let mut data = Vec::with_capacity(shape.iter().product());
        for array in arrays {
            if let super::model_bin::Data::F32(values) = array.data {
                data.extend(values);
            }
        }
        bin.set(format!("{scope}/{suffix}"), Array::f32(shape, data));
    }
    Ok(())
}

fn set_norm(bin: &mut ModelBin, w: &Weights, scope: &str, locus: &str) -> Result<()> {
    bin.set(format!("{scope}/gamma"), w.get(&format!("{locus}.weight"))?);
    bin.set(format!("{scope}/beta"), w.get(&format!("{locus}.bias"))?);
    Ok(())
}

fn to_i16(what: &str, value: usize) -> Result<i16> {
    i16::try_from(value)
        .map_err(|_| TrainError::Export(format!("{what} ({value}) does not fit CTranslate2's int16")))
}

fn to_i32(what: &str, value: usize) -> Result<i32> {
    i32::try_from(value)
        .map_err(|_| TrainError::Export(format!("{what} ({value}) does not fit CTranslate2's int32")))
}

/// The model's variables by Locus name.
struct Weights<'a> {
    map: &'a HashMap<String, Tensor>,
}

impl Weights<'_> {
    fn get(&self, name: &str) -> Result<Array> {
        let tensor = self
            .map
            .get(name)
            .ok_or_else(|| TrainError::Export(format!("the model has no variable {name}")))?;
        let shape = tensor.dims().to_vec();
        let data = tensor.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(Array::f32(shape, data))
    }
}

/// JSON as Python's `json.dump(value, indent=2, sort_keys=True)` writes it (what CTranslate2's
/// converters write): two-space indents, `", "`-free separators at line ends, non-ASCII as
/// `\uXXXX` escapes; objects are written with sorted keys, and a final newline is added for
/// objects, as `ModelConfig.save_as_json` does.
pub fn python_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_json(&mut out, value, 0);
    if value.is_object() {
        out.push('\n');
    }
    out
}

fn write_json(out: &mut String, value: &serde_json::Value, depth: usize) {
    use serde_json::Value;
    let indent = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => out.push_str(&python_float(f)),
            _ => {
                let _ = write!(out, "{n}");
            }
        },
        Value::String(s) => write_json_string(out, s),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, depth + 1);
                write_json(out, item, depth + 1);
            }
            indent(out, depth);
            out.push(']');
        }
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, depth + 1);
                write_json_string(out, key);
                out.push_str(": ");
                write_json(out, &map[key], depth + 1);
            }
            indent(out, depth);
            out.push('}');
        }
    }
}

fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr` of a float, for the values a config holds (e.g. `1e-05`, `0.001`).
fn python_float(f: f64) -> String {
    if f.is_finite() && f != 0.0 && (f.abs() < 1e-4 || f.abs() >= 1e16) {
        // Rust writes `1e-5`; Python writes `1e-05` (at least two exponent digits).
        let text = format!("{f:e}");
        match text.split_once('e') {
            Some((mantissa, exp)) => {
                let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
                format!("{mantissa}e{sign}{digits:0>2}")
            }
            None => text,
        }
    } else if f.fract() == 0.0 && f.is_finite() {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_floats() {
        assert_eq!(python_float(1e-5), "1e-05");
        assert_eq!(python_float(1e-6), "1e-06");
        assert_eq!(python_float(0.001), "0.001");
        assert_eq!(python_float(1.0), "1.0");
    }

    #[test]
    fn python_json_escapes_non_ascii_and_sorts_keys() {
        let value = serde_json::json!({"b": ["▁über", "a\"b"], "a": true});
        assert_eq!(
            python_json(&value),
            "{\n  \"a\": true,\n  \"b\": [\n    \"\\u2581\\u00fcber\",\n    \"a\\\"b\"\n  ]\n}\n"
        );
    }
}
