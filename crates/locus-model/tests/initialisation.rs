//! A new model's weights are drawn as fairseq draws them (its `TransformerModel`): attention
//! inputs Xavier-uniform at gain 1/√2 with `nn.Linear`'s bias, the attention output
//! Xavier-uniform with a zero bias, feed-forward layers as PyTorch's `nn.Linear`. Locus drew
//! every linear layer Xavier-uniform until 2026-12-07 and learned Multi30k 0.4 nats a token
//! slower than fairseq's recipe by update 300 (README, Results).

use candle_core::{DType, Device};
use candle_nn::VarMap;
use locus_model::{ModelConfig, SeededVarMap, Seq2Seq, TokenIds};

/// What a weight's elements must look like: uniform in `±bound` (the largest draw within 5%
/// of the bound), or all zero.
#[derive(Debug, Clone, Copy)]
enum Expected {
    Uniform { bound: f64 },
    Zero,
}

/// The expected draw of the variable `name` in a model of width `d` and feed-forward width
/// `d_ff`, or `None` for variables that are not linear layers.
fn expected(name: &str, d: f64, d_ff: f64) -> Option<Expected> {
    let xavier = |gain: f64, fan_in: f64, fan_out: f64| Expected::Uniform {
        bound: gain * (6.0 / (fan_in + fan_out)).sqrt(),
    };
    let pytorch = |fan_in: f64| Expected::Uniform { bound: fan_in.powf(-0.5) };
    let (layer, param) = name.rsplit_once('.')?;
    let layer = layer.rsplit('.').next()?;
    Some(match (layer, param) {
        ("q_proj" | "k_proj" | "v_proj", "weight") => xavier(std::f64::consts::FRAC_1_SQRT_2, d, d),
        ("q_proj" | "k_proj" | "v_proj", "bias") => pytorch(d),
        ("out_proj", "weight") => xavier(1.0, d, d),
        ("out_proj", "bias") => Expected::Zero,
        ("fc1", _) => pytorch(d),
        ("fc2", _) => pytorch(d_ff),
        _ => return None,
    })
}

#[test]
fn linear_layers_are_initialised_as_fairseq() {
    let cfg = ModelConfig { d_model: 128, d_ff: 256, ..ModelConfig::tiny() };
    let varmap = VarMap::new();
    let vb = SeededVarMap::var_builder(&varmap, 1, DType::F32, &Device::Cpu);
    Seq2Seq::new(&cfg, 50, TokenIds { pad: 0, bos: 1, eos: 2 }, vb).unwrap();
    let mut checked = 0;
    for (name, var) in varmap.data().lock().unwrap().iter() {
        let Some(want) = expected(name, cfg.d_model as f64, cfg.d_ff as f64) else { continue };
        let values = var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let largest = values.iter().fold(0f64, |m, &x| m.max(f64::from(x.abs())));
        match want {
            Expected::Uniform { bound } => assert!(
                largest <= bound * (1.0 + 1e-6) && largest >= 0.95 * bound,
                "{name}: largest |x| {largest}, expected uniform in ±{bound}"
            ),
            Expected::Zero => assert_eq!(largest, 0.0, "{name}: expected zeros"),
        }
        checked += 1;
    }
    // 2 encoder layers (self-attention and feed-forward), 2 decoder layers (self-attention,
    // cross-attention and feed-forward): 4 projections × 2 parameters per attention, 2 layers
    // × 2 parameters per feed-forward block.
    assert_eq!(checked, 2 * (8 + 4) + 2 * (16 + 4));
}
