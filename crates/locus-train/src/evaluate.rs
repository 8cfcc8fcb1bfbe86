//! Scoring a model on a test pair: teacher-forced loss and perplexity, and sacreBLEU-exact
//! BLEU, chrF and TER of its translations, overall and per source-length bucket.

use candle_core::Tensor;
use locus_data::{
    pair_lengths, BatchPlanner, LengthBucket, LengthBuckets, SubwordTokenizer, TokenBudget, TokenizedPair,
};
use locus_metrics::{corpus_bleu, corpus_chrf, corpus_ter, BleuScore, ChrfScore, TerScore};
use locus_model::Seq2Seq;

use crate::batch::collate;
use crate::distributed::{even_share, Communicator};
use crate::error::{Result, TrainError};
use crate::loss::{label_smoothed_cross_entropy, sum_loss_rows};
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
    let [loss, nll, tokens] = corpus_loss_sums(model, pairs, max_tokens, label_smoothing)?;
    Ok(CorpusLoss::from_sums(loss, nll, tokens))
}

impl CorpusLoss {
    /// Per-token losses from the summed ones over `tokens` target tokens (zeros for none).
    fn from_sums(loss: f64, nll: f64, tokens: f64) -> Self {
        let per_token = |sum: f64| if tokens == 0.0 { 0.0 } else { sum / tokens };
        Self { loss: per_token(loss), nll: per_token(nll), tokens: tokens as usize }
    }
}

/// The label-smoothed loss, the negative log-likelihood and the target tokens of `pairs`, each
/// summed: [`corpus_loss`] before the division, so that shares of a corpus add up.
fn corpus_loss_sums(
    model: &Seq2Seq,
    pairs: &[TokenizedPair],
    max_tokens: usize,
    label_smoothing: f64,
) -> Result<[f64; 3]> {
    let lengths = pair_lengths(pairs)?;
    let planner = BatchPlanner { max_tokens, max_sentences: None, budget: TokenBudget::Longer };
    // Each batch's summed losses stay on the device, detached, until one copy at the end.
    let (mut batch_sums, mut tokens) = (Vec::new(), 0);
    for indices in planner.plan(&lengths, 0, 0)?.iter() {
        let batch_pairs: Vec<&TokenizedPair> = indices.iter().map(|&i| &pairs[i as usize]).collect();
        let batch = collate(&batch_pairs, model.tokens(), model.device())?;
        let logits = model.forward(&batch.src, &batch.tgt_in, None)?;
        let logits = logits.flatten_to(1)?;
        let targets = batch.tgt_out.flatten_all()?;
        let sums = label_smoothed_cross_entropy(&logits, &targets, model.tokens().pad, label_smoothing)?;
        batch_sums.push(sums.values);
        tokens += batch.tgt_tokens;
    }
    let (loss, nll) = if batch_sums.is_empty() {
        (0.0, 0.0)
    } else {
        sum_loss_rows(&Tensor::stack(&batch_sums, 0)?.to_vec2::<f32>()?)
    };
    Ok([loss, nll, tokens as f64])
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

/// The scores of the sentences whose source length falls in one bucket.
#[derive(Debug, Clone)]
pub struct BucketEvaluation {
    /// The bucket; its `Display` is the label (`1-10`, `41+`).
    pub bucket: LengthBucket,
    /// Sentences in the bucket.
    pub sentences: usize,
    /// Corpus BLEU of those sentences alone; `None` when there are none.
    pub bleu: Option<BleuScore>,
    /// Corpus chrF of those sentences alone; `None` when there are none.
    pub chrf: Option<ChrfScore>,
    /// Mean source length in tokenizer tokens; `None` when there are no sentences.
    pub mean_src_len: Option<f64>,
}

/// Sentence indices per bucket, in input order; sentences in no bucket are left out.
fn group_by_bucket(src_lens: &[usize], buckets: &LengthBuckets) -> Vec<Vec<usize>> {
    let mut groups = vec![Vec::new(); buckets.iter().len()];
    for (index, &len) in src_lens.iter().enumerate() {
        if let Some(bucket) = buckets.bucket_of(len) {
            groups[bucket].push(index);
        }
    }
    groups
}

/// Scores the sentences `indices` of the corpus as a corpus of their own.
fn score_subset(
    bucket: LengthBucket,
    indices: &[usize],
    src_lens: &[usize],
    hypotheses: &[String],
    references: &[String],
) -> Result<BucketEvaluation> {
    let mut scores =
        BucketEvaluation { bucket, sentences: indices.len(), bleu: None, chrf: None, mean_src_len: None };
    if indices.is_empty() {
        return Ok(scores);
    }
    let hyps: Vec<&str> = indices.iter().map(|&i| hypotheses[i].as_str()).collect();
    let refs = [indices.iter().map(|&i| references[i].clone()).collect::<Vec<_>>()];
    scores.bleu = Some(corpus_bleu(&hyps, &refs)?);
    scores.chrf = Some(corpus_chrf(&hyps, &refs)?);
    let total: usize = indices.iter().map(|&i| src_lens[i]).sum();
    scores.mean_src_len = Some(total as f64 / indices.len() as f64);
    Ok(scores)
}

/// BLEU and chrF of each bucket's sentences alone, where sentence `i` has a source of
/// `src_lens[i]` tokens, translation `hypotheses[i]` and reference `references[i]`. Every
/// bucket gets an entry, in order (empty ones with no scores); sentences in no bucket count
/// nowhere.
///
/// # Errors
///
/// [`TrainError::Mismatch`] when the three slices differ in length; otherwise only a metric's
/// rejection of a bucket's sentences, which cannot happen for the aligned, non-empty subsets
/// scored here.
pub fn scores_by_length(
    src_lens: &[usize],
    hypotheses: &[String],
    references: &[String],
    buckets: &LengthBuckets,
) -> Result<Vec<BucketEvaluation>> {
    let sources = ("source lengths", src_lens.len());
    TrainError::check_same_len("scoring by length", sources, ("hypotheses", hypotheses.len()))?;
    TrainError::check_same_len("scoring by length", sources, ("references", references.len()))?;
    let groups = group_by_bucket(src_lens, buckets);
    buckets
        .iter()
        .zip(&groups)
        .map(|(&bucket, indices)| score_subset(bucket, indices, src_lens, hypotheses, references))
        .collect()
}

/// [`scores_by_length`] with source lengths counted in `tokenizer` tokens, without EOS, as
/// `locus evaluate --by-length` does.
///
/// # Errors
///
/// A tokenizer error, or those of [`scores_by_length`].
pub fn evaluate_by_length(
    tokenizer: &SubwordTokenizer,
    sources: &[String],
    hypotheses: &[String],
    references: &[String],
    buckets: &LengthBuckets,
) -> Result<Vec<BucketEvaluation>> {
    let src_lens: Vec<usize> = tokenizer.encode_batch(sources)?.iter().map(Vec::len).collect();
    scores_by_length(&src_lens, hypotheses, references, buckets)
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
/// when `with_bleu`. With several ranks, each scores and translates its share of the set;
/// the losses are summed over the ranks, and rank 0 scores the gathered translations of the
/// whole set and gives every rank the scores.
pub fn validate(
    comm: &dyn Communicator,
    model: &Seq2Seq,
    tokenizer: &SubwordTokenizer,
    set: &ValidationSet,
    max_tokens: usize,
    label_smoothing: f64,
    with_bleu: bool,
) -> Result<ValidScores> {
    let (rank, world) = (comm.rank(), comm.world_size());
    let pairs = &set.pairs[even_share(set.pairs.len(), rank, world)];
    let sums = comm.sum_host(&corpus_loss_sums(model, pairs, max_tokens, label_smoothing)?)?;
    let loss = CorpusLoss::from_sums(sums[0], sums[1], sums[2]);
    let (mut bleu, mut chrf) = (None, None);
    if with_bleu {
        let sources = &set.sources[even_share(set.sources.len(), rank, world)];
        let hypotheses = comm.all_gather(&Translator::new(model, tokenizer).translate(sources)?)?.concat();
        let mut scores = (0.0, 0.0);
        if comm.is_root() {
            let references = [set.references.to_vec()];
            scores =
                (corpus_bleu(&hypotheses, &references)?.score, corpus_chrf(&hypotheses, &references)?.score);
        }
        let (b, c) = comm.broadcast(&scores)?;
        (bleu, chrf) = (Some(b), Some(c));
    }
    Ok(ValidScores { loss: loss.loss, nll: loss.nll, bleu, chrf })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn each_bucket_is_scored_as_a_corpus_of_its_own() {
        let buckets: LengthBuckets = "1-10,11-20,21-40,41-".parse().unwrap();
        let src_lens = [3, 12, 5, 50, 0];
        let hypotheses = strings(&[
            "the cat sat on the mat today",
            "qqq",
            "a dog ran across the green field",
            "The cat sat on the mat.",
            "anything",
        ]);
        let references = strings(&[
            "the cat sat on the mat today",
            "completely different words here",
            "a dog ran across the green field",
            "The cat sat on a mat.",
            "something else",
        ]);
        let scores = scores_by_length(&src_lens, &hypotheses, &references, &buckets).unwrap();
        let labels: Vec<String> = scores.iter().map(|s| s.bucket.to_string()).collect();
        assert_eq!(labels, ["1-10", "11-20", "21-40", "41+"]);
        let counts: Vec<usize> = scores.iter().map(|s| s.sentences).collect();
        // Length 0 lies in no bucket and counts nowhere.
        assert_eq!(counts, [2, 1, 0, 1]);
        // Rounded to 2 decimals, as sacreBLEU prints (exact BLEU is 100.00000000000004 there too).
        let round = |score: f64| (score * 100.0).round() / 100.0;
        let bleu = |i: usize| scores[i].bleu.as_ref().map(|b| round(b.score));
        let chrf = |i: usize| scores[i].chrf.as_ref().map(|c| round(c.score));

        // Sentences 0 and 2 are translated exactly: perfect scores, mean length (3 + 5) / 2.
        assert_eq!((bleu(0), chrf(0), scores[0].mean_src_len), (Some(100.0), Some(100.0), Some(4.0)));
        // No shared character, let alone word.
        assert_eq!((bleu(1), chrf(1), scores[1].mean_src_len), (Some(0.0), Some(0.0), Some(12.0)));
        // An empty bucket is listed without scores.
        assert_eq!((bleu(2), chrf(2), scores[2].mean_src_len), (None, None, None));
        // The sacreBLEU example of locus-metrics: BLEU 48.89, chrF2 71.42.
        assert_eq!((bleu(3), chrf(3)), (Some(48.89), Some(71.42)));
        assert_eq!(scores[3].mean_src_len, Some(50.0));
        // A bucket's score is not the whole corpus's.
        let whole = corpus_bleu(&hypotheses, &[references]).unwrap();
        assert!(whole.score < 100.0, "{}", whole.score);
    }

    #[test]
    fn lengths_in_gaps_are_left_out() {
        let buckets: LengthBuckets = "2-3,6-7".parse().unwrap();
        let src_lens = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(group_by_bucket(&src_lens, &buckets), vec![vec![1, 2], vec![5, 6]]);
    }

    #[test]
    fn slices_of_different_lengths_are_an_error_naming_both() {
        let buckets: LengthBuckets = "1-10".parse().unwrap();
        let (one, two) = (strings(&["a"]), strings(&["a", "b"]));
        let err = scores_by_length(&[3, 4], &one, &two, &buckets).unwrap_err().to_string();
        assert_eq!(err, "scoring by length: 2 source lengths but 1 hypotheses");
        let err = scores_by_length(&[3, 4], &two, &one, &buckets).unwrap_err().to_string();
        assert_eq!(err, "scoring by length: 2 source lengths but 1 references");
    }
}
