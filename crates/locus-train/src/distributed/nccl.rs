//! Ranks whose gradients live on GPUs: NCCL (through cudarc, the bindings candle builds on)
//! sums them from GPU memory to GPU memory, one rank per GPU; everything else a rank needs
//! (host values, bytes, barriers, aborting) goes through the host communicator, MPI in a job
//! of several ranks.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, Id, ReduceOp};
use candle_core::{CudaStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};

use super::Communicator;
use crate::error::{Result, TrainError};

/// This rank's NCCL communicator, on the CUDA stream of its device: made once by
/// [`connect_gpus`], then handed to [`NcclCommunicator::new`].
pub struct GpuLink {
    comm: Comm,
    device: Device,
}

// SAFETY: an NCCL communicator may be used from any thread as long as calls on it are not
// concurrent; the trainer calls collectives from one thread at a time, in the same order on
// every rank (the contract of `Communicator`).
unsafe impl Send for GpuLink {}
unsafe impl Sync for GpuLink {}

/// Creates the NCCL communicator of every rank of `host`'s job, one per GPU, on `device`'s
/// stream (so that sums are ordered with the device's kernels). Collective: rank 0 makes the
/// NCCL unique id and broadcasts it over `host`.
///
/// # Errors
/// `device` is not a CUDA device, or NCCL cannot connect the ranks (the error names NCCL's code).
pub fn connect_gpus(host: &dyn Communicator, device: &Device) -> Result<GpuLink> {
    let Device::Cuda(cuda) = device else {
        return Err(TrainError::Communication(format!("NCCL needs a CUDA device, not {device:?}")));
    };
    let nccl_error = |what: &str, e| TrainError::Communication(format!("NCCL {what}: {e:?}"));
    let mut id_bytes = if host.is_root() {
        let id = Id::new().map_err(|e| nccl_error("unique id", e))?;
        id.internal().iter().map(|&c| c as u8).collect()
    } else {
        Vec::new()
    };
    host.broadcast_bytes(&mut id_bytes, 0)?;
    let internal: [std::ffi::c_char; 128] =
        id_bytes.iter().map(|&b| b as std::ffi::c_char).collect::<Vec<_>>().try_into().map_err(
            |bytes: Vec<_>| {
                TrainError::Communication(format!("NCCL unique id of {} bytes, expected 128", bytes.len()))
            },
        )?;
    let comm = Comm::from_rank(cuda.cuda_stream(), host.rank(), host.world_size(), Id::uninit(internal))
        .map_err(|e| nccl_error("init", e))?;
    Ok(GpuLink { comm, device: device.clone() })
}

/// A rank of a job of GPUs: tensors on its GPU are summed by NCCL, everything else by `host`.
pub struct NcclCommunicator {
    host: Box<dyn Communicator>,
    link: GpuLink,
}

impl NcclCommunicator {
    /// Sums on `link`'s GPU with NCCL; `host` (the communicator `link` was made over) does the
    /// rest.
    pub fn new(host: Box<dyn Communicator>, link: GpuLink) -> Self {
        Self { host, link }
    }
}

impl Communicator for NcclCommunicator {
    fn rank(&self) -> usize {
        self.host.rank()
    }

    fn world_size(&self) -> usize {
        self.host.world_size()
    }

    fn engine(&self) -> &'static str {
        "NCCL"
    }

    /// NCCL's sum when `buffer` is on this rank's GPU; the host communicator's otherwise.
    fn all_reduce_sum(&self, buffer: &Tensor) -> Result<Tensor> {
        if !buffer.device().same_device(&self.link.device) {
            return self.host.all_reduce_sum(buffer);
        }
        let buffer = buffer.to_dtype(DType::F32)?.contiguous()?;
        Ok(buffer.apply_op1_no_bwd(&NcclSum(&self.link.comm))?)
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) -> Result<()> {
        self.host.broadcast_bytes(bytes, root)
    }

    fn barrier(&self) -> Result<()> {
        self.host.barrier()
    }

    fn abort(&self, code: i32) -> ! {
        self.host.abort(code)
    }
}

/// The sum over every rank of a contiguous f32 tensor on the GPU, as a tensor op so that it
/// reads and writes candle's device memory in place of a copy through the host.
struct NcclSum<'a>(&'a Comm);

impl CustomOp1 for NcclSum<'_> {
    fn name(&self) -> &'static str {
        "nccl-sum"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("the NCCL sum runs on GPUs only")
    }

    fn cuda_fwd(&self, storage: &CudaStorage, layout: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let values = storage.as_cuda_slice::<f32>()?;
        let values = match layout.contiguous_offsets() {
            Some((start, end)) => values.slice(start..end),
            None => candle_core::bail!("the NCCL sum needs a contiguous tensor"),
        };
        let device = storage.device().clone();
        // SAFETY: NCCL writes every element of `sum` before any kernel on this stream reads it.
        let mut sum = unsafe { device.alloc::<f32>(layout.shape().elem_count()) }?;
        self.0
            .all_reduce(&values, &mut sum, &ReduceOp::Sum)
            .map_err(|e| candle_core::Error::Msg(format!("NCCL all-reduce: {e:?}")))?;
        Ok((CudaStorage::wrap_cuda_slice(sum, device), layout.shape().clone()))
    }
}
