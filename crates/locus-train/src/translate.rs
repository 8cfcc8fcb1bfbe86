//! Batched greedy translation of plain-text lines.

use candle_core::Tensor;
use locus_data::SubwordTokenizer;
use locus_model::{greedy_decode, GreedyOptions, Seq2Seq};

use crate::batch::pad_rows;
use crate::error::Result;

/// Translates lines with a model and its tokenizer.
pub struct Translator<'a> {
    model: &'a Seq2Seq,
    tokenizer: &'a SubwordTokenizer,
    /// Output length limits.
    pub options: GreedyOptions,
    /// Sentences decoded together.
    pub batch_size: usize,
}

impl<'a> Translator<'a> {
    /// A translator with default limits and batches of 64 sentences.
    pub fn new(model: &'a Seq2Seq, tokenizer: &'a SubwordTokenizer) -> Self {
        Self { model, tokenizer, options: GreedyOptions::default(), batch_size: 64 }
    }

    /// Translates `lines`, returning one detokenized line per input line, in input order.
    /// Blank lines translate to empty lines. Sentences are decoded in batches of similar
    /// length.
    pub fn translate<S: AsRef<str>>(&self, lines: &[S]) -> Result<Vec<String>> {
        let eos = self.model.tokens().eos;
        let encoded: Vec<Vec<u32>> = lines
            .iter()
            .map(|line| {
                let line = line.as_ref().trim();
                if line.is_empty() {
                    Ok(Vec::new())
                } else {
                    self.tokenizer.encode(line)
                }
            })
            .collect::<std::result::Result<_, _>>()?;
        let mut order: Vec<usize> = (0..lines.len()).filter(|&i| !encoded[i].is_empty()).collect();
        order.sort_by_key(|&i| encoded[i].len());
        let mut outputs = vec![String::new(); lines.len()];
        for chunk in order.chunks(self.batch_size.max(1)) {
            let rows: Vec<Vec<u32>> =
                chunk.iter().map(|&i| encoded[i].iter().copied().chain([eos]).collect()).collect();
            let src: Tensor = pad_rows(&rows, self.model.tokens().pad, self.model.device())?;
            let lens: Vec<usize> = chunk.iter().map(|&i| encoded[i].len()).collect();
            let hyps = greedy_decode(self.model, &src, &lens, &self.options)?;
            for (&i, hyp) in chunk.iter().zip(hyps) {
                outputs[i] = self.tokenizer.decode(&hyp)?;
            }
        }
        Ok(outputs)
    }
}
