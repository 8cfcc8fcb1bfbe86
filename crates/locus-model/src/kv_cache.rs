//! The self-attention cache of incremental decoding: the keys and values of every position
//! decoded so far, in buffers with room for more, written in place and never reordered.
//!
//! Concatenating each step's keys and values onto the cache (`Tensor::cat`) copied the whole
//! cache at every step (5.3% of beam-4 decoding in the profile of issue 21's note of
//! 2026-12-07), and beam search's reordering gathered it into a fresh tensor that
//! `index_select` zero-fills first (5.0%, plus memsets and page faults). Here a step writes its
//! positions into the buffers' room, and the attention op reads the buffers in place.
//!
//! A reordering moves an index, not the keys and values (FasterTransformer's cache
//! indirection): for each row and position, the buffer row that holds it. Row `i` always
//! writes its new positions into buffer row `i`, which is free from the current position on:
//! every row's positions so far lie before it. The buffers move only when they must grow
//! (more positions or more rows) or drop leading positions, and each row's positions are
//! then copied into its own buffer row.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, InplaceOp2, Layout, Result, Tensor};
use rayon::prelude::*;

use crate::attention::KeyValues;
use crate::ops::KeyRows;

/// Positions the buffers hold at first; they grow by half when full.
const FIRST_CAPACITY: usize = 16;

/// A self-attention cache: keys and values of `rows` rows and `len` positions, held in
/// buffers of `(row_capacity, heads, capacity, head_dim)`.
#[derive(Debug)]
pub struct SelfKeyValues {
    buffers: KeyValues,
    /// Row `i`'s position `p` lies in buffer row `sources[i * capacity + p]`; `None` while
    /// every row's positions lie in its own buffer row.
    sources: Option<Vec<u32>>,
    rows: usize,
    len: usize,
}

/// Every position of a [`SelfKeyValues`], read in place: the buffers' first positions, and
/// where each row's lie.
#[derive(Debug)]
pub struct HeldKeyValues<'a> {
    /// `(rows, heads, len, head_dim)` views of the buffers; with `key_rows`, of all their rows.
    pub kv: KeyValues,
    /// Where each row's positions lie, once rows have been reordered.
    pub key_rows: Option<KeyRows<'a>>,
}

impl SelfKeyValues {
    /// A cache holding `first`'s positions.
    pub fn new(first: &KeyValues) -> Result<Self> {
        let (rows, _, len, _) = first.keys.dims4()?;
        let buffers = buffers_like(first, rows, grown(len))?;
        let mut cache = Self { buffers, sources: None, rows, len: 0 };
        cache.write(first)?;
        Ok(cache)
    }

    /// Writes `new` (as many rows as the cache) after the positions held and returns every
    /// position held. Full buffers are first copied into larger ones.
    pub fn append(&mut self, new: &KeyValues) -> Result<HeldKeyValues<'_>> {
        let rows = new.keys.dim(0)?;
        if rows != self.rows {
            bail!("self-attention cache: {rows} new rows for a cache of {} rows", self.rows)
        }
        let needed = self.len + new.len();
        if needed > self.capacity() {
            let every_row: Vec<u32> = (0..self.rows as u32).collect();
            self.move_to(buffers_like(new, self.row_capacity(), grown(needed))?, &every_row, 0)?;
        }
        self.write(new)?;
        self.held()
    }

    /// Keeps the rows `rows` (repeats allowed), in that order, and the positions from `first`
    /// on: beam search's reordering, finished sentences leaving the batch, and positions no
    /// row attends to any more. Only the index moves (nothing, when the leading rows are kept
    /// in place), unless positions are dropped or there are more rows than the buffers hold.
    pub fn select(&mut self, rows: &[u32], first: usize) -> Result<()> {
        if first > self.len {
            bail!("self-attention cache: dropping {first} positions of {}", self.len)
        }
        if let Some(&row) = rows.iter().find(|&&row| row as usize >= self.rows) {
            bail!("self-attention cache: row {row} of {}", self.rows)
        }
        if first > 0 || rows.len() > self.row_capacity() {
            let row_capacity = rows.len().max(self.row_capacity());
            return self.move_to(buffers_like(&self.buffers, row_capacity, self.capacity())?, rows, first);
        }
        let leading_rows = rows.iter().enumerate().all(|(i, &row)| row as usize == i);
        if self.sources.is_none() && leading_rows {
            self.rows = rows.len();
            return Ok(());
        }
        let capacity = self.capacity();
        let mut sources = vec![0; self.row_capacity() * capacity];
        for (new, &row) in sources.chunks_exact_mut(capacity).zip(rows) {
            match &self.sources {
                Some(old) => new[..self.len].copy_from_slice(&old[row as usize * capacity..][..self.len]),
                None => new[..self.len].fill(row),
            }
        }
        self.sources = Some(sources);
        self.rows = rows.len();
        Ok(())
    }

    /// Adds `joining` rows after the rows held, for sentences joining the batch. Their
    /// positions so far are whatever their buffer rows hold there (zeros, or keys and values
    /// of rows that left), which they never attend to: the decoder hides the keys before a
    /// row's first token ([`DecoderCache::join`](crate::decoder::DecoderCache::join)), so those get
    /// weight 0. Nothing moves unless the buffers must grow.
    pub fn add_rows(&mut self, joining: usize) -> Result<()> {
        let rows = self.rows + joining;
        if rows > self.row_capacity() {
            let every_row: Vec<u32> = (0..self.rows as u32).collect();
            self.move_to(buffers_like(&self.buffers, grown(rows), self.capacity())?, &every_row, 0)?;
        }
        let (capacity, len) = (self.capacity(), self.len);
        if let Some(sources) = &mut self.sources {
            // Each joining row's positions are its own buffer row's, where it writes from now on.
            for (row, sources) in sources.chunks_exact_mut(capacity).enumerate().take(rows).skip(self.rows) {
                sources[..len].fill(row as u32);
            }
        }
        self.rows = rows;
        Ok(())
    }

    /// Number of rows held.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The device of the buffers.
    pub fn device(&self) -> &candle_core::Device {
        self.buffers.device()
    }

    /// Every position held, read in place.
    fn held(&self) -> Result<HeldKeyValues<'_>> {
        let rows = if self.sources.is_some() { self.row_capacity() } else { self.rows };
        let view = |buffer: &Tensor| buffer.narrow(0, 0, rows)?.narrow(2, 0, self.len);
        let kv = KeyValues { keys: view(&self.buffers.keys)?, values: view(&self.buffers.values)? };
        let key_rows = self.sources.as_ref().map(|sources| KeyRows::PerPosition {
            rows: &sources[..self.rows * self.capacity()],
            stride: self.capacity(),
        });
        Ok(HeldKeyValues { kv, key_rows })
    }

    /// Writes `new` after the positions held, each row into its own buffer row.
    fn write(&mut self, new: &KeyValues) -> Result<()> {
        for (buffer, new) in [(&self.buffers.keys, &new.keys), (&self.buffers.values, &new.values)] {
            buffer.narrow(0, 0, self.rows)?.slice_set(&new.contiguous()?, 2, self.len)?;
        }
        let (capacity, end) = (self.capacity(), self.len + new.len());
        if let Some(sources) = &mut self.sources {
            for (row, sources) in sources.chunks_exact_mut(capacity).take(self.rows).enumerate() {
                sources[self.len..end].fill(row as u32);
            }
        }
        self.len = end;
        Ok(())
    }

    /// Copies the positions from `first` on of the rows `rows` into `target`, each into its
    /// own buffer row; `target` becomes the buffers.
    fn move_to(&mut self, target: KeyValues, rows: &[u32], first: usize) -> Result<()> {
        let (len, capacity) = (self.len - first, self.capacity());
        // For each kept row, the buffer row of each position it keeps.
        let mut sources = Vec::with_capacity(rows.len() * len);
        for &row in rows {
            match &self.sources {
                Some(old) => sources.extend_from_slice(&old[row as usize * capacity..][first..self.len]),
                None => sources.extend(std::iter::repeat_n(row, len)),
            }
        }
        let copy = PositionCopy { rows: rows.len(), sources: &sources, first, len };
        copy.apply(&target.keys, &self.buffers.keys)?;
        copy.apply(&target.values, &self.buffers.values)?;
        (self.buffers, self.sources, self.rows, self.len) = (target, None, rows.len(), len);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.buffers.keys.dims()[2]
    }

    fn row_capacity(&self) -> usize {
        self.buffers.rows()
    }
}

/// The capacity of buffers that must hold `needed` positions or rows.
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

/// Copies positions `first..first + len` of source buffer rows into positions `..len` of a
/// target's first `rows` rows: target row `i`'s position `p` from source row
/// `sources[i * len + p]`. Both are whole buffers `(rows, heads, capacity, head_dim)`.
struct PositionCopy<'a> {
    rows: usize,
    sources: &'a [u32],
    first: usize,
    len: usize,
}

impl PositionCopy<'_> {
    /// Copies `source` into `target`: on the CPU one copy per position and head
    /// ([`InplaceOp2`]), elsewhere candle gathers the positions and writes them in.
    fn apply(&self, target: &Tensor, source: &Tensor) -> Result<()> {
        if source.device().is_cpu() {
            target.inplace_op2(source, self)
        } else {
            self.composed(target, source)
        }
    }

    /// [`apply`](Self::apply) from candle operations.
    fn composed(&self, target: &Tensor, source: &Tensor) -> Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        let key_rows = KeyRows::PerPosition { rows: self.sources, stride: self.len };
        let held = key_rows.gather(&source.narrow(2, self.first, self.len)?)?;
        target.narrow(0, 0, self.rows)?.slice_set(&held, 2, 0)
    }

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
            bail!("kv-cache copy: the buffers must be contiguous")
        };
        let (
            &[target_rows, heads, target_capacity, width],
            &[source_rows, source_heads, source_capacity, source_width],
        ) = (target_layout.dims(), source_layout.dims())
        else {
            bail!("kv-cache copy: buffers {:?} and {:?}", target_layout.dims(), source_layout.dims())
        };
        let fits = heads == source_heads
            && width == source_width
            && self.sources.len() == self.rows * self.len
            && self.rows <= target_rows
            && self.sources.iter().all(|&row| (row as usize) < source_rows)
            && self.first + self.len <= source_capacity
            && self.len <= target_capacity;
        if !fits {
            bail!(
                "kv-cache copy: {} rows, positions {}..{} from {:?} into {:?}",
                self.rows,
                self.first,
                self.first + self.len,
                source_layout.dims(),
                target_layout.dims()
            )
        }
        if self.len == 0 {
            return Ok(());
        }
        let (target, source) = (&mut target[target_start..target_end], &source[source_start..source_end]);
        let source_row = heads * source_capacity * width;
        target
            .par_chunks_mut(heads * target_capacity * width)
            .zip(self.sources.par_chunks(self.len))
            .for_each(|(target, sources)| {
                for head in 0..heads {
                    let target = &mut target[head * target_capacity * width..][..self.len * width];
                    for (p, (target, &row)) in target.chunks_exact_mut(width).zip(sources).enumerate() {
                        let at =
                            row as usize * source_row + (head * source_capacity + self.first + p) * width;
                        target.copy_from_slice(&source[at..][..width]);
                    }
                }
            });
        Ok(())
    }
}

impl InplaceOp2 for PositionCopy<'_> {
    fn name(&self) -> &'static str {
        "locus-kv-cache-copy"
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
            (target, source) => bail!("kv-cache copy: dtypes {:?} and {:?}", target.dtype(), source.dtype()),
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

    /// The cache's keys and values as each row reads them, contiguous.
    fn held(cache: &SelfKeyValues) -> (Tensor, Tensor) {
        let HeldKeyValues { kv, key_rows } = cache.held().unwrap();
        match key_rows {
            Some(key_rows) => (key_rows.gather(&kv.keys).unwrap(), key_rows.gather(&kv.values).unwrap()),
            None => (kv.keys.contiguous().unwrap(), kv.values.contiguous().unwrap()),
        }
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
            let returned = cache.append(&new).unwrap().kv;
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
    /// positions hold what gathering and narrowing the whole tensors holds; a reordering that
    /// drops nothing, within the buffers' rows, moves an index and no key (nothing at all
    /// when it keeps leading rows of buffers without an index), and appends go on in place.
    #[test]
    fn selections_hold_the_gathered_rows_and_positions() {
        let first = key_values(3, 4, 1);
        let mut cache = SelfKeyValues::new(&first).unwrap();
        let (mut keys, mut values) = (first.keys.clone(), first.values.clone());
        // Rows, leading positions dropped, and whether the cache reads through an index after.
        let selections: [(&[u32], usize, bool); 7] = [
            (&[0, 1], 0, false),
            (&[1, 1, 0], 0, true),
            (&[1, 0, 0, 2, 1, 2], 1, false),
            (&[5, 4], 0, true),
            (&[0, 1, 1], 2, false),
            (&[0, 1], 0, false),
            (&[1, 0], 0, true),
        ];
        for (step, (rows, first, indexed)) in selections.into_iter().enumerate() {
            let index = Tensor::new(rows, &Device::Cpu).unwrap();
            let len = keys.dim(2).unwrap() - first;
            keys = keys.index_select(&index, 0).unwrap().narrow(2, first, len).unwrap();
            values = values.index_select(&index, 0).unwrap().narrow(2, first, len).unwrap();
            let before = cache.buffers.keys.clone();
            let row_capacity = cache.row_capacity();
            cache.select(rows, first).unwrap();
            let moved = first > 0 || rows.len() > row_capacity;
            assert_eq!(!same_storage(&before, &cache.buffers.keys), moved, "selection {step}");
            assert_eq!(cache.sources.is_some(), indexed, "selection {step}");
            assert_holds(&cache, &keys, &values, &format!("selection {step}"));
            let new = key_values(rows.len(), 1, 10 + step as u64);
            let before = cache.buffers.keys.clone();
            cache.append(&new).unwrap();
            assert!(same_storage(&before, &cache.buffers.keys), "selection {step}");
            keys = Tensor::cat(&[&keys, &new.keys], 2).unwrap();
            values = Tensor::cat(&[&values, &new.values], 2).unwrap();
            assert_holds(&cache, &keys, &values, &format!("append after selection {step}"));
        }
        assert!(cache.select(&[2], 0).is_err());
        assert!(cache.select(&[0], 9).is_err());
    }

    /// Joining rows leave the rows held untouched and hold their own positions from the next
    /// append on, whether the cache reads through an index (nothing moves), has room for
    /// them without one (nothing moves) or must grow its rows (by half: later joins fit).
    #[test]
    fn joining_rows_keep_the_rows_held_and_hold_their_own_appends() {
        let first = key_values(4, 3, 1);
        let mut cache = SelfKeyValues::new(&first).unwrap();
        cache.select(&[1, 3], 0).unwrap();
        cache.select(&[1, 0], 0).unwrap();
        let kept = Tensor::new(&[3u32, 1], &Device::Cpu).unwrap();
        let mut expected = [&first.keys, &first.values].map(|t| t.index_select(&kept, 0).unwrap());
        let values = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        for (joining, seed, moves) in [(2, 10, false), (3, 20, true), (1, 30, false)] {
            let before = cache.buffers.keys.clone();
            cache.add_rows(joining).unwrap();
            assert_eq!(same_storage(&before, &cache.buffers.keys), !moves, "joining {joining}");
            let rows = expected[0].dim(0).unwrap();
            let new = key_values(rows + joining, 1, seed);
            cache.append(&new).unwrap();
            let (keys, values_held) = held(&cache);
            for ((got, want), new) in
                [keys, values_held].iter().zip(&mut expected).zip([&new.keys, &new.values])
            {
                // The rows held keep their positions and gain the new one.
                let want_now = Tensor::cat(&[&*want, &new.narrow(0, 0, rows).unwrap()], 2).unwrap();
                assert_eq!(values(&got.narrow(0, 0, rows).unwrap()), values(&want_now), "joining {joining}");
                // The joining rows' earlier positions are hidden from them: only their new
                // one is theirs.
                let last = got.dim(2).unwrap() - 1;
                let joined = got.narrow(0, rows, joining).unwrap().narrow(2, last, 1).unwrap();
                assert_eq!(
                    values(&joined),
                    values(&new.narrow(0, rows, joining).unwrap()),
                    "joining {joining}"
                );
                *want = got.narrow(0, 0, rows + joining).unwrap();
            }
        }
        assert_eq!(cache.row_capacity(), 16);
    }

    /// The composed copy (other devices) copies what the CPU one copies.
    #[test]
    fn the_composed_copy_matches_the_cpu_one() {
        let source = random((3, 2, 6, 3), 1).unwrap();
        let sources = [2u32, 0, 2, 1, 0, 0, 0, 0, 2, 2, 1, 0, 1, 1, 1, 1];
        let copy = PositionCopy { rows: 4, sources: &sources, first: 1, len: 4 };
        let by_op = Tensor::zeros((5, 2, 7, 3), DType::F64, &Device::Cpu).unwrap();
        let composed = by_op.zeros_like().unwrap();
        copy.apply(&by_op, &source).unwrap();
        copy.composed(&composed, &source).unwrap();
        let (by_op, composed) = (
            by_op.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            composed.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
        );
        assert_eq!(by_op, composed);
        assert!(by_op.iter().any(|&x| x != 0.0));
    }
}
