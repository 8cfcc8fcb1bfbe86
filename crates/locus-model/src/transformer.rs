//! The encoder-decoder model: embeddings, positional encodings, both stacks and the output
//! projection, with full (teacher-forced) and incremental (cached) decoding.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::attention::AttentionMaps;
use crate::config::ModelConfig;
use crate::decoder::{Decoder, DecoderCache, MemoryRef};
use crate::dropout::DropoutRng;
use crate::encoder::Encoder;
use crate::error::Result;
use crate::linear::Quantization;
use crate::mask::{padding_bias, MASKED};
use crate::ops::Int8Linear;
use crate::positional::RopeScaling;

/// Ids of the special tokens the model relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenIds {
    /// Padding: masked out of attention and of the loss.
    pub pad: u32,
    /// Begin-of-sentence: the first decoder input.
    pub bos: u32,
    /// End-of-sentence: ends every source and every target.
    pub eos: u32,
}

/// The encoder's output for a batch, with the padding bias cross-attention needs.
#[derive(Debug, Clone)]
pub struct Memory {
    /// `(b_sz, src_len, d_model)`.
    pub hidden: Tensor,
    /// `(b_sz, 1, 1, src_len)`: hides source padding.
    pub padding_bias: Tensor,
}

impl Memory {
    fn as_ref(&self) -> MemoryRef<'_> {
        MemoryRef { hidden: &self.hidden, padding_bias: &self.padding_bias, rows: None }
    }

    /// The same memory, cut from the encoder's autograd graph, so that holding it while
    /// decoding does not keep every encoder intermediate alive (see [`KeyValues::detach`]).
    ///
    /// [`KeyValues::detach`]: crate::attention::KeyValues::detach
    pub fn detach(&self) -> Memory {
        Memory { hidden: self.hidden.detach(), padding_bias: self.padding_bias.detach() }
    }

    /// `self`'s rows, then `other`'s; the shorter sources are padded (hidden states of zero,
    /// hidden by the padding bias) to the longer ones' length.
    pub fn cat_rows(&self, other: &Memory) -> Result<Memory> {
        let len = self.hidden.dim(1)?.max(other.hidden.dim(1)?);
        let padded = |memory: &Memory| -> Result<(Tensor, Tensor)> {
            let (b_sz, src_len, _) = memory.hidden.dims3()?;
            let extra = len - src_len;
            let bias = &memory.padding_bias;
            let masked =
                Tensor::full(MASKED as f32, (b_sz, 1, 1, extra), bias.device())?.to_dtype(bias.dtype())?;
            Ok((memory.hidden.pad_with_zeros(1, 0, extra)?, Tensor::cat(&[bias, &masked], 3)?))
        };
        let ((hidden, bias), (other_hidden, other_bias)) = (padded(self)?, padded(other)?);
        Ok(Memory {
            hidden: Tensor::cat(&[hidden, other_hidden], 0)?,
            padding_bias: Tensor::cat(&[bias, other_bias], 0)?,
        })
    }

    /// Keeps the batch rows `rows` (a `u32` index tensor, repeats allowed), in that order.
    pub fn select_rows(&self, rows: &Tensor) -> Result<Memory> {
        Ok(Memory {
            hidden: self.hidden.index_select(rows, 0)?,
            padding_bias: self.padding_bias.index_select(rows, 0)?,
        })
    }
}

/// The token embedding tables and the output projection that may share them.
#[derive(Debug, Clone)]
struct Embeddings {
    source: Tensor,
    target: Tensor,
    output: Tensor,
    /// Zeros, when `output` is packed for decoding ([`decoding_layout`](crate::ops::decoding_layout)),
    /// which takes its number of channels from a bias.
    output_bias: Option<Tensor>,
    /// `output` quantized, in a model quantized for decoding.
    output_int8: Option<Arc<Int8Linear>>,
}

impl Embeddings {
    fn new(cfg: &ModelConfig, vocab_size: usize, vb: &VarBuilder) -> candle_core::Result<Self> {
        // Normal(0, width^-1/2), as fairseq: scaled by sqrt(d_model) they have about unit variance.
        let table = |name: &str, width: usize| {
            let init = Init::Randn { mean: 0.0, stdev: (width as f64).powf(-0.5) };
            vb.get_with_hints((vocab_size, width), name, init)
        };
        if cfg.tie_embeddings {
            let shared = table("embed.weight", cfg.d_model)?;
            Ok(Self {
                source: shared.clone(),
                target: shared.clone(),
                output: shared,
                output_bias: None,
                output_int8: None,
            })
        } else {
            Ok(Self {
                source: table("encoder.embed.weight", cfg.encoder_positional().token_width(cfg.d_model))?,
                target: table("decoder.embed.weight", cfg.decoder_positional().token_width(cfg.d_model))?,
                output: table("output_projection.weight", cfg.d_model)?,
                output_bias: None,
                output_int8: None,
            })
        }
    }
}

/// `table[ids]`: `(b_sz, seq_len)` ids to `(b_sz, seq_len, d_model)` vectors.
fn lookup(table: &Tensor, ids: &Tensor) -> candle_core::Result<Tensor> {
    let (b_sz, seq_len) = ids.dims2()?;
    let d_model = table.dim(1)?;
    table.index_select(&ids.flatten_all()?, 0)?.reshape((b_sz, seq_len, d_model))
}

/// An encoder-decoder Transformer over one joint vocabulary.
#[derive(Debug, Clone)]
pub struct Seq2Seq {
    cfg: ModelConfig,
    tokens: TokenIds,
    vocab_size: usize,
    embeddings: Embeddings,
    embed_scale: f64,
    encoder: Encoder,
    decoder: Decoder,
}

impl Seq2Seq {
    /// Builds the model described by `cfg` (validated here) for a vocabulary of `vocab_size`
    /// tokens, creating or loading its weights through `vb`.
    ///
    /// # Errors
    /// An invalid config, or weights of the wrong shape in `vb`.
    pub fn new(cfg: &ModelConfig, vocab_size: usize, tokens: TokenIds, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let embeddings = Embeddings::new(cfg, vocab_size, &vb)?;
        Ok(Self {
            cfg: cfg.clone(),
            tokens,
            vocab_size,
            embeddings,
            embed_scale: if cfg.scale_embeddings { (cfg.d_model as f64).sqrt() } else { 1.0 },
            encoder: Encoder::new(cfg, vb.pp("encoder"))?,
            decoder: Decoder::new(cfg, vb.pp("decoder"))?,
        })
    }

    /// A copy of this model for decoding. With [`Quantization::None`], on the CPU, every linear
    /// layer's weight and the output projection are copied into panels of 64 output channels
    /// ([`decoding_layout`](crate::ops::decoding_layout)), which the fused products read in
    /// order, the fastest layout at the few rows of a decoding step; it computes what this
    /// model computes (up to the rounding of a different summation order).
    /// With [`Quantization::Int8`], those weights are quantized instead ([`Int8Linear`]), and
    /// the products are int8 ones. The other parameters are shared. The copy does not follow
    /// later updates of the copied weights: it is for a model that no longer trains.
    ///
    /// # Errors
    /// Out of memory for the copies; int8 on a device other than the CPU.
    pub fn for_inference(&self, quantization: Quantization) -> Result<Self> {
        let embeddings = match quantization {
            Quantization::None => {
                let output = crate::ops::decoding_layout(&self.embeddings.output)?;
                let output_bias = match output.rank() {
                    2 => None,
                    _ => Some(Tensor::zeros(self.vocab_size, output.dtype(), output.device())?),
                };
                Embeddings { output, output_bias, ..self.embeddings.clone() }
            }
            Quantization::Int8 => Embeddings {
                output_int8: Some(Arc::new(Int8Linear::quantize(&self.embeddings.output, None)?)),
                ..self.embeddings.clone()
            },
        };
        Ok(Self {
            embeddings,
            encoder: self.encoder.map_layers(|layer| layer.for_inference(quantization))?,
            decoder: self.decoder.map_layers(|layer| layer.for_inference(quantization))?,
            ..self.clone()
        })
    }

    /// A copy of this model whose RoPE stacks read positions stretched by `scaling`
    /// ([`RopeScaling`]: position interpolation, NTK-aware or YaRN), to decode sentences longer
    /// than those it was trained on; the weights are shared. A stack with another encoding is
    /// left as it is.
    ///
    /// # Errors
    /// [`ModelError::Config`](crate::ModelError::Config) when neither stack uses RoPE.
    pub fn with_rope_scaling(&self, scaling: RopeScaling) -> Result<Self> {
        let encoder = self.encoder.with_rope_scaling(scaling);
        let decoder = self.decoder.with_rope_scaling(scaling);
        if encoder.is_none() && decoder.is_none() {
            return Err(crate::ModelError::Config(format!(
                "rope scaling {scaling} needs a rope encoding, but the encoder uses {} and the decoder {}",
                self.cfg.encoder_positional().kind(),
                self.cfg.decoder_positional().kind()
            )));
        }
        Ok(Self {
            encoder: encoder.unwrap_or_else(|| self.encoder.clone()),
            decoder: decoder.unwrap_or_else(|| self.decoder.clone()),
            ..self.clone()
        })
    }

    /// The architecture.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The special token ids.
    pub fn tokens(&self) -> TokenIds {
        self.tokens
    }

    /// Size of the (joint) vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The data type of the weights.
    pub fn dtype(&self) -> DType {
        self.embeddings.output.dtype()
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        self.embeddings.output.device()
    }

    /// The encoder stack.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// The decoder stack.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// Encodes a batch of source sentences (right-padded with the pad id).
    ///
    /// # Shapes
    /// `src`: `(b_sz, src_len)` `u32` ids.
    pub fn encode(&self, src: &Tensor, rng: Option<&mut DropoutRng>) -> Result<Memory> {
        self.encode_shifted(src, 0, rng)
    }

    /// Encodes with every source position shifted by `offset` (the first token sits at
    /// position `offset`): relative encodings must not notice, absolute ones do.
    ///
    /// # Shapes
    /// `src`: `(b_sz, src_len)` `u32` ids.
    pub fn encode_shifted(
        &self,
        src: &Tensor,
        offset: usize,
        mut rng: Option<&mut DropoutRng>,
    ) -> Result<Memory> {
        if let Some(rng) = rng.as_deref_mut() {
            rng.seed_device(self.device())?;
        }
        self.encode_recorded(src, offset, rng, None)
    }

    /// [`Seq2Seq::encode_shifted`], pushing each layer's attention probabilities onto `maps`.
    fn encode_recorded(
        &self,
        src: &Tensor,
        offset: usize,
        rng: Option<&mut DropoutRng>,
        maps: Option<&mut AttentionMaps>,
    ) -> Result<Memory> {
        let padding_bias = padding_bias(src, self.tokens.pad, self.dtype())?;
        let tokens = (lookup(&self.embeddings.source, src)? * self.embed_scale)?;
        let hidden = self.encoder.forward(&tokens, &padding_bias, offset, rng, maps)?;
        Ok(Memory { hidden, padding_bias })
    }

    /// Projects decoder states onto the vocabulary.
    fn project(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(match (&self.embeddings.output_int8, &self.embeddings.output_bias) {
            (Some(output), _) => output.forward(hidden, false)?,
            (None, Some(bias)) => crate::ops::linear(hidden, &self.embeddings.output, bias)?,
            (None, None) => crate::ops::linear_without_bias(hidden, &self.embeddings.output)?,
        })
    }

    /// Teacher-forced decoding of whole target prefixes: logits for every position.
    ///
    /// # Shapes
    /// `tgt_in`: `(b_sz, tgt_len)` ids starting with BOS; returns `(b_sz, tgt_len, vocab)`.
    pub fn decode(
        &self,
        tgt_in: &Tensor,
        memory: &Memory,
        mut rng: Option<&mut DropoutRng>,
    ) -> Result<Tensor> {
        if let Some(rng) = rng.as_deref_mut() {
            rng.seed_device(self.device())?;
        }
        self.decode_recorded(tgt_in, memory, rng, None)
    }

    /// [`Seq2Seq::decode`], pushing each layer's attention probabilities onto `maps`.
    fn decode_recorded(
        &self,
        tgt_in: &Tensor,
        memory: &Memory,
        rng: Option<&mut DropoutRng>,
        maps: Option<&mut AttentionMaps>,
    ) -> Result<Tensor> {
        let tokens = (lookup(&self.embeddings.target, tgt_in)? * self.embed_scale)?;
        let hidden = self.decoder.forward(&tokens, memory.as_ref(), None, rng, maps)?;
        self.project(&hidden)
    }

    /// The attention probabilities of the inference pass that encodes `src` and decodes
    /// `tgt_in` with teacher forcing (what the model attends to when it translates `src` into
    /// the target `tgt_in` continues), with the logits of that pass.
    ///
    /// # Shapes
    /// `src`: `(b_sz, src_len)`, `tgt_in`: `(b_sz, tgt_len)` `u32` ids (see [`AttentionMaps`]
    /// for the maps); the logits are `(b_sz, tgt_len, vocab)`.
    pub fn attention_maps(&self, src: &Tensor, tgt_in: &Tensor) -> Result<(AttentionMaps, Tensor)> {
        let mut maps = AttentionMaps::default();
        let memory = self.encode_recorded(src, 0, None, Some(&mut maps))?;
        let logits = self.decode_recorded(tgt_in, &memory, None, Some(&mut maps))?;
        Ok((maps, logits))
    }

    /// Encodes `src` and decodes `tgt_in` with teacher forcing: `(b_sz, tgt_len, vocab)` logits.
    ///
    /// While training (`rng` is `Some`), each stack whose absolute encoding has a
    /// `position_shift` first draws one SHAPE shift per sequence (`b_sz` words of `rng`), then
    /// its dropout masks: the encoder's draws come before the decoder's. Off the CPU, the
    /// encoder and the decoder each first reseed the device's generator from `rng`
    /// ([`DropoutRng::seed_device`]) and draw their masks there.
    pub fn forward(&self, src: &Tensor, tgt_in: &Tensor, mut rng: Option<&mut DropoutRng>) -> Result<Tensor> {
        let memory = self.encode(src, rng.as_deref_mut())?;
        self.decode(tgt_in, &memory, rng)
    }

    /// An empty key/value cache for [`Seq2Seq::decode_step`].
    pub fn new_cache(&self) -> DecoderCache {
        DecoderCache::new(self.decoder.layers().len())
    }

    /// Adds the sentences encoded in `joining` to a batch being decoded incrementally with
    /// `memory` and `cache`, after its rows: they start decoding at the next step, each from
    /// its BOS, while the others go on (continuous batching, see [`DecoderCache::join`]).
    pub fn join(&self, memory: &mut Memory, cache: &mut DecoderCache, joining: &Memory) -> Result<()> {
        let cross = match cache.offset() {
            0 => None,
            _ => Some(self.decoder.cross_key_values(&joining.hidden)?),
        };
        cache.join(memory.hidden.dim(0)?, joining.hidden.dim(0)?, cross)?;
        *memory = memory.cat_rows(joining)?;
        Ok(())
    }

    /// Keeps the rows `rows` (repeats allowed), in that order, of a batch decoded
    /// incrementally with `memory` and `cache`: beam search's reordering and widening, and
    /// finished sentences leaving. Rows decoding one source share its memory row and
    /// cross-attention keys and values, which move only when fewer than half of them are still
    /// read ([`DecoderCache::select_rows`]).
    pub fn select_rows(&self, memory: &mut Memory, cache: &mut DecoderCache, rows: &[u32]) -> Result<()> {
        if let Some(kept) = cache.select_rows(rows)? {
            *memory = memory.select_rows(&Tensor::new(kept.as_slice(), memory.hidden.device())?)?;
        }
        Ok(())
    }

    /// Incremental decoding (inference only): feeds the next token of every sentence and returns
    /// its logits, reusing the keys and values of earlier steps from `cache`.
    ///
    /// # Shapes
    /// `tokens`: `(b_sz, 1)`; returns `(b_sz, vocab)`.
    pub fn decode_step(&self, tokens: &Tensor, memory: &Memory, cache: &mut DecoderCache) -> Result<Tensor> {
        let tokens = (lookup(&self.embeddings.target, tokens)? * self.embed_scale)?;
        let hidden = self.decoder.forward(&tokens, memory.as_ref(), Some(cache), None, None)?;
        Ok(self.project(&hidden)?.squeeze(1)?)
    }
}
