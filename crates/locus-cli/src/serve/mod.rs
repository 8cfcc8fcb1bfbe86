//! `locus serve`: translation as an HTTP JSON service, a thin async edge over the synchronous
//! [`locus_train::Translator`] (the design of Hugging Face text-generation-inference's router).
//!
//! - [`http`]: the axum routes; each `POST /translate` is parsed and checked by [`request`],
//!   put on the [`batcher::Queue`] with a reply channel and awaited (with a timeout);
//! - [`batcher`]: the bounded queue, which hands the waiting requests to the workers as batches
//!   by tokens (or after a short wait for more), or to join a batch being decoded;
//! - [`worker`]: the worker threads' loop over one loaded model: greedy requests decode by
//!   continuous batching, beam and sampling requests in batches of equal search options; each
//!   request is answered when its own sentences end;
//! - [`metrics`]: the Prometheus counters and histograms both sides update;
//! - [`error`]: every error a request can meet, mapped to its status code in one place.

pub mod batcher;
pub mod error;
pub mod http;
pub mod metrics;
pub mod request;
pub mod worker;
