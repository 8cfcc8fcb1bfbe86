//! The job a `locus train` or `locus bench train` process belongs to: alone, or one rank of an
//! MPI job started by `mpirun` or Slurm's `srun` (in a build with the `mpi` feature), on the
//! device the rank trains on (one GPU per rank; NCCL between GPUs in a build with `nccl`).
//!
//! A rank that fails must not leave the others waiting for it in a collective: its error, or
//! its panic, is printed with its rank and then aborts every rank of the job.

use anyhow::Result;
use candle_core::Device;
use locus_train::distributed::{Communicator, SingleProcess};

use crate::device::parse_device;

/// This process's place in a training job.
pub struct Job {
    comm: Box<dyn Communicator>,
}

impl Job {
    /// Joins the MPI job that launched this process, if one did, else trains alone.
    ///
    /// # Errors
    /// MPI cannot be initialised, or this build has no MPI and was launched as one of several
    /// ranks (each would train alone, into the same directory).
    pub fn join() -> Result<Self> {
        #[cfg(feature = "mpi")]
        if locus_train::distributed::launched_by_mpi() {
            let comm = locus_train::distributed::MpiCommunicator::init()?;
            let (rank, size) = (comm.rank(), comm.world_size());
            let report = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                report(info);
                eprintln!("locus: rank {rank} of {size} panicked; stopping every rank");
                locus_train::distributed::abort_mpi_job(101)
            }));
            return Ok(Self { comm: Box::new(comm) });
        }
        #[cfg(not(feature = "mpi"))]
        if launcher_world_size().is_some_and(|size| size > 1) {
            anyhow::bail!(
                "launched as one of several MPI ranks, but this locus was built without MPI; \
                 build it with `cargo build --release --features mpi` (see README, \"Training on several \
                 processes, machines or GPUs\")"
            );
        }
        Ok(Self { comm: Box::new(SingleProcess) })
    }

    /// Opens the device this rank trains on: `name` as `--device` gives it, except that `cuda`
    /// (or `auto` on a machine with a GPU) means one GPU per rank, `cuda:L` for the rank's local
    /// rank L on its machine, in a job of several ranks. In a build with `nccl`, ranks on GPUs
    /// then sum their gradients with NCCL (connected here, collectively).
    ///
    /// # Errors
    /// The device does not open, or NCCL cannot connect the ranks; in a job of several ranks,
    /// the error is printed and every rank stopped instead.
    pub fn open_device(&mut self, name: &str) -> Result<Device> {
        let device = self.run(|| {
            let gpu_per_rank = self.comm().is_distributed()
                && (name == "cuda" || (name == "auto" && candle_core::utils::cuda_is_available()));
            match local_rank().filter(|_| gpu_per_rank) {
                Some(local) => parse_device(&format!("cuda:{local}")),
                None => parse_device(name),
            }
        })?;
        #[cfg(feature = "nccl")]
        if device.is_cuda() {
            use locus_train::distributed::{connect_gpus, NcclCommunicator};
            let link = self.run(|| Ok(connect_gpus(self.comm(), &device)?))?;
            let host = std::mem::replace(&mut self.comm, Box::new(SingleProcess));
            self.comm = Box::new(NcclCommunicator::new(host, link));
        }
        Ok(device)
    }

    /// The communicator to train with.
    pub fn comm(&self) -> &dyn Communicator {
        self.comm.as_ref()
    }

    /// Whether this process prints: rank 0 of the job.
    pub fn is_root(&self) -> bool {
        self.comm().is_root()
    }

    /// The result of `work`; but on a rank of a job of several, an error is printed, naming
    /// the rank, and every rank is stopped (exit status 1), instead of returned.
    pub fn run<T>(&self, work: impl FnOnce() -> Result<T>) -> Result<T> {
        let comm = self.comm();
        match work() {
            Err(e) if comm.is_distributed() => {
                eprintln!(
                    "locus: rank {} of {} failed: {e:#}; stopping every rank",
                    comm.rank(),
                    comm.world_size()
                );
                comm.abort(1)
            }
            result => result,
        }
    }
}

/// The number of ranks the launcher started, if this process was started by one.
#[cfg(not(feature = "mpi"))]
fn launcher_world_size() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"]
        .iter()
        .find_map(|name| std::env::var(name).ok()?.parse().ok())
}

/// This rank's index among the ranks on its machine, as the launcher (Open MPI, MPICH, Slurm)
/// tells it.
fn local_rank() -> Option<usize> {
    ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"]
        .iter()
        .find_map(|name| std::env::var(name).ok()?.parse().ok())
}

/// CPU threads for each rank when several share this machine and `--threads` is not given:
/// the machine's share of each (at least one), so that N ranks do not each start a thread per
/// core.
pub fn threads_per_local_rank() -> Option<u16> {
    let local_ranks: usize = ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"]
        .iter()
        .find_map(|name| std::env::var(name).ok()?.parse().ok())?;
    if local_ranks <= 1 {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    u16::try_from((cores / local_ranks).max(1)).ok()
}
