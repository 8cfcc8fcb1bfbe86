//! The service's Prometheus metrics (text exposition format, `GET /metrics`), kept by the
//! `prometheus-client` crate: requests and errors by status, latency, queue depth, batch sizes
//! and the sentences translated (sentences/s is `rate(locus_serve_sentences_total[1m])`, or
//! over the worker's busy time, `locus_serve_sentences_total / locus_serve_busy_seconds_total`).

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The label of a request's answer: its status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Status {
    /// The HTTP status code.
    pub code: u16,
}

/// Every metric; clones share the same values.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// `POST /translate` requests answered, by status code.
    pub requests: Family<Status, Counter>,
    /// Those answered with an error (status 400 and above), by status code.
    pub errors: Family<Status, Counter>,
    /// Seconds from a request's arrival to its answer.
    pub latency: Histogram,
    /// Sentences waiting in the queue.
    pub queue_depth: Gauge,
    /// Sentences per batch a worker takes from the queue (to start a batch or join one).
    pub batch_sentences: Histogram,
    /// Source tokens (EOS included) per batch a worker takes from the queue.
    pub batch_tokens: Histogram,
    /// Sentences translated.
    pub sentences: Counter,
    /// Seconds the workers spent translating, summed over them.
    pub busy_seconds: Counter<f64>,
    /// Requests whose translation failed (each answered with 500).
    pub worker_failures: Counter,
}

impl Metrics {
    /// Zeroed metrics, registered under `locus_serve_`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("locus_serve");
        let requests = Family::<Status, Counter>::default();
        let errors = Family::<Status, Counter>::default();
        let latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let queue_depth = Gauge::default();
        let batch_sentences = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        let batch_tokens = Histogram::new(exponential_buckets(8.0, 2.0, 12));
        let sentences = Counter::default();
        let busy_seconds = Counter::<f64>::default();
        let worker_failures = Counter::default();
        registry.register("requests", "Translation requests answered, by status code", requests.clone());
        registry.register(
            "errors",
            "Translation requests answered with an error, by status code",
            errors.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Seconds from a request to its answer",
            latency.clone(),
        );
        registry.register("queue_sentences", "Sentences waiting in the queue", queue_depth.clone());
        registry.register("batch_sentences", "Sentences per batch", batch_sentences.clone());
        registry.register("batch_tokens", "Source tokens per batch, EOS included", batch_tokens.clone());
        registry.register("sentences", "Sentences translated", sentences.clone());
        registry.register("busy_seconds", "Seconds the worker spent translating", busy_seconds.clone());
        registry.register("worker_failures", "Requests whose translation failed", worker_failures.clone());
        Self {
            registry: Arc::new(registry),
            requests,
            errors,
            latency,
            queue_depth,
            batch_sentences,
            batch_tokens,
            sentences,
            busy_seconds,
            worker_failures,
        }
    }

    /// Counts one answered request.
    pub fn answered(&self, code: u16, seconds: f64) {
        self.requests.get_or_create(&Status { code }).inc();
        if code >= 400 {
            self.errors.get_or_create(&Status { code }).inc();
        }
        self.latency.observe(seconds);
    }

    /// The metrics in Prometheus's text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
