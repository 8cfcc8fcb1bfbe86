//! Token ids to padded tensors, in the layout the model trains on, and the batches of one
//! update as a rank of a data-parallel job reads them.

use candle_core::{Device, Tensor};
use locus_data::prepared::PreparedSplit;
use locus_data::{token_share, TokenizedPair};
use locus_model::TokenIds;

use crate::distributed::Communicator;
use crate::error::Result;

/// One batch on the model's device.
#[derive(Debug, Clone)]
pub struct TensorBatch {
    /// `(b_sz, src_len)`: source tokens, EOS, then padding.
    pub src: Tensor,
    /// `(b_sz, tgt_len)`: BOS, then target tokens, then padding (the decoder's input).
    pub tgt_in: Tensor,
    /// `(b_sz, tgt_len)`: target tokens, EOS, then padding (what the decoder must predict).
    pub tgt_out: Tensor,
    /// Real (non-padding) source tokens, EOS included.
    pub src_tokens: usize,
    /// Real target tokens to predict, EOS included.
    pub tgt_tokens: usize,
}

/// Right-pads `rows` with `pad` to a `(rows, longest)` tensor.
pub fn pad_rows(rows: &[Vec<u32>], pad: u32, device: &Device) -> candle_core::Result<Tensor> {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut flat = Vec::with_capacity(rows.len() * width);
    for row in rows {
        flat.extend_from_slice(row);
        flat.resize(flat.len() + width - row.len(), pad);
    }
    Tensor::from_vec(flat, (rows.len(), width), device)
}

/// Builds the padded source, decoder input and decoder output of `pairs`.
pub fn collate(
    pairs: &[&TokenizedPair],
    tokens: TokenIds,
    device: &Device,
) -> candle_core::Result<TensorBatch> {
    let with = |prefix: Option<u32>, ids: &[u32], suffix: Option<u32>| -> Vec<u32> {
        prefix.into_iter().chain(ids.iter().copied()).chain(suffix).collect()
    };
    let src: Vec<Vec<u32>> = pairs.iter().map(|p| with(None, &p.src, Some(tokens.eos))).collect();
    let tgt_in: Vec<Vec<u32>> = pairs.iter().map(|p| with(Some(tokens.bos), &p.tgt, None)).collect();
    let tgt_out: Vec<Vec<u32>> = pairs.iter().map(|p| with(None, &p.tgt, Some(tokens.eos))).collect();
    Ok(TensorBatch {
        src_tokens: src.iter().map(Vec::len).sum(),
        tgt_tokens: tgt_out.iter().map(Vec::len).sum(),
        src: pad_rows(&src, tokens.pad, device)?,
        tgt_in: pad_rows(&tgt_in, tokens.pad, device)?,
        tgt_out: pad_rows(&tgt_out, tokens.pad, device)?,
    })
}

/// This rank's part of one update.
pub struct UpdateBatches {
    /// This rank's share of each of the update's batches, collated (empty shares left out).
    pub batches: Vec<TensorBatch>,
    /// Real source and target tokens (EOS and BOS included once per side) of the whole update,
    /// over every rank: what the job's throughput counts.
    pub real_tokens: usize,
}

/// Reads and collates, onto `device`, `comm`'s rank's share ([`token_share`]) of each batch in
/// `group` (indices into `split`): the batches of one update.
pub fn load_update<'g>(
    split: &PreparedSplit,
    group: impl IntoIterator<Item = &'g [u32]>,
    comm: &dyn Communicator,
    tokens: TokenIds,
    device: &Device,
) -> Result<UpdateBatches> {
    let lengths = split.lengths();
    let (mut batches, mut real_tokens) = (Vec::new(), 0);
    for batch in group {
        real_tokens +=
            batch.iter().filter_map(|&i| lengths.get(i as usize)).map(|l| l.real_tokens()).sum::<usize>();
        let share = token_share(lengths, batch, comm.rank(), comm.world_size());
        if !share.is_empty() {
            let pairs = split.read_batch(share)?;
            batches.push(collate(&pairs.iter().collect::<Vec<_>>(), tokens, device)?);
        }
    }
    Ok(UpdateBatches { batches, real_tokens })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collate_adds_specials_and_pads() {
        let tokens = TokenIds { pad: 0, bos: 1, eos: 2 };
        let a = TokenizedPair { src: vec![7, 8, 9], tgt: vec![5] };
        let b = TokenizedPair { src: vec![4], tgt: vec![6, 6, 6] };
        let batch = collate(&[&a, &b], tokens, &Device::Cpu).unwrap();
        assert_eq!(batch.src.to_vec2::<u32>().unwrap(), vec![vec![7, 8, 9, 2], vec![4, 2, 0, 0]]);
        assert_eq!(batch.tgt_in.to_vec2::<u32>().unwrap(), vec![vec![1, 5, 0, 0], vec![1, 6, 6, 6]]);
        assert_eq!(batch.tgt_out.to_vec2::<u32>().unwrap(), vec![vec![5, 2, 0, 0], vec![6, 6, 6, 2]]);
        assert_eq!((batch.src_tokens, batch.tgt_tokens), (6, 6));
    }
}
