//! `--device`: which device to run on.

use anyhow::{bail, Context, Result};
use candle_core::Device;

/// Parses `auto`, `cpu`, `cuda`, `cuda:N` or `metal`. `auto` takes the first GPU this binary
/// was built for and can reach, else the CPU.
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "auto" => Ok(best_available()),
        "cpu" => Ok(Device::Cpu),
        "metal" => Device::new_metal(0).with_context(|| format!("opening Metal device 0{}", hint("metal"))),
        cuda if cuda == "cuda" || cuda.starts_with("cuda:") => {
            let ordinal = match cuda.strip_prefix("cuda:") {
                Some(n) => n.parse().with_context(|| format!("--device {cuda}: expected cuda:N"))?,
                None => 0,
            };
            Device::new_cuda(ordinal)
                .with_context(|| format!("opening CUDA device {ordinal}{}", hint("cuda")))
        }
        other => bail!("--device {other}: expected auto, cpu, cuda, cuda:N or metal"),
    }
}

/// What to check when a `feature` device does not open: the build, if it lacks the feature;
/// otherwise the machine (the binary can drive such a device, but none answered).
fn hint(feature: &str) -> String {
    let built_with = match feature {
        "cuda" => cfg!(feature = "cuda"),
        _ => cfg!(feature = "metal"),
    };
    if built_with {
        String::new()
    } else {
        format!(" (this binary was built without --features {feature})")
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
