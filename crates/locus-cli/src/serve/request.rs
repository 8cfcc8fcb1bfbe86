//! The body of `POST /translate`, parsed and checked against the server's limits before
//! anything is queued.
//!
//! ```json
//! {"text": ["ein hund läuft", "..."], "scores": true, "beam": 4, "nbest": 2}
//! ```
//!
//! `text` (required) is the list of sentences; `scores` (default false) asks for each
//! translation's scores; every other field is a search option of `locus translate`, by the same
//! name (`beam`, `nbest`, `length_penalty`, `early_stop`, `max_len_a`, `max_len_b`, `max_len`,
//! `max_source_len`, `min_len`, `sample`, `temperature`, `top_k`, `top_p`, `seed`), overriding
//! the server's default for this request, within the server's [`SearchBounds`].

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::ServeError;
use crate::search_args::{SearchArgs, SearchBounds};

/// The fields of a request that are not search options.
const OWN_FIELDS: [&str; 2] = ["text", "scores"];

/// Limits on what one request may ask for.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// Most sentences in one request.
    pub max_sentences: usize,
    /// Most characters in one sentence.
    pub max_sentence_chars: usize,
    /// Bounds on the search options.
    pub search: SearchBounds,
}

/// A checked translation request.
#[derive(Debug, Clone, PartialEq)]
pub struct TranslateRequest {
    /// The sentences, in the order the answer keeps.
    pub text: Vec<String>,
    /// Whether to answer with scores.
    pub scores: bool,
    /// The search: the server's defaults with the request's options over them.
    pub search: SearchArgs,
}

#[derive(Deserialize)]
struct OwnFields {
    text: Vec<String>,
    #[serde(default)]
    scores: bool,
}

/// Parses `body` into a request whose search options override `defaults`.
///
/// # Errors
/// [`ServeError::BadRequest`] for a body that is not UTF-8 or not a JSON object, a missing
/// `text`, an unknown field, a field of the wrong type (each naming the field) and
/// contradictory or out-of-bounds search options; [`ServeError::TooLarge`] for too many or too
/// long sentences.
pub fn parse_request(
    body: &[u8],
    defaults: &SearchArgs,
    limits: &RequestLimits,
) -> Result<TranslateRequest, ServeError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ServeError::BadRequest(format!(
            "the request body is not UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| ServeError::BadRequest(format!("malformed JSON: {e}")))?;
    let Value::Object(mut fields) = value else {
        return Err(ServeError::BadRequest("the request must be a JSON object with a `text` field".into()));
    };
    let own: Map<String, Value> =
        OWN_FIELDS.iter().filter_map(|&name| Some((name.to_owned(), fields.remove(name)?))).collect();
    let own: OwnFields = deserialize(Value::Object(own))?;
    let mut search = serde_json::to_value(defaults).map_err(|e| ServeError::Internal(e.to_string()))?;
    if let Value::Object(merged) = &mut search {
        merged.extend(fields);
    }
    let search: SearchArgs = deserialize(search)?;
    search.resolve().map_err(|e| ServeError::BadRequest(format!("{e:#}")))?;
    let search = search.bounded(&limits.search).map_err(|e| ServeError::BadRequest(format!("{e:#}")))?;
    if own.text.len() > limits.max_sentences {
        return Err(ServeError::TooLarge(format!(
            "`text` holds {} sentences; this server takes at most {} per request (--max-sentences)",
            own.text.len(),
            limits.max_sentences
        )));
    }
    for (i, sentence) in own.text.iter().enumerate() {
        let chars = sentence.chars().count();
        if chars > limits.max_sentence_chars {
            return Err(ServeError::TooLarge(format!(
                "`text[{i}]` has {chars} characters; this server takes at most {} (--max-sentence-chars)",
                limits.max_sentence_chars
            )));
        }
    }
    Ok(TranslateRequest { text: own.text, scores: own.scores, search })
}

/// `value` as a `T`; an error names the field (`text[2]`, `beam`) and what was wrong with it.
fn deserialize<T: for<'de> Deserialize<'de>>(value: Value) -> Result<T, ServeError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        match path.as_str() {
            "." => ServeError::BadRequest(e.inner().to_string()),
            _ => ServeError::BadRequest(format!("field `{path}`: {}", e.inner())),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search_args::parse_search_args;
    use locus_model::BeamOptions;
    use locus_train::translate::Search;

    fn limits() -> RequestLimits {
        let search = SearchBounds { max_beam: 4, max_output_len: 50, max_source_len: 100 };
        RequestLimits { max_sentences: 3, max_sentence_chars: 10, search }
    }

    fn parse(body: &str) -> Result<TranslateRequest, ServeError> {
        parse_request(body.as_bytes(), &parse_search_args(&[]), &limits())
    }

    fn bad(body: &str) -> String {
        match parse(body) {
            Err(ServeError::BadRequest(message)) => message,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn options_override_the_defaults_within_bounds() {
        let request =
            parse(r#"{"text": ["a", "b"], "beam": 3, "early_stop": true, "scores": true}"#).unwrap();
        assert_eq!(request.text, ["a", "b"]);
        assert!(request.scores);
        let expected =
            parse_search_args(&["--beam", "3", "--early-stop", "--max-len", "50", "--max-source-len", "100"]);
        assert_eq!(request.search, expected);
        let (search, _) = request.search.resolve().unwrap();
        assert!(matches!(search, Search::Beam(BeamOptions { beam: 3, early_stop: true, .. })), "{search:?}");
        let request = parse(r#"{"text": [], "max_len": 7, "max_source_len": 1000}"#).unwrap();
        let expected = parse_search_args(&["--max-len", "7", "--max-source-len", "100"]);
        assert_eq!(request.search, expected);
    }

    #[test]
    fn errors_name_the_field() {
        assert!(bad("{").starts_with("malformed JSON"));
        assert!(bad("[1]").contains("JSON object"));
        assert!(bad("{}").contains("missing field `text`"));
        assert!(bad(r#"{"text": "a"}"#).starts_with("field `text`"));
        assert!(bad(r#"{"text": ["a", 3]}"#).starts_with("field `text[1]`"));
        assert!(bad(r#"{"text": [], "beam": "four"}"#).starts_with("field `beam`"));
        assert!(bad(r#"{"text": [], "bream": 2}"#).contains("unknown field `bream`"));
        assert!(bad(r#"{"text": [], "beam": 8}"#).contains("at most 4"));
        assert!(bad(r#"{"text": [], "nbest": 2}"#).contains("--nbest (2) needs --beam"));
        let not_utf8 = parse_request(b"{\"text\": [\"\xff\"]}", &parse_search_args(&[]), &limits());
        assert!(matches!(not_utf8, Err(ServeError::BadRequest(m)) if m.contains("not UTF-8")));
    }

    #[test]
    fn too_many_or_too_long_sentences_are_too_large() {
        assert!(matches!(parse(r#"{"text": ["a", "b", "c", "d"]}"#), Err(ServeError::TooLarge(_))));
        assert!(
            matches!(parse(r#"{"text": ["äöüäöüäöüäö"]}"#), Err(ServeError::TooLarge(m)) if m.contains("text[0]"))
        );
        assert!(parse(r#"{"text": ["äöüäöüäöüä"]}"#).is_ok());
    }
}
