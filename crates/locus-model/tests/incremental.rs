//! Cached incremental decoding must equal decoding by full recomputation, and padding must not
//! change what real positions compute.

use candle_core::{DType, Device, IndexOp, Tensor, D};
use candle_nn::VarMap;
use locus_model::{
    greedy_decode, GreedyOptions, ModelConfig, NormPosition, PositionalConfig, SeededVarMap, Seq2Seq,
    TokenIds,
};

const TOKENS: TokenIds = TokenIds { pad: 0, bos: 1, eos: 2 };
const VOCAB: usize = 23;

fn model(norm: NormPosition, positional: PositionalConfig, seed: u64) -> Seq2Seq {
    let varmap = VarMap::new();
    let vb = SeededVarMap::var_builder(&varmap, seed, DType::F32, &Device::Cpu);
    let cfg = ModelConfig { norm, positional, ..ModelConfig::tiny() };
    Seq2Seq::new(&cfg, VOCAB, TOKENS, vb).unwrap()
}

fn variants() -> Vec<(NormPosition, PositionalConfig)> {
    vec![
        (NormPosition::Post, PositionalConfig::Sinusoidal),
        (NormPosition::Pre, PositionalConfig::Sinusoidal),
        (NormPosition::Post, PositionalConfig::Learned { max_len: 64 }),
        (NormPosition::Pre, PositionalConfig::None),
    ]
}

/// A padded batch: lengths 5, 3 and 1 real tokens, each followed by EOS.
fn batch() -> (Tensor, Vec<usize>) {
    let src = Tensor::new(&[[5u32, 9, 12, 7, 20, 2], [15, 3, 8, 2, 0, 0], [11, 2, 0, 0, 0, 0]], &Device::Cpu)
        .unwrap();
    (src, vec![5, 3, 1])
}

#[test]
fn cached_greedy_equals_full_recomputation() {
    for (seed, (norm, positional)) in variants().into_iter().enumerate() {
        let model = model(norm, positional.clone(), seed as u64);
        let (src, _) = batch();
        let memory = model.encode(&src, None).unwrap();
        let steps = 12;
        let mut cache = model.new_cache();
        let mut prefix = Tensor::full(TOKENS.bos, (3, 1), &Device::Cpu).unwrap();
        for step in 0..steps {
            let last = prefix.i((.., step..step + 1)).unwrap();
            let cached = model.decode_step(&last, &memory, &mut cache).unwrap();
            let full = model.decode(&prefix, &memory, None).unwrap().i((.., step, ..)).unwrap();
            let diff =
                (&cached - &full).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-5, "{norm:?} {positional:?} step {step}: logits differ by {diff}");
            let cached_next = cached.argmax(D::Minus1).unwrap().to_vec1::<u32>().unwrap();
            let full_next = full.argmax(D::Minus1).unwrap().to_vec1::<u32>().unwrap();
            assert_eq!(cached_next, full_next, "{norm:?} {positional:?} step {step}");
            let next = Tensor::new(cached_next, &Device::Cpu).unwrap().unsqueeze(1).unwrap();
            prefix = Tensor::cat(&[&prefix, &next], 1).unwrap();
        }
    }
}

#[test]
fn greedy_tokens_match_a_full_recomputation_search() {
    let model = model(NormPosition::Post, PositionalConfig::Sinusoidal, 42);
    let (src, lens) = batch();
    let opts = GreedyOptions { max_len_a: 0.0, max_len_b: 9 };
    let cached = greedy_decode(&model, &src, &lens, &opts).unwrap();
    // The slow, obvious search: re-run the whole decoder on the prefix at every step.
    let memory = model.encode(&src, None).unwrap();
    for (row, hyp) in cached.iter().enumerate() {
        let memory_row = locus_model::Memory {
            hidden: memory.hidden.i(row..row + 1).unwrap(),
            padding_bias: memory.padding_bias.i(row..row + 1).unwrap(),
        };
        let mut prefix = vec![TOKENS.bos];
        let mut expected = Vec::new();
        while expected.len() < 9 {
            let input = Tensor::new(prefix.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
            let logits = model.decode(&input, &memory_row, None).unwrap();
            let next =
                logits.i((0, prefix.len() - 1)).unwrap().argmax(0).unwrap().to_scalar::<u32>().unwrap();
            if next == TOKENS.eos {
                break;
            }
            expected.push(next);
            prefix.push(next);
        }
        assert_eq!(hyp, &expected, "row {row}");
    }
}

#[test]
fn padding_does_not_change_real_positions() {
    let model = model(NormPosition::Post, PositionalConfig::Sinusoidal, 3);
    let (src, _) = batch();
    let alone = Tensor::new(&[[15u32, 3, 8, 2]], &Device::Cpu).unwrap();
    let padded = model.encode(&src, None).unwrap().hidden.i((1, 0..4)).unwrap();
    let single = model.encode(&alone, None).unwrap().hidden.i((0, 0..4)).unwrap();
    let diff = (padded - single).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(diff < 1e-5, "encoder states differ by {diff}");
}

#[test]
fn learned_positions_reject_long_inputs_with_a_clear_error() {
    let model = model(NormPosition::Post, PositionalConfig::Learned { max_len: 4 }, 1);
    let (src, _) = batch();
    let err = model.encode(&src, None).unwrap_err().to_string();
    assert!(err.contains("position 5") && err.contains("max_len is 4"), "{err}");
}
