//! Literal special-token strings in input text are ordinary text.
//!
//! Only code adds control ids: the model's BOS and EOS, the batcher's padding. A `<s>`, `</s>`,
//! `<pad>` or `<unk>` typed in the text must not become one, but two parts of the pipeline
//! would make it so. `tokenizers` matches added tokens in the raw text before anything else;
//! the encoder turns that off for the special ones
//! (`AddedVocabulary::set_encode_special_tokens`, which is not saved in `tokenizer.json`).
//! And the model alone can spell them: the Unigram trainer keeps each special token as a piece
//! with the best possible score, and a BPE model whose training text held `<s>` learns the
//! merges that spell it, the merge result taking the special token's id. So each occurrence of
//! a special token's string is cut after its first character before the model sees it: every
//! piece the model returns lies inside one side of the cut, and cannot be a whole special
//! token, whatever the model learned. `<s>` becomes e.g. `▁<` `s>`, and decodes back to `<s>`.
//!
//! Training cuts the words it learns from the same way, so that no learned piece or merge
//! spells a special token: without the cut, a Unigram model trained on text holding `<pad>`
//! learns a second `<pad>` piece, which takes the name from the special one.
//!
//! Text holding none of those strings is not cut: it encodes exactly as `tokenizers`' own
//! pipeline encodes it, so tokenizers trained before this change keep their ids, and training
//! on it learns the same tokenizer as before.

use tokenizers::tokenizer::normalizer::Range;
use tokenizers::{NormalizedString, OffsetReferential, OffsetType, PreTokenizer, Tokenizer};

use crate::error::{DataError, Result};
use crate::tokenizer::{SPECIAL_TOKENS, UNK_ID};

/// The byte offsets, ascending and distinct, just after the first character of every
/// occurrence (overlapping ones included) of a special token's string in `text`.
fn cuts(text: &str) -> Vec<usize> {
    let mut cuts = Vec::new();
    for token in SPECIAL_TOKENS {
        let first = token.chars().next().map_or(0, char::len_utf8);
        let mut from = 0;
        while let Some(at) = text[from..].find(token) {
            cuts.push(from + at + first);
            from += at + first;
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// The parts of `text` between its [`cuts`], in order; `text` itself when it has none.
pub(crate) fn segments(text: &str) -> Vec<&str> {
    let mut start = 0;
    let mut parts: Vec<&str> = cuts(text)
        .into_iter()
        .map(|cut| {
            let part = &text[start..cut];
            start = cut;
            part
        })
        .collect();
    parts.push(&text[start..]);
    parts
}

/// [`segments`] of a split of the pre-tokenized text, with their offsets.
pub(crate) fn split_normalized(split: NormalizedString) -> Vec<NormalizedString> {
    let cuts = cuts(split.get());
    if cuts.is_empty() {
        return vec![split];
    }
    let bounds: Vec<usize> = std::iter::once(0).chain(cuts).chain([split.len()]).collect();
    // The cuts follow a whole character, so every slice is on character boundaries.
    bounds.windows(2).filter_map(|w| split.slice(Range::Normalized(w[0]..w[1]))).collect()
}

/// The words `tokenizer`'s trainer learns from in `text`: those `Tokenizer::train` feeds it
/// (added tokens, normalizer, pre-tokenizer), cut as above.
pub(crate) fn training_words(tokenizer: &Tokenizer, text: &str) -> tokenizers::Result<Vec<String>> {
    let mut pretokenized =
        tokenizer.get_added_vocabulary().extract_and_normalize(tokenizer.get_normalizer(), text);
    if let Some(pre_tokenizer) = tokenizer.get_pre_tokenizer() {
        pre_tokenizer.pre_tokenize(&mut pretokenized)?;
    }
    pretokenized.split(|_, split| Ok(split_normalized(split)))?;
    Ok(pretokenized
        .get_splits(OffsetReferential::Original, OffsetType::Byte)
        .into_iter()
        .map(|(word, _, _)| word.to_owned())
        .collect())
}

/// Refuses `ids` of `text` that hold `<pad>`, `<s>` or `</s>` (`<unk>` stands for unknown
/// characters). Cut as above, text cannot give them with a BPE or Unigram model; this guards
/// against other models a given `tokenizer.json` may hold.
pub(crate) fn check_no_control(ids: &[u32], text: &str) -> Result<()> {
    match ids.iter().find(|&&id| id < UNK_ID) {
        None => Ok(()),
        Some(&id) => Err(DataError::tokenizer(format!(
            "cannot encode {text:?}: the tokenizer's model turns part of it into the control token \
             {} (id {id}); input text may not hold control tokens",
            SPECIAL_TOKENS[id as usize]
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_occurrence_is_cut_after_its_first_character() {
        assert_eq!(segments("ein Mann"), ["ein Mann"]);
        assert_eq!(segments(""), [""]);
        assert_eq!(segments("<s>"), ["<", "s>"]);
        assert_eq!(segments("a<s>b</s>"), ["a<", "s>b<", "/s>"]);
        assert_eq!(segments("<pad><pad>"), ["<", "pad><", "pad>"]);
        assert_eq!(segments("<<unk>>"), ["<<", "unk>>"]);
        assert_eq!(segments("▁<s>"), ["▁<", "s>"]);
        for text in ["<s>", "x</s>y", "<pad><unk>", "<<s>>"] {
            assert_eq!(segments(text).concat(), text);
            for part in segments(text) {
                assert!(!SPECIAL_TOKENS.iter().any(|t| part.contains(t)), "{text:?}: {part:?}");
            }
        }
    }

    #[test]
    fn normalized_splits_are_cut_at_the_same_places() {
        let split = NormalizedString::from("▁a<s>b");
        let parts: Vec<String> = split_normalized(split).iter().map(|n| n.get().to_string()).collect();
        assert_eq!(parts, ["▁a<", "s>b"]);
        let parts = split_normalized(NormalizedString::from("▁ein"));
        assert_eq!(parts.len(), 1);
    }

    #[test]
    fn control_ids_are_refused_and_unk_allowed() {
        assert!(check_no_control(&[4, UNK_ID, 9], "x").is_ok());
        let err = check_no_control(&[4, 1], "a<s>").unwrap_err();
        assert!(err.to_string().contains("control token <s> (id 1)"), "{err}");
    }
}
