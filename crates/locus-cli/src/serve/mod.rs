//! `locus serve`: translation as an HTTP JSON service, a thin async edge over the synchronous
//! [`locus_train::Translator`] (the design of Hugging Face text-generation-inference's router).
//!
//! - [`http`]: the axum routes; each `POST /translate` is parsed and checked by [`request`],
//!   put on the [`batcher::Queue`] with a reply channel and awaited (with a timeout);
//! - [`batcher`]: the bounded queue and the one worker thread that owns the model, takes the
//!   waiting requests as a batch by tokens (or after a short wait for more), translates the
//!   sentences of requests with equal search options together and answers each request;
//! - [`metrics`]: the Prometheus counters and histograms both sides update;
//! - [`error`]: every error a request can meet, mapped to its status code in one place.

pub mod batcher;
pub mod error;
pub mod http;
pub mod metrics;
pub mod request;
