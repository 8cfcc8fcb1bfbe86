//! The attention probabilities a pass records (`Seq2Seq::attention_maps`, drawn by `locus
//! attention`) are the model's: for every positional encoding the recorded pass gives the
//! forward pass's logits, every row is a distribution over the keys it may see (padding and
//! future positions get exactly 0), and the first encoder layer's maps equal a softmax of
//! scores recomputed from the weights by hand.

mod common;

use candle_core::{DType, Device, IndexOp, Tensor, D};
use candle_nn::VarMap;
use locus_model::{ModelConfig, PositionalConfig, SeededVarMap, Seq2Seq, TokenIds};

const TOKENS: TokenIds = TokenIds { pad: 0, bos: 1, eos: 2 };
const VOCAB: usize = 23;

fn build(cfg: &ModelConfig, seed: u64) -> (Seq2Seq, VarMap) {
    let varmap = VarMap::new();
    let vb = SeededVarMap::var_builder(&varmap, seed, DType::F32, &Device::Cpu);
    (Seq2Seq::new(cfg, VOCAB, TOKENS, vb).unwrap(), varmap)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

/// `[row][head][query][key]`.
fn values(map: &Tensor) -> Vec<Vec<Vec<Vec<f32>>>> {
    let (b_sz, heads, _, _) = map.dims4().unwrap();
    let head = |row, head| map.i((row, head)).unwrap().to_vec2::<f32>().unwrap();
    (0..b_sz).map(|row| (0..heads).map(|h| head(row, h)).collect()).collect()
}

#[test]
fn recorded_maps_are_distributions_over_the_visible_keys_for_every_variant() {
    let (src, src_lens) = common::padded_sources();
    let tgt = Tensor::new(&[[1u32, 6, 7, 8, 9], [1, 10, 11, 0, 0], [1, 12, 0, 0, 0]], &Device::Cpu).unwrap();
    for (seed, (name, cfg)) in common::variants().into_iter().enumerate() {
        let (model, _) = build(&cfg, seed as u64);
        let (maps, logits) = model.attention_maps(&src, &tgt).unwrap();
        let forward = model.forward(&src, &tgt, None).unwrap();
        let diff = max_abs_diff(&logits, &forward);
        assert!(diff < 1e-5, "{name}: the recorded pass's logits differ from forward's by {diff}");
        assert_eq!(maps.encoder.len(), cfg.encoder_layers, "{name}");
        assert_eq!(maps.decoder.len(), cfg.decoder_layers, "{name}");
        assert_eq!(maps.cross.len(), cfg.decoder_layers, "{name}");
        let (src_len, tgt_len) = (src.dim(1).unwrap(), tgt.dim(1).unwrap());
        // Which keys row `row`'s query `q` may see, per kind of map.
        // `src_lens` counts the real tokens before each EOS.
        let encoder_sees = |row: usize, _q: usize, k: usize| k <= src_lens[row];
        let decoder_sees = |_row: usize, q: usize, k: usize| k <= q;
        for (kind, layers, (q_len, k_len), sees) in [
            (
                "encoder",
                &maps.encoder,
                (src_len, src_len),
                &encoder_sees as &dyn Fn(usize, usize, usize) -> bool,
            ),
            ("decoder", &maps.decoder, (tgt_len, tgt_len), &decoder_sees),
            ("cross", &maps.cross, (tgt_len, src_len), &encoder_sees),
        ] {
            for (layer, map) in layers.iter().enumerate() {
                assert_eq!(map.dims(), [3, cfg.n_heads, q_len, k_len], "{name}, {kind} layer {layer}");
                for (row, heads) in values(map).iter().enumerate() {
                    for (head, queries) in heads.iter().enumerate() {
                        for (q, keys) in queries.iter().enumerate() {
                            let at =
                                format!("{name}, {kind} layer {layer}, row {row}, head {head}, query {q}");
                            let sum: f32 = keys.iter().sum();
                            assert!((sum - 1.0).abs() < 1e-5, "{at}: the row sums to {sum}");
                            for (k, &p) in keys.iter().enumerate() {
                                assert!((0.0..=1.0).contains(&p), "{at}, key {k}: {p}");
                                if !sees(row, q, k) {
                                    assert_eq!(p, 0.0, "{at}: a hidden key {k} gets weight");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Without positions, in the post-norm model, the first encoder layer attends from the scaled
/// embeddings themselves: its probabilities are softmax(QKᵀ/√d_head + padding) with
/// `Q = x W_qᵀ + b_q`, `K = x W_kᵀ + b_k`, computed here from the weights.
#[test]
fn first_encoder_layer_maps_equal_a_softmax_recomputed_from_the_weights() {
    let cfg = ModelConfig::tiny_with(PositionalConfig::None {});
    let (model, varmap) = build(&cfg, 7);
    let (src, src_lens) = common::padded_sources();
    let tgt = Tensor::new(&[[1u32, 6], [1, 10], [1, 12]], &Device::Cpu).unwrap();
    let (maps, _) = model.attention_maps(&src, &tgt).unwrap();

    let weights = varmap.data().lock().unwrap();
    let weight = |name: &str| weights[name].as_tensor().clone();
    let (d_model, heads) = (cfg.d_model, cfg.n_heads);
    let head_dim = d_model / heads;
    let (b_sz, src_len) = src.dims2().unwrap();
    let xs = (weight("embed.weight").index_select(&src.flatten_all().unwrap(), 0).unwrap()
        * (d_model as f64).sqrt())
    .unwrap();
    let project = |name: &str| {
        let w = weight(&format!("encoder.layers.0.self_attn.{name}.weight"));
        let b = weight(&format!("encoder.layers.0.self_attn.{name}.bias"));
        xs.matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap()
            .reshape((b_sz, src_len, heads, head_dim))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
    };
    let (queries, keys) = (project("q_proj"), project("k_proj"));
    let scores = (queries.matmul(&keys.t().unwrap()).unwrap() / (head_dim as f64).sqrt()).unwrap();
    let hidden = |row: usize, k: usize| if k <= src_lens[row] { 0.0 } else { f32::NEG_INFINITY };
    let padding: Vec<f32> = (0..b_sz).flat_map(|row| (0..src_len).map(move |k| hidden(row, k))).collect();
    let padding = Tensor::from_vec(padding, (b_sz, 1, 1, src_len), &Device::Cpu).unwrap();
    let expected = candle_nn::ops::softmax(&scores.broadcast_add(&padding).unwrap(), D::Minus1).unwrap();
    let diff = max_abs_diff(&maps.encoder[0], &expected);
    assert!(diff < 1e-5, "the recorded maps differ from the recomputed ones by {diff}");
}
