//! Every positional encoding, in every variant: cached incremental decoding equals decoding by
//! full recomputation, padding does not change what real positions compute, relative encodings
//! ignore a shift of the absolute start, and an encoder without positions is
//! permutation-equivariant. Searches over the cache agree: greedy equals a full-recomputation
//! search, beam size 1 equals greedy, and beam search's n-best lists are sorted and distinct.
//! Continuous batching decodes every sentence as greedy search does alone, whenever it joins.
//! The copy of a model for inference decodes as the model does, and its int8 copy within
//! quantization error, with cached decoding equal to full recomputation. RoPE scaling keeps cached
//! decoding exact.

mod common;

use candle_core::{DType, Device, IndexOp, Tensor, D};
use candle_nn::VarMap;
use locus_model::decoder::DecoderCache;
use locus_model::positional::RopeScaling;
use locus_model::{
    beam_search, greedy_decode, greedy_decode_to, Admission, BeamOptions, LengthLimits, ModelConfig,
    PositionalConfig, RunningBatch, SeededVarMap, Seq2Seq, Seq2SeqScorer, TokenIds,
};

const TOKENS: TokenIds = TokenIds { pad: 0, bos: 1, eos: 2 };
const VOCAB: usize = 23;

fn build(cfg: &ModelConfig, seed: u64) -> Seq2Seq {
    let varmap = VarMap::new();
    let vb = SeededVarMap::var_builder(&varmap, seed, DType::F32, &Device::Cpu);
    Seq2Seq::new(cfg, VOCAB, TOKENS, vb).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn cached_decoding_equals_full_recomputation_for_every_variant() {
    for (seed, (name, cfg)) in common::variants().into_iter().enumerate() {
        let model = build(&cfg, seed as u64);
        let (src, _) = common::padded_sources();
        let memory = model.encode(&src, None).unwrap();
        let mut cache = model.new_cache();
        let mut prefix = Tensor::full(TOKENS.bos, (3, 1), &Device::Cpu).unwrap();
        // 14 steps: past every relative clipping distance and T5's exact buckets.
        for step in 0..14 {
            let last = prefix.i((.., step..step + 1)).unwrap();
            let cached = model.decode_step(&last, &memory, &mut cache).unwrap();
            let full = model.decode(&prefix, &memory, None).unwrap().i((.., step, ..)).unwrap();
            let diff = max_abs_diff(&cached, &full);
            assert!(diff < 1e-5, "{name}, step {step}: logits differ by {diff}");
            let cached_next = cached.argmax(D::Minus1).unwrap().to_vec1::<u32>().unwrap();
            let full_next = full.argmax(D::Minus1).unwrap().to_vec1::<u32>().unwrap();
            assert_eq!(cached_next, full_next, "{name}, step {step}");
            let next = Tensor::new(cached_next, &Device::Cpu).unwrap().unsqueeze(1).unwrap();
            prefix = Tensor::cat(&[&prefix, &next], 1).unwrap();
        }
    }
}

#[test]
fn padding_does_not_change_any_sentence_for_every_variant() {
    for (seed, (name, cfg)) in common::variants().into_iter().enumerate() {
        let model = build(&cfg, seed as u64);
        let (src, _) = common::padded_sources();
        let tgt =
            Tensor::new(&[[1u32, 6, 7, 8, 9], [1, 10, 11, 0, 0], [1, 12, 0, 0, 0]], &Device::Cpu).unwrap();
        let batched = model.forward(&src, &tgt, None).unwrap();
        for (row, (src_len, tgt_len)) in [(10, 5), (4, 3), (2, 2)].into_iter().enumerate() {
            let alone_src = src.i((row..row + 1, ..src_len)).unwrap();
            let alone_tgt = tgt.i((row..row + 1, ..tgt_len)).unwrap();
            let alone = model.forward(&alone_src, &alone_tgt, None).unwrap();
            let in_batch = batched.i((row..row + 1, ..tgt_len)).unwrap();
            let diff = max_abs_diff(&alone, &in_batch);
            assert!(diff < 1e-5, "{name}, row {row}: padding changes logits by {diff}");
        }
    }
}

#[test]
fn relative_encoders_ignore_a_shift_of_the_absolute_start() {
    for (seed, (name, cfg)) in common::variants().into_iter().enumerate() {
        let model = build(&cfg, seed as u64);
        let (src, _) = common::padded_sources();
        let at_zero = model.encode(&src, None).unwrap().hidden;
        let shifted = model.encode_shifted(&src, 7, None).unwrap().hidden;
        let diff = max_abs_diff(&at_zero, &shifted);
        if encoder_is_relative(&cfg) || matches!(cfg.encoder_positional(), PositionalConfig::None {}) {
            assert!(diff < 1e-5, "{name}: shifting the start changes the encoder output by {diff}");
        } else {
            // Absolute encodings must notice, or this test could not fail.
            assert!(diff > 1e-3, "{name}: an absolute encoding ignored a shift ({diff})");
        }
    }
}

#[test]
fn encoder_without_positions_is_permutation_equivariant() {
    let model = build(&ModelConfig::tiny_with(PositionalConfig::None {}), 5);
    let src = Tensor::new(&[[5u32, 9, 12, 7, 2]], &Device::Cpu).unwrap();
    let permuted = Tensor::new(&[[7u32, 12, 5, 2, 9]], &Device::Cpu).unwrap();
    let hidden = model.encode(&src, None).unwrap().hidden.squeeze(0).unwrap();
    let hidden_permuted = model.encode(&permuted, None).unwrap().hidden.squeeze(0).unwrap();
    // Token k of `permuted` is token order[k] of `src`: its state must be that token's state.
    let order = Tensor::new(&[3u32, 2, 0, 4, 1], &Device::Cpu).unwrap();
    let diff = max_abs_diff(&hidden.index_select(&order, 0).unwrap(), &hidden_permuted);
    assert!(diff < 1e-5, "states differ by {diff}");
    // With sinusoids the same permutation changes the states.
    let model = build(&ModelConfig::tiny(), 5);
    let hidden = model.encode(&src, None).unwrap().hidden.squeeze(0).unwrap();
    let hidden_permuted = model.encode(&permuted, None).unwrap().hidden.squeeze(0).unwrap();
    assert!(max_abs_diff(&hidden.index_select(&order, 0).unwrap(), &hidden_permuted) > 1e-3);
}

/// The copy for inference (weights packed for decoding) computes the model's logits up to rounding
/// and finds the same greedy and beam outputs, for every encoding.
#[test]
fn the_inference_copy_decodes_as_the_model_for_every_variant() {
    let (src, lens) = common::padded_sources();
    let tgt = Tensor::new(&[[1u32, 6, 7, 8, 9], [1, 10, 11, 0, 0], [1, 12, 0, 0, 0]], &Device::Cpu).unwrap();
    let limits = LengthLimits { max_len_a: 0.0, max_len_b: 12, min_len: 0 };
    let max_lens: Vec<usize> = lens.iter().map(|&len| limits.max_len(len)).collect();
    let options = BeamOptions { beam: 3, nbest: 2, length_penalty: 1.0, early_stop: false };
    let outputs = |model: &Seq2Seq| {
        let greedy = greedy_decode(model, &src, &lens, &limits).unwrap();
        let beams = beam(model, &src, &max_lens, &limits, options);
        let tokens =
            |hyps: &[locus_model::Hypothesis]| hyps.iter().map(|h| h.tokens.clone()).collect::<Vec<_>>();
        (tokens(&greedy), beams.iter().map(|nbest| tokens(nbest)).collect::<Vec<_>>())
    };
    for (seed, (name, cfg)) in common::variants().into_iter().enumerate() {
        let model = build(&cfg, seed as u64);
        let copy = model.for_inference(locus_model::Quantization::None).unwrap();
        let diff =
            max_abs_diff(&model.forward(&src, &tgt, None).unwrap(), &copy.forward(&src, &tgt, None).unwrap());
        assert!(diff < 1e-5, "{name}: logits differ by {diff}");
        assert_eq!(outputs(&model), outputs(&copy), "{name}");
    }
}

/// The int8 copy computes the model's logits within quantization error (and not exactly: it
/// is quantized), and its cached decoding equals its full recomputation: each row is
/// quantized on its own, so a position computes the same in both, up to the f32 rounding that
/// may move a value across a rounding boundary of the quantization.
#[test]
fn the_int8_copy_decodes_within_quantization_error_for_every_variant() {
    let (src, _) = common::padded_sources();
    let tgt = Tensor::new(&[[1u32, 6, 7, 8, 9], [1, 10, 11, 0, 0], [1, 12, 0, 0, 0]], &Device::Cpu).unwrap();
    for (seed, (name, cfg)) in common::variants().into_iter().enumerate() {
        let model = build(&cfg, seed as u64);
        let int8 = model.for_inference(locus_model::Quantization::Int8).unwrap();
        let exact = model.forward(&src, &tgt, None).unwrap();
        let quantized = int8.forward(&src, &tgt, None).unwrap();
        let scale = exact.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let diff = max_abs_diff(&exact, &quantized);
        assert!(diff > 0.0 && diff < 0.05 * scale, "{name}: logits differ by {diff} (largest {scale})");
        let memory = int8.encode(&src, None).unwrap();
        let mut cache = int8.new_cache();
        let full = int8.decode(&tgt, &memory, None).unwrap();
        for step in 0..tgt.dim(1).unwrap() {
            let cached =
                int8.decode_step(&tgt.i((.., step..step + 1)).unwrap(), &memory, &mut cache).unwrap();
            let diff = max_abs_diff(&cached, &full.i((.., step, ..)).unwrap());
            assert!(diff < 1e-3 * scale, "{name}, step {step}: cached logits differ by {diff}");
        }
    }
}

/// RoPE scaling at inference: a factor of 1 computes the model's logits, every real scaling
/// changes them and keeps cached decoding equal to full recomputation, and a model without
/// RoPE in either stack refuses with the kinds it has.
#[test]
fn rope_scaling_keeps_cache_parity_and_needs_rope() {
    let model =
        build(&ModelConfig::tiny_with(PositionalConfig::Rope { theta: 10000.0, random_positions: 0 }), 3);
    let (src, _) = common::padded_sources();
    let tgt = Tensor::new(
        &[[1u32, 6, 7, 8, 9, 3, 4, 5], [1, 10, 11, 12, 13, 14, 0, 0], [1, 12, 3, 3, 0, 0, 0, 0]],
        &Device::Cpu,
    )
    .unwrap();
    let logits = model.forward(&src, &tgt, None).unwrap();
    let unit = model.with_rope_scaling(RopeScaling::Linear { factor: 1.0 }).unwrap();
    assert!(max_abs_diff(&unit.forward(&src, &tgt, None).unwrap(), &logits) < 1e-6);
    for scaling in [
        RopeScaling::Linear { factor: 4.0 },
        RopeScaling::Ntk { factor: 4.0 },
        RopeScaling::Yarn { factor: 4.0, original_len: 8 },
    ] {
        let scaled = model.with_rope_scaling(scaling).unwrap();
        let full = scaled.forward(&src, &tgt, None).unwrap();
        assert!(max_abs_diff(&full, &logits) > 1e-4, "{scaling} changed nothing");
        let memory = scaled.encode(&src, None).unwrap();
        let mut cache = scaled.new_cache();
        for step in 0..tgt.dim(1).unwrap() {
            let cached =
                scaled.decode_step(&tgt.i((.., step..step + 1)).unwrap(), &memory, &mut cache).unwrap();
            let diff = max_abs_diff(&cached, &full.i((.., step, ..)).unwrap());
            assert!(diff < 1e-5, "{scaling}, step {step}: logits differ by {diff}");
        }
    }
    let error =
        build(&ModelConfig::tiny(), 3).with_rope_scaling(RopeScaling::Ntk { factor: 2.0 }).unwrap_err();
    assert!(error.to_string().contains("needs a rope encoding, but the encoder uses sinusoidal"), "{error}");
}

#[test]
fn greedy_tokens_match_a_full_recomputation_search() {
    let model = build(&ModelConfig::tiny(), 42);
    let (src, lens) = common::padded_sources();
    let limits = LengthLimits { max_len_a: 0.0, max_len_b: 9, min_len: 0 };
    let cached = greedy_decode(&model, &src, &lens, &limits).unwrap();
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
        assert_eq!(hyp.tokens, expected, "row {row}");
    }
}

/// Beam search over `src` with the model's cache.
fn beam(
    model: &Seq2Seq,
    src: &Tensor,
    max_lens: &[usize],
    limits: &LengthLimits,
    options: BeamOptions,
) -> Vec<Vec<locus_model::Hypothesis>> {
    let mut scorer = Seq2SeqScorer::new(model, src).unwrap();
    beam_search(&mut scorer, max_lens, TOKENS.eos, TOKENS.bos, limits, &options).unwrap()
}

#[test]
fn beam_of_one_is_greedy_for_every_encoding() {
    let limits = LengthLimits { max_len_a: 1.0, max_len_b: 3, min_len: 2 };
    for (name, cfg) in common::variants() {
        let model = build(&cfg, 42);
        let (src, lens) = common::padded_sources();
        let greedy = greedy_decode(&model, &src, &lens, &limits).unwrap();
        let max_lens: Vec<usize> = lens.iter().map(|&len| limits.max_len(len)).collect();
        // Without a length penalty: with one, a beam of one may go on past greedy's EOS to a
        // longer output that scores better.
        let options = BeamOptions { beam: 1, nbest: 1, length_penalty: 0.0, early_stop: false };
        let beam = beam(&model, &src, &max_lens, &limits, options);
        for (row, (g, b)) in greedy.iter().zip(&beam).enumerate() {
            assert_eq!(g.tokens, b[0].tokens, "{name}, row {row}");
            assert!(g.tokens.len() >= 2, "{name}: min_len");
            // Greedy leaves out EOS's log-probability when the length limit cuts it short.
            if g.tokens.len() < max_lens[row] {
                assert!((g.log_prob - b[0].log_prob).abs() < 1e-4, "{name}, row {row}: {g:?} vs {b:?}");
            }
        }
    }
}

#[test]
fn nbest_lists_are_sorted_distinct_and_scored_as_forced_decoding() {
    let model = build(&ModelConfig::tiny(), 7);
    let (src, lens) = common::padded_sources();
    let limits = LengthLimits { max_len_a: 1.0, max_len_b: 4, min_len: 0 };
    let max_lens: Vec<usize> = lens.iter().map(|&len| limits.max_len(len)).collect();
    let options = BeamOptions { beam: 5, nbest: 5, length_penalty: 0.6, early_stop: false };
    let nbest = beam(&model, &src, &max_lens, &limits, options);
    let memory = model.encode(&src, None).unwrap();
    for (row, hyps) in nbest.iter().enumerate() {
        assert_eq!(hyps.len(), 5, "row {row}");
        assert!(hyps.windows(2).all(|w| w[0].score >= w[1].score), "row {row}: {hyps:?}");
        for (i, hyp) in hyps.iter().enumerate() {
            assert!(hyps[i + 1..].iter().all(|other| other.tokens != hyp.tokens), "row {row}: duplicates");
            // The log-probability is the one teacher forcing gives the tokens and EOS.
            let memory_row = locus_model::Memory {
                hidden: memory.hidden.i(row..row + 1).unwrap(),
                padding_bias: memory.padding_bias.i(row..row + 1).unwrap(),
            };
            let input: Vec<u32> = [TOKENS.bos].into_iter().chain(hyp.tokens.iter().copied()).collect();
            let target: Vec<u32> = hyp.tokens.iter().copied().chain([TOKENS.eos]).collect();
            let input = Tensor::new(input.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
            let logits = model.decode(&input, &memory_row, None).unwrap().squeeze(0).unwrap();
            let log_probs =
                candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap().to_vec2::<f32>().unwrap();
            let forced: f64 =
                target.iter().enumerate().map(|(t, &tok)| log_probs[t][tok as usize] as f64).sum();
            assert!(
                (forced - hyp.log_prob).abs() < 1e-4,
                "row {row}: forced {forced} vs search {}",
                hyp.log_prob
            );
            let penalty = ((5.0 + target.len() as f64) / 6.0).powf(0.6);
            assert!((hyp.score - hyp.log_prob / penalty).abs() < 1e-9);
        }
    }
}

#[test]
fn learned_positions_reject_long_inputs_with_a_clear_error() {
    let cfg = ModelConfig::tiny_with(PositionalConfig::Learned {
        max_len: 4,
        combine: locus_model::positional::Combine::Add,
        d_pos: None,
        every_layer: false,
        position_shift: 0,
        random_positions: 0,
    });
    let model = build(&cfg, 1);
    let (src, _) = common::padded_sources();
    let err = model.encode(&src, None).unwrap_err().to_string();
    assert!(err.contains("position 9") && err.contains("holds max_len 4"), "{err}");
}

/// Whether the encoder's encoding depends only on relative positions.
pub fn encoder_is_relative(cfg: &ModelConfig) -> bool {
    matches!(
        cfg.encoder_positional(),
        PositionalConfig::Relative { .. }
            | PositionalConfig::T5 { .. }
            | PositionalConfig::Rope { .. }
            | PositionalConfig::Alibi {}
            | PositionalConfig::Kerple {}
            | PositionalConfig::Xpos { .. }
    ) || matches!(
        // FIRE is relative below its threshold, which these tests' positions stay under by default.
        cfg.encoder_positional(),
        PositionalConfig::Fire { init_threshold, .. } if *init_threshold >= 64.0
    )
}

/// Where the seeds of the continuous-batching test's untrained models start: from these,
/// greedy search chooses EOS before the length limit for 2 sentences, so that the test sees EOS
/// end a row (most seeds of fairseq's initialisation never choose EOS in so few steps).
const EOS_SEED_OFFSET: u64 = 60;

/// Sentences join a running batch at steps 0, 2, 3, 6 and 10 and leave it as they end (by their
/// limits, by EOS, one at once with a limit of 0), so that rows decode at different positions
/// side by side, ended rows are dropped and the positions before every remaining row's start
/// are forgotten. Every sentence must still get the hypothesis greedy search gives it alone:
/// the same tokens, the same log-probability up to the rounding of batched products.
#[test]
fn continuous_batching_decodes_every_sentence_as_alone_for_every_variant() {
    let sources: [&[u32]; 8] = [
        &[5, 9, 12, 7, 20, 4, 4, 17, 9],
        &[15, 3, 8],
        &[11],
        &[6, 6, 21, 13, 3],
        &[19, 8],
        &[7, 16, 10, 22],
        &[4],
        &[9, 14, 3, 18],
    ];
    let max_lens = [9, 3, 12, 0, 7, 14, 5, 12];
    let min_lens = [0, 2, 0, 0, 4, 0, 5, 8];
    // Who joins before which step. The last one outlives the others (its min_len), so that
    // the positions before it are dropped once they are half of those held.
    let joins: [(usize, &[usize]); 5] = [(0, &[0, 1]), (2, &[2]), (3, &[3, 4, 5]), (6, &[6]), (10, &[7])];
    let padded = |ids: &[usize]| {
        let width = ids.iter().map(|&i| sources[i].len() + 1).max().unwrap();
        let rows: Vec<u32> = ids
            .iter()
            .flat_map(|&i| {
                sources[i]
                    .iter()
                    .copied()
                    .chain([TOKENS.eos])
                    .chain(std::iter::repeat(TOKENS.pad))
                    .take(width)
            })
            .collect();
        Tensor::from_vec(rows, (ids.len(), width), &Device::Cpu).unwrap()
    };
    let mut ended_by_eos = 0;
    for (seed, (name, cfg)) in common::variants().into_iter().enumerate() {
        let model = build(&cfg, EOS_SEED_OFFSET + seed as u64);
        let mut batch = RunningBatch::new(&model);
        let mut got = vec![None; sources.len()];
        let mut step = 0;
        while step <= 10 || !batch.is_empty() {
            if let Some((_, ids)) = joins.iter().find(|(at, _)| *at == step) {
                let admissions: Vec<_> = ids
                    .iter()
                    .map(|&id| Admission { id, max_len: max_lens[id], min_len: min_lens[id] })
                    .collect();
                for finished in batch.admit(&padded(ids), &admissions).unwrap() {
                    got[finished.id] = Some(finished.hypothesis);
                }
            }
            for finished in batch.step().unwrap() {
                assert!(got[finished.id].is_none(), "{name}: sentence {} ended twice", finished.id);
                got[finished.id] = Some(finished.hypothesis);
            }
            step += 1;
        }
        for (id, hypothesis) in got.into_iter().enumerate() {
            let hypothesis = hypothesis.unwrap_or_else(|| panic!("{name}: sentence {id} never ended"));
            let alone = greedy_decode_to(&model, &padded(&[id]), &max_lens[id..=id], min_lens[id]).unwrap();
            assert_eq!(hypothesis.tokens, alone[0].tokens, "{name}, sentence {id}");
            let diff = (hypothesis.log_prob - alone[0].log_prob).abs();
            assert!(diff < 1e-4, "{name}, sentence {id}: log-probabilities differ by {diff}");
            assert_eq!(hypothesis.score, hypothesis.log_prob);
            ended_by_eos += usize::from(hypothesis.tokens.len() < max_lens[id]);
        }
    }
    assert!(ended_by_eos > 0, "no sentence chose EOS: the test does not see EOS end a row");
}

/// Rows decoding one source share its memory row and cross-attention keys and values: widening
/// each source to two rows and dropping sources leaves the memory alone until fewer than half
/// of its rows are read, then narrows it to those. Each row decodes as its source alone does,
/// step after step.
#[test]
fn rows_share_their_source_until_the_memory_is_narrowed() {
    let model = build(&ModelConfig::tiny(), 3);
    let (src, _) = common::padded_sources();
    let step = |memory: &locus_model::Memory, cache: &mut DecoderCache, tokens: &[u32]| {
        let tokens = Tensor::new(tokens, &Device::Cpu).unwrap().unsqueeze(1).unwrap();
        model.decode_step(&tokens, memory, cache).unwrap()
    };
    let mut memory = model.encode(&src, None).unwrap();
    let mut cache = model.new_cache();
    step(&memory, &mut cache, &[TOKENS.bos; 3]);
    model.select_rows(&mut memory, &mut cache, &[0, 0, 1, 1, 2, 2]).unwrap();
    let widened = step(&memory, &mut cache, &[5, 6, 7, 8, 9, 10]);
    // Rows of sources 1 and 2 stay (2 of 3 memory rows read): nothing moves.
    model.select_rows(&mut memory, &mut cache, &[3, 2, 4]).unwrap();
    assert_eq!((memory.hidden.dim(0).unwrap(), cache.memory_rows()), (3, Some(&[1, 1, 2][..])));
    let kept_two = step(&memory, &mut cache, &[11, 12, 13]);
    // Source 1 alone (1 of 3): the memory narrows to it.
    model.select_rows(&mut memory, &mut cache, &[1, 0]).unwrap();
    assert_eq!((memory.hidden.dim(0).unwrap(), cache.memory_rows()), (1, Some(&[0, 0][..])));
    let kept_one = step(&memory, &mut cache, &[14, 15]);

    // Each row: its source, the tokens fed to it after BOS, and its row in each step's logits.
    let rows: [(u32, &[u32], [usize; 3]); 3] =
        [(1, &[8, 11, 15], [3, 0, 1]), (1, &[7, 12, 14], [2, 1, 0]), (2, &[9, 13], [4, 2, usize::MAX])];
    for (source, fed, at) in rows {
        let src = src.index_select(&Tensor::new(&[source], &Device::Cpu).unwrap(), 0).unwrap();
        let memory = model.encode(&src, None).unwrap();
        let mut cache = model.new_cache();
        step(&memory, &mut cache, &[TOKENS.bos]);
        for ((&token, got), row) in fed.iter().zip([&widened, &kept_two, &kept_one]).zip(at) {
            let alone = step(&memory, &mut cache, &[token]);
            let diff = max_abs_diff(&got.i(row).unwrap(), &alone.i(0).unwrap());
            assert!(diff < 1e-5, "source {source}, token {token}: {diff}");
        }
    }
}
