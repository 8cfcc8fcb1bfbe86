//! World size 1: one process trains alone.

use candle_core::Tensor;

use super::Communicator;
use crate::error::Result;

/// The communicator of a job of one process: every collective returns its input.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn world_size(&self) -> usize {
        1
    }

    fn engine(&self) -> &'static str {
        "one process"
    }

    fn all_reduce_sum(&self, buffer: &Tensor) -> Result<Tensor> {
        Ok(buffer.clone())
    }

    fn broadcast_bytes(&self, _bytes: &mut Vec<u8>, _root: usize) -> Result<()> {
        Ok(())
    }

    fn barrier(&self) -> Result<()> {
        Ok(())
    }

    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}
