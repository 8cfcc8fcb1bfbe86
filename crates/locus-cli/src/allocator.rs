//! Allocator settings for training.
//!
//! By default glibc serves blocks above a dynamic threshold with `mmap` and gives freed memory
//! back to the kernel, and every training step frees and reallocates tensors of many MB: the
//! page faults, page clearing and TLB shootdowns this causes cost about a fifth of a CPU
//! training step (measured with `perf` and `locus bench train`: 2,450 → 3,000 tokens/s on
//! `configs/bench-cpu.toml`). Training therefore serves blocks up to 32 MiB (glibc's maximum)
//! from the heap and never trims it. Decoding keeps glibc's defaults: it showed no gain there
//! (greedy test_2016_flickr: 211 sentences/s before, 200 after, within the noise).

/// Tunes glibc's `malloc` for training (a no-op on other C libraries).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_for_training() {
    // SAFETY: `mallopt` only sets allocator parameters, which glibc reads under its own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Tunes glibc's `malloc` for training (a no-op on other C libraries).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_for_training() {}
