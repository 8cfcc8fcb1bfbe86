//! `--device`: which device to run on.

use anyhow::{bail, Context, Result};
use candle_core::Device;

/// Parses `auto`, `cpu`, `cuda`, `cuda:N` or `metal`. `auto` takes the first GPU this binary
/// was built for and can reach, else the CPU.
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "auto" => Ok(best_available()),
        "cpu" => Ok(Device::Cpu),
        "metal" => Device::new_metal(0)
            .context("opening Metal device 0 (is this binary built with --features metal?)"),
        cuda if cuda == "cuda" || cuda.starts_with("cuda:") => {
            let ordinal = match cuda.strip_prefix("cuda:") {
                Some(n) => n.parse().with_context(|| format!("--device {cuda}: expected cuda:N"))?,
                None => 0,
            };
            Device::new_cuda(ordinal).with_context(|| {
                format!("opening CUDA device {ordinal} (is this binary built with --features cuda?)")
            })
        }
        other => bail!("--device {other}: expected auto, cpu, cuda, cuda:N or metal"),
    }
}

fn best_available() -> Device {
    if candle_core::utils::cuda_is_available() {
        if let Ok(device) = Device::new_cuda(0) {
            return device;
        }
    }
    if candle_core::utils::metal_is_available() {
        if let Ok(device) = Device::new_metal(0) {
            return device;
        }
    }
    Device::Cpu
}
