//! Summing an update over the ranks: its target-token count and losses, and its gradients in
//! buckets of flattened variables.

use std::time::Instant;

use candle_core::{Tensor, Var};

use super::Communicator;
use crate::error::Result;
use crate::optim::{Adam, Gradients};
use crate::step::LossTotals;

/// The most f32 values one gradient all-reduce carries (4 MiB), unless a single variable is
/// larger: large enough that each reduction's latency is small against its transfer, small
/// enough that no rank holds a second copy of every gradient at once.
pub const BUCKET_FLOATS: usize = 1 << 20;

/// Replaces this rank's part of an update by the whole update's: `losses` by their sum over
/// the ranks (one row, so the target-token count becomes the global one) and `grads` by the sum
/// of every rank's gradients. A variable that has a gradient on any rank gets one on all
/// (zeros where a rank had none); one that has none anywhere keeps none, as in one process.
/// Returns the seconds spent. Collective: every rank calls it once per update.
pub fn reduce_update(
    comm: &dyn Communicator,
    optimizer: &Adam,
    grads: &mut Gradients,
    losses: &mut LossTotals,
) -> Result<f64> {
    let started = Instant::now();
    let slots = grads.slots_mut();
    let mut host = vec![losses.target_tokens as f64];
    host.extend(slots.iter().map(|grad| f64::from(u8::from(grad.is_some()))));
    let host = comm.sum_host(&host)?;
    losses.target_tokens = host[0] as usize;
    let summed = comm.all_reduce_sum(&losses.sums.sum_keepdim(0)?.flatten_all()?)?;
    losses.sums = summed.reshape((1, 2))?;

    let vars: Vec<&Var> = optimizer.variables().collect();
    let mut bucket = Vec::new();
    let mut floats = 0;
    for (index, _) in host[1..].iter().enumerate().filter(|(_, &ranks)| ranks > 0.0) {
        bucket.push(index);
        floats += vars[index].elem_count();
        if floats >= BUCKET_FLOATS {
            reduce_bucket(comm, &vars, slots, &bucket)?;
            bucket.clear();
            floats = 0;
        }
    }
    if !bucket.is_empty() {
        reduce_bucket(comm, &vars, slots, &bucket)?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Sums the gradients of the variables `indices` over the ranks in one all-reduce.
fn reduce_bucket(
    comm: &dyn Communicator,
    vars: &[&Var],
    slots: &mut [Option<Tensor>],
    indices: &[usize],
) -> Result<()> {
    let flat = indices
        .iter()
        .map(|&i| match &slots[i] {
            Some(grad) => grad.flatten_all(),
            None => vars[i].as_tensor().zeros_like()?.flatten_all(),
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    let sum = comm.all_reduce_sum(&Tensor::cat(&flat, 0)?)?;
    let mut offset = 0;
    for &i in indices {
        let var = vars[i];
        let grad = sum.narrow(0, offset, var.elem_count())?.reshape(var.shape())?;
        slots[i] = Some(grad.to_dtype(var.dtype())?);
        offset += var.elem_count();
    }
    Ok(())
}
