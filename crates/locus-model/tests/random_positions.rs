//! Randomized positions (Ruoss et al. 2023, <https://arxiv.org/abs/2305.16843>): with
//! `random_positions = L`, training places each sequence at a sorted random sample of positions
//! from `0..L`, drawn from the forward pass's `DropoutRng`; inference reads plain positions.
//! Where each token lands is checked in `positional::tests`; here, the whole model.

mod common;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use locus_model::positional::{Combine, SinusoidalLayout};
use locus_model::{DropoutRng, ModelConfig, PositionalConfig, SeededVarMap, Seq2Seq, TokenIds};

const TOKENS: TokenIds = TokenIds { pad: 0, bos: 1, eos: 2 };
const VOCAB: usize = 23;

fn build(positional: PositionalConfig) -> Seq2Seq {
    let varmap = VarMap::new();
    let vb = SeededVarMap::var_builder(&varmap, 4, DType::F32, &Device::Cpu);
    Seq2Seq::new(&ModelConfig::tiny_with(positional), VOCAB, TOKENS, vb).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

/// Each kind that takes the option, with positions drawn from `0..range` (0: off).
fn kinds(range: usize) -> Vec<PositionalConfig> {
    let absolute = |learned: bool| {
        let (combine, d_pos, every_layer, position_shift) = (Combine::Add, None, false, 0);
        match learned {
            true => PositionalConfig::Learned {
                max_len: 40,
                combine,
                d_pos,
                every_layer,
                position_shift,
                random_positions: range,
            },
            false => PositionalConfig::Sinusoidal {
                layout: SinusoidalLayout::Interleaved,
                combine,
                d_pos,
                every_layer,
                position_shift,
                random_positions: range,
            },
        }
    };
    vec![
        absolute(false),
        absolute(true),
        PositionalConfig::Rope { theta: 10000.0, random_positions: range },
        PositionalConfig::Xpos { theta: 10000.0, scale_base: 16.0, gamma: 0.4, random_positions: range },
    ]
}

/// At inference the option changes nothing; while training it moves the logits, draws exactly
/// one word per position of each stack (dropout is 0 in the tiny model), and the same stream
/// state gives the same logits, so a resumed run draws what the uninterrupted one drew.
#[test]
fn training_draws_positions_from_the_stream_and_inference_reads_plain_ones() {
    let (src, _) = common::padded_sources();
    let tgt = Tensor::new(&[[1u32, 6, 7, 8, 9], [1, 10, 11, 0, 0], [1, 12, 0, 0, 0]], &Device::Cpu).unwrap();
    let words = (src.elem_count() + tgt.elem_count()) as u128;
    for (randomized, plain) in kinds(40).into_iter().zip(kinds(0)) {
        let (randomized, plain) = (build(randomized.clone()), build(plain));
        let want = plain.forward(&src, &tgt, None).unwrap();
        assert_eq!(max_abs_diff(&randomized.forward(&src, &tgt, None).unwrap(), &want), 0.0);
        let mut rng = DropoutRng::new(3);
        let start = rng.state();
        let trained = randomized.forward(&src, &tgt, Some(&mut rng)).unwrap();
        let kind = randomized.config().positional.kind();
        assert_eq!(rng.state().word_pos - start.word_pos, words, "{kind}");
        assert!(max_abs_diff(&trained, &want) > 1e-3, "{kind}: random positions changed nothing");
        let again = randomized.forward(&src, &tgt, Some(&mut DropoutRng::from_state(&start))).unwrap();
        assert_eq!(max_abs_diff(&trained, &again), 0.0, "{kind}");
        // Without the option, training reads plain positions and draws nothing.
        let mut rng = DropoutRng::new(3);
        assert_eq!(max_abs_diff(&plain.forward(&src, &tgt, Some(&mut rng)).unwrap(), &want), 0.0);
        assert_eq!(rng.state(), start);
    }
}

/// A range shorter than a training sequence is an error naming the option, not a panic; a
/// sequence that fits trains, and inference takes any length.
#[test]
fn a_range_shorter_than_a_sequence_is_an_error() {
    let model = build(PositionalConfig::Rope { theta: 10000.0, random_positions: 6 });
    let (src, _) = common::padded_sources();
    let err = model.encode(&src, Some(&mut DropoutRng::new(0))).unwrap_err().to_string();
    assert!(
        err.contains("random_positions (6) must be at least the longest training sequence (10 positions"),
        "{err}"
    );
    let short = src.narrow(1, 0, 6).unwrap();
    assert!(model.encode(&short, Some(&mut DropoutRng::new(0))).is_ok());
    assert!(model.encode(&src, None).is_ok());
}
