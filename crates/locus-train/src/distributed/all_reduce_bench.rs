//! The communicator's sum on its own, as nccl-tests' `all_reduce_perf` measures it: how long a
//! sum of a buffer of each size takes over the job's ranks, and whether it is exact.

use std::time::Instant;

use candle_core::{Device, Tensor};

use super::Communicator;
use crate::bench::median;
use crate::error::Result;

/// The sums of one buffer size.
#[derive(Debug, Clone, PartialEq)]
pub struct AllReduceTiming {
    /// f32 values in the buffer.
    pub floats: usize,
    /// Median seconds of one sum, from the call until the sum is on the device.
    pub median_seconds: f64,
    /// The largest difference between a sum and the exact one (integers, so it must be 0).
    pub max_error: f32,
}

impl AllReduceTiming {
    /// Bytes summed per second (nccl-tests' "algorithm bandwidth").
    pub fn bytes_per_second(&self) -> f64 {
        (4 * self.floats) as f64 / self.median_seconds.max(1e-12)
    }

    /// What each rank's link carries per second in a ring sum, `2·(n−1)/n` times the algorithm
    /// bandwidth (nccl-tests' "bus bandwidth", comparable across numbers of ranks).
    pub fn bus_bytes_per_second(&self, ranks: usize) -> f64 {
        self.bytes_per_second() * 2.0 * (ranks - 1) as f64 / ranks as f64
    }
}

/// Rank `rank`'s value at `index`: small integers, so that sums over thousands of ranks are
/// exact in f32 and a wrong sum cannot pass.
fn probe_value(index: usize, rank: usize) -> f32 {
    ((index * 7 + rank * 13) % 1024) as f32
}

/// Sums a buffer of each size in `sizes` over the ranks of `comm` on `device`, once untimed
/// and then `repeats` times timed, and checks the last sum against the exact one. Collective.
pub fn bench_all_reduce(
    comm: &dyn Communicator,
    device: &Device,
    sizes: &[usize],
    repeats: usize,
) -> Result<Vec<AllReduceTiming>> {
    let (rank, ranks) = (comm.rank(), comm.world_size());
    sizes
        .iter()
        .map(|&floats| {
            let values: Vec<f32> = (0..floats).map(|i| probe_value(i, rank)).collect();
            let buffer = Tensor::from_vec(values, floats, device)?;
            let mut sum = comm.all_reduce_sum(&buffer)?;
            let mut seconds = Vec::with_capacity(repeats);
            for _ in 0..repeats {
                comm.barrier()?;
                let start = Instant::now();
                sum = comm.all_reduce_sum(&buffer)?;
                device.synchronize()?;
                seconds.push(start.elapsed().as_secs_f64());
            }
            let max_error = sum
                .to_vec1::<f32>()?
                .iter()
                .enumerate()
                .map(|(i, &got)| (got - (0..ranks).map(|r| probe_value(i, r)).sum::<f32>()).abs())
                .fold(0f32, f32::max);
            Ok(AllReduceTiming { floats, median_seconds: median(&seconds), max_error })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::SingleProcess;

    #[test]
    fn one_process_sums_exactly_and_bandwidth_follows_the_definition() {
        let timings = bench_all_reduce(&SingleProcess, &Device::Cpu, &[1, 1000], 3).unwrap();
        assert_eq!(timings.iter().map(|t| t.floats).collect::<Vec<_>>(), [1, 1000]);
        assert!(timings.iter().all(|t| t.max_error == 0.0 && t.median_seconds >= 0.0));
        let timing = AllReduceTiming { floats: 1 << 20, median_seconds: 0.004, max_error: 0.0 };
        // 4 MiB in 4 ms; a ring of 4 ranks carries 2·3/4 of it per link.
        assert!((timing.bytes_per_second() - 1048576000.0).abs() < 1e-3);
        assert!((timing.bus_bytes_per_second(4) - 1572864000.0).abs() < 1e-3);
    }
}
