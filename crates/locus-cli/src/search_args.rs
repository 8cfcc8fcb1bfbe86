//! The decoding options `translate`, `evaluate`, `bench translate` and `serve` share, with
//! fairseq-generate's names (`--max-source-len` is CTranslate2's `max_input_length`). `serve`
//! takes them as its defaults and lets each request override them by the same names in JSON
//! (serde), within the server's [`SearchBounds`].

use anyhow::{bail, Result};
use clap::Args;
use locus_model::{BeamOptions, LengthLimits, SamplingOptions};
use locus_train::translate::{Search, DEFAULT_MAX_SOURCE_LEN};
use locus_train::Translator;
use serde::{Deserialize, Serialize};

/// How to search for translations.
#[derive(Args, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    /// Beam size; 1 is greedy search.
    #[arg(long, default_value_t = 1)]
    beam: usize,
    /// Translations per input line, best first (needs --beam at least this large, or --sample).
    #[arg(long, default_value_t = 1)]
    nbest: usize,
    /// GNMT length penalty alpha for beam search: finished hypotheses are ranked by
    /// log-probability / ((5 + length) / 6)^alpha; 0 ranks by log-probability alone.
    #[arg(long, alias = "lenpen", default_value_t = 1.0)]
    length_penalty: f64,
    /// End a sentence's beam search as soon as --beam hypotheses have finished, as fairseq and
    /// CTranslate2 do: fewer steps, but it may miss a longer, better-scoring translation that
    /// the default (searching until no live hypothesis can beat the n-best list) finds.
    #[arg(long)]
    early_stop: bool,
    /// Output length limit per source token: at most max-len-a × source length + max-len-b
    /// tokens.
    #[arg(long, default_value_t = 1.5)]
    max_len_a: f64,
    /// Constant part of the output length limit.
    #[arg(long, default_value_t = 10)]
    max_len_b: usize,
    /// A fixed cap on output tokens, below the relative limit of --max-len-a and --max-len-b
    /// (default: that limit alone).
    #[arg(long)]
    max_len: Option<usize>,
    /// Sources longer than this many tokens are cropped to their first N tokens, with a
    /// warning naming the line (a model with a `learned` position table crops at its size if
    /// that is smaller).
    #[arg(long, default_value_t = DEFAULT_MAX_SOURCE_LEN)]
    max_source_len: usize,
    /// End of sentence is not allowed before this many tokens.
    #[arg(long, default_value_t = 0)]
    min_len: usize,
    /// Sample outputs instead of searching (--nbest samples per line).
    #[arg(long)]
    sample: bool,
    /// Sampling temperature: below 1 sharpens the distribution, above 1 flattens it.
    #[arg(long, default_value_t = 1.0, requires = "sample")]
    temperature: f64,
    /// Sample from the k most probable tokens only (0: all).
    #[arg(long, default_value_t = 0, requires = "sample")]
    top_k: usize,
    /// Sample from the most probable tokens holding this much probability (1: all).
    #[arg(long, default_value_t = 1.0, requires = "sample")]
    top_p: f64,
    /// Seed of sampling; the same seed gives the same samples.
    #[arg(long, default_value_t = 1, requires = "sample")]
    seed: u64,
}

impl SearchArgs {
    /// The search and length limits these options describe.
    ///
    /// # Errors
    /// Options that contradict each other (sampling with a beam, an n-best list longer than
    /// the beam).
    pub fn resolve(&self) -> Result<(Search, LengthLimits)> {
        let limits =
            LengthLimits { max_len_a: self.max_len_a, max_len_b: self.max_len_b, min_len: self.min_len };
        if self.beam == 0 || self.nbest == 0 {
            bail!("--beam ({}) and --nbest ({}) must be at least 1", self.beam, self.nbest);
        }
        if self.max_len == Some(0) || self.max_source_len == 0 {
            bail!("--max-len and --max-source-len must be at least 1");
        }
        if self.sample {
            if self.beam > 1 {
                bail!("--sample draws --nbest samples per line; it does not take --beam ({})", self.beam);
            }
            let options = SamplingOptions {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                seed: self.seed,
                samples: self.nbest,
            };
            return Ok((Search::Sample(options), limits));
        }
        if self.nbest > self.beam {
            bail!("--nbest ({}) needs --beam at least as large (it is {})", self.nbest, self.beam);
        }
        if self.beam == 1 {
            return Ok((Search::Greedy, limits));
        }
        let options = BeamOptions {
            beam: self.beam,
            nbest: self.nbest,
            length_penalty: self.length_penalty,
            early_stop: self.early_stop,
        };
        Ok((Search::Beam(options), limits))
    }

    /// Sets `translator`'s search and limits from these options.
    ///
    /// # Errors
    /// Those of [`resolve`](Self::resolve).
    pub fn configure(&self, translator: &mut Translator) -> Result<()> {
        (translator.search, translator.limits) = self.resolve()?;
        translator.max_len = self.max_len;
        translator.max_source_len = self.max_source_len;
        Ok(())
    }

    /// Whether these options are a valid greedy search (the search a running batch decodes).
    pub fn is_greedy(&self) -> bool {
        matches!(self.resolve(), Ok((Search::Greedy, _)))
    }

    /// Translations per input line.
    pub fn nbest(&self) -> usize {
        self.nbest
    }

    /// Source tokens translated of a line; longer ones are cropped.
    pub fn max_source_len(&self) -> usize {
        self.max_source_len
    }

    /// Whether these options sample (each line's samples are seeded by its index in the input).
    pub fn samples(&self) -> bool {
        self.sample
    }

    /// These options within `bounds`: the output cap and the source crop lowered to the
    /// server's, if they are higher.
    ///
    /// # Errors
    /// A beam or n-best list larger than `bounds.max_beam`.
    pub fn bounded(mut self, bounds: &SearchBounds) -> Result<Self> {
        if self.beam > bounds.max_beam || self.nbest > bounds.max_beam {
            bail!(
                "beam ({}) and nbest ({}) may be at most {} on this server (--max-beam)",
                self.beam,
                self.nbest,
                bounds.max_beam
            );
        }
        self.max_len = Some(self.max_len.map_or(bounds.max_output_len, |len| len.min(bounds.max_output_len)));
        self.max_source_len = self.max_source_len.min(bounds.max_source_len);
        Ok(self)
    }
}

/// Upper bounds a service puts on the search options of every request.
#[derive(Debug, Clone, Copy)]
pub struct SearchBounds {
    /// Largest beam, and largest n-best list or number of samples.
    pub max_beam: usize,
    /// Most output tokens (EOS excluded) of any translation.
    pub max_output_len: usize,
    /// Most source tokens translated of a sentence (longer ones are cropped).
    pub max_source_len: usize,
}

/// Search options parsed from command-line arguments, as `locus serve ARGS` would take them.
#[cfg(test)]
pub fn parse_search_args(args: &[&str]) -> SearchArgs {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        search: SearchArgs,
    }
    Cli::parse_from(std::iter::once("serve").chain(args.iter().copied())).search
}
