//! The process's allocator, and its settings.
//!
//! By default glibc serves blocks above a dynamic threshold with `mmap` and gives freed memory
//! back to the kernel, and every training step or decoding step frees and reallocates tensors
//! of up to many MB: the page faults, page clearing and TLB shootdowns this causes cost about a
//! fifth of a CPU training step (measured with `perf` and `locus bench train`: 2,450 → 3,000
//! tokens/s on `configs/bench-cpu.toml`), and 9% of greedy decoding once decoding had got
//! faster (`perf record` of `locus bench translate` on test_2016_flickr, 2026-12-07). Every
//! command therefore serves blocks up to 32 MiB (glibc's maximum) from the heap and never
//! trims it ([`keep_freed_memory`]): `locus bench translate` of test_2016_flickr in batches of
//! 100, the build before and after alternated 3 times, went from 486–514 to 513–543
//! sentences/s greedy and from 183–191 to 195–199 with beam 4, peak RSS 0.30 → 0.33 and
//! 0.35 → 0.45 GiB (README, Performance).
//!
//! Blocks above 32 MiB (the logits of a large batch and their gradients: positions ×
//! vocabulary) are still mapped afresh each time, and faulting them in 4 KiB page by 4 KiB page
//! was the largest kernel cost left in training (`perf` on `configs/multi30k-en-de-tok.toml`:
//! a quarter of the samples in the kernel, most of them page faults under candle's element-wise
//! kernels). [`Allocator`] maps those blocks itself, as glibc would, and during training asks
//! for transparent huge pages on them (`madvise(MADV_HUGEPAGE)`, which this kernel's default
//! `madvise` mode honours): one fault per 2 MiB instead of per 4 KiB.
//! `locus bench train` on that config, the old and new build alternated: 4,509–5,715 →
//! 5,333–6,220 tokens/s (+9% to +18% per pair); `configs/bench-cpu.toml` within the noise.

#[cfg(target_os = "linux")]
use std::alloc::{GlobalAlloc, Layout, System};
#[cfg(target_os = "linux")]
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(target_os = "linux")]
/// Blocks of at least this size are mapped directly: glibc's largest `M_MMAP_THRESHOLD`, so
/// smaller blocks stay on the heap that [`keep_freed_memory`] keeps.
const LARGE_BLOCK: usize = 32 << 20;

#[cfg(target_os = "linux")]
/// Whether directly mapped blocks ask for transparent huge pages (set by [`use_huge_pages`]).
static HUGE_PAGES: AtomicBool = AtomicBool::new(false);

#[cfg(target_os = "linux")]
/// glibc's `malloc` for blocks under [`LARGE_BLOCK`]; `mmap` and `munmap` above it, with
/// transparent huge pages once [`use_huge_pages`] has run.
pub struct Allocator;

#[cfg(target_os = "linux")]
/// Whether `layout` is served by a direct mapping: large, and aligned no more than a page
/// (every page size Linux uses is a multiple of 4 KiB).
fn is_mapped(layout: Layout) -> bool {
    layout.size() >= LARGE_BLOCK && layout.align() <= 4096
}

#[cfg(target_os = "linux")]
/// Maps `size` fresh (zeroed) bytes, or returns null.
fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at an address of the kernel's choice touches no
    // existing memory.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    advise_huge_pages(ptr, size);
    ptr.cast()
}

#[cfg(target_os = "linux")]
/// Asks for transparent huge pages on a mapping of ours during training ([`use_huge_pages`]).
/// Only a hint: a kernel that refuses it still serves the memory in small pages.
fn advise_huge_pages(ptr: *mut libc::c_void, size: usize) {
    if HUGE_PAGES.load(Ordering::Relaxed) {
        // SAFETY: `ptr..ptr + size` is a mapping this allocator made.
        unsafe { libc::madvise(ptr, size, libc::MADV_HUGEPAGE) };
    }
}

#[cfg(target_os = "linux")]
// SAFETY: blocks are served by glibc or by a mapping of their exact size, and `is_mapped`,
// which depends only on the layout, sends every block back to the one that served it.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_mapped(layout) {
            map(layout.size())
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_mapped(layout) {
            // Fresh anonymous mappings are zeroed by the kernel.
            map(layout.size())
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_mapped(layout) {
            // SAFETY: `ptr` was mapped by `map` with this size.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees that `new_size`, rounded up to the alignment, does not
        // overflow `isize`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (is_mapped(layout), is_mapped(new_layout)) {
            // SAFETY: the caller's contract, passed on.
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            (true, true) => {
                // SAFETY: `ptr` was mapped by `map` with the old size; the kernel moves the
                // pages (no copy) where it must.
                let moved =
                    unsafe { libc::mremap(ptr.cast(), layout.size(), new_size, libc::MREMAP_MAYMOVE) };
                if moved == libc::MAP_FAILED {
                    return std::ptr::null_mut();
                }
                advise_huge_pages(moved, new_size);
                moved.cast()
            }
            _ => {
                // SAFETY: `new_layout` has a non-zero size (one side of the threshold is large,
                // and a shrink to zero is not allowed by `GlobalAlloc::realloc`).
                let new = unsafe { self.alloc(new_layout) };
                if !new.is_null() {
                    // SAFETY: both blocks are live and at least `min` bytes long.
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                new
            }
        }
    }
}

/// Keeps freed memory in glibc's heap: blocks up to 32 MiB come from it, and it is never
/// trimmed (a no-op on other C libraries).
pub fn keep_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: `mallopt` only sets allocator parameters, which glibc reads under its own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Asks for transparent huge pages on the blocks this allocator maps itself, for training.
pub fn use_huge_pages() {
    #[cfg(target_os = "linux")]
    HUGE_PAGES.store(true, Ordering::Relaxed);
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// A block crosses the threshold in both directions and grows while mapped; its contents
    /// survive every move, and zeroed blocks of both kinds read as zeros.
    #[test]
    fn blocks_keep_their_contents_across_the_threshold() {
        let threshold = super::LARGE_BLOCK / 4;
        let mut values: Vec<u32> = (0..threshold as u32 - 16).collect();
        values.extend(0..64); // past LARGE_BLOCK bytes: copied into a mapping
        values.extend(std::iter::repeat_n(7, threshold)); // mapped to mapped: mremap
        assert!(values.capacity() * 4 >= 2 * super::LARGE_BLOCK);
        assert_eq!(values[threshold - 17], threshold as u32 - 17);
        assert_eq!(values[threshold + 47], 63);
        assert!(values[threshold + 48..].iter().all(|&v| v == 7));
        values.truncate(100);
        values.shrink_to_fit(); // mapped to heap: copied back
        assert_eq!(values, (0..100).collect::<Vec<u32>>());
        for words in [16, threshold + 16] {
            assert!(vec![0u32; words].iter().all(|&v| v == 0));
        }
    }
}
