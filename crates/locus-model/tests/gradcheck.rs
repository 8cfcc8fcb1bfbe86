//! Finite-difference checks of every layer's backward pass.
//!
//! Each check builds a layer in f64, defines the scalar `f = sum(layer(x) * r)` for a fixed
//! random `r`, and compares candle's gradient `df/dw` with the central difference
//! `(f(w + h) - f(w - h)) / 2h` at sampled elements of every weight. With h = 1e-5 in f64 the
//! difference is accurate to about h² ≈ 1e-10 relative, so a 1e-6 tolerance leaves room only
//! for rounding: a missing or wrong backward (candle's fused layer norm and softmax have none)
//! fails by orders of magnitude.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
mod common;

use locus_model::attention::MultiHeadAttention;
use locus_model::feed_forward::FeedForward;
use locus_model::mask::causal_bias;
use locus_model::norm::LayerNorm;
use locus_model::positional::LayerPositions;
use locus_model::{Activation, ModelConfig, SeededVarMap, Seq2Seq, TokenIds};

const H: f64 = 1e-5;

fn random(shape: &[usize], seed: u64) -> Tensor {
    let varmap = VarMap::new();
    let vb = SeededVarMap::var_builder(&varmap, seed, DType::F64, &Device::Cpu);
    vb.get_with_hints(shape, "r", candle_nn::Init::Randn { mean: 0.0, stdev: 1.0 }).unwrap()
}

/// Checks d(sum(forward() * r))/dw at the first, a middle and the last element of every
/// variable in `varmap`.
fn check(varmap: &VarMap, forward: impl Fn() -> Tensor) {
    check_elements(varmap, forward, &[0.0, 0.5, 1.0])
}

/// Checks d(sum(forward() * r))/dw at the given fractions of every variable's length.
fn check_elements(varmap: &VarMap, forward: impl Fn() -> Tensor, fractions: &[f64]) {
    let out = forward();
    let r = random(out.dims(), 99);
    let f = || (forward() * &r).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
    let loss = (out * &r).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let mut vars: Vec<(String, Var)> = varmap.data().lock().unwrap().clone().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!vars.is_empty());
    for (name, var) in vars {
        let grad = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
        let grad: Vec<f64> = grad.flatten_all().unwrap().to_vec1().unwrap();
        let original: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let n = original.len();
        for k in fractions.iter().map(|f| ((n - 1) as f64 * f) as usize) {
            let mut shifted = original.clone();
            let mut at = |delta: f64| {
                shifted[k] = original[k] + delta;
                var.set(&Tensor::from_vec(shifted.clone(), var.shape(), &Device::Cpu).unwrap()).unwrap();
                f()
            };
            let numeric = (at(H) - at(-H)) / (2.0 * H);
            var.set(&Tensor::from_vec(original.clone(), var.shape(), &Device::Cpu).unwrap()).unwrap();
            let tolerance = 1e-6 * (1.0 + numeric.abs());
            assert!(
                (numeric - grad[k]).abs() < tolerance,
                "{name}[{k}]: analytic {} vs numeric {numeric}",
                grad[k]
            );
        }
    }
}

fn f64_builder(varmap: &VarMap, seed: u64) -> VarBuilder<'static> {
    SeededVarMap::var_builder(varmap, seed, DType::F64, &Device::Cpu)
}

#[test]
fn layer_norm_gradient() {
    let varmap = VarMap::new();
    let vb = f64_builder(&varmap, 1);
    let norm = LayerNorm::new(6, 1e-5, vb.pp("norm")).unwrap();
    // Non-trivial weight and bias so their gradients differ from plain sums.
    for var in varmap.all_vars() {
        var.set(&random(var.dims(), 5)).unwrap();
    }
    let xs = random(&[2, 3, 6], 2);
    check(&varmap, || norm.forward(&xs).unwrap());
}

#[test]
fn attention_gradient_with_causal_bias() {
    let varmap = VarMap::new();
    let vb = f64_builder(&varmap, 3);
    let cfg = ModelConfig { d_model: 8, n_heads: 2, ..ModelConfig::tiny() };
    let attn = MultiHeadAttention::new(&cfg, vb.pp("attn")).unwrap();
    let xs = random(&[2, 4, 8], 4);
    let bias = causal_bias(4, 0, DType::F64, &Device::Cpu).unwrap();
    check(&varmap, || {
        let kv = attn.key_values(&xs, LayerPositions::default()).unwrap();
        attn.forward(&xs, &kv, None, Some(&bias), LayerPositions::default(), None, None).unwrap()
    });
}

#[test]
fn feed_forward_gradient_relu_and_gelu() {
    for activation in [Activation::Relu, Activation::Gelu] {
        let varmap = VarMap::new();
        let vb = f64_builder(&varmap, 6);
        let cfg = ModelConfig { d_model: 8, d_ff: 16, activation, ..ModelConfig::tiny() };
        let ffn = FeedForward::new(&cfg, vb.pp("ffn")).unwrap();
        let xs = random(&[2, 3, 8], 7);
        check(&varmap, || ffn.forward(&xs, None).unwrap());
    }
}

/// The whole model, for every positional encoding and option (f64, one layer per stack).
#[test]
fn whole_model_gradient_for_every_variant() {
    for (name, variant) in common::variants() {
        let varmap = VarMap::new();
        let vb = f64_builder(&varmap, 8);
        let cfg = ModelConfig {
            d_model: 16,
            n_heads: 2,
            d_ff: 16,
            encoder_layers: 1,
            decoder_layers: 1,
            ..variant
        };
        let tokens = TokenIds { pad: 0, bos: 1, eos: 2 };
        let model = Seq2Seq::new(&cfg, 11, tokens, vb).unwrap_or_else(|e| panic!("{name}: {e}"));
        let src = Tensor::new(&[[5u32, 6, 7, 8, 9, 2], [8, 9, 2, 0, 0, 0]], &Device::Cpu).unwrap();
        let tgt = Tensor::new(&[[1u32, 4, 10, 3], [1, 3, 0, 0]], &Device::Cpu).unwrap();
        // One element per variable keeps 12 whole-model checks fast; the layer tests above
        // check three.
        check_elements(&varmap, || model.forward(&src, &tgt, None).unwrap(), &[0.5]);
    }
}
