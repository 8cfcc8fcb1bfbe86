//! Scoring a model on a test pair: teacher-forced loss and perplexity, and sacreBLEU-exact
//! BLEU, chrF and TER of its translations.

use locus_data::{BatchPlanner, SubwordTokenizer, TokenBudget, TokenizedPair};
use locus_model::Seq2Seq;

use crate::batch::collate;
use crate::error::Result;
use crate::loss::label_smoothed_cross_entropy;
use crate::metrics::{corpus_bleu, corpus_chrf, corpus_ter, BleuScore, ChrfScore, TerScore};
use crate::state::ValidScores;
use crate::translate::Translator;

/// Per-token losses of a corpus under teacher forcing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CorpusLoss {
    /// Label-smoothed loss per target token (nats).
    pub loss: f64,
    /// Negative log-likelihood per target token (nats).
    pub nll: f64,
    /// Target tokens scored (EOS included).
    pub tokens: usize,
}

impl CorpusLoss {
    /// Perplexity, `exp(nll)`.
    pub fn ppl(&self) -> f64 {
        self.nll.exp()
    }
}

/// Teacher-forced loss of `model` over `pairs`, in batches of at most `max_tokens`.
pub fn corpus_loss(
    model: &Seq2Seq,
    pairs: &[TokenizedPair],
    max_tokens: usize,
    label_smoothing: f64,
) -> Result<CorpusLoss> {
    let lengths: Vec<(usize, usize)> = pairs.iter().map(TokenizedPair::lengths).collect();
    let planner = BatchPlanner { max_tokens, max_sentences: None, budget: TokenBudget::Longer };
    let (mut loss, mut nll, mut tokens) = (0.0, 0.0, 0);
    for indices in planner.plan(&lengths, 0, 0)? {
        let batch_pairs: Vec<&TokenizedPair> = indices.iter().map(|&i| &pairs[i]).collect();
        let batch = collate(&batch_pairs, model.tokens(), model.device())?;
        let logits = model.forward(&batch.src, &batch.tgt_in, None)?;
        let logits = logits.flatten_to(1)?;
        let targets = batch.tgt_out.flatten_all()?;
        let sums = label_smoothed_cross_entropy(&logits, &targets, model.tokens().pad, label_smoothing)?;
        loss += sums.smoothed.to_scalar::<f32>()? as f64;
        nll += sums.nll.to_scalar::<f32>()? as f64;
        tokens += sums.tokens;
    }
    let per_token = |sum: f64| if tokens == 0 { 0.0 } else { sum / tokens as f64 };
    Ok(CorpusLoss { loss: per_token(loss), nll: per_token(nll), tokens })
}

/// The scores of a model on a test pair.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Corpus BLEU (sacreBLEU defaults).
    pub bleu: BleuScore,
    /// Corpus chrF2 (sacreBLEU defaults).
    pub chrf: ChrfScore,
    /// Corpus TER (sacreBLEU defaults).
    pub ter: TerScore,
    /// Teacher-forced losses of the references.
    pub loss: CorpusLoss,
    /// Number of sentence pairs.
    pub sentences: usize,
    /// The translations scored, in input order.
    pub hypotheses: Vec<String>,
}

/// Translates `sources` with `translator` (exactly as `locus translate` does) and scores the
/// output against `references`; also measures the references' loss under the model.
pub fn evaluate(
    translator: &Translator,
    model: &Seq2Seq,
    tokenizer: &SubwordTokenizer,
    sources: &[String],
    references: &[String],
    max_tokens: usize,
) -> Result<Evaluation> {
    let hypotheses = translator.translate(sources)?;
    let reference_streams = [references.to_vec()];
    let bleu = corpus_bleu(&hypotheses, &reference_streams)?;
    let chrf = corpus_chrf(&hypotheses, &reference_streams)?;
    let ter = corpus_ter(&hypotheses, &reference_streams)?;
    let pairs: Vec<TokenizedPair> = sources
        .iter()
        .zip(references)
        .map(|(s, r)| Ok(TokenizedPair { src: tokenizer.encode(s)?, tgt: tokenizer.encode(r)? }))
        .collect::<Result<_>>()?;
    let loss = corpus_loss(model, &pairs, max_tokens, 0.0)?;
    Ok(Evaluation { bleu, chrf, ter, loss, sentences: sources.len(), hypotheses })
}

/// The validation set of a run: its token ids for the loss, and its raw text for BLEU.
pub struct ValidationSet<'a> {
    /// Tokenized pairs (after the length filter), scored under teacher forcing.
    pub pairs: &'a [TokenizedPair],
    /// Every source line, translated greedily.
    pub sources: &'a [String],
    /// Every reference line, for BLEU and chrF.
    pub references: &'a [String],
}

/// Scores `model` on `set`: teacher-forced losses, and BLEU and chrF of greedy translations
/// when `with_bleu`.
pub fn validate(
    model: &Seq2Seq,
    tokenizer: &SubwordTokenizer,
    set: &ValidationSet,
    max_tokens: usize,
    label_smoothing: f64,
    with_bleu: bool,
) -> Result<ValidScores> {
    let loss = corpus_loss(model, set.pairs, max_tokens, label_smoothing)?;
    let (mut bleu, mut chrf) = (None, None);
    if with_bleu {
        let hypotheses = Translator::new(model, tokenizer).translate(set.sources)?;
        let references = [set.references.to_vec()];
        bleu = Some(corpus_bleu(&hypotheses, &references)?.score);
        chrf = Some(corpus_chrf(&hypotheses, &references)?.score);
    }
    Ok(ValidScores { loss: loss.loss, nll: loss.nll, bleu, chrf })
}
