//! `--quantize` of the commands that decode (`translate`, `evaluate`, `bench translate`,
//! `serve`): how the model's copy for decoding stores its linear layers.

use anyhow::{Context, Result};
use clap::Args;
use locus_model::{Quantization, Seq2Seq};

/// How to store the weights for decoding.
#[derive(Args, Debug, Clone, Copy)]
pub struct QuantizeArgs {
    /// none, or int8: every linear layer and the output projection in 8-bit integers (weights
    /// per output channel, inputs per row at each product), on the CPU only; faster, and
    /// within quantization error of the f32 model.
    #[arg(long, default_value_t = Quantization::None)]
    pub quantize: Quantization,
}

impl QuantizeArgs {
    /// `model`'s copy for decoding ([`Seq2Seq::for_inference`]), quantized as asked.
    pub fn for_inference(&self, model: &Seq2Seq) -> Result<Seq2Seq> {
        model.for_inference(self.quantize).with_context(|| format!("--quantize {}", self.quantize))
    }
}
