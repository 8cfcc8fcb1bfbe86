//! A joint, SentencePiece-style subword tokenizer built on HuggingFace
//! `tokenizers`.
//!
//! Text is not normalized. Spaces become the meta symbol `▁`, which is also
//! prepended to the text, and the text is split before each `▁` (the
//! `Metaspace` pre-tokenizer); a BPE or Unigram model then splits the words
//! into subwords. Decoding turns `▁` back into spaces and drops the leading
//! one, so `decode(encode(x)) == x` for text without leading, trailing or
//! repeated spaces whose characters were all seen in training.
//!
//! The four special tokens always have the same ids: `<pad>` = 0, `<s>` = 1,
//! `</s>` = 2 and `<unk>` = 3. Characters never seen in training map to
//! `<unk>`. [`SubwordTokenizer::encode`] adds no BOS/EOS; the model does.
//!
//! Only code adds control ids. A literal `<pad>`, `<s>`, `</s>` or `<unk>` in
//! the input text is ordinary text (unlike in HuggingFace tokenizers
//! generally): it encodes to at least two ordinary subwords and decodes back
//! unchanged, so the round trip above holds for it too (see [`literal`]). Text
//! holding none of those strings encodes exactly as `tokenizers`' own pipeline
//! encodes it.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tokenizers::decoders::metaspace::Metaspace as MetaspaceDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::unigram::{Unigram, UnigramTrainerBuilder};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::{AddedToken, AddedVocabulary, Model, OffsetType, PreTokenizer, Tokenizer, Trainer};

use crate::batching::TokenizedPair;
use crate::corpus::ParallelCorpus;
use crate::error::{DataError, Result};

/// Id of the padding token `<pad>`.
pub const PAD_ID: u32 = 0;
/// Id of the beginning-of-sentence token `<s>`.
pub const BOS_ID: u32 = 1;
/// Id of the end-of-sentence token `</s>`.
pub const EOS_ID: u32 = 2;
/// Id of the unknown token `<unk>`.
pub const UNK_ID: u32 = 3;

/// The special tokens, in id order (`SPECIAL_TOKENS[i]` has id `i`).
pub const SPECIAL_TOKENS: [&str; 4] = ["<pad>", "<s>", "</s>", "<unk>"];

/// Refuses a BPE model whose merges `tokenizers` 0.22 would panic on: with a
/// `continuing_subword_prefix`, it slices each merge's right side after the prefix.
fn check_bpe_merges(document: &serde_json::Value) -> std::result::Result<(), String> {
    let model = &document["model"];
    let Some(prefix) = model["continuing_subword_prefix"].as_str() else { return Ok(()) };
    let merges = model["merges"].as_array().map(Vec::as_slice).unwrap_or_default();
    for merge in merges {
        let right = match merge {
            serde_json::Value::String(pair) => pair.split_once(' ').map(|(_, right)| right),
            serde_json::Value::Array(pair) => pair.get(1).and_then(serde_json::Value::as_str),
            _ => None,
        };
        if right.is_some_and(|right| !right.starts_with(prefix)) {
            return Err(format!("merge {merge} does not continue with the prefix {prefix:?}"));
        }
    }
    Ok(())
}

/// The SentencePiece meta symbol that stands for a space.
const META: char = '▁';

pub mod literal;
mod word_cache;
pub use word_cache::BatchEncoder;

/// Merges seen fewer times than this are not learned by BPE.
const BPE_MIN_FREQUENCY: u64 = 2;

/// The subword model a [`SubwordTokenizer`] is trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubwordModel {
    /// Byte-pair encoding (merges learned bottom-up); written `bpe`.
    #[default]
    Bpe,
    /// Unigram language model (vocabulary pruned top-down); written `unigram`.
    Unigram,
}

/// A trained joint subword tokenizer; see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct SubwordTokenizer {
    inner: Tokenizer,
    /// `inner`'s added tokens, with the special ones left to the model (see [`literal`]).
    added: AddedVocabulary,
    vocab_size: usize,
}

impl SubwordTokenizer {
    /// Trains a tokenizer of at most `vocab_size` entries (specials
    /// included) on `texts`.
    ///
    /// For a joint vocabulary pass the source and the target sentences
    /// together, e.g. `corpus.src.iter().chain(&corpus.tgt)`.
    ///
    /// BPE keeps at most `vocab_size - 4` distinct characters (the rarest
    /// ones become `<unk>`) and only learns merges seen at least twice, so
    /// the vocabulary can come out smaller than asked on little data.
    /// Unigram keeps every character seen in training.
    ///
    /// # Errors
    ///
    /// [`DataError::Config`] if `vocab_size` cannot hold the special tokens
    /// and one more, and [`DataError::Tokenizer`] if training fails or, for
    /// Unigram, if the text has too many distinct characters for
    /// `vocab_size`.
    pub fn train<I, S>(model: SubwordModel, vocab_size: usize, texts: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        I::IntoIter: Send,
        S: AsRef<str> + Send,
    {
        check_vocab_size(vocab_size)?;
        let failed = |e: tokenizers::Error| DataError::tokenizer(format!("training failed: {e}"));
        let mut inner = untrained(model)?;
        let mut trainer = trainer(model, vocab_size)?;
        // `Tokenizer::train`, with the words cut as encoding cuts them (see `literal`).
        trainer.feed(texts.into_iter(), |text| literal::training_words(&inner, text)).map_err(failed)?;
        let mut trained_model = inner.get_model().clone();
        let special_tokens = trainer.train(&mut trained_model).map_err(failed)?;
        inner.with_model(trained_model);
        inner.add_special_tokens(&special_tokens);
        let trained = Self::from_tokenizer(inner, None)?;
        if trained.vocab_size > vocab_size {
            return Err(DataError::tokenizer(format!(
                "the trained {model:?} vocabulary has {} entries, more than vocab_size = \
                 {vocab_size}: the training text has too many distinct characters; raise \
                 data.vocab_size or use the bpe model, which maps rare characters to <unk>",
                trained.vocab_size
            )));
        }
        Ok(trained)
    }

    /// Writes the tokenizer as a `tokenizer.json` file.
    ///
    /// # Errors
    ///
    /// [`DataError::Write`] if the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = self.inner.to_string(true).map_err(|e| DataError::Tokenizer {
            path: Some(path.to_path_buf()),
            message: format!("cannot serialize: {e}"),
        })?;
        std::fs::write(path, json).map_err(|source| DataError::Write { path: path.to_path_buf(), source })
    }

    /// Reads a `tokenizer.json` file written by [`save`](Self::save).
    ///
    /// # Errors
    ///
    /// [`DataError::Io`] if the file cannot be read (e.g. it does not exist),
    /// and [`DataError::Tokenizer`] naming the file if it is not a tokenizer
    /// or its special tokens do not have the fixed ids.
    pub fn load(path: &Path) -> Result<Self> {
        let json = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let invalid = |e: serde_json::Error| DataError::Tokenizer {
            path: Some(path.to_path_buf()),
            message: format!("not a valid tokenizer.json: {e}"),
        };
        // Parsed as JSON first: `tokenizers` 0.22 panics (an `expect` in its decoder's
        // deserializer) on some malformed JSON, never on a well-formed document.
        let document: serde_json::Value = serde_json::from_str(&json).map_err(invalid)?;
        check_bpe_merges(&document).map_err(|message| DataError::Tokenizer {
            path: Some(path.to_path_buf()),
            message: format!("not a valid tokenizer.json: {message}"),
        })?;
        let inner: Tokenizer = serde_json::from_value(document).map_err(invalid)?;
        Self::from_tokenizer(inner, Some(path))
    }

    /// Subword ids of `text`, without BOS/EOS. Literal special tokens in
    /// `text` are text (see [`literal`]): the ids hold no `<pad>`, `<s>` or
    /// `</s>`, and `<unk>` only for characters outside the vocabulary.
    ///
    /// This is `tokenizers`' own pipeline (added tokens, normalizer,
    /// pre-tokenizer, model, then the file's truncation and padding, if any),
    /// with the special tokens not extracted from the text and their strings
    /// cut before the model.
    ///
    /// # Errors
    ///
    /// [`DataError::Tokenizer`] if the underlying tokenizer fails, or if its
    /// model (neither BPE nor Unigram) still turns some text into a control
    /// token.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let failed = |e: tokenizers::Error| DataError::tokenizer(format!("cannot encode {text:?}: {e}"));
        let inner = &self.inner;
        let mut pretokenized = self.added.extract_and_normalize(inner.get_normalizer(), text);
        if let Some(pre_tokenizer) = inner.get_pre_tokenizer() {
            pre_tokenizer.pre_tokenize(&mut pretokenized).map_err(failed)?;
        }
        pretokenized.split(|_, split| Ok(literal::split_normalized(split))).map_err(failed)?;
        pretokenized.tokenize(|split| inner.get_model().tokenize(split.get())).map_err(failed)?;
        let encoding = pretokenized.into_encoding(None, 0, OffsetType::None).map_err(failed)?;
        literal::check_no_control(encoding.get_ids(), text)?;
        let encoding = inner.post_process(encoding, None, false).map_err(failed)?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Subword ids of each text, without BOS/EOS, encoded in parallel by a fresh
    /// [`BatchEncoder`] (keep one for many batches, as `prepare` does, to keep its word cache).
    ///
    /// # Errors
    ///
    /// [`DataError::Tokenizer`] if the underlying tokenizer fails.
    pub fn encode_batch<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>> {
        BatchEncoder::new(self).encode(texts)
    }

    /// Tokenizes both sides of `corpus` into aligned pairs.
    ///
    /// # Errors
    ///
    /// [`DataError::Tokenizer`] if the underlying tokenizer fails.
    pub fn encode_corpus(&self, corpus: &ParallelCorpus) -> Result<Vec<TokenizedPair>> {
        let src = self.encode_batch(&corpus.src)?;
        let tgt = self.encode_batch(&corpus.tgt)?;
        Ok(src.into_iter().zip(tgt).map(|(src, tgt)| TokenizedPair { src, tgt }).collect())
    }

    /// The text of `ids`, skipping special tokens (`<pad>`, `<s>`, `</s>`,
    /// `<unk>`); the subwords of a literal special token in the text come
    /// back as that text.
    ///
    /// # Errors
    ///
    /// [`DataError::Tokenizer`] if an id is outside the vocabulary.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(DataError::tokenizer(format!(
                "cannot decode id {bad}: the vocabulary has {} entries",
                self.vocab_size
            )));
        }
        self.inner.decode(ids, true).map_err(|e| DataError::tokenizer(format!("cannot decode: {e}")))
    }

    /// The subword strings of `ids` (for inspection and debugging); ids
    /// outside the vocabulary are shown as `<id?>`.
    pub fn id_to_pieces(&self, ids: &[u32]) -> Vec<String> {
        ids.iter().map(|&id| self.inner.id_to_token(id).unwrap_or_else(|| format!("<{id}?>"))).collect()
    }

    /// Number of ids: one more than the largest id, i.e. the size of the
    /// embedding table a model needs.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Id of `<pad>` ([`PAD_ID`]).
    pub fn pad_id(&self) -> u32 {
        PAD_ID
    }

    /// Id of `<s>` ([`BOS_ID`]).
    pub fn bos_id(&self) -> u32 {
        BOS_ID
    }

    /// Id of `</s>` ([`EOS_ID`]).
    pub fn eos_id(&self) -> u32 {
        EOS_ID
    }

    /// Id of `<unk>` ([`UNK_ID`]).
    pub fn unk_id(&self) -> u32 {
        UNK_ID
    }

    /// A hash of the tokenizer's whole definition (its compact JSON), as 16 hex digits: equal
    /// fingerprints mean the same ids for every text.
    pub fn fingerprint(&self) -> String {
        let json = self.inner.to_string(false).unwrap_or_default();
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(json.as_bytes()))
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Wraps `inner` after checking the fixed special-token ids.
    fn from_tokenizer(inner: Tokenizer, path: Option<&Path>) -> Result<Self> {
        let vocab = inner.get_vocab(true);
        check_special_ids(&vocab)
            .map_err(|message| DataError::Tokenizer { path: path.map(Path::to_path_buf), message })?;
        let vocab_size = vocab.values().max().map_or(0, |&max| max as usize + 1);
        let mut added = inner.get_added_vocabulary().clone();
        added.set_encode_special_tokens(true);
        Ok(SubwordTokenizer { inner, added, vocab_size })
    }
}

/// Rejects vocabulary sizes that cannot hold the specials plus one subword.
fn check_vocab_size(vocab_size: usize) -> Result<()> {
    let min = SPECIAL_TOKENS.len() + 1;
    if vocab_size < min {
        return Err(DataError::config(
            "data.vocab_size",
            format!("({vocab_size}) must be at least {min} (4 special tokens + 1)"),
        ));
    }
    Ok(())
}

/// Checks that every special token exists with its fixed id.
fn check_special_ids(vocab: &HashMap<String, u32>) -> std::result::Result<(), String> {
    for (expected, token) in SPECIAL_TOKENS.iter().enumerate() {
        match vocab.get(*token) {
            Some(&id) if id as usize == expected => {}
            Some(&id) => {
                return Err(format!("special token {token} has id {id}, but Locus requires id {expected}"))
            }
            None => return Err(format!("special token {token} is missing")),
        }
    }
    Ok(())
}

/// The special tokens as `tokenizers` added tokens.
fn special_tokens() -> Vec<AddedToken> {
    SPECIAL_TOKENS.iter().map(|t| AddedToken::from(*t, true)).collect()
}

/// An untrained tokenizer: the model (with `<unk>` set), Metaspace
/// pre-tokenizer and decoder, no normalizer.
fn untrained(model: SubwordModel) -> Result<Tokenizer> {
    let unk = SPECIAL_TOKENS[UNK_ID as usize].to_string();
    let model: ModelWrapper = match model {
        SubwordModel::Bpe => BPE::builder()
            .unk_token(unk)
            .build()
            .map_err(|e| DataError::tokenizer(format!("cannot build BPE model: {e}")))?
            .into(),
        SubwordModel::Unigram => Unigram::default().into(),
    };
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_pre_tokenizer(Some(Metaspace::new(META, PrependScheme::Always, true)))
        .with_decoder(Some(MetaspaceDecoder::new(META, PrependScheme::Always, true)));
    Ok(tokenizer)
}

/// The trainer for `model`, with the special tokens first so that they get
/// ids 0 to 3.
fn trainer(model: SubwordModel, vocab_size: usize) -> Result<TrainerWrapper> {
    let trainer: TrainerWrapper = match model {
        SubwordModel::Bpe => BpeTrainerBuilder::new()
            .show_progress(false)
            .vocab_size(vocab_size)
            .min_frequency(BPE_MIN_FREQUENCY)
            .limit_alphabet(vocab_size - SPECIAL_TOKENS.len())
            .special_tokens(special_tokens())
            .build()
            .into(),
        SubwordModel::Unigram => {
            let vocab_size = u32::try_from(vocab_size).map_err(|_| {
                DataError::config(
                    "data.vocab_size",
                    format!("({vocab_size}) is too large for a unigram model"),
                )
            })?;
            UnigramTrainerBuilder::default()
                .show_progress(false)
                .vocab_size(vocab_size)
                .special_tokens(special_tokens())
                .unk_token(Some(SPECIAL_TOKENS[UNK_ID as usize].to_string()))
                .build()
                .map_err(|e| DataError::tokenizer(format!("cannot build unigram trainer: {e}")))?
                .into()
        }
    };
    Ok(trainer)
}

#[cfg(test)]
mod tests;
