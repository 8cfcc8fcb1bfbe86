//! `locus attention --checkpoint DIR --src "..." [--tgt "..."] [--layer L] [--head H] --out FILE`:
//! what a trained model attends to when it translates one sentence.
//!
//! The sentence is translated as `locus translate` would with the same search options (or
//! `--tgt` is taken as the translation), then encoded and decoded once more with teacher forcing
//! while every attention layer records its probabilities ([`Seq2Seq::attention_maps`]). The
//! picture is a grid of heatmaps: one row of panels per stack and layer (encoder
//! self-attention, decoder self-attention, cross-attention), one column per head; each panel's
//! rows are the queries, its columns the keys, labelled with their subword tokens (`▁`, the
//! word-start mark, drawn as `_`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::{Device, IndexOp};
use clap::Args;
use locus_data::SubwordTokenizer;
use locus_model::{AttentionMaps, Quantization, Seq2Seq};
use locus_train::batch::pad_rows;
use locus_train::{load_checkpoint, Translator};

use crate::plot::{draw_heatmaps, Heatmap};
use crate::search_args::SearchArgs;

/// Arguments of `locus attention`.
#[derive(Args)]
pub struct AttentionArgs {
    /// Checkpoint directory.
    #[arg(long)]
    checkpoint: PathBuf,
    /// The source sentence.
    #[arg(long)]
    src: String,
    /// Draw the model reading this translation (a reference, say) instead of its own.
    #[arg(long)]
    tgt: Option<String>,
    /// Draw this layer of each stack only (counting from 0).
    #[arg(long)]
    layer: Option<usize>,
    /// Draw this head only (counting from 0).
    #[arg(long)]
    head: Option<usize>,
    /// Output file, .svg or .png.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    search: SearchArgs,
}

/// Runs `locus attention`.
pub fn run(args: AttentionArgs) -> Result<()> {
    let device = Device::Cpu;
    let checkpoint = load_checkpoint(&args.checkpoint, &device)?;
    let model = checkpoint.model.for_inference(Quantization::None)?;
    let tokenizer = &checkpoint.tokenizer;
    let mut translator = Translator::new(&model, tokenizer);
    args.search.configure(&mut translator)?;
    let (source, line) = translator.source(&args.src)?;
    if source.is_empty() {
        bail!("--src is blank: there is nothing to translate");
    }
    if line.cropped {
        eprintln!("warning: --src has {} tokens; its first {} are drawn", line.source_len, source.len());
    }
    let target = match &args.tgt {
        Some(text) => tokenizer.encode(text).context("--tgt")?,
        None => translator.best_tokens(&source)?,
    };
    let picture = Picture::new(&model, tokenizer, &source, &target)?;
    let panels = picture.panels(args.layer, args.head)?;
    let columns = if args.head.is_some() { 1 } else { model.config().n_heads };
    draw_heatmaps(&panels, columns, &args.out)?;
    println!("{}", tokenizer.decode(&target)?);
    eprintln!("wrote {} ({} panels)", args.out.display(), panels.len());
    Ok(())
}

/// One sentence pair's attention maps and the tokens on their axes.
struct Picture {
    maps: AttentionMaps,
    /// The source tokens and EOS: the encoder's queries and keys, the cross-attention's keys.
    source: Vec<String>,
    /// BOS and the target tokens: the decoder's inputs, its self-attention's keys.
    target_in: Vec<String>,
    /// The target tokens and EOS: what each decoder position predicts (the decoder's queries).
    target_out: Vec<String>,
}

impl Picture {
    /// Records the attention of `model` reading `source` and decoding `target` (token ids, EOS
    /// excluded).
    fn new(model: &Seq2Seq, tokenizer: &SubwordTokenizer, source: &[u32], target: &[u32]) -> Result<Self> {
        let ids = model.tokens();
        let src: Vec<u32> = source.iter().copied().chain([ids.eos]).collect();
        let tgt_in: Vec<u32> = [ids.bos].into_iter().chain(target.iter().copied()).collect();
        let (pad, device) = (ids.pad, model.device());
        let (src, tgt_in) = (pad_rows(&[src], pad, device)?, pad_rows(&[tgt_in], pad, device)?);
        let (maps, _) = model.attention_maps(&src, &tgt_in)?;
        let pieces = |ids: &[u32]| -> Vec<String> {
            tokenizer.id_to_pieces(ids).into_iter().map(|piece| piece.replace('▁', "_")).collect()
        };
        let (eos, bos) = ("</s>".to_string(), "<s>".to_string());
        let target = pieces(target);
        Ok(Self {
            maps,
            source: pieces(source).into_iter().chain([eos.clone()]).collect(),
            target_in: [bos].into_iter().chain(target.iter().cloned()).collect(),
            target_out: target.into_iter().chain([eos]).collect(),
        })
    }

    /// The panels of layer `layer` (or every layer) and head `head` (or every head), stack by
    /// stack, a row of heads per layer.
    fn panels(&self, layer: Option<usize>, head: Option<usize>) -> Result<Vec<Heatmap>> {
        let (source, predicted, read) = ("source token", "the token it predicts", "target token read");
        let stacks = [
            ("encoder self-attention", &self.maps.encoder, (&self.source, source), (&self.source, source)),
            (
                "decoder self-attention",
                &self.maps.decoder,
                (&self.target_out, predicted),
                (&self.target_in, read),
            ),
            ("cross-attention", &self.maps.cross, (&self.target_out, predicted), (&self.source, source)),
        ];
        let mut panels = Vec::new();
        for (name, layers, (queries, query_label), (keys, key_label)) in stacks {
            for l in pick(layer, layers.len(), "--layer", "layer")? {
                let map = layers[l].i(0)?;
                for h in pick(head, map.dim(0)?, "--head", "head")? {
                    panels.push(Heatmap {
                        title: format!("{name}, layer {l}, head {h}"),
                        x_label: format!("key ({key_label})"),
                        y_label: format!("query ({query_label})"),
                        values: map.i(h)?.to_vec2::<f32>()?,
                        x_ticks: keys.clone(),
                        y_ticks: queries.clone(),
                    });
                }
            }
        }
        Ok(panels)
    }
}

/// The index `chosen` if it is below `len` (the number of layers or heads), or every index
/// below `len`.
fn pick(chosen: Option<usize>, len: usize, option: &str, what: &str) -> Result<Vec<usize>> {
    match chosen {
        Some(i) if i >= len => bail!("{option} {i}: the model has {len} {what}s, counted from 0"),
        Some(i) => Ok(vec![i]),
        None => Ok((0..len).collect()),
    }
}
