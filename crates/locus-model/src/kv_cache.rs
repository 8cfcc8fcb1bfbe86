//! The self-attention cache of incremental decoding: the keys and values of every position
//! decoded so far, in buffers with room for more, written in place.
//!
//! Concatenating each step's keys and values onto the cache (`Tensor::cat`) copied the whole
//! cache at every step, and beam search's reordering gathered it into a fresh, zero-filled
//! tensor (`index_select`): with the page faults of those fresh tensors, about a fifth of
//! beam-4 decoding in the profile of issue 21's note (2026-12-07). Here a step writes its
//! positions into the buffers' room, the attention op reads the buffers through their strides
//! ([`ops::attention`](crate::ops::attention)), and a reordering copies the positions held
//! into a second pair of buffers, which the two then swap, so that the next reordering writes
//! into the first pair again.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, InplaceOp2, Layout, Result, Tensor};
use rayon::prelude::*;

use crate::attention::KeyValues;

/// Positions the buffers hold at first; they grow by half when full.
const FIRST_CAPACITY: usize = 16;

/// A self-attention cache: keys and values `(rows, heads, len, head_dim)` held in buffers of
/// `(row_capacity, heads, capacity, head_dim)`.
#[derive(Debug)]
pub struct SelfKeyValues {
    /// Rows `..rows` and positions `..len` of each buffer hold the cache.
    buffers: KeyValues,
    /// Buffers the next reordering writes into; `None` until the first.
    spare: Option<KeyValues>,
    rows: usize,
    len: usize,
}

impl SelfKeyValues {
    /// A cache holding `first`'s positions.
    pub fn new(first: &KeyValues) -> Result<Self> {
        let (rows, _, len, _) = first.keys.dims4()?;
        let buffers = buffers_like(first, rows, grown(len))?;
        let mut cache = Self { buffers, spare: None, rows, len: 0 };
        cache.write(first)?;
        Ok(cache)
    }

    /// Writes `new` (as many rows as the cache) after the positions held and returns every
    /// position held, read in place. Full buffers are first copied into larger ones.
    pub fn append(&mut self, new: &KeyValues) -> Result<KeyValues> {
        let rows = new.keys.dim(0)?;
        if rows != self.rows {
            bail!("self-attention cache: {rows} new rows for a cache of {} rows", self.rows)
        }
        let needed = self.len + new.len();
        if needed > self.capacity() {
            let every_row: Vec<u32> = (0..self.rows as u32).collect();
            self.move_to(buffers_like(new, self.row_capacity(), grown(needed))?, &every_row, 0)?;
            self.spare = None;
        }
        self.write(new)?;
        self.held()
    }

    /// Keeps the rows `rows` (repeats allowed), in that order, and the positions from `first`
    /// on: beam search's reordering, finished sentences leaving the batch, and positions no
    /// row attends to any more.
    pub fn select(&mut self, rows: &[u32], first: usize) -> Result<()> {
        if first > self.len {
            bail!("self-attention cache: dropping {first} positions of {}", self.len)
        }
        let target = match self.spare.take() {
            Some(spare) if spare.rows() >= rows.len() && spare.keys.dim(2)? >= self.capacity() => spare,
            _ => buffers_like(&self.buffers, rows.len().max(self.row_capacity()), self.capacity())?,
        };
        let previous = self.move_to(target, rows, first)?;
        self.spare = Some(previous);
        Ok(())
    }

    /// Adds `joining` rows of zeros after the rows held: the positions before a joining
    /// sentence's first token, which it never attends to.
    pub fn add_zero_rows(&mut self, joining: usize) -> Result<()> {
        let rows = self.rows + joining;
        if rows > self.row_capacity() {
            let every_row: Vec<u32> = (0..self.rows as u32).collect();
            self.move_to(buffers_like(&self.buffers, rows, self.capacity())?, &every_row, 0)?;
            self.spare = None;
        }
        let (_, heads, capacity, head_dim) = self.buffers.keys.dims4()?;
        let zeros =
            Tensor::zeros((joining, heads, capacity, head_dim), self.buffers.keys.dtype(), self.device())?;
        for buffer in [&self.buffers.keys, &self.buffers.values] {
            buffer.narrow(0, 0, rows)?.slice_set(&zeros, 0, self.rows)?;
        }
        self.rows = rows;
        Ok(())
    }

    /// Number of rows held.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device of the buffers.
    pub fn device(&self) -> &candle_core::Device {
        self.buffers.device()
    }

    /// Every position held, read in place: views of the buffers.
    fn held(&self) -> Result<KeyValues> {
        let view = |buffer: &Tensor| buffer.narrow(0, 0, self.rows)?.narrow(2, 0, self.len);
        Ok(KeyValues { keys: view(&self.buffers.keys)?, values: view(&self.buffers.values)? })
    }

    /// Writes `new` after the positions held.
    fn write(&mut self, new: &KeyValues) -> Result<()> {
        for (buffer, new) in [(&self.buffers.keys, &new.keys), (&self.buffers.values, &new.values)] {
            buffer.narrow(0, 0, self.rows)?.slice_set(&new.contiguous()?, 2, self.len)?;
        }
        self.len += new.len();
        Ok(())
    }

    /// Copies the rows `rows` and the positions from `first` on into `target`, which become
    /// the buffers; returns the buffers they replace.
    fn move_to(&mut self, target: KeyValues, rows: &[u32], first: usize) -> Result<KeyValues> {
        if let Some(&row) = rows.iter().find(|&&row| row as usize >= self.rows) {
            bail!("self-attention cache: row {row} of {}", self.rows)
        }
        let len = self.len - first;
        gather(&target.keys, &self.buffers.keys, rows, first, len)?;
        gather(&target.values, &self.buffers.values, rows, first, len)?;
        (self.rows, self.len) = (rows.len(), len);
        Ok(std::mem::replace(&mut self.buffers, target))
    }

    fn capacity(&self) -> usize {
        self.buffers.keys.dims()[2]
    }

    fn row_capacity(&self) -> usize {
        self.buffers.rows()
    }
}

/// The capacity of buffers that must hold `needed` positions.
fn grown(needed: usize) -> usize {
    FIRST_CAPACITY.max(needed + needed / 2)
}

/// Zeroed buffers of `rows` rows and `capacity` positions, with `like`'s heads, width, dtype
/// and device.
fn buffers_like(like: &KeyValues, rows: usize, capacity: usize) -> Result<KeyValues> {
    let (_, heads, _, head_dim) = like.keys.dims4()?;
    let zeros = || Tensor::zeros((rows, heads, capacity, head_dim), like.keys.dtype(), like.device());
    Ok(KeyValues { keys: zeros()?, values: zeros()? })
}

/// Copies positions `first..first + len` of `source`'s rows `rows` to positions `..len` of
/// `target`'s first `rows.len()` rows. Both are whole buffers `(rows, heads, capacity,
/// head_dim)`. On the CPU each block is one copy ([`GatherPositions`]); elsewhere candle
/// gathers the rows and writes them in.
fn gather(target: &Tensor, source: &Tensor, rows: &[u32], first: usize, len: usize) -> Result<()> {
    if source.device().is_cpu() {
        target.inplace_op2(source, &GatherPositions { rows, first, len })
    } else {
        gather_composed(target, source, rows, first, len)
    }
}

/// [`gather`] from candle operations.
fn gather_composed(target: &Tensor, source: &Tensor, rows: &[u32], first: usize, len: usize) -> Result<()> {
    let index = Tensor::new(rows, source.device())?;
    let held = source.index_select(&index, 0)?.narrow(2, first, len)?.contiguous()?;
    target.narrow(0, 0, rows.len())?.slice_set(&held, 2, 0)
}

/// [`gather`] on the CPU: one copy per block of `len × head_dim` elements, rows in parallel.
struct GatherPositions<'a> {
    rows: &'a [u32],
    first: usize,
    len: usize,
}

impl GatherPositions<'_> {
    fn copy<T: Copy + Send + Sync>(
        &self,
        target: &mut [T],
        target_layout: &Layout,
        source: &[T],
        source_layout: &Layout,
    ) -> Result<()> {
        let (Some((target_start, target_end)), Some((source_start, source_end))) =
            (target_layout.contiguous_offsets(), source_layout.contiguous_offsets())
        else {
            bail!("gather-positions: the buffers must be contiguous")
        };
        let (
            &[target_rows, heads, target_capacity, width],
            &[source_rows, source_heads, source_capacity, source_width],
        ) = (target_layout.dims(), source_layout.dims())
        else {
            bail!("gather-positions: buffers {:?} and {:?}", target_layout.dims(), source_layout.dims())
        };
        let fits = heads == source_heads
            && width == source_width
            && self.rows.len() <= target_rows
            && self.rows.iter().all(|&row| (row as usize) < source_rows)
            && self.first + self.len <= source_capacity
            && self.len <= target_capacity;
        if !fits {
            bail!(
                "gather-positions: rows {:?}, positions {}..{} from {:?} into {:?}",
                self.rows,
                self.first,
                self.first + self.len,
                source_layout.dims(),
                target_layout.dims()
            )
        }
        let (target, source) = (&mut target[target_start..target_end], &source[source_start..source_end]);
        let (target_row, source_row, block) =
            (heads * target_capacity * width, heads * source_capacity * width, self.len * width);
        target.par_chunks_mut(target_row).zip(self.rows.par_iter()).for_each(|(target, &row)| {
            let source = &source[row as usize * source_row..][..source_row];
            for head in 0..heads {
                target[head * target_capacity * width..][..block]
                    .copy_from_slice(&source[(head * source_capacity + self.first) * width..][..block]);
            }
        });
        Ok(())
    }
}

impl InplaceOp2 for GatherPositions<'_> {
    fn name(&self) -> &'static str {
        "locus-gather-positions"
    }

    fn cpu_fwd(
        &self,
        target: &mut CpuStorage,
        target_layout: &Layout,
        source: &CpuStorage,
        source_layout: &Layout,
    ) -> Result<()> {
        match (target, source) {
            (CpuStorage::F32(target), CpuStorage::F32(source)) => {
                self.copy(target, target_layout, source, source_layout)
            }
            (CpuStorage::F64(target), CpuStorage::F64(source)) => {
                self.copy(target, target_layout, source, source_layout)
            }
            (CpuStorage::F16(target), CpuStorage::F16(source)) => {
                self.copy(target, target_layout, source, source_layout)
            }
            (CpuStorage::BF16(target), CpuStorage::BF16(source)) => {
                self.copy(target, target_layout, source, source_layout)
            }
            (target, source) => {
                bail!("gather-positions: dtypes {:?} and {:?}", target.dtype(), source.dtype())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::random;
    use candle_core::{DType, Device};

    /// Keys and values of `rows` rows and `len` positions, distinct per seed.
    fn key_values(rows: usize, len: usize, seed: u64) -> KeyValues {
        KeyValues {
            keys: random((rows, 2, len, 3), seed).unwrap(),
            values: random((rows, 2, len, 3), seed + 1000).unwrap(),
        }
    }

    /// Whether two tensors share their storage (were written in place).
    fn same_storage(a: &Tensor, b: &Tensor) -> bool {
        let address = |t: &Tensor| &*t.storage_and_layout().0 as *const candle_core::Storage;
        address(a) == address(b)
    }

    /// The cache's keys and values as contiguous tensors.
    fn held(cache: &SelfKeyValues) -> (Tensor, Tensor) {
        let held = cache.held().unwrap();
        (held.keys.contiguous().unwrap(), held.values.contiguous().unwrap())
    }

    fn assert_holds(cache: &SelfKeyValues, keys: &Tensor, values: &Tensor, context: &str) {
        let (got_keys, got_values) = held(cache);
        assert_eq!(got_keys.dims(), keys.dims(), "{context}");
        let same = |a: &Tensor, b: &Tensor| {
            a.eq(b).unwrap().flatten_all().unwrap().min(0).unwrap().to_scalar::<u8>().unwrap() == 1
        };
        assert!(same(&got_keys, keys) && same(&got_values, values), "{context}");
    }

    /// Appending position by position holds what concatenating them holds, and writes in
    /// place except when the buffers are full: the 17th position moves them to buffers of
    /// 17 + 8 positions.
    #[test]
    fn appends_hold_the_concatenation_and_write_in_place() {
        let first = key_values(2, 1, 1);
        let mut cache = SelfKeyValues::new(&first).unwrap();
        let (mut keys, mut values) = (first.keys.clone(), first.values.clone());
        for step in 1..20u64 {
            let before = cache.buffers.keys.clone();
            let new = key_values(2, 1, 1 + step);
            let returned = cache.append(&new).unwrap();
            keys = Tensor::cat(&[&keys, &new.keys], 2).unwrap();
            values = Tensor::cat(&[&values, &new.values], 2).unwrap();
            assert_holds(&cache, &keys, &values, &format!("step {step}"));
            assert_eq!(returned.len(), step as usize + 1);
            assert_eq!(same_storage(&before, &cache.buffers.keys), step != 16, "step {step}");
        }
        assert_eq!(cache.capacity(), 25);
        assert!(cache.append(&key_values(3, 1, 99)).is_err());
    }

    /// Reordering (repeats, fewer rows, more rows than the buffers hold) and dropping leading
    /// positions hold what gathering and narrowing the whole tensors holds, through the spare
    /// buffers' swaps; appends after a reordering go on in place.
    #[test]
    fn selections_hold_the_gathered_rows_and_positions() {
        let first = key_values(3, 4, 1);
        let mut cache = SelfKeyValues::new(&first).unwrap();
        let (mut keys, mut values) = (first.keys.clone(), first.values.clone());
        let selections: [(&[u32], usize); 5] =
            [(&[2, 2, 0], 0), (&[1, 0, 0, 2, 1, 2], 1), (&[5, 4], 0), (&[0, 1, 1], 2), (&[2, 0, 1], 0)];
        for (step, (rows, first)) in selections.into_iter().enumerate() {
            let index = Tensor::new(rows, &Device::Cpu).unwrap();
            let len = keys.dim(2).unwrap() - first;
            keys = keys.index_select(&index, 0).unwrap().narrow(2, first, len).unwrap();
            values = values.index_select(&index, 0).unwrap().narrow(2, first, len).unwrap();
            cache.select(rows, first).unwrap();
            assert_holds(&cache, &keys, &values, &format!("selection {step}"));
            let new = key_values(rows.len(), 1, 10 + step as u64);
            let before = cache.buffers.keys.clone();
            cache.append(&new).unwrap();
            assert!(same_storage(&before, &cache.buffers.keys), "selection {step}");
            keys = Tensor::cat(&[&keys, &new.keys], 2).unwrap();
            values = Tensor::cat(&[&values, &new.values], 2).unwrap();
            assert_holds(&cache, &keys, &values, &format!("append after selection {step}"));
        }
        assert!(cache.select(&[3], 0).is_err());
        assert!(cache.select(&[0], 9).is_err());
    }

    /// Joining rows are zeros in every position, also in buffers whose rows held other keys
    /// before, and the rows held are untouched.
    #[test]
    fn joining_rows_are_zeros() {
        let first = key_values(4, 3, 1);
        let mut cache = SelfKeyValues::new(&first).unwrap();
        cache.select(&[1, 3], 0).unwrap();
        cache.select(&[0, 1], 0).unwrap();
        cache.add_zero_rows(2).unwrap();
        let kept = Tensor::new(&[1u32, 3], &Device::Cpu).unwrap();
        let zeros = Tensor::zeros((2, 2, 3, 3), DType::F64, &Device::Cpu).unwrap();
        let with_zeros = |t: &Tensor| Tensor::cat(&[&t.index_select(&kept, 0).unwrap(), &zeros], 0).unwrap();
        assert_holds(&cache, &with_zeros(&first.keys), &with_zeros(&first.values), "within the buffers");
        cache.add_zero_rows(3).unwrap();
        assert_eq!(cache.rows(), 7);
        let zeros = Tensor::zeros((5, 2, 3, 3), DType::F64, &Device::Cpu).unwrap();
        let with_zeros = |t: &Tensor| Tensor::cat(&[&t.index_select(&kept, 0).unwrap(), &zeros], 0).unwrap();
        assert_holds(&cache, &with_zeros(&first.keys), &with_zeros(&first.values), "grown buffers");
    }

    /// The composed gather (other devices) copies what the CPU one copies.
    #[test]
    fn the_composed_gather_matches_the_cpu_one() {
        let source = random((3, 2, 6, 3), 1).unwrap();
        let (rows, first, len) = ([2u32, 0, 2, 1], 1, 4);
        let by_op = Tensor::zeros((5, 2, 7, 3), DType::F64, &Device::Cpu).unwrap();
        let composed = by_op.zeros_like().unwrap();
        gather(&by_op, &source, &rows, first, len).unwrap();
        gather_composed(&composed, &source, &rows, first, len).unwrap();
        let (by_op, composed) = (
            by_op.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            composed.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
        );
        assert_eq!(by_op, composed);
        assert!(by_op.iter().any(|&x| x != 0.0));
    }
}
