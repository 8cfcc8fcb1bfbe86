//! What can go wrong with a request, and the HTTP status each failure answers with: the one
//! place where errors become status codes.

use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// A request that could not be answered with translations.
#[derive(Debug, Clone, PartialEq)]
pub enum ServeError {
    /// The body is not UTF-8, not JSON, or a field is missing, unknown or of the wrong type or
    /// value (the message names it): 400.
    BadRequest(String),
    /// No such route: 404.
    NotFound,
    /// The body, a sentence or the number of sentences is over the server's limit: 413.
    TooLarge(String),
    /// The queue holds as many sentences as it may: 503, with `Retry-After`.
    QueueFull {
        /// Seconds after which to try again.
        retry_after: Duration,
    },
    /// The server is stopping and takes no more work: 503.
    ShuttingDown,
    /// No answer within the server's time limit: 504.
    Timeout(Duration),
    /// Translation failed: 500.
    Internal(String),
}

impl ServeError {
    /// The status code this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::QueueFull { .. } | Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the response body's `error` says.
    pub fn message(&self) -> String {
        match self {
            Self::BadRequest(message) | Self::TooLarge(message) | Self::Internal(message) => message.clone(),
            Self::NotFound => "no such route: try GET /, GET /health, GET /metrics or POST /translate".into(),
            Self::QueueFull { .. } => "the server's queue is full (--max-queue); retry later".into(),
            Self::ShuttingDown => "the server is shutting down".into(),
            Self::Timeout(limit) => format!("no translation within {} ms (--timeout-ms)", limit.as_millis()),
        }
    }
}

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.message() }));
        match self {
            Self::QueueFull { retry_after } => {
                let seconds = retry_after.as_secs().max(1).to_string();
                (self.status(), [(header::RETRY_AFTER, seconds)], body).into_response()
            }
            _ => (self.status(), body).into_response(),
        }
    }
}
