//! Position tables built once and reused: each kind's fixed tables (sinusoids, RoPE's cosines
//! and sines, ALiBi's biases, T5's and Shaw's distance ids) depend only on the positions they
//! cover, so a [`TableCache`] keeps one per device and dtype, built for the longest length
//! asked so far (rounded up to a power of two), and hands out its first rows or a window of
//! it. Every entry is computed exactly as a fresh table of that length would be.

use std::sync::{Arc, Mutex, PoisonError};

use candle_core::{DType, Device, Result, Tensor};

/// The shortest table built, so that short sequences and early decoding steps share one.
const MIN_CAPACITY: usize = 64;

/// Where the queries and keys of one forward pass of a stack sit: query `i` at position
/// `q_offset + i`, key `j` at `k_offset + j`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Number of queries (the new positions).
    pub q_len: usize,
    /// Number of keys (with a decoder cache, the past ones too).
    pub k_len: usize,
    /// Position of the first query.
    pub q_offset: usize,
    /// Position of the first key.
    pub k_offset: usize,
}

impl Span {
    /// Queries and keys at the same `len` positions from `offset`: an encoder's self-attention.
    pub fn same(len: usize, offset: usize) -> Self {
        Self { q_len: len, k_len: len, q_offset: offset, k_offset: offset }
    }

    /// `q_len` new queries after `past` cached positions, attending to all of them from 0: a
    /// decoder's self-attention.
    pub fn after(q_len: usize, past: usize) -> Self {
        Self { q_len, k_len: past + q_len, q_offset: past, k_offset: 0 }
    }

    /// The same queries and keys placed relative to the earlier of their first positions:
    /// `(first query row, first key column, size)` of a square table indexed by positions
    /// that holds them. Tables of distances need no more than that.
    fn relative_window(&self) -> (usize, usize, usize) {
        let start = self.q_offset.min(self.k_offset);
        let (row, column) = (self.q_offset - start, self.k_offset - start);
        (row, column, (row + self.q_len).max(column + self.k_len))
    }
}

/// `|i - j|` for every (query, key) position pair of a `len`-square table, in `dtype`: the
/// table of [`TableCache::distances`] for the biases that are functions of the distance.
pub fn absolute_distances(len: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = (0..len).flat_map(|i| (0..len).map(move |j| i.abs_diff(j) as f32)).collect();
    Tensor::from_vec(values, (len, len), &Device::Cpu)?.to_dtype(dtype)?.to_device(device)
}

#[derive(Debug)]
struct Cached {
    device: Device,
    dtype: DType,
    len: usize,
    table: Tensor,
}

/// One table per device and dtype, grown on demand; clones share it, and a mutex guards it,
/// so the models that the lab trains on several threads may share one too.
#[derive(Debug, Clone, Default)]
pub struct TableCache {
    tables: Arc<Mutex<Vec<Cached>>>,
}

impl TableCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// A table covering at least `len` positions on `device` in `dtype`: the cached one if it
    /// is long enough, otherwise `build(capacity)`, for a capacity of at least `len`, which
    /// replaces it. `build` must give a table whose entries do not depend on the capacity.
    pub fn covering(
        &self,
        len: usize,
        dtype: DType,
        device: &Device,
        build: impl FnOnce(usize) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = tables.iter().position(|c| c.dtype == dtype && c.device.same_device(device));
        if let Some(cached) = slot.map(|i| &tables[i]).filter(|cached| cached.len >= len) {
            return Ok(cached.table.clone());
        }
        let capacity = len.next_power_of_two().max(MIN_CAPACITY);
        let table = build(capacity)?;
        let cached = Cached { device: device.clone(), dtype, len: capacity, table: table.clone() };
        match slot {
            Some(i) => tables[i] = cached,
            None => tables.push(cached),
        }
        Ok(table)
    }

    /// Rows `offset..offset + len` (along `dim`) of a table of positions.
    pub fn rows(
        &self,
        dim: usize,
        offset: usize,
        len: usize,
        dtype: DType,
        device: &Device,
        build: impl FnOnce(usize) -> Result<Tensor>,
    ) -> Result<Tensor> {
        self.covering(offset + len, dtype, device, build)?.narrow(dim, offset, len)
    }

    /// The `(q_len, k_len)` window of a square table of query and key positions whose entries
    /// depend only on their distance (its last two dimensions, from `rows_dim`), for the
    /// queries and keys of `span`.
    pub fn distances(
        &self,
        rows_dim: usize,
        span: Span,
        dtype: DType,
        device: &Device,
        build: impl FnOnce(usize) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let (row, column, size) = span.relative_window();
        let table = self.covering(size, dtype, device, build)?;
        table.narrow(rows_dim, row, span.q_len)?.narrow(rows_dim + 1, column, span.k_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `j - i` for every (query, key) position pair of a `size`-square table.
    fn differences(size: usize) -> Result<Tensor> {
        let values: Vec<i64> = (0..size).flat_map(|i| (0..size).map(move |j| j as i64 - i as i64)).collect();
        Tensor::from_vec(values, (size, size), &Device::Cpu)
    }

    #[test]
    fn windows_hold_the_distances_of_their_span() -> Result<()> {
        let cache = TableCache::new();
        for span in [Span::same(5, 0), Span::same(3, 1000), Span::after(1, 90), Span::after(4, 0)] {
            let window = cache.distances(0, span, DType::I64, &Device::Cpu, differences)?;
            assert_eq!(window.dims(), &[span.q_len, span.k_len]);
            for (i, row) in window.to_vec2::<i64>()?.iter().enumerate() {
                for (j, &got) in row.iter().enumerate() {
                    let want = (span.k_offset + j) as i64 - (span.q_offset + i) as i64;
                    assert_eq!(got, want, "{span:?}, query {i}, key {j}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn a_table_is_built_once_and_grown_only_when_too_short() -> Result<()> {
        let cache = TableCache::new();
        let builds = std::cell::Cell::new(Vec::new());
        let build = |size: usize| {
            builds.set([builds.take(), vec![size]].concat());
            Tensor::arange(0u32, size as u32, &Device::Cpu)
        };
        let rows = |offset, len| -> Result<Vec<u32>> {
            cache.rows(0, offset, len, DType::U32, &Device::Cpu, build)?.to_vec1()
        };
        assert_eq!(rows(0, 5)?, [0, 1, 2, 3, 4]);
        assert_eq!(rows(60, 4)?, [60, 61, 62, 63]);
        assert_eq!(rows(62, 3)?, [62, 63, 64]);
        assert_eq!(rows(0, 2)?, [0, 1]);
        assert_eq!(builds.take(), [64, 128]);
        // A clone shares the tables; another dtype gets its own.
        let clone = cache.clone();
        clone.covering(100, DType::U32, &Device::Cpu, |_| panic!("cached"))?;
        let other =
            clone.covering(3, DType::F32, &Device::Cpu, |n| Tensor::zeros(n, DType::F32, &Device::Cpu))?;
        assert_eq!(other.dims(), &[64]);
        Ok(())
    }

    #[test]
    fn threads_share_one_cache() -> Result<()> {
        let cache = TableCache::new();
        std::thread::scope(|scope| {
            for len in [10, 70, 130] {
                let cache = cache.clone();
                scope.spawn(move || {
                    let table = cache
                        .rows(0, 0, len, DType::U32, &Device::Cpu, |n| {
                            Tensor::arange(0u32, n as u32, &Device::Cpu)
                        })
                        .unwrap();
                    assert_eq!(table.to_vec1::<u32>().unwrap(), (0..len as u32).collect::<Vec<_>>());
                });
            }
        });
        assert!(cache.covering(130, DType::U32, &Device::Cpu, |_| panic!("cached")).is_ok());
        Ok(())
    }
}
