//! `locus serve --checkpoint DIR [--host 127.0.0.1] [--port 8080] [search options]`: translation
//! as an HTTP JSON service (see [`crate::serve`]).
//!
//! The model is loaded once and run only by the worker threads (`--workers`, each taking its own
//! batches from the queue); the async runtime only parses, queues and answers. SIGTERM or SIGINT
//! stops accepting connections, lets the requests in flight finish, drains the queue and exits
//! with status 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use locus_train::translate::DEFAULT_MAX_TOKENS;
use locus_train::workers::map_on_workers;
use locus_train::{load_checkpoint, Translator};

use crate::device::parse_device;
use crate::pool::WorkerArgs;
use crate::quantize_args::QuantizeArgs;
use crate::search_args::{SearchArgs, SearchBounds};
use crate::serve::batcher::{BatchLimits, Queue};
use crate::serve::http::{router, AppState};
use crate::serve::metrics::Metrics;
use crate::serve::request::RequestLimits;
use crate::serve::worker::run_worker;

/// Arguments of `locus serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// A checkpoint directory, e.g. runs/multi30k-de-en/best.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The search a request gets unless it sets these options itself.
    #[command(flatten)]
    search: SearchArgs,
    /// Largest beam (and n-best list, or samples) a request may ask for.
    #[arg(long, default_value_t = 8)]
    max_beam: usize,
    /// Most output tokens of any translation, whatever a request asks.
    #[arg(long, default_value_t = 256)]
    max_output_len: usize,
    /// Most sentences decoded together.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[command(flatten)]
    pub(crate) workers: WorkerArgs,
    #[command(flatten)]
    quantize: QuantizeArgs,
    /// Most source tokens (EOS included) decoded together: a batch is due when the waiting
    /// requests hold this many, or when the oldest has waited --max-wait-ms.
    #[arg(long, default_value_t = DEFAULT_MAX_TOKENS)]
    max_batch_tokens: usize,
    /// Longest time a request waits for others to share its batch, in milliseconds.
    #[arg(long, default_value_t = 5)]
    max_wait_ms: u64,
    /// Most sentences waiting in the queue; a request that does not fit is answered 503.
    #[arg(long, default_value_t = 4096)]
    max_queue: usize,
    /// Most sentences in one request (413 above).
    #[arg(long, default_value_t = 256)]
    max_sentences: usize,
    /// Most characters in one sentence (413 above).
    #[arg(long, default_value_t = 4096)]
    max_sentence_chars: usize,
    /// Largest request body in bytes (413 above).
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Longest time a request waits for its translations, in milliseconds (504 after).
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    device: String,
}

/// Serves until SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> Result<()> {
    args.search.resolve()?;
    if args.max_sentences > args.max_queue {
        bail!("--max-sentences ({}) must be at most --max-queue ({})", args.max_sentences, args.max_queue);
    }
    let bounds = SearchBounds {
        max_beam: args.max_beam,
        max_output_len: args.max_output_len,
        max_source_len: args.search.max_source_len(),
    };
    let defaults = args.search.clone().bounded(&bounds).context("the server's search options")?;
    let device = parse_device(&args.device)?;
    let checkpoint = load_checkpoint(&args.checkpoint, &device)?;
    let metrics = Metrics::new();
    let queue = Arc::new(Queue::new(args.max_queue, metrics.clone()));
    let state = Arc::new(AppState {
        queue: queue.clone(),
        metrics: metrics.clone(),
        tokenizer: checkpoint.tokenizer.clone(),
        defaults,
        limits: RequestLimits {
            max_sentences: args.max_sentences,
            max_sentence_chars: args.max_sentence_chars,
            search: bounds,
        },
        max_body_bytes: args.max_body_bytes,
        timeout: Duration::from_millis(args.timeout_ms),
    });
    let limits = BatchLimits {
        max_tokens: args.max_batch_tokens,
        max_sentences: args.batch_size,
        max_wait: Duration::from_millis(args.max_wait_ms),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let workers = args.workers.count_on(&device);
    let (model, tokenizer) = (&args.quantize.for_inference(&checkpoint.model)?, &checkpoint.tokenizer);
    std::thread::scope(|scope| {
        // Each worker takes its own batches from the queue and translates them with its own
        // translator over the one loaded model.
        let worker = std::thread::Builder::new().name("translate".into()).spawn_scoped(scope, || {
            crate::pool::on_a_pool_thread(|| {
                map_on_workers(workers, workers, |_| {
                    let mut translator = Translator::new(model, tokenizer);
                    translator.batch_size = limits.max_sentences;
                    translator.max_tokens = limits.max_tokens;
                    run_worker(&queue, &mut translator, &limits, &metrics);
                    Ok(())
                })
            })
        })?;
        let served = runtime.block_on(serve(&args.host, args.port, router(state)));
        // No request can reach the queue any more: the workers answer those waiting, then stop.
        queue.close();
        match worker.join() {
            Ok(workers) => workers.context("starting the translation workers")?,
            Err(_) => bail!("the translation worker panicked"),
        };
        served
    })
}

/// Listens on `host:port` until a signal, then waits for the requests in flight.
async fn serve(host: &str, port: u16, app: axum::Router) -> Result<()> {
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .with_context(|| format!("listening on {host}:{port}"))?;
    let address: SocketAddr = listener.local_addr()?;
    eprintln!("locus serve: listening on http://{address}");
    axum::serve(listener, app).with_graceful_shutdown(stop_signal()).await.context("serving HTTP")?;
    eprintln!("locus serve: stopped");
    Ok(())
}

/// Resolves at the first SIGTERM or SIGINT.
async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    eprintln!("locus serve: stopping; finishing the requests in flight");
}
