//! `locus pe show`: draws a positional encoding (the table of additive kinds, the per-head bias
//! of bias kinds, the rotation of RoPE) and how similar it makes positions; with
//! `--checkpoint`, what a trained model actually learned.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};
use clap::{Args, Subcommand, ValueEnum};
use locus_model::positional::absolute::AbsoluteTable;
use locus_model::positional::relative::relative_indices;
use locus_model::positional::t5::t5_bucket;
use locus_model::positional::{alibi, AbsoluteEncoding, RelativePositions, Rotary};
use locus_model::{ModelConfig, PositionalConfig, PositionalEncoding};
use locus_train::load_checkpoint;

use crate::plot::{draw_heatmaps, Heatmap};

/// Arguments of `locus pe`.
#[derive(Args)]
pub struct PeArgs {
    #[command(subcommand)]
    command: PeCommand,
}

#[derive(Subcommand)]
enum PeCommand {
    /// Draw a positional encoding to an SVG or PNG file.
    Show(ShowArgs),
}

/// The encodings `pe show` can draw without a checkpoint (with their default settings).
#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Sinusoidal,
    Learned,
    Relative,
    T5,
    Rope,
    Alibi,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Stack {
    Encoder,
    Decoder,
}

#[derive(Args)]
struct ShowArgs {
    /// The encoding to draw, with its default settings (ignored with --checkpoint).
    #[arg(long, value_enum, required_unless_present = "checkpoint")]
    kind: Option<Kind>,
    /// Number of positions drawn.
    #[arg(long, default_value_t = 64)]
    len: usize,
    /// Model width (without --checkpoint).
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Attention heads (without --checkpoint).
    #[arg(long, default_value_t = 8)]
    heads: usize,
    /// Draw what this checkpoint learned instead.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Which stack of the checkpoint to draw.
    #[arg(long, value_enum, default_value = "encoder")]
    stack: Stack,
    /// Output file, .svg or .png.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `locus pe <command>`.
pub fn run(args: PeArgs) -> Result<()> {
    match args.command {
        PeCommand::Show(show) => run_show(show),
    }
}

fn default_config(kind: Kind, len: usize) -> PositionalConfig {
    match kind {
        Kind::Sinusoidal => PositionalConfig::default(),
        Kind::Learned => PositionalConfig::Learned {
            max_len: len,
            combine: Default::default(),
            d_pos: None,
            every_layer: false,
            position_shift: 0,
        },
        Kind::Relative => PositionalConfig::Relative { max_distance: 16, values: true },
        Kind::T5 => PositionalConfig::T5 { num_buckets: 32, max_distance: 128 },
        Kind::Rope => PositionalConfig::Rope { theta: 10000.0 },
        Kind::Alibi => PositionalConfig::Alibi {},
    }
}

/// What is drawn: a stack's encoding, and its first layer's relative vectors if it has them.
struct Subject {
    encoding: PositionalEncoding,
    relative: Option<RelativePositions>,
    causal: bool,
    trained: bool,
}

fn run_show(args: ShowArgs) -> Result<()> {
    let device = Device::Cpu;
    let subject = match (&args.checkpoint, args.kind) {
        (Some(dir), _) => {
            let checkpoint = load_checkpoint(dir, &device)?;
            let (encoding, relative) = match args.stack {
                Stack::Encoder => {
                    let encoder = checkpoint.model.encoder();
                    let relative = encoder.layers().first().and_then(|l| l.self_attn().relative().cloned());
                    (encoder.positional().clone(), relative)
                }
                Stack::Decoder => {
                    let decoder = checkpoint.model.decoder();
                    let relative = decoder.layers().first().and_then(|l| l.self_attn().relative().cloned());
                    (decoder.positional().clone(), relative)
                }
            };
            Subject { encoding, relative, causal: args.stack == Stack::Decoder, trained: true }
        }
        (None, Some(kind)) => {
            let cfg = default_config(kind, args.len);
            let model = ModelConfig {
                d_model: args.dim,
                n_heads: args.heads,
                positional: cfg.clone(),
                ..Default::default()
            };
            model.validate().context("--dim/--heads")?;
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
            let encoding = PositionalEncoding::new(&cfg, args.dim, args.heads, false, vb.pp("positional"))?;
            let relative = encoding
                .relative()
                .map(|spec| {
                    RelativePositions::new(
                        spec.max_distance,
                        args.dim / args.heads,
                        spec.values,
                        vb.pp("relative"),
                    )
                })
                .transpose()?;
            Subject { encoding, relative, causal: false, trained: false }
        }
        (None, None) => bail!("give --kind or --checkpoint"),
    };
    let panels = panels(&subject, args.len)?;
    let columns = panels.len().min(4);
    draw_heatmaps(&panels, columns, &args.out)?;
    eprintln!("wrote {} ({} panels)", args.out.display(), panels.len());
    Ok(())
}

fn matrix(tensor: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(tensor.to_dtype(DType::F32)?.to_vec2::<f32>()?)
}

fn heatmap(title: String, x_label: &str, y_label: &str, values: Vec<Vec<f32>>) -> Heatmap {
    Heatmap { title, x_label: x_label.into(), y_label: y_label.into(), values }
}

/// Cosine similarity between the rows of `vectors`: `(n, n)`.
fn cosine_similarity(vectors: &Tensor) -> Result<Tensor> {
    let norms = vectors.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    let unit = vectors.broadcast_div(&(norms + 1e-12)?)?;
    Ok(unit.matmul(&unit.t()?)?)
}

fn panels(subject: &Subject, len: usize) -> Result<Vec<Heatmap>> {
    let device = Device::Cpu;
    let learned = if subject.trained { "learned" } else { "untrained" };
    Ok(match &subject.encoding {
        PositionalEncoding::None => bail!("this encoding (none) has no position signal to draw"),
        PositionalEncoding::Absolute(absolute) => absolute_panels(absolute, len, subject.trained)?,
        PositionalEncoding::Relative(spec) => {
            let distances: Vec<f32> = relative_indices(len, len, 0, 0, spec.max_distance)
                .iter()
                .map(|&index| index as f32 - spec.max_distance as f32)
                .collect();
            let clipped = Tensor::from_vec(distances, (len, len), &device)?;
            let mut panels = vec![heatmap(
                format!("clipped distance j - i (max {})", spec.max_distance),
                "key position j",
                "query position i",
                matrix(&clipped)?,
            )];
            if let Some(relative) = &subject.relative {
                panels.push(heatmap(
                    format!("a^K ({learned}), distance -k..k"),
                    "dimension",
                    "distance + k",
                    matrix(relative.keys())?,
                ));
                panels.push(heatmap(
                    "similarity of a^K rows".into(),
                    "distance + k",
                    "distance + k",
                    matrix(&cosine_similarity(relative.keys())?)?,
                ));
                if let Some(values) = relative.values() {
                    panels.push(heatmap(
                        format!("a^V ({learned})"),
                        "dimension",
                        "distance + k",
                        matrix(values)?,
                    ));
                }
            }
            panels
        }
        PositionalEncoding::T5(t5) => {
            let bidirectional = t5.bidirectional();
            let buckets: Vec<f32> = (0..len)
                .flat_map(|i| (0..len).map(move |j| (i, j)))
                .map(|(i, j)| {
                    t5_bucket(j as i64 - i as i64, bidirectional, t5.num_buckets(), t5.max_distance()) as f32
                })
                .collect();
            let mut panels = vec![heatmap(
                format!("T5 bucket of j - i ({})", if bidirectional { "bidirectional" } else { "causal" }),
                "key position j",
                "query position i",
                Tensor::from_vec(buckets, (len, len), &device)?.to_vec2()?,
            )];
            let bias = t5.bias(len, len, 0, 0)?.squeeze(0)?;
            for head in 0..bias.dim(0)? {
                panels.push(heatmap(
                    format!("head {head} bias ({learned})"),
                    "key position j",
                    "query position i",
                    matrix(&bias.get(head)?)?,
                ));
            }
            panels
        }
        PositionalEncoding::Rope(rotary) => rope_panels(rotary, len)?,
        PositionalEncoding::Alibi(slopes) => {
            let bias = alibi::alibi_bias(slopes, len, len, 0, 0, DType::F32, &device)?.squeeze(0)?;
            let mut panels = Vec::new();
            for (head, slope) in slopes.iter().enumerate() {
                let mut values = matrix(&bias.get(head)?)?;
                if subject.causal {
                    for (i, row) in values.iter_mut().enumerate() {
                        row.iter_mut().skip(i + 1).for_each(|v| *v = f32::NEG_INFINITY);
                    }
                }
                panels.push(heatmap(
                    format!("head {head}: -{slope:.4}·|i - j|"),
                    "key position j",
                    "query position i",
                    values,
                ));
            }
            panels
        }
    })
}

fn absolute_panels(absolute: &AbsoluteEncoding, len: usize, trained: bool) -> Result<Vec<Heatmap>> {
    let vectors = absolute.vectors(0, len, DType::F32, &Device::Cpu)?;
    let name = match absolute.source() {
        AbsoluteTable::Sinusoidal(_) => "sinusoidal table",
        AbsoluteTable::Learned(_) if trained => "learned table",
        AbsoluteTable::Learned(_) => "learned table (untrained)",
    };
    Ok(vec![
        heatmap(name.into(), "dimension", "position", matrix(&vectors)?),
        heatmap(
            "cosine similarity of positions".into(),
            "position",
            "position",
            matrix(&cosine_similarity(&vectors)?)?,
        ),
    ])
}

/// RoPE: the cosine of every rotation angle, and the score between one vector rotated to
/// positions i and j, which depends only on i - j.
fn rope_panels(rotary: &Rotary, len: usize) -> Result<Vec<Heatmap>> {
    let head_dim = rotary.head_dim();
    let cosines: Vec<Vec<f32>> = (0..len)
        .map(|pos| (0..head_dim / 2).map(|pair| rotary.angle(pos, pair).cos() as f32).collect())
        .collect();
    let ones = Tensor::ones((1, 1, len, head_dim), DType::F32, &Device::Cpu)?;
    let rotated = rotary.rotate(&ones, 0)?.squeeze(0)?.squeeze(0)?;
    let scores = (rotated.matmul(&rotated.t()?)? / head_dim as f64)?;
    Ok(vec![
        heatmap("cos(rotation angle)".into(), "dimension pair", "position", cosines),
        heatmap("<R_i x, R_j x> / d for x = 1".into(), "position j", "position i", matrix(&scores)?),
    ])
}
