//! One training step must give every trainable variable a non-zero gradient: a layer whose
//! backward is missing (candle's fused layer norm or softmax, say) shows up here as zeros.

use candle_core::Device;
use locus_data::TokenizedPair;
use locus_model::positional::Combine;
use locus_model::{ModelConfig, NormPosition, PositionalConfig};
use locus_train::batch::collate;
use locus_train::loss::label_smoothed_cross_entropy;
use locus_train::modeling::{build_model, TOKEN_IDS};

#[test]
fn every_variable_gets_a_nonzero_gradient() {
    let variants = [
        (
            NormPosition::Post,
            PositionalConfig::Learned { max_len: 16, combine: Combine::Add, d_pos: None, every_layer: false },
            true,
        ),
        (
            NormPosition::Pre,
            PositionalConfig::Learned { max_len: 16, combine: Combine::Add, d_pos: None, every_layer: false },
            false,
        ),
    ];
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
