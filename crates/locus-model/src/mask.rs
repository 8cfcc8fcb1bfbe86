//! Additive attention biases that hide padding and the future.
//!
//! A bias is added to the attention scores before the softmax: `0` keeps a key, a large
//! negative number removes it (its weight underflows to exactly zero in f32). Biases are made
//! in f32 and then converted: bf16 holds [`MASKED`] (rounded), f16 cannot and gets `-inf`,
//! which removes a key just as well (every query keeps at least one key: the BOS or EOS).

use candle_core::{DType, Device, Tensor};

/// The score given to keys that must not be attended to.
pub const MASKED: f64 = -1e9;

/// Hides padding keys: `(b_sz, 1, 1, seq_len)`, [`MASKED`] where `tokens == pad_id`, else 0.
///
/// # Shapes
/// `tokens`: `(b_sz, seq_len)` of `u32` token ids.
pub fn padding_bias(tokens: &Tensor, pad_id: u32, dtype: DType) -> candle_core::Result<Tensor> {
    let (b_sz, seq_len) = tokens.dims2()?;
    // In f16, MASKED itself would be -inf and 0 · -inf = NaN: multiply in f32, then convert.
    let is_pad = tokens.eq(pad_id)?.to_dtype(DType::F32)?;
    (is_pad * MASKED)?.to_dtype(dtype)?.reshape((b_sz, 1, 1, seq_len))
}

/// Hides the future: `(1, 1, q_len, past + q_len)` for `q_len` new queries after `past`
/// cached positions; query `i` sees keys `0..=past + i` (0), not later ones ([`MASKED`]).
pub fn causal_bias(q_len: usize, past: usize, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
    let k_len = past + q_len;
    let values: Vec<f32> = (0..q_len)
        .flat_map(|i| (0..k_len).map(move |j| if j > past + i { MASKED as f32 } else { 0.0 }))
        .collect();
    Tensor::from_vec(values, (1, 1, q_len, k_len), device)?.to_dtype(dtype)
}

/// Hides from each sequence the keys before its first token: `(b_sz, 1, 1, k_len)`,
/// [`MASKED`] at the key positions `j < origins[b]` of sequence `b`, else 0.
pub fn start_bias(
    origins: &[usize],
    k_len: usize,
    dtype: DType,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let values: Vec<f32> = origins
        .iter()
        .flat_map(|&origin| (0..k_len).map(move |j| if j < origin { MASKED as f32 } else { 0.0 }))
        .collect();
    Tensor::from_vec(values, (origins.len(), 1, 1, k_len), device)?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_bias_marks_pad_keys() {
        let tokens = Tensor::new(&[[5u32, 6, 0], [7, 0, 0]], &Device::Cpu).unwrap();
        let bias = padding_bias(&tokens, 0, DType::F32).unwrap();
        assert_eq!(bias.dims(), &[2, 1, 1, 3]);
        let rows = bias.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(rows, vec![0.0, 0.0, -1e9, 0.0, -1e9, -1e9]);
    }

    /// f16 cannot hold -1e9: masked keys get -inf, kept ones exactly 0 (not NaN).
    #[test]
    fn f16_padding_bias_is_zero_or_minus_infinity() {
        let tokens = Tensor::new(&[[5u32, 0]], &Device::Cpu).unwrap();
        let bias = padding_bias(&tokens, 0, DType::F16).unwrap();
        let rows = bias.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(rows, vec![0.0, f32::NEG_INFINITY]);
    }

    #[test]
    fn start_bias_hides_the_keys_before_each_sequence() {
        let bias = start_bias(&[0, 2], 3, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(bias.dims(), [2, 1, 1, 3]);
        let rows = bias.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(rows, vec![0.0, 0.0, 0.0, -1e9, -1e9, 0.0]);
    }

    #[test]
    fn causal_bias_hides_later_positions() {
        let bias = causal_bias(3, 0, DType::F32, &Device::Cpu).unwrap();
        let rows = bias.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(rows, vec![vec![0.0, -1e9, -1e9], vec![0.0, 0.0, -1e9], vec![0.0, 0.0, 0.0]]);
        // Two new queries after two cached positions.
        let bias = causal_bias(2, 2, DType::F32, &Device::Cpu).unwrap();
        let rows = bias.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(rows, vec![vec![0.0, 0.0, 0.0, -1e9], vec![0.0, 0.0, 0.0, 0.0]]);
    }
}
