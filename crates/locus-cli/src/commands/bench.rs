//! `locus bench train` and `locus bench translate`: throughput on this machine, with the ratios
//! that make numbers from shared, noisy machines comparable (model FLOP/s over the matmul FLOP/s
//! measured in the same process, in the training precision's dtype). `locus bench parity`: the
//! CPU against a GPU on the same weights and batch, each difference against its limit.
//! `locus bench all-reduce`: the time and exactness of the ranks' gradient sum on its own.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use locus_model::search::phases;
use locus_train::bench::{
    bench_train, matmul_flops_per_sec, median, peak_rss_bytes, quantile, reference_matmul_shape,
    FLOPS_FORMULA,
};
use locus_train::distributed::{bench_all_reduce, BUCKET_FLOATS};
use locus_train::parity::device_parity;
use locus_train::workers::map_on_workers;
use locus_train::{load_checkpoint, RunConfig, Translator};
use serde_json::json;

use crate::device::parse_device;
use crate::job::Job;
use crate::pool::WorkerArgs;
use crate::progress::ProgressDisplay;
use crate::quantize_args::QuantizeArgs;
use crate::search_args::SearchArgs;
use locus_train::Observer;

/// Arguments of `locus bench`.
#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: Bench,
}

impl BenchArgs {
    /// The `--workers` of `bench translate`.
    pub fn workers_mut(&mut self) -> Option<&mut WorkerArgs> {
        match &mut self.what {
            Bench::Translate(args) => Some(&mut args.workers),
            _ => None,
        }
    }
}

#[derive(Subcommand)]
enum Bench {
    /// Time training steps on real batches of a config's data (no validation, no checkpoints).
    Train(TrainBenchArgs),
    /// Time translation of a file with a checkpoint.
    Translate(TranslateBenchArgs),
    /// Compare the CPU with a device on a config's first training batch (exits 1 on a failure).
    Parity(ParityBenchArgs),
    /// Time the sum over the job's ranks of buffers of several sizes and check it is exact
    /// (run under mpirun; NCCL between GPUs in a build with `nccl`; exits 1 on a wrong sum).
    AllReduce(AllReduceBenchArgs),
}

/// Arguments of `locus bench all-reduce`.
#[derive(Args)]
pub struct AllReduceBenchArgs {
    /// Buffer sizes in f32 values (default: 1Ki, 64Ki, the 1Mi of a gradient bucket, 16Mi).
    #[arg(long, value_delimiter = ',', default_values_t = [1 << 10, 1 << 16, BUCKET_FLOATS, 1 << 24])]
    floats: Vec<usize>,
    /// Timed sums of each size.
    #[arg(long, default_value_t = 20)]
    repeats: usize,
    /// auto, cpu, cuda, cuda:N or metal (`cuda`: one GPU per rank).
    #[arg(long, default_value = "auto")]
    device: String,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

/// Arguments of `locus bench parity`.
#[derive(Args)]
pub struct ParityBenchArgs {
    /// The run config (its data, model and seed).
    #[arg(long)]
    config: PathBuf,
    /// Override a config value (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
    /// The device compared with the CPU: cuda, cuda:N, metal, auto or cpu (against itself).
    #[arg(long, default_value = "auto")]
    device: String,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

/// Arguments of `locus bench train`.
#[derive(Args)]
pub struct TrainBenchArgs {
    /// The run config.
    #[arg(long)]
    config: PathBuf,
    /// Override a config value (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
    /// auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    device: String,
}

/// Arguments of `locus bench translate`.
#[derive(Args)]
pub struct TranslateBenchArgs {
    /// A checkpoint directory.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Source text, one sentence per line (plain or .gz).
    #[arg(long)]
    input: PathBuf,
    /// Sentences decoded together.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[command(flatten)]
    workers: WorkerArgs,
    #[command(flatten)]
    search: SearchArgs,
    #[command(flatten)]
    quantize: QuantizeArgs,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
    /// auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    device: String,
}

/// Runs the chosen benchmark.
pub fn run(args: BenchArgs) -> Result<()> {
    match args.what {
        Bench::Train(args) => train(args),
        Bench::Translate(args) => crate::pool::on_a_pool_thread(|| translate(args)),
        Bench::Parity(args) => parity(args),
        Bench::AllReduce(args) => all_reduce(args),
    }
}

fn all_reduce(args: AllReduceBenchArgs) -> Result<()> {
    let mut job = Job::join()?;
    let device = job.open_device(&args.device)?;
    let timings = job.run(|| Ok(bench_all_reduce(job.comm(), &device, &args.floats, args.repeats)?))?;
    if !job.is_root() {
        return Ok(());
    }
    let ranks = job.comm().world_size();
    let engine = job.comm().engine();
    println!(
        "{ranks} rank(s) on {device:?}, summed by {engine}; median of {} sums of each size",
        args.repeats
    );
    println!(
        "{:>10} {:>10} {:>12} {:>14} {:>14} {:>10}",
        "floats", "MiB", "median ms", "algbw GB/s", "busbw GB/s", "max error"
    );
    for t in &timings {
        println!(
            "{:>10} {:>10.3} {:>12.3} {:>14.2} {:>14.2} {:>10}",
            t.floats,
            (4 * t.floats) as f64 / (1u64 << 20) as f64,
            1e3 * t.median_seconds,
            t.bytes_per_second() / 1e9,
            t.bus_bytes_per_second(ranks) / 1e9,
            t.max_error
        );
    }
    if args.json {
        let sizes: Vec<_> = timings
            .iter()
            .map(|t| {
                json!({"floats": t.floats, "median_s": t.median_seconds, "bytes_per_s": t.bytes_per_second(),
                       "bus_bytes_per_s": t.bus_bytes_per_second(ranks), "max_error": t.max_error})
            })
            .collect();
        println!(
            "{}",
            json!({"ranks": ranks, "device": format!("{device:?}"), "engine": engine, "sizes": sizes})
        );
    }
    if let Some(wrong) = timings.iter().find(|t| t.max_error != 0.0) {
        bail!("the sum of {} floats over {ranks} ranks is off by up to {}", wrong.floats, wrong.max_error);
    }
    Ok(())
}

fn gib(bytes: Option<u64>) -> Option<f64> {
    bytes.map(|b| b as f64 / (1u64 << 30) as f64)
}

fn train(args: TrainBenchArgs) -> Result<()> {
    crate::allocator::use_huge_pages();
    let mut job = Job::join()?;
    let device = job.open_device(&args.device)?;
    let (config, bench) = job.run(|| {
        let config = RunConfig::load(&args.config, &args.overrides)
            .with_context(|| format!("loading config {}", args.config.display()))?;
        if job.is_root() {
            eprintln!(
                "preparing data and model, then {} warm-up and {} timed steps",
                args.warmup, args.steps
            );
        }
        let display = job.is_root().then(ProgressDisplay::new);
        let show: Observer = &|event| display.iter().for_each(|display| display.show(event));
        let bench = bench_train(&config, &device, args.steps, args.warmup, show, job.comm())?;
        Ok((config, bench))
    })?;
    if !job.is_root() {
        return Ok(());
    }
    let ranks = job.comm().world_size();
    let steps = &bench.steps;
    let seconds: f64 = steps.iter().map(|s| s.seconds).sum();
    let step_secs: Vec<f64> = steps.iter().map(|s| s.seconds).collect();
    let prepare_secs: f64 = steps.iter().map(|s| s.prepare_seconds).sum();
    let real_tokens: usize = steps.iter().map(|s| s.real_tokens).sum();
    let target_tokens: usize = steps.iter().map(|s| s.target_tokens).sum();
    let flops: f64 = steps.iter().map(|s| s.flops).sum();
    // The matmul of similar shape: a typical batch's positions through the first FFN layer.
    // On a GPU, a large square one (see `reference_matmul_shape`); in the training dtype.
    let positions: Vec<f64> = steps.iter().map(|s| s.padded_target_positions as f64).collect();
    let (m, k, n) = reference_matmul_shape(&device, median(&positions) as usize, &config.model);
    let precision = config.train.precision;
    // Each rank has this rank's matmul rate: the job's peak is that many times it.
    let matmul = matmul_flops_per_sec(m, k, n, precision.dtype(), &device, 10)? * ranks as f64;
    let achieved = flops / seconds.max(1e-12);
    let comm_secs: f64 = steps.iter().map(|s| s.comm_seconds).sum();
    let record = json!({
        "steps": steps.len(), "median_step_s": median(&step_secs),
        "tokens_per_s": real_tokens as f64 / seconds, "target_tokens_per_s": target_tokens as f64 / seconds,
        "model_flops_per_s": achieved, "matmul_flops_per_s": matmul, "matmul_shape": [m, k, n],
        "matmul_dtype": precision.name(), "precision": precision.name(),
        "mfu": achieved / matmul, "parameters": bench.parameters, "vocab_size": bench.vocab_size,
        "peak_rss_gib": gib(peak_rss_bytes()), "flops_formula": FLOPS_FORMULA,
        "batch_prepare_fraction": prepare_secs / seconds.max(1e-12),
        "ranks": ranks, "threads_per_rank": candle_core::utils::get_num_threads(),
        "communication_fraction": comm_secs / seconds.max(1e-12),
    });
    if ranks > 1 {
        println!(
            "{ranks} ranks x {} threads; summing gradients over the ranks: {:.1} ms per step, {:.1}% of the time",
            candle_core::utils::get_num_threads(),
            1e3 * comm_secs / steps.len().max(1) as f64,
            100.0 * comm_secs / seconds.max(1e-12)
        );
    }
    println!("{} timed steps, median {:.3} s/step", steps.len(), median(&step_secs));
    println!(
        "{:.0} tokens/s (real source + target), {:.0} target tokens/s",
        real_tokens as f64 / seconds,
        target_tokens as f64 / seconds
    );
    println!(
        "model {:.1} GFLOP/s; {} matmul {m}x{k}x{n} {:.1} GFLOP/s; mfu {:.3}",
        achieved / 1e9,
        precision.name(),
        matmul / 1e9,
        achieved / matmul
    );
    println!("FLOPs: {FLOPS_FORMULA}");
    println!(
        "batch preparation: {:.2} ms per step, {:.3}% of the time",
        1e3 * prepare_secs / steps.len().max(1) as f64,
        100.0 * prepare_secs / seconds.max(1e-12)
    );
    if let Some(peak) = gib(peak_rss_bytes()) {
        println!("peak RSS {peak:.2} GiB");
    }
    if args.json {
        println!("{record}");
    }
    Ok(())
}

fn translate(args: TranslateBenchArgs) -> Result<()> {
    args.search.resolve()?;
    let device = parse_device(&args.device)?;
    let checkpoint = load_checkpoint(&args.checkpoint, &device)?;
    let lines: Vec<String> = locus_data::read_lines_allow_empty(&args.input)?
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .collect();
    let model = args.quantize.for_inference(&checkpoint.model)?;
    let mut translator = Translator::new(&model, &checkpoint.tokenizer);
    args.search.configure(&mut translator)?;
    translator.batch_size = args.batch_size;
    // Batches of similar length, as `translate` makes them; each is timed on its own.
    let mut order: Vec<(usize, &String)> = lines
        .iter()
        .map(|line| Ok((checkpoint.tokenizer.encode(line)?.len(), line)))
        .collect::<Result<_, locus_data::DataError>>()?;
    order.sort_by_key(|&(len, _)| len);
    let sorted: Vec<&String> = order.into_iter().map(|(_, line)| line).collect();
    let batches: Vec<&[&String]> = sorted.chunks(args.batch_size.max(1)).collect();
    let started = Instant::now();
    // Each batch timed on its own, on whichever worker decodes it.
    let workers = args.workers.count_on(&device);
    phases::reset();
    let timed = map_on_workers(batches.len(), workers, |b| {
        let batch_started = Instant::now();
        let translations = translator.translate_nbest(batches[b], 0)?;
        let generated = translations.iter().map(|list| list[0].length + 1).sum::<usize>();
        Ok((batch_started.elapsed().as_secs_f64(), generated))
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let generated: usize = timed.iter().map(|&(_, generated)| generated).sum();
    // Summed over the workers, as the phases are.
    let busy: f64 = timed.iter().map(|&(seconds, _)| seconds).sum();
    let phases = phases::read();
    let (encoder, steps) = (phases.encoder.as_secs_f64(), phases.decoder_steps.as_secs_f64());
    // The rest of the workers' time: log-softmax, choosing tokens, caches, tokenizing.
    let search = (busy - encoder - steps).max(0.0);
    let latencies: Vec<f64> = batches
        .iter()
        .zip(&timed)
        .flat_map(|(batch, &(seconds, _))| std::iter::repeat_n(seconds, batch.len()))
        .collect();
    let record = json!({
        "sentences": lines.len(), "seconds": seconds, "sentences_per_s": lines.len() as f64 / seconds,
        "generated_tokens_per_s": generated as f64 / seconds,
        "latency_p50_s": quantile(&latencies, 0.5), "latency_p95_s": quantile(&latencies, 0.95),
        "batch_size": args.batch_size, "workers": workers, "quantize": args.quantize.quantize.to_string(),
        "busy_s": busy, "encoder_s": encoder, "decoder_steps_s": steps, "decoder_steps": phases.steps,
        "search_s": search, "peak_rss_gib": gib(peak_rss_bytes()),
    });
    println!(
        "{} sentences in {seconds:.2} s ({workers} worker(s), quantize {}): {:.1} sentences/s, {:.0} generated tokens/s (EOS included)",
        lines.len(),
        args.quantize.quantize,
        lines.len() as f64 / seconds,
        generated as f64 / seconds
    );
    println!(
        "latency per sentence (its batch's time): p50 {:.3} s, p95 {:.3} s",
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.95)
    );
    let share = |seconds: f64| 100.0 * seconds / busy.max(1e-12);
    println!(
        "time, summed over the workers ({busy:.2} s): encoder {:.1}%, decoder steps {:.1}% ({} steps, {:.2} ms each), \
         search and tokenizing {:.1}%",
        share(encoder),
        share(steps),
        phases.steps,
        1e3 * steps / phases.steps.max(1) as f64,
        share(search)
    );
    if let Some(peak) = gib(peak_rss_bytes()) {
        println!("peak RSS {peak:.2} GiB");
    }
    if args.json {
        println!("{record}");
    }
    Ok(())
}

fn parity(args: ParityBenchArgs) -> Result<()> {
    let config = RunConfig::load(&args.config, &args.overrides)
        .with_context(|| format!("loading config {}", args.config.display()))?;
    let device = parse_device(&args.device)?;
    let parity = device_parity(&config, &device)?;
    println!(
        "CPU against {:?}: first training batch, {} sentences, {} target tokens, {} variables",
        device.location(),
        parity.sentences,
        parity.target_tokens,
        parity.variables
    );
    println!("loss per target token: CPU f32 {:.6}, device bf16 {:.6}", parity.loss_f32, parity.loss_bf16);
    let mut checks = Vec::new();
    for check in parity.checks() {
        let verdict = if check.passed() { "pass" } else { "FAIL" };
        println!(
            "{verdict}  {:<10} {:.3e} (limit {:.0e})  {}",
            check.name, check.value, check.limit, check.what
        );
        checks.push(json!({
            "name": check.name, "what": check.what, "value": check.value, "limit": check.limit,
            "passed": check.passed(),
        }));
    }
    if args.json {
        let record = json!({
            "device": format!("{:?}", device.location()), "passed": parity.passed(),
            "sentences": parity.sentences, "target_tokens": parity.target_tokens,
            "variables": parity.variables, "loss_f32": parity.loss_f32, "loss_bf16": parity.loss_bf16,
            "loss_rel_diff": parity.loss_rel_diff(), "init_max_abs_diff": parity.init_max_abs_diff,
            "logits_max_abs_diff": parity.logits_max_abs_diff,
            "step_max_abs_diff": parity.step_max_abs_diff, "checks": checks,
        });
        println!("{record}");
    }
    if !parity.passed() {
        bail!("device parity failed (see the FAIL lines above)");
    }
    Ok(())
}
