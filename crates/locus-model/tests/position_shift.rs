//! SHAPE (Kiyono et al. 2021, <https://arxiv.org/abs/2109.05644>): with `position_shift = K`,
//! training starts each sequence's absolute positions at its own offset, drawn from the forward
//! pass's `DropoutRng`. The offsets are replayed here with `DropoutRng::position_shifts` on a
//! clone of the stream. K = 0, inference and cached decoding leave positions unshifted.

mod common;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::{VarBuilder, VarMap};
use locus_model::positional::sinusoidal::sinusoidal_table;
use locus_model::positional::{Combine, PositionalKind, SinusoidalLayout, Span};
use locus_model::{
    DropoutRng, ModelConfig, PositionalConfig, PositionalEncoding, SeededVarMap, Seq2Seq, StackConfig,
    TokenIds,
};

const TOKENS: TokenIds = TokenIds { pad: 0, bos: 1, eos: 2 };
const VOCAB: usize = 23;

fn sinusoidal(position_shift: usize, every_layer: bool) -> PositionalConfig {
    PositionalConfig::Sinusoidal {
        layout: SinusoidalLayout::Interleaved,
        combine: Combine::Add,
        d_pos: None,
        every_layer,
        position_shift,
        random_positions: 0,
    }
}

fn learned(max_len: usize, position_shift: usize) -> PositionalConfig {
    PositionalConfig::Learned {
        max_len,
        combine: Combine::Add,
        d_pos: None,
        every_layer: false,
        position_shift,
        random_positions: 0,
    }
}

fn build(cfg: &ModelConfig, seed: u64) -> (Seq2Seq, VarMap) {
    let varmap = VarMap::new();
    let vb = SeededVarMap::var_builder(&varmap, seed, DType::F32, &Device::Cpu);
    (Seq2Seq::new(cfg, VOCAB, TOKENS, vb).unwrap(), varmap)
}

/// A padded batch of three sources (9, 3 and 1 tokens, then EOS) and their target inputs.
fn batch() -> (Tensor, Tensor) {
    let (src, _) = common::padded_sources();
    let tgt = Tensor::new(&[[1u32, 6, 7, 8, 9], [1, 10, 11, 0, 0], [1, 12, 0, 0, 0]], &Device::Cpu).unwrap();
    (src, tgt)
}

/// Fixed, distinct stand-ins for token embeddings: `sin(0.37 · i)` over the flattened shape.
fn tokens(shape: (usize, usize, usize)) -> Tensor {
    let n = shape.0 * shape.1 * shape.2;
    let xs = Tensor::arange(0u32, n as u32, &Device::Cpu).unwrap().to_dtype(DType::F32).unwrap();
    (xs * 0.37).unwrap().sin().unwrap().reshape(shape).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

fn encoding(cfg: &PositionalConfig, varmap: &VarMap) -> PositionalEncoding {
    let vb = VarBuilder::from_varmap(varmap, DType::F32, &Device::Cpu);
    PositionalEncoding::new(cfg, 8, 2, false, vb).unwrap()
}

/// `xs` with the position vectors of `len` positions from `offset` put in, as a forward pass
/// of `b_sz` sequences does it.
fn embed_at(pe: &PositionalEncoding, xs: &Tensor, offset: usize, rng: Option<&mut DropoutRng>) -> Tensor {
    let (b_sz, len, _) = xs.dims3().unwrap();
    let frame = pe.frame(b_sz, Span::same(len, offset), rng, DType::F32, &Device::Cpu).unwrap();
    frame.embed(xs).unwrap()
}

/// The shifts replayed from a clone of `rng` differ between sequences, so the test below
/// checks a real per-sequence gather, not one offset broadcast over the batch.
#[test]
fn each_sequence_gets_the_position_vectors_at_its_drawn_offset() {
    for cfg in [sinusoidal(9, false), learned(16, 9)] {
        let varmap = VarMap::new();
        let pe = encoding(&cfg, &varmap);
        let xs = tokens((4, 5, 8));
        let mut rng = DropoutRng::new(1);
        let mut replay = rng.clone();
        let shifts = replay.position_shifts(4, 9);
        assert!(shifts.iter().any(|&k| k != shifts[0]), "{shifts:?}");
        let embedded = embed_at(&pe, &xs, 0, Some(&mut rng));
        assert_eq!(rng.state(), replay.state(), "one word per sequence");
        for (b, &shift) in shifts.iter().enumerate() {
            let table = match &cfg {
                PositionalConfig::Learned { .. } => {
                    varmap.data().lock().unwrap()["weight"].as_tensor().narrow(0, shift, 5).unwrap()
                }
                _ => sinusoidal_table(shift, 5, 8, SinusoidalLayout::Interleaved, DType::F32, &Device::Cpu)
                    .unwrap(),
            };
            let want = (xs.i(b).unwrap() + table).unwrap();
            let diff = max_abs_diff(&embedded.i(b).unwrap(), &want);
            assert!(diff < 1e-6, "{cfg:?}, sequence {b} at shift {shift}: off by {diff}");
        }
    }
}

/// Today's embedding, computed the way it was before SHAPE: tokens plus the table rows
/// `offset..offset + len`, broadcast over the batch.
fn unshifted(xs: &Tensor, offset: usize) -> Vec<Vec<Vec<f32>>> {
    let len = xs.dim(1).unwrap();
    let table = sinusoidal_table(offset, len, 8, SinusoidalLayout::Interleaved, DType::F32, &Device::Cpu);
    xs.broadcast_add(&table.unwrap()).unwrap().to_vec3::<f32>().unwrap()
}

#[test]
fn zero_shift_or_inference_gives_exactly_the_unshifted_embedding() {
    let xs = tokens((3, 6, 8));
    let varmap = VarMap::new();
    // K = 0 while training: the same values bit for bit, and not a word drawn.
    let pe = encoding(&sinusoidal(0, false), &varmap);
    let mut rng = DropoutRng::new(4);
    let before = rng.state();
    let embedded = embed_at(&pe, &xs, 0, Some(&mut rng));
    assert_eq!(embedded.to_vec3::<f32>().unwrap(), unshifted(&xs, 0));
    assert_eq!(rng.state(), before);
    // K = 7 at inference (no rng), from offset 3: rows 3..9 for every sequence.
    let pe = encoding(&sinusoidal(7, false), &varmap);
    let embedded = embed_at(&pe, &xs, 3, None);
    assert_eq!(embedded.to_vec3::<f32>().unwrap(), unshifted(&xs, 3));
}

/// With dropout 0, a shifted encoder's output for sequence `b` is the unshifted encoder's
/// output with every position moved by `b`'s shift, which `encode_shifted` computes.
#[test]
fn a_shifted_encoder_equals_encoding_each_sequence_at_its_offset() {
    for positional in [sinusoidal(6, false), sinusoidal(6, true), learned(24, 6)] {
        let (model, _) = build(&ModelConfig::tiny_with(positional.clone()), 3);
        let (src, _) = batch();
        let mut rng = DropoutRng::new(5);
        let shifts = rng.clone().position_shifts(3, 6);
        assert!(shifts.iter().any(|&k| k > 0), "{shifts:?}");
        let shifted = model.encode(&src, Some(&mut rng)).unwrap().hidden;
        let at_zero = model.encode(&src, None).unwrap().hidden;
        for (b, &shift) in shifts.iter().enumerate() {
            let want = model.encode_shifted(&src, shift, None).unwrap().hidden.i(b).unwrap();
            let diff = max_abs_diff(&shifted.i(b).unwrap(), &want);
            assert!(diff < 1e-5, "{positional:?}, sequence {b} at shift {shift}: off by {diff}");
            let moved = max_abs_diff(&shifted.i(b).unwrap(), &at_zero.i(b).unwrap());
            assert_eq!(moved > 1e-3, shift > 0, "{positional:?}, sequence {b}: shift {shift} moved {moved}");
        }
    }
}

/// Row `k` of a learned table is position `k`, so a decoder whose table starts at row
/// `shift` (the rest zero) computes, unshifted, what the shifted decoder computes.
#[test]
fn a_shifted_decoder_equals_a_decoder_whose_learned_table_starts_at_the_offset() {
    let (model, varmap) = build(&ModelConfig::tiny_with(learned(24, 6)), 8);
    let (src, tgt) = batch();
    let mut rng = DropoutRng::new(12);
    let mut replay = rng.clone();
    let memory = model.encode(&src, Some(&mut rng)).unwrap();
    let logits = model.decode(&tgt, &memory, Some(&mut rng)).unwrap();
    replay.position_shifts(3, 6);
    let shifts = replay.position_shifts(3, 6);
    assert_eq!(rng.state(), replay.state(), "one word per sequence and stack");
    assert!(shifts.iter().any(|&k| k > 0), "{shifts:?}");
    let table = varmap.data().lock().unwrap()["decoder.positional.weight"].clone();
    let original = table.as_tensor().copy().unwrap();
    for (b, &shift) in shifts.iter().enumerate() {
        let rest = Tensor::zeros((shift, 32), DType::F32, &Device::Cpu).unwrap();
        table
            .set(&Tensor::cat(&[&original.narrow(0, shift, 24 - shift).unwrap(), &rest], 0).unwrap())
            .unwrap();
        let want = model.decode(&tgt, &memory, None).unwrap().i(b).unwrap();
        let diff = max_abs_diff(&logits.i(b).unwrap(), &want);
        assert!(diff < 1e-5, "sequence {b} at shift {shift}: off by {diff}");
    }
    table.set(&original).unwrap();
}

/// A shifted sinusoidal encoder and a RoPE decoder: `b_sz` words per forward pass, whatever the
/// tokens and the padding, and none at inference.
#[test]
fn training_draws_depend_only_on_the_batch_shape() {
    let cfg = ModelConfig {
        encoder: StackConfig { positional: Some(sinusoidal(50, false)) },
        decoder: StackConfig {
            positional: Some(PositionalConfig::Rope { theta: 10000.0, random_positions: 0 }),
        },
        ..ModelConfig::tiny()
    };
    let (model, _) = build(&cfg, 1);
    let (src, tgt) = batch();
    let other_src = Tensor::ones((3, 10), DType::U32, &Device::Cpu).unwrap();
    let mut replay = DropoutRng::new(6);
    replay.position_shifts(3, 50);
    for src in [&src, &other_src] {
        let mut rng = DropoutRng::new(6);
        model.forward(src, &tgt, Some(&mut rng)).unwrap();
        assert_eq!(rng.state(), replay.state());
    }
}

#[test]
fn cached_decoding_equals_full_decoding_with_a_shift() {
    for positional in [sinusoidal(5, true), learned(24, 5)] {
        let (model, _) = build(&ModelConfig::tiny_with(positional.clone()), 2);
        let (src, tgt) = batch();
        let memory = model.encode(&src, None).unwrap();
        let full = model.decode(&tgt, &memory, None).unwrap();
        let mut cache = model.new_cache();
        for step in 0..5 {
            let cached =
                model.decode_step(&tgt.i((.., step..step + 1)).unwrap(), &memory, &mut cache).unwrap();
            let diff = max_abs_diff(&cached, &full.i((.., step, ..)).unwrap());
            assert!(diff < 1e-5, "{positional:?}, step {step}: off by {diff}");
        }
    }
}

fn parse(text: &str) -> Result<ModelConfig, toml::de::Error> {
    toml::from_str::<ModelConfig>(text)
}

#[test]
fn position_shift_is_a_key_of_the_absolute_kinds_only() {
    let cfg = parse("[positional]\nkind = \"sinusoidal\"\nposition_shift = 8").unwrap();
    assert_eq!(cfg.positional, sinusoidal(8, false));
    let cfg = parse("[positional]\nkind = \"learned\"\nmax_len = 64\nposition_shift = 8").unwrap();
    assert_eq!(cfg.positional, learned(64, 8));
    assert_eq!(parse("[positional]\nkind = \"learned\"\nmax_len = 64").unwrap().positional, learned(64, 0));
    let round_trip = parse(&toml::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(round_trip, cfg);
    let absolute = [PositionalKind::Sinusoidal, PositionalKind::Learned];
    for kind in PositionalKind::all().filter(|kind| !absolute.contains(kind)) {
        let err = parse(&format!("[positional]\nkind = \"{kind}\"\nposition_shift = 8")).unwrap_err();
        assert!(err.to_string().contains("unknown field `position_shift`"), "{kind}: {err}");
    }
    let err = parse("[decoder.positional]\nkind = \"rope\"\nposition_shift = 2").unwrap_err();
    assert!(err.to_string().contains("position_shift"), "{err}");
}

#[test]
fn a_learned_table_too_short_for_the_shift_is_an_error_naming_the_fields() {
    let cfg = ModelConfig::tiny_with(learned(8, 8));
    let err = cfg.validate().unwrap_err().to_string();
    assert!(
        err.contains("model.encoder.positional.position_shift (8) must be less than model.encoder.positional.max_len (8)"),
        "{err}"
    );
    // 10 source positions shifted by up to 4 need 14 rows; 12 are enough at inference.
    let (model, _) = build(&ModelConfig::tiny_with(learned(12, 4)), 0);
    let (src, tgt) = batch();
    let err = model.forward(&src, &tgt, Some(&mut DropoutRng::new(0))).unwrap_err().to_string();
    assert!(err.contains("position_shift (4) needs positional.max_len of at least 14"), "{err}");
    assert!(err.contains("but max_len is 12"), "{err}");
    assert!(model.forward(&src, &tgt, None).is_ok());
}
