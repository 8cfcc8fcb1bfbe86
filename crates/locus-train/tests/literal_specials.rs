//! Issue 19: literal special-token strings in the text `locus translate` and `locus evaluate`
//! read are ordinary text. Both encode sources with [`SubwordTokenizer::encode`] or
//! [`SubwordTokenizer::encode_batch`]; here `evaluate_by_length` shows the source lengths it
//! counts: a literal `<s>` is at least two subwords, never the one control token.

use locus_data::{LengthBuckets, SubwordModel, SubwordTokenizer, SPECIAL_TOKENS, UNK_ID};
use locus_train::evaluate::evaluate_by_length;

const TRAINING_TEXT: &[&str] = &[
    "a man rides a bike < b > c / d",
    "the signs < and > or / are here",
    "a dog and a cat play in the sun",
    "two kids swim in a pool",
];

#[test]
fn evaluation_counts_literal_special_tokens_as_text() {
    let tokenizer =
        SubwordTokenizer::train(SubwordModel::Bpe, 100, TRAINING_TEXT.iter().cycle().take(40)).unwrap();
    let sources: Vec<String> = SPECIAL_TOKENS.iter().map(|t| t.to_string()).collect();
    let buckets: LengthBuckets = "1-1,2-".parse().unwrap();
    let by_length = evaluate_by_length(&tokenizer, &sources, &sources, &sources, &buckets).unwrap();
    assert_eq!((by_length[0].sentences, by_length[1].sentences), (0, SPECIAL_TOKENS.len()));
    for (source, ids) in sources.iter().zip(tokenizer.encode_batch(&sources).unwrap()) {
        assert!(ids.iter().all(|&id| id > UNK_ID), "{source} -> {:?}", tokenizer.id_to_pieces(&ids));
        assert_eq!(tokenizer.decode(&ids).unwrap(), *source);
    }
}
