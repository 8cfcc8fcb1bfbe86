//! `locus pe list`: the kinds of positional encoding, one per line (scripts iterate over it).
//! `locus pe show`: draws a positional encoding (the table of additive kinds, the per-head bias
//! of bias kinds, the rotation of RoPE) and how similar it makes positions; with
//! `--checkpoint`, what a trained model actually learned. The pictures are the tables the
//! stack's positional encoding gives ([`PositionalEncoding::tables`]).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand, ValueEnum};
use locus_model::positional::{PositionTable, PositionalKind, Weights};
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
    /// List the kinds of positional encoding, one per line.
    List,
    /// Draw a positional encoding to an SVG or PNG file.
    Show(ShowArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Stack {
    Encoder,
    Decoder,
}

/// Parses a kind by its name, offering every kind of the list.
fn kind_parser() -> impl TypedValueParser<Value = PositionalKind> {
    PossibleValuesParser::new(PositionalKind::all().map(PositionalKind::name))
        .try_map(|name| name.parse::<PositionalKind>())
}

#[derive(Args)]
struct ShowArgs {
    /// The encoding to draw, with its default settings (a learned table of --len positions;
    /// ignored with --checkpoint).
    #[arg(long, value_parser = kind_parser(), required_unless_present = "checkpoint")]
    kind: Option<PositionalKind>,
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
        PeCommand::List => {
            for kind in PositionalKind::all() {
                println!("{kind}");
            }
            Ok(())
        }
        PeCommand::Show(show) => run_show(show),
    }
}

fn run_show(args: ShowArgs) -> Result<()> {
    let device = Device::Cpu;
    let (encoding, weights) = match (&args.checkpoint, args.kind) {
        (Some(dir), _) => {
            let checkpoint = load_checkpoint(dir, &device)?;
            let encoding = match args.stack {
                Stack::Encoder => checkpoint.model.encoder().positional().clone(),
                Stack::Decoder => checkpoint.model.decoder().positional().clone(),
            };
            (encoding, Weights::Trained)
        }
        (None, Some(kind)) => {
            let cfg = PositionalConfig::default_for(kind, args.len);
            let model = ModelConfig {
                d_model: args.dim,
                n_heads: args.heads,
                positional: cfg.clone(),
                ..Default::default()
            };
            model.validate().context("--dim/--heads")?;
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
            let mut encoding =
                PositionalEncoding::new(&cfg, args.dim, args.heads, false, vb.pp("positional"))?;
            // One layer's own weights (Shaw's relative vectors), to draw.
            encoding.add_layer(vb.pp("relative"))?;
            (encoding, Weights::Untrained)
        }
        (None, None) => bail!("give --kind or --checkpoint"),
    };
    let tables = encoding.tables(args.len, weights)?;
    if tables.is_empty() {
        bail!("this encoding ({}) has no position signal to draw", encoding.kind());
    }
    let panels = tables.into_iter().map(heatmap).collect::<Result<Vec<_>>>()?;
    let columns = panels.len().min(4);
    draw_heatmaps(&panels, columns, &args.out)?;
    eprintln!("wrote {} ({} panels)", args.out.display(), panels.len());
    Ok(())
}

fn heatmap(table: PositionTable) -> Result<Heatmap> {
    Ok(Heatmap {
        title: table.title,
        x_label: table.x_label.into(),
        y_label: table.y_label.into(),
        values: table.values.to_dtype(DType::F32)?.to_vec2::<f32>()?,
        ..Default::default()
    })
}
