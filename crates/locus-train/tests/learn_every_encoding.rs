//! Every positional encoding must let a tiny model learn to copy: trained in memory on random
//! symbol sequences, it must reproduce at least 95% of unseen ones exactly under greedy
//! decoding. The exception proves the rule: without any position signal the encoder is
//! permutation-equivariant (see locus-model's `incremental` tests), so cross-attention cannot
//! tell source positions apart and copying fails.

use candle_core::Device;
use locus_data::{pair_lengths, BatchPlanner, TokenBudget, TokenizedPair};
use locus_model::positional::{Combine, PositionalKind, SinusoidalLayout};
use locus_model::{greedy_decode, DropoutRng, LengthLimits, ModelConfig, PositionalConfig};
use locus_train::batch::{collate, pad_rows};
use locus_train::distributed::SingleProcess;
use locus_train::modeling::{build_model, TOKEN_IDS};
use locus_train::optim::{Adam, AdamParams, OptimizerKind};
use locus_train::schedule::{LrSchedule, ScheduleKind};
use locus_train::step::{train_step, StepOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Symbols are token ids 4..12 (0-3 are the specials).
const VOCAB: usize = 12;

fn sequences(n: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let len = rng.random_range(3..=8);
            (0..len).map(|_| rng.random_range(4..VOCAB as u32)).collect()
        })
        .collect()
}

/// Trains a copy model with `positional` until it copies at least 95% of unseen sequences
/// exactly, checking every 100 updates, or for at most `MAX_STEPS` updates. Returns the last
/// accuracy and the updates it took.
fn copy_accuracy(positional: PositionalConfig, tie_embeddings: bool, max_steps: usize) -> (f64, usize) {
    let cfg = ModelConfig {
        d_model: 64,
        n_heads: 4,
        d_ff: 128,
        tie_embeddings,
        ..ModelConfig::tiny_with(positional)
    };
    let (model, varmap) = build_model(&cfg, VOCAB, 11, &Device::Cpu).unwrap();
    let params =
        AdamParams { kind: OptimizerKind::Adamw, beta1: 0.9, beta2: 0.98, eps: 1e-9, weight_decay: 0.0 };
    let mut optimizer = Adam::for_varmap(&varmap, params).unwrap();
    let schedule = LrSchedule {
        kind: ScheduleKind::InverseSqrt,
        lr: 3e-3,
        warmup: 100,
        min_lr: 0.0,
        total_steps: max_steps,
        d_model: cfg.d_model,
    };
    let mut rng = DropoutRng::new(0);
    let pairs: Vec<TokenizedPair> =
        sequences(4000, 1).into_iter().map(|s| TokenizedPair { src: s.clone(), tgt: s }).collect();
    let lengths = pair_lengths(&pairs).unwrap();
    let planner = BatchPlanner { max_tokens: 640, max_sentences: None, budget: TokenBudget::Longer };
    let mut step = 0;
    let mut last_accuracy = 0.0;
    for epoch in 0.. {
        for indices in planner.plan(&lengths, 3, epoch).unwrap().iter() {
            step += 1;
            let batch_pairs: Vec<&TokenizedPair> = indices.iter().map(|&i| &pairs[i as usize]).collect();
            let batch = collate(&batch_pairs, TOKEN_IDS, &Device::Cpu).unwrap();
            let options = StepOptions { lr: schedule.at(step), clip_norm: 1.0, label_smoothing: 0.0 };
            train_step(&SingleProcess, &model, &mut optimizer, &[batch], options, &mut rng, None).unwrap();
            if step % 100 == 0 {
                last_accuracy = accuracy(&model);
                if last_accuracy >= 0.95 || step >= max_steps {
                    return (last_accuracy, step);
                }
            }
        }
    }
    (last_accuracy, step)
}

fn accuracy(model: &locus_model::Seq2Seq) -> f64 {
    let tests = sequences(200, 99);
    let rows: Vec<Vec<u32>> =
        tests.iter().map(|s| s.iter().copied().chain([TOKEN_IDS.eos]).collect()).collect();
    let src = pad_rows(&rows, TOKEN_IDS.pad, &Device::Cpu).unwrap();
    let lens: Vec<usize> = tests.iter().map(Vec::len).collect();
    let limits = LengthLimits { max_len_a: 1.0, max_len_b: 2, min_len: 0 };
    let outputs = greedy_decode(model, &src, &lens, &limits).unwrap();
    outputs.iter().zip(&tests).filter(|(out, want)| &out.tokens == *want).count() as f64 / tests.len() as f64
}

fn absolute(combine: Combine, d_pos: Option<usize>) -> PositionalConfig {
    PositionalConfig::Sinusoidal {
        layout: SinusoidalLayout::Interleaved,
        combine,
        d_pos,
        every_layer: false,
        position_shift: 0,
        random_positions: 0,
    }
}

/// Trains a copy model and asserts it reaches 95% exact match within 1,500 updates.
fn assert_learns_to_copy(name: &str, positional: PositionalConfig, tie_embeddings: bool) {
    let (accuracy, steps) = copy_accuracy(positional, tie_embeddings, 1500);
    eprintln!("{name}: exact-match copy accuracy {accuracy:.3} after {steps} updates");
    assert!(accuracy >= 0.95, "{name}: {accuracy:.3} exact match after {steps} updates");
}

/// The copy model of each kind of the list: its encoding, and whether it ties embeddings.
/// A new kind does not compile until it has one, and a test below.
fn copy_model(kind: PositionalKind) -> (PositionalConfig, bool) {
    match kind {
        PositionalKind::None => (PositionalConfig::None {}, true),
        PositionalKind::Sinusoidal => (absolute(Combine::Add, None), true),
        PositionalKind::Learned => (
            PositionalConfig::Learned {
                max_len: 16,
                combine: Combine::Add,
                d_pos: None,
                every_layer: false,
                position_shift: 0,
                random_positions: 0,
            },
            true,
        ),
        PositionalKind::Relative => (PositionalConfig::Relative { max_distance: 8, values: true }, true),
        PositionalKind::T5 => (PositionalConfig::T5 { num_buckets: 32, max_distance: 64 }, true),
        PositionalKind::Rope => (PositionalConfig::Rope { theta: 10000.0, random_positions: 0 }, true),
        PositionalKind::Alibi => (PositionalConfig::Alibi {}, true),
        PositionalKind::Fire => {
            (PositionalConfig::Fire { mlp_width: 32, init_c: 0.1, init_threshold: 512.0 }, true)
        }
        PositionalKind::Kerple => (PositionalConfig::Kerple {}, true),
        PositionalKind::Xpos => (
            PositionalConfig::Xpos { theta: 10000.0, scale_base: 512.0, gamma: 0.4, random_positions: 0 },
            true,
        ),
    }
}

fn assert_kind_learns_to_copy(kind: PositionalKind) {
    let (positional, tie_embeddings) = copy_model(kind);
    assert_learns_to_copy(kind.name(), positional, tie_embeddings);
}

#[test]
fn sinusoidal_learns_to_copy() {
    assert_kind_learns_to_copy(PositionalKind::Sinusoidal);
}

#[test]
fn sinusoidal_concat_learns_to_copy() {
    assert_learns_to_copy("sinusoidal concat", absolute(Combine::Concat, Some(16)), false);
}

#[test]
fn learned_learns_to_copy() {
    assert_kind_learns_to_copy(PositionalKind::Learned);
}

#[test]
fn relative_learns_to_copy() {
    assert_kind_learns_to_copy(PositionalKind::Relative);
}

#[test]
fn t5_learns_to_copy() {
    assert_kind_learns_to_copy(PositionalKind::T5);
}

#[test]
fn rope_learns_to_copy() {
    assert_kind_learns_to_copy(PositionalKind::Rope);
}

#[test]
fn alibi_learns_to_copy() {
    assert_kind_learns_to_copy(PositionalKind::Alibi);
}

#[test]
fn fire_learns_to_copy() {
    assert_kind_learns_to_copy(PositionalKind::Fire);
}

#[test]
fn kerple_learns_to_copy() {
    assert_kind_learns_to_copy(PositionalKind::Kerple);
}

#[test]
fn xpos_learns_to_copy() {
    assert_kind_learns_to_copy(PositionalKind::Xpos);
}

#[test]
fn without_positions_copying_fails() {
    let (positional, tie_embeddings) = copy_model(PositionalKind::None);
    let (accuracy, steps) = copy_accuracy(positional, tie_embeddings, 500);
    eprintln!("none: exact-match copy accuracy {accuracy:.3} after {steps} updates");
    assert!(accuracy < 0.5, "an encoder without positions copied {accuracy:.3} of sequences");
}
