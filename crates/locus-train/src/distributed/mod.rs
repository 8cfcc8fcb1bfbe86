//! Data-parallel training across processes: the communication a rank needs ([`Communicator`])
//! and its implementations, and the gradient reduction built on it ([`reduce_update`]).
//!
//! - [`SingleProcess`]: world size 1, what runs when nothing else is configured; it
//!   communicates nothing, and the trainer skips every reduction for it.
//! - `MpiCommunicator` (feature `mpi`): Open MPI through rsmpi, for CPU ranks on one machine or
//!   a cluster (`mpirun`, Slurm's `srun`).
//! - `NcclCommunicator` (feature `nccl`): one rank per GPU; NCCL sums tensors on the GPUs,
//!   the host communicator (MPI) does the rest and broadcasts NCCL's unique id.
//!
//! Every rank plans the same global batches from (seed, epoch) and trains on its share of each,
//! split by tokens ([`locus_data::token_share`]); the update's summed gradients, its target
//! tokens and its losses are summed over the ranks, so that N ranks with 1/N of a batch each
//! apply the update one rank would apply with the whole batch.

mod all_reduce_bench;
mod gradients;
#[cfg(feature = "mpi")]
mod mpi;
#[cfg(feature = "nccl")]
mod nccl;
mod single;

use candle_core::{DType, Device, Tensor};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use all_reduce_bench::{bench_all_reduce, AllReduceTiming};
pub use gradients::{reduce_update, BUCKET_FLOATS};
#[cfg(feature = "mpi")]
pub use mpi::{abort_mpi_job, launched_by_mpi, MpiCommunicator};
#[cfg(feature = "nccl")]
pub use nccl::{connect_gpus, GpuLink, NcclCommunicator};
pub use single::SingleProcess;

use crate::error::{Result, TrainError};

/// What a rank of a data-parallel job can ask of the others. Every method but the first two and
/// [`Communicator::abort`] is collective: every rank must call it, in the same order.
pub trait Communicator {
    /// This process's rank, from 0.
    fn rank(&self) -> usize;

    /// The number of ranks.
    fn world_size(&self) -> usize;

    /// What carries the sums, for messages: `one process`, `MPI`, `NCCL`.
    fn engine(&self) -> &'static str;

    /// The element-wise sum over every rank of `buffer`, a 1-D f32 tensor of the same length
    /// on each; every rank receives it, on `buffer`'s device.
    fn all_reduce_sum(&self, buffer: &Tensor) -> Result<Tensor>;

    /// Replaces `bytes` on every rank by `root`'s (whose length the others need not know).
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) -> Result<()>;

    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<()>;

    /// Stops every rank of the job at once, with exit status `code`: for a fatal error on one
    /// rank, which must not leave the others waiting in a collective.
    fn abort(&self, code: i32) -> !;
}

impl dyn Communicator + '_ {
    /// Whether this is rank 0, the one that writes checkpoints and logs.
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// Whether this job has more than one rank.
    pub fn is_distributed(&self) -> bool {
        self.world_size() > 1
    }

    /// The sum over every rank of host values (counts, sums of losses), summed in f32: exact
    /// for integers below 2²⁴. In one process, the values themselves.
    pub fn sum_host(&self, values: &[f64]) -> Result<Vec<f64>> {
        if !self.is_distributed() {
            return Ok(values.to_vec());
        }
        let buffer = Tensor::from_slice(values, values.len(), &Device::Cpu)?.to_dtype(DType::F32)?;
        Ok(self.all_reduce_sum(&buffer)?.to_dtype(DType::F64)?.to_vec1::<f64>()?)
    }

    /// Whether `flag` is set on any rank.
    pub fn any(&self, flag: bool) -> Result<bool> {
        Ok(self.sum_host(&[f64::from(u8::from(flag))])?[0] > 0.0)
    }

    /// Every rank's `value`, in rank order, on every rank (each rank broadcasts in turn).
    pub fn all_gather<T: Serialize + DeserializeOwned + Clone>(&self, value: &T) -> Result<Vec<T>> {
        if !self.is_distributed() {
            return Ok(vec![value.clone()]);
        }
        let mine = serde_json::to_vec(value).map_err(|e| TrainError::Config(format!("gathering: {e}")))?;
        (0..self.world_size())
            .map(|root| {
                let mut bytes = if root == self.rank() { mine.clone() } else { Vec::new() };
                self.broadcast_bytes(&mut bytes, root)?;
                serde_json::from_slice(&bytes).map_err(|e| TrainError::Config(format!("gathering: {e}")))
            })
            .collect()
    }

    /// Rank 0's `value` on every rank.
    pub fn broadcast<T: Serialize + DeserializeOwned + Clone>(&self, value: &T) -> Result<T> {
        if !self.is_distributed() {
            return Ok(value.clone());
        }
        let mut bytes =
            serde_json::to_vec(value).map_err(|e| TrainError::Config(format!("broadcasting: {e}")))?;
        self.broadcast_bytes(&mut bytes, 0)?;
        serde_json::from_slice(&bytes).map_err(|e| TrainError::Config(format!("broadcasting: {e}")))
    }
}

/// The contiguous share of `0..len` that `rank` of `world` ranks takes when items are dealt out
/// evenly: the first `len % world` ranks take one more.
pub fn even_share(len: usize, rank: usize, world: usize) -> std::ops::Range<usize> {
    let (base, extra) = (len / world, len % world);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_shares_cover_everything_once() {
        let shares: Vec<_> = (0..3).map(|rank| even_share(7, rank, 3)).collect();
        assert_eq!(shares, [0..3, 3..5, 5..7]);
        assert_eq!(even_share(1, 1, 2), 1..1);
        assert_eq!(even_share(5, 0, 1), 0..5);
    }

    #[test]
    fn a_single_process_gathers_and_sums_its_own_values() {
        let comm: &dyn Communicator = &SingleProcess;
        assert_eq!(comm.all_gather(&"hyp".to_string()).unwrap(), ["hyp"]);
        assert_eq!(comm.sum_host(&[2.0, 3.0]).unwrap(), [2.0, 3.0]);
        assert!(comm.any(true).unwrap() && !comm.any(false).unwrap());
        assert_eq!(comm.broadcast(&7u32).unwrap(), 7);
    }
}
