//! Ranks that communicate through MPI (rsmpi on the system's Open MPI): CPU training on one
//! machine or across hosts, launched by `mpirun` or Slurm's `srun`.

use candle_core::{DType, Device, Tensor};
use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::environment::Universe;
use mpi::topology::{Communicator as _, SimpleCommunicator};

use super::Communicator;
use crate::error::{Result, TrainError};

/// Whether this process was started by an MPI launcher (Open MPI's `mpirun`, a PMI or PMIx
/// launcher such as Slurm's `srun`), which is when `locus` joins a job instead of training
/// alone.
pub fn launched_by_mpi() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"]
        .iter()
        .any(|name| std::env::var_os(name).is_some())
}

/// MPI's world communicator. Dropping it finalises MPI, which waits for every rank: a rank that
/// fails must call [`Communicator::abort`] instead.
pub struct MpiCommunicator {
    world: SimpleCommunicator,
    /// Finalises MPI when dropped; declared last so that the communicator goes first.
    _universe: Universe,
}

impl MpiCommunicator {
    /// Initialises MPI and joins its world. A program that uses it should make a panic abort
    /// the job ([`abort_mpi_job`] from a panic hook): a rank that unwinds finalises MPI while
    /// the others wait for it in a collective, and the job hangs.
    ///
    /// # Errors
    /// MPI was already initialised in this process.
    pub fn init() -> Result<Self> {
        let universe = mpi::initialize()
            .ok_or_else(|| TrainError::Config("MPI is already initialised in this process".into()))?;
        Ok(Self { world: universe.world(), _universe: universe })
    }
}

/// Stops every rank of the MPI job this process belongs to, with exit status `code`; callable
/// where no [`MpiCommunicator`] is at hand (a panic hook). MPI must be initialised.
pub fn abort_mpi_job(code: i32) -> ! {
    SimpleCommunicator::world().abort(code)
}

impl Communicator for MpiCommunicator {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn world_size(&self) -> usize {
        self.world.size() as usize
    }

    fn engine(&self) -> &'static str {
        "MPI"
    }

    /// Copies the buffer to the host, sums it there with `MPI_Allreduce`, and copies the sum
    /// back to the buffer's device (a no-op on the CPU).
    fn all_reduce_sum(&self, buffer: &Tensor) -> Result<Tensor> {
        let send = buffer.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.to_vec1::<f32>()?;
        let mut sum = vec![0f32; send.len()];
        self.world.all_reduce_into(&send[..], &mut sum[..], SystemOperation::sum());
        Ok(Tensor::from_vec(sum, send.len(), &Device::Cpu)?.to_device(buffer.device())?)
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) -> Result<()> {
        let process = self.world.process_at_rank(root as i32);
        let mut len = bytes.len() as u64;
        process.broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        process.broadcast_into(&mut bytes[..]);
        Ok(())
    }

    fn barrier(&self) -> Result<()> {
        self.world.barrier();
        Ok(())
    }

    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}
