//! The HTTP edge: axum routes over the [`Queue`], which the worker thread drains.
//!
//! - `POST /translate`: a [`request`](super::request) in, `{"translations": [...]}` out, in
//!   input order; with `"scores": true` also `scores` and `log_probs` (natural logs, as
//!   `locus translate --format jsonl`); with `nbest` above 1 (or samples) also `nbest`: per
//!   sentence, the list of `{translation, score, log_prob}`, best first.
//! - `GET /health`: `{"status": "ok"}`.
//! - `GET /metrics`: Prometheus's text format ([`Metrics`]).
//! - `GET /`: a page to type a sentence into and see its translation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use locus_data::SubwordTokenizer;
use locus_train::translate::{LineTranslation, Translation};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::batcher::{Entry, PushError, Queue};
use super::error::ServeError;
use super::metrics::Metrics;
use super::request::{parse_request, RequestLimits, TranslateRequest};
use crate::search_args::SearchArgs;

/// The page of `GET /`.
const PAGE: &str = include_str!("page.html");

/// What every handler shares.
pub struct AppState {
    /// Where requests wait for the worker.
    pub queue: Arc<Queue>,
    /// The service's metrics.
    pub metrics: Metrics,
    /// The checkpoint's tokenizer, to count each request's source tokens.
    pub tokenizer: SubwordTokenizer,
    /// The search a request gets unless it says otherwise.
    pub defaults: SearchArgs,
    /// What a request may ask for.
    pub limits: RequestLimits,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// How long a request may wait for its translations.
    pub timeout: Duration,
}

/// The service's routes.
pub fn router(state: Arc<AppState>) -> Router {
    let max_body = state.max_body_bytes;
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/health", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/metrics", get(metrics))
        .route("/translate", post(translate))
        .fallback(|| async { ServeError::NotFound })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], state.metrics.render()).into_response()
}

async fn translate(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = Instant::now();
    let response = match answer(&state, request).await {
        Ok(answer) => (StatusCode::OK, Json(answer)).into_response(),
        Err(error) => error.into_response(),
    };
    state.metrics.answered(response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

/// Checks the request, queues it and awaits its translations.
async fn answer(state: &AppState, request: Request) -> Result<Value, ServeError> {
    let too_large = || {
        let limit = state.max_body_bytes;
        ServeError::TooLarge(format!("the request body is larger than {limit} bytes (--max-body-bytes)"))
    };
    // A body announced too large is refused before a byte of it is read.
    let announced = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    if announced.is_some_and(|bytes: u64| bytes > state.max_body_bytes as u64) {
        return Err(too_large());
    }
    let body = Bytes::from_request(request, &()).await.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        _ => ServeError::BadRequest(rejection.body_text()),
    })?;
    let request = parse_request(&body, &state.defaults, &state.limits)?;
    if request.text.is_empty() {
        return Ok(json!({ "translations": [] }));
    }
    let tokens = source_tokens(state, &request)?;
    let (reply, receiver) = oneshot::channel();
    let TranslateRequest { text, scores, search } = request;
    let nbest = search.nbest() > 1;
    let entry = Entry { sentences: text, tokens, search, reply, queued: Instant::now() };
    state.queue.push(entry).map_err(|e| match e {
        PushError::Full => ServeError::QueueFull { retry_after: Duration::from_secs(1) },
        PushError::Closed => ServeError::ShuttingDown,
    })?;
    let translated = match tokio::time::timeout(state.timeout, receiver).await {
        Ok(Ok(Ok(translated))) => translated,
        Ok(Ok(Err(message))) => return Err(ServeError::Internal(message)),
        Ok(Err(_)) => return Err(ServeError::Internal("the translation worker stopped".into())),
        Err(_) => return Err(ServeError::Timeout(state.timeout)),
    };
    Ok(response(&translated, scores, nbest))
}

/// The request's source tokens as a batch counts them: each sentence's, cropped to the search's
/// source limit, plus its EOS.
fn source_tokens(state: &AppState, request: &TranslateRequest) -> Result<usize, ServeError> {
    let limit = request.search.max_source_len();
    let mut tokens = 0;
    for sentence in &request.text {
        let sentence = sentence.trim();
        if !sentence.is_empty() {
            let len =
                state.tokenizer.encode(sentence).map_err(|e| ServeError::BadRequest(e.to_string()))?.len();
            tokens += len.min(limit) + 1;
        }
    }
    Ok(tokens)
}

fn best(line: &LineTranslation) -> &Translation {
    &line.translations[0]
}

/// The response body for translated lines.
fn response(translated: &[LineTranslation], scores: bool, nbest: bool) -> Value {
    let mut answer = json!({
        "translations": translated.iter().map(|line| best(line).text.as_str()).collect::<Vec<_>>(),
    });
    if scores {
        answer["scores"] = translated.iter().map(|line| best(line).score).collect();
        answer["log_probs"] = translated.iter().map(|line| best(line).log_prob).collect();
    }
    if nbest {
        answer["nbest"] = translated
            .iter()
            .map(|line| {
                line.translations
                    .iter()
                    .map(|t| json!({ "translation": t.text, "score": t.score, "log_prob": t.log_prob }))
                    .collect::<Value>()
            })
            .collect();
    }
    answer
}
