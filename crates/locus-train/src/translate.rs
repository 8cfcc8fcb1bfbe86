//! Batched translation of plain-text lines: greedy search, beam search (with n-best lists) or
//! sampling, as [`Search`] says.

use candle_core::Tensor;
use locus_data::SubwordTokenizer;
use locus_model::{
    beam_search, greedy_decode, sample, BeamOptions, Hypothesis, LengthLimits, SamplingOptions, Seq2Seq,
    Seq2SeqScorer,
};

use crate::batch::pad_rows;
use crate::error::Result;

/// How translations are searched for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Search {
    /// The most probable token at each step.
    Greedy,
    /// Beam search.
    Beam(BeamOptions),
    /// Sampling.
    Sample(SamplingOptions),
}

/// One translation of a line, with its scores under the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    /// The detokenized text.
    pub text: String,
    /// What the search ranks by (natural log; length-normalised in beam search).
    pub score: f64,
    /// Natural-log probability of the output and its EOS.
    pub log_prob: f64,
    /// Output subword tokens (EOS excluded).
    pub length: usize,
}

/// Translates lines with a model and its tokenizer.
pub struct Translator<'a> {
    model: &'a Seq2Seq,
    tokenizer: &'a SubwordTokenizer,
    /// The search.
    pub search: Search,
    /// Output length limits.
    pub limits: LengthLimits,
    /// Sentences decoded together.
    pub batch_size: usize,
}

impl<'a> Translator<'a> {
    /// A greedy translator with default limits and batches of 64 sentences.
    pub fn new(model: &'a Seq2Seq, tokenizer: &'a SubwordTokenizer) -> Self {
        Self { model, tokenizer, search: Search::Greedy, limits: LengthLimits::default(), batch_size: 64 }
    }

    /// Translates `lines`, returning the best translation of each, in input order. Blank lines
    /// translate to empty lines.
    pub fn translate<S: AsRef<str>>(&self, lines: &[S]) -> Result<Vec<String>> {
        let nbest = self.translate_nbest(lines, 0)?;
        Ok(nbest.into_iter().map(|mut list| list.swap_remove(0).text).collect())
    }

    /// Translates `lines` into lists of translations, best first (one for greedy search, up to
    /// `nbest` for beam search, `samples` for sampling), in input order; `first_line` is the
    /// index of `lines[0]` in the whole input (it seeds sampling, so that samples do not depend
    /// on batching). A blank line gives one empty translation. Sentences are decoded in
    /// batches of similar length.
    pub fn translate_nbest<S: AsRef<str>>(
        &self,
        lines: &[S],
        first_line: usize,
    ) -> Result<Vec<Vec<Translation>>> {
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
        let empty = Translation { text: String::new(), score: 0.0, log_prob: 0.0, length: 0 };
        let mut outputs = vec![vec![empty]; lines.len()];
        for chunk in order.chunks(self.batch_size.max(1)) {
            let rows: Vec<Vec<u32>> =
                chunk.iter().map(|&i| encoded[i].iter().copied().chain([eos]).collect()).collect();
            let src: Tensor = pad_rows(&rows, self.model.tokens().pad, self.model.device())?;
            let lens: Vec<usize> = chunk.iter().map(|&i| encoded[i].len()).collect();
            let ids: Vec<usize> = chunk.iter().map(|&i| first_line + i).collect();
            for (&i, hyps) in chunk.iter().zip(self.search_batch(&src, &lens, &ids)?) {
                outputs[i] = hyps
                    .into_iter()
                    .map(|hyp| {
                        let text = self.tokenizer.decode(&hyp.tokens)?;
                        Ok(Translation {
                            text,
                            score: hyp.score,
                            log_prob: hyp.log_prob,
                            length: hyp.tokens.len(),
                        })
                    })
                    .collect::<Result<_>>()?;
            }
        }
        Ok(outputs)
    }

    /// Runs the search on one padded batch of the input lines `ids`.
    fn search_batch(&self, src: &Tensor, lens: &[usize], ids: &[usize]) -> Result<Vec<Vec<Hypothesis>>> {
        let tokens = self.model.tokens();
        let max_lens: Vec<usize> = lens.iter().map(|&len| self.limits.max_len(len)).collect();
        Ok(match &self.search {
            Search::Greedy => {
                greedy_decode(self.model, src, lens, &self.limits)?.into_iter().map(|hyp| vec![hyp]).collect()
            }
            Search::Beam(options) => {
                let mut scorer = Seq2SeqScorer::new(self.model, src)?;
                beam_search(&mut scorer, &max_lens, tokens.eos, tokens.bos, &self.limits, options)?
            }
            Search::Sample(options) => {
                let mut scorer = Seq2SeqScorer::new(self.model, src)?;
                sample(&mut scorer, &max_lens, ids, (tokens.bos, tokens.eos), &self.limits, options)?
            }
        })
    }
}
