//! One training step must give every trainable variable a non-zero gradient: a layer whose
//! backward is missing (candle's fused layer norm or softmax, say) shows up here as zeros.
//! Gradient accumulation must be exact: two half batches make one full batch.

use candle_core::Device;
use locus_data::TokenizedPair;
use locus_model::positional::Combine;
use locus_model::{DropoutRng, ModelConfig, NormPosition, PositionalConfig};
use locus_train::batch::{collate, TensorBatch};
use locus_train::distributed::SingleProcess;
use locus_train::loss::label_smoothed_cross_entropy;
use locus_train::modeling::{build_model, TOKEN_IDS};
use locus_train::optim::{Adam, AdamParams, OptimizerKind};
use locus_train::step::{accumulate_gradients, train_step, StepOptions};

#[test]
fn every_variable_gets_a_nonzero_gradient() {
    let learned = PositionalConfig::Learned {
        max_len: 16,
        combine: Combine::Add,
        d_pos: None,
        every_layer: false,
        position_shift: 0,
        random_positions: 0,
    };
    let variants = [(NormPosition::Post, learned.clone(), true), (NormPosition::Pre, learned.clone(), false)];
    for (norm, positional, tie_embeddings) in variants {
        let cfg = ModelConfig { norm, positional, tie_embeddings, dropout: 0.1, ..ModelConfig::tiny() };
        let (model, varmap) = build_model(&cfg, 30, 3, &Device::Cpu).unwrap();
        let pairs = [
            TokenizedPair { src: vec![4, 5, 6, 7], tgt: vec![8, 9, 10] },
            TokenizedPair { src: vec![11, 12], tgt: vec![13, 14, 15, 16, 17] },
        ];
        let batch = collate(&pairs.iter().collect::<Vec<_>>(), TOKEN_IDS, &Device::Cpu).unwrap();
        let mut rng = locus_model::DropoutRng::new(0);
        let logits = model.forward(&batch.src, &batch.tgt_in, Some(&mut rng)).unwrap();
        let sums = label_smoothed_cross_entropy(
            &logits.flatten_to(1).unwrap(),
            &batch.tgt_out.flatten_all().unwrap(),
            TOKEN_IDS.pad,
            0.1,
        )
        .unwrap();
        let grads = sums.smoothed.backward().unwrap();
        let vars = varmap.data().lock().unwrap().clone();
        // Embeddings (1 shared or 3), 2 position tables, 2 encoder layers of 16 tensors
        // (4 projections and 2 feed-forward linears with bias, 2 norms), 2 decoder layers of 26,
        // and the 2 final norms of pre-norm stacks.
        let embeddings = if tie_embeddings { 1 } else { 3 };
        let final_norms = if norm == NormPosition::Pre { 4 } else { 0 };
        assert_eq!(vars.len(), embeddings + 2 + 2 * 16 + 2 * 26 + final_norms);
        for (name, var) in vars {
            let grad = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{name}: no gradient"));
            let grad_norm = grad.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(grad_norm > 0.0, "{name}: zero gradient");
        }
    }
}

/// Gradient accumulation: two micro-batches of two sentences each (`update_freq = 2`) give the
/// same per-token gradient, loss and next weights as one batch of all four, within 1e-5.
#[test]
fn accumulating_two_halves_equals_one_full_batch() {
    let cfg = ModelConfig { dropout: 0.0, ..ModelConfig::tiny() };
    let pairs = [
        TokenizedPair { src: vec![4, 5, 6, 7], tgt: vec![8, 9, 10] },
        TokenizedPair { src: vec![11, 12], tgt: vec![13, 14, 15, 16, 17] },
        TokenizedPair { src: vec![5, 5, 9], tgt: vec![20, 21] },
        TokenizedPair { src: vec![6, 7, 8, 9, 10, 11], tgt: vec![12, 13, 14, 15] },
    ];
    let refs: Vec<&TokenizedPair> = pairs.iter().collect();
    let batch = |rows: &[&TokenizedPair]| collate(rows, TOKEN_IDS, &Device::Cpu).unwrap();
    let params =
        AdamParams { kind: OptimizerKind::Adamw, beta1: 0.9, beta2: 0.98, eps: 1e-8, weight_decay: 0.01 };
    let options = StepOptions { lr: 1e-3, clip_norm: 0.0, label_smoothing: 0.1 };

    // Per-token gradients and losses, and the weights after two updates, of each batching.
    let run = |micro_batches: Vec<TensorBatch>| {
        let (model, varmap) = build_model(&cfg, 30, 3, &Device::Cpu).unwrap();
        let mut optimizer = Adam::for_varmap(&varmap, params).unwrap();
        let mut grads = optimizer.zero_gradients();
        let mut rng = DropoutRng::new(0);
        let losses =
            accumulate_gradients(&model, &optimizer, &micro_batches, 0.1, None, &mut rng, &mut grads)
                .unwrap();
        let mut names: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
        names.sort();
        let per_token: Vec<(String, Vec<f32>)> = names
            .iter()
            .map(|name| {
                let grad = optimizer.gradient(&grads, name).unwrap();
                let grad = (grad / losses.target_tokens as f64).unwrap();
                (name.clone(), grad.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            })
            .collect();
        for _ in 0..2 {
            train_step(&SingleProcess, &model, &mut optimizer, &micro_batches, options, &mut rng, None)
                .unwrap();
        }
        let weights: Vec<(String, Vec<f32>)> = names
            .iter()
            .map(|name| {
                let var = varmap.data().lock().unwrap()[name].clone();
                (name.clone(), var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap())
            })
            .collect();
        (losses.read().unwrap().0 / losses.target_tokens as f64, per_token, weights)
    };
    let (full_loss, full_grads, full_weights) = run(vec![batch(&refs)]);
    let (half_loss, half_grads, half_weights) = run(vec![batch(&refs[..2]), batch(&refs[2..])]);
    assert!((full_loss - half_loss).abs() < 1e-5, "loss {full_loss} vs {half_loss}");
    let max_difference =
        |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    for ((name, full), (_, half)) in full_grads.iter().zip(&half_grads) {
        let worst = max_difference(full, half);
        assert!(worst < 1e-5, "gradient of {name}: differs by {worst}");
    }
    // Key biases are left out of the weight comparison: softmax is invariant to adding q·b_k to
    // a whole row of scores, so their true gradient is zero, and Adam scales the rounding
    // noise that stands in for it into steps of up to lr.
    for ((name, full), (_, half)) in full_weights.iter().zip(&half_weights) {
        let worst = max_difference(full, half);
        assert!(name.ends_with("k_proj.bias") || worst < 1e-5, "weights of {name}: differ by {worst}");
    }
}
