//! Decoding: turning a trained model's next-token distributions into output sentences.
//!
//! - [`greedy`]: the most probable token at every step, batched, with the key/value cache;
//! - [`continuous`]: greedy search in a batch that sentences join and leave between steps
//!   (continuous batching, for a server);
//! - [`beam`]: beam search (Sutskever et al. 2014; fairseq's `SequenceGenerator`) with the
//!   GNMT length penalty (Wu et al. 2016, <https://arxiv.org/abs/1609.08144>) and n-best lists;
//! - [`sampling`]: ancestral sampling with temperature, top-k (Fan et al. 2018) and top-p
//!   (Holtzman et al. 2020), seeded.
//!
//! Beam search and sampling drive a [`Scorer`]: anything that gives next-token logits
//! (log-probabilities up to a constant per row) for a batch of rows and can reorder or drop
//! rows. [`Seq2SeqScorer`] is the
//! model with its cache; tests use hand-built distributions.

pub mod beam;
pub mod continuous;
pub mod greedy;
pub mod phases;
pub mod sampling;
pub mod top_k;

use candle_core::{Device, Tensor};

use crate::decoder::DecoderCache;
use crate::error::Result;
use crate::transformer::{Memory, Seq2Seq};

/// How long outputs may be, as fairseq's `--max-len-a`, `--max-len-b` and `--min-len`: a limit
/// relative to the source length. A caller may cap it lower per sentence (a fixed `--max-len`,
/// a `learned` decoder table) by passing its own limits, e.g. to
/// [`greedy_decode_to`](greedy::greedy_decode_to).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LengthLimits {
    /// Output length limit per source token.
    pub max_len_a: f64,
    /// Constant part of the limit: an output stops after `floor(max_len_a * source_len +
    /// max_len_b)` tokens (EOS excluded) if it has not ended.
    pub max_len_b: usize,
    /// EOS is not allowed before this many tokens.
    pub min_len: usize,
}

impl Default for LengthLimits {
    fn default() -> Self {
        Self { max_len_a: 1.5, max_len_b: 10, min_len: 0 }
    }
}

impl LengthLimits {
    /// Longest output allowed for a source of `source_len` tokens (EOS excluded).
    pub fn max_len(&self, source_len: usize) -> usize {
        (self.max_len_a * source_len as f64 + self.max_len_b as f64).floor() as usize
    }
}

/// Added to log-probabilities `(rows, vocab)` to forbid EOS (before a minimum length):
/// `-inf` at EOS, 0 elsewhere, `(vocab,)` in the model's dtype.
pub(crate) fn eos_ban(model: &Seq2Seq) -> Result<Tensor> {
    let mut ban = vec![0f32; model.vocab_size()];
    ban[model.tokens().eos as usize] = f32::NEG_INFINITY;
    Ok(Tensor::new(ban, model.device())?.to_dtype(model.dtype())?)
}

/// One output of a search.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Hypothesis {
    /// Output tokens, without BOS and EOS.
    pub tokens: Vec<u32>,
    /// Sum of the natural-log probabilities of the tokens and the final EOS.
    pub log_prob: f64,
    /// The score the search ranks by: `log_prob` divided by the length penalty in beam search,
    /// `log_prob` itself in greedy search and sampling.
    pub score: f64,
}

/// Next-token log-probabilities for a batch of rows (sentences, or beams of sentences).
pub trait Scorer {
    /// Size of the vocabulary.
    fn vocab_size(&self) -> usize;

    /// Appends each row's latest token (`tokens[r]` for row `r`; BOS at the first step) and
    /// returns the logits of the next token, its log-probabilities up to a constant per row:
    /// a `(rows, vocab_size)` tensor on the scorer's device, left there for the search to
    /// normalise and select from (beam search never writes the whole normalised matrix).
    fn step(&mut self, tokens: &[u32]) -> Result<Tensor>;

    /// Keeps the rows `rows` for the following steps, in that order (repeats allowed).
    fn select_rows(&mut self, rows: &[u32]) -> Result<()>;
}

/// A [`Seq2Seq`] decoding a batch of encoded sources with its key/value cache.
pub struct Seq2SeqScorer<'a> {
    model: &'a Seq2Seq,
    memory: Memory,
    cache: DecoderCache,
}

impl<'a> Seq2SeqScorer<'a> {
    /// Encodes `src` (`(b_sz, src_len)` right-padded ids, each row ending in EOS); row `i`
    /// starts as sentence `i`.
    pub fn new(model: &'a Seq2Seq, src: &Tensor) -> Result<Self> {
        let memory = phases::encoding(|| model.encode(src, None))?.detach();
        Ok(Self { model, memory, cache: model.new_cache() })
    }

    fn device(&self) -> &Device {
        self.model.device()
    }
}

impl Scorer for Seq2SeqScorer<'_> {
    fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }

    fn step(&mut self, tokens: &[u32]) -> Result<Tensor> {
        let input = Tensor::from_slice(tokens, (tokens.len(), 1), self.device())?;
        let logits = phases::decoder_step(|| self.model.decode_step(&input, &self.memory, &mut self.cache))?;
        // Detached, so that the step's intermediate tensors are freed as it returns.
        Ok(logits.detach())
    }

    /// Reorders the self-attention cache; the hypotheses of one source share its encoder
    /// memory and cross-attention keys and values ([`Seq2Seq::select_rows`]).
    fn select_rows(&mut self, rows: &[u32]) -> Result<()> {
        self.model.select_rows(&mut self.memory, &mut self.cache, rows)
    }
}
